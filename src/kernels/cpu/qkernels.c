/* Packed-weight linear kernels: run-time ISA dispatch, the scalar reference
 * kernels, activation preparation and the OpenMP row drivers. The SIMD row
 * kernels live in qkernels_avx2.c and qkernels_avx512.c. */
#include "kernels/qkernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/qk_internal.h"
#include "kernels/qpack.h"
#include "kernels/vec.h"

/* the per-row parameter loops below are short and hot: let GCC vectorize them */
#pragma GCC optimize("O3")

/* ---- instruction-set selection ---- */

static int g_isa = -1, g_act = -1;

dlq_qisa dlq_qisa_supported(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512vbmi"))
        return DLQ_QISA_AVX512;
    if (avx2) return DLQ_QISA_AVX2;
#endif
    return DLQ_QISA_SCALAR;
}

const char *dlq_qisa_name(dlq_qisa isa) {
    return isa == DLQ_QISA_AVX512 ? "avx512" : isa == DLQ_QISA_AVX2 ? "avx2" : "scalar";
}

dlq_qisa dlq_qisa_force(dlq_qisa isa) {
    dlq_qisa s = dlq_qisa_supported();
    g_isa = (int)(isa < s ? isa : s);
    return (dlq_qisa)g_isa;
}

dlq_qisa dlq_qisa_active(void) {
    if (g_isa < 0) {
        const char *e = getenv("DLQ_ISA");
        dlq_qisa want = DLQ_QISA_AVX512;
        if (e && !strcmp(e, "scalar")) want = DLQ_QISA_SCALAR;
        else if (e && !strcmp(e, "avx2")) want = DLQ_QISA_AVX2;
        dlq_qisa_force(want);
    }
    return (dlq_qisa)g_isa;
}

dlq_qact dlq_qact_active(void) {
    if (g_act < 0) {
        const char *e = getenv("DLQ_QACT");
        g_act = e && !strcmp(e, "f32") ? DLQ_QACT_F32 : DLQ_QACT_I8;
    }
    return (dlq_qact)g_act;
}

void dlq_qact_force(dlq_qact a) { g_act = (int)a; }

/* ---- unpacking tables ---- */

dlq_qk_tables dlq_qk_tab;

__attribute__((constructor)) static void init_tables(void) {
    for (int t = 0; t < 4; t++)
        for (int w = 0; w < 8; w++) {
            int c = w / 2, e = 2 * t + w % 2, b0 = 3 * c + 3 * e / 8;
            int span = 3 * e % 8 > 5; /* the element runs into the next byte */
            for (int lane = 0; lane < 2; lane++) { /* the upper lane holds block bytes 8..23 */
                dlq_qk_tab.c3[t][16 * lane + 2 * w] = (uint8_t)(b0 + 4 * lane);
                dlq_qk_tab.c3[t][16 * lane + 2 * w + 1] = span ? (uint8_t)(b0 + 1 + 4 * lane) : 0x80;
                dlq_qk_tab.m3[t][8 * lane + w] = (int16_t)(1 << (8 - 3 * e % 8));
            }
        }
    for (int b = 2; b <= 8; b++) {
        for (int e = 0; e < 16; e++) {
            int bit = e * b, byte = bit >> 3, s = bit & 7, v = e >> 3, d = e & 7;
            uint8_t c[4] = {(uint8_t)byte, s + b > 8 ? (uint8_t)(byte + 1) : 0x80, 0x80, 0x80};
            memcpy(dlq_qk_tab.ctl2[b][v] + 4 * d, c, 4); /* dword d of vector v */
            memcpy(dlq_qk_tab.ctl16[b] + 4 * e, c, 4);   /* dword e (128-bit lane e/4) */
            dlq_qk_tab.sh2[b][v][d] = s;
            dlq_qk_tab.sh16[b][e] = s;
        }
        for (int p = 0; p < 64; p++) {
            int k = p / 8, m = p % 8;
            dlq_qk_tab.perm[b][p] = (uint8_t)((k * b + m) & 63); /* slots m >= b are masked off after the shift */
            dlq_qk_tab.msh[b][p] = (uint8_t)(m * b);
        }
    }
}

/* ---- group parameters ---- */

void dlq_qparams_row(const dlq_weight *w, int64_t r, float *scale, float *bias) {
    int64_t ng = w->qng;
    if (w->qpdtype == DLQ_F16) { /* F16C when the CPU has it (kernels/vec.h) */
        dlq_cvt_f16(scale, w->qscale_h + r * ng, (size_t)ng);
        dlq_cvt_f16(bias, w->qbias_h + r * ng, (size_t)ng);
    } else {
        memcpy(scale, w->qscale + r * ng, (size_t)ng * sizeof(float));
        memcpy(bias, w->qbias + r * ng, (size_t)ng * sizeof(float));
    }
}

