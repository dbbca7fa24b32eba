#include <math.h>

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
