#include "core/err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dlq_errf(dlq_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int dlq_err_prefix(dlq_err *err, const char *fmt, ...) {
    if (!err) return 0;
    char pre[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n + 2 >= sizeof err->msg) return err->code;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t ol = strlen(old);
    if (ol > rest) ol = rest;
    memcpy(err->msg + n + 2, old, ol);
    err->msg[n + 2 + ol] = 0;
    return err->code;
}

const char *dlq_status_name(int code) {
    switch (code) {
    case DLQ_OK: return "ok";
    case DLQ_EIO: return "I/O error";
    case DLQ_EFORMAT: return "format error";
    case DLQ_ENOMEM: return "out of memory";
    case DLQ_EINVAL: return "invalid argument";
    case DLQ_EUNSUP: return "unsupported";
    default: return "error";
    }
}

void *dlq_malloc(size_t n, dlq_err *err) {
    void *p = malloc(n ? n : 1);
    if (!p) dlq_errf(err, DLQ_ENOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *dlq_calloc(size_t count, size_t size, dlq_err *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) dlq_errf(err, DLQ_ENOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

size_t dlq_mul_sz(size_t n, size_t m, int *ok) {
    if (m && n > SIZE_MAX / m) { *ok = 0; return 0; }
    return n * m;
}
