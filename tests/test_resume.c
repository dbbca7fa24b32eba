/* End-to-end interrupt + resume of `dlqat finetune` (fork/exec of build/dlqat).
 *
 *  A: uninterrupted LoRA run, 12 steps, checkpoint every 4.
 *  B: same run SIGKILLed once metrics.jsonl shows step >= 6 (between two
 *     checkpoints: steps 5.. are lost), then `--resume` to the end. Every
 *     metrics line (steps 1..12, each exactly once), run.json's final_loss,
 *     the final adapter files and the final checkpoint (weights, AdamW
 *     moments, full-precision last_loss) must be byte-identical to A's.
 *  C: SIGTERM during a run: exit 130, a checkpoint is saved, --resume
 *     finishes with A's adapter bytes.
 *  D: ckpt-latest.dlqc truncated: --resume falls back to ckpt-prev.dlqc with
 *     a warning and still ends with A's adapter bytes.
 *  E: latest and prev both truncated / no checkpoint at all: a clear error
 *     and a nonzero exit.
 *
 * Determinism needs a fixed thread count: children run with
 * OMP_NUM_THREADS=2 (and OPENBLAS_NUM_THREADS=2). SKIPs if build/dlqat, the
 * demo model or the sample text is missing. Run from the repo root. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "core/mapfile.h"
#include "train/checkpoint.h"
#include "t.h"

#define DLQAT "build/dlqat"
#define MODEL "models/english-mix-7M"
#define DATA "data/sample/english-mix-valid-sample.txt"
#define STEPS 12

static char g_tmp[256];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *slurp(const char *path, size_t *len) {
    char *s = NULL;
    size_t n = 0;
    dlq_err err = {0};
    if (dlq_read_file(path, &s, &n, &err)) return NULL;
    if (len) *len = n;
    return s; /* dlq_read_file NUL-terminates */
}

static int same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *s = slurp(src, &n);
    if (!s) return -1;
    FILE *f = fopen(dst, "wb");
    int rc = f && fwrite(s, 1, n, f) == n ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    free(s);
    return rc;
}

static int truncate_half(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) return -1;
    return truncate(path, sb.st_size / 2);
}

static void pj(char *buf, size_t cap, const char *run, const char *rel) { snprintf(buf, cap, "%s/%s/%s", g_tmp, run, rel); }

/* Starts `dlqat finetune ... --out TMP/run [--resume]`, stdout/stderr to
 * TMP/run.N.{out,err}. Returns the pid (or -1). */
static pid_t spawn(const char *run, int resume, int seq) {
    char out[512], so[512], se[512];
    snprintf(out, sizeof out, "%s/%s", g_tmp, run);
    snprintf(so, sizeof so, "%s/%s.%d.out", g_tmp, run, seq);
    snprintf(se, sizeof se, "%s/%s.%d.err", g_tmp, run, seq);
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    setenv("OMP_NUM_THREADS", "2", 1);
    setenv("OPENBLAS_NUM_THREADS", "2", 1);
    if (!freopen(so, "wb", stdout) || !freopen(se, "wb", stderr)) _exit(126);
    char *argv[] = {DLQAT, "finetune", "--model", MODEL, "--data", DATA, "--mode", "lora", "--rank", "4",
                    "--steps", "12", "--batch", "2", "--seq", "64", "--ckpt-every", "4", "--seed", "3",
                    "--out", out, resume ? "--resume" : NULL, NULL};
    execv(DLQAT, argv);
    _exit(127);
}

/* Waits (at most timeout_s, then SIGKILL) and returns the wait status, or -1. */
static int wait_for(pid_t pid, double timeout_s) {
    double t0 = now_s();
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) return -1;
        if (now_s() - t0 > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "child %d timed out after %.0f s\n", (int)pid, timeout_s);
            return -1;
        }
        sleep_ms(5);
    }
}

