/* Hugging Face tokenizer.json loader for byte-level BPE (GPT-2, Llama 3,
 * Qwen2 and friends).
 *
 * Accepted: model.type "BPE" with vocab (piece -> id) and merges (either
 * "a b" strings or [a, b] pairs); pre_tokenizer ByteLevel(use_regex=true)
 * (the GPT-2 regex) or Sequence[Split(Regex=R, Isolated), ByteLevel(
 * use_regex=false)] where R is the GPT-2, Llama 3 or Qwen2 regex, or
 * Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)] (SmolLM);
 * ByteLevel add_prefix_space; model.ignore_merges; model.unk_token;
 * added_tokens (special ones become CONTROL tokens, the others
 * USER_DEFINED; both are matched in the input before pre-tokenization, with
 * lstrip/rstrip); normalizer null or NFC (NFC is NOT applied: the input is
 * assumed to be NFC already, which almost all text is).
 *
 * Rejected with DLQ_EUNSUP: SentencePiece-style BPE tokenizer.json (Llama 2,
 * Mistral: Metaspace pre-tokenizer, byte_fallback, Replace/Prepend "▁"
 * normalizers) -- load the tokenizer.model beside it instead; any other
 * regex, pre-tokenizer, normalizer, continuing_subword_prefix,
 * end_of_word_suffix or dropout.
 *
 * BOS / EOS: the post_processor's TemplateProcessing "single" template gives
 * BOS (a SpecialToken before $A; add_bos = 1) and EOS (one after $A;
 * add_eos = 1). tokenizer_config.json in the same folder, if present,
 * overrides: bos_token / eos_token (string or {"content": ...}) pick the ids,
 * add_bos_token / add_eos_token the policy. Without either, "<|endoftext|>"
 * (GPT-2) is taken as EOS if it exists. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe_internal.h"

#define MAX_VOCAB (1 << 24)

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Optional string member: returns NULL if absent / null; *bad set if it is
 * present with another type. */
static const char *opt_str(const json_t *o, const char *key, int *bad) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) { *bad = 1; return NULL; }
    return json_string_value(v);
}

static int opt_bool(const json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* Does a normalizer / pre-tokenizer / decoder tree contain a
 * SentencePiece-style component? */
static int spm_style(const json_t *v) {
    if (!v) return 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (spm_style(e)) return 1;
        return 0;
    }
    if (!json_is_object(v)) return 0;
    const char *ty = json_string_value(json_object_get(v, "type"));
    if (ty && (!strcmp(ty, "Metaspace") || !strcmp(ty, "ByteFallback") || !strcmp(ty, "Prepend")))
        return 1;
    if (ty && !strcmp(ty, "Replace")) {
        const char *c = json_string_value(json_object_get(v, "content"));
        if (c && !strcmp(c, "\xe2\x96\x81")) return 1;
    }
    const char *subs[] = {"normalizers", "pretokenizers", "decoders"};
    for (int k = 0; k < 3; k++)
        if (spm_style(json_object_get(v, subs[k]))) return 1;
    return 0;
}

typedef struct hf_pre {
    const char *pre;   /* name or regex for dlq_bpe_setup */
    int add_prefix_space;
} hf_pre;

static int parse_byte_level(const char *path, const json_t *bl, int need_regex, hf_pre *out, dlq_err *err) {
    int use_regex = opt_bool(bl, "use_regex", 1);
    out->add_prefix_space = opt_bool(bl, "add_prefix_space", 0);
    if (need_regex && !use_regex)
        return dlq_errf(err, DLQ_EUNSUP,
                        "%s: pre_tokenizer ByteLevel with use_regex=false and no Split regex is not supported", path);
    if (!need_regex && use_regex)
        return dlq_errf(err, DLQ_EUNSUP,
                        "%s: pre_tokenizer Split followed by ByteLevel(use_regex=true) (two regex passes) is not "
                        "supported", path);
    return DLQ_OK;
}

