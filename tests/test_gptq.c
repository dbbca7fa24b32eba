/* GPTQ (src/quant/gptq.c) on single layers:
 *  1. against the PyTorch float64 reference scripts/gptq_ref.py (fixture
 *     tests/fixtures/gptq): five configurations (groups inside blocks, groups
 *     straddling blocks with a short last group, act-order with static groups,
 *     per-channel, one block), a dead input column. Dequantized weights within
 *     1e-4 of the largest weight, integers identical except for at most 0.5 %
 *     (a rounding tie decided differently by the last bits of LAPACK vs torch's
 *     Cholesky can flip one q; the error compensation then carries it);
 *  2. GPTQ's layer-output error below RTN's, on the fixture and on seeded
 *     random data generated here (several shapes and bit widths);
 *  3. the Hessian accumulation against a direct double sum, and bad input. */
#include <jansson.h>

#include "core/rng.h"
#include "io/safetensors.h"
#include "quant/gptq.h"
#include "t.h"

#define FX "tests/fixtures/gptq"

static const float *tensor(const dlq_safetensors *st, const char *name, int64_t numel) {
    const dlq_tensor_info *t = dlq_st_find(st, name);
    CHECK(t && t->dtype == DLQ_F32 && dlq_tensor_numel(t) == numel, "fixture tensor %s missing or malformed", name);
    return t && t->dtype == DLQ_F32 && dlq_tensor_numel(t) == numel ? (const float *)t->data : NULL;
}

/* sum over n rows of |x (W - Wq)^T|^2 */
static double out_err(const float *x, const float *W, const float *Wq, int64_t n, int64_t rows, int64_t cols) {
    double e = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double d = 0;
            for (int64_t j = 0; j < cols; j++) d += (double)x[t * cols + j] * ((double)W[r * cols + j] - Wq[r * cols + j]);
            e += d * d;
        }
    return e;
}

static void rtn_weights(const float *W, int64_t rows, int64_t cols, const dlq_qspec *q, float *out) {
    int64_t ng = dlq_qgroups(cols, q->group);
    float *s = malloc((size_t)(rows * ng) * 4), *b = malloc((size_t)(rows * ng) * 4), *m = malloc((size_t)(rows * ng) * 4);
    dlq_quant_init_rtn(W, rows, cols, q, 0, s, b, m);
    dlq_fq_forward(out, W, rows, cols, q, s, b, m, NULL);
    free(s); free(b); free(m);
}

