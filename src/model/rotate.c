/* Rotation of a full-precision model before quantization (rotate.h). */
#include "model/rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/load_internal.h"

int dlq_rot_init(dlq_rot *r, int n, uint64_t seed, dlq_err *err) {
    memset(r, 0, sizeof *r);
    if (n < 1) return dlq_errf(err, DLQ_EINVAL, "rotation size %d", n);
    int p = 1;
    while (n % (2 * p) == 0) p *= 2;
    r->n = n, r->p = p, r->m = n / p;
    dlq_rng g;
    dlq_rng_seed(&g, seed);
    r->sign = dlq_malloc((size_t)n * sizeof *r->sign, err);
    r->tmp = dlq_malloc((size_t)n * sizeof *r->tmp, err);
    if (!r->sign || !r->tmp) { dlq_rot_free(r); return DLQ_ENOMEM; }
    for (int i = 0; i < n; i++) r->sign[i] = (dlq_rng_u64(&g) >> 63) ? -1.0f : 1.0f;
    int mm = r->m;
    if (mm > 1) {
        /* a random orthogonal m x m: Gaussian rows, then Gram-Schmidt */
        r->qm = dlq_malloc((size_t)mm * mm * sizeof *r->qm, err);
        if (!r->qm) { dlq_rot_free(r); return DLQ_ENOMEM; }
        for (size_t i = 0; i < (size_t)mm * mm; i++) r->qm[i] = (float)dlq_rng_normal(&g);
        if (dlq_orthonormalize(r->qm, mm)) { dlq_rot_free(r); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    }
    return 0;
}

void dlq_rot_free(dlq_rot *r) {
    free(r->sign);
    free(r->qm);
    free(r->tmp);
    memset(r, 0, sizeof *r);
}

int dlq_orthonormalize(float *r, int d) {
    double *q = malloc((size_t)d * d * sizeof *q);
    if (!q) return DLQ_ENOMEM;
    for (size_t i = 0; i < (size_t)d * d; i++) q[i] = r[i];
    for (int i = 0; i < d; i++) {
        double *qi = q + (size_t)i * d;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < i; k++) {
                const double *qk = q + (size_t)k * d;
                double s = 0;
                for (int j = 0; j < d; j++) s += qi[j] * qk[j];
                for (int j = 0; j < d; j++) qi[j] -= s * qk[j];
            }
        double n = 0;
        for (int j = 0; j < d; j++) n += qi[j] * qi[j];
        n = 1.0 / sqrt(n);
        for (int j = 0; j < d; j++) qi[j] *= n;
    }
    for (size_t i = 0; i < (size_t)d * d; i++) r[i] = (float)q[i];
    free(q);
    return 0;
}

