/* Dataset core (examples, split, shuffled epochs, batches, resume position,
 * format detection) and the raw-text loader. */
#include "train/data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/rng.h"

struct dlq_dataset {
    int kind, T;
    int32_t pad;
    /* examples: strided (stride > 0) or variable (off/len/loss) */
    int32_t *ids;
    size_t n_ids, cap_ids;
    int32_t stride;
    int64_t n;
    int64_t *off;
    int32_t *len, *loss;
    size_t cap_ex;
    int64_t n_train, n_val;
    /* training stream */
    int64_t *perm;
    uint64_t epoch;
    int64_t index;
    dlq_rng rng_epoch; /* state at the start of the current epoch */
    dlq_rng rng;       /* state after this epoch's shuffle */
    uint64_t fingerprint;
    /* skipped records */
    int64_t n_skipped;
    char skip_msg[DLQ_DATA_MAX_SKIP_MSGS][256];
};

/* ---- batches -------------------------------------------------------------- */

int dlq_batch_alloc(dlq_batch *b, int B, int T, dlq_err *err) {
    memset(b, 0, sizeof *b);
    if (B <= 0 || T <= 0) return dlq_errf(err, DLQ_EINVAL, "batch: B=%d, T=%d must be positive", B, T);
    int ok = 1;
    size_t n = dlq_mul_sz((size_t)B, (size_t)T, &ok);
    size_t bytes = dlq_mul_sz(n, sizeof(int32_t), &ok);
    if (!ok) return dlq_errf(err, DLQ_EINVAL, "batch: %d x %d tokens overflows", B, T);
    b->tokens = malloc(bytes);
    b->targets = malloc(bytes);
    b->example = malloc((size_t)B * sizeof *b->example);
    if (!b->tokens || !b->targets || !b->example) {
        dlq_batch_free(b);
        return dlq_errf(err, DLQ_ENOMEM, "batch: out of memory for %d x %d tokens", B, T);
    }
    b->B = B;
    b->T = T;
    return DLQ_OK;
}

void dlq_batch_free(dlq_batch *b) {
    if (!b) return;
    free(b->tokens);
    free(b->targets);
    free(b->example);
    memset(b, 0, sizeof *b);
}

/* ---- construction --------------------------------------------------------- */

int dlq_data__new(dlq_dataset **out, int kind, int T, dlq_err *err) {
    *out = NULL;
    if (T <= 0) return dlq_errf(err, DLQ_EINVAL, "data: T=%d must be positive", T);
    dlq_dataset *d = calloc(1, sizeof *d);
    if (!d) return dlq_errf(err, DLQ_ENOMEM, "data: out of memory");
    d->kind = kind;
    d->T = T;
    *out = d;
    return DLQ_OK;
}

void dlq_data__set_strided(dlq_dataset *d, int32_t *ids, int64_t n_examples, int32_t stride) {
    free(d->ids);
    d->ids = ids;
    d->n_ids = (size_t)n_examples * (size_t)stride;
    d->cap_ids = d->n_ids;
    d->stride = stride;
    d->n = n_examples;
}

int dlq_data__add(dlq_dataset *d, const int32_t *x, int32_t len, int32_t loss_start, dlq_err *err) {
    if (len < 0) len = 0;
    if ((size_t)d->n == d->cap_ex) {
        size_t c = d->cap_ex ? d->cap_ex * 2 : 256;
        int64_t *o = realloc(d->off, c * sizeof *o);
        if (o) d->off = o;
        int32_t *l = realloc(d->len, c * sizeof *l);
        if (l) d->len = l;
        int32_t *s = realloc(d->loss, c * sizeof *s);
        if (s) d->loss = s;
        if (!o || !l || !s) return dlq_errf(err, DLQ_ENOMEM, "data: out of memory");
        d->cap_ex = c;
    }
    if (d->n_ids + (size_t)len > d->cap_ids) {
        size_t c = d->cap_ids ? d->cap_ids : 4096;
        while (c < d->n_ids + (size_t)len) c *= 2;
        int32_t *p = realloc(d->ids, c * sizeof *p);
        if (!p) return dlq_errf(err, DLQ_ENOMEM, "data: out of memory");
        d->ids = p;
        d->cap_ids = c;
    }
    if (len) memcpy(d->ids + d->n_ids, x, (size_t)len * sizeof *x);
    d->off[d->n] = (int64_t)d->n_ids;
    d->len[d->n] = len;
    d->loss[d->n] = loss_start;
    d->n_ids += (size_t)len;
    d->n++;
    return DLQ_OK;
}

