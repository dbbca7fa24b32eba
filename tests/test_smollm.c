/* SmolLM2-135M-Instruct (Q4_1 GGUF, ../shared/data/models/smollm2-135m; scripts/fetch_smollm2.sh
 * gets it) against llama.cpp itself, from numbers recorded by scripts/gen_smollm_vectors.py with
 * llama.cpp's own tools (llama.cpp 0c1e570, from the llama-cpp-python 0.3.36 sdist):
 *   - the tokenizer (gpt2 vocabulary, pre-tokenizer "smollm", add_bos_token = false): every case
 *     of tests/fixtures/tokenizer/smollm/vectors.inp gives llama-tokenize's ids (.out), and whole
 *     files give its id count, FNV-1a hash and ends (texts.json); decode gives each text back;
 *   - the model loads (config, load time) and `dlqat info` describes it;
 *   - `dlqat ppl --protocol llama.cpp` against `llama-perplexity -c 512 --chunks 4`
 *     (tests/fixtures/llamacpp/smollm-ppl.json) on the Q4_1 file: within 0.1 %. llama.cpp's CPU
 *     matmuls quantize the activations to 8 bits (Q8_1 for the Q4_1 weights, Q8_0 for the tied
 *     Q8_0 embedding) where we multiply the dequantized weights in fp32; per chunk that moves
 *     llama.cpp's number by up to 0.7 % on this model (its first chunk), over 4 chunks by 0.02 %.
 *     And against llama-perplexity on the same weights written as an F32 GGUF (llama.cpp in fp32,
 *     as we compute): within 2e-4 (measured 4e-5; summation order and BLAS kernels differ);
 *   - greedy decoding (KV cache, argmax, the vocabulary's BOS policy) of a chat prompt and a plain
 *     one gives llama-completion's text on the F32 weights exactly (the smallest top-1/top-2 logit
 *     gap on the way is 0.026, printed; fp32 rounding across BLAS kernels moves logits by ~1e-4);
 *     on the Q4_1 file llama.cpp's 8-bit activations flip a near-tie in the plain prompt after
 *     66 characters (printed);
 *     `dlqat generate --temp 0` answers the chat prompt as llama-completion does.
 * A wrong tokenizer, RoPE permutation, block layout or BOS policy moves these by percents.
 * SKIPs (with a message) when the model is absent. About 25 s of CPU. */
#include <stdint.h>
#include <time.h>

#include "core/mapfile.h"
#include "io/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sampler.h"
#include "t.h"
#include "tokenizer/tokenizer.h"

#define GGUF_REL "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
#define FIX "tests/fixtures/tokenizer/smollm/"
#define PPL_FIX "tests/fixtures/llamacpp/smollm-ppl.json"
#define DIR "build/tests/smollm"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t fnv64_ids(const int32_t *v, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) {
            h ^= (uint8_t)((uint32_t)v[i] >> (8 * b));
            h *= 1099511628211ull;
        }
    return h;
}

