/* dlqat compare: every method on the same model, data, step budget and
 * evaluation (docs/baselines.md). Each run is a subprocess of this binary
 * (`dlqat quantize|finetune|ppl|plot ...`), so its wall time and peak RSS come
 * from wait4()'s rusage; results already in DIR are reused (delete a method's
 * DIR/<method>.json to run it again). Writes DIR/compare.json, DIR/compare.md,
 * DIR/ppl.svg (perplexity bars) and DIR/loss.svg (training loss curves). */
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "eval/eval.h"
#include "core/mapfile.h"
#include "train/data.h"

static void usage(void) {
    printf("usage: dlqat compare --model M --bits N --group G --data F (--eval-text F | --eval-tokens F) --out DIR [options]\n"
           "  --methods LIST          comma-separated: rtn, gptq, qalora, qat, dlqat (default: these five), nf4-lora\n"
           "                          (4-bit NF4, block 64, whatever --bits says); the full-precision\n"
           "                          model and the FP + LoRA control (same data and budget, no quantization) are always run\n"
           "  --phase1-steps N --steps N   the step budget: every trained method and the control get N1 + N2 steps\n"
           "                          (DL-QAT and full QAT: N1 on s,b then N2; QA-LoRA and the control: N1 + N2 on LoRA)\n"
           "  --batch B --seq T --lr LR --lr-sb LR --rank R --alpha A --seed S --calib N --act-order --recompute\n"
           "  --lr-qat LR             full QAT's weight learning rate (default 5e-5: the LoRA rate moves every weight too far)\n"
           "  --ctx N --eval-windows N   perplexity window (default: the model's context) and window cap\n"
           "  --tasks LIST            task accuracy of every output by `dlqat eval` (the evaluation harness; docs/eval.md)\n"
           "  --task-data DIR --task-limit N   its data folder (default data/tasks, the repo's sample) and items per task\n"
           "  --dry-run               print the commands only\n"
           "Writes DIR/compare.md, DIR/compare.json, DIR/ppl.svg, DIR/loss.svg and one folder / log per run.\n");
}

typedef struct run_res {
    int ok;
    double wall_s;
    long rss_kb;
} run_res;

/* runs argv (this binary) with stdout+stderr appended to log; waits with wait4 */
static run_res spawn(char **argv, const char *log, int dry) {
    run_res r = {0};
    fprintf(stderr, "[compare] $");
    for (char **p = argv; *p; p++) fprintf(stderr, " %s", *p);
    fprintf(stderr, "\n");
    if (dry) { r.ok = 1; return r; }
    double t0 = cli_now();
    pid_t pid = fork();
    if (pid < 0) { fprintf(stderr, "dlqat compare: fork: %s\n", strerror(errno)); return r; }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        execv("/proc/self/exe", argv);
        fprintf(stderr, "exec /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {}
    r.wall_s = cli_now() - t0;
    r.rss_kb = ru.ru_maxrss;
    r.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!r.ok) fprintf(stderr, "[compare] failed (status %d): see %s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, log);
    return r;
}

typedef struct argvb { char *v[96]; int n; } argvb;
static void A(argvb *a, const char *s) { if (a->n < 95) a->v[a->n++] = strdup(s); a->v[a->n] = NULL; }
static void AF(argvb *a, const char *flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void AF(argvb *a, const char *flag, const char *fmt, ...) {
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    A(a, flag);
    A(a, buf);
}
static void afree(argvb *a) { for (int i = 0; i < a->n; i++) free(a->v[i]); a->n = 0; }

static json_t *load_json(const char *path) { return access(path, R_OK) ? NULL : json_load_file(path, 0, NULL); }

typedef struct method {
    char name[16];
    const char *label;
    char model_path[1100];   /* what is evaluated */
    char run_json[1100];     /* compare's record of the run (wall, rss) */
    char ppl_json[1100];
    char metrics[1100];      /* JSONL training log ("" if none) */
    int trained;
    double ppl, wall_s;
    long rss_kb;
    long long trainable;
    int ok;
    json_t *tasks;           /* results of `dlqat eval` (or NULL) */
} method;

static const char *label_of(const char *m) {
    return !strcmp(m, "rtn") ? "RTN" : !strcmp(m, "gptq") ? "GPTQ" : !strcmp(m, "qalora") ? "QA-LoRA" : !strcmp(m, "qat") ? "full QAT"
         : !strcmp(m, "dlqat") ? "DL-QAT" : !strcmp(m, "nf4-lora") ? "NF4 + LoRA (QLoRA)" : !strcmp(m, "fp") ? "FP" : !strcmp(m, "control") ? "FP + LoRA (control)" : m;
}

static void write_bars(const char *path, method *ms, int n, const char *title) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    double mx = 0, mn = 1e300;
    for (int i = 0; i < n; i++)
        if (ms[i].ok && isfinite(ms[i].ppl)) { mx = fmax(mx, ms[i].ppl); mn = fmin(mn, ms[i].ppl); }
    double lo = mn * 0.98, hi = mx * 1.01; /* bars start near the smallest value: the differences are what matter */
    if (!(hi > lo)) { lo = 0; hi = 1; }
    int W = 720, rowh = 28, top = 40, left = 170, H = top + n * rowh + 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"13\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"22\" font-size=\"15\">%s</text>\n", left, title);
    for (int i = 0; i < n; i++) {
        int y = top + i * rowh;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8, y + 18, ms[i].label);
        if (!ms[i].ok || !isfinite(ms[i].ppl)) { fprintf(f, "<text x=\"%d\" y=\"%d\">(failed)</text>\n", left, y + 18); continue; }
        double w = (ms[i].ppl - lo) / (hi - lo) * (W - left - 90);
        const char *col = !strcmp(ms[i].name, "dlqat") ? "#d62728" : !strcmp(ms[i].name, "fp") || !strcmp(ms[i].name, "control") ? "#7f7f7f" : "#1f77b4";
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", left, y + 4, w > 1 ? w : 1, rowh - 8, col);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\">%.3f</text>\n", left + (w > 1 ? w : 1) + 6, y + 18, ms[i].ppl);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">perplexity (axis starts at %.2f)</text>\n</svg>\n", left, H - 12, lo);
    fclose(f);
}

