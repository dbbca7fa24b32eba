/* Learned rotation of the residual stream (rotlearn.h). */
#include "quant/rotlearn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "quant/qlinear.h"

void dlq_rotgrad_in(float *gr, int d, const float *G, const float *W, int64_t rows) {
    /* W_rot = W R^T: dL/dR[a][b] = sum_i G[i][a] W[i][b] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, (int)rows, 1.0f, G, d, W, d, 1.0f, gr, d);
}

void dlq_rotgrad_out(float *gr, int d, const float *G, const float *W, int64_t cols) {
    /* W_rot = R W: dL/dR[a][b] = sum_j G[a][j] W[b][j] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, (int)cols, 1.0f, G, (int)cols, W, (int)cols, 1.0f, gr, d);
}

void dlq_headgrad_rows(float *gu, int hd, int nkv, const float *G, const float *W, int64_t cols) {
    /* rows of head h: W_rot = U_h W_h, dL/dU_h = G_h W_h^T */
    for (int h = 0; h < nkv; h++)
        dlq_rotgrad_out(gu + (size_t)h * hd * hd, hd, G + (size_t)h * hd * cols, W + (size_t)h * hd * cols, cols);
}

void dlq_headgrad_cols(float *gu, int hd, int nq, int nkv, const float *G, const float *W, int64_t rows) {
    /* columns of q head j: W_rot = W_j U_kv(j)^T, dL/dU_kv(j) += G_j^T W_j (strided blocks) */
    int ld = nq * hd, grp = nq / nkv;
    for (int j = 0; j < nq; j++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, (int)rows, 1.0f, G + (size_t)j * hd, ld,
                    W + (size_t)j * hd, ld, 1.0f, gu + (size_t)(j / grp) * hd * hd, hd);
}

void dlq_rtn_range_grad(float *gw, const float *w, int64_t rows, int64_t cols, const dlq_qspec *q, const float *gs,
                        const float *gb) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    float n = (float)((1 << q->bits) - 1), qmin = (float)dlq_qmin(q->bits), qmax = (float)dlq_qmax(q->bits);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const float *wg = w + r * cols + g * gsz;
            float *gg = gw + r * cols + g * gsz;
            int len = (int)(cols - g * gsz < gsz ? cols - g * gsz : gsz), lo = 0, hi = 0, am = 0;
            for (int i = 1; i < len; i++) {
                if (wg[i] < wg[lo]) lo = i;
                if (wg[i] > wg[hi]) hi = i;
                if (fabsf(wg[i]) > fabsf(wg[am])) am = i;
            }
            float dS = gs[r * ng + g], dB = gb ? gb[r * ng + g] : 0;
            if (q->sym) {
                if (wg[am] != 0) gg[am] += dS * (wg[am] > 0 ? 1.0f : -1.0f) / qmax;
            } else if (wg[hi] > wg[lo]) {
                gg[hi] += dS / n - dB * qmin / n;
                gg[lo] += -dS / n + dB * (1 + qmin / n);
            }
        }
}

static int input_side(int p) { return p != DLQ_P_O && p != DLQ_P_DOWN; }

static dlq_weight *proj_weight(dlq_layer *L, int p) {
    dlq_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return w[p];
}

/* dst = src rotated by r: input side src R^T ([rows][d]), output side R src ([d][cols]) */
static void rotate_into(float *dst, const float *src, int64_t rows, int64_t cols, int in_side, const float *r, int d) {
    if (in_side)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d, d, 1.0f, src, (int)cols, r, d, 0.0f, dst, d);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, (int)cols, d, 1.0f, r, d, src, (int)cols, 0.0f, dst, (int)cols);
}

/* per-head transforms of v / o (SpinQuant R2): U[l][h] (hd x hd) for each kv head h of layer l.
 * v's rows of head h -> U_h (rows), o's columns of every q head j of kv head h -> (cols) U_h^T */
typedef struct heads {
    int on, hd, nkv, nq;
    float *u;          /* [n_layers][nkv][hd][hd] */
    float *vr, *or_;   /* per layer: W_v R^T [kvd][d] and R W_o [d][qd] (before U) */
} heads;

static float *head_u(const heads *H, int l, int h) { return H->u + ((size_t)l * H->nkv + h) * H->hd * H->hd; }

/* dst rows of head h = U_h src rows (src, dst [nkv*hd][cols]) */
static void heads_rows(float *dst, const float *src, const heads *H, int l, int64_t cols) {
    for (int h = 0; h < H->nkv; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, H->hd, (int)cols, H->hd, 1.0f, head_u(H, l, h), H->hd,
                    src + (size_t)h * H->hd * cols, (int)cols, 0.0f, dst + (size_t)h * H->hd * cols, (int)cols);
}

