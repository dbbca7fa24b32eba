/* safetensors reader (single file, sharded index, or folder) and writer.
 * Every header field is validated against the file before use. */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* same limit as the reference implementation */

static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* safetensors dtype name -> dlq dtype. Returns 0, or DLQ_EUNSUP for dtypes
 * safetensors defines that we cannot hold, or DLQ_EFORMAT for unknown names. */
static int st_dtype(const char *s, dlq_dtype *out) {
    static const struct { const char *n; dlq_dtype t; } map[] = {
        {"F32", DLQ_F32}, {"F16", DLQ_F16}, {"BF16", DLQ_BF16}, {"F64", DLQ_F64}, {"I64", DLQ_I64},
        {"I32", DLQ_I32}, {"I8", DLQ_I8},   {"U8", DLQ_U8},     {"BOOL", DLQ_U8},
    };
    static const char *known_unsupported[] = {"I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                              "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i].n) == 0) { *out = map[i].t; return 0; }
    for (size_t i = 0; i < sizeof known_unsupported / sizeof known_unsupported[0]; i++)
        if (strcmp(s, known_unsupported[i]) == 0) return DLQ_EUNSUP;
    return DLQ_EFORMAT;
}

typedef struct span { uint64_t b, e; size_t idx; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

static int parse_entry(const char *what, const char *name, json_t *v, const uint8_t *buf, uint64_t bufsize,
                       dlq_tensor_info *t, uint64_t *ob, uint64_t *oe, dlq_err *err) {
    memset(t, 0, sizeof *t);
    size_t nl = strlen(name);
    if (nl == 0 || nl >= sizeof t->name)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor name '%.60s%s' has length %zu, expected 1..%zu", what, name,
                        nl > 60 ? "..." : "", nl, sizeof t->name - 1);
    memcpy(t->name, name, nl + 1);
    t->file_type = -1;
    if (!json_is_object(v))
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': expected a JSON object", what, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", what, name);
    int rc = st_dtype(json_string_value(jd), &t->dtype);
    if (rc == DLQ_EUNSUP)
        return dlq_errf(err, DLQ_EUNSUP, "%s: tensor '%s': dtype %s is not supported", what, name,
                        json_string_value(jd));
    if (rc)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': unknown dtype '%.40s'", what, name,
                        json_string_value(jd));
    if (!json_is_array(js))
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", what, name);
    size_t nd = json_array_size(js);
    if (nd > DLQ_MAX_DIMS)
        return dlq_errf(err, DLQ_EUNSUP, "%s: tensor '%s': %zu dimensions, at most %d supported", what, name, nd,
                        DLQ_MAX_DIMS);
    uint64_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", what,
                            name, d);
        uint64_t s = (uint64_t)json_integer_value(x);
        if (s && numel > (uint64_t)INT64_MAX / s)
            return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': element count overflows at shape[%zu] = %llu",
                            what, name, d, (unsigned long long)s);
        numel *= s;
        t->shape[d] = (int64_t)s;
    }
    t->ndim = (int)nd;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", what,
                        name);
    json_int_t jb = json_integer_value(json_array_get(jo, 0)), je = json_integer_value(json_array_get(jo, 1));
    if (jb < 0 || je < 0 || jb > je || (uint64_t)je > bufsize)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu-byte buffer",
                        what, name, (long long)jb, (long long)je, (unsigned long long)bufsize);
    uint64_t es = dlq_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es || numel * es != (uint64_t)(je - jb))
        return dlq_errf(err, DLQ_EFORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] span %llu bytes, but %llu x %s needs %llu%s", what,
                        name, (long long)jb, (long long)je, (unsigned long long)(je - jb),
                        (unsigned long long)numel, json_string_value(jd),
                        (unsigned long long)(numel <= UINT64_MAX / es ? numel * es : 0),
                        numel <= UINT64_MAX / es ? "" : " (overflow)");
    t->nbytes = (size_t)(je - jb);
    t->data = buf + jb;
    *ob = (uint64_t)jb;
    *oe = (uint64_t)je;
    return 0;
}

