/* AVX-512 row kernels over bit-packed rows (any width 2..8).
 *
 * fp32 path (F + BW): the AVX2 scheme at 16 lanes: the 2b bytes of 16
 * elements are broadcast to the four 128-bit lanes, vpshufb puts element e's
 * byte(s) in dword e, vpsrlvd + mask extract it.
 *
 * int8 path (VNNI + VBMI): 64 elements (8b bytes, a masked load that never
 * passes the row end) per step. vpermb gives qword k the b bytes of elements
 * 8k..8k+7; vpmultishiftqb picks the 8-bit field at bit (i*b) of the qword
 * for byte i; a mask keeps b bits. The 64 unsigned values, in natural order,
 * go straight into vpdpbusd with the int8 activations: dword lanes 0-7 hold
 * activation block 2m, lanes 8-15 block 2m+1, each scaled by its own
 * s_g * d_k. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/qk_internal.h"

#define AI static inline __attribute__((always_inline))
/* Loops over the 1..4 activation vectors carry "GCC unroll": unrolled, the
 * accumulators stay in registers (a rolled loop kept them in a stack array,
 * one store-to-load round trip per block: 2-3x slower). */

typedef struct tabs { __m512i ctl, sh, mask; } tabs;

AI tabs make_tabs(int b) {
    tabs t;
    t.ctl = _mm512_loadu_si512(dlq_qk_tab.ctl16[b]);
    t.sh = _mm512_loadu_si512(dlq_qk_tab.sh16[b]);
    t.mask = _mm512_set1_epi32((1 << b) - 1);
    return t;
}

AI __m128i load16(const dlq_qrow *r, int64_t o) {
    if (o + 16 <= r->nbytes) return _mm_loadu_si128((const __m128i *)(r->q + o));
    uint8_t buf[16] = {0};
    memcpy(buf, r->q + o, (size_t)(r->nbytes - o));
    return _mm_loadu_si128((const __m128i *)buf);
}

AI __m512 unpack16(const dlq_qrow *r, const tabs *t, int64_t j) {
    __m512i v = _mm512_broadcast_i32x4(load16(r, j / 16 * 2 * r->bits));
    __m512i e = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi8(v, t->ctl), t->sh), t->mask);
    return _mm512_cvtepi32_ps(e);
}

AI void dot_f32_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out) {
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) out[i] = 0;
    if (r->group % 16) { dlq_qk_dot_f32_tail(r, xv, N, 0, out); return; }
    tabs t = make_tabs(r->bits);
    __m512 acc[DLQ_QK_MAXN];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) acc[i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (int64_t g = 0; j + 16 <= r->in; g++) {
        int64_t end = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        __m512 a0[DLQ_QK_MAXN], a1[DLQ_QK_MAXN];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < N; i++) a0[i] = a1[i] = _mm512_setzero_ps();
        for (; j + 32 <= end; j += 32) {
            __m512 f0 = unpack16(r, &t, j), f1 = unpack16(r, &t, j + 16);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < N; i++) {
                a0[i] = _mm512_fmadd_ps(f0, _mm512_loadu_ps(xv[i].x + j), a0[i]);
                a1[i] = _mm512_fmadd_ps(f1, _mm512_loadu_ps(xv[i].x + j + 16), a1[i]);
            }
        }
        if (j + 16 <= end) {
            __m512 f0 = unpack16(r, &t, j);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < N; i++) a0[i] = _mm512_fmadd_ps(f0, _mm512_loadu_ps(xv[i].x + j), a0[i]);
            j += 16;
        }
        __m512 s = _mm512_set1_ps(r->s[g]);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < N; i++) acc[i] = _mm512_fmadd_ps(_mm512_add_ps(a0[i], a1[i]), s, acc[i]);
        if (j < end) break; /* ragged last group: the rest goes to the tail */
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) out[i] = _mm512_reduce_add_ps(acc[i]);
    if (j < r->in) dlq_qk_dot_f32_tail(r, xv, N, j, out);
}

void dlq_qk_dot_f32_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    switch (n) {
    case 1: dot_f32_n(r, xv, 1, out); break;
    case 2: dot_f32_n(r, xv, 2, out); break;
    case 3: dot_f32_n(r, xv, 3, out); break;
    default: dot_f32_n(r, xv, 4, out); break;
    }
}

void dlq_qk_dequant_avx512(const dlq_qrow *r, float *dst) {
    if (r->group % 16) { dlq_qk_dequant_tail(r, dst, 0); return; }
    tabs t = make_tabs(r->bits);
    int64_t j = 0;
    for (int64_t g = 0; j + 16 <= r->in; g++) {
        int64_t end = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        __m512 s = _mm512_set1_ps(r->s[g]), c = _mm512_set1_ps(r->c[g]);
        for (; j + 16 <= end; j += 16) _mm512_storeu_ps(dst + j, _mm512_fmadd_ps(unpack16(r, &t, j), s, c));
        if (j < end) break;
    }
    if (j < r->in) dlq_qk_dequant_tail(r, dst, j);
}

AI void dot_i8_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out) {
    const int b = r->bits;
    const __m512i vperm = _mm512_loadu_si512(dlq_qk_tab.perm[b]), vsh = _mm512_loadu_si512(dlq_qk_tab.msh[b]);
    const __m512i mask = _mm512_set1_epi8((char)((1 << b) - 1));
    const __mmask64 lm = b == 8 ? ~(__mmask64)0 : (((__mmask64)1 << (8 * b)) - 1);
    __m512 acc[DLQ_QK_MAXN];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) acc[i] = _mm512_setzero_ps();
    /* group by group (no division per block); see the AVX2 kernel */
    const int64_t span = r->group % 64 == 0 ? r->group : 64, full = r->in / 64 * 64;
    int64_t j = 0;
    while (j < full) {
        int64_t end = j + span < full ? j + span : full;
        float sa = r->s[j / r->group], sb = r->s[(j + 32) / r->group];
        for (; j < end; j += 64) {
            __m512i v = _mm512_maskz_loadu_epi8(lm, r->q + j / 8 * b);
            __m512i u = _mm512_and_si512(_mm512_multishift_epi64_epi8(vsh, _mm512_permutexvar_epi8(vperm, v)), mask);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < N; i++) {
                __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512(xv[i].xq + j));
                __m512 sc = _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(sa * xv[i].xd[j / 32]),
                                                 _mm512_set1_ps(sb * xv[i].xd[j / 32 + 1]));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, acc[i]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) out[i] = _mm512_reduce_add_ps(acc[i]);
    if (j < r->in) dlq_qk_dot_i8_tail(r, xv, N, j, out);
}

void dlq_qk_dot_i8_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    switch (n) {
    case 1: dot_i8_n(r, xv, 1, out); break;
    case 2: dot_i8_n(r, xv, 2, out); break;
    case 3: dot_i8_n(r, xv, 3, out); break;
    default: dot_i8_n(r, xv, 4, out); break;
    }
}
#endif