static void fixture(void) {
    json_error_t je;
    json_t *idx = json_load_file(FX "/index.json", 0, &je);
    CHECK(idx != NULL, "cannot read %s/index.json: %s", FX, je.text);
    if (!idx) return;
    dlq_safetensors st;
    dlq_err err = {0};
    int rc = dlq_st_open(&st, FX "/gptq.safetensors", &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) { json_decref(idx); return; }
    int64_t rows = json_integer_value(json_object_get(idx, "rows")), cols = json_integer_value(json_object_get(idx, "cols"));
    int64_t n = json_integer_value(json_object_get(idx, "n"));
    const float *W = tensor(&st, "W", rows * cols), *X = tensor(&st, "X", n * cols);
    size_t i;
    json_t *c;
    float *wq = malloc((size_t)(rows * cols) * 4), *wr = malloc((size_t)(rows * cols) * 4);
    double *H = malloc((size_t)(cols * cols) * sizeof(double));
    int8_t *q = malloc((size_t)(rows * cols));
    json_array_foreach(json_object_get(idx, "configs"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        dlq_qspec spec = {(int)json_integer_value(json_object_get(c, "bits")), (int)json_integer_value(json_object_get(c, "group")), 0, 0};
        dlq_gptq_opts o;
        dlq_gptq_opts_default(&o);
        o.blocksize = (int)json_integer_value(json_object_get(c, "blocksize"));
        o.act_order = (int)json_integer_value(json_object_get(c, "act_order"));
        o.percdamp = json_number_value(json_object_get(c, "percdamp"));
        int64_t ng = dlq_qgroups(cols, spec.group);
        char nm[4][96];
        const char *keys[4] = {"wq", "q", "s", "b"};
        const float *ref[4];
        for (int k = 0; k < 4; k++) {
            snprintf(nm[k], sizeof nm[k], "%s.%s", name, keys[k]);
            ref[k] = tensor(&st, nm[k], k < 2 ? rows * cols : rows * ng);
        }
        if (!W || !X || !ref[0] || !ref[1] || !ref[2] || !ref[3]) continue;
        float *s = malloc((size_t)(rows * ng) * 4), *b = malloc((size_t)(rows * ng) * 4);
        memcpy(wq, W, (size_t)(rows * cols) * 4);
        memset(H, 0, (size_t)(cols * cols) * sizeof(double));
        dlq_gptq_add_hessian(H, X, n, cols);
        rc = dlq_gptq_layer(wq, rows, cols, H, &spec, &o, s, b, q, NULL, &err);
        CHECK(rc == 0, "%s: %s", name, err.msg);
        double mx = 0, dw = 0;
        int64_t qdiff = 0;
        for (int64_t k = 0; k < rows * cols; k++) {
            mx = fmax(mx, fabs(ref[0][k]));
            dw = fmax(dw, fabs((double)wq[k] - ref[0][k]));
            qdiff += (float)q[k] != ref[1][k];
        }
        double ds = 0;
        for (int64_t k = 0; k < rows * ng; k++) ds = fmax(ds, fmax(fabs(s[k] - ref[2][k]) / ref[2][k], fabs(b[k] - ref[3][k]) / mx));
        printf("  %-16s max|dW| %.3g (rel %.3g), q differ %lld / %lld, s/b rel %.3g\n", name, dw, dw / mx, (long long)qdiff,
               (long long)(rows * cols), ds);
        CHECK(dw / mx < 1e-4, "%s: dequantized weights differ from the reference by %.3g (max |w| %.3g)", name, dw, mx);
        CHECK(qdiff * 200 <= rows * cols, "%s: %lld integers differ from the reference", name, (long long)qdiff);
        CHECK(ds < 1e-4, "%s: group parameters differ from the reference (rel %.3g)", name, ds);
        /* every output weight is exactly s*q + b of its group */
        int exact = 1, gs = dlq_qgroup_size(cols, spec.group);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t g = j / gs;
                exact &= wq[r * cols + j] == s[r * ng + g] * (float)q[r * cols + j] + b[r * ng + g];
                exact &= q[r * cols + j] >= dlq_qmin(spec.bits) && q[r * cols + j] <= dlq_qmax(spec.bits);
            }
        CHECK(exact, "%s: output weights are not s*q + b of their integers", name);
        int dead_zero = 1;
        for (int64_t r = 0; r < rows; r++) dead_zero &= wq[r * cols + 5] == s[r * ng + 5 / gs] * q[r * cols + 5] + b[r * ng + 5 / gs];
        CHECK(dead_zero, "%s: dead column", name);
        rtn_weights(W, rows, cols, &spec, wr);
        double eg = out_err(X, W, wq, n, rows, cols), er = out_err(X, W, wr, n, rows, cols);
        CHECK(eg < er, "%s: GPTQ output error %.5g is not below RTN's %.5g", name, eg, er);
        double eref = json_number_value(json_object_get(c, "err_gptq"));
        CHECK(fabs(eg - eref) <= 1e-3 * eref, "%s: GPTQ output error %.6g vs reference %.6g", name, eg, eref);
        free(s); free(b);
    }
    free(wq); free(wr); free(H); free(q);
    dlq_st_close(&st);
    json_decref(idx);
}

