/* .dlq models (src/io/dlq_file.h): config from the JSON header, dense and
 * bit-packed tensors bound as views into the mapping (nothing is copied), the
 * tokenizer from its embedded copy. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dlq_file.h"
#include "kernels/qpack.h"
#include "model/load_internal.h"
#include "quant/nf4.h"

static json_t *find_entry(json_t *tensors, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(tensors, i, t) {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n && !strcmp(n, name)) return t;
    }
    return NULL;
}

static int shape_is(json_t *shape, int64_t rows, int64_t cols) {
    if (!json_is_array(shape)) return 0;
    if (rows == 1 && json_array_size(shape) == 1) return json_integer_value(json_array_get(shape, 0)) == cols;
    return json_array_size(shape) == 2 && json_integer_value(json_array_get(shape, 0)) == rows &&
           json_integer_value(json_array_get(shape, 1)) == cols;
}

static int bind(dlq_model *m, const dlq_file *f, json_t *tensors, const char *name, int64_t rows, int64_t cols,
                dlq_weight *w, dlq_err *err) {
    const char *path = m->path;
    json_t *t = find_entry(tensors, name);
    if (!t) return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' is missing", path, name);
    if (!shape_is(json_object_get(t, "shape"), rows, cols))
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' has the wrong shape for the config ([%lld, %lld] expected)", path,
                        name, (long long)rows, (long long)cols);
    const char *ty = json_string_value(json_object_get(t, "type"));
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    if (ty && !strcmp(ty, "nf4")) return dlq_nf4_bind(m, f, t, name, rows, cols, w, err); /* src/quant/nf4.c */
    if (ty && !strcmp(ty, "packed")) {
        json_int_t bits = json_integer_value(json_object_get(t, "bits")), group = json_integer_value(json_object_get(t, "group"));
        json_int_t rb = json_integer_value(json_object_get(t, "row_bytes"));
        if (bits < 2 || bits > 8 || group <= 0 || group > cols || rb != dlq_qrow_bytes(cols, (int)bits))
            return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': invalid packing (bits %lld, group %lld, row_bytes %lld)",
                            path, name, (long long)bits, (long long)group, (long long)rb);
        int64_t ng = (cols + group - 1) / group;
        const char *pt = json_string_value(json_object_get(t, "param_type"));
        dlq_dtype pdt = !pt || !strcmp(pt, "F32") ? DLQ_F32 : !strcmp(pt, "F16") ? DLQ_F16 : DLQ_DTYPE_COUNT;
        if (pdt == DLQ_DTYPE_COUNT)
            return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': unknown param_type \"%s\" (F32 or F16 expected)", path, name,
                            pt);
        size_t pes = dlq_dtype_size(pdt);
        const void *q, *sc, *bi;
        int rc;
        if ((rc = dlq_file_blob(f, json_object_get(t, "q"), (size_t)(rows * rb), 1, &q, NULL, name, err)) ||
            (rc = dlq_file_blob(f, json_object_get(t, "scale"), (size_t)(rows * ng) * pes, pes, &sc, NULL, name, err)) ||
            (rc = dlq_file_blob(f, json_object_get(t, "bias"), (size_t)(rows * ng) * pes, pes, &bi, NULL, name, err)))
            return rc;
        w->data = q;
        w->dtype = DLQ_QPACK;
        w->qbits = (int)bits;
        w->qgroup = (int)group;
        w->qng = ng;
        w->row_bytes = rb;
        w->qpdtype = pdt;
        if (pdt == DLQ_F16) {
            w->qscale_h = sc;
            w->qbias_h = bi;
        } else {
            w->qscale = sc;
            w->qbias = bi;
        }
        return DLQ_OK;
    }
    dlq_dtype dt = ty && !strcmp(ty, "F32") ? DLQ_F32 : ty && !strcmp(ty, "F16") ? DLQ_F16 : ty && !strcmp(ty, "BF16") ? DLQ_BF16 : DLQ_DTYPE_COUNT;
    if (dt == DLQ_DTYPE_COUNT)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' has unknown type \"%s\"", path, name, ty ? ty : "?");
    const void *d;
    int rc = dlq_file_blob(f, json_object_get(t, "data"), (size_t)(rows * cols) * dlq_dtype_size(dt), dlq_dtype_size(dt), &d,
                           NULL, name, err);
    if (rc) return rc;
    w->data = d;
    w->dtype = dt;
    return DLQ_OK;
}

