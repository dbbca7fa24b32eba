/* --rotate (src/model/rotate.c): the transform T against an explicit
 * Sylvester-Hadamard (x) Q_m matrix built here, its orthogonality for
 * power-of-two and other sizes; a rotated model gives the same logits as the
 * original on every fixture family (tied, untied, GQA, head_dim != dim /
 * n_heads, Qwen2 biases, bf16, llama2.c); a quantized model is refused; and
 * the CLI path: quantize --rotate writes a .dlq whose perplexity is the
 * run's, with all-ones norms and an untied head, and its checkpoints resume
 * only with --rotate. */
#include <stdint.h>

#include <jansson.h>

#include "core/rng.h"
#include "kernels/linear.h"
#include "model/rotate.h"
#include "quant/rotlearn.h"
#include "t_model.h"

static int popcount(unsigned x) { return __builtin_popcount(x); }

/* T = (Q_m (x) H_p) D written out entry by entry */
static void reference_dense(const dlq_rot *r, double *out) {
    int n = r->n, p = r->p;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int bi = i / p, ii = i % p, bj = j / p, jj = j % p;
            double q = r->m == 1 ? 1.0 : r->qm[(size_t)bi * r->m + bj];
            double h = ((popcount((unsigned)(ii & jj)) & 1) ? -1.0 : 1.0) / sqrt((double)p);
            out[(size_t)i * n + j] = q * h * r->sign[j];
        }
}

static void test_transform(void) {
    const int sizes[] = {1, 2, 7, 12, 48, 64, 96, 160, 172};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int n = sizes[t];
        dlq_rot r;
        dlq_err err = {0};
        if (dlq_rot_init(&r, n, 1234 + t, &err)) { CHECK(0, "init %d: %s", n, err.msg); continue; }
        CHECK(r.p * r.m == n && (r.p & (r.p - 1)) == 0 && r.m % 2 == 1, "n %d: p %d m %d", n, r.p, r.m);
        double *ref = malloc((size_t)n * n * sizeof *ref);
        float *dense = malloc((size_t)n * n * sizeof *dense), *x = malloc((size_t)n * sizeof *x);
        reference_dense(&r, ref);
        dlq_rot_dense(&r, dense);
        double e = 0, eo = 0;
        for (size_t i = 0; i < (size_t)n * n; i++) e = fmax(e, fabs(dense[i] - ref[i]));
        CHECK(e < 2e-6, "n %d: T differs from the explicit (Q (x) H) D by %g", n, e);
        for (int i = 0; i < n; i++) /* T T^T = I */
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) s += ref[(size_t)i * n + k] * ref[(size_t)j * n + k];
                eo = fmax(eo, fabs(s - (i == j)));
            }
        CHECK(eo < 1e-6, "n %d: T is not orthogonal (%g)", n, eo);
        /* on a random vector, against the double-precision product */
        dlq_rng g;
        dlq_rng_seed(&g, 99 + t);
        float *x0 = malloc((size_t)n * sizeof *x0);
        for (int i = 0; i < n; i++) x0[i] = x[i] = (float)dlq_rng_normal(&g);
        dlq_rot_apply(&r, x);
        double ev = 0;
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += ref[(size_t)i * n + k] * x0[k];
            ev = fmax(ev, fabs(s - x[i]));
        }
        CHECK(ev < 1e-5, "n %d: T x off by %g", n, ev);
        /* same seed, same T; another seed, another T */
        dlq_rot r2, r3;
        if (!dlq_rot_init(&r2, n, 1234 + t, &err) && !dlq_rot_init(&r3, n, 5678 + t, &err)) {
            int same = !memcmp(r.sign, r2.sign, (size_t)n * sizeof *r.sign), other = 0;
            for (int i = 0; i < n; i++) other += r.sign[i] != r3.sign[i];
            CHECK(same && (n < 8 || other > 0), "n %d: seeds (same %d, differing signs %d)", n, same, other);
            dlq_rot_free(&r2);
            dlq_rot_free(&r3);
        }
        free(ref); free(dense); free(x); free(x0);
        dlq_rot_free(&r);
    }
}

