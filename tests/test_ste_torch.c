/* The C straight-through-estimator gradients of the DL-QAT quantized linear
 * layer (dlq_qlinear_forward / dlq_qlinear_backward, src/quant/qlinear.c)
 * against a PyTorch float64 autograd reference (tests/fixtures/ste, made by
 * scripts/gen_ste_fixture.py, which also asserts that autograd equals the
 * closed forms of docs/spec.md §2). Configurations: 3-bit groups of 16
 * with a ragged last group and LoRA r 4; 2-bit per-channel with LoRA r 2;
 * 4-bit groups of 8 without LoRA. Every configuration clamps at both ends.
 * Compared: y, dx, gs, gb, gm, gA, gB, and the integers q; each tensor within
 * TOL relative to its largest |value| (docs/numerics.md, "STE gradient check").
 * Negative control: with the LSQ gradient scale on, gs must NOT match. */
#include <jansson.h>

#include "io/safetensors.h"
#include "kernels/linear.h"
#include "quant/qlinear.h"
#include "quant/quant.h"
#include "train/tlinear.h"
#include "t.h"

#define FX "tests/fixtures/ste"
#define TOL 1e-4

/* fresh fp32 copy of a fixture tensor with the expected element count (NULL + FAIL otherwise) */
static float *get(const dlq_safetensors *st, const char *cfg, const char *name, int64_t numel) {
    const dlq_tensor_info *t = dlq_st_find(st, name);
    CHECK(t != NULL, "%s: tensor %s missing", cfg, name);
    if (!t) return NULL;
    CHECK(t->dtype == DLQ_F32 && dlq_tensor_numel(t) == numel && t->nbytes == (size_t)numel * sizeof(float),
          "%s: tensor %s: dtype %d, %lld elements, expected F32 x %lld", cfg, name, (int)t->dtype,
          (long long)dlq_tensor_numel(t), (long long)numel);
    if (t->dtype != DLQ_F32 || dlq_tensor_numel(t) != numel) return NULL;
    float *f = malloc((size_t)numel * sizeof *f + 1);
    memcpy(f, t->data, (size_t)numel * sizeof *f);
    return f;
}

/* max |got - ref| / max |ref|; prints the worst element */
static double relerr(const char *cfg, const char *what, const float *got, const float *ref, size_t n, int quiet) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    size_t w = 0;
    double e = t_maxabs(got, ref, n, &w) / (mx > 0 ? mx : 1);
    if (!quiet)
        printf("  %-13s %-3s n=%-4zu max|ref| %-10.4g worst rel %.3g (at %zu: C %.9g ref %.9g)\n", cfg, what, n, mx, e,
               w, got[w], ref[w]);
    return e;
}