/* Text training data is tokenized once, here, into DIR/train.tok (rows of T
 * consecutive tokens, the first row starting with BOS as the text loader
 * does): every run then reads the same token rows, and the runs' peak RSS
 * measures training rather than the tokenizer's transient memory on a large
 * text (which is the same for every method and larger than the training
 * state of a small model). */
static int pretokenize(const char *model, const char *data, int T, const char *path) {
    if (!access(path, R_OK)) return 0;
    dlq_model *m;
    if (cli_load_model(&m, model, NULL, NULL)) return 1;
    if (!m->tok) { fprintf(stderr, "dlqat compare: %s has no tokenizer\n", model); dlq_model_destroy(m); return 1; }
    size_t len, n = 0;
    char *buf = cli_read_text(data, &len);
    int32_t *ids = NULL;
    dlq_err err = {0};
    int rc = dlq_tok_encode(m->tok, buf, len, 1, &ids, &n, &err);
    free(buf);
    uint64_t rows = n / (size_t)T;
    if (!rc && rows == 0) rc = dlq_errf(&err, DLQ_EINVAL, "%s: %zu tokens, less than one row of %d", data, n, T);
    if (!rc) rc = dlq_tokens_write(path, ids, rows, (uint32_t)T, (uint32_t)m->cfg.vocab_size, &err);
    if (rc) fprintf(stderr, "dlqat compare: %s\n", err.msg);
    else fprintf(stderr, "[compare] tokenized %s: %zu tokens -> %s (%llu rows of %d)\n", data, n, path, (unsigned long long)rows, T);
    free(ids);
    dlq_model_destroy(m);
    return rc ? 1 : 0;
}

