/* safetensors reader/writer: the in-repo english-mix-7M model, the sharded
 * english-mix-2M from ../shared, a fixture written by Python's safetensors,
 * writer round trip, hand-made malformed headers, and fuzz-style
 * truncation / mutation robustness. */
#include "io/safetensors.h"

#include <stdint.h>

#include <sys/stat.h>

#include "t.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float val(const dlq_tensor_info *t, size_t i) {
    float f = NAN;
    dlq_to_f32(&f, (const uint8_t *)t->data + i * dlq_dtype_size(t->dtype), t->dtype, 1);
    return f;
}

static int shape_is(const dlq_tensor_info *t, int nd, int64_t a, int64_t b) {
    return t && t->ndim == nd && t->shape[0] == a && (nd < 2 || t->shape[1] == b);
}

static void test_7m(const char *path) {
    dlq_safetensors st;
    dlq_err e = {0};
    int rc = dlq_st_open(&st, path, &e);
    CHECK(rc == 0, "open %s: %s", path, e.msg);
    if (rc) return;
    CHECK(st.ntensors == 57 && st.nfiles == 1, "%zu tensors, %d files", st.ntensors, st.nfiles);
    const int64_t D = 256, F = 768, V = 4096, KV = 4 * 32;
    const dlq_tensor_info *t = dlq_st_find(&st, "model.embed_tokens.weight");
    CHECK(shape_is(t, 2, V, D) && t->dtype == DLQ_BF16 && t->nbytes == (size_t)(V * D * 2), "embed");
    CHECK(shape_is(dlq_st_find(&st, "lm_head.weight"), 2, V, D), "lm_head");
    CHECK(shape_is(dlq_st_find(&st, "model.norm.weight"), 1, D, 0), "norm");
    int nbad = 0;
    for (int l = 0; l < 6; l++) {
        char n[160];
#define SH(suffix, nd, a, b)                                                     \
    snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);                      \
    if (!shape_is(dlq_st_find(&st, n), nd, a, b)) { nbad++; fprintf(stderr, "bad shape %s\n", n); }
        SH("self_attn.q_proj.weight", 2, D, D);
        SH("self_attn.k_proj.weight", 2, KV, D);
        SH("self_attn.v_proj.weight", 2, KV, D);
        SH("self_attn.o_proj.weight", 2, D, D);
        SH("mlp.gate_proj.weight", 2, F, D);
        SH("mlp.up_proj.weight", 2, F, D);
        SH("mlp.down_proj.weight", 2, D, F);
        SH("input_layernorm.weight", 1, D, 0);
        SH("post_attention_layernorm.weight", 1, D, 0);
#undef SH
    }
    CHECK(nbad == 0, "%d layer tensors with wrong shapes", nbad);
    CHECK(dlq_st_find(&st, "model.layers.6.mlp.up_proj.weight") == NULL, "no layer 6");
    /* values from Python: safe_open(...).get_tensor(k).flatten()[:3] / [-2:] */
    t = dlq_st_find(&st, "model.embed_tokens.weight");
    CHECK(val(t, 0) == -0.0096435546875f && val(t, 1) == -0.03369140625f && val(t, 2) == 0.006744384765625f &&
              val(t, (size_t)(V * D) - 1) == 0.035400390625f,
          "embed values %g %g", val(t, 0), val(t, (size_t)(V * D) - 1));
    t = dlq_st_find(&st, "model.layers.5.mlp.down_proj.weight");
    CHECK(val(t, 0) == 0.00958251953125f && val(t, (size_t)(D * F) - 2) == 0.015625f &&
              val(t, (size_t)(D * F) - 1) == 0.00830078125f,
          "down_proj values");
    t = dlq_st_find(&st, "model.norm.weight");
    CHECK(val(t, 0) == 1.2578125f && val(t, 255) == 1.2890625f, "norm values");
    t = dlq_st_find(&st, "model.layers.0.self_attn.k_proj.weight");
    CHECK(val(t, 1) == 0.0008697509765625f && val(t, (size_t)(KV * D) - 1) == 0.048828125f, "k_proj values");
    dlq_st_close(&st);
}

