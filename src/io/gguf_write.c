/* GGUF v3 writer (builder API declared in gguf.h). */
#define _POSIX_C_SOURCE 200809L
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wtensor {
    char *name;
    uint32_t type;
    int ndim;
    uint64_t ne[DLQ_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct dlq_gguf_writer {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    size_t keys_cap;
    wtensor *t;
    size_t nt, t_cap;
    uint32_t alignment;
};

dlq_gguf_writer *dlq_gguf_writer_new(dlq_err *err) {
    dlq_gguf_writer *w = dlq_calloc(1, sizeof *w, err);
    if (w) w->alignment = 32;
    return w;
}

void dlq_gguf_writer_free(dlq_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->nt; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, dlq_err *err) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return dlq_errf(err, DLQ_ENOMEM, "gguf writer: size overflow");
        nc *= 2;
    }
    void *np = realloc(*p, nc * elem);
    if (!np) return dlq_errf(err, DLQ_ENOMEM, "gguf writer: out of memory (%zu bytes)", nc * elem);
    *p = np;
    *cap = nc;
    return 0;
}

static int put(dlq_gguf_writer *w, const void *b, size_t n, dlq_err *err) {
    if (n > SIZE_MAX - w->kv_len) return dlq_errf(err, DLQ_ENOMEM, "gguf writer: size overflow");
    int rc = grow((void **)&w->kv, &w->kv_cap, w->kv_len + n, 1, err);
    if (rc) return rc;
    if (n) memcpy(w->kv + w->kv_len, b, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(dlq_gguf_writer *w, uint32_t v, dlq_err *err) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return put(w, b, 4, err);
}
static int put_u64(dlq_gguf_writer *w, uint64_t v, dlq_err *err) {
    int rc = put_u32(w, (uint32_t)v, err);
    return rc ? rc : put_u32(w, (uint32_t)(v >> 32), err);
}
static int put_str(dlq_gguf_writer *w, const char *s, uint64_t len, dlq_err *err) {
    if (len > SIZE_MAX) return dlq_errf(err, DLQ_EINVAL, "gguf writer: string too long");
    int rc = put_u64(w, len, err);
    return rc ? rc : put(w, s, (size_t)len, err);
}

/* Starts a kv: checks the key, writes key + type. On a later failure the
 * caller rolls back with kv_len = mark. */
static int begin_kv(dlq_gguf_writer *w, const char *key, uint32_t type, size_t *mark, dlq_err *err) {
    if (!key || !key[0]) return dlq_errf(err, DLQ_EINVAL, "gguf writer: empty metadata key");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: duplicate metadata key '%s'", key);
    if (type >= DLQ_GGUF_TYPE_COUNT)
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: key '%s': unknown value type %u", key, type);
    int rc = grow((void **)&w->keys, &w->keys_cap, (size_t)w->n_kv + 1, sizeof *w->keys, err);
    if (rc) return rc;
    *mark = w->kv_len;
    if ((rc = put_str(w, key, strlen(key), err)) || (rc = put_u32(w, type, err))) {
        w->kv_len = *mark;
        return rc;
    }
    return 0;
}

static int end_kv(dlq_gguf_writer *w, const char *key, size_t mark, int rc, dlq_err *err) {
    if (!rc) {
        w->keys[w->n_kv] = strdup(key);
        if (!w->keys[w->n_kv]) rc = dlq_errf(err, DLQ_ENOMEM, "gguf writer: out of memory");
        else w->n_kv++;
    }
    if (rc) w->kv_len = mark;
    return rc;
}

static size_t type_size(uint32_t t) {
    switch (t) {
    case DLQ_GGUF_UINT8: case DLQ_GGUF_INT8: case DLQ_GGUF_BOOL: return 1;
    case DLQ_GGUF_UINT16: case DLQ_GGUF_INT16: return 2;
    case DLQ_GGUF_UINT32: case DLQ_GGUF_INT32: case DLQ_GGUF_FLOAT32: return 4;
    case DLQ_GGUF_UINT64: case DLQ_GGUF_INT64: case DLQ_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* little-endian serialisation of a scalar held in a u64 bit pattern */
static int add_scalar(dlq_gguf_writer *w, const char *key, uint32_t type, uint64_t bits, dlq_err *err) {
    size_t mark, n = type_size(type);
    if (strcmp(key ? key : "", "general.alignment") == 0) {
        if (type != DLQ_GGUF_UINT32)
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: general.alignment must be UINT32");
        if (bits == 0 || (bits & (bits - 1)))
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: general.alignment %llu is not a power of two",
                            (unsigned long long)bits);
    }
    int rc = begin_kv(w, key, type, &mark, err);
    if (rc) return rc;
    uint8_t b[8];
    for (size_t i = 0; i < 8; i++) b[i] = (uint8_t)(bits >> (8 * i));
    rc = put(w, b, n, err);
    rc = end_kv(w, key, mark, rc, err);
    if (!rc && strcmp(key, "general.alignment") == 0) w->alignment = (uint32_t)bits;
    return rc;
}

int dlq_gguf_add_u8(dlq_gguf_writer *w, const char *key, uint8_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_UINT8, v, err); }
int dlq_gguf_add_i8(dlq_gguf_writer *w, const char *key, int8_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_INT8, (uint8_t)v, err); }
int dlq_gguf_add_u16(dlq_gguf_writer *w, const char *key, uint16_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_UINT16, v, err); }
int dlq_gguf_add_i16(dlq_gguf_writer *w, const char *key, int16_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_INT16, (uint16_t)v, err); }
int dlq_gguf_add_u32(dlq_gguf_writer *w, const char *key, uint32_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_UINT32, v, err); }
int dlq_gguf_add_i32(dlq_gguf_writer *w, const char *key, int32_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_INT32, (uint32_t)v, err); }
int dlq_gguf_add_u64(dlq_gguf_writer *w, const char *key, uint64_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_UINT64, v, err); }
int dlq_gguf_add_i64(dlq_gguf_writer *w, const char *key, int64_t v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_INT64, (uint64_t)v, err); }
int dlq_gguf_add_bool(dlq_gguf_writer *w, const char *key, int v, dlq_err *err) { return add_scalar(w, key, DLQ_GGUF_BOOL, v ? 1 : 0, err); }
int dlq_gguf_add_f32(dlq_gguf_writer *w, const char *key, float v, dlq_err *err) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return add_scalar(w, key, DLQ_GGUF_FLOAT32, u, err);
}
int dlq_gguf_add_f64(dlq_gguf_writer *w, const char *key, double v, dlq_err *err) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return add_scalar(w, key, DLQ_GGUF_FLOAT64, u, err);
}

