/* GGUF v2/v3 reader. Every length, count and offset read from the file is
 * checked against the bytes that remain before it is used; nothing is read
 * outside [data, data + size). See gguf.h for the layout. */
#include "io/gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ggml types ---------------------------------------------------------- */

typedef struct ggml_type_desc {
    uint32_t type;
    const char *name;
    uint32_t block;  /* elements per block */
    uint32_t bytes;  /* bytes per block */
    dlq_dtype dtype; /* DLQ_DTYPE_COUNT if none */
} ggml_type_desc;

/* Values and block layouts as ggml / gguf-py define them. Q8_1 is left out on
 * purpose (ggml and gguf-py disagree on its block size; it never occurs in
 * model files). */
static const ggml_type_desc ggml_types[] = {
    {0, "F32", 1, 4, DLQ_F32},         {1, "F16", 1, 2, DLQ_F16},
    {2, "Q4_0", 32, 18, DLQ_DTYPE_COUNT}, {3, "Q4_1", 32, 20, DLQ_DTYPE_COUNT},
    {6, "Q5_0", 32, 22, DLQ_DTYPE_COUNT}, {7, "Q5_1", 32, 24, DLQ_DTYPE_COUNT},
    {8, "Q8_0", 32, 34, DLQ_DTYPE_COUNT}, {10, "Q2_K", 256, 84, DLQ_DTYPE_COUNT},
    {11, "Q3_K", 256, 110, DLQ_DTYPE_COUNT}, {12, "Q4_K", 256, 144, DLQ_DTYPE_COUNT},
    {13, "Q5_K", 256, 176, DLQ_DTYPE_COUNT}, {14, "Q6_K", 256, 210, DLQ_DTYPE_COUNT},
    {15, "Q8_K", 256, 292, DLQ_DTYPE_COUNT}, {16, "IQ2_XXS", 256, 66, DLQ_DTYPE_COUNT},
    {17, "IQ2_XS", 256, 74, DLQ_DTYPE_COUNT}, {18, "IQ3_XXS", 256, 98, DLQ_DTYPE_COUNT},
    {19, "IQ1_S", 256, 50, DLQ_DTYPE_COUNT}, {20, "IQ4_NL", 32, 18, DLQ_DTYPE_COUNT},
    {21, "IQ3_S", 256, 110, DLQ_DTYPE_COUNT}, {22, "IQ2_S", 256, 82, DLQ_DTYPE_COUNT},
    {23, "IQ4_XS", 256, 136, DLQ_DTYPE_COUNT}, {24, "I8", 1, 1, DLQ_I8},
    {25, "I16", 1, 2, DLQ_DTYPE_COUNT}, {26, "I32", 1, 4, DLQ_I32},
    {27, "I64", 1, 8, DLQ_I64},        {28, "F64", 1, 8, DLQ_F64},
    {29, "IQ1_M", 256, 56, DLQ_DTYPE_COUNT}, {30, "BF16", 1, 2, DLQ_BF16},
    {34, "TQ1_0", 256, 54, DLQ_DTYPE_COUNT}, {35, "TQ2_0", 256, 66, DLQ_DTYPE_COUNT},
    {39, "MXFP4", 32, 17, DLQ_DTYPE_COUNT},
};

static const ggml_type_desc *ggml_desc(uint32_t t) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].type == t) return &ggml_types[i];
    return NULL;
}

uint64_t dlq_ggml_nbytes(uint32_t ggml_type, uint64_t n) {
    const ggml_type_desc *d = ggml_desc(ggml_type);
    if (!d || n % d->block) return 0;
    uint64_t blocks = n / d->block;
    if (blocks > UINT64_MAX / d->bytes) return 0;
    return blocks * d->bytes;
}

const char *dlq_ggml_type_name(uint32_t ggml_type) {
    const ggml_type_desc *d = ggml_desc(ggml_type);
    return d ? d->name : "?";
}

/* ---- cursor -------------------------------------------------------------- */

typedef struct cur {
    const uint8_t *p;
    size_t size, off;
    const char *what;
    dlq_err *err;
} cur;

