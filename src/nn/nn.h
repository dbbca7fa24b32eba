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


/* ---- training: forward variants that keep what backward needs, and the
 * backward passes. Conventions (llm.c): gradients of inputs named d<x>;
 * "+=" means the function ACCUMULATES into that buffer (caller zeroes it
 * once), "=" means it overwrites. Parameter gradients always accumulate.
 * A NULL parameter-gradient pointer means the parameter is frozen: that
 * gradient is not computed at all. */

/* dx[n,d] += d(rmsnorm)/dx ; dw[d] += (NULL: frozen). Recomputes the rms from x. */
void dlq_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t n, int d,
                          float eps);

/* In place: dx = R(pos)^T dx (the gradient through the rotation). Same layout as forward. */
void dlq_rope_backward(float *dx, int64_t n, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                       const float *sin_t);

/* dgate[n] = , dup[n] = ; given dout and the forward inputs gate, up. */
void dlq_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

/* Causal GQA attention of one sequence of T tokens (pos0 = 0, keys = the same
 * T tokens), keeping the softmax probabilities probs[n_heads][T][T] for the
 * backward. q[T, n_heads*hd], k/v[T, n_kv_heads*hd], out[T, n_heads*hd].
 * window 0 = full causal. */
void dlq_attention_forward_train(float *out, float *probs, const float *q, const float *k, const float *v, int T,
                                 int n_heads, int n_kv_heads, int hd, int window);
/* dq = ; dk, dv = (k/v heads shared by a group sum their heads' grads). */
void dlq_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs, const float *q,
                            const float *k, const float *v, int T, int n_heads, int n_kv_heads, int hd, float *scratch);
/* floats of scratch dlq_attention_backward needs */
size_t dlq_attention_backward_scratch(int T, int n_heads);

/* Cross-entropy over rows: loss_sum = sum over rows with target >= 0 of
 * -log softmax(logits[r])[target[r]]; rows with target < 0 are ignored
 * (like PyTorch's ignore_index). dlogits[r] = scale * (softmax - onehot)
 * (0 for ignored rows); dlogits may alias logits. Returns loss_sum (double),
 * NAN when out of memory (the callers stop on a non-finite loss). */
double dlq_xent_forward_backward(float *dlogits, const float *logits, const int32_t *target, int64_t n, int V,
                                 float scale);

/* Distillation (LLM-QAT): per row with target >= 0,
 *   loss = w_ce * CE(logits, target) + w_kl * KL(softmax(tlogits) || softmax(logits)),
 * the teacher's tlogits being constants; dlogits = scale * (w_ce (q - onehot)
 * + w_kl (q - p)), q/p the student/teacher softmax. Rows with target < 0 are
 * ignored (zero gradient). dlogits may alias logits. Returns the loss sum
 * (NAN when out of memory). */
double dlq_kl_forward_backward(float *dlogits, const float *logits, const float *tlogits, const int32_t *target,
                               int64_t n, int V, float scale, float w_ce, float w_kl);

/* dW[V, d] += scatter of dx rows at ids (NULL-safe: nothing if dW NULL). */
void dlq_embedding_backward(float *dW, const float *dx, const int32_t *ids, int64_t n, int d);

#endif
