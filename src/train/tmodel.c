#include "train/tmodel.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/linear.h"
#include "model/forward.h"
#include "nn/nn.h"

const char *const dlq_proj_names[DLQ_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const char *const dlq_proj_module[DLQ_N_PROJ] = {"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

int dlq_parse_targets(const char *s, unsigned *mask, dlq_err *err) {
    static const char *shortn[DLQ_N_PROJ] = {"q", "k", "v", "o", "gate", "up", "down"};
    *mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int i = 0; i < DLQ_N_PROJ; i++)
            if (!strcmp(tok, shortn[i]) || !strcmp(tok, dlq_proj_names[i])) found = i;
        if (!strcmp(tok, "all")) { *mask = (1u << DLQ_N_PROJ) - 1; continue; }
        if (found < 0)
            return dlq_errf(err, DLQ_EINVAL, "unknown target module '%s' (expected q,k,v,o,gate,up,down)", tok);
        *mask |= 1u << found;
    }
    if (!*mask) return dlq_errf(err, DLQ_EINVAL, "no target modules given");
    return DLQ_OK;
}

static const dlq_weight *base_proj(const dlq_layer *L, int p) {
    switch (p) {
    case DLQ_P_Q: return &L->wq;
    case DLQ_P_K: return &L->wk;
    case DLQ_P_V: return &L->wv;
    case DLQ_P_O: return &L->wo;
    case DLQ_P_GATE: return &L->w_gate;
    case DLQ_P_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

static const dlq_weight *base_bias(const dlq_layer *L, int p) {
    return p == DLQ_P_Q ? &L->bq : p == DLQ_P_K ? &L->bk : p == DLQ_P_V ? &L->bv : NULL;
}

int dlq_loss_parse(const char *s, dlq_loss_kind *k) {
    if (!strcmp(s, "ce")) *k = DLQ_LOSS_CE;
    else if (!strcmp(s, "kl")) *k = DLQ_LOSS_KL;
    else if (!strcmp(s, "ce+kl") || !strcmp(s, "kl+ce")) *k = DLQ_LOSS_CE_KL;
    else return -1;
    return 0;
}

const char *dlq_loss_name(dlq_loss_kind k) { return k == DLQ_LOSS_KL ? "kl" : k == DLQ_LOSS_CE_KL ? "ce+kl" : "ce"; }

void dlq_tmodel_destroy(dlq_tmodel *tm) {
    if (!tm) return;
    dlq_state_destroy(tm->teacher);
    dlq_params_free(&tm->params);
    free(tm->layers);
    free(tm->qs);
    free(tm->pos);
    free(tm->acts);
    free(tm->mem);
    free(tm);
}

/* ---- construction ---- */

static int register_params(dlq_tmodel *tm, dlq_err *err) {
    const dlq_config *c = &tm->cfg;
    dlq_params *P = &tm->params;
    int full = tm->opt.mode == DLQ_MODE_FULL, rc;
    char n[200];
    int gm = tm->group_main, gf = tm->group_frozen, gn = tm->group_nodecay;
    int64_t D = c->dim, V = c->vocab_size;
    /* norms: trained (no decay) in full mode, a group of their own with --train-norms, else frozen */
    int tn = full || (tm->opt.mode == DLQ_MODE_QUANT && tm->opt.train_norms);
    int gnorm = full ? gn : tn ? tm->group_norm : gf;
    /* embedding and head: trained in full mode, and in quant mode with train_emb (own group, no decay) */
    int te = full || (tm->opt.mode == DLQ_MODE_QUANT && tm->opt.train_emb), gemb = full ? gm : tm->group_emb;
    if (te) {
        if ((rc = dlq_params_add(P, "model.embed_tokens.weight", (size_t)(V * D), gemb, &tm->emb, &tm->g_emb, err))) return rc;
    }
    for (int l = 0; l < c->n_layers; l++) {
        dlq_tlayer *L = &tm->layers[l];
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = dlq_params_add(P, n, (size_t)D, gnorm, &L->attn_norm, tn ? &L->g_attn_norm : NULL, err))) return rc;
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = dlq_params_add(P, n, (size_t)D, gnorm, &L->ffn_norm, tn ? &L->g_ffn_norm : NULL, err))) return rc;
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &L->p[p];
            if (full) {
                snprintf(n, sizeof n, "model.layers.%d.%s.%s.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
                if ((rc = dlq_params_add(P, n, (size_t)(T->out * T->in), gm, &T->w, &T->gw, err))) return rc;
                if (T->bias0.data) {
                    snprintf(n, sizeof n, "model.layers.%d.%s.%s.bias", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, (size_t)T->out, gm, &T->b, &T->gb, err))) return rc;
                }
            } else {
                int gab = tm->opt.mode == DLQ_MODE_QUANT ? tm->group_ab : gm;
                if (T->kind == DLQ_TL_QUANT && tm->opt.full_qat) {
                    snprintf(n, sizeof n, "model.layers.%d.%s.%s.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, (size_t)(T->out * T->in), tm->group_w, &T->w, &T->gw, err))) return rc;
                }
                if (T->kind == DLQ_TL_QUANT || T->kind == DLQ_TL_QALORA) {
                    dlq_qstate *Q = T->q;
                    size_t ng = (size_t)(T->out * Q->ngroups);
                    snprintf(n, sizeof n, "model.layers.%d.%s.%s.qscale", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, ng, tm->group_sb, &Q->s, &Q->gs, err))) return rc;
                    snprintf(n, sizeof n, "model.layers.%d.%s.%s.qoffset", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, ng, tm->group_sb, &Q->b, &Q->gb, err))) return rc;
                    snprintf(n, sizeof n, "model.layers.%d.%s.%s.qmag", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, ng, tm->group_m, &Q->m, &Q->gm, err))) return rc;
                }
                if (T->r > 0) {
                    snprintf(n, sizeof n, "base_model.model.model.layers.%d.%s.%s.lora_A.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
                    size_t na = (size_t)(T->r * (T->kind == DLQ_TL_QALORA ? T->q->ngroups : T->in));
                    if ((rc = dlq_params_add(P, n, na, gab, &T->A, &T->gA, err))) return rc;
                    snprintf(n, sizeof n, "base_model.model.model.layers.%d.%s.%s.lora_B.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
                    if ((rc = dlq_params_add(P, n, (size_t)(T->out * T->r), gab, &T->B, &T->gB, err))) return rc;
                }
            }
        }
    }
    if ((rc = dlq_params_add(P, "model.norm.weight", (size_t)D, gnorm, &tm->out_norm, tn ? &tm->g_out_norm : NULL, err)))
        return rc;
    if (te && !c->tied) {
        if ((rc = dlq_params_add(P, "lm_head.weight", (size_t)(V * D), gemb, &tm->head.w, &tm->head.gw, err))) return rc;
    }
    return DLQ_OK;
}