static int parse_pre(const char *path, const json_t *pt, hf_pre *out, dlq_err *err) {
    out->pre = "gpt2";
    out->add_prefix_space = 0;
    if (!pt || json_is_null(pt))
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer is null; only byte-level BPE (ByteLevel pre-tokenizer) "
                                         "is supported", path);
    if (!json_is_object(pt)) return dlq_errf(err, DLQ_EFORMAT, "%s: pre_tokenizer is %s, expected an object", path, jtype(pt));
    const char *ty = json_string_value(json_object_get(pt, "type"));
    if (!ty) return dlq_errf(err, DLQ_EFORMAT, "%s: pre_tokenizer has no \"type\"", path);
    if (!strcmp(ty, "ByteLevel")) return parse_byte_level(path, pt, 1, out, err);
    if (strcmp(ty, "Sequence"))
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer type \"%.100s\" is not supported (expected ByteLevel "
                                         "or Sequence[Split, ByteLevel])", path, ty);
    json_t *seq = json_object_get(pt, "pretokenizers");
    if (!json_is_array(seq))
        return dlq_errf(err, DLQ_EFORMAT, "%s: pre_tokenizer Sequence has no \"pretokenizers\" array", path);
    size_t n = json_array_size(seq);
    if (n == 1) return parse_pre(path, json_array_get(seq, 0), out, err);
    json_t *sp = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    const char *t0 = json_string_value(json_object_get(sp, "type"));
    const char *t1 = json_string_value(json_object_get(bl, "type"));
    if (n == 2 && t0 && t1 && !strcmp(t0, "Digits") && !strcmp(t1, "ByteLevel")) {
        /* SmolLM / StarCoder: every digit alone, then the GPT-2 regex on each piece (llama.cpp's "smollm") */
        if (!opt_bool(sp, "individual_digits", 0))
            return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Digits with individual_digits=false is not supported", path);
        out->pre = "smollm";
        int rc = parse_byte_level(path, bl, 1, out, err);
        if (!rc && out->add_prefix_space) /* HF would prepend the space to every piece, each digit included */
            return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Sequence[Digits, ByteLevel(add_prefix_space=true)] is not "
                                             "supported", path);
        return rc;
    }
    if (n != 2 || !t0 || !t1 || strcmp(t0, "Split") || strcmp(t1, "ByteLevel")) {
        char kinds[256] = "";
        for (size_t i = 0; i < n && strlen(kinds) < 200; i++) {
            const char *k = json_string_value(json_object_get(json_array_get(seq, i), "type"));
            snprintf(kinds + strlen(kinds), sizeof kinds - strlen(kinds), "%s%.40s", i ? ", " : "", k ? k : "?");
        }
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Sequence[%s] is not supported (expected "
                                         "Sequence[Split, ByteLevel] or Sequence[Digits, ByteLevel])", path, kinds);
    }
    json_t *pat = json_object_get(sp, "pattern");
    const char *re = json_string_value(json_object_get(pat, "Regex"));
    if (!re)
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Split pattern is not a {\"Regex\": ...}", path);
    const char *beh = json_string_value(json_object_get(sp, "behavior"));
    if (beh && strcmp(beh, "Isolated"))
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Split behavior \"%.40s\" is not supported (expected "
                                         "Isolated)", path, beh);
    if (opt_bool(sp, "invert", 0))
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Split with invert=true is not supported", path);
    if (!dlq_bpe_pre_kind(re, NULL))
        return dlq_errf(err, DLQ_EUNSUP, "%s: pre_tokenizer Split regex \"%.400s\" is not supported (known: the "
                                         "GPT-2, Llama 3 and Qwen2 regexes)", path, re);
    out->pre = re;
    return parse_byte_level(path, bl, 0, out, err);
}

static int check_normalizer(const char *path, const json_t *nz, dlq_err *err) {
    if (!nz || json_is_null(nz)) return DLQ_OK;
    const char *ty = json_string_value(json_object_get(nz, "type"));
    if (ty && !strcmp(ty, "NFC")) return DLQ_OK;
    if (ty && !strcmp(ty, "Sequence")) {
        json_t *a = json_object_get(nz, "normalizers");
        size_t i;
        json_t *e;
        json_array_foreach(a, i, e) {
            int rc = check_normalizer(path, e, err);
            if (rc) return rc;
        }
        return DLQ_OK;
    }
    return dlq_errf(err, DLQ_EUNSUP, "%s: normalizer \"%.60s\" is not supported for byte-level BPE (only none or NFC)",
                    path, ty ? ty : "?");
}

