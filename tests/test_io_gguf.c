/* GGUF reader/writer: real vocab-only files from ../shared, a writer->reader
 * round trip of every metadata type and F32/F16/BF16/Q8_0 tensors,
 * fuzz-style truncation / mutation robustness, the K-quant / IQ4 decoders
 * against gguf-py (tests/fixtures/ggml, bit for bit) and a model GGUF whose
 * weights are all of those types through the model loader. */
#include "io/gguf.h"

#include <stdint.h>

#include "core/dtype.h"
#include "core/mapfile.h"
#include "io/ggml_quant.h"
#include "model/model.h"
#include "t.h"

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int streq(dlq_gguf_str s, const char *c) { return s.ptr && s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0; }

static void test_vocab(void) {
    const char *spm = t_shared("models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    const char *gpt = t_shared("models/gguf-vocab/ggml-vocab-gpt-2.gguf");
    if (!spm || !gpt) {
        SKIP("../shared/data/models/gguf-vocab absent");
        return;
    }
    dlq_gguf g;
    dlq_err e = {0};
    int rc = dlq_gguf_open(&g, spm, &e);
    CHECK(rc == 0, "open %s: %s", spm, e.msg);
    if (rc == 0) {
        CHECK(g.version == 3 && g.n_tensors == 0 && g.n_kv == 22, "v%u %llu tensors %llu kv", g.version,
              (unsigned long long)g.n_tensors, (unsigned long long)g.n_kv);
        dlq_gguf_str s;
        CHECK(dlq_gguf_get_str(&g, "general.architecture", &s, &e) == 0 && streq(s, "llama"), "arch %s", e.msg);
        const dlq_gguf_kv *tok = dlq_gguf_find(&g, "tokenizer.ggml.tokens");
        CHECK(tok && tok->type == DLQ_GGUF_ARRAY && tok->arr_type == DLQ_GGUF_STRING && tok->arr_n == 32000,
              "tokens kv");
        CHECK(streq(dlq_gguf_arr_str(tok, 0), "<unk>") && streq(dlq_gguf_arr_str(tok, 1), "<s>") &&
                  streq(dlq_gguf_arr_str(tok, 2), "</s>") && streq(dlq_gguf_arr_str(tok, 31999), "\xe7\xbb\x99"),
              "token strings");
        CHECK(dlq_gguf_arr_str(tok, 32000).ptr == NULL, "out of range string");
        const dlq_gguf_kv *sc = dlq_gguf_find(&g, "tokenizer.ggml.scores");
        CHECK(sc && sc->arr_n == 32000 && dlq_gguf_arr_f32(sc, 0) == 0.0f && dlq_gguf_arr_f32(sc, 31999) == -31740.0f,
              "scores");
        const dlq_gguf_kv *tt = dlq_gguf_find(&g, "tokenizer.ggml.token_type");
        CHECK(tt && tt->arr_n == 32000 && dlq_gguf_arr_int(tt, 0) == 2 && dlq_gguf_arr_int(tt, 1) == 3 &&
                  dlq_gguf_arr_int(tt, 31999) == 1,
              "token types");
        uint32_t bos = 9, eos = 9;
        CHECK(dlq_gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &bos, &e) == 0 && bos == 1, "bos %u", bos);
        CHECK(dlq_gguf_get_u32(&g, "tokenizer.ggml.eos_token_id", &eos, &e) == 0 && eos == 2, "eos %u", eos);
        int b = -1;
        CHECK(dlq_gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &b, &e) == 0 && b == 1, "add_bos");
        float eps = 0;
        CHECK(dlq_gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &eps, &e) == 0 && eps == 1e-5f, "eps");
        int64_t v = 0;
        CHECK(dlq_gguf_get_i64(&g, "llama.vocab_size", &v, &e) == 0 && v == 32000, "vocab_size");
        CHECK(dlq_gguf_get_u32(&g, "general.architecture", &bos, &e) == DLQ_EFORMAT &&
                  strstr(e.msg, "general.architecture"),
              "type mismatch message: %s", e.msg);
        CHECK(dlq_gguf_get_u32(&g, "no.such.key", &bos, &e) == DLQ_EFORMAT && strstr(e.msg, "no.such.key"),
              "missing key message: %s", e.msg);
        dlq_gguf_close(&g);
    }
    rc = dlq_gguf_open(&g, gpt, &e);
    CHECK(rc == 0, "open %s: %s", gpt, e.msg);
    if (rc == 0) {
        dlq_gguf_str s;
        CHECK(dlq_gguf_get_str(&g, "general.architecture", &s, &e) == 0 && streq(s, "gpt2"), "arch");
        const dlq_gguf_kv *tok = dlq_gguf_find(&g, "tokenizer.ggml.tokens");
        CHECK(tok && tok->arr_n == 50257 && streq(dlq_gguf_arr_str(tok, 0), "!") &&
                  streq(dlq_gguf_arr_str(tok, 50256), "<|endoftext|>"),
              "gpt2 tokens");
        const dlq_gguf_kv *m = dlq_gguf_find(&g, "tokenizer.ggml.merges");
        CHECK(m && m->arr_n == 50000 && streq(dlq_gguf_arr_str(m, 0), "\xc4\xa0 t") &&
                  streq(dlq_gguf_arr_str(m, 49999), "\xc4\xa0g azed"),
              "merges");
        uint32_t bos = 0, eos = 0;
        CHECK(dlq_gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &bos, &e) == 0 && bos == 50256, "bos");
        CHECK(dlq_gguf_get_u32(&g, "tokenizer.ggml.eos_token_id", &eos, &e) == 0 && eos == 50256, "eos");
        dlq_gguf_close(&g);
    }
}

