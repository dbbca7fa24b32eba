/* Data-free training data (LLM-QAT): N sequences of T token ids sampled from
 * a model, each starting with BOS, decoded in batches with a KV cache. */
#ifndef DLQ_MODEL_SAMPLE_ROWS_H
#define DLQ_MODEL_SAMPLE_ROWS_H

#include <stdint.h>

#include "eval/ppl.h" /* dlq_progress_fn */
#include "model/model.h"

typedef struct dlq_sample_opts {
    int64_t n;        /* rows */
    int T;            /* ids per row, BOS included (T-1 sampled) */
    float temp;       /* 0 = greedy (every row then equals the first) */
    float top_p;      /* 1 = off */
    uint64_t seed;
    int batch;        /* rows decoded together */
    int32_t bos;      /* first id of every row */
} dlq_sample_opts;

/* out: [n*T] ids, row-major. Row r uses its own generator, seeded by
 * (seed, r), so the rows do not depend on which batch a row falls in except
 * through floating-point differences of batched matrix products. progress is
 * called after each batch with rows done (may be NULL). */
int dlq_sample_rows(const dlq_model *m, const dlq_sample_opts *o, int32_t *out, dlq_progress_fn progress, void *user,
                    dlq_err *err);

#endif
