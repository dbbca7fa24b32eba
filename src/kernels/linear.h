/* Y = X W^T (+ bias) with W stored as F32, F16 or BF16 (rows = out features).
 * X is [n, in] row-major fp32, Y is [n, out] (ldy >= out). F16/BF16 weights
 * are widened to fp32 in row blocks inside `scratch` and multiplied with
 * OpenBLAS sgemm; small n (decode) takes a direct dot-product path. */
#ifndef DLQ_KERNELS_LINEAR_H
#define DLQ_KERNELS_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Floats of scratch that dlq_linear needs for a weight of `cols` inputs. */
size_t dlq_linear_scratch_floats(int64_t cols);

void dlq_linear(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias,
                float *scratch);

/* dlq_linear's decode path for any n: each output row is computed from its
 * own input row by the same dot-product kernel whatever n is, so a row's
 * result is bit for bit independent of the rows it runs with (sampling
 * reproducibility). Slower than sgemm for large n. */
void dlq_linear_rowwise(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias,
                        float *scratch);

/* Scalar reference (double accumulation): the specification for tests. */
void dlq_linear_ref(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias);

/* Backward of Y = X W^T (+ b): dx[n, in] += dy W (if dx), dw[out, in] += dy^T x
 * (fp32, if dw), db[out] += sum of dy rows (if db). ldy: row stride of dy.
 * W may be F32/F16/BF16 (widened in row blocks into scratch). */
void dlq_linear_backward(float *dx, float *dw, float *db, const float *dy, int64_t ldy, const float *x, int64_t n,
                         const dlq_weight *w, float *scratch);
void dlq_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, int64_t ldy, const float *x, int64_t n,
                             const dlq_weight *w);

/* Row r of a weight, widened (or dequantized) to fp32. */
void dlq_weight_row(const dlq_weight *w, int64_t r, float *out);
/* Rows r0..r0+nr-1 into dst [nr, cols] (OpenMP over rows). */
void dlq_weight_rows_f32(const dlq_weight *w, int64_t r0, int64_t nr, float *dst);

#endif
