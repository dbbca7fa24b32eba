/* Widening conversions and dot products over stored weight rows. Compiled
 * for several x86 levels with GCC target_clones (picked at run time by the
 * loader's ifunc resolver); plain C with fixed-order partial sums so every
 * clone gives the same result for the same input. */
#include "kernels/vec.h"

#include <math.h>
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

/* e^x for softmax arguments (x <= 0 after the row maximum is subtracted;
 * below -87.3, where e^x leaves the normal floats, 0): Cody-Waite reduction
 * x = n ln2 + r with n rounded by the 1.5*2^23 trick, Cephes' degree-6
 * polynomial for e^r, 2^n put into the exponent bits, in plain float
 * arithmetic without library calls; exp_le0_avx2 below is the 8-lane copy
 * for every path (with -std=c11 nothing is contracted to FMA; exp_le0_avx2 repeats the
 * operations): every path gives the same bits. Relative error ~1e-7
 * (tests/test_kernels.c checks 3e-7). */
static inline float exp_le0(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504088896341f + 12582912.0f, n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &e, 4);
    return x < -87.0f ? 0.0f : y * two_n;
}

/* sigma(x) = 1 / (1 + e^-x) from e = e^-|x| (never overflows): 1/(1+e) for
 * x >= 0, e/(1+e) below; a NaN stays NaN */
static inline float sigmoid1(float x) {
    float e = exp_le0(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
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
static int known_f16c = -1; /* checked once: this sits on per-row paths of the packed kernels */
static int have_f16c(void) {
    int known = known_f16c;
    if (known < 0) {
        __builtin_cpu_init();
        known = known_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
    }
    return known;
}
/* The same exponential 8 lanes at a time: the same operations in the same
 * order as exp_le0 (no FMA), so both give the same bits. */
__attribute__((target("avx2,fma"))) static __m256 exp_le0_avx2(__m256 x) {
    const __m256 lim = _mm256_set1_ps(-87.0f), magic = _mm256_set1_ps(12582912.0f);
    __m256 xc = _mm256_max_ps(lim, x); /* x when x >= -87 or NaN */
    __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), magic), magic);
    __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lim, _CMP_LT_OQ));
}
__attribute__((target("avx2,fma"))) static void exp_neg_avx2(float *dst, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, exp_le0_avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) dst[i] = exp_le0(x[i]);
}
__attribute__((target("avx2,fma"))) static void sigmoid_avx2(float *dst, const float *x, size_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), e = exp_le0_avx2(_mm256_or_ps(v, sign)); /* e^-|x| */
        __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
        _mm256_storeu_ps(dst + i, _mm256_div_ps(num, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) dst[i] = sigmoid1(x[i]);
}
__attribute__((target("avx2,fma"))) static void softmax_avx2(float *x, size_t n) {
    float m8[8], s8[8];
    __m256 m = _mm256_set1_ps(x[0]);
    size_t k = 0;
    for (; k + 8 <= n; k += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + k), m);
    _mm256_storeu_ps(m8, m);
    float mx = m8[0];
    for (int u = 1; u < 8; u++) mx = m8[u] > mx ? m8[u] : mx;
    for (; k < n; k++) mx = x[k] > mx ? x[k] : mx;
    __m256 mv = _mm256_set1_ps(mx), s = _mm256_setzero_ps();
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 v = exp_le0_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + k), mv));
        _mm256_storeu_ps(x + k, v);
        s = _mm256_add_ps(s, v);
    }
    _mm256_storeu_ps(s8, s);
    float sum = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (; k < n; k++) { x[k] = exp_le0(x[k] - mx); sum += x[k]; }
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (k = 0; k + 8 <= n; k += 8) _mm256_storeu_ps(x + k, _mm256_mul_ps(_mm256_loadu_ps(x + k), inv));
    for (; k < n; k++) x[k] *= 1.0f / sum;
}
void dlq_vec_force_generic(int on) {
    known_f16c = -1;
    if (on) known_f16c = 0;
}
#else
static int have_f16c(void) { return 0; }
void dlq_vec_force_generic(int on) { (void)on; }
#endif

void dlq_exp_neg(float *dst, const float *x, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) { exp_neg_avx2(dst, x, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = exp_le0(x[i]);
}

void dlq_sigmoid(float *dst, const float *x, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) { sigmoid_avx2(dst, x, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = sigmoid1(x[i]);
}

/* max and sum in 8 lanes (element k in lane k % 8), combined in a fixed
 * order: the scalar code below and softmax_avx2 give the same bits */
void dlq_softmax_inplace(float *x, size_t n) {
    if (n == 0) return;
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) { softmax_avx2(x, n); return; }
#endif
    float m8[8], s8[8] = {0};
    for (int u = 0; u < 8; u++) m8[u] = x[0];
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) m8[u] = x[k + u] > m8[u] ? x[k + u] : m8[u];
    float mx = m8[0];
    for (int u = 1; u < 8; u++) mx = m8[u] > mx ? m8[u] : mx;
    for (; k < n; k++) mx = x[k] > mx ? x[k] : mx;
    for (k = 0; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) { x[k + u] = exp_le0(x[k + u] - mx); s8[u] += x[k + u]; }
    float sum = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (; k < n; k++) { x[k] = exp_le0(x[k] - mx); sum += x[k]; }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

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