typedef struct bind_ctx { const dlq_file *f; json_t *tensors; } bind_ctx;

static int bind_cb(void *ctx, dlq_model *m, const char *name, int64_t rows, int64_t cols, dlq_weight *w, dlq_err *err) {
    const bind_ctx *b = ctx;
    return bind(m, b->f, b->tensors, name, rows, cols, w, err);
}

int dlq_load_dlq_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err) {
    dlq_file *f = calloc(1, sizeof *f);
    if (!f) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    m->src = f;
    int rc = dlq_file_open(f, path, err);
    if (rc) return rc;
    json_t *root = f->json;
    if ((rc = dlq_config_from_json(&m->cfg, json_object_get(root, "config"), path, err))) return rc;
    json_t *q = json_object_get(root, "quant");
    if (json_is_object(q)) {
        m->q_bits = (int)json_integer_value(json_object_get(q, "bits"));
        m->q_group = (int)json_integer_value(json_object_get(q, "group"));
        const char *meth = json_string_value(json_object_get(q, "method"));
        snprintf(m->q_method, sizeof m->q_method, "%s", meth ? meth : "");
    }
    const dlq_config *c = &m->cfg;
    bind_ctx bc = {f, json_object_get(root, "tensors")};
    if ((rc = dlq_bind_hf_names(m, bind_cb, &bc, err))) return rc;
    if (m->tok_emb.dtype == DLQ_QPACK || m->out_norm.dtype == DLQ_QPACK)
        return dlq_errf(err, DLQ_EUNSUP, "%s: packed embeddings / norms are not supported", path);
    for (int l = 0; l < c->n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        if (L->attn_norm.dtype == DLQ_QPACK || L->ffn_norm.dtype == DLQ_QPACK || L->bq.dtype == DLQ_QPACK)
            return dlq_errf(err, DLQ_EUNSUP, "%s: layer %d: packed norms / biases are not supported", path, l);
    }
    const char *tp = opts ? opts->tokenizer_path : NULL;
    json_t *tk = json_object_get(root, "tokenizer");
    if (tp) {
        if ((rc = dlq_tok_load_file(&m->tok, tp, c->vocab_size, err))) return rc;
        dlq_model_note_tokenizer(m, tp);
    } else if (json_is_object(tk)) {
        const char *kind = json_string_value(json_object_get(tk, "kind"));
        const void *d;
        size_t nb;
        if ((rc = dlq_file_blob(f, json_object_get(tk, "data"), (size_t)-1, 1, &d, &nb, "tokenizer", err))) return rc;
        char what[1200];
        snprintf(what, sizeof what, "%s (embedded tokenizer)", path);
        if (kind && !strcmp(kind, "sentencepiece")) rc = dlq_tok_load_spm_mem(&m->tok, d, nb, what, err);
        else if (kind && !strcmp(kind, "hf_json")) rc = dlq_tok_load_hf_json_mem(&m->tok, d, nb, what, err);
        else if (kind && !strcmp(kind, "llama2c")) rc = dlq_tok_load_llama2c_mem(&m->tok, d, nb, c->vocab_size, what, err);
        else return dlq_errf(err, DLQ_EFORMAT, "%s: unknown tokenizer kind \"%s\"", path, kind ? kind : "?");
        if (rc) return rc;
        json_t *ab = json_object_get(tk, "add_bos");
        if (json_is_boolean(ab)) dlq_tok_set_add_bos(m->tok, json_is_true(ab));
        snprintf(m->tok_kind, sizeof m->tok_kind, "%s", kind);
        m->tok_blob = d;
        m->tok_blob_n = nb;
    }
    return DLQ_OK;
}
