/* Tokenizer plumbing shared by the spm and bpe kinds: allocation, the vocab
 * hash, getters, encode dispatch (BOS/EOS policy), decoding and the
 * load-by-file-name entry point (which also applies tokenizer_config.json). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "tokenizer/tok_internal.h"

int dlq_tok_alloc(dlq_tokenizer **out, dlq_tok_kind kind, int32_t n_vocab, dlq_err *err) {
    *out = NULL;
    if (n_vocab <= 0) return dlq_errf(err, DLQ_EINVAL, "tokenizer: vocabulary size %d must be positive", n_vocab);
    dlq_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->pieces = calloc((size_t)n_vocab, sizeof *t->pieces);
    t->piece_len = calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->scores = calloc((size_t)n_vocab, sizeof *t->scores);
    t->types = calloc((size_t)n_vocab, sizeof *t->types);
    if (!t->pieces || !t->piece_len || !t->scores || !t->types) {
        dlq_tok_destroy(t);
        return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    }
    for (int32_t i = 0; i < n_vocab; i++) t->types[i] = DLQ_TOKTYPE_NORMAL;
    t->bos = t->eos = t->unk = t->pad = -1;
    t->add_bos = kind == DLQ_TOK_SPM;
    t->add_eos = 0;
    t->add_dummy_prefix = 1;
    t->byte_fallback = 0;
    for (int i = 0; i < 256; i++) t->byte_ids[i] = -1;
    *out = t;
    return DLQ_OK;
}

int dlq_tok_set_piece(dlq_tokenizer *t, int32_t id, const char *piece, size_t len, float score,
                      int32_t type, dlq_err *err) {
    if (id < 0 || id >= t->n_vocab)
        return dlq_errf(err, DLQ_EINVAL, "tokenizer: token id %d out of range [0, %d)", id, t->n_vocab);
    if (len >= UINT32_MAX)
        return dlq_errf(err, DLQ_EFORMAT, "tokenizer: token %d is %zu bytes long", id, len);
    char *p = malloc(len + 1);
    if (!p) return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory for token %d", id);
    if (len) memcpy(p, piece, len);
    p[len] = 0;
    free(t->pieces[id]);
    t->pieces[id] = p;
    t->piece_len[id] = (uint32_t)len;
    t->scores[id] = score;
    t->types[id] = type;
    return DLQ_OK;
}

/* "<0xAB>" -> 0xAB, else -1 */
static int byte_piece_value(const char *p, size_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

int dlq_tok_finish(dlq_tokenizer *t, dlq_err *err) {
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (!t->pieces[i]) return dlq_errf(err, DLQ_EFORMAT, "tokenizer: token %d has no piece", i);
    dlq_strmap_free(&t->vocab);
    if (dlq_strmap_init(&t->vocab, (size_t)t->n_vocab, err)) return DLQ_ENOMEM;
    /* First occurrence wins for duplicated pieces (a well-formed vocab has none). */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (dlq_strmap_get(&t->vocab, t->pieces[i], t->piece_len[i]) >= 0) continue;
        if (dlq_strmap_put(&t->vocab, t->pieces[i], t->piece_len[i], i, err)) return DLQ_ENOMEM;
    }
    for (int i = 0; i < 256; i++) t->byte_ids[i] = -1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (t->types[i] != DLQ_TOKTYPE_BYTE) continue;
        int b = byte_piece_value(t->pieces[i], t->piece_len[i]);
        if (b >= 0 && t->byte_ids[b] < 0) t->byte_ids[b] = i;
    }
    int32_t *sp[4] = {&t->bos, &t->eos, &t->unk, &t->pad};
    for (int k = 0; k < 4; k++)
        if (*sp[k] >= t->n_vocab || *sp[k] < -1) *sp[k] = -1;
    return DLQ_OK;
}

void dlq_tok_destroy(dlq_tokenizer *t) {
    if (!t) return;
    if (t->pieces)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    dlq_strmap_free(&t->vocab);
    if (t->bpe && t->bpe_free) t->bpe_free(t->bpe);
    free(t);
}

