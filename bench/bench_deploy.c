/* Deployment benchmark: decode and evaluation (prompt) throughput, peak and
 * weight-resident memory of fp32 / bf16 / packed .dlq models, the packed
 * decode kernel's weight streaming rate, and the machine's memory bandwidth
 * (a STREAM-style triad). bench/bench_deploy.sh drives it, one fresh process
 * per model variant so that peak RSS is per variant.
 *
 *   bench_deploy triad [--mib M] [--reps R]
 *   bench_deploy make --out DIR (--tinyllama | --from MODEL) [--bits 4,3,2] [--group G]
 *                     [--param f16|f32] [--head-bits B] [--seed S] [--layers L]
 *       writes DIR/fp32/ (HF folder, F32), DIR/bf16/ (HF folder, BF16; --tinyllama
 *       only), DIR/w<b>.dlq (RTN, group G, F16 parameters, B-bit head). The
 *       TinyLlama-shaped model (dim 2048, 22 layers, 32/4 heads, MLP 5632,
 *       vocab 32000, untied head) gets seeded N(0, 0.02) weights rounded to
 *       bf16, so the fp32 and bf16 files hold the same model.
 *   bench_deploy run --model M --name NAME [--prompt T] [--decode N] [--kernel-reps R]
 *                    [--json FILE] [--triad GBS | --triad-mib M]
 *       (without --triad, a triad of 3 x M MiB, default 256, runs after the
 *       kernel pass in the same process)
 *       appends one JSON line to FILE and prints it.
 *   bench_deploy table FILE   a readable table of the JSON lines in FILE.
 *   bench_deploy ppl --model M --text FILE [--ctx C] [--windows W]
 *       perplexity through the decode kernels (one token at a time). */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "core/rng.h"
#include "io/hf_write.h"
#include "kernels/linear.h"
#include "kernels/qkernels.h"
#include "model/forward.h"
#include "model/load_internal.h"
#include "quant/rtn_dlq.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of the whole process (all threads, user + system): on a shared
 * machine wall time includes waiting for a core, CPU time counts the work */
static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static void die(const char *what, const dlq_err *err) {
    fprintf(stderr, "bench_deploy: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* /proc/self/status fields in KiB (VmHWM = peak RSS, RssFile = mapped file pages resident) */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') { v = atol(line + kl + 1); break; }
    if (f) fclose(f);
    return v;
}

/* KiB of the process's resident pages that belong to the model's files: the
 * Rss of every mapping in /proc/self/smaps whose path is the model file or
 * lies in the model folder (RssFile would also count the shared libraries) */
static long model_rss_kb(const char *model) {
    char rp[4096], line[8192];
    if (!realpath(model, rp)) return -1;
    struct stat st;
    int dir = stat(rp, &st) == 0 && S_ISDIR(st.st_mode);
    size_t rl = strlen(rp);
    FILE *f = fopen("/proc/self/smaps", "r");
    long total = 0;
    int in = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (sp && strchr(line, '-') && strchr(line, '-') < sp) { /* a mapping header: "lo-hi perms off dev inode path" */
            char *path = strchr(line, '/');
            if (path) path[strcspn(path, "\n")] = 0;
            in = path && !strncmp(path, rp, rl) && (dir ? path[rl] == '/' : path[rl] == 0);
        } else if (in && !strncmp(line, "Rss:", 4)) {
            total += atol(line + 4);
        }
    }
    if (f) fclose(f);
    return total;
}

static double load_avg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf", &l) != 1) l = -1;
    if (f) fclose(f);
    return l;
}

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}
static int flag(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

/* ---- triad: a = b + s*c over arrays far larger than the caches ---- */

static double triad_gbs(size_t mib, int reps) {
    size_t n = mib * 1024 * 1024 / sizeof(double);
    double *a = malloc(n * 8), *b = malloc(n * 8), *c = malloc(n * 8);
    if (!a || !b || !c) die("triad: out of memory", NULL);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        #pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0 * c[i];
        double t = now() - t0;
        best = t < best ? t : best;
    }
    double check = a[n / 2];
    free(a); free(b); free(c);
    if (check != 7.0) die("triad: wrong result", NULL);
    return 3.0 * (double)n * 8 / best / 1e9; /* STREAM convention: 24 bytes per element */
}

