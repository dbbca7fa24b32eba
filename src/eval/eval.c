/* dlq_eval_tasks: runs a list of tasks and collects lm-eval-shaped results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eval/eval.h"
#include "eval/ppl.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dlq_eval_opts dlq_eval_defaults(void) {
    return (dlq_eval_opts){.tasks = NULL, .data_dir = DLQ_EVAL_DATA_DEFAULT, .mmlu_split = "test", .shots = 5,
                           .batch = 8};
}

void dlq_eval_result_free(dlq_eval_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        dlq_task_result *t = &r->res[i];
        if (t->items)
            for (int64_t j = 0; j < t->n; j++) free(t->items[j].ll);
        free(t->items);
    }
    free(r->res);
    memset(r, 0, sizeof *r);
}

static dlq_task_result *push(dlq_eval_result *r, const char *name, dlq_res_kind kind, dlq_err *err) {
    dlq_task_result *p = realloc(r->res, (size_t)(r->n + 1) * sizeof *p);
    if (!p) { dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
    r->res = p;
    dlq_task_result *t = &p[r->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    return t;
}

/* accuracy of the items in [lo, hi) of s selected by pick (NULL = all) */
typedef struct acc_sum { int64_t n, ok, ok_norm; double shots; } acc_sum;

static void finish(dlq_task_result *t, const acc_sum *a, int has_norm) {
    t->n = a->n;
    t->has_norm = has_norm;
    t->acc = a->n ? (double)a->ok / (double)a->n : 0;
    t->acc_stderr = dlq_acc_stderr(t->acc, a->n);
    t->acc_norm = a->n ? (double)a->ok_norm / (double)a->n : 0;
    t->acc_norm_stderr = dlq_acc_stderr(t->acc_norm, a->n);
    t->mean_shots = a->n ? a->shots / (double)a->n : 0;
}

static int keep_items(dlq_task_result *t, const dlq_mc_set *s, const double *ll, const int64_t *off, int subject,
                      dlq_err *err) {
    int64_t n = 0;
    for (int i = 0; i < s->n; i++) n += subject < 0 || s->items[i].subject == subject;
    t->items = calloc((size_t)(n ? n : 1), sizeof *t->items);
    if (!t->items) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    int64_t k = 0;
    for (int i = 0; i < s->n; i++) {
        const dlq_mc_item *it = &s->items[i];
        if (subject >= 0 && it->subject != subject) continue;
        dlq_item_result *x = &t->items[k++];
        x->n = it->n, x->gold = it->gold;
        x->pred = dlq_mc_argmax(it, ll + off[i], 0);
        x->pred_norm = dlq_mc_argmax(it, ll + off[i], 1);
        if (!(x->ll = malloc((size_t)it->n * sizeof(double)))) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
        memcpy(x->ll, ll + off[i], (size_t)it->n * sizeof(double));
    }
    return DLQ_OK;
}

