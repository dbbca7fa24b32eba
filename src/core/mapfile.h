/* Read-only memory-mapped files. */
#ifndef DLQ_CORE_MAPFILE_H
#define DLQ_CORE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct dlq_mapfile {
    const uint8_t *data;
    size_t size;
    char path[1024];
    uint64_t dev, ino; /* the mapped file's identity (to reopen the same file, not a replacement) */
} dlq_mapfile;

/* Maps the whole file read-only. An empty file maps to data=NULL, size=0. */
int dlq_mapfile_open(dlq_mapfile *mf, const char *path, dlq_err *err);
void dlq_mapfile_close(dlq_mapfile *mf);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
int dlq_read_file(const char *path, char **out, size_t *len, dlq_err *err);

int dlq_path_is_dir(const char *path);
int dlq_path_exists(const char *path);
/* Joins dir and name into buf (cap bytes). Returns 0 or DLQ_EINVAL if too long. */
int dlq_path_join(char *buf, size_t cap, const char *dir, const char *name);
/* True if path ends with suffix (case-sensitive). */
int dlq_str_endswith(const char *s, const char *suffix);

#endif
