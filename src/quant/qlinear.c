#include "quant/qlinear.h"

#include <cblas.h>
#include <string.h>

#include "kernels/linear.h"

void dlq_qlinear_wprime(const dlq_tlinear *L, float *wp) {
    size_t n = (size_t)(L->out * L->in);
    if (L->w) memcpy(wp, L->w, n * sizeof(float)); /* full QAT: trainable W */
    else dlq_to_f32(wp, L->w0.data, L->w0.dtype, n);
    if (L->r > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L->out, (int)L->in, L->r, L->scale, L->B, L->r, L->A,
                    (int)L->in, 1.0f, wp, (int)L->in);
}

void dlq_qlinear_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws) {
    const dlq_qstate *Q = L->q;
    dlq_qlinear_wprime(L, ws->wq);
    dlq_fq_forward(ws->wq, ws->wq, L->out, L->in, &Q->spec, Q->s, Q->b, Q->m, NULL);
    dlq_weight w = {.data = ws->wq, .dtype = DLQ_F32, .rows = L->out, .cols = L->in};
    dlq_linear(y, L->out, x, n, &w, L->bias0.data ? &L->bias0 : NULL, ws->scratch);
}

void dlq_qlinear_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws) {
    const dlq_qstate *Q = L->q;
    int in = (int)L->in, out = (int)L->out;
    dlq_qlinear_wprime(L, ws->wq);
    /* G[out, in] = dy^T x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)n, 1.0f, dy, out, x, in, 0.0f, ws->gq, in);
    /* STE: gq <- dL/dW' ; accumulate gs, gb, gm */
    dlq_fq_backward(ws->gq, ws->gq, ws->wq, L->out, L->in, &Q->spec, Q->s, Q->b, Q->m, Q->gs, Q->gb, Q->gm, Q->lsq);
    if (Q->dampen > 0) /* + dampen * mean over the matrix of (clip(x) - q)^2, through W' only */
        dlq_fq_dampen_grad(ws->gq, ws->wq, L->out, L->in, &Q->spec, Q->s, Q->b,
                           Q->dampen * ws->grad_scale / (float)(L->out * L->in));
    if (dx) { /* dx += dy Wq */
        dlq_fq_forward(ws->wq, ws->wq, L->out, L->in, &Q->spec, Q->s, Q->b, Q->m, NULL);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, out, 1.0f, dy, out, ws->wq, in, 1.0f, dx, in);
    }
    if (L->gw) /* full QAT: dL/dW = dL/dW' */
        for (size_t i = 0; i < (size_t)out * in; i++) L->gw[i] += ws->gq[i];
    if (L->r > 0) {
        if (L->gB) /* gB[out, r] += scale * dW' A^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, L->r, in, L->scale, ws->gq, in, L->A, in, 1.0f, L->gB, L->r);
        if (L->gA) /* gA[r, in] += scale * B^T dW' */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L->r, in, out, L->scale, L->B, L->r, ws->gq, in, 1.0f, L->gA, in);
    }
}