static void test_sharded(void) {
    const char *dir = t_shared("models/english-mix-2M");
    const char *idx = t_shared("models/english-mix-2M/model.safetensors.index.json");
    if (!dir || !idx) {
        SKIP("../shared/data/models/english-mix-2M absent");
        return;
    }
    const char *paths[2] = {dir, idx};
    for (int k = 0; k < 2; k++) {
        dlq_safetensors st;
        dlq_err e = {0};
        int rc = dlq_st_open(&st, paths[k], &e);
        CHECK(rc == 0, "open %s: %s", paths[k], e.msg);
        if (rc) continue;
        CHECK(st.nfiles == 2 && st.ntensors == 38, "%d files %zu tensors", st.nfiles, st.ntensors);
        const dlq_tensor_info *t = dlq_st_find(&st, "model.embed_tokens.weight");
        CHECK(shape_is(t, 2, 4096, 192) && t->dtype == DLQ_F16 && val(t, 0) == -0.10687255859375f &&
                  val(t, 2) == -0.1346435546875f && val(t, 4096 * 192 - 1) == 0.05499267578125f,
              "embed");
        t = dlq_st_find(&st, "model.norm.weight");
        CHECK(shape_is(t, 1, 192, 0) && val(t, 0) == 1.1875f && val(t, 191) == 1.197265625f, "norm");
        CHECK(shape_is(dlq_st_find(&st, "model.layers.3.mlp.down_proj.weight"), 2, 192, 520), "down");
        CHECK(dlq_st_find(&st, "lm_head.weight") == NULL, "tied: no lm_head");
        dlq_st_close(&st);
    }
}

/* ---- synthetic images ---------------------------------------------------- */

/* header JSON + buffer of `bufsize` bytes (pattern) into a malloc'd image */
static uint8_t *mk(const char *json, size_t bufsize, size_t *size) {
    size_t hl = strlen(json);
    *size = 8 + hl + bufsize;
    uint8_t *p = malloc(*size);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(p + 8, json, hl);
    for (size_t i = 0; i < bufsize; i++) p[8 + hl + i] = (uint8_t)i;
    return p;
}

static void expect_err(const char *json, size_t bufsize, int code, const char *needle) {
    size_t size;
    uint8_t *img = mk(json, bufsize, &size);
    dlq_tensor_info *ts = NULL;
    size_t n = 0;
    dlq_err e = {0};
    int rc = dlq_st_parse(img, size, "mem.safetensors", &ts, &n, &e);
    CHECK(rc == code && n == 0 && strstr(e.msg, needle) && strstr(e.msg, "mem.safetensors"),
          "%s -> rc %d msg '%s' (want %d, '%s')", json, rc, e.msg, code, needle);
    free(ts);
    free(img);
}

static void test_malformed(void) {
    expect_err("{\"w\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DLQ_EFORMAT, "Q9");
    expect_err("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, DLQ_EUNSUP, "F8_E4M3");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, DLQ_EFORMAT, "'w'");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, DLQ_EUNSUP, "'w'");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9]}}", 8, DLQ_EFORMAT, "outside the 8-byte");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, DLQ_EFORMAT, "needs 12");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, DLQ_EFORMAT, "'w'");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
               DLQ_EFORMAT, "overflow");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, DLQ_EFORMAT, "overlap");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DLQ_EFORMAT, "JSON");
    expect_err("[1,2]", 0, DLQ_EFORMAT, "not an object");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, DLQ_EFORMAT, "data_offsets");
    expect_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0, 8]", 8, DLQ_EFORMAT, "JSON");
    /* header length larger than the file */
    size_t size;
    uint8_t *img = mk("{}", 0, &size);
    img[0] = 200;
    dlq_tensor_info *ts = NULL;
    size_t n = 0;
    dlq_err e = {0};
    CHECK(dlq_st_parse(img, size, "x.st", &ts, &n, &e) == DLQ_EFORMAT && strstr(e.msg, "header length 200"), "%s",
          e.msg);
    img[0] = 2;
    CHECK(dlq_st_parse(img, size, "x.st", &ts, &n, &e) == 0 && n == 0, "empty {} ok: %s", e.msg);
    free(img);
    free(ts);
    /* good: metadata skipped, zero-size tensor, BOOL -> U8 */
    img = mk("{\"__metadata__\":{\"a\":\"b\"},\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
             "\"b\":{\"dtype\":\"BOOL\",\"shape\":[2,2],\"data_offsets\":[4,8]},"
             "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}  ",
             8, &size);
    ts = NULL;
    n = 0;
    int rc = dlq_st_parse(img, size, "ok.st", &ts, &n, &e);
    CHECK(rc == 0 && n == 3, "good synthetic: %s", e.msg);
    if (rc == 0 && n == 3) {
        CHECK(strcmp(ts[0].name, "z") == 0 && ts[0].nbytes == 0 && ts[0].ndim == 2, "z");
        CHECK(ts[1].dtype == DLQ_U8 && ts[1].nbytes == 4 && ((const uint8_t *)ts[1].data)[0] == 4, "bool");
        CHECK(ts[2].ndim == 0 && ts[2].nbytes == 2, "scalar");
    }
    free(ts);
    free(img);
}

