/* UTF-8 decoding and code point classes (see unicode.h). */
#include "tokenizer/unicode.h"

size_t dlq_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else { *cp = 0xFFFD; return 1; }
    if (n < len) { *cp = 0xFFFD; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = 0xFFFD; return 1; }
    *cp = v;
    return len;
}

size_t dlq_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ASCII fast path: 0-31 control (only 9..13 are \s), letters, digits. */
static uint32_t ascii_class(uint32_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return DLQ_UC_L;
    if (c >= '0' && c <= '9') return DLQ_UC_N;
    if (c == ' ' || (c >= 9 && c <= 13)) return DLQ_UC_WS;
    return 0;
}

uint32_t dlq_uc_class(uint32_t cp) {
    if (cp < 0x80) return ascii_class(cp);
    size_t lo = 0, hi = dlq_uc_nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dlq_uc_ranges[mid].last < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < dlq_uc_nranges && dlq_uc_ranges[lo].first <= cp) return dlq_uc_ranges[lo].flags;
    return 0;
}