static int run_mc(const dlq_model *m, const dlq_tokenizer *tok, const dlq_eval_opts *o, dlq_mc_set *s,
                  dlq_eval_result *res, dlq_err *err) {
    int64_t nreq = 0;
    int64_t *off = malloc((size_t)(s->n + 1) * sizeof *off);
    if (!off) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int i = 0; i < s->n; i++) off[i] = nreq, nreq += s->items[i].n;
    double *ll = malloc((size_t)(nreq ? nreq : 1) * sizeof *ll);
    if (!ll) { free(off); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    double t0 = now_s();
    int rc = dlq_mc_score(m, tok, s, o->batch, ll, o->progress, o->user, err);
    double sec = now_s() - t0;
    int is_mmlu = !strcmp(s->task, "mmlu");
    /* per-group sums: [0] the task, then categories / subjects for MMLU */
    int nsub = dlq_mmlu_n_subjects();
    acc_sum all = {0}, *sub = calloc((size_t)nsub, sizeof *sub);
    if (!rc && !sub) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int i = 0; i < s->n && !rc; i++) {
        const dlq_mc_item *it = &s->items[i];
        int a = dlq_mc_argmax(it, ll + off[i], 0) == it->gold, b = dlq_mc_argmax(it, ll + off[i], 1) == it->gold;
        all.n++, all.ok += a, all.ok_norm += b, all.shots += it->shots;
        if (it->subject >= 0) {
            acc_sum *x = &sub[it->subject];
            x->n++, x->ok += a, x->ok_norm += b, x->shots += it->shots;
        }
    }
    dlq_task_result *t = rc ? NULL : push(res, s->task, DLQ_RES_TASK, err);
    if (!rc && !t) rc = DLQ_ENOMEM;
    if (t) {
        finish(t, &all, s->has_norm);
        t->seconds = sec;
        t->items_per_s = sec > 0 ? (double)s->n / sec : 0;
        t->shots = is_mmlu ? o->shots : 0;
        if (o->keep_items && !is_mmlu) rc = keep_items(t, s, ll, off, -1, err);
    }
    if (!rc && is_mmlu) {
        static const char *const CAT[4] = {"humanities", "other", "social_sciences", "stem"};
        for (int c = 0; c < 4 && !rc; c++) {
            acc_sum a = {0};
            for (int j = 0; j < nsub; j++)
                if (!strcmp(dlq_mmlu_category(j), CAT[c]))
                    a.n += sub[j].n, a.ok += sub[j].ok, a.ok_norm += sub[j].ok_norm, a.shots += sub[j].shots;
            if (!a.n) continue;
            char name[96];
            snprintf(name, sizeof name, "mmlu_%s", CAT[c]);
            dlq_task_result *g = push(res, name, DLQ_RES_GROUP, err);
            if (!g) { rc = DLQ_ENOMEM; break; }
            finish(g, &a, 0);
            g->shots = o->shots;
        }
        for (int j = 0; j < nsub && !rc; j++) {
            if (!sub[j].n) continue;
            char name[96];
            snprintf(name, sizeof name, "mmlu_%s", dlq_mmlu_subject(j));
            dlq_task_result *g = push(res, name, DLQ_RES_SUBTASK, err);
            if (!g) { rc = DLQ_ENOMEM; break; }
            finish(g, &sub[j], 0);
            g->shots = o->shots;
            if (o->keep_items) rc = keep_items(g, s, ll, off, j, err);
        }
    }
    free(sub);
    free(ll);
    free(off);
    return rc;
}

