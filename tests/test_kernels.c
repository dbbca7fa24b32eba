/* Fast kernels vs their scalar references, on odd sizes, tails and n = 1. */
#include "core/rng.h"
#include "kernels/linear.h"
#include "kernels/vec.h"
#include "nn/nn.h"
#include "t.h"

static const uint64_t SEED = 20261123;

static void fill(dlq_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)dlq_rng_normal(r) * scale;
}

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

static void test_vec(dlq_rng *r) {
    size_t sizes[] = {0, 1, 7, 15, 16, 17, 31, 33, 255, 1000, 4099};
    dlq_dtype types[] = {DLQ_F32, DLQ_BF16, DLQ_F16};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            size_t n = sizes[si];
            dlq_weight w;
            void *buf = make_weight(r, types[ti], 1, (int64_t)n, &w);
            float *x = malloc(n * 4 + 4), *wf = malloc(n * 4 + 4), *wf2 = malloc(n * 4 + 4);
            fill(r, x, n, 1.0f);
            /* conversion: exact against the scalar converters */
            dlq_to_f32(wf, buf, types[ti], n);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                float ref = types[ti] == DLQ_F32 ? ((float *)buf)[i]
                          : types[ti] == DLQ_BF16 ? dlq_bf16_to_f32(((uint16_t *)buf)[i]) : dlq_f16_to_f32(((uint16_t *)buf)[i]);
                wf2[i] = ref;
                bad += wf[i] != ref;
            }
            CHECK(bad == 0, "%s convert n=%zu: %d mismatches (seed %llu)", dlq_dtype_name(types[ti]), n, bad, (unsigned long long)SEED);
            double ref = 0, mag = 0;
            for (size_t i = 0; i < n; i++) { ref += (double)wf2[i] * x[i]; mag += fabs((double)wf2[i] * x[i]); }
            float got = dlq_dot_w(buf, types[ti], x, n);
            CHECK(fabs(got - ref) <= 1e-5 * (mag + 1), "%s dot n=%zu: %.9g vs %.9g", dlq_dtype_name(types[ti]), n, got, ref);
            free(buf); free(x); free(wf); free(wf2);
        }
}

static void test_linear(dlq_rng *r) {
    int64_t shapes[][3] = {{1, 7, 5}, {3, 33, 17}, {4, 64, 100}, {5, 65, 31}, {17, 129, 70}, {64, 256, 300}};
    dlq_dtype types[] = {DLQ_F32, DLQ_BF16, DLQ_F16};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int64_t n = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            dlq_weight w, b;
            void *wb = make_weight(r, types[ti], out, in, &w), *bb = make_weight(r, types[ti], 1, out, &b);
            float *x = malloc((size_t)(n * in) * 4), *y = malloc((size_t)(n * (out + 3)) * 4), *y2 = malloc((size_t)(n * (out + 3)) * 4);
            float *scratch = malloc(dlq_linear_scratch_floats(in) * 4);
            fill(r, x, (size_t)(n * in), 1.0f);
            for (int withb = 0; withb < 2; withb++) {
                dlq_linear(y, out + 3, x, n, &w, withb ? &b : NULL, scratch); /* ldy > out: strided output */
                dlq_linear_ref(y2, out + 3, x, n, &w, withb ? &b : NULL);
                double worst = 0;
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < out; j++) {
                        double d = fabs((double)y[i * (out + 3) + j] - y2[i * (out + 3) + j]);
                        if (d > worst) worst = d;
                    }
                CHECK(worst <= 1e-4 * sqrt((double)in), "%s linear %lldx%lld->%lld bias %d: max err %.3g", dlq_dtype_name(types[ti]),
                      (long long)n, (long long)in, (long long)out, withb, worst);
            }
            free(wb); free(bb); free(x); free(y); free(y2); free(scratch);
        }
}

