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
/* Loops over the 1..4 activation vectors carry "GCC unroll": unrolled, the
 * accumulators stay in registers (a rolled loop kept them in a stack array,
 * one store-to-load round trip per block: 2-3x slower). */

typedef struct tabs { __m256i ctl0, ctl1, sh0, sh1, mask; } tabs;

AI tabs make_tabs(int b) {
    tabs t;
    t.ctl0 = _mm256_loadu_si256((const __m256i *)dlq_qk_tab.ctl2[b][0]);
    t.ctl1 = _mm256_loadu_si256((const __m256i *)dlq_qk_tab.ctl2[b][1]);
    t.sh0 = _mm256_loadu_si256((const __m256i *)dlq_qk_tab.sh2[b][0]);
    t.sh1 = _mm256_loadu_si256((const __m256i *)dlq_qk_tab.sh2[b][1]);
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
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) out[i] = 0;
    if (r->group % 16) { dlq_qk_dot_f32_tail(r, xv, N, 0, out); return; }
    tabs t = make_tabs(r->bits);
    __m256 acc[DLQ_QK_MAXN];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (int64_t g = 0; j + 16 <= r->in; g++) {
        int64_t end = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        __m256 a0[DLQ_QK_MAXN], a1[DLQ_QK_MAXN];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < N; i++) a0[i] = a1[i] = _mm256_setzero_ps();
        for (; j + 16 <= end; j += 16) {
            __m256 f0, f1;
            unpack16(r, &t, j, &f0, &f1);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < N; i++) {
                a0[i] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(xv[i].x + j), a0[i]);
                a1[i] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(xv[i].x + j + 8), a1[i]);
            }
        }
        __m256 s = _mm256_set1_ps(r->s[g]);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < N; i++) acc[i] = _mm256_fmadd_ps(_mm256_add_ps(a0[i], a1[i]), s, acc[i]);
        if (j < end) break; /* a ragged last group: the rest goes to the tail */
    }
    _Pragma("GCC unroll 4")
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

void dlq_qk_params_f16_avx2(const uint16_t *sh, const uint16_t *bh, int64_t ng, float qmin, const float *const *sx, int n,
                            float *s, float *off) {
    __m256 a[DLQ_QK_MAXN];
    const __m256 qm = _mm256_set1_ps(qmin);
    for (int i = 0; i < n; i++) a[i] = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sh + g)));
        __m256 cv = _mm256_fmadd_ps(sv, qm, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bh + g))));
        _mm256_storeu_ps(s + g, sv);
        for (int i = 0; i < n; i++) a[i] = _mm256_fmadd_ps(cv, _mm256_loadu_ps(sx[i] + g), a[i]);
    }
    for (int i = 0; i < n; i++) off[i] = hsum(a[i]);
    for (; g < ng; g++) {
        s[g] = _cvtsh_ss(sh[g]);
        float c = s[g] * qmin + _cvtsh_ss(bh[g]);
        for (int i = 0; i < n; i++) off[i] += c * sx[i][g];
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

/* int8 activations, 2- or 4-bit weights, 64 elements per step (16 or 32
 * bytes): the bit planes come out of the packed bytes with a shift and a
 * mask, in an order the activations were permuted to beforehand
 * (dlq_qk_permute_x), so no byte shuffles are needed. vpmaddubsw of two
 * planes (<= 2*15*127 each, no saturation), summed, then vpmaddwd: 8 int32
 * lanes whose activation scales are xdv, times the weight scale(s) sv. */
AI void blk_i8(const dlq_qrow *r, const dlq_qxv *xv, const int N, int64_t j, __m256 sv, __m256 *acc, const int bits) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    const __m256i sh_a = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2), sh_b = _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6);
    __m256i a, b;
    if (bits == 3) { /* 24 bytes, chunks of 3 bytes = 8 elements: bytes 0..15 in the
                        lower lane, 8..23 in the upper (chunks 4-7 at offset 4) */
        const uint8_t *p = r->q + j / 8 * 3;
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
                                            _mm_loadu_si128((const __m128i *)(p + 8)), 1);
        const __m256i m7 = _mm256_set1_epi16(7);
        __m256i w[4];
        _Pragma("GCC unroll 4")
        for (int t = 0; t < 4; t++) {
            __m256i x = _mm256_shuffle_epi8(v, _mm256_loadu_si256((const __m256i *)dlq_qk_tab.c3[t]));
            x = _mm256_mullo_epi16(x, _mm256_loadu_si256((const __m256i *)dlq_qk_tab.m3[t]));
            w[t] = _mm256_and_si256(_mm256_srli_epi16(x, 8), m7);
        }
        a = _mm256_packus_epi16(w[0], w[1]);
        b = _mm256_packus_epi16(w[2], w[3]);
    } else if (bits == 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(r->q + j / 2));
        a = _mm256_and_si256(v, m4);
        b = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    } else {
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(r->q + j / 4)));
        a = _mm256_and_si256(_mm256_srlv_epi32(v, sh_a), m2);
        b = _mm256_and_si256(_mm256_srlv_epi32(v, sh_b), m2);
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) {
        const int8_t *xp = xv[i].xqp + j;
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(a, _mm256_loadu_si256((const __m256i *)xp)),
                                     _mm256_maddubs_epi16(b, _mm256_loadu_si256((const __m256i *)(xp + 32))));
        __m256 d = _mm256_mul_ps(_mm256_loadu_ps(xv[i].xdv + j / 8), sv);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), d, acc[i]);
    }
}

