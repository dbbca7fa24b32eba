/* ggml block formats: decoders (GGUF loading) and encoders (GGUF export).
 * See ggml_quant.h for the layouts; tests compare both directions with
 * blocks made by the Python gguf package (tests/fixtures/gguf/quant_*). */
#include "io/ggml_quant.h"

#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "io/gguf.h"

static float h2f(const uint8_t *p) { return dlq_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static void f2h(uint8_t *p, float f) {
    uint16_t h = dlq_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}
static float f16r(float f) { return dlq_f16_to_f32(dlq_f32_to_f16(f)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* ---- decoders ---- */

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 15) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 15) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    uint32_t qh = rd32(b + 2);
    for (int j = 0; j < 16; j++) {
        int x0 = (b[6 + j] & 15) | (int)(((qh >> j) & 1) << 4), x1 = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(x0 - 16);
        y[j + 16] = d * (float)(x1 - 16);
    }
}

static void deq_q5_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    uint32_t qh = rd32(b + 4);
    for (int j = 0; j < 16; j++) {
        int x0 = (b[8 + j] & 15) | (int)(((qh >> j) & 1) << 4), x1 = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (float)x0 + m;
        y[j + 16] = d * (float)x1 + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

/* low two bits of value i of a K-quant super-block */
static int k_low2(const uint8_t *qs, int i) {
    int n = i / 128, j = (i % 128) / 32, l = i % 32;
    return (qs[32 * n + l] >> (2 * j)) & 3;
}

static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int i = 0; i < 256; i++) {
        int k = i / 16;
        y[i] = d * (float)(sc[k] & 15) * (float)k_low2(qs, i) - dmin * (float)(sc[k] >> 4);
    }
}

static int q3k_scale(const uint8_t *s, int k) {
    int lo = k < 8 ? s[k] & 15 : s[k - 8] >> 4;
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
    float d = h2f(b + 108);
    for (int i = 0; i < 256; i++) {
        int n = i / 128, j = (i % 128) / 32, l = i % 32;
        int u = k_low2(qs, i) | (((hm[l] >> (4 * n + j)) & 1) << 2);
        y[i] = d * (float)q3k_scale(s, i / 16) * (float)(u - 4);
    }
}

/* K-quant 6-bit scale and min of sub-block j (of 8) from the 12 packed bytes
 * (ggml's get_scale_min_k4) */
static void k4_scale_min(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: eight sub-blocks of 32; sub-block j reads nibble j%2 of
 * qs[32*(j/2) + l] (and, Q5_K, bit j of qh[l] as bit 4) */
static void deq_q45_k(const uint8_t *b, float *y, int five) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *qs = five ? b + 48 : b + 16;
    for (int j = 0; j < 8; j++) {
        int s, m;
        k4_scale_min(sc, j, &s, &m);
        float dl = d * (float)s, ml = dmin * (float)m; /* the order of ggml and gguf-py (float32 throughout) */
        for (int l = 0; l < 32; l++) {
            int u = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
            if (five) u |= ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = dl * (float)u - ml;
        }
    }
}

static void deq_q4_k(const uint8_t *b, float *y) { deq_q45_k(b, y, 0); }
static void deq_q5_k(const uint8_t *b, float *y) { deq_q45_k(b, y, 1); }

/* Q6_K: value i = 128n + 32k + l (k < 4) has its low nibble in
 * ql[64n + 32(k%2) + l] (k/2 selects the high nibble), its top two bits at
 * bits 2k of qh[32n + l]; scale sc[i/16] (int8); w = d*sc*(u - 32) */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int i = 0; i < 256; i++) {
        int n = i / 128, k = (i % 128) / 32, l = i % 32;
        int lo = (ql[64 * n + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
        int hi = (qh[32 * n + l] >> (2 * k)) & 3;
        y[i] = d * (float)sc[i / 16] * (float)((lo | hi << 4) - 32);
    }
}

static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void deq_iq4_nl(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)iq4nl_values[b[2 + j] & 15];
        y[j + 16] = d * (float)iq4nl_values[b[2 + j] >> 4];
    }
}

/* IQ4_XS: 256 values: d, u16 scales_h, scales_l[4], qs[128]; sub-block j of
 * 32 has the 6-bit scale (nibble j%2 of scales_l[j/2]) | (bits 2j of
 * scales_h) << 4, minus 32, and the IQ4_NL code book */
static void deq_iq4_xs(const uint8_t *b, float *y) {
    float d = h2f(b);
    unsigned sh = (unsigned)b[2] | (unsigned)b[3] << 8;
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int j = 0; j < 8; j++) {
        int ls = ((sl[j / 2] >> (4 * (j % 2))) & 15) | (int)(((sh >> (2 * j)) & 3) << 4);
        float dl = d * (float)(ls - 32);
        for (int l = 0; l < 16; l++) {
            y[32 * j + l] = dl * (float)iq4nl_values[qs[16 * j + l] & 15];
            y[32 * j + l + 16] = dl * (float)iq4nl_values[qs[16 * j + l] >> 4];
        }
    }
}