/* Content of a tokenizer_config.json special token entry (string or
 * {"content": ...}). */
static const char *tok_content(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int32_t find_piece(const dlq_tokenizer *t, const char *s) {
    return s ? dlq_tok_find(t, s, strlen(s)) : -1;
}

/* BOS/EOS from the post_processor template. */
static void apply_template(dlq_tokenizer *t, const json_t *pp) {
    if (!json_is_object(pp)) return;
    const char *ty = json_string_value(json_object_get(pp, "type"));
    if (!ty) return;
    if (!strcmp(ty, "Sequence")) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(pp, "processors"), i, e) apply_template(t, e);
        return;
    }
    if (strcmp(ty, "TemplateProcessing")) return;
    json_t *single = json_object_get(pp, "single"), *sts = json_object_get(pp, "special_tokens");
    size_t n = json_array_size(single), seen_a = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(single, i);
        if (json_object_get(it, "Sequence")) { seen_a = 1; continue; }
        const char *name = json_string_value(json_object_get(json_object_get(it, "SpecialToken"), "id"));
        if (!name) continue;
        int32_t id = -1;
        json_t *ids = json_object_get(json_object_get(sts, name), "ids");
        if (json_is_integer(json_array_get(ids, 0))) {
            json_int_t v = json_integer_value(json_array_get(ids, 0));
            if (v >= 0 && v < t->n_vocab) id = (int32_t)v;
        }
        if (id < 0) id = find_piece(t, name);
        if (id < 0) continue;
        if (!seen_a) { t->bos = id; t->add_bos = 1; }
        else { t->eos = id; t->add_eos = 1; }
    }
}

static int apply_config(dlq_tokenizer *t, const char *path, dlq_err *err) {
    char cfg[1200];
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json", (int)(slash - path), path);
    else snprintf(cfg, sizeof cfg, "tokenizer_config.json");
    FILE *f = fopen(cfg, "rb");
    if (!f) return DLQ_OK;
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(cfg, 0, &je);
    if (!root) return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d: %s", cfg, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON object at the top level", cfg);
    }
    int32_t id = find_piece(t, tok_content(json_object_get(root, "bos_token")));
    if (id >= 0) t->bos = id;
    id = find_piece(t, tok_content(json_object_get(root, "eos_token")));
    if (id >= 0) t->eos = id;
    json_t *v = json_object_get(root, "add_bos_token");
    if (json_is_boolean(v)) t->add_bos = json_is_true(v);
    v = json_object_get(root, "add_eos_token");
    if (json_is_boolean(v)) t->add_eos = json_is_true(v);
    json_decref(root);
    return DLQ_OK;
}

typedef struct merge_buf {
    const char **ptr;
    size_t *len;
    char *arena;   /* "a b" strings built from the [a, b] pair form */
    size_t arena_n;
} merge_buf;