static int cmd_triad(int argc, char **argv) {
    size_t mib = (size_t)atol(arg(argc, argv, "--mib", "256"));
    int reps = atoi(arg(argc, argv, "--reps", "10"));
    double g = triad_gbs(mib, reps);
    printf("{\"triad_gbs\": %.2f, \"mib_per_array\": %zu, \"threads\": %d}\n", g, mib, omp_get_max_threads());
    return 0;
}

/* ---- make ---- */

static int mkdir_p(const char *d) {
    char b[1200];
    snprintf(b, sizeof b, "%s", d);
    for (char *q = b + 1; *q; q++)
        if (*q == '/') { *q = 0; mkdir(b, 0755); *q = '/'; }
    return mkdir(b, 0755) == 0 || access(b, F_OK) == 0 ? 0 : -1;
}

/* The TinyLlama-shaped random model: fp32 tensors in a file-backed scratch
 * mapping (so 4.4 GB of weights never sit in anonymous memory). */
static int make_tinyllama(const char *dir, uint64_t seed, int layers, dlq_config *cfg, dlq_hf_tensor **tv, size_t *nt,
                          void **map, size_t *map_len) {
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = DLQ_ARCH_LLAMA;
    cfg->dim = 2048; cfg->hidden_dim = 5632; cfg->n_layers = layers; cfg->n_heads = 32; cfg->n_kv_heads = 4;
    cfg->head_dim = 64; cfg->vocab_size = 32000; cfg->max_seq = 2048; cfg->rope_theta = 10000.0f; cfg->norm_eps = 1e-5f;
    cfg->rope_kind = DLQ_ROPE_DEFAULT; cfg->tied = 0; cfg->bos_id = 1; cfg->eos_id = 2;
    int64_t D = cfg->dim, H = cfg->hidden_dim, KV = cfg->n_kv_heads * cfg->head_dim, V = cfg->vocab_size;
    size_t cap = (size_t)layers * 9 + 3, n = 0;
    dlq_hf_tensor *t = calloc(cap, sizeof *t);
    struct { const char *mod; int64_t r, c; } lay[] = {
        {"input_layernorm", 1, D}, {"q_proj", D, D}, {"k_proj", KV, D}, {"v_proj", KV, D}, {"o_proj", D, D},
        {"post_attention_layernorm", 1, D}, {"gate_proj", H, D}, {"up_proj", H, D}, {"down_proj", D, H}};
    size_t total = 0;
    total += (size_t)(V * D) * 2 + (size_t)D;
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < 9; k++) total += (size_t)(lay[k].r * lay[k].c);
    *map_len = total * sizeof(float);
    char sp[1200];
    snprintf(sp, sizeof sp, "%s/.scratch.f32", dir);
    int fd = open(sp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)*map_len) != 0) { fprintf(stderr, "bench_deploy: cannot create %s\n", sp); return 1; }
    float *base = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    unlink(sp); /* the mapping keeps it alive; nothing is left behind */
    if (base == MAP_FAILED) { fprintf(stderr, "bench_deploy: cannot map the scratch file\n"); return 1; }
    *map = base;
    float *p = base;
    int idx = 0;
#define ADD(NAME, R, C, NORM)                                                                                     \
    do {                                                                                                          \
        dlq_hf_tensor *x = &t[n++];                                                                               \
        snprintf(x->name, sizeof x->name, "%s", NAME);                                                            \
        x->data = p; x->dtype = DLQ_F32;                                                                           \
        if ((R) == 1) { x->ndim = 1; x->shape[0] = (C); } else { x->ndim = 2; x->shape[0] = (R); x->shape[1] = (C); } \
        int64_t rr = (R), cc = (C);                                                                               \
        uint64_t ts = seed * 1000003u + (uint64_t)idx++;                                                           \
        float *dst = p;                                                                                           \
        _Pragma("omp parallel for schedule(static)")                                                              \
        for (int64_t r = 0; r < rr; r++) {                                                                        \
            dlq_rng g;                                                                                            \
            dlq_rng_seed(&g, ts * 7919u + (uint64_t)r);                                                           \
            for (int64_t j = 0; j < cc; j++) {                                                                    \
                float v = (NORM) ? 1.0f + 0.1f * (float)dlq_rng_normal(&g) : 0.02f * (float)dlq_rng_normal(&g);     \
                dst[r * cc + j] = dlq_bf16_to_f32(dlq_f32_to_bf16(v));                                            \
            }                                                                                                     \
        }                                                                                                         \
        p += rr * cc;                                                                                             \
    } while (0)
    ADD("model.embed_tokens.weight", V, D, 0);
    char nm[160];
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < 9; k++) {
            dlq_hf_tensor_name(nm, sizeof nm, l, lay[k].mod, "weight");
            ADD(nm, lay[k].r, lay[k].c, lay[k].r == 1);
        }
    ADD("model.norm.weight", 1, D, 1);
    ADD("lm_head.weight", V, D, 0);
