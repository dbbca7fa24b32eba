#include "train/trainer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/checkpoint.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dlq_train_cfg_default(dlq_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->phase = "train";
    c->accum = 1;
    c->sched.kind = DLQ_SCHED_CONSTANT;
    c->sched.lr = 2e-4f;
    c->clip = 1.0f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-6f;
}

int dlq_train_validate(dlq_tmodel *tm, dlq_dataset *data, int64_t max_batches, double *loss, dlq_err *err) {
    int B = tm->opt.B, T = tm->opt.T;
    int64_t nb = dlq_data_val_batches(data, B);
    if (max_batches > 0 && nb > max_batches) nb = max_batches;
    *loss = NAN;
    if (nb <= 0) return DLQ_OK;
    dlq_batch b;
    int rc = dlq_batch_alloc(&b, B, T, err);
    if (rc) return rc;
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        double ls;
        int64_t nv;
        if (!(rc = dlq_data_val_batch(data, i, &b, err)) && !(rc = dlq_tmodel_eval(tm, b.tokens, b.targets, &ls, &nv, err))) {
            sum += ls;
            n += nv;
        }
    }
    dlq_batch_free(&b);
    if (!rc && n > 0) *loss = sum / (double)n;
    return rc;
}

int dlq_train_save(const dlq_tmodel *tm, const dlq_dataset *data, const dlq_train_cfg *cfg, const dlq_train_state *st,
                   dlq_err *err) {
    if (!cfg->ckpt_dir) return DLQ_OK;
    const dlq_params *P = &tm->params;
    dlq_ckpt_writer *w;
    int rc = dlq_ckpt_writer_new(&w, err);
    if (rc) return rc;
    char name[256];
    for (int i = 0; i < P->n && !rc; i++) {
        const dlq_ptensor *t = &P->t[i];
        snprintf(name, sizeof name, "w/%s", t->name);
        rc = dlq_ckpt_add(w, name, P->w + t->off, t->n, err);
        if (!rc && P->m) {
            snprintf(name, sizeof name, "m/%s", t->name);
            rc = dlq_ckpt_add(w, name, P->m + t->off, t->n, err);
            snprintf(name, sizeof name, "v/%s", t->name);
            if (!rc) rc = dlq_ckpt_add(w, name, P->v + t->off, t->n, err);
        }
    }
    dlq_data_pos pos;
    dlq_data_get_pos(data, &pos);
    json_t *rs = json_array();
    for (int i = 0; i < 4; i++) json_array_append_new(rs, json_sprintf("%llu", (unsigned long long)pos.rng_state[i]));
    json_t *meta = json_pack("{s:s, s:I, s:I, s:{s:I, s:I, s:o, s:I, s:s}, s:f}", "phase", cfg->phase, "step",
                             (json_int_t)st->step, "adam_step", (json_int_t)st->opt.step, "data", "epoch",
                             (json_int_t)pos.epoch, "index", (json_int_t)pos.index, "rng_state", rs, "n_train",
                             (json_int_t)pos.n_train, "fingerprint", "", "last_loss", st->last_loss);
    json_object_set_new(meta, "last_val_loss", isnan(st->last_val_loss) ? json_null() : json_real(st->last_val_loss));
    json_object_set_new(json_object_get(meta, "data"), "fingerprint", json_sprintf("%llu", (unsigned long long)pos.fingerprint));
    if (cfg->run_meta) {
        json_t *run = json_loads(cfg->run_meta, 0, NULL);
        if (run) json_object_set_new(meta, "run", run);
    }
    char *s = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (!rc) rc = dlq_ckpt_set_meta(w, s, err);
    free(s);
    if (!rc) rc = dlq_ckpt_save_rotating(w, cfg->ckpt_dir, err);
    dlq_ckpt_writer_free(w);
    return rc;
}

static uint64_t u64_of(json_t *v) {
    const char *s = json_string_value(v);
    return s ? strtoull(s, NULL, 10) : (uint64_t)json_integer_value(v);
}