static void copy_weight(float *dst, const dlq_weight *w) {
    dlq_to_f32(dst, w->data, w->dtype, (size_t)(w->rows * w->cols));
}

static void init_params(dlq_tmodel *tm) {
    const dlq_model *m = tm->base;
    const dlq_config *c = &tm->cfg;
    int full = tm->opt.mode == DLQ_MODE_FULL, te = tm->emb != NULL; /* embedding and head trained */
    dlq_rng rng;
    dlq_rng_seed(&rng, tm->opt.seed);
    if (te) copy_weight(tm->emb, &m->tok_emb);
    copy_weight(tm->out_norm, &m->out_norm);
    for (int l = 0; l < c->n_layers; l++) {
        dlq_tlayer *L = &tm->layers[l];
        copy_weight(L->attn_norm, &m->layers[l].attn_norm);
        copy_weight(L->ffn_norm, &m->layers[l].ffn_norm);
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &L->p[p];
            if (full) {
                copy_weight(T->w, &T->w0);
                if (T->b) copy_weight(T->b, &T->bias0);
            } else {
                if (T->w) copy_weight(T->w, &T->w0); /* full QAT starts from W0 */
                if (T->kind == DLQ_TL_QUANT || T->kind == DLQ_TL_QALORA) {
                    float *w = malloc((size_t)(T->out * T->in) * sizeof(float));
                    if (w) {
                        copy_weight(w, &T->w0);
                        dlq_quant_init_rtn(w, T->out, T->in, &T->q->spec, tm->opt.clip_search, T->q->s, T->q->b, T->q->m);
                        free(w);
                    }
                }
                if (T->r <= 0) continue;
                /* PEFT: A Kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), or N(0, 1/r); B = 0.
                 * QA-LoRA: A's fan-in is the number of groups */
                int64_t fan_in = T->kind == DLQ_TL_QALORA ? T->q->ngroups : T->in;
                size_t na = (size_t)(T->r * fan_in);
                if (tm->opt.lora_init == DLQ_LORA_GAUSSIAN)
                    for (size_t i = 0; i < na; i++) T->A[i] = (float)(dlq_rng_normal(&rng) / T->r);
                else {
                    double bound = 1.0 / sqrt((double)fan_in);
                    for (size_t i = 0; i < na; i++) T->A[i] = (float)((2 * dlq_rng_f64(&rng) - 1) * bound);
                }
                memset(T->B, 0, (size_t)(T->out * T->r) * sizeof(float));
            }
        }
    }
    (void)full;
    if (te && c->tied) { tm->head.w = tm->emb; tm->head.gw = tm->g_emb; }
    else if (te) copy_weight(tm->head.w, &m->lm_head);
    if (te) tm->head.kind = DLQ_TL_FULL;
}