int dlq_ggml_can_dequant(uint32_t t) {
    switch (t) {
    case DLQ_GGML_F32: case DLQ_GGML_F16: case DLQ_GGML_BF16: case DLQ_GGML_Q4_0: case DLQ_GGML_Q4_1:
    case DLQ_GGML_Q5_0: case DLQ_GGML_Q5_1: case DLQ_GGML_Q8_0: case DLQ_GGML_Q2_K: case DLQ_GGML_Q3_K:
    case DLQ_GGML_Q4_K: case DLQ_GGML_Q5_K: case DLQ_GGML_Q6_K: case DLQ_GGML_IQ4_NL: case DLQ_GGML_IQ4_XS: return 1;
    }
    return 0;
}

int dlq_ggml_dequant(uint32_t type, const void *src, float *dst, int64_t n, dlq_err *err) {
    const uint8_t *s = src;
    void (*fn)(const uint8_t *, float *) = NULL;
    int blk = 32;
    switch (type) {
    case DLQ_GGML_F32: dlq_to_f32(dst, src, DLQ_F32, (size_t)n); return DLQ_OK;
    case DLQ_GGML_F16: dlq_to_f32(dst, src, DLQ_F16, (size_t)n); return DLQ_OK;
    case DLQ_GGML_BF16: dlq_to_f32(dst, src, DLQ_BF16, (size_t)n); return DLQ_OK;
    case DLQ_GGML_Q4_0: fn = deq_q4_0; break;
    case DLQ_GGML_Q4_1: fn = deq_q4_1; break;
    case DLQ_GGML_Q5_0: fn = deq_q5_0; break;
    case DLQ_GGML_Q5_1: fn = deq_q5_1; break;
    case DLQ_GGML_Q8_0: fn = deq_q8_0; break;
    case DLQ_GGML_Q2_K: fn = deq_q2_k; blk = 256; break;
    case DLQ_GGML_Q3_K: fn = deq_q3_k; blk = 256; break;
    case DLQ_GGML_Q4_K: fn = deq_q4_k; blk = 256; break;
    case DLQ_GGML_Q5_K: fn = deq_q5_k; blk = 256; break;
    case DLQ_GGML_Q6_K: fn = deq_q6_k; blk = 256; break;
    case DLQ_GGML_IQ4_NL: fn = deq_iq4_nl; break;
    case DLQ_GGML_IQ4_XS: fn = deq_iq4_xs; blk = 256; break;
    default:
        return dlq_errf(err, DLQ_EUNSUP, "ggml type %s is not supported for loading (F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                        "Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS)", dlq_ggml_type_name(type));
    }
    uint64_t bb = dlq_ggml_nbytes(type, (uint64_t)blk);
    if (n % blk) return dlq_errf(err, DLQ_EINVAL, "%s: %lld values are not whole blocks of %d", dlq_ggml_type_name(type), (long long)n, blk);
    for (int64_t i = 0; i < n / blk; i++) fn(s + (size_t)i * bb, dst + i * blk);
    return DLQ_OK;
}

/* ---- encoders ---- */

void dlq_q4_1_encode(uint8_t *b, const uint8_t *u, float d, float m) {
    f2h(b, d);
    f2h(b + 2, m);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)((u[j] & 15) | (u[j + 16] & 15) << 4);
}