/* a key of want that the checkpoint's run object has with another value */
static int run_meta_check(json_t *meta, const char *want_text, const char *path, dlq_err *err) {
    json_t *have = json_object_get(meta, "run"), *want = want_text ? json_loads(want_text, 0, NULL) : NULL;
    const char *key;
    json_t *v;
    int rc = 0;
    if (json_is_object(have) && json_is_object(want))
        json_object_foreach(want, key, v) {
            json_t *h = json_object_get(have, key);
            if (h && !json_equal(h, v)) {
                char *hs = json_dumps(h, JSON_ENCODE_ANY), *ws = json_dumps(v, JSON_ENCODE_ANY);
                rc = dlq_errf(err, DLQ_EINVAL, "%s was written by a run with %s %s; this command has %s %s", path, key,
                              hs ? hs : "?", key, ws ? ws : "?");
                free(hs);
                free(ws);
                break;
            }
        }
    json_decref(want);
    return rc;
}

int dlq_train_resume(dlq_tmodel *tm, dlq_dataset *data, const char *ckpt_dir, const char *run_meta, dlq_train_state *st,
                     char *phase, size_t phase_cap, dlq_err *err) {
    dlq_ckpt *ck;
    dlq_ckpt_load_info info;
    int rc = dlq_ckpt_load_latest(ckpt_dir, &ck, &info, err);
    if (rc) return rc;
    if (info.fell_back)
        fprintf(stderr, "warning: %s/%s is damaged (%s); resuming from %s\n", ckpt_dir, DLQ_CKPT_LATEST,
                info.latest_error, info.path);
    json_error_t je;
    json_t *meta = json_loads(dlq_ckpt_meta(ck), 0, &je);
    if (!meta) { dlq_ckpt_free(ck); return dlq_errf(err, DLQ_EFORMAT, "%s: metadata is not JSON", info.path); }
    if ((rc = run_meta_check(meta, run_meta, info.path, err))) goto done;
    dlq_params *P = &tm->params;
    if ((rc = dlq_params_alloc_optim(P, err))) goto done;
    char name[256];
    for (int i = 0; i < P->n && !rc; i++) {
        const dlq_ptensor *t = &P->t[i];
        snprintf(name, sizeof name, "w/%s", t->name);
        if ((rc = dlq_ckpt_copy(ck, name, P->w + t->off, t->n, err))) break;
        snprintf(name, sizeof name, "m/%s", t->name);
        size_t n;
        if (dlq_ckpt_find(ck, name, &n)) {
            if ((rc = dlq_ckpt_copy(ck, name, P->m + t->off, t->n, err))) break;
            snprintf(name, sizeof name, "v/%s", t->name);
            if ((rc = dlq_ckpt_copy(ck, name, P->v + t->off, t->n, err))) break;
        }
    }
    if (rc) { dlq_err_prefix(err, "%s (a checkpoint of a different run?)", info.path); goto done; }
    st->step = json_integer_value(json_object_get(meta, "step"));
    st->opt.step = json_integer_value(json_object_get(meta, "adam_step"));
    st->last_loss = json_number_value(json_object_get(meta, "last_loss"));
    json_t *lv = json_object_get(meta, "last_val_loss");
    st->last_val_loss = json_is_number(lv) ? json_number_value(lv) : NAN;
    if (phase) snprintf(phase, phase_cap, "%s", json_string_value(json_object_get(meta, "phase")) ? json_string_value(json_object_get(meta, "phase")) : "");
    json_t *d = json_object_get(meta, "data");
    dlq_data_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.epoch = (uint64_t)json_integer_value(json_object_get(d, "epoch"));
    pos.index = (uint64_t)json_integer_value(json_object_get(d, "index"));
    for (int i = 0; i < 4; i++) pos.rng_state[i] = u64_of(json_array_get(json_object_get(d, "rng_state"), (size_t)i));
    pos.n_train = (uint64_t)json_integer_value(json_object_get(d, "n_train"));
    pos.fingerprint = u64_of(json_object_get(d, "fingerprint"));
    rc = dlq_data_set_pos(data, &pos, err);
    if (rc) dlq_err_prefix(err, "resuming from %s", info.path);
done:
    json_decref(meta);
    dlq_ckpt_free(ck);
    return rc;
}

