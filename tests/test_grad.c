/* Backward passes vs central finite differences of double-precision forwards.
 * For each op: a scalar loss L = sum(out * R) with a fixed random R, computed
 * by a small double forward written here; every analytical gradient (from the
 * library's float backward, fed dout = R) is compared with (L(p+h) - L(p-h))/2h
 * for every element p, relative to the largest |gradient| of that tensor.
 * Also: linear backward vs its scalar reference on larger shapes,
 * dlq_attention_forward_train vs dlq_attention_forward, "+=" semantics and
 * bit-identical reruns. */
#include <stdint.h>

#include "core/rng.h"
#include "kernels/linear.h"
#include "nn/nn.h"
#include "t.h"

static const uint64_t SEED = 20261124;
static const double FD_H = 1e-6;

/* worst relative error seen per op, for the closing summary */
static struct { const char *op; double worst; } t_ops[16];
static int t_nops;

static void note(const char *op, double rel) {
    for (int i = 0; i < t_nops; i++)
        if (!strcmp(t_ops[i].op, op)) { if (rel > t_ops[i].worst) t_ops[i].worst = rel; return; }
    if (t_nops < 16) { t_ops[t_nops].op = op; t_ops[t_nops++].worst = rel; }
}

static void fill(dlq_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)dlq_rng_normal(r) * scale;
}
static double *to_d(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static float *fbuf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

typedef double (*loss_fn)(void *ctx);

/* Compare grad[n] (float, analytical) with central differences of f over p[n].
 * base: if non-NULL, grad - base is compared (the buffer was pre-filled to
 * check "+=" accumulation). */
static void fd_check(const char *op, const char *what, loss_fn f, void *ctx, double *p, size_t n, const float *grad,
                     const float *base, double tol) {
    double worst = 0, gmax = 0, wfd = 0, wan = 0;
    size_t wi = 0;
    double *fd = malloc((n ? n : 1) * sizeof *fd);
    for (size_t i = 0; i < n; i++) {
        double s = p[i];
        p[i] = s + FD_H;
        double lp = f(ctx);
        p[i] = s - FD_H;
        double lm = f(ctx);
        p[i] = s;
        fd[i] = (lp - lm) / (2 * FD_H);
        if (fabs(fd[i]) > gmax) gmax = fabs(fd[i]);
    }
    for (size_t i = 0; i < n; i++) {
        double an = (double)grad[i] - (base ? (double)base[i] : 0.0);
        double e = fabs(an - fd[i]);
        if (e > worst || e != e) { worst = e; wi = i; wfd = fd[i]; wan = an; }
    }
    double rel = worst / (gmax > 1e-8 ? gmax : 1e-8); /* all-zero gradients: absolute */
    note(op, rel);
    CHECK(rel <= tol, "%s %s: worst rel err %.3g at [%zu]: analytic %.9g vs fd %.9g (max |g| %.3g, seed %llu)", op, what,
          rel, wi, wan, wfd, gmax, (unsigned long long)SEED);
    free(fd);
}

/* ------------------------------------------------------------ rmsnorm */
typedef struct { double *x, *w, *R; int n, d; double eps; } rms_ctx;

static double rms_loss(void *vc) {
    rms_ctx *c = vc;
    double L = 0;
    for (int i = 0; i < c->n; i++) {
        const double *x = c->x + (size_t)i * c->d;
        double ss = 0;
        for (int j = 0; j < c->d; j++) ss += x[j] * x[j];
        double r = 1 / sqrt(ss / c->d + c->eps);
        for (int j = 0; j < c->d; j++) L += c->R[(size_t)i * c->d + j] * c->w[j] * x[j] * r;
    }
    return L;
}

static void test_rmsnorm(dlq_rng *rg) {
    int n = 5, d = 13;
    float eps = 1e-5f;
    float *x = fbuf((size_t)n * d), *w = fbuf(d), *R = fbuf((size_t)n * d);
    fill(rg, x, (size_t)n * d, 1.0f); fill(rg, w, d, 1.0f); fill(rg, R, (size_t)n * d, 1.0f);
    for (int j = 0; j < d; j++) x[j] *= 0.01f; /* a row with a small rms */
    float *dx = fbuf((size_t)n * d), *dw = fbuf(d), *dx0 = fbuf((size_t)n * d), *dw0 = fbuf(d);
    fill(rg, dx0, (size_t)n * d, 1.0f); fill(rg, dw0, d, 1.0f);
    memcpy(dx, dx0, sizeof(float) * n * d); memcpy(dw, dw0, sizeof(float) * d);
    dlq_rmsnorm_backward(dx, dw, R, x, w, n, d, eps);
    rms_ctx c = {to_d(x, (size_t)n * d), to_d(w, d), to_d(R, (size_t)n * d), n, d, eps};
    fd_check("rmsnorm", "dx", rms_loss, &c, c.x, (size_t)n * d, dx, dx0, 1e-5);
    fd_check("rmsnorm", "dw", rms_loss, &c, c.w, d, dw, dw0, 1e-5);
    /* frozen weight: dx identical, nothing else touched; rerun bit-identical */
    float *dx2 = fbuf((size_t)n * d);
    memcpy(dx2, dx0, sizeof(float) * n * d);
    dlq_rmsnorm_backward(dx2, NULL, R, x, w, n, d, eps);
    CHECK(!memcmp(dx, dx2, sizeof(float) * n * d), "rmsnorm dx differs with dw frozen");
    /* larger, threaded: twice, bit-identical */
    int n2 = 300, d2 = 257;
    float *X = fbuf((size_t)n2 * d2), *G = fbuf((size_t)n2 * d2), *W = fbuf(d2);
    fill(rg, X, (size_t)n2 * d2, 1.0f); fill(rg, G, (size_t)n2 * d2, 1.0f); fill(rg, W, d2, 1.0f);
    float *a = fbuf((size_t)n2 * d2), *b = fbuf((size_t)n2 * d2), *aw = fbuf(d2), *bw = fbuf(d2);
    dlq_rmsnorm_backward(a, aw, G, X, W, n2, d2, eps);
    dlq_rmsnorm_backward(b, bw, G, X, W, n2, d2, eps);
    CHECK(!memcmp(a, b, sizeof(float) * n2 * d2) && !memcmp(aw, bw, sizeof(float) * d2), "rmsnorm backward not deterministic");
    free(X); free(G); free(W); free(a); free(b); free(aw); free(bw);
    free(x); free(w); free(R); free(dx); free(dw); free(dx0); free(dw0); free(dx2);
    free(c.x); free(c.w); free(c.R);
}

/* ------------------------------------------------------------ rope */
typedef struct { double *x, *R; const float *cos_t, *sin_t; const int32_t *pos; int n, nh, hd; } rope_ctx;

static double rope_loss(void *vc) {
    rope_ctx *c = vc;
    int half = c->hd / 2;
    double L = 0;
    for (int r = 0; r < c->n; r++)
        for (int h = 0; h < c->nh; h++) {
            size_t o = ((size_t)r * c->nh + h) * c->hd;
            const float *cs = c->cos_t + (size_t)c->pos[r] * half, *sn = c->sin_t + (size_t)c->pos[r] * half;
            for (int i = 0; i < half; i++) {
                double a = c->x[o + i], b = c->x[o + i + half];
                L += c->R[o + i] * (a * cs[i] - b * sn[i]) + c->R[o + i + half] * (b * cs[i] + a * sn[i]);
            }
        }
    return L;
}

static void test_rope(dlq_rng *rg) {
    int hds[] = {8, 6};
    for (int k = 0; k < 2; k++) {
        int n = 4, nh = 3, hd = hds[k], half = hd / 2, P = 12;
        int32_t pos[] = {0, 5, 11, 3};
        float *ct = fbuf((size_t)P * half), *st = fbuf((size_t)P * half);
        for (int p = 0; p < P; p++)
            for (int i = 0; i < half; i++) {
                double ang = p * pow(10000.0, -2.0 * i / hd);
                ct[p * half + i] = (float)cos(ang); st[p * half + i] = (float)sin(ang);
            }
        size_t N = (size_t)n * nh * hd;
        float *x = fbuf(N), *R = fbuf(N), *dx = fbuf(N);
        fill(rg, x, N, 1.0f); fill(rg, R, N, 1.0f);
        memcpy(dx, R, N * sizeof(float));
        dlq_rope_backward(dx, n, nh, hd, pos, ct, st);
        rope_ctx c = {to_d(x, N), to_d(R, N), ct, st, pos, n, nh, hd};
        fd_check("rope", hd == 8 ? "dx hd=8" : "dx hd=6", rope_loss, &c, c.x, N, dx, NULL, 1e-5);
        /* forward then backward with the same dx is the identity (rotation) */
        memcpy(dx, x, N * sizeof(float));
        dlq_rope_forward(dx, n, nh, hd, pos, ct, st);
        dlq_rope_backward(dx, n, nh, hd, pos, ct, st);
        size_t wi;
        double e = t_maxabs(dx, x, N, &wi);
        CHECK(e < 1e-5, "rope backward(forward(x)) != x: %.3g at [%zu]", e, wi);
        free(ct); free(st); free(x); free(R); free(dx); free(c.x); free(c.R);
    }
}

/* ------------------------------------------------------------ swiglu */
typedef struct { double *g, *u, *R; int n; } swi_ctx;

static double swi_loss(void *vc) {
    swi_ctx *c = vc;
    double L = 0;
    for (int i = 0; i < c->n; i++) L += c->R[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
    return L;
}

static void test_swiglu(dlq_rng *rg) {
    int n = 41;
    float *g = fbuf(n), *u = fbuf(n), *R = fbuf(n), *dg = fbuf(n), *du = fbuf(n);
    fill(rg, g, n, 3.0f); fill(rg, u, n, 1.0f); fill(rg, R, n, 1.0f);
    g[0] = 20.0f; g[1] = -20.0f; g[2] = 0.0f;
    dlq_swiglu_backward(dg, du, R, g, u, n);
    swi_ctx c = {to_d(g, n), to_d(u, n), to_d(R, n), n};
    fd_check("swiglu", "dgate", swi_loss, &c, c.g, n, dg, NULL, 1e-5);
    fd_check("swiglu", "dup", swi_loss, &c, c.u, n, du, NULL, 1e-5);
    free(g); free(u); free(R); free(dg); free(du); free(c.g); free(c.u); free(c.R);
}

/* ------------------------------------------------------------ attention */
typedef struct { double *q, *k, *v, *R; int T, nh, nkv, hd, window; } att_ctx;

static double att_loss(void *vc) {
    att_ctx *c = vc;
    int group = c->nh / c->nkv;
    size_t ldq = (size_t)c->nh * c->hd, ldkv = (size_t)c->nkv * c->hd;
    double L = 0, p[c->T];
    for (int h = 0; h < c->nh; h++) {
        size_t qo = (size_t)h * c->hd, ko = (size_t)(h / group) * c->hd;
        for (int i = 0; i < c->T; i++) {
            int lo = c->window > 0 && i - c->window + 1 > 0 ? i - c->window + 1 : 0;
            double mx = -INFINITY, sum = 0;
            for (int j = lo; j <= i; j++) {
                double s = 0;
                for (int d = 0; d < c->hd; d++) s += c->q[i * ldq + qo + d] * c->k[j * ldkv + ko + d];
                p[j] = s / sqrt((double)c->hd);
                if (p[j] > mx) mx = p[j];
            }
            for (int j = lo; j <= i; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
            for (int d = 0; d < c->hd; d++) {
                double o = 0;
                for (int j = lo; j <= i; j++) o += p[j] * c->v[j * ldkv + ko + d];
                L += c->R[i * ldq + qo + d] * o / sum;
            }
        }
    }
    return L;
}

static void test_attention(dlq_rng *rg) {
    /* T, n_heads, n_kv_heads, hd, window; T >= 32 takes the sgemm path */
    int cfg[][5] = {{7, 6, 2, 6, 0}, {7, 4, 4, 5, 0}, {7, 4, 1, 8, 3}, {1, 6, 2, 6, 0}, {1, 4, 1, 5, 2},
                    {2, 4, 4, 3, 1}, {37, 6, 2, 6, 0}, {37, 4, 1, 5, 9}, {33, 4, 4, 6, 1}};
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        int T = cfg[ci][0], nh = cfg[ci][1], nkv = cfg[ci][2], hd = cfg[ci][3], win = cfg[ci][4];
        char what[96];
        size_t NQ = (size_t)T * nh * hd, NK = (size_t)T * nkv * hd;
        float *q = fbuf(NQ), *k = fbuf(NK), *v = fbuf(NK), *R = fbuf(NQ), *out = fbuf(NQ), *out2 = fbuf(NQ);
        float *probs = fbuf((size_t)nh * T * T), *scores = fbuf((size_t)T * T);
        fill(rg, q, NQ, 1.0f); fill(rg, k, NK, 1.0f); fill(rg, v, NK, 1.0f); fill(rg, R, NQ, 1.0f);
        dlq_attention_forward_train(out, probs, q, k, v, T, nh, nkv, hd, win);
        dlq_attention_forward(out2, q, k, v, (int64_t)nkv * hd, T, 0, nh, nkv, hd, win, scores);
        size_t wi;
        double e = t_maxabs(out, out2, NQ, &wi);
        snprintf(what, sizeof what, "T=%d heads=%d/%d hd=%d window=%d", T, nh, nkv, hd, win);
        CHECK(e <= 1e-6, "attention_forward_train vs forward %s: %.3g at [%zu] (seed %llu)", what, e, wi,
              (unsigned long long)SEED);
        float *dq = fbuf(NQ), *dk = fbuf(NK), *dv = fbuf(NK);
        float *scratch = fbuf(dlq_attention_backward_scratch(T, nh));
        fill(rg, dk, NK, 1.0f); fill(rg, dv, NK, 1.0f); fill(rg, dq, NQ, 1.0f); /* "=": must be overwritten */
        dlq_attention_backward(dq, dk, dv, R, probs, q, k, v, T, nh, nkv, hd, scratch);
        att_ctx c = {to_d(q, NQ), to_d(k, NK), to_d(v, NK), to_d(R, NQ), T, nh, nkv, hd, win};
        char w2[128];
        snprintf(w2, sizeof w2, "dq %s", what);
        fd_check("attention", w2, att_loss, &c, c.q, NQ, dq, NULL, 1e-5);
        snprintf(w2, sizeof w2, "dk %s", what);
        fd_check("attention", w2, att_loss, &c, c.k, NK, dk, NULL, 1e-5);
        snprintf(w2, sizeof w2, "dv %s", what);
        fd_check("attention", w2, att_loss, &c, c.v, NK, dv, NULL, 1e-5);
        /* determinism */
        float *dq2 = fbuf(NQ), *dk2 = fbuf(NK), *dv2 = fbuf(NK), *out3 = fbuf(NQ), *probs2 = fbuf((size_t)nh * T * T);
        dlq_attention_forward_train(out3, probs2, q, k, v, T, nh, nkv, hd, win);
        dlq_attention_backward(dq2, dk2, dv2, R, probs2, q, k, v, T, nh, nkv, hd, scratch);
        CHECK(!memcmp(out, out3, NQ * 4) && !memcmp(probs, probs2, (size_t)nh * T * T * 4) && !memcmp(dq, dq2, NQ * 4) &&
                  !memcmp(dk, dk2, NK * 4) && !memcmp(dv, dv2, NK * 4),
              "attention %s: rerun not bit-identical", what);
        free(q); free(k); free(v); free(R); free(out); free(out2); free(out3); free(probs); free(probs2); free(scores);
        free(dq); free(dk); free(dv); free(dq2); free(dk2); free(dv2); free(scratch);
        free(c.q); free(c.k); free(c.v); free(c.R);
    }
    /* a larger case: forward_train vs forward and bit-identical reruns (no fd) */
    {
        int T = 200, nh = 8, nkv = 2, hd = 32;
        size_t NQ = (size_t)T * nh * hd, NK = (size_t)T * nkv * hd, NP = (size_t)nh * T * T;
        float *q = fbuf(NQ), *k = fbuf(NK), *v = fbuf(NK), *g = fbuf(NQ), *o1 = fbuf(NQ), *o2 = fbuf(NQ);
        float *P = fbuf(NP), *S = fbuf((size_t)T * T), *sc = fbuf(dlq_attention_backward_scratch(T, nh));
        float *a[3] = {fbuf(NQ), fbuf(NK), fbuf(NK)}, *b[3] = {fbuf(NQ), fbuf(NK), fbuf(NK)};
        fill(rg, q, NQ, 1.0f); fill(rg, k, NK, 1.0f); fill(rg, v, NK, 1.0f); fill(rg, g, NQ, 1.0f);
        dlq_attention_forward_train(o1, P, q, k, v, T, nh, nkv, hd, 64);
        dlq_attention_forward(o2, q, k, v, (int64_t)nkv * hd, T, 0, nh, nkv, hd, 64, S);
        size_t wi;
        double e = t_maxabs(o1, o2, NQ, &wi);
        CHECK(e <= 1e-6, "attention_forward_train vs forward T=200: %.3g at [%zu]", e, wi);
        dlq_attention_backward(a[0], a[1], a[2], g, P, q, k, v, T, nh, nkv, hd, sc);
        dlq_attention_backward(b[0], b[1], b[2], g, P, q, k, v, T, nh, nkv, hd, sc);
        CHECK(!memcmp(a[0], b[0], NQ * 4) && !memcmp(a[1], b[1], NK * 4) && !memcmp(a[2], b[2], NK * 4),
              "attention backward T=200 not bit-identical");
        free(q); free(k); free(v); free(g); free(o1); free(o2); free(P); free(S); free(sc);
        for (int i = 0; i < 3; i++) { free(a[i]); free(b[i]); }
    }
}

/* ------------------------------------------------------------ xent */
typedef struct { double *l; const int32_t *t; int n, V; double scale; } xent_ctx;

static double xent_lossd(const xent_ctx *c) {
    double L = 0;
    for (int r = 0; r < c->n; r++) {
        if (c->t[r] < 0) continue;
        const double *l = c->l + (size_t)r * c->V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < c->V; j++) mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < c->V; j++) s += exp(l[j] - mx);
        L += mx + log(s) - l[c->t[r]];
    }
    return L;
}
static double xent_loss(void *vc) { xent_ctx *c = vc; return c->scale * xent_lossd(c); }