/* ---- sharded errors ------------------------------------------------------ */

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(s, f); fclose(f); }
}

static void test_shard_errors(const char *dir) {
    char p1[512], p2[512], ix[512];
    snprintf(p1, sizeof p1, "%s/a.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/b.safetensors", dir);
    snprintf(ix, sizeof ix, "%s/model.safetensors.index.json", dir);
    float x[4] = {1, 2, 3, 4};
    dlq_tensor_info t[2];
    memset(t, 0, sizeof t);
    snprintf(t[0].name, sizeof t[0].name, "x");
    snprintf(t[1].name, sizeof t[1].name, "y");
    for (int i = 0; i < 2; i++) { t[i].dtype = DLQ_F32; t[i].ndim = 1; t[i].shape[0] = 2; t[i].data = x + 2 * i; t[i].nbytes = 8; }
    dlq_err e = {0};
    CHECK(dlq_st_write(p1, t, 2, NULL, &e) == 0, "write a: %s", e.msg);
    CHECK(dlq_st_write(p2, t + 1, 1, NULL, &e) == 0, "write b: %s", e.msg);
    dlq_safetensors st;
    write_text(ix, "{\"weight_map\":{\"x\":\"a.safetensors\"}}");
    CHECK(dlq_st_open(&st, dir, &e) == 0 && st.ntensors == 2, "index subset ok: %s", e.msg);
    dlq_st_close(&st);
    write_text(ix, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    CHECK(dlq_st_open(&st, dir, &e) == DLQ_EFORMAT && strstr(e.msg, "'y'") && strstr(e.msg, "b.safetensors"),
          "duplicate across shards: %s", e.msg);
    write_text(ix, "{\"weight_map\":{\"x\":\"b.safetensors\"}}");
    CHECK(dlq_st_open(&st, dir, &e) == DLQ_EFORMAT && strstr(e.msg, "'x'") && strstr(e.msg, "not found"),
          "wrong shard: %s", e.msg);
    write_text(ix, "{\"weight_map\":{\"x\":\"../a.safetensors\"}}");
    CHECK(dlq_st_open(&st, ix, &e) == DLQ_EFORMAT && strstr(e.msg, "relative"), "escape: %s", e.msg);
    write_text(ix, "{\"weight_map\":{\"x\":\"missing.safetensors\"}}");
    CHECK(dlq_st_open(&st, ix, &e) == DLQ_EIO && strstr(e.msg, "missing.safetensors"), "missing shard: %s", e.msg);
    write_text(ix, "{\"weight_map\": 3}");
    CHECK(dlq_st_open(&st, ix, &e) == DLQ_EFORMAT && strstr(e.msg, "weight_map"), "bad map: %s", e.msg);
    CHECK(dlq_st_open(&st, p1, &e) == 0 && st.ntensors == 2, "single file still opens");
    dlq_st_close(&st);
    unlink(p1);
    unlink(p2);
    unlink(ix);
}

/* ---- python fixture + writer round trip ---------------------------------- */

static void test_python_fixture_and_writer(const char *out) {
    const char *fx = "tests/fixtures/io/py_small.safetensors";
    dlq_safetensors st;
    dlq_err e = {0};
    int rc = dlq_st_open(&st, fx, &e);
    CHECK(rc == 0, "open %s: %s", fx, e.msg);
    if (rc) return;
    CHECK(st.ntensors == 6, "n %zu", st.ntensors);
    const dlq_tensor_info *a = dlq_st_find(&st, "a.f32"), *b = dlq_st_find(&st, "b.f16"),
                          *c = dlq_st_find(&st, "c.bf16"), *d = dlq_st_find(&st, "d.i32"),
                          *u = dlq_st_find(&st, "e.u8"), *z = dlq_st_find(&st, "f.empty");
    CHECK(shape_is(a, 2, 2, 3) && val(a, 1) == -2.5f && val(a, 5) == -7.0f, "a");
    CHECK(shape_is(b, 1, 4, 0) && val(b, 2) == 65504.0f, "b");
    CHECK(shape_is(c, 2, 3, 1) && val(c, 0) == 1.5f && val(c, 1) == -3.0f, "c");
    int32_t i2 = 0;
    if (d) memcpy(&i2, (const uint8_t *)d->data + 8, 4);
    CHECK(d && d->dtype == DLQ_I32 && i2 == 2147483647, "d");
    CHECK(u && u->dtype == DLQ_U8 && ((const uint8_t *)u->data)[1] == 255, "u8");
    CHECK(shape_is(z, 2, 0, 4) && z->nbytes == 0, "empty");
    /* rewrite everything with our writer and compare */
    rc = dlq_st_write(out, st.tensors, st.ntensors, "{\"format\":\"pt\",\"by\":\"dlqat\"}", &e);
    CHECK(rc == 0, "write: %s", e.msg);
    dlq_safetensors st2;
    rc = rc ? rc : dlq_st_open(&st2, out, &e);
    CHECK(rc == 0, "reopen: %s", e.msg);
    if (rc == 0) {
        CHECK(st2.ntensors == st.ntensors, "count");
        for (size_t i = 0; i < st.ntensors && i < st2.ntensors; i++) {
            const dlq_tensor_info *x = &st.tensors[i], *y = dlq_st_find(&st2, x->name);
            CHECK(y && y->dtype == x->dtype && y->ndim == x->ndim && y->nbytes == x->nbytes &&
                      memcmp(y->shape, x->shape, sizeof x->shape) == 0 &&
                      (x->nbytes == 0 || memcmp(y->data, x->data, x->nbytes) == 0),
                  "round trip of '%s'", x->name);
        }
        uint64_t hl = 0;
        memcpy(&hl, st2.files[0].data, 8);
        CHECK(hl % 8 == 0 && st2.files[0].data[8 + hl - 1] != 0, "header length %llu padded to 8",
              (unsigned long long)hl);
        dlq_st_close(&st2);
    }
    /* writer validation */
    dlq_tensor_info bad = st.tensors[0];
    bad.nbytes -= 4;
    CHECK(dlq_st_write(out, &bad, 1, NULL, &e) == DLQ_EINVAL && strstr(e.msg, bad.name), "bad nbytes: %s", e.msg);
    dlq_tensor_info two[2] = {st.tensors[0], st.tensors[0]};
    CHECK(dlq_st_write(out, two, 2, NULL, &e) == DLQ_EINVAL, "duplicate names");
    CHECK(dlq_st_write(out, st.tensors, 1, "{\"a\":1}", &e) == DLQ_EINVAL, "non-string metadata");
    dlq_st_close(&st);
}

/* ---- robustness ---------------------------------------------------------- */

static size_t n_ok, n_err;

static void parse_one(const uint8_t *buf, size_t len, const char *label, unsigned long long tag) {
    dlq_tensor_info *ts = NULL;
    size_t n = 0;
    dlq_err e = {0};
    int rc = dlq_st_parse(buf, len, "fuzz", &ts, &n, &e);
    if (rc == 0) {
        n_ok++;
        volatile unsigned acc = 0;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = ts[i].data;
            if (!ts[i].nbytes) continue;
            if (p < buf || p + ts[i].nbytes > buf + len) CHECK(0, "%s %llu: '%s' outside buffer", label, tag, ts[i].name);
            else acc += p[0] + p[ts[i].nbytes - 1];
        }
        (void)acc;
    } else {
        n_err++;
        if (!e.msg[0] || rc > 0) CHECK(0, "%s %llu: error %d without message", label, tag, rc);
    }
    free(ts);
}