int dlq_train_run(dlq_tmodel *tm, dlq_dataset *data, const dlq_train_cfg *cfg, dlq_train_state *st, dlq_err *err) {
    int B = tm->opt.B, T = tm->opt.T;
    if (dlq_data_T(data) != T)
        return dlq_errf(err, DLQ_EINVAL, "dataset rows have %d tokens but the model was planned for %d", dlq_data_T(data), T);
    int rc = dlq_params_alloc_optim(&tm->params, err);
    if (rc) return rc;
    st->opt.beta1 = cfg->beta1;
    st->opt.beta2 = cfg->beta2;
    st->opt.eps = cfg->eps;
    dlq_batch b;
    if ((rc = dlq_batch_alloc(&b, B, T, err))) return rc;
    int64_t begin = st->step > cfg->step_begin ? st->step : cfg->step_begin;
    double t0 = now_s();
    int64_t tok0 = st->tokens;
    st->interrupted = 0;
    for (int64_t step = begin; step < cfg->step_end; step++) {
        if (cfg->stop && *cfg->stop) {
            st->interrupted = 1;
            break;
        }
        dlq_params_zero_grad(&tm->params);
        double lsum = 0;
        int64_t nsum = 0;
        for (int a = 0; a < cfg->accum && !rc; a++) {
            double ls;
            int64_t nv;
            if (!(rc = dlq_data_next(data, &b, err)) &&
                !(rc = dlq_tmodel_step(tm, b.tokens, b.targets, 1.0f / (float)cfg->accum, &ls, &nv, err))) {
                lsum += ls;
                nsum += nv;
            }
        }
        if (rc) break;
        double loss = nsum ? lsum / (double)nsum : 0;
        if (!isfinite(loss)) {
            rc = dlq_errf(err, DLQ_EINVAL, "loss is %g at step %lld (phase %s): stopping without saving this state; "
                          "lower the learning rate or resume from the last checkpoint", loss, (long long)step + 1, cfg->phase);
            break;
        }
        double gn = dlq_clip_grad_norm(&tm->params, cfg->clip);
        float lr = dlq_schedule_lr(&cfg->sched, step - cfg->step_begin);
        dlq_adamw_step(&st->opt, &tm->params, lr);
        dlq_tmodel_after_step(tm);
        st->step = step + 1;
        st->tokens += nsum;
        st->last_loss = loss;
        dlq_step_info si = {.step = st->step, .total = cfg->step_end, .first = begin, .phase = cfg->phase, .loss = loss,
                            .lr = lr, .grad_norm = gn, .val_loss = NAN};
        si.elapsed_s = now_s() - t0;
        si.tokens_per_s = si.elapsed_s > 0 ? (double)(st->tokens - tok0) / si.elapsed_s : 0;
        int last = st->step == cfg->step_end;
        if ((cfg->eval_every > 0 && st->step % cfg->eval_every == 0) || last) {
            if ((rc = dlq_train_validate(tm, data, cfg->eval_batches, &si.val_loss, err))) break;
            st->last_val_loss = si.val_loss;
        }
        if (cfg->on_step) cfg->on_step(cfg->user, &si);
        if (cfg->ckpt_dir && ((cfg->ckpt_every > 0 && st->step % cfg->ckpt_every == 0) || last))
            if ((rc = dlq_train_save(tm, data, cfg, st, err))) break;
    }
    if (!rc && st->interrupted) rc = dlq_train_save(tm, data, cfg, st, err);
    dlq_batch_free(&b);
    return rc;
}