int dlq_gguf_add_strn(dlq_gguf_writer *w, const char *key, const char *s, uint64_t len, dlq_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, DLQ_GGUF_STRING, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, mark, put_str(w, s, len, err), err);
}

int dlq_gguf_add_str(dlq_gguf_writer *w, const char *key, const char *s, dlq_err *err) {
    return dlq_gguf_add_strn(w, key, s ? s : "", s ? strlen(s) : 0, err);
}

int dlq_gguf_add_arr_str(dlq_gguf_writer *w, const char *key, const char *const *strs, size_t n, dlq_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, DLQ_GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    if (!(rc = put_u32(w, DLQ_GGUF_STRING, err))) rc = put_u64(w, n, err);
    for (size_t i = 0; !rc && i < n; i++) rc = put_str(w, strs[i] ? strs[i] : "", strs[i] ? strlen(strs[i]) : 0, err);
    return end_kv(w, key, mark, rc, err);
}

int dlq_gguf_add_arr(dlq_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, size_t n,
                     dlq_err *err) {
    size_t es = type_size(elem_type), mark;
    if (!es)
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: key '%s': array element type %u is not a fixed-size scalar",
                        key ? key : "", elem_type);
    if (n > SIZE_MAX / es) return dlq_errf(err, DLQ_EINVAL, "gguf writer: key '%s': array too large", key);
    int rc = begin_kv(w, key, DLQ_GGUF_ARRAY, &mark, err);
    if (rc) return rc;
    if (!(rc = put_u32(w, elem_type, err)) && !(rc = put_u64(w, n, err))) rc = put(w, elems, n * es, err);
    return end_kv(w, key, mark, rc, err);
}

int dlq_gguf_add_arr_f32(dlq_gguf_writer *w, const char *key, const float *v, size_t n, dlq_err *err) {
    return dlq_gguf_add_arr(w, key, DLQ_GGUF_FLOAT32, v, n, err); /* assumes a little-endian host */
}
int dlq_gguf_add_arr_i32(dlq_gguf_writer *w, const char *key, const int32_t *v, size_t n, dlq_err *err) {
    return dlq_gguf_add_arr(w, key, DLQ_GGUF_INT32, v, n, err);
}

int dlq_gguf_add_raw(dlq_gguf_writer *w, const char *key, uint32_t type, const void *bytes, size_t nbytes,
                     dlq_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, type, &mark, err);
    if (rc) return rc;
    return end_kv(w, key, mark, put(w, bytes, nbytes, err), err);
}

