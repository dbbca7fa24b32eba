#include <math.h>

#include "nn/nn.h"

void dlq_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* out = g sigma(g) u:  dgate = dout u sigma(g) (1 + g (1 - sigma(g))),  dup = dout g sigma(g).
 * Overwrites dgate/dup; elementwise, so dgate may alias gate and dup may alias up. */
void dlq_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], d = dout[i];
        float sg = 1.0f / (1.0f + expf(-g));
        float silu = g * sg;
        dgate[i] = d * u * (sg + silu * (1.0f - sg));
        dup[i] = d * silu;
    }
}
