#include "kernels/qpack.h"

#include <string.h>

void dlq_qpack_row(uint8_t *dst, const int8_t *q, int64_t n, int bits) {
    int qmin = -(1 << (bits - 1));
    memset(dst, 0, (size_t)dlq_qrow_bytes(n, bits));
    for (int64_t j = 0; j < n; j++) {
        uint32_t u = (uint32_t)(q[j] - qmin);
        int64_t bit = j * bits;
        uint32_t v = u << (bit & 7);
        int64_t byte = bit >> 3;
        dst[byte] |= (uint8_t)v;
        if ((bit & 7) + bits > 8) dst[byte + 1] |= (uint8_t)(v >> 8);
    }
}

static inline uint32_t get_u(const uint8_t *src, int64_t j, int bits, int64_t nbytes) {
    int64_t bit = j * bits, byte = bit >> 3;
    uint32_t v = src[byte];
    if (byte + 1 < nbytes) v |= (uint32_t)src[byte + 1] << 8;
    return (v >> (bit & 7)) & ((1u << bits) - 1);
}

void dlq_qunpack_row(int8_t *q, const uint8_t *src, int64_t n, int bits) {
    int qmin = -(1 << (bits - 1));
    int64_t nb = dlq_qrow_bytes(n, bits);
    for (int64_t j = 0; j < n; j++) q[j] = (int8_t)((int)get_u(src, j, bits, nb) + qmin);
}

void dlq_qdequant_row(float *out, const uint8_t *src, int64_t n, int bits, int group, const float *scale,
                      const float *bias) {
    int qmin = -(1 << (bits - 1));
    int64_t nb = dlq_qrow_bytes(n, bits);
    for (int64_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        int64_t j1 = j0 + group < n ? j0 + group : n;
        float s = scale[g], b = bias[g];
        for (int64_t j = j0; j < j1; j++) out[j] = s * (float)((int)get_u(src, j, bits, nb) + qmin) + b;
    }
}

float dlq_qdot_row(const uint8_t *src, int64_t n, int bits, int group, const float *scale, const float *bias,
                   const float *x) {
    int qmin = -(1 << (bits - 1));
    int64_t nb = dlq_qrow_bytes(n, bits);
    float acc = 0;
    for (int64_t j0 = 0, g = 0; j0 < n; j0 += group, g++) {
        int64_t j1 = j0 + group < n ? j0 + group : n;
        float sq = 0, sx = 0;
        for (int64_t j = j0; j < j1; j++) {
            sq += (float)((int)get_u(src, j, bits, nb) + qmin) * x[j];
            sx += x[j];
        }
        acc += scale[g] * sq + bias[g] * sx;
    }
    return acc;
}
