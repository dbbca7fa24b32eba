/* Shared pieces of the exporters: source rows in fp32, the report, the
 * tokenizer bytes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "export/export.h"
#include "kernels/qkernels.h"
#include "kernels/qpack.h"

int dlq_export_qparams(const dlq_weight *w, const float **sc, const float **bi, float **owned, dlq_err *err) {
    *owned = NULL;
    if (w->qscale && w->qbias) { /* F32 parameters: views */
        *sc = w->qscale;
        *bi = w->qbias;
        return DLQ_OK;
    }
    size_t n = (size_t)(w->rows * w->qng);
    float *buf = malloc(2 * n * sizeof(float) + 1);
    if (!buf) return dlq_errf(err, DLQ_ENOMEM, "out of memory for %zu group parameters", n);
    for (int64_t r = 0; r < w->rows; r++) dlq_qparams_row(w, r, buf + r * w->qng, buf + n + r * w->qng);
    *sc = buf;
    *bi = buf + n;
    *owned = buf;
    return DLQ_OK;
}

void dlq_export_row_f32(const dlq_weight *w, int64_t r, float *out) {
    if (w->dtype == DLQ_QPACK) {
        if (w->qscale && w->qbias) {
            dlq_qdequant_row(out, (const uint8_t *)w->data + r * w->row_bytes, w->cols, w->qbits, w->qgroup,
                             w->qscale + r * w->qng, w->qbias + r * w->qng);
            return;
        }
        /* F16 group parameters (.dlq v2), no scratch: the int8 codes are
         * unpacked into the last quarter of out, then widened in ascending
         * order (out[j] covers bytes 4j..4j+3, all below code j+1 at byte
         * 3*cols+j+1, so no code is overwritten before it is read). */
        int64_t C = w->cols, gs = w->qng == 1 ? C : w->qgroup;
        int8_t *q = (int8_t *)out + 3 * C;
        dlq_qunpack_row(q, (const uint8_t *)w->data + r * w->row_bytes, C, w->qbits);
        for (int64_t j = 0; j < C; j++) {
            int64_t g = r * w->qng + j / gs;
            float sc = dlq_f16_to_f32(w->qscale_h[g]), bi = dlq_f16_to_f32(w->qbias_h[g]), v = (float)q[j];
            out[j] = sc * v + bi;
        }
        return;
    }
    dlq_to_f32(out, (const char *)w->data + (size_t)(r * w->cols) * dlq_dtype_size(w->dtype), w->dtype, (size_t)w->cols);
}

dlq_export_tensor *dlq_export_add(dlq_export_report *r, const char *name, const char *type, const dlq_weight *src,
                                  dlq_err *err) {
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 64;
        dlq_export_tensor *nt = realloc(r->t, nc * sizeof *nt);
        if (!nt) { dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
        r->t = nt;
        r->cap = nc;
    }
    dlq_export_tensor *t = &r->t[r->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->type, sizeof t->type, "%s", type);
    if (src) {
        t->numel = src->rows * src->cols;
        if (src->dtype == DLQ_QPACK) { t->bits = src->qbits; t->group = src->qgroup; }
    }
    return t;
}

void dlq_export_err(dlq_export_tensor *t, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) d = INFINITY;
        if (d > t->max_err) t->max_err = d;
        t->sum_err += d;
    }
}

int dlq_export_warn(dlq_export_report *r, dlq_err *err, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **nw = realloc(r->warn, (r->n_warn + 1) * sizeof *nw);
    if (!nw) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    r->warn = nw;
    if (!(r->warn[r->n_warn] = strdup(buf))) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    r->n_warn++;
    return DLQ_OK;
}

void dlq_export_report_free(dlq_export_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_warn; i++) free(r->warn[i]);
    free(r->warn);
    free(r->t);
    memset(r, 0, sizeof *r);
}

void dlq_export_report_totals(const dlq_export_report *r, int packed_only, double *max_err, double *mean_err) {
    double mx = 0, s = 0;
    int64_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (packed_only && !r->t[i].bits) continue;
        mx = fmax(mx, r->t[i].max_err);
        s += r->t[i].sum_err;
        n += r->t[i].numel;
    }
    *max_err = mx;
    *mean_err = n ? s / (double)n : 0;
}

int dlq_export_tok_bytes(const dlq_model *m, void **data, size_t *n, dlq_err *err) {
    *data = NULL;
    *n = 0;
    if (m->tok_blob && m->tok_blob_n) {
        if (!(*data = dlq_malloc(m->tok_blob_n, err))) return DLQ_ENOMEM;
        memcpy(*data, m->tok_blob, m->tok_blob_n);
        *n = m->tok_blob_n;
        return DLQ_OK;
    }
    if (!m->tok_path[0]) return DLQ_OK;
    char *buf;
    size_t len;
    int rc = dlq_read_file(m->tok_path, &buf, &len, err);
    if (rc) return rc;
    *data = buf;
    *n = len;
    return DLQ_OK;
}
