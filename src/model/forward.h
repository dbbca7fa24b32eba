/* Inference forward pass: batched (B sequences x T tokens) for evaluation,
 * incremental with a KV cache for generation. All sizes are fixed when the
 * state is created; nothing is allocated per call. */
#ifndef DLQ_MODEL_FORWARD_H
#define DLQ_MODEL_FORWARD_H

#include <stdint.h>

#include "model/model.h"

typedef struct dlq_state {
    int B, T, S;          /* max sequences, max tokens per call, cache capacity in positions */
    int q_dim, kv_dim;
    float *x, *xn, *q, *att, *hb, *hb2, *scores, *wscratch;
    float *kcache, *vcache; /* [n_layers][B][S][kv_dim] */
    float *cos_t, *sin_t;   /* [S][head_dim/2] */
    int32_t *pos;           /* [B*T] */
    size_t bytes;           /* total allocated */
    int rowwise;            /* 1: every row's arithmetic independent of the batch
                               (dlq_linear_rowwise); set by callers that promise it */
} dlq_state;

int dlq_state_create(dlq_state **out, const dlq_model *m, int B, int T, int S, dlq_err *err);
void dlq_state_destroy(dlq_state *s);

/* Runs tokens[B*T] (row b = sequence b) at positions pos0..pos0+T-1 of every
 * sequence; keys/values of earlier positions must already be in the cache
 * (from previous calls). logits: [B*T, vocab], or [B, vocab] for the last
 * position only when last_only; NULL to skip the head. */
int dlq_forward(const dlq_model *m, dlq_state *s, const int32_t *tokens, int B, int T, int pos0, float *logits,
                int last_only, dlq_err *err);

/* Mean next-token NLL of tokens[0..n) (n-1 predictions) from logits [n, V],
 * computed with a max-shifted log-sum-exp in double. */
double dlq_nll_mean(const float *logits, const int32_t *tokens, int n, int V);

#endif