void dlq_q5_1_encode(uint8_t *b, const uint8_t *u, float d, float m) {
    f2h(b, d);
    f2h(b + 2, m);
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) qh |= (uint32_t)((u[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) b[4 + k] = (uint8_t)(qh >> (8 * k));
    for (int j = 0; j < 16; j++) b[8 + j] = (uint8_t)((u[j] & 15) | (u[j + 16] & 15) << 4);
}

void dlq_q8_0_quantize(uint8_t *b, const float *x) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    f2h(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void k_set_low2(uint8_t *qs, int i, int v) {
    int n = i / 128, j = (i % 128) / 32, l = i % 32;
    qs[32 * n + l] |= (uint8_t)((v & 3) << (2 * j));
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void dlq_q2_k_quantize(uint8_t *b, const float *x, const float *step, const float *off) {
    /* per sub-block: w = dl*u - ml (ml = -off) */
    float dl[16], ml[16];
    for (int k = 0; k < 16; k++) {
        const float *v = x + 16 * k;
        if (step && off) { dl[k] = step[k]; ml[k] = -off[k]; }
        else {
            float lo = v[0], hi = v[0];
            for (int i = 1; i < 16; i++) { lo = fminf(lo, v[i]); hi = fmaxf(hi, v[i]); }
            dl[k] = (hi - lo) / 3.0f;
            ml[k] = -lo;
        }
        if (!(dl[k] > 0)) dl[k] = 0; /* the grid cannot flip sign: a constant sub-block keeps only its offset */
    }
    float dmax = 0, mpos = 0, mneg = 0;
    for (int k = 0; k < 16; k++) { dmax = fmaxf(dmax, dl[k]); mpos = fmaxf(mpos, ml[k]); mneg = fminf(mneg, ml[k]); }
    /* dmin may be negative: offsets of one sign are represented exactly in
     * range; with mixed signs the minority sign clamps to 0 and the integers
     * are re-chosen below */
    float dmin = mpos >= -mneg ? mpos / 15.0f : mneg / 15.0f;
    float d = f16r(dmax / 15.0f);
    dmin = f16r(dmin);
    memset(b, 0, DLQ_Q2_K_BYTES);
    uint8_t *qs = b + 16;
    for (int k = 0; k < 16; k++) {
        int sc = d > 0 ? clampi((int)lrintf(dl[k] / d), 0, 15) : 0;
        int mn = dmin != 0 ? clampi((int)lrintf(ml[k] / dmin), 0, 15) : 0;
        b[k] = (uint8_t)(sc | mn << 4);
        float dq = d * (float)sc, mq = dmin * (float)mn;
        for (int i = 0; i < 16; i++) {
            int u = dq > 0 ? clampi((int)lrintf((x[16 * k + i] + mq) / dq), 0, 3) : 0;
            k_set_low2(qs, 16 * k + i, u);
        }
    }
    f2h(b + 80, d);
    f2h(b + 82, dmin);
}

/* symmetric 3-bit fit of 16 values: the step s minimizing
 * sum (x - s*clamp(round(x/s), -4, 3))^2 over a small candidate set (the
 * hint, and +-max|x|/k for k in 3..4.35; s may be negative, which puts the
 * long side of the grid on the positive values) refined by one
 * least-squares step */
static float fit_sym3(const float *x, float hint) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < 16; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
    if (amax == 0) return 0;
    float cand[24];
    int nc = 0;
    if (hint != 0) cand[nc++] = hint;
    for (int t = 0; t < 10; t++) {
        float k = 3.0f + 0.15f * (float)t;
        cand[nc++] = -vmax / k; /* the extreme value lands near -k (the grid's long side) */
        cand[nc++] = vmax / k;  /* ... or near +k */
    }
    float best = 0, besterr = INFINITY;
    for (int c = 0; c < nc; c++) {
        float s = cand[c];
        for (int it = 0; it < 2 && s != 0; it++) {
            double e = 0, xq = 0, qq = 0;
            for (int i = 0; i < 16; i++) {
                int q = clampi((int)lrintf(x[i] / s), -4, 3);
                double r = x[i] - s * q;
                e += r * r;
                xq += (double)x[i] * q;
                qq += (double)q * q;
            }
            if (e < besterr) { besterr = e; best = s; }
            if (qq > 0 && xq != 0) s = (float)(xq / qq); /* least-squares step for these integers */
        }
    }
    return best;
}

void dlq_q3_k_quantize(uint8_t *b, const float *x, const float *step) {
    float dl[16], amax = 0;
    for (int k = 0; k < 16; k++) {
        dl[k] = fit_sym3(x + 16 * k, step ? step[k] : 0);
        amax = fmaxf(amax, fabsf(dl[k]));
    }
    float d = f16r(amax / 31.0f);
    memset(b, 0, DLQ_Q3_K_BYTES);
    uint8_t *hm = b, *qs = b + 32, *s = b + 96;
    for (int k = 0; k < 16; k++) {
        int sc = d > 0 ? clampi((int)lrintf(dl[k] / d), -32, 31) : 0;
        int st = sc + 32;
        if (k < 8) s[k] |= (uint8_t)(st & 15);
        else s[k - 8] |= (uint8_t)((st & 15) << 4);
        s[8 + k % 4] |= (uint8_t)(((st >> 4) & 3) << (2 * (k / 4)));
        float dq = d * (float)sc;
        for (int i = 0; i < 16; i++) {
            int idx = 16 * k + i;
            int u = (dq != 0 ? clampi((int)lrintf(x[idx] / dq), -4, 3) : 0) + 4;
            k_set_low2(qs, idx, u & 3);
            int n = idx / 128, j = (idx % 128) / 32, l = idx % 32;
            if (u & 4) hm[l] |= (uint8_t)(1u << (4 * n + j));
        }
    }
    f2h(b + 108, d);
}