static const char *gguf_type_name(uint32_t t) {
    static const char *n[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                              "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    return t < DLQ_GGUF_TYPE_COUNT ? n[t] : "?";
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case DLQ_GGUF_UINT8: case DLQ_GGUF_INT8: case DLQ_GGUF_BOOL: return 1;
    case DLQ_GGUF_UINT16: case DLQ_GGUF_INT16: return 2;
    case DLQ_GGUF_UINT32: case DLQ_GGUF_INT32: case DLQ_GGUF_FLOAT32: return 4;
    case DLQ_GGUF_UINT64: case DLQ_GGUF_INT64: case DLQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static size_t remain(const cur *c) { return c->size - c->off; }

static int need(cur *c, uint64_t n, const char *field, const char *ctx) {
    if (n > remain(c))
        return dlq_errf(c->err, DLQ_EFORMAT,
                        "%s: truncated at byte %zu reading %s%s%s: need %llu bytes, %zu left", c->what,
                        c->off, field, ctx[0] ? " of " : "", ctx, (unsigned long long)n, remain(c));
    return 0;
}

static int get_u32(cur *c, uint32_t *v, const char *field, const char *ctx) {
    int rc = need(c, 4, field, ctx);
    if (rc) return rc;
    *v = rd_u32(c->p + c->off);
    c->off += 4;
    return 0;
}

static int get_u64(cur *c, uint64_t *v, const char *field, const char *ctx) {
    int rc = need(c, 8, field, ctx);
    if (rc) return rc;
    *v = rd_u64(c->p + c->off);
    c->off += 8;
    return 0;
}

static int get_str(cur *c, dlq_gguf_str *s, const char *field, const char *ctx) {
    uint64_t len;
    int rc = get_u64(c, &len, field, ctx);
    if (rc) return rc;
    if (len > remain(c))
        return dlq_errf(c->err, DLQ_EFORMAT,
                        "%s: %s%s%s at byte %zu has length %llu but only %zu bytes remain", c->what,
                        field, ctx[0] ? " of " : "", ctx, c->off - 8, (unsigned long long)len, remain(c));
    s->ptr = (const char *)(c->p + c->off);
    s->len = len;
    c->off += (size_t)len;
    return 0;
}

/* printable, bounded copy of a gguf string for error messages */
static const char *show(char *buf, size_t cap, dlq_gguf_str s) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    buf[n] = 0;
    if (s.len > n && n >= 3) memcpy(buf + n - 3, "...", 3);
    return buf;
}

#define GGUF_MAX_ARRAY_DEPTH 8

/* Validates and skips one array body (elem type + count + elements). */
static int skip_array(cur *c, const char *ctx, int depth, uint32_t *arr_type, uint64_t *arr_n) {
    uint32_t et;
    uint64_t n;
    int rc;
    if ((rc = get_u32(c, &et, "array element type", ctx))) return rc;
    if ((rc = get_u64(c, &n, "array length", ctx))) return rc;
    if (arr_type) *arr_type = et;
    if (arr_n) *arr_n = n;
    if (et >= DLQ_GGUF_TYPE_COUNT)
        return dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: unknown array element type %u (expected 0..%d)",
                        c->what, ctx, et, DLQ_GGUF_TYPE_COUNT - 1);
    size_t es = scalar_size(et);
    if (es) {
        if (n > remain(c) / es)
            return dlq_errf(c->err, DLQ_EFORMAT,
                            "%s: %s: array of %llu %s elements needs %llu+ bytes, only %zu remain",
                            c->what, ctx, (unsigned long long)n, gguf_type_name(et),
                            (unsigned long long)n, remain(c));
        c->off += (size_t)(n * es);
        return 0;
    }
    if (et == DLQ_GGUF_STRING) {
        if (n > remain(c) / 8)
            return dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: array of %llu strings cannot fit in %zu bytes",
                            c->what, ctx, (unsigned long long)n, remain(c));
        for (uint64_t i = 0; i < n; i++) {
            dlq_gguf_str s;
            if ((rc = get_str(c, &s, "array string element", ctx))) return rc;
        }
        return 0;
    }
    /* nested array */
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: arrays nested deeper than %d levels", c->what,
                        ctx, GGUF_MAX_ARRAY_DEPTH);
    if (n > remain(c) / 12)
        return dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: array of %llu arrays cannot fit in %zu bytes",
                        c->what, ctx, (unsigned long long)n, remain(c));
    for (uint64_t i = 0; i < n; i++)
        if ((rc = skip_array(c, ctx, depth + 1, NULL, NULL))) return rc;
    return 0;
}

