/* AdamW with Hugging Face / PyTorch semantics (bias correction, decoupled
 * weight decay: w -= lr * wd * w before the Adam update), global-norm
 * gradient clipping, and learning-rate schedules. */
#ifndef DLQ_TRAIN_OPTIM_H
#define DLQ_TRAIN_OPTIM_H

#include "train/params.h"

typedef struct dlq_adamw {
    float beta1, beta2, eps;
    int64_t step;       /* number of updates done (bias correction uses step + 1) */
} dlq_adamw;

void dlq_adamw_init(dlq_adamw *o, float beta1, float beta2, float eps);
/* One update of every non-frozen tensor with lr * group.lr_mult. */
void dlq_adamw_step(dlq_adamw *o, dlq_params *p, float lr);

/* Global L2 norm of the non-frozen gradients (double accumulation, fixed order). */
double dlq_grad_norm(const dlq_params *p);
/* Scales gradients so the global norm is at most max_norm (PyTorch's
 * clip_grad_norm_: factor max_norm / (norm + 1e-6) when norm > max_norm).
 * Returns the norm before clipping. max_norm <= 0: no clipping. */
double dlq_clip_grad_norm(dlq_params *p, double max_norm);

typedef enum dlq_sched_kind { DLQ_SCHED_CONSTANT = 0, DLQ_SCHED_LINEAR = 1, DLQ_SCHED_COSINE = 2 } dlq_sched_kind;

typedef struct dlq_schedule {
    dlq_sched_kind kind;
    float lr;           /* peak */
    int64_t warmup;     /* linear warm-up steps from 0 */
    int64_t total;      /* total steps (for linear/cosine decay to min_ratio*lr) */
    float min_ratio;
} dlq_schedule;

/* lr for update number `step` (0-based), as HF's get_*_schedule_with_warmup. */
float dlq_schedule_lr(const dlq_schedule *s, int64_t step);
int dlq_schedule_parse(dlq_schedule *s, const char *name); /* "constant" | "linear" | "cosine" */

#endif
