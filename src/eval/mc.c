/* Multiple-choice scoring with lm-eval 0.4.x semantics: request encoding
 * (_encode_pair), summed continuation log-probabilities, acc / acc_norm,
 * stderr. The forward pass of a context is shared by the requests that use
 * it: the context (minus its last token) runs once, batched with other
 * items' contexts; its KV cache is copied to one row per choice, and the
 * choices run together from the context's last token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/eval.h"
#include "model/forward.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double dlq_acc_stderr(double acc, int64_t n) {
    if (n < 2) return 0;
    double v = acc * (1 - acc) / (double)(n - 1);
    return v > 0 ? sqrt(v) : 0;
}

int dlq_mc_argmax(const dlq_mc_item *it, const double *ll, int norm) {
    int best = 0;
    double bv = -INFINITY;
    for (int i = 0; i < it->n; i++) {
        double v = ll[i];
        if (norm) v /= (double)dlq_utf8_len(it->choice[i]);
        if (i == 0 || v > bv) best = i, bv = v; /* first maximum, like numpy.argmax */
    }
    return best;
}

int dlq_mc_encode_pair(const dlq_tokenizer *t, const char *ctx, const char *cont, int32_t **ctx_ids, int *nctx,
                       int32_t **cont_ids, int *ncont, dlq_err *err) {
    *ctx_ids = *cont_ids = NULL;
    *nctx = *ncont = 0;
    size_t lc = strlen(ctx), lk = strlen(cont), ns = 0;
    int rc;
    if (lc == 0) {
        /* lm-eval: an empty context is the prefix token (BOS, else EOS) */
        int32_t p = dlq_tok_bos(t) >= 0 ? dlq_tok_bos(t) : dlq_tok_eos(t);
        if (p < 0) return dlq_errf(err, DLQ_EINVAL, "empty context and the tokenizer has neither BOS nor EOS");
        size_t n;
        if ((rc = dlq_tok_encode(t, cont, lk, 0, cont_ids, &n, err))) return rc;
        if (!(*ctx_ids = malloc(sizeof(int32_t)))) { free(*cont_ids); *cont_ids = NULL; return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
        (*ctx_ids)[0] = p;
        *nctx = 1;
        *ncont = (int)n;
        if (!n) goto empty;
        return DLQ_OK;
    }
    while (ns < lc) { /* trailing whitespace moves onto the continuation */
        char c = ctx[lc - 1 - ns];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') ns++;
        else break;
    }
    size_t cl = lc - ns;
    char *whole = malloc(lc + lk + 1);
    if (!whole) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    memcpy(whole, ctx, lc);
    memcpy(whole + lc, cont, lk + 1);
    int32_t *w = NULL, *c = NULL;
    size_t nw = 0, nc = 0;
    if ((rc = dlq_tok_encode(t, whole, lc + lk, -1, &w, &nw, err)) ||
        (rc = dlq_tok_encode(t, whole, cl, -1, &c, &nc, err))) {
        free(whole);
        free(w);
        return rc;
    }
    free(whole);
    if (nc == 0) { /* e.g. an all-whitespace context without BOS */
        int32_t p = dlq_tok_bos(t) >= 0 ? dlq_tok_bos(t) : dlq_tok_eos(t);
        c = realloc(c, sizeof(int32_t));
        if (!c) { free(w); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
        c[0] = p;
        nc = 1;
    }
    size_t k = nw > nc ? nw - nc : 0;
    int32_t *kk = malloc((k ? k : 1) * sizeof(int32_t));
    if (!kk) { free(w); free(c); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    if (k) memcpy(kk, w + nc, k * sizeof(int32_t));
    free(w);
    *ctx_ids = c, *nctx = (int)nc, *cont_ids = kk, *ncont = (int)k;
    if (!k) goto empty;
    return DLQ_OK;
empty:
    free(*ctx_ids);
    free(*cont_ids);
    *ctx_ids = *cont_ids = NULL;
    return dlq_errf(err, DLQ_EINVAL, "continuation \"%.40s\" adds no tokens to context \"...%.40s\"", cont,
                    lc > 40 ? ctx + lc - 40 : ctx);
}

/* one context with the requests that use it */
typedef struct unit {
    int item, first, nreq; /* requests first..first+nreq-1 of the flat list */
    int32_t *ctx;
    int nctx;
    int long_; /* does not fit: score each request alone, left-truncated */
} unit;

typedef struct req {
    int32_t *cont;
    int ncont;
} req;

/* sum of log-softmax(logits row)[tok] over rows, in double */
static double row_ll(const float *l, int V, int32_t tok) {
    double mx = l[0], se = 0;
    for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    for (int j = 0; j < V; j++) se += exp((double)l[j] - mx);
    return (double)l[tok] - (mx + log(se));
}

static int cmp_units(const void *a, const void *b) {
    const unit *x = *(unit *const *)a, *y = *(unit *const *)b;
    if (x->nctx != y->nctx) return x->nctx > y->nctx ? -1 : 1; /* longest first: less padding per batch */
    return x->first - y->first;
}

int dlq_mc_score(const dlq_model *m, const dlq_tokenizer *t, const dlq_mc_set *s, int batch, double *ll,
                 dlq_eval_progress_fn progress, void *user, dlq_err *err) {
    if (batch < 1) batch = 1;
    const int N = m->cfg.max_seq, V = m->cfg.vocab_size;
    int nreq = 0;
    for (int i = 0; i < s->n; i++) nreq += s->items[i].n;
    req *R = calloc((size_t)nreq, sizeof *R);
    unit *U = calloc((size_t)nreq, sizeof *U);
    unit **order = calloc((size_t)nreq, sizeof *order);
    dlq_state *A = NULL, *C = NULL, *L = NULL;
    float *logits = NULL;
    int32_t *tok = NULL;
    int nu = 0, rc = DLQ_OK;
    if (!R || !U || !order) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto done; }
    /* tokenize; consecutive requests of an item with the same context string form one unit */
    int k = 0;
    for (int i = 0; i < s->n && !rc; i++) {
        const dlq_mc_item *it = &s->items[i];
        for (int j = 0; j < it->n; j++, k++) {
            int32_t *cids;
            int nc;
            if ((rc = dlq_mc_encode_pair(t, it->ctx[j], it->cont[j], &cids, &nc, &R[k].cont, &R[k].ncont, err))) {
                dlq_err_prefix(err, "%s item %d choice %d", s->task, i, j);
                break;
            }
            if (R[k].ncont > N) {
                free(cids);
                rc = dlq_errf(err, DLQ_EINVAL, "%s item %d choice %d: continuation of %d tokens exceeds the context %d",
                              s->task, i, j, R[k].ncont, N);
                break;
            }
            if (j > 0 && !strcmp(it->ctx[j], it->ctx[j - 1])) { /* same context: same tokens */
                free(cids);
                U[nu - 1].nreq++;
            } else {
                U[nu] = (unit){.item = i, .first = k, .nreq = 1, .ctx = cids, .nctx = nc};
                nu++;
            }
        }
    }
    if (rc) goto done;
    int maxP = 1, maxK = 1, maxR = 1, any_long = 0;
    for (int u = 0; u < nu; u++) {
        int mk = 0;
        for (int r = 0; r < U[u].nreq; r++) mk = R[U[u].first + r].ncont > mk ? R[U[u].first + r].ncont : mk;
        U[u].long_ = U[u].nctx + mk - 1 > N;
        any_long |= U[u].long_;
        if (!U[u].long_) {
            maxP = U[u].nctx - 1 > maxP ? U[u].nctx - 1 : maxP;
            maxK = mk > maxK ? mk : maxK;
            maxR = U[u].nreq > maxR ? U[u].nreq : maxR;
        }
        order[u] = &U[u];
    }
    qsort(order, (size_t)nu, sizeof *order, cmp_units);
    int B = batch < nu ? batch : nu;
    if ((rc = dlq_state_create(&A, m, B, maxP, N, err)) || (rc = dlq_state_create(&C, m, maxR, maxK, N, err)) ||
        (any_long && (rc = dlq_state_create(&L, m, 1, N, N, err))))
        goto done;
    size_t lrows = (size_t)maxR * maxK > (size_t)(any_long ? N : 0) ? (size_t)maxR * maxK : (size_t)N;
    logits = malloc(lrows * V * sizeof(float));
    tok = malloc(((size_t)B * maxP > lrows ? (size_t)B * maxP : lrows) * sizeof(int32_t));
    if (!logits || !tok) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory for %zu x %d logits", lrows, V); goto done; }
    const int kvd = A->kv_dim, nl = m->cfg.n_layers;
    double t0 = now_s();
    for (int u0 = 0; u0 < nu && !rc; u0 += B) {
        int g = nu - u0 < B ? nu - u0 : B;
        /* 1. contexts minus their last token, right-padded, one batched pass */
        int T = 0;
        for (int r = 0; r < g; r++)
            if (!order[u0 + r]->long_ && order[u0 + r]->nctx - 1 > T) T = order[u0 + r]->nctx - 1;
        if (T > 0) {
            for (int r = 0; r < g; r++) {
                const unit *x = order[u0 + r];
                int n = x->long_ ? 0 : x->nctx - 1;
                for (int p = 0; p < T; p++) tok[(size_t)r * T + p] = p < n ? x->ctx[p] : x->ctx[0];
            }
            if ((rc = dlq_forward(m, A, tok, g, T, 0, NULL, 0, err))) break;
        }
        /* 2. each unit's choices from its context's last token */
        for (int r = 0; r < g && !rc; r++) {
            const unit *x = order[u0 + r];
            if (x->long_) {
                /* lm-eval: input = (ctx + cont)[-(N+1):][:-1], each request alone */
                for (int q = 0; q < x->nreq && !rc; q++) {
                    const req *y = &R[x->first + q];
                    int tot = x->nctx + y->ncont, drop = tot - (N + 1) > 0 ? tot - (N + 1) : 0, n = tot - drop - 1;
                    for (int p = 0; p < n; p++) {
                        int a = drop + p;
                        tok[p] = a < x->nctx ? x->ctx[a] : y->cont[a - x->nctx];
                    }
                    if ((rc = dlq_forward(m, L, tok, 1, n, 0, logits, 0, err))) break;
                    double sum = 0;
                    for (int j = 0; j < y->ncont; j++)
                        sum += row_ll(logits + (size_t)(n - y->ncont + j) * V, V, y->cont[j]);
                    ll[x->first + q] = sum;
                }
                continue;
            }
            int P = x->nctx - 1, K = 0;
            for (int q = 0; q < x->nreq; q++) K = R[x->first + q].ncont > K ? R[x->first + q].ncont : K;
            if (P > 0)
                for (int l = 0; l < nl; l++) {
                    const size_t src = (((size_t)l * A->B + r) * A->S) * kvd;
                    for (int q = 0; q < x->nreq; q++) {
                        const size_t dst = (((size_t)l * C->B + q) * C->S) * kvd;
                        memcpy(C->kcache + dst, A->kcache + src, (size_t)P * kvd * sizeof(float));
                        memcpy(C->vcache + dst, A->vcache + src, (size_t)P * kvd * sizeof(float));
                    }
                }
            for (int q = 0; q < x->nreq; q++) {
                const req *y = &R[x->first + q];
                int32_t *row = tok + (size_t)q * K;
                row[0] = x->ctx[P];
                for (int p = 1; p < K; p++) row[p] = p < y->ncont ? y->cont[p - 1] : x->ctx[P];
            }
            if ((rc = dlq_forward(m, C, tok, x->nreq, K, P, logits, 0, err))) break;
            for (int q = 0; q < x->nreq; q++) {
                const req *y = &R[x->first + q];
                double sum = 0;
                for (int j = 0; j < y->ncont; j++) sum += row_ll(logits + ((size_t)q * K + j) * V, V, y->cont[j]);
                ll[x->first + q] = sum;
            }
        }
        if (progress && !rc)
            progress(s->task, (int64_t)(u0 + g) * s->n / nu, s->n, now_s() - t0, user); /* floor: total only at the end */
    }
done:
    if (R)
        for (int i = 0; i < nreq; i++) free(R[i].cont);
    if (U)
        for (int u = 0; u < nu; u++) free(U[u].ctx);
    free(R);
    free(U);
    free(order);
    free(logits);
    free(tok);
    dlq_state_destroy(A);
    dlq_state_destroy(C);
    dlq_state_destroy(L);
    return rc;
}