/* s and the u-form offset c = bias + scale*qmin, so that w = s*u + c */
static void row_params(const dlq_weight *w, int64_t r, float *s, float *c) {
    dlq_qparams_row(w, r, s, c);
    float qmin = (float)-(1 << (w->qbits - 1));
    for (int64_t g = 0; g < w->qng; g++) c[g] = c[g] + s[g] * qmin;
}

static dlq_qrow make_row(const dlq_weight *w, int64_t r, const float *s, const float *c) {
    return (dlq_qrow){(const uint8_t *)w->data + r * w->row_bytes, w->row_bytes, w->cols, w->qbits, w->qgroup, s, c};
}

/* ---- scalar kernels (the reference; also the tails of the SIMD kernels) ---- */

void dlq_qk_dot_f32_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out) {
    for (int64_t g = j0 / r->group; g * r->group < r->in; g++) {
        int64_t a = g * r->group > j0 ? g * r->group : j0, b = (g + 1) * r->group < r->in ? (g + 1) * r->group : r->in;
        float acc[DLQ_QK_MAXN] = {0};
        for (int64_t j = a; j < b; j++) {
            float u = (float)dlq_qk_get_u(r->q, j, r->bits, r->nbytes);
            for (int i = 0; i < n; i++) acc[i] += u * xv[i].x[j];
        }
        for (int i = 0; i < n; i++) out[i] += r->s[g] * acc[i];
    }
}

void dlq_qk_dot_i8_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out) {
    for (int64_t k = j0 / DLQ_QK_XBLK; k * DLQ_QK_XBLK < r->in; k++) {
        int64_t a = k * DLQ_QK_XBLK, b = a + DLQ_QK_XBLK < r->in ? a + DLQ_QK_XBLK : r->in;
        int32_t isum[DLQ_QK_MAXN] = {0};
        for (int64_t j = a; j < b; j++) {
            int32_t u = (int32_t)dlq_qk_get_u(r->q, j, r->bits, r->nbytes);
            for (int i = 0; i < n; i++) isum[i] += u * xv[i].xq[j];
        }
        float s = r->s[a / r->group];
        for (int i = 0; i < n; i++) out[i] += s * (xv[i].xd[k] * (float)isum[i]);
    }
}

void dlq_qk_dequant_tail(const dlq_qrow *r, float *dst, int64_t j0) {
    for (int64_t j = j0; j < r->in; j++) {
        int64_t g = j / r->group;
        dst[j] = r->s[g] * (float)dlq_qk_get_u(r->q, j, r->bits, r->nbytes) + r->c[g];
    }
}

/* ---- activation preparation ---- */

static int64_t pad64(int64_t n) { return (n + 63) & ~(int64_t)63; }

/* absmax/127 per block of 32, q = round(x / d) (half away from zero) */
static void quantize_x(const float *x, int64_t in, int8_t *xq, float *xd) {
    for (int64_t k = 0; k * DLQ_QK_XBLK < in; k++) {
        int64_t a = k * DLQ_QK_XBLK, b = a + DLQ_QK_XBLK < in ? a + DLQ_QK_XBLK : in;
        float amax = 0;
        for (int64_t j = a; j < b; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        xd[k] = d;
        /* round half away from zero as v + copysign(0.5, v) truncated:
         * vectorizes (lroundf is a libm call per element, a few percent of
         * a decode step) */
        for (int64_t j = a; j < b; j++) {
            float v = x[j] * id;
            xq[j] = (int8_t)(int)(v + copysignf(0.5f, v));
        }
    }
    for (int64_t j = in; j < pad64(in); j++) xq[j] = 0;
}

void dlq_qk_permute_x(int bits, const int8_t *xq, const float *xd, int64_t in, int8_t *xqp, float *xdv) {
    for (int64_t blk = 0; (blk + 1) * 64 <= in; blk++) {
        const int8_t *x = xq + blk * 64;
        int8_t *p = xqp + blk * 64;
        float *d = xdv + blk * 8, d0 = xd[2 * blk], d1 = xd[2 * blk + 1];
        if (bits == 4) {
            for (int i = 0; i < 32; i++) { p[i] = x[2 * i]; p[32 + i] = x[2 * i + 1]; }
            for (int m = 0; m < 8; m++) d[m] = m >= 4 ? d1 : d0;
        } else if (bits == 3) {
            for (int half = 0; half < 2; half++)
                for (int lane = 0; lane < 2; lane++)
                    for (int pp = 0; pp < 16; pp++) {
                        int w = pp % 8, t = 2 * half + pp / 8, c = 4 * lane + w / 2, e = 2 * t + w % 2;
                        p[32 * half + 16 * lane + pp] = x[8 * c + e];
                    }
            for (int m = 0; m < 8; m++) d[m] = m >= 4 ? d1 : d0;
        } else {
            for (int f = 0; f < 4; f++)
                for (int i = 0; i < 16; i++) p[16 * f + i] = x[4 * i + f];
            for (int m = 0; m < 8; m++) d[m] = (m % 4) >= 2 ? d1 : d0;
        }
    }
}

static void group_sums(const float *x, int64_t in, int group, float *sx) {
    for (int64_t g = 0; g * group < in; g++) {
        int64_t a = g * group, b = a + group < in ? a + group : in;
        float s = 0;
        for (int64_t j = a; j < b; j++) s += x[j];
        sx[g] = s;
    }
}

/* sum_g c[g]*sx[g] with 8 independent partial sums: a single running sum is
 * a chain of dependent adds that costs as much as the row's SIMD loop */
static inline float dot_groups(const float *c, const float *sx, int64_t ng) {
    float p[8] = {0};
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8)
        for (int k = 0; k < 8; k++) p[k] += c[g + k] * sx[g + k];
    float t = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    for (; g < ng; g++) t += c[g] * sx[g];
    return t;
}