dlq_tok_kind dlq_tok_kind_of(const dlq_tokenizer *t) { return t->kind; }
int32_t dlq_tok_vocab_size(const dlq_tokenizer *t) { return t->n_vocab; }
int32_t dlq_tok_bos(const dlq_tokenizer *t) { return t->bos; }
int32_t dlq_tok_eos(const dlq_tokenizer *t) { return t->eos; }
int dlq_tok_add_bos(const dlq_tokenizer *t) { return t->add_bos; }
void dlq_tok_set_add_bos(dlq_tokenizer *t, int add_bos) { t->add_bos = add_bos != 0; }

void dlq_tok_get_meta(const dlq_tokenizer *t, dlq_tok_meta *m) {
    m->unk = t->unk;
    m->pad = t->pad;
    m->add_eos = t->add_eos;
    m->add_space_prefix = t->kind == DLQ_TOK_SPM && t->add_dummy_prefix;
}

void dlq_tok_set_special(dlq_tokenizer *t, int32_t bos, int32_t eos) {
    t->bos = bos >= 0 && bos < t->n_vocab ? bos : -1;
    t->eos = eos >= 0 && eos < t->n_vocab ? eos : -1;
}

const char *dlq_tok_piece(const dlq_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->piece_len[id];
    return t->pieces[id];
}

float dlq_tok_score(const dlq_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->scores[id] : 0.0f;
}

int32_t dlq_tok_type(const dlq_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->types[id] : 0;
}

int32_t dlq_tok_find(const dlq_tokenizer *t, const char *piece, size_t len) {
    return dlq_strmap_get(&t->vocab, piece, len);
}

int dlq_tok_encode(const dlq_tokenizer *t, const char *text, size_t len, int add_bos,
                   int32_t **ids, size_t *n, dlq_err *err) {
    *ids = NULL;
    *n = 0;
    if (!text && len) return dlq_errf(err, DLQ_EINVAL, "tokenizer: NULL text of length %zu", len);
    int use_default = add_bos < 0;
    int bos = use_default ? t->add_bos : add_bos != 0;
    size_t cap = 16;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory");
    size_t cnt = 0;
    if (bos && t->bos >= 0) v[cnt++] = t->bos;
    int rc = t->kind == DLQ_TOK_BPE ? dlq_bpe_encode(t, text ? text : "", len, &v, &cnt, &cap, err)
                                    : dlq_spm_encode(t, text ? text : "", len, &v, &cnt, &cap, err);
    if (rc) {
        free(v);
        return rc;
    }
    /* EOS only under the tokenizer's own policy (tokenizer_config.json
     * add_eos_token / GGUF add_eos_token), never when the caller chose BOS. */
    if (use_default && t->add_eos && t->eos >= 0) {
        if (cnt == cap) {
            int32_t *nv = realloc(v, (cap + 1) * sizeof *v);
            if (!nv) {
                free(v);
                return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory");
            }
            v = nv;
            cap++;
        }
        v[cnt++] = t->eos;
    }
    *ids = v;
    *n = cnt;
    return DLQ_OK;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; } sbuf;

static int sb_put(sbuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) {
            if (nc > SIZE_MAX / 2) return -1;
            nc *= 2;
        }
        char *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static const char k_ws[] = "\xe2\x96\x81";   /* U+2581 "▁" */
static const char k_unk_surface[] = " \xe2\x81\x87 "; /* sentencepiece's default " ⁇ " */
static const char k_repl[] = "\xef\xbf\xbd";  /* U+FFFD */

/* Appends piece with "▁" -> " ", dropping one leading "▁" if strip. */
static int put_spm_piece(sbuf *b, const char *p, size_t n, int strip) {
    size_t i = 0;
    if (strip && n >= 3 && memcmp(p, k_ws, 3) == 0) i = 3;
    size_t run = i;
    while (i < n) {
        if (i + 3 <= n && memcmp(p + i, k_ws, 3) == 0) {
            if (sb_put(b, p + run, i - run) || sb_put(b, " ", 1)) return -1;
            i += 3;
            run = i;
        } else {
            i++;
        }
    }
    return sb_put(b, p + run, n - run);
}