#undef ADD
    *tv = t;
    *nt = n;
    return 0;
}

static int cmd_make(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL), *from = arg(argc, argv, "--from", NULL);
    int tiny = flag(argc, argv, "--tinyllama");
    if (!out || (!from && !tiny)) { fprintf(stderr, "bench_deploy make: --out DIR and --tinyllama or --from MODEL\n"); return 2; }
    const char *bits_s = arg(argc, argv, "--bits", "4,3,2");
    int group = atoi(arg(argc, argv, "--group", "64")), head_bits = atoi(arg(argc, argv, "--head-bits", "8"));
    dlq_dtype pdt = !strcmp(arg(argc, argv, "--param", "f16"), "f32") ? DLQ_F32 : DLQ_F16;
    uint64_t seed = (uint64_t)atoll(arg(argc, argv, "--seed", "7"));
    int layers = atoi(arg(argc, argv, "--layers", "22"));
    if (mkdir_p(out)) { fprintf(stderr, "bench_deploy: cannot create %s\n", out); return 1; }
    dlq_err err = {0};
    char p[1200];
    double t0 = now();
    if (tiny) {
        dlq_config cfg;
        dlq_hf_tensor *tv;
        size_t nt, ml;
        void *map;
        if (make_tinyllama(out, seed, layers, &cfg, &tv, &nt, &map, &ml)) return 1;
        fprintf(stderr, "[make] random weights generated (%.1f s)\n", now() - t0);
        snprintf(p, sizeof p, "%s/fp32", out);
        if (dlq_hf_write_model(p, &cfg, tv, nt, DLQ_F32, NULL, &err)) die(p, &err);
        fprintf(stderr, "[make] %s written (%.1f s)\n", p, now() - t0);
        munmap(map, ml);
        free(tv);
        /* bf16 from the written fp32 file (mapped), so the scratch is gone first */
        dlq_model *m;
        if (dlq_model_load(&m, p, NULL, &err)) die(p, &err);
        dlq_hf_tensor *mt;
        size_t mn;
        if (dlq_hf_tensors_from_model(m, &mt, &mn, &err)) die("tensors", &err);
        snprintf(p, sizeof p, "%s/bf16", out);
        if (dlq_hf_write_model(p, &m->cfg, mt, mn, DLQ_BF16, NULL, &err)) die(p, &err);
        free(mt);
        dlq_model_destroy(m);
        fprintf(stderr, "[make] %s written (%.1f s)\n", p, now() - t0);
        snprintf(p, sizeof p, "%s/fp32", out);
    } else {
        dlq_model *m;
        if (dlq_model_load(&m, from, NULL, &err)) die(from, &err);
        dlq_hf_tensor *mt;
        size_t mn;
        if (dlq_hf_tensors_from_model(m, &mt, &mn, &err)) die("tensors", &err);
        snprintf(p, sizeof p, "%s/fp32", out);
        if (dlq_hf_write_model(p, &m->cfg, mt, mn, DLQ_F32, from, &err)) die(p, &err);
        free(mt);
        dlq_model_destroy(m);
        fprintf(stderr, "[make] %s written\n", p);
    }
    dlq_model *m;
    if (dlq_model_load(&m, p, NULL, &err)) die(p, &err);
    for (const char *b = bits_s; *b; b++) {
        if (*b < '2' || *b > '8') continue;
        dlq_rtn_opts o = {.bits = *b - '0', .group = group, .param_dtype = pdt, .head_bits = head_bits};
        char q[1200];
        snprintf(q, sizeof q, "%s/w%d.dlq", out, o.bits);
        if (dlq_quant_rtn_to_dlq(m, q, &o, "{\"source\": \"bench_deploy make (RTN)\"}", &err)) die(q, &err);
        fprintf(stderr, "[make] %s written (%.1f s)\n", q, now() - t0);
    }
    dlq_model_destroy(m);
    return 0;
}

/* ---- run ---- */