static int read_all(const char *path, char **buf, size_t *n, dlq_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return dlq_errf(err, DLQ_EIO, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (!*buf || fread(*buf, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(*buf);
        return dlq_errf(err, DLQ_EIO, "cannot read %s", path);
    }
    fclose(f);
    (*buf)[sz] = 0;
    *n = (size_t)sz;
    return DLQ_OK;
}

static int ppl_of(const dlq_model *m, const dlq_tokenizer *tok, const char *text, size_t n, int ctx, int batch,
                  int limit, dlq_ppl_result *r, dlq_err *err) {
    int32_t *ids;
    size_t nt;
    int rc = dlq_tok_encode(tok, text, n, -1, &ids, &nt, err);
    if (rc) return rc;
    rc = dlq_ppl_eval(m, ids, (int64_t)nt, ctx, batch, limit, NULL, NULL, r, err);
    free(ids);
    return rc;
}

static int run_wikitext(const dlq_model *m, const dlq_tokenizer *tok, const dlq_eval_opts *o, dlq_eval_result *res,
                        dlq_err *err) {
    char path[2048];
    if (o->wikitext) snprintf(path, sizeof path, "%s", o->wikitext);
    else {
        const char *dir = o->data_dir ? o->data_dir : DLQ_EVAL_DATA_DEFAULT;
        snprintf(path, sizeof path, "%s/../text/wikitext-2-raw/wiki.test.raw", dir);
        if (access(path, R_OK)) snprintf(path, sizeof path, "%s/../text/wikitext-2-raw/wiki.test.raw.part1", dir);
        if (access(path, R_OK)) snprintf(path, sizeof path, "%s/../text/wikitext-2-raw/wiki.test.sample.raw", dir);
        if (access(path, R_OK))
            return dlq_errf(err, DLQ_EIO, "wikitext2: no wiki.test.raw (.part1, .sample.raw) under %s/../text/wikitext-2-raw "
                                          "(use --wikitext FILE)", dir);
    }
    char *raw = NULL;
    size_t n = 0, nj = 0;
    int rc = read_all(path, &raw, &n, err);
    if (rc) return rc;
    char *joined = dlq_wikitext_gptq_join(raw, n, &nj);
    if (!joined) { free(raw); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    int ctx = o->ctx > 0 ? o->ctx : m->cfg.max_seq;
    dlq_ppl_result a, b;
    double t0 = now_s();
    if (!(rc = ppl_of(m, tok, joined, nj, ctx, o->batch, o->limit, &a, err)) &&
        !(rc = ppl_of(m, tok, raw, n, ctx, o->batch, o->limit, &b, err))) {
        dlq_task_result *t = push(res, "wikitext2", DLQ_RES_PPL, err);
        if (!t) rc = DLQ_ENOMEM;
        else {
            t->ppl = a.ppl, t->nll = a.nll, t->tokens = a.tokens, t->windows = a.windows;
            t->ppl_plain = b.ppl, t->nll_plain = b.nll, t->tokens_plain = b.tokens, t->windows_plain = b.windows;
            t->ctx = ctx;
            t->n = a.windows;
            t->seconds = now_s() - t0;
            t->items_per_s = t->seconds > 0 ? (double)(a.tokens + b.tokens) / t->seconds : 0;
        }
    }
    if (rc) dlq_err_prefix(err, "wikitext2 (%s)", path);
    free(raw);
    free(joined);
    return rc;
}

int dlq_eval_tasks(const dlq_model *m, const dlq_tokenizer *tok, const dlq_eval_opts *o, dlq_eval_result *res,
                   dlq_err *err) {
    memset(res, 0, sizeof *res);
    if (!tok) return dlq_errf(err, DLQ_EINVAL, "eval: the model has no tokenizer");
    const char *dir = o->data_dir ? o->data_dir : DLQ_EVAL_DATA_DEFAULT;
    char list[4096];
    if (o->tasks) snprintf(list, sizeof list, "%s", o->tasks);
    else {
        list[0] = 0;
        for (const char *const *t = dlq_mc_task_names(); *t; t++)
            if (strcmp(*t, "hellaswag")) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", *t);
    }
    /* check every name before any work */
    char tmp[4096], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", list);
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!dlq_mc_task_canonical(t) && strcmp(t, "mmlu") && strcmp(t, "wikitext2") && strcmp(t, "wikitext"))
            return dlq_errf(err, DLQ_EINVAL, "unknown task '%s' (known: piqa, arc_easy, arc_challenge, boolq, openbookqa, "
                                             "winogrande, social_iqa, hellaswag, mmlu, wikitext2)", t);
    double t0 = now_s();
    int rc = DLQ_OK;
    save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        dlq_mc_set s;
        memset(&s, 0, sizeof s);
        if (!strcmp(t, "wikitext2") || !strcmp(t, "wikitext")) {
            rc = run_wikitext(m, tok, o, res, err);
            continue;
        }
        if (!strcmp(t, "mmlu")) {
            char mdir[2048];
            snprintf(mdir, sizeof mdir, "%s/mmlu", dir);
            rc = dlq_mmlu_load(mdir, o->mmlu_split ? o->mmlu_split : "test", o->mmlu_subjects, o->shots, o->limit, tok,
                               m->cfg.max_seq, &s, err);
        } else {
            char path[2048];
            if (!(rc = dlq_mc_find_file(t, dir, path, sizeof path, err))) rc = dlq_mc_load_file(t, path, o->limit, &s, err);
        }
        if (!rc) rc = run_mc(m, tok, o, &s, res, err);
        dlq_mc_set_free(&s);
    }
    res->seconds = now_s() - t0;
    if (rc) dlq_eval_result_free(res);
    return rc;
}
