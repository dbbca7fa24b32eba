/* SentencePiece tokenizer.model loader: a small bounds-checked protobuf
 * wire-format reader over the mapped file, and the ModelProto fields we use:
 *   ModelProto      1: repeated SentencePiece, 2: TrainerSpec, 3: NormalizerSpec
 *   SentencePiece   1: piece (string), 2: score (float), 3: type (enum, default NORMAL)
 *   TrainerSpec     3: model_type (1 UNIGRAM default, 2 BPE), 24: treat_whitespace_as_suffix,
 *                   35: byte_fallback, 40..43: unk/bos/eos/pad id
 *   NormalizerSpec  1: name, 2: precompiled_charsmap, 3: add_dummy_prefix (default true),
 *                   4: remove_extra_whitespaces (default true), 5: escape_whitespaces (default true)
 * Only the identity normalizer is supported (Llama, Mistral, TinyLlama, llama2.c's
 * tok512 and the fixtures), with or without remove_extra_whitespaces: a model with a
 * precompiled charsmap (nmt_nfkc ...), no whitespace escaping, whitespace-as-suffix or a
 * non-BPE model type is refused with DLQ_EUNSUP and a message saying which.
 * tokenizer_config.json is NOT read here: dlq_tok_load_file applies it. */
#include <string.h>

#include "core/mapfile.h"
#include "tokenizer/tok_internal.h"

typedef struct {
    const uint8_t *p, *end;
} pb;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        if (shift == 63 && (b & 0x7E)) return -1; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads one field: its number, wire type, and the value (varint / fixed as
 * u64; length-delimited as a sub-reader). Returns 0, or -1 when malformed. */
static int pb_field(pb *r, uint32_t *field, int *wt, uint64_t *v, pb *sub) {
    uint64_t key;
    if (pb_varint(r, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1FFFFFFF) return -1;
    switch (*wt) {
    case PB_VARINT: return pb_varint(r, v);
    case PB_I64:
        if (r->end - r->p < 8) return -1;
        *v = 0;
        for (int i = 7; i >= 0; i--) *v = (*v << 8) | r->p[i];
        r->p += 8;
        return 0;
    case PB_I32:
        if (r->end - r->p < 4) return -1;
        *v = (uint64_t)r->p[0] | (uint64_t)r->p[1] << 8 | (uint64_t)r->p[2] << 16 | (uint64_t)r->p[3] << 24;
        r->p += 4;
        return 0;
    case PB_LEN: {
        uint64_t n;
        if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        *v = n;
        return 0;
    }
    default: return -1; /* groups (3, 4) and reserved types */
    }
}

static float pb_f32(uint64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define BAD(...) dlq_errf(err, DLQ_EFORMAT, __VA_ARGS__)

typedef struct {
    int model_type, byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    uint64_t charsmap_len;
    char name[64];
} spm_spec;

static int parse_trainer(pb r, spm_spec *s, const char *path, dlq_err *err) {
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        pb sub;
        if (pb_field(&r, &f, &wt, &v, &sub)) return BAD("%s: trainer_spec: truncated or malformed protobuf field", path);
        if (wt != PB_VARINT) continue;
        switch (f) {
        case 3: s->model_type = (int)v; break;
        case 24: s->ws_suffix = v != 0; break;
        case 35: s->byte_fallback = v != 0; break;
        case 40: s->unk_id = (int64_t)v; break;
        case 41: s->bos_id = (int64_t)v; break;
        case 42: s->eos_id = (int64_t)v; break;
        case 43: s->pad_id = (int64_t)v; break;
        default: break;
        }
    }
    return DLQ_OK;
}

static int parse_normalizer(pb r, spm_spec *s, const char *path, dlq_err *err) {
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        pb sub;
        if (pb_field(&r, &f, &wt, &v, &sub)) return BAD("%s: normalizer_spec: truncated or malformed protobuf field", path);
        if (wt == PB_LEN && f == 1) {
            size_t n = (size_t)v < sizeof s->name - 1 ? (size_t)v : sizeof s->name - 1;
            memcpy(s->name, sub.p, n);
            s->name[n] = 0;
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)s->name[i] < 0x20 || (unsigned char)s->name[i] > 0x7E) s->name[i] = '?';
        } else if (wt == PB_LEN && f == 2) {
            s->charsmap_len = v;
        } else if (wt == PB_VARINT) {
            if (f == 3) s->add_dummy_prefix = v != 0;
            else if (f == 4) s->remove_extra_ws = v != 0;
            else if (f == 5) s->escape_ws = v != 0;
        }
    }
    return DLQ_OK;
}

/* One SentencePiece message -> slot id. */
static int parse_piece(dlq_tokenizer *t, int32_t id, pb r, const char *path, dlq_err *err) {
    const uint8_t *piece = NULL;
    size_t plen = 0;
    float score = 0;
    uint64_t type = DLQ_TOKTYPE_NORMAL;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        pb sub;
        if (pb_field(&r, &f, &wt, &v, &sub)) return BAD("%s: piece %d: truncated or malformed protobuf field", path, id);
        if (f == 1 && wt == PB_LEN) {
            piece = sub.p;
            plen = (size_t)v;
        } else if (f == 2 && wt == PB_I32) {
            score = pb_f32(v);
        } else if (f == 3 && wt == PB_VARINT) {
            type = v;
        } else if (f <= 3) {
            return BAD("%s: piece %d: field %u has wire type %d", path, id, f, wt);
        }
    }
    if (!piece || plen == 0) return BAD("%s: piece %d is empty", path, id);
    if (type < DLQ_TOKTYPE_NORMAL || type > DLQ_TOKTYPE_BYTE)
        return BAD("%s: piece %d has unknown type %llu (expected 1..6)", path, id, (unsigned long long)type);
    return dlq_tok_set_piece(t, id, (const char *)piece, plen, score, (int32_t)type, err);
}