int dlq_tmodel_create(dlq_tmodel **out, const dlq_model *base, const dlq_tmodel_opts *opt, dlq_err *err) {
    *out = NULL;
    const dlq_config *c = &base->cfg;
    if (opt->B <= 0 || opt->T <= 0) return dlq_errf(err, DLQ_EINVAL, "batch %d x seq %d is invalid", opt->B, opt->T);
    if (opt->T > c->max_seq)
        return dlq_errf(err, DLQ_EINVAL, "sequence length %d exceeds the model's context %d", opt->T, c->max_seq);
    if (opt->mode != DLQ_MODE_FULL && opt->lora_r < 0) return dlq_errf(err, DLQ_EINVAL, "LoRA rank %d is invalid", opt->lora_r);
    int packed = base->tok_emb.dtype == DLQ_QPACK;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) packed |= base_proj(&base->layers[l], p)->dtype == DLQ_QPACK;
    if (packed)
        return dlq_errf(err, DLQ_EUNSUP, "%s is already quantized (.dlq): training starts from a full-precision model "
                        "(Hugging Face folder, llama2.c .bin or GGUF)", base->path);
    dlq_tmodel *tm = calloc(1, sizeof *tm);
    if (!tm) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    tm->base = base;
    tm->cfg = *c;
    tm->opt = *opt;
    dlq_params_init(&tm->params);
    tm->group_main = dlq_params_add_group(&tm->params, "main", 1.0f, opt->weight_decay);
    tm->group_nodecay = dlq_params_add_group(&tm->params, "no_decay", 1.0f, 0.0f);
    tm->group_frozen = dlq_params_add_group(&tm->params, "frozen", 0.0f, 0.0f);
    tm->group_sb = dlq_params_add_group(&tm->params, "scale_offset", 1.0f, 0.0f);
    tm->group_m = dlq_params_add_group(&tm->params, "magnitude", 1.0f, 0.0f);
    tm->group_ab = dlq_params_add_group(&tm->params, "lora", 1.0f, opt->weight_decay);
    tm->group_w = dlq_params_add_group(&tm->params, "qat_weight", 1.0f, opt->weight_decay);
    tm->group_norm = dlq_params_add_group(&tm->params, "norms", 1.0f, 0.0f);
    tm->group_emb = dlq_params_add_group(&tm->params, "embeddings", 1.0f, 0.0f);
    if (opt->mode == DLQ_MODE_QUANT && opt->full_qat && opt->qalora) {
        dlq_tmodel_destroy(tm);
        return dlq_errf(err, DLQ_EINVAL, "full QAT and QA-LoRA are different methods: choose one");
    }
    if (opt->mode == DLQ_MODE_QUANT) {
        int rc0 = dlq_qspec_validate(&opt->qspec, err);
        if (!rc0 && !(tm->qs = calloc((size_t)c->n_layers * DLQ_N_PROJ, sizeof *tm->qs))) rc0 = dlq_errf(err, DLQ_ENOMEM, "out of memory");
        if (rc0) { dlq_tmodel_destroy(tm); return rc0; }
    }
    tm->layers = calloc((size_t)c->n_layers, sizeof *tm->layers);
    if (!tm->layers) { dlq_tmodel_destroy(tm); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    int r_max = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            const dlq_weight *w = base_proj(&base->layers[l], p), *b = base_bias(&base->layers[l], p);
            T->w0 = *w;
            if (b && b->data) T->bias0 = *b;
            T->in = w->cols;
            T->out = w->rows;
            T->kind = opt->mode == DLQ_MODE_FULL ? DLQ_TL_FULL : DLQ_TL_FROZEN;
            if (opt->mode == DLQ_MODE_LORA && (opt->targets >> p & 1u) && opt->lora_r > 0) {
                T->kind = DLQ_TL_LORA;
                T->r = opt->lora_r;
                T->scale = opt->lora_alpha / (float)opt->lora_r;
                if (T->r > r_max) r_max = T->r;
            }
            if (opt->mode == DLQ_MODE_QUANT && (opt->targets >> p & 1u)) {
                T->kind = opt->qalora ? DLQ_TL_QALORA : DLQ_TL_QUANT;
                dlq_qstate *Q = &tm->qs[l * DLQ_N_PROJ + p];
                Q->spec = opt->qspec;
                Q->ngroups = dlq_qgroups(T->in, opt->qspec.group);
                Q->lsq = opt->lsq;
                Q->dampen = opt->dampen;
                T->q = Q;
                if (opt->lora_r > 0) {
                    T->r = opt->lora_r;
                    T->scale = opt->lora_alpha / (float)opt->lora_r;
                    if (T->r > r_max) r_max = T->r;
                }
            }
        }
    tm->head.kind = DLQ_TL_FROZEN;
    tm->head.w0 = base->lm_head;
    tm->head.in = c->dim;
    tm->head.out = c->vocab_size;
    int rc = register_params(tm, err);
    if (!rc) rc = dlq_params_alloc(&tm->params, err);
    if (rc) { dlq_tmodel_destroy(tm); return rc; }
    for (int i = 0; i < tm->params.n; i++)
        if (tm->params.t[i].group == tm->group_frozen) tm->params.t[i].frozen = 1;
    init_params(tm);

    /* activation plan */
    int64_t B = opt->B, T = opt->T, BT = B * T, D = c->dim, H = c->hidden_dim;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int nsets = opt->recompute ? 1 : c->n_layers;
    tm->head_chunk = (int)(BT < 256 ? BT : 256);
    int64_t max_in = H > D ? H : D;
    if (qd > max_in) max_in = qd;
    int64_t max_w = 0, max_ng = 1;
    for (int p = 0; p < DLQ_N_PROJ; p++) {
        int64_t s = tm->layers[0].p[p].in * tm->layers[0].p[p].out;
        if (s > max_w) max_w = s;
        if (tm->layers[0].p[p].q && tm->layers[0].p[p].q->ngroups > max_ng) max_ng = tm->layers[0].p[p].q->ngroups;
    }
    /* two passes over the same layout: count, then hand out pointers */
    size_t total = 0;
    float *p = NULL;
    tm->acts = calloc((size_t)nsets, sizeof *tm->acts);
    tm->pos = malloc((size_t)BT * sizeof(int32_t));
    if (!tm->acts || !tm->pos) { dlq_tmodel_destroy(tm); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    int64_t r_alloc = r_max ? r_max : 1;
    for (int pass = 0; pass < 2; pass++) {
#define TAKE(ptr, cnt) do { (ptr) = p; if (pass) p += (cnt) + 16; else total += (size_t)(cnt) + 16; } while (0)
        for (int s = 0; s < nsets; s++) {
            dlq_acts *a = &tm->acts[s];
            TAKE(a->x_in, BT * D); TAKE(a->xn1, BT * D); TAKE(a->x_mid, BT * D); TAKE(a->xn2, BT * D);
            TAKE(a->q, BT * qd); TAKE(a->att, BT * qd); TAKE(a->k, BT * kvd); TAKE(a->v, BT * kvd);
            TAKE(a->probs, B * c->n_heads * T * T);
            TAKE(a->gate, BT * H); TAKE(a->up, BT * H); TAKE(a->hmid, BT * H);
        }
        if (opt->recompute) TAKE(tm->saved_x_in, (int64_t)c->n_layers * BT * D);
        TAKE(tm->x, BT * D); TAKE(tm->dx, BT * D); TAKE(tm->xnf, BT * D); TAKE(tm->tmp, BT * D); TAKE(tm->dxn, BT * D);
        TAKE(tm->dq, BT * qd); TAKE(tm->datt, BT * qd); TAKE(tm->dk, BT * kvd); TAKE(tm->dv, BT * kvd);
        TAKE(tm->dh1, BT * H); TAKE(tm->dh2, BT * H);
        TAKE(tm->logits, (int64_t)tm->head_chunk * c->vocab_size);
        if (opt->loss != DLQ_LOSS_CE) {
            TAKE(tm->t_hidden, BT * D); TAKE(tm->t_norm, (int64_t)tm->head_chunk * D);
            TAKE(tm->t_logits, (int64_t)tm->head_chunk * c->vocab_size); TAKE(tm->t_out_norm, D);
        }
        TAKE(tm->attn_scratch, (int64_t)dlq_attention_backward_scratch((int)T, c->n_heads));
        TAKE(tm->ws.scratch, (int64_t)dlq_linear_scratch_floats(max_in));
        TAKE(tm->ws.t, BT * r_alloc); TAKE(tm->ws.u, BT * r_alloc);
        if (opt->mode == DLQ_MODE_QUANT) { TAKE(tm->ws.wq, max_w); TAKE(tm->ws.gq, max_w); }
        if (opt->mode == DLQ_MODE_QUANT && opt->qalora) { TAKE(tm->ws.xp, BT * max_ng); TAKE(tm->ws.dxp, BT * max_ng); }
#undef TAKE
        if (pass == 0) {
            tm->mem = malloc(total * sizeof(float));
            if (!tm->mem) {
                dlq_tmodel_destroy(tm);
                return dlq_errf(err, DLQ_ENOMEM, "out of memory for activations (%.1f MiB for batch %lld x %lld)",
                                total * 4.0 / 1048576, (long long)B, (long long)T);
            }
            tm->act_bytes = total * sizeof(float);
            p = tm->mem;
        }
    }
    for (int64_t i = 0; i < BT; i++) tm->pos[i] = (int32_t)(i % T);
    if (opt->loss != DLQ_LOSS_CE) {
        int rc2 = dlq_state_create(&tm->teacher, base, 1, (int)T, (int)T, err);
        if (rc2) { dlq_tmodel_destroy(tm); return rc2; }
        dlq_weight_row(&base->out_norm, 0, tm->t_out_norm);
    }
    *out = tm;
    return DLQ_OK;
}