static void test_xent(dlq_rng *rg) {
    int n = 6, V = 11;
    int32_t t[] = {3, -1, 0, 10, -100, 7};
    float scale = 0.37f;
    size_t N = (size_t)n * V;
    float *l = fbuf(N), *dl = fbuf(N), *al = fbuf(N);
    fill(rg, l, N, 2.0f);
    for (int j = 0; j < V; j++) l[5 * V + j] += 1000.0f; /* needs the max shift */
    double loss = dlq_xent_forward_backward(dl, l, t, n, V, scale);
    xent_ctx c = {to_d(l, N), t, n, V, scale};
    double ref = xent_lossd(&c);
    CHECK(fabs(loss - ref) <= 1e-6 * fabs(ref), "xent loss %.12g vs %.12g (seed %llu)", loss, ref, (unsigned long long)SEED);
    note("xent loss", fabs(loss - ref) / fabs(ref));
    fd_check("xent", "dlogits", xent_loss, &c, c.l, N, dl, NULL, 1e-5);
    int zero = 1;
    for (int j = 0; j < V; j++) zero &= dl[1 * V + j] == 0.0f && dl[4 * V + j] == 0.0f;
    CHECK(zero, "xent: ignored rows have non-zero gradient");
    /* in place: same bits */
    memcpy(al, l, N * 4);
    double loss2 = dlq_xent_forward_backward(al, al, t, n, V, scale);
    CHECK(loss2 == loss && !memcmp(al, dl, N * 4), "xent in place differs");
    /* larger, threaded: deterministic */
    int n2 = 64, V2 = 5003;
    float *L2 = fbuf((size_t)n2 * V2), *d1 = fbuf((size_t)n2 * V2), *d2 = fbuf((size_t)n2 * V2);
    int32_t *t2 = malloc(n2 * sizeof *t2);
    fill(rg, L2, (size_t)n2 * V2, 3.0f);
    for (int i = 0; i < n2; i++) t2[i] = i % 5 == 0 ? -1 : (int32_t)(dlq_rng_u64(rg) % (uint64_t)V2);
    double a = dlq_xent_forward_backward(d1, L2, t2, n2, V2, 1.0f / n2);
    double b = dlq_xent_forward_backward(d2, L2, t2, n2, V2, 1.0f / n2);
    CHECK(a == b && !memcmp(d1, d2, (size_t)n2 * V2 * 4), "xent not deterministic");
    free(L2); free(d1); free(d2); free(t2);
    free(l); free(dl); free(al); free(c.l);
}