static int collect_merges(const char *path, const json_t *merges, merge_buf *mb, dlq_err *err) {
    size_t n = json_array_size(merges), need = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_array(m)) {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            if (json_array_size(m) != 2 || !json_is_string(a) || !json_is_string(b))
                return dlq_errf(err, DLQ_EFORMAT, "%s: model.merges[%zu] is not a pair of strings", path, i);
            need += json_string_length(a) + json_string_length(b) + 1;
        } else if (!json_is_string(m)) {
            return dlq_errf(err, DLQ_EFORMAT, "%s: model.merges[%zu] is %s, expected \"a b\" or [a, b]", path, i,
                            jtype(m));
        }
    }
    mb->ptr = dlq_calloc(n ? n : 1, sizeof *mb->ptr, err);
    mb->len = dlq_calloc(n ? n : 1, sizeof *mb->len, err);
    mb->arena = dlq_malloc(need ? need : 1, err);
    if (!mb->ptr || !mb->len || !mb->arena) return DLQ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            mb->ptr[i] = json_string_value(m);
            mb->len[i] = json_string_length(m);
            if (mb->len[i] < 3 || !memchr(mb->ptr[i] + 1, ' ', mb->len[i] - 1))
                return dlq_errf(err, DLQ_EFORMAT, "%s: model.merges[%zu] \"%.80s\" is not of the form \"a b\"", path,
                                i, mb->ptr[i]);
            continue;
        }
        json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
        size_t la = json_string_length(a), lb = json_string_length(b);
        if (!la || !lb)
            return dlq_errf(err, DLQ_EFORMAT, "%s: model.merges[%zu] has an empty side", path, i);
        char *d = mb->arena + mb->arena_n;
        memcpy(d, json_string_value(a), la);
        d[la] = ' ';
        memcpy(d + la + 1, json_string_value(b), lb);
        mb->ptr[i] = d;
        mb->len[i] = la + 1 + lb;
        mb->arena_n += la + 1 + lb;
    }
    return DLQ_OK;
}