int dlq_st_parse(const uint8_t *data, size_t size, const char *what, dlq_tensor_info **tensors, size_t *n,
                 dlq_err *err) {
    if (!what) what = "<safetensors>";
    if (!data) size = 0;
    if (size < 8)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %zu bytes is too small for a safetensors file (8-byte header length)",
                        what, size);
    uint64_t hl = rd_u64(data);
    if (hl > size - 8)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header length %llu exceeds the %zu bytes after the length field", what,
                        (unsigned long long)hl, size - 8);
    if (hl > ST_MAX_HEADER)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header length %llu exceeds the %u-byte limit", what,
                        (unsigned long long)hl, ST_MAX_HEADER);
    if (hl < 2)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header length %llu is too small for a JSON object", what,
                        (unsigned long long)hl);
    json_error_t je;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header JSON invalid at line %d column %d: %s", what, je.line,
                        je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: header JSON is not an object", what);
    }
    const uint8_t *buf = data + 8 + hl;
    uint64_t bufsize = size - 8 - hl;
    size_t n0 = *n, cnt = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta && !json_is_object(meta)) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: \"__metadata__\" is not an object", what);
    }
    if (cnt > (SIZE_MAX / sizeof **tensors) - n0 - 1) {
        json_decref(root);
        return dlq_errf(err, DLQ_ENOMEM, "%s: too many tensors", what);
    }
    dlq_tensor_info *arr = realloc(*tensors, (n0 + cnt + 1) * sizeof *arr);
    span *sp = malloc((cnt + 1) * sizeof *sp);
    if (!arr || !sp) {
        if (arr) *tensors = arr;
        free(sp);
        json_decref(root);
        return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory for %zu tensors", what, cnt);
    }
    *tensors = arr;
    size_t k = 0, ns = 0;
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        uint64_t b = 0, e = 0;
        if ((rc = parse_entry(what, key, val, buf, bufsize, &arr[n0 + k], &b, &e, err))) break;
        if (e > b) sp[ns++] = (span){b, e, n0 + k};
        k++;
    }
    if (!rc && ns > 1) { /* no two tensors may share bytes */
        qsort(sp, ns, sizeof *sp, cmp_span);
        for (size_t i = 1; i < ns; i++)
            if (sp[i].b < sp[i - 1].e) {
                rc = dlq_errf(err, DLQ_EFORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", what,
                              arr[sp[i - 1].idx].name, (unsigned long long)sp[i - 1].b,
                              (unsigned long long)sp[i - 1].e, arr[sp[i].idx].name, (unsigned long long)sp[i].b,
                              (unsigned long long)sp[i].e);
                break;
            }
    }
    free(sp);
    json_decref(root);
    if (rc) return rc;
    *n = n0 + k;
    return 0;
}

/* ---- open ---------------------------------------------------------------- */

static int cmp_name_p(const void *a, const void *b) {
    return strcmp((*(const dlq_tensor_info *const *)a)->name, (*(const dlq_tensor_info *const *)b)->name);
}

static int check_dups(const dlq_safetensors *st, const int *owner, const char *what, dlq_err *err) {
    if (st->ntensors < 2) return 0;
    const dlq_tensor_info **s = malloc(st->ntensors * sizeof *s);
    if (!s) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < st->ntensors; i++) s[i] = &st->tensors[i];
    qsort(s, st->ntensors, sizeof *s, cmp_name_p);
    int rc = 0;
    for (size_t i = 1; i < st->ntensors && !rc; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
            const char *f1 = owner ? st->files[owner[s[i - 1] - st->tensors]].path : what;
            const char *f2 = owner ? st->files[owner[s[i] - st->tensors]].path : what;
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' appears in both %s and %s", what, s[i]->name, f1, f2);
        }
    free(s);
    return rc;
}

