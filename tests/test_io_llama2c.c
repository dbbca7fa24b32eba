/* llama2.c checkpoint reader: the shipped stories260K (Karpathy's original,
 * with its 512-token tokenizer found beside it: the greedy sample of its model
 * card, token for token), synthetic files (shared and unshared classifier),
 * header validation, and fuzz-style truncation / mutation robustness. */
#include "io/llama2c.h"

#include <stdint.h>

#include <jansson.h>

#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "t.h"

#define STORIES "models/stories260K/stories260K.bin"

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float at(const float *p, size_t i) {
    float f;
    memcpy(&f, (const uint8_t *)p + 4 * i, 4);
    return f;
}

/* the temperature-0 sample of the model card (models/stories260K/stories260K.md) */
static char *card_sample(void) {
    FILE *f = fopen("models/stories260K/stories260K.md", "rb");
    if (!f) return NULL;
    static char md[1 << 14];
    size_t n = fread(md, 1, sizeof md - 1, f);
    fclose(f);
    md[n] = 0;
    char *a = strstr(md, "-t 0.0\n"), *b = a ? strstr(a, "```") : NULL;
    if (!b) return NULL;
    a += strlen("-t 0.0\n");
    while (b > a && b[-1] == '\n') b--;
    *b = 0;
    return a;
}

/* "Once upon a time", greedy, 256 positions (llama2.c's run -t 0.0): the model card's text, and
 * the ids of the PyTorch reference (tests/fixtures/llama2c, prompt encoded by python sentencepiece) */
static void test_greedy_sample(void) {
    dlq_model *m = NULL;
    dlq_err e = {0};
    if (dlq_model_load(&m, STORIES, NULL, &e)) { CHECK(0, "load: %s", e.msg); return; }
    CHECK(m->tok != NULL && dlq_tok_vocab_size(m->tok) == 512, "tok512.bin found beside the checkpoint");
    json_t *r = json_load_file("tests/fixtures/llama2c/stories260K_ref.json", 0, NULL);
    json_t *pj = json_object_get(r, "prompt_ids"), *gj = json_object_get(r, "greedy_ids");
    const char *want = card_sample();
    if (!m->tok || !r || !want) {
        CHECK(0, "tokenizer, fixture or model card missing");
        json_decref(r);
        dlq_model_destroy(m);
        return;
    }
    int32_t *ids = NULL;
    size_t np = 0;
    CHECK(dlq_tok_encode(m->tok, "Once upon a time", 16, 1, &ids, &np, &e) == 0, "encode: %s", e.msg);
    int same_prompt = np == json_array_size(pj);
    for (size_t i = 0; same_prompt && i < np; i++) same_prompt = ids[i] == json_integer_value(json_array_get(pj, i));
    CHECK(same_prompt, "prompt ids differ from sentencepiece's");
    const int N = 257; /* BOS + 256 */
    int32_t *g = calloc(N, sizeof *g);
    float *lg = malloc((size_t)np * 512 * sizeof *lg);
    dlq_state *s = NULL;
    int rc = ids && g && lg ? dlq_state_create(&s, m, 1, (int)np, N, &e) : -1;
    if (!rc) {
        memcpy(g, ids, np * sizeof *g);
        rc = dlq_forward(m, s, g, 1, (int)np, 0, lg, 1, &e);
        for (int t = (int)np; t < N && !rc; t++) {
            int best = 0;
            for (int j = 1; j < 512; j++) best = lg[j] > lg[best] ? j : best;
            g[t] = best;
            if (t + 1 < N) rc = dlq_forward(m, s, g + t, 1, 1, t, lg, 1, &e);
        }
    }
    CHECK(rc == 0, "greedy decode: %s", e.msg);
    int same = 0;
    while (same < N && (size_t)same < json_array_size(gj) && g[same] == json_integer_value(json_array_get(gj, same))) same++;
    CHECK(same == N && json_array_size(gj) == (size_t)N, "greedy ids equal the PyTorch reference's for %d of %d", same, N);
    char *text = NULL;
    size_t tl = 0;
    CHECK(dlq_tok_decode(m->tok, g, N, &text, &tl, &e) == 0, "decode: %s", e.msg);
    CHECK(text && !strcmp(text, want), "greedy text differs from the model card's:\n%s\n---\n%s", text ? text : "", want);
    if (text && !strcmp(text, want)) printf("greedy sample of the model card reproduced (%d ids, %zu bytes)\n", N, tl);
    free(text); free(ids); free(g); free(lg);
    dlq_state_destroy(s);
    json_decref(r);
    dlq_model_destroy(m);
}

