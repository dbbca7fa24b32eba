/* Tokenizer from GGUF metadata (tokenizer.ggml.*), as llama.cpp reads it:
 *   model "llama" -> spm, "gpt2" -> byte-level bpe (merges + pre-tokenizer);
 *   tokens (string array), scores (f32 array, optional), token_type (int
 *   array, optional), bos/eos/unknown/padding_token_id, add_bos_token,
 *   add_eos_token, add_space_prefix (spm dummy prefix).
 * For spm, byte fallback is on when the vocabulary has byte tokens (llama.cpp
 * always falls back to bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/bpe_internal.h"
#include "tokenizer/tok_internal.h"

#define BAD(...) dlq_errf(err, DLQ_EFORMAT, __VA_ARGS__)

static const char *src_name(const dlq_gguf *g) { return g->file.path[0] ? g->file.path : "gguf"; }

/* Optional integer key: 0 and *out set, 1 if absent, <0 on a wrong type. */
static int opt_i64(const dlq_gguf *g, const char *key, int64_t *out, dlq_err *err) {
    if (!dlq_gguf_find(g, key)) return 1;
    return dlq_gguf_get_i64(g, key, out, err);
}

static int opt_bool(const dlq_gguf *g, const char *key, int *out, dlq_err *err) {
    if (!dlq_gguf_find(g, key)) return 1;
    return dlq_gguf_get_bool(g, key, out, err);
}

static int is_byte_piece(const char *p, size_t n) {
    return n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>';
}

static int setup_bpe(dlq_tokenizer *t, const dlq_gguf *g, const char *path, dlq_err *err) {
    const dlq_gguf_kv *mk = dlq_gguf_find(g, "tokenizer.ggml.merges");
    if (!mk || mk->type != DLQ_GGUF_ARRAY || mk->arr_type != DLQ_GGUF_STRING)
        return BAD("%s: tokenizer.ggml.merges: missing or not a string array (needed by a gpt2 tokenizer)", path);
    char pre[256] = "default";
    dlq_gguf_str ps;
    if (dlq_gguf_find(g, "tokenizer.ggml.pre")) {
        if (dlq_gguf_get_str(g, "tokenizer.ggml.pre", &ps, err)) return DLQ_EFORMAT;
        if (ps.len >= sizeof pre) return BAD("%s: tokenizer.ggml.pre is %llu bytes long", path, (unsigned long long)ps.len);
        memcpy(pre, ps.ptr, (size_t)ps.len);
        pre[ps.len] = 0;
    }
    int ignore_merges = 0;
    int kind = dlq_bpe_pre_kind(pre, &ignore_merges);
    if (!kind) return dlq_errf(err, DLQ_EUNSUP, "%s: tokenizer.ggml.pre '%s' is not supported", path, pre);
    size_t n = (size_t)mk->arr_n;
    const char **m = calloc(n ? n : 1, sizeof *m);
    size_t *ml = calloc(n ? n : 1, sizeof *ml);
    if (!m || !ml) {
        free(m);
        free(ml);
        return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory for %zu merges", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        dlq_gguf_str s = dlq_gguf_arr_str(mk, i);
        m[i] = s.ptr ? s.ptr : "";
        ml[i] = (size_t)s.len;
    }
    int rc = dlq_bpe_setup(t, m, ml, n, pre, err);
    free(m);
    free(ml);
    if (rc) return rc;
    dlq_bpe_set_options(t, ignore_merges, 0, t->unk);
    /* llama.cpp's default for the Llama 3 names (the ones that also set
     * ignore_merges) is add_bos = true; tokenizer.ggml.add_bos_token, when
     * present, has the last word (read by the caller) */
    if (ignore_merges && !dlq_gguf_find(g, "tokenizer.ggml.add_bos_token")) t->add_bos = 1;
    return DLQ_OK;
}

