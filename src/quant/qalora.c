#include "quant/qalora.h"

#include <cblas.h>
#include <string.h>

#include "kernels/linear.h"

void dlq_qalora_pool(float *xp, const float *x, int64_t n, int64_t in, int group) {
    int gs = dlq_qgroup_size(in, group);
    int64_t ng = dlq_qgroups(in, group);
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * in;
        float *pr = xp + t * ng;
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * gs, j1 = j0 + gs < in ? j0 + gs : in;
            float s = 0;
            for (int64_t j = j0; j < j1; j++) s += xr[j];
            pr[g] = s / (float)(j1 - j0);
        }
    }
}

/* the frozen fake-quantized base weight m*(s*q+b) into wq (q into qout if non-NULL) */
static void base_wq(const dlq_tlinear *L, float *wq, int8_t *qout) {
    const dlq_qstate *Q = L->q;
    size_t n = (size_t)(L->out * L->in);
    if (L->w) memcpy(wq, L->w, n * sizeof(float));
    else dlq_to_f32(wq, L->w0.data, L->w0.dtype, n);
    dlq_fq_forward(wq, wq, L->out, L->in, &Q->spec, Q->s, Q->b, Q->m, qout);
}

void dlq_qalora_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws) {
    base_wq(L, ws->wq, NULL);
    dlq_weight w = {.data = ws->wq, .dtype = DLQ_F32, .rows = L->out, .cols = L->in};
    dlq_linear(y, L->out, x, n, &w, L->bias0.data ? &L->bias0 : NULL, ws->scratch);
    if (L->r <= 0) return;
    int ng = (int)L->q->ngroups, r = L->r;
    dlq_qalora_pool(ws->xp, x, n, L->in, L->q->spec.group);
    /* t = xp A^T [n, r]; y += scale * t B^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, r, ng, 1.0f, ws->xp, ng, L->A, ng, 0.0f, ws->t, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L->out, r, L->scale, ws->t, r, L->B, r, 1.0f, y,
                (int)L->out);
}

void dlq_qalora_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws) {
    int in = (int)L->in, out = (int)L->out;
    if (dx) { /* dx += dy Wq (the base is frozen: no STE gradient needed) */
        base_wq(L, ws->wq, NULL);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, out, 1.0f, dy, out, ws->wq, in, 1.0f, dx, in);
    }
    if (L->r <= 0) return;
    int ng = (int)L->q->ngroups, r = L->r;
    dlq_qalora_pool(ws->xp, x, n, L->in, L->q->spec.group);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, r, ng, 1.0f, ws->xp, ng, L->A, ng, 0.0f, ws->t, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, r, out, 1.0f, dy, out, L->B, r, 0.0f, ws->u, r);
    if (L->gB) /* gB[out, r] += scale * dy^T t */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, (int)n, L->scale, dy, out, ws->t, r, 1.0f, L->gB, r);
    if (L->gA) /* gA[r, ng] += scale * u^T xp */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, ng, (int)n, L->scale, ws->u, r, ws->xp, ng, 1.0f, L->gA, ng);
    if (dx) { /* dxp = scale * u A [n, ng]; the mean spreads it evenly over the group */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, ng, r, L->scale, ws->u, r, L->A, ng, 0.0f, ws->dxp, ng);
        int gs = dlq_qgroup_size(L->in, L->q->spec.group);
        for (int64_t t = 0; t < n; t++)
            for (int g = 0; g < ng; g++) {
                int64_t j0 = (int64_t)g * gs, j1 = j0 + gs < in ? j0 + gs : in;
                float d = ws->dxp[t * ng + g] / (float)(j1 - j0);
                for (int64_t j = j0; j < j1; j++) dx[t * in + j] += d;
            }
    }
}

/* ba [out, ng] = scale * B A / |g| */
static void delta_per_group(const dlq_tlinear *L, float *ba) {
    int ng = (int)L->q->ngroups, gs = dlq_qgroup_size(L->in, L->q->spec.group);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L->out, ng, L->r, L->scale, L->B, L->r, L->A, ng, 0.0f, ba, ng);
    for (int64_t o = 0; o < L->out; o++)
        for (int g = 0; g < ng; g++) {
            int64_t j0 = (int64_t)g * gs, j1 = j0 + gs < L->in ? j0 + gs : L->in;
            ba[o * ng + g] /= (float)(j1 - j0);
        }
}

void dlq_qalora_merge_layer(const dlq_tlinear *L, float *wp, int8_t *q, float *scale, float *bias) {
    const dlq_qstate *Q = L->q;
    base_wq(L, wp, q);
    size_t ng = (size_t)(L->out * Q->ngroups);
    if (L->r > 0) delta_per_group(L, wp); /* wp is free again: [out*in] >= [out*ng] */
    for (size_t i = 0; i < ng; i++) {
        scale[i] = Q->m[i] * Q->s[i];
        bias[i] = Q->m[i] * Q->b[i] + (L->r > 0 ? wp[i] : 0.0f);
    }
}

void dlq_qalora_effective_weight(const dlq_tlinear *L, float *w, float *ba) {
    base_wq(L, w, NULL);
    if (L->r <= 0) return;
    int64_t ng = L->q->ngroups;
    int gs = dlq_qgroup_size(L->in, L->q->spec.group);
    delta_per_group(L, ba);
    for (int64_t o = 0; o < L->out; o++)
        for (int64_t j = 0; j < L->in; j++) w[o * L->in + j] += ba[o * ng + j / gs];
}