/* dst columns of q head j = src columns U_{kv(j)}^T (src, dst [rows][nq*hd]) */
static void heads_cols(float *dst, const float *src, const heads *H, int l, int64_t rows) {
    int ld = H->nq * H->hd, grp = H->nq / H->nkv;
    for (int j = 0; j < H->nq; j++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, H->hd, H->hd, 1.0f, src + (size_t)j * H->hd, ld,
                    head_u(H, l, j / grp), H->hd, 0.0f, dst + (size_t)j * H->hd, ld);
}

/* the rotated weights of the student, re-quantized (RTN: s, b from the range, m = 1) */
static void set_student(dlq_tmodel *tm, dlq_model *m, const float *r, int d, const heads *H) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            const dlq_weight *w = proj_weight(&m->layers[l], p);
            if (H->on && p == DLQ_P_V) {
                rotate_into(H->vr + (size_t)l * w->rows * d, w->data, w->rows, w->cols, 1, r, d);
                heads_rows(T->w, H->vr + (size_t)l * w->rows * d, H, l, d);
            } else if (H->on && p == DLQ_P_O) {
                rotate_into(H->or_ + (size_t)l * d * w->cols, w->data, w->rows, w->cols, 0, r, d);
                heads_cols(T->w, H->or_ + (size_t)l * d * w->cols, H, l, d);
            } else
                rotate_into(T->w, w->data, w->rows, w->cols, input_side(p), r, d);
            dlq_quant_init_rtn(T->w, T->out, T->in, &T->q->spec, 0, T->q->s, T->q->b, T->q->m);
        }
    rotate_into(tm->emb, m->tok_emb.data, m->tok_emb.rows, d, 1, r, d);
    rotate_into(tm->head.w, m->lm_head.data, m->lm_head.rows, d, 1, r, d);
}

/* one Cayley step: R <- (I + a/2 D)^-1 (I - a/2 D) R for skew D, by the
 * fixed-point iteration Y = R - a/2 D (R + Y) (Li et al. 2020, three rounds) */
static void cayley(float *r, const float *D, float a, int d, float *y, float *t) {
    size_t n = (size_t)d * d;
    memcpy(y, r, n * sizeof *y);
    for (int it = 0; it < 3; it++) {
        for (size_t i = 0; i < n; i++) t[i] = r[i] + y[i];
        memcpy(y, r, n * sizeof *y);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, -0.5f * a, D, d, t, d, 1.0f, y, d);
    }
    memcpy(r, y, n * sizeof *r);
}

/* one Adam step on the orthogonal group: skew Riemannian gradient A = G R^T - R G^T,
 * Adam-normalized (moments m1, v1), then the Cayley step of size a along it */
static void orth_step(float *r, const float *g, float *m1, float *v1, int64_t step, float a, int d, float *A, float *y,
                      float *t) {
    size_t n = (size_t)d * d;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, g, d, r, d, 0.0f, A, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            float s = A[(size_t)i * d + j] - A[(size_t)j * d + i];
            A[(size_t)i * d + j] = s;
            A[(size_t)j * d + i] = -s;
        }
    double c1 = 1 - pow(b1, (double)(step + 1)), c2 = 1 - pow(b2, (double)(step + 1));
    for (size_t i = 0; i < n; i++) {
        m1[i] = b1 * m1[i] + (1 - b1) * A[i];
        v1[i] = b2 * v1[i] + (1 - b2) * A[i] * A[i];
        A[i] = (float)((m1[i] / c1) / (sqrt(v1[i] / c2) + eps));
    }
    for (int i = 0; i < d; i++) /* keep the step exactly skew */
        for (int j = 0; j < i; j++) {
            float s = 0.5f * (A[(size_t)i * d + j] - A[(size_t)j * d + i]);
            A[(size_t)i * d + j] = s;
            A[(size_t)j * d + i] = -s;
        }
    for (int i = 0; i < d; i++) A[(size_t)i * d + i] = 0;
    cayley(r, A, a, d, y, t);
}