static void run_config(json_t *c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *file = json_string_value(json_object_get(c, "file"));
    int bits = (int)json_integer_value(json_object_get(c, "bits"));
    int group = (int)json_integer_value(json_object_get(c, "group"));
    int64_t in = json_integer_value(json_object_get(c, "in")), out = json_integer_value(json_object_get(c, "out"));
    int r = (int)json_integer_value(json_object_get(c, "r"));
    int64_t n = json_integer_value(json_object_get(c, "n"));
    double alpha = json_number_value(json_object_get(c, "lora_alpha"));
    CHECK(name && file && bits >= 2 && bits <= 8 && in > 0 && out > 0 && n > 0 && r >= 0, "index.json entry malformed");
    if (!name || !file || in <= 0 || out <= 0 || n <= 0) return;

    char path[512];
    snprintf(path, sizeof path, FX "/%s", file);
    dlq_safetensors st;
    dlq_err err = {0};
    int rc = dlq_st_open(&st, path, &err);
    CHECK(rc == 0, "open %s: %s", path, err.msg);
    if (rc) return;

    dlq_qstate Q;
    memset(&Q, 0, sizeof Q);
    Q.spec = (dlq_qspec){.bits = bits, .group = group};
    CHECK(dlq_qspec_validate(&Q.spec, &err) == 0, "%s: %s", name, err.msg);
    Q.ngroups = dlq_qgroups(in, group);
    int64_t np = out * Q.ngroups;
    float *W0 = get(&st, name, "W0", out * in), *x = get(&st, name, "x", n * in), *dy = get(&st, name, "dy", n * out);
    Q.s = get(&st, name, "s", np);
    Q.b = get(&st, name, "b", np);
    Q.m = get(&st, name, "m", np);
    float *ry = get(&st, name, "y", n * out), *rdx = get(&st, name, "dx", n * in), *rq = get(&st, name, "q", out * in);
    float *rgs = get(&st, name, "gs", np), *rgb = get(&st, name, "gb", np), *rgm = get(&st, name, "gm", np);
    float *A = NULL, *B = NULL, *rgA = NULL, *rgB = NULL;
    if (r > 0) {
        A = get(&st, name, "A", (int64_t)r * in);
        B = get(&st, name, "B", out * r);
        rgA = get(&st, name, "gA", (int64_t)r * in);
        rgB = get(&st, name, "gB", out * r);
    }
    int ok = W0 && x && dy && Q.s && Q.b && Q.m && ry && rdx && rq && rgs && rgb && rgm && (r == 0 || (A && B && rgA && rgB));
    if (ok) {
        int nB = 0;
        for (int64_t i = 0; r > 0 && i < out * r; i++) nB += B[i] != 0;
        CHECK(r == 0 || nB == out * r, "%s: B must be non-zero (LoRA path exercised)", name);

        Q.gs = calloc((size_t)np, sizeof(float));
        Q.gb = calloc((size_t)np, sizeof(float));
        Q.gm = calloc((size_t)np, sizeof(float));
        dlq_tlinear L;
        memset(&L, 0, sizeof L);
        L.kind = DLQ_TL_QUANT;
        L.in = in;
        L.out = out;
        L.w0 = (dlq_weight){.data = W0, .dtype = DLQ_F32, .rows = out, .cols = in};
        L.r = r;
        L.scale = r > 0 ? (float)(alpha / r) : 0.0f;
        L.A = A;
        L.B = B;
        L.gA = r > 0 ? calloc((size_t)r * in, sizeof(float)) : NULL;
        L.gB = r > 0 ? calloc((size_t)out * r, sizeof(float)) : NULL;
        L.q = &Q;
        dlq_tl_ws ws;
        memset(&ws, 0, sizeof ws);
        ws.scratch = calloc(dlq_linear_scratch_floats(in) + 1, sizeof(float));
        ws.t = calloc((size_t)(n * (r > 0 ? r : 1)), sizeof(float));
        ws.u = calloc((size_t)(n * (r > 0 ? r : 1)), sizeof(float));
        ws.wq = calloc((size_t)(out * in), sizeof(float));
        ws.gq = calloc((size_t)(out * in), sizeof(float));
        float *y = calloc((size_t)(n * out), sizeof(float)), *dx = calloc((size_t)(n * in), sizeof(float));

        /* the integers first: a wrong rounding/clamp decision would explain any gradient mismatch */
        float *wp = malloc((size_t)(out * in) * sizeof *wp), *wq = malloc((size_t)(out * in) * sizeof *wq);
        int8_t *qi = malloc((size_t)(out * in));
        dlq_qlinear_wprime(&L, wp);
        dlq_fq_forward(wq, wp, out, in, &Q.spec, Q.s, Q.b, Q.m, qi);
        int qbad = 0, nlo = 0, nhi = 0, qn = dlq_qmin(bits), qx = dlq_qmax(bits);
        for (int64_t i = 0; i < out * in; i++) {
            qbad += (float)qi[i] != rq[i];
            nlo += qi[i] == qn;
            nhi += qi[i] == qx;
        }
        CHECK(qbad == 0, "%s: %d of %lld integers q differ from the reference", name, qbad, (long long)(out * in));
        CHECK(nlo > 0 && nhi > 0, "%s: fixture must reach both clamp bounds (%d at qmin, %d at qmax)", name, nlo, nhi);

        dlq_qlinear_forward(&L, y, x, n, &ws);
        dlq_qlinear_backward(&L, dx, dy, x, n, &ws);

        struct { const char *what; const float *got, *ref; int64_t n; } cmp[] = {
            {"y", y, ry, n * out},    {"dx", dx, rdx, n * in},         {"gs", Q.gs, rgs, np},
            {"gb", Q.gb, rgb, np},    {"gm", Q.gm, rgm, np},           {"gA", L.gA, rgA, (int64_t)r * in},
            {"gB", L.gB, rgB, out * r},
        };
        for (size_t k = 0; k < sizeof cmp / sizeof *cmp; k++) {
            if (cmp[k].n == 0) continue; /* no LoRA */
            double e = relerr(name, cmp[k].what, cmp[k].got, cmp[k].ref, (size_t)cmp[k].n, 0);
            CHECK(e <= TOL, "%s: %s rel error %.3g > %g", name, cmp[k].what, e, TOL);
        }

        /* negative control: the LSQ gradient scale changes gs, and the comparison must notice */
        float *gs2 = calloc((size_t)np, sizeof(float));
        float *gs_keep = Q.gs;
        Q.gs = gs2;
        Q.lsq = 1;
        memset(dx, 0, (size_t)(n * in) * sizeof *dx);
        dlq_qlinear_backward(&L, dx, dy, x, n, &ws);
        double e2 = relerr(name, "gs (LSQ on)", gs2, rgs, (size_t)np, 1);
        printf("  %-13s negative control: LSQ gs rel error %.3g (must be > %g)\n", name, e2, TOL);
        CHECK(e2 > 100 * TOL, "%s: LSQ-scaled gs should not match the plain STE reference (rel %.3g)", name, e2);
        Q.gs = gs_keep;
        free(gs2);

        free(wp); free(wq); free(qi); free(y); free(dx);
        free(ws.scratch); free(ws.t); free(ws.u); free(ws.wq); free(ws.gq);
        free(Q.gs); free(Q.gb); free(Q.gm); free(L.gA); free(L.gB);
    }
    free(W0); free(x); free(dy); free(Q.s); free(Q.b); free(Q.m);
    free(ry); free(rdx); free(rq); free(rgs); free(rgb); free(rgm);
    free(A); free(B); free(rgA); free(rgB);
    dlq_st_close(&st);
}

int main(void) {
    json_error_t je;
    json_t *idx = json_load_file(FX "/index.json", 0, &je);
    CHECK(idx != NULL, "%s/index.json: %s", FX, je.text);
    if (!idx) return T_DONE();
    json_t *cfgs = json_object_get(idx, "configs");
    CHECK(json_array_size(cfgs) >= 3, "index.json: expected >= 3 configurations");
    for (size_t i = 0; i < json_array_size(cfgs); i++) run_config(json_array_get(cfgs, i));
    json_decref(idx);
    return T_DONE();
}
