/* Byte-level BPE (GPT-2 / Llama 3 / Qwen2 / SmolLM): setup from a vocabulary + merge
 * list, encoding, and decoding of one piece.
 *
 * Encoding (as Hugging Face tokenizers and llama.cpp do it):
 *  1. Added / special tokens (token types CONTROL and USER_DEFINED) are cut
 *     out of the input first, leftmost-longest, and emitted as their ids;
 *     the text between them is encoded independently.
 *  2. Each text segment is split into words by the pre-tokenizer regex of the
 *     model (GPT-2, Llama 3, Qwen2; SmolLM = isolated digits + GPT-2), implemented as hand-written state
 *     machines over code points that reproduce the regex semantics exactly
 *     (leftmost-first alternation, greedy quantifiers, \s+(?!\S)).
 *  3. Each word's bytes are mapped to GPT-2's printable byte alphabet
 *     (bytes_to_unicode) and merged pair by pair, lowest merge rank first
 *     (leftmost on ties), with a binary heap over a linked list of symbols
 *     (HF's Word::merge_all). Results are cached per call by word.
 * No mutable state is shared between calls: the cache and scratch buffers
 * live in the call, so one tokenizer may encode from many threads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe_internal.h"
#include "tokenizer/unicode.h"

enum { CL_O = 0, CL_L = DLQ_UC_L, CL_N = DLQ_UC_N, CL_WS = DLQ_UC_WS };

typedef struct pair_ent {
    uint64_t key;   /* (left id << 32) | right id */
    int32_t rank;   /* -1 = empty slot */
    int32_t id;     /* merged token id */
} pair_ent;

typedef struct special {
    const char *s;
    uint32_t len;
    int32_t id;
    uint8_t lstrip, rstrip;
} special;

typedef struct bpe_state {
    int pre;
    int ignore_merges, add_prefix_space;
    int32_t unk;
    uint16_t byte_cp[256];    /* byte -> code point of its printable stand-in */
    int16_t cp_byte[324];     /* inverse (-1: not a byte stand-in) */
    int32_t byte_id[256];     /* vocab id of each byte's one-char piece, -1 if absent */
    pair_ent *pairs;
    size_t pair_cap;          /* power of two */
    dlq_strmap vocab;         /* piece -> id (keys point into t->pieces) */
    special *sp;              /* sorted by first byte, then longest first */
    size_t n_sp;
    uint32_t sp_lo[256], sp_hi[256];
} bpe_state;

/* ---------------------------------------------------------------- setup */

static void bpe_state_free(void *p) {
    bpe_state *st = p;
    if (!st) return;
    free(st->pairs);
    free(st->sp);
    dlq_strmap_free(&st->vocab);
    free(st);
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves,
 * the other 68 to U+0100.. in byte order. */
static void bytes_to_unicode(bpe_state *st) {
    int n = 0;
    for (int i = 0; i < 324; i++) st->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        st->byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
        st->cp_byte[st->byte_cp[b]] = (int16_t)b;
    }
}

static size_t pair_slot(const bpe_state *st, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    size_t i = (size_t)h & (st->pair_cap - 1);
    while (st->pairs[i].rank >= 0 && st->pairs[i].key != key) i = (i + 1) & (st->pair_cap - 1);
    return i;
}

static inline const pair_ent *pair_get(const bpe_state *st, int32_t a, int32_t b) {
    if (a < 0 || b < 0) return NULL;
    const pair_ent *e = &st->pairs[pair_slot(st, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b)];
    return e->rank >= 0 ? e : NULL;
}

