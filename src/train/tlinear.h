/* A trainable linear layer Y = X W_eff^T (+ bias): one abstraction with
 * several methods behind it. FROZEN: W0 as stored (no gradient); FULL: an
 * fp32 trainable copy of W; LORA: frozen W0 plus scale * B A (PEFT);
 * quantization-aware kinds (DL-QAT, QA-LoRA, full QAT) are added by
 * src/quant. Forward writes y (row stride out); backward ACCUMULATES dx
 * (if non-NULL) and the parameter gradients. */
#ifndef DLQ_TRAIN_TLINEAR_H
#define DLQ_TRAIN_TLINEAR_H

#include <stdint.h>

#include "model/model.h"

typedef enum dlq_tl_kind {
    DLQ_TL_FROZEN = 0,
    DLQ_TL_FULL = 1,
    DLQ_TL_LORA = 2,
    DLQ_TL_QUANT = 3, /* src/quant: fake-quantized W (dlq_qstate in `q`) */
    DLQ_TL_QALORA = 4, /* src/quant/qalora.c: frozen fake-quantized W + LoRA on group-pooled inputs (A [r, ngroups]) */
} dlq_tl_kind;

struct dlq_qstate;

typedef struct dlq_tlinear {
    dlq_tl_kind kind;
    int64_t in, out;
    dlq_weight w0;        /* frozen base weight (stored dtype) */
    dlq_weight bias0;     /* frozen bias (may be empty) */
    float *w, *gw;        /* FULL: trainable fp32 weight [out, in] and its gradient */
    float *b, *gb;        /* FULL with bias: trainable bias [out] */
    int r;                /* LoRA rank (0 = none) */
    float scale;          /* lora_alpha / r (PEFT) */
    float *A, *gA;        /* [r, in] */
    float *B, *gB;        /* [out, r] */
    struct dlq_qstate *q; /* DLQ_TL_QUANT */
} dlq_tlinear;

/* Workspace shared by all layers (sized for the largest). */
typedef struct dlq_tl_ws {
    float *scratch;  /* dlq_linear_scratch_floats(max in) */
    float *t, *u;    /* [n_max * r_max] LoRA temporaries */
    float *wq, *gq;  /* [max out*in] transient fake-quantized weight and its gradient (quant kinds) */
    float *xp, *dxp; /* [n_max * max ngroups] QA-LoRA group-pooled inputs and their gradient */
    float grad_scale; /* the step's gradient scale (1/accum), for terms added outside the loss (dampening) */
} dlq_tl_ws;

void dlq_tl_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws);
void dlq_tl_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws);

/* Hooks implemented in src/quant (for DLQ_TL_QUANT). */
void dlq_qlinear_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws);
void dlq_qlinear_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws);
void dlq_qalora_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws);
void dlq_qalora_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws);

#endif