/* ---- round trip ---------------------------------------------------------- */

#define NT 8
static float f32d[3 * 5];
static uint16_t f16d[2 * 3 * 4], bf16d[7];
static uint8_t q8d[2 * 34];

static int build(const char *path, uint32_t align) {
    dlq_err e = {0};
    dlq_gguf_writer *w = dlq_gguf_writer_new(&e);
    int rc = 0;
    if (!w) return -1;
    rc |= dlq_gguf_add_str(w, "general.architecture", "llama", &e);
    if (align) rc |= dlq_gguf_add_u32(w, "general.alignment", align, &e);
    rc |= dlq_gguf_add_u8(w, "t.u8", 200, &e);
    rc |= dlq_gguf_add_i8(w, "t.i8", -100, &e);
    rc |= dlq_gguf_add_u16(w, "t.u16", 60000, &e);
    rc |= dlq_gguf_add_i16(w, "t.i16", -30000, &e);
    rc |= dlq_gguf_add_u32(w, "t.u32", 4000000000u, &e);
    rc |= dlq_gguf_add_i32(w, "t.i32", -2000000000, &e);
    rc |= dlq_gguf_add_f32(w, "t.f32", 1.5f, &e);
    rc |= dlq_gguf_add_bool(w, "t.bool", 1, &e);
    rc |= dlq_gguf_add_u64(w, "t.u64", 0xfedcba9876543210ull, &e);
    rc |= dlq_gguf_add_i64(w, "t.i64", -1234567890123ll, &e);
    rc |= dlq_gguf_add_f64(w, "t.f64", -2.25, &e);
    rc |= dlq_gguf_add_strn(w, "t.str", "a\0b", 3, &e);
    rc |= dlq_gguf_add_str(w, "t.empty", "", &e);
    const char *strs[] = {"x", "", "hello world"};
    rc |= dlq_gguf_add_arr_str(w, "t.astr", strs, 3, &e);
    float fa[] = {0.5f, -1.0f, 3.25f};
    rc |= dlq_gguf_add_arr_f32(w, "t.af32", fa, 3, &e);
    int32_t ia[] = {-7, 0, 7, 1 << 30};
    rc |= dlq_gguf_add_arr_i32(w, "t.ai32", ia, 4, &e);
    uint16_t ua[] = {1, 65535};
    rc |= dlq_gguf_add_arr(w, "t.au16", DLQ_GGUF_UINT16, ua, 2, &e);
    rc |= dlq_gguf_add_arr(w, "t.aempty", DLQ_GGUF_INT64, NULL, 0, &e);
    /* array of 2 arrays: [u8 x2], [string "ab"] */
    uint8_t nested[] = {2, 0, 0, 0,  2, 0, 0, 0, 0, 0, 0, 0, /* elem type ARRAY, count 2 */
                        0, 0, 0, 0,  2, 0, 0, 0, 0, 0, 0, 0, 9, 8,
                        8, 0, 0, 0,  1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'};
    nested[0] = DLQ_GGUF_ARRAY;
    rc |= dlq_gguf_add_raw(w, "t.nested", DLQ_GGUF_ARRAY, nested, sizeof nested, &e);
    /* writer-side validation */
    int bad = dlq_gguf_add_u8(w, "t.u8", 1, &e);
    CHECK(bad == DLQ_EINVAL && strstr(e.msg, "t.u8"), "duplicate key accepted: %s", e.msg);
    int64_t s1[] = {3, 5}, s2[] = {2, 3, 4}, s3[] = {7}, s4[] = {1, 64}, s0[] = {0, 4};
    rc |= dlq_gguf_add_tensor(w, "w.f32", DLQ_GGML_F32, 2, s1, f32d, sizeof f32d, &e);
    rc |= dlq_gguf_add_tensor(w, "w.f16", DLQ_GGML_F16, 3, s2, f16d, sizeof f16d, &e);
    rc |= dlq_gguf_add_tensor(w, "w.bf16", DLQ_GGML_BF16, 1, s3, bf16d, sizeof bf16d, &e);
    rc |= dlq_gguf_add_tensor(w, "w.q8", DLQ_GGML_Q8_0, 2, s4, q8d, sizeof q8d, &e);
    rc |= dlq_gguf_add_tensor(w, "w.empty", DLQ_GGML_F32, 2, s0, NULL, 0, &e);
    bad = dlq_gguf_add_tensor(w, "w.bad", DLQ_GGML_F32, 2, s1, f32d, 4, &e);
    CHECK(bad == DLQ_EINVAL && strstr(e.msg, "w.bad"), "wrong nbytes accepted: %s", e.msg);
    int64_t s5[] = {1, 33};
    bad = dlq_gguf_add_tensor(w, "w.bad2", DLQ_GGML_Q8_0, 2, s5, q8d, 34, &e);
    CHECK(bad == DLQ_EINVAL, "partial block accepted");
    if (!rc) rc = dlq_gguf_write(w, path, &e);
    if (rc) fprintf(stderr, "build: %s\n", e.msg);
    dlq_gguf_writer_free(w);
    return rc;
}

static void test_roundtrip(const char *path, uint32_t align) {
    for (size_t i = 0; i < sizeof f32d / 4; i++) f32d[i] = (float)i * 0.25f - 1.0f;
    for (size_t i = 0; i < sizeof f16d / 2; i++) f16d[i] = dlq_f32_to_f16((float)i - 3.0f);
    for (size_t i = 0; i < sizeof bf16d / 2; i++) bf16d[i] = dlq_f32_to_bf16((float)i * 1.5f);
    for (size_t i = 0; i < sizeof q8d; i++) q8d[i] = (uint8_t)(i * 37);
    int rc = build(path, align);
    CHECK(rc == 0, "write %s", path);
    if (rc) return;
    dlq_gguf g;
    dlq_err e = {0};
    rc = dlq_gguf_open(&g, path, &e);
    CHECK(rc == 0, "reopen: %s", e.msg);
    if (rc) return;
    uint32_t u32;
    int64_t i64;
    float f;
    int b;
    dlq_gguf_str s;
    CHECK(g.alignment == (align ? align : 32) && g.data_offset % g.alignment == 0, "alignment %u", g.alignment);
    CHECK(dlq_gguf_get_u32(&g, "t.u8", &u32, &e) == 0 && u32 == 200, "u8");
    CHECK(dlq_gguf_get_i64(&g, "t.i8", &i64, &e) == 0 && i64 == -100, "i8");
    CHECK(dlq_gguf_get_u32(&g, "t.i8", &u32, &e) == DLQ_EFORMAT, "negative into u32");
    CHECK(dlq_gguf_get_u32(&g, "t.u16", &u32, &e) == 0 && u32 == 60000, "u16");
    CHECK(dlq_gguf_get_i64(&g, "t.i16", &i64, &e) == 0 && i64 == -30000, "i16");
    CHECK(dlq_gguf_get_u32(&g, "t.u32", &u32, &e) == 0 && u32 == 4000000000u, "u32");
    CHECK(dlq_gguf_get_i64(&g, "t.i32", &i64, &e) == 0 && i64 == -2000000000, "i32");
    CHECK(dlq_gguf_get_f32(&g, "t.f32", &f, &e) == 0 && f == 1.5f, "f32");
    CHECK(dlq_gguf_get_bool(&g, "t.bool", &b, &e) == 0 && b == 1, "bool");
    CHECK(dlq_gguf_get_i64(&g, "t.u64", &i64, &e) == DLQ_EFORMAT, "u64 > INT64_MAX");
    CHECK(dlq_gguf_get_u32(&g, "t.u64", &u32, &e) == DLQ_EFORMAT, "u64 into u32");
    const dlq_gguf_kv *kv = dlq_gguf_find(&g, "t.u64");
    CHECK(kv && kv->type == DLQ_GGUF_UINT64, "u64 type");
    CHECK(dlq_gguf_get_i64(&g, "t.i64", &i64, &e) == 0 && i64 == -1234567890123ll, "i64");
    CHECK(dlq_gguf_get_f32(&g, "t.f64", &f, &e) == 0 && f == -2.25f, "f64");
    CHECK(dlq_gguf_get_str(&g, "t.str", &s, &e) == 0 && s.len == 3 && memcmp(s.ptr, "a\0b", 3) == 0, "str");
    CHECK(dlq_gguf_get_str(&g, "t.empty", &s, &e) == 0 && s.len == 0, "empty str");
    kv = dlq_gguf_find(&g, "t.astr");
    CHECK(kv && kv->arr_n == 3 && streq(dlq_gguf_arr_str(kv, 0), "x") && dlq_gguf_arr_str(kv, 1).len == 0 &&
              streq(dlq_gguf_arr_str(kv, 2), "hello world"),
          "arr str");
    kv = dlq_gguf_find(&g, "t.af32");
    CHECK(kv && kv->arr_n == 3 && dlq_gguf_arr_f32(kv, 2) == 3.25f && dlq_gguf_arr_int(kv, 0) == 0, "arr f32");
    kv = dlq_gguf_find(&g, "t.ai32");
    CHECK(kv && kv->arr_n == 4 && dlq_gguf_arr_int(kv, 0) == -7 && dlq_gguf_arr_int(kv, 3) == 1 << 30, "arr i32");
    kv = dlq_gguf_find(&g, "t.au16");
    CHECK(kv && kv->arr_type == DLQ_GGUF_UINT16 && dlq_gguf_arr_int(kv, 1) == 65535, "arr u16");
    kv = dlq_gguf_find(&g, "t.aempty");
    CHECK(kv && kv->arr_n == 0 && dlq_gguf_arr_int(kv, 0) == 0, "empty arr");
    kv = dlq_gguf_find(&g, "t.nested");
    CHECK(kv && kv->arr_type == DLQ_GGUF_ARRAY && kv->arr_n == 2 && dlq_gguf_arr_int(kv, 0) == 0 &&
              dlq_gguf_arr_str(kv, 0).ptr == NULL,
          "nested");
    CHECK(g.n_tensors == 5, "n_tensors %llu", (unsigned long long)g.n_tensors);
    const dlq_tensor_info *t = dlq_gguf_find_tensor(&g, "w.f32");
    CHECK(t && t->dtype == DLQ_F32 && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 5 &&
              t->nbytes == sizeof f32d && memcmp(t->data, f32d, sizeof f32d) == 0,
          "f32 tensor");
    t = dlq_gguf_find_tensor(&g, "w.f16");
    CHECK(t && t->dtype == DLQ_F16 && t->ndim == 3 && t->shape[0] == 2 && t->shape[2] == 4 &&
              memcmp(t->data, f16d, sizeof f16d) == 0,
          "f16 tensor");
    t = dlq_gguf_find_tensor(&g, "w.bf16");
    CHECK(t && t->dtype == DLQ_BF16 && t->ndim == 1 && t->shape[0] == 7 && memcmp(t->data, bf16d, sizeof bf16d) == 0,
          "bf16 tensor");
    t = dlq_gguf_find_tensor(&g, "w.q8");
    CHECK(t && t->dtype == DLQ_DTYPE_COUNT && t->file_type == DLQ_GGML_Q8_0 && t->nbytes == 68 &&
              memcmp(t->data, q8d, 68) == 0,
          "q8 tensor");
    for (uint64_t i = 0; i < g.n_tensors; i++)
        CHECK(((const uint8_t *)g.tensors[i].data - g.file.data) % g.alignment == 0, "tensor %llu aligned",
              (unsigned long long)i);
    dlq_gguf_close(&g);
}

static void test_sizes(void) {
    CHECK(dlq_ggml_nbytes(DLQ_GGML_Q4_0, 64) == 36, "q4_0");
    CHECK(dlq_ggml_nbytes(DLQ_GGML_Q4_K, 512) == 288, "q4_k");
    CHECK(dlq_ggml_nbytes(DLQ_GGML_Q6_K, 256) == 210, "q6_k");
    CHECK(dlq_ggml_nbytes(DLQ_GGML_Q2_K, 255) == 0, "partial block");
    CHECK(dlq_ggml_nbytes(15, 256) == 292, "q8_k");
    CHECK(dlq_ggml_nbytes(99, 256) == 0, "unknown");
    CHECK(dlq_ggml_nbytes(DLQ_GGML_F32, UINT64_MAX) == 0, "overflow");
    CHECK(strcmp(dlq_ggml_type_name(DLQ_GGML_Q5_1), "Q5_1") == 0, "name");
}

/* ---- robustness ---------------------------------------------------------- */

static size_t n_ok, n_err;

static void parse_one(const uint8_t *src, size_t len, const char *label, unsigned long long tag) {
    uint8_t *buf = malloc(len ? len : 1); /* exact-size copy so sanitizers see overreads */
    memcpy(buf, src, len);
    dlq_gguf g;
    dlq_err e = {0};
    int rc = dlq_gguf_parse(&g, buf, len, "fuzz", &e);
    if (rc == 0) {
        n_ok++;
        volatile unsigned acc = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const uint8_t *p = g.tensors[i].data;
            if (g.tensors[i].nbytes) acc += p[0] + p[g.tensors[i].nbytes - 1];
            if (g.tensors[i].nbytes && (p < buf || p + g.tensors[i].nbytes > buf + len)) {
                CHECK(0, "%s %llu: tensor outside buffer", label, tag);
            }
        }
        for (uint64_t i = 0; i < g.n_kv; i++) {
            const dlq_gguf_kv *kv = &g.kv[i];
            for (uint64_t j = 0; j < kv->arr_n && j < 64; j++) {
                dlq_gguf_str s = dlq_gguf_arr_str(kv, j);
                if (s.len) acc += (unsigned char)s.ptr[s.len - 1];
                acc += (unsigned)dlq_gguf_arr_int(kv, j) + (unsigned)dlq_gguf_arr_f32(kv, j);
            }
            if (kv->arr_n) {
                dlq_gguf_str s = dlq_gguf_arr_str(kv, kv->arr_n - 1);
                if (s.len) acc += (unsigned char)s.ptr[s.len - 1];
                acc += (unsigned)dlq_gguf_arr_int(kv, kv->arr_n - 1);
            }
        }
        (void)acc;
        dlq_gguf_close(&g);
    } else {
        n_err++;
        if (!e.msg[0] || rc > 0) CHECK(0, "%s %llu: error %d without message", label, tag, rc);
    }
    free(buf);
}