/* ---- forward / backward ---- */

static dlq_acts *acts_of(dlq_tmodel *tm, int l) { return &tm->acts[tm->opt.recompute ? 0 : l]; }

static void layer_forward(dlq_tmodel *tm, int l, dlq_acts *a, float *x_out, const float *cs, const float *sn) {
    const dlq_config *c = &tm->cfg;
    dlq_tlayer *L = &tm->layers[l];
    int64_t B = tm->opt.B, T = tm->opt.T, BT = B * T, D = c->dim, H = c->hidden_dim;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    dlq_rmsnorm_forward(a->xn1, a->x_in, L->attn_norm, BT, (int)D, c->norm_eps);
    dlq_tl_forward(&L->p[DLQ_P_Q], a->q, a->xn1, BT, &tm->ws);
    dlq_tl_forward(&L->p[DLQ_P_K], a->k, a->xn1, BT, &tm->ws);
    dlq_tl_forward(&L->p[DLQ_P_V], a->v, a->xn1, BT, &tm->ws);
    dlq_rope_forward(a->q, BT, c->n_heads, c->head_dim, tm->pos, cs, sn);
    dlq_rope_forward(a->k, BT, c->n_kv_heads, c->head_dim, tm->pos, cs, sn);
    for (int64_t b = 0; b < B; b++)
        dlq_attention_forward_train(a->att + b * T * qd, a->probs + b * c->n_heads * T * T, a->q + b * T * qd,
                                    a->k + b * T * kvd, a->v + b * T * kvd, (int)T, c->n_heads, c->n_kv_heads,
                                    c->head_dim, c->sliding_window);
    dlq_tl_forward(&L->p[DLQ_P_O], tm->tmp, a->att, BT, &tm->ws);
    for (int64_t i = 0; i < BT * D; i++) a->x_mid[i] = a->x_in[i] + tm->tmp[i];
    dlq_rmsnorm_forward(a->xn2, a->x_mid, L->ffn_norm, BT, (int)D, c->norm_eps);
    dlq_tl_forward(&L->p[DLQ_P_GATE], a->gate, a->xn2, BT, &tm->ws);
    dlq_tl_forward(&L->p[DLQ_P_UP], a->up, a->xn2, BT, &tm->ws);
    dlq_swiglu_forward(a->hmid, a->gate, a->up, BT * H);
    dlq_tl_forward(&L->p[DLQ_P_DOWN], tm->tmp, a->hmid, BT, &tm->ws);
    for (int64_t i = 0; i < BT * D; i++) x_out[i] = a->x_mid[i] + tm->tmp[i];
}