int dlq_gguf_add_tensor(dlq_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, dlq_err *err) {
    if (!name || !name[0] || strlen(name) >= sizeof(((dlq_tensor_info *)0)->name))
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor name '%s' empty or longer than %zu bytes",
                        name ? name : "", sizeof(((dlq_tensor_info *)0)->name) - 1);
    for (size_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: duplicate tensor name '%s'", name);
    if (ndim < 0 || ndim > DLQ_MAX_DIMS)
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor '%s': ndim %d, expected 0..%d", name, ndim,
                        DLQ_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor '%s': negative dimension %lld", name,
                            (long long)shape[d]);
        if (shape[d] && numel > (uint64_t)INT64_MAX / (uint64_t)shape[d])
            return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor '%s': element count overflows", name);
        numel *= (uint64_t)shape[d];
    }
    if (dlq_ggml_type_name(ggml_type)[0] == '?')
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor '%s': unknown ggml type %u", name, ggml_type);
    uint64_t want = numel ? dlq_ggml_nbytes(ggml_type, numel) : 0;
    int64_t inner = ndim ? shape[ndim - 1] : 1;
    if ((numel && want == 0) || (dlq_ggml_nbytes(ggml_type, (uint64_t)inner) == 0 && inner != 0))
        return dlq_errf(err, DLQ_EINVAL,
                        "gguf writer: tensor '%s': innermost dimension %lld is not a whole number of %s blocks",
                        name, (long long)inner, dlq_ggml_type_name(ggml_type));
    if (want != nbytes)
        return dlq_errf(err, DLQ_EINVAL, "gguf writer: tensor '%s': %zu bytes given, shape and type %s need %llu",
                        name, nbytes, dlq_ggml_type_name(ggml_type), (unsigned long long)want);
    int rc = grow((void **)&w->t, &w->t_cap, w->nt + 1, sizeof *w->t, err);
    if (rc) return rc;
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return dlq_errf(err, DLQ_ENOMEM, "gguf writer: out of memory");
    t->type = ggml_type;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->ne[d] = (uint64_t)shape[ndim - 1 - d];
    t->data = data;
    t->nbytes = nbytes;
    w->nt++;
    return 0;
}

/* ---- output -------------------------------------------------------------- */

typedef struct out {
    int fd;
    const char *path;
    dlq_err *err;
    uint64_t pos;
} out;

static int wr(out *o, const void *b, size_t n) {
    const uint8_t *p = b;
    while (n) {
        ssize_t k = write(o->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return dlq_errf(o->err, DLQ_EIO, "%s: write failed: %s", o->path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
        o->pos += (uint64_t)k;
    }
    return 0;
}
static int wr_u32(out *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return wr(o, b, 4);
}
static int wr_u64(out *o, uint64_t v) {
    int rc = wr_u32(o, (uint32_t)v);
    return rc ? rc : wr_u32(o, (uint32_t)(v >> 32));
}
static int wr_pad(out *o, uint32_t align) {
    static const uint8_t zeros[256];
    uint64_t r = o->pos % align, n = r ? align - r : 0;
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = wr(o, zeros, k);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}

static int write_body(dlq_gguf_writer *w, out *o) {
    int rc;
    if ((rc = wr(o, "GGUF", 4)) || (rc = wr_u32(o, 3)) || (rc = wr_u64(o, w->nt)) || (rc = wr_u64(o, w->n_kv)) ||
        (rc = wr(o, w->kv, w->kv_len)))
        return rc;
    uint64_t off = 0, a = w->alignment;
    for (size_t i = 0; i < w->nt; i++) {
        wtensor *t = &w->t[i];
        if ((rc = wr_u64(o, strlen(t->name))) || (rc = wr(o, t->name, strlen(t->name))) ||
            (rc = wr_u32(o, (uint32_t)t->ndim)))
            return rc;
        for (int d = 0; d < t->ndim; d++)
            if ((rc = wr_u64(o, t->ne[d]))) return rc;
        if ((rc = wr_u32(o, t->type)) || (rc = wr_u64(o, off))) return rc;
        off += (t->nbytes + a - 1) / a * a;
    }
    if ((rc = wr_pad(o, w->alignment))) return rc;
    for (size_t i = 0; i < w->nt; i++)
        if ((rc = wr(o, w->t[i].data, w->t[i].nbytes)) || (rc = wr_pad(o, w->alignment))) return rc;
    return 0;
}

int dlq_gguf_write(dlq_gguf_writer *w, const char *path, dlq_err *err) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return dlq_errf(err, DLQ_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    out o = {fd, path, err, 0};
    int rc = write_body(w, &o);
    if (!rc && fchmod(fd, 0644) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: chmod failed: %s", path, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}