static void fuzz(const uint8_t *img, size_t size, size_t full_upto, size_t hot, int nmut, uint64_t seed,
                 const char *label) {
    rng_state = seed;
    size_t lim = full_upto < size ? full_upto : size;
    for (size_t L = 0; L <= lim; L++) parse_one(img, L, label, L);
    for (int i = 0; i < 200 && size > lim; i++) parse_one(img, lim + rnd() % (size - lim), label, i);
    uint8_t *m = malloc(size);
    for (int i = 0; i < nmut; i++) {
        memcpy(m, img, size);
        int k = 1 + (int)(rnd() % 4);
        for (int j = 0; j < k; j++) {
            size_t pos = (size_t)(rnd() % (hot < size ? hot : size));
            switch (rnd() % 4) {
            case 0: m[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: m[pos] = (uint8_t)rnd(); break;
            case 2: m[pos] = 0xff; break;
            default: m[pos] = 0; break;
            }
        }
        parse_one(m, size, label, (unsigned long long)i);
    }
    free(m);
}

/* ---- ggml block decoders the exporter does not write ---------------------- */

static const struct { const char *name; uint32_t type; int blk, bytes; int hofs[2], nh; } KQ[] = {
    {"Q4_K", DLQ_GGML_Q4_K, 256, 144, {0, 2}, 2},   {"Q5_K", DLQ_GGML_Q5_K, 256, 176, {0, 2}, 2},
    {"Q6_K", DLQ_GGML_Q6_K, 256, 210, {208, 0}, 1}, {"IQ4_NL", DLQ_GGML_IQ4_NL, 32, 18, {0, 0}, 1},
    {"IQ4_XS", DLQ_GGML_IQ4_XS, 256, 136, {0, 0}, 1},
};

/* tests/fixtures/ggml/<T>.bin, dequantized by gguf-py 0.19.0 into <T>.f32
 * (tests/fixtures/ggml/gen_fixture.py). Bit for bit: every decoder does the
 * same float32 multiplications and subtractions in the same order as ggml and
 * gguf-py, and C11 mode keeps the compiler from contracting them into FMAs, so
 * there is no rounding difference to allow for on any ISA. */
static void test_kquant_decoders(void) {
    for (size_t k = 0; k < sizeof KQ / sizeof KQ[0]; k++) {
        char p[256];
        char *bin = NULL, *ref = NULL;
        size_t nb = 0, nr = 0;
        dlq_err err = {0};
        snprintf(p, sizeof p, "tests/fixtures/ggml/%s.bin", KQ[k].name);
        int rc = dlq_read_file(p, &bin, &nb, &err);
        snprintf(p, sizeof p, "tests/fixtures/ggml/%s.f32", KQ[k].name);
        if (!rc) rc = dlq_read_file(p, &ref, &nr, &err);
        CHECK(rc == 0, "%s", err.msg);
        if (rc) { free(bin); free(ref); continue; }
        int64_t nblk = (int64_t)(nb / (size_t)KQ[k].bytes), n = nblk * KQ[k].blk;
        CHECK(nb % (size_t)KQ[k].bytes == 0 && nr == (size_t)n * 4 && nblk >= 4, "%s: fixture sizes %zu / %zu", KQ[k].name, nb, nr);
        CHECK(dlq_ggml_nbytes(KQ[k].type, (uint64_t)KQ[k].blk) == (uint64_t)KQ[k].bytes, "%s block size", KQ[k].name);
        CHECK(dlq_ggml_can_dequant(KQ[k].type), "%s not loadable", KQ[k].name);
        float *y = calloc((size_t)n, sizeof *y);
        rc = dlq_ggml_dequant(KQ[k].type, bin, y, n, &err);
        CHECK(rc == 0, "%s: %s", KQ[k].name, err.msg);
        size_t bad = 0, nonzero = 0, first = 0;
        for (int64_t i = 0; i < n; i++) {
            float r;
            memcpy(&r, ref + 4 * i, 4);
            if (memcmp(&r, &y[i], 4) && !bad++) first = (size_t)i;
            nonzero += r != 0;
        }
        float r0 = 0;
        if (bad) memcpy(&r0, ref + 4 * first, 4);
        CHECK(bad == 0, "%s: %zu of %lld values differ from gguf-py; first at %zu: %.9g vs %.9g", KQ[k].name, bad, (long long)n,
              first, bad ? y[first] : 0.0, (double)r0);
        CHECK(nonzero > (size_t)n / 2, "%s: fixture is mostly zeros (%zu of %lld)", KQ[k].name, nonzero, (long long)n);
        /* not a whole number of blocks: refused */
        CHECK(dlq_ggml_dequant(KQ[k].type, bin, y, KQ[k].blk - 1, &err) == DLQ_EINVAL, "%s: partial block accepted", KQ[k].name);
        printf("%s: %lld values equal gguf-py's\n", KQ[k].name, (long long)n);
        free(y);
        free(bin);
        free(ref);
    }
    dlq_err err = {0};
    float y[256];
    uint8_t z[256] = {0};
    int rc = dlq_ggml_dequant(16 /* IQ2_XXS */, z, y, 256, &err);
    CHECK(rc == DLQ_EUNSUP && strstr(err.msg, "IQ2_XXS"), "unsupported type: rc %d, %s", rc, err.msg);
}

/* seeded random blocks of type k with sane fp16 scales */
static uint8_t *rand_blocks(size_t k, int64_t n, size_t *nbytes) {
    size_t nb = (size_t)(n / KQ[k].blk), bb = (size_t)KQ[k].bytes;
    uint8_t *b = malloc(nb * bb);
    for (size_t i = 0; i < nb * bb; i++) b[i] = (uint8_t)rnd();
    for (size_t i = 0; i < nb; i++)
        for (int h = 0; h < KQ[k].nh; h++) {
            float v = (float)(1e-3 + (double)(rnd() % 1000) * 2e-5) * ((rnd() & 1) ? 1.0f : -1.0f);
            uint16_t f = dlq_f32_to_f16(v);
            b[i * bb + (size_t)KQ[k].hofs[h]] = (uint8_t)f;
            b[i * bb + (size_t)KQ[k].hofs[h] + 1] = (uint8_t)(f >> 8);
        }
    *nbytes = nb * bb;
    return b;
}

/* A llama GGUF (dim 256, 4 heads / 2 kv heads, MLP 256, vocab 8, one layer) whose
 * matrices are Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS: the loader must bind each as
 * the decoder's f32 (q and k permuted back from llama.cpp's RoPE layout, so those
 * are compared as multisets). Then ffn_up as IQ2_XXS: refused naming tensor + type. */
static void test_kquant_model(void) {
    enum { D = 256, KV = 128, V = 8 };
    static const struct { const char *name; int kq; int64_t r, c; } W[] = {
        {"token_embd.weight", 2, V, D},     {"output.weight", 1, V, D},       {"blk.0.attn_q.weight", 0, D, D},
        {"blk.0.attn_k.weight", 1, KV, D},  {"blk.0.attn_v.weight", 2, KV, D}, {"blk.0.attn_output.weight", 4, D, D},
        {"blk.0.ffn_gate.weight", 3, D, D}, {"blk.0.ffn_up.weight", 0, D, D}, {"blk.0.ffn_down.weight", 2, D, D},
    };
    enum { NW = sizeof W / sizeof W[0] };
    uint8_t *data[NW];
    size_t nbytes[NW];
    static float ones[D];
    for (int i = 0; i < D; i++) ones[i] = 1.0f;
    for (int i = 0; i < NW; i++) data[i] = rand_blocks((size_t)W[i].kq, W[i].r * W[i].c, &nbytes[i]);
    char path[256];
    snprintf(path, sizeof path, "/tmp/dlq_test_kq_%d.gguf", (int)getpid());
    for (int pass = 0; pass < 2; pass++) {
        dlq_err e = {0};
        dlq_gguf_writer *w = dlq_gguf_writer_new(&e);
        int rc = dlq_gguf_add_str(w, "general.architecture", "llama", &e);
        rc |= dlq_gguf_add_u32(w, "llama.block_count", 1, &e);
        rc |= dlq_gguf_add_u32(w, "llama.embedding_length", D, &e);
        rc |= dlq_gguf_add_u32(w, "llama.feed_forward_length", D, &e);
        rc |= dlq_gguf_add_u32(w, "llama.attention.head_count", 4, &e);
        rc |= dlq_gguf_add_u32(w, "llama.attention.head_count_kv", 2, &e);
        rc |= dlq_gguf_add_u32(w, "llama.context_length", 64, &e);
        int64_t s1[] = {D};
        rc |= dlq_gguf_add_tensor(w, "output_norm.weight", DLQ_GGML_F32, 1, s1, ones, sizeof ones, &e);
        rc |= dlq_gguf_add_tensor(w, "blk.0.attn_norm.weight", DLQ_GGML_F32, 1, s1, ones, sizeof ones, &e);
        rc |= dlq_gguf_add_tensor(w, "blk.0.ffn_norm.weight", DLQ_GGML_F32, 1, s1, ones, sizeof ones, &e);
        for (int i = 0; i < NW; i++) {
            int64_t s2[] = {W[i].r, W[i].c};
            uint32_t ty = KQ[W[i].kq].type;
            if (pass == 1 && i == 7) ty = 16; /* IQ2_XXS: 66 bytes per 256 values, fewer than Q4_K's */
            rc |= dlq_gguf_add_tensor(w, W[i].name, ty, 2, s2, data[i], (size_t)dlq_ggml_nbytes(ty, (uint64_t)(W[i].r * W[i].c)), &e);
        }
        if (!rc) rc = dlq_gguf_write(w, path, &e);
        dlq_gguf_writer_free(w);
        CHECK(rc == 0, "write %s: %s", path, e.msg);
        if (rc) break;
        dlq_model *m = NULL;
        rc = dlq_model_load(&m, path, NULL, &e);
        if (pass == 1) {
            CHECK(rc == DLQ_EUNSUP && strstr(e.msg, "blk.0.ffn_up.weight") && strstr(e.msg, "IQ2_XXS"),
                  "IQ2_XXS tensor: rc %d, %s", rc, e.msg);
            if (m) dlq_model_destroy(m);
            break;
        }
        CHECK(rc == 0, "load: %s", e.msg);
        if (rc) break;
        const dlq_weight *got[NW] = {&m->tok_emb, &m->lm_head, &m->layers[0].wq, &m->layers[0].wk, &m->layers[0].wv,
                                     &m->layers[0].wo, &m->layers[0].w_gate, &m->layers[0].w_up, &m->layers[0].w_down};
        for (int i = 0; i < NW; i++) {
            int64_t n = W[i].r * W[i].c;
            float *y = malloc(sizeof(float) * (size_t)n);
            dlq_ggml_dequant(KQ[W[i].kq].type, data[i], y, n, &e);
            int ok = got[i]->dtype == DLQ_F32 && got[i]->rows == W[i].r && got[i]->cols == W[i].c;
            if (ok && i != 2 && i != 3) ok = memcmp(got[i]->data, y, sizeof(float) * (size_t)n) == 0;
            else if (ok) { /* a row permutation: same rows, each row intact */
                const float *g = got[i]->data;
                int64_t matched = 0;
                for (int64_t r = 0; r < W[i].r; r++)
                    for (int64_t q = 0; q < W[i].r; q++)
                        if (!memcmp(g + r * D, y + q * D, sizeof(float) * D)) { matched++; break; }
                ok = matched == W[i].r && memcmp(g, y, sizeof(float) * (size_t)n) != 0;
            }
            CHECK(ok, "%s (%s): loaded weight differs from the decoder's", W[i].name, KQ[W[i].kq].name);
            free(y);
        }
        dlq_model_destroy(m);
        /* the same file cut short anywhere (header, metadata, inside a K-quant tensor): an error with a message */
        FILE *f = fopen(path, "rb");
        long full = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) full = ftell(f);
        uint8_t *img = full > 0 ? malloc((size_t)full) : NULL;
        if (f && img) {
            rewind(f);
            if (fread(img, 1, (size_t)full, f) != (size_t)full) full = -1;
        }
        if (f) fclose(f);
        char cut[300];
        snprintf(cut, sizeof cut, "%s.cut.gguf", path);
        int bad = 0, n_cut = 0;
        for (long L = 0; img && full > 0 && L < full; L += 1 + full / 37, n_cut++) {
            FILE *c = fopen(cut, "wb");
            if (!c) break;
            fwrite(img, 1, (size_t)L, c);
            fclose(c);
            dlq_model *mc = NULL;
            dlq_err ec = {0};
            int r2 = dlq_model_load(&mc, cut, NULL, &ec);
            if (r2 == 0 || !ec.msg[0]) bad++;
            if (mc) dlq_model_destroy(mc);
        }
        CHECK(n_cut > 30 && bad == 0, "K-quant GGUF cut short: %d of %d lengths loaded or gave no message", bad, n_cut);
        unlink(cut);
        free(img);
    }
    unlink(path);
    for (int i = 0; i < NW; i++) free(data[i]);
}

