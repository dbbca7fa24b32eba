/* Vector primitives over stored weights (F32/F16/BF16), SIMD where the CPU
 * has it (chosen at run time). Pointers need only their element alignment. */
#ifndef DLQ_KERNELS_VEC_H
#define DLQ_KERNELS_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

void dlq_cvt_bf16(float *dst, const uint16_t *src, size_t n);
void dlq_cvt_f16(float *dst, const uint16_t *src, size_t n);
float dlq_dot_f32(const float *w, const float *x, size_t n);
float dlq_dot_bf16(const uint16_t *w, const float *x, size_t n);
float dlq_dot_f16(const uint16_t *w, const float *x, size_t n);
/* dot of a stored row (dtype t) with fp32 x */
float dlq_dot_w(const void *w, dlq_dtype t, const float *x, size_t n);

#endif
