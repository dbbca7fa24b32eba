/* Packed-weight kernels (kernels/qkernels.h) against scalar references, on
 * every bit width 2..8, odd shapes, tails, ragged last groups, F32 and F16
 * group parameters, 1..4 vectors, and every instruction set this CPU runs
 * (scalar, AVX2, AVX-512; the ones it cannot run are reported as SKIP).
 * Packed rows end right before a PROT_NONE page, so a kernel that reads
 * past the last byte of the tensor crashes the test instead of passing. */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/rng.h"
#ifndef DLQ_QK_STANDALONE /* -DDLQ_QK_STANDALONE: the kernels alone, no BLAS (to run on another machine) */
#include "kernels/linear.h"
#endif
#include "kernels/qkernels.h"
#include "kernels/qpack.h"
#include "t.h"

typedef struct fixture {
    dlq_weight w;
    int8_t *q;          /* [rows][in] signed integers */
    float *s, *b;       /* [rows][ng] as the kernels see them (F16-rounded when F16) */
    void *map;          /* guard mapping */
    size_t map_len;
    uint16_t *sh, *bh;
} fixture;

static void fixture_free(fixture *f) {
    free(f->q); free(f->s); free(f->b); free(f->sh); free(f->bh);
    if (f->map) munmap(f->map, f->map_len);
}

static void fixture_make(fixture *f, dlq_rng *r, int64_t rows, int64_t in, int bits, int group, int f16) {
    memset(f, 0, sizeof *f);
    int64_t ng = (in + group - 1) / group, rb = dlq_qrow_bytes(in, bits);
    size_t bytes = (size_t)(rows * rb), pg = (size_t)sysconf(_SC_PAGESIZE);
    f->map_len = (bytes + pg - 1) / pg * pg + pg;
    f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect((char *)f->map + f->map_len - pg, pg, PROT_NONE);
    uint8_t *packed = (uint8_t *)f->map + (f->map_len - pg - bytes); /* ends at the guard page */
    f->q = malloc((size_t)(rows * in));
    f->s = malloc((size_t)(rows * ng) * sizeof(float));
    f->b = malloc((size_t)(rows * ng) * sizeof(float));
    f->sh = malloc((size_t)(rows * ng) * 2);
    f->bh = malloc((size_t)(rows * ng) * 2);
    int qmin = -(1 << (bits - 1));
    for (int64_t i = 0; i < rows * in; i++) f->q[i] = (int8_t)(qmin + (int)(dlq_rng_u64(r) % (1u << bits)));
    for (int64_t i = 0; i < rows * ng; i++) {
        f->s[i] = (float)(0.01 + 0.05 * dlq_rng_f64(r));
        f->b[i] = (float)(0.1 * dlq_rng_normal(r));
        if (f16) {
            f->sh[i] = dlq_f32_to_f16(f->s[i]); f->bh[i] = dlq_f32_to_f16(f->b[i]);
            f->s[i] = dlq_f16_to_f32(f->sh[i]); f->b[i] = dlq_f16_to_f32(f->bh[i]);
        }
    }
    for (int64_t i = 0; i < rows; i++) dlq_qpack_row(packed + i * rb, f->q + i * in, in, bits);
    dlq_weight *w = &f->w;
    w->data = packed; w->dtype = DLQ_QPACK; w->rows = rows; w->cols = in;
    w->qbits = bits; w->qgroup = group; w->qng = ng; w->row_bytes = rb;
    if (f16) { w->qpdtype = DLQ_F16; w->qscale_h = f->sh; w->qbias_h = f->bh; }
    else { w->qpdtype = DLQ_F32; w->qscale = f->s; w->qbias = f->b; }
}

static double wref(const fixture *f, int64_t r, int64_t j) {
    int64_t g = j / f->w.qgroup, ng = f->w.qng;
    return (double)f->s[r * ng + g] * f->q[r * f->w.cols + j] + (double)f->b[r * ng + g];
}