int main(void) {
    uint64_t seed = 0x6775676675ull;
    if (getenv("DLQ_SEED")) seed = strtoull(getenv("DLQ_SEED"), NULL, 0);
    printf("test_io_gguf: seed 0x%llx (set DLQ_SEED to change)\n", (unsigned long long)seed);
    rng_state = seed;
    test_sizes();
    test_vocab();
    test_kquant_decoders();
    test_kquant_model();
    char path[256];
    snprintf(path, sizeof path, "/tmp/dlq_test_gguf_%d.gguf", (int)getpid());
    test_roundtrip(path, 0);
    test_roundtrip(path, 64);
    /* fuzz the synthetic file (written with alignment 64) */
    dlq_mapfile mf;
    dlq_err e = {0};
    if (dlq_mapfile_open(&mf, path, &e) == 0) {
        fuzz(mf.data, mf.size, mf.size, mf.size, 5000, seed, "synthetic");
        dlq_mapfile_close(&mf);
    }
    if (getenv("DLQ_KEEP_GGUF")) printf("kept %s\n", path); /* for checking with Python's gguf by hand */
    else unlink(path);
    const char *spm = t_shared("models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    if (spm && dlq_mapfile_open(&mf, spm, &e) == 0) {
        fuzz(mf.data, mf.size, 2048, 4096, 300, seed + 1, "spm");
        dlq_mapfile_close(&mf);
    }
    /* a real file with tensors (fixture written by gguf-py): every truncation over the header */
    const char *fx = "tests/fixtures/gguf/llama-f16.gguf";
    if (dlq_mapfile_open(&mf, fx, &e) == 0) {
        dlq_gguf g;
        if (dlq_gguf_parse(&g, mf.data, mf.size, fx, &e) == 0) {
            size_t hdr = (size_t)g.data_offset;
            CHECK(g.n_tensors == 21, "%s: %llu tensors", fx, (unsigned long long)g.n_tensors);
            dlq_gguf_close(&g);
            fuzz(mf.data, mf.size, hdr + 16, hdr, 1500, seed + 2, "llama-f16");
        } else CHECK(0, "%s: %s", fx, e.msg);
        dlq_mapfile_close(&mf);
    } else SKIP("%s absent", fx);
    printf("fuzz: %zu parsed, %zu rejected\n", n_ok, n_err);
    CHECK(n_err > 0 && n_ok > 0, "fuzz outcomes %zu/%zu", n_ok, n_err);
    return T_DONE();
}
