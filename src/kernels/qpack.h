/* Bit-packed n-bit integer rows (2..8 bits): element j of a row is the
 * unsigned value u = q - qmin at bit offset j*bits, LSB-first, within
 * ceil(n*bits/8) bytes. Dequantized weight: w = scale[g]*q + bias[g]. */
#ifndef DLQ_KERNELS_QPACK_H
#define DLQ_KERNELS_QPACK_H

#include <stddef.h>
#include <stdint.h>

static inline int64_t dlq_qrow_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

void dlq_qpack_row(uint8_t *dst, const int8_t *q, int64_t n, int bits);
void dlq_qunpack_row(int8_t *q, const uint8_t *src, int64_t n, int bits);
/* out[n] = scale*q + bias per group of `group` elements (last may be short) */
void dlq_qdequant_row(float *out, const uint8_t *src, int64_t n, int bits, int group, const float *scale,
                      const float *bias);
/* sum_j (scale*q_j + bias) x_j for one row, fused */
float dlq_qdot_row(const uint8_t *src, int64_t n, int bits, int group, const float *scale, const float *bias,
                   const float *x);

#endif