static int sp_cmp(const void *pa, const void *pb) {
    const special *a = pa, *b = pb;
    unsigned ca = (unsigned char)a->s[0], cb = (unsigned char)b->s[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int dlq_bpe_pre_kind(const char *pre, int *ignore_merges) {
    static const char *const gpt2_names[] = {"gpt2", "gpt-2", "default", "mpt", "olmo", "jais", NULL};
    static const char *const llama3_names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", NULL};
    static const char *const llama3_other[] = {"smaug-bpe", "dbrx", NULL};
    static const char *const qwen2_names[] = {"qwen2", "deepseek-r1-qwen", NULL};
    /* llama.cpp gives starcoder, refact, command-r, codeshell, exaone, minerva
     * and mellum2 the same split, but with other vocabulary options; only
     * smollm is checked against llama.cpp here */
    static const char *const smollm_names[] = {"smollm", NULL};
    static const char gpt2_re[] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    static const char llama3_re[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static const char qwen2_re[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    if (ignore_merges) *ignore_merges = 0;
    if (!pre || !*pre) return DLQ_BPE_PRE_GPT2;
    for (int i = 0; gpt2_names[i]; i++)
        if (!strcmp(pre, gpt2_names[i])) return DLQ_BPE_PRE_GPT2;
    for (int i = 0; llama3_names[i]; i++)
        if (!strcmp(pre, llama3_names[i])) {
            if (ignore_merges) *ignore_merges = 1;
            return DLQ_BPE_PRE_LLAMA3;
        }
    for (int i = 0; llama3_other[i]; i++)
        if (!strcmp(pre, llama3_other[i])) return DLQ_BPE_PRE_LLAMA3;
    for (int i = 0; qwen2_names[i]; i++)
        if (!strcmp(pre, qwen2_names[i])) return DLQ_BPE_PRE_QWEN2;
    for (int i = 0; smollm_names[i]; i++)
        if (!strcmp(pre, smollm_names[i])) return DLQ_BPE_PRE_SMOLLM;
    if (!strcmp(pre, gpt2_re)) return DLQ_BPE_PRE_GPT2;
    if (!strcmp(pre, llama3_re)) return DLQ_BPE_PRE_LLAMA3;
    if (!strcmp(pre, qwen2_re)) return DLQ_BPE_PRE_QWEN2;
    return 0;
}

int dlq_bpe_setup(dlq_tokenizer *t, const char *const *merges, const size_t *merge_len,
                  size_t n_merges, const char *pre, dlq_err *err) {
    int ign = 0;
    int kind = dlq_bpe_pre_kind(pre, &ign);
    if (!kind)
        return dlq_errf(err, DLQ_EUNSUP,
                        "byte-level BPE pre-tokenizer \"%.300s\" is not supported (known: the GPT-2, "
                        "Llama 3 and Qwen2 regexes; names gpt2/gpt-2/default, llama3/llama-bpe, qwen2, smollm)",
                        pre);
    if (!t || t->n_vocab <= 0 || !t->pieces || !t->piece_len)
        return dlq_errf(err, DLQ_EINVAL, "byte-level BPE setup: tokenizer has no vocabulary");
    if (n_merges && (!merges || !merge_len))
        return dlq_errf(err, DLQ_EINVAL, "byte-level BPE setup: merges missing");
    bpe_state *st = dlq_calloc(1, sizeof *st, err);
    if (!st) return DLQ_ENOMEM;
    st->pre = kind;
    st->ignore_merges = ign;
    st->unk = -1;
    bytes_to_unicode(st);
    char *cat = NULL;
    int rc = dlq_strmap_init(&st->vocab, (size_t)t->n_vocab, err);
    if (rc) goto fail;
    size_t n_sp = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!t->pieces[i] || !t->piece_len[i]) continue;
        if ((rc = dlq_strmap_put(&st->vocab, t->pieces[i], t->piece_len[i], i, err))) goto fail;
        int32_t ty = t->types ? t->types[i] : DLQ_TOKTYPE_NORMAL;
        if (ty == DLQ_TOKTYPE_CONTROL || ty == DLQ_TOKTYPE_USER_DEFINED) n_sp++;
    }
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t ul = dlq_utf8_encode(st->byte_cp[b], u);
        st->byte_id[b] = dlq_strmap_get(&st->vocab, u, ul);
    }
    /* merge ranks */
    st->pair_cap = 16;
    while (st->pair_cap < n_merges * 2) st->pair_cap <<= 1;
    st->pairs = dlq_malloc(st->pair_cap * sizeof *st->pairs, err);
    if (!st->pairs) { rc = DLQ_ENOMEM; goto fail; }
    for (size_t i = 0; i < st->pair_cap; i++) st->pairs[i].rank = -1;
    size_t cat_cap = 0;
    for (size_t m = 0; m < n_merges; m++) {
        const char *s = merges[m];
        size_t l = merge_len[m];
        if (!s) continue;
        /* split at the first space after the first byte (as llama.cpp does) */
        const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
        if (!sp) {
            rc = dlq_errf(err, DLQ_EFORMAT, "byte-level BPE merge %zu (\"%.*s\") is not of the form \"a b\"",
                          m, (int)(l > 80 ? 80 : l), s);
            goto fail;
        }
        size_t la = (size_t)(sp - s), lb = l - la - 1;
        int32_t a = dlq_strmap_get(&st->vocab, s, la);
        int32_t b = dlq_strmap_get(&st->vocab, sp + 1, lb);
        if (a < 0 || b < 0) continue; /* llama.cpp tolerates these; they can never apply */
        if (la + lb > cat_cap) {
            cat_cap = (la + lb) * 2 + 64;
            char *nc = realloc(cat, cat_cap);
            if (!nc) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory for BPE merges"); goto fail; }
            cat = nc;
        }
        memcpy(cat, s, la);
        memcpy(cat + la, sp + 1, lb);
        int32_t ab = dlq_strmap_get(&st->vocab, cat, la + lb);
        if (ab < 0) continue;
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        size_t slot = pair_slot(st, key);
        if (st->pairs[slot].rank >= 0) continue; /* duplicate: first (lowest) rank wins */
        st->pairs[slot].key = key;
        st->pairs[slot].rank = (int32_t)(m > INT32_MAX ? INT32_MAX : m);
        st->pairs[slot].id = ab;
    }
    free(cat);
    cat = NULL;
    /* added / special tokens, matched in the input before pre-tokenization */
    if (n_sp) {
        st->sp = dlq_calloc(n_sp, sizeof *st->sp, err);
        if (!st->sp) { rc = DLQ_ENOMEM; goto fail; }
        for (int32_t i = 0; i < t->n_vocab; i++) {
            if (!t->pieces[i] || !t->piece_len[i]) continue;
            int32_t ty = t->types ? t->types[i] : DLQ_TOKTYPE_NORMAL;
            if (ty != DLQ_TOKTYPE_CONTROL && ty != DLQ_TOKTYPE_USER_DEFINED) continue;
            special *e = &st->sp[st->n_sp++];
            e->s = t->pieces[i];
            e->len = t->piece_len[i];
            e->id = i;
        }
        qsort(st->sp, st->n_sp, sizeof *st->sp, sp_cmp);
        for (size_t i = 0; i < st->n_sp; i++) {
            unsigned c = (unsigned char)st->sp[i].s[0];
            if (st->sp_hi[c] == 0) st->sp_lo[c] = (uint32_t)i;
            st->sp_hi[c] = (uint32_t)i + 1;
        }
    }
    if (t->bpe && t->bpe_free) t->bpe_free(t->bpe);
    t->bpe = st;
    t->bpe_free = bpe_state_free;
    return DLQ_OK;
fail:
    free(cat);
    bpe_state_free(st);
    return rc;
}

void dlq_bpe_set_options(dlq_tokenizer *t, int ignore_merges, int add_prefix_space, int32_t unk) {
    bpe_state *st = t ? t->bpe : NULL;
    if (!st) return;
    st->ignore_merges = ignore_merges;
    st->add_prefix_space = add_prefix_space;
    st->unk = unk;
}

int dlq_bpe_set_added_flags(dlq_tokenizer *t, int32_t id, int lstrip, int rstrip) {
    bpe_state *st = t ? t->bpe : NULL;
    if (!st) return DLQ_EINVAL;
    for (size_t i = 0; i < st->n_sp; i++)
        if (st->sp[i].id == id) {
            st->sp[i].lstrip = (uint8_t)!!lstrip;
            st->sp[i].rstrip = (uint8_t)!!rstrip;
            return DLQ_OK;
        }
    return DLQ_EINVAL;
}

/* ---------------------------------------------------- pre-tokenization */

static const uint8_t ascii_cls[128] = {
    ['\t'] = CL_WS, ['\n'] = CL_WS, ['\v'] = CL_WS, ['\f'] = CL_WS, ['\r'] = CL_WS, [' '] = CL_WS,
    ['0'] = CL_N, ['1'] = CL_N, ['2'] = CL_N, ['3'] = CL_N, ['4'] = CL_N,
    ['5'] = CL_N, ['6'] = CL_N, ['7'] = CL_N, ['8'] = CL_N, ['9'] = CL_N,
    ['A'] = CL_L, ['B'] = CL_L, ['C'] = CL_L, ['D'] = CL_L, ['E'] = CL_L, ['F'] = CL_L, ['G'] = CL_L,
    ['H'] = CL_L, ['I'] = CL_L, ['J'] = CL_L, ['K'] = CL_L, ['L'] = CL_L, ['M'] = CL_L, ['N'] = CL_L,
    ['O'] = CL_L, ['P'] = CL_L, ['Q'] = CL_L, ['R'] = CL_L, ['S'] = CL_L, ['T'] = CL_L, ['U'] = CL_L,
    ['V'] = CL_L, ['W'] = CL_L, ['X'] = CL_L, ['Y'] = CL_L, ['Z'] = CL_L,
    ['a'] = CL_L, ['b'] = CL_L, ['c'] = CL_L, ['d'] = CL_L, ['e'] = CL_L, ['f'] = CL_L, ['g'] = CL_L,
    ['h'] = CL_L, ['i'] = CL_L, ['j'] = CL_L, ['k'] = CL_L, ['l'] = CL_L, ['m'] = CL_L, ['n'] = CL_L,
    ['o'] = CL_L, ['p'] = CL_L, ['q'] = CL_L, ['r'] = CL_L, ['s'] = CL_L, ['t'] = CL_L, ['u'] = CL_L,
    ['v'] = CL_L, ['w'] = CL_L, ['x'] = CL_L, ['y'] = CL_L, ['z'] = CL_L,
};

/* Class of the code point at s[i] (i < n); *l = its byte length. */
static inline uint32_t cls_at(const unsigned char *s, size_t n, size_t i, size_t *l) {
    if (s[i] < 0x80) { *l = 1; return ascii_cls[s[i]]; }
    uint32_t cp;
    *l = dlq_utf8_decode(s + i, n - i, &cp);
    return dlq_uc_class(cp);
}

/* End of the maximal run of class k starting at i. */
static size_t run_of(const unsigned char *s, size_t n, size_t i, uint32_t k) {
    size_t l;
    while (i < n && cls_at(s, n, i, &l) == k) i += l;
    return i;
}

/* Up to max code points of class k from i. */
static size_t run_max(const unsigned char *s, size_t n, size_t i, uint32_t k, int max) {
    size_t l;
    for (int c = 0; c < max && i < n && cls_at(s, n, i, &l) == k; c++) i += l;
    return i;
}

/* 's|'t|'re|'ve|'m|'ll|'d at i (s[i] == '\''); fold: ASCII case-insensitive. */
static size_t contraction(const unsigned char *s, size_t n, size_t i, int fold) {
    if (i + 1 >= n) return 0;
    unsigned a = s[i + 1];
    if (fold) {
        /* (?i:'s) also matches U+017F LATIN SMALL LETTER LONG S (case folds to
         * 's'), as Oniguruma and Python's regex do (llama.cpp does not) */
        if (a == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return i + 3;
        a = dlq_uc_ascii_lower(a);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= n) return 0;
    unsigned b = s[i + 2];
    if (fold) b = dlq_uc_ascii_lower(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

/* Whitespace alternatives at i (a whitespace code point). nl: also try
 * \s*[\r\n]+ first (Llama 3 / Qwen2). Then \s+(?!\S) | \s+. digit_end: a
 * \p{N} code point ends the text (SmolLM: the regex runs on the pieces
 * between isolated digits), so a run before a digit is taken whole. */
static size_t ws_tail(const unsigned char *s, size_t n, size_t i, int nl, int digit_end) {
    size_t j = i, last = i, count = 0, nl_end = 0, l;
    while (j < n && cls_at(s, n, j, &l) == CL_WS) {
        if (s[j] == '\r' || s[j] == '\n') nl_end = j + 1;
        last = j;
        j += l;
        count++;
    }
    if (nl && nl_end) return nl_end;          /* \s*[\r\n]+ (backtracks to the last newline) */
    if (j == n || count < 2) return j;        /* \s+(?!\S) at the end, or the single \s */
    if (digit_end && cls_at(s, n, j, &l) == CL_N) return j; /* the piece ends here */
    return last;                              /* \s+(?!\S): all but the last one */
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * digits: SmolLM (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM, HF
 * Sequence[Digits(individual_digits), ByteLevel]): every \p{N} code point
 * is a word of its own and the regex above runs on the text between them,
 * so no word reaches across a digit ("a 1" -> "a", " ", "1"). */
static size_t split_gpt2(const unsigned char *s, size_t n, size_t i, int digits) {
    size_t l0, l1, e;
    if (s[i] == '\'' && (e = contraction(s, n, i, 0))) return e;
    uint32_t k0 = cls_at(s, n, i, &l0);
    if (digits && k0 == CL_N) return i + l0;
    if (s[i] == ' ' && i + 1 < n) {
        uint32_t k1 = cls_at(s, n, i + 1, &l1);
        if (k1 != CL_WS && !(digits && k1 == CL_N)) return run_of(s, n, i + 1, k1);
    }
    if (k0 != CL_WS) return run_of(s, n, i, k0);
    return ws_tail(s, n, i, 0, digits);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxd}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t split_llama3(const unsigned char *s, size_t n, size_t i, int maxd) {
    size_t l0, l1, e;
    if (s[i] == '\'' && (e = contraction(s, n, i, 1))) return e;
    uint32_t k0 = cls_at(s, n, i, &l0);
    if (k0 == CL_L) return run_of(s, n, i, CL_L);
    if (s[i] != '\r' && s[i] != '\n' && k0 != CL_N && i + l0 < n &&
        cls_at(s, n, i + l0, &l1) == CL_L)
        return run_of(s, n, i + l0, CL_L);
    if (k0 == CL_N) return run_max(s, n, i, CL_N, maxd);
    size_t o = SIZE_MAX;
    if (k0 == CL_O) o = i;
    else if (s[i] == ' ' && i + 1 < n && cls_at(s, n, i + 1, &l1) == CL_O) o = i + 1;
    if (o != SIZE_MAX) {
        e = run_of(s, n, o, CL_O);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    return ws_tail(s, n, i, 1, 0);
}

size_t dlq_bpe_split_next(int pre, const unsigned char *s, size_t n, size_t i) {
    size_t e;
    switch (pre) {
    case DLQ_BPE_PRE_LLAMA3: e = split_llama3(s, n, i, 3); break;
    case DLQ_BPE_PRE_QWEN2: e = split_llama3(s, n, i, 1); break;
    case DLQ_BPE_PRE_SMOLLM: e = split_gpt2(s, n, i, 1); break;
    default: e = split_gpt2(s, n, i, 0); break;
    }
    return e > i ? e : i + 1; /* cannot happen; guarantees progress */
}

/* ------------------------------------------------------------- encoding */

typedef struct cache_ent {
    uint32_t key_off, key_len, ids_off, ids_n;
    uint64_t hash; /* 0 = empty */
} cache_ent;

typedef struct heap_ent {
    int32_t rank, pos, id;
} heap_ent;

typedef struct enc_ctx {
    const bpe_state *st;
    int32_t **ids;
    size_t *n, *cap;
    dlq_err *err;
    /* per-word scratch */
    int32_t *sym, *prev, *next;
    heap_ent *heap;
    size_t sym_cap, heap_cap;
    char *mapped;
    size_t mapped_cap;
    char *pbuf; /* add_prefix_space copy */
    size_t pbuf_cap;
    /* word cache */
    cache_ent *ce;
    size_t ce_cap, ce_count;
    char *keys;
    size_t keys_n, keys_cap;
    int32_t *cids;
    size_t cids_n, cids_cap;
} enc_ctx;

#define CACHE_MAX_WORD 256
#define CACHE_MAX_ENTRIES (1u << 20)

static int grow(void **p, size_t *cap, size_t need, size_t elem, dlq_err *err) {
    if (need <= *cap) return DLQ_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return dlq_errf(err, DLQ_ENOMEM, "out of memory while encoding (%zu x %zu bytes)", nc, elem);
    *p = np;
    *cap = nc;
    return DLQ_OK;
}

static int emit(enc_ctx *c, int32_t id) {
    if (*c->n >= *c->cap) {
        void *p = *c->ids;
        if (grow(&p, c->cap, *c->n + 1, sizeof **c->ids, c->err)) return DLQ_ENOMEM;
        *c->ids = p;
    }
    (*c->ids)[(*c->n)++] = id;
    return DLQ_OK;
}

static uint64_t word_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ? h : 1;
}

static cache_ent *cache_find(enc_ctx *c, const char *w, size_t wl, uint64_t h) {
    if (!c->ce_cap) return NULL;
    size_t i = (size_t)h & (c->ce_cap - 1);
    while (c->ce[i].hash) {
        cache_ent *e = &c->ce[i];
        if (e->hash == h && e->key_len == wl && !memcmp(c->keys + e->key_off, w, wl)) return e;
        i = (i + 1) & (c->ce_cap - 1);
    }
    return &c->ce[i]; /* empty slot */
}

static void cache_put(enc_ctx *c, const char *w, size_t wl, uint64_t h, const int32_t *ids, size_t n) {
    if (c->ce_count >= CACHE_MAX_ENTRIES) return;
    if ((c->ce_count + 1) * 2 > c->ce_cap) {
        size_t nc = c->ce_cap ? c->ce_cap * 2 : 4096;
        cache_ent *ne = calloc(nc, sizeof *ne);
        if (!ne) return; /* the cache is an optimisation only */
        for (size_t i = 0; i < c->ce_cap; i++) {
            if (!c->ce[i].hash) continue;
            size_t j = (size_t)c->ce[i].hash & (nc - 1);
            while (ne[j].hash) j = (j + 1) & (nc - 1);
            ne[j] = c->ce[i];
        }
        free(c->ce);
        c->ce = ne;
        c->ce_cap = nc;
    }
    void *p = c->keys;
    if (grow(&p, &c->keys_cap, c->keys_n + wl, 1, NULL)) return;
    c->keys = p;
    p = c->cids;
    if (grow(&p, &c->cids_cap, c->cids_n + n, sizeof *c->cids, NULL)) return;
    c->cids = p;
    if (c->keys_n + wl > UINT32_MAX || c->cids_n + n > UINT32_MAX) return;
    cache_ent *e = cache_find(c, w, wl, h);
    if (e->hash) return;
    memcpy(c->keys + c->keys_n, w, wl);
    memcpy(c->cids + c->cids_n, ids, n * sizeof *ids);
    e->hash = h;
    e->key_off = (uint32_t)c->keys_n;
    e->key_len = (uint32_t)wl;
    e->ids_off = (uint32_t)c->cids_n;
    e->ids_n = (uint32_t)n;
    c->keys_n += wl;
    c->cids_n += n;
    c->ce_count++;
}

static inline int heap_less(const heap_ent *a, const heap_ent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_ent *h, size_t *hn, heap_ent v) {
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static heap_ent heap_pop(heap_ent *h, size_t *hn) {
    heap_ent top = h[0], v = h[--*hn];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_ent *best = &v;
        if (l < n && heap_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < n && heap_less(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (n) h[i] = v;
    return top;
}

/* BPE of one word (raw bytes w[0..wl)); appends the ids to c's output. */
static int encode_word(enc_ctx *c, const char *w, size_t wl) {
    const bpe_state *st = c->st;
    const unsigned char *u = (const unsigned char *)w;
    if (wl == 1) {
        int32_t id = st->byte_id[u[0]];
        if (id < 0) id = st->unk;
        return id >= 0 ? emit(c, id) : DLQ_OK;
    }
    uint64_t h = 0;
    if (wl <= CACHE_MAX_WORD) {
        h = word_hash(w, wl);
        cache_ent *e = cache_find(c, w, wl, h);
        if (e && e->hash) {
            for (uint32_t k = 0; k < e->ids_n; k++)
                if (emit(c, c->cids[e->ids_off + k])) return DLQ_ENOMEM;
            return DLQ_OK;
        }
    }
    if (st->ignore_merges) {
        void *p = c->mapped;
        if (grow(&p, &c->mapped_cap, wl * 2, 1, c->err)) return DLQ_ENOMEM;
        c->mapped = p;
        size_t ml = 0;
        for (size_t k = 0; k < wl; k++) ml += dlq_utf8_encode(st->byte_cp[u[k]], c->mapped + ml);
        int32_t id = dlq_strmap_get(&st->vocab, c->mapped, ml);
        if (id >= 0) {
            if (h) cache_put(c, w, wl, h, &id, 1);
            return emit(c, id);
        }
    }
    void *p;
    size_t cap0 = c->sym_cap;
    p = c->sym;
    if (grow(&p, &c->sym_cap, wl, sizeof *c->sym, c->err)) return DLQ_ENOMEM;
    c->sym = p;
    if (c->sym_cap != cap0 || !c->prev) {
        int32_t *np = realloc(c->prev, c->sym_cap * sizeof *np);
        if (!np) return dlq_errf(c->err, DLQ_ENOMEM, "out of memory while encoding");
        c->prev = np;
        np = realloc(c->next, c->sym_cap * sizeof *np);
        if (!np) return dlq_errf(c->err, DLQ_ENOMEM, "out of memory while encoding");
        c->next = np;
    }
    p = c->heap;
    if (grow(&p, &c->heap_cap, wl * 2 + 4, sizeof *c->heap, c->err)) return DLQ_ENOMEM;
    c->heap = p;
    /* initial symbols: one per byte; bytes missing from the vocab become unk
     * or are dropped (HF BPE without unk_token) */
    size_t ns = 0;
    for (size_t k = 0; k < wl; k++) {
        int32_t id = st->byte_id[u[k]];
        if (id < 0) id = st->unk;
        if (id < 0) continue;
        c->sym[ns] = id;
        c->prev[ns] = (int32_t)ns - 1;
        c->next[ns] = (int32_t)ns + 1;
        ns++;
    }
    if (ns) c->next[ns - 1] = -1;
    size_t hn = 0;
    for (size_t k = 0; k + 1 < ns; k++) {
        const pair_ent *pe = pair_get(st, c->sym[k], c->sym[k + 1]);
        if (pe) heap_push(c->heap, &hn, (heap_ent){pe->rank, (int32_t)k, pe->id});
    }
    while (hn) {
        heap_ent top = heap_pop(c->heap, &hn);
        int32_t pos = top.pos;
        if (c->sym[pos] < 0) continue;           /* merged away */
        int32_t nx = c->next[pos];
        if (nx < 0) continue;
        const pair_ent *pe = pair_get(st, c->sym[pos], c->sym[nx]);
        if (!pe || pe->id != top.id) continue;   /* stale entry */
        c->sym[pos] = top.id;
        c->sym[nx] = -1;
        int32_t nn = c->next[nx];
        c->next[pos] = nn;
        if (nn >= 0) c->prev[nn] = pos;
        if (hn + 2 > c->heap_cap) {
            p = c->heap;
            if (grow(&p, &c->heap_cap, hn + 2, sizeof *c->heap, c->err)) return DLQ_ENOMEM;
            c->heap = p;
        }
        int32_t pv = c->prev[pos];
        if (pv >= 0 && (pe = pair_get(st, c->sym[pv], c->sym[pos])))
            heap_push(c->heap, &hn, (heap_ent){pe->rank, pv, pe->id});
        if (nn >= 0 && (pe = pair_get(st, c->sym[pos], c->sym[nn])))
            heap_push(c->heap, &hn, (heap_ent){pe->rank, pos, pe->id});
    }
    size_t start = *c->n;
    for (int32_t k = ns ? 0 : -1; k >= 0; k = c->next[k])
        if (emit(c, c->sym[k])) return DLQ_ENOMEM;
    if (h) cache_put(c, w, wl, h, *c->ids + start, *c->n - start);
    return DLQ_OK;
}

static int encode_segment(enc_ctx *c, const char *s, size_t len) {
    if (!len) return DLQ_OK;
    if (c->st->add_prefix_space && s[0] != ' ') {
        void *p = c->pbuf;
        if (grow(&p, &c->pbuf_cap, len + 1, 1, c->err)) return DLQ_ENOMEM;
        c->pbuf = p;
        c->pbuf[0] = ' ';
        memcpy(c->pbuf + 1, s, len);
        s = c->pbuf;
        len++;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t e = dlq_bpe_split_next(c->st->pre, u, len, i);
        int rc = encode_word(c, s + i, e - i);
        if (rc) return rc;
        i = e;
    }
    return DLQ_OK;
}

static int is_ascii_ws(unsigned char ch) { return ch == ' ' || (ch >= 9 && ch <= 13); }

int dlq_bpe_encode(const dlq_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                   size_t *cap, dlq_err *err) {
    const bpe_state *st = t ? t->bpe : NULL;
    if (!st) return dlq_errf(err, DLQ_EINVAL, "byte-level BPE encode: tokenizer has no BPE state");
    if (!ids || !n || !cap || (!text && len))
        return dlq_errf(err, DLQ_EINVAL, "byte-level BPE encode: NULL argument");
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.st = st;
    c.ids = ids;
    c.n = n;
    c.cap = cap;
    c.err = err;
    int rc = DLQ_OK;
    size_t seg = 0, i = 0;
    while (i < len && st->n_sp) {
        unsigned ch = (unsigned char)text[i];
        const special *m = NULL;
        for (uint32_t k = st->sp_lo[ch]; k < st->sp_hi[ch]; k++) {
            const special *e = &st->sp[k];
            if (e->len <= len - i && !memcmp(text + i, e->s, e->len)) { m = e; break; }
        }
        if (!m) { i++; continue; }
        size_t end = i;
        if (m->lstrip)
            while (end > seg && is_ascii_ws((unsigned char)text[end - 1])) end--;
        if ((rc = encode_segment(&c, text + seg, end - seg))) goto out;
        if ((rc = emit(&c, m->id))) goto out;
        i += m->len;
        if (m->rstrip)
            while (i < len && is_ascii_ws((unsigned char)text[i])) i++;
        seg = i;
    }
    rc = encode_segment(&c, text + seg, len - seg);
out:
    free(c.sym);
    free(c.prev);
    free(c.next);
    free(c.heap);
    free(c.mapped);
    free(c.pbuf);
    free(c.ce);
    free(c.keys);
    free(c.cids);
    return rc;
}

/* ------------------------------------------------------------- decoding */

size_t dlq_bpe_piece_bytes(const dlq_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab || !t->pieces || !t->pieces[id]) return 0;
    const char *p = t->pieces[id];
    size_t pl = t->piece_len[id];
    const bpe_state *st = t->bpe;
    int32_t ty = t->types ? t->types[id] : DLQ_TOKTYPE_NORMAL;
    int raw = !st || ty == DLQ_TOKTYPE_CONTROL || ty == DLQ_TOKTYPE_USER_DEFINED;
    /* HF ByteLevel decoder: every char maps back to its byte, or (if any
     * char is not in the byte alphabet) the piece is emitted as is. */
    if (!raw) {
        const unsigned char *u = (const unsigned char *)p;
        for (size_t i = 0; i < pl;) {
            uint32_t cp;
            size_t l = dlq_utf8_decode(u + i, pl - i, &cp);
            if (cp >= 324 || st->cp_byte[cp] < 0 || (cp == 0xFFFD)) { raw = 1; break; }
            i += l;
        }
    }
    size_t w = 0;
    if (raw) {
        w = pl < cap ? pl : cap;
        if (w) memcpy(buf, p, w);
        return w;
    }
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < pl && w < cap;) {
        uint32_t cp;
        i += dlq_utf8_decode(u + i, pl - i, &cp);
        buf[w++] = (char)st->cp_byte[cp];
    }
    return w;
}