static double loss_in(const double *R, const float *W, const float *Y, int rows, int d) {
    double L = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < d; j++) {
            double v = 0;
            for (int k = 0; k < d; k++) v += W[i * d + k] * R[j * d + k];
            L += 0.5 * (v - Y[i * d + j]) * (v - Y[i * d + j]);
        }
    return L;
}

static double loss_out(const double *R, const float *W, const float *Y, int cols, int d) {
    double L = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < cols; j++) {
            double v = 0;
            for (int k = 0; k < d; k++) v += R[i * d + k] * W[k * cols + j];
            L += 0.5 * (v - Y[i * cols + j]) * (v - Y[i * cols + j]);
        }
    return L;
}

/* dL/dR of L(R) = 0.5 ||W R^T - Y||^2 (input side) and 0.5 ||R W - Y||^2
 * (output side) against central differences in double */
static void test_rotgrad(void) {
    const int d = 6, rows = 5, cols = 7;
    dlq_rng g;
    dlq_rng_seed(&g, 4242);
    float R[36], Wi[30], Yi[30], Wo[42], Yo[42], G[42], gr[36];
    for (int i = 0; i < 36; i++) R[i] = (float)dlq_rng_normal(&g);
    for (int i = 0; i < 30; i++) { Wi[i] = (float)dlq_rng_normal(&g); Yi[i] = (float)dlq_rng_normal(&g); }
    for (int i = 0; i < 42; i++) { Wo[i] = (float)dlq_rng_normal(&g); Yo[i] = (float)dlq_rng_normal(&g); }
    for (int side = 0; side < 2; side++) {
        double Rd[36]; /* the losses in double, for a given R */
        for (int i = 0; i < 36; i++) Rd[i] = R[i];
        memset(gr, 0, sizeof gr);
        if (side == 0) {
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < d; j++) {
                    double v = 0;
                    for (int k = 0; k < d; k++) v += Wi[i * d + k] * R[j * d + k];
                    G[i * d + j] = (float)(v - Yi[i * d + j]);
                }
            dlq_rotgrad_in(gr, d, G, Wi, rows);
        } else {
            for (int i = 0; i < d; i++)
                for (int j = 0; j < cols; j++) {
                    double v = 0;
                    for (int k = 0; k < d; k++) v += R[i * d + k] * Wo[k * cols + j];
                    G[i * cols + j] = (float)(v - Yo[i * cols + j]);
                }
            dlq_rotgrad_out(gr, d, G, Wo, cols);
        }
        double worst = 0;
        for (int e = 0; e < 36; e++) {
            const double h = 1e-4;
            double save = Rd[e];
            Rd[e] = save + h;
            double lp = side == 0 ? loss_in(Rd, Wi, Yi, rows, d) : loss_out(Rd, Wo, Yo, cols, d);
            Rd[e] = save - h;
            double lm = side == 0 ? loss_in(Rd, Wi, Yi, rows, d) : loss_out(Rd, Wo, Yo, cols, d);
            Rd[e] = save;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - gr[e]) / (1 + fabs(fd)));
        }
        CHECK(worst < 1e-4, "%s-side dL/dR vs central differences: worst relative error %g", side ? "output" : "input", worst);
    }
    /* Gram-Schmidt gives orthonormal rows */
    dlq_orthonormalize(R, d);
    double eo = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)R[i * d + k] * R[j * d + k];
            eo = fmax(eo, fabs(s - (i == j)));
        }
    CHECK(eo < 1e-6, "orthonormalize: |R R^T - I| = %g", eo);
}