/* the magnitude the u-form w = s*u + (b + s*qmin) rounds against */
static double wmag(const fixture *f, int64_t r, int64_t j) {
    int64_t g = j / f->w.qgroup, ng = f->w.qng;
    int qmin = 1 << (f->w.qbits - 1);
    double u = f->q[r * f->w.cols + j] + qmin;
    return fabs(f->s[r * ng + g]) * (u + qmin) + fabs(f->b[r * ng + g]);
}

static const int64_t shapes[][3] = {
    /* rows, in, group */
    {7, 172, 32},  /* ragged last group of 12, tail of 44 after 64-chunks */
    {5, 200, 64},  /* ragged last group of 8 */
    {3, 64, 64},   {4, 320, 160}, /* 64-chunk straddling two groups of 160 */
    {6, 256, 128}, {3, 129, 32},  /* tail of one element */
    {2, 1, 1},     {3, 37, 5},    /* group not a multiple of 16: scalar fallback */
    {4, 90, 90},   /* per-channel */
    {5, 48, 16},   {9, 1000, 64}, {2, 2048, 128},
};

static void test_one(dlq_rng *r, const int64_t *sh, int bits, int f16, int nisa, const dlq_qisa *isas) {
    int64_t rows = sh[0], in = sh[1];
    int group = (int)sh[2];
    fixture f;
    fixture_make(&f, r, rows, in, bits, group, f16);
    const int N = 4;
    float *x = malloc((size_t)(N * in) * sizeof(float)), *y = malloc((size_t)(N * rows) * sizeof(float));
    float *deq = malloc((size_t)(rows * in) * sizeof(float));
    void *scratch = malloc(dlq_qgemv_scratch_bytes(in, N));
    for (int64_t i = 0; i < N * in; i++) x[i] = (float)dlq_rng_normal(r);
    char what[128];
    for (int ii = 0; ii < nisa; ii++) {
        dlq_qisa isa = dlq_qisa_force(isas[ii]);
        snprintf(what, sizeof what, "%s bits %d [%lld x %lld] g%d %s", dlq_qisa_name(isa), bits, (long long)rows,
                 (long long)in, group, f16 ? "f16" : "f32");
        /* dequantization */
        dlq_qdequant_rows(&f.w, 0, rows, deq);
        double e = 0;
        for (int64_t rr = 0; rr < rows; rr++)
            for (int64_t j = 0; j < in; j++) e = fmax(e, fabs(deq[rr * in + j] - wref(&f, rr, j)));
        CHECK(e < 1e-6, "dequant %s: max err %g", what, e);
        /* exact fp32 gemv, 1..4 vectors */
        dlq_qact_force(DLQ_QACT_F32);
        for (int n = 1; n <= N; n++) {
            dlq_qgemv(y, rows, x, n, &f.w, scratch);
            double worst = 0;
            for (int i = 0; i < n; i++)
                for (int64_t rr = 0; rr < rows; rr++) {
                    double ref = 0, mag = 0;
                    for (int64_t j = 0; j < in; j++) { ref += wref(&f, rr, j) * x[i * in + j]; mag += wmag(&f, rr, j) * fabs(x[i * in + j]); }
                    worst = fmax(worst, fabs(y[i * rows + rr] - ref) / (mag + 1e-6));
                }
            CHECK(worst < 2e-6, "gemv f32 %s n %d: relative err %g", what, n, worst);
        }
        /* int8 activations: against the scalar int8 reference, and within the
         * rounding bound of the exact product */
        dlq_qact_force(DLQ_QACT_I8);
        for (int n = 1; n <= N; n += 3) {
            dlq_qgemv(y, rows, x, n, &f.w, scratch);
            double worst_ref = 0, worst_bound = 0;
            int i8 = dlq_qgemv_uses_i8(&f.w);
            CHECK(i8 == (group % 32 == 0 && (isa != DLQ_QISA_AVX2 || bits == 4 || bits == 3 || bits == 2 || bits == 8)), "i8 path choice %s", what);
            for (int i = 0; i < n; i++)
                for (int64_t rr = 0; rr < rows; rr++) {
                    double exact = 0, mag = 0, bound = 0;
                    const float *xi = x + i * in;
                    for (int64_t k = 0; k * 32 < in; k++) {
                        double amax = 0;
                        int64_t a = k * 32, bnd = a + 32 < in ? a + 32 : in;
                        for (int64_t j = a; j < bnd; j++) amax = fmax(amax, fabs(xi[j]));
                        for (int64_t j = a; j < bnd; j++) {
                            int64_t g = j / group;
                            double u = f.q[rr * in + j] + (1 << (bits - 1));
                            bound += f.s[rr * f.w.qng + g] * u * (amax / 127.0) * 0.5;
                        }
                    }
                    for (int64_t j = 0; j < in; j++) { exact += wref(&f, rr, j) * xi[j]; mag += wmag(&f, rr, j) * fabs(xi[j]); }
                    float ref = i8 ? dlq_qdot_i8_ref(&f.w, rr, xi) : (float)exact;
                    worst_ref = fmax(worst_ref, fabs(y[i * rows + rr] - ref) / (mag + bound + 1e-6));
                    double d = fabs(y[i * rows + rr] - exact);
                    worst_bound = fmax(worst_bound, d - (i8 ? bound * (1 + 1e-4) : 0) - 1e-5 * mag);
                }
            CHECK(worst_ref < 4e-6, "gemv i8 %s n %d vs scalar i8 reference: relative err %g", what, n, worst_ref);
            CHECK(worst_bound <= 0, "gemv i8 %s n %d outside the activation rounding bound by %g", what, n, worst_bound);
        }
        dlq_qact_force(DLQ_QACT_F32);
#ifndef DLQ_QK_STANDALONE
        /* through dlq_linear: decode path (n 2) and the dequantize + sgemm path (n 7) */
        float *xl = malloc((size_t)(7 * in) * sizeof(float)), *yl = malloc((size_t)(7 * rows) * sizeof(float)),
              *yr = malloc((size_t)(7 * rows) * sizeof(float));
        float *ls = malloc(dlq_linear_scratch_floats(in) * sizeof(float));
        for (int64_t i = 0; i < 7 * in; i++) xl[i] = (float)dlq_rng_normal(r);
        for (int n = 2; n <= 7; n += 5) {
            dlq_linear(yl, rows, xl, n, &f.w, NULL, ls);
            dlq_linear_ref(yr, rows, xl, n, &f.w, NULL);
            double m = t_maxabs(yl, yr, (size_t)(n * rows), NULL), mag = 1;
            for (int64_t i = 0; i < n * rows; i++) mag = fmax(mag, fabs(yr[i]));
            CHECK(m < 2e-6 * mag * sqrt((double)in), "dlq_linear %s n %d: max err %g", what, n, m);
        }
        free(xl); free(yl); free(yr); free(ls);
#endif
    }
    free(x); free(y); free(deq); free(scratch);
    fixture_free(&f);
}