int dlq_rotate_learn(dlq_model *m, dlq_dataset *ds, const dlq_rotlearn_opts *o, dlq_rotlearn_progress cb, void *user,
                     double *first, double *last, dlq_err *err) {
    const dlq_config *c = &m->cfg;
    const int d = c->dim, hd = c->head_dim, nl = c->n_layers;
    if (!m->rotated) return dlq_errf(err, DLQ_EINVAL, "learning a rotation needs the rotated model (dlq_model_rotate first)");
    if ((o->targets & ((1u << DLQ_N_PROJ) - 1)) != (1u << DLQ_N_PROJ) - 1)
        return dlq_errf(err, DLQ_EINVAL, "learning a rotation needs every projection quantized (the default --targets)");
    if (o->heads && c->qkv_bias)
        return dlq_errf(err, DLQ_EINVAL, "learning the per-head v/o rotations is not supported with v biases (%s)", m->path);
    dlq_tmodel_opts to = {.mode = DLQ_MODE_QUANT, .lora_r = 0, .lora_alpha = 1, .targets = o->targets, .seed = o->seed,
                          .B = o->B, .T = o->T, .recompute = o->recompute, .qspec = o->qspec, .full_qat = 1,
                          .loss = o->loss, .train_emb = 1};
    dlq_tmodel *tm = NULL;
    int rc = dlq_tmodel_create(&tm, m, &to, err);
    if (rc) return rc;
    /* s, b "trainable" only so the backward fills their gradients (no optimizer runs on them) */
    dlq_tmodel_set_trainable(tm, DLQ_TRAIN_W | DLQ_TRAIN_SB | DLQ_TRAIN_EMB);
    size_t n = (size_t)d * d, nh = (size_t)hd * hd;
    const int64_t kvd = (int64_t)c->n_kv_heads * hd, qd = (int64_t)c->n_heads * hd;
    heads H = {.on = o->heads, .hd = hd, .nkv = c->n_kv_heads, .nq = c->n_heads};
    int nU = H.on ? nl * H.nkv : 0;
    float *r = calloc(n, sizeof *r), *gr = malloc(n * sizeof *gr), *A = malloc(n * sizeof *A), *m1 = calloc(n, sizeof *m1),
          *v1 = calloc(n, sizeof *v1), *y = malloc(n * sizeof *y), *t = malloc(n * sizeof *t);
    float *gu = NULL, *um1 = NULL, *uv1 = NULL, *uA = NULL, *uy = NULL, *ut = NULL, *tmp = NULL;
    size_t big = (size_t)d * (size_t)(kvd > qd ? kvd : qd);
    dlq_batch b = {0};
    if (H.on) {
        H.u = calloc((size_t)nU * nh, sizeof *H.u);
        H.vr = malloc((size_t)nl * kvd * d * sizeof *H.vr);
        H.or_ = malloc((size_t)nl * qd * d * sizeof *H.or_);
        gu = malloc((size_t)nU * nh * sizeof *gu);
        um1 = calloc((size_t)nU * nh, sizeof *um1);
        uv1 = calloc((size_t)nU * nh, sizeof *uv1);
        uA = malloc(nh * sizeof *uA);
        uy = malloc(nh * sizeof *uy);
        ut = malloc(nh * sizeof *ut);
        tmp = malloc(big * sizeof *tmp);
        if (!H.u || !H.vr || !H.or_ || !gu || !um1 || !uv1 || !uA || !uy || !ut || !tmp) {
            rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
            goto out;
        }
        for (int k = 0; k < nU; k++)
            for (int i = 0; i < hd; i++) H.u[(size_t)k * nh + (size_t)i * hd + i] = 1.0f;
    }
    if (!r || !gr || !A || !m1 || !v1 || !y || !t) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }
    if ((rc = dlq_batch_alloc(&b, o->B, o->T, err))) goto out;
    for (int i = 0; i < d; i++) r[(size_t)i * d + i] = 1.0f;
    for (int64_t step = 0; step < o->steps; step++) {
        set_student(tm, m, r, d, &H);
        dlq_params_zero_grad(&tm->params);
        double ls;
        int64_t nv;
        if ((rc = dlq_data_next(ds, &b, err)) || (rc = dlq_tmodel_step(tm, b.tokens, b.targets, 1.0f, &ls, &nv, err))) goto out;
        double loss = nv ? ls / (double)nv : 0;
        if (!isfinite(loss)) { rc = dlq_errf(err, DLQ_EINVAL, "rotation learning: loss is %g at step %lld", loss, (long long)step + 1); goto out; }
        if (step == 0 && first) *first = loss;
        if (last) *last = loss;
        /* dL/dR through every rotated tensor (the frozen base weights are the unrotated side);
         * with per-head U: v = U_bd (W_v R^T) = (U_bd W_v) R^T and o = (R W_o) U_bd^T = R (W_o U_bd^T) */
        memset(gr, 0, n * sizeof *gr);
        if (H.on) memset(gu, 0, (size_t)nU * nh * sizeof *gu);
        for (int l = 0; l < nl; l++)
            for (int p = 0; p < DLQ_N_PROJ; p++) {
                const dlq_tlinear *T = &tm->layers[l].p[p];
                const dlq_weight *w = proj_weight(&m->layers[l], p);
                dlq_rtn_range_grad(T->gw, T->w, T->out, T->in, &T->q->spec, T->q->gs, T->q->gb);
                if (H.on && p == DLQ_P_V) {
                    heads_rows(tmp, w->data, &H, l, d);
                    dlq_rotgrad_in(gr, d, T->gw, tmp, w->rows);
                    dlq_headgrad_rows(gu + (size_t)l * H.nkv * nh, hd, H.nkv, T->gw, H.vr + (size_t)l * kvd * d, d);
                } else if (H.on && p == DLQ_P_O) {
                    heads_cols(tmp, w->data, &H, l, d);
                    dlq_rotgrad_out(gr, d, T->gw, tmp, w->cols);
                    dlq_headgrad_cols(gu + (size_t)l * H.nkv * nh, hd, H.nq, H.nkv, T->gw, H.or_ + (size_t)l * d * qd, d);
                } else if (input_side(p))
                    dlq_rotgrad_in(gr, d, T->gw, w->data, w->rows);
                else
                    dlq_rotgrad_out(gr, d, T->gw, w->data, w->cols);
            }
        dlq_rotgrad_in(gr, d, tm->g_emb, m->tok_emb.data, m->tok_emb.rows);
        dlq_rotgrad_in(gr, d, tm->head.gw, m->lm_head.data, m->lm_head.rows);
        /* cosine decay of the step size */
        float lr = (float)(o->lr * 0.5 * (1 + cos(M_PI * (double)step / (double)o->steps)));
        orth_step(r, gr, m1, v1, step, lr, d, A, y, t);
        for (int k = 0; k < nU; k++)
            orth_step(H.u + (size_t)k * nh, gu + (size_t)k * nh, um1 + (size_t)k * nh, uv1 + (size_t)k * nh, step, lr, hd,
                      uA, uy, ut);
        if ((step + 1) % 25 == 0) {
            int bad = dlq_orthonormalize(r, d);
            for (int k = 0; k < nU && !bad; k++) bad = dlq_orthonormalize(H.u + (size_t)k * nh, hd);
            if (bad) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }
        }
        if (cb) cb(user, step + 1, o->steps, loss);
    }
    int bad = dlq_orthonormalize(r, d);
    for (int k = 0; k < nU && !bad; k++) bad = dlq_orthonormalize(H.u + (size_t)k * nh, hd);
    if (bad) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }
    /* fold R (and U) into the model: the same maps as the student's, on the full-precision weights */
    for (int l = 0; l < nl; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_weight *w = proj_weight(&m->layers[l], p);
            size_t sz = (size_t)(w->rows * w->cols);
            float *t1 = malloc(sz * sizeof *t1), *t2 = malloc(sz * sizeof *t2);
            if (!t1 || !t2) { free(t1); free(t2); rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }
            rotate_into(t1, w->data, w->rows, w->cols, input_side(p), r, d);
            if (H.on && p == DLQ_P_V) heads_rows(t2, t1, &H, l, d);
            else if (H.on && p == DLQ_P_O) heads_cols(t2, t1, &H, l, d);
            else memcpy(t2, t1, sz * sizeof *t1);
            memcpy((void *)w->data, t2, sz * sizeof *t2);
            free(t1);
            free(t2);
        }
    dlq_weight *ws[] = {&m->tok_emb, &m->lm_head};
    for (int k = 0; k < 2; k++) {
        float *t1 = malloc((size_t)(ws[k]->rows * d) * sizeof *t1);
        if (!t1) { rc = dlq_errf(err, DLQ_ENOMEM, "out of memory"); goto out; }
        rotate_into(t1, ws[k]->data, ws[k]->rows, d, 1, r, d);
        memcpy((void *)ws[k]->data, t1, (size_t)(ws[k]->rows * d) * sizeof *t1);
        free(t1);
    }
out:
    dlq_batch_free(&b);
    free(r); free(gr); free(A); free(m1); free(v1); free(y); free(t);
    free(H.u); free(H.vr); free(H.or_); free(gu); free(um1); free(uv1); free(uA); free(uy); free(ut); free(tmp);
    dlq_tmodel_destroy(tm);
    return rc;
}