static int open_single(dlq_safetensors *st, const char *path, dlq_err *err) {
    st->files = calloc(1, sizeof *st->files);
    if (!st->files) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    int rc = dlq_mapfile_open(&st->files[0], path, err);
    if (rc) return rc;
    st->nfiles = 1;
    return dlq_st_parse(st->files[0].data, st->files[0].size, path, &st->tensors, &st->ntensors, err);
}

static int open_index(dlq_safetensors *st, const char *index_path, dlq_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = dlq_read_file(index_path, &text, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d column %d: %s", index_path, je.line, je.column,
                        je.text);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: missing or empty \"weight_map\" object", index_path);
    }
    /* directory of the index */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");

    size_t nw = json_object_size(wm);
    const char **shards = calloc(nw, sizeof *shards);
    int *owner = NULL;
    if (!shards) { json_decref(root); return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", index_path); }
    int nsh = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: weight_map['%s'] is not a string", index_path, key);
            goto out;
        }
        const char *f = json_string_value(val);
        if (!f[0] || f[0] == '/' || strstr(f, "..")) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: weight_map['%s'] = '%s': shard must be a relative path inside the folder",
                          index_path, key, f);
            goto out;
        }
        int j = 0;
        while (j < nsh && strcmp(shards[j], f) != 0) j++;
        if (j == nsh) shards[nsh++] = f;
    }
    st->files = calloc((size_t)nsh, sizeof *st->files);
    if (!st->files) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", index_path); goto out; }
    size_t *first = calloc((size_t)nsh + 1, sizeof *first);
    if (!first) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", index_path); goto out; }
    for (int j = 0; j < nsh; j++) {
        char p[1024];
        if (dlq_path_join(p, sizeof p, dir, shards[j])) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: shard path '%s' too long", index_path, shards[j]);
            break;
        }
        if ((rc = dlq_mapfile_open(&st->files[j], p, err))) {
            dlq_err_prefix(err, "%s (listed in the index)", index_path);
            break;
        }
        st->nfiles = j + 1;
        first[j] = st->ntensors;
        if ((rc = dlq_st_parse(st->files[j].data, st->files[j].size, p, &st->tensors, &st->ntensors, err))) break;
    }
    first[nsh] = st->ntensors;
    if (!rc) {
        owner = malloc((st->ntensors ? st->ntensors : 1) * sizeof *owner);
        if (!owner) rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", index_path);
        for (int j = 0; !rc && j < nsh; j++)
            for (size_t i = first[j]; i < first[j + 1]; i++) owner[i] = j;
    }
    if (!rc) rc = check_dups(st, owner, index_path, err);
    if (!rc) { /* every indexed tensor must be in the shard the index names */
        json_object_foreach(wm, key, val) {
            const char *f = json_string_value(val);
            int j = 0;
            while (strcmp(shards[j], f) != 0) j++;
            size_t i = first[j];
            while (i < first[j + 1] && strcmp(st->tensors[i].name, key) != 0) i++;
            if (i == first[j + 1]) {
                rc = dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' is listed in shard %s but not found there", index_path,
                              key, f);
                break;
            }
        }
    }
    free(first);
out:
    free(owner);
    free(shards);
    json_decref(root);
    return rc;
}

int dlq_st_open(dlq_safetensors *st, const char *path, dlq_err *err) {
    memset(st, 0, sizeof *st);
    char p[1024];
    int rc;
    if (dlq_path_is_dir(path)) {
        if (dlq_path_join(p, sizeof p, path, "model.safetensors.index.json"))
            return dlq_errf(err, DLQ_EINVAL, "%s: path too long", path);
        if (dlq_path_exists(p)) rc = open_index(st, p, err);
        else {
            if (dlq_path_join(p, sizeof p, path, "model.safetensors"))
                return dlq_errf(err, DLQ_EINVAL, "%s: path too long", path);
            if (!dlq_path_exists(p))
                return dlq_errf(err, DLQ_EIO, "%s: folder has neither model.safetensors.index.json nor model.safetensors",
                                path);
            rc = open_single(st, p, err);
        }
    } else if (dlq_str_endswith(path, ".json")) {
        rc = open_index(st, path, err);
    } else {
        rc = open_single(st, path, err);
    }
    if (rc) dlq_st_close(st);
    return rc;
}

