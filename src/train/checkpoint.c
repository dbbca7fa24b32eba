/* Crash-safe checkpoints: see checkpoint.h and docs/checkpoints.md. */
#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c stores f32 data in host order and assumes a little-endian host"
#endif

#define HDR_SIZE 64
#define TRAILER_SIZE 16
static const char MAGIC[8] = {'D', 'L', 'Q', 'C', 'K', 'P', 'T', 0};
static const char END_MAGIC[8] = {'D', 'L', 'Q', 'C', 'E', 'N', 'D', 0};

/* ---------------------------------------------------------------- CRC-32C */

typedef struct crc_tab { uint32_t t[8][256]; } crc_tab;

static void crc_tab_init(crc_tab *c) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++) r = (r >> 1) ^ (0x82f63b78u & (0u - (r & 1u)));
        c->t[0][i] = r;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++) c->t[s][i] = (c->t[s - 1][i] >> 8) ^ c->t[0][c->t[s - 1][i] & 0xff];
}

/* raw update: no pre/post inversion */
static uint32_t crc_raw(const crc_tab *c, uint32_t crc, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = (crc >> 8) ^ c->t[0][(crc ^ *p++) & 0xff]; n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = c->t[7][v & 0xff] ^ c->t[6][(v >> 8) & 0xff] ^ c->t[5][(v >> 16) & 0xff] ^ c->t[4][(v >> 24) & 0xff] ^
              c->t[3][(v >> 32) & 0xff] ^ c->t[2][(v >> 40) & 0xff] ^ c->t[1][(v >> 48) & 0xff] ^ c->t[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ c->t[0][(crc ^ *p++) & 0xff];
    return crc;
}

uint32_t dlq_crc32c(uint32_t crc, const void *data, size_t n) {
    crc_tab *c = malloc(sizeof *c);
    if (!c) { /* bitwise fallback: slow but never fails */
        const uint8_t *p = data;
        crc = ~crc;
        while (n--) {
            crc ^= *p++;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
        }
        return ~crc;
    }
    crc_tab_init(c);
    crc = ~crc_raw(c, ~crc, data, n);
    free(c);
    return crc;
}

/* ------------------------------------------------------------ little endian */

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static uint64_t pad8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }
static uint64_t pad64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

/* ------------------------------------------------------------------ writer */

typedef struct ck_entry {
    char *name;
    size_t name_len;
    const float *data;
    size_t n;
} ck_entry;

struct dlq_ckpt_writer {
    ck_entry *e;
    size_t n, cap;
    char *meta;
    size_t meta_len;
};

int dlq_ckpt_writer_new(dlq_ckpt_writer **out, dlq_err *err) {
    *out = dlq_calloc(1, sizeof **out, err);
    return *out ? DLQ_OK : DLQ_ENOMEM;
}

void dlq_ckpt_writer_free(dlq_ckpt_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w->meta);
    free(w);
}

