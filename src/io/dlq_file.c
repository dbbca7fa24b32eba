#include "io/dlq_file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/qpack.h"
#include "train/checkpoint.h" /* dlq_crc32c */

#define HDR 64
#define TRAILER 16
static const char MAGIC[8] = {'D', 'L', 'Q', 'M', 'O', 'D', 'E', 'L'};
static const char ENDMAGIC[8] = {'D', 'L', 'Q', 'M', 'E', 'N', 'D', 0};

typedef struct blob {
    void *data;      /* owned copy, or NULL when ref is used */
    const void *ref; /* borrowed */
    size_t n;
    json_t *pair;    /* [offset, nbytes] array to fill at commit */
} blob;

struct dlq_file_writer {
    json_t *root, *tensors;
    blob *blobs;
    size_t nb, cap;
};

int dlq_file_writer_new(dlq_file_writer **out, dlq_err *err) {
    dlq_file_writer *w = calloc(1, sizeof *w);
    if (!w) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    w->root = json_pack("{s:s, s:i}", "format", "dlq", "version", DLQ_FILE_VERSION);
    w->tensors = json_array();
    json_object_set_new(w->root, "tokenizer", json_null());
    *out = w;
    return DLQ_OK;
}

void dlq_file_writer_free(dlq_file_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->nb; i++) free(w->blobs[i].data);
    free(w->blobs);
    json_decref(w->tensors);
    json_decref(w->root);
    free(w);
}

static json_t *add_blob(dlq_file_writer *w, void *owned, const void *ref, size_t n, dlq_err *err) {
    if (w->nb == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        blob *b = realloc(w->blobs, nc * sizeof *b);
        if (!b) { free(owned); dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
        w->blobs = b;
        w->cap = nc;
    }
    json_t *pair = json_pack("[I, I]", (json_int_t)0, (json_int_t)n);
    w->blobs[w->nb++] = (blob){owned, ref, n, pair};
    return pair;
}

int dlq_file_set_json(dlq_file_writer *w, const char *key, const char *text, dlq_err *err) {
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v) return dlq_errf(err, DLQ_EINVAL, ".dlq writer: '%s' is not valid JSON: %s", key, je.text);
    json_object_set_new(w->root, key, v);
    return DLQ_OK;
}

static json_t *shape_json(int ndim, const int64_t *shape) {
    json_t *a = json_array();
    for (int i = 0; i < ndim; i++) json_array_append_new(a, json_integer(shape[i]));
    return a;
}

int dlq_file_add_dense(dlq_file_writer *w, const char *name, dlq_dtype dt, int ndim, const int64_t *shape,
                       const void *data, dlq_err *err) {
    if (dt != DLQ_F32 && dt != DLQ_F16 && dt != DLQ_BF16)
        return dlq_errf(err, DLQ_EINVAL, ".dlq writer: tensor %s: dtype %s not storable", name, dlq_dtype_name(dt));
    size_t n = dlq_dtype_size(dt);
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    json_t *pair = add_blob(w, NULL, data, n, err);
    if (!pair) return DLQ_ENOMEM;
    json_array_append_new(w->tensors, json_pack("{s:s, s:s, s:o, s:o}", "name", name, "type", dlq_dtype_name(dt), "shape",
                                                shape_json(ndim, shape), "data", pair));
    return DLQ_OK;
}

int dlq_file_add_packed(dlq_file_writer *w, const char *name, int bits, int group, int64_t out, int64_t in,
                        const int8_t *q, const float *scale, const float *bias, dlq_err *err) {
    return dlq_file_add_packed_ex(w, name, bits, group, out, in, q, scale, bias, DLQ_F32, err);
}

