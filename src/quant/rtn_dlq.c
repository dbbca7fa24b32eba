#include "quant/rtn_dlq.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "io/dlq_file.h"
#include "io/hf_write.h"
#include "kernels/linear.h"
#include "quant/export.h"
#include "quant/quant.h"
#include "train/tmodel.h"

static int add_dense(dlq_file_writer *fw, const char *name, const dlq_weight *w, dlq_err *err) {
    if (w->dtype == DLQ_QPACK) return dlq_errf(err, DLQ_EUNSUP, "%s is already packed: re-quantizing a .dlq is not supported", name);
    int64_t shape[2] = {w->rows, w->cols};
    return w->rows == 1 ? dlq_file_add_dense(fw, name, w->dtype, 1, &shape[1], w->data, err)
                        : dlq_file_add_dense(fw, name, w->dtype, 2, shape, w->data, err);
}

/* one weight: widen, RTN, pack (the writer copies the packed bytes at once) */
static int add_rtn(dlq_file_writer *fw, const char *name, const dlq_weight *w, int bits, int group, dlq_dtype pdt,
                   int clip, dlq_err *err) {
    if (w->dtype == DLQ_QPACK) return dlq_errf(err, DLQ_EUNSUP, "%s is already packed: re-quantizing a .dlq is not supported", name);
    dlq_qspec q = {.bits = bits, .group = group};
    int64_t rows = w->rows, cols = w->cols, ng = dlq_qgroups(cols, group);
    float *wf = malloc((size_t)(rows * cols) * sizeof(float));
    float *s = malloc((size_t)(rows * ng) * sizeof(float)), *b = malloc((size_t)(rows * ng) * sizeof(float)),
          *m = malloc((size_t)(rows * ng) * sizeof(float));
    int8_t *qi = malloc((size_t)(rows * cols));
    int rc = DLQ_OK;
    if (!wf || !s || !b || !m || !qi) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory quantizing %s", name);
    if (!rc) {
        dlq_weight_rows_f32(w, 0, rows, wf);
        dlq_quant_init_rtn(wf, rows, cols, &q, clip, s, b, m);
        dlq_fq_forward(wf, wf, rows, cols, &q, s, b, m, qi);
        for (int64_t i = 0; i < rows * ng; i++) { s[i] *= m[i]; b[i] *= m[i]; }
        rc = dlq_file_add_packed_ex(fw, name, bits, dlq_qgroup_size(cols, group), rows, cols, qi, s, b, pdt, err);
    }
    free(wf); free(s); free(b); free(m); free(qi);
    return rc;
}

static const dlq_weight *proj(const dlq_layer *L, int p) {
    const dlq_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return w[p];
}

int dlq_quant_rtn_to_dlq(const dlq_model *m, const char *path, const dlq_rtn_opts *o, const char *metadata_json,
                         dlq_err *err) {
    const dlq_config *c = &m->cfg;
    dlq_qspec qs = {.bits = o->bits, .group = o->group};
    int rc = dlq_qspec_validate(&qs, err);
    if (rc) return rc;
    if (o->head_bits && (o->head_bits < 2 || o->head_bits > 8))
        return dlq_errf(err, DLQ_EINVAL, "head bits %d: 0 or 2..8 expected", o->head_bits);
    if (o->param_dtype != DLQ_F32 && o->param_dtype != DLQ_F16)
        return dlq_errf(err, DLQ_EINVAL, "group parameters as %s: F32 or F16 expected", dlq_dtype_name(o->param_dtype));
    dlq_file_writer *fw;
    if ((rc = dlq_file_writer_new(&fw, err))) return rc;
    char *cfg = dlq_hf_config_json(c, m->tok_emb.dtype);
    if (!cfg) { dlq_file_writer_free(fw); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    rc = dlq_file_set_json(fw, "config", cfg, err);
    free(cfg);
    json_t *targets = json_array();
    for (int p = 0; p < DLQ_N_PROJ; p++) json_array_append_new(targets, json_string(dlq_proj_names[p]));
    int head_q = o->head_bits && !c->tied;
    json_t *qj = json_pack("{s:s, s:i, s:i, s:b, s:s, s:o, s:b, s:b, s:s, s:i}", "method", "rtn", "bits", o->bits, "group",
                           o->group <= 0 ? 0 : o->group, "per_channel", o->group <= 0, "rounding", "half-to-even", "targets",
                           targets, "symmetric", 0, "integer_zero", 0, "param_type", dlq_dtype_name(o->param_dtype),
                           "head_bits", head_q ? o->head_bits : 0);
    char *qstr = json_dumps(qj, JSON_COMPACT);
    json_decref(qj);
    if (!rc) rc = dlq_file_set_json(fw, "quant", qstr, err);
    free(qstr);
    if (!rc && metadata_json) rc = dlq_file_set_json(fw, "metadata", metadata_json, err);
    if (!rc) rc = add_dense(fw, "model.embed_tokens.weight", &m->tok_emb, err);
    char n[160];
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const dlq_layer *L = &m->layers[l];
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = add_dense(fw, n, &L->attn_norm, err))) break;
        for (int p = 0; p < DLQ_N_PROJ && !rc; p++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.%s.weight", l, dlq_proj_module[p], dlq_proj_names[p]);
            rc = add_rtn(fw, n, proj(L, p), o->bits, o->group, o->param_dtype, o->clip_search, err);
            if (!rc && p <= DLQ_P_V && c->qkv_bias) {
                const dlq_weight *b = p == DLQ_P_Q ? &L->bq : p == DLQ_P_K ? &L->bk : &L->bv;
                snprintf(n, sizeof n, "model.layers.%d.self_attn.%s.bias", l, dlq_proj_names[p]);
                rc = add_dense(fw, n, b, err);
            }
        }
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!rc) rc = add_dense(fw, n, &L->ffn_norm, err);
    }
    if (!rc) rc = add_dense(fw, "model.norm.weight", &m->out_norm, err);
    if (!rc && !c->tied)
        rc = head_q ? add_rtn(fw, "lm_head.weight", &m->lm_head, o->head_bits, o->group, o->param_dtype, o->clip_search, err)
                    : add_dense(fw, "lm_head.weight", &m->lm_head, err);
    if (!rc) rc = dlq_quant_write_tokenizer(fw, m, err);
    if (!rc) rc = dlq_file_commit(fw, path, err);
    dlq_file_writer_free(fw);
    return rc;
}