void dlq_data__skip(dlq_dataset *d, const char *fmt, ...) {
    if (d->n_skipped < DLQ_DATA_MAX_SKIP_MSGS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->skip_msg[d->n_skipped], sizeof d->skip_msg[0], fmt, ap);
        va_end(ap);
    }
    d->n_skipped++;
}

void dlq_data__set_pad(dlq_dataset *d, int32_t pad) { d->pad = pad; }

const int32_t *dlq_data_example(const dlq_dataset *d, int64_t i, int32_t *len, int32_t *loss_start) {
    if (!d || i < 0 || i >= d->n) return NULL;
    if (d->stride > 0) {
        if (len) *len = d->stride;
        if (loss_start) *loss_start = 1;
        return d->ids + (size_t)i * (size_t)d->stride;
    }
    if (len) *len = d->len[i];
    if (loss_start) *loss_start = d->loss[i];
    return d->ids + d->off[i];
}

static void fnv(uint64_t *h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ c[i]) * 0x100000001b3ull;
}

static void shuffle_epoch(dlq_dataset *d) {
    d->rng_epoch = d->rng;
    for (int64_t i = 0; i < d->n_train; i++) d->perm[i] = i;
    for (int64_t i = d->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(dlq_rng_u64(&d->rng) % (uint64_t)(i + 1));
        int64_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
}

int dlq_data__finish(dlq_dataset *d, const char *path, double val_fraction, uint64_t seed, dlq_err *err) {
    int64_t n = d->n, nv;
    if (!(val_fraction >= 0) || val_fraction > 1e15)
        return dlq_errf(err, DLQ_EINVAL, "%s: validation fraction %g must be >= 0", path, val_fraction);
    if (val_fraction >= 1) {
        if (val_fraction != floor(val_fraction))
            return dlq_errf(err, DLQ_EINVAL,
                            "%s: validation size %g: a fraction must be < 1, a count a whole number", path,
                            val_fraction);
        nv = (int64_t)val_fraction;
    } else {
        nv = (int64_t)floor(val_fraction * (double)n);
        if (val_fraction > 0 && nv == 0 && n > 1) nv = 1;
    }
    if (n == 0) return dlq_errf(err, DLQ_EFORMAT, "%s: no examples (T=%d)", path, d->T);
    if (nv >= n)
        return dlq_errf(err, DLQ_EINVAL, "%s: %lld examples, validation holds out %lld: nothing left to train on",
                        path, (long long)n, (long long)nv);
    d->n_val = nv;
    d->n_train = n - nv;
    d->perm = malloc((size_t)d->n_train * sizeof *d->perm);
    if (!d->perm) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    uint64_t h = 0xcbf29ce484222325ull;
    int32_t hdr[3] = {d->kind, d->T, 0};
    fnv(&h, hdr, sizeof hdr);
    int64_t nt = d->n_train;
    fnv(&h, &nt, sizeof nt);
    for (int64_t i = 0; i < d->n_train; i++) {
        int32_t len, ls;
        const int32_t *x = dlq_data_example(d, i, &len, &ls);
        fnv(&h, &len, sizeof len);
        fnv(&h, &ls, sizeof ls);
        fnv(&h, x, (size_t)len * sizeof *x);
    }
    d->fingerprint = h;
    dlq_rng_seed(&d->rng, seed);
    d->epoch = 0;
    d->index = 0;
    shuffle_epoch(d);
    return DLQ_OK;
}

/* ---- batches from examples ---------------------------------------------- */

static int64_t fill_row(const dlq_dataset *d, int64_t ex, int32_t *tok, int32_t *tgt) {
    int T = d->T;
    int64_t cnt = 0;
    if (ex < 0) {
        for (int j = 0; j < T; j++) { tok[j] = d->pad; tgt[j] = -1; }
        return 0;
    }
    int32_t len, ls;
    const int32_t *x = dlq_data_example(d, ex, &len, &ls);
    for (int j = 0; j < T; j++) {
        tok[j] = j < len ? x[j] : d->pad;
        int k = j + 1;
        if (k < len && k >= ls) { tgt[j] = x[k]; cnt++; }
        else tgt[j] = -1;
    }
    return cnt;
}

static int check_batch(const dlq_dataset *d, const dlq_batch *b, dlq_err *err) {
    if (!b || !b->tokens || !b->targets || !b->example || b->B <= 0)
        return dlq_errf(err, DLQ_EINVAL, "data: batch not allocated");
    if (b->T != d->T)
        return dlq_errf(err, DLQ_EINVAL, "data: batch T=%d but the dataset has T=%d", b->T, d->T);
    return DLQ_OK;
}

int dlq_data_next(dlq_dataset *d, dlq_batch *b, dlq_err *err) {
    int rc = check_batch(d, b, err);
    if (rc) return rc;
    b->n_targets = 0;
    for (int r = 0; r < b->B; r++) {
        int64_t ex = d->perm[d->index];
        b->example[r] = ex;
        b->n_targets += fill_row(d, ex, b->tokens + (size_t)r * d->T, b->targets + (size_t)r * d->T);
        if (++d->index == d->n_train) {
            d->index = 0;
            d->epoch++;
            shuffle_epoch(d);
        }
    }
    return DLQ_OK;
}

int64_t dlq_data_val_batches(const dlq_dataset *d, int B) {
    if (B <= 0) return 0;
    return (d->n_val + B - 1) / B;
}

int dlq_data_val_batch(const dlq_dataset *d, int64_t i, dlq_batch *b, dlq_err *err) {
    int rc = check_batch(d, b, err);
    if (rc) return rc;
    int64_t nb = dlq_data_val_batches(d, b->B);
    if (i < 0 || i >= nb)
        return dlq_errf(err, DLQ_EINVAL, "data: validation batch %lld out of range [0, %lld)", (long long)i,
                        (long long)nb);
    b->n_targets = 0;
    for (int r = 0; r < b->B; r++) {
        int64_t v = i * b->B + r;
        int64_t ex = v < d->n_val ? d->n_train + v : -1;
        b->example[r] = ex;
        b->n_targets += fill_row(d, ex, b->tokens + (size_t)r * d->T, b->targets + (size_t)r * d->T);
    }
    return DLQ_OK;
}

void dlq_data_get_pos(const dlq_dataset *d, dlq_data_pos *p) {
    memset(p, 0, sizeof *p);
    p->epoch = d->epoch;
    p->index = (uint64_t)d->index;
    memcpy(p->rng_state, d->rng_epoch.s, sizeof p->rng_state);
    p->n_train = (uint64_t)d->n_train;
    p->fingerprint = d->fingerprint;
}

int dlq_data_set_pos(dlq_dataset *d, const dlq_data_pos *p, dlq_err *err) {
    if (p->n_train != (uint64_t)d->n_train || p->fingerprint != d->fingerprint)
        return dlq_errf(err, DLQ_EINVAL,
                        "data: saved position is for other data (%llu training examples, fingerprint "
                        "%016llx; this dataset: %lld, %016llx)",
                        (unsigned long long)p->n_train, (unsigned long long)p->fingerprint,
                        (long long)d->n_train, (unsigned long long)d->fingerprint);
    if (p->index >= (uint64_t)d->n_train)
        return dlq_errf(err, DLQ_EINVAL, "data: saved position index %llu >= %lld training examples",
                        (unsigned long long)p->index, (long long)d->n_train);
    if (!(p->rng_state[0] | p->rng_state[1] | p->rng_state[2] | p->rng_state[3]))
        return dlq_errf(err, DLQ_EINVAL, "data: saved position has an all-zero generator state");
    memcpy(d->rng.s, p->rng_state, sizeof d->rng.s);
    shuffle_epoch(d);
    d->epoch = p->epoch;
    d->index = (int64_t)p->index;
    return DLQ_OK;
}

int64_t dlq_data_n_train(const dlq_dataset *d) { return d->n_train; }
int64_t dlq_data_n_val(const dlq_dataset *d) { return d->n_val; }
int dlq_data_T(const dlq_dataset *d) { return d->T; }
int32_t dlq_data_pad_id(const dlq_dataset *d) { return d->pad; }
int64_t dlq_data_n_skipped(const dlq_dataset *d) { return d->n_skipped; }

const char *dlq_data_skip_msg(const dlq_dataset *d, int i) {
    if (i < 0 || i >= DLQ_DATA_MAX_SKIP_MSGS || i >= d->n_skipped) return NULL;
    return d->skip_msg[i];
}

const char *dlq_data_format(const dlq_dataset *d) {
    return d->kind == DLQ_DATA_TEXT ? "text" : d->kind == DLQ_DATA_ALPACA ? "alpaca" : "tokens";
}

void dlq_data_close(dlq_dataset *d) {
    if (!d) return;
    free(d->ids);
    free(d->off);
    free(d->len);
    free(d->loss);
    free(d->perm);
    free(d);
}

/* ---- options, detection, generic open ------------------------------------- */

void dlq_data_opts_default(dlq_data_opts *o) {
    memset(o, 0, sizeof *o);
    o->T = 512;
    o->val_fraction = 0.05;
    o->source_max = DLQ_ALPACA_SOURCE_MAX;
    o->target_max = DLQ_ALPACA_TARGET_MAX;
}

const char *dlq_data_detect(const char *path, dlq_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        dlq_errf(err, DLQ_EIO, "%s: cannot open", path);
        return NULL;
    }
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n >= 8 && memcmp(buf, "DLQTOK01", 8) == 0) return "tokens";
    if (dlq_str_endswith(path, ".tok") || dlq_str_endswith(path, ".tokens")) return "tokens";
    if (dlq_str_endswith(path, ".json")) return "alpaca";
    size_t i = 0;
    if (n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) i = 3;
    while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    if (i < n && buf[i] == '[') {
        i++;
        while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
        if (i < n && buf[i] == '{') return "alpaca";
    }
    return "text";
}

