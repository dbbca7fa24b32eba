#include "quant/gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Debian's OpenBLAS exports the Fortran symbols; no lapacke header
 * here). The trailing size_t is the hidden Fortran length of `uplo`. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

void dlq_gptq_opts_default(dlq_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->blocksize = 128;
    o->percdamp = 0.01;
}

void dlq_gptq_add_hessian(double *H, const float *x, int64_t n, int64_t in) {
    const int64_t chunk = 256;
    double *xd = malloc((size_t)(chunk * in) * sizeof(double));
    if (!xd) { /* fall back to the unblocked rank-1 form */
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < in; i++)
                for (int64_t j = 0; j < in; j++) H[i * in + j] += 2.0 * x[t * in + i] * x[t * in + j];
        return;
    }
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        int64_t m = n - t0 < chunk ? n - t0 : chunk;
        for (int64_t i = 0; i < m * in; i++) xd[i] = x[t0 * in + i];
        /* upper triangle (row-major) of H += 2 xd^T xd */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)in, (int)m, 2.0, xd, (int)in, 1.0, H, (int)in);
    }
    free(xd);
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < i; j++) H[i * in + j] = H[j * in + i];
}

/* Row-major U (upper) with A = U^T U, in place; the lower triangle zeroed.
 * Fortran sees the transpose, whose LOWER factor L (A = L L^T) is our U^T. */
static int chol_upper(double *A, int n) {
    int info = 0;
    dpotrf_("L", &n, A, &n, &info, 1);
    if (info) return info;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) A[(size_t)i * n + j] = 0;
    return 0;
}

/* U = upper Cholesky factor of H^-1; H is destroyed (returned in U's place). */
static int hinv_chol(double *H, int n) {
    int info = 0;
    dpotrf_("L", &n, H, &n, &info, 1);
    if (info) return info;
    dpotri_("L", &n, H, &n, &info, 1); /* H^-1 in Fortran's lower = our upper triangle */
    if (info) return info;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) H[(size_t)i * n + j] = H[(size_t)j * n + i];
    return chol_upper(H, n);
}

typedef struct { double d; int64_t j; } diag_idx;
static int by_diag_desc(const void *a, const void *b) {
    const diag_idx *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? 1 : -1;
    return x->j < y->j ? -1 : x->j > y->j; /* stable: ties in input order */
}

