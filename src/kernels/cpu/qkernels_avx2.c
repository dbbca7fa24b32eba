/* AVX2 + FMA row kernels over bit-packed rows (any width 2..8).
 *
 * Unpacking: 16 consecutive elements of b bits occupy 2b <= 16 bytes that
 * start on a byte boundary. The 16 bytes are broadcast to both 128-bit lanes;
 * vpshufb moves the one or two bytes holding element e into dword e, vpsrlvd
 * shifts it by (e*b) mod 8 and a mask keeps b bits: 4 instructions per 8
 * elements, one code path for every width. The int8 kernel (4-bit only)
 * splits nibbles and multiplies with vpmaddubsw. Loads never pass the end of
 * the row: the last chunk of a row is copied into a zeroed buffer. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/qk_internal.h"

#define AI static inline __attribute__((always_inline))

typedef struct tabs { __m256i ctl0, ctl1, sh0, sh1, mask; } tabs;

static tabs make_tabs(int b) {
    uint8_t ctl[2][32];
    int32_t sh[2][8];
    for (int e = 0; e < 16; e++) {
        int bit = e * b, byte = bit >> 3, s = bit & 7, v = e >> 3, d = e & 7;
        uint8_t *c = ctl[v] + 4 * d; /* dword d of vector v: lane d/4, in-lane bytes 4*(d%4).. */
        c[0] = (uint8_t)byte;
        c[1] = s + b > 8 ? (uint8_t)(byte + 1) : 0x80;
        c[2] = c[3] = 0x80;
        sh[v][d] = s;
    }
    tabs t;
    t.ctl0 = _mm256_loadu_si256((const __m256i *)ctl[0]);
    t.ctl1 = _mm256_loadu_si256((const __m256i *)ctl[1]);
    t.sh0 = _mm256_loadu_si256((const __m256i *)sh[0]);
    t.sh1 = _mm256_loadu_si256((const __m256i *)sh[1]);
    t.mask = _mm256_set1_epi32((1 << b) - 1);
    return t;
}

/* the 16 bytes at byte offset o of the row, zero-filled past its end */
AI __m128i load16(const dlq_qrow *r, int64_t o) {
    if (o + 16 <= r->nbytes) return _mm_loadu_si128((const __m128i *)(r->q + o));
    uint8_t buf[16] = {0};
    memcpy(buf, r->q + o, (size_t)(r->nbytes - o));
    return _mm_loadu_si128((const __m128i *)buf);
}

/* elements j..j+15 (j % 16 == 0) as two vectors of 8 floats */
AI void unpack16(const dlq_qrow *r, const tabs *t, int64_t j, __m256 *f0, __m256 *f1) {
    __m256i v = _mm256_broadcastsi128_si256(load16(r, j / 16 * 2 * r->bits));
    __m256i e0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(v, t->ctl0), t->sh0), t->mask);
    __m256i e1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(v, t->ctl1), t->sh1), t->mask);
    *f0 = _mm256_cvtepi32_ps(e0);
    *f1 = _mm256_cvtepi32_ps(e1);
}

AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Full 16-element chunks group by group (group % 16 == 0); the rest by the
 * scalar tail. N is a compile-time constant after inlining. */
AI void dot_f32_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out) {
    for (int i = 0; i < N; i++) out[i] = 0;
    if (r->group % 16) { dlq_qk_dot_f32_tail(r, xv, N, 0, out); return; }
    tabs t = make_tabs(r->bits);
    __m256 acc[DLQ_QK_MAXN];
    for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (int64_t g = 0; j + 16 <= r->in; g++) {
        int64_t end = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        __m256 a0[DLQ_QK_MAXN], a1[DLQ_QK_MAXN];
        for (int i = 0; i < N; i++) a0[i] = a1[i] = _mm256_setzero_ps();
        for (; j + 16 <= end; j += 16) {
            __m256 f0, f1;
            unpack16(r, &t, j, &f0, &f1);
            for (int i = 0; i < N; i++) {
                a0[i] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xv[i].x + j), a0[i]);
                a1[i] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xv[i].x + j + 8), a1[i]);
            }
        }
        __m256 s = _mm256_set1_ps(r->s[g]);
        for (int i = 0; i < N; i++) acc[i] = _mm256_fmadd_ps(_mm256_add_ps(a0[i], a1[i]), s, acc[i]);
        if (j < end) break; /* a ragged last group: the rest goes to the tail */
    }
    for (int i = 0; i < N; i++) out[i] = hsum(acc[i]);
    if (j < r->in) dlq_qk_dot_f32_tail(r, xv, N, j, out);
}

void dlq_qk_dot_f32_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    switch (n) {
    case 1: dot_f32_n(r, xv, 1, out); break;
    case 2: dot_f32_n(r, xv, 2, out); break;
    case 3: dot_f32_n(r, xv, 3, out); break;
    default: dot_f32_n(r, xv, 4, out); break;
    }
}

void dlq_qk_dequant_avx2(const dlq_qrow *r, float *dst) {
    if (r->group % 16) { dlq_qk_dequant_tail(r, dst, 0); return; }
    tabs t = make_tabs(r->bits);
    int64_t j = 0;
    for (int64_t g = 0; j + 16 <= r->in; g++) {
        int64_t end = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        __m256 s = _mm256_set1_ps(r->s[g]), c = _mm256_set1_ps(r->c[g]);
        for (; j + 16 <= end; j += 16) {
            __m256 f0, f1;
            unpack16(r, &t, j, &f0, &f1);
            _mm256_storeu_ps(dst + j, _mm256_fmadd_ps(f0, s, c));
            _mm256_storeu_ps(dst + j + 8, _mm256_fmadd_ps(f1, s, c));
        }
        if (j < end) break;
    }
    if (j < r->in) dlq_qk_dequant_tail(r, dst, j);
}

/* int8 activations, 4-bit weights: 32 elements (16 bytes) per step, which is
 * one activation block; group % 32 == 0 (checked by the dispatcher). */
AI void dot_i8_4bit_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out) {
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[DLQ_QK_MAXN];
    for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= r->in; j += 32) {
        __m128i v = load16(r, j / 2);
        __m128i lo = _mm_and_si128(v, lo4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), lo4);
        __m256i u = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
        float s = r->s[j / r->group];
        for (int i = 0; i < N; i++) {
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(xv[i].xq + j))), ones);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(s * xv[i].xd[j / 32]), acc[i]);
        }
    }
    for (int i = 0; i < N; i++) out[i] = hsum(acc[i]);
    if (j < r->in) dlq_qk_dot_i8_tail(r, xv, N, j, out);
}

void dlq_qk_dot_i8_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    switch (n) {
    case 1: dot_i8_4bit_n(r, xv, 1, out); break;
    case 2: dot_i8_4bit_n(r, xv, 2, out); break;
    case 3: dot_i8_4bit_n(r, xv, 3, out); break;
    default: dot_i8_4bit_n(r, xv, 4, out); break;
    }
}
#endif