int dlq_ckpt_add(dlq_ckpt_writer *w, const char *name, const float *data, size_t n, dlq_err *err) {
    if (!w || !name) return dlq_errf(err, DLQ_EINVAL, "checkpoint: dlq_ckpt_add needs a writer and a name");
    size_t len = strlen(name);
    if (len == 0 || len > DLQ_CKPT_MAX_NAME)
        return dlq_errf(err, DLQ_EINVAL, "checkpoint: tensor name '%.64s' is empty or longer than %d bytes", name,
                        DLQ_CKPT_MAX_NAME);
    if (n && !data) return dlq_errf(err, DLQ_EINVAL, "checkpoint: tensor '%s' has %zu elements but no data", name, n);
    if (n > (SIZE_MAX >> 3)) return dlq_errf(err, DLQ_EINVAL, "checkpoint: tensor '%s' is too large", name);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return dlq_errf(err, DLQ_EINVAL, "checkpoint: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        ck_entry *e = realloc(w->e, cap * sizeof *e);
        if (!e) return dlq_errf(err, DLQ_ENOMEM, "checkpoint: out of memory");
        w->e = e;
        w->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return dlq_errf(err, DLQ_ENOMEM, "checkpoint: out of memory");
    memcpy(copy, name, len + 1);
    w->e[w->n++] = (ck_entry){copy, len, data, n};
    return DLQ_OK;
}

int dlq_ckpt_set_meta(dlq_ckpt_writer *w, const char *json, dlq_err *err) {
    if (!w) return dlq_errf(err, DLQ_EINVAL, "checkpoint: no writer");
    char *m = NULL;
    size_t len = json ? strlen(json) : 0;
    if (json) {
        if (!(m = malloc(len + 1))) return dlq_errf(err, DLQ_ENOMEM, "checkpoint: out of memory");
        memcpy(m, json, len + 1);
    }
    free(w->meta);
    w->meta = m;
    w->meta_len = len;
    return DLQ_OK;
}

/* buffered output with a running CRC */
typedef struct ck_out {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t fill, cap;
    uint64_t written;
    uint32_t crc; /* raw (inverted) state */
    crc_tab *tab;
} ck_out;

static int out_flush(ck_out *o, dlq_err *err) {
    const uint8_t *p = o->buf;
    size_t n = o->fill;
    while (n) {
        ssize_t k = write(o->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return dlq_errf(err, DLQ_EIO, "%s: write failed: %s", o->path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    o->fill = 0;
    return DLQ_OK;
}

static int out_put(ck_out *o, const void *data, size_t n, dlq_err *err) {
    const uint8_t *p = data;
    o->crc = crc_raw(o->tab, o->crc, p, n);
    o->written += n;
    while (n) {
        size_t k = o->cap - o->fill < n ? o->cap - o->fill : n;
        memcpy(o->buf + o->fill, p, k);
        o->fill += k;
        p += k;
        n -= k;
        if (o->fill == o->cap) {
            int rc = out_flush(o, err);
            if (rc) return rc;
        }
    }
    return DLQ_OK;
}

static int out_zeros(ck_out *o, size_t n, dlq_err *err) {
    static const uint8_t z[64];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        int rc = out_put(o, z, k, err);
        if (rc) return rc;
        n -= k;
    }
    return DLQ_OK;
}

static int fsync_dir_of(const char *path, dlq_err *err) {
    char *copy = strdup(path);
    if (!copy) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    const char *d = dirname(copy);
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    int rc = DLQ_OK;
    if (fd < 0) rc = dlq_errf(err, DLQ_EIO, "%s: cannot open directory to fsync: %s", d, strerror(errno));
    else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            rc = dlq_errf(err, DLQ_EIO, "%s: fsync of directory failed: %s", d, strerror(errno));
        close(fd);
    }
    free(copy);
    return rc;
}

/* Writes the checkpoint to exactly `tmp` (created / truncated), fsyncs, closes. */
static int write_file(dlq_ckpt_writer *w, const char *tmp, dlq_err *err) {
    uint64_t meta_off = HDR_SIZE, meta_len = w->meta_len;
    uint64_t index_off = meta_off + pad8(meta_len), index_len = 0;
    for (size_t i = 0; i < w->n; i++) index_len += 24 + pad8(w->e[i].name_len);
    uint64_t pos = pad64(index_off + index_len);
    uint64_t *offs = malloc((w->n ? w->n : 1) * sizeof *offs);
    if (!offs) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", tmp);
    for (size_t i = 0; i < w->n; i++) {
        offs[i] = pos;
        pos = pad64(pos + (uint64_t)w->e[i].n * 4);
    }
    uint64_t data_end = w->n ? offs[w->n - 1] + (uint64_t)w->e[w->n - 1].n * 4 : pos;
    uint64_t file_size = pad8(data_end) + TRAILER_SIZE;

    ck_out o = {.path = tmp, .cap = 1 << 20, .crc = 0xffffffffu};
    o.buf = malloc(o.cap);
    o.tab = malloc(sizeof *o.tab);
    int rc = DLQ_OK;
    if (!o.buf || !o.tab) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", tmp); goto out; }
    crc_tab_init(o.tab);
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o.fd < 0) { rc = dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", tmp, strerror(errno)); goto out; }

    uint8_t h[HDR_SIZE] = {0};
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, DLQ_CKPT_VERSION);
    put_u32(h + 12, HDR_SIZE);
    put_u64(h + 16, file_size);
    put_u64(h + 24, w->n);
    put_u64(h + 32, meta_off);
    put_u64(h + 40, meta_len);
    put_u64(h + 48, index_off);
    put_u64(h + 56, index_len);
    rc = out_put(&o, h, HDR_SIZE, err);
    if (!rc && meta_len) rc = out_put(&o, w->meta, meta_len, err);
    if (!rc) rc = out_zeros(&o, pad8(meta_len) - meta_len, err);
    for (size_t i = 0; i < w->n && !rc; i++) {
        uint8_t e[24] = {0};
        put_u64(e, offs[i]);
        put_u64(e + 8, w->e[i].n);
        put_u32(e + 16, (uint32_t)w->e[i].name_len);
        rc = out_put(&o, e, 24, err);
        if (!rc) rc = out_put(&o, w->e[i].name, w->e[i].name_len, err);
        if (!rc) rc = out_zeros(&o, pad8(w->e[i].name_len) - w->e[i].name_len, err);
    }
    for (size_t i = 0; i < w->n && !rc; i++) {
        rc = out_zeros(&o, offs[i] - o.written, err);
        if (!rc && w->e[i].n) rc = out_put(&o, w->e[i].data, w->e[i].n * 4, err);
    }
    if (!rc) rc = out_zeros(&o, file_size - TRAILER_SIZE - o.written, err);
    if (!rc) {
        uint8_t t[TRAILER_SIZE] = {0};
        put_u32(t, ~o.crc);
        memcpy(t + 8, END_MAGIC, 8);
        rc = out_put(&o, t, TRAILER_SIZE, err);
    }
    if (!rc) rc = out_flush(&o, err);
    if (!rc && o.written != file_size)
        rc = dlq_errf(err, DLQ_EIO, "%s: internal error: wrote %llu bytes, expected %llu", tmp,
                      (unsigned long long)o.written, (unsigned long long)file_size);
    if (!rc && fsync(o.fd) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(o.fd) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", tmp, strerror(errno));
out:
    free(o.buf);
    free(o.tab);
    free(offs);
    return rc;
}

static char *str_cat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) { memcpy(s, a, la); memcpy(s + la, b, lb + 1); }
    return s;
}

