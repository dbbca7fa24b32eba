/* Fused softmax cross-entropy forward + backward over the rows of logits. */
#include <math.h>
#include <stdlib.h>

#include "kernels/vec.h"
#include "nn/nn.h"

/* One row: returns -log softmax(l)[t] (double) and writes dl = scale * (softmax - onehot).
 * dl may alias l: l[t] is read before anything is written. The exponentials
 * are dlq_exp_neg's (vectorized), the sum is in double. */
static double xent_row(float *dl, const float *l, int32_t t, int V, float scale) {
    float lt = l[t], mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    for (int j = 0; j < V; j++) dl[j] = l[j] - mx;
    dlq_exp_neg(dl, dl, (size_t)V);
    double sum = 0;
    for (int j = 0; j < V; j++) sum += dl[j];
    float f = (float)(scale / sum);
    for (int j = 0; j < V; j++) dl[j] *= f;
    dl[t] -= scale;
    return (double)mx + log(sum) - (double)lt;
}

/* One row of the distillation loss: w_ce * CE(l, t) + w_kl * KL(p || q) with
 * q = softmax(l) (student) and p = softmax(tl) (teacher); writes
 * dl = scale * (w_ce * (q - onehot(t)) + w_kl * (q - p)). dl may alias l.
 * With e = exp(l - mx), s = sum e, ep = exp(tl - tmx), ts = sum ep (dlq_exp_neg,
 * sums in double): KL = sum_j p_j (tl_j - l_j) + (mx - tmx) + log s - log ts,
 * which needs no logarithm per element. ep: V floats of scratch. */
static double kl_row(float *dl, const float *l, const float *tl, int32_t t, int V, float scale, float w_ce,
                     float w_kl, float *ep) {
    float lt = l[t], mx = -INFINITY, tmx = -INFINITY;
    for (int j = 0; j < V; j++) {
        mx = l[j] > mx ? l[j] : mx;
        tmx = tl[j] > tmx ? tl[j] : tmx;
    }
    for (int j = 0; j < V; j++) ep[j] = tl[j] - tmx;
    dlq_exp_neg(ep, ep, (size_t)V);
    double ts = 0, a = 0;
    for (int j = 0; j < V; j++) {
        ts += ep[j];
        a += (double)ep[j] * ((double)tl[j] - (double)l[j]); /* every read of l before dl is written */
    }
    for (int j = 0; j < V; j++) dl[j] = l[j] - mx;
    dlq_exp_neg(dl, dl, (size_t)V);
    double s = 0;
    for (int j = 0; j < V; j++) s += dl[j];
    double kl = a / ts + ((double)mx - (double)tmx) + log(s) - log(ts), ce = (double)mx + log(s) - (double)lt;
    double wq = scale * (double)(w_ce + w_kl) / s, wp = scale * (double)w_kl / ts;
    for (int j = 0; j < V; j++) dl[j] = (float)(wq * dl[j] - wp * ep[j]);
    dl[t] -= scale * w_ce;
    return w_ce * ce + w_kl * kl;
}

/* Rows in parallel; per-row losses are summed in row order afterwards, so the
 * result does not depend on the thread count. Rows whose target is < 0 (or
 * >= V, which is invalid) are ignored: zero gradient, no loss. tlogits NULL:
 * cross-entropy rows; else distillation rows (each thread has a V-float
 * scratch for the teacher's exponentials). Returns NAN when out of memory. */
static double loss_rows(float *dlogits, const float *logits, const float *tlogits, const int32_t *target, int64_t n,
                        int V, float scale, float w_ce, float w_kl) {
    if (n <= 0 || V <= 0) return 0;
    double *row_loss = malloc((size_t)n * sizeof *row_loss);
    int oom = !row_loss;
    #pragma omp parallel if (n > 1 && row_loss)
    {
        float *ep = tlogits ? malloc((size_t)V * sizeof(float)) : NULL;
        if (tlogits && !ep) {
            #pragma omp atomic write
            oom = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            const float *l = logits + r * (int64_t)V;
            float *dl = dlogits + r * (int64_t)V;
            int32_t t = target[r];
            double loss = 0;
            if (t < 0 || t >= V || !row_loss || (tlogits && !ep)) {
                for (int j = 0; j < V; j++) dl[j] = 0;
            } else if (tlogits) {
                loss = kl_row(dl, l, tlogits + r * (int64_t)V, t, V, scale, w_ce, w_kl, ep);
            } else {
                loss = xent_row(dl, l, t, V, scale);
            }
            if (row_loss) row_loss[r] = loss;
        }
        free(ep);
    }
    double total = 0;
    if (row_loss) for (int64_t r = 0; r < n; r++) total += row_loss[r];
    free(row_loss);
    return oom ? NAN : total;
}

double dlq_xent_forward_backward(float *dlogits, const float *logits, const int32_t *target, int64_t n, int V,
                                 float scale) {
    return loss_rows(dlogits, logits, NULL, target, n, V, scale, 1.0f, 0.0f);
}

double dlq_kl_forward_backward(float *dlogits, const float *logits, const float *tlogits, const int32_t *target,
                               int64_t n, int V, float scale, float w_ce, float w_kl) {
    return loss_rows(dlogits, logits, tlogits, target, n, V, scale, w_ce, w_kl);
}
