/* Minimal test harness: CHECK counts, prints failures with file:line, and
 * T_DONE() prints "NAME: N passed, N failed, N skipped" and returns the exit
 * status (non-zero on any failure). Seeded tests print their seed. */
#ifndef DLQ_TESTS_T_H
#define DLQ_TESTS_T_H

#include <math.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

static int t_pass, t_fail, t_skip;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) t_pass++;                                                 \
        else {                                                              \
            t_fail++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

#define SKIP(...)                                  \
    do {                                           \
        t_skip++;                                  \
        fprintf(stderr, "SKIP %s: ", __FILE__);    \
        fprintf(stderr, __VA_ARGS__);              \
        fputc('\n', stderr);                       \
    } while (0)

#define T_DONE()                                                                           \
    (printf("%s: %d passed, %d failed, %d skipped\n", __FILE__, t_pass, t_fail, t_skip), \
     t_fail ? 1 : 0)

/* Path to ../shared/data/<rel> (or $DLQ_SHARED/data/<rel>) if it exists,
 * else NULL. Tests that need it SKIP with a message when absent. */
static inline const char *t_shared(const char *rel) {
    static char buf[8][1024];
    static int slot;
    const char *root = getenv("DLQ_SHARED");
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/data/%s", root ? root : "../shared", rel);
    return access(b, F_OK) == 0 ? b : NULL;
}

/* max |a-b| over n floats, with the index of the worst element */
static inline double t_maxabs(const float *a, const float *b, size_t n, size_t *worst) {
    double m = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) { m = d; w = i; if (d != d) break; }
    }
    if (worst) *worst = w;
    return m;
}

/* Runs a shell command (one thread, passive OpenMP waits), captures stdout +
 * stderr into out (truncated to cap), returns the exit status (-1: no status).
 * For the CLI tests. */
static inline int t_run_to(const char *cmd, char *out, size_t cap, const char *stderr_to) {
    char full[4096];
    snprintf(full, sizeof full, "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive %s 2>%s", cmd, stderr_to);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
static inline int t_run(const char *cmd, char *out, size_t cap) { return t_run_to(cmd, out, cap, "&1"); }
/* the same with stdout only (stderr dropped) */
static inline int t_run_stdout(const char *cmd, char *out, size_t cap) { return t_run_to(cmd, out, cap, "/dev/null"); }

/* llama.cpp's tokenizer test vectors (tests/test-tokenizer-0): .inp holds the texts separated by
 * "\n__ggml_vocab_test__\n", .out one line of space-separated ids per text. Takes the next case from
 * *ipos / *opos: its text (*text, *tl bytes) and up to cap expected ids into exp (*ne); 0 at the end. */
static inline int t_vocab_next(const char *inp, size_t ilen, size_t *ipos, const char *outp, size_t olen, size_t *opos,
                               const char **text, size_t *tl, int32_t *exp, size_t cap, size_t *ne) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sl = sizeof sep - 1;
    if (!inp || !outp || *ipos >= ilen) return 0;
    const char *e = memmem(inp + *ipos, ilen - *ipos, sep, sl);
    if (!e) return 0;
    *tl = (size_t)(e - (inp + *ipos));
    *text = inp + *ipos;
    *ipos += *tl + sl;
    const char *nl = memchr(outp + *opos, '\n', olen - *opos);
    size_t ll = nl ? (size_t)(nl - (outp + *opos)) : olen - *opos;
    char *line = strndup(outp + *opos, ll), *sp = line, *end;
    *opos += ll + (nl ? 1 : 0);
    *ne = 0;
    for (long v; line && *ne < cap && (v = strtol(sp, &end, 10), end != sp); sp = end) exp[(*ne)++] = (int32_t)v;
    free(line);
    return 1;
}

/* A number (true / false count as 1 / 0) from the top-level object of a JSON
 * file, NAN when the file, the key or a number is missing. For the CLI tests. */
static inline double t_json_num(const char *path, const char *key) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    json_t *v = j ? json_object_get(j, key) : NULL;
    double r = json_is_number(v) ? json_number_value(v) : json_is_true(v) ? 1 : json_is_false(v) ? 0 : NAN;
    json_decref(j);
    return r;
}

#endif
