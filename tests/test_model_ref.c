/* Whole-model forward against reference dumps:
 *  - english-mix-7M (shipped) and english-mix-2M (../shared) vs their
 *    reference/ outputs from an independent PyTorch implementation,
 *  - tiny random Llama / Llama-3-rope / Mistral / Qwen2 models vs Hugging Face
 *    transformers (tests/fixtures/hf, scripts/gen_hf_fixtures.py),
 *  - stories260K (llama2.c, interleaved RoPE) vs a PyTorch port of llama2.c,
 *  - GGUF conversions of the tiny models (tests/fixtures/gguf).
 * Plus internal consistency: batch 2 == batch 1, KV-cache decode == full pass. */
#include <jansson.h>

#include "core/mapfile.h"
#include "model/forward.h"
#include "model/sampler.h"
#include "nn/nn.h"
#include "t.h"

static float *read_f32(const char *path, size_t expect, size_t *n_out) {
    dlq_mapfile mf;
    dlq_err err;
    if (dlq_mapfile_open(&mf, path, &err)) { fprintf(stderr, "%s\n", err.msg); return NULL; }
    size_t n = mf.size / 4;
    if (expect && n != expect) { fprintf(stderr, "%s: %zu floats, expected %zu\n", path, n, expect); dlq_mapfile_close(&mf); return NULL; }
    float *f = malloc(mf.size);
    memcpy(f, mf.data, mf.size);
    dlq_mapfile_close(&mf);
    if (n_out) *n_out = n;
    return f;
}

static int32_t *ids_of(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *v = malloc(*n * sizeof *v + 4);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return v;
}

static dlq_model *load(const char *path) {
    dlq_model *m = NULL;
    dlq_err err = {0};
    int rc = dlq_model_load(&m, path, NULL, &err);
    CHECK(rc == 0, "load %s: %s", path, err.msg);
    return rc ? NULL : m;
}

/* greedy decode with the KV cache, one token per call */
static void greedy(const dlq_model *m, const int32_t *prompt, size_t np, int n_new, int32_t *out) {
    dlq_state *s;
    dlq_err err;
    int V = m->cfg.vocab_size;
    float *lg = malloc((size_t)V * 4);
    if (dlq_state_create(&s, m, 1, (int)np, (int)np + n_new, &err)) { CHECK(0, "%s", err.msg); free(lg); return; }
    int rc = dlq_forward(m, s, prompt, 1, (int)np, 0, lg, 1, &err);
    for (int i = 0; i < n_new && !rc; i++) {
        out[i] = dlq_argmax(lg, V);
        if (i + 1 < n_new) rc = dlq_forward(m, s, &out[i], 1, 1, (int)np + i, lg, 1, &err);
    }
    CHECK(rc == 0, "decode: %s", err.msg);
    dlq_state_destroy(s);
    free(lg);
}

/* shipped english-mix reference: prompt logits, greedy ids, window loss */
static void check_english_mix(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/reference/reference.json", dir);
    json_t *r = json_load_file(p, 0, NULL);
    CHECK(r != NULL, "read %s", p);
    if (!r) return;
    dlq_model *m = load(dir);
    if (!m) { json_decref(r); return; }
    int V = m->cfg.vocab_size;
    size_t n, ng, nw;
    int32_t *ids = ids_of(json_object_get(r, "input_ids"), &n);
    int32_t *gids = ids_of(json_object_get(r, "greedy_ids"), &ng);
    int32_t *wids = ids_of(json_object_get(r, "val_window_ids"), &nw);
    snprintf(p, sizeof p, "%s/reference/prompt_logits.f32", dir);
    float *ref = read_f32(p, n * V, NULL), *lg = malloc(n * V * 4 > nw * V * 4 ? n * V * 4 : nw * V * 4);
    dlq_state *s;
    dlq_err err;
    CHECK(dlq_state_create(&s, m, 1, (int)nw, (int)nw, &err) == 0, "%s", err.msg);
    CHECK(dlq_forward(m, s, ids, 1, (int)n, 0, lg, 0, &err) == 0, "%s", err.msg);
    size_t worst = 0;
    double d = ref ? t_maxabs(lg, ref, n * V, &worst) : 1e9;
    CHECK(d <= 1e-3, "%s: prompt logits max abs error %.3g at token %zu id %zu", dir, d, worst / V, worst % V);
    printf("%s: prompt logits max abs error %.3g\n", dir, d);
    /* greedy continuation via the KV cache */
    int32_t *out = calloc(ng, sizeof *out);
    greedy(m, ids, n, (int)(ng - n), out);
    int same = 0;
    while (same < (int)(ng - n) && out[same] == gids[n + same]) same++;
    CHECK(same == (int)(ng - n), "%s: greedy ids diverge at new token %d (got %d, want %d)", dir, same, out[same], gids[n + same]);
    /* validation window loss */
    CHECK(dlq_forward(m, s, wids, 1, (int)nw, 0, lg, 0, &err) == 0, "%s", err.msg);
    double loss = dlq_nll_mean(lg, wids, (int)nw, V), want = json_number_value(json_object_get(r, "val_window_loss"));
    CHECK(fabs(loss - want) <= 1e-4, "%s: window loss %.7f, reference %.7f", dir, loss, want);
    printf("%s: window loss %.7f (reference %.7f)\n", dir, loss, want);
    dlq_state_destroy(s);
    free(ids); free(gids); free(wids); free(ref); free(lg); free(out);
    json_decref(r);
    dlq_model_destroy(m);
}

