#include "nn/nn.h"

void dlq_rope_forward(float *x, int64_t n, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                      const float *sin_t) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static) if (n > 16)
    for (int64_t r = 0; r < n; r++) {
        const float *c = cos_t + (int64_t)pos[r] * half, *s = sin_t + (int64_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + r * (int64_t)n_heads * hd + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c[i] - b * s[i];
                xh[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* forward: a' = a c - b s, b' = b c + a s; the transpose: a = a' c + b' s, b = b' c - a' s */
void dlq_rope_backward(float *dx, int64_t n, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                       const float *sin_t) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static) if (n > 16)
    for (int64_t r = 0; r < n; r++) {
        const float *c = cos_t + (int64_t)pos[r] * half, *s = sin_t + (int64_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *xh = dx + r * (int64_t)n_heads * hd + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c[i] + b * s[i];
                xh[i + half] = b * c[i] - a * s[i];
            }
        }
    }
}