/* ------------------------------------------------------------ KL distillation */
typedef struct { double *l, *tl; const int32_t *t; int n, V; double scale, wce, wkl; } kl_ctx;

static double kl_loss(void *vc) {
    kl_ctx *c = vc;
    double L = 0;
    for (int r = 0; r < c->n; r++) {
        if (c->t[r] < 0) continue;
        const double *l = c->l + (size_t)r * c->V, *tl = c->tl + (size_t)r * c->V;
        double mx = -INFINITY, tmx = -INFINITY, s = 0, ts = 0;
        for (int j = 0; j < c->V; j++) { mx = fmax(mx, l[j]); tmx = fmax(tmx, tl[j]); }
        for (int j = 0; j < c->V; j++) { s += exp(l[j] - mx); ts += exp(tl[j] - tmx); }
        double lse = mx + log(s), tlse = tmx + log(ts), kl = 0;
        for (int j = 0; j < c->V; j++) kl += exp(tl[j] - tlse) * ((tl[j] - tlse) - (l[j] - lse));
        L += c->wce * (lse - l[c->t[r]]) + c->wkl * kl;
    }
    return c->scale * L;
}

static void test_kl(dlq_rng *rg) {
    int n = 6, V = 13;
    int32_t t[] = {3, -1, 0, 12, 5, 7};
    size_t N = (size_t)n * V;
    float *l = fbuf(N), *tl = fbuf(N), *dl = fbuf(N), *dx = fbuf(N);
    fill(rg, l, N, 2.0f);
    fill(rg, tl, N, 2.0f);
    for (int j = 0; j < V; j++) { l[5 * V + j] += 900.0f; tl[4 * V + j] -= 700.0f; } /* max shifts */
    const float w[3][2] = {{0, 1}, {1, 1}, {1, 0}};
    for (int k = 0; k < 3; k++) {
        float scale = 0.29f;
        double loss = dlq_kl_forward_backward(dl, l, tl, t, n, V, scale, w[k][0], w[k][1]);
        kl_ctx c = {to_d(l, N), to_d(tl, N), t, n, V, scale, w[k][0], w[k][1]};
        double ref = kl_loss(&c) / scale;
        CHECK(fabs(loss - ref) <= 1e-6 * fabs(ref), "kl (w_ce %g, w_kl %g) loss %.12g vs %.12g", w[k][0], w[k][1], loss, ref);
        fd_check("kl", "dlogits", kl_loss, &c, c.l, N, dl, NULL, 1e-5);
        if (k == 2) { /* w_kl = 0 is exactly cross-entropy */
            double x = dlq_xent_forward_backward(dx, l, t, n, V, scale);
            double md = 0;
            for (size_t i = 0; i < N; i++) md = fmax(md, fabs(dx[i] - dl[i]));
            CHECK(fabs(x - loss) <= 1e-9 * fabs(x) && md < 1e-7, "kl with w_kl=0 differs from xent: %.3g / %.3g", x - loss, md);
        }
        free(c.l); free(c.tl);
    }
    /* teacher == student: KL is 0 and so is its gradient */
    double z = dlq_kl_forward_backward(dl, l, l, t, n, V, 1.0f, 0.0f, 1.0f);
    double gm = 0;
    for (size_t i = 0; i < N; i++) gm = fmax(gm, fabs(dl[i]));
    CHECK(fabs(z) < 1e-9 && gm < 1e-7, "KL(p||p) = %.3g, max |grad| %.3g", z, gm);
    /* in place: same bits */
    memcpy(dx, l, N * 4);
    double a = dlq_kl_forward_backward(dl, l, tl, t, n, V, 0.5f, 1.0f, 1.0f);
    double b = dlq_kl_forward_backward(dx, dx, tl, t, n, V, 0.5f, 1.0f, 1.0f);
    CHECK(a == b && !memcmp(dl, dx, N * 4), "kl in place differs");
    free(l); free(tl); free(dl); free(dx);
}

