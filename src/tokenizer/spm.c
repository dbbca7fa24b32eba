/* SentencePiece BPE encoding, as sentencepiece's bpe_model.cc (and llama.cpp's
 * llm_tokenizer_spm) do it:
 *   1. normalize: identity normalizer (each invalid UTF-8 byte becomes U+FFFD),
 *      " " -> "▁", a leading "▁" (dummy prefix) when the text is non-empty;
 *   2. split into UTF-8 characters; user-defined pieces (longest match) become
 *      single frozen symbols that never merge;
 *   3. repeatedly merge the adjacent pair whose concatenation is a vocabulary
 *      piece (NORMAL / USER_DEFINED / UNUSED) with the highest score, ties to
 *      the leftmost pair, using a binary heap with lazy invalidation
 *      (O(n log n));
 *   4. UNUSED pieces are re-split into the pair that formed them (recursively);
 *      symbols that are not in the vocabulary become byte tokens <0xXX> (one
 *      per UTF-8 byte) with byte_fallback, else <unk>. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

size_t dlq_spm_utf8_len(const unsigned char *s, size_t n);

/* Length of the valid UTF-8 character at s, or 0 if it is malformed
 * (truncated, bad continuation, overlong, surrogate or > U+10FFFF). */
size_t dlq_spm_utf8_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t l;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { l = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { l = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { l = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < l) return 0;
    for (size_t i = 1; i < l; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return l;
}

static const char k_ws[] = "\xe2\x96\x81";

typedef struct {
    uint32_t start, len;   /* byte span in the normalized text; len 0 = merged away */
    int32_t prev, next;
    int freeze;
} sym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} pair;

typedef struct {
    const dlq_tokenizer *t;
    const char *norm;
    sym *s;
    pair *heap;
    size_t nheap, capheap;
    int32_t *rev;          /* UNUSED piece id -> byte length of its left part */
    int32_t **ids;
    size_t *n, *cap;
    dlq_err *err;
} enc;

/* a before b in the agenda: higher score, then smaller left */
static int pair_before(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(enc *e, pair p) {
    if (e->nheap == e->capheap) {
        size_t nc = e->capheap ? e->capheap * 2 : 1024;
        pair *nh = realloc(e->heap, nc * sizeof *nh);
        if (!nh) return dlq_errf(e->err, DLQ_ENOMEM, "spm encode: out of memory");
        e->heap = nh;
        e->capheap = nc;
    }
    size_t i = e->nheap++;
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!pair_before(&p, &e->heap[par])) break;
        e->heap[i] = e->heap[par];
        i = par;
    }
    e->heap[i] = p;
    return DLQ_OK;
}