int dlq_gptq_layer(float *W, int64_t rows, int64_t cols, double *H, const dlq_qspec *q, const dlq_gptq_opts *o,
                   float *s, float *b, int8_t *qout, double *damp_used, dlq_err *err) {
    int rc = dlq_qspec_validate(q, err);
    if (rc) return rc;
    if (rows <= 0 || cols <= 0 || cols > (1 << 20)) return dlq_errf(err, DLQ_EINVAL, "GPTQ: bad layer shape [%lld, %lld]",
                                                                    (long long)rows, (long long)cols);
    int n = (int)cols, bs = o->blocksize > 0 ? o->blocksize : 128;
    int64_t ng = dlq_qgroups(cols, q->group);
    int gs = dlq_qgroup_size(cols, q->group);
    float qn = (float)dlq_qmin(q->bits), qx = (float)dlq_qmax(q->bits);
    size_t nn = (size_t)n * n;
    double *Wt = malloc((size_t)(rows * cols) * sizeof(double)); /* [cols][rows]: current weights, permuted order */
    double *E = malloc((size_t)bs * rows * sizeof(double));      /* [bs][rows] scaled errors of the block */
    double *H0 = malloc(nn * sizeof(double));
    int64_t *perm = malloc((size_t)n * sizeof(int64_t));
    diag_idx *di = malloc((size_t)n * sizeof(diag_idx));
    float *gw = malloc((size_t)(rows * gs) * sizeof(float)), *gsc = malloc((size_t)rows * sizeof(float) * 3);
    float *mtmp = malloc((size_t)(rows * ng) * sizeof(float));
    char *have = calloc((size_t)ng, 1);
    if (!Wt || !E || !H0 || !perm || !di || !gw || !gsc || !mtmp || !have) {
        rc = dlq_errf(err, DLQ_ENOMEM, "GPTQ: out of memory for a [%lld, %lld] layer", (long long)rows, (long long)cols);
        goto done;
    }
    /* dead inputs */
    for (int j = 0; j < n; j++)
        if (H[(size_t)j * n + j] == 0) {
            H[(size_t)j * n + j] = 1;
            for (int64_t r = 0; r < rows; r++) W[r * cols + j] = 0;
        }
    /* column order */
    for (int j = 0; j < n; j++) { di[j].d = H[(size_t)j * n + j]; di[j].j = j; }
    if (o->act_order) qsort(di, (size_t)n, sizeof *di, by_diag_desc);
    for (int j = 0; j < n; j++) perm[j] = di[j].j;
    /* static groups (act-order): parameters from the original weights */
    if (o->act_order) {
        dlq_quant_init_rtn(W, rows, cols, q, o->clip_search, s, b, mtmp);
        memset(have, 1, (size_t)ng);
    }
    /* permuted, transposed, double */
    for (int i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) Wt[(size_t)i * rows + r] = W[r * cols + perm[i]];
    /* permuted H, dampened, U = chol(H^-1, upper); retry with more dampening */
    double mean = 0;
    for (int j = 0; j < n; j++) mean += H[(size_t)j * n + j];
    mean /= n;
    double damp = o->percdamp > 0 ? o->percdamp : 0.01;
    for (int tries = 0;; tries++) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) H0[(size_t)i * n + j] = H[(size_t)perm[i] * n + perm[j]];
        for (int j = 0; j < n; j++) H0[(size_t)j * n + j] += damp * mean;
        int info = hinv_chol(H0, n);
        if (!info) break;
        if (tries == 4) {
            rc = dlq_errf(err, DLQ_EINVAL, "GPTQ: the Hessian is not positive definite even with dampening %g (LAPACK info %d)",
                          damp, info);
            goto done;
        }
        damp *= 10;
    }
    if (damp_used) *damp_used = damp;
    const double *U = H0;
    for (int i1 = 0; i1 < n; i1 += bs) {
        int i2 = i1 + bs < n ? i1 + bs : n;
        for (int i = i1; i < i2; i++) {
            int64_t j = perm[i], g = j / gs;
            double *w = Wt + (size_t)i * rows;
            if (!have[g]) { /* (without act-order) the group's first column: parameters from its current weights */
                int64_t j0 = g * gs, len = j0 + gs < cols ? gs : cols - j0;
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t k = 0; k < len; k++) gw[r * len + k] = (float)Wt[(size_t)(j0 + k) * rows + r];
                dlq_qspec one = *q;
                one.group = 0;
                dlq_quant_init_rtn(gw, rows, len, &one, o->clip_search, gsc, gsc + rows, gsc + 2 * rows);
                for (int64_t r = 0; r < rows; r++) { s[r * ng + g] = gsc[r]; b[r * ng + g] = gsc[rows + r]; }
                have[g] = 1;
            }
            double d = U[(size_t)i * n + i];
            double *e = E + (size_t)(i - i1) * rows;
            for (int64_t r = 0; r < rows; r++) {
                float sc = s[r * ng + g], bi = b[r * ng + g];
                double x = (w[r] - (double)bi) / (double)sc;
                float qi = fminf(fmaxf((float)rint(x), qn), qx); /* half to even, as dlq_qround */
                float dq = sc * qi + bi;
                if (qout) qout[r * cols + j] = (int8_t)qi;
                e[r] = (w[r] - (double)dq) / d;
                w[r] = dq;
            }
            /* in-block update of the remaining columns */
            for (int k = i + 1; k < i2; k++) {
                double u = U[(size_t)i * n + k];
                double *wk = Wt + (size_t)k * rows;
                for (int64_t r = 0; r < rows; r++) wk[r] -= e[r] * u;
            }
        }
        if (i2 < n) /* Wt[i2:, :] -= U[i1:i2, i2:]^T E */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n - i2, (int)rows, i2 - i1, -1.0, U + (size_t)i1 * n + i2, n,
                        E, (int)rows, 1.0, Wt + (size_t)i2 * rows, (int)rows);
    }
    for (int i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) W[r * cols + perm[i]] = (float)Wt[(size_t)i * rows + r];
done:
    free(Wt); free(E); free(H0); free(perm); free(di); free(gw); free(gsc); free(mtmp); free(have);
    return rc;
}