/* ---- sorting for duplicate detection ------------------------------------ */

static int cmp_gstr(dlq_gguf_str a, dlq_gguf_str b) {
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}
static int cmp_kvp(const void *a, const void *b) {
    return cmp_gstr((*(const dlq_gguf_kv *const *)a)->key, (*(const dlq_gguf_kv *const *)b)->key);
}
static int cmp_tip(const void *a, const void *b) {
    return strcmp((*(const dlq_tensor_info *const *)a)->name, (*(const dlq_tensor_info *const *)b)->name);
}

/* ---- open / parse -------------------------------------------------------- */

static void free_parsed(dlq_gguf *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free((void *)g->kv[i].arr_str);
    free(g->kv);
    free(g->tensors);
    g->kv = NULL;
    g->tensors = NULL;
    g->n_kv = g->n_tensors = 0;
}

static int parse_kvs(dlq_gguf *g, cur *c) {
    char kbuf[128];
    int rc;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        dlq_gguf_kv *kv = &g->kv[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "metadata entry %llu", (unsigned long long)i);
        if ((rc = get_str(c, &kv->key, "key", ctx))) return rc;
        if (kv->key.len == 0)
            return dlq_errf(c->err, DLQ_EFORMAT, "%s: %s has an empty key", c->what, ctx);
        show(kbuf, sizeof kbuf, kv->key);
        char kctx[160];
        snprintf(kctx, sizeof kctx, "key '%s'", kbuf);
        if ((rc = get_u32(c, &kv->type, "value type", kctx))) return rc;
        if (kv->type >= DLQ_GGUF_TYPE_COUNT)
            return dlq_errf(c->err, DLQ_EFORMAT, "%s: key '%s': unknown value type %u (expected 0..%d)",
                            c->what, kbuf, kv->type, DLQ_GGUF_TYPE_COUNT - 1);
        size_t es = scalar_size(kv->type);
        if (es) {
            if ((rc = need(c, es, "value", kctx))) return rc;
            kv->val = c->p + c->off;
            c->off += es;
        } else if (kv->type == DLQ_GGUF_STRING) {
            dlq_gguf_str s;
            kv->val = c->p + c->off; /* the u64 length field */
            if ((rc = get_str(c, &s, "string value", kctx))) return rc;
        } else { /* ARRAY */
            size_t start = c->off;
            if ((rc = skip_array(c, kctx, 0, &kv->arr_type, &kv->arr_n))) return rc;
            kv->val = c->p + start + 12;
            if (kv->arr_type == DLQ_GGUF_STRING && kv->arr_n > 0) {
                /* second pass over already-validated bytes: record element pointers */
                const uint8_t **ptrs = malloc((size_t)kv->arr_n * sizeof *ptrs);
                if (!ptrs)
                    return dlq_errf(c->err, DLQ_ENOMEM, "%s: key '%s': out of memory for %llu strings",
                                    c->what, kbuf, (unsigned long long)kv->arr_n);
                size_t o = start + 12;
                for (uint64_t j = 0; j < kv->arr_n; j++) {
                    ptrs[j] = c->p + o;
                    o += 8 + (size_t)rd_u64(c->p + o);
                }
                kv->arr_str = ptrs;
            }
        }
    }
    /* duplicate keys */
    if (g->n_kv > 1) {
        const dlq_gguf_kv **s = malloc((size_t)g->n_kv * sizeof *s);
        if (!s) return dlq_errf(c->err, DLQ_ENOMEM, "%s: out of memory", c->what);
        for (uint64_t i = 0; i < g->n_kv; i++) s[i] = &g->kv[i];
        qsort(s, (size_t)g->n_kv, sizeof *s, cmp_kvp);
        for (uint64_t i = 1; i < g->n_kv; i++)
            if (cmp_gstr(s[i - 1]->key, s[i]->key) == 0) {
                show(kbuf, sizeof kbuf, s[i]->key);
                free(s);
                return dlq_errf(c->err, DLQ_EFORMAT, "%s: duplicate metadata key '%s'", c->what, kbuf);
            }
        free(s);
    }
    return 0;
}

