#include "eval/ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/forward.h"
#include "train/data.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Both text protocols: nc windows of ctx tokens from the start of the stream,
 * the first token of each replaced by bos when bos >= 0, positions first ..
 * ctx-2 scored; returns the sum of the scored NLLs in *total. */
static int ppl_windows(const dlq_model *m, const int32_t *tokens, int64_t nc, int ctx, int batch, int first, int32_t bos,
                       dlq_progress_fn progress, void *user, double *total, dlq_err *err) {
    if (batch > nc) batch = (int)nc;
    const int scored = ctx - 1 - first;
    dlq_state *s;
    int rc = dlq_state_create(&s, m, batch, ctx, ctx, err);
    if (rc) return rc;
    int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)batch * ctx * V * sizeof(float));
    int32_t *buf = malloc((size_t)batch * ctx * sizeof *buf);
    if (!logits || !buf) {
        free(logits);
        free(buf);
        dlq_state_destroy(s);
        return dlq_errf(err, DLQ_ENOMEM, "ppl: out of memory for logits");
    }
    double t0 = now_s(), sum = 0;
    for (int64_t c = 0; c < nc; c += batch) {
        int b = (int)(nc - c < batch ? nc - c : batch);
        memcpy(buf, tokens + c * ctx, (size_t)b * ctx * sizeof *buf);
        if (bos >= 0)
            for (int i = 0; i < b; i++) buf[(size_t)i * ctx] = bos;
        if ((rc = dlq_forward(m, s, buf, b, ctx, 0, logits, 0, err))) break;
        double part[b];
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < b; i++) /* mean over positions first .. ctx-2, back to a sum */
            part[i] = scored * dlq_nll_mean(logits + ((size_t)i * ctx + first) * V, buf + (size_t)i * ctx + first, ctx - first, V);
        for (int i = 0; i < b; i++) sum += part[i]; /* fixed order: reproducible */
        if (progress) progress(c + b, nc, now_s() - t0, user);
    }
    free(logits);
    free(buf);
    dlq_state_destroy(s);
    *total = sum;
    return rc;
}

int dlq_ppl_eval(const dlq_model *m, const int32_t *tokens, int64_t n, int ctx, int batch, int64_t max_windows,
                 dlq_progress_fn progress, void *user, dlq_ppl_result *res, dlq_err *err) {
    if (ctx < 2) return dlq_errf(err, DLQ_EINVAL, "ppl: context %d is too short (need >= 2)", ctx);
    if (batch < 1) batch = 1;
    int64_t nw = n / ctx;
    if (max_windows > 0 && nw > max_windows) nw = max_windows;
    if (nw < 1)
        return dlq_errf(err, DLQ_EINVAL, "ppl: the text has %lld tokens, fewer than one window of %d", (long long)n, ctx);
    double t0 = now_s(), total;
    int rc = ppl_windows(m, tokens, nw, ctx, batch, 0, -1, progress, user, &total, err);
    if (rc) return rc;
    /* every window scores ctx-1 tokens: the mean over tokens is the mean of the window means */
    res->nll = total / ((double)nw * (ctx - 1));
    res->ppl = exp(res->nll);
    res->tokens = nw * ctx;
    res->windows = nw;
    res->ctx = ctx;
    res->seconds = now_s() - t0;
    return DLQ_OK;
}

int dlq_ppl_eval_llamacpp(const dlq_model *m, const int32_t *tokens, int64_t n, int ctx, int batch, int64_t max_chunks,
                          int32_t bos, dlq_progress_fn progress, void *user, dlq_ppl_result *res, dlq_err *err) {
    if (ctx < 4) return dlq_errf(err, DLQ_EINVAL, "ppl: context %d is too short for llama.cpp's protocol (need >= 4)", ctx);
    if (n < 2 * (int64_t)ctx)
        return dlq_errf(err, DLQ_EINVAL, "ppl: llama.cpp's protocol needs at least %lld tokens for a context of %d; the text has %lld",
                        2 * (long long)ctx, ctx, (long long)n);
    if (batch < 1) batch = 1;
    int64_t nc = n / ctx;
    if (max_chunks > 0 && nc > max_chunks) nc = max_chunks;
    const int first = ctx / 2;
    double t0 = now_s(), total;
    int rc = ppl_windows(m, tokens, nc, ctx, batch, first, bos, progress, user, &total, err);
    if (rc) return rc;
    res->tokens = nc * (ctx - 1 - first);
    res->nll = total / (double)res->tokens;
    res->ppl = exp(res->nll);
    res->windows = nc;
    res->ctx = ctx;
    res->seconds = now_s() - t0;
    return DLQ_OK;
}

int dlq_ppl_eval_tokens(const dlq_model *m, const char *path, int batch, int64_t max_rows, dlq_progress_fn progress,
                        void *user, dlq_ppl_result *res, dlq_err *err) {
    int32_t *ids;
    uint64_t rows;
    uint32_t T;
    int rc = dlq_tokens_read(path, 0, (uint32_t)m->cfg.vocab_size, &ids, &rows, &T, NULL, err);
    if (rc) {
        /* headerless files need T: there is no sensible default for perplexity */
        return rc;
    }
    if (T < 2) {
        free(ids);
        return dlq_errf(err, DLQ_EINVAL, "%s: rows of %u token(s) have nothing to predict", path, T);
    }
    for (uint64_t i = 0; i < rows * T; i++)
        if (ids[i] >= m->cfg.vocab_size) {
            int32_t v = ids[i];
            free(ids);
            return dlq_errf(err, DLQ_EINVAL, "%s: id %d is outside the model's vocabulary of %d", path, v,
                            m->cfg.vocab_size);
        }
    rc = dlq_ppl_eval(m, ids, (int64_t)(rows * T), (int)T, batch, max_rows, progress, user, res, err);
    if (rc) dlq_err_prefix(err, path);
    free(ids);
    return rc;
}

int dlq_eval_val_nll(const dlq_model *m, const dlq_dataset *d, int B, int64_t max_batches, double *nll, int64_t *ntok,
                     dlq_err *err) {
    int T = dlq_data_T(d), V = m->cfg.vocab_size;
    int64_t nb = dlq_data_val_batches(d, B);
    if (max_batches > 0 && nb > max_batches) nb = max_batches;
    *nll = NAN;
    *ntok = 0;
    if (nb <= 0) return dlq_errf(err, DLQ_EINVAL, "no validation rows to evaluate (raise --val-fraction)");
    dlq_state *s;
    int rc = dlq_state_create(&s, m, B, T, T, err);
    if (rc) return rc;
    dlq_batch b;
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    if (!logits || (rc = dlq_batch_alloc(&b, B, T, err))) {
        free(logits);
        dlq_state_destroy(s);
        return rc ? rc : dlq_errf(err, DLQ_ENOMEM, "out of memory");
    }
    double total = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        if ((rc = dlq_data_val_batch(d, i, &b, err)) || (rc = dlq_forward(m, s, b.tokens, B, T, 0, logits, 0, err))) break;
        for (int64_t r = 0; r < (int64_t)B * T; r++) {
            int32_t t = b.targets[r];
            if (t < 0) continue;
            const float *l = logits + r * V;
            double mx = l[0], se = 0;
            for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
            for (int j = 0; j < V; j++) se += exp((double)l[j] - mx);
            total += mx + log(se) - l[t];
            n++;
        }
    }
    free(logits);
    dlq_batch_free(&b);
    dlq_state_destroy(s);
    if (rc) return rc;
    *nll = n ? total / (double)n : NAN;
    *ntok = n;
    return DLQ_OK;
}
