/* dlqat sample (data-free QAT data) and token files: sampling is reproducible
 * for a seed and different across seeds; greedy rows equal the argmax of a
 * full (cache-free) forward over the row, so batched KV-cache decoding is
 * right; tokens at temperature 1 follow the model's distribution; top-p never
 * leaves the nucleus; token files round-trip; ppl over token rows equals the
 * mean row NLL. Model: the shipped stories260K (llama2.c). */
#include <stdlib.h>
#include <string.h>

#include "eval/ppl.h"
#include "model/forward.h"
#include "model/sample_rows.h"
#include "quant/rtn_dlq.h"
#include "train/data.h"
#include "t.h"

static int32_t *sample(const dlq_model *m, int64_t n, int T, float temp, float top_p, uint64_t seed, int batch) {
    int32_t *ids = malloc((size_t)(n * T) * sizeof *ids);
    dlq_sample_opts o = {.n = n, .T = T, .temp = temp, .top_p = top_p, .seed = seed, .batch = batch, .bos = 1};
    dlq_err err = {0};
    int rc = dlq_sample_rows(m, &o, ids, NULL, NULL, &err);
    CHECK(rc == 0, "sample: %s", err.msg);
    if (rc) { free(ids); return NULL; }
    return ids;
}

/* softmax of the logits after `prefix` (full forward, no cache reuse) */
static void next_probs(const dlq_model *m, const int32_t *prefix, int n, double *p) {
    int V = m->cfg.vocab_size;
    dlq_state *s;
    dlq_err err;
    float *lg = malloc((size_t)n * V * sizeof(float));
    if (dlq_state_create(&s, m, 1, n, n, &err) || dlq_forward(m, s, prefix, 1, n, 0, lg, 0, &err)) {
        CHECK(0, "forward: %s", err.msg);
        free(lg);
        return;
    }
    const float *l = lg + (size_t)(n - 1) * V;
    double mx = l[0], z = 0;
    for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
    for (int j = 0; j < V; j++) z += p[j] = exp(l[j] - mx);
    for (int j = 0; j < V; j++) p[j] /= z;
    dlq_state_destroy(s);
    free(lg);
}