/* a fixture with ref.json {input_ids: [[..],[..]], logits, greedy_ids?} */
static void check_fixture(const char *model_path, const char *ref_json, double tol) {
    json_t *r = json_load_file(ref_json, 0, NULL);
    CHECK(r != NULL, "read %s", ref_json);
    if (!r) return;
    dlq_model *m = load(model_path);
    if (!m) { json_decref(r); return; }
    int V = m->cfg.vocab_size;
    json_t *in = json_object_get(r, "input_ids");
    int B = 1;
    size_t T;
    int32_t *ids;
    if (json_is_array(json_array_get(in, 0))) {
        B = (int)json_array_size(in);
        int32_t *row = ids_of(json_array_get(in, 0), &T);
        ids = malloc((size_t)B * T * 4);
        for (int b = 0; b < B; b++) {
            size_t t2;
            int32_t *rb = ids_of(json_array_get(in, b), &t2);
            memcpy(ids + b * T, rb, T * 4);
            free(rb);
        }
        free(row);
    } else ids = ids_of(in, &T);
    char p[1200];
    snprintf(p, sizeof p, "%s", ref_json);
    char *slash = strrchr(p, '/');
    snprintf(slash + 1, sizeof p - (size_t)(slash + 1 - p), "%s", json_string_value(json_object_get(r, "logits")));
    float *ref = read_f32(p, (size_t)B * T * V, NULL), *lg = malloc((size_t)B * T * V * 4), *lg1 = malloc(T * V * 4);
    dlq_state *s;
    dlq_err err;
    CHECK(dlq_state_create(&s, m, B, (int)T, (int)T, &err) == 0, "%s", err.msg);
    CHECK(dlq_forward(m, s, ids, B, (int)T, 0, lg, 0, &err) == 0, "%s", err.msg);
    size_t worst = 0;
    double d = ref ? t_maxabs(lg, ref, (size_t)B * T * V, &worst) : 1e9;
    CHECK(d <= tol, "%s: logits max abs error %.3g (tol %.0e) at row %zu id %zu", model_path, d, tol, worst / V, worst % V);
    printf("%-45s logits max abs error %.2e (B=%d, T=%zu)\n", model_path, d, B, T);
    /* batch consistency: the second sequence alone gives the same logits */
    if (B > 1) {
        CHECK(dlq_forward(m, s, ids + T, 1, (int)T, 0, lg1, 0, &err) == 0, "%s", err.msg);
        double e = t_maxabs(lg1, lg + T * V, T * V, NULL);
        CHECK(e <= 1e-5, "%s: batch 2 vs batch 1 differ by %.3g", model_path, e);
    }
    /* KV cache: prefix then one token at a time == full pass */
    {
        dlq_state *s2;
        CHECK(dlq_state_create(&s2, m, 1, (int)T, (int)T, &err) == 0, "%s", err.msg);
        int half = (int)T / 2, rc = dlq_forward(m, s2, ids, 1, half, 0, lg1, 0, &err);
        for (int t = half; t < (int)T && !rc; t++) rc = dlq_forward(m, s2, ids + t, 1, 1, t, lg1 + (size_t)t * V, 0, &err);
        CHECK(rc == 0, "%s", err.msg);
        double e = t_maxabs(lg1, lg, T * V, NULL);
        CHECK(e <= 1e-4, "%s: incremental decode differs from the full pass by %.3g", model_path, e);
        dlq_state_destroy(s2);
    }
    json_t *g = json_object_get(r, "greedy_ids");
    if (g) {
        size_t ng;
        int32_t *gids = ids_of(g, &ng), *out = calloc(ng, 4);
        size_t np = ng - (size_t)json_integer_value(json_object_get(r, "greedy_new_tokens"));
        greedy(m, gids, np, (int)(ng - np), out);
        int same = 0;
        while (same < (int)(ng - np) && out[same] == gids[np + same]) same++;
        CHECK(same == (int)(ng - np), "%s: greedy ids diverge at new token %d", model_path, same);
        free(gids); free(out);
    }
    dlq_state_destroy(s);
    free(ids); free(ref); free(lg); free(lg1);
    json_decref(r);
    dlq_model_destroy(m);
}

