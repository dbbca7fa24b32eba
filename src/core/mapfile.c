#define _POSIX_C_SOURCE 200809L
#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int dlq_mapfile_open(dlq_mapfile *mf, const char *path, dlq_err *err) {
    memset(mf, 0, sizeof *mf);
    snprintf(mf->path, sizeof mf->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dlq_errf(err, DLQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dlq_errf(err, DLQ_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return dlq_errf(err, DLQ_EIO, "%s: is a directory, expected a file", path);
    }
    mf->size = (size_t)st.st_size;
    mf->dev = (uint64_t)st.st_dev;
    mf->ino = (uint64_t)st.st_ino;
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return dlq_errf(err, DLQ_EIO, "%s: cannot mmap %zu bytes: %s", path, mf->size, strerror(e));
        }
        mf->data = (const uint8_t *)p;
    }
    close(fd);
    return DLQ_OK;
}

void dlq_mapfile_close(dlq_mapfile *mf) {
    if (mf->data && mf->size) munmap((void *)mf->data, mf->size);
    mf->data = NULL;
    mf->size = 0;
}

int dlq_read_file(const char *path, char **out, size_t *len, dlq_err *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dlq_errf(err, DLQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path); }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return dlq_errf(err, DLQ_EIO, "%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return DLQ_OK;
}

int dlq_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int dlq_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int dlq_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int n = (dl && dir[dl - 1] == '/') ? snprintf(buf, cap, "%s%s", dir, name)
                                       : snprintf(buf, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? DLQ_EINVAL : DLQ_OK;
}

int dlq_str_endswith(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}