static void test_vectors(const dlq_tokenizer *t) {
    char *inp = NULL, *outp = NULL;
    size_t ilen = 0, olen = 0;
    dlq_err err = {0};
    if (dlq_read_file(FIX "vectors.inp", &inp, &ilen, &err) || dlq_read_file(FIX "vectors.out", &outp, &olen, &err)) {
        CHECK(0, "%s", err.msg);
        free(inp);
        return;
    }
    size_t ipos = 0, opos = 0, nids = 0, tl, ne;
    int ncase = 0, nbad = 0, ndec = 0, nspecial = 0;
    const char *text;
    int32_t exp[2048];
    while (t_vocab_next(inp, ilen, &ipos, outp, olen, &opos, &text, &tl, exp, 2048, &ne)) {
        int32_t *ids = NULL;
        size_t n = 0;
        /* -1: the vocabulary's own policy, as llama-tokenize (add_bos_token = false, no EOS) */
        int rc = dlq_tok_encode(t, text, tl, -1, &ids, &n, &err);
        CHECK(rc == 0, "case %d: %s", ncase, err.msg);
        int same = rc == 0 && n == ne && (n == 0 || !memcmp(ids, exp, n * sizeof *ids));
        if (!same && !nbad++) {
            fprintf(stderr, "    case %d \"%.*s\":\n    expected", ncase, (int)(tl > 200 ? 200 : tl), text);
            for (size_t i = 0; i < ne && i < 48; i++) fprintf(stderr, " %d", exp[i]);
            fprintf(stderr, "\n    got     ");
            for (size_t i = 0; i < n && i < 48; i++) fprintf(stderr, " %d", ids[i]);
            fputc('\n', stderr);
        }
        /* decode gives the text back unless a CONTROL token (<|im_start|>, decoded to nothing) is in it */
        int special = 0;
        for (size_t i = 0; i < n; i++) special |= dlq_tok_type(t, ids[i]) == DLQ_TOKTYPE_CONTROL;
        nspecial += special;
        if (rc == 0 && !special) {
            char *dec = NULL;
            size_t dl = 0;
            if (dlq_tok_decode(t, ids, n, &dec, &dl, &err) == 0 && dl == tl && !memcmp(dec, text, tl)) ndec++;
            else CHECK(0, "case %d: decode does not give the input back", ncase);
            free(dec);
        }
        nids += ne;
        free(ids);
        ncase++;
    }
    CHECK(opos == olen && ncase >= 200, "%d cases parsed, .out %zu of %zu bytes used", ncase, opos, olen);
    CHECK(nspecial >= 3, "only %d cases with chat tokens", nspecial);
    CHECK(nbad == 0, "%d of %d cases differ from llama-tokenize", nbad, ncase);
    printf("smollm tokenizer: %d/%d llama.cpp vectors equal (%zu ids), %d decode back\n", ncase - nbad, ncase, nids, ndec);
    free(inp);
    free(outp);
}

static void test_texts(const dlq_tokenizer *t) {
    json_error_t je;
    json_t *root = json_load_file(FIX "texts.json", 0, &je);
    CHECK(root != NULL, FIX "texts.json: %s", root ? "" : je.text);
    if (!root) return;
    size_t i;
    json_t *c;
    int ndone = 0;
    json_array_foreach(json_object_get(root, "texts"), i, c) {
        const char *f = json_string_value(json_object_get(c, "file"));
        const char *path = f && !strncmp(f, "../shared/data/", 15) ? t_shared(f + 15) : f;
        if (!path) {
            SKIP("%s absent", f ? f : "(no name)");
            continue;
        }
        char *buf = NULL;
        size_t len = 0;
        dlq_err err = {0};
        if (dlq_read_file(path, &buf, &len, &err)) { CHECK(0, "%s", err.msg); continue; }
        int32_t *ids = NULL;
        size_t n = 0;
        double t0 = now_s();
        int rc = dlq_tok_encode(t, buf, len, -1, &ids, &n, &err);
        double dt = now_s() - t0;
        CHECK(rc == 0, "%s: %s", f, err.msg);
        size_t want = (size_t)json_integer_value(json_object_get(c, "n"));
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv64_ids(ids, n));
        json_t *head = json_object_get(c, "head"), *tail = json_object_get(c, "tail");
        int ends = n >= 32 && json_array_size(head) == 32 && json_array_size(tail) == 32;
        for (size_t k = 0; ends && k < 32; k++)
            ends = ids[k] == json_integer_value(json_array_get(head, k)) &&
                   ids[n - 32 + k] == json_integer_value(json_array_get(tail, k));
        CHECK(rc == 0 && n == want && ends && !strcmp(hex, json_string_value(json_object_get(c, "fnv1a64"))),
              "%s: %zu ids (llama.cpp %zu), hash %s vs %s, ends %s", f, n, want, hex,
              json_string_value(json_object_get(c, "fnv1a64")), ends ? "equal" : "differ");
        printf("smollm tokenizer: %s, %zu bytes -> %zu ids = llama.cpp's (%.2f MB/s)\n", f, len, n, len / 1e6 / dt);
        ndone++;
        free(ids);
        free(buf);
    }
    CHECK(ndone >= 1, "no whole-file case ran");
    json_decref(root);
}