/* the per-head rotations' map: rows (v) W_rot[h] = U_h W[h]; columns (o) W_rot[:, j] = W[:, j] U_kv(j)^T */
static void head_map(const double *U, const float *W, double *out, int hd, int nq, int nkv, int n, int rows_side) {
    if (rows_side) /* W [nkv*hd][n] */
        for (int h = 0; h < nkv; h++)
            for (int a = 0; a < hd; a++)
                for (int c = 0; c < n; c++) {
                    double v = 0;
                    for (int k = 0; k < hd; k++) v += U[(h * hd + a) * hd + k] * W[(h * hd + k) * n + c];
                    out[(h * hd + a) * n + c] = v;
                }
    else /* W [n][nq*hd] */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < nq; j++)
                for (int a = 0; a < hd; a++) {
                    double v = 0;
                    const double *u = U + (j / (nq / nkv)) * hd * hd;
                    for (int k = 0; k < hd; k++) v += W[i * nq * hd + j * hd + k] * u[a * hd + k];
                    out[i * nq * hd + j * hd + a] = v;
                }
}

/* dL/dU of L(U) = 0.5 ||map(U, W) - Y||^2 for both maps (GQA: 2 q heads per kv head) against central differences */
static void test_headgrad(void) {
    enum { hd = 3, nq = 4, nkv = 2, n = 5, NU = nkv * hd * hd, NW = n * nq * hd };
    dlq_rng g;
    dlq_rng_seed(&g, 777);
    double U[NU], out[NW];
    float W[NW], Y[NW], G[NW], gu[NU];
    for (int i = 0; i < NU; i++) U[i] = dlq_rng_normal(&g);
    for (int side = 0; side < 2; side++) {
        int nw = side ? nkv * hd * n : NW;
        for (int i = 0; i < nw; i++) { W[i] = (float)dlq_rng_normal(&g); Y[i] = (float)dlq_rng_normal(&g); }
        head_map(U, W, out, hd, nq, nkv, n, side);
        for (int i = 0; i < nw; i++) G[i] = (float)(out[i] - Y[i]);
        memset(gu, 0, sizeof gu);
        if (side) dlq_headgrad_rows(gu, hd, nkv, G, W, n);
        else dlq_headgrad_cols(gu, hd, nq, nkv, G, W, n);
        double worst = 0;
        for (int e = 0; e < NU; e++) {
            const double h = 1e-4, save = U[e];
            double lp = 0, lm = 0;
            U[e] = save + h;
            head_map(U, W, out, hd, nq, nkv, n, side);
            for (int i = 0; i < nw; i++) lp += 0.5 * (out[i] - Y[i]) * (out[i] - Y[i]);
            U[e] = save - h;
            head_map(U, W, out, hd, nq, nkv, n, side);
            for (int i = 0; i < nw; i++) lm += 0.5 * (out[i] - Y[i]) * (out[i] - Y[i]);
            U[e] = save;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - gu[e]) / (1 + fabs(fd)));
        }
        CHECK(worst < 1e-4, "per-head dL/dU (%s) vs central differences: worst relative error %g", side ? "v rows" : "o columns",
              worst);
    }
}

/* the range chain: L(W) = sum_g cs_g s_g(W) + cb_g b_g(W) with s, b the RTN
 * init of W, against central differences (ragged groups, both quantizers) */
static void test_range_grad(void) {
    enum { ROWS = 3, COLS = 11 };
    dlq_rng g;
    dlq_rng_seed(&g, 77);
    for (int sym = 0; sym < 2; sym++) {
        dlq_qspec q = {.bits = 3, .group = 4, .sym = sym};
        int ng = (int)dlq_qgroups(COLS, q.group);
        float w[ROWS * COLS], cs[ROWS * 3], cb[ROWS * 3], gw[ROWS * COLS] = {0}, s[ROWS * 3], b[ROWS * 3], m[ROWS * 3];
        for (int i = 0; i < ROWS * COLS; i++) w[i] = (float)dlq_rng_normal(&g);
        for (int i = 0; i < ROWS * ng; i++) { cs[i] = (float)dlq_rng_normal(&g); cb[i] = (float)dlq_rng_normal(&g); }
        dlq_rtn_range_grad(gw, w, ROWS, COLS, &q, cs, cb);
        double worst = 0;
        for (int e = 0; e < ROWS * COLS; e++) {
            const float h = 1e-3f, save = w[e];
            double l[2];
            for (int k = 0; k < 2; k++) {
                w[e] = save + (k ? -h : h);
                dlq_quant_init_rtn(w, ROWS, COLS, &q, 0, s, b, m);
                l[k] = 0;
                for (int i = 0; i < ROWS * ng; i++) l[k] += (double)cs[i] * s[i] + (double)cb[i] * b[i];
            }
            w[e] = save;
            double fd = (l[0] - l[1]) / (2.0 * h);
            worst = fmax(worst, fabs(fd - gw[e]) / (1 + fabs(fd)));
        }
        CHECK(worst < 2e-3, "%s range gradient vs central differences: worst relative error %g", sym ? "symmetric" : "asymmetric",
              worst);
    }
}