static int parse_alignment(dlq_gguf *g, cur *c) {
    g->alignment = 32;
    const dlq_gguf_kv *kv = dlq_gguf_find(g, "general.alignment");
    if (!kv) return 0;
    uint32_t a;
    dlq_err e2;
    if (dlq_gguf_get_u32(g, "general.alignment", &a, &e2))
        return dlq_errf(c->err, DLQ_EFORMAT, "%s: general.alignment: expected an unsigned 32-bit integer, found type %s",
                        c->what, gguf_type_name(kv->type));
    if (a == 0 || (a & (a - 1)))
        return dlq_errf(c->err, DLQ_EFORMAT, "%s: general.alignment is %u, expected a non-zero power of two",
                        c->what, a);
    g->alignment = a;
    return 0;
}

static int parse_tensors(dlq_gguf *g, cur *c) {
    char nbuf[128];
    int rc;
    uint64_t *offs = NULL;
    if (g->n_tensors) {
        offs = malloc((size_t)g->n_tensors * sizeof *offs);
        if (!offs) return dlq_errf(c->err, DLQ_ENOMEM, "%s: out of memory", c->what);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        dlq_tensor_info *t = &g->tensors[i];
        char ctx[64];
        snprintf(ctx, sizeof ctx, "tensor info %llu", (unsigned long long)i);
        dlq_gguf_str name;
        if ((rc = get_str(c, &name, "tensor name", ctx))) goto fail;
        show(nbuf, sizeof nbuf, name);
        if (name.len == 0 || name.len >= sizeof t->name) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: tensor name '%s' has length %llu, expected 1..%zu",
                          c->what, ctx, nbuf, (unsigned long long)name.len, sizeof t->name - 1);
            goto fail;
        }
        if (memchr(name.ptr, 0, (size_t)name.len)) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: %s: tensor name contains a NUL byte", c->what, ctx);
            goto fail;
        }
        memcpy(t->name, name.ptr, (size_t)name.len);
        t->name[name.len] = 0;
        char tctx[200];
        snprintf(tctx, sizeof tctx, "tensor '%s'", t->name);
        uint32_t nd;
        if ((rc = get_u32(c, &nd, "n_dims", tctx))) goto fail;
        if (nd > DLQ_MAX_DIMS) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': n_dims %u, expected at most %d", c->what,
                          t->name, nd, DLQ_MAX_DIMS);
            goto fail;
        }
        uint64_t ne[DLQ_MAX_DIMS], numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if ((rc = get_u64(c, &ne[d], "dimension", tctx))) goto fail;
            if (ne[d] > (uint64_t)INT64_MAX) {
                rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': ne[%u] = %lld is negative", c->what,
                              t->name, d, (long long)ne[d]);
                goto fail;
            }
            if (ne[d] && numel > (uint64_t)INT64_MAX / ne[d]) {
                rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': element count overflows (ne[%u] = %llu)",
                              c->what, t->name, d, (unsigned long long)ne[d]);
                goto fail;
            }
            numel *= ne[d];
        }
        uint32_t gt;
        if ((rc = get_u32(c, &gt, "ggml type", tctx))) goto fail;
        if ((rc = get_u64(c, &offs[i], "data offset", tctx))) goto fail;
        const ggml_type_desc *td = ggml_desc(gt);
        if (!td) {
            rc = dlq_errf(c->err, DLQ_EUNSUP, "%s: tensor '%s': unknown or unsupported ggml type %u", c->what,
                          t->name, gt);
            goto fail;
        }
        if (nd > 0 && ne[0] % td->block) {
            rc = dlq_errf(c->err, DLQ_EFORMAT,
                          "%s: tensor '%s': ne[0] = %llu is not a multiple of the %s block size %u", c->what,
                          t->name, (unsigned long long)ne[0], td->name, td->block);
            goto fail;
        }
        if (nd == 0 && td->block != 1) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': 0-dimensional tensor of block type %s",
                          c->what, t->name, td->name);
            goto fail;
        }
        uint64_t nb = numel ? dlq_ggml_nbytes(gt, numel) : 0;
        if (numel && nb == 0) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': byte size of %llu %s elements overflows",
                          c->what, t->name, (unsigned long long)numel, td->name);
            goto fail;
        }
        t->ndim = (int)nd;
        for (uint32_t d = 0; d < nd; d++) t->shape[d] = (int64_t)ne[nd - 1 - d];
        t->file_type = (int)gt;
        t->dtype = td->dtype;
        t->nbytes = (size_t)nb;
        if ((uint64_t)t->nbytes != nb) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': %llu bytes do not fit in size_t", c->what,
                          t->name, (unsigned long long)nb);
            goto fail;
        }
    }
    /* data section */
    uint64_t a = g->alignment, end = c->off;
    uint64_t data_off = (end + a - 1) / a * a; /* end < 2^63 and a <= 2^31: no overflow */
    g->data_offset = data_off;
    if (g->n_tensors && data_off > c->size) {
        rc = dlq_errf(c->err, DLQ_EFORMAT,
                      "%s: tensor data section starts at byte %llu (header end %llu aligned to %u) but the file has %zu bytes",
                      c->what, (unsigned long long)data_off, (unsigned long long)end, g->alignment, c->size);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        dlq_tensor_info *t = &g->tensors[i];
        uint64_t avail = c->size - data_off;
        if (offs[i] % a) {
            rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %u",
                          c->what, t->name, (unsigned long long)offs[i], g->alignment);
            goto fail;
        }
        if (offs[i] > avail || t->nbytes > avail - offs[i]) {
            rc = dlq_errf(c->err, DLQ_EFORMAT,
                          "%s: tensor '%s': data [%llu, %llu + %zu) lies outside the %llu-byte data section",
                          c->what, t->name, (unsigned long long)offs[i], (unsigned long long)offs[i],
                          t->nbytes, (unsigned long long)avail);
            goto fail;
        }
        t->data = c->p + data_off + offs[i];
    }
    free(offs);
    offs = NULL;
    if (g->n_tensors > 1) {
        const dlq_tensor_info **s = malloc((size_t)g->n_tensors * sizeof *s);
        if (!s) return dlq_errf(c->err, DLQ_ENOMEM, "%s: out of memory", c->what);
        for (uint64_t i = 0; i < g->n_tensors; i++) s[i] = &g->tensors[i];
        qsort(s, (size_t)g->n_tensors, sizeof *s, cmp_tip);
        for (uint64_t i = 1; i < g->n_tensors; i++)
            if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
                rc = dlq_errf(c->err, DLQ_EFORMAT, "%s: duplicate tensor name '%s'", c->what, s[i]->name);
                free(s);
                return rc;
            }
        free(s);
    }
    return 0;
