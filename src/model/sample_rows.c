#include "model/sample_rows.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/forward.h"
#include "model/sampler.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the per-row stream: independent of batch composition */
static uint64_t row_seed(uint64_t seed, int64_t row) {
    uint64_t x = seed ^ 0x5851f42d4c957f2dull;
    uint64_t a = dlq_splitmix64(&x);
    x = a ^ (uint64_t)row;
    return dlq_splitmix64(&x);
}

int dlq_sample_rows(const dlq_model *m, const dlq_sample_opts *o, int32_t *out, dlq_progress_fn progress, void *user,
                    dlq_err *err) {
    int V = m->cfg.vocab_size, T = o->T;
    if (o->n < 1 || T < 2) return dlq_errf(err, DLQ_EINVAL, "sample: need n >= 1 rows of T >= 2 ids (got %lld x %d)",
                                           (long long)o->n, T);
    if (o->bos < 0 || o->bos >= V)
        return dlq_errf(err, DLQ_EINVAL, "sample: BOS id %d is outside the vocabulary [0, %d)", o->bos, V);
    if (!(o->temp >= 0) || !(o->top_p > 0 && o->top_p <= 1))
        return dlq_errf(err, DLQ_EINVAL, "sample: temperature %g must be >= 0 and top-p %g in (0, 1]", o->temp, o->top_p);
    int B = o->batch < 1 ? 1 : o->batch;
    if (B > o->n) B = (int)o->n;
    dlq_state *s;
    int rc = dlq_state_create(&s, m, B, 1, T, err);
    if (rc) return rc;
    s->rowwise = 1; /* a row must not depend on the batch it is sampled in */
    float *logits = malloc((size_t)B * V * sizeof(float));
    dlq_sampler *sm = calloc((size_t)B, sizeof *sm);
    int32_t *cur = malloc((size_t)B * sizeof *cur);
    int ns = 0;
    if (!logits || !sm || !cur) { rc = dlq_errf(err, DLQ_ENOMEM, "sample: out of memory"); goto done; }
    for (; ns < B; ns++)
        if ((rc = dlq_sampler_init(&sm[ns], V, o->temp, o->top_p, 0))) {
            rc = dlq_errf(err, DLQ_ENOMEM, "sample: out of memory for the sampler");
            goto done;
        }
    double t0 = now_s();
    for (int64_t r0 = 0; r0 < o->n; r0 += B) {
        int b = (int)(o->n - r0 < B ? o->n - r0 : B);
        for (int i = 0; i < b; i++) {
            dlq_rng_seed(&sm[i].rng, row_seed(o->seed, r0 + i));
            out[(r0 + i) * T] = cur[i] = o->bos;
        }
        for (int t = 0; t + 1 < T; t++) {
            if ((rc = dlq_forward(m, s, cur, b, 1, t, logits, 1, err))) goto done;
            for (int i = 0; i < b; i++) {
                const float *l = logits + (size_t)i * V;
                for (int j = 0; j < V; j++)
                    if (!(l[j] == l[j])) {
                        rc = dlq_errf(err, DLQ_EFORMAT, "sample: row %lld position %d: the model produced NaN logits (broken weights?)",
                                      (long long)(r0 + i), t + 1);
                        goto done;
                    }
                cur[i] = dlq_sample(&sm[i], l);
                out[(r0 + i) * T + t + 1] = cur[i];
            }
        }
        if (progress) progress(r0 + b, o->n, now_s() - t0, user);
    }
done:
    for (int i = 0; i < ns; i++) dlq_sampler_free(&sm[i]);
    free(sm);
    free(cur);
    free(logits);
    dlq_state_destroy(s);
    return rc;
}