/* dx holds dL/d(layer output) on entry and dL/d(layer input) on exit */
static void layer_backward(dlq_tmodel *tm, int l, dlq_acts *a, const float *cs, const float *sn) {
    const dlq_config *c = &tm->cfg;
    dlq_tlayer *L = &tm->layers[l];
    int64_t B = tm->opt.B, T = tm->opt.T, BT = B * T, D = c->dim, H = c->hidden_dim;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    float *dx = tm->dx;
    /* MLP */
    memset(tm->dh1, 0, (size_t)(BT * H) * sizeof(float));
    dlq_tl_backward(&L->p[DLQ_P_DOWN], tm->dh1, dx, a->hmid, BT, &tm->ws);
    dlq_swiglu_backward(tm->dh1, tm->dh2, tm->dh1, a->gate, a->up, BT * H); /* dgate in dh1 (in place), dup in dh2 */
    memset(tm->dxn, 0, (size_t)(BT * D) * sizeof(float));
    dlq_tl_backward(&L->p[DLQ_P_GATE], tm->dxn, tm->dh1, a->xn2, BT, &tm->ws);
    dlq_tl_backward(&L->p[DLQ_P_UP], tm->dxn, tm->dh2, a->xn2, BT, &tm->ws);
    dlq_rmsnorm_backward(dx, L->g_ffn_norm, tm->dxn, a->x_mid, L->ffn_norm, BT, (int)D, c->norm_eps);
    /* attention */
    memset(tm->datt, 0, (size_t)(BT * qd) * sizeof(float));
    dlq_tl_backward(&L->p[DLQ_P_O], tm->datt, dx, a->att, BT, &tm->ws);
    for (int64_t b = 0; b < B; b++)
        dlq_attention_backward(tm->dq + b * T * qd, tm->dk + b * T * kvd, tm->dv + b * T * kvd, tm->datt + b * T * qd,
                               a->probs + b * c->n_heads * T * T, a->q + b * T * qd, a->k + b * T * kvd,
                               a->v + b * T * kvd, (int)T, c->n_heads, c->n_kv_heads, c->head_dim, tm->attn_scratch);
    dlq_rope_backward(tm->dq, BT, c->n_heads, c->head_dim, tm->pos, cs, sn);
    dlq_rope_backward(tm->dk, BT, c->n_kv_heads, c->head_dim, tm->pos, cs, sn);
    memset(tm->dxn, 0, (size_t)(BT * D) * sizeof(float));
    dlq_tl_backward(&L->p[DLQ_P_Q], tm->dxn, tm->dq, a->xn1, BT, &tm->ws);
    dlq_tl_backward(&L->p[DLQ_P_K], tm->dxn, tm->dk, a->xn1, BT, &tm->ws);
    dlq_tl_backward(&L->p[DLQ_P_V], tm->dxn, tm->dv, a->xn1, BT, &tm->ws);
    dlq_rmsnorm_backward(dx, L->g_attn_norm, tm->dxn, a->x_in, L->attn_norm, BT, (int)D, c->norm_eps);
}

