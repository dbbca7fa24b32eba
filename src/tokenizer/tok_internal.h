/* Private to src/tokenizer/: the shared tokenizer struct and the vocab hash. */
#ifndef DLQ_TOK_INTERNAL_H
#define DLQ_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"

/* Open-addressing hash map from byte strings to int32 ids (FNV-1a). Keys are
 * not copied: they must outlive the map. */
typedef struct dlq_strmap {
    const char **keys;
    uint32_t *klen;
    int32_t *vals;
    size_t cap;   /* power of two */
    size_t count;
} dlq_strmap;

int dlq_strmap_init(dlq_strmap *m, size_t expected, dlq_err *err);
int dlq_strmap_put(dlq_strmap *m, const char *key, size_t len, int32_t val, dlq_err *err); /* overwrites */
int32_t dlq_strmap_get(const dlq_strmap *m, const char *key, size_t len); /* -1 if absent */
void dlq_strmap_free(dlq_strmap *m);

struct dlq_tokenizer {
    dlq_tok_kind kind;
    int32_t n_vocab;
    char **pieces;        /* n_vocab malloc'd strings (NUL-terminated, may contain NUL for <0x00>-like
                             pieces only via piece_len) */
    uint32_t *piece_len;
    float *scores;        /* spm merge scores (higher merges first); bpe: unused (0) */
    int32_t *types;       /* DLQ_TOKTYPE_* */
    dlq_strmap vocab;     /* piece -> id */
    int32_t bos, eos, unk, pad;
    int add_bos, add_eos;
    int add_dummy_prefix; /* spm: prepend "▁" (default 1) */
    int byte_fallback;    /* spm: unknown chars -> <0xXX> byte tokens */
    int remove_extra_ws;  /* spm normalizer: drop leading / trailing spaces, collapse runs of ' ' */
    int32_t byte_ids[256]; /* spm: id of <0xXX>, -1 if absent */

    /* byte-level BPE state (owned by bpe.c; NULL for spm) */
    void *bpe;
    void (*bpe_free)(void *);
};

/* Allocates a tokenizer with n_vocab empty slots (pieces/len/scores/types). */
int dlq_tok_alloc(dlq_tokenizer **out, dlq_tok_kind kind, int32_t n_vocab, dlq_err *err);
/* Copies a piece into slot id. */
int dlq_tok_set_piece(dlq_tokenizer *t, int32_t id, const char *piece, size_t len, float score,
                      int32_t type, dlq_err *err);
/* Builds the vocab hash (and spm byte_ids) once all pieces are set. */
int dlq_tok_finish(dlq_tokenizer *t, dlq_err *err);

/* Kind-specific encoders / decoders. */
int dlq_spm_encode(const dlq_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                   size_t *cap, dlq_err *err);
int dlq_bpe_encode(const dlq_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                   size_t *cap, dlq_err *err);
/* byte-level BPE: builds merge ranks and the pre-tokenizer from (merges, pre).
 * merges: n_merges strings "a b"; pre: "gpt2", "llama3", "qwen2" or a regex. */
int dlq_bpe_setup(dlq_tokenizer *t, const char *const *merges, const size_t *merge_len,
                  size_t n_merges, const char *pre, dlq_err *err);
/* Appends the decoded bytes of one bpe piece to buf; returns bytes written. */
size_t dlq_bpe_piece_bytes(const dlq_tokenizer *t, int32_t id, char *buf, size_t cap);

#endif