/* ------------------------------------------------------------ embedding */
typedef struct { double *W, *R; const int32_t *ids; int n, d; } emb_ctx;

static double emb_loss(void *vc) {
    emb_ctx *c = vc;
    double L = 0;
    for (int i = 0; i < c->n; i++)
        for (int j = 0; j < c->d; j++) L += c->R[(size_t)i * c->d + j] * c->W[(size_t)c->ids[i] * c->d + j];
    return L;
}

static void test_embedding(dlq_rng *rg) {
    int V = 7, d = 5, n = 9;
    int32_t ids[] = {3, 0, 3, 6, 3, 1, 0, 5, 3};
    float *W = fbuf((size_t)V * d), *R = fbuf((size_t)n * d), *dW = fbuf((size_t)V * d), *dW0 = fbuf((size_t)V * d);
    fill(rg, W, (size_t)V * d, 1.0f); fill(rg, R, (size_t)n * d, 1.0f); fill(rg, dW0, (size_t)V * d, 1.0f);
    memcpy(dW, dW0, (size_t)V * d * 4);
    dlq_embedding_backward(dW, R, ids, n, d);
    dlq_embedding_backward(NULL, R, ids, n, d); /* frozen: no-op */
    emb_ctx c = {to_d(W, (size_t)V * d), to_d(R, (size_t)n * d), ids, n, d};
    fd_check("embedding", "dW", emb_loss, &c, c.W, (size_t)V * d, dW, dW0, 1e-5);
    /* large, threaded, many repeats: deterministic and equal to a serial sum */
    int V2 = 50, d2 = 1000, n2 = 500;
    float *G = fbuf((size_t)n2 * d2), *A = fbuf((size_t)V2 * d2), *B = fbuf((size_t)V2 * d2);
    int32_t *id2 = malloc(n2 * sizeof *id2);
    fill(rg, G, (size_t)n2 * d2, 1.0f);
    for (int i = 0; i < n2; i++) id2[i] = (int32_t)(dlq_rng_u64(rg) % (uint64_t)V2);
    dlq_embedding_backward(A, G, id2, n2, d2);
    for (int i = 0; i < n2; i++)
        for (int j = 0; j < d2; j++) B[(size_t)id2[i] * d2 + j] += G[(size_t)i * d2 + j];
    CHECK(!memcmp(A, B, (size_t)V2 * d2 * 4), "embedding backward differs from the serial scatter");
    free(G); free(A); free(B); free(id2);
    free(W); free(R); free(dW); free(dW0); free(c.W); free(c.R);
}

