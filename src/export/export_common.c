/* Shared pieces of the exporters: source rows in fp32, the report, the
 * tokenizer bytes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "export/export.h"
#include "kernels/qpack.h"

void dlq_export_row_f32(const dlq_weight *w, int64_t r, float *out) {
    if (w->dtype == DLQ_QPACK) {
        dlq_qdequant_row(out, (const uint8_t *)w->data + r * w->row_bytes, w->cols, w->qbits, w->qgroup,
                         w->qscale + r * w->qng, w->qbias + r * w->qng);
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
