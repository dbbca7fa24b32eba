/* Training metrics log: JSON Lines, one object per step, e.g.
 *   {"step": 12, "loss": 3.2, "lr": 0.0002, "tokens_per_s": 5120.5, "elapsed_s": 61.2}
 * Each line is written with one write and flushed, so a crash loses at most
 * the line being written (a partial last line is dropped on resume).
 *
 *   dlq_metrics *m;
 *   dlq_metrics_open(&m, "run/metrics.jsonl", resume_step, &err);  // -1: new log
 *   dlq_metrics_begin(m);
 *   dlq_metrics_int(m, "step", step);
 *   dlq_metrics_num(m, "loss", loss);
 *   dlq_metrics_str(m, "phase", "train");
 *   dlq_metrics_end(m, &err);                                      // writes the line
 *
 * Resuming (resume_step >= 0): the existing file is rewritten (atomically:
 * tmp + rename) keeping, in order, only the complete, parseable lines whose
 * "step" is <= resume_step (lines without a numeric "step" are kept), then
 * opened for appending. Steps logged after the checkpoint that the run resumes
 * from are therefore dropped and logged again: no duplicate steps. */
#ifndef DLQ_TRAIN_METRICS_H
#define DLQ_TRAIN_METRICS_H

#include <stdint.h>

#include "core/err.h"

typedef struct dlq_metrics dlq_metrics;

/* resume_step < 0: create / truncate path. >= 0: keep lines with step <=
 * resume_step (see above) and append. *dropped (may be NULL) gets the number
 * of lines removed. */
int dlq_metrics_open(dlq_metrics **out, const char *path, int64_t resume_step, int64_t *dropped, dlq_err *err);
/* Starts a new record (discarding an unfinished one). */
void dlq_metrics_begin(dlq_metrics *m);
/* Adds key/value to the record (a key set twice keeps the last value; keys
 * keep insertion order). Non-finite numbers are written as null. */
void dlq_metrics_int(dlq_metrics *m, const char *key, int64_t v);
void dlq_metrics_num(dlq_metrics *m, const char *key, double v);
void dlq_metrics_str(dlq_metrics *m, const char *key, const char *v);
/* Writes the record as one line and flushes it. */
int dlq_metrics_end(dlq_metrics *m, dlq_err *err);
/* The usual per-step line: step, loss, lr, tokens_per_s, elapsed_s. */
int dlq_metrics_step(dlq_metrics *m, int64_t step, double loss, double lr, double tokens_per_s, double elapsed_s,
                     dlq_err *err);
/* Closes the file (NULL is fine). */
int dlq_metrics_close(dlq_metrics *m, dlq_err *err);

#endif