/* ------------------------------------------------------------ linear */
static void *make_weight(dlq_rng *r, dlq_dtype t, int64_t rows, int64_t cols, dlq_weight *w) {
    size_t n = (size_t)(rows * cols);
    void *buf = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        float v = (float)dlq_rng_normal(r) * 0.5f;
        if (t == DLQ_F32) ((float *)buf)[i] = v;
        else if (t == DLQ_BF16) ((uint16_t *)buf)[i] = dlq_f32_to_bf16(v);
        else ((uint16_t *)buf)[i] = dlq_f32_to_f16(v);
    }
    w->data = buf; w->dtype = t; w->rows = rows; w->cols = cols;
    return buf;
}

typedef struct { double *x, *W, *b, *R; int n, in, out; } lin_ctx;

static double lin_loss(void *vc) {
    lin_ctx *c = vc;
    double L = 0;
    for (int i = 0; i < c->n; i++)
        for (int r = 0; r < c->out; r++) {
            double y = c->b[r];
            for (int k = 0; k < c->in; k++) y += c->x[(size_t)i * c->in + k] * c->W[(size_t)r * c->in + k];
            L += c->R[(size_t)i * c->out + r] * y;
        }
    return L;
}

static void test_linear_fd(dlq_rng *rg) {
    int shapes[][3] = {{1, 5, 3}, {3, 13, 11}, {17, 19, 7}, {3, 9, 1}};
    dlq_dtype types[] = {DLQ_F32, DLQ_BF16, DLQ_F16};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int n = shapes[si][0], in = shapes[si][1], out = shapes[si][2], ldy = out + 2;
            dlq_weight w;
            void *wb = make_weight(rg, types[ti], out, in, &w);
            float *x = fbuf((size_t)n * in), *dy = fbuf((size_t)n * ldy), *R = fbuf((size_t)n * out);
            float *wf = fbuf((size_t)out * in), *b = fbuf(out);
            fill(rg, x, (size_t)n * in, 1.0f); fill(rg, R, (size_t)n * out, 1.0f); fill(rg, b, out, 1.0f);
            for (int i = 0; i < n; i++) { memcpy(dy + (size_t)i * ldy, R + (size_t)i * out, out * 4); dy[i * ldy + out] = NAN; }
            for (int r = 0; r < out; r++) dlq_weight_row(&w, r, wf + (size_t)r * in);
            float *dx = fbuf((size_t)n * in), *dx0 = fbuf((size_t)n * in), *dw = fbuf((size_t)out * in),
                  *dw0 = fbuf((size_t)out * in), *db = fbuf(out), *db0 = fbuf(out);
            fill(rg, dx0, (size_t)n * in, 1.0f); fill(rg, dw0, (size_t)out * in, 1.0f); fill(rg, db0, out, 1.0f);
            memcpy(dx, dx0, (size_t)n * in * 4); memcpy(dw, dw0, (size_t)out * in * 4); memcpy(db, db0, out * 4);
            float *scratch = fbuf(dlq_linear_scratch_floats(in));
            int full = types[ti] == DLQ_F32; /* low-precision weights are frozen: dx only */
            dlq_linear_backward(dx, full ? dw : NULL, full ? db : NULL, dy, ldy, x, n, &w, scratch);
            lin_ctx c = {to_d(x, (size_t)n * in), to_d(wf, (size_t)out * in), to_d(b, out), to_d(R, (size_t)n * out), n, in, out};
            char what[64];
            snprintf(what, sizeof what, "%s %dx%d->%d dx", dlq_dtype_name(types[ti]), n, in, out);
            fd_check("linear", what, lin_loss, &c, c.x, (size_t)n * in, dx, dx0, 1e-5);
            if (full) {
                snprintf(what, sizeof what, "%s %dx%d->%d dw", dlq_dtype_name(types[ti]), n, in, out);
                fd_check("linear", what, lin_loss, &c, c.W, (size_t)out * in, dw, dw0, 1e-5);
                snprintf(what, sizeof what, "%s %dx%d->%d db", dlq_dtype_name(types[ti]), n, in, out);
                fd_check("linear", what, lin_loss, &c, c.b, out, db, db0, 1e-5);
            } else {
                CHECK(!memcmp(dw, dw0, (size_t)out * in * 4) && !memcmp(db, db0, out * 4), "linear: frozen dw/db touched");
            }
            free(wb); free(x); free(dy); free(R); free(wf); free(b); free(dx); free(dx0); free(dw); free(dw0);
            free(db); free(db0); free(scratch); free(c.x); free(c.W); free(c.b); free(c.R);
        }
}