/* top-1 minus top-2 logit */
static float margin(const float *x, int n) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > a) { b = a; a = x[i]; }
        else if (x[i] > b) b = x[i];
    return a - b;
}

/* greedy continuation of prompt (the vocabulary's BOS policy, as llama-completion), up to n
 * tokens or EOS; the decoded text in a malloc'd string; *min_margin = the smallest top-1/top-2
 * logit gap met on the way (how far from a tie the greedy path is) */
static char *greedy(const dlq_model *m, const char *prompt, int n, float *min_margin, dlq_err *err) {
    int32_t *ids = NULL;
    size_t np = 0;
    if (dlq_tok_encode(m->tok, prompt, strlen(prompt), dlq_tok_add_bos(m->tok), &ids, &np, err)) return NULL;
    int S = (int)np + n + 1, V = m->cfg.vocab_size;
    dlq_state *st = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int rc = logits && gen ? dlq_state_create(&st, m, 1, (int)np, S, err) : DLQ_ENOMEM;
    if (!rc) rc = dlq_forward(m, st, ids, 1, (int)np, 0, logits, 1, err);
    int ng = 0;
    *min_margin = INFINITY;
    while (!rc && ng < n) {
        int32_t next = dlq_argmax(logits, V);
        float mg = margin(logits, V);
        if (mg < *min_margin) *min_margin = mg;
        if (next == dlq_tok_eos(m->tok)) break;
        gen[ng++] = next;
        if (ng < n) rc = dlq_forward(m, st, &next, 1, 1, (int)np + ng - 1, logits, 1, err);
    }
    char *out = NULL;
    size_t ol = 0;
    if (!rc) rc = dlq_tok_decode(m->tok, gen, (size_t)ng, &out, &ol, err);
    if (st) dlq_state_destroy(st);
    free(logits);
    free(gen);
    free(ids);
    return rc ? NULL : out;
}

static size_t common_prefix(const char *a, const char *b) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return i;
}

/* The GGUF's vocabulary as a Hugging Face tokenizer.json with SmolLM2's pre-tokenizer
 * (Sequence[Digits(individual_digits), ByteLevel]; its 17 CONTROL tokens as special added tokens),
 * for the tokenizer.json loader: it must give llama.cpp's ids too (HF tokenizers 0.23.3 on this file
 * gives them as well: checked by hand, every vector and both whole files). */