/* seeded random layers: correlated inputs, GPTQ beats RTN on the layer output */
static void random_layers(void) {
    const uint64_t seed = 1234;
    printf("  random layers, seed %llu\n", (unsigned long long)seed);
    dlq_rng rng;
    dlq_rng_seed(&rng, seed);
    struct { int64_t rows, cols, n; int bits, group, act; } cfg[] = {
        {64, 192, 512, 3, 64, 0}, {32, 300, 400, 4, 128, 0}, {48, 128, 300, 2, 32, 1}, {16, 96, 200, 3, 0, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        int64_t rows = cfg[c].rows, cols = cfg[c].cols, n = cfg[c].n;
        float *W = malloc((size_t)(rows * cols) * 4), *wq = malloc((size_t)(rows * cols) * 4), *wr = malloc((size_t)(rows * cols) * 4);
        float *X = malloc((size_t)(n * cols) * 4), *Z = malloc((size_t)(n * cols) * 4);
        double *H = calloc((size_t)(cols * cols), sizeof(double));
        for (int64_t k = 0; k < rows * cols; k++) W[k] = (float)(0.05 * dlq_rng_normal(&rng));
        for (int64_t k = 0; k < n * cols; k++) Z[k] = (float)dlq_rng_normal(&rng);
        for (int64_t t = 0; t < n; t++) /* x_j = z_j + 0.8 z_{j-1}: neighbouring inputs correlate */
            for (int64_t j = 0; j < cols; j++)
                X[t * cols + j] = Z[t * cols + j] + (j ? 0.8f * Z[t * cols + j - 1] : 0.0f);
        dlq_qspec spec = {cfg[c].bits, cfg[c].group, 0, 0};
        dlq_gptq_opts o;
        dlq_gptq_opts_default(&o);
        o.act_order = cfg[c].act;
        int64_t ng = dlq_qgroups(cols, spec.group);
        float *s = malloc((size_t)(rows * ng) * 4), *b = malloc((size_t)(rows * ng) * 4);
        dlq_gptq_add_hessian(H, X, n, cols);
        memcpy(wq, W, (size_t)(rows * cols) * 4);
        dlq_err err = {0};
        int rc = dlq_gptq_layer(wq, rows, cols, H, &spec, &o, s, b, NULL, NULL, &err);
        CHECK(rc == 0, "%s", err.msg);
        rtn_weights(W, rows, cols, &spec, wr);
        double eg = out_err(X, W, wq, n, rows, cols), er = out_err(X, W, wr, n, rows, cols);
        printf("  [%lld x %lld] W%d g%d%s: output error GPTQ %.4g, RTN %.4g (%.3f)\n", (long long)rows, (long long)cols, cfg[c].bits,
               cfg[c].group, cfg[c].act ? " act-order" : "", eg, er, eg / er);
        CHECK(eg < 0.9 * er, "config %zu: GPTQ output error %.5g not clearly below RTN's %.5g", c, eg, er);
        free(W); free(wq); free(wr); free(X); free(Z); free(H); free(s); free(b);
    }
}

static void hessian_and_errors(void) {
    dlq_rng rng;
    dlq_rng_seed(&rng, 7);
    int64_t n = 300, in = 13; /* more rows than one accumulation chunk */
    float *x = malloc((size_t)(n * in) * 4);
    for (int64_t k = 0; k < n * in; k++) x[k] = (float)dlq_rng_normal(&rng);
    double *H = calloc((size_t)(in * in), sizeof(double));
    dlq_gptq_add_hessian(H, x, 100, in);
    dlq_gptq_add_hessian(H, x + 100 * in, n - 100, in);
    double worst = 0;
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < in; j++) {
            double r = 0;
            for (int64_t t = 0; t < n; t++) r += 2.0 * x[t * in + i] * x[t * in + j];
            worst = fmax(worst, fabs(H[i * in + j] - r) / fabs(r + 1e-30));
        }
    CHECK(worst < 1e-12, "H = 2 X^T X: worst relative error %.3g", worst);
    /* a NaN weight does not crash; a non-positive-definite H after retries is an error */
    float w[4] = {1, 2, 3, 4}, s[2], b[2];
    double Hn[4] = {1, 0, 0, -1e30};
    dlq_qspec spec = {3, 0, 0, 0};
    dlq_gptq_opts o;
    dlq_gptq_opts_default(&o);
    dlq_err err = {0};
    int rc = dlq_gptq_layer(w, 2, 2, Hn, &spec, &o, s, b, NULL, NULL, &err);
    CHECK(rc != 0 && strstr(err.msg, "positive definite"), "indefinite H: rc %d, '%s'", rc, err.msg);
    dlq_qspec bad = {9, 0, 0, 0};
    double Hi[4] = {1, 0, 0, 1};
    rc = dlq_gptq_layer(w, 2, 2, Hi, &bad, &o, s, b, NULL, NULL, &err);
    CHECK(rc != 0 && strstr(err.msg, "bits"), "bits 9: rc %d, '%s'", rc, err.msg);
    free(x);
    free(H);
}

int main(void) {
    fixture();
    random_layers();
    hessian_and_errors();
    return T_DONE();
}
