/* The packed decode kernel alone (dlq_qgemv): one weight of seeded random
 * packed integers and F16 group parameters, x = n vectors, best of R calls;
 * prints the rate in bytes of weight as stored (integers + parameters) and in
 * weights per second, for every width and both activation numerics, next to
 * a fp32 dot-product pass over a weight of the same shape (dlq_linear) and a
 * STREAM-style triad, all in the same process. docs/deployment.md quotes it.
 *
 *   bench_qgemv [--rows R] [--cols C] [--group G] [--n N] [--reps K] [--bits 2,3,4,8]
 *
 * Threads: OMP_NUM_THREADS. A weight that fits in the caches (the default
 * 2048 x 5632 W4 is 6.5 MB) measures the kernel's compute rate; use rows of
 * tens of thousands to measure it streaming from memory. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "core/rng.h"
#include "kernels/linear.h"
#include "kernels/qkernels.h"
#include "kernels/qpack.h"
#include "model/load_internal.h" /* dlq_weight_bytes */
#include "model/model.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static double best_of(int reps, const dlq_weight *w, float *y, const float *x, int n, void *scratch, float *lscr) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        if (w->dtype == DLQ_QPACK) dlq_qgemv(y, w->rows, x, n, w, scratch);
        else dlq_linear(y, w->rows, x, n, w, NULL, lscr);
        t = now() - t;
        if (t < best) best = t;
    }
    return best;
}

static double triad_gbs(size_t n, int reps) {
    double *a = malloc(n * 8), *b = malloc(n * 8), *c = malloc(n * 8), best = 1e30;
    if (!a || !b || !c) { free(a); free(b); free(c); return 0; }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    for (int r = 0; r < reps; r++) {
        double t = now();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0 * c[i];
        t = now() - t;
        if (t < best) best = t;
    }
    double check = a[n / 2];
    free(a); free(b); free(c);
    return check == 7.0 ? 24.0 * (double)n / best / 1e9 : 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fprintf(stderr, "usage: bench_qgemv [--rows R] [--cols C] [--group G] [--n N] [--reps K] [--bits 2,3,4,8]\n");
            return 0;
        }
    int64_t rows = atoll(arg(argc, argv, "--rows", "2048")), cols = atoll(arg(argc, argv, "--cols", "5632"));
    int group = atoi(arg(argc, argv, "--group", "64")), n = atoi(arg(argc, argv, "--n", "1"));
    int reps = atoi(arg(argc, argv, "--reps", "30"));
    const char *bits_list = arg(argc, argv, "--bits", "2,3,4,8");
    if (rows < 1 || cols < 1 || group < 1 || group > cols || n < 1 || n > 4 || reps < 1) {
        fprintf(stderr, "bench_qgemv: need rows, cols >= 1, 1 <= group <= cols, 1 <= n <= 4, reps >= 1\n");
        return 2;
    }
    dlq_rng g;
    dlq_rng_seed(&g, 20261123);
    float *x = malloc((size_t)(cols * n) * 4), *y = malloc((size_t)(rows * n) * 4);
    float *wf = malloc((size_t)(rows * cols) * 4), *lscr = malloc(dlq_linear_scratch_floats(cols) * 4);
    void *scratch = malloc(dlq_qgemv_scratch_bytes(cols, n));
    int64_t ng = (cols + group - 1) / group;
    uint16_t *sh = malloc((size_t)(rows * ng) * 2), *bh = malloc((size_t)(rows * ng) * 2);
    uint8_t *q = malloc((size_t)(rows * dlq_qrow_bytes(cols, 8)));
    if (!x || !y || !wf || !lscr || !scratch || !sh || !bh || !q) { fprintf(stderr, "bench_qgemv: out of memory\n"); return 1; }
    for (int64_t i = 0; i < cols * n; i++) x[i] = (float)dlq_rng_normal(&g);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = 0.02f * (float)dlq_rng_normal(&g);
    for (int64_t i = 0; i < rows * ng; i++) {
        sh[i] = dlq_f32_to_f16(0.002f * (1 + (float)(dlq_rng_u64(&g) % 8)));
        bh[i] = dlq_f32_to_f16(-0.01f);
    }
    for (int64_t i = 0; i < rows * dlq_qrow_bytes(cols, 8); i++) q[i] = (uint8_t)dlq_rng_u64(&g);
    int threads = omp_get_max_threads();
    dlq_weight f32 = {.data = wf, .dtype = DLQ_F32, .rows = rows, .cols = cols};
    double tf = best_of(reps, &f32, y, x, n, scratch, lscr), fb = (double)(rows * cols) * 4;
    printf("{\"kernel\": \"f32 dot\", \"rows\": %lld, \"cols\": %lld, \"n\": %d, \"threads\": %d, \"ms\": %.4f, \"gbs\": %.2f, "
           "\"gws\": %.2f}\n",
           (long long)rows, (long long)cols, n, threads, tf * 1e3, fb / tf / 1e9, (double)(rows * cols) / tf / 1e9);
    char list[64];
    snprintf(list, sizeof list, "%s", bits_list);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int bits = atoi(tok);
        if (bits < 2 || bits > 8) { fprintf(stderr, "bench_qgemv: --bits: %s is not 2..8\n", tok); return 2; }
        dlq_weight w = {.data = q, .dtype = DLQ_QPACK, .rows = rows, .cols = cols, .qbits = bits, .qgroup = group,
                        .qng = ng, .row_bytes = dlq_qrow_bytes(cols, bits), .qpdtype = DLQ_F16, .qscale_h = sh, .qbias_h = bh};
        double bytes = (double)dlq_weight_bytes(&w);
        for (int a = 0; a < 2; a++) {
            dlq_qact_force(a ? DLQ_QACT_F32 : DLQ_QACT_I8);
            double t = best_of(reps, &w, y, x, n, scratch, lscr);
            printf("{\"kernel\": \"W%d g%d %s\", \"isa\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"n\": %d, \"threads\": %d, "
                   "\"ms\": %.4f, \"gbs\": %.2f, \"gws\": %.2f, \"vs_f32_time\": %.2f}\n",
                   bits, group, a ? "f32act" : (dlq_qgemv_uses_i8(&w) ? "int8" : "f32act (no int8 kernel)"),
                   dlq_qisa_name(dlq_qisa_active()), (long long)rows, (long long)cols, n, threads, t * 1e3, bytes / t / 1e9,
                   (double)(rows * cols) / t / 1e9, tf / t);
        }
    }
    printf("{\"triad_gbs\": %.2f, \"threads\": %d}\n", triad_gbs((size_t)32 << 20, 5), threads);
    free(x); free(y); free(wf); free(lscr); free(scratch); free(sh); free(bh); free(q);
    return 0;
}