int dlq_ckpt_commit(dlq_ckpt_writer *w, const char *path, dlq_err *err) {
    if (!w || !path) return dlq_errf(err, DLQ_EINVAL, "checkpoint: commit needs a writer and a path");
    char *tmp = str_cat(path, ".tmp");
    if (!tmp) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    int rc = write_file(w, tmp, err);
    if (!rc && rename(tmp, path) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
    if (!rc) rc = fsync_dir_of(path, err);
    else unlink(tmp);
    free(tmp);
    return rc;
}

int dlq_ckpt_save_rotating(dlq_ckpt_writer *w, const char *dir, dlq_err *err) {
    if (!w || !dir) return dlq_errf(err, DLQ_EINVAL, "checkpoint: save needs a writer and a directory");
    if (!dlq_path_is_dir(dir) && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dlq_errf(err, DLQ_EIO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
    char latest[1100], prev[1100], tmp[1100];
    if (dlq_path_join(latest, sizeof latest, dir, DLQ_CKPT_LATEST) || dlq_path_join(prev, sizeof prev, dir, DLQ_CKPT_PREV) ||
        dlq_path_join(tmp, sizeof tmp, dir, DLQ_CKPT_LATEST ".tmp"))
        return dlq_errf(err, DLQ_EINVAL, "%s: checkpoint directory path is too long", dir);
    int rc = write_file(w, tmp, err);
    if (rc) { unlink(tmp); return rc; }
    if ((rc = fsync_dir_of(tmp, err))) return rc;
    if (dlq_path_exists(latest)) {
        /* keep a good prev if the current latest is damaged */
        dlq_ckpt *ck = NULL;
        dlq_err e2;
        if (dlq_ckpt_read(latest, &ck, &e2) == DLQ_OK) {
            dlq_ckpt_free(ck);
            if (rename(latest, prev) != 0)
                return dlq_errf(err, DLQ_EIO, "%s: cannot rename to %s: %s", latest, prev, strerror(errno));
            if ((rc = fsync_dir_of(prev, err))) return rc;
        }
    }
    if (rename(tmp, latest) != 0) return dlq_errf(err, DLQ_EIO, "%s: rename from %s failed: %s", latest, tmp, strerror(errno));
    return fsync_dir_of(latest, err);
}

/* ------------------------------------------------------------------ reader */

typedef struct ck_tensor {
    char *name;
    const float *data;
    size_t n;
} ck_tensor;

struct dlq_ckpt {
    dlq_mapfile mf;
    char *meta;
    ck_tensor *t;
    size_t n;
};

void dlq_ckpt_free(dlq_ckpt *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n; i++) free(ck->t[i].name);
    free(ck->t);
    free(ck->meta);
    dlq_mapfile_close(&ck->mf);
    free(ck);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const ck_tensor *)a)->name, ((const ck_tensor *)b)->name);
}