static void fuzz(const uint8_t *img, size_t size, size_t full_upto, size_t nlong, int nmut, uint64_t seed,
                 const char *label) {
    rng_state = seed;
    size_t lim = full_upto < size ? full_upto : size;
    for (size_t L = 0; L <= lim; L++) { /* exact-size copies: sanitizers see any overread */
        uint8_t *b = malloc(L ? L : 1);
        memcpy(b, img, L);
        parse_one(b, L, label, L);
        free(b);
    }
    uint8_t *m = malloc(size);
    memcpy(m, img, size);
    for (size_t i = 0; i < nlong && size > lim; i++) parse_one(m, lim + rnd() % (size - lim), label, i);
    uint64_t hl = 0;
    memcpy(&hl, img, 8);
    size_t hot = (size_t)(hl + 8 < size ? hl + 8 : size);
    for (int i = 0; i < nmut; i++) {
        size_t pos[6];
        uint8_t old[6];
        int k = 1 + (int)(rnd() % 6);
        for (int j = 0; j < k; j++) {
            /* a third of the mutations hit the length field, the rest the JSON (digits favoured) */
            size_t p = (rnd() % 3 == 0) ? (size_t)(rnd() % 8) : (size_t)(rnd() % hot);
            pos[j] = p;
            old[j] = m[p];
            switch (rnd() % 5) {
            case 0: m[p] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: m[p] = (uint8_t)rnd(); break;
            case 2: m[p] = (uint8_t)('0' + rnd() % 10); break;
            case 3: m[p] = "{}[],:\"-"[rnd() % 8]; break;
            default: m[p] = (p < 8) ? 0xff : '9'; break;
            }
        }
        parse_one(m, size, label, (unsigned long long)i);
        for (int j = k - 1; j >= 0; j--) m[pos[j]] = old[j];
    }
    free(m);
}