static void test_stories(void) {
    const char *path = STORIES;
    dlq_llama2c m;
    dlq_err e = {0};
    int rc = dlq_llama2c_open(&m, path, &e);
    CHECK(rc == 0, "open %s: %s", path, e.msg);
    if (rc) return;
    CHECK(m.dim == 64 && m.hidden_dim == 172 && m.n_layers == 5 && m.n_heads == 8 && m.n_kv_heads == 4 &&
              m.vocab_size == 512 && m.seq_len == 512 && m.shared_classifier && m.wcls == m.tok_emb,
          "header %d %d %d %d %d %d %d shared %d", m.dim, m.hidden_dim, m.n_layers, m.n_heads, m.n_kv_heads,
          m.vocab_size, m.seq_len, m.shared_classifier);
    /* values from numpy: np.frombuffer(d[28:], np.float32) */
    CHECK(at(m.tok_emb, 0) == -0.29474878311157227f && at(m.tok_emb, 1) == 0.5618956089019775f &&
              at(m.tok_emb, 2) == 0.1754225343465805f,
          "tok_emb values");
    CHECK(at(m.rms_att, 0) == 0.9722429513931274f && at(m.rms_att, 1) == 0.6754933595657349f, "rms_att values");
    /* layout: the last tensor (freq_cis_imag) ends at the file end */
    const uint8_t *end = m.file.data + m.file.size;
    size_t freq = 512 * 8 / 2;
    CHECK((const uint8_t *)(m.rms_final + 64 + 2 * freq) == end, "layout ends at file end");
    CHECK(m.wk == m.wq + 5 * 64 * 64 && m.wv == m.wk + 5 * 32 * 64 && m.w2 == m.w1 + 5 * 172 * 64, "offsets");
    float last;
    memcpy(&last, end - 4, 4);
    CHECK(last == 0.4890497922897339f, "last value %g", last);
    dlq_llama2c_close(&m);
}

/* builds a checkpoint image: floats are their own index (as float) */
static uint8_t *mk(const int32_t h[7], int with_wcls, size_t *size, size_t *nfloat) {
    int64_t D = h[0], H = h[1], L = h[2], nh = h[3], nkv = h[4], V = h[5] < 0 ? -(int64_t)h[5] : h[5], S = h[6];
    int64_t hd = D / nh, KV = hd * nkv;
    int64_t n = V * D + L * D * 2 + L * D * D * 2 + L * KV * D * 2 + L * H * D * 3 + D + S * hd + (with_wcls ? V * D : 0);
    *nfloat = (size_t)n;
    *size = 28 + 4 * (size_t)n;
    uint8_t *p = malloc(*size);
    memcpy(p, h, 28);
    for (int64_t i = 0; i < n; i++) {
        float f = (float)i;
        memcpy(p + 28 + 4 * i, &f, 4);
    }
    return p;
}

