/* WikiText-2 raw text as the GPTQ perplexity protocol sees it. */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* The Hugging Face wikitext-2-raw-v1 rows were made by iterating over the
 * raw file opened in text mode (universal newlines: "\r\n" and "\r" read as
 * "\n"): each row is one line with its "\n", a whitespace-only line is the
 * empty row "". GPTQ's get_wikitext2() then tokenizes "\n\n".join(rows). */
char *dlq_wikitext_gptq_join(const char *raw, size_t n, size_t *out_len) {
    char *o = malloc(3 * n + 1); /* each byte at most once, each newline adds at most 2 */
    if (!o) return NULL;
    size_t k = 0, i = 0;
    int first = 1;
    while (i < n) {
        size_t a = i;
        while (i < n && raw[i] != '\n' && raw[i] != '\r') i++;
        size_t b = i; /* line content raw[a..b) */
        int nl = i < n;
        if (i < n) i += raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n' ? 2 : 1;
        int blank = 1;
        for (size_t j = a; j < b && blank; j++) {
            char c = raw[j];
            blank = c == ' ' || c == '\t' || c == '\f' || c == '\v';
        }
        if (!first) o[k++] = '\n', o[k++] = '\n';
        first = 0;
        if (!blank) {
            memcpy(o + k, raw + a, b - a);
            k += b - a;
            if (nl) o[k++] = '\n';
        }
    }
    o[k] = 0;
    *out_len = k;
    return o;
}