int main(void) {
    dlq_rng r;
    dlq_rng_seed(&r, 20261123);
    dlq_qisa all[3] = {DLQ_QISA_SCALAR, DLQ_QISA_AVX2, DLQ_QISA_AVX512}, isas[3];
    int nisa = 0;
    dlq_qisa sup = dlq_qisa_supported();
    for (int i = 0; i < 3; i++) {
        if (all[i] <= sup) isas[nisa++] = all[i];
        else SKIP("this CPU does not run the %s kernels", dlq_qisa_name(all[i]));
    }
    printf("packed kernels: testing %d instruction set(s), best %s\n", nisa, dlq_qisa_name(sup));
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int bits = 2; bits <= 8; bits++) test_one(&r, shapes[s], bits, (int)(s + bits) % 2, nisa, isas);
    /* both parameter dtypes on the shapes that matter most */
    for (int bits = 2; bits <= 8; bits++) {
        test_one(&r, shapes[0], bits, 0, nisa, isas);
        test_one(&r, shapes[0], bits, 1, nisa, isas);
    }
    /* the forcing API caps at what the CPU runs */
    CHECK(dlq_qisa_force(DLQ_QISA_AVX512) == sup, "force avx512 gave %s", dlq_qisa_name(dlq_qisa_active()));
    CHECK(dlq_qisa_force(DLQ_QISA_SCALAR) == DLQ_QISA_SCALAR, "force scalar");
    return T_DONE();
}
