/* Perplexity by the GPTQ-family protocol (SPEC §6): one token stream,
 * non-overlapping windows of ctx tokens (the tail that does not fill a
 * window is dropped), each window's mean next-token NLL over its ctx-1
 * predictions, ppl = exp(mean over windows). */
#ifndef DLQ_EVAL_PPL_H
#define DLQ_EVAL_PPL_H

#include <stdint.h>

#include "model/model.h"

typedef struct dlq_ppl_result {
    double nll;        /* mean over windows of the window mean NLL */
    double ppl;        /* exp(nll) */
    int64_t tokens;    /* tokens in the evaluated windows (windows * ctx) */
    int64_t windows;
    int ctx;
    double seconds;    /* forward + loss time */
} dlq_ppl_result;

/* progress(done, total, elapsed_s, user) is called after each batch (may be NULL). */
typedef void (*dlq_progress_fn)(int64_t done, int64_t total, double elapsed, void *user);

int dlq_ppl_eval(const dlq_model *m, const int32_t *tokens, int64_t n, int ctx, int batch, int64_t max_windows,
                 dlq_progress_fn progress, void *user, dlq_ppl_result *res, dlq_err *err);

/* Perplexity of a token file (docs/data.md): every row of T ids is one
 * window (the rows of `dlqat sample` start with BOS), mean NLL of its T-1
 * predictions, ppl = exp(mean over rows). Ids are checked against the model's
 * vocabulary; max_rows > 0 evaluates only the first rows. */
int dlq_ppl_eval_tokens(const dlq_model *m, const char *path, int batch, int64_t max_rows, dlq_progress_fn progress,
                        void *user, dlq_ppl_result *res, dlq_err *err);

/* Perplexity by llama.cpp's protocol (tools/perplexity, `llama-perplexity -c ctx`):
 * chunks of ctx tokens from the start of the stream (at most max_chunks when
 * > 0; the stream must hold two chunks, as llama.cpp demands), the first
 * token of each chunk replaced by bos when bos >= 0 (llama.cpp does so when
 * the vocabulary adds a BOS), and only the second half scored: positions
 * ctx/2 .. ctx-2 predicting the next token. ppl = exp(mean NLL over every
 * scored token); res->tokens counts the scored tokens, res->windows the chunks. */
int dlq_ppl_eval_llamacpp(const dlq_model *m, const int32_t *tokens, int64_t n, int ctx, int batch, int64_t max_chunks,
                          int32_t bos, dlq_progress_fn progress, void *user, dlq_ppl_result *res, dlq_err *err);

struct dlq_dataset;
/* Mean NLL over the target tokens (targets >= 0) of a dataset's validation
 * rows (masked: Alpaca prompts / padding do not count), with the inference
 * forward. max_batches 0 = all. *ntok receives the number of targets. */
int dlq_eval_val_nll(const dlq_model *m, const struct dlq_dataset *d, int B, int64_t max_batches, double *nll,
                     int64_t *ntok, dlq_err *err);

#endif
