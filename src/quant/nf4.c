#include "quant/nf4.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/dlq_file.h"
#include "model/load_internal.h"

/* bitsandbytes' NF4 table (functional.py get_4bit_type("nf4"); QLoRA appendix E) */
const float dlq_nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230850220947f, 0.33791524171829224f, 0.44070982985115051f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

int dlq_nf4_index(float x) {
    /* the codes are sorted: compare against the midpoints */
    int k = 0;
    while (k < 15 && x > 0.5f * (dlq_nf4_code[k] + dlq_nf4_code[k + 1])) k++;
    return k;
}

void dlq_nf4_free(dlq_nf4 *q) {
    free(q->codes);
    free(q->absmax);
    free(q->absmax_q);
    free(q->absmax_scale);
    memset(q, 0, sizeof *q);
}

int dlq_nf4_quantize(dlq_nf4 *q, const float *w, int64_t rows, int64_t cols, int block, int double_quant, dlq_err *err) {
    memset(q, 0, sizeof *q);
    if (block <= 0) block = 64;
    if (rows <= 0 || cols <= 0) return dlq_errf(err, DLQ_EINVAL, "NF4: bad shape [%lld, %lld]", (long long)rows, (long long)cols);
    q->rows = rows;
    q->cols = cols;
    q->block = block;
    q->nblk_row = (cols + block - 1) / block;
    q->row_bytes = (cols + 1) / 2;
    int64_t nb = rows * q->nblk_row;
    q->codes = calloc((size_t)(rows * q->row_bytes), 1);
    q->absmax = malloc((size_t)nb * sizeof(float));
    if (!q->codes || !q->absmax) { dlq_nf4_free(q); return dlq_errf(err, DLQ_ENOMEM, "NF4: out of memory"); }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < q->nblk_row; k++) {
            int64_t j0 = k * block, j1 = j0 + block < cols ? j0 + block : cols;
            float a = 0;
            for (int64_t j = j0; j < j1; j++) {
                if (!isfinite(w[r * cols + j])) { dlq_nf4_free(q); return dlq_errf(err, DLQ_EINVAL, "NF4: weight [%lld, %lld] is not finite", (long long)r, (long long)j); }
                a = fmaxf(a, fabsf(w[r * cols + j]));
            }
            q->absmax[r * q->nblk_row + k] = a;
        }
    if (double_quant) {
        q->double_quant = 1;
        q->dq_block = 256;
        int64_t nc = (nb + 255) / 256;
        q->absmax_q = malloc((size_t)nb);
        q->absmax_scale = malloc((size_t)nc * sizeof(float));
        if (!q->absmax_q || !q->absmax_scale) { dlq_nf4_free(q); return dlq_errf(err, DLQ_ENOMEM, "NF4: out of memory"); }
        double mean = 0;
        for (int64_t i = 0; i < nb; i++) mean += q->absmax[i];
        q->absmax_offset = (float)(mean / (double)nb);
        for (int64_t c = 0; c < nc; c++) {
            int64_t i0 = c * 256, i1 = i0 + 256 < nb ? i0 + 256 : nb;
            float mx = 0;
            for (int64_t i = i0; i < i1; i++) mx = fmaxf(mx, fabsf(q->absmax[i] - q->absmax_offset));
            float s = mx > 0 ? mx / 127.0f : 1.0f;
            q->absmax_scale[c] = s;
            for (int64_t i = i0; i < i1; i++) {
                float v = rintf((q->absmax[i] - q->absmax_offset) / s);
                q->absmax_q[i] = (int8_t)fminf(fmaxf(v, -127.0f), 127.0f);
                /* the codes are chosen against the absmax the loader will see */
                q->absmax[i] = (float)q->absmax_q[i] * s + q->absmax_offset;
            }
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float a = q->absmax[r * q->nblk_row + j / block];
            int c = a > 0 ? dlq_nf4_index(w[r * cols + j] / a) : 7; /* an all-zero block: code 0.0 */
            q->codes[r * q->row_bytes + j / 2] |= (uint8_t)(c << (4 * (j & 1)));
        }
    return DLQ_OK;
}

static void dequant_rows(const uint8_t *codes, const float *absmax, int64_t rows, int64_t cols, int block, int64_t nblk_row,
                         int64_t rb, float *w) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            int c = codes[r * rb + j / 2] >> (4 * (j & 1)) & 15;
            w[r * cols + j] = dlq_nf4_code[c] * absmax[r * nblk_row + j / block];
        }
}

void dlq_nf4_dequantize(const dlq_nf4 *q, float *w) {
    dequant_rows(q->codes, q->absmax, q->rows, q->cols, q->block, q->nblk_row, q->row_bytes, w);
}

