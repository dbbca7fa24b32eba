#include "model/sampler.h"

#include <math.h>
#include <stdlib.h>

int dlq_sampler_init(dlq_sampler *s, int V, float temp, float top_p, uint64_t seed) {
    s->temp = temp;
    s->top_p = top_p;
    s->V = V;
    dlq_rng_seed(&s->rng, seed);
    s->probs = malloc((size_t)V * sizeof(float));
    s->idx = malloc((size_t)V * sizeof(int32_t));
    return s->probs && s->idx ? 0 : -1;
}

void dlq_sampler_free(dlq_sampler *s) {
    free(s->probs);
    free(s->idx);
    s->probs = NULL;
    s->idx = NULL;
}

int32_t dlq_argmax(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t dlq_sample(dlq_sampler *s, const float *logits) {
    int V = s->V;
    if (s->temp <= 0) return dlq_argmax(logits, V);
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) { s->probs[i] = expf((logits[i] - mx) / s->temp); sum += s->probs[i]; }
    for (int i = 0; i < V; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float r = dlq_rng_f32(&s->rng);
    if (s->top_p <= 0 || s->top_p >= 1) {
        float cdf = 0;
        for (int i = 0; i < V; i++) { cdf += s->probs[i]; if (r < cdf) return i; }
        return V - 1;
    }
    /* nucleus: candidates with p >= (1-top_p)/(V-1) can be in the nucleus (llama2.c's cut) */
    int n = 0;
    float cutoff = (1.0f - s->top_p) / (float)(V - 1);
    for (int i = 0; i < V; i++)
        if (s->probs[i] >= cutoff) s->idx[n++] = i;
    qsort_r(s->idx, (size_t)n, sizeof *s->idx, cmp_desc, s->probs);
    float cum = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += s->probs[s->idx[i]];
        if (cum > s->top_p) { last = i; break; }
    }
    float x = r * cum, cdf = 0;
    for (int i = 0; i <= last; i++) { cdf += s->probs[s->idx[i]]; if (x < cdf) return s->idx[i]; }
    return s->idx[last];
}