/* the weight scale(s) of the 64-block at j when group % 64 != 0 (32*odd: a
 * block holds two groups' halves; the second half's scale goes into lanes
 * 4-7 for 4 bits, lanes 2,3,6,7 for 2 bits) */
AI __m256 scale2(const dlq_qrow *r, int64_t j, const int bits) {
    int64_t G = r->group;
    float sa = G == 32 ? r->s[j >> 5] : r->s[j / G], sb = G == 32 ? r->s[(j >> 5) + 1] : r->s[(j + 32) / G];
    return _mm256_blend_ps(_mm256_set1_ps(sa), _mm256_set1_ps(sb), bits == 2 ? 0xCC : 0xF0);
}

/* Blocks go in pairs into two accumulator sets (one chain of FMAs would wait
 * out the FMA latency every block). Scales: group % 64 == 0 steps a group
 * counter (no division in the loop); otherwise scale2. group % 32 == 0
 * (dispatcher). */
AI void dot_i8_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out, const int bits) {
    __m256 acc[DLQ_QK_MAXN], acc2[DLQ_QK_MAXN];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) acc[i] = acc2[i] = _mm256_setzero_ps();
    const int64_t full = r->in / 64 * 64, G = r->group;
    int64_t j = 0;
    if (G % 64 == 0) {
        const int64_t bpg = G / 64; /* blocks per group */
        int64_t g = 0, k = 0;
        for (; j + 128 <= full; j += 128) {
            __m256 s0 = _mm256_set1_ps(r->s[g]);
            if (++k == bpg) { k = 0; g++; }
            __m256 s1 = _mm256_set1_ps(r->s[g]);
            if (++k == bpg) { k = 0; g++; }
            blk_i8(r, xv, N, j, s0, acc, bits);
            blk_i8(r, xv, N, j + 64, s1, acc2, bits);
        }
        if (j < full) { blk_i8(r, xv, N, j, _mm256_set1_ps(r->s[g]), acc, bits); j += 64; }
    } else {
        for (; j + 128 <= full; j += 128) {
            blk_i8(r, xv, N, j, scale2(r, j, bits), acc, bits);
            blk_i8(r, xv, N, j + 64, scale2(r, j + 64, bits), acc2, bits);
        }
        if (j < full) { blk_i8(r, xv, N, j, scale2(r, j, bits), acc, bits); j += 64; }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) out[i] = hsum(_mm256_add_ps(acc[i], acc2[i]));
    if (j < r->in) dlq_qk_dot_i8_tail(r, xv, N, j, out);
}

