/* Trainable parameters: a registry of named fp32 tensors whose values,
 * gradients and AdamW moments each live in ONE allocation (llm.c style), so
 * the optimizer, gradient clipping and checkpoints are flat loops. Tensors
 * are registered first (sizes only), then dlq_params_alloc() hands out the
 * pointers. Each tensor belongs to a parameter group (its own learning-rate
 * multiplier and weight-decay flag). */
#ifndef DLQ_TRAIN_PARAMS_H
#define DLQ_TRAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define DLQ_MAX_PGROUPS 12

typedef struct dlq_ptensor {
    char name[160];
    size_t n;       /* elements */
    size_t off;     /* offset into the flat arrays */
    int group;      /* parameter group index */
    int frozen;     /* registered but not trained in this phase: no gradient step */
    float **bind_w, **bind_g; /* where to store the data / grad pointers after alloc (may be NULL) */
} dlq_ptensor;

typedef struct dlq_pgroup {
    char name[32];
    float lr_mult;      /* lr = schedule(step) * lr_mult */
    float weight_decay;
} dlq_pgroup;

typedef struct dlq_params {
    dlq_ptensor *t;
    int n, cap;
    dlq_pgroup groups[DLQ_MAX_PGROUPS];
    int n_groups;
    size_t total;       /* elements */
    float *w, *g, *m, *v; /* [total] each; m, v allocated by dlq_params_alloc_optim */
} dlq_params;

void dlq_params_init(dlq_params *p);
void dlq_params_free(dlq_params *p);
int dlq_params_add_group(dlq_params *p, const char *name, float lr_mult, float weight_decay);
/* Registers a tensor; after alloc, *bind_w / *bind_g (if non-NULL) receive its pointers. */
int dlq_params_add(dlq_params *p, const char *name, size_t n, int group, float **bind_w, float **bind_g, dlq_err *err);
int dlq_params_alloc(dlq_params *p, dlq_err *err);       /* values + gradients, zeroed */
int dlq_params_alloc_optim(dlq_params *p, dlq_err *err); /* AdamW moments, zeroed */
const dlq_ptensor *dlq_params_find(const dlq_params *p, const char *name);
size_t dlq_params_trainable(const dlq_params *p);        /* elements not frozen */
void dlq_params_zero_grad(dlq_params *p);

#endif