static size_t weight_bytes(const dlq_model *m, int with_embedding) {
    size_t b = dlq_weight_bytes(&m->out_norm);
    if (with_embedding) b += dlq_weight_bytes(&m->tok_emb);
    if (m->lm_head.data != m->tok_emb.data || !with_embedding) b += dlq_weight_bytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        const dlq_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                  &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) b += dlq_weight_bytes(ws[i]);
    }
    return b;
}

static int cmd_run(int argc, char **argv) {
    const char *path = arg(argc, argv, "--model", NULL), *name = arg(argc, argv, "--name", NULL);
    const char *json_path = arg(argc, argv, "--json", NULL);
    int T = atoi(arg(argc, argv, "--prompt", "128")), N = atoi(arg(argc, argv, "--decode", "32"));
    int kreps = atoi(arg(argc, argv, "--kernel-reps", "3"));
    double triad = atof(arg(argc, argv, "--triad", "0"));
    if (!path || !name || T < 1 || N < 2) { fprintf(stderr, "bench_deploy run: --model M --name NAME\n"); return 2; }
    dlq_err err = {0};
    double t0 = now();
    dlq_model *m;
    if (dlq_model_load(&m, path, NULL, &err)) die(path, &err);
    double t_load = now() - t0;
    const dlq_config *c = &m->cfg;
    int V = c->vocab_size;
    if (T + N > c->max_seq) T = c->max_seq - N;
    dlq_state *s;
    if (dlq_state_create(&s, m, 1, T, T + N, &err)) die("state", &err);
    float *logits = malloc((size_t)T * V * sizeof(float));
    int32_t *tok = malloc((size_t)(T + N) * sizeof(int32_t));
    dlq_rng g;
    dlq_rng_seed(&g, 12345);
    for (int i = 0; i < T + N; i++) tok[i] = 3 + (int32_t)(dlq_rng_u64(&g) % (uint64_t)(V - 3));
    /* warm-up: one decode step touches every weight once, so the timings below
     * do not include first-touch page faults (the load time does not either) */
    if (dlq_forward(m, s, tok, 1, 1, 0, logits, 1, &err)) die("forward", &err);
    /* evaluation: the prompt in one batched pass, logits at every position (as ppl does) */
    double te = now(), ce = cpu_s();
    if (dlq_forward(m, s, tok, 1, T, 0, logits, 0, &err)) die("forward", &err);
    te = now() - te;
    ce = cpu_s() - ce;
    for (int i = 0; i < T * V; i++)
        if (!isfinite(logits[i])) die("non-finite logits", NULL);
    /* decode: one token at a time with the KV cache (the first step warms up) */
    double td = 0, cd = 0;
    for (int i = 0; i < N; i++) {
        double a = now(), ca = cpu_s();
        if (dlq_forward(m, s, tok + T + i, 1, 1, T + i, logits, 1, &err)) die("decode", &err);
        if (i > 0) { td += now() - a; cd += cpu_s() - ca; }
    }
    /* the decode kernels alone: every layer weight and the head, x = one vector */
    int64_t maxc = c->hidden_dim > c->dim ? c->hidden_dim : c->dim, maxr = V > maxc ? V : maxc;
    float *x = malloc((size_t)maxc * sizeof(float)), *y = malloc((size_t)maxr * sizeof(float)),
          *scr = malloc(dlq_linear_scratch_floats(maxc) * sizeof(float));
    for (int64_t i = 0; i < maxc; i++) x[i] = (float)dlq_rng_normal(&g);
    size_t kbytes = 0;
    double tk = 1e30, ck = 1e30;
    for (int r = 0; r < kreps; r++) {
        double a = now(), ca = cpu_s();
        size_t bytes = 0;
        for (int l = 0; l <= c->n_layers; l++) {
            const dlq_weight *ws[7];
            int nw = 0;
            if (l < c->n_layers) {
                const dlq_layer *L = &m->layers[l];
                const dlq_weight *t7[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
                memcpy(ws, t7, sizeof t7);
                nw = 7;
            } else {
                ws[0] = &m->lm_head;
                nw = 1;
            }
            for (int k = 0; k < nw; k++) {
                dlq_linear(y, ws[k]->rows, x, 1, ws[k], NULL, scr);
                bytes += dlq_weight_bytes(ws[k]);
            }
        }
        double t = now() - a, ct = cpu_s() - ca;
        if (t < tk) tk = t;
        if (ct < ck) ck = ct;
        kbytes = bytes;
    }
    long hwm = status_kb("VmHWM"), rss_file = status_kb("RssFile"), rss_anon = status_kb("RssAnon");
    long rss_model = model_rss_kb(path);
    /* the triad right after the kernel pass, in the same process and under the
     * same machine load (after the RSS figures: its arrays would count) */
    if (triad <= 0) triad = triad_gbs((size_t)atol(arg(argc, argv, "--triad-mib", "256")), 5);
    int packed = m->layers[0].wq.dtype == DLQ_QPACK;
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:s, s:s, s:i}",
                          "name", name, "model", path, "weights",
                          packed ? "packed" : dlq_dtype_name(m->layers[0].wq.dtype), "layers", c->n_layers, "prompt", T,
                          "decode", N, "load_s", t_load, "eval_tok_s", T / te, "decode_tok_s", (N - 1) / td,
                          "kernel_gbs", (double)kbytes / tk / 1e9, "kernel_bytes", (json_int_t)kbytes, "weight_bytes",
                          (json_int_t)weight_bytes(m, 1), "peak_rss_kb", (json_int_t)hwm, "rss_file_kb",
                          (json_int_t)rss_file, "rss_anon_kb", (json_int_t)rss_anon, "kernel_ms", tk * 1e3, "triad_gbs",
                          triad, "isa", dlq_qisa_name(dlq_qisa_active()), "qact",
                          dlq_qact_active() == DLQ_QACT_I8 ? "i8" : "f32", "threads", omp_get_max_threads());
    if (packed) json_object_set_new(j, "bits", json_integer(m->layers[0].wq.qbits));
    json_object_set_new(j, "eval_cpu_s_per_tok", json_real(ce / T));
    json_object_set_new(j, "decode_cpu_s_per_tok", json_real(cd / (N - 1)));
    json_object_set_new(j, "load_avg", json_real(load_avg()));
    json_object_set_new(j, "kernel_cpu_ms", json_real(ck * 1e3));
    json_object_set_new(j, "rss_model_kb", json_integer(rss_model));
    char *js = json_dumps(j, JSON_COMPACT);
    printf("%s\n", js);
    if (json_path) {
        FILE *f = fopen(json_path, "a");
        if (f) { fprintf(f, "%s\n", js); fclose(f); }
    }
    free(js);
    json_decref(j);
    free(x); free(y); free(scr); free(logits); free(tok);
    dlq_state_destroy(s);
    dlq_model_destroy(m);
    return 0;
}