/* int8 activations, 8-bit weights, 32 per step (one activation block): signed
 * q = u - 128 against xq with llama.cpp's sign trick (|q| <= 128 and the sign
 * moved onto xq, so vpmaddubsw cannot saturate); the 128 * sum(xq) part of
 * sum(u * xq) comes back per group from csx. group % 32 == 0. */
AI void blk_i8_8bit(const dlq_qrow *r, const dlq_qxv *xv, const int N, int64_t j, float s, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r->q + j)), flip);
    __m256i aq = _mm256_sign_epi8(q, q);
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) {
        __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xv[i].xq + j)), q);
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, sx), ones);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(s * xv[i].xd[j / 32]), acc[i]);
    }
}

/* Blocks in pairs into two accumulator sets, as dot_i8_n; the scale of the
 * block at j is s[j / group], stepped with a counter (no division). */
AI void dot_i8_8bit_n(const dlq_qrow *r, const dlq_qxv *xv, const int N, float *out) {
    __m256 acc[DLQ_QK_MAXN], acc2[DLQ_QK_MAXN];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) acc[i] = acc2[i] = _mm256_setzero_ps();
    const int64_t full = r->in / 32 * 32, bpg = r->group / 32;
    int64_t j = 0, g = 0, k = 0;
    for (; j + 64 <= full; j += 64) {
        float s0 = r->s[g];
        if (++k == bpg) { k = 0; g++; }
        float s1 = r->s[g];
        if (++k == bpg) { k = 0; g++; }
        blk_i8_8bit(r, xv, N, j, s0, acc);
        blk_i8_8bit(r, xv, N, j + 32, s1, acc2);
    }
    if (j < full) { blk_i8_8bit(r, xv, N, j, r->s[g], acc); j += 32; }
    int64_t ng = (r->in + r->group - 1) / r->group;
    _Pragma("GCC unroll 4")
    for (int i = 0; i < N; i++) { /* + sum_g s_g csx_g, 8 lanes wide (one running sum is a latency chain) */
        __m256 c8 = _mm256_setzero_ps();
        int64_t gg = 0;
        for (; gg + 8 <= ng; gg += 8) c8 = _mm256_fmadd_ps(_mm256_loadu_ps(r->s + gg), _mm256_loadu_ps(xv[i].csx + gg), c8);
        float c = 0;
        for (; gg < ng; gg++) c += r->s[gg] * xv[i].csx[gg];
        out[i] = hsum(_mm256_add_ps(_mm256_add_ps(acc[i], acc2[i]), c8)) + c;
    }
    if (j < r->in) dlq_qk_dot_i8_tail(r, xv, N, j, out);
}

void dlq_qk_dot_i8_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    if (r->bits == 8) {
        switch (n) {
        case 1: dot_i8_8bit_n(r, xv, 1, out); break;
        case 2: dot_i8_8bit_n(r, xv, 2, out); break;
        case 3: dot_i8_8bit_n(r, xv, 3, out); break;
        default: dot_i8_8bit_n(r, xv, 4, out); break;
        }
        return;
    }
    if (r->bits == 4) {
        switch (n) {
        case 1: dot_i8_n(r, xv, 1, out, 4); break;
        case 2: dot_i8_n(r, xv, 2, out, 4); break;
        case 3: dot_i8_n(r, xv, 3, out, 4); break;
        default: dot_i8_n(r, xv, 4, out, 4); break;
        }
    } else if (r->bits == 3) {
        switch (n) {
        case 1: dot_i8_n(r, xv, 1, out, 3); break;
        case 2: dot_i8_n(r, xv, 2, out, 3); break;
        case 3: dot_i8_n(r, xv, 3, out, 3); break;
        default: dot_i8_n(r, xv, 4, out, 3); break;
        }
    } else {
        switch (n) {
        case 1: dot_i8_n(r, xv, 1, out, 2); break;
        case 2: dot_i8_n(r, xv, 2, out, 2); break;
        case 3: dot_i8_n(r, xv, 3, out, 2); break;
        default: dot_i8_n(r, xv, 4, out, 2); break;
        }
    }
}
#endif
