#include "train/tlinear.h"

#include <cblas.h>

#include "kernels/linear.h"

static dlq_weight view_f32(const float *w, int64_t rows, int64_t cols) {
    dlq_weight v = {.data = w, .dtype = DLQ_F32, .rows = rows, .cols = cols};
    return v;
}

/* y += scale * (x A^T) B^T ; t = x A^T kept in ws->t */
static void lora_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, L->r, (int)L->in, 1.0f, x, (int)L->in, L->A,
                (int)L->in, 0.0f, ws->t, L->r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L->out, L->r, L->scale, ws->t, L->r, L->B, L->r,
                1.0f, y, (int)L->out);
}

static void lora_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws) {
    int r = L->r, in = (int)L->in, out = (int)L->out;
    /* t = x A^T [n, r]; u = dy B [n, r] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, r, in, 1.0f, x, in, L->A, in, 0.0f, ws->t, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, r, out, 1.0f, dy, out, L->B, r, 0.0f, ws->u, r);
    if (L->gB) /* gB[out, r] += scale * dy^T t */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, (int)n, L->scale, dy, out, ws->t, r, 1.0f, L->gB, r);
    if (L->gA) /* gA[r, in] += scale * u^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, (int)n, L->scale, ws->u, r, x, in, 1.0f, L->gA, in);
    if (dx) /* dx[n, in] += scale * u A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, in, r, L->scale, ws->u, r, L->A, in, 1.0f, dx, in);
}

void dlq_tl_forward(const dlq_tlinear *L, float *y, const float *x, int64_t n, dlq_tl_ws *ws) {
    switch (L->kind) {
    case DLQ_TL_FULL: {
        dlq_weight w = view_f32(L->w, L->out, L->in), b = view_f32(L->b, 1, L->out);
        dlq_linear(y, L->out, x, n, &w, L->b ? &b : (L->bias0.data ? &L->bias0 : NULL), ws->scratch);
        break;
    }
    case DLQ_TL_QUANT: dlq_qlinear_forward(L, y, x, n, ws); return;
    case DLQ_TL_QALORA: dlq_qalora_forward(L, y, x, n, ws); return;
    case DLQ_TL_FROZEN:
    case DLQ_TL_LORA:
        dlq_linear(y, L->out, x, n, &L->w0, L->bias0.data ? &L->bias0 : NULL, ws->scratch);
        if (L->kind == DLQ_TL_LORA) lora_forward(L, y, x, n, ws);
        break;
    }
}

void dlq_tl_backward(const dlq_tlinear *L, float *dx, const float *dy, const float *x, int64_t n, dlq_tl_ws *ws) {
    switch (L->kind) {
    case DLQ_TL_FULL: {
        dlq_weight w = view_f32(L->w, L->out, L->in);
        dlq_linear_backward(dx, L->gw, L->gb, dy, L->out, x, n, &w, ws->scratch);
        break;
    }
    case DLQ_TL_QUANT: dlq_qlinear_backward(L, dx, dy, x, n, ws); return;
    case DLQ_TL_QALORA: dlq_qalora_backward(L, dx, dy, x, n, ws); return;
    case DLQ_TL_FROZEN:
    case DLQ_TL_LORA:
        if (dx) dlq_linear_backward(dx, NULL, NULL, dy, L->out, x, n, &L->w0, ws->scratch);
        if (L->kind == DLQ_TL_LORA) lora_backward(L, dx, dy, x, n, ws);
        break;
    }
}
