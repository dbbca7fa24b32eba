/* The training view of a model: which weights are trainable and how (full
 * fine-tuning, LoRA, or a quantization-aware method), the parameter registry,
 * and the activation memory planned up front for a fixed micro-batch (B, T).
 * One forward/backward over the whole model (llm.c style), with optional
 * per-layer activation recomputation. */
#ifndef DLQ_TRAIN_TMODEL_H
#define DLQ_TRAIN_TMODEL_H

#include <stdint.h>

#include "core/rng.h"
#include "model/model.h"
#include "train/params.h"
#include "train/tlinear.h"
#include "quant/qlinear.h"

/* the seven projections of a layer, in a fixed order */
enum { DLQ_P_Q, DLQ_P_K, DLQ_P_V, DLQ_P_O, DLQ_P_GATE, DLQ_P_UP, DLQ_P_DOWN, DLQ_N_PROJ };
extern const char *const dlq_proj_names[DLQ_N_PROJ];   /* "q_proj", ... "down_proj" */
extern const char *const dlq_proj_module[DLQ_N_PROJ];  /* "self_attn" or "mlp" */
/* Parses "q,k,v,o,gate,up,down" (or full names "q_proj", ...) into a bitmask. */
int dlq_parse_targets(const char *s, unsigned *mask, dlq_err *err);

typedef enum dlq_train_mode { DLQ_MODE_FULL = 0, DLQ_MODE_LORA = 1, DLQ_MODE_QUANT = 2 } dlq_train_mode;
typedef enum dlq_lora_init { DLQ_LORA_KAIMING = 0, DLQ_LORA_GAUSSIAN = 1 } dlq_lora_init;

/* Training objective: next-token cross-entropy on the data, KL divergence to
 * the frozen base model's distribution (LLM-QAT distillation), or their sum.
 * Validation (dlq_tmodel_eval) always reports cross-entropy. */
typedef enum dlq_loss_kind { DLQ_LOSS_CE = 0, DLQ_LOSS_KL = 1, DLQ_LOSS_CE_KL = 2 } dlq_loss_kind;
int dlq_loss_parse(const char *s, dlq_loss_kind *k);   /* "ce" | "kl" | "ce+kl"; 0 on success */
const char *dlq_loss_name(dlq_loss_kind k);

typedef struct dlq_tmodel_opts {
    dlq_train_mode mode;
    int lora_r;
    float lora_alpha;
    unsigned targets;      /* bitmask over DLQ_P_* (LoRA / quant) */
    dlq_lora_init lora_init;
    uint64_t seed;
    int B, T;              /* micro-batch */
    int recompute;         /* keep only each layer's input; recompute the rest in backward */
    float weight_decay;    /* AdamW decoupled weight decay for 2-D weights (norms: none) */
    /* DLQ_MODE_QUANT (DL-QAT): every targeted projection is fake-quantized
     * with learnable per-group s, b, m and (if lora_r > 0) LoRA A, B */
    dlq_qspec qspec;
    int clip_search;       /* RTN init with the least-squares clipping search */
    int lsq;               /* LSQ gradient scale for s */
    float dampen;          /* oscillation dampening weight (dlq_fq_dampen; 0 = off) */
    int full_qat;          /* LLM-QAT-style full QAT: every targeted W trainable (fp32 copy) through the fake-quantizer */
    int qalora;            /* QA-LoRA: LoRA on group-pooled inputs over the frozen quantized base (src/quant/qalora.h) */
    dlq_loss_kind loss;    /* training objective (teacher = the frozen base model) */
    int train_norms;       /* quant mode: the RMSNorm weights are trainable too (DLQ_TRAIN_NORM; full mode: always) */
    int train_emb;         /* quant mode: the embedding and output head (fp32 copies) too (DLQ_TRAIN_EMB) */
} dlq_tmodel_opts;

/* Trainable sets for the quantization phases (dlq_tmodel_set_trainable). */
enum { DLQ_TRAIN_SB = 1, DLQ_TRAIN_M = 2, DLQ_TRAIN_AB = 4, DLQ_TRAIN_W = 8, DLQ_TRAIN_NORM = 16, DLQ_TRAIN_EMB = 32 };

typedef struct dlq_tlayer {
    dlq_tlinear p[DLQ_N_PROJ];
    float *attn_norm, *g_attn_norm, *ffn_norm, *g_ffn_norm; /* fp32; grads NULL when frozen */
} dlq_tlayer;