int dlq_ckpt_read(const char *path, dlq_ckpt **out, dlq_err *err) {
    *out = NULL;
    dlq_ckpt *ck = dlq_calloc(1, sizeof *ck, err);
    if (!ck) return DLQ_ENOMEM;
    int rc = dlq_mapfile_open(&ck->mf, path, err);
    if (rc) { free(ck); return rc; }
    const uint8_t *d = ck->mf.data;
    uint64_t size = ck->mf.size;
#define BAD(...) do { rc = dlq_errf(err, DLQ_EFORMAT, __VA_ARGS__); goto fail; } while (0)
    if (size < 8 || memcmp(d, MAGIC, 8) != 0)
        BAD("%s: not a dlqat checkpoint (bad magic%s)", path, size < 8 ? ": file is shorter than 8 bytes" : "");
    if (size < HDR_SIZE + TRAILER_SIZE)
        BAD("%s: truncated: %llu bytes, a checkpoint has at least %d; file is damaged", path, (unsigned long long)size,
            HDR_SIZE + TRAILER_SIZE);
    uint32_t ver = get_u32(d + 8), hs = get_u32(d + 12);
    if (ver > DLQ_CKPT_VERSION) {
        rc = dlq_errf(err, DLQ_EUNSUP, "%s: checkpoint format version %u is newer than this dlqat reads (%d)", path, ver,
                      DLQ_CKPT_VERSION);
        goto fail;
    }
    if (ver == 0 || hs != HDR_SIZE) BAD("%s: bad header (version %u, header size %u); file is damaged", path, ver, hs);
    uint64_t fsz = get_u64(d + 16);
    if (fsz != size)
        BAD("%s: %s: header says %llu bytes, file has %llu; file is damaged", path, size < fsz ? "truncated" : "size mismatch",
            (unsigned long long)fsz, (unsigned long long)size);
    if (memcmp(d + size - 8, END_MAGIC, 8) != 0 || get_u32(d + size - 12) != 0)
        BAD("%s: end marker damaged; file is damaged", path);
    {
        crc_tab *tab = malloc(sizeof *tab);
        if (!tab) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); goto fail; }
        crc_tab_init(tab);
        uint32_t crc = ~crc_raw(tab, 0xffffffffu, d, size - TRAILER_SIZE);
        free(tab);
        uint32_t want = get_u32(d + size - TRAILER_SIZE);
        if (crc != want)
            BAD("%s: checksum mismatch: file is damaged (stored CRC-32C %08x, computed %08x)", path, want, crc);
    }
    /* checksum is fine; still validate the structure (a buggy or hostile writer) */
    uint64_t nt = get_u64(d + 24), moff = get_u64(d + 32), mlen = get_u64(d + 40), ioff = get_u64(d + 48),
             ilen = get_u64(d + 56), body = size - TRAILER_SIZE;
    if (moff != HDR_SIZE || mlen > body - moff) BAD("%s: metadata offset %llu / length %llu out of range", path,
                                                   (unsigned long long)moff, (unsigned long long)mlen);
    if (ioff < moff + mlen || ioff > body || ilen > body - ioff || (ioff & 7))
        BAD("%s: index offset %llu / length %llu out of range", path, (unsigned long long)ioff, (unsigned long long)ilen);
    if (nt > ilen / 24) BAD("%s: %llu tensors do not fit a %llu-byte index", path, (unsigned long long)nt, (unsigned long long)ilen);
    if (memchr(d + moff, 0, mlen)) BAD("%s: metadata contains a NUL byte", path);
    if (!(ck->meta = malloc(mlen + 1))) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); goto fail; }
    memcpy(ck->meta, d + moff, mlen);
    ck->meta[mlen] = 0;
    if (!(ck->t = calloc(nt ? nt : 1, sizeof *ck->t))) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); goto fail; }
    uint64_t p = ioff, iend = ioff + ilen, data_min = ioff + ilen;
    for (uint64_t i = 0; i < nt; i++) {
        if (iend - p < 24) BAD("%s: index entry %llu runs past the index", path, (unsigned long long)i);
        uint64_t off = get_u64(d + p), cnt = get_u64(d + p + 8);
        uint32_t nl = get_u32(d + p + 16);
        p += 24;
        if (nl == 0 || nl > DLQ_CKPT_MAX_NAME || nl > iend - p)
            BAD("%s: index entry %llu: bad name length %u", path, (unsigned long long)i, nl);
        if (memchr(d + p, 0, nl)) BAD("%s: index entry %llu: name contains a NUL byte", path, (unsigned long long)i);
        char *name = malloc(nl + 1);
        if (!name) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); goto fail; }
        memcpy(name, d + p, nl);
        name[nl] = 0;
        ck->t[ck->n++].name = name; /* owned by ck from here on */
        if (pad8(nl) > iend - p) BAD("%s: index entry %llu: name runs past the index", path, (unsigned long long)i);
        p += pad8(nl);
        if ((off & 63) || off < data_min || off > body || cnt > (body - off) / 4)
            BAD("%s: tensor '%s': data offset %llu / %llu elements out of range", path, name, (unsigned long long)off,
                (unsigned long long)cnt);
        data_min = off + cnt * 4; /* tensors are stored in order, without overlap */
        ck->t[ck->n - 1].data = (const float *)(const void *)(d + off);
        ck->t[ck->n - 1].n = (size_t)cnt;
    }
    if (p != iend) BAD("%s: index has %llu unused bytes", path, (unsigned long long)(iend - p));
    {
        /* duplicate names: sort a copy */
        ck_tensor *s = malloc((ck->n ? ck->n : 1) * sizeof *s);
        if (!s) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); goto fail; }
        memcpy(s, ck->t, ck->n * sizeof *s);
        qsort(s, ck->n, sizeof *s, cmp_name);
        for (size_t i = 1; i < ck->n; i++)
            if (!strcmp(s[i - 1].name, s[i].name)) {
                rc = dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' appears twice", path, s[i].name);
                free(s);
                goto fail;
            }
        free(s);
    }