static void test_synthetic(void) {
    const int32_t h[7] = {16, 40, 2, 4, 2, -10, 8}; /* negative vocab: unshared classifier */
    size_t size, nf;
    uint8_t *img = mk(h, 1, &size, &nf);
    dlq_llama2c m;
    dlq_err e = {0};
    int rc = dlq_llama2c_parse(&m, img, size, "syn.bin", &e);
    CHECK(rc == 0, "parse: %s", e.msg);
    if (rc == 0) {
        CHECK(m.vocab_size == 10 && !m.shared_classifier && m.wcls != m.tok_emb, "unshared");
        CHECK(at(m.wcls, 0) == (float)(nf - 160) && at(m.wcls, 159) == (float)(nf - 1), "wcls at the end");
        CHECK(at(m.rms_att, 0) == 160.0f, "rms_att after tok_emb");
        int64_t kv = 4 * 2;
        CHECK(at(m.wv, 0) == (float)(160 + 32 + 2 * 256 + 2 * kv * 16), "wv offset %g", at(m.wv, 0));
    }
    /* the same bytes with a positive vocab: size matches the unshared layout -> helpful error */
    int32_t hp[7];
    memcpy(hp, h, 28);
    hp[5] = 10;
    memcpy(img, hp, 28);
    rc = dlq_llama2c_parse(&m, img, size, "syn.bin", &e);
    CHECK(rc == DLQ_EFORMAT && strstr(e.msg, "vocab_size should be negative"), "%s", e.msg);
    free(img);
    img = mk(hp, 0, &size, &nf);
    rc = dlq_llama2c_parse(&m, img, size, "syn.bin", &e);
    CHECK(rc == 0 && m.shared_classifier && m.wcls == m.tok_emb, "shared: %s", e.msg);
    CHECK(dlq_llama2c_parse(&m, img, size - 4, "syn.bin", &e) == DLQ_EFORMAT && strstr(e.msg, "needs exactly"),
          "short: %s", e.msg);
    /* header validation */
    struct { int idx; int32_t v; const char *needle; } cases[] = {
        {0, 0, "dim"},       {1, -1, "hidden_dim"}, {2, 0, "n_layers"}, {3, 3, "multiple of n_heads"},
        {4, 3, "n_kv_heads"}, {4, 8, "n_kv_heads"}, {5, 0, "vocab_size"}, {5, INT32_MIN, "vocab_size"},
        {6, -5, "seq_len"},  {3, 16, "odd"},        {0, INT32_MAX, "dim"}, {1, INT32_MAX, "needs exactly"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t hh[7];
        memcpy(hh, hp, 28);
        hh[cases[i].idx] = cases[i].v;
        memcpy(img, hh, 28);
        rc = dlq_llama2c_parse(&m, img, size, "syn.bin", &e);
        CHECK(rc == DLQ_EFORMAT && strstr(e.msg, cases[i].needle) && strstr(e.msg, "syn.bin"),
              "case %zu: rc %d '%s'", i, rc, e.msg);
    }
    /* huge dims: every product overflows 64 bits without crashing */
    int32_t big[7] = {INT32_MAX - 1, INT32_MAX, INT32_MAX, 2, 1, -INT32_MAX, INT32_MAX};
    memcpy(img, big, 28);
    rc = dlq_llama2c_parse(&m, img, size, "syn.bin", &e);
    CHECK(rc == DLQ_EFORMAT, "big: %s", e.msg);
    free(img);
}

static size_t n_ok, n_err;

static void parse_one(const uint8_t *src, size_t len, unsigned long long tag) {
    uint8_t *b = malloc(len ? len : 1);
    memcpy(b, src, len);
    dlq_llama2c m;
    dlq_err e = {0};
    int rc = dlq_llama2c_parse(&m, b, len, "fuzz", &e);
    if (rc == 0) {
        n_ok++;
        const uint8_t *hi = (const uint8_t *)(m.wcls + (size_t)m.vocab_size * (size_t)m.dim);
        if ((const uint8_t *)m.tok_emb != b + 28 || hi > b + len) CHECK(0, "fuzz %llu: layout outside buffer", tag);
    } else {
        n_err++;
        if (!e.msg[0]) CHECK(0, "fuzz %llu: error without message", tag);
    }
    free(b);
}

int main(void) {
    uint64_t seed = 0x11a3a2cull;
    if (getenv("DLQ_SEED")) seed = strtoull(getenv("DLQ_SEED"), NULL, 0);
    printf("test_io_llama2c: seed 0x%llx (set DLQ_SEED to change)\n", (unsigned long long)seed);
    rng_state = seed;
    test_stories();
    test_greedy_sample();
    test_synthetic();
    const int32_t h[7] = {8, 12, 1, 2, 1, -6, 4};
    size_t size, nf;
    uint8_t *img = mk(h, 1, &size, &nf);
    for (size_t L = 0; L <= size; L++) parse_one(img, L, L);
    for (int i = 0; i < 3000; i++) {
        uint8_t *m = malloc(size);
        memcpy(m, img, size);
        int k = 1 + (int)(rnd() % 3);
        for (int j = 0; j < k; j++) {
            size_t pos = (size_t)(rnd() % 28);
            switch (rnd() % 3) {
            case 0: m[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: m[pos] = (uint8_t)rnd(); break;
            default: m[pos] = (uint8_t)(rnd() % 16); break;
            }
        }
        parse_one(m, size, (unsigned long long)i);
        free(m);
    }
    free(img);
    const char *st = STORIES;
    dlq_mapfile mf;
    dlq_err e = {0};
    if (st && dlq_mapfile_open(&mf, st, &e) == 0) {
        for (size_t L = 0; L <= 64; L++) parse_one(mf.data, L, L);
        for (int i = 0; i < 40; i++) parse_one(mf.data, 64 + (size_t)(rnd() % (mf.size - 64)), (unsigned long long)i);
        uint8_t *m = malloc(mf.size);
        for (int i = 0; i < 300; i++) {
            memcpy(m, mf.data, 28); /* only the header changes between iterations */
            if (i == 0) memcpy(m, mf.data, mf.size);
            m[rnd() % 28] ^= (uint8_t)(1u << (rnd() % 8));
            if (rnd() % 2) m[rnd() % 28] = (uint8_t)rnd();
            dlq_llama2c mm;
            int rc = dlq_llama2c_parse(&mm, m, mf.size, "stories-fuzz", &e);
            if (rc == 0) n_ok++;
            else { n_err++; if (!e.msg[0]) CHECK(0, "stories fuzz %d: no message", i); }
        }
        free(m);
        dlq_mapfile_close(&mf);
    }
    printf("fuzz: %zu parsed, %zu rejected\n", n_ok, n_err);
    CHECK(n_ok > 0 && n_err > 0, "fuzz outcomes");
    return T_DONE();
}
