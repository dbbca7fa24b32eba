/* Training data pipelines: text windows cover the token stream, targets are
 * the inputs shifted by one, shuffling is a seeded permutation, train/val are
 * disjoint, resume reproduces the stream bit for bit; Alpaca prompts decode to
 * the template, the loss mask covers exactly output+EOS, truncation caps hold,
 * ids agree with a python sentencepiece reference of Alpaca's train.py
 * (tests/fixtures/data/gen_alpaca_ref.py); malformed records are skipped with
 * their index or rejected; token files round-trip and are validated. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "core/mapfile.h"
#include "t.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

#define TOKMODEL "models/english-mix-7M/tokenizer.model"
#define TEXT "data/sample/english-mix-valid-sample.txt"
#define FIX "tests/fixtures/data/"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int same_batch(const dlq_batch *a, const dlq_batch *b) {
    size_t n = (size_t)a->B * (size_t)a->T;
    return a->B == b->B && a->T == b->T && !memcmp(a->tokens, b->tokens, n * 4) &&
           !memcmp(a->targets, b->targets, n * 4) && !memcmp(a->example, b->example, (size_t)a->B * 8) &&
           a->n_targets == b->n_targets;
}

/* Rows agree with the examples they name: tokens = x[0..T), targets shifted. */
static int batch_consistent(const dlq_dataset *d, const dlq_batch *b) {
    int T = b->T;
    int32_t pad = dlq_data_pad_id(d);
    int64_t cnt = 0;
    for (int r = 0; r < b->B; r++) {
        const int32_t *tok = b->tokens + (size_t)r * T, *tgt = b->targets + (size_t)r * T;
        int32_t len = 0, ls = 0;
        const int32_t *x = b->example[r] >= 0 ? dlq_data_example(d, b->example[r], &len, &ls) : NULL;
        for (int j = 0; j < T; j++) {
            int32_t et = j < len ? x[j] : pad;
            int32_t eg = (j + 1 < len && j + 1 >= ls) ? x[j + 1] : -1;
            if (tok[j] != et || tgt[j] != eg) return 0;
            if (eg >= 0) {
                cnt++;
                if (j + 1 < T && j + 1 < len && tgt[j] != tok[j + 1]) return 0;
            }
        }
    }
    return cnt == b->n_targets;
}

