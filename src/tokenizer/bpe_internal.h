/* Private to bpe.c / hf_json.c: byte-level BPE options that the generic
 * dlq_bpe_setup(t, merges, ..., pre) interface does not carry. Call after
 * dlq_bpe_setup. */
#ifndef DLQ_TOKENIZER_BPE_INTERNAL_H
#define DLQ_TOKENIZER_BPE_INTERNAL_H

#include "tokenizer/tok_internal.h"

/* SMOLLM: every \p{N} code point alone, the GPT-2 regex between them
 * (llama.cpp's "smollm"; HF Sequence[Digits(individual_digits), ByteLevel]). */
enum { DLQ_BPE_PRE_GPT2 = 1, DLQ_BPE_PRE_LLAMA3 = 2, DLQ_BPE_PRE_QWEN2 = 3, DLQ_BPE_PRE_SMOLLM = 4 };

/* Maps a pre-tokenizer name (GGUF tokenizer.ggml.pre or our own "gpt2",
 * "llama3", "qwen2", "smollm") or one of the three known regex strings to DLQ_BPE_PRE_*;
 * 0 if unknown. *ignore_merges (may be NULL) gets llama.cpp's default for
 * that name (1 for llama3 / llama-bpe). */
int dlq_bpe_pre_kind(const char *pre, int *ignore_merges);

/* ignore_merges: a word that is a whole vocab piece is emitted as is (HF
 * BPE "ignore_merges", llama.cpp for Llama 3). add_prefix_space: HF
 * ByteLevel(add_prefix_space=true): " " is prepended to each text segment
 * (between added tokens) that does not start with one. unk: id for bytes
 * missing from the vocabulary (-1: such bytes are dropped, as HF does). */
void dlq_bpe_set_options(dlq_tokenizer *t, int ignore_merges, int add_prefix_space, int32_t unk);
/* HF added-token flags: lstrip / rstrip swallow the whitespace left / right
 * of a match. Returns DLQ_EINVAL if id is not an added (special) token. */
int dlq_bpe_set_added_flags(dlq_tokenizer *t, int32_t id, int lstrip, int rstrip);

/* The pre-tokenizer: end (byte offset) of the word that starts at byte i < n
 * of s[0..n), for pre = DLQ_BPE_PRE_*. Exposed for tests. */
size_t dlq_bpe_split_next(int pre, const unsigned char *s, size_t n, size_t i);

#endif