size_t dlq_qgemv_scratch_bytes(int64_t in, int64_t n) {
    /* sx [n][in] (worst case group 1), xq [n][pad64(in)], xd [n][in/32 + 1],
     * xqp [n][pad64(in)], xdv [n][in/64*8], csx [n][in] (worst case group 1) */
    return (size_t)n * ((size_t)in * 8 + 2 * (size_t)pad64(in) + ((size_t)in / 32 + 1) * 4 + (size_t)in / 8 * 4) + 128;
}

/* which row kernel: 0 scalar f32, 1 scalar i8, 2 avx2 f32, 3 avx2 i8, 4 avx512 f32, 5 avx512 i8 */
static int pick_kernel(const dlq_weight *w, dlq_qisa isa, dlq_qact act) {
    int i8 = act == DLQ_QACT_I8 && w->qgroup % DLQ_QK_XBLK == 0;
    int avx2_i8 = i8 && (w->qbits == 4 || w->qbits == 3 || w->qbits == 2 || w->qbits == 8);
    /* The AVX2 int8 kernels serve AVX-512 CPUs too for the widths they have:
     * on the one AVX-512 machine we measured (docs/deployment.md) they were
     * already as fast as the AVX-512 int8 kernels before their loop was
     * reworked (two accumulator chains, no division): about 2x since. */
    if (isa == DLQ_QISA_AVX512) return avx2_i8 ? 3 : i8 ? 5 : 4;
    if (isa == DLQ_QISA_AVX2) return avx2_i8 ? 3 : 2;
    return i8 ? 1 : 0;
}

int dlq_qgemv_uses_i8(const dlq_weight *w) { return pick_kernel(w, dlq_qisa_active(), dlq_qact_active()) & 1; }

static void row_dot(int kern, const dlq_qrow *r, const dlq_qxv *xv, int n, float *out) {
    switch (kern) {
#if defined(__x86_64__) && defined(__GNUC__)
    case 2: dlq_qk_dot_f32_avx2(r, xv, n, out); return;
    case 3: dlq_qk_dot_i8_avx2(r, xv, n, out); return;
    case 4: dlq_qk_dot_f32_avx512(r, xv, n, out); return;
    case 5: dlq_qk_dot_i8_avx512(r, xv, n, out); return;
#endif
    case 1: for (int i = 0; i < n; i++) out[i] = 0; dlq_qk_dot_i8_tail(r, xv, n, 0, out); return;
    default: for (int i = 0; i < n; i++) out[i] = 0; dlq_qk_dot_f32_tail(r, xv, n, 0, out); return;
    }
}