fail:
    free(offs);
    return rc;
}

int dlq_gguf_parse(dlq_gguf *g, const uint8_t *data, size_t size, const char *what, dlq_err *err) {
    memset(g, 0, sizeof *g);
    if (!what) what = "<gguf>";
    snprintf(g->file.path, sizeof g->file.path, "%s", what);
    cur c = {data, size, 0, what, err};
    if (!data) c.size = 0;
    if (c.size < 24)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %zu bytes is too small for a GGUF header (24 bytes)", what, c.size);
    if (memcmp(data, "GGUF", 4) != 0)
        return dlq_errf(err, DLQ_EFORMAT, "%s: bad magic %02x %02x %02x %02x, expected \"GGUF\"", what, data[0],
                        data[1], data[2], data[3]);
    c.off = 4;
    uint32_t ver = rd_u32(data + 4);
    if (ver != 2 && ver != 3) {
        if (ver == 1)
            return dlq_errf(err, DLQ_EUNSUP, "%s: GGUF version 1 is not supported (expected 2 or 3)", what);
        if (ver >= 0x01000000u)
            return dlq_errf(err, DLQ_EUNSUP, "%s: GGUF version field 0x%08x looks big-endian; only little-endian files are supported",
                            what, ver);
        return dlq_errf(err, DLQ_EUNSUP, "%s: GGUF version %u, expected 2 or 3", what, ver);
    }
    g->version = ver;
    uint64_t nt = rd_u64(data + 8), nkv = rd_u64(data + 16);
    c.off = 24;
    /* cheap upper bounds before allocating: a kv takes >= 13 bytes (8-byte key
     * length + 1-byte key... + 4-byte type + >= 1-byte value), a tensor info >= 24. */
    if (nkv > remain(&c) / 13)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header claims %llu metadata entries but only %zu bytes follow", what,
                        (unsigned long long)nkv, remain(&c));
    if (nt > remain(&c) / 24)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header claims %llu tensors but only %zu bytes follow", what,
                        (unsigned long long)nt, remain(&c));
    g->n_kv = nkv;
    g->kv = calloc(nkv ? (size_t)nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? (size_t)nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        free_parsed(g);
        return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory for %llu entries / %llu tensors", what,
                        (unsigned long long)nkv, (unsigned long long)nt);
    }
    int rc = parse_kvs(g, &c);
    if (!rc) rc = parse_alignment(g, &c);
    if (!rc) {
        g->n_tensors = nt;
        rc = parse_tensors(g, &c);
    }
    if (rc) {
        free_parsed(g);
        return rc;
    }
    return 0;
}

