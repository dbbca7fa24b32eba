#include "quant/export.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "io/dlq_file.h"
#include "io/hf_write.h"
#include "model/load_internal.h"
#include "quant/qalora.h"

void dlq_quant_merge_layer(const dlq_tlinear *L, float *wp, int8_t *q, float *scale, float *bias) {
    const dlq_qstate *Q = L->q;
    dlq_qlinear_wprime(L, wp);
    dlq_fq_forward(wp, wp, L->out, L->in, &Q->spec, Q->s, Q->b, Q->m, q);
    size_t ng = (size_t)(L->out * Q->ngroups);
    for (size_t i = 0; i < ng; i++) {
        scale[i] = Q->m[i] * Q->s[i];
        bias[i] = Q->m[i] * Q->b[i];
    }
}

static const dlq_weight *proj_weight(const dlq_layer *L, int p) {
    const dlq_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return w[p];
}

/* a norm weight as the merged model has it: the trained fp32 copy when the
 * norms were trained (--train-norms: their gradient exists), else the base's */
static dlq_weight norm_weight(const float *trained, const float *grad, const dlq_weight *base) {
    if (!grad) return *base;
    return (dlq_weight){.data = trained, .dtype = DLQ_F32, .rows = 1, .cols = base->cols};
}

static int add_dense_w(dlq_file_writer *fw, const char *name, const dlq_weight *w, dlq_err *err) {
    if (w->dtype == DLQ_QPACK) return dlq_errf(err, DLQ_EUNSUP, "%s is already packed: re-quantizing a .dlq is not supported", name);
    int64_t shape[2] = {w->rows, w->cols};
    return w->rows == 1 ? dlq_file_add_dense(fw, name, w->dtype, 1, &shape[1], w->data, err)
                        : dlq_file_add_dense(fw, name, w->dtype, 2, shape, w->data, err);
}

int dlq_quant_export_dlq(const dlq_tmodel *tm, const char *path, const char *method, const char *metadata_json,
                         dlq_err *err) {
    return dlq_export_dlq_with(tm, path, method, NULL, metadata_json, NULL, NULL, err);
}