static int make_rope(const dlq_tmodel *tm, float **cs, float **sn, dlq_err *err) {
    int T = tm->opt.T, half = tm->cfg.head_dim / 2;
    *cs = malloc((size_t)T * half * sizeof(float));
    *sn = malloc((size_t)T * half * sizeof(float));
    if (!*cs || !*sn) { free(*cs); free(*sn); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    float inv[half];
    dlq_rope_inv_freq(&tm->cfg, inv);
    if (tm->base->rope_freq_factors)
        for (int i = 0; i < half; i++) inv[i] /= tm->base->rope_freq_factors[i];
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            float ang = (float)p * inv[i];
            (*cs)[p * half + i] = (float)cos((double)ang);
            (*sn)[p * half + i] = (float)sin((double)ang);
        }
    return DLQ_OK;
}

static int run(dlq_tmodel *tm, const int32_t *tokens, const int32_t *targets, int backward, float grad_scale,
               double *loss_sum, int64_t *n_valid, dlq_err *err) {
    const dlq_config *c = &tm->cfg;
    int64_t BT = (int64_t)tm->opt.B * tm->opt.T, D = c->dim, V = c->vocab_size;
    int64_t nv = 0;
    for (int64_t i = 0; i < BT; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return dlq_errf(err, DLQ_EINVAL, "token id %d at index %lld is outside the vocabulary [0, %lld)", tokens[i],
                            (long long)i, (long long)V);
        if (targets[i] >= V)
            return dlq_errf(err, DLQ_EINVAL, "target id %d at index %lld is outside the vocabulary", targets[i], (long long)i);
        nv += targets[i] >= 0;
    }
    float *cs, *sn;
    int rc = make_rope(tm, &cs, &sn, err);
    if (rc) return rc;
    /* embedding */
    for (int64_t i = 0; i < BT; i++) {
        if (tm->emb) memcpy(tm->x + i * D, tm->emb + (int64_t)tokens[i] * D, (size_t)D * sizeof(float));
        else dlq_weight_row(&tm->base->tok_emb, tokens[i], tm->x + i * D);
    }
    for (int l = 0; l < c->n_layers; l++) {
        dlq_acts *a = acts_of(tm, l);
        memcpy(a->x_in, tm->x, (size_t)(BT * D) * sizeof(float));
        if (tm->opt.recompute) memcpy(tm->saved_x_in + (int64_t)l * BT * D, tm->x, (size_t)(BT * D) * sizeof(float));
        layer_forward(tm, l, a, tm->x, cs, sn);
    }
    dlq_rmsnorm_forward(tm->xnf, tm->x, tm->out_norm, BT, (int)D, c->norm_eps);
    /* head + loss in row chunks; the backward of the head runs chunk by chunk too */
    double loss = 0;
    float scale = nv > 0 ? grad_scale / (float)nv : 0.0f;
    tm->ws.grad_scale = grad_scale;
    if (backward) memset(tm->dxn, 0, (size_t)(BT * D) * sizeof(float));
    /* distillation: the teacher's final hidden states, one sequence at a time */
    int distill = backward && tm->opt.loss != DLQ_LOSS_CE;
    if (distill) {
        int64_t T = tm->opt.T;
        for (int b = 0; b < tm->opt.B; b++) {
            int rc2 = dlq_forward(tm->base, tm->teacher, tokens + b * T, 1, (int)T, 0, NULL, 0, err);
            if (rc2) { free(cs); free(sn); return rc2; }
            memcpy(tm->t_hidden + b * T * D, tm->teacher->x, (size_t)(T * D) * sizeof(float));
        }
    }
    float w_ce = tm->opt.loss == DLQ_LOSS_KL ? 0.0f : 1.0f, w_kl = tm->opt.loss == DLQ_LOSS_CE ? 0.0f : 1.0f;
    for (int64_t r0 = 0; r0 < BT; r0 += tm->head_chunk) {
        int64_t nr = BT - r0 < tm->head_chunk ? BT - r0 : tm->head_chunk;
        dlq_tl_forward(&tm->head, tm->logits, tm->xnf + r0 * D, nr, &tm->ws);
        if (distill) {
            dlq_rmsnorm_forward(tm->t_norm, tm->t_hidden + r0 * D, tm->t_out_norm, nr, (int)D, c->norm_eps);
            dlq_linear(tm->t_logits, (int)V, tm->t_norm, nr, &tm->base->lm_head, NULL, tm->teacher->wscratch);
            loss += dlq_kl_forward_backward(tm->logits, tm->logits, tm->t_logits, targets + r0, nr, (int)V, scale, w_ce,
                                            w_kl);
        } else
            loss += dlq_xent_forward_backward(tm->logits, tm->logits, targets + r0, nr, (int)V, scale);
        if (backward) dlq_tl_backward(&tm->head, tm->dxn + r0 * D, tm->logits, tm->xnf + r0 * D, nr, &tm->ws);
    }
    *loss_sum = loss;
    *n_valid = nv;
    if (backward) {
        memset(tm->dx, 0, (size_t)(BT * D) * sizeof(float));
        dlq_rmsnorm_backward(tm->dx, tm->g_out_norm, tm->dxn, tm->x, tm->out_norm, BT, (int)D, c->norm_eps);
        for (int l = c->n_layers - 1; l >= 0; l--) {
            dlq_acts *a = acts_of(tm, l);
            if (tm->opt.recompute) {
                memcpy(a->x_in, tm->saved_x_in + (int64_t)l * BT * D, (size_t)(BT * D) * sizeof(float));
                layer_forward(tm, l, a, tm->x, cs, sn); /* tm->x is free now: its output is discarded */
            }
            layer_backward(tm, l, a, cs, sn);
        }
        if (tm->g_emb) dlq_embedding_backward(tm->g_emb, tm->dx, tokens, BT, (int)D);
    }
    free(cs);
    free(sn);
    return DLQ_OK;
}

