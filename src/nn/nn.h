/* Layer forward kernels on fp32 activations. Shapes in comments; rows are
 * tokens (B*T), row-major. Each has a scalar, obviously-correct form so it
 * doubles as the reference; the backward passes live beside them (issue 3). */
#ifndef DLQ_NN_H
#define DLQ_NN_H

#include <stdint.h>

#include "model/model.h"

/* out[n, d] = x / sqrt(mean(x^2) + eps) * w   (statistics in fp32, as HF) */
void dlq_rmsnorm_forward(float *out, const float *x, const float *w, int64_t n, int d, float eps);

/* Rotates pairs (i, i + hd/2) of each head in place (HF rotate_half layout).
 * x[n, n_heads*hd]; row r has position pos[r]; cos/sin tables [P, hd/2]. */
void dlq_rope_forward(float *x, int64_t n, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                      const float *sin_t);

/* out[n, h] = silu(gate) * up */
void dlq_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);

/* Causal (optionally sliding-window) grouped-query attention for one
 * sequence. q[T, n_heads*hd] at positions pos0..pos0+T-1; keys/values for
 * positions 0..pos0+T-1 in k/v with row stride ldkv (n_kv_heads*hd used);
 * out[T, n_heads*hd]. scores: scratch of T*(pos0+T) floats. window 0 = none. */
void dlq_attention_forward(float *out, const float *q, const float *k, const float *v, int64_t ldkv, int T, int pos0,
                           int n_heads, int n_kv_heads, int hd, int window, float *scores);

/* Scalar reference of the same (double accumulation). */
void dlq_attention_ref(float *out, const float *q, const float *k, const float *v, int64_t ldkv, int T, int pos0,
                       int n_heads, int n_kv_heads, int hd, int window);

#endif