static int all_ones(const dlq_weight *w) {
    if (w->dtype != DLQ_F32) return 0;
    for (int64_t j = 0; j < w->cols; j++)
        if (((const float *)w->data)[j] != 1.0f) return 0;
    return 1;
}

static void test_model(const char *path, const char *what) {
    dlq_model *a = NULL, *b = NULL;
    dlq_err err = {0};
    if (dlq_model_load(&a, path, NULL, &err) || dlq_model_load(&b, path, NULL, &err)) {
        CHECK(0, "%s: load: %s", what, err.msg);
        dlq_model_destroy(a);
        return;
    }
    int rc = dlq_model_rotate(b, 7, &err);
    CHECK(rc == 0, "%s: rotate: %s", what, err.msg);
    if (!rc) {
        const int T = 12;
        int32_t ids[12];
        for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 1) % a->cfg.vocab_size);
        size_t n = (size_t)T * a->cfg.vocab_size;
        float *la = malloc(n * 4), *lb = malloc(n * 4);
        double mag, d = t_logit_diff(b, a, ids, T, lb, la, &mag);
        /* fp32 rounding only: the rotation is exact in real arithmetic */
        CHECK(d <= 2e-5 * (1 + mag), "%s: rotated logits differ by %g (max |logit| %g)", what, d, mag);
        CHECK(!b->cfg.tied && b->lm_head.data != b->tok_emb.data, "%s: the head is untied", what);
        int ones = all_ones(&b->out_norm);
        for (int l = 0; l < b->cfg.n_layers; l++) ones &= all_ones(&b->layers[l].attn_norm) && all_ones(&b->layers[l].ffn_norm);
        CHECK(ones, "%s: norm weights are all one", what);
        /* the weights did move: the first embedding row is not the original's */
        float *ra = malloc((size_t)a->cfg.dim * 4), *rb = malloc((size_t)a->cfg.dim * 4);
        dlq_weight_row(&a->tok_emb, 1, ra);
        dlq_weight_row(&b->tok_emb, 1, rb);
        CHECK(t_maxabs(ra, rb, (size_t)a->cfg.dim, NULL) > 1e-3, "%s: the embedding is unchanged", what);
        free(ra); free(rb); free(la); free(lb);
    }
    dlq_model_destroy(a);
    dlq_model_destroy(b);
}

#define M "models/stories260K/stories260K.bin"
#define DIR "build/tests/rotate"