int dlq_file_add_packed_ex(dlq_file_writer *w, const char *name, int bits, int group, int64_t out, int64_t in,
                           const int8_t *q, const float *scale, const float *bias, dlq_dtype pdt, dlq_err *err) {
    if (bits < 2 || bits > 8) return dlq_errf(err, DLQ_EINVAL, ".dlq writer: %s: bits %d", name, bits);
    if (pdt != DLQ_F32 && pdt != DLQ_F16)
        return dlq_errf(err, DLQ_EINVAL, ".dlq writer: %s: group parameters as %s (F32 or F16 expected)", name,
                        dlq_dtype_name(pdt));
    if (group <= 0 || group > in) group = (int)in;
    int64_t rb = dlq_qrow_bytes(in, bits), ng = (in + group - 1) / group;
    size_t pn = (size_t)(out * ng), pes = dlq_dtype_size(pdt);
    uint8_t *packed = malloc((size_t)(rb * out));
    void *sc = malloc(pn * pes), *bi = malloc(pn * pes);
    if (!packed || !sc || !bi) { free(packed); free(sc); free(bi); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    for (int64_t r = 0; r < out; r++) dlq_qpack_row(packed + r * rb, q + r * in, in, bits);
    if (pdt == DLQ_F16) {
        for (size_t i = 0; i < pn; i++) {
            ((uint16_t *)sc)[i] = dlq_f32_to_f16(scale[i]);
            ((uint16_t *)bi)[i] = dlq_f32_to_f16(bias[i]);
        }
    } else {
        memcpy(sc, scale, pn * pes);
        memcpy(bi, bias, pn * pes);
    }
    json_t *pq = add_blob(w, packed, NULL, (size_t)(rb * out), err);
    json_t *ps = pq ? add_blob(w, sc, NULL, pn * pes, err) : NULL;
    json_t *pb = ps ? add_blob(w, bi, NULL, pn * pes, err) : NULL;
    if (!pb) return DLQ_ENOMEM;
    int64_t shp[2] = {out, in};
    json_array_append_new(w->tensors, json_pack("{s:s, s:s, s:i, s:i, s:o, s:I, s:o, s:o, s:o, s:s}", "name", name, "type",
                                                "packed", "bits", bits, "group", group, "shape", shape_json(2, shp),
                                                "row_bytes", (json_int_t)rb, "q", pq, "scale", ps, "bias", pb,
                                                "param_type", dlq_dtype_name(pdt)));
    return DLQ_OK;
}

json_t *dlq_file_add_blob_copy(dlq_file_writer *w, const void *data, size_t n, dlq_err *err) {
    void *copy = malloc(n ? n : 1);
    if (!copy) { dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
    memcpy(copy, data, n);
    return add_blob(w, copy, NULL, n, err);
}

void dlq_file_add_entry(dlq_file_writer *w, json_t *entry) { json_array_append_new(w->tensors, entry); }

int dlq_file_set_tokenizer(dlq_file_writer *w, const char *kind, const void *data, size_t n, int add_bos, int bos,
                           int eos, dlq_err *err) {
    void *copy = malloc(n ? n : 1);
    if (!copy) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    memcpy(copy, data, n);
    json_t *pair = add_blob(w, copy, NULL, n, err);
    if (!pair) return DLQ_ENOMEM;
    json_object_set_new(w->root, "tokenizer", json_pack("{s:s, s:o, s:b, s:i, s:i}", "kind", kind, "data", pair,
                                                        "add_bos", add_bos, "bos_id", bos, "eos_id", eos));
    return DLQ_OK;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static int write_all(FILE *f, const void *p, size_t n, uint32_t *crc) {
    *crc = dlq_crc32c(*crc, p, n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

int dlq_file_commit(dlq_file_writer *w, const char *path, dlq_err *err) {
    json_object_set(w->root, "tensors", w->tensors);
    /* JSON length depends on the offsets, which depend on the JSON length:
     * lay out with a JSON area padded to a fixed upper bound, iterate once. */
    size_t json_cap = 0;
    char *js = NULL;
    for (int pass = 0; pass < 3; pass++) {
        uint64_t off = HDR + json_cap;
        off = (off + 63) & ~(uint64_t)63;
        for (size_t i = 0; i < w->nb; i++) {
            json_array_set_new(w->blobs[i].pair, 0, json_integer((json_int_t)off));
            off = (off + w->blobs[i].n + 63) & ~(uint64_t)63;
        }
        free(js);
        js = json_dumps(w->root, JSON_COMPACT);
        if (!js) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
        size_t need = strlen(js);
        if (need <= json_cap) break;
        json_cap = need + 256 + need / 8;
    }
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(js); return dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", tmp, strerror(errno)); }
    uint64_t data_start = ((uint64_t)HDR + json_cap + 63) & ~(uint64_t)63;
    uint64_t size = data_start;
    for (size_t i = 0; i < w->nb; i++) size = (size + w->blobs[i].n + 63) & ~(uint64_t)63;
    size += TRAILER;
    uint8_t hdr[HDR] = {0};
    memcpy(hdr, MAGIC, 8);
    put_u32(hdr + 8, DLQ_FILE_VERSION);
    put_u32(hdr + 12, HDR);
    put_u64(hdr + 16, size);
    put_u64(hdr + 24, HDR);
    put_u64(hdr + 32, strlen(js));
    uint32_t crc = 0;
    int bad = write_all(f, hdr, HDR, &crc);
    char *jpad = calloc(1, data_start - HDR);
    memcpy(jpad, js, strlen(js));
    bad |= write_all(f, jpad, data_start - HDR, &crc);
    free(jpad);
    free(js);
    static const uint8_t zeros[64] = {0};
    uint64_t pos = data_start;
    for (size_t i = 0; i < w->nb && !bad; i++) {
        const void *p = w->blobs[i].data ? w->blobs[i].data : w->blobs[i].ref;
        bad |= write_all(f, p, w->blobs[i].n, &crc);
        pos += w->blobs[i].n;
        uint64_t al = (pos + 63) & ~(uint64_t)63;
        bad |= write_all(f, zeros, al - pos, &crc);
        pos = al;
    }
    uint8_t tr[TRAILER] = {0};
    put_u32(tr, crc);
    memcpy(tr + 8, ENDMAGIC, 8);
    bad |= fwrite(tr, 1, TRAILER, f) != TRAILER;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dlq_errf(err, DLQ_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return DLQ_OK;
}

/* ---- reading ---- */

int dlq_file_parse(dlq_file *f, const uint8_t *d, size_t size, const char *what, dlq_err *err) {
    f->json = NULL;
    if (size < HDR + TRAILER) return dlq_errf(err, DLQ_EFORMAT, "%s: %zu bytes is too short for a .dlq file", what, size);
    if (memcmp(d, MAGIC, 8)) return dlq_errf(err, DLQ_EFORMAT, "%s: not a .dlq file (bad magic)", what);
    uint32_t ver, hs;
    uint64_t fsz, jo, jl;
    memcpy(&ver, d + 8, 4);
    memcpy(&hs, d + 12, 4);
    memcpy(&fsz, d + 16, 8);
    memcpy(&jo, d + 24, 8);
    memcpy(&jl, d + 32, 8);
    if (ver < DLQ_FILE_VERSION_MIN || ver > DLQ_FILE_VERSION)
        return dlq_errf(err, DLQ_EUNSUP, "%s: .dlq version %u is not supported (this build reads versions %d to %d)", what,
                        ver, DLQ_FILE_VERSION_MIN, DLQ_FILE_VERSION);
    if (hs != HDR) return dlq_errf(err, DLQ_EFORMAT, "%s: header size %u, expected %d", what, hs, HDR);
    if (fsz != size)
        return dlq_errf(err, DLQ_EFORMAT, "%s: the header says %llu bytes but the file has %zu (truncated or damaged)",
                        what, (unsigned long long)fsz, size);
    if (memcmp(d + size - 8, ENDMAGIC, 8)) return dlq_errf(err, DLQ_EFORMAT, "%s: missing end marker (truncated?)", what);
    uint32_t want;
    memcpy(&want, d + size - TRAILER, 4);
    /* in 32 MiB steps; from a mapping (dlq_file_open) each step's pages are
     * dropped from this process right after (they stay in the page cache), so
     * checking a model never makes it all resident: the forward pass faults
     * back what it uses, and an embedding table costs only the rows looked up */
    uint32_t got = 0;
    const size_t step = (size_t)32 << 20;
    for (size_t o = 0; o < size - TRAILER; o += step) {
        size_t n = size - TRAILER - o < step ? size - TRAILER - o : step;
        got = dlq_crc32c(got, d + o, n);
        if (f->drop_pages) madvise((void *)(d + o), n, MADV_DONTNEED);
    }
    if (got != want)
        return dlq_errf(err, DLQ_EFORMAT, "%s: checksum mismatch (stored %08x, computed %08x): the file is damaged", what,
                        want, got);
    if (jo < HDR || jo > size - TRAILER || jl > size - TRAILER - jo)
        return dlq_errf(err, DLQ_EFORMAT, "%s: JSON area [%llu, +%llu) outside the file", what, (unsigned long long)jo,
                        (unsigned long long)jl);
    json_error_t je;
    json_t *root = json_loadb((const char *)d + jo, jl, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON header: %s", what, je.text);
    }
    if (!json_is_array(json_object_get(root, "tensors")) || !json_is_object(json_object_get(root, "config"))) {
        json_decref(root);
        return dlq_errf(err, DLQ_EFORMAT, "%s: JSON header lacks \"tensors\" or \"config\"", what);
    }
    f->json = root;
    if (!f->map.data) { f->map.data = d; f->map.size = size; }
    return DLQ_OK;
}

int dlq_file_open(dlq_file *f, const char *path, dlq_err *err) {
    memset(f, 0, sizeof *f);
    int rc = dlq_mapfile_open(&f->map, path, err);
    if (rc) return rc;
    f->drop_pages = 1; /* page-aligned private mapping: see the checksum loop */
    rc = dlq_file_parse(f, f->map.data, f->map.size, path, err);
    /* the JSON header and the small tables the loader read are faulted back
     * as needed; drop the rest of what parsing touched too */
    if (!rc && f->map.size) madvise((void *)f->map.data, f->map.size, MADV_DONTNEED);
    if (rc) dlq_mapfile_close(&f->map);
    return rc;
}

void dlq_file_close(dlq_file *f) {
    json_decref((json_t *)f->json);
    f->json = NULL;
    if (f->map.path[0]) dlq_mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

int dlq_file_blob(const dlq_file *f, void *pair_json, size_t expect, size_t align, const void **ptr, size_t *nbytes,
                  const char *what, dlq_err *err) {
    json_t *p = pair_json;
    if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(json_array_get(p, 0)) ||
        !json_is_integer(json_array_get(p, 1)))
        return dlq_errf(err, DLQ_EFORMAT, "%s: %s: expected [offset, nbytes]", f->map.path, what);
    json_int_t off = json_integer_value(json_array_get(p, 0)), n = json_integer_value(json_array_get(p, 1));
    if (off < HDR || n < 0 || (uint64_t)off > f->map.size - TRAILER || (uint64_t)n > f->map.size - TRAILER - (uint64_t)off)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %s: blob [%lld, +%lld) is outside the file", f->map.path, what,
                        (long long)off, (long long)n);
    if (align > 1 && (uint64_t)off % align)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %s: offset %lld is not %zu-byte aligned", f->map.path, what, (long long)off, align);
    if (expect != (size_t)-1 && (size_t)n != expect)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %s: %lld bytes, expected %zu", f->map.path, what, (long long)n, expect);
    *ptr = f->map.data + off;
    if (nbytes) *nbytes = (size_t)n;
    return DLQ_OK;
}
