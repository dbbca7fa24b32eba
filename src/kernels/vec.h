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
/* dst[i] = e^x[i] for x[i] <= 0 (0 below -87.3; a NaN stays NaN), relative
 * error ~1e-7; dst may be x */
void dlq_exp_neg(float *dst, const float *x, size_t n);
/* dst[i] = 1 / (1 + e^-x[i]) with dlq_exp_neg's exponential; dst may be x */
void dlq_sigmoid(float *dst, const float *x, size_t n);
/* x = softmax(x) over n > 0 values, with dlq_exp_neg's exponential */
void dlq_softmax_inplace(float *x, size_t n);
/* tests: 1 = use the plain C paths of dlq_cvt_f16 / dlq_dot_f16 / dlq_exp_neg /
 * dlq_sigmoid / dlq_softmax_inplace even on an AVX2 CPU; 0 = back to the CPU check */
void dlq_vec_force_generic(int on);
/* dot of a stored row (dtype t) with fp32 x */
float dlq_dot_w(const void *w, dlq_dtype t, const float *x, size_t n);

#endif