/* Length of a valid UTF-8 sequence at s (n bytes available), or 0 if invalid
 * (same rules as sentencepiece's IsValidDecodeUTF8: no overlongs/surrogates). */
size_t dlq_spm_utf8_len(const unsigned char *s, size_t n);

/* Bytes of consecutive byte tokens, as sentencepiece: whole valid UTF-8
 * characters are kept, each invalid byte becomes U+FFFD. */
static int flush_bytes(sbuf *b, const unsigned char *by, size_t nb) {
    size_t i = 0;
    while (i < nb) {
        size_t l = dlq_spm_utf8_len(by + i, nb - i);
        if (l == 0) {
            if (sb_put(b, k_repl, 3)) return -1;
            i++;
        } else {
            if (sb_put(b, by + i, l)) return -1;
            i += l;
        }
    }
    return 0;
}

static int decode_spm(const dlq_tokenizer *t, const int32_t *ids, size_t n, sbuf *b) {
    unsigned char *by = NULL;
    size_t nb = 0;
    if (n) {
        by = malloc(n);
        if (!by) return -1;
    }
    int bos_ws = t->add_dummy_prefix;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        int32_t ty = t->types[id];
        if (ty == DLQ_TOKTYPE_BYTE) {
            int v = byte_piece_value(t->pieces[id], t->piece_len[id]);
            if (v >= 0) {
                by[nb++] = (unsigned char)v;
                bos_ws = 0;
                continue;
            }
        }
        if (flush_bytes(b, by, nb)) goto oom;
        nb = 0;
        if (ty == DLQ_TOKTYPE_CONTROL) continue;
        if (ty == DLQ_TOKTYPE_UNKNOWN) {
            if (sb_put(b, k_unk_surface, sizeof k_unk_surface - 1)) goto oom;
        } else if (put_spm_piece(b, t->pieces[id], t->piece_len[id], bos_ws)) {
            goto oom;
        }
        /* with remove_extra_whitespaces sentencepiece keeps stripping while the text is still
           empty: a lone "▁" at the start decodes to nothing */
        if (!(t->remove_extra_ws && bos_ws && t->piece_len[id] == 3 && !memcmp(t->pieces[id], k_ws, 3))) bos_ws = 0;
    }
    if (flush_bytes(b, by, nb)) goto oom;
    free(by);
    return 0;
oom:
    free(by);
    return -1;
}

static int decode_bpe(const dlq_tokenizer *t, const int32_t *ids, size_t n, sbuf *b) {
    char *tmp = NULL;
    size_t tcap = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (t->types[id] == DLQ_TOKTYPE_CONTROL) continue;
        size_t need = (size_t)t->piece_len[id] * 4 + 64;
        if (need > tcap) {
            char *nt = realloc(tmp, need);
            if (!nt) goto oom;
            tmp = nt;
            tcap = need;
        }
        size_t w = dlq_bpe_piece_bytes(t, id, tmp, tcap);
        if (w > tcap) w = tcap;
        if (sb_put(b, tmp, w)) goto oom;
    }
    free(tmp);
    return 0;
oom:
    free(tmp);
    return -1;
}

int dlq_tok_decode(const dlq_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *outlen,
                   dlq_err *err) {
    *out = NULL;
    if (outlen) *outlen = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return dlq_errf(err, DLQ_EINVAL, "tokenizer: decode: token id %d at position %zu out of range [0, %d)",
                            ids[i], i, t->n_vocab);
    sbuf b = {0};
    if (sb_put(&b, "", 0)) return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory");
    int rc = t->kind == DLQ_TOK_BPE ? decode_bpe(t, ids, n, &b) : decode_spm(t, ids, n, &b);
    if (rc) {
        free(b.p);
        return dlq_errf(err, DLQ_ENOMEM, "tokenizer: out of memory decoding %zu tokens", n);
    }
    *out = b.p;
    if (outlen) *outlen = b.n;
    return DLQ_OK;
}