int dlq_gguf_open(dlq_gguf *g, const char *path, dlq_err *err) {
    dlq_mapfile mf;
    memset(g, 0, sizeof *g);
    int rc = dlq_mapfile_open(&mf, path, err);
    if (rc) return rc;
    rc = dlq_gguf_parse(g, mf.data, mf.size, path, err);
    if (rc) {
        dlq_mapfile_close(&mf);
        return rc;
    }
    g->file = mf;
    return 0;
}

void dlq_gguf_close(dlq_gguf *g) {
    if (!g) return;
    free_parsed(g);
    dlq_mapfile_close(&g->file);
    memset(g, 0, sizeof *g);
}

/* ---- lookup -------------------------------------------------------------- */

const dlq_gguf_kv *dlq_gguf_find(const dlq_gguf *g, const char *key) {
    size_t kl = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == kl && memcmp(g->kv[i].key.ptr, key, kl) == 0) return &g->kv[i];
    return NULL;
}

const dlq_tensor_info *dlq_gguf_find_tensor(const dlq_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* Reads an integer-typed element; returns 0 if t is an integer type. */
static int read_int(uint32_t t, const uint8_t *p, int *is_unsigned, uint64_t *u, int64_t *s) {
    *is_unsigned = 0;
    switch (t) {
    case DLQ_GGUF_UINT8: *u = p[0]; *is_unsigned = 1; return 0;
    case DLQ_GGUF_INT8: *s = (int8_t)p[0]; return 0;
    case DLQ_GGUF_UINT16: *u = (uint16_t)(p[0] | p[1] << 8); *is_unsigned = 1; return 0;
    case DLQ_GGUF_INT16: *s = (int16_t)(uint16_t)(p[0] | p[1] << 8); return 0;
    case DLQ_GGUF_UINT32: *u = rd_u32(p); *is_unsigned = 1; return 0;
    case DLQ_GGUF_INT32: *s = (int32_t)rd_u32(p); return 0;
    case DLQ_GGUF_UINT64: *u = rd_u64(p); *is_unsigned = 1; return 0;
    case DLQ_GGUF_INT64: *s = (int64_t)rd_u64(p); return 0;
    default: return -1;
    }
}

static const dlq_gguf_kv *find_or_err(const dlq_gguf *g, const char *key, dlq_err *err) {
    const dlq_gguf_kv *kv = dlq_gguf_find(g, key);
    if (!kv) dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s' not found", g->file.path, key);
    return kv;
}

int dlq_gguf_get_u32(const dlq_gguf *g, const char *key, uint32_t *out, dlq_err *err) {
    const dlq_gguf_kv *kv = find_or_err(g, key, err);
    if (!kv) return DLQ_EFORMAT;
    int uns;
    uint64_t u = 0;
    int64_t s = 0;
    if (read_int(kv->type, kv->val, &uns, &u, &s))
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': expected an integer, found %s", g->file.path,
                        key, gguf_type_name(kv->type));
    if (uns ? u > UINT32_MAX : (s < 0 || s > (int64_t)UINT32_MAX))
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': value %s%llu does not fit in uint32",
                        g->file.path, key, (!uns && s < 0) ? "-" : "",
                        uns ? (unsigned long long)u
                            : (unsigned long long)(s < 0 ? -(uint64_t)s : (uint64_t)s));
    *out = uns ? (uint32_t)u : (uint32_t)s;
    return 0;
}