#undef BAD
    *out = ck;
    return DLQ_OK;
fail:
    dlq_ckpt_free(ck);
    return rc;
}

const float *dlq_ckpt_find(const dlq_ckpt *ck, const char *name, size_t *n) {
    if (n) *n = 0;
    if (!ck || !name) return NULL;
    for (size_t i = 0; i < ck->n; i++)
        if (!strcmp(ck->t[i].name, name)) {
            if (n) *n = ck->t[i].n;
            static const float empty[1];
            return ck->t[i].n ? ck->t[i].data : empty;
        }
    return NULL;
}

int dlq_ckpt_copy(const dlq_ckpt *ck, const char *name, float *dst, size_t n, dlq_err *err) {
    size_t have;
    const float *p = dlq_ckpt_find(ck, name, &have);
    if (!p) return dlq_errf(err, DLQ_EFORMAT, "%s: checkpoint has no tensor '%s'", ck ? ck->mf.path : "?", name);
    if (have != n)
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' has %zu elements, expected %zu (different model or LoRA rank?)",
                        ck->mf.path, name, have, n);
    if (n) memcpy(dst, p, n * sizeof *dst);
    return DLQ_OK;
}

const char *dlq_ckpt_meta(const dlq_ckpt *ck) { return ck && ck->meta ? ck->meta : ""; }
size_t dlq_ckpt_count(const dlq_ckpt *ck) { return ck ? ck->n : 0; }
const char *dlq_ckpt_path(const dlq_ckpt *ck) { return ck ? ck->mf.path : ""; }