/* ---- ppl through the decode path ---- */

/* Perplexity (GPTQ protocol: one BOS, non-overlapping windows of ctx tokens,
 * ctx - 1 predictions each) computed one token at a time with the KV cache,
 * so every linear runs the decode kernels: DLQ_QACT=f32 vs i8 shows what the
 * int8 activations cost. */
static int cmd_ppl(int argc, char **argv) {
    const char *path = arg(argc, argv, "--model", NULL), *text = arg(argc, argv, "--text", NULL);
    int ctx = atoi(arg(argc, argv, "--ctx", "512")), W = atoi(arg(argc, argv, "--windows", "8"));
    if (!path || !text) { fprintf(stderr, "bench_deploy ppl: --model M --text FILE\n"); return 2; }
    dlq_err err = {0};
    dlq_model *m;
    if (dlq_model_load(&m, path, NULL, &err)) die(path, &err);
    char *buf;
    size_t len, nt;
    int32_t *ids;
    if (dlq_read_file(text, &buf, &len, &err)) die(text, &err);
    if (!m->tok || dlq_tok_encode(m->tok, buf, len, 1, &ids, &nt, &err)) die("tokenize", &err);
    free(buf);
    int V = m->cfg.vocab_size;
    if (ctx > m->cfg.max_seq) ctx = m->cfg.max_seq;
    dlq_state *s;
    if (dlq_state_create(&s, m, 1, 1, ctx, &err)) die("state", &err);
    float *lg = malloc((size_t)V * sizeof(float));
    double total = 0;
    long n = 0;
    int w;
    double t0 = now();
    for (w = 0; w < W && (size_t)(w + 1) * ctx <= nt; w++) {
        const int32_t *t = ids + (size_t)w * ctx;
        for (int p = 0; p + 1 < ctx; p++) {
            if (dlq_forward(m, s, t + p, 1, 1, p, lg, 1, &err)) die("forward", &err);
            double mx = lg[0], se = 0;
            for (int j = 1; j < V; j++) mx = lg[j] > mx ? lg[j] : mx;
            for (int j = 0; j < V; j++) se += exp((double)lg[j] - mx);
            total += mx + log(se) - lg[t[p + 1]];
            n++;
        }
    }
    printf("{\"model\": \"%s\", \"qact\": \"%s\", \"isa\": \"%s\", \"ctx\": %d, \"windows\": %d, \"predictions\": %ld, "
           "\"nll\": %.6f, \"ppl\": %.4f, \"tok_s\": %.1f}\n",
           path, dlq_qact_active() == DLQ_QACT_I8 ? "i8" : "f32", dlq_qisa_name(dlq_qisa_active()), ctx, w, n, total / n,
           exp(total / n), n / (now() - t0));
    free(lg);
    free(ids);
    dlq_state_destroy(s);
    dlq_model_destroy(m);
    return 0;
}