size_t dlq_tok_decode_token(const dlq_tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int32_t ty = t->types[id];
    if (ty == DLQ_TOKTYPE_CONTROL) return 0;
    if (t->kind == DLQ_TOK_BPE) return dlq_bpe_piece_bytes(t, id, buf, cap);
    const char *p = t->pieces[id];
    size_t n = t->piece_len[id];
    if (ty == DLQ_TOKTYPE_BYTE) {
        int v = byte_piece_value(p, n);
        if (v >= 0) {
            if (cap < 1) return 0;
            buf[0] = (char)v;
            return 1;
        }
    }
    if (ty == DLQ_TOKTYPE_UNKNOWN) {
        p = k_unk_surface;
        n = sizeof k_unk_surface - 1;
    } else if (t->add_dummy_prefix && n >= 3 && memcmp(p, k_ws, 3) == 0 && (prev < 0 || prev >= t->n_vocab)) {
        p += 3;
        n -= 3;
    }
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (ty != DLQ_TOKTYPE_UNKNOWN && i + 3 <= n && memcmp(p + i, k_ws, 3) == 0) {
            if (w >= cap) break;
            buf[w++] = ' ';
            i += 3;
        } else {
            if (w >= cap) break;
            buf[w++] = p[i++];
        }
    }
    return w;
}

/* ---- loading by file name --------------------------------------------- */

/* Applies add_bos_token / add_eos_token from tokenizer_config.json in dir, if
 * the file exists. A malformed file is an error (it names the file). */
static int apply_tokenizer_config(dlq_tokenizer *t, const char *dir, dlq_err *err) {
    char path[1200];
    if (dlq_path_join(path, sizeof path, dir, "tokenizer_config.json"))
        return DLQ_OK;
    if (!dlq_path_exists(path)) return DLQ_OK;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON object at the top level", path);
    }
    json_t *v = json_object_get(root, "add_bos_token");
    if (json_is_boolean(v)) t->add_bos = json_is_true(v);
    v = json_object_get(root, "add_eos_token");
    if (json_is_boolean(v)) t->add_eos = json_is_true(v);
    json_decref(root);
    return DLQ_OK;
}

int dlq_tok_load_file(dlq_tokenizer **out, const char *path, int32_t vocab_size, dlq_err *err) {
    *out = NULL;
    char buf[1200];
    const char *file = path;
    if (dlq_path_is_dir(path)) {
        static const char *const names[] = {"tokenizer.model", "tokenizer.json", "tokenizer.bin"};
        file = NULL;
        for (int i = 0; i < 3 && !file; i++)
            if (!dlq_path_join(buf, sizeof buf, path, names[i]) && dlq_path_exists(buf)) file = buf;
        if (!file)
            return dlq_errf(err, DLQ_EIO, "%s: no tokenizer.model, tokenizer.json or tokenizer.bin in this folder",
                            path);
    }
    int rc;
    if (dlq_str_endswith(file, ".model")) {
        rc = dlq_tok_load_spm(out, file, err);
    } else if (dlq_str_endswith(file, ".json")) {
        rc = dlq_tok_load_hf_json(out, file, err);
    } else if (dlq_str_endswith(file, ".bin")) {
        rc = dlq_tok_load_llama2c(out, file, vocab_size, err);
    } else {
        return dlq_errf(err, DLQ_EINVAL,
                        "%s: unknown tokenizer file type (expected *.model, *.json or *.bin)", file);
    }
    if (rc) return rc;
    /* tokenizer_config.json next to the file overrides the BOS/EOS policy. */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) slash == dir ? (void)snprintf(dir, sizeof dir, "/") : (void)(*slash = 0);
    else snprintf(dir, sizeof dir, ".");
    rc = apply_tokenizer_config(*out, dir, err);
    if (rc) {
        dlq_tok_destroy(*out);
        *out = NULL;
    }
    return rc;
}
