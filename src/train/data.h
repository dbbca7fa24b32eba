/* Training data pipelines: raw text, Stanford-Alpaca instruction JSON and
 * pre-tokenized token files, turned into deterministic, resumable streams of
 * micro-batches (docs/data.md).
 *
 * Every dataset is a list of examples (token sequences x[0..len)) split into
 * a training part (examples [0, n_train)) and a validation part (the last
 * n_val examples, never shuffled). A batch row holds one example:
 *     tokens[j]  = x[j]                         for j < min(len, T), else pad
 *     targets[j] = x[j+1] if loss_start <= j+1 < len and j < T, else -1
 * i.e. the model at position j is trained to predict x[j+1]; -1 = no loss.
 *   text:   windows of T+1 consecutive tokens (len T+1, loss_start 1)
 *   alpaca: BOS+prompt+output+EOS (len <= T, loss_start = prompt length)
 *   tokens: rows of T ids (len T, loss_start 1; the last position has no target)
 *
 * Training order: a permutation of [0, n_train) per epoch (Fisher-Yates with
 * dlq_rng seeded by `seed`); the next epoch reshuffles. Batches take B
 * consecutive items of that stream (a batch may straddle two epochs). The
 * whole stream is a function of (data, T, split, seed); dlq_data_get_pos /
 * dlq_data_set_pos save and restore the exact point in it.
 *
 * Nothing here keeps global state; a dataset is not thread-safe (one reader). */
#ifndef DLQ_TRAIN_DATA_H
#define DLQ_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "tokenizer/tokenizer.h"

/* One micro-batch: B rows of T tokens. */
typedef struct dlq_batch {
    int B, T;
    int32_t *tokens;   /* [B*T] inputs (padding positions hold the dataset's pad id) */
    int32_t *targets;  /* [B*T] next-token targets; -1 = no loss at this position */
    int64_t *example;  /* [B] example index of each row (-1: padding row of a last val batch) */
    int64_t n_targets; /* number of targets != -1 in the batch (loss normaliser) */
} dlq_batch;

int dlq_batch_alloc(dlq_batch *b, int B, int T, dlq_err *err);
void dlq_batch_free(dlq_batch *b);

typedef struct dlq_dataset dlq_dataset;

/* Alpaca prompt templates (Stanford Alpaca's PROMPT_DICT), with {instruction}
 * and {input} substituted literally. */
#define DLQ_ALPACA_PROMPT_INPUT                                                              \
    "Below is an instruction that describes a task, paired with an input that provides "   \
    "further context. Write a response that appropriately completes the request.\n\n"     \
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
#define DLQ_ALPACA_PROMPT_NO_INPUT                                                           \
    "Below is an instruction that describes a task. Write a response that appropriately " \
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
#define DLQ_ALPACA_SOURCE_MAX 384
#define DLQ_ALPACA_TARGET_MAX 128

/* val_fraction (all openers): 0 <= f < 1 holds out the last floor(f*n)
 * examples (at least 1 if f > 0 and n > 1); f >= 1 must be a whole number and
 * holds out that many. At least one training example must remain. */

/* Raw UTF-8 text: the whole file is tokenized once with one BOS at the start
 * (as the perplexity protocol), cut into non-overlapping windows of T+1
 * tokens (window k = ids[k(T+1) .. (k+1)(T+1))); the tail that does not fill
 * a window is dropped. */
int dlq_data_open_text(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                       double val_fraction, uint64_t seed, dlq_err *err);

/* Stanford Alpaca JSON: a list of {"instruction", "input" (optional), "output"}
 * strings; extra keys are ignored. Prompt = the template above (the no-input
 * variant when input is missing or ""). Tokenized as Alpaca's train.py does:
 * full = encode(BOS + prompt + output), source length = len(encode(BOS +
 * prompt)); source = full[0..ns) truncated to source_max tokens, target =
 * full[ns..) + EOS truncated to target_max; example = source + target
 * truncated to T; loss only on the target tokens. source_max / target_max
 * <= 0 select the defaults 384 / 128.
 * Malformed records (not an object; instruction or output missing or not a
 * string; input present but not a string) are, with strict = 0, skipped and
 * reported (dlq_data_n_skipped / dlq_data_skip_msg); with strict = 1 the first
 * one fails the open with DLQ_EFORMAT "PATH: record I: ...". */
int dlq_data_open_alpaca(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                         int source_max, int target_max, double val_fraction, uint64_t seed,
                         int strict, dlq_err *err);

/* Token file (docs/data.md): header "DLQTOK01", u64 n_rows, u32 T, u32 vocab,
 * then n_rows*T little-endian int32 ids, row-major. T = 0 takes the file's;
 * otherwise it must match. A headerless file (raw int32 ids) is accepted when
 * T > 0 and its size is a multiple of 4*T. Ids are validated against the
 * header's vocab and, if tok is given, the tokenizer's (tok may be NULL). */
int dlq_data_open_tokens(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                         double val_fraction, uint64_t seed, dlq_err *err);
/* Reads a whole token file (same checks as dlq_data_open_tokens; T = 0 takes
 * the header's, a headerless file needs T > 0): *ids (malloc'd, caller frees)
 * holds rows*T ids row-major. tok_vocab > 0 bounds the ids when the file has
 * no header and must be >= the header's vocab otherwise. vocab_out may be NULL. */