int dlq_tok_load_gguf(dlq_tokenizer **out, const dlq_gguf *g, dlq_err *err) {
    *out = NULL;
    const char *path = src_name(g);
    dlq_gguf_str ms;
    if (!dlq_gguf_find(g, "tokenizer.ggml.model"))
        return BAD("%s: no tokenizer in this GGUF (tokenizer.ggml.model is missing)", path);
    if (dlq_gguf_get_str(g, "tokenizer.ggml.model", &ms, err)) return DLQ_EFORMAT;
    dlq_tok_kind kind;
    if (ms.len == 5 && memcmp(ms.ptr, "llama", 5) == 0) kind = DLQ_TOK_SPM;
    else if (ms.len == 4 && memcmp(ms.ptr, "gpt2", 4) == 0) kind = DLQ_TOK_BPE;
    else
        return dlq_errf(err, DLQ_EUNSUP, "%s: tokenizer.ggml.model '%.*s' is not supported (only llama, gpt2)", path,
                        (int)(ms.len > 64 ? 64 : ms.len), ms.ptr);

    const dlq_gguf_kv *tk = dlq_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != DLQ_GGUF_ARRAY || tk->arr_type != DLQ_GGUF_STRING)
        return BAD("%s: tokenizer.ggml.tokens: missing or not a string array", path);
    if (tk->arr_n == 0 || tk->arr_n > INT32_MAX)
        return BAD("%s: tokenizer.ggml.tokens has %llu entries", path, (unsigned long long)tk->arr_n);
    int32_t n = (int32_t)tk->arr_n;
    const dlq_gguf_kv *sk = dlq_gguf_find(g, "tokenizer.ggml.scores");
    if (sk && (sk->type != DLQ_GGUF_ARRAY || (sk->arr_type != DLQ_GGUF_FLOAT32 && sk->arr_type != DLQ_GGUF_FLOAT64) ||
               sk->arr_n != tk->arr_n))
        return BAD("%s: tokenizer.ggml.scores: expected a float array of %d entries", path, n);
    const dlq_gguf_kv *yk = dlq_gguf_find(g, "tokenizer.ggml.token_type");
    if (yk && (yk->type != DLQ_GGUF_ARRAY || yk->arr_type == DLQ_GGUF_STRING || yk->arr_type == DLQ_GGUF_ARRAY ||
               yk->arr_type == DLQ_GGUF_FLOAT32 || yk->arr_type == DLQ_GGUF_FLOAT64 || yk->arr_n != tk->arr_n))
        return BAD("%s: tokenizer.ggml.token_type: expected an integer array of %d entries", path, n);

    int64_t bos = kind == DLQ_TOK_SPM ? 1 : -1, eos = kind == DLQ_TOK_SPM ? 2 : -1;
    int64_t unk = kind == DLQ_TOK_SPM ? 0 : -1, pad = -1;
    int add_bos = kind == DLQ_TOK_SPM, add_eos = 0, add_space = kind == DLQ_TOK_SPM;
    if (opt_i64(g, "tokenizer.ggml.bos_token_id", &bos, err) < 0 ||
        opt_i64(g, "tokenizer.ggml.eos_token_id", &eos, err) < 0 ||
        opt_i64(g, "tokenizer.ggml.unknown_token_id", &unk, err) < 0 ||
        opt_i64(g, "tokenizer.ggml.padding_token_id", &pad, err) < 0 ||
        opt_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err) < 0 ||
        opt_bool(g, "tokenizer.ggml.add_eos_token", &add_eos, err) < 0 ||
        opt_bool(g, "tokenizer.ggml.add_space_prefix", &add_space, err) < 0)
        return DLQ_EFORMAT;

    dlq_tokenizer *t;
    int rc = dlq_tok_alloc(&t, kind, n, err);
    if (rc) return rc;
    int has_bytes = 0;
    for (int32_t i = 0; i < n && !rc; i++) {
        dlq_gguf_str s = dlq_gguf_arr_str(tk, (uint64_t)i);
        if (!s.ptr) {
            rc = BAD("%s: tokenizer.ggml.tokens[%d] is unreadable", path, i);
            break;
        }
        float score = sk ? dlq_gguf_arr_f32(sk, (uint64_t)i) : 0.0f;
        int64_t ty;
        if (yk) {
            ty = dlq_gguf_arr_int(yk, (uint64_t)i);
            if (ty < DLQ_TOKTYPE_NORMAL || ty > DLQ_TOKTYPE_BYTE) ty = DLQ_TOKTYPE_NORMAL;
        } else {
            ty = i == unk ? DLQ_TOKTYPE_UNKNOWN : (i == bos || i == eos) ? DLQ_TOKTYPE_CONTROL
               : kind == DLQ_TOK_SPM && is_byte_piece(s.ptr, (size_t)s.len) ? DLQ_TOKTYPE_BYTE : DLQ_TOKTYPE_NORMAL;
        }
        if (ty == DLQ_TOKTYPE_BYTE) has_bytes = 1;
        rc = dlq_tok_set_piece(t, i, s.ptr, (size_t)s.len, score, (int32_t)ty, err);
    }
    if (!rc) {
        t->bos = (int32_t)(bos >= 0 && bos < n ? bos : -1);
        t->eos = (int32_t)(eos >= 0 && eos < n ? eos : -1);
        t->unk = (int32_t)(unk >= 0 && unk < n ? unk : -1);
        t->pad = (int32_t)(pad >= 0 && pad < n ? pad : -1);
        t->add_bos = add_bos;
        t->add_eos = add_eos;
        t->add_dummy_prefix = kind == DLQ_TOK_SPM ? add_space : 0;
        t->byte_fallback = kind == DLQ_TOK_SPM && has_bytes;
        rc = dlq_tok_finish(t, err);
    }
    if (!rc && kind == DLQ_TOK_BPE) rc = setup_bpe(t, g, path, err);
    if (rc) {
        dlq_tok_destroy(t);
        return rc;
    }
    *out = t;
    return DLQ_OK;
}
