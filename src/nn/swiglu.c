#include <math.h>

#include "kernels/vec.h"
#include "nn/nn.h"

/* sigma(g) comes from dlq_sigmoid (vectorized exponential) a chunk at a time */
#define SW_CHUNK 256

void dlq_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < n; c += SW_CHUNK) {
        int64_t m = n - c < SW_CHUNK ? n - c : SW_CHUNK;
        float sg[SW_CHUNK];
        dlq_sigmoid(sg, gate + c, (size_t)m);
        for (int64_t i = 0; i < m; i++) out[c + i] = gate[c + i] * sg[i] * up[c + i];
    }
}

/* out = g sigma(g) u:  dgate = dout u sigma(g) (1 + g (1 - sigma(g))),  dup = dout g sigma(g).
 * Overwrites dgate/dup; elementwise, so dgate may alias gate and dup may alias up. */
void dlq_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < n; c += SW_CHUNK) {
        int64_t m = n - c < SW_CHUNK ? n - c : SW_CHUNK;
        float sgs[SW_CHUNK];
        dlq_sigmoid(sgs, gate + c, (size_t)m);
        for (int64_t i = 0; i < m; i++) {
            float g = gate[c + i], u = up[c + i], d = dout[c + i], sg = sgs[i];
            float silu = g * sg;
            dgate[c + i] = d * u * (sg + silu * (1.0f - sg));
            dup[c + i] = d * silu;
        }
    }
}