static int run_to_end(const char *run, int resume, int seq) {
    pid_t pid = spawn(run, resume, seq);
    if (pid < 0) return -1;
    int st = wait_for(pid, 300);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- metrics.jsonl: the printed text of a field, per step ---- */
typedef struct mline {
    int count;           /* times the step appears */
    char loss[64], lr[64], grad_norm[64], val_loss[64];
} mline;

static void field(const char *line, const char *key, char *dst, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    dst[0] = 0;
    if (!p) return;
    p += strlen(pat);
    size_t n = strcspn(p, ",}\n");
    if (n >= cap) n = cap - 1;
    memcpy(dst, p, n);
    dst[n] = 0;
}

/* Largest step over the complete lines of path (0 if none / missing). */
static long max_step(const char *path) {
    char *s = slurp(path, NULL);
    if (!s) return 0;
    long best = 0;
    for (char *p = s; *p;) {
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        const char *q = strstr(p, "\"step\":");
        if (q) {
            long v = strtol(q + 7, NULL, 10);
            if (v > best) best = v;
        }
        p = nl + 1;
    }
    free(s);
    return best;
}

/* Parses path into m[1..STEPS]; returns the number of lines, -1 if unreadable. */
static int read_metrics(const char *path, mline m[STEPS + 1]) {
    memset(m, 0, sizeof(mline) * (STEPS + 1));
    char *s = slurp(path, NULL);
    if (!s) return -1;
    int lines = 0;
    for (char *p = s; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        const char *q = strstr(p, "\"step\":");
        if (q) {
            long v = strtol(q + 7, NULL, 10);
            lines++;
            if (v >= 1 && v <= STEPS) {
                mline *L = &m[v];
                L->count++;
                field(p, "loss", L->loss, sizeof L->loss);
                field(p, "lr", L->lr, sizeof L->lr);
                field(p, "grad_norm", L->grad_norm, sizeof L->grad_norm);
                field(p, "val_loss", L->val_loss, sizeof L->val_loss);
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(s);
    return lines;
}

/* run.json's "final_loss" as printed */
static void final_loss(const char *run, char *dst, size_t cap) {
    char p[512];
    pj(p, sizeof p, run, "run.json");
    char *s = slurp(p, NULL);
    dst[0] = 0;
    if (!s) return;
    const char *q = strstr(s, "\"final_loss\":");
    if (q) {
        q += strlen("\"final_loss\":");
        while (*q == ' ') q++;
        size_t n = strcspn(q, ",}\n");
        if (n >= cap) n = cap - 1;
        memcpy(dst, q, n);
        dst[n] = 0;
    }
    free(s);
}

/* step stored in a checkpoint's metadata, -1 if unreadable / damaged */
static long ckpt_step(const char *path, char *last_loss, size_t cap) {
    dlq_ckpt *ck;
    dlq_err err = {0};
    if (dlq_ckpt_read(path, &ck, &err)) return -1;
    const char *meta = dlq_ckpt_meta(ck);
    const char *q = strstr(meta, "\"step\":");
    long v = q ? strtol(q + 7, NULL, 10) : -1;
    if (last_loss) field(meta, "last_loss", last_loss, cap);
    dlq_ckpt_free(ck);
    return v;
}

static int file_contains(const char *path, const char *needle) {
    char *s = slurp(path, NULL);
    int r = s && strstr(s, needle) != NULL;
    free(s);
    return r;
}

/* Checks run's metrics / run.json / adapter against A's. */
static void compare_with_a(const char *run, int check_final_ckpt) {
    mline a[STEPS + 1], b[STEPS + 1];
    char pa[512], pb[512];
    pj(pa, sizeof pa, "a", "metrics.jsonl");
    pj(pb, sizeof pb, run, "metrics.jsonl");
    int na = read_metrics(pa, a), nb = read_metrics(pb, b);
    CHECK(na == STEPS, "A: %d metrics lines", na);
    CHECK(nb == STEPS, "%s: %d metrics lines, want %d (steps after the checkpoint logged twice?)", run, nb, STEPS);
    int bad = 0;
    for (int s = 1; s <= STEPS; s++) {
        if (b[s].count != 1 || a[s].count != 1 || !a[s].loss[0] || strcmp(a[s].loss, b[s].loss) ||
            strcmp(a[s].lr, b[s].lr) || strcmp(a[s].grad_norm, b[s].grad_norm) || strcmp(a[s].val_loss, b[s].val_loss)) {
            bad++;
            fprintf(stderr, "  %s step %d (x%d): loss %s vs A %s, grad_norm %s vs %s, val %s vs %s\n", run, s, b[s].count,
                    b[s].loss, a[s].loss, b[s].grad_norm, a[s].grad_norm, b[s].val_loss, a[s].val_loss);
        }
    }
    CHECK(bad == 0, "%s: %d of %d metrics lines differ from the uninterrupted run", run, bad, STEPS);
    char fa[64], fb[64];
    final_loss("a", fa, sizeof fa);
    final_loss(run, fb, sizeof fb);
    CHECK(fa[0] && !strcmp(fa, fb), "%s: run.json final_loss %s vs A %s", run, fb, fa);
    pj(pa, sizeof pa, "a", "adapter/adapter_model.safetensors");
    pj(pb, sizeof pb, run, "adapter/adapter_model.safetensors");
    CHECK(same_bytes(pa, pb), "%s: adapter_model.safetensors differs from A's", run);
    pj(pa, sizeof pa, "a", "adapter/adapter_config.json");
    pj(pb, sizeof pb, run, "adapter/adapter_config.json");
    CHECK(same_bytes(pa, pb), "%s: adapter_config.json differs from A's", run);
    if (check_final_ckpt) {
        /* full precision: the final checkpoint holds every trainable weight,
         * both AdamW moments and last_loss printed with 17 digits */
        char la[64] = "", lb[64] = "";
        pj(pa, sizeof pa, "a", "checkpoints/ckpt-latest.dlqc");
        pj(pb, sizeof pb, run, "checkpoints/ckpt-latest.dlqc");
        long sa = ckpt_step(pa, la, sizeof la), sb = ckpt_step(pb, lb, sizeof lb);
        CHECK(sa == STEPS && sb == STEPS, "final checkpoints at steps %ld / %ld", sa, sb);
        CHECK(la[0] && !strcmp(la, lb), "%s: checkpoint last_loss %s vs A %s", run, lb, la);
        CHECK(same_bytes(pa, pb), "%s: final checkpoint bytes differ from A's", run);
    }
}

/* Starts run, sends sig once its metrics show step >= min_step. Returns the
 * wait status (-1 on error); *seen = the step seen when the signal was sent
 * (0 if the run ended first). */
static int run_and_signal(const char *run, int sig, long min_step, long *seen) {
    char mp[512];
    pj(mp, sizeof mp, run, "metrics.jsonl");
    *seen = 0;
    pid_t pid = spawn(run, 0, 0);
    if (pid < 0) return -1;
    double t0 = now_s();
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st; /* finished before we could signal it */
        long s = max_step(mp);
        if (s >= min_step) {
            kill(pid, sig);
            *seen = s;
            break;
        }
        if (now_s() - t0 > 300) { kill(pid, SIGKILL); waitpid(pid, &st, 0); return -1; }
        sleep_ms(1);
    }
    return wait_for(pid, 300);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

static void copy_run(const char *from, const char *to) {
    char d[512], s[512];
    snprintf(d, sizeof d, "%s/%s", g_tmp, to);
    mkdir(d, 0755);
    pj(d, sizeof d, to, "checkpoints");
    mkdir(d, 0755);
    const char *files[] = {"metrics.jsonl", "checkpoints/ckpt-latest.dlqc", "checkpoints/ckpt-prev.dlqc"};
    for (int i = 0; i < 3; i++) {
        pj(s, sizeof s, from, files[i]);
        pj(d, sizeof d, to, files[i]);
        CHECK(copy_file(s, d) == 0, "copy %s -> %s", s, d);
    }
}

int main(void) {
    if (access(DLQAT, X_OK) || access(MODEL "/model.safetensors", R_OK) || access(DATA, R_OK)) {
        SKIP("needs " DLQAT " (make), " MODEL " and " DATA "; run from the repo root");
        return T_DONE();
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/dlqat_test_resume_XXXXXX");
    if (!mkdtemp(g_tmp)) { CHECK(0, "mkdtemp: %s", strerror(errno)); return T_DONE(); }
    char p[512], q[512];

    /* A: uninterrupted */
    int rc = run_to_end("a", 0, 0);
    CHECK(rc == 0, "run A exited %d (see %s/a.0.err)", rc, g_tmp);
    if (rc != 0) return T_DONE();
    pj(p, sizeof p, "a", "checkpoints/ckpt-prev.dlqc");
    CHECK(ckpt_step(p, NULL, 0) == 8, "A: ckpt-prev at step %ld, want 8", ckpt_step(p, NULL, 0));

    /* B: SIGKILL between checkpoints 4 and 8, then resume. Retried if the
     * kill landed after the step-8 checkpoint (a very loaded machine). */
    long seen = 0, ck = -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        snprintf(p, sizeof p, "%s/b", g_tmp);
        rm_rf(p);
        int st = run_and_signal("b", SIGKILL, 6, &seen);
        CHECK(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "B: not killed by SIGKILL (status %d, seen step %ld)",
              st, seen);
        pj(p, sizeof p, "b", "checkpoints/ckpt-latest.dlqc");
        ck = ckpt_step(p, NULL, 0);
        if (ck == 4) break;
        fprintf(stderr, "note: B killed at step %ld with its checkpoint at step %ld; retrying\n", seen, ck);
    }
    CHECK(ck == 4 && seen >= 6, "B: killed at step %ld, checkpoint at step %ld (want 4)", seen, ck);
    fprintf(stderr, "B: SIGKILL at step %ld, checkpoint at step %ld\n", seen, ck);
    rc = run_to_end("b", 1, 1);
    CHECK(rc == 0, "B --resume exited %d (see %s/b.1.err)", rc, g_tmp);
    snprintf(p, sizeof p, "%s/b.1.err", g_tmp);
    CHECK(file_contains(p, "resumed at step 4"), "B --resume did not report resuming at step 4");
    compare_with_a("b", 1);

    /* C: SIGTERM -> checkpoint at the next step boundary, exit 130, resume */
    int st = run_and_signal("c", SIGTERM, 6, &seen);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 130, "C: SIGTERM at step %ld: status %d (exit %d), want exit 130",
          seen, st, st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    pj(p, sizeof p, "c", "checkpoints/ckpt-latest.dlqc");
    ck = ckpt_step(p, NULL, 0);
    CHECK(ck >= seen && ck < STEPS, "C: SIGTERM seen at step %ld, checkpoint at step %ld", seen, ck);
    snprintf(p, sizeof p, "%s/c.0.err", g_tmp);
    CHECK(file_contains(p, "interrupted at step"), "C: no 'interrupted' message");
    pj(p, sizeof p, "c", "adapter");
    CHECK(access(p, F_OK) != 0, "C: interrupted run wrote its adapter");
    fprintf(stderr, "C: SIGTERM at step %ld, checkpoint at step %ld\n", seen, ck);
    rc = run_to_end("c", 1, 1);
    CHECK(rc == 0, "C --resume exited %d (see %s/c.1.err)", rc, g_tmp);
    compare_with_a("c", 1);

    /* D: damaged latest (A's step 12) -> falls back to prev (step 8) */
    copy_run("a", "d");
    pj(p, sizeof p, "d", "checkpoints/ckpt-latest.dlqc");
    CHECK(truncate_half(p) == 0, "truncate %s", p);
    rc = run_to_end("d", 1, 1);
    CHECK(rc == 0, "D --resume with a truncated latest exited %d (see %s/d.1.err)", rc, g_tmp);
    snprintf(q, sizeof q, "%s/d.1.err", g_tmp);
    CHECK(file_contains(q, "warning:") && file_contains(q, "damaged") && file_contains(q, DLQ_CKPT_PREV),
          "D: no fallback warning naming " DLQ_CKPT_PREV);
    CHECK(file_contains(q, "resumed at step 8"), "D: did not resume at step 8");
    compare_with_a("d", 0);

    /* E: latest and prev both damaged -> clear error, nonzero exit */
    copy_run("a", "e");
    pj(p, sizeof p, "e", "checkpoints/ckpt-latest.dlqc");
    pj(q, sizeof q, "e", "checkpoints/ckpt-prev.dlqc");
    CHECK(truncate_half(p) == 0 && truncate_half(q) == 0, "truncate");
    rc = run_to_end("e", 1, 1);
    CHECK(rc > 0 && rc != 130, "E: --resume with no good checkpoint exited %d, want an error", rc);
    snprintf(p, sizeof p, "%s/e.1.err", g_tmp);
    CHECK(file_contains(p, "--resume"), "E: error does not mention --resume");
    pj(p, sizeof p, "e", "adapter");
    CHECK(access(p, F_OK) != 0, "E: wrote an adapter without a checkpoint");

    /* F: --resume with no checkpoint at all */
    rc = run_to_end("f", 1, 1);
    CHECK(rc > 0 && rc != 130, "F: --resume with no checkpoints exited %d, want an error", rc);
    snprintf(p, sizeof p, "%s/f.1.err", g_tmp);
    CHECK(file_contains(p, "no checkpoint"), "F: error does not say 'no checkpoint'");

    int failed = t_fail;
    if (!failed) rm_rf(g_tmp);
    else fprintf(stderr, "kept %s for inspection\n", g_tmp);
    return T_DONE();
}