static void test_text(const dlq_tokenizer *tok) {
    dlq_err err = {0};
    char *text;
    size_t tlen;
    if (dlq_read_file(TEXT, &text, &tlen, &err)) { CHECK(0, "%s", err.msg); return; }
    int32_t *ids;
    size_t n;
    CHECK(dlq_tok_encode(tok, text, tlen, 1, &ids, &n, &err) == 0, "%s", err.msg);
    free(text);
    const int T = 64;
    const uint64_t seed = 1234;
    printf("text: seed %llu, %zu tokens\n", (unsigned long long)seed, n);
    dlq_dataset *d = NULL, *d2 = NULL, *d3 = NULL;
    int rc = dlq_data_open_text(&d, TEXT, tok, T, 0.1, seed, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) { free(ids); return; }
    int64_t nw = (int64_t)(n / (T + 1)), nt = dlq_data_n_train(d), nv = dlq_data_n_val(d);
    CHECK(nt + nv == nw && nv == nw / 10, "windows %lld + %lld vs %lld", (long long)nt, (long long)nv, (long long)nw);
    CHECK(!strcmp(dlq_data_format(d), "text") && dlq_data_T(d) == T, "format");
    CHECK(ids[0] == dlq_tok_bos(tok), "one BOS at the start");
    /* windows tile the stream exactly, in order */
    int tiled = 1;
    for (int64_t i = 0; i < nw && tiled; i++) {
        int32_t len, ls;
        const int32_t *x = dlq_data_example(d, i, &len, &ls);
        tiled = x && len == T + 1 && ls == 1 && !memcmp(x, ids + (size_t)i * (T + 1), (size_t)(T + 1) * 4);
    }
    CHECK(tiled, "windows cover ids[0 .. %lld) in order", (long long)(nw * (T + 1)));
    CHECK(dlq_data_example(d, nw, NULL, NULL) == NULL && dlq_data_example(d, -1, NULL, NULL) == NULL, "range");

    /* one epoch = a permutation of the training windows; targets shifted */
    const int B = 7;
    dlq_batch b, b2;
    CHECK(dlq_batch_alloc(&b, B, T, &err) == 0, "%s", err.msg);
    CHECK(dlq_batch_alloc(&b2, B, T, &err) == 0, "%s", err.msg);
    if (nt <= 0 || nt > 1000000) { CHECK(0, "n_train %lld", (long long)nt); free(ids); dlq_data_close(d); return; }
    int64_t total = 2 * nt + 5; /* two epochs and a bit */
    int64_t *order = malloc((size_t)(total + B) * sizeof *order);
    int consistent = 1, full_targets = 1;
    int64_t got = 0;
    while (got < total) {
        CHECK(dlq_data_next(d, &b, &err) == 0, "%s", err.msg);
        consistent &= batch_consistent(d, &b);
        full_targets &= b.n_targets == (int64_t)B * T;
        for (int r = 0; r < B; r++) order[got++] = b.example[r];
    }
    CHECK(consistent, "rows = examples, targets = inputs shifted by one");
    CHECK(full_targets, "text windows: every position has a target");
    char *seen = calloc((size_t)(nt > 0 ? nt : 1), 1);
    int perm0 = 1, perm1 = 1, differ = 0;
    for (int64_t i = 0; i < nt; i++) {
        if (order[i] < 0 || order[i] >= nt || seen[order[i]]) perm0 = 0;
        else seen[order[i]] = 1;
    }
    memset(seen, 0, (size_t)nt);
    for (int64_t i = 0; i < nt; i++) {
        int64_t e = order[nt + i];
        if (e < 0 || e >= nt || seen[e]) perm1 = 0;
        else seen[e] = 1;
        differ |= e != order[i];
    }
    int ident = 1;
    for (int64_t i = 0; i < nt; i++) ident &= order[i] == i;
    CHECK(perm0 && perm1, "each epoch is a permutation of the %lld training windows (never a val one)", (long long)nt);
    CHECK(differ, "the second epoch is reshuffled");
    CHECK(!ident, "the first epoch is shuffled");
    free(seen);

    /* same seed -> same stream; other seed -> another */
    CHECK(dlq_data_open_text(&d2, TEXT, tok, T, 0.1, seed, &err) == 0, "%s", err.msg);
    CHECK(dlq_data_open_text(&d3, TEXT, tok, T, 0.1, seed + 1, &err) == 0, "%s", err.msg);
    if (d2 && d3) {
        int same = 1, diff = 0;
        for (int64_t k = 0; k < total; k += B) {
            dlq_data_next(d2, &b, &err);
            dlq_data_next(d3, &b2, &err);
            for (int r = 0; r < B; r++) {
                same &= b.example[r] == order[k + r];
                diff |= b2.example[r] != order[k + r];
            }
        }
        CHECK(same, "seed %llu reproduces the stream", (unsigned long long)seed);
        CHECK(diff, "seed %llu gives another order", (unsigned long long)seed + 1);
    }

    /* resume: save after 3 batches, 6 more (crossing an epoch), restore in a fresh dataset */
    if (d2) {
        dlq_data_close(d2);
        d2 = NULL;
    }
    CHECK(dlq_data_open_text(&d2, TEXT, tok, T, 0.1, seed, &err) == 0, "%s", err.msg);
    if (d2) {
        int64_t skip = (nt / B) - 2; /* resume shortly before the epoch boundary */
        for (int64_t k = 0; k < skip; k++) dlq_data_next(d2, &b, &err);
        dlq_data_pos pos;
        dlq_data_get_pos(d2, &pos);
        enum { NB = 6 };
        dlq_batch ref[NB];
        for (int k = 0; k < NB; k++) {
            dlq_batch_alloc(&ref[k], B, T, &err);
            dlq_data_next(d2, &ref[k], &err);
        }
        dlq_dataset *d4 = NULL;
        CHECK(dlq_data_open_text(&d4, TEXT, tok, T, 0.1, 999, &err) == 0, "%s", err.msg);
        CHECK(dlq_data_set_pos(d4, &pos, &err) == 0, "%s", err.msg);
        int same = 1;
        for (int k = 0; k < NB; k++) {
            dlq_data_next(d4, &b, &err);
            same &= same_batch(&b, &ref[k]);
        }
        dlq_data_pos p2;
        dlq_data_get_pos(d4, &p2);
        CHECK(same, "resume from epoch %llu index %llu reproduces %d batches bit for bit (across the epoch boundary)",
              (unsigned long long)pos.epoch, (unsigned long long)pos.index, NB);
        CHECK(p2.epoch == pos.epoch + 1, "crossed into epoch %llu", (unsigned long long)p2.epoch);
        /* rewinding the same dataset also works */
        CHECK(dlq_data_set_pos(d4, &pos, &err) == 0, "%s", err.msg);
        dlq_data_next(d4, &b, &err);
        CHECK(same_batch(&b, &ref[0]), "rewind");
        for (int k = 0; k < NB; k++) dlq_batch_free(&ref[k]);
        dlq_data_close(d4);
        /* a position from other data is refused */
        dlq_dataset *d5 = NULL;
        CHECK(dlq_data_open_text(&d5, TEXT, tok, T, 0.2, seed, &err) == 0, "%s", err.msg);
        if (d5) {
            CHECK(dlq_data_set_pos(d5, &pos, &err) == DLQ_EINVAL && strstr(err.msg, "other data"), "%s", err.msg);
            dlq_data_close(d5);
        }
        dlq_data_pos bad = pos;
        bad.index = pos.n_train;
        CHECK(dlq_data_set_pos(d2, &bad, &err) == DLQ_EINVAL, "index out of range refused");
    }

    /* validation: the last windows, in order, last batch padded */
    int64_t nvb = dlq_data_val_batches(d, B);
    CHECK(nvb == (nv + B - 1) / B, "val batches %lld", (long long)nvb);
    int vok = 1;
    for (int64_t i = 0; i < nvb; i++) {
        CHECK(dlq_data_val_batch(d, i, &b, &err) == 0, "%s", err.msg);
        vok &= batch_consistent(d, &b);
        for (int r = 0; r < B; r++) {
            int64_t v = i * B + r;
            vok &= b.example[r] == (v < nv ? nt + v : -1);
            if (v >= nv)
                for (int j = 0; j < T; j++) vok &= b.targets[(size_t)r * T + j] == -1;
        }
    }
    CHECK(vok, "val batches hold windows [%lld, %lld) in order, padding rows without targets", (long long)nt,
          (long long)nw);
    CHECK(dlq_data_val_batch(d, nvb, &b, &err) == DLQ_EINVAL, "val batch out of range");

    /* batch / argument checks */
    dlq_batch bt;
    dlq_batch_alloc(&bt, 2, T + 1, &err);
    CHECK(dlq_data_next(d, &bt, &err) == DLQ_EINVAL && strstr(err.msg, "T="), "%s", err.msg);
    dlq_batch_free(&bt);
    CHECK(dlq_batch_alloc(&bt, 0, T, &err) == DLQ_EINVAL, "B=0");
    dlq_dataset *e = NULL;
    CHECK(dlq_data_open_text(&e, TEXT, tok, T, 1.5, seed, &err) == DLQ_EINVAL, "val 1.5: %s", err.msg);
    CHECK(dlq_data_open_text(&e, TEXT, tok, T, 3, seed, &err) == 0 && dlq_data_n_val(e) == 3, "val count 3");
    dlq_data_close(e);
    e = NULL;
    CHECK(dlq_data_open_text(&e, TEXT, tok, T, (double)nw, seed, &err) == DLQ_EINVAL && strstr(err.msg, "nothing left"),
          "%s", err.msg);
    CHECK(dlq_data_open_text(&e, FIX "short.txt", tok, T, 0, seed, &err) == DLQ_EFORMAT &&
              strstr(err.msg, "short.txt") && strstr(err.msg, "window"),
          "%s", err.msg);
    CHECK(dlq_data_open_text(&e, FIX "no-such-file.txt", tok, T, 0, seed, &err) == DLQ_EIO, "%s", err.msg);
    CHECK(e == NULL, "no dataset on failure");

    free(order);
    dlq_batch_free(&b);
    dlq_batch_free(&b2);
    free(ids);
    dlq_data_close(d);
    dlq_data_close(d2);
    dlq_data_close(d3);
}