static int write_hf_json(const dlq_gguf *g, const char *path) {
    const dlq_gguf_kv *tk = dlq_gguf_find(g, "tokenizer.ggml.tokens"), *mk = dlq_gguf_find(g, "tokenizer.ggml.merges");
    const dlq_gguf_kv *yk = dlq_gguf_find(g, "tokenizer.ggml.token_type");
    if (!tk || !mk || !yk) return -1;
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (uint64_t i = 0; i < tk->arr_n; i++) {
        dlq_gguf_str t = dlq_gguf_arr_str(tk, i);
        char *k = strndup(t.ptr, (size_t)t.len);
        json_object_set_new(vocab, k, json_integer((json_int_t)i));
        if (dlq_gguf_arr_int(yk, i) == DLQ_TOKTYPE_CONTROL)
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content", k,
                                                   "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
        free(k);
    }
    for (uint64_t i = 0; i < mk->arr_n; i++) {
        dlq_gguf_str m = dlq_gguf_arr_str(mk, i);
        json_array_append_new(merges, json_stringn(m.ptr, (size_t)m.len));
    }
    json_t *root = json_pack(
        "{s:s, s:o, s:n, s:{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}, s:n, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:o, s:o}}", "version", "1.0",
        "added_tokens", added, "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Digits",
        "individual_digits", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "post_processor",
        "decoder", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout", "vocab", vocab, "merges", merges);
    int rc = root ? json_dump_file(root, path, JSON_COMPACT) : -1;
    json_decref(root);
    return rc;
}


int main(void) {
    const char *gguf = t_shared(GGUF_REL);
    if (!gguf) {
        printf("SKIP test_smollm: ../shared/data/" GGUF_REL " absent (sh scripts/fetch_smollm2.sh fetches it)\n");
        SKIP("../shared/data/" GGUF_REL " absent");
        return T_DONE();
    }
    dlq_err err = {0};
    /* 1. tokenizer alone (from the GGUF's metadata; no weights) */
    dlq_gguf g;
    int rc = dlq_gguf_open(&g, gguf, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return T_DONE();
    dlq_tokenizer *t = NULL;
    rc = dlq_tok_load_gguf(&t, &g, &err);
    CHECK(rc == 0, "tokenizer: %s", err.msg);
    if (!rc) {
        CHECK(dlq_tok_kind_of(t) == DLQ_TOK_BPE && dlq_tok_vocab_size(t) == 49152, "kind %d, vocab %d", dlq_tok_kind_of(t),
              dlq_tok_vocab_size(t));
        /* add_bos_token = false is honoured; bos/eos from the metadata */
        CHECK(dlq_tok_add_bos(t) == 0 && dlq_tok_bos(t) == 1 && dlq_tok_eos(t) == 2, "add_bos %d, bos %d, eos %d",
              dlq_tok_add_bos(t), dlq_tok_bos(t), dlq_tok_eos(t));
        test_vectors(t);
        test_texts(t);
        dlq_tok_destroy(t);
    }
    /* the same vocabulary as a tokenizer.json with SmolLM2's Hugging Face pre-tokenizer */
    if (system("mkdir -p " DIR) != 0) CHECK(0, "mkdir " DIR);
    rc = write_hf_json(&g, DIR "/tokenizer.json");
    CHECK(rc == 0, "writing " DIR "/tokenizer.json");
    if (!rc) {
        rc = dlq_tok_load_hf_json(&t, DIR "/tokenizer.json", &err);
        CHECK(rc == 0, "tokenizer.json: %s", err.msg);
        if (!rc) {
            printf("tokenizer.json, Sequence[Digits, ByteLevel]:\n");
            test_vectors(t);
            dlq_tok_destroy(t);
        }
    }
    dlq_gguf_close(&g);

    /* 2. the whole model: load time, dlqat info */
    double t0 = now_s();
    dlq_model *m = NULL;
    rc = dlq_model_load(&m, gguf, NULL, &err);
    double tl = now_s() - t0;
    CHECK(rc == 0 && m->tok, "load: %s", err.msg);
    if (rc) return T_DONE();
    CHECK(m->cfg.n_layers == 30 && m->cfg.dim == 576 && m->cfg.n_heads == 9 && m->cfg.n_kv_heads == 3 &&
              m->cfg.hidden_dim == 1536 && m->cfg.vocab_size == 49152 && m->cfg.tied,
          "config: layers %d dim %d heads %d/%d mlp %d vocab %d tied %d", m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads,
          m->cfg.n_kv_heads, m->cfg.hidden_dim, m->cfg.vocab_size, m->cfg.tied);
    printf("smollm: loaded in %.2f s (Q4_1 + Q8_0 dequantized to f32)\n", tl);
    static char o[1 << 16];
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "build/dlqat info %s", gguf);
    rc = t_run(cmd, o, sizeof o);
    CHECK(rc == 0 && strstr(o, "layers      30") && strstr(o, "vocab       49152") && strstr(o, "byte-level-bpe") &&
              strstr(o, "add_bos no"),
          "dlqat info (rc %d): %s", rc, o);

    /* 3. perplexity and greedy text against llama.cpp's recorded numbers */
    json_error_t je;
    json_t *fx = json_load_file(PPL_FIX, 0, &je);
    CHECK(fx != NULL, PPL_FIX ": %s", fx ? "" : je.text);
    if (!fx) { dlq_model_destroy(m); return T_DONE(); }
    const char *text = json_string_value(json_object_get(fx, "text"));
    int ctx = (int)json_integer_value(json_object_get(fx, "ctx")), chunks = (int)json_integer_value(json_object_get(fx, "chunks"));
    double want = json_number_value(json_object_get(fx, "ppl_llamacpp"));
    double want32 = json_number_value(json_object_get(fx, "ppl_llamacpp_f32"));
    CHECK(text && ctx > 0 && chunks > 0 && want > 1 && want32 > 1, "fixture fields");
    snprintf(cmd, sizeof cmd,
             "build/dlqat ppl --model %s --text %s --ctx %d --max-windows %d --protocol llama.cpp --json " DIR "/ppl.json",
             gguf, text, ctx, chunks);
    t0 = now_s();
    rc = t_run(cmd, o, sizeof o);
    double got = t_json_num(DIR "/ppl.json", "ppl"), rel = fabs(got - want) / want, rel32 = fabs(got - want32) / want32;
    CHECK(rc == 0 && rel <= 1e-3, "dlqat ppl --protocol llama.cpp %.4f vs llama-perplexity %.4f (%.4f %%; rc %d) %s", got, want,
          100 * rel, rc, rc ? o : "");
    CHECK(rc == 0 && rel32 <= 2e-4, "dlqat ppl --protocol llama.cpp %.4f vs llama-perplexity on the F32 weights %.4f (%.2e)", got,
          want32, rel32);
    printf("smollm: ppl %.4f vs llama-perplexity %.4f (%.4f %%), on the F32 weights %.4f (%.1e); %d chunks of %d, %.1f s\n", got,
           want, 100 * rel, want32, rel32, chunks, ctx, now_s() - t0);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(fx, "greedy"), i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        const char *comp = json_string_value(json_object_get(c, "completion"));
        const char *comp32 = json_string_value(json_object_get(c, "completion_f32"));
        int n = (int)json_integer_value(json_object_get(c, "n"));
        if (!prompt || !comp || !comp32 || n < 1) { CHECK(0, "greedy case %zu fields", i); continue; }
        float mg = 0;
        char *ours = greedy(m, prompt, n, &mg, &err);
        CHECK(ours != NULL, "greedy %zu: %s", i, err.msg);
        if (!ours) continue;
        size_t pq = common_prefix(ours, comp);
        CHECK(!strcmp(ours, comp32) && strlen(comp32) > 10, "greedy %zu: \"%s\" vs llama-completion on the F32 weights \"%s\"", i,
              ours, comp32);
        /* on the Q4_1 file, llama.cpp's 8-bit activations may flip a near-tie, but not at once */
        CHECK(pq >= 20, "greedy %zu: only %zu characters in common with llama-completion on the Q4_1 file \"%s\"", i, pq, comp);
        printf("smollm: greedy %zu = llama.cpp's on the F32 weights: \"%s\" (smallest top-2 logit gap %.3f); llama.cpp on "
               "the Q4_1 file: %s\n", i, ours, mg, ours[pq] || comp[pq] ? "the same up to character" : "the same");
        if (ours[pq] || comp[pq]) printf("        %zu (\"...%s\")\n", pq, comp + pq);
        free(ours);
        /* the CLI on the chat prompt: an answer in English (it prepends BOS = <|im_start|> to every prompt, which
           llama.cpp does not do for this vocabulary, so only the chat prompt, that starts with one, is comparable) */
        if (i == 0 && !strchr(prompt, '\'')) {
            snprintf(cmd, sizeof cmd, "build/dlqat generate --model %s --prompt '%s' -n %d --temp 0", gguf, prompt, n);
            rc = t_run_stdout(cmd, o, sizeof o);
            size_t ol = strlen(o), cl = strlen(comp);
            while (ol && o[ol - 1] == '\n') o[--ol] = 0;
            /* stdout = the prompt decoded (chat tokens decode to nothing) + the continuation */
            CHECK(rc == 0 && ol >= cl && !strcmp(o + ol - cl, comp) && strstr(o, "Paris"),
                  "dlqat generate: \"%s\" does not end with llama-completion's \"%s\" (rc %d)", o, comp, rc);
        }
    }
    json_decref(fx);
    dlq_model_destroy(m);
    return T_DONE();
}
