/* Kernels over bit-packed weights (dlq_weight of dtype QPACK): the linear
 * layer runs directly on the packed integers, no full-precision copy.
 *
 *   decode (n <= 4 vectors):  dlq_qgemv: one pass over each packed row,
 *     unpacked in registers and multiplied with every vector; OpenMP across
 *     rows. Two numerics:
 *       DLQ_QACT_F32 (the reference): exact fp32 dot products,
 *         row = sum_g s_g * sum_{j in g} u_j x_j + c_g * sum_{j in g} x_j
 *         with u = q - qmin and c = bias + scale*qmin;
 *       DLQ_QACT_I8 (the default; within 0.04 % perplexity on english-mix-7M,
 *         docs/deployment.md): x quantized to int8 per block of 32 (absmax / 127,
 *         round half away from zero) and integer dot products (AVX-512 VNNI
 *         vpdpbusd, AVX2 vpmaddubsw for 2-, 4- and 8-bit), as llama.cpp does; the c*sum(x)
 *         term stays exact. Needs group % 32 == 0, else the fp32 path runs.
 *   prompt / evaluation (n > 4): packed rows are dequantized tile by tile into
 *     fp32 scratch (SIMD) and multiplied by OpenBLAS sgemm (kernels/linear.h).
 *
 * Instruction sets, picked at run time: AVX-512 (F+BW; the int8 path also
 * needs VNNI and VBMI), AVX2 (+FMA, F16C), and a scalar fallback. The
 * environment variable DLQ_ISA=scalar|avx2|avx512 caps the level (it can
 * never raise it above what the CPU runs); DLQ_QACT=f32|i8 picks the decode
 * numerics (i8 unless DLQ_QACT=f32). Tests force both with the functions below. */
#ifndef DLQ_KERNELS_QKERNELS_H
#define DLQ_KERNELS_QKERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef enum dlq_qisa { DLQ_QISA_SCALAR = 0, DLQ_QISA_AVX2 = 1, DLQ_QISA_AVX512 = 2 } dlq_qisa;
typedef enum dlq_qact { DLQ_QACT_F32 = 0, DLQ_QACT_I8 = 1 } dlq_qact;

/* The best level this CPU runs (AVX512 requires F, BW, VL, VNNI and VBMI). */
dlq_qisa dlq_qisa_supported(void);
/* The level in use: min(supported, DLQ_ISA or the last dlq_qisa_force). */
dlq_qisa dlq_qisa_active(void);
/* Sets the level (capped at what the CPU runs); returns the level set. */
dlq_qisa dlq_qisa_force(dlq_qisa isa);
const char *dlq_qisa_name(dlq_qisa isa);
dlq_qact dlq_qact_active(void);
void dlq_qact_force(dlq_qact a);

/* Scale and bias of row r's groups as fp32 (the stored params may be F32 or
 * F16): w_j = scale[g]*q_j + bias[g], g = j / qgroup. */
void dlq_qparams_row(const dlq_weight *w, int64_t r, float *scale, float *bias);

/* y[i*ldy + r] = sum_j w[r][j] x[i*in + j] for i < n, every row r (no bias).
 * scratch: at least dlq_qgemv_scratch_bytes(in, n) bytes, 64-byte aligned
 * not required. */
size_t dlq_qgemv_scratch_bytes(int64_t in, int64_t n);
void dlq_qgemv(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, void *scratch);

/* Rows r0..r0+nr-1 dequantized to fp32 into dst [nr][cols] (OpenMP over rows
 * when large); one row: dlq_qdequant_w_row. */
void dlq_qdequant_rows(const dlq_weight *w, int64_t r0, int64_t nr, float *dst);
void dlq_qdequant_w_row(const dlq_weight *w, int64_t r, float *dst);

/* 1 when dlq_qgemv on w takes the int8-activation path with the active ISA
 * and numerics (DLQ_QACT_I8, group % 32 == 0, and a kernel for the width:
 * AVX-512 and scalar for all widths, AVX2 for 2-, 4- and 8-bit), else 0. */
int dlq_qgemv_uses_i8(const dlq_weight *w);

/* Scalar int8-activation reference of one row, for tests: the exact
 * specification DLQ_QACT_I8 kernels follow. */
float dlq_qdot_i8_ref(const dlq_weight *w, int64_t r, const float *x);

#endif