/* The Alpaca prompt, rendered independently of the library. */
static char *prompt_of(const json_t *r) {
    const char *ins = json_string_value(json_object_get(r, "instruction"));
    const json_t *jin = json_object_get(r, "input");
    const char *in = jin ? json_string_value(jin) : "";
    size_t cap = strlen(ins) + strlen(in) + 512;
    char *s = malloc(cap);
    if (*in)
        snprintf(s, cap,
                 "Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.\n\n### Instruction:\n%s"
                 "\n\n### Input:\n%s\n\n### Response:\n",
                 ins, in);
    else
        snprintf(s, cap,
                 "Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\n%s\n\n### Response:\n",
                 ins);
    return s;
}

/* Checks every example of an alpaca dataset opened from records (val 0, so
 * example i = record i): prompt decodes to the template, loss mask = output +
 * EOS, caps respected. untruncated: expect whole prompt/output. */
static void check_alpaca(const dlq_tokenizer *tok, dlq_dataset *d, const json_t *recs, int T, int smax, int tmax,
                         int untruncated, const char *what) {
    dlq_err err;
    int64_t n = dlq_data_n_train(d) + dlq_data_n_val(d);
    CHECK(n == (int64_t)json_array_size(recs), "%s: %lld examples of %zu", what, (long long)n, json_array_size(recs));
    int64_t n_exact = 0;
    int caps = 1, prompt_ok = 1, output_ok = 1, eos_ok = 1, mask_ok = 1, bos_ok = 1;
    for (int64_t i = 0; i < n; i++) {
        int32_t len, ls;
        const int32_t *x = dlq_data_example(d, i, &len, &ls);
        const json_t *r = json_array_get(recs, (size_t)i);
        caps &= ls <= smax && len - ls <= tmax && len <= T && ls <= len;
        bos_ok &= len > 0 && x[0] == dlq_tok_bos(tok);
        if (untruncated && ls < smax && len - ls < tmax && len < T) {
            n_exact++;
            char *p = prompt_of(r), *dec;
            size_t dl;
            dlq_tok_decode(tok, x, (size_t)ls, &dec, &dl, &err);
            if (strcmp(dec, p)) {
                if (prompt_ok) fprintf(stderr, "  %s record %lld prompt decodes to:\n%s\n  expected:\n%s\n", what, (long long)i, dec, p);
                prompt_ok = 0;
            }
            free(dec);
            free(p);
            /* the target: output tokens then EOS (joint tokenization keeps the
             * output's first token without a dummy-prefix space) */
            char *all, *src;
            size_t al, sl;
            dlq_tok_decode(tok, x, (size_t)len - 1, &all, &al, &err);
            dlq_tok_decode(tok, x, (size_t)ls, &src, &sl, &err);
            const char *out = json_string_value(json_object_get(r, "output"));
            output_ok &= al >= sl && !strcmp(all + sl, out) && !strncmp(all, src, sl);
            free(all);
            free(src);
            eos_ok &= x[len - 1] == dlq_tok_eos(tok);
        }
        /* mask: positions with a target are exactly j = ls-1 .. len-2 */
        int32_t *tgt = malloc((size_t)T * 4);
        for (int j = 0; j < T; j++) tgt[j] = (j + 1 < len && j + 1 >= ls) ? x[j + 1] : -1;
        int cnt = 0;
        for (int j = 0; j < T; j++) cnt += tgt[j] >= 0;
        mask_ok &= cnt == (len > ls ? len - ls : 0) && (len <= ls || tgt[ls - 1] == x[ls]);
        free(tgt);
    }
    if (untruncated) {
        printf("%s: %lld of %lld examples untruncated, decode-checked\n", what, (long long)n_exact, (long long)n);
        CHECK(n_exact >= n / 2, "%s: %lld decode-checked", what, (long long)n_exact);
    }
    CHECK(caps, "%s: source <= %d, target <= %d, example <= T=%d", what, smax, tmax, T);
    CHECK(bos_ok, "%s: examples start with BOS", what);
    CHECK(prompt_ok, "%s: prompt tokens decode to the Alpaca template exactly", what);
    CHECK(output_ok, "%s: target tokens decode to the output", what);
    CHECK(eos_ok, "%s: target ends with EOS", what);
    CHECK(mask_ok, "%s: loss mask covers exactly output+EOS", what);
}