int dlq_nf4_write(dlq_file_writer *fw, const char *name, const dlq_nf4 *q, int r, float alpha, const float *A, const float *B,
                  dlq_err *err) {
    int64_t nb = q->rows * q->nblk_row;
    json_t *e = json_pack("{s:s, s:s, s:[I, I], s:i, s:I}", "name", name, "type", "nf4", "shape", (json_int_t)q->rows,
                          (json_int_t)q->cols, "block", q->block, "row_bytes", (json_int_t)q->row_bytes);
    json_t *pc = dlq_file_add_blob_copy(fw, q->codes, (size_t)(q->rows * q->row_bytes), err);
    if (!pc) { json_decref(e); return DLQ_ENOMEM; }
    json_object_set_new(e, "codes", pc);
    if (q->double_quant) {
        json_t *pa = dlq_file_add_blob_copy(fw, q->absmax_q, (size_t)nb, err);
        json_t *ps = pa ? dlq_file_add_blob_copy(fw, q->absmax_scale, (size_t)((nb + q->dq_block - 1) / q->dq_block) * 4, err) : NULL;
        if (!ps) { json_decref(pa); json_decref(e); return DLQ_ENOMEM; }
        json_object_set_new(e, "absmax_q", pa);
        json_object_set_new(e, "absmax_scale", ps);
        json_object_set_new(e, "absmax_offset", json_real(q->absmax_offset));
        json_object_set_new(e, "dq_block", json_integer(q->dq_block));
    } else {
        json_t *pa = dlq_file_add_blob_copy(fw, q->absmax, (size_t)nb * 4, err);
        if (!pa) { json_decref(e); return DLQ_ENOMEM; }
        json_object_set_new(e, "absmax", pa);
    }
    if (r > 0) {
        json_t *pa = dlq_file_add_blob_copy(fw, A, (size_t)(r * q->cols) * 4, err);
        json_t *pb = pa ? dlq_file_add_blob_copy(fw, B, (size_t)(q->rows * r) * 4, err) : NULL;
        if (!pb) { json_decref(pa); json_decref(e); return DLQ_ENOMEM; }
        json_object_set_new(e, "lora", json_pack("{s:i, s:f, s:o, s:o}", "r", r, "alpha", (double)alpha, "A", pa, "B", pb));
    }
    dlq_file_add_entry(fw, e);
    return DLQ_OK;
}

int dlq_nf4_bind(dlq_model *m, const dlq_file *f, void *entry, const char *name, int64_t rows, int64_t cols, dlq_weight *w,
                 dlq_err *err) {
    json_t *t = entry;
    json_int_t block = json_integer_value(json_object_get(t, "block")), rb = json_integer_value(json_object_get(t, "row_bytes"));
    if (block <= 0 || block > cols || rb != (cols + 1) / 2)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': invalid NF4 layout (block %lld, row_bytes %lld)", m->path, name,
                        (long long)block, (long long)rb);
    int64_t nbr = (cols + block - 1) / block, nb = rows * nbr;
    const void *codes, *am = NULL;
    int rc = dlq_file_blob(f, json_object_get(t, "codes"), (size_t)(rows * rb), 1, &codes, NULL, name, err);
    if (rc) return rc;
    float *absmax = malloc((size_t)nb * sizeof(float));
    float *out = dlq_model_own(m, (size_t)(rows * cols) * sizeof(float), err);
    if (!absmax || !out) { free(absmax); return out ? dlq_errf(err, DLQ_ENOMEM, "out of memory") : DLQ_ENOMEM; }
    if (json_object_get(t, "absmax_q")) {
        json_int_t dqb = json_integer_value(json_object_get(t, "dq_block"));
        const void *aq, *as;
        json_t *off = json_object_get(t, "absmax_offset");
        if (dqb <= 0 || !json_is_number(off)) rc = dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': invalid NF4 double quantization", m->path, name);
        if (!rc) rc = dlq_file_blob(f, json_object_get(t, "absmax_q"), (size_t)nb, 1, &aq, NULL, name, err);
        if (!rc) rc = dlq_file_blob(f, json_object_get(t, "absmax_scale"), (size_t)((nb + dqb - 1) / dqb) * 4, 4, &as, NULL, name, err);
        if (rc) { free(absmax); return rc; }
        float o = (float)json_number_value(off);
        for (int64_t i = 0; i < nb; i++) absmax[i] = (float)((const int8_t *)aq)[i] * ((const float *)as)[i / dqb] + o;
    } else {
        if ((rc = dlq_file_blob(f, json_object_get(t, "absmax"), (size_t)nb * 4, 4, &am, NULL, name, err))) { free(absmax); return rc; }
        memcpy(absmax, am, (size_t)nb * 4);
    }
    dequant_rows(codes, absmax, rows, cols, (int)block, nbr, rb, out);
    free(absmax);
    json_t *lo = json_object_get(t, "lora");
    if (lo) { /* y = x (W + alpha/r B A)^T: the fp32 adapter, folded into the fp32 dequantized weight at load */
        json_int_t r = json_integer_value(json_object_get(lo, "r"));
        double alpha = json_number_value(json_object_get(lo, "alpha"));
        const void *A, *B;
        if (r <= 0 || r > 65536 || !(alpha > 0)) return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': invalid LoRA (r %lld)", m->path, name, (long long)r);
        if ((rc = dlq_file_blob(f, json_object_get(lo, "A"), (size_t)(r * cols) * 4, 4, &A, NULL, name, err)) ||
            (rc = dlq_file_blob(f, json_object_get(lo, "B"), (size_t)(rows * r) * 4, 4, &B, NULL, name, err)))
            return rc;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)r, (float)(alpha / (double)r), B, (int)r, A,
                    (int)cols, 1.0f, out, (int)cols);
    }
    memset(w, 0, sizeof *w);
    w->data = out;
    w->dtype = DLQ_F32;
    w->rows = rows;
    w->cols = cols;
    return DLQ_OK;
}

