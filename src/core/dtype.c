#include "core/dtype.h"

#include "kernels/vec.h"

size_t dlq_dtype_size(dlq_dtype t) {
    switch (t) {
    case DLQ_F32: case DLQ_I32: return 4;
    case DLQ_F16: case DLQ_BF16: return 2;
    case DLQ_I64: case DLQ_F64: return 8;
    case DLQ_I8: case DLQ_U8: return 1;
    default: return 0;
    }
}

const char *dlq_dtype_name(dlq_dtype t) {
    static const char *names[] = {"F32", "F16", "BF16", "I32", "I64", "I8", "U8", "F64", "QPACK"};
    return (unsigned)t < DLQ_DTYPE_COUNT ? names[t] : "?";
}

float dlq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 112u) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dlq_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);           /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);          /* overflow -> inf (RNE boundary 65520) */
    if (a < 0x38800000u) {                                             /* subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;                    /* < 2^-25 rounds to 0 */
        uint32_t e = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                                      /* 14 + (113 - e) - 1 */
        uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);                       /* RNE on the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

void dlq_to_f32(float *dst, const void *src, dlq_dtype t, size_t n) {
    const unsigned char *p = (const unsigned char *)src;
    switch (t) {
    case DLQ_F32: memcpy(dst, src, n * 4); break;
    case DLQ_BF16: dlq_cvt_bf16(dst, (const uint16_t *)src, n); break; /* 2-byte aligned: all our sources are */
    case DLQ_F16: dlq_cvt_f16(dst, (const uint16_t *)src, n); break;
    case DLQ_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
        break;
    default:
        for (size_t i = 0; i < n; i++) dst[i] = 0.0f;
        break;
    }
}