typedef struct dlq_acts {     /* one layer's saved activations */
    float *x_in, *xn1, *q, *k, *v, *probs, *att, *x_mid, *xn2, *gate, *up, *hmid;
} dlq_acts;

typedef struct dlq_tmodel {
    const dlq_model *base;
    dlq_config cfg;
    dlq_tmodel_opts opt;
    dlq_params params;
    int group_main, group_nodecay, group_frozen; /* parameter group ids: 2-D weights, norms, frozen */
    int group_sb, group_m, group_ab;            /* quant mode: s/b, m, LoRA A/B (own lr multipliers) */
    int group_w;                                /* quant mode, full QAT: the trainable weights */
    int group_norm;                             /* quant mode with train_norms: the RMSNorm weights */
    int group_emb;                              /* quant mode with train_emb: embedding and head */
    dlq_qstate *qs;                             /* quant mode: [n_layers * DLQ_N_PROJ] */
    dlq_tlayer *layers;
    float *emb, *g_emb;             /* FULL: trainable embedding copy; else NULL (base view used) */
    float *out_norm, *g_out_norm;
    dlq_tlinear head;
    /* activations and work buffers, sized for (B, T) */
    dlq_acts *acts;                 /* n_layers sets, or 1 set when recompute */
    float *saved_x_in;              /* recompute: [n_layers][B*T*D] */
    float *x, *dx, *xnf, *tmp, *dxn, *dq, *dk, *dv, *datt, *dh1, *dh2, *logits;
    int32_t *pos;
    float *attn_scratch;
    dlq_tl_ws ws;
    int head_chunk;                 /* rows of logits computed at once */
    /* distillation (loss != CE): the base model's inference forward, one
     * sequence at a time (its KV cache holds one sequence), final hidden
     * states kept for the chunked teacher head */
    struct dlq_state *teacher;
    float *t_hidden, *t_norm, *t_logits, *t_out_norm;
    void *mem;                      /* owner of the activation buffers */
    size_t act_bytes;
} dlq_tmodel;

int dlq_tmodel_create(dlq_tmodel **out, const dlq_model *base, const dlq_tmodel_opts *opt, dlq_err *err);
void dlq_tmodel_destroy(dlq_tmodel *tm);

/* Forward + backward on one micro-batch: tokens/targets [B*T] (targets -1 =
 * ignored). Gradients ACCUMULATE into tm->params.g, scaled by grad_scale /
 * (number of non-ignored targets) — grad_scale = 1/accumulation steps.
 * *loss_sum and *n_valid receive the summed NLL and the target count. */
int dlq_tmodel_step(dlq_tmodel *tm, const int32_t *tokens, const int32_t *targets, float grad_scale,
                    double *loss_sum, int64_t *n_valid, dlq_err *err);
/* Forward only (no gradients): summed NLL and count over non-ignored targets. */
int dlq_tmodel_eval(dlq_tmodel *tm, const int32_t *tokens, const int32_t *targets, double *loss_sum, int64_t *n_valid,
                    dlq_err *err);

/* Called after every optimizer step: keeps constraints (integer zero points). */
void dlq_tmodel_after_step(dlq_tmodel *tm);
/* Quant mode: which of s/b, m, A/B are trained from now on (others frozen;
 * with a symmetric quantizer the offsets b stay frozen at 0). */
void dlq_tmodel_set_trainable(dlq_tmodel *tm, unsigned mask);
/* Parameter count of the tensors that mask makes trainable. */
size_t dlq_tmodel_count(const dlq_tmodel *tm, unsigned mask);

/* The effective fp32 weight of projection p of layer l (FULL: the trained
 * copy; LORA: W0 + scale B A; FROZEN: W0) written into out [out*in]. */
void dlq_tmodel_effective_weight(const dlq_tmodel *tm, int l, int p, float *out);

/* Layer-by-layer forward for calibration (GPTQ): x [B*T, dim] holds B*T
 * positions of B sequences of the micro-batch's T; dlq_tmodel_embed writes the
 * token embeddings, dlq_tmodel_layer_forward runs layer l from x_in into x_out
 * (may alias) leaving the layer's activations (norm outputs, attention output,
 * MLP hidden) in *dlq_tmodel_layer_acts(tm, l). */
void dlq_tmodel_embed(const dlq_tmodel *tm, const int32_t *tokens, float *x);
int dlq_tmodel_layer_forward(dlq_tmodel *tm, int l, const float *x_in, float *x_out, dlq_err *err);
const dlq_acts *dlq_tmodel_layer_acts(const dlq_tmodel *tm, int l);

#endif