static pair heap_pop(enc *e) {
    pair top = e->heap[0];
    pair last = e->heap[--e->nheap];
    size_t i = 0, n = e->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static int mergeable(int32_t type) {
    return type != DLQ_TOKTYPE_CONTROL && type != DLQ_TOKTYPE_UNKNOWN && type != DLQ_TOKTYPE_BYTE;
}

static int try_pair(enc *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return DLQ_OK;
    const sym *l = &e->s[left], *r = &e->s[right];
    if (l->freeze || r->freeze) return DLQ_OK;
    uint32_t size = l->len + r->len;
    int32_t id = dlq_strmap_get(&e->t->vocab, e->norm + l->start, size);
    if (id < 0 || !mergeable(e->t->types[id])) return DLQ_OK;
    if (e->t->types[id] == DLQ_TOKTYPE_UNUSED && e->rev) e->rev[id] = (int32_t)l->len;
    pair p = {e->t->scores[id], left, right, size};
    return heap_push(e, p);
}

static int push_id(enc *e, int32_t id) {
    if (*e->n == *e->cap) {
        size_t nc = *e->cap ? *e->cap * 2 : 64;
        int32_t *nv = realloc(*e->ids, nc * sizeof *nv);
        if (!nv) return dlq_errf(e->err, DLQ_ENOMEM, "spm encode: out of memory");
        *e->ids = nv;
        *e->cap = nc;
    }
    (*e->ids)[(*e->n)++] = id;
    return DLQ_OK;
}

/* Emits a final piece: its id, or byte tokens / <unk> if not in the vocab. */
static int emit(enc *e, uint32_t start, uint32_t len) {
    const dlq_tokenizer *t = e->t;
    int32_t id = dlq_strmap_get(&t->vocab, e->norm + start, len);
    if (id >= 0 && t->types[id] != DLQ_TOKTYPE_UNKNOWN) return push_id(e, id);
    if (t->byte_fallback) {
        for (uint32_t i = 0; i < len; i++) {
            int32_t b = t->byte_ids[(unsigned char)e->norm[start + i]];
            if (b < 0) b = t->unk;
            if (b < 0)
                return dlq_errf(e->err, DLQ_EFORMAT,
                                "spm encode: byte 0x%02X has no <0x%02X> token and the vocabulary has no <unk>",
                                (unsigned char)e->norm[start + i], (unsigned char)e->norm[start + i]);
            if (push_id(e, b)) return DLQ_ENOMEM;
        }
        return DLQ_OK;
    }
    if (t->unk < 0)
        return dlq_errf(e->err, DLQ_EFORMAT,
                        "spm encode: text has a character outside the vocabulary and there is no <unk> token");
    return push_id(e, t->unk);
}

/* Emits a final symbol, re-splitting UNUSED pieces into their parts. */
static int resegment(enc *e, uint32_t start, uint32_t len) {
    const dlq_tokenizer *t = e->t;
    if (!e->rev) return emit(e, start, len);
    uint32_t stk_local[64][2];
    uint32_t (*stk)[2] = stk_local;
    size_t ns = 0, cap = 64;
    int rc = DLQ_OK;
    stk[ns][0] = start;
    stk[ns][1] = len;
    ns++;
    while (ns && !rc) {
        ns--;
        uint32_t s0 = stk[ns][0], l0 = stk[ns][1];
        int32_t id = dlq_strmap_get(&t->vocab, e->norm + s0, l0);
        int32_t ll = id >= 0 && t->types[id] == DLQ_TOKTYPE_UNUSED ? e->rev[id] : 0;
        if (ll <= 0 || (uint32_t)ll >= l0) {
            rc = emit(e, s0, l0);
            continue;
        }
        if (ns + 2 > cap) {
            size_t nc = cap * 2;
            uint32_t (*nstk)[2] = malloc(nc * sizeof *nstk);
            if (!nstk) {
                rc = dlq_errf(e->err, DLQ_ENOMEM, "spm encode: out of memory");
                break;
            }
            memcpy(nstk, stk, ns * sizeof *stk);
            if (stk != stk_local) free(stk);
            stk = nstk;
            cap = nc;
        }
        stk[ns][0] = s0 + (uint32_t)ll;   /* right part, processed second */
        stk[ns][1] = l0 - (uint32_t)ll;
        ns++;
        stk[ns][0] = s0;
        stk[ns][1] = (uint32_t)ll;
        ns++;
    }
    if (stk != stk_local) free(stk);
    return rc;
}

#define DLQ_SPM_MAX_TEXT ((size_t)1 << 29)

int dlq_spm_encode(const dlq_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                   size_t *cap, dlq_err *err) {
    if (len == 0) return DLQ_OK;
    if (len > DLQ_SPM_MAX_TEXT)
        return dlq_errf(err, DLQ_EINVAL, "spm encode: text of %zu bytes is too long (at most %zu per call)", len,
                        DLQ_SPM_MAX_TEXT);
    const unsigned char *in = (const unsigned char *)text;
    char *norm = malloc(3 * len + 3);
    if (!norm) return dlq_errf(err, DLQ_ENOMEM, "spm encode: out of memory for %zu bytes of text", len);

    /* 1. normalize */
    /* remove_extra_whitespaces (sentencepiece's normalizer.cc): leading spaces dropped, a space
       right after a space (or after the dummy prefix) dropped, trailing spaces dropped; only ' ' */
    size_t m = 0, i0 = 0;
    int rx = t->remove_extra_ws, prev_space = rx;
    if (rx)
        while (i0 < len && in[i0] == ' ') i0++;
    if (t->add_dummy_prefix && (i0 < len || !rx)) {
        memcpy(norm, k_ws, 3);
        m = 3;
    }
    for (size_t i = i0; i < len;) {
        size_t l = dlq_spm_utf8_len(in + i, len - i);
        if (l == 0) {
            memcpy(norm + m, "\xef\xbf\xbd", 3);
            m += 3;
            i++;
            prev_space = 0;
        } else if (in[i] == ' ') {
            if (!prev_space) {
                memcpy(norm + m, k_ws, 3);
                m += 3;
            }
            prev_space = rx;
            i++;
        } else {
            memcpy(norm + m, in + i, l);
            m += l;
            i += l;
            prev_space = 0;
        }
    }
    if (rx)
        while (m >= 3 && memcmp(norm + m - 3, k_ws, 3) == 0) m -= 3;
    if (m == 0) {
        free(norm);
        return DLQ_OK;
    }

    /* user-defined pieces: longest match first. Segmentation: when no
     * mergeable piece has a "▁" right after another character, no merge can
     * cross the boundary before a "▁" that follows a non-"▁" symbol, so such
     * segments are merged independently (same result, small cache-friendly
     * heaps). Not with UNUSED pieces: their re-split depends on the global
     * merge order. */
    size_t ud_max = 0;
    int has_unused = 0, can_split = 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int32_t ty = t->types[i];
        if (ty == DLQ_TOKTYPE_USER_DEFINED && t->piece_len[i] > ud_max) ud_max = t->piece_len[i];
        if (ty == DLQ_TOKTYPE_UNUSED) has_unused = 1;
        if (can_split && mergeable(ty)) {
            const char *p = t->pieces[i];
            for (size_t k = 1; k + 3 <= t->piece_len[i]; k++)
                if (memcmp(p + k, k_ws, 3) == 0 && !(k >= 3 && memcmp(p + k - 3, k_ws, 3) == 0)) {
                    can_split = 0;
                    break;
                }
        }
    }
    if (has_unused) can_split = 0;

    enc e = {.t = t, .norm = norm, .ids = ids, .n = n, .cap = cap, .err = err};
    int rc = DLQ_OK;
    e.s = malloc(m * sizeof *e.s);
    if (!e.s) {
        rc = dlq_errf(err, DLQ_ENOMEM, "spm encode: out of memory for %zu symbols", m);
        goto done;
    }
    if (has_unused) {
        e.rev = calloc((size_t)t->n_vocab, sizeof *e.rev);
        if (!e.rev) {
            rc = dlq_errf(err, DLQ_ENOMEM, "spm encode: out of memory");
            goto done;
        }
    }

    /* 2. split into characters / user-defined pieces; segments are linked
     * lists of their own (first symbol prev = -1, last next = -1) */
    int32_t ns = 0;
    for (size_t i = 0; i < m;) {
        size_t l = 0;
        int freeze = 0;
        for (size_t k = ud_max < m - i ? ud_max : m - i; k > 0 && ud_max; k--) {
            int32_t id = dlq_strmap_get(&t->vocab, norm + i, k);
            if (id >= 0 && t->types[id] == DLQ_TOKTYPE_USER_DEFINED) {
                l = k;
                freeze = 1;
                break;
            }
        }
        if (!l) {
            l = dlq_spm_utf8_len((const unsigned char *)norm + i, m - i);
            if (!l) l = 1; /* cannot happen after normalization */
        }
        int cut = can_split && ns > 0 && l >= 3 && memcmp(norm + i, k_ws, 3) == 0 &&
                  !(e.s[ns - 1].len == 3 && memcmp(norm + e.s[ns - 1].start, k_ws, 3) == 0);
        e.s[ns] = (sym){(uint32_t)i, (uint32_t)l, cut || ns == 0 ? -1 : ns - 1, -1, freeze};
        if (ns > 0 && !cut) e.s[ns - 1].next = ns;
        ns++;
        i += l;
    }

    /* 3. merge each segment, 4. output it */
    for (int32_t a = 0; a < ns && !rc;) {
        int32_t b = a + 1;
        while (b < ns && e.s[b].prev >= 0) b++;
        e.nheap = 0;
        for (int32_t i = a; i + 1 < b && !rc; i++) rc = try_pair(&e, i, i + 1);
        while (e.nheap && !rc) {
            pair p = heap_pop(&e);
            sym *l = &e.s[p.left], *r = &e.s[p.right];
            if (l->len == 0 || r->len == 0 || l->len + r->len != p.size || l->next != p.right) continue;
            l->len += r->len;
            l->next = r->next;
            if (r->next >= 0) e.s[r->next].prev = p.left;
            r->len = 0;
            rc = try_pair(&e, l->prev, p.left);
            if (!rc) rc = try_pair(&e, p.left, l->next);
        }
        for (int32_t i = a; i >= 0 && !rc; i = e.s[i].next) rc = resegment(&e, e.s[i].start, e.s[i].len);
        a = b;
    }

done:
    free(e.rev);
    free(e.heap);
    free(e.s);
    free(norm);
    return rc;
}