/* attention kernel vs its double-precision reference (GQA, window, pos0 > 0, T = 1) */
static void check_attention(void) {
    uint64_t seed = 42;
    dlq_rng rng;
    dlq_rng_seed(&rng, seed);
    int cases[][6] = {{5, 0, 4, 2, 8, 0}, {1, 7, 4, 1, 6, 0}, {9, 3, 6, 3, 4, 5}, {16, 0, 2, 2, 32, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int T = cases[c][0], pos0 = cases[c][1], nh = cases[c][2], nkv = cases[c][3], hd = cases[c][4], win = cases[c][5];
        int S = pos0 + T, ldkv = nkv * hd;
        float *q = malloc((size_t)T * nh * hd * 4), *k = malloc((size_t)S * ldkv * 4), *v = malloc((size_t)S * ldkv * 4);
        float *o1 = malloc((size_t)T * nh * hd * 4), *o2 = malloc((size_t)T * nh * hd * 4), *sc = malloc((size_t)T * S * 4);
        for (int i = 0; i < T * nh * hd; i++) q[i] = (float)dlq_rng_normal(&rng);
        for (int i = 0; i < S * ldkv; i++) { k[i] = (float)dlq_rng_normal(&rng); v[i] = (float)dlq_rng_normal(&rng); }
        dlq_attention_forward(o1, q, k, v, ldkv, T, pos0, nh, nkv, hd, win, sc);
        dlq_attention_ref(o2, q, k, v, ldkv, T, pos0, nh, nkv, hd, win);
        double e = t_maxabs(o1, o2, (size_t)T * nh * hd, NULL);
        CHECK(e < 1e-5, "attention case %zu (seed %llu): max abs error %.3g", c, (unsigned long long)seed, e);
        free(q); free(k); free(v); free(o1); free(o2); free(sc);
    }
}

int main(void) {
    check_attention();
    check_english_mix("models/english-mix-7M");
    const char *em2 = t_shared("models/english-mix-2M");
    if (em2) check_english_mix(em2);
    else SKIP("../shared/data/models/english-mix-2M not present");
    const char *hf[] = {"llama", "llama-tied", "llama3-rope", "mistral", "qwen2", "llama-bf16", "llama-f16-sharded"};
    for (size_t i = 0; i < sizeof hf / sizeof *hf; i++) {
        char d[256], r[300];
        snprintf(d, sizeof d, "tests/fixtures/hf/%s", hf[i]);
        snprintf(r, sizeof r, "%s/ref.json", d);
        if (!dlq_path_exists(r)) { SKIP("%s missing (scripts/gen_hf_fixtures.py)", r); continue; }
        check_fixture(d, r, 1e-4);
    }
    if (dlq_path_exists("tests/fixtures/llama2c/stories260K_ref.json"))
        check_fixture("models/stories260K/stories260K.bin", "tests/fixtures/llama2c/stories260K_ref.json", 1e-4);
    else SKIP("stories260K fixture missing");
    const char *gg[][2] = {{"tests/fixtures/gguf/llama-f32.gguf", "tests/fixtures/gguf/llama-f32_ref.json"},
                           {"tests/fixtures/gguf/llama-f16.gguf", "tests/fixtures/gguf/llama-f16_ref.json"},
                           {"tests/fixtures/gguf/qwen2-f32.gguf", "tests/fixtures/gguf/qwen2-f32_ref.json"}};
    for (size_t i = 0; i < sizeof gg / sizeof *gg; i++) {
        if (!dlq_path_exists(gg[i][0])) { SKIP("%s missing (scripts/gen_gguf_fixture.py)", gg[i][0]); continue; }
        check_fixture(gg[i][0], gg[i][1], 1e-4);
    }
    return T_DONE();
}
