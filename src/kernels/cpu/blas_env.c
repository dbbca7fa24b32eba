#include "kernels/blas_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

/* OpenBLAS's own introspection (declared in its cblas.h too, but not by every BLAS) */
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern int openblas_get_num_threads(void);

const char *dlq_blas_core(void) {
    const char *c = openblas_get_corename();
    return c && *c ? c : "unknown";
}

const char *dlq_blas_best_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512cd");
    if (avx512) {
#if __GNUC__ >= 11 || defined(__clang__)
        if (__builtin_cpu_supports("avx512bf16")) return "Cooperlake";
#endif
        return "SkylakeX";
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    if (__builtin_cpu_supports("avx")) return "Sandybridge";
#endif
    return NULL;
}

/* rank of an OpenBLAS x86-64 kernel set by the widest vector unit it uses:
 * 3 AVX-512, 2 AVX2/FMA, 1 AVX, 0 SSE or unknown */
static int core_rank(const char *c) {
    static const char *r3[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *r2[] = {"haswell", "zen", "skylake"};
    static const char *r1[] = {"sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"};
    char l[64];
    size_t n = 0;
    for (; c && c[n] && n + 1 < sizeof l; n++) l[n] = (char)(c[n] >= 'A' && c[n] <= 'Z' ? c[n] + 32 : c[n]);
    l[n] = 0;
    for (size_t i = 0; i < sizeof r3 / sizeof *r3; i++) if (!strcmp(l, r3[i])) return 3;
    for (size_t i = 0; i < sizeof r2 / sizeof *r2; i++) if (!strcmp(l, r2[i])) return 2;
    for (size_t i = 0; i < sizeof r1 / sizeof *r1; i++) if (!strcmp(l, r1[i])) return 1;
    return 0;
}

int dlq_blas_is_fallback(void) {
    const char *best = dlq_blas_best_core(), *cur = dlq_blas_core();
    if (!best || !strcmp(cur, "unknown")) return 0;
    return core_rank(cur) < core_rank(best);
}

void dlq_blas_describe(char *buf, size_t cap) {
    const char *cfg = openblas_get_config();
    char ver[32] = "OpenBLAS";
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9)) {
        size_t n = 0;
        while (cfg[n] && cfg[n] != ' ' ) n++;
        size_t m = n + 1;
        while (cfg[m] && cfg[m] != ' ') m++;
        snprintf(ver, sizeof ver, "%.*s", (int)(m < sizeof ver - 1 ? m : sizeof ver - 1), cfg);
    }
    int k = snprintf(buf, cap, "%s (%s kernels, %d threads)", ver, dlq_blas_core(), openblas_get_num_threads());
    if (dlq_blas_is_fallback() && k > 0 && (size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, "; WARNING: a fallback on this CPU, which can run %s: set OPENBLAS_CORETYPE=%s",
                 dlq_blas_best_core(), dlq_blas_best_core());
}

void dlq_env_reexec(char **argv) {
    const char *off = getenv("DLQ_AUTO_ENV");
    if ((off && !strcmp(off, "0")) || getenv("DLQ_REEXEC")) return;
    int change = 0;
    if (!getenv("OPENBLAS_CORETYPE") && dlq_blas_is_fallback()) {
        setenv("OPENBLAS_CORETYPE", dlq_blas_best_core(), 1);
        change = 1;
    }
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        setenv("OMP_WAIT_POLICY", DLQ_OMP_WAIT_POLICY, 1);
        change = 1;
    }
    if (!change) return;
    setenv("DLQ_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): run on as we are, and say so if the BLAS is the slow one */
    if (getenv("OPENBLAS_CORETYPE") && dlq_blas_is_fallback())
        fprintf(stderr, "dlqat: warning: OpenBLAS runs its %s kernels on a CPU that can run %s (2-5x slower); "
                        "set OPENBLAS_CORETYPE=%s\n", dlq_blas_core(), dlq_blas_best_core(), dlq_blas_best_core());
}