/* Every position with a target in a batch row is a target token of its example. */
static void check_alpaca_batches(dlq_dataset *d, int T, const char *what) {
    dlq_err err;
    dlq_batch b;
    dlq_batch_alloc(&b, 4, T, &err);
    int ok = 1;
    for (int k = 0; k < 10; k++) {
        dlq_data_next(d, &b, &err);
        ok &= batch_consistent(d, &b);
        for (int r = 0; r < b.B; r++) {
            int32_t len, ls;
            dlq_data_example(d, b.example[r], &len, &ls);
            for (int j = 0; j < T; j++) {
                int has = b.targets[(size_t)r * T + j] >= 0;
                ok &= has == (j + 1 >= ls && j + 1 < len);
                if (j >= len) ok &= b.tokens[(size_t)r * T + j] == dlq_data_pad_id(d);
            }
        }
    }
    CHECK(ok, "%s: batch rows: prompt and padding targets are -1, padding tokens = pad id", what);
    dlq_batch_free(&b);
}

static void test_alpaca(const dlq_tokenizer *tok) {
    dlq_err err = {0};
    json_error_t je;
    json_t *small = json_load_file(FIX "alpaca_small.json", 0, &je);
    CHECK(small && json_array_size(small) == 20, "alpaca_small.json: %s", small ? "" : je.text);
    if (!small) return;
    dlq_dataset *d = NULL;
    CHECK(dlq_data_open_alpaca(&d, FIX "alpaca_small.json", tok, 512, 0, 0, 0, 7, 1, &err) == 0, "%s", err.msg);
    if (d) {
        CHECK(!strcmp(dlq_data_format(d), "alpaca") && dlq_data_n_skipped(d) == 0, "format");
        check_alpaca(tok, d, small, 512, 384, 128, 1, "small");
        check_alpaca_batches(d, 512, "small");
        dlq_data_close(d);
    }
    /* tight caps: source 24, target 5, T 27 (T cuts the target further) */
    d = NULL;
    CHECK(dlq_data_open_alpaca(&d, FIX "alpaca_small.json", tok, 27, 24, 5, 0, 7, 1, &err) == 0, "%s", err.msg);
    if (d) {
        check_alpaca(tok, d, small, 27, 24, 5, 0, "small caps");
        int32_t len, ls;
        dlq_data_example(d, 3, &len, &ls);
        CHECK(ls == 24 && len == 27, "record 3 cut to 24 + 3 (got %d + %d)", ls, len - ls);
        check_alpaca_batches(d, 27, "small caps");
        dlq_data_close(d);
    }

    /* python sentencepiece reference of Alpaca's train.py */
    json_t *ref = json_load_file(FIX "alpaca_ref.json", 0, &je);
    CHECK(ref != NULL, "alpaca_ref.json: %s", je.text);
    if (ref) {
        const json_t *cases = json_object_get(ref, "cases");
        size_t ci;
        const json_t *c;
        int nok = 0;
        json_array_foreach(cases, ci, c) {
            int T = (int)json_integer_value(json_object_get(c, "T"));
            int sm = (int)json_integer_value(json_object_get(c, "source_max"));
            int tm = (int)json_integer_value(json_object_get(c, "target_max"));
            int64_t rec = json_integer_value(json_object_get(c, "record"));
            const json_t *eids = json_object_get(c, "ids");
            int els = (int)json_integer_value(json_object_get(c, "loss_start"));
            dlq_dataset *dr = NULL;
            if (dlq_data_open_alpaca(&dr, FIX "alpaca_small.json", tok, T, sm, tm, 0, 1, 1, &err)) {
                CHECK(0, "%s", err.msg);
                continue;
            }
            int32_t len, ls;
            const int32_t *x = dlq_data_example(dr, rec, &len, &ls);
            int same = x && (size_t)len == json_array_size(eids) && ls == els;
            for (int j = 0; same && j < len; j++) same = x[j] == json_integer_value(json_array_get(eids, (size_t)j));
            CHECK(same, "reference case %zu (record %lld, T %d, caps %d/%d): %d ids, loss from %d; expected %zu, %d", ci,
                  (long long)rec, T, sm, tm, len, ls, json_array_size(eids), els);
            nok += same;
            /* the source text in the reference is the library's template too */
            if (T == 512) {
                char *p = prompt_of(json_array_get(small, (size_t)rec));
                CHECK(!strcmp(p, json_string_value(json_object_get(c, "source_text"))), "template vs python, record %lld",
                      (long long)rec);
                CHECK(json_is_true(json_object_get(c, "joint_prefix_equals_source")) &&
                          json_is_true(json_object_get(c, "separate_tokenization_differs")),
                      "record %lld: joint tokenization keeps the source ids; separate differs", (long long)rec);
                free(p);
            }
            dlq_data_close(dr);
        }
        CHECK(nok == 9, "%d of 9 reference cases", nok);
        json_decref(ref);
    }

    /* malformed records: skip with index, or reject */
    d = NULL;
    CHECK(dlq_data_open_alpaca(&d, FIX "alpaca_malformed.json", tok, 128, 0, 0, 0, 1, 0, &err) == 0, "%s", err.msg);
    if (d) {
        CHECK(dlq_data_n_train(d) == 3 && dlq_data_n_skipped(d) == 7, "3 kept, 7 skipped (got %lld, %lld)",
              (long long)dlq_data_n_train(d), (long long)dlq_data_n_skipped(d));
        static const char *const want[] = {"record 1: expected an object, found a number",
                                           "record 2: missing \"instruction\"",
                                           "record 3: \"output\" is a number, expected a string",
                                           "record 4: \"input\" is a list, expected a string",
                                           "record 6: expected an object, found a string",
                                           "record 8: \"instruction\" is null, expected a string",
                                           "record 9: \"input\" is null, expected a string"};
        for (int k = 0; k < 7; k++) {
            const char *m = dlq_data_skip_msg(d, k);
            CHECK(m && strstr(m, want[k]) && strstr(m, "alpaca_malformed.json"), "skip message %d: %s", k, m ? m : "(none)");
        }
        CHECK(dlq_data_skip_msg(d, 7) == NULL, "only 7 messages");
        /* record 7 has no "input" key: the no-input template */
        int32_t len, ls;
        const int32_t *x = dlq_data_example(d, 2, &len, &ls);
        char *dec;
        size_t dl;
        dlq_tok_decode(tok, x, (size_t)ls, &dec, &dl, &err);
        CHECK(strstr(dec, "### Instruction:\nNo input key at all.\n\n### Response:\n") != NULL, "%s", dec);
        free(dec);
        dlq_data_close(d);
    }
    d = NULL;
    CHECK(dlq_data_open_alpaca(&d, FIX "alpaca_malformed.json", tok, 128, 0, 0, 0, 1, 1, &err) == DLQ_EFORMAT &&
              strstr(err.msg, "alpaca_malformed.json: record 1: expected an object"),
          "strict: %s", err.msg);
    CHECK(d == NULL, "strict: no dataset");
    CHECK(dlq_data_open_alpaca(&d, FIX "alpaca_not_list.json", tok, 128, 0, 0, 0, 1, 0, &err) == DLQ_EFORMAT &&
              strstr(err.msg, "expected a JSON list"),
          "%s", err.msg);
    CHECK(dlq_data_open_alpaca(&d, FIX "short.txt", tok, 128, 0, 0, 0, 1, 0, &err) == DLQ_EFORMAT &&
              strstr(err.msg, "invalid JSON at line"),
          "%s", err.msg);
    CHECK(dlq_data_open_alpaca(&d, FIX "nope.json", tok, 128, 0, 0, 0, 1, 0, &err) == DLQ_EIO, "%s", err.msg);

    /* the shared Alpaca subset */
    const char *shared = t_shared("instruct/alpaca/alpaca_subset_shared.json");
    if (!shared) {
        SKIP("../shared/data/instruct/alpaca/alpaca_subset_shared.json absent");
    } else {
        double t0 = now_s();
        d = NULL;
        CHECK(dlq_data_open_alpaca(&d, shared, tok, 512, 0, 0, 0, 42, 1, &err) == 0, "%s", err.msg);
        double dt = now_s() - t0;
        json_t *all = json_load_file(shared, 0, &je);
        if (d && all) {
            check_alpaca(tok, d, all, 512, 384, 128, 1, "shared");
            printf("alpaca shared: %lld records, opened in %.2f s\n", (long long)dlq_data_n_train(d), dt);
        }
        json_decref(all);
        dlq_data_close(d);
        d = NULL;
        CHECK(dlq_data_open_alpaca(&d, shared, tok, 512, 0, 0, 0.05, 42, 0, &err) == 0, "%s", err.msg);
        if (d) {
            CHECK(dlq_data_n_val(d) == 97 && dlq_data_n_train(d) == 1951 - 97, "split %lld/%lld",
                  (long long)dlq_data_n_train(d), (long long)dlq_data_n_val(d));
            check_alpaca_batches(d, 512, "shared");
            dlq_data_close(d);
        }
    }
    json_decref(small);
}