int dlq_export_dlq_with(const dlq_tmodel *tm, const char *path, const char *method, const char *quant_json,
                        const char *metadata_json, dlq_proj_export_fn fn, void *user, dlq_err *err) {
    const dlq_model *m = tm->base;
    const dlq_config *c = &tm->cfg;
    dlq_file_writer *fw;
    int rc = dlq_file_writer_new(&fw, err);
    if (rc) return rc;
    char *cfg = dlq_hf_config_json(c, m->tok_emb.dtype);
    if (!cfg) { dlq_file_writer_free(fw); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    rc = dlq_file_set_json(fw, "config", cfg, err);
    free(cfg);
    json_t *targets = json_array();
    for (int p = 0; p < DLQ_N_PROJ; p++)
        if (tm->opt.targets >> p & 1u) json_array_append_new(targets, json_string(dlq_proj_names[p]));
    int group = dlq_qgroup_size(tm->layers[0].p[0].in, tm->opt.qspec.group);
    json_t *qj = json_pack("{s:s, s:i, s:i, s:b, s:s, s:o, s:b, s:b}", "method", method, "bits", tm->opt.qspec.bits, "group",
                           tm->opt.qspec.group <= 0 ? 0 : tm->opt.qspec.group, "per_channel", tm->opt.qspec.group <= 0,
                           "rounding", "half-to-even", "targets", targets, "symmetric", tm->opt.qspec.sym,
                           "integer_zero", tm->opt.qspec.int_zero);
    (void)group;
    char *qs = quant_json ? strdup(quant_json) : json_dumps(qj, JSON_COMPACT);
    json_decref(qj);
    if (!rc) rc = dlq_file_set_json(fw, "quant", qs, err);
    free(qs);
    if (!rc && metadata_json) rc = dlq_file_set_json(fw, "metadata", metadata_json, err);
    /* the embedding and head as trained (--train-embeddings), else the base's */
    dlq_weight emb = m->tok_emb, head = m->lm_head;
    if (tm->g_emb) emb = (dlq_weight){.data = tm->emb, .dtype = DLQ_F32, .rows = m->tok_emb.rows, .cols = m->tok_emb.cols};
    if (tm->head.gw) head = (dlq_weight){.data = tm->head.w, .dtype = DLQ_F32, .rows = m->lm_head.rows, .cols = m->lm_head.cols};
    if (!rc) rc = add_dense_w(fw, "model.embed_tokens.weight", &emb, err);
    int64_t max_w = 0;
    for (int p = 0; p < DLQ_N_PROJ; p++) {
        int64_t s = tm->layers[0].p[p].out * tm->layers[0].p[p].in;
        if (s > max_w) max_w = s;
    }
    float *wp = malloc((size_t)max_w * sizeof(float)), *sc = malloc((size_t)max_w * sizeof(float)),
          *bi = malloc((size_t)max_w * sizeof(float));
    int8_t *q = malloc((size_t)max_w);
    if (!wp || !sc || !bi || !q) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    char n[160];
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const dlq_layer *BL = &m->layers[l];
        const dlq_tlayer *TL = &tm->layers[l];
        dlq_weight an = norm_weight(TL->attn_norm, TL->g_attn_norm, &BL->attn_norm),
                   fn_ = norm_weight(TL->ffn_norm, TL->g_ffn_norm, &BL->ffn_norm);
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = add_dense_w(fw, n, &an, err))) break;
        for (int p = 0; p < DLQ_N_PROJ && !rc; p++) {
            const dlq_tlinear *T = &tm->layers[l].p[p];
            snprintf(n, sizeof n, "model.layers.%d.%s.%s.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
            if (fn && T->kind != DLQ_TL_FROZEN) {
                rc = fn(user, fw, n, l, p, err);
            } else if (T->kind == DLQ_TL_QUANT || T->kind == DLQ_TL_QALORA) {
                if (T->kind == DLQ_TL_QALORA) dlq_qalora_merge_layer(T, wp, q, sc, bi);
                else dlq_quant_merge_layer(T, wp, q, sc, bi);
                rc = dlq_file_add_packed(fw, n, T->q->spec.bits, dlq_qgroup_size(T->in, T->q->spec.group), T->out, T->in, q,
                                         sc, bi, err);
            } else {
                rc = add_dense_w(fw, n, proj_weight(BL, p), err);
            }
            if (!rc && p <= DLQ_P_V && c->qkv_bias) {
                const dlq_weight *b = p == DLQ_P_Q ? &BL->bq : p == DLQ_P_K ? &BL->bk : &BL->bv;
                snprintf(n, sizeof n, "model.layers.%d.self_attn.%s.bias", l, dlq_proj_names[p]);
                rc = add_dense_w(fw, n, b, err);
            }
        }
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!rc) rc = add_dense_w(fw, n, &fn_, err);
    }
    dlq_weight on = norm_weight(tm->out_norm, tm->g_out_norm, &m->out_norm);
    if (!rc) rc = add_dense_w(fw, "model.norm.weight", &on, err);
    if (!rc && !c->tied) rc = add_dense_w(fw, "lm_head.weight", &head, err);
    /* tokenizer, byte for byte */
    if (!rc) rc = dlq_quant_write_tokenizer(fw, m, err);
    if (!rc) rc = dlq_file_commit(fw, path, err);
    free(wp); free(sc); free(bi); free(q);
    dlq_file_writer_free(fw);
    return rc;
}