/* ---- table ---- */

static int cmd_table(int argc, char **argv) {
    if (argc < 3) return 2;
    FILE *f = fopen(argv[2], "r");
    if (!f) { fprintf(stderr, "bench_deploy table: cannot open %s\n", argv[2]); return 1; }
    char line[8192];
    json_t *rows[64];
    int n = 0;
    while (n < 64 && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (j && json_object_get(j, "name")) rows[n++] = j;
        else json_decref(j);
    }
    fclose(f);
    printf("| model | weights | eval tok/s | decode tok/s | decode vs fp32 | decode tok per CPU-s | vs fp32 | peak RSS MiB | "
           "resident weights MiB | vs fp32 | kernel GB/s | vs triad | load |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        json_t *r = rows[i];
        const char *nm = json_string_value(json_object_get(r, "name"));
        const char *grp = strchr(nm, '/') ? nm : nm;
        /* the fp32 row of the same group ("<group>/fp32") */
        json_t *base = NULL;
        size_t gl = strchr(grp, '/') ? (size_t)(strchr(grp, '/') - grp) : strlen(grp);
        for (int k = 0; k < n; k++) {
            const char *o = json_string_value(json_object_get(rows[k], "name"));
            if (!strncmp(o, grp, gl) && !strcmp(o + gl, "/fp32")) base = rows[k];
        }
        double dec = json_real_value(json_object_get(r, "decode_tok_s"));
        double rf = (double)json_integer_value(json_object_get(r, "rss_model_kb")) / 1024;
        double kg = json_real_value(json_object_get(r, "kernel_gbs")), tr = json_real_value(json_object_get(r, "triad_gbs"));
        double dc = 1 / json_real_value(json_object_get(r, "decode_cpu_s_per_tok"));
        char dv[32] = "", rv[32] = "", tv[32] = "", cv[32] = "";
        if (base) {
            snprintf(cv, sizeof cv, "%.2fx", dc * json_real_value(json_object_get(base, "decode_cpu_s_per_tok")));
            snprintf(dv, sizeof dv, "%.2fx", dec / json_real_value(json_object_get(base, "decode_tok_s")));
            snprintf(rv, sizeof rv, "%.3fx", rf / ((double)json_integer_value(json_object_get(base, "rss_model_kb")) / 1024));
        }
        if (tr > 0) snprintf(tv, sizeof tv, "%.0f %%", 100 * kg / tr);
        printf("| %s | %s | %.1f | %.2f | %s | %.2f | %s | %.0f | %.0f | %s | %.1f | %s | %.1f |\n", nm,
               json_string_value(json_object_get(r, "weights")), json_real_value(json_object_get(r, "eval_tok_s")), dec, dv,
               dc, cv, (double)json_integer_value(json_object_get(r, "peak_rss_kb")) / 1024, rf, rv, kg, tv,
               json_real_value(json_object_get(r, "load_avg")));
    }
    for (int i = 0; i < n; i++) json_decref(rows[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_deploy triad|make|run|table ... (see bench/bench_deploy.c)\n");
        return 2;
    }
    if (!strcmp(argv[1], "triad")) return cmd_triad(argc, argv);
    if (!strcmp(argv[1], "make")) return cmd_make(argc, argv);
    if (!strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (!strcmp(argv[1], "table")) return cmd_table(argc, argv);
    if (!strcmp(argv[1], "ppl")) return cmd_ppl(argc, argv);
    fprintf(stderr, "bench_deploy: unknown command '%s'\n", argv[1]);
    return 2;
}
