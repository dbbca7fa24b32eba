/* Stanford Alpaca instruction data: JSON list of {instruction, input, output},
 * prompt template, Alpaca train.py tokenization and loss mask. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/data.h"

static const char PROMPT_INPUT[] = DLQ_ALPACA_PROMPT_INPUT;
static const char PROMPT_NO_INPUT[] = DLQ_ALPACA_PROMPT_NO_INPUT;

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 1024;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return -1;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* Substitutes {instruction} and {input} (the only placeholders) literally. */
static int render(sbuf *b, const char *tmpl, const char *ins, size_t nins, const char *inp, size_t ninp) {
    b->n = 0;
    const char *p = tmpl;
    while (*p) {
        const char *q = strchr(p, '{');
        if (!q) return sb_add(b, p, strlen(p));
        if (sb_add(b, p, (size_t)(q - p))) return -1;
        if (strncmp(q, "{instruction}", 13) == 0) {
            if (sb_add(b, ins, nins)) return -1;
            p = q + 13;
        } else if (strncmp(q, "{input}", 7) == 0) {
            if (sb_add(b, inp, ninp)) return -1;
            p = q + 7;
        } else {
            if (sb_add(b, q, 1)) return -1;
            p = q + 1;
        }
    }
    return 0;
}

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Checks record i; on a problem writes why into msg and returns 0. */
static int check_record(const json_t *r, char *msg, size_t cap) {
    if (!json_is_object(r)) {
        snprintf(msg, cap, "expected an object, found %s", jtype(r));
        return 0;
    }
    static const char *const req[] = {"instruction", "output"};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(r, req[k]);
        if (!v) { snprintf(msg, cap, "missing \"%s\"", req[k]); return 0; }
        if (!json_is_string(v)) {
            snprintf(msg, cap, "\"%s\" is %s, expected a string", req[k], jtype(v));
            return 0;
        }
    }
    const json_t *in = json_object_get(r, "input");
    if (in && !json_is_string(in)) {
        snprintf(msg, cap, "\"input\" is %s, expected a string", jtype(in));
        return 0;
    }
    return 1;
}

int dlq_data_open_alpaca(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                         int source_max, int target_max, double val_fraction, uint64_t seed,
                         int strict, dlq_err *err) {
    *out = NULL;
    if (!tok) return dlq_errf(err, DLQ_EINVAL, "%s: alpaca data needs a tokenizer", path);
    if (T <= 0) return dlq_errf(err, DLQ_EINVAL, "%s: T=%d must be positive", path, T);
    if (source_max <= 0) source_max = DLQ_ALPACA_SOURCE_MAX;
    if (target_max <= 0) target_max = DLQ_ALPACA_TARGET_MAX;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (je.line < 0 && strstr(je.text, "unable to open"))
            return dlq_errf(err, DLQ_EIO, "%s: %s", path, je.text);
        return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line,
                        je.column, je.text);
    }
    if (!json_is_array(root)) {
        int rc = dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON list of {instruction, input, output} records, found %s",
                          path, jtype(root));
        json_decref(root);
        return rc;
    }
    dlq_dataset *d;
    int rc = dlq_data__new(&d, DLQ_DATA_ALPACA, T, err);
    if (rc) {
        json_decref(root);
        return rc;
    }
    int32_t eos = dlq_tok_eos(tok);
    dlq_data__set_pad(d, eos >= 0 ? eos : 0);
    sbuf src = {0}, full = {0};
    int32_t *ex = malloc(((size_t)T + 1) * sizeof *ex);
    if (!ex) {
        rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t n = json_array_size(root);
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(root, i);
        char why[200];
        if (!check_record(r, why, sizeof why)) {
            if (strict) {
                rc = dlq_errf(err, DLQ_EFORMAT, "%s: record %zu: %s", path, i, why);
                goto done;
            }
            dlq_data__skip(d, "%s: record %zu: %s", path, i, why);
            continue;
        }
        const json_t *ji = json_object_get(r, "instruction"), *jo = json_object_get(r, "output"),
                     *jn = json_object_get(r, "input");
        size_t nin = jn ? json_string_length(jn) : 0;
        const char *in = jn ? json_string_value(jn) : "";
        if (render(&src, nin ? PROMPT_INPUT : PROMPT_NO_INPUT, json_string_value(ji), json_string_length(ji), in,
                   nin) ||
            render(&full, "{instruction}{input}", src.p, src.n, json_string_value(jo), json_string_length(jo))) {
            rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        int32_t *s_ids = NULL, *f_ids = NULL;
        size_t ns = 0, nf = 0;
        rc = dlq_tok_encode(tok, src.p, src.n, 1, &s_ids, &ns, err);
        if (!rc) rc = dlq_tok_encode(tok, full.p, full.n, 1, &f_ids, &nf, err);
        if (rc) {
            free(s_ids);
            free(f_ids);
            dlq_err_prefix(err, "%s: record %zu", path, i);
            goto done;
        }
        free(s_ids);
        if (ns > nf) ns = nf;
        /* source = full[0..ns) cut to source_max; target = full[ns..) + EOS cut to target_max */
        size_t src_n = ns < (size_t)source_max ? ns : (size_t)source_max;
        size_t tgt_avail = nf - ns + (eos >= 0 ? 1 : 0);
        size_t tgt_n = tgt_avail < (size_t)target_max ? tgt_avail : (size_t)target_max;
        size_t len = 0;
        for (size_t k = 0; k < src_n && len < (size_t)T; k++) ex[len++] = f_ids[k];
        for (size_t k = 0; k < tgt_n && len < (size_t)T; k++) ex[len++] = ns + k < nf ? f_ids[ns + k] : eos;
        free(f_ids);
        rc = dlq_data__add(d, ex, (int32_t)len, (int32_t)src_n, err);
        if (rc) goto done;
    }
    rc = dlq_data__finish(d, path, val_fraction, seed, err);
done:
    free(ex);
    free(src.p);
    free(full.p);
    json_decref(root);
    if (rc) {
        dlq_data_close(d);
        return rc;
    }
    *out = d;
    return DLQ_OK;
}