static void test_cli(void) {
    static char o[1 << 16];
    if (system("mkdir -p " DIR) != 0) { CHECK(0, "mkdir"); return; }
    int rc = t_run("build/dlqat sample --model " M " --n 8 --len 64 --seed 2 --out " DIR "/eval.tok", o, sizeof o);
    CHECK(rc == 0, "sample (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --group 32 --rotate --eval-tokens " DIR
               "/eval.tok --out " DIR "/r.dlq --json " DIR "/r.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "[quantize] rotated"), "quantize --rotate (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --group 32 --eval-tokens " DIR "/eval.tok --out " DIR
               "/n.dlq --json " DIR "/n.json", o, sizeof o);
    CHECK(rc == 0, "quantize (rc %d): %s", rc, o);
    double fp_r = t_json_num(DIR "/r.json", "ppl_fp"), fp_n = t_json_num(DIR "/n.json", "ppl_fp");
    double q_r = t_json_num(DIR "/r.json", "ppl_after");
    CHECK(t_json_num(DIR "/r.json", "rotate") == 1 && t_json_num(DIR "/n.json", "rotate") == 0, "JSON records --rotate");
    CHECK(fabs(fp_r - fp_n) <= 1e-4 * fp_n, "full-precision ppl with and without --rotate: %g vs %g", fp_r, fp_n);
    /* Whether the rotated RTN model is better is an outcome, not a guarantee (on the original stories260K
       W4 g32 it is not: 2.971 vs 2.965 on these rows); the benchmark is the README's stories260K table.
       What --rotate guarantees is the function (above) and a valid quantized model (below). */
    CHECK(q_r > 0 && isfinite(q_r), "rotated RTN ppl %g", q_r);
    rc = t_run("DLQ_QACT=f32 build/dlqat ppl --model " DIR "/r.dlq --tokens " DIR "/eval.tok --json " DIR "/rp.json", o, sizeof o);
    double got = t_json_num(DIR "/rp.json", "ppl");
    CHECK(rc == 0 && fabs(got - q_r) <= 1e-4 * q_r, "ppl of the rotated .dlq %g vs the run's %g (rc %d): %s", got, q_r, rc, o);
    dlq_model *m = NULL;
    dlq_err err = {0};
    if (!dlq_model_load(&m, DIR "/r.dlq", NULL, &err)) {
        CHECK(!m->cfg.tied, "the rotated .dlq has an untied head");
        rc = dlq_model_rotate(m, 1, &err);
        CHECK(rc == DLQ_EINVAL && strstr(err.msg, "already quantized"), "rotating a .dlq: rc %d: %s", rc, err.msg);
        dlq_model_destroy(m);
    } else CHECK(0, "load r.dlq: %s", err.msg);
    rc = t_run("build/dlqat quantize --model " DIR "/r.dlq --method rtn --bits 4 --rotate --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 1 && strstr(o, "--rotate:") && strstr(o, "already quantized"), "quantize --rotate on a .dlq (rc %d): %s", rc, o);
    /* --rotate-steps: the learned rotation keeps the model's function (FP perplexity: R stays orthogonal) and moves
       the basis (the RTN model differs from the Hadamard start's). Its gradient is checked against central
       differences above (test_rotgrad). Whether 30 Adam/Cayley steps lower the loss is an outcome, not a guarantee:
       the loss re-rounds the weights at every step (piecewise constant; the STE gradient is not its gradient), and
       on one fixed batch the same command measured 0.0727 -> 0.0629 with OpenBLAS's Haswell kernels but
       0.0727 -> 0.0762 with its SkylakeX kernels. So it is not asserted here (benchmark: README, stories260K). */
    rc = t_run("build/dlqat sample --model " M " --n 24 --len 64 --seed 1 --out " DIR "/train.tok", o, sizeof o);
    CHECK(rc == 0, "sample (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --group 32 --rotate-steps 30 --loss kl --batch 24 "
               "--data " DIR "/train.tok --eval-tokens " DIR "/eval.tok --out " DIR "/l.dlq --json " DIR "/l.json", o, sizeof o);
    CHECK(rc == 0 && strstr(o, "[quantize] learned rotation: 30 steps"), "quantize --rotate-steps (rc %d): %s", rc, o);
    double fp_l = t_json_num(DIR "/l.json", "ppl_fp"), q_l = t_json_num(DIR "/l.json", "ppl_after");
    double l0 = t_json_num(DIR "/l.json", "rotate_loss_first"), l1 = t_json_num(DIR "/l.json", "rotate_loss_last");
    CHECK(fabs(fp_l - fp_n) <= 1e-4 * fp_n, "full-precision ppl after the learned rotation: %g vs %g", fp_l, fp_n);
    CHECK(l0 > 0 && l1 > 0 && isfinite(l0) && isfinite(l1), "learned rotation: training losses %g -> %g", l0, l1);
    CHECK(fabs(q_l - q_r) > 1e-6 * q_r, "the learned rotation left the RTN model unchanged (ppl %g vs %g)", q_l, q_r);
    CHECK(q_l > 0 && isfinite(q_l), "RTN ppl after the learned rotation %g", q_l);
    CHECK(t_json_num(DIR "/l.json", "rotate_steps") == 30, "JSON records the rotation learning");
    /* --rotate-heads: the per-head v/o rotations are learned too; same function, same starting point
       (U = I: the first step's loss equals R alone's, computed the same way) */
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --group 32 --rotate-steps 30 --rotate-heads --loss kl "
               "--batch 24 --data " DIR "/train.tok --eval-tokens " DIR "/eval.tok --out " DIR "/h.dlq --json " DIR "/h.json",
               o, sizeof o);
    CHECK(rc == 0 && strstr(o, "[quantize] learned rotation: 30 steps"), "quantize --rotate-heads (rc %d): %s", rc, o);
    double fp_h = t_json_num(DIR "/h.json", "ppl_fp"), q_h = t_json_num(DIR "/h.json", "ppl_after");
    double h0 = t_json_num(DIR "/h.json", "rotate_loss_first"), h1 = t_json_num(DIR "/h.json", "rotate_loss_last");
    CHECK(fabs(fp_h - fp_n) <= 1e-4 * fp_n, "full-precision ppl after the learned head rotations: %g vs %g", fp_h, fp_n);
    CHECK(fabs(h0 - l0) <= 1e-6 * l0, "first-step loss with --rotate-heads %g vs R alone %g (same start)", h0, l0);
    CHECK(h1 > 0 && isfinite(h1), "--rotate-heads: last training loss %g", h1);
    CHECK(q_h > 0 && isfinite(q_h), "RTN ppl after --rotate-heads %g", q_h);
    CHECK(t_json_num(DIR "/h.json", "rotate_heads") == 1, "JSON records --rotate-heads");
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --rotate-heads --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "give --rotate-steps"), "--rotate-heads without --rotate-steps (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --rotate-steps 5 --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 2 && strstr(o, "--rotate-steps learns on --data"), "--rotate-steps without --data (rc %d): %s", rc, o);
    rc = t_run("build/dlqat quantize --model " M " --method rtn --bits 4 --rotate-steps 5 --targets q_proj --data " DIR
               "/train.tok --out " DIR "/x.dlq", o, sizeof o);
    CHECK(rc == 1 && strstr(o, "every projection quantized"), "--rotate-steps with --targets q_proj (rc %d): %s", rc, o);
    /* a checkpoint of a --rotate run does not resume without --rotate (its s, b, m, LoRA belong to the
       rotated weights) */
    const char *tr = "build/dlqat quantize --model " M " --bits 4 --group 32 --data " DIR "/eval.tok --loss kl --phase1-steps 2 "
                     "--steps 2 --batch 2 --ckpt-every 2 --keep-work --out " DIR "/t.dlq";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --rotate", tr);
    rc = t_run(cmd, o, sizeof o);
    CHECK(rc == 0, "training with --rotate (rc %d): %s", rc, o);
    snprintf(cmd, sizeof cmd, "%s --resume", tr);
    rc = t_run(cmd, o, sizeof o);
    CHECK(rc == 1 && strstr(o, "rotate true; this command has rotate false"), "--resume without --rotate (rc %d): %s", rc, o);
    snprintf(cmd, sizeof cmd, "%s --rotate --resume", tr);
    rc = t_run(cmd, o, sizeof o);
    CHECK(rc == 0 && strstr(o, "resumed at step 4"), "--resume with --rotate (rc %d): %s", rc, o);
}

int main(void) {
    test_transform();
    test_rotgrad();
    test_headgrad();
    test_range_grad();
    test_model("tests/fixtures/hf/llama", "llama (untied, GQA)");
    test_model("tests/fixtures/hf/llama-tied", "llama-tied (head_dim 32 x 4 heads != dim 64)");
    test_model("tests/fixtures/hf/qwen2", "qwen2 (q/k/v biases)");
    test_model("tests/fixtures/hf/mistral", "mistral");
    test_model("tests/fixtures/hf/llama-bf16", "llama-bf16");
    test_model(M, "stories260K (llama2.c, tied)");
    test_model("models/english-mix-7M", "english-mix-7M");
    test_cli();
    return T_DONE();
}
