#include "eval/ppl.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "model/forward.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dlq_ppl_eval(const dlq_model *m, const int32_t *tokens, int64_t n, int ctx, int batch, int64_t max_windows,
                 dlq_progress_fn progress, void *user, dlq_ppl_result *res, dlq_err *err) {
    if (ctx < 2) return dlq_errf(err, DLQ_EINVAL, "ppl: context %d is too short (need >= 2)", ctx);
    if (batch < 1) batch = 1;
    int64_t nw = n / ctx;
    if (max_windows > 0 && nw > max_windows) nw = max_windows;
    if (nw < 1)
        return dlq_errf(err, DLQ_EINVAL, "ppl: the text has %lld tokens, fewer than one window of %d", (long long)n, ctx);
    if (batch > nw) batch = (int)nw;
    dlq_state *s;
    int rc = dlq_state_create(&s, m, batch, ctx, ctx, err);
    if (rc) return rc;
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)batch * ctx * V * sizeof(float));
    if (!logits) { dlq_state_destroy(s); return dlq_errf(err, DLQ_ENOMEM, "ppl: out of memory for logits"); }
    double t0 = now_s(), total = 0;
    for (int64_t w = 0; w < nw; w += batch) {
        int b = (int)(nw - w < batch ? nw - w : batch);
        if ((rc = dlq_forward(m, s, tokens + w * ctx, b, ctx, 0, logits, 0, err))) break;
        double part[b];
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < b; i++)
            part[i] = dlq_nll_mean(logits + (size_t)i * ctx * V, tokens + (w + i) * ctx, ctx, V);
        for (int i = 0; i < b; i++) total += part[i]; /* fixed order: reproducible */
        if (progress) progress(w + b, nw, now_s() - t0, user);
    }
    free(logits);
    dlq_state_destroy(s);
    if (rc) return rc;
    res->nll = total / (double)nw;
    res->ppl = exp(res->nll);
    res->tokens = nw * ctx;
    res->windows = nw;
    res->ctx = ctx;
    res->seconds = now_s() - t0;
    return DLQ_OK;
}