static void test_tokens(const dlq_tokenizer *tok, const char *dir) {
    dlq_err err = {0};
    char path[512], raw[512];
    snprintf(path, sizeof path, "%s/rows.tok", dir);
    snprintf(raw, sizeof raw, "%s/rows.raw", dir);
    const int T = 16, N = 11;
    uint32_t V = (uint32_t)dlq_tok_vocab_size(tok);
    int32_t ids[16 * 11];
    for (int i = 0; i < N * T; i++) ids[i] = (int32_t)((i * 7919u) % V);
    CHECK(dlq_tokens_write(path, ids, N, T, V, &err) == 0, "%s", err.msg);
    struct stat stt;
    CHECK(stat(path, &stt) == 0 && (stt.st_mode & 0777) == 0644, "token file mode %o, want 644 (not mkstemp's 600)",
          (unsigned)(stt.st_mode & 0777));
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 24 + N * T * 4, "file size %lld", (long long)st.st_size);
    const char *fmt = dlq_data_detect(path, &err);
    CHECK(fmt && !strcmp(fmt, "tokens"), "detect tokens");
    dlq_dataset *d = NULL;
    CHECK(dlq_data_open_tokens(&d, path, tok, 0, 2, 5, &err) == 0, "%s", err.msg);
    if (d) {
        CHECK(dlq_data_T(d) == T && dlq_data_n_train(d) == N - 2 && dlq_data_n_val(d) == 2, "shape");
        int rows = 1;
        for (int i = 0; i < N; i++) {
            int32_t len, ls;
            const int32_t *x = dlq_data_example(d, i, &len, &ls);
            rows &= len == T && ls == 1 && !memcmp(x, ids + i * T, (size_t)T * 4);
        }
        CHECK(rows, "rows round-trip");
        dlq_batch b;
        dlq_batch_alloc(&b, 3, T, &err);
        int ok = 1;
        for (int k = 0; k < 5; k++) {
            dlq_data_next(d, &b, &err);
            ok &= batch_consistent(d, &b);
            for (int r = 0; r < 3; r++) {
                const int32_t *row = ids + b.example[r] * T;
                for (int j = 0; j < T; j++) {
                    ok &= b.tokens[r * T + j] == row[j];
                    ok &= b.targets[r * T + j] == (j + 1 < T ? row[j + 1] : -1);
                }
            }
        }
        CHECK(ok, "token rows: targets shifted within the row, last position -1");
        dlq_batch_free(&b);
        dlq_data_close(d);
    }
    d = NULL;
    CHECK(dlq_data_open_tokens(&d, path, tok, T + 1, 0, 5, &err) == DLQ_EINVAL && strstr(err.msg, "T=16"), "%s",
          err.msg);
    /* headerless */
    FILE *f = fopen(raw, "wb");
    fwrite(ids, 4, (size_t)N * T, f); /* little-endian host */
    fclose(f);
    CHECK(dlq_data_open_tokens(&d, raw, tok, 0, 0, 5, &err) == DLQ_EINVAL && strstr(err.msg, "headerless"), "%s",
          err.msg);
    CHECK(dlq_data_open_tokens(&d, raw, tok, 5, 0, 5, &err) == DLQ_EFORMAT, "%s", err.msg);
    CHECK(dlq_data_open_tokens(&d, raw, tok, T, 0, 5, &err) == 0 && dlq_data_n_train(d) == N, "%s", err.msg);
    dlq_data_close(d);
    d = NULL;
    /* writer validation */
    int32_t bad[4] = {1, 2, (int32_t)V, 3};
    CHECK(dlq_tokens_write(path, bad, 2, 2, V, &err) == DLQ_EINVAL && strstr(err.msg, "row 1 position 0"), "%s",
          err.msg);
    bad[2] = -5;
    CHECK(dlq_tokens_write(path, bad, 1, 4, V, &err) == DLQ_EINVAL, "%s", err.msg);
    CHECK(dlq_tokens_write("/nonexistent-dir/x.tok", ids, 1, 4, V, &err) == DLQ_EIO, "%s", err.msg);
    /* the failed writes left the good file intact */
    CHECK(dlq_data_open_tokens(&d, path, tok, 0, 0, 5, &err) == 0, "%s", err.msg);
    dlq_data_close(d);
    d = NULL;
    /* corrupt files: every truncation, an out-of-vocab id, a vocab too large */
    char *buf;
    size_t blen;
    dlq_read_file(path, &buf, &blen, &err);
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s/corrupt.tok", dir);
    int never_ok = 1;
    for (size_t cut = 0; cut < blen; cut += (cut < 40 ? 1 : 37)) {
        f = fopen(cpath, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        d = NULL;
        int rc = dlq_data_open_tokens(&d, cpath, tok, 0, 0, 5, &err);
        never_ok &= rc != 0 && d == NULL;
    }
    CHECK(never_ok, "every truncation is refused");
    uint32_t big = 0xFFFFFF00u;
    memcpy(buf + 24 + 4 * 37, &big, 4);
    f = fopen(cpath, "wb");
    fwrite(buf, 1, blen, f);
    fclose(f);
    CHECK(dlq_data_open_tokens(&d, cpath, tok, 0, 0, 5, &err) == DLQ_EFORMAT && strstr(err.msg, "row 2 position 5"),
          "%s", err.msg);
    uint32_t v2 = V + 1;
    memcpy(buf + 20, &v2, 4);
    f = fopen(cpath, "wb");
    fwrite(buf, 1, blen, f);
    fclose(f);
    CHECK(dlq_data_open_tokens(&d, cpath, tok, 0, 0, 5, &err) == DLQ_EFORMAT && strstr(err.msg, "vocab"), "%s",
          err.msg);
    free(buf);
    unlink(path);
    unlink(raw);
    unlink(cpath);
}

