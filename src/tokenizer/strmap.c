/* Byte-string -> int32 open-addressing hash map (FNV-1a, linear probing). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

int dlq_strmap_init(dlq_strmap *m, size_t expected, dlq_err *err) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->klen = calloc(cap, sizeof *m->klen);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->klen || !m->vals) {
        dlq_strmap_free(m);
        return dlq_errf(err, DLQ_ENOMEM, "out of memory for a hash map of %zu entries", expected);
    }
    m->cap = cap;
    return DLQ_OK;
}

static int grow(dlq_strmap *m, dlq_err *err) {
    dlq_strmap n;
    if (dlq_strmap_init(&n, m->cap, err)) return DLQ_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) dlq_strmap_put(&n, m->keys[i], m->klen[i], m->vals[i], err);
    dlq_strmap_free(m);
    *m = n;
    return DLQ_OK;
}

int dlq_strmap_put(dlq_strmap *m, const char *key, size_t len, int32_t val, dlq_err *err) {
    if ((m->count + 1) * 2 > m->cap && grow(m, err)) return DLQ_ENOMEM;
    size_t i = (size_t)fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->klen[i] == len && memcmp(m->keys[i], key, len) == 0) { m->vals[i] = val; return DLQ_OK; }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->klen[i] = (uint32_t)len;
    m->vals[i] = val;
    m->count++;
    return DLQ_OK;
}

int32_t dlq_strmap_get(const dlq_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = (size_t)fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->klen[i] == len && memcmp(m->keys[i], key, len) == 0) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

void dlq_strmap_free(dlq_strmap *m) {
    free(m->keys);
    free(m->klen);
    free(m->vals);
    memset(m, 0, sizeof *m);
}