static int load(dlq_tokenizer **out, const char *path, json_t *root, dlq_err *err) {
    if (!json_is_object(root)) return dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON object at the top level", path);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return dlq_errf(err, DLQ_EFORMAT, "%s: no \"model\" object", path);
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE"))
        return dlq_errf(err, DLQ_EUNSUP, "%s: model.type \"%.60s\" is not supported (only BPE)", path, mtype);
    if (opt_bool(model, "byte_fallback", 0) || spm_style(json_object_get(root, "pre_tokenizer")) ||
        spm_style(json_object_get(root, "normalizer")) || spm_style(json_object_get(root, "decoder")))
        return dlq_errf(err, DLQ_EUNSUP,
                        "%s: SentencePiece-style BPE tokenizer.json (Metaspace / byte_fallback, as Llama 2 and "
                        "Mistral ship) is not supported; load the tokenizer.model next to it instead", path);
    int bad = 0;
    const char *cs = opt_str(model, "continuing_subword_prefix", &bad);
    const char *ew = opt_str(model, "end_of_word_suffix", &bad);
    if (bad) return dlq_errf(err, DLQ_EFORMAT, "%s: model.continuing_subword_prefix / end_of_word_suffix must be strings", path);
    if ((cs && *cs) || (ew && *ew))
        return dlq_errf(err, DLQ_EUNSUP, "%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported", path);
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        return dlq_errf(err, DLQ_EUNSUP, "%s: BPE dropout %g is not supported (non-deterministic encoding)", path,
                        json_number_value(dropout));
    int rc = check_normalizer(path, json_object_get(root, "normalizer"), err);
    if (rc) return rc;
    hf_pre pre;
    if ((rc = parse_pre(path, json_object_get(root, "pre_tokenizer"), &pre, err))) return rc;

    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return dlq_errf(err, DLQ_EFORMAT, "%s: model.vocab is missing or not an object", path);
    if (!json_is_array(merges)) return dlq_errf(err, DLQ_EFORMAT, "%s: model.merges is missing or not an array", path);
    if (added && !json_is_null(added) && !json_is_array(added))
        return dlq_errf(err, DLQ_EFORMAT, "%s: added_tokens is %s, expected an array", path, jtype(added));
    size_t n_entries = json_object_size(vocab) + json_array_size(added);
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_VOCAB)
            return dlq_errf(err, DLQ_EFORMAT, "%s: model.vocab[\"%.80s\"] is not a token id in [0, %d)", path, key,
                            MAX_VOCAB);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_object(val) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= MAX_VOCAB || !json_is_string(json_object_get(val, "content")))
            return dlq_errf(err, DLQ_EFORMAT, "%s: added_tokens[%zu] needs an \"id\" in [0, %d) and a \"content\" string",
                            path, i, MAX_VOCAB);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return dlq_errf(err, DLQ_EFORMAT, "%s: model.vocab is empty", path);
    if ((size_t)max_id >= 2 * n_entries + 1024)
        return dlq_errf(err, DLQ_EFORMAT, "%s: token id %lld is implausibly large for %zu vocabulary entries", path,
                        (long long)max_id, n_entries);

    dlq_tokenizer *t = NULL;
    merge_buf mb = {0};
    if ((rc = dlq_tok_alloc(&t, DLQ_TOK_BPE, (int32_t)max_id + 1, err))) return rc;
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (t->pieces[id]) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: model.vocab: id %d is used by both \"%.60s\" and \"%.60s\"", path, id,
                          t->pieces[id], key);
            goto fail;
        }
        if ((rc = dlq_tok_set_piece(t, id, key, strlen(key), 0.0f, DLQ_TOKTYPE_NORMAL, err))) goto fail;
    }
    json_array_foreach(added, i, val) {
        int32_t id = (int32_t)json_integer_value(json_object_get(val, "id"));
        json_t *c = json_object_get(val, "content");
        int special = opt_bool(val, "special", 0);
        if ((rc = dlq_tok_set_piece(t, id, json_string_value(c), json_string_length(c), 0.0f,
                                    special ? DLQ_TOKTYPE_CONTROL : DLQ_TOKTYPE_USER_DEFINED, err)))
            goto fail;
    }
    for (int32_t k = 0; k < t->n_vocab; k++) /* holes in the id space */
        if (!t->pieces[k] && (rc = dlq_tok_set_piece(t, k, "", 0, 0.0f, DLQ_TOKTYPE_UNUSED, err))) goto fail;
    if ((rc = collect_merges(path, merges, &mb, err))) goto fail;
    if ((rc = dlq_bpe_setup(t, mb.ptr, mb.len, json_array_size(merges), pre.pre, err))) {
        dlq_err_prefix(err, "%s", path);
        goto fail;
    }
    if ((rc = dlq_tok_finish(t, err))) {
        dlq_err_prefix(err, "%s", path);
        goto fail;
    }
    int bad_unk = 0;
    const char *unk = opt_str(model, "unk_token", &bad_unk);
    int32_t unk_id = find_piece(t, unk);
    t->unk = unk_id;
    dlq_bpe_set_options(t, opt_bool(model, "ignore_merges", 0), pre.add_prefix_space, unk_id);
    json_array_foreach(added, i, val) {
        int32_t id = (int32_t)json_integer_value(json_object_get(val, "id"));
        dlq_bpe_set_added_flags(t, id, opt_bool(val, "lstrip", 0), opt_bool(val, "rstrip", 0));
    }
    t->add_bos = 0;
    t->add_eos = 0;
    apply_template(t, json_object_get(root, "post_processor"));
    if ((rc = apply_config(t, path, err))) goto fail;
    if (t->eos < 0) t->eos = find_piece(t, "<|endoftext|>");
    free(mb.ptr);
    free(mb.len);
    free(mb.arena);
    *out = t;
    return DLQ_OK;
fail:
    free(mb.ptr);
    free(mb.len);
    free(mb.arena);
    dlq_tok_destroy(t);
    return rc;
}

int dlq_tok_load_hf_json(dlq_tokenizer **out, const char *path, dlq_err *err) {
    if (!out || !path) return dlq_errf(err, DLQ_EINVAL, "dlq_tok_load_hf_json: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dlq_errf(err, DLQ_EIO, "%s: cannot open", path);
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column,
                        je.text);
    int rc = load(out, path, root, err);
    json_decref(root);
    return rc;
}

int dlq_tok_load_hf_json_mem(dlq_tokenizer **out, const void *data, size_t size, const char *what, dlq_err *err) {
    if (!out || !data) return dlq_errf(err, DLQ_EINVAL, "dlq_tok_load_hf_json_mem: NULL argument");
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(data, size, 0, &je);
    if (!root)
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d column %d: %s", what, je.line, je.column, je.text);
    int rc = load(out, what, root, err);
    json_decref(root);
    return rc;
}
