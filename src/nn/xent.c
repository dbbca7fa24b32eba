/* Fused softmax cross-entropy forward + backward over the rows of logits. */
#include <math.h>
#include <stdlib.h>

#include "nn/nn.h"

/* One row: returns -log softmax(l)[t] (double) and writes dl = scale * (softmax - onehot).
 * dl may alias l: l[t] is read before anything is written. */
static double xent_row(float *dl, const float *l, int32_t t, int V, float scale) {
    float lt = l[t], mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    double sum = 0;
    for (int j = 0; j < V; j++) {
        float e = expf(l[j] - mx);
        dl[j] = e;
        sum += e;
    }
    float f = (float)(scale / sum);
    for (int j = 0; j < V; j++) dl[j] *= f;
    dl[t] -= scale;
    return (double)mx + log(sum) - (double)lt;
}

/* Rows in parallel; per-row losses are summed in row order afterwards, so the
 * result does not depend on the thread count. Rows whose target is < 0 (or
 * >= V, which is invalid) are ignored: zero gradient, no loss. */
double dlq_xent_forward_backward(float *dlogits, const float *logits, const int32_t *target, int64_t n, int V,
                                 float scale) {
    if (n <= 0 || V <= 0) return 0;
    double *row_loss = malloc((size_t)n * sizeof *row_loss);
    double total = 0;
    #pragma omp parallel for schedule(static) if (n > 1 && row_loss)
    for (int64_t r = 0; r < n; r++) {
        const float *l = logits + r * (int64_t)V;
        float *dl = dlogits + r * (int64_t)V;
        int32_t t = target[r];
        double loss = 0;
        if (t < 0 || t >= V) {
            for (int j = 0; j < V; j++) dl[j] = 0;
        } else {
            loss = xent_row(dl, l, t, V, scale);
        }
        if (row_loss) row_loss[r] = loss;
        else total += loss; /* serial (the loop runs on one thread without the buffer) */
    }
    if (row_loss) {
        for (int64_t r = 0; r < n; r++) total += row_loss[r];
        free(row_loss);
    }
    return total;
}