int dlq_tmodel_to_model(const dlq_tmodel *tm, dlq_model **out, dlq_err *err) {
    const dlq_model *b = tm->base;
    dlq_model *m = calloc(1, sizeof *m);
    if (!m) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    *m = *b;
    m->src = NULL;
    m->tok = NULL;
    m->owned = NULL;
    m->n_owned = 0;
    m->emb_fd_open = 0; /* the base owns the embedding's file */
    m->layers = malloc((size_t)b->cfg.n_layers * sizeof *m->layers);
    if (!m->layers) { free(m); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    memcpy(m->layers, b->layers, (size_t)b->cfg.n_layers * sizeof *m->layers);
    for (int l = 0; l < b->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            const dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->kind == DLQ_TL_FROZEN) continue;
            float *w = dlq_model_own(m, (size_t)(T->out * T->in) * sizeof(float), err);
            if (!w) { dlq_model_destroy(m); return DLQ_ENOMEM; }
            if (T->kind == DLQ_TL_QUANT) {
                dlq_qlinear_wprime(T, w);
                dlq_fq_forward(w, w, T->out, T->in, &T->q->spec, T->q->s, T->q->b, T->q->m, NULL);
            } else if (T->kind == DLQ_TL_QALORA) {
                float *ba = malloc((size_t)(T->out * T->q->ngroups) * sizeof(float));
                if (!ba) { dlq_model_destroy(m); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
                dlq_qalora_effective_weight(T, w, ba);
                free(ba);
            } else {
                dlq_tmodel_effective_weight(tm, l, p, w);
            }
            dlq_weight *dst = (dlq_weight *)proj_weight(&m->layers[l], p);
            memset(dst, 0, sizeof *dst);
            dst->data = w;
            dst->dtype = DLQ_F32;
            dst->rows = T->out;
            dst->cols = T->in;
        }
    /* trained embedding and head (--train-embeddings): owned fp32 copies (tied: one) */
    if (tm->g_emb) {
        int64_t V = b->tok_emb.rows, D = b->tok_emb.cols;
        float *e = dlq_model_own(m, (size_t)(V * D) * sizeof(float), err);
        if (!e) { dlq_model_destroy(m); return DLQ_ENOMEM; }
        memcpy(e, tm->emb, (size_t)(V * D) * sizeof(float));
        m->tok_emb = (dlq_weight){.data = e, .dtype = DLQ_F32, .rows = V, .cols = D};
        if (b->cfg.tied) m->lm_head = m->tok_emb;
    }
    if (tm->head.gw && !b->cfg.tied) {
        int64_t V = b->lm_head.rows, D = b->lm_head.cols;
        float *h = dlq_model_own(m, (size_t)(V * D) * sizeof(float), err);
        if (!h) { dlq_model_destroy(m); return DLQ_ENOMEM; }
        memcpy(h, tm->head.w, (size_t)(V * D) * sizeof(float));
        m->lm_head = (dlq_weight){.data = h, .dtype = DLQ_F32, .rows = V, .cols = D};
    }
    /* trained norms (--train-norms): owned fp32 copies */
    for (int l = 0; l <= b->cfg.n_layers; l++) {
        const float *src[2] = {l < b->cfg.n_layers ? tm->layers[l].attn_norm : tm->out_norm,
                               l < b->cfg.n_layers ? tm->layers[l].ffn_norm : NULL};
        const float *grad[2] = {l < b->cfg.n_layers ? tm->layers[l].g_attn_norm : tm->g_out_norm,
                                l < b->cfg.n_layers ? tm->layers[l].g_ffn_norm : NULL};
        dlq_weight *dst[2] = {l < b->cfg.n_layers ? &m->layers[l].attn_norm : &m->out_norm,
                              l < b->cfg.n_layers ? &m->layers[l].ffn_norm : NULL};
        for (int k = 0; k < 2; k++) {
            if (!dst[k] || !grad[k]) continue;
            float *w = dlq_model_own(m, (size_t)b->cfg.dim * sizeof(float), err);
            if (!w) { dlq_model_destroy(m); return DLQ_ENOMEM; }
            memcpy(w, src[k], (size_t)b->cfg.dim * sizeof(float));
            *dst[k] = (dlq_weight){.data = w, .dtype = DLQ_F32, .rows = 1, .cols = b->cfg.dim};
        }
    }
    dlq_model_count_bytes(m);
    *out = m;
    return DLQ_OK;
}

int dlq_quant_write_tokenizer(dlq_file_writer *fw, const dlq_model *m, dlq_err *err) {
    if (!m->tok || !m->tok_kind[0]) return DLQ_OK;
    if (m->tok_blob)
        return dlq_file_set_tokenizer(fw, m->tok_kind, m->tok_blob, m->tok_blob_n, dlq_tok_add_bos(m->tok),
                                      dlq_tok_bos(m->tok), dlq_tok_eos(m->tok), err);
    char *buf;
    size_t len;
    int rc = dlq_read_file(m->tok_path, &buf, &len, err);
    if (rc) return rc;
    rc = dlq_file_set_tokenizer(fw, m->tok_kind, buf, len, dlq_tok_add_bos(m->tok), dlq_tok_bos(m->tok),
                                dlq_tok_eos(m->tok), err);
    free(buf);
    return rc;
}
