/* The training loop shared by `finetune` and `quantize`: micro-batches with
 * gradient accumulation, global-norm clipping, AdamW with a schedule,
 * periodic validation, crash-safe checkpoints every N steps and on
 * SIGINT/SIGTERM, and resume. Deterministic: the same seed, data and thread
 * count give a bit-identical loss curve, also across an interrupt + resume. */
#ifndef DLQ_TRAIN_TRAINER_H
#define DLQ_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "train/data.h"
#include "train/optim.h"
#include "train/tmodel.h"

typedef struct dlq_step_info {
    int64_t step;          /* global step just finished (1-based) */
    int64_t total;         /* last step of this run */
    int64_t first;         /* global step this process started from (for rates / ETA) */
    const char *phase;
    double loss;           /* mean NLL over the step's target tokens */
    double lr, grad_norm;
    double tokens_per_s;   /* over this run so far */
    double elapsed_s;
    double val_loss;       /* NaN unless validated at this step */
} dlq_step_info;

typedef struct dlq_train_cfg {
    const char *phase;     /* name stored in checkpoints and logs */
    int64_t step_begin;    /* global step at which this phase starts (0-based) */
    int64_t step_end;      /* global step at which it ends (exclusive) */
    int accum;             /* micro-batches per step */
    dlq_schedule sched;    /* lr as a function of the step within the phase */
    float clip;            /* max global grad norm; <= 0 off */
    float beta1, beta2, eps;
    int64_t eval_every;    /* 0: only at the end */
    int64_t eval_batches;  /* 0: all validation batches */
    int64_t ckpt_every;    /* 0: only on a stop signal */
    const char *ckpt_dir;  /* NULL: no checkpoints */
    const char *run_meta;  /* JSON object text stored in checkpoints (run configuration) */
    volatile sig_atomic_t *stop; /* set by a signal handler: save and stop at the next step boundary */
    void (*on_step)(void *user, const dlq_step_info *s);
    void *user;
} dlq_train_cfg;

typedef struct dlq_train_state {
    dlq_adamw opt;
    int64_t step;          /* global steps done */
    int64_t tokens;        /* target tokens seen in this process */
    int interrupted;       /* stopped by a signal (checkpoint written) */
    double last_loss, last_val_loss;
} dlq_train_state;

void dlq_train_cfg_default(dlq_train_cfg *c);

/* Runs global steps [max(st->step, step_begin), step_end). On a stop signal
 * saves a checkpoint, sets st->interrupted and returns DLQ_OK. */
int dlq_train_run(dlq_tmodel *tm, dlq_dataset *data, const dlq_train_cfg *cfg, dlq_train_state *st, dlq_err *err);

/* Mean validation NLL over the held-out batches (max_batches 0 = all). */
int dlq_train_validate(dlq_tmodel *tm, dlq_dataset *data, int64_t max_batches, double *loss, dlq_err *err);

/* Checkpoint the full training state (parameters, moments, step, data position). */
int dlq_train_save(const dlq_tmodel *tm, const dlq_dataset *data, const dlq_train_cfg *cfg, const dlq_train_state *st,
                   dlq_err *err);
/* Restore from ckpt_dir (latest, or prev if latest is damaged). DLQ_EIO if none.
 * run_meta (or NULL): the JSON object this run stores as cfg->run_meta; a key
 * the checkpoint's run also has with another value is refused (DLQ_EINVAL),
 * e.g. a checkpoint of a --rotate run resumed without --rotate. */
int dlq_train_resume(dlq_tmodel *tm, dlq_dataset *data, const char *ckpt_dir, const char *run_meta, dlq_train_state *st,
                     char *phase, size_t phase_cap, dlq_err *err);

#endif