static void test_linear_ref(dlq_rng *rg) {
    /* the last shape has in > 65536: 16-row blocks, so several blocks */
    int64_t shapes[][3] = {{64, 256, 300}, {33, 129, 70}, {1, 200, 513}, {100, 384, 200}, {2, 70001, 37}};
    dlq_dtype types[] = {DLQ_F32, DLQ_BF16, DLQ_F16};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int64_t n = shapes[si][0], in = shapes[si][1], out = shapes[si][2], ldy = out + 3;
            if (in > 65536 && types[ti] == DLQ_F32) continue;
            dlq_weight w;
            void *wb = make_weight(rg, types[ti], out, in, &w);
            size_t NX = (size_t)(n * in), NW = (size_t)(out * in);
            float *x = fbuf(NX), *dy = fbuf((size_t)(n * ldy)), *scratch = fbuf(dlq_linear_scratch_floats(in));
            fill(rg, x, NX, 1.0f); fill(rg, dy, (size_t)(n * ldy), 1.0f);
            float *g[2][3];
            for (int k = 0; k < 2; k++) { g[k][0] = fbuf(NX); g[k][1] = fbuf(NW); g[k][2] = fbuf((size_t)out); }
            fill(rg, g[0][0], NX, 1.0f); fill(rg, g[0][1], NW, 1.0f); fill(rg, g[0][2], (size_t)out, 1.0f);
            memcpy(g[1][0], g[0][0], NX * 4); memcpy(g[1][1], g[0][1], NW * 4); memcpy(g[1][2], g[0][2], (size_t)out * 4);
            dlq_linear_backward(g[0][0], g[0][1], g[0][2], dy, ldy, x, n, &w, scratch);
            dlq_linear_backward_ref(g[1][0], g[1][1], g[1][2], dy, ldy, x, n, &w);
            size_t sz[3] = {NX, NW, (size_t)out};
            const char *nm[3] = {"dx", "dw", "db"};
            for (int k = 0; k < 3; k++) {
                size_t wi;
                double e = t_maxabs(g[0][k], g[1][k], sz[k], &wi), m = 0;
                for (size_t i = 0; i < sz[k]; i++) m = fmax(m, fabs(g[1][k][i]));
                note("linear vs ref", e / m);
                CHECK(e <= 1e-5 * m, "%s linear backward %lldx%lld->%lld %s vs ref: %.3g at [%zu] (max %.3g, seed %llu)",
                      dlq_dtype_name(types[ti]), (long long)n, (long long)in, (long long)out, nm[k], e, wi, m,
                      (unsigned long long)SEED);
            }
            /* determinism: rerun from the same starting buffers */
            float *h0 = fbuf(NX), *h1 = fbuf(NW), *h2 = fbuf((size_t)out);
            float *k0 = fbuf(NX), *k1 = fbuf(NW), *k2 = fbuf((size_t)out);
            dlq_linear_backward(h0, h1, h2, dy, ldy, x, n, &w, scratch);
            dlq_linear_backward(k0, k1, k2, dy, ldy, x, n, &w, scratch);
            CHECK(!memcmp(h0, k0, NX * 4) && !memcmp(h1, k1, NW * 4) && !memcmp(h2, k2, (size_t)out * 4),
                  "%s linear backward rerun not bit-identical", dlq_dtype_name(types[ti]));
            free(h0); free(h1); free(h2); free(k0); free(k1); free(k2);
            for (int k = 0; k < 2; k++) for (int j = 0; j < 3; j++) free(g[k][j]);
            free(wb); free(x); free(dy); free(scratch);
        }
}

int main(void) {
    dlq_rng r;
    dlq_rng_seed(&r, SEED);
    printf("seed %llu\n", (unsigned long long)SEED);
    test_rmsnorm(&r);
    test_rope(&r);
    test_swiglu(&r);
    test_attention(&r);
    test_xent(&r);
    test_kl(&r);
    test_embedding(&r);
    test_linear_fd(&r);
    test_linear_ref(&r);
    for (int i = 0; i < t_nops; i++) printf("  %-14s worst rel err %.3g\n", t_ops[i].op, t_ops[i].worst);
    return T_DONE();
}
