/* Learned rotation of the residual stream (SpinQuant's R1, Liu et al. 2024),
 * after dlq_model_rotate: an orthogonal R (dim x dim, starting at the
 * identity, i.e. at the random Hadamard basis) is trained so that the model,
 * rotated by R and then round-to-nearest quantized, matches the
 * full-precision model (the run's --loss; KL to the teacher by default).
 *
 *   input-side weights (q, k, v, gate, up, head) and the embedding: W R^T
 *   output-side weights (o, down):                                 R W
 *
 * Every step re-quantizes the rotated weights with min-max RTN (s, b from the
 * group's range, m = 1), runs the model's forward and backward through the
 * straight-through estimator, adds what dL/ds, dL/db give through each group's
 * min / max elements (so R also learns to shrink the groups' ranges), which
 * is dL/dW of each rotated weight, assembles
 *   dL/dR = sum_in G^T W + sum_out G W^T
 * and moves R along the orthogonal group: Adam on the skew-symmetric
 * Riemannian gradient A = dL/dR R^T - R dL/dR^T, then the Cayley retraction
 * R <- (I + lr/2 D)^-1 (I - lr/2 D) R, solved by the fixed-point iteration of
 * Li et al. 2020 and re-orthonormalized (Gram-Schmidt in double) every 25
 * steps and at the end. The learned R is then folded into the model's
 * weights, so the model's function is unchanged (up to fp32 rounding) and
 * the quantization that follows sees the learned basis. */
#ifndef DLQ_QUANT_ROTLEARN_H
#define DLQ_QUANT_ROTLEARN_H

#include <stdint.h>

#include "model/model.h"
#include "model/rotate.h"
#include "quant/quant.h"
#include "train/data.h"
#include "train/tmodel.h"

typedef struct dlq_rotlearn_opts {
    int64_t steps;
    float lr;              /* Cayley step size (Adam-normalized), e.g. 2e-2 */
    int B, T;
    dlq_qspec qspec;
    unsigned targets;      /* projections that are quantized (DLQ_P_* bits) */
    dlq_loss_kind loss;
    uint64_t seed;
    int recompute;
    int heads;             /* also learn one hd x hd rotation per layer and kv head for v / o (SpinQuant R2) */
} dlq_rotlearn_opts;

typedef void (*dlq_rotlearn_progress)(void *user, int64_t step, int64_t steps, double loss);

/* m must come from dlq_model_rotate (fp32 owned weights, untied head, all-ones
 * norms). Trains R on ds's training rows and folds it into m. *first and
 * *last (may be NULL) receive the loss of the first and last step. */
int dlq_rotate_learn(dlq_model *m, dlq_dataset *ds, const dlq_rotlearn_opts *o, dlq_rotlearn_progress cb, void *user,
                     double *first, double *last, dlq_err *err);

/* dL/dR of the rotated weights, accumulated into gr [d][d]: input side
 * (W_rot = W R^T, W [rows][d]) adds G^T W; output side (W_rot = R W,
 * W [d][cols]) adds G W^T. Exposed for the gradient test. */
void dlq_rotgrad_in(float *gr, int d, const float *G, const float *W, int64_t rows);
void dlq_rotgrad_out(float *gr, int d, const float *G, const float *W, int64_t cols);
/* dL/dU of the per-head rotations (--rotate-heads), accumulated into gu
 * [nkv][hd][hd]: rows (v: W_rot rows of kv head h = U_h W_h, W [nkv*hd][cols])
 * add G_h W_h^T; columns (o: W_rot columns of q head j = W_j U_kv(j)^T,
 * W [rows][nq*hd], kv(j) = j / (nq / nkv)) add G_j^T W_j. */
void dlq_headgrad_rows(float *gu, int hd, int nkv, const float *G, const float *W, int64_t cols);
void dlq_headgrad_cols(float *gu, int hd, int nq, int nkv, const float *G, const float *W, int64_t rows);
/* Chain of the RTN range into W: with s, b set from each group's min / max
 * (dlq_quant_init_rtn, no clipping search), adds to gw [rows][cols] what
 * dL/ds and dL/db (gs, gb [rows][ngroups]) give through the group's extreme
 * elements (asymmetric: s = (max - min)/(2^n - 1), b = min - s qmin;
 * symmetric: s = absmax/qmax). With --int-zero the snapped offset is treated
 * as the unsnapped min - s qmin (rounding passes no gradient otherwise). */
void dlq_rtn_range_grad(float *gw, const float *w, int64_t rows, int64_t cols, const dlq_qspec *q, const float *gs,
                        const float *gb);

#endif