int dlq_tmodel_step(dlq_tmodel *tm, const int32_t *tokens, const int32_t *targets, float grad_scale,
                    double *loss_sum, int64_t *n_valid, dlq_err *err) {
    return run(tm, tokens, targets, 1, grad_scale, loss_sum, n_valid, err);
}

int dlq_tmodel_eval(dlq_tmodel *tm, const int32_t *tokens, const int32_t *targets, double *loss_sum, int64_t *n_valid,
                    dlq_err *err) {
    return run(tm, tokens, targets, 0, 0.0f, loss_sum, n_valid, err);
}

void dlq_tmodel_effective_weight(const dlq_tmodel *tm, int l, int p, float *out) {
    const dlq_tlinear *T = &tm->layers[l].p[p];
    size_t n = (size_t)(T->out * T->in);
    if (T->kind == DLQ_TL_FULL) { memcpy(out, T->w, n * sizeof(float)); return; }
    dlq_to_f32(out, T->w0.data, T->w0.dtype, n);
    if (T->kind == DLQ_TL_LORA)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T->out, (int)T->in, T->r, T->scale, T->B, T->r, T->A,
                    (int)T->in, 1.0f, out, (int)T->in);
}

void dlq_tmodel_after_step(dlq_tmodel *tm) {
    if (tm->opt.mode != DLQ_MODE_QUANT || !tm->opt.qspec.int_zero) return;
    for (int l = 0; l < tm->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            const dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->kind == DLQ_TL_QUANT || T->kind == DLQ_TL_QALORA) dlq_quant_snap_zero(T->q->b, T->q->s, T->out * T->q->ngroups);
        }
}