int dlq_gguf_get_i64(const dlq_gguf *g, const char *key, int64_t *out, dlq_err *err) {
    const dlq_gguf_kv *kv = find_or_err(g, key, err);
    if (!kv) return DLQ_EFORMAT;
    int uns;
    uint64_t u = 0;
    int64_t s = 0;
    if (read_int(kv->type, kv->val, &uns, &u, &s))
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': expected an integer, found %s", g->file.path,
                        key, gguf_type_name(kv->type));
    if (uns && u > (uint64_t)INT64_MAX)
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': value %llu does not fit in int64",
                        g->file.path, key, (unsigned long long)u);
    *out = uns ? (int64_t)u : s;
    return 0;
}

int dlq_gguf_get_f32(const dlq_gguf *g, const char *key, float *out, dlq_err *err) {
    const dlq_gguf_kv *kv = find_or_err(g, key, err);
    if (!kv) return DLQ_EFORMAT;
    if (kv->type == DLQ_GGUF_FLOAT32) {
        memcpy(out, kv->val, 4);
        return 0;
    }
    if (kv->type == DLQ_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
        return 0;
    }
    return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': expected FLOAT32 or FLOAT64, found %s",
                    g->file.path, key, gguf_type_name(kv->type));
}

int dlq_gguf_get_bool(const dlq_gguf *g, const char *key, int *out, dlq_err *err) {
    const dlq_gguf_kv *kv = find_or_err(g, key, err);
    if (!kv) return DLQ_EFORMAT;
    if (kv->type != DLQ_GGUF_BOOL)
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': expected BOOL, found %s", g->file.path, key,
                        gguf_type_name(kv->type));
    *out = kv->val[0] != 0;
    return 0;
}

int dlq_gguf_get_str(const dlq_gguf *g, const char *key, dlq_gguf_str *out, dlq_err *err) {
    const dlq_gguf_kv *kv = find_or_err(g, key, err);
    if (!kv) return DLQ_EFORMAT;
    if (kv->type != DLQ_GGUF_STRING)
        return dlq_errf(err, DLQ_EFORMAT, "%s: metadata key '%s': expected STRING, found %s", g->file.path,
                        key, gguf_type_name(kv->type));
    out->len = rd_u64(kv->val);
    out->ptr = (const char *)kv->val + 8;
    return 0;
}

/* ---- arrays -------------------------------------------------------------- */

dlq_gguf_str dlq_gguf_arr_str(const dlq_gguf_kv *kv, uint64_t i) {
    dlq_gguf_str s = {NULL, 0};
    if (!kv || kv->type != DLQ_GGUF_ARRAY || kv->arr_type != DLQ_GGUF_STRING || i >= kv->arr_n || !kv->arr_str)
        return s;
    s.len = rd_u64(kv->arr_str[i]);
    s.ptr = (const char *)kv->arr_str[i] + 8;
    return s;
}

float dlq_gguf_arr_f32(const dlq_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != DLQ_GGUF_ARRAY || i >= kv->arr_n) return 0.0f;
    if (kv->arr_type == DLQ_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val + 4 * i, 4);
        return f;
    }
    if (kv->arr_type == DLQ_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val + 8 * i, 8);
        return (float)d;
    }
    return 0.0f;
}

int64_t dlq_gguf_arr_int(const dlq_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != DLQ_GGUF_ARRAY || i >= kv->arr_n) return 0;
    if (kv->arr_type == DLQ_GGUF_BOOL) return kv->val[i] != 0;
    size_t es = scalar_size(kv->arr_type);
    if (!es) return 0;
    int uns;
    uint64_t u = 0;
    int64_t s = 0;
    if (read_int(kv->arr_type, kv->val + es * i, &uns, &u, &s)) return 0;
    return uns ? (int64_t)u : s; /* UINT64 above INT64_MAX wraps */
}
