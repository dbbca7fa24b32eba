/* Private to the packed kernels: one row and one prepared activation vector,
 * and the per-instruction-set row kernels that qkernels.c dispatches to. */
#ifndef DLQ_KERNELS_QK_INTERNAL_H
#define DLQ_KERNELS_QK_INTERNAL_H

#include <stdint.h>

#define DLQ_QK_MAXN 4  /* vectors per gemv call (dlq_linear's decode threshold) */
#define DLQ_QK_XBLK 32 /* int8 activation block */

typedef struct dlq_qrow {
    const uint8_t *q;  /* packed row, nbytes bytes (never read past them) */
    int64_t nbytes, in;
    int bits, group;
    const float *s, *c; /* [ng] scale and u-form offset c = bias + scale*qmin */
} dlq_qrow;

typedef struct dlq_qxv {
    const float *x;   /* [in] */
    const int8_t *xq; /* [in rounded up to 64], zero padded; int8 path only */
    const float *xd;  /* [ceil(in/32)] block scales; int8 path only */
    /* AVX2 int8 path (2-, 3- and 4-bit): per full 64-element block, xq in the
     * order the nibble / crumb planes come out of a packed row, and the
     * activation scale of each int32 lane after vpmaddwd (dlq_qk_permute_x) */
    const int8_t *xqp; /* [in/64][64] */
    const float *xdv;  /* [in/64][8] */
    /* AVX2 int8 path (8-bit): per weight group, 128 * sum over its full
     * 32-blocks k of d_k * sum(xq in k); the kernel multiplies signed q = u - 128
     * (vpsignb keeps vpmaddubsw from saturating) and adds back s_g * csx_g */
    const float *csx;  /* [ng] */
} dlq_qxv;

/* Fills xqp / xdv for bits 2, 3 or 4 from xq / xd (plain C). 4-bit: byte i of a
 * 64-block holds elements 2i (low nibble) and 2i+1: xqp = [x0 x2 .. x62 |
 * x1 x3 .. x63]; lanes 0-3 hold block 2m, lanes 4-7 block 2m+1. 2-bit: byte
 * i holds elements 4i+f (bits 2f): xqp = [f=0 | f=1 | f=2 | f=3] of 16 each;
 * lanes 0,1,4,5 hold block 2m, lanes 2,3,6,7 block 2m+1. 3-bit: byte p of
 * 128-bit lane L of the two packed registers holds element 8c + e, c = 4L +
 * w/2, e = 2t + w%2 (w = p % 8, t = p / 8 in the first, 2 + p / 8 in the
 * second); lanes 0-3 hold block 2m, lanes 4-7 block 2m+1. */
void dlq_qk_permute_x(int bits, const int8_t *xq, const float *xd, int64_t in, int8_t *xqp, float *xdv);

static inline uint32_t dlq_qk_get_u(const uint8_t *src, int64_t j, int bits, int64_t nbytes) {
    int64_t bit = j * bits, byte = bit >> 3;
    uint32_t v = src[byte];
    if (byte + 1 < nbytes) v |= (uint32_t)src[byte + 1] << 8;
    return (v >> (bit & 7)) & ((1u << bits) - 1);
}

/* Unpacking tables per width b (index b = 2..8), built once in plain C by
 * qkernels.c (code compiled for AVX2 / AVX-512 must not run before the CPU
 * check): for 16 elements of b bits at a byte boundary, element e's first
 * byte (ctl), a second byte or 0x80 (none), and its shift (sh); ctl2/sh2 in
 * the AVX2 layout (two vectors of 8 dwords, each over a broadcast 16-byte
 * lane), ctl16/sh16 as one 16-dword vector; perm/msh: AVX-512 VBMI vpermb
 * indices and vpmultishiftqb counts for 64 elements. */
typedef struct dlq_qk_tables {
    uint8_t ctl2[9][2][32];
    int32_t sh2[9][2][8];
    uint8_t ctl16[9][64];
    int32_t sh16[9][16];
    uint8_t perm[9][64], msh[9][64];
    /* AVX2 3-bit int8 path: per output register t (0..3), the vpshufb
     * control placing the 16-bit word that holds element e = 2t + w%2 of
     * 3-byte chunk w/2 of the lane in word w (upper lane: 4 bytes further;
     * 0x80 for a second byte the element does not reach), and the vpmullw
     * multiplier 2^(8 - bit offset) that moves the element to bits 8..10 */
    uint8_t c3[4][32];
    int16_t m3[4][16];
} dlq_qk_tables;
extern dlq_qk_tables dlq_qk_tab;

/* out[i] += sum over j in [j0, in) of s_g * u_j * x_i[j] (grouped per weight group) */
void dlq_qk_dot_f32_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out);
/* out[i] += sum over int8 blocks k >= j0/32 of s_g(k) * d_ik * sum_{j in k} u_j xq_ij */
void dlq_qk_dot_i8_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out);
/* dst[j] = s_g u_j + c_g for j in [j0, in) */
void dlq_qk_dequant_tail(const dlq_qrow *r, float *dst, int64_t j0);

/* F16 group parameters of one row (AVX2 + F16C): s[g] = scale, and per
 * vector i the offset term off[i] = sum_g (bias_g + qmin*s_g) * sx[i][g]
 * (sx: the vector's per-group sums), in one pass over the row's parameters. */
void dlq_qk_params_f16_avx2(const uint16_t *sh, const uint16_t *bh, int64_t ng, float qmin, const float *const *sx, int n,
                            float *s, float *off);

/* Row kernels: out[i] = the full-row sums above (tails included). */
void dlq_qk_dot_f32_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dot_i8_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out); /* 2-, 3-, 4- and 8-bit only */
void dlq_qk_dequant_avx2(const dlq_qrow *r, float *dst);
void dlq_qk_dot_f32_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dot_i8_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dequant_avx512(const dlq_qrow *r, float *dst);

#endif
