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
} dlq_qxv;

static inline uint32_t dlq_qk_get_u(const uint8_t *src, int64_t j, int bits, int64_t nbytes) {
    int64_t bit = j * bits, byte = bit >> 3;
    uint32_t v = src[byte];
    if (byte + 1 < nbytes) v |= (uint32_t)src[byte + 1] << 8;
    return (v >> (bit & 7)) & ((1u << bits) - 1);
}

/* out[i] += sum over j in [j0, in) of s_g * u_j * x_i[j] (grouped per weight group) */
void dlq_qk_dot_f32_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out);
/* out[i] += sum over int8 blocks k >= j0/32 of s_g(k) * d_ik * sum_{j in k} u_j xq_ij */
void dlq_qk_dot_i8_tail(const dlq_qrow *r, const dlq_qxv *xv, int n, int64_t j0, float *out);
/* dst[j] = s_g u_j + c_g for j in [j0, in) */
void dlq_qk_dequant_tail(const dlq_qrow *r, float *dst, int64_t j0);

/* Row kernels: out[i] = the full-row sums above (tails included). */
void dlq_qk_dot_f32_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dot_i8_avx2(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out); /* 4-bit only */
void dlq_qk_dequant_avx2(const dlq_qrow *r, float *dst);
void dlq_qk_dot_f32_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dot_i8_avx512(const dlq_qrow *r, const dlq_qxv *xv, int n, float *out);
void dlq_qk_dequant_avx512(const dlq_qrow *r, float *dst);

#endif
