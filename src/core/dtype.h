/* Element types of stored tensors and scalar conversions. */
#ifndef DLQ_CORE_DTYPE_H
#define DLQ_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum dlq_dtype {
    DLQ_F32 = 0,
    DLQ_F16 = 1,
    DLQ_BF16 = 2,
    DLQ_I32 = 3,
    DLQ_I64 = 4,
    DLQ_I8 = 5,
    DLQ_U8 = 6,
    DLQ_F64 = 7,
    DLQ_QPACK = 8, /* n-bit integers bit-packed per row + per-group scale/bias (dlq_weight's q* fields) */
    DLQ_DTYPE_COUNT
} dlq_dtype;

size_t dlq_dtype_size(dlq_dtype t);
const char *dlq_dtype_name(dlq_dtype t);

static inline float dlq_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* round-to-nearest-even; NaN stays NaN */
static inline uint16_t dlq_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float dlq_f16_to_f32(uint16_t h);
uint16_t dlq_f32_to_f16(float f);

/* Convert n elements of type t at src to float32 (src may be unaligned). */
void dlq_to_f32(float *dst, const void *src, dlq_dtype t, size_t n);

#endif
