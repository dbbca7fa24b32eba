/* JSONL metrics log: see metrics.h. */
#include "train/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mapfile.h"

struct dlq_metrics {
    FILE *f;
    char path[1024];
    json_t *rec;
};

/* Rewrites path keeping the lines with step <= resume_step. */
static int truncate_log(const char *path, int64_t resume_step, int64_t *dropped, dlq_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = dlq_read_file(path, &text, &len, err);
    if (rc) return rc;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "wb");
    if (!o) { free(text); return dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", tmp, strerror(errno)); }
    int64_t drop = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) { drop++; break; } /* unterminated last line: a write cut short by a crash */
        size_t ll = (size_t)(nl - p);
        int keep = 0;
        json_error_t je;
        json_t *o2 = ll ? json_loadb(p, ll, 0, &je) : NULL;
        if (json_is_object(o2)) {
            json_t *s = json_object_get(o2, "step");
            keep = !json_is_number(s) || json_number_value(s) <= (double)resume_step;
        }
        json_decref(o2);
        if (keep) {
            if (fwrite(p, 1, ll + 1, o) != ll + 1) rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", tmp, strerror(errno));
        } else if (ll) {
            drop++;
        }
        p = nl + 1;
    }
    free(text);
    if (fflush(o) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && fsync(fileno(o)) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (fclose(o) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    if (!rc && dropped) *dropped = drop;
    return rc;
}

int dlq_metrics_open(dlq_metrics **out, const char *path, int64_t resume_step, int64_t *dropped, dlq_err *err) {
    *out = NULL;
    if (dropped) *dropped = 0;
    if (!path || strlen(path) >= 1024) return dlq_errf(err, DLQ_EINVAL, "metrics: log path is missing or too long");
    int rc;
    if (resume_step >= 0 && dlq_path_exists(path) && (rc = truncate_log(path, resume_step, dropped, err))) return rc;
    dlq_metrics *m = dlq_calloc(1, sizeof *m, err);
    if (!m) return DLQ_ENOMEM;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, resume_step >= 0 ? "ab" : "wb");
    if (!m->f) {
        rc = dlq_errf(err, DLQ_EIO, "%s: cannot open metrics log: %s", path, strerror(errno));
        free(m);
        return rc;
    }
    *out = m;
    return DLQ_OK;
}

void dlq_metrics_begin(dlq_metrics *m) {
    if (!m) return;
    json_decref(m->rec);
    m->rec = json_object();
}

static void put(dlq_metrics *m, const char *key, json_t *v) {
    if (!m || !key) { json_decref(v); return; }
    if (!m->rec) m->rec = json_object();
    if (!v) v = json_null();
    json_object_set_new(m->rec, key, v);
}

void dlq_metrics_int(dlq_metrics *m, const char *key, int64_t v) { put(m, key, json_integer((json_int_t)v)); }
void dlq_metrics_num(dlq_metrics *m, const char *key, double v) { put(m, key, isfinite(v) ? json_real(v) : json_null()); }
void dlq_metrics_str(dlq_metrics *m, const char *key, const char *v) { put(m, key, v ? json_string(v) : json_null()); }

/* One JSON line; reals in the shortest form that reads back to the same
 * double (%.15g, %.16g or %.17g), so logs are exact yet readable. */
static char *format_record(json_t *rec) {
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[n++] = '{';
    const char *key;
    json_t *v;
    int first = 1;
    json_object_foreach(rec, key, v) {
        char num[40];
        json_t *kj = json_string(key);
        char *ks = kj ? json_dumps(kj, JSON_ENCODE_ANY) : NULL;
        json_decref(kj);
        char *vs = NULL;
        const char *val;
        if (json_is_real(v)) {
            double d = json_real_value(v);
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, d);
                if (strtod(num, NULL) == d) break;
            }
            if (!strpbrk(num, ".eEn")) strncat(num, ".0", sizeof num - strlen(num) - 1);
            val = num;
        } else {
            vs = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            val = vs ? vs : "null";
        }
        size_t need = n + (ks ? strlen(ks) : 2) + strlen(val) + 4;
        if (need + 2 > cap) {
            while (need + 2 > cap) cap *= 2;
            char *no = realloc(out, cap);
            if (!no) { free(out); free(ks); free(vs); return NULL; }
            out = no;
        }
        n += (size_t)sprintf(out + n, "%s%s:%s", first ? "" : ",", ks ? ks : "\"\"", val);
        first = 0;
        free(ks);
        free(vs);
    }
    out[n++] = '}';
    out[n] = 0;
    return out;
}

int dlq_metrics_end(dlq_metrics *m, dlq_err *err) {
    if (!m || !m->f) return dlq_errf(err, DLQ_EINVAL, "metrics: log is not open");
    if (!m->rec) m->rec = json_object();
    char *s = format_record(m->rec);
    json_decref(m->rec);
    m->rec = NULL;
    if (!s) return dlq_errf(err, DLQ_ENOMEM, "%s: cannot format metrics record", m->path);
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL; fwrite below writes exactly n + 1 bytes */
    int rc = DLQ_OK;
    if (fwrite(s, 1, n + 1, m->f) != n + 1 || fflush(m->f) != 0)
        rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", m->path, strerror(errno));
    free(s);
    return rc;
}

int dlq_metrics_step(dlq_metrics *m, int64_t step, double loss, double lr, double tokens_per_s, double elapsed_s,
                     dlq_err *err) {
    dlq_metrics_begin(m);
    dlq_metrics_int(m, "step", step);
    dlq_metrics_num(m, "loss", loss);
    dlq_metrics_num(m, "lr", lr);
    dlq_metrics_num(m, "tokens_per_s", tokens_per_s);
    dlq_metrics_num(m, "elapsed_s", elapsed_s);
    return dlq_metrics_end(m, err);
}

int dlq_metrics_close(dlq_metrics *m, dlq_err *err) {
    if (!m) return DLQ_OK;
    int rc = DLQ_OK;
    json_decref(m->rec);
    if (m->f && fclose(m->f) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", m->path, strerror(errno));
    free(m);
    return rc;
}
