/* Backward of Y = X W^T (+ b). See kernels/linear.h. */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/linear.h"
#include "kernels/vec.h"

#define ROW_BLOCK_FLOATS (1u << 20) /* as the forward: scratch = dlq_linear_scratch_floats(in) */

static int64_t block_rows(int64_t cols) {
    int64_t rows = (int64_t)ROW_BLOCK_FLOATS / cols;
    return rows < 16 ? 16 : rows;
}

void dlq_linear_backward(float *dx, float *dw, float *db, const float *dy, int64_t ldy, const float *x, int64_t n,
                         const dlq_weight *w, float *scratch) {
    int64_t out = w->rows, in = w->cols;
    if (n <= 0 || out <= 0 || in <= 0) return;
    if (dx) {
        /* dx[n, in] += dy[n, out] W[out, in] */
        int aligned = ((uintptr_t)w->data % sizeof(float)) == 0;
        if (w->dtype == DLQ_F32 && aligned) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0f, dy, (int)ldy,
                        (const float *)w->data, (int)in, 1.0f, dx, (int)in);
        } else {
            int64_t rb = block_rows(in);
            for (int64_t r0 = 0; r0 < out; r0 += rb) {
                int64_t nr = out - r0 < rb ? out - r0 : rb;
                dlq_weight_rows_f32(w, r0, nr, scratch);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)nr, 1.0f, dy + r0,
                            (int)ldy, scratch, (int)in, 1.0f, dx, (int)in);
            }
        }
    }
    if (dw) /* dw[out, in] += dy^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0f, dy, (int)ldy, x,
                    (int)in, 1.0f, dw, (int)in);
    if (db) {
        /* column sums: column blocks in parallel, rows in order inside each */
        enum { CB = 64 };
        int64_t nb = (out + CB - 1) / CB;
        #pragma omp parallel for schedule(static) if (n * out > 65536)
        for (int64_t b = 0; b < nb; b++) {
            int64_t j0 = b * CB, j1 = j0 + CB < out ? j0 + CB : out;
            double acc[CB] = {0};
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += dy[i * ldy + j];
            for (int64_t j = j0; j < j1; j++) db[j] += (float)acc[j - j0];
        }
    }
}

void dlq_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, int64_t ldy, const float *x, int64_t n,
                             const dlq_weight *w) {
    int64_t out = w->rows, in = w->cols;
    if (n <= 0 || out <= 0 || in <= 0) return;
    float *wf = malloc((size_t)(out * in) * sizeof *wf);
    if (!wf) return;
    for (int64_t r = 0; r < out; r++) dlq_weight_row(w, r, wf + r * in);
    if (dx)
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < in; c++) {
                double s = 0;
                for (int64_t r = 0; r < out; r++) s += (double)dy[i * ldy + r] * wf[r * in + c];
                dx[i * in + c] += (float)s;
            }
    if (dw)
        for (int64_t r = 0; r < out; r++)
            for (int64_t c = 0; c < in; c++) {
                double s = 0;
                for (int64_t i = 0; i < n; i++) s += (double)dy[i * ldy + r] * x[i * in + c];
                dw[r * in + c] += (float)s;
            }
    if (db)
        for (int64_t r = 0; r < out; r++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += dy[i * ldy + r];
            db[r] += (float)s;
        }
    free(wf);
}