int dlq_data_open(dlq_dataset **out, const char *path, const char *format, const dlq_tokenizer *tok,
                  const dlq_data_opts *o, dlq_err *err) {
    *out = NULL;
    dlq_data_opts def;
    if (!o) {
        dlq_data_opts_default(&def);
        o = &def;
    }
    if (!format || strcmp(format, "auto") == 0) {
        format = dlq_data_detect(path, err);
        if (!format) return err ? err->code : DLQ_EIO;
    }
    if (strcmp(format, "text") == 0)
        return dlq_data_open_text(out, path, tok, o->T, o->val_fraction, o->seed, err);
    if (strcmp(format, "alpaca") == 0)
        return dlq_data_open_alpaca(out, path, tok, o->T, o->source_max, o->target_max, o->val_fraction,
                                    o->seed, o->strict, err);
    if (strcmp(format, "tokens") == 0)
        return dlq_data_open_tokens(out, path, tok, o->T, o->val_fraction, o->seed, err);
    return dlq_errf(err, DLQ_EINVAL, "data format '%s': expected auto, text, alpaca or tokens", format);
}

/* ---- raw text --------------------------------------------------------------- */

int dlq_data_open_text(dlq_dataset **out, const char *path, const dlq_tokenizer *tok, int T,
                       double val_fraction, uint64_t seed, dlq_err *err) {
    *out = NULL;
    if (!tok) return dlq_errf(err, DLQ_EINVAL, "%s: text data needs a tokenizer", path);
    if (T <= 0 || T >= INT32_MAX - 1) return dlq_errf(err, DLQ_EINVAL, "%s: T=%d out of range", path, T);
    char *text = NULL;
    size_t len = 0;
    int rc = dlq_read_file(path, &text, &len, err);
    if (rc) return rc;
    int32_t *ids = NULL;
    size_t n = 0;
    rc = dlq_tok_encode(tok, text, len, 1, &ids, &n, err);
    free(text);
    if (rc) return dlq_err_prefix(err, "%s", path);
    int64_t nw = (int64_t)(n / ((size_t)T + 1));
    if (nw == 0) {
        free(ids);
        return dlq_errf(err, DLQ_EFORMAT, "%s: %zu tokens, fewer than one window of T+1 = %d", path, n, T + 1);
    }
    dlq_dataset *d;
    rc = dlq_data__new(&d, DLQ_DATA_TEXT, T, err);
    if (rc) {
        free(ids);
        return rc;
    }
    dlq_data__set_strided(d, ids, nw, T + 1);
    int32_t eos = dlq_tok_eos(tok);
    d->pad = eos >= 0 ? eos : 0;
    rc = dlq_data__finish(d, path, val_fraction, seed, err);
    if (rc) {
        dlq_data_close(d);
        return rc;
    }
    *out = d;
    return DLQ_OK;
}
