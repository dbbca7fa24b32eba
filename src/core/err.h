/* Error reporting: fallible functions return an int status (0 = ok, negative
 * = one of DLQ_E*) and fill a caller-owned dlq_err with a message that names
 * the file / tensor / field and what was expected vs found. */
#ifndef DLQ_CORE_ERR_H
#define DLQ_CORE_ERR_H

#include <stddef.h>

enum {
    DLQ_OK = 0,
    DLQ_EIO = -1,      /* open/read/write/mmap failed */
    DLQ_EFORMAT = -2,  /* file content malformed / truncated / inconsistent */
    DLQ_ENOMEM = -3,   /* allocation failed */
    DLQ_EINVAL = -4,   /* bad argument / unsupported option */
    DLQ_EUNSUP = -5,   /* valid input we do not support (yet) */
};

typedef struct dlq_err {
    int code;
    char msg[1024];
} dlq_err;

/* Sets err (if non-NULL) and returns code. printf-style. */
int dlq_errf(dlq_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (adds context on the way up). */
int dlq_err_prefix(dlq_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *dlq_status_name(int code);

/* Checked allocation helpers: return NULL and set err on failure. */
void *dlq_malloc(size_t n, dlq_err *err);
void *dlq_calloc(size_t count, size_t size, dlq_err *err);

/* n * m with overflow check; returns 0 on overflow and sets *ok = 0. */
size_t dlq_mul_sz(size_t n, size_t m, int *ok);

#endif