static void test_detect_open(const dlq_tokenizer *tok) {
    dlq_err err = {0};
    const char *f;
    CHECK((f = dlq_data_detect(TEXT, &err)) && !strcmp(f, "text"), "detect text");
    CHECK((f = dlq_data_detect(FIX "alpaca_small.json", &err)) && !strcmp(f, "alpaca"), "detect alpaca");
    CHECK(dlq_data_detect(FIX "missing", &err) == NULL && err.code == DLQ_EIO, "detect missing");
    dlq_data_opts o;
    dlq_data_opts_default(&o);
    CHECK(o.T == 512 && o.source_max == 384 && o.target_max == 128, "defaults");
    o.T = 128;
    dlq_dataset *d = NULL;
    CHECK(dlq_data_open(&d, FIX "alpaca_small.json", "auto", tok, &o, &err) == 0 && !strcmp(dlq_data_format(d), "alpaca"),
          "%s", err.msg);
    dlq_data_close(d);
    d = NULL;
    CHECK(dlq_data_open(&d, TEXT, NULL, tok, &o, &err) == 0 && !strcmp(dlq_data_format(d), "text"), "%s", err.msg);
    dlq_data_close(d);
    d = NULL;
    CHECK(dlq_data_open(&d, TEXT, "csv", tok, &o, &err) == DLQ_EINVAL && strstr(err.msg, "csv"), "%s", err.msg);
}

int main(void) {
    double t0 = now_s();
    dlq_err err = {0};
    dlq_tokenizer *tok = NULL;
    if (dlq_tok_load_spm(&tok, TOKMODEL, &err)) {
        CHECK(0, "%s", err.msg);
        return T_DONE();
    }
    char dir[] = "build/tests/tmp_data_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp %s", dir);
        return T_DONE();
    }
    test_text(tok);
    test_alpaca(tok);
    test_tokens(tok, dir);
    test_detect_open(tok);
    rmdir(dir);
    dlq_tok_destroy(tok);
    printf("test_data: %.2f s\n", now_s() - t0);
    return T_DONE();
}
