/* SentencePiece-BPE tokenizer: exact agreement with python sentencepiece
 * (fixtures from scripts/gen_spm_fixture.py) and llama.cpp's llama-spm vectors,
 * the llama2.c tokenizer.bin loader, decoding, BOS policy, and corrupt-input
 * robustness (truncations + seeded byte flips). */
#include <jansson.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#include "io/gguf.h"
#include "t.h"
#include "tokenizer/tok_internal.h"

#define FIX "tests/fixtures/tokenizer/"
#define FIXTURE_MODEL "models/english-mix-7M/tokenizer.model"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
    char *p = NULL;
    dlq_err err;
    if (dlq_read_file(path, &p, len, &err)) return NULL;
    return p;
}

static size_t unhex(const char *h, char *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static void print_ids(const char *what, const int32_t *v, size_t n, size_t from) {
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = from; i < n && i < from + 24; i++) fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

/* Compares ids; on mismatch prints the first differing position with context. */
static int same_ids(const char *what, const int32_t *got, size_t ng, const int32_t *exp, size_t ne) {
    size_t i = 0;
    while (i < ng && i < ne && got[i] == exp[i]) i++;
    if (i == ng && i == ne) return 1;
    fprintf(stderr, "  %s: first mismatch at id %zu (got %zu ids, expected %zu)\n", what, i, ng, ne);
    size_t from = i > 4 ? i - 4 : 0;
    print_ids("got     ", got, ng, from);
    print_ids("expected", exp, ne, from);
    return 0;
}

/* Runs every case of the fixture JSON for model `name` through t. */
static void run_cases(const dlq_tokenizer *t, json_t *cases, const char *name) {
    size_t nc = json_array_size(cases), bad = 0, bad_dec = 0;
    char *text = malloc(65536), *dec = malloc(65536);
    for (size_t k = 0; k < nc; k++) {
        json_t *c = json_array_get(cases, k);
        size_t tl = unhex(json_string_value(json_object_get(c, "text_hex")), text);
        size_t dl = unhex(json_string_value(json_object_get(c, "decoded_hex")), dec);
        json_t *ja = json_object_get(c, "ids");
        size_t ne = json_array_size(ja);
        int32_t *exp = malloc((ne + 1) * sizeof *exp);
        for (size_t i = 0; i < ne; i++) exp[i] = (int32_t)json_integer_value(json_array_get(ja, i));
        int32_t *ids;
        size_t n;
        dlq_err err;
        int rc = dlq_tok_encode(t, text, tl, 0, &ids, &n, &err);
        if (rc) {
            CHECK(0, "%s case %zu: encode failed: %s", name, k, err.msg);
            free(exp);
            continue;
        }
        if (!same_ids(name, ids, n, exp, ne)) {
            bad++;
            fprintf(stderr, "  %s case %zu text: \"%.*s\"\n", name, k, (int)tl, text);
        }
        char *out;
        size_t ol;
        rc = dlq_tok_decode(t, exp, ne, &out, &ol, &err);
        if (rc || ol != dl || memcmp(out, dec, dl) != 0) {
            bad_dec++;
            fprintf(stderr, "  %s case %zu decode: got \"%s\" expected \"%.*s\"\n", name, k, rc ? err.msg : out,
                    (int)dl, dec);
        }
        free(out);
        free(ids);
        free(exp);
    }
    CHECK(bad == 0, "%s: %zu of %zu strings encode differently from sentencepiece", name, bad, nc);
    CHECK(bad_dec == 0, "%s: %zu of %zu decodes differ from sentencepiece", name, bad_dec, nc);
    printf("%s: %zu sentencepiece cases checked\n", name, nc);
    free(text);
    free(dec);
}

static json_t *load_cases(void) {
    json_error_t je;
    json_t *root = json_load_file(FIX "spm_cases.json", 0, &je);
    CHECK(root != NULL, "cannot read " FIX "spm_cases.json: %s", je.text);
    return root;
}

static void test_fixture_model(json_t *root) {
    dlq_tokenizer *t;
    dlq_err err;
    int rc = dlq_tok_load_spm(&t, FIXTURE_MODEL, &err);
    CHECK(rc == 0, "load %s: %s", FIXTURE_MODEL, err.msg);
    if (rc) return;
    CHECK(dlq_tok_vocab_size(t) == 4096 && dlq_tok_bos(t) == 1 && dlq_tok_eos(t) == 2, "vocab %d bos %d eos %d",
          dlq_tok_vocab_size(t), dlq_tok_bos(t), dlq_tok_eos(t));
    CHECK(dlq_tok_find(t, "<0x0A>", 6) >= 0 && dlq_tok_find(t, "\xe2\x96\x81", 3) >= 0, "find");
    if (root) run_cases(t, json_object_get(json_object_get(root, "models"), "english-mix-7M"), "english-mix-7M");

    /* BOS policy */
    int32_t *ids;
    size_t n;
    rc = dlq_tok_encode(t, "Hello", 5, -1, &ids, &n, &err);
    CHECK(rc == 0 && n >= 2 && ids[0] == 1, "default policy prepends BOS");
    if (!rc) free(ids);
    rc = dlq_tok_encode(t, "", 0, 1, &ids, &n, &err);
    CHECK(rc == 0 && n == 1 && ids[0] == 1, "empty text with BOS -> [BOS]");
    if (!rc) free(ids);

    /* streaming decode agrees with whole decode */
    const char *s = "Once upon a time,  there was\na little \xf0\x9f\xa6\x99 girl.";
    rc = dlq_tok_encode(t, s, strlen(s), 1, &ids, &n, &err);
    if (!rc) {
        char buf[4096];
        size_t w = 0;
        int32_t prev = -1; /* stays -1 until a visible token was emitted (tokenizer.h) */
        for (size_t i = 0; i < n; i++) {
            size_t k = dlq_tok_decode_token(t, prev, ids[i], buf + w, sizeof buf - w - 1);
            w += k;
            if (k) prev = ids[i];
        }
        buf[w] = 0;
        CHECK(strcmp(buf, s) == 0, "streaming decode: \"%s\"", buf);
        free(ids);
    }
    int32_t oob = 4096;
    char *out;
    CHECK(dlq_tok_decode(t, &oob, 1, &out, NULL, &err) == DLQ_EINVAL, "out-of-range id rejected");
    dlq_tok_destroy(t);

    /* dlq_tok_load_file on the model folder (reads tokenizer_config.json) */
    rc = dlq_tok_load_file(&t, "models/english-mix-7M", 0, &err);
    CHECK(rc == 0 && dlq_tok_add_bos(t) == 1, "load_file(folder): %s", rc ? err.msg : "");
    if (!rc) dlq_tok_destroy(t);
}

static void test_variant(json_t *root) {
    dlq_tokenizer *t;
    dlq_err err;
    int rc = dlq_tok_load_spm(&t, FIX "spm-variant.model", &err);
    CHECK(rc == 0, "load spm-variant.model: %s", err.msg);
    if (rc) return;
    if (root) run_cases(t, json_object_get(json_object_get(root, "models"), "spm-variant"), "spm-variant");
    dlq_tok_destroy(t);
}

static void test_valid_txt(void) {
    const char *vpath = t_shared("text/english-mix/valid.txt");
    if (!vpath) {
        SKIP("../shared/data/text/english-mix/valid.txt absent");
        return;
    }
    size_t tl, el;
    char *text = slurp(vpath, &tl);
    char *expb = slurp(FIX "english-mix-7M.valid.ids.i32", &el);
    CHECK(text && expb, "cannot read valid.txt or its id fixture");
    dlq_tokenizer *t;
    dlq_err err;
    if (!text || !expb || dlq_tok_load_spm(&t, FIXTURE_MODEL, &err)) {
        free(text);
        free(expb);
        return;
    }
    size_t ne = el / 4;
    int32_t *exp = malloc(ne * sizeof *exp + 1);
    for (size_t i = 0; i < ne; i++) {
        const unsigned char *p = (const unsigned char *)expb + 4 * i;
        exp[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    int32_t *ids;
    size_t n;
    double t0 = now_s(), c0 = cpu_s();
    int rc = dlq_tok_encode(t, text, tl, 0, &ids, &n, &err);
    double dt = now_s() - t0, dc = cpu_s() - c0;
    CHECK(rc == 0, "encode valid.txt: %s", err.msg);
    if (!rc) {
        printf("spm encode valid.txt: %zu bytes -> %zu ids in %.3f s wall, %.3f s cpu (%.1f MB/s wall)\n", tl, n,
               dt, dc, tl / dt / 1e6);
        CHECK(same_ids("valid.txt", ids, n, exp, ne), "valid.txt ids differ from sentencepiece");
        char *out;
        size_t ol;
        t0 = now_s();
        rc = dlq_tok_decode(t, ids, n, &out, &ol, &err);
        dt = now_s() - t0;
        CHECK(rc == 0 && ol == tl && memcmp(out, text, tl) == 0, "decode(valid.txt ids) != valid.txt");
        if (!rc) {
            printf("spm decode valid.txt: %.1f MB/s\n", ol / dt / 1e6);
            free(out);
        }
        free(ids);
    }
    dlq_tok_destroy(t);
    free(exp);
    free(expb);
    free(text);
}

static void test_llama2(json_t *root) {
    const char *mp = t_shared("models/llama2-tokenizer/tokenizer.model");
    const char *bp = t_shared("models/llama2-tokenizer/tokenizer.bin");
    json_t *cases = root ? json_object_get(json_object_get(root, "models"), "llama2") : NULL;
    if (!mp || !bp || !cases) {
        SKIP("llama2 tokenizer (../shared) or its fixture cases absent");
        return;
    }
    dlq_tokenizer *t;
    dlq_err err;
    int rc = dlq_tok_load_spm(&t, mp, &err);
    CHECK(rc == 0, "load %s: %s", mp, err.msg);
    if (!rc) {
        run_cases(t, cases, "llama2 tokenizer.model");
        dlq_tok_destroy(t);
    }
    rc = dlq_tok_load_llama2c(&t, bp, 32000, &err);
    CHECK(rc == 0, "load %s: %s", bp, err.msg);
    if (!rc) {
        CHECK(dlq_tok_find(t, "<s>", 3) == 1 && dlq_tok_type(t, 1) == DLQ_TOKTYPE_CONTROL, "llama2c <s>");
        run_cases(t, cases, "llama2 tokenizer.bin");
        dlq_tok_destroy(t);
    }
    rc = dlq_tok_load_llama2c(&t, bp, 32001, &err);
    CHECK(rc == DLQ_EFORMAT, "tokenizer.bin with a wrong vocab size is refused");
    if (!rc) dlq_tok_destroy(t);
}

/* stories260K's 512-token tokenizer, shipped as tok512.model (SentencePiece, normalizer with
 * remove_extra_whitespaces) and tok512.bin (llama2.c: pieces and scores only, no normalizer, so
 * runs of spaces are kept as llama2.c's run.c keeps them): the .model equals python sentencepiece
 * on the fixture cases (whitespace runs included); both equal it on the shipped TinyStories
 * evaluation text (59,086 ids; no leading or repeated spaces there) and decode it back byte for byte */
static void test_tok512(json_t *root) {
    json_t *cases = root ? json_object_get(json_object_get(root, "models"), "tok512") : NULL;
    size_t tl = 0, el = 0;
    char *text = slurp("data/sample/tinystories-eval.txt", &tl), *expb = slurp(FIX "tok512.tinystories-eval.ids.i32", &el);
    CHECK(cases && text && expb, "tok512 cases, tinystories-eval.txt or its id fixture missing");
    size_t ne = el / 4;
    int32_t *exp = malloc(ne * sizeof *exp + 1);
    for (size_t i = 0; exp && expb && i < ne; i++) memcpy(&exp[i], expb + 4 * i, 4); /* little-endian hosts */
    const char *paths[] = {"models/stories260K/tok512.model", "models/stories260K/tok512.bin"};
    for (int k = 0; k < 2 && cases && text && expb && exp; k++) {
        dlq_tokenizer *t;
        dlq_err err;
        int rc = k == 0 ? dlq_tok_load_spm(&t, paths[k], &err) : dlq_tok_load_llama2c(&t, paths[k], 512, &err);
        CHECK(rc == 0, "load %s: %s", paths[k], err.msg);
        if (rc) continue;
        if (k == 0) run_cases(t, cases, paths[k]);
        int32_t *ids;
        size_t n;
        rc = dlq_tok_encode(t, text, tl, 0, &ids, &n, &err);
        CHECK(rc == 0 && same_ids(paths[k], ids, n, exp, ne), "%s: tinystories-eval.txt ids differ from sentencepiece",
              paths[k]);
        if (!rc) {
            char *out;
            size_t ol;
            CHECK(dlq_tok_decode(t, ids, n, &out, &ol, &err) == 0 && ol == tl && !memcmp(out, text, tl),
                  "%s: decode(encode(text)) != text", paths[k]);
            if (ol == tl) free(out);
            free(ids);
        }
        dlq_tok_destroy(t);
    }
    free(exp); free(expb); free(text);
}

/* llama.cpp tests/test-tokenizer-0: inputs separated by "\n__ggml_vocab_test__\n",
 * one output line of ids (no BOS) per input. */
static void test_llamacpp_vectors(json_t *root) {
    const char *gp = t_shared("models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    const char *ip = t_shared("models/gguf-vocab/ggml-vocab-llama-spm.gguf.inp");
    const char *op = t_shared("models/gguf-vocab/ggml-vocab-llama-spm.gguf.out");
    if (!gp || !ip || !op) {
        SKIP("llama.cpp ggml-vocab-llama-spm vectors (../shared) absent");
        return;
    }
    dlq_gguf g;
    dlq_err err;
    int rc = dlq_gguf_open(&g, gp, &err);
    CHECK(rc == 0, "gguf open: %s", err.msg);
    if (rc) return;
    dlq_tokenizer *t;
    rc = dlq_tok_load_gguf(&t, &g, &err);
    CHECK(rc == 0, "load gguf tokenizer: %s", err.msg);
    if (rc) {
        dlq_gguf_close(&g);
        return;
    }
    CHECK(dlq_tok_kind_of(t) == DLQ_TOK_SPM && dlq_tok_vocab_size(t) == 32000 && dlq_tok_bos(t) == 1, "gguf meta");
    size_t il, ol;
    char *inp = slurp(ip, &il), *outs = slurp(op, &ol);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep), pos = 0, k = 0, bad = 0;
    char *line = outs;
    while (pos < il && line && *line) {
        const char *nx = memmem(inp + pos, il - pos, sep, seplen);
        size_t tl = nx ? (size_t)(nx - (inp + pos)) : il - pos;
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        int32_t exp[1024];
        size_t ne = 0;
        for (char *p = line, *e; ne < 1024; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p) break;
            exp[ne++] = (int32_t)v;
        }
        int32_t *ids;
        size_t n;
        rc = dlq_tok_encode(t, inp + pos, tl, 0, &ids, &n, &err);
        if (rc || !same_ids("llama-spm", ids, n, exp, ne)) {
            bad++;
            fprintf(stderr, "  llama-spm vector %zu: \"%.*s\"\n", k, (int)tl, inp + pos);
        }
        if (!rc) free(ids);
        k++;
        line = eol ? eol + 1 : NULL;
        if (!nx) break;
        pos = (size_t)(nx - inp) + seplen;
    }
    CHECK(k >= 40 && bad == 0, "llama.cpp llama-spm vectors: %zu of %zu differ", bad, k);
    printf("llama.cpp llama-spm: %zu vectors checked\n", k);
    /* same Llama vocabulary: the sentencepiece cases must hold through GGUF too */
    json_t *cases = root ? json_object_get(json_object_get(root, "models"), "llama2") : NULL;
    if (cases) run_cases(t, cases, "llama2 via ggml-vocab-llama-spm.gguf");
    free(inp);
    free(outs);
    dlq_tok_destroy(t);
    dlq_gguf_close(&g);
}

/* Writes t as a llama2.c tokenizer.bin (pieces with "▁" -> " "). */
static int write_llama2c(const dlq_tokenizer *t, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint32_t mx = 0;
    for (int32_t i = 0; i < dlq_tok_vocab_size(t); i++) {
        size_t l;
        dlq_tok_piece(t, i, &l);
        if (l > mx) mx = (uint32_t)l;
    }
    fwrite(&mx, 4, 1, f);
    for (int32_t i = 0; i < dlq_tok_vocab_size(t); i++) {
        size_t l;
        const char *p = dlq_tok_piece(t, i, &l);
        char buf[1024];
        size_t m = 0;
        for (size_t j = 0; j < l && m < sizeof buf;) {
            if (j + 3 <= l && memcmp(p + j, "\xe2\x96\x81", 3) == 0) {
                buf[m++] = ' ';
                j += 3;
            } else {
                buf[m++] = p[j++];
            }
        }
        float sc = dlq_tok_score(t, i);
        int32_t len = (int32_t)m;
        fwrite(&sc, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(buf, 1, m, f);
    }
    return fclose(f);
}

static void test_llama2c_roundtrip(json_t *root, const char *dir) {
    dlq_tokenizer *t, *t2;
    dlq_err err;
    if (dlq_tok_load_spm(&t, FIXTURE_MODEL, &err)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/fixture_tokenizer.bin", dir);
    CHECK(write_llama2c(t, path) == 0, "write %s", path);
    int rc = dlq_tok_load_llama2c(&t2, path, 4096, &err);
    CHECK(rc == 0, "load written tokenizer.bin: %s", err.msg);
    if (!rc) {
        if (root) run_cases(t2, json_object_get(json_object_get(root, "models"), "english-mix-7M"),
                            "english-mix-7M as tokenizer.bin");
        dlq_tok_destroy(t2);
    }
    dlq_tok_destroy(t);
}

/* ---- corrupt inputs ---------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Loads bytes through an in-memory file (memfd, opened by its /proc path);
 * if loading succeeds, exercises the tokenizer. */
static int try_load(int fd, const char *tmp, const char *data, size_t n, int kind) {
    if (ftruncate(fd, 0) || pwrite(fd, data, n, 0) != (ssize_t)n) return -1;
    dlq_tokenizer *t;
    dlq_err err;
    int rc = kind == 0 ? dlq_tok_load_spm(&t, tmp, &err) : dlq_tok_load_llama2c(&t, tmp, kind, &err);
    if (rc == 0) {
        const char *s = "Hello  world\n\xe4\xb8\xad <s> 123";
        int32_t *ids;
        size_t m;
        if (dlq_tok_encode(t, s, strlen(s), -1, &ids, &m, &err) == 0) {
            char *out;
            if (dlq_tok_decode(t, ids, m, &out, NULL, &err) == 0) free(out);
            free(ids);
        }
        dlq_tok_destroy(t);
        return 1;
    }
    return (int)strlen(err.msg) > 0 ? 0 : -2;
}

static void fuzz_file(const char *what, const char *src, size_t maxtrunc, int nflips, int kind) {
    size_t n;
    char *data = slurp(src, &n);
    if (!data) return;
    int fd = memfd_create("dlq_tok_fuzz", 0);
    CHECK(fd >= 0, "memfd_create");
    if (fd < 0) {
        free(data);
        return;
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/proc/self/fd/%d", fd);
    int ok = 0, errs = 0, nomsg = 0;
    size_t lim = n < maxtrunc ? n : maxtrunc;
    for (size_t l = 0; l < lim; l++) {
        int r = try_load(fd, tmp, data, l, kind);
        r == 1 ? ok++ : r == 0 ? errs++ : nomsg++;
    }
    char *m = malloc(n);
    for (int it = 0; it < nflips; it++) {
        memcpy(m, data, n);
        int k = 1 + (int)(rng() % 8);
        for (int j = 0; j < k; j++) {
            /* bias flips toward the header / specs / first pieces */
            size_t pos = rng() % 4 == 0 ? rng() % n : rng() % (n < 4096 ? n : 4096);
            m[pos] = (char)(rng() & 0xFF);
        }
        /* sentencepiece models keep specs at the end: flip there too */
        if (kind == 0) m[n - 1 - rng() % (n < 64 ? n : 64)] ^= (char)(1u << (rng() % 8));
        int r = try_load(fd, tmp, m, n, kind);
        r == 1 ? ok++ : r == 0 ? errs++ : nomsg++;
    }
    CHECK(nomsg == 0, "%s: %d failures without a message", what, nomsg);
    printf("%s: %zu truncations + %d mutations: %d loaded, %d refused with an error\n", what, lim, nflips, ok, errs);
    free(m);
    free(data);
    close(fd);
}

static void test_corrupt(const char *dir) {
    uint64_t seed = 0x5eed1234abcdULL;
    rng_state = seed;
    printf("corrupt-input seed: 0x%llx\n", (unsigned long long)seed);
    char bin[512];
    double t0 = now_s();
    fuzz_file("tokenizer.model (fixture)", FIXTURE_MODEL, 4096, 300, 0);
    snprintf(bin, sizeof bin, "%s/fixture_tokenizer.bin", dir);
    fuzz_file("tokenizer.bin (fixture)", bin, 4096, 300, 4096);
    const char *lb = t_shared("models/llama2-tokenizer/tokenizer.bin");
    if (lb) fuzz_file("tokenizer.bin (llama2)", lb, 2048, 20, 32000);
    printf("corrupt-input tests: %.2f s\n", now_s() - t0);
}

int main(void) {
    char dir[] = "/tmp/dlq_tok_spm_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    json_t *root = load_cases();
    test_fixture_model(root);
    test_variant(root);
    test_llama2c_roundtrip(root, dir);
    test_valid_txt();
    test_llama2(root);
    test_tok512(root);
    test_llamacpp_vectors(root);
    test_corrupt(dir);
    char bin[600];
    snprintf(bin, sizeof bin, "%s/fixture_tokenizer.bin", dir);
    unlink(bin);
    rmdir(dir);
    json_decref(root);
    return T_DONE();
}