int cmd_compare(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "compare", 0};
    const char *model = NULL, *data = NULL, *eval_text = NULL, *eval_tokens = NULL, *out = NULL, *tasks = NULL;
    const char *task_data = DLQ_EVAL_DATA_DEFAULT;
    long long task_limit = 0;
    const char *methods = "rtn,gptq,qalora,qat,dlqat", *group = "128";
    long long p1 = 100, p2 = 200, calib = 128, eval_windows = 0, seed = 1;
    int seq_set = 0;
    int bits = 3, B = 8, T = 128, rank = 16, ctx = 0, act_order = 0, recompute = 0, dry = 0;
    double lr = 5e-4, lr_sb = 1e-4, lr_qat = 5e-5, alpha = 16;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) { usage(); return 0; }
        else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--bits", NULL)) bits = (int)cli_int(&a, 2, 8);
        else if (cli_is(&a, "--group", NULL)) group = cli_str(&a);
        else if (cli_is(&a, "--methods", NULL)) methods = cli_str(&a);
        else if (cli_is(&a, "--data", NULL)) data = cli_str(&a);
        else if (cli_is(&a, "--eval-text", NULL)) eval_text = cli_str(&a);
        else if (cli_is(&a, "--eval-tokens", NULL)) eval_tokens = cli_str(&a);
        else if (cli_is(&a, "--tasks", NULL)) tasks = cli_str(&a);
        else if (cli_is(&a, "--task-data", NULL)) task_data = cli_str(&a);
        else if (cli_is(&a, "--task-limit", NULL)) task_limit = cli_int(&a, 1, 1LL << 30);
        else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--phase1-steps", NULL)) p1 = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--steps", NULL)) p2 = cli_int(&a, 0, 1LL << 40);
        else if (cli_is(&a, "--batch", NULL)) B = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--seq", NULL)) { T = (int)cli_int(&a, 2, 1 << 20); seq_set = 1; }
        else if (cli_is(&a, "--lr", NULL)) lr = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--lr-sb", NULL)) lr_sb = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--lr-qat", NULL)) lr_qat = cli_num(&a, 0, 10);
        else if (cli_is(&a, "--rank", "-r")) rank = (int)cli_int(&a, 1, 4096);
        else if (cli_is(&a, "--alpha", NULL)) alpha = cli_num(&a, 1e-6, 1e6);
        else if (cli_is(&a, "--seed", NULL)) seed = cli_int(&a, 0, 1LL << 62);
        else if (cli_is(&a, "--calib", NULL)) calib = cli_int(&a, 1, 1 << 24);
        else if (cli_is(&a, "--act-order", NULL)) act_order = 1;
        else if (cli_is(&a, "--recompute", NULL)) recompute = 1;
        else if (cli_is(&a, "--ctx", NULL)) ctx = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--eval-windows", NULL)) eval_windows = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--dry-run", NULL)) dry = 1;
        else cli_unknown(&a);
    }
    if (!model || !data || !out || (!eval_text == !eval_tokens)) {
        fprintf(stderr, "dlqat compare: --model, --data, --out and one of --eval-text / --eval-tokens are required\n");
        return 2;
    }
    if (!seq_set) { /* a token file carries its row length: use it (the runs would refuse any other) */
        dlq_err derr = {0};
        const char *det = dlq_data_detect(data, &derr);
        if (!det) { fprintf(stderr, "dlqat compare: %s\n", derr.msg); return 1; }
        if (!strcmp(det, "tokens")) {
            int32_t *ids;
            uint64_t rows;
            uint32_t fT;
            if (dlq_tokens_read(data, 0, 0, &ids, &rows, &fT, NULL, &derr)) { fprintf(stderr, "dlqat compare: %s\n", derr.msg); return 1; }
            free(ids);
            T = (int)fT;
        }
    }
    if (eval_tokens && ctx) { fprintf(stderr, "dlqat compare: --ctx does not apply to --eval-tokens (the file's rows are the windows)\n"); return 2; }
    if (tasks && !dry) { /* the harness is a subcommand of this binary: check that this build has it */
        char *hv[] = {"dlqat", "eval", "--help", NULL};
        run_res hr = spawn(hv, "/dev/null", 0);
        if (!hr.ok) {
            fprintf(stderr, "dlqat compare: --tasks needs the evaluation harness (`dlqat eval`), which this build does not have\n");
            return 2;
        }
    }
    method ms[16];
    int nm = 0;
    memset(ms, 0, sizeof ms);
    snprintf(ms[nm++].name, 16, "fp");
    snprintf(ms[nm++].name, 16, "control");
    {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", methods);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            if (strcmp(t, "rtn") && strcmp(t, "gptq") && strcmp(t, "qalora") && strcmp(t, "qat") && strcmp(t, "dlqat") &&
                strcmp(t, "nf4-lora")) {
                fprintf(stderr, "dlqat compare: unknown method '%s' in --methods (rtn, gptq, qalora, qat, dlqat, nf4-lora)\n", t);
                return 2;
            }
            int dup = 0;
            for (int i = 0; i < nm; i++) dup |= !strcmp(ms[i].name, t);
            if (!dup && nm < 16) snprintf(ms[nm++].name, 16, "%s", t);
        }
    }
    if (mkdir(out, 0755) && !dlq_path_is_dir(out)) { fprintf(stderr, "dlqat compare: cannot create %s: %s\n", out, strerror(errno)); return 1; }
    char tokpath[1200];
    const char *data_src = data;
    {
        dlq_err err = {0};
        const char *fmt = dlq_data_detect(data, &err);
        if (!fmt) { fprintf(stderr, "dlqat compare: %s\n", err.msg); return 1; }
        if (!strcmp(fmt, "text") && !dry) {
            snprintf(tokpath, sizeof tokpath, "%s/train.tok", out);
            if (pretokenize(model, data, T, tokpath)) return 1;
            data = tokpath;
        }
    }
    char gtag[32];
    if (!strcmp(group, "channel")) snprintf(gtag, sizeof gtag, "per-channel");
    else snprintf(gtag, sizeof gtag, "g%s", group);
    long long steps = p1 + p2;
    char buf[64];
    for (int i = 0; i < nm; i++) {
        method *m = &ms[i];
        m->label = label_of(m->name);
        m->ppl = NAN;
        snprintf(m->run_json, sizeof m->run_json, "%s/%s.run.json", out, m->name);
        snprintf(m->ppl_json, sizeof m->ppl_json, "%s/%s.ppl.json", out, m->name);
        char log[1200];
        snprintf(log, sizeof log, "%s/%s.log", out, m->name);
        argvb av = {0};
        A(&av, "dlqat");
        int is_fp = !strcmp(m->name, "fp"), is_ctl = !strcmp(m->name, "control");
        m->trained = !is_fp && strcmp(m->name, "rtn") && strcmp(m->name, "gptq");
        if (is_fp) snprintf(m->model_path, sizeof m->model_path, "%s", model);
        else if (is_ctl) {
            snprintf(m->model_path, sizeof m->model_path, "%s/control/merged", out);
            snprintf(m->metrics, sizeof m->metrics, "%s/control/metrics.jsonl", out);
            A(&av, "finetune");
            AF(&av, "--model", "%s", model);
            AF(&av, "--data", "%s", data);
            AF(&av, "--mode", "lora");
            AF(&av, "--rank", "%d", rank);
            AF(&av, "--alpha", "%g", alpha);
            AF(&av, "--steps", "%lld", steps);
            AF(&av, "--batch", "%d", B);
            AF(&av, "--seq", "%d", T);
            AF(&av, "--lr", "%g", lr);
            AF(&av, "--seed", "%lld", seed);
            AF(&av, "--val-fraction", "0");
            if (recompute) A(&av, "--recompute");
            A(&av, "--merge");
            AF(&av, "--out", "%s/control", out);
        } else {
            snprintf(m->model_path, sizeof m->model_path, "%s/%s.dlq", out, m->name);
            if (m->trained) snprintf(m->metrics, sizeof m->metrics, "%s/%s.work/metrics.jsonl", out, m->name);
            A(&av, "quantize");
            AF(&av, "--model", "%s", model);
            AF(&av, "--method", "%s", m->name);
            AF(&av, "--bits", "%d", bits);
            AF(&av, "--group", "%s", group);
            AF(&av, "--data", "%s", data);
            AF(&av, "--batch", "%d", B);
            AF(&av, "--seq", "%d", T);
            AF(&av, "--seed", "%lld", seed);
            AF(&av, "--val-fraction", "0");
            AF(&av, "--calib", "%lld", calib);
            if (act_order) A(&av, "--act-order");
            if (recompute) A(&av, "--recompute");
            if (m->trained) {
                AF(&av, "--phase1-steps", "%lld", p1);
                AF(&av, "--steps", "%lld", p2);
                AF(&av, "--lr", "%g", !strcmp(m->name, "qat") ? lr_qat : lr);
                AF(&av, "--lr-sb", "%g", lr_sb);
                AF(&av, "--rank", "%d", rank);
                AF(&av, "--alpha", "%g", alpha);
                AF(&av, "--workdir", "%s/%s.work", out, m->name);
            }
            AF(&av, "--json", "%s/%s.quantize.json", out, m->name);
            AF(&av, "--out", "%s", m->model_path);
        }
        json_t *prev = load_json(m->run_json);
        if (prev) {
            m->ok = json_is_true(json_object_get(prev, "ok"));
            m->wall_s = json_number_value(json_object_get(prev, "wall_s"));
            m->rss_kb = (long)json_integer_value(json_object_get(prev, "peak_rss_kb"));
            json_decref(prev);
            fprintf(stderr, "[compare] %s: reusing %s\n", m->label, m->run_json);
        } else if (!is_fp) {
            run_res r = spawn(av.v, log, dry);
            m->ok = r.ok;
            m->wall_s = r.wall_s;
            m->rss_kb = r.rss_kb;
            if (!dry) {
                json_t *j = json_pack("{s:s, s:b, s:f, s:I}", "method", m->name, "ok", r.ok, "wall_s", r.wall_s, "peak_rss_kb",
                                      (json_int_t)r.rss_kb);
                char *s = json_dumps(j, JSON_INDENT(2));
                if (r.ok) cli_write_json(m->run_json, s);
                free(s);
                json_decref(j);
            }
        } else m->ok = 1;
        afree(&av);
        /* evaluation */
        if (m->ok) {
            json_t *pj = load_json(m->ppl_json);
            if (!pj) {
                A(&av, "dlqat");
                A(&av, "ppl");
                AF(&av, "--model", "%s", m->model_path);
                if (eval_text) AF(&av, "--text", "%s", eval_text);
                else AF(&av, "--tokens", "%s", eval_tokens);
                if (ctx) AF(&av, "--ctx", "%d", ctx);
                if (eval_windows) AF(&av, "--max-windows", "%lld", eval_windows);
                AF(&av, "--json", "%s", m->ppl_json);
                run_res r = spawn(av.v, log, dry);
                afree(&av);
                if (is_fp && r.ok && !dry) { /* the FP row's cost is its evaluation: recorded like a run */
                    m->wall_s = r.wall_s;
                    m->rss_kb = r.rss_kb;
                    json_t *j = json_pack("{s:s, s:b, s:f, s:I}", "method", "fp", "ok", 1, "wall_s", r.wall_s, "peak_rss_kb",
                                          (json_int_t)r.rss_kb);
                    char *s = json_dumps(j, JSON_INDENT(2));
                    cli_write_json(m->run_json, s);
                    free(s);
                    json_decref(j);
                }
                pj = r.ok ? load_json(m->ppl_json) : NULL;
                if (!pj && !dry) m->ok = 0;
            }
            if (pj) {
                m->ppl = json_number_value(json_object_get(pj, "ppl"));
                json_decref(pj);
            }
        }
        /* task accuracy */
        if (m->ok && tasks) {
            char ej[1200];
            snprintf(ej, sizeof ej, "%s/%s.eval.json", out, m->name);
            json_t *e = load_json(ej);
            if (!e) {
                A(&av, "dlqat");
                A(&av, "eval");
                AF(&av, "--model", "%s", m->model_path);
                AF(&av, "--tasks", "%s", tasks);
                AF(&av, "--data", "%s", task_data);
                if (task_limit) AF(&av, "--limit", "%lld", task_limit);
                AF(&av, "--json", "%s", ej);
                run_res r = spawn(av.v, log, dry);
                afree(&av);
                e = r.ok ? load_json(ej) : NULL;
            }
            if (e) {
                m->tasks = json_incref(json_object_get(e, "results"));
                json_decref(e);
            }
        }
        /* trainable parameters */
        if (is_ctl) {
            snprintf(buf, sizeof buf, "%s", "");
            char rp[1200];
            snprintf(rp, sizeof rp, "%s/control/run.json", out);
            json_t *rj = load_json(rp);
            json_t *v = rj ? json_object_get(rj, "trainable_params") : NULL;
            m->trainable = v ? (long long)json_integer_value(v) : -1;
            json_decref(rj);
        } else if (!is_fp) {
            char qp[1200];
            snprintf(qp, sizeof qp, "%s/%s.quantize.json", out, m->name);
            json_t *qj = load_json(qp);
            json_t *v = qj ? json_object_get(qj, "trainable_params") : NULL;
            m->trainable = v ? (long long)json_integer_value(v) : -1;
            json_decref(qj);
        }
        if (m->ok) fprintf(stderr, "[compare] %-20s ppl %.4f | wall %.1f s | peak RSS %.1f MiB\n", m->label, m->ppl, m->wall_s, m->rss_kb / 1024.0);
    }
    if (dry) return 0;
    /* tables */
    double ctl = NAN, fp = NAN;
    long rss_dlqat = 0, rss_qat = 0;
    double ppl_dlqat = NAN, ppl_qat = NAN;
    for (int i = 0; i < nm; i++) {
        if (!strcmp(ms[i].name, "control")) ctl = ms[i].ppl;
        if (!strcmp(ms[i].name, "fp")) fp = ms[i].ppl;
        if (!strcmp(ms[i].name, "dlqat")) { rss_dlqat = ms[i].rss_kb; ppl_dlqat = ms[i].ppl; }
        if (!strcmp(ms[i].name, "qat")) { rss_qat = ms[i].rss_kb; ppl_qat = ms[i].ppl; }
    }
    json_t *root = json_object(), *rows = json_array();
    json_object_set_new(root, "model", json_string(model));
    json_object_set_new(root, "bits", json_integer(bits));
    json_object_set_new(root, "group", json_string(gtag));
    json_object_set_new(root, "data", json_string(data_src));
    json_object_set_new(root, "eval", json_string(eval_text ? eval_text : eval_tokens));
    json_object_set_new(root, "budget", json_pack("{s:I, s:I, s:i, s:i, s:f, s:f, s:f, s:i, s:f, s:I, s:I}", "phase1_steps", (json_int_t)p1, "steps",
                                                  (json_int_t)p2, "batch", B, "seq", T, "lr", lr, "lr_sb", lr_sb, "lr_qat", lr_qat, "rank", rank,
                                                  "alpha", alpha, "calib", (json_int_t)calib, "seed", (json_int_t)seed));
    char mdp[1200];
    snprintf(mdp, sizeof mdp, "%s/compare.md", out);
    FILE *md = fopen(mdp, "w");
    if (!md) { fprintf(stderr, "dlqat compare: cannot write %s\n", mdp); json_decref(root); return 1; }
    fprintf(md, "# %s: W%d %s\n\nTraining data `%s`%s; %lld steps per trained method (DL-QAT / full QAT: %lld on s,b + %lld; "
                "QA-LoRA and the control: %lld on LoRA), batch %d x %d tokens, lr %g (s,b: %g; full QAT weights: %g), LoRA r %d alpha %g, seed %lld; "
                "GPTQ: %lld calibration sequences%s. Perplexity on `%s`%s.\n\n",
            model, bits, gtag, data_src, data != data_src ? " (tokenized once into train.tok, rows of --seq tokens)" : "", steps, p1, p2, steps, B, T, lr, lr_sb, lr_qat, rank, alpha, seed, calib, act_order ? ", act-order" : "",
            eval_text ? eval_text : eval_tokens, ctx ? "" : " (windows of the model's context)");
    /* task columns: the accuracy entries of the first evaluated row */
    const char *tnames[32];
    int nt = 0;
    for (int i = 0; i < nm && !nt; i++)
        if (ms[i].tasks) {
            const char *k;
            json_t *v;
            json_object_foreach(ms[i].tasks, k, v) if (json_object_get(v, "acc") && nt < 32) tnames[nt++] = k;
        }
    fprintf(md, "| method | ppl | vs FP | vs control | trainable params | peak RSS (MiB) | wall (s) |");
    for (int t = 0; t < nt; t++) fprintf(md, " %s |", tnames[t]);
    fprintf(md, "\n|---|---|---|---|---|---|---|");
    for (int t = 0; t < nt; t++) fprintf(md, "---|");
    fprintf(md, "\n");
    for (int i = 0; i < nm; i++) {
        method *m = &ms[i];
        json_t *r = json_pack("{s:s, s:s, s:b}", "method", m->name, "label", m->label, "ok", m->ok);
        if (m->ok) {
            json_object_set_new(r, "ppl", json_real(m->ppl));
            json_object_set_new(r, "wall_s", json_real(m->wall_s));
            json_object_set_new(r, "peak_rss_kb", json_integer(m->rss_kb));
            if (strcmp(m->name, "fp")) json_object_set_new(r, "trainable_params", json_integer(m->trainable));
            json_object_set_new(r, "ppl_vs_control", json_real(m->ppl / ctl));
        }
        json_array_append_new(rows, r);
        if (!m->ok) { fprintf(md, "| %s | failed | | | | | |\n", m->label); continue; }
        char tp[32] = "-";
        if (strcmp(m->name, "fp") && m->trainable >= 0) snprintf(tp, sizeof tp, "%lld", m->trainable);
        fprintf(md, "| %s%s%s | %.3f | %+.2f%% | %.4f | %s | %.1f | %.1f |", !strcmp(m->name, "dlqat") ? "**" : "", m->label,
                !strcmp(m->name, "dlqat") ? "**" : "", m->ppl, 100.0 * (m->ppl / fp - 1), m->ppl / ctl, tp, m->rss_kb / 1024.0, m->wall_s);
        for (int t = 0; t < nt; t++) {
            json_t *acc = m->tasks ? json_object_get(json_object_get(m->tasks, tnames[t]), "acc") : NULL;
            if (acc) fprintf(md, " %.4f |", json_number_value(acc));
            else fprintf(md, " - |");
        }
        fprintf(md, "\n");
        if (m->tasks) json_object_set(r, "tasks", m->tasks);
    }
    json_object_set_new(root, "rows", rows);
    if (rss_dlqat > 0 && rss_qat > 0) {
        double ratio = (double)rss_dlqat / (double)rss_qat;
        int mem_ok = ratio <= 0.5, acc_ok = ppl_dlqat <= ppl_qat;
        json_object_set_new(root, "dlqat_vs_qat", json_pack("{s:f, s:b, s:f, s:f, s:b}", "rss_ratio", ratio, "rss_at_most_half", mem_ok,
                                                            "ppl_dlqat", ppl_dlqat, "ppl_qat", ppl_qat, "ppl_at_least_as_good", acc_ok));
        fprintf(md, "\nDL-QAT vs full QAT: peak RSS %.1f / %.1f MiB = %.2fx (%s half), perplexity %.3f vs %.3f (%s).\n",
                rss_dlqat / 1024.0, rss_qat / 1024.0, ratio, mem_ok ? "at most" : "MORE than", ppl_dlqat, ppl_qat,
                acc_ok ? "DL-QAT at least as good" : "full QAT better");
    }
    fprintf(md, "\nPeak RSS and wall time are those of the `dlqat quantize` / `dlqat finetune` process (training, merge and write;"
                " the FP row: the perplexity evaluation), from wait4(2). Plots: ppl.svg, loss.svg.\n");
    fclose(md);
    char jp[1200];
    snprintf(jp, sizeof jp, "%s/compare.json", out);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    int rc = cli_write_json(jp, s);
    free(s);
    json_decref(root);
    char sp[1200], title[256];
    snprintf(sp, sizeof sp, "%s/ppl.svg", out);
    snprintf(title, sizeof title, "W%d %s: perplexity", bits, gtag);
    write_bars(sp, ms, nm, title);
    /* loss curves of the trained runs */
    argvb av = {0};
    A(&av, "dlqat");
    A(&av, "plot");
    int nlog = 0;
    for (int i = 0; i < nm; i++)
        if (ms[i].ok && ms[i].metrics[0] && !access(ms[i].metrics, R_OK)) { A(&av, ms[i].metrics); nlog++; }
    for (int i = 0; i < nm; i++)
        if (ms[i].ok && ms[i].metrics[0] && !access(ms[i].metrics, R_OK)) AF(&av, "--label", "%s", ms[i].label);
    AF(&av, "--out", "%s/loss.svg", out);
    AF(&av, "--smooth", "10");
    AF(&av, "--title", "W%d %s: training loss", bits, gtag);
    char plog[1200];
    snprintf(plog, sizeof plog, "%s/plot.log", out);
    if (nlog) spawn(av.v, plog, 0);
    afree(&av);
    for (int i = 0; i < nm; i++) json_decref(ms[i].tasks);
    char *md_text;
    size_t mdn;
    dlq_err err = {0};
    if (!dlq_read_file(mdp, &md_text, &mdn, &err)) { fwrite(md_text, 1, mdn, stdout); free(md_text); }
    for (int i = 0; i < nm; i++) rc |= !ms[i].ok;
    return rc ? 1 : 0;
}