int main(void) {
    uint64_t seed = 0x5afe7e50ull;
    if (getenv("DLQ_SEED")) seed = strtoull(getenv("DLQ_SEED"), NULL, 0);
    printf("test_io_safetensors: seed 0x%llx (set DLQ_SEED to change)\n", (unsigned long long)seed);
    test_7m("models/english-mix-7M/model.safetensors");
    test_7m("models/english-mix-7M");
    test_sharded();
    test_malformed();
    char dir[256], out[300];
    snprintf(dir, sizeof dir, "/tmp/dlq_test_st_%d", (int)getpid());
    if (mkdir(dir, 0700) == 0) {
        test_shard_errors(dir);
        snprintf(out, sizeof out, "%s/roundtrip.safetensors", dir);
        test_python_fixture_and_writer(out);
        if (getenv("DLQ_KEEP_ST")) printf("kept %s\n", out); /* for checking with Python by hand */
        else { unlink(out); rmdir(dir); }
    } else SKIP("cannot create %s", dir);
    /* robustness: the Python fixture (every truncation), the 7M model */
    dlq_mapfile mf;
    dlq_err e = {0};
    if (dlq_mapfile_open(&mf, "tests/fixtures/io/py_small.safetensors", &e) == 0) {
        fuzz(mf.data, mf.size, mf.size, 0, 4000, seed, "fixture");
        dlq_mapfile_close(&mf);
    }
    if (dlq_mapfile_open(&mf, "models/english-mix-7M/model.safetensors", &e) == 0) {
        uint64_t hl = 0;
        memcpy(&hl, mf.data, 8);
        fuzz(mf.data, mf.size, (size_t)hl + 8 + 64, 30, 1500, seed + 1, "7M");
        dlq_mapfile_close(&mf);
    }
    printf("fuzz: %zu parsed, %zu rejected\n", n_ok, n_err);
    CHECK(n_ok > 0 && n_err > 0, "fuzz outcomes");
    return T_DONE();
}
