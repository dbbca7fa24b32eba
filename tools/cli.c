#include "cli.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "train/metrics.h"
#include "train/trainer.h"

int cli_next(cli_args *a) { return ++a->i < a->argc; }

int cli_is(cli_args *a, const char *name, const char *alias) {
    const char *s = a->argv[a->i];
    return !strcmp(s, name) || (alias && !strcmp(s, alias));
}

const char *cli_str(cli_args *a) {
    if (a->i + 1 >= a->argc) {
        fprintf(stderr, "dlqat %s: %s needs a value\n", a->cmd, a->argv[a->i]);
        exit(2);
    }
    return a->argv[++a->i];
}

long long cli_int(cli_args *a, long long lo, long long hi) {
    const char *flag = a->argv[a->i], *s = cli_str(a);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "dlqat %s: %s expects an integer in [%lld, %lld], got '%s'\n", a->cmd, flag, lo, hi, s);
        exit(2);
    }
    return v;
}

double cli_num(cli_args *a, double lo, double hi) {
    const char *flag = a->argv[a->i], *s = cli_str(a);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dlqat %s: %s expects a number in [%g, %g], got '%s'\n", a->cmd, flag, lo, hi, s);
        exit(2);
    }
    return v;
}

void cli_unknown(cli_args *a) {
    fprintf(stderr, "dlqat %s: unknown option '%s' (see dlqat %s --help)\n", a->cmd, a->argv[a->i], a->cmd);
    exit(2);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long cli_peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

void cli_progress(const char *tag, int64_t done, int64_t total, double elapsed, double items_per_unit,
                  const char *rate_unit) {
    /* throttled: every 0.25 s on a terminal (rewriting one line), every 10 s
     * into a log file (one line each), and always at the end */
    static double last = -1e9;
    int tty = isatty(2), end = done >= total;
    if (!end && elapsed - last < (tty ? 0.25 : 10.0) && elapsed >= last) return;
    last = end ? -1e9 : elapsed;
    double rate = elapsed > 0 ? (double)done * items_per_unit / elapsed : 0;
    double eta = done > 0 ? elapsed * (double)(total - done) / (double)done : 0;
    int em = (int)(eta / 60), es = (int)eta % 60;
    fprintf(stderr, "%s[%s] %lld/%lld (%3.0f%%) | %.0f %s | elapsed %.1fs | ETA %d:%02d   ", tty ? "\r" : "", tag, (long long)done,
            (long long)total, total ? 100.0 * (double)done / (double)total : 100.0, rate, rate_unit, elapsed, em, es);
    if (end || !tty) fputc('\n', stderr);
    fflush(stderr);
}

int cli_load_model(dlq_model **m, const char *path, const char *tokenizer, const char *adapter) {
    dlq_err err = {0};
    dlq_load_opts o = {.tokenizer_path = tokenizer, .adapter_path = adapter};
    if (dlq_model_load(m, path, &o, &err)) {
        fprintf(stderr, "dlqat: cannot load model: %s\n", err.msg);
        return 1;
    }
    return 0;
}

char *cli_read_text(const char *path, size_t *len) {
    char *buf;
    dlq_err err = {0};
    if (dlq_read_file(path, &buf, len, &err)) {
        fprintf(stderr, "dlqat: %s\n", err.msg);
        exit(1);
    }
    return buf;
}

int cli_write_json(const char *path, const char *json) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) { fprintf(stderr, "dlqat: cannot write %s: %s\n", tmp, strerror(errno)); return 1; }
    int ok = fputs(json, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "dlqat: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

int cli_remove_tree(const char *dir) { return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

void cli_train_progress(const char *tag, const dlq_step_info *s, long long run_total) {
    static double last = -1e9;
    int tty = isatty(2), end = s->step >= s->total;
    int val = s->val_loss == s->val_loss;
    if (!end && !val && !tty && s->elapsed_s - last < 10.0 && s->elapsed_s >= last) return;
    last = s->elapsed_s;
    int64_t done = s->step - s->first;
    /* the rest of the whole run at this phase's rate (later phases train more parameters: the
       estimate is refined when they start) */
    long long last_step = run_total > s->total ? run_total : s->total;
    double eta = done > 0 ? s->elapsed_s / (double)done * (double)(last_step - s->step) : 0;
    fprintf(stderr, "%s[%s] %s step %lld/%lld | loss %.4f", tty ? "\r" : "", tag, s->phase, (long long)s->step,
            (long long)s->total, s->loss);
    if (s->val_loss == s->val_loss) fprintf(stderr, " | val %.4f", s->val_loss);
    fprintf(stderr, " | lr %.2e | %.0f tok/s | ETA %d:%02d   ", s->lr, s->tokens_per_s, (int)(eta / 60), (int)eta % 60);
    if (end || !tty || s->val_loss == s->val_loss) fputc('\n', stderr);
    fflush(stderr);
}

void cli_log_step(void *user, const dlq_step_info *s) {
    cli_trainlog *L = user;
    dlq_err err;
    if (L->metrics) {
        dlq_metrics_begin(L->metrics);
        dlq_metrics_int(L->metrics, "step", s->step);
        dlq_metrics_str(L->metrics, "phase", s->phase);
        dlq_metrics_num(L->metrics, "loss", s->loss);
        dlq_metrics_num(L->metrics, "lr", s->lr);
        dlq_metrics_num(L->metrics, "grad_norm", s->grad_norm);
        dlq_metrics_num(L->metrics, "tokens_per_s", s->tokens_per_s);
        dlq_metrics_num(L->metrics, "elapsed_s", s->elapsed_s);
        if (s->val_loss == s->val_loss) dlq_metrics_num(L->metrics, "val_loss", s->val_loss);
        if (dlq_metrics_end(L->metrics, &err)) fprintf(stderr, "\nwarning: %s\n", err.msg);
    }
    cli_train_progress(L->tag, s, L->run_total);
}
