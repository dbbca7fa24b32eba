/* ggml's block-quantized tensor types: encoders used by the GGUF export and
 * decoders used by the GGUF loader. Layouts as ggml / gguf-py define them
 * (little-endian; d, m, dmin are IEEE fp16):
 *
 *   Q4_1  32 values, 20 bytes: d, m, qs[16]; value j = qs[j] & 15, value
 *         j+16 = qs[j] >> 4;  w = d*u + m, u in 0..15
 *   Q5_1  32 values, 24 bytes: d, m, u32 qh, qs[16]; bit 4 of value j is
 *         bit j of qh;  w = d*u + m, u in 0..31
 *   Q8_0  32 values, 34 bytes: d, int8 qs[32];  w = d*q
 *   Q2_K  256 values, 84 bytes: scales[16], qs[64], d, dmin; sub-block k of
 *         16 values has sc = scales[k] & 15, mn = scales[k] >> 4;
 *         w = d*sc*u - dmin*mn, u in 0..3
 *   Q3_K  256 values, 110 bytes: hmask[32], qs[64], scales[12], d; sixteen
 *         6-bit scales (stored + 32); w = d*(sc-32)*(u-4), u in 0..7 whose
 *         bit 2 is in hmask
 * In Q2_K / Q3_K, value i = 128*n + 32*j + l (n < 2, j < 4, l < 32) has its
 * low two bits at bit 2j of qs[32n + l] and (Q3_K) its high bit at bit
 * 4n + j of hmask[l].
 * Decoded only (GGUF loading):
 *   Q4_0  32 values, 18 bytes: d, qs[16];  w = d*(u - 8)
 *   Q5_0  32 values, 22 bytes: d, u32 qh, qs[16];  w = d*(u - 16)
 *   Q4_K  256 values, 144 bytes: d, dmin, scales[12], qs[128]; eight
 *         sub-blocks of 32 with 6-bit scale sc and min mn (ggml's
 *         get_scale_min_k4 packing); w = d*sc*u - dmin*mn, u in 0..15
 *   Q5_K  256 values, 176 bytes: d, dmin, scales[12], qh[32], qs[128]; as
 *         Q4_K with bit j of qh[l] as bit 4 of sub-block j's value l
 *   Q6_K  256 values, 210 bytes: ql[128], qh[64], int8 scales[16], d;
 *         w = d*sc*(u - 32), u in 0..63, sixteen sub-blocks of 16
 *   IQ4_NL 32 values, 18 bytes: d, qs[16]; w = d*kv[u], kv = ggml's
 *         16-entry non-linear code book (-127..113)
 *   IQ4_XS 256 values, 136 bytes: d, u16 scales_h, scales_l[4], qs[128];
 *         eight sub-blocks of 32 with 6-bit scales (minus 32), IQ4_NL values
 * Every decoder does its float32 operations in ggml's (and gguf-py's) order,
 * so the results are identical to theirs bit for bit. */
#ifndef DLQ_IO_GGML_QUANT_H
#define DLQ_IO_GGML_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum { DLQ_QK = 32, DLQ_QK_K = 256 };
/* ggml type numbers of the types gguf.h does not name */
enum { DLQ_GGML_IQ4_NL = 20, DLQ_GGML_IQ4_XS = 23 };
enum { DLQ_Q4_1_BYTES = 20, DLQ_Q5_1_BYTES = 24, DLQ_Q8_0_BYTES = 34, DLQ_Q2_K_BYTES = 84, DLQ_Q3_K_BYTES = 110 };

/* Dequantizes n values (a whole number of blocks) of ggml type `type` (F32,
 * F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
 * IQ4_NL, IQ4_XS) to f32. Returns 0, or DLQ_EUNSUP naming the type. */
int dlq_ggml_dequant(uint32_t type, const void *src, float *dst, int64_t n, dlq_err *err);
/* 1 if dlq_ggml_dequant handles the type */
int dlq_ggml_can_dequant(uint32_t type);

/* Exact encoders: one 32-value block from unsigned integers u and the block's
 * step d and offset m (w = d*u + m), d and m rounded to fp16. */
void dlq_q4_1_encode(uint8_t *blk, const uint8_t *u, float d, float m);
void dlq_q5_1_encode(uint8_t *blk, const uint8_t *u, float d, float m);
/* ggml's reference Q8_0 quantizer: d = max|x| / 127, q = round(x / d). */
void dlq_q8_0_quantize(uint8_t *blk, const float *x);
/* K-quant encoders of one 256-value super-block of weights x. step / off
 * (per 16-value sub-block, may be NULL) are the starting point of the fit:
 * the source quantizer's step and its value at the lowest integer (Q2_K:
 * w = step*u + off). The sub-block scales are quantized to the format's grid
 * and the integers re-chosen against x with the quantized scales. */
void dlq_q2_k_quantize(uint8_t *blk, const float *x, const float *step, const float *off);
void dlq_q3_k_quantize(uint8_t *blk, const float *x, const float *step);

#endif