int main(void) {
    dlq_model *m;
    dlq_err err = {0};
    if (dlq_model_load(&m, "models/stories260K/stories260K.bin", NULL, &err)) { CHECK(0, "%s", err.msg); return T_DONE(); }
    int V = m->cfg.vocab_size, T = 24;

    /* reproducible for a seed, different across seeds */
    int32_t *a = sample(m, 5, T, 1.0f, 1.0f, 42, 5), *b = sample(m, 5, T, 1.0f, 1.0f, 42, 5),
            *c = sample(m, 5, T, 1.0f, 1.0f, 43, 5);
    if (!a || !b || !c) return T_DONE();
    CHECK(!memcmp(a, b, 5 * T * 4), "same seed gave different rows");
    CHECK(memcmp(a, c, 5 * T * 4) != 0, "seeds 42 and 43 gave the same rows");
    int bos_ok = 1, in_vocab = 1;
    for (int r = 0; r < 5; r++) bos_ok &= a[r * T] == 1;
    for (int i = 0; i < 5 * T; i++) in_vocab &= a[i] >= 0 && a[i] < V;
    CHECK(bos_ok && in_vocab, "rows start with BOS and stay in the vocabulary");
    /* rows are seeded per row and the decode arithmetic is per row
     * (dlq_state.rowwise): a row is bit for bit the same whatever batch it
     * falls in, on every ISA and BLAS kernel (batches of 1..7 hit both the
     * <= 4 and the sgemm sizes of dlq_linear) */
    int batches[] = {1, 2, 3, 4, 7};
    for (size_t k = 0; k < sizeof batches / sizeof *batches; k++) {
        int32_t *d = sample(m, 5, T, 1.0f, 1.0f, 42, batches[k]);
        int same = 0;
        for (int r = 0; r < 5 && d; r++) same += !memcmp(a + r * T, d + r * T, (size_t)T * 4);
        CHECK(same == 5, "batch 5 vs batch %d: only %d of 5 rows equal", batches[k], same);
        free(d);
    }
    /* the same on packed low-bit weights (the int8-activation decode kernels) */
    {
        const char *qp = "build/tests/sample_w4.dlq";
        dlq_rtn_opts ro = {.bits = 4, .group = 32, .param_dtype = DLQ_F16};
        dlq_model *qm = NULL;
        if (dlq_quant_rtn_to_dlq(m, qp, &ro, NULL, &err) || dlq_model_load(&qm, qp, NULL, &err)) {
            CHECK(0, "W4 model: %s", err.msg);
        } else {
            int32_t *q5 = sample(qm, 6, T, 1.0f, 1.0f, 42, 6), *q1 = sample(qm, 6, T, 1.0f, 1.0f, 42, 1),
                    *q4 = sample(qm, 6, T, 1.0f, 1.0f, 42, 4);
            CHECK(q5 && q1 && q4 && !memcmp(q5, q1, 6 * T * 4) && !memcmp(q5, q4, 6 * T * 4),
                  "W4 .dlq: rows depend on the batch (6 vs 1 vs 4)");
            free(q5); free(q1); free(q4);
            dlq_model_destroy(qm);
        }
        remove(qp);
    }
    free(b); free(c);

    /* greedy: every token is the argmax of a full forward over the row so far */
    int32_t *g = sample(m, 3, T, 0.0f, 1.0f, 7, 3);
    double *p = malloc((size_t)V * sizeof *p);
    int greedy_ok = 1;
    for (int t = 1; t < T && g; t++) {
        next_probs(m, g, t, p);
        int best = 0;
        for (int j = 1; j < V; j++) if (p[j] > p[best]) best = j;
        greedy_ok &= g[t] == best && g[T + t] == g[t] && g[2 * T + t] == g[t];
    }
    CHECK(greedy_ok, "greedy rows differ from the argmax of a cache-free forward");
    free(g);

    /* temperature 1: the first sampled token follows softmax(logits | BOS).
     * 4000 draws over the model's distribution: total-variation distance of
     * the empirical histogram; its expectation is about
     * sum_j sqrt(p_j (1-p_j) / (2 pi n)) (about 0.04 here), a wrong
     * temperature or an off-by-one position gives > 0.3. */
    int n = 4000;
    int32_t *s1 = sample(m, n, 2, 1.0f, 1.0f, 11, 500);
    int32_t bos = 1;
    next_probs(m, &bos, 1, p);
    double *h = calloc((size_t)V, sizeof *h), tv = 0, expect = 0;
    for (int r = 0; r < n && s1; r++) h[s1[r * 2 + 1]] += 1.0 / n;
    for (int j = 0; j < V; j++) {
        tv += 0.5 * fabs(h[j] - p[j]);
        expect += 0.5 * sqrt(p[j] * (1 - p[j]) * 2 / (3.14159265358979 * n));
    }
    CHECK(tv < 2.5 * expect + 0.01, "first-token distribution: total variation %.4f (expected about %.4f)", tv, expect);
    printf("temperature 1: total variation %.4f vs expected %.4f over %d draws\n", tv, expect, n);
    free(s1);

    /* top-p 0.5: only tokens of the nucleus (smallest set with mass >= 0.5) */
    int32_t *s2 = sample(m, 400, 2, 1.0f, 0.5f, 12, 100);
    int *rank = malloc((size_t)V * sizeof *rank);
    for (int j = 0; j < V; j++) {
        rank[j] = 0;
        for (int k = 0; k < V; k++) rank[j] += p[k] > p[j];
    }
    double mass_above = 0;
    int bad = 0;
    for (int r = 0; r < 400 && s2; r++) {
        int tkn = s2[r * 2 + 1];
        mass_above = 0;
        for (int k = 0; k < V; k++) if (p[k] > p[tkn]) mass_above += p[k];
        bad += mass_above >= 0.5 + 1e-6; /* a token is in the nucleus iff the mass ranked above it is < p */
    }
    CHECK(bad == 0, "top-p 0.5: %d of 400 tokens outside the nucleus", bad);
    free(s2); free(rank); free(h);

    /* token file round trip, header and headerless */
    const char *path = "build/tests/sample_rt.tok";
    CHECK(dlq_tokens_write(path, a, 5, (uint32_t)T, (uint32_t)V, &err) == 0, "write: %s", err.msg);
    int32_t *back;
    uint64_t rows;
    uint32_t bt, bv;
    CHECK(dlq_tokens_read(path, 0, 0, &back, &rows, &bt, &bv, &err) == 0, "read: %s", err.msg);
    CHECK(rows == 5 && bt == (uint32_t)T && bv == (uint32_t)V && !memcmp(back, a, 5 * T * 4), "token file round trip");
    free(back);
    CHECK(dlq_tokens_read(path, T + 1, 0, &back, &rows, &bt, &bv, &err) != 0 && strstr(err.msg, "requested"),
          "wrong T is rejected: %s", err.msg);
    CHECK(dlq_tokens_read(path, 0, 100, &back, &rows, &bt, &bv, &err) != 0 && strstr(err.msg, "vocab"),
          "a vocabulary smaller than the file's is rejected: %s", err.msg);
    FILE *f = fopen("build/tests/sample_raw.bin", "wb");
    fwrite(a, 4, (size_t)(5 * T), f); /* little-endian host */
    fclose(f);
    CHECK(dlq_tokens_read("build/tests/sample_raw.bin", T, (uint32_t)V, &back, &rows, &bt, &bv, &err) == 0 && rows == 5 &&
              !memcmp(back, a, 5 * T * 4), "headerless round trip: %s", err.msg);
    free(back);
    CHECK(dlq_tokens_read("build/tests/sample_raw.bin", 0, 0, &back, &rows, &bt, &bv, &err) != 0 &&
              strstr(err.msg, "needs T"), "headerless without T: %s", err.msg);

    /* ppl over token rows = exp(mean over rows of the row NLL) */
    dlq_ppl_result r;
    CHECK(dlq_ppl_eval_tokens(m, path, 2, 0, NULL, NULL, &r, &err) == 0, "ppl tokens: %s", err.msg);
    double want = 0;
    float *lg = malloc((size_t)T * V * sizeof(float));
    dlq_state *s;
    dlq_state_create(&s, m, 1, T, T, &err);
    for (int row = 0; row < 5; row++) {
        dlq_forward(m, s, a + row * T, 1, T, 0, lg, 0, &err);
        want += dlq_nll_mean(lg, a + row * T, T, V) / 5;
    }
    CHECK(fabs(r.nll - want) < 1e-6 && r.windows == 5 && r.ctx == T, "ppl tokens nll %.9f vs %.9f", r.nll, want);
    dlq_state_destroy(s);
    free(lg);
    /* ids outside the model's vocabulary are rejected with the file named */
    int32_t big[4] = {1, 2, 600, 3};
    dlq_tokens_write("build/tests/sample_big.tok", big, 1, 4, 1000, &err);
    CHECK(dlq_ppl_eval_tokens(m, "build/tests/sample_big.tok", 1, 0, NULL, NULL, &r, &err) != 0 &&
              strstr(err.msg, "sample_big.tok"), "out-of-vocabulary file: %s", err.msg);

    /* bad options */
    dlq_sample_opts bo = {.n = 1, .T = 4, .temp = 1, .top_p = 1, .bos = V};
    CHECK(dlq_sample_rows(m, &bo, big, NULL, NULL, &err) != 0 && strstr(err.msg, "BOS"), "bad BOS: %s", err.msg);
    free(a);
    free(p);
    dlq_model_destroy(m);
    return T_DONE();
}