/* ---- training (QLoRA) ---- */
#include "quant/export.h"

void dlq_nf4_model_free(dlq_nf4_model *nm) {
    if (nm->q)
        for (int i = 0; i < nm->n; i++) dlq_nf4_free(&nm->q[i]);
    free(nm->q);
    free(nm->wbuf);
    memset(nm, 0, sizeof *nm);
}

int dlq_nf4_tmodel_init(dlq_tmodel *tm, dlq_nf4_model *nm, int block, int double_quant, dlq_err *err) {
    memset(nm, 0, sizeof *nm);
    int nl = tm->cfg.n_layers;
    size_t total = 0;
    for (int l = 0; l < nl; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++)
            if (tm->layers[l].p[p].kind == DLQ_TL_LORA) total += (size_t)(tm->layers[l].p[p].out * tm->layers[l].p[p].in);
    if (!total) return dlq_errf(err, DLQ_EINVAL, "NF4 + LoRA: no LoRA-adapted projection (LoRA mode with rank > 0 needed)");
    nm->n = nl * DLQ_N_PROJ;
    nm->q = calloc((size_t)nm->n, sizeof *nm->q);
    nm->wbuf = malloc(total * sizeof(float));
    if (!nm->q || !nm->wbuf) { dlq_nf4_model_free(nm); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    float *w = nm->wbuf;
    for (int l = 0; l < nl; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->kind != DLQ_TL_LORA) continue;
            dlq_to_f32(w, T->w0.data, T->w0.dtype, (size_t)(T->out * T->in));
            int rc = dlq_nf4_quantize(&nm->q[l * DLQ_N_PROJ + p], w, T->out, T->in, block, double_quant, err);
            if (rc) { dlq_nf4_model_free(nm); return rc; } /* the model still points at its original bases */
            dlq_nf4_dequantize(&nm->q[l * DLQ_N_PROJ + p], w);
            w += T->out * T->in;
        }
    w = nm->wbuf;
    for (int l = 0; l < nl; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            if (T->kind != DLQ_TL_LORA) continue;
            T->w0.data = w;
            T->w0.dtype = DLQ_F32;
            w += T->out * T->in;
        }
    return DLQ_OK;
}

typedef struct nf4_ctx { const dlq_tmodel *tm; const dlq_nf4_model *nm; } nf4_ctx;

static int write_proj(void *user, dlq_file_writer *fw, const char *name, int l, int p, dlq_err *err) {
    const nf4_ctx *c = user;
    const dlq_tlinear *T = &c->tm->layers[l].p[p];
    if (T->kind != DLQ_TL_LORA || !c->nm->q[l * DLQ_N_PROJ + p].codes)
        return dlq_errf(err, DLQ_EINVAL, "NF4 export: %s is not an NF4 + LoRA projection", name);
    return dlq_nf4_write(fw, name, &c->nm->q[l * DLQ_N_PROJ + p], T->r, T->scale * (float)T->r, T->A, T->B, err);
}

int dlq_nf4_export_dlq(const dlq_tmodel *tm, const dlq_nf4_model *nm, const char *path, const char *metadata_json, dlq_err *err) {
    int block = 64, dq = 0, r = 0;
    float alpha = 0;
    for (int i = 0; i < nm->n; i++)
        if (nm->q[i].codes) { block = nm->q[i].block; dq = nm->q[i].double_quant; break; }
    json_t *targets = json_array();
    for (int p = 0; p < DLQ_N_PROJ; p++)
        if (tm->layers[0].p[p].kind == DLQ_TL_LORA) {
            json_array_append_new(targets, json_string(dlq_proj_names[p]));
            r = tm->layers[0].p[p].r;
            alpha = tm->layers[0].p[p].scale * (float)r;
        }
    json_t *qj = json_pack("{s:s, s:s, s:i, s:i, s:b, s:o, s:i, s:f}", "method", "nf4-lora", "format", "nf4", "bits", 4, "group",
                           block, "double_quant", dq, "targets", targets, "lora_r", r, "lora_alpha", (double)alpha);
    char *qs = json_dumps(qj, JSON_COMPACT);
    json_decref(qj);
    nf4_ctx c = {tm, nm};
    int rc = dlq_export_dlq_with(tm, path, "nf4-lora", qs, metadata_json, write_proj, &c, err);
    free(qs);
    return rc;
}
