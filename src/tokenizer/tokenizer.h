/* Tokenizers: SentencePiece-style BPE ("spm": Llama 1/2, Mistral, TinyLlama)
 * and byte-level BPE ("bpe": GPT-2, Llama 3, Qwen2). One opaque handle, loaded
 * from the file a model ships; encode/decode agree exactly with the reference
 * implementations (sentencepiece, tokenizers, llama.cpp). */
#ifndef DLQ_TOKENIZER_H
#define DLQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct dlq_gguf;

typedef struct dlq_tokenizer dlq_tokenizer;

typedef enum dlq_tok_kind { DLQ_TOK_SPM = 1, DLQ_TOK_BPE = 2 } dlq_tok_kind;

/* Token types: SentencePiece's / GGUF's numbering. */
enum {
    DLQ_TOKTYPE_NORMAL = 1, DLQ_TOKTYPE_UNKNOWN = 2, DLQ_TOKTYPE_CONTROL = 3,
    DLQ_TOKTYPE_USER_DEFINED = 4, DLQ_TOKTYPE_UNUSED = 5, DLQ_TOKTYPE_BYTE = 6
};

/* SentencePiece tokenizer.model (ModelProto protobuf, BPE model type). */
int dlq_tok_load_spm(dlq_tokenizer **out, const char *path, dlq_err *err);
/* llama2.c tokenizer.bin (u32 max_token_length, then per token: f32 score,
 * i32 len, bytes). vocab_size comes from the model header. */
int dlq_tok_load_llama2c(dlq_tokenizer **out, const char *path, int32_t vocab_size, dlq_err *err);
/* Hugging Face tokenizer.json (model.type "BPE"; byte-level pre-tokenizer with
 * a Split regex, or Metaspace/SentencePiece-style normalizer). */
int dlq_tok_load_hf_json(dlq_tokenizer **out, const char *path, dlq_err *err);
/* GGUF metadata tokenizer.ggml.* (model "llama" -> spm, "gpt2" -> bpe; pre
 * "default"/"gpt-2"/"llama-bpe"/"llama3"/"qwen2" pick the pre-tokenizer regex). */
int dlq_tok_load_gguf(dlq_tokenizer **out, const struct dlq_gguf *g, dlq_err *err);
/* The same three loaders over bytes in memory (`what` names them in errors). */
int dlq_tok_load_spm_mem(dlq_tokenizer **out, const void *data, size_t size, const char *what, dlq_err *err);
int dlq_tok_load_llama2c_mem(dlq_tokenizer **out, const void *data, size_t size, int32_t vocab_size, const char *what,
                             dlq_err *err);
int dlq_tok_load_hf_json_mem(dlq_tokenizer **out, const void *data, size_t size, const char *what, dlq_err *err);
/* Picks by file name: *.model -> spm, *.json -> hf, *.bin -> llama2c (needs vocab_size). */
int dlq_tok_load_file(dlq_tokenizer **out, const char *path, int32_t vocab_size, dlq_err *err);
void dlq_tok_destroy(dlq_tokenizer *t);

dlq_tok_kind dlq_tok_kind_of(const dlq_tokenizer *t);
int32_t dlq_tok_vocab_size(const dlq_tokenizer *t);
int32_t dlq_tok_bos(const dlq_tokenizer *t);   /* -1 if none */
int32_t dlq_tok_eos(const dlq_tokenizer *t);   /* -1 if none */
/* Default BOS/EOS policy (tokenizer_config.json add_bos_token / GGUF
 * tokenizer.ggml.add_bos_token); the caller may override with set. */
int dlq_tok_add_bos(const dlq_tokenizer *t);
void dlq_tok_set_add_bos(dlq_tokenizer *t, int add_bos);
void dlq_tok_set_special(dlq_tokenizer *t, int32_t bos, int32_t eos);
/* The remaining special ids and options, for exporters (GGUF metadata). */
typedef struct dlq_tok_meta {
    int32_t unk, pad;     /* -1 if none */
    int add_eos;
    int add_space_prefix; /* spm: "▁" prepended to the text */
} dlq_tok_meta;
void dlq_tok_get_meta(const dlq_tokenizer *t, dlq_tok_meta *m);

/* Encodes len bytes of UTF-8 text (need not be NUL-terminated). add_bos:
 * 1 = prepend BOS, 0 = don't, -1 = tokenizer default. Special-token text in
 * the input ("<s>") is encoded as plain text, as sentencepiece does. *ids is
 * malloc'd (free it). */
int dlq_tok_encode(const dlq_tokenizer *t, const char *text, size_t len, int add_bos,
                   int32_t **ids, size_t *n, dlq_err *err);

/* The raw vocabulary piece (as stored, e.g. "▁the" or "Ġthe") and its length. */
const char *dlq_tok_piece(const dlq_tokenizer *t, int32_t id, size_t *len);
float dlq_tok_score(const dlq_tokenizer *t, int32_t id);
int32_t dlq_tok_type(const dlq_tokenizer *t, int32_t id);
/* Vocabulary lookup of an exact piece; -1 if absent. */
int32_t dlq_tok_find(const dlq_tokenizer *t, const char *piece, size_t len);

/* Decodes ids to text (malloc'd, NUL-terminated) as the reference decoders
 * do: spm maps "▁" to " ", byte tokens <0xAB> to bytes and drops the single
 * leading space of the dummy prefix; bpe maps its byte alphabet back to
 * bytes; control tokens (BOS/EOS) decode to nothing. */
int dlq_tok_decode(const dlq_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *outlen,
                   dlq_err *err);
/* Streaming: the bytes of one token given the previous one. Pass prev = -1
 * until the first visible (non-control) token has been emitted: that token
 * loses the dummy-prefix space, exactly as a whole-text decode does; a BOS in
 * mid-stream does not strip the space of the token after it.
 * Writes at most cap bytes into buf and returns the byte count. */
size_t dlq_tok_decode_token(const dlq_tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap);

#endif
