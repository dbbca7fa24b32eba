/* QA-LoRA (Xu et al. 2023) as a trainable layer kind (DLQ_TL_QALORA): the
 * base weight is fake-quantized with FROZEN per-group s, b, m (an RTN or GPTQ
 * base), and the adapter sees the input average-pooled per quantization group:
 *
 *   xp[t, g] = mean_{j in group g} x[t, j]            (last group may be shorter)
 *   y        = x Wq^T + scale * (xp A^T) B^T          A [r, ngroups], B [out, r]
 *
 * Because the adapter's contribution to output o is constant over the inputs
 * of a group, it is the weight delta  dW[o, j] = scale * (B A)[o, g(j)] / |g(j)|,
 * which merges into the group offsets without touching the integers:
 *   bias'[o, g] = m*b + scale * (B A)[o, g] / |g|,   scale'[o, g] = m*s. */
#ifndef DLQ_QUANT_QALORA_H
#define DLQ_QUANT_QALORA_H

#include "quant/qlinear.h"

/* xp [n, ngroups] = group means of x [n, in]. */
void dlq_qalora_pool(float *xp, const float *x, int64_t n, int64_t in, int group);

/* The merged integers (q int8 [out*in]) and per-group scale/bias
 * [out*ngroups] of a QA-LoRA layer; wp is scratch [out*in]. */
void dlq_qalora_merge_layer(const dlq_tlinear *L, float *wp, int8_t *q, float *scale, float *bias);

/* The layer's effective fp32 weight Wq + dW (what the merged file computes);
 * ba is scratch [out*ngroups]. */
void dlq_qalora_effective_weight(const dlq_tlinear *L, float *w, float *ba);

#endif