const char *dlq_ckpt_tensor(const dlq_ckpt *ck, size_t i, const float **data, size_t *n) {
    if (!ck || i >= ck->n) return NULL;
    if (data) *data = ck->t[i].data;
    if (n) *n = ck->t[i].n;
    return ck->t[i].name;
}

int dlq_ckpt_load_latest(const char *dir, dlq_ckpt **out, dlq_ckpt_load_info *info, dlq_err *err) {
    *out = NULL;
    dlq_ckpt_load_info tmpi;
    if (!info) info = &tmpi;
    memset(info, 0, sizeof *info);
    char latest[1024], prev[1024];
    if (dlq_path_join(latest, sizeof latest, dir, DLQ_CKPT_LATEST) || dlq_path_join(prev, sizeof prev, dir, DLQ_CKPT_PREV))
        return dlq_errf(err, DLQ_EINVAL, "%s: checkpoint directory path is too long", dir);
    dlq_err e1 = {0};
    int have_latest = dlq_path_exists(latest);
    int rc1 = DLQ_EIO;
    if (have_latest) {
        rc1 = dlq_ckpt_read(latest, out, &e1);
        if (rc1 == DLQ_OK) { snprintf(info->path, sizeof info->path, "%s", latest); return DLQ_OK; }
    } else {
        dlq_errf(&e1, DLQ_EIO, "%s: missing", latest);
    }
    if (!dlq_path_exists(prev)) {
        if (!have_latest) return dlq_errf(err, DLQ_EIO, "%s: no checkpoint (%s and %s are missing)", dir, DLQ_CKPT_LATEST, DLQ_CKPT_PREV);
        return dlq_errf(err, rc1, "%s; there is no %s to fall back to", e1.msg, DLQ_CKPT_PREV);
    }
    dlq_err e2 = {0};
    int rc2 = dlq_ckpt_read(prev, out, &e2);
    if (rc2) return dlq_errf(err, rc2, "both checkpoints are unusable: %s; %s", e1.msg, e2.msg);
    info->fell_back = 1;
    snprintf(info->path, sizeof info->path, "%s", prev);
    snprintf(info->latest_error, sizeof info->latest_error, "%s", e1.msg);
    return DLQ_OK;
}

/* ----------------------------------------------------------------- signals */

static volatile sig_atomic_t *stop_flag; /* the only static state: set by dlq_install_stop_signals */

static void on_stop(int sig) {
    (void)sig;
    if (stop_flag) *stop_flag = 1;
}

int dlq_install_stop_signals(volatile sig_atomic_t *flag, dlq_err *err) {
    if (!flag) return dlq_errf(err, DLQ_EINVAL, "dlq_install_stop_signals: flag is NULL");
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return dlq_errf(err, DLQ_EIO, "sigaction failed: %s", strerror(errno));
    return DLQ_OK;
}
