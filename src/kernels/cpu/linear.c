#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/linear.h"
#include "kernels/qkernels.h"
#include "kernels/qpack.h"
#include "kernels/vec.h"

#define ROW_BLOCK_FLOATS (1u << 20) /* 4 MiB of widened weight rows per sgemm */

/* rows per block: ROW_BLOCK_FLOATS / cols, at least 16; so a scratch sized
 * for the widest weight fits every narrower one too */
static int64_t block_rows(int64_t cols) {
    int64_t rows = (int64_t)ROW_BLOCK_FLOATS / cols;
    return rows < 16 ? 16 : rows;
}

size_t dlq_linear_scratch_floats(int64_t cols) {
    size_t a = ROW_BLOCK_FLOATS, b = 16 * (size_t)cols;
    return a > b ? a : b;
}

/* one row of a weight read with pread (dlq_weight.row_fd): 1 on success; on a
 * short read or an error 0, and the caller reads the mapping instead */
static int read_row(int fd, int64_t off, size_t rb, dlq_dtype dt, size_t n, float *out) {
    char stack[16384], *buf = rb <= sizeof stack ? stack : malloc(rb);
    size_t got = 0;
    while (buf && got < rb) {
        ssize_t k = pread(fd, buf + got, rb - got, (off_t)(off + (int64_t)got));
        if (k <= 0) break;
        got += (size_t)k;
    }
    int ok = buf && got == rb;
    if (ok) dlq_to_f32(out, buf, dt, n);
    if (buf != stack) free(buf);
    return ok;
}

void dlq_weight_row(const dlq_weight *w, int64_t r, float *out) {
    if (w->dtype == DLQ_QPACK) {
        dlq_qdequant_w_row(w, r, out);
        return;
    }
    size_t es = dlq_dtype_size(w->dtype), rb = (size_t)w->cols * es;
    if (w->row_fd_set && read_row(w->row_fd, w->row_off + (int64_t)(r * (int64_t)rb), rb, w->dtype, (size_t)w->cols, out))
        return;
    dlq_to_f32(out, (const char *)w->data + (size_t)r * rb, w->dtype, (size_t)w->cols);
}

static void add_bias(float *y, int64_t ldy, int64_t n, const dlq_weight *bias) {
    if (!bias || !bias->data) return;
    float b[bias->cols];
    dlq_weight_row(bias, 0, b);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < bias->cols; j++) y[i * ldy + j] += b[j];
}

/* decode path: n tiny, stream the weight once, widen on the fly; packed
 * weights are unpacked in registers (kernels/qkernels.h) */
static void linear_small(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, float *scratch) {
    int64_t out = w->rows, in = w->cols;
    if (w->dtype == DLQ_QPACK) {
        dlq_qgemv(y, ldy, x, n, w, scratch);
        return;
    }
    size_t rb = (size_t)in * dlq_dtype_size(w->dtype);
    #pragma omp parallel for schedule(static) if (out * in > 32768)
    for (int64_t r = 0; r < out; r++) {
        const char *row = (const char *)w->data + (size_t)r * rb;
        for (int64_t i = 0; i < n; i++) y[i * ldy + r] = dlq_dot_w(row, w->dtype, x + i * in, (size_t)in);
    }
}

void dlq_weight_rows_f32(const dlq_weight *w, int64_t r0, int64_t nr, float *dst) {
    if (w->dtype == DLQ_QPACK) {
        dlq_qdequant_rows(w, r0, nr, dst);
        return;
    }
    #pragma omp parallel for schedule(static) if (nr * w->cols > 32768)
    for (int64_t r = 0; r < nr; r++) dlq_weight_row(w, r0 + r, dst + r * w->cols);
}

void dlq_linear(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias,
                float *scratch) {
    int64_t out = w->rows, in = w->cols;
    int aligned = ((uintptr_t)w->data % sizeof(float)) == 0;
    /* decode shapes take the streaming dot-product path for every dtype: for
     * n = 1 OpenBLAS 0.3.21's sgemm packs the whole weight first, which made
     * fp32 decode several times slower than reading the weight once */
    if (n <= 4) {
        linear_small(y, ldy, x, n, w, scratch);
    } else if (w->dtype == DLQ_F32 && aligned) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x, (int)in,
                    (const float *)w->data, (int)in, 0.0f, y, (int)ldy);
    } else {
        int64_t rb = block_rows(in);
        for (int64_t r0 = 0; r0 < out; r0 += rb) {
            int64_t nr = out - r0 < rb ? out - r0 : rb;
            dlq_weight_rows_f32(w, r0, nr, scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr, (int)in, 1.0f, x, (int)in, scratch,
                        (int)in, 0.0f, y + r0, (int)ldy);
        }
    }
    add_bias(y, ldy, n, bias);
}

void dlq_linear_rowwise(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias,
                        float *scratch) {
    linear_small(y, ldy, x, n, w, scratch);
    add_bias(y, ldy, n, bias);
}

void dlq_linear_ref(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, const dlq_weight *bias) {
    int64_t out = w->rows, in = w->cols;
    float row[in], b[out > 0 ? out : 1];
    if (bias && bias->data) dlq_weight_row(bias, 0, b);
    for (int64_t r = 0; r < out; r++) {
        dlq_weight_row(w, r, row);
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t k = 0; k < in; k++) s += (double)row[k] * x[i * in + k];
            if (bias && bias->data) s += b[r];
            y[i * ldy + r] = (float)s;
        }
    }
}