static int32_t valid_id(int64_t id, int32_t n) { return id >= 0 && id < n ? (int32_t)id : -1; }

static int load_from(dlq_tokenizer **out, const uint8_t *data, size_t size, const char *path, dlq_err *err) {
    spm_spec s = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
                  .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    pb r = {data, data + size};
    size_t npieces = 0;
    int have_trainer = 0, have_norm = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        pb sub;
        size_t at = (size_t)(r.p - data);
        if (pb_field(&r, &f, &wt, &v, &sub))
            return BAD("%s: not a SentencePiece model (truncated or malformed protobuf field at byte %zu of %zu)",
                       path, at, size);
        if (f >= 1 && f <= 3 && wt != PB_LEN)
            return BAD("%s: not a SentencePiece model (field %u has wire type %d)", path, f, wt);
        if (f == 1) npieces++;
        else if (f == 2) {
            int rc = parse_trainer(sub, &s, path, err);
            if (rc) return rc;
            have_trainer = 1;
        } else if (f == 3) {
            int rc = parse_normalizer(sub, &s, path, err);
            if (rc) return rc;
            have_norm = 1;
        }
    }
    if (npieces == 0) return BAD("%s: SentencePiece model has no pieces", path);
    if (npieces > INT32_MAX) return BAD("%s: %zu pieces is too many", path, npieces);
    if (!have_trainer) return BAD("%s: SentencePiece model has no trainer_spec", path);
    if (s.model_type != 2)
        return dlq_errf(err, DLQ_EUNSUP, "%s: SentencePiece model_type %d is not supported (only BPE = 2)%s", path,
                        s.model_type, s.model_type == 1 ? "; this is a Unigram model" : "");
    if (s.ws_suffix)
        return dlq_errf(err, DLQ_EUNSUP, "%s: treat_whitespace_as_suffix is not supported", path);
    if (have_norm) {
        if (s.charsmap_len)
            return dlq_errf(err, DLQ_EUNSUP,
                            "%s: normalizer '%s' with a precompiled charsmap is not supported (only identity)",
                            path, s.name);
        if (!s.escape_ws)
            return dlq_errf(err, DLQ_EUNSUP, "%s: normalizer escape_whitespaces=false is not supported", path);
    }

    dlq_tokenizer *t;
    int rc = dlq_tok_alloc(&t, DLQ_TOK_SPM, (int32_t)npieces, err);
    if (rc) return rc;
    r = (pb){data, data + size};
    int32_t id = 0;
    while (r.p < r.end && !rc) {
        uint32_t f;
        int wt;
        uint64_t v;
        pb sub;
        pb_field(&r, &f, &wt, &v, &sub); /* validated by the first pass */
        if (f == 1) rc = parse_piece(t, id++, sub, path, err);
    }
    if (!rc) rc = dlq_tok_finish(t, err);
    if (rc) {
        dlq_tok_destroy(t);
        return rc;
    }
    int32_t unk = -1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->types[i] == DLQ_TOKTYPE_UNKNOWN) {
            if (unk >= 0) {
                dlq_tok_destroy(t);
                return BAD("%s: pieces %d and %d are both of type UNKNOWN", path, unk, i);
            }
            unk = i;
        }
    t->unk = unk >= 0 ? unk : valid_id(s.unk_id, t->n_vocab);
    t->bos = valid_id(s.bos_id, t->n_vocab);
    t->eos = valid_id(s.eos_id, t->n_vocab);
    t->pad = valid_id(s.pad_id, t->n_vocab);
    t->add_dummy_prefix = have_norm ? s.add_dummy_prefix : 1;
    t->byte_fallback = s.byte_fallback;
    t->remove_extra_ws = have_norm ? s.remove_extra_ws : 1; /* sentencepiece's default */
    t->add_bos = 1; /* Llama's default; tokenizer_config.json may override */
    t->add_eos = 0;
    *out = t;
    return DLQ_OK;
}

int dlq_tok_load_spm(dlq_tokenizer **out, const char *path, dlq_err *err) {
    *out = NULL;
    dlq_mapfile mf;
    int rc = dlq_mapfile_open(&mf, path, err);
    if (rc) return rc;
    if (mf.size == 0) {
        dlq_mapfile_close(&mf);
        return BAD("%s: empty file, expected a SentencePiece model", path);
    }
    rc = load_from(out, mf.data, mf.size, path, err);
    dlq_mapfile_close(&mf);
    return rc;
}

int dlq_tok_load_spm_mem(dlq_tokenizer **out, const void *data, size_t size, const char *what, dlq_err *err) {
    *out = NULL;
    if (size == 0) return BAD("%s: empty SentencePiece model", what);
    return load_from(out, data, size, what, err);
}