/* in-place normalized Walsh-Hadamard transform of x[p], p a power of two */
static void fwht(float *x, int p) {
    for (int h = 1; h < p; h *= 2)
        for (int i = 0; i < p; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = 1.0f / sqrtf((float)p);
    for (int i = 0; i < p; i++) x[i] *= s;
}

void dlq_rot_apply(const dlq_rot *r, float *x) {
    int n = r->n, p = r->p, mm = r->m;
    for (int i = 0; i < n; i++) x[i] *= r->sign[i];
    for (int b = 0; b < mm; b++) fwht(x + (size_t)b * p, p);
    if (mm == 1) return;
    /* x viewed as [m][p]: x <- Q_m x (mixes the blocks) */
    for (int j = 0; j < p; j++) {
        for (int i = 0; i < mm; i++) {
            double s = 0;
            for (int k = 0; k < mm; k++) s += (double)r->qm[(size_t)i * mm + k] * x[(size_t)k * p + j];
            r->tmp[i] = (float)s;
        }
        for (int i = 0; i < mm; i++) x[(size_t)i * p + j] = r->tmp[i];
    }
}

void dlq_rot_dense(const dlq_rot *r, float *out) {
    int n = r->n;
    float *e = calloc((size_t)n, sizeof *e);
    if (!e) return;
    for (int c = 0; c < n; c++) {
        memset(e, 0, (size_t)n * sizeof *e);
        e[c] = 1.0f;
        dlq_rot_apply(r, e);
        for (int i = 0; i < n; i++) out[(size_t)i * n + c] = e[i];
    }
    free(e);
}

/* w becomes an owned fp32 copy of itself; returns its data */
static float *own_f32(dlq_model *m, dlq_weight *w, dlq_err *err) {
    size_t n = (size_t)(w->rows * w->cols);
    float *nw = dlq_model_own(m, n * sizeof(float), err);
    if (!nw) return NULL;
    dlq_to_f32(nw, w->data, w->dtype, n);
    w->data = nw;
    w->dtype = DLQ_F32;
    w->row_fd_set = 0;
    return nw;
}

/* rows of w (input side) multiplied by the norm weight g, then rotated */
static void rows_fold_rotate(float *w, int64_t rows, const float *g, const dlq_rot *r) {
    for (int64_t i = 0; i < rows; i++) {
        float *row = w + i * r->n;
        if (g)
            for (int j = 0; j < r->n; j++) row[j] *= g[j];
        dlq_rot_apply(r, row);
    }
}

/* columns c of w ([rows][cols], row0 .. row0 + r->n) <- T c */
static void cols_rotate(float *w, int64_t row0, int64_t cols, const dlq_rot *r, float *col) {
    for (int64_t c = 0; c < cols; c++) {
        for (int i = 0; i < r->n; i++) col[i] = w[(row0 + i) * cols + c];
        dlq_rot_apply(r, col);
        for (int i = 0; i < r->n; i++) w[(row0 + i) * cols + c] = col[i];
    }
}

/* the norm weight as fp32 (into g), then replaced by an owned all-ones vector */
static int take_norm(dlq_model *m, dlq_weight *nw, float *g, dlq_err *err) {
    dlq_to_f32(g, nw->data, nw->dtype, (size_t)nw->cols);
    float *one = dlq_model_own(m, (size_t)nw->cols * sizeof(float), err);
    if (!one) return DLQ_ENOMEM;
    for (int64_t j = 0; j < nw->cols; j++) one[j] = 1.0f;
    nw->data = one;
    nw->dtype = DLQ_F32;
    return 0;
}

int dlq_model_rotate(dlq_model *m, uint64_t seed, dlq_err *err) {
    dlq_config *c = &m->cfg;
    const int D = c->dim, hd = c->head_dim;
    if (m->rotated) return dlq_errf(err, DLQ_EINVAL, "%s is already rotated", m->path);
    if (m->q_bits > 0 || m->tok_emb.dtype == DLQ_QPACK || m->lm_head.dtype == DLQ_QPACK)
        return dlq_errf(err, DLQ_EINVAL, "%s is already quantized: rotate the full-precision model", m->path);
    for (int l = 0; l < c->n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        const dlq_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7; k++)
            if (ws[k]->dtype == DLQ_QPACK)
                return dlq_errf(err, DLQ_EINVAL, "%s: layer %d has quantized weights: rotate the full-precision model",
                                m->path, l);
    }
    dlq_rot T, U;
    int rc = dlq_rot_init(&T, D, seed, err);
    if (rc) return rc;
    if ((rc = dlq_rot_init(&U, hd, seed + 1, err))) { dlq_rot_free(&T); return rc; }
    float *g = malloc((size_t)D * sizeof *g), *col = malloc((size_t)(D > hd ? D : hd) * sizeof *col);
    if (!g || !col) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }

    /* head first: a tied head gets its own copy of the embedding */
    if (c->tied) m->lm_head = m->tok_emb;
    float *head = own_f32(m, &m->lm_head, err), *emb = head ? own_f32(m, &m->tok_emb, err) : NULL;
    if (!emb) { rc = DLQ_ENOMEM; goto out; }
    if ((rc = take_norm(m, &m->out_norm, g, err))) goto out;
    rows_fold_rotate(head, m->lm_head.rows, g, &T);
    rows_fold_rotate(emb, m->tok_emb.rows, NULL, &T);
    c->tied = 0;

    for (int l = 0; l < c->n_layers && !rc; l++) {
        dlq_layer *L = &m->layers[l];
        float *q, *k, *v, *o, *gt, *up, *dn;
        if (!(q = own_f32(m, &L->wq, err)) || !(k = own_f32(m, &L->wk, err)) || !(v = own_f32(m, &L->wv, err)) ||
            !(o = own_f32(m, &L->wo, err)) || !(gt = own_f32(m, &L->w_gate, err)) || !(up = own_f32(m, &L->w_up, err)) ||
            !(dn = own_f32(m, &L->w_down, err))) { rc = DLQ_ENOMEM; break; }
        if ((rc = take_norm(m, &L->attn_norm, g, err))) break;
        rows_fold_rotate(q, L->wq.rows, g, &T);
        rows_fold_rotate(k, L->wk.rows, g, &T);
        rows_fold_rotate(v, L->wv.rows, g, &T);
        if ((rc = take_norm(m, &L->ffn_norm, g, err))) break;
        rows_fold_rotate(gt, L->w_gate.rows, g, &T);
        rows_fold_rotate(up, L->w_up.rows, g, &T);
        cols_rotate(o, 0, L->wo.cols, &T, col);
        cols_rotate(dn, 0, L->w_down.cols, &T, col);
        /* per head: v -> U v, and o's columns of each head -> U */
        for (int h = 0; h < c->n_kv_heads; h++) cols_rotate(v, (int64_t)h * hd, D, &U, col);
        if (c->qkv_bias && L->bv.data) {
            float *bv = own_f32(m, &L->bv, err);
            if (!bv) { rc = DLQ_ENOMEM; break; }
            for (int h = 0; h < c->n_kv_heads; h++) dlq_rot_apply(&U, bv + (size_t)h * hd);
        }
        for (int64_t i = 0; i < L->wo.rows; i++)
            for (int h = 0; h < c->n_heads; h++) dlq_rot_apply(&U, o + i * L->wo.cols + (size_t)h * hd);
    }
    if (!rc) {
        dlq_model_count_bytes(m);
        m->rotated = 1;
    }
out:
    free(g);
    free(col);
    dlq_rot_free(&T);
    dlq_rot_free(&U);
    return rc;
}