const dlq_tensor_info *dlq_st_find(const dlq_safetensors *st, const char *name) {
    for (size_t i = 0; i < st->ntensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

void dlq_st_close(dlq_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->nfiles; i++) dlq_mapfile_close(&st->files[i]);
    free(st->files);
    free(st->tensors);
    memset(st, 0, sizeof *st);
}

/* ---- writer -------------------------------------------------------------- */

static int write_all(int fd, const void *b, size_t n, const char *path, dlq_err *err) {
    const uint8_t *p = b;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return dlq_errf(err, DLQ_EIO, "%s: write failed: %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int dlq_st_write(const char *path, const dlq_tensor_info *tensors, size_t n, const char *metadata_json,
                 dlq_err *err) {
    json_t *root = json_object();
    if (!root) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    if (metadata_json) {
        json_error_t je;
        json_t *m = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &je);
        const char *k;
        json_t *v;
        if (!m || !json_is_object(m)) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: metadata must be a JSON object of strings%s%s", path, m ? "" : ": ",
                          m ? "" : je.text);
        } else {
            json_object_foreach(m, k, v) if (!json_is_string(v)) {
                rc = dlq_errf(err, DLQ_EINVAL, "%s: metadata value for '%s' is not a string", path, k);
                break;
            }
        }
        if (!rc) json_object_set_new(root, "__metadata__", m);
        else json_decref(m);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const dlq_tensor_info *t = &tensors[i];
        const char *dn = (unsigned)t->dtype < DLQ_DTYPE_COUNT ? dlq_dtype_name(t->dtype) : NULL;
        if (!dn) { rc = dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': no safetensors dtype", path, t->name); break; }
        if (!t->name[0] || strcmp(t->name, "__metadata__") == 0 || json_object_get(root, t->name)) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: tensor name '%s' is empty, reserved or duplicated", path, t->name);
            break;
        }
        if (t->ndim < 0 || t->ndim > DLQ_MAX_DIMS) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': ndim %d", path, t->name, t->ndim);
            break;
        }
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && numel > (uint64_t)INT64_MAX / (uint64_t)t->shape[d])) {
                rc = dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': bad shape[%d] = %lld", path, t->name, d,
                              (long long)t->shape[d]);
                break;
            }
            numel *= (uint64_t)t->shape[d];
            json_array_append_new(shape, json_integer(t->shape[d]));
        }
        uint64_t es = dlq_dtype_size(t->dtype);
        if (!rc && (numel > UINT64_MAX / es || numel * es != t->nbytes))
            rc = dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': nbytes %zu, shape and %s need %llu", path, t->name,
                          t->nbytes, dn, (unsigned long long)(numel * es));
        if (!rc && off > (uint64_t)INT64_MAX - t->nbytes)
            rc = dlq_errf(err, DLQ_EINVAL, "%s: total size overflows", path);
        if (rc) { json_decref(shape); break; }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(dn));
        json_object_set_new(e, "shape", shape);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + t->nbytes)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(root, t->name, e);
        off += t->nbytes;
    }
    char *hdr = rc ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc) return rc;
    if (!hdr) return dlq_errf(err, DLQ_ENOMEM, "%s: cannot serialise header", path);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) { free(hdr); return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = dlq_errf(err, DLQ_EIO, "%s: cannot create temporary file: %s", path, strerror(errno));
        free(tmp);
        free(hdr);
        return rc;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    rc = write_all(fd, lenb, 8, path, err);
    if (!rc) rc = write_all(fd, hdr, hl, path, err);
    if (!rc && padded > hl) rc = write_all(fd, "        ", padded - hl, path, err);
    for (size_t i = 0; i < n && !rc; i++) rc = write_all(fd, tensors[i].data, tensors[i].nbytes, path, err);
    if (!rc && fchmod(fd, 0644) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: chmod failed: %s", path, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    free(hdr);
    return rc;
}
