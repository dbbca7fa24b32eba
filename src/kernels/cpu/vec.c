/* Widening conversions and dot products over stored weight rows. Compiled
 * for several x86 levels with GCC target_clones (picked at run time by the
 * loader's ifunc resolver); plain C with fixed-order partial sums so every
 * clone gives the same result for the same input. */
#include "kernels/vec.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DLQ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DLQ_CLONES
#endif

#pragma GCC optimize("O3")

static inline float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

DLQ_CLONES void dlq_cvt_bf16(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16f(src[i]);
}

DLQ_CLONES float dlq_dot_f32(const float *w, const float *x, size_t n) {
    float acc[16] = {0};
    size_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int u = 0; u < 16; u++) acc[u] += w[k + u] * x[k + u];
    float s = 0;
    for (int u = 0; u < 16; u++) s += acc[u];
    for (; k < n; k++) s += w[k] * x[k];
    return s;
}

DLQ_CLONES float dlq_dot_bf16(const uint16_t *w, const float *x, size_t n) {
    float acc[16] = {0};
    size_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int u = 0; u < 16; u++) acc[u] += bf16f(w[k + u]) * x[k + u];
    float s = 0;
    for (int u = 0; u < 16; u++) s += acc[u];
    for (; k < n; k++) s += bf16f(w[k]) * x[k];
    return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,f16c,fma"))) static void cvt_f16_f16c(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = dlq_f16_to_f32(src[i]);
}
__attribute__((target("avx2,f16c,fma"))) static float dot_f16_f16c(const uint16_t *w, const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 16 <= n; k += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k))), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k + 8))), _mm256_loadu_ps(x + k + 8), a1);
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    for (; k < n; k++) s += dlq_f16_to_f32(w[k]) * x[k];
    return s;
}
static int have_f16c(void) {
    static int known = -1; /* checked once: this sits on per-row paths of the packed kernels */
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
    }
    return known;
}
#else
static int have_f16c(void) { return 0; }
#endif

void dlq_cvt_f16(float *dst, const uint16_t *src, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) { cvt_f16_f16c(dst, src, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = dlq_f16_to_f32(src[i]);
}

float dlq_dot_f16(const uint16_t *w, const float *x, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) return dot_f16_f16c(w, x, n);
#endif
    float s = 0;
    for (size_t k = 0; k < n; k++) s += dlq_f16_to_f32(w[k]) * x[k];
    return s;
}

float dlq_dot_w(const void *w, dlq_dtype t, const float *x, size_t n) {
    switch (t) {
    case DLQ_F32: return dlq_dot_f32((const float *)w, x, n);
    case DLQ_BF16: return dlq_dot_bf16((const uint16_t *)w, x, n);
    case DLQ_F16: return dlq_dot_f16((const uint16_t *)w, x, n);
    default: return 0;
    }
}
