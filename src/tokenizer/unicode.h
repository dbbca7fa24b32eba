/* Minimal Unicode support for the byte-level BPE pre-tokenizers: UTF-8
 * decoding and the code point classes \p{L}, \p{N} and \s.
 *
 * Invalid UTF-8: dlq_utf8_decode never fails. A byte that does not start a
 * valid, complete, shortest-form sequence (stray continuation byte, truncated
 * sequence, overlong form, surrogate, > U+10FFFF) is consumed alone and
 * reported as U+FFFD, the replacement character (as llama.cpp's
 * unicode_cpts_from_utf8 does). U+FFFD is class 0 (neither letter, number
 * nor space), so such bytes pre-tokenize like punctuation; the BPE encoder
 * still encodes the original byte, so encode/decode stays lossless. */
#ifndef DLQ_TOKENIZER_UNICODE_H
#define DLQ_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum { DLQ_UC_L = 1, DLQ_UC_N = 2, DLQ_UC_WS = 4 };

typedef struct dlq_uc_range {
    uint32_t first, last;
    uint32_t flags;
} dlq_uc_range;

/* Generated tables (unicode_tables.c). */
extern const char dlq_unicode_version[];
extern const dlq_uc_range dlq_uc_ranges[];
extern const size_t dlq_uc_nranges;

/* Decodes one code point from s[0..n) (n >= 1); sets *cp and returns the
 * number of bytes consumed (1..4). Invalid input: *cp = 0xFFFD, returns 1. */
size_t dlq_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the byte count. */
size_t dlq_utf8_encode(uint32_t cp, char *out);
/* Class flags (DLQ_UC_*) of a code point. */
uint32_t dlq_uc_class(uint32_t cp);
/* ASCII-only lowercase (what the (?i:'s|'t|...) contractions need). */
static inline uint32_t dlq_uc_ascii_lower(uint32_t cp) {
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

#endif
