/* Pre-tokenized token files: "DLQTOK01", u64 n_rows, u32 T, u32 vocab, then
 * n_rows*T little-endian int32 ids (docs/data.md); reader and atomic writer. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "train/data.h"

#define TOK_MAGIC "DLQTOK01"
#define TOK_HDR 24

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int dlq_tokens_read(const char *path, int T, uint32_t tok_vocab, int32_t **ids_out, uint64_t *rows_out,
                    uint32_t *T_out, uint32_t *vocab_out, dlq_err *err) {
    *ids_out = NULL;
    if (T < 0) return dlq_errf(err, DLQ_EINVAL, "%s: T=%d must be >= 0", path, T);
    dlq_mapfile mf;
    int rc = dlq_mapfile_open(&mf, path, err);
    if (rc) return rc;
    const uint8_t *p = mf.data;
    uint64_t rows, fT, vocab = 0;
    size_t body;
    if (mf.size >= 8 && memcmp(p, TOK_MAGIC, 8) == 0) {
        if (mf.size < TOK_HDR) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: truncated header (%zu bytes, expected %d)", path, mf.size, TOK_HDR);
            goto fail;
        }
        rows = rd64(p + 8);
        fT = rd32(p + 16);
        vocab = rd32(p + 20);
        if (fT == 0 || fT >= INT32_MAX - 1 || vocab == 0 || vocab > INT32_MAX) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: header T=%llu, vocab=%llu out of range", path,
                          (unsigned long long)fT, (unsigned long long)vocab);
            goto fail;
        }
        if (T && (uint64_t)T != fT) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: rows have T=%llu tokens, requested T=%d", path,
                          (unsigned long long)fT, T);
            goto fail;
        }
        body = mf.size - TOK_HDR;
        if (rows > body / 4 / fT || rows * fT * 4 != body) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: header says %llu rows of %llu ids (%llu bytes), the file has %zu bytes of ids",
                          path, (unsigned long long)rows, (unsigned long long)fT,
                          (unsigned long long)(rows <= body / 4 / fT ? rows * fT * 4 : 0), body);
            goto fail;
        }
        p += TOK_HDR;
    } else {
        if (T <= 0) {
            rc = dlq_errf(err, DLQ_EINVAL, "%s: no DLQTOK01 header: a headerless token file needs T > 0", path);
            goto fail;
        }
        fT = (uint64_t)T;
        body = mf.size;
        if (body % (4 * fT)) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: headerless token file of %zu bytes is not a whole number of rows of %d int32 ids",
                          path, body, T);
            goto fail;
        }
        rows = body / 4 / fT;
    }
    if (tok_vocab) {
        if (vocab > tok_vocab) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: file vocab %llu is larger than the model's/tokenizer's %u", path,
                          (unsigned long long)vocab, tok_vocab);
            goto fail;
        }
        if (!vocab) vocab = tok_vocab;
    }
    if (rows == 0) {
        rc = dlq_errf(err, DLQ_EFORMAT, "%s: no rows", path);
        goto fail;
    }
    size_t n = (size_t)(rows * fT);
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) {
        rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory for %zu ids", path, n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t v = (int32_t)rd32(p + 4 * i);
        if (v < 0 || (vocab && (uint64_t)v >= vocab)) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: row %zu position %zu: id %d outside the vocabulary [0, %llu)", path,
                          i / fT, (size_t)(i % fT), v, (unsigned long long)vocab);
            free(ids);
            goto fail;
        }
        ids[i] = v;
    }
    dlq_mapfile_close(&mf);
    *ids_out = ids;
    *rows_out = rows;
    *T_out = (uint32_t)fT;
    if (vocab_out) *vocab_out = (uint32_t)vocab;
    return DLQ_OK;
fail:
    dlq_mapfile_close(&mf);
    return rc;
}

int dlq_data_open_tokens(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                         double val_fraction, uint64_t seed, dlq_err *err) {
    *out = NULL;
    int32_t *ids;
    uint64_t rows;
    uint32_t fT;
    int rc = dlq_tokens_read(path, T, tok ? (uint32_t)dlq_tok_vocab_size(tok) : 0, &ids, &rows, &fT, NULL, err);
    if (rc) return rc;
    dlq_dataset *d;
    rc = dlq_data__new(&d, DLQ_DATA_TOKENS, (int)fT, err);
    if (rc) {
        free(ids);
        return rc;
    }
    dlq_data__set_strided(d, ids, (int64_t)rows, (int32_t)fT);
    /* strided examples have loss_start 1 and length T: the last position has no target */
    int32_t eos = tok ? dlq_tok_eos(tok) : -1;
    dlq_data__set_pad(d, eos >= 0 ? eos : 0);
    rc = dlq_data__finish(d, path, val_fraction, seed, err);
    if (rc) {
        dlq_data_close(d);
        return rc;
    }
    *out = d;
    return DLQ_OK;
}

int dlq_tokens_write(const char *path, const int32_t *ids, uint64_t n_rows, uint32_t T, uint32_t vocab,
                     dlq_err *err) {
    if (T == 0 || vocab == 0 || vocab > INT32_MAX)
        return dlq_errf(err, DLQ_EINVAL, "%s: T=%u, vocab=%u must be positive", path, T, vocab);
    if (n_rows && n_rows > SIZE_MAX / 4 / T)
        return dlq_errf(err, DLQ_EINVAL, "%s: %llu rows of %u ids overflow", path, (unsigned long long)n_rows, T);
    size_t n = (size_t)n_rows * T;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab)
            return dlq_errf(err, DLQ_EINVAL, "%s: row %zu position %zu: id %d outside the vocabulary [0, %u)", path,
                            i / T, i % T, ids[i], vocab);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = dlq_errf(err, DLQ_EIO, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    uint8_t hdr[TOK_HDR], buf[4096];
    memcpy(hdr, TOK_MAGIC, 8);
    wr32(hdr + 8, (uint32_t)n_rows);
    wr32(hdr + 12, (uint32_t)(n_rows >> 32));
    wr32(hdr + 16, T);
    wr32(hdr + 20, vocab);
    /* mkstemp creates 0600: a data file is as readable as any other output (the safetensors / GGUF writers do the same) */
    FILE *f = fchmod(fd, 0644) == 0 ? fdopen(fd, "wb") : NULL;
    int bad = !f;
    if (f) {
        bad |= fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr;
        for (size_t i = 0; i < n && !bad; i += sizeof buf / 4) {
            size_t k = n - i < sizeof buf / 4 ? n - i : sizeof buf / 4;
            for (size_t j = 0; j < k; j++) wr32(buf + 4 * j, (uint32_t)ids[i + j]);
            bad |= fwrite(buf, 4, k, f) != k;
        }
        bad |= fflush(f) != 0;
        bad |= fsync(fileno(f)) != 0;
        bad |= fclose(f) != 0;
    } else {
        close(fd);
    }
    int e = errno;
    if (bad || rename(tmp, path) != 0) {
        if (!bad) e = errno;
        unlink(tmp);
        int rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", path, strerror(e));
        free(tmp);
        return rc;
    }
    free(tmp);
    /* make the rename durable: fsync the directory (best effort) */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *dn = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
        int dfd = open(dn, O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return DLQ_OK;
}
