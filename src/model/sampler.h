/* Next-token choice from logits: greedy (temp 0), or temperature + nucleus
 * (top-p) sampling as llama2.c does it, driven by a seeded dlq_rng. */
#ifndef DLQ_MODEL_SAMPLER_H
#define DLQ_MODEL_SAMPLER_H

#include <stdint.h>

#include "core/rng.h"

typedef struct dlq_sampler {
    float temp;   /* 0 = greedy */
    float top_p;  /* 1 = off */
    dlq_rng rng;
    int V;
    float *probs;     /* [V] */
    int32_t *idx;     /* [V] */
} dlq_sampler;

int dlq_sampler_init(dlq_sampler *s, int V, float temp, float top_p, uint64_t seed);
void dlq_sampler_free(dlq_sampler *s);
int32_t dlq_sample(dlq_sampler *s, const float *logits);
int32_t dlq_argmax(const float *x, int n);

#endif
