/* Embedding backward: scatter-add of row gradients into the table. */
#include "nn/nn.h"

/* Column blocks in parallel, rows in order inside each: repeated ids never
 * race, and the sums do not depend on the thread count. ids < 0 are skipped. */
void dlq_embedding_backward(float *dW, const float *dx, const int32_t *ids, int64_t n, int d) {
    if (!dW || n <= 0 || d <= 0) return;
    enum { CB = 256 };
    int nb = (d + CB - 1) / CB;
    #pragma omp parallel for schedule(static) if ((int64_t)n * d > 65536 && nb > 1)
    for (int b = 0; b < nb; b++) {
        int j0 = b * CB, j1 = j0 + CB < d ? j0 + CB : d;
        for (int64_t i = 0; i < n; i++) {
            if (ids[i] < 0) continue;
            float *w = dW + (int64_t)ids[i] * d;
            const float *g = dx + i * d;
            for (int j = j0; j < j1; j++) w[j] += g[j];
        }
    }
}