void dlq_qgemv(float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w, void *scratch) {
    int64_t out = w->rows, in = w->cols, ng = w->qng;
    for (int64_t i0 = 0; i0 < n; i0 += DLQ_QK_MAXN) { /* callers use n <= 4; larger n in slices */
        int nn = (int)(n - i0 < DLQ_QK_MAXN ? n - i0 : DLQ_QK_MAXN);
        int kern = pick_kernel(w, dlq_qisa_active(), dlq_qact_active());
        int i8 = kern & 1;
        float *sx = scratch;
        int8_t *xq = (int8_t *)(sx + (size_t)nn * ng), *xqp = xq + (size_t)nn * pad64(in);
        float *xd = (float *)(((uintptr_t)(xqp + (size_t)nn * pad64(in)) + 3) & ~(uintptr_t)3);
        float *xdv = xd + (size_t)nn * (in / 32 + 1), *csx = xdv + (size_t)nn * (in / 64 * 8);
        dlq_qxv xv[DLQ_QK_MAXN];
        for (int i = 0; i < nn; i++) {
            const float *xi = x + (i0 + i) * in;
            group_sums(xi, in, w->qgroup, sx + (size_t)i * ng);
            memset(&xv[i], 0, sizeof xv[i]);
            xv[i].x = xi;
            if (!i8) continue;
            xv[i].xq = xq + (size_t)i * pad64(in);
            xv[i].xd = xd + (size_t)i * (in / 32 + 1);
            quantize_x(xi, in, (int8_t *)xv[i].xq, (float *)xv[i].xd);
            if (kern == 3 && w->qbits == 8) {
                float *c = csx + (size_t)i * ng;
                memset(c, 0, (size_t)ng * sizeof(float));
                for (int64_t k = 0; (k + 1) * DLQ_QK_XBLK <= in; k++) {
                    int32_t t = 0;
                    for (int j = 0; j < DLQ_QK_XBLK; j++) t += xv[i].xq[k * DLQ_QK_XBLK + j];
                    c[k * DLQ_QK_XBLK / w->qgroup] += 128.0f * xv[i].xd[k] * (float)t;
                }
                xv[i].csx = c;
            } else if (kern == 3) {
                xv[i].xqp = xqp + (size_t)i * pad64(in);
                xv[i].xdv = xdv + (size_t)i * (in / 64 * 8);
                dlq_qk_permute_x(w->qbits, xv[i].xq, xv[i].xd, in, (int8_t *)xv[i].xqp, (float *)xv[i].xdv);
            }
        }
        float *yb = y + i0 * ldy;
        const float *sxp[DLQ_QK_MAXN];
        for (int i = 0; i < nn; i++) sxp[i] = sx + (size_t)i * ng;
        /* F16 parameters on an AVX2 machine: scales and offset terms in one pass */
        int fused = kern >= 2 && w->qpdtype == DLQ_F16;
        float qmin = (float)-(1 << (w->qbits - 1));
        #pragma omp parallel for schedule(static) if (out * in > 32768)
        for (int64_t r = 0; r < out; r++) {
            float s[ng], c[ng], acc[DLQ_QK_MAXN], off[DLQ_QK_MAXN];
#if defined(__x86_64__) && defined(__GNUC__)
            if (fused) {
                dlq_qk_params_f16_avx2(w->qscale_h + r * ng, w->qbias_h + r * ng, ng, qmin, sxp, nn, s, off);
            } else
#endif
            {
                row_params(w, r, s, c);
                for (int i = 0; i < nn; i++) off[i] = dot_groups(c, sxp[i], ng);
            }
            dlq_qrow row = make_row(w, r, s, c); /* the dot kernels read s only */
            row_dot(kern, &row, xv, nn, acc);
            for (int i = 0; i < nn; i++) yb[i * ldy + r] = acc[i] + off[i];
        }
    }
}

float dlq_qdot_i8_ref(const dlq_weight *w, int64_t r, const float *x) {
    int64_t in = w->cols, ng = w->qng;
    int8_t *xq = malloc((size_t)pad64(in));
    float *xd = malloc(((size_t)in / 32 + 1) * sizeof(float)), s[ng], c[ng], sx[ng], acc = 0;
    if (!xq || !xd) { free(xq); free(xd); return NAN; }
    quantize_x(x, in, xq, xd);
    group_sums(x, in, w->qgroup, sx);
    row_params(w, r, s, c);
    dlq_qrow row = make_row(w, r, s, c);
    dlq_qxv xv = {x, xq, xd, NULL, NULL, NULL};
    dlq_qk_dot_i8_tail(&row, &xv, 1, 0, &acc);
    for (int64_t g = 0; g < ng; g++) acc += c[g] * sx[g];
    free(xq);
    free(xd);
    return acc;
}

/* ---- dequantization ---- */

static void dequant_row(dlq_qisa isa, const dlq_qrow *r, float *dst) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == DLQ_QISA_AVX512) { dlq_qk_dequant_avx512(r, dst); return; }
    if (isa == DLQ_QISA_AVX2) { dlq_qk_dequant_avx2(r, dst); return; }
#endif
    dlq_qk_dequant_tail(r, dst, 0);
}

void dlq_qdequant_w_row(const dlq_weight *w, int64_t r, float *dst) {
    float s[w->qng], c[w->qng];
    row_params(w, r, s, c);
    dlq_qrow row = make_row(w, r, s, c);
    dequant_row(dlq_qisa_active(), &row, dst);
}

void dlq_qdequant_rows(const dlq_weight *w, int64_t r0, int64_t nr, float *dst) {
    dlq_qisa isa = dlq_qisa_active();
    #pragma omp parallel for schedule(static) if (nr * w->cols > 32768)
    for (int64_t r = 0; r < nr; r++) {
        float s[w->qng], c[w->qng];
        row_params(w, r0 + r, s, c);
        dlq_qrow row = make_row(w, r0 + r, s, c);
        dequant_row(isa, &row, dst + r * w->cols);
    }
}