void dlq_tmodel_set_trainable(dlq_tmodel *tm, unsigned mask) {
    for (int i = 0; i < tm->params.n; i++) {
        dlq_ptensor *t = &tm->params.t[i];
        size_t nl = strlen(t->name);
        int is_offset = nl > 8 && !strcmp(t->name + nl - 8, ".qoffset");
        if (t->group == tm->group_sb) t->frozen = !(mask & DLQ_TRAIN_SB) || (is_offset && tm->opt.qspec.sym);
        else if (t->group == tm->group_m) t->frozen = !(mask & DLQ_TRAIN_M);
        else if (t->group == tm->group_ab) t->frozen = !(mask & DLQ_TRAIN_AB);
        else if (t->group == tm->group_w) t->frozen = !(mask & DLQ_TRAIN_W);
        else if (t->group == tm->group_norm) t->frozen = !(mask & DLQ_TRAIN_NORM);
        else if (t->group == tm->group_emb) t->frozen = !(mask & DLQ_TRAIN_EMB);
    }
}

size_t dlq_tmodel_count(const dlq_tmodel *tm, unsigned mask) {
    size_t n = 0;
    for (int i = 0; i < tm->params.n; i++) {
        const dlq_ptensor *t = &tm->params.t[i];
        if ((t->group == tm->group_sb && (mask & DLQ_TRAIN_SB)) || (t->group == tm->group_m && (mask & DLQ_TRAIN_M)) ||
            (t->group == tm->group_ab && (mask & DLQ_TRAIN_AB)) || (t->group == tm->group_w && (mask & DLQ_TRAIN_W)) ||
            (t->group == tm->group_norm && (mask & DLQ_TRAIN_NORM)) || (t->group == tm->group_emb && (mask & DLQ_TRAIN_EMB)))
            n += t->n;
    }
    return n;
}

void dlq_tmodel_embed(const dlq_tmodel *tm, const int32_t *tokens, float *x) {
    int64_t BT = (int64_t)tm->opt.B * tm->opt.T, D = tm->cfg.dim;
    for (int64_t i = 0; i < BT; i++) {
        if (tm->emb) memcpy(x + i * D, tm->emb + (int64_t)tokens[i] * D, (size_t)D * sizeof(float));
        else dlq_weight_row(&tm->base->tok_emb, tokens[i], x + i * D);
    }
}

int dlq_tmodel_layer_forward(dlq_tmodel *tm, int l, const float *x_in, float *x_out, dlq_err *err) {
    if (l < 0 || l >= tm->cfg.n_layers) return dlq_errf(err, DLQ_EINVAL, "layer %d does not exist", l);
    float *cs, *sn;
    int rc = make_rope(tm, &cs, &sn, err);
    if (rc) return rc;
    dlq_acts *a = acts_of(tm, l);
    if (a->x_in != x_in) memmove(a->x_in, x_in, (size_t)((int64_t)tm->opt.B * tm->opt.T * tm->cfg.dim) * sizeof(float));
    layer_forward(tm, l, a, x_out, cs, sn);
    free(cs);
    free(sn);
    return DLQ_OK;
}

const dlq_acts *dlq_tmodel_layer_acts(const dlq_tmodel *tm, int l) { return &tm->acts[tm->opt.recompute ? 0 : l]; }
