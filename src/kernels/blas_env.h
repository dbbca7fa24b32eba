/* Which GEMM kernels OpenBLAS will run, and the process environment that makes
 * them and OpenMP fast.
 *
 * Debian's OpenBLAS (a DYNAMIC_ARCH build) picks its kernel set from the CPU
 * model number; a CPU newer than the library (0.3.21 and Sapphire/Emerald
 * Rapids, Zen 5 ...) is not recognised and silently gets the "Prescott" SSE3
 * kernels, 2-5x slower. The choice is made once, when the library is loaded,
 * from OPENBLAS_CORETYPE; so is libgomp's spin-wait policy from
 * OMP_WAIT_POLICY / GOMP_SPINCOUNT. A program can therefore only fix either by
 * starting again with the variables set: dlq_env_reexec does that for the CLI. */
#ifndef DLQ_KERNELS_BLAS_ENV_H
#define DLQ_KERNELS_BLAS_ENV_H

#include <stddef.h>

/* The kernel set OpenBLAS chose ("Haswell", "SkylakeX", "Prescott", ...), or
 * "unknown" for a BLAS that does not say. */
const char *dlq_blas_core(void);

/* The best OpenBLAS kernel set this CPU can run, from its features:
 * "Cooperlake" (AVX-512 + BF16), "SkylakeX" (AVX-512), "Haswell" (AVX2 + FMA),
 * "Sandybridge" (AVX), or NULL (nothing better than SSE). */
const char *dlq_blas_best_core(void);

/* 1 when OpenBLAS runs a kernel set the CPU outclasses (e.g. Prescott on an
 * AVX-512 CPU). */
int dlq_blas_is_fallback(void);

/* One line on the BLAS in use: "OpenBLAS 0.3.21 (SkylakeX kernels, 2 threads)",
 * with a warning appended when it runs a fallback. */
void dlq_blas_describe(char *buf, size_t cap);

/* The OpenMP wait policy dlqat starts with when the user set neither
 * OMP_WAIT_POLICY nor GOMP_SPINCOUNT: passive (threads sleep at once instead of
 * spinning). Measured by bench/bench_threads.sh (README, "Speed"): DL-QAT
 * training ~7 % slower on an idle 2-core machine, 7-19x faster when two other
 * jobs share the cores (libgomp's default spin and a 1000-10000 spin count
 * collapse there). */
#define DLQ_OMP_WAIT_POLICY "passive"

/* For programs (the CLI): when OPENBLAS_CORETYPE is unset and OpenBLAS chose a
 * fallback kernel set, or when OMP_WAIT_POLICY and GOMP_SPINCOUNT are both
 * unset, set them (OPENBLAS_CORETYPE = dlq_blas_best_core(), OMP_WAIT_POLICY =
 * DLQ_OMP_WAIT_POLICY) and exec the program again (once: DLQ_REEXEC marks the
 * second start). Returns only when nothing needed changing, when DLQ_AUTO_ENV=0
 * asks for no change, or when the exec failed (the program then runs as it is).
 * Variables the user set are never changed. */
void dlq_env_reexec(char **argv);

#endif