int dlq_tokens_read(const char *path, int T, uint32_t tok_vocab, int32_t **ids, uint64_t *rows, uint32_t *T_out,
                    uint32_t *vocab_out, dlq_err *err);
/* Writes a token file atomically (PATH.tmp.XXXXXX, fsync, rename). Every id
 * must be in [0, vocab). */
int dlq_tokens_write(const char *path, const int32_t *ids, uint64_t n_rows, uint32_t T,
                     uint32_t vocab, dlq_err *err);

/* Format detection for --data-format auto: "tokens" (magic DLQTOK01, or a
 * .tok / .tokens name), "alpaca" (a .json name, or content starting with '['
 * then '{'), else "text". NULL (and err set) if the file cannot be read. */
const char *dlq_data_detect(const char *path, dlq_err *err);

/* All options in one place, for the CLI. */
typedef struct dlq_data_opts {
    int T;               /* tokens per row */
    double val_fraction; /* see above */
    uint64_t seed;
    int source_max, target_max; /* alpaca; <= 0: defaults */
    int strict;          /* alpaca: reject malformed records instead of skipping */
} dlq_data_opts;
void dlq_data_opts_default(dlq_data_opts *o); /* T 512, val 0.05, seed 0, 384/128, strict 0 */
/* format: "auto" (or NULL), "text", "alpaca", "tokens". */
int dlq_data_open(dlq_dataset **out, const char *path, const char *format,
                  const dlq_tokenizer *tok, const dlq_data_opts *o, dlq_err *err);

/* Next training batch (b->B rows; b->T must equal the dataset's T). */
int dlq_data_next(dlq_dataset *d, dlq_batch *b, dlq_err *err);

/* Validation: batches i = 0 .. dlq_data_val_batches(d, B)-1 in order; rows of
 * the last batch beyond the held-out examples are padding (targets all -1,
 * example -1). Does not touch the training position. */
int64_t dlq_data_val_batches(const dlq_dataset *d, int B);
int dlq_data_val_batch(const dlq_dataset *d, int64_t i, dlq_batch *b, dlq_err *err);

/* Stream position, for checkpoint/resume. rng_state is the generator state at
 * the start of `epoch` (the epoch's permutation is re-derived from it);
 * index = items of that epoch already consumed (< n_train). n_train and
 * fingerprint (FNV-1a over T, the split and the training examples) guard
 * against resuming on different data. */
typedef struct dlq_data_pos {
    uint64_t epoch, index;
    uint64_t rng_state[4];
    uint64_t n_train, fingerprint;
} dlq_data_pos;
void dlq_data_get_pos(const dlq_dataset *d, dlq_data_pos *p);
int dlq_data_set_pos(dlq_dataset *d, const dlq_data_pos *p, dlq_err *err);

int64_t dlq_data_n_train(const dlq_dataset *d); /* windows / examples / rows */
int64_t dlq_data_n_val(const dlq_dataset *d);
int dlq_data_T(const dlq_dataset *d);
const char *dlq_data_format(const dlq_dataset *d); /* "text" | "alpaca" | "tokens" */
int32_t dlq_data_pad_id(const dlq_dataset *d);     /* EOS if the tokenizer has one, else 0 */
/* Example i (0 <= i < n_train + n_val): its token ids, length and loss start.
 * The pointer stays valid until close. Returns NULL if i is out of range. */
const int32_t *dlq_data_example(const dlq_dataset *d, int64_t i, int32_t *len, int32_t *loss_start);
/* Malformed records skipped (alpaca, strict = 0) and the first
 * DLQ_DATA_MAX_SKIP_MSGS messages ("PATH: record I: ..."). */
#define DLQ_DATA_MAX_SKIP_MSGS 8
int64_t dlq_data_n_skipped(const dlq_dataset *d);
const char *dlq_data_skip_msg(const dlq_dataset *d, int i); /* NULL if i out of range */
void dlq_data_close(dlq_dataset *d);

/* ---- internal: used by the format loaders (data_*.c), not part of the API ---- */
enum { DLQ_DATA_TEXT = 1, DLQ_DATA_ALPACA = 2, DLQ_DATA_TOKENS = 3 };
int dlq_data__new(dlq_dataset **out, int kind, int T, dlq_err *err);
/* Takes ownership of ids (malloc'd): examples are ids[k*stride .. +stride). */
void dlq_data__set_strided(dlq_dataset *d, int32_t *ids, int64_t n_examples, int32_t stride);
/* Appends one variable-length example (copied). */
int dlq_data__add(dlq_dataset *d, const int32_t *x, int32_t len, int32_t loss_start, dlq_err *err);
void dlq_data__skip(dlq_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dlq_data__set_pad(dlq_dataset *d, int32_t pad);
/* Splits, shuffles epoch 0; errors name path. */
int dlq_data__finish(dlq_dataset *d, const char *path, double val_fraction, uint64_t seed, dlq_err *err);

#endif