static void test_norm_rope(dlq_rng *r) {
    int n = 5, d = 37;
    float x[5 * 37], w[37], o[5 * 37];
    fill(r, x, sizeof x / 4, 2.0f);
    fill(r, w, 37, 1.0f);
    dlq_rmsnorm_forward(o, x, w, n, d, 1e-5f);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)x[i * d + j] * x[i * d + j];
        double rr = 1 / sqrt(ss / d + 1e-5);
        for (int j = 0; j < d; j++) worst = fmax(worst, fabs(o[i * d + j] - w[j] * x[i * d + j] * rr));
    }
    CHECK(worst < 1e-5, "rmsnorm max err %.3g", worst);
    /* rope: rotation preserves pair norms and matches the closed form */
    int heads = 3, hd = 6, P = 9;
    float q[2 * 18], q0[2 * 18], cs[9 * 3], sn[9 * 3];
    int32_t pos[2] = {0, 8};
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 3; i++) { cs[p * 3 + i] = (float)cos(p * pow(100.0, -i / 3.0)); sn[p * 3 + i] = (float)sin(p * pow(100.0, -i / 3.0)); }
    fill(r, q, 36, 1.0f);
    memcpy(q0, q, sizeof q);
    dlq_rope_forward(q, 2, heads, hd, pos, cs, sn);
    worst = 0;
    for (int t = 0; t < 2; t++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < 3; i++) {
                double a = q0[t * 18 + h * 6 + i], b = q0[t * 18 + h * 6 + i + 3], th = pos[t] * pow(100.0, -i / 3.0);
                worst = fmax(worst, fabs(q[t * 18 + h * 6 + i] - (a * cos(th) - b * sin(th))));
                worst = fmax(worst, fabs(q[t * 18 + h * 6 + i + 3] - (b * cos(th) + a * sin(th))));
            }
    CHECK(worst < 1e-5, "rope max err %.3g", worst);
}

/* the softmax exponential (kernels/vec.h) against exp() in double */
static void test_exp_softmax(dlq_rng *r) {
    enum { N = 20001 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -90.0f * (float)i / (N - 1); /* 0 .. -90, the cut at -87 included */
    dlq_exp_neg(y, x, N);
    double worst = 0;
    int below_ok = 1;
    for (int i = 0; i < N; i++) {
        if (x[i] < -87.0f) { below_ok &= y[i] == 0.0f; continue; }
        double e = exp((double)x[i]);
        worst = fmax(worst, fabs(y[i] - e) / e);
    }
    CHECK(worst < 3e-7, "exp: max relative error %g on [-87, 0]", worst);
    CHECK(below_ok, "exp below -87 is 0");
    float sp[3] = {-INFINITY, NAN, 0.0f};
    dlq_exp_neg(sp, sp, 3);
    CHECK(sp[0] == 0.0f && isnan(sp[1]) && sp[2] == 1.0f, "exp(-inf) %g, exp(nan) %g, exp(0) %g", sp[0], sp[1], sp[2]);
    /* softmax of rows of every length 1..40 (tails of the 8-lane loops), wide range */
    for (int n = 1; n <= 40; n++) {
        float v[40];
        double ref[40], mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++) { v[i] = (float)(8.0 * dlq_rng_normal(r)); mx = fmax(mx, v[i]); }
        for (int i = 0; i < n; i++) sum += (ref[i] = exp((double)v[i] - mx));
        dlq_softmax_inplace(v, (size_t)n);
        double e = 0, tot = 0;
        for (int i = 0; i < n; i++) { e = fmax(e, fabs(v[i] - ref[i] / sum)); tot += v[i]; }
        CHECK(e < 1e-6 && fabs(tot - 1) < 1e-6, "softmax n %d: max err %g, sum %.9f", n, e, tot);
    }
    /* sigmoid over [-100, 100]: relative error where sigma is a normal float, 0 below */
    for (int i = 0; i < N; i++) x[i] = -100.0f + 200.0f * (float)i / (N - 1);
    dlq_sigmoid(y, x, N);
    double ws = 0;
    for (int i = 0; i < N; i++) {
        double sg = 1.0 / (1.0 + exp(-(double)x[i]));
        ws = fmax(ws, x[i] > -80.0f ? fabs(y[i] - sg) / sg : fabs(y[i] - sg));
    }
    CHECK(ws < 4e-7, "sigmoid: max error %g", ws);
    /* the SIMD and plain C paths give the same bits (same operations, same order) */
    float a[203], b[203], ea[203], eb[203], sa[203], sb[203];
    for (int i = 0; i < 203; i++) a[i] = b[i] = (float)(10.0 * dlq_rng_normal(r)) - 50.0f;
    dlq_exp_neg(ea, a, 203);
    dlq_sigmoid(sa, a, 203);
    dlq_softmax_inplace(a, 203);
    dlq_vec_force_generic(1);
    dlq_exp_neg(eb, b, 203);
    dlq_sigmoid(sb, b, 203);
    dlq_softmax_inplace(b, 203);
    dlq_vec_force_generic(0);
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(ea, eb, sizeof ea) && !memcmp(sa, sb, sizeof sa),
          "softmax / exp / sigmoid: SIMD and plain C paths differ");
    free(x);
    free(y);
}

int main(void) {
    dlq_rng r;
    dlq_rng_seed(&r, SEED);
    printf("seed %llu\n", (unsigned long long)SEED);
    test_vec(&r);
    test_linear(&r);
    test_norm_rope(&r);
    test_exp_softmax(&r);
    return T_DONE();
}
