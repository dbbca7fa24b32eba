/* GPTQ (Frantar et al. 2022; docs/spec.md §5): one-shot weight
 * quantization with second-order error compensation, column by column,
 * producing the same w = s*q + b group form as RTN and DL-QAT.
 *
 * Per layer, with H = 2 X^T X summed over the calibration inputs X [N, in]:
 *   - dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0;
 *   - act-order (optional): columns processed by decreasing H_jj;
 *   - dampening: H += percdamp * mean(diag H) * I  (retried x10, up to 4
 *     times, if H is still not positive definite);
 *   - U = upper Cholesky factor of H^-1 (H = L L^T by LAPACK dpotrf, H^-1 by
 *     dpotri, then dpotrf of H^-1), as the reference gptq.py;
 *   - columns in blocks of `blocksize`: q_j = Q(w_j), e_j = (w_j - q_j) / U_jj,
 *     the remaining columns of the block w_k -= e_j U_jk; after each block the
 *     later columns W[:, i2:] -= E U[i1:i2, i2:] (lazy batch update).
 * Group parameters (the project's min-max quantizer, dlq_quant_init_rtn):
 *   - without act-order: set when a group's first column is reached, from the
 *     group's CURRENT (already error-compensated) weights;
 *   - with act-order: static groups (the reference's --static-groups): every
 *     group's parameters from the original weights before any update, so the
 *     groups stay contiguous in the input dimension and the .dlq format (no
 *     g_idx permutation) stores the result as is.
 * Computation in double precision; the output weights are the fp32 values
 * s*q + b that the fake-quantizer and the packed kernels compute. */
#ifndef DLQ_QUANT_GPTQ_H
#define DLQ_QUANT_GPTQ_H

#include <stdint.h>

#include "quant/quant.h"

typedef struct dlq_gptq_opts {
    int blocksize;    /* columns per lazy-update block (default 128) */
    double percdamp;  /* dampening, fraction of the mean diagonal (default 0.01) */
    int act_order;    /* process columns by decreasing H_jj (static groups) */
    int clip_search;  /* group parameters with the least-squares clipping search */
} dlq_gptq_opts;

void dlq_gptq_opts_default(dlq_gptq_opts *o);

/* H [in*in] += 2 x^T x over n rows of x [n, in] (both triangles). */
void dlq_gptq_add_hessian(double *H, const float *x, int64_t n, int64_t in);

/* GPTQ of one layer. W [rows, cols]: in, the weights; out, the dequantized
 * weights s*q + b. H [cols*cols] is consumed (overwritten). s, b [rows *
 * ngroups] receive the group parameters; q (may be NULL) the integers.
 * *damp_used (may be NULL) the dampening fraction finally used. */
int dlq_gptq_layer(float *W, int64_t rows, int64_t cols, double *H, const dlq_qspec *q, const dlq_gptq_opts *o,
                   float *s, float *b, int8_t *qout, double *damp_used, dlq_err *err);

#endif

/* ---- whole model ---- */
#include "train/tmodel.h"

/* GPTQ of every quantized projection of tm (mode QUANT, built with the
 * quantizer and targets to use; its micro-batch (B, T) sets the calibration
 * chunk). tokens [nseq * T] are the calibration sequences, nseq a multiple of
 * B. Layers in order, each on the activations of the already-quantized
 * layers before it, and inside a layer "true-sequential": q/k/v (one shared
 * H), then o, then gate/up (shared H), then down, each on the outputs of the
 * parts quantized before it. Each quantized projection's base weight becomes
 * the GPTQ result s*q + b (fp32, in *owned: free it after tm) and its s, b the
 * GPTQ group parameters (m = 1), so tm's fake-quantized forward, the merge and
 * the .dlq export reproduce GPTQ's integers exactly. progress (may be NULL) is
 * called after each layer. */
int dlq_gptq_model(dlq_tmodel *tm, const int32_t *tokens, int64_t nseq, const dlq_gptq_opts *o, float **owned,
                   void (*progress)(void *user, int layer, int n_layers), void *user, dlq_err *err);
