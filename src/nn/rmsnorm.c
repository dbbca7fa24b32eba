#include <math.h>
#include <stdlib.h>

#include "nn/nn.h"

void dlq_rmsnorm_forward(float *out, const float *x, const float *w, int64_t n, int d, float eps) {
    #pragma omp parallel for schedule(static) if (n > 16)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *oi = out + i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        float r = 1.0f / sqrtf((float)(ss / d) + eps);
        for (int j = 0; j < d; j++) oi[j] = w[j] * (xi[j] * r);
    }
}

/* y_j = w_j x_j r, r = 1/sqrt(mean(x^2) + eps):
 *   dx_k = r w_k g_k - x_k r^3 / d * sum_j g_j w_j x_j
 *   dw_j = sum_rows g_j x_j r
 * dx: parallel over rows. dw: parallel over column blocks, rows summed in
 * order inside each, so the result does not depend on the thread count. */
void dlq_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t n, int d,
                          float eps) {
    if (n <= 0 || d <= 0) return;
    float *rs = malloc((size_t)n * sizeof *rs);
    float rstack[64];
    if (!rs && n <= 64) rs = rstack;
    int own = rs && rs != rstack;
    #pragma omp parallel for schedule(static) if (n > 16)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d, *gi = dout + i * d;
        double ss = 0, gwx = 0;
        for (int j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        float r = 1.0f / sqrtf((float)(ss / d) + eps); /* exactly the forward's r */
        if (rs) rs[i] = r;
        if (!dx) continue;
        for (int j = 0; j < d; j++) gwx += (double)gi[j] * w[j] * xi[j];
        float c = (float)(gwx * (double)r * r * r / d);
        float *dxi = dx + i * d;
        for (int j = 0; j < d; j++) dxi[j] += r * w[j] * gi[j] - c * xi[j];
    }
    if (dw) {
        enum { CB = 64 };
        int nb = (d + CB - 1) / CB;
        #pragma omp parallel for schedule(static) if ((int64_t)n * d > 65536)
        for (int b = 0; b < nb; b++) {
            int j0 = b * CB, j1 = j0 + CB < d ? j0 + CB : d;
            double acc[CB] = {0};
            for (int64_t i = 0; i < n; i++) {
                const float *xi = x + i * d, *gi = dout + i * d;
                float r;
                if (rs) r = rs[i];
                else { /* no memory for the r table: recompute it */
                    double ss = 0;
                    for (int j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
                    r = 1.0f / sqrtf((float)(ss / d) + eps);
                }
                for (int j = j0; j < j1; j++) acc[j - j0] += (double)(gi[j] * xi[j]) * r;
            }
            for (int j = j0; j < j1; j++) dw[j] += (float)acc[j - j0];
        }
    }
    if (own) free(rs);
}
