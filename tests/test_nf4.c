/* NF4 + LoRA (QLoRA; src/quant/nf4.c):
 *  - the code book: sorted, -1 / 0 / +1 at indices 0 / 7 / 15, and equal (1e-6)
 *    to QLoRA's construction recomputed here from the normal quantile
 *    function (bitsandbytes create_normal_map, offset 0.9677083);
 *  - nearest-code selection against brute force, quantize/dequantize round
 *    trip (block absmax exact, every error within half a code gap), ragged last
 *    block, double quantization of the absmax (error <= half its int8 step);
 *  - the .dlq round trip: NF4 base + LoRA written, loaded (dequantized,
 *    adapter added) and its logits equal the training model's forward;
 *    a damaged NF4 entry is refused with a message. */
#include <jansson.h>

#include "core/rng.h"
#include "io/dlq_file.h"
#include "model/forward.h"
#include "quant/export.h"
#include "quant/nf4.h"
#include "t.h"
#include "t_model.h"

/* standard normal quantile by bisection on 0.5*erfc(-x/sqrt2) */
static double ppf(double p) {
    double lo = -10, hi = 10;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static void code_book(void) {
    const double offset = 0.9677083;
    double v[16];
    int n = 0;
    /* 7 negative values (linspace(offset, 0.5, 8)[:-1]), 0, 8 positive (linspace(offset, 0.5, 9)[:-1]) */
    for (int i = 0; i < 7; i++) v[n++] = -ppf(offset + (0.5 - offset) * i / 7.0);
    v[n++] = 0;
    for (int i = 0; i < 8; i++) v[n++] = ppf(offset + (0.5 - offset) * i / 8.0);
    double mx = 0;
    for (int i = 0; i < 16; i++) mx = fmax(mx, fabs(v[i]));
    for (int i = 0; i < 16; i++) v[i] /= mx;
    /* sort */
    for (int i = 0; i < 16; i++)
        for (int j = i + 1; j < 16; j++)
            if (v[j] < v[i]) { double t = v[i]; v[i] = v[j]; v[j] = t; }
    double worst = 0;
    for (int i = 0; i < 16; i++) worst = fmax(worst, fabs(v[i] - dlq_nf4_code[i]));
    CHECK(worst < 1e-6, "NF4 code book differs from the normal-quantile construction by %.3g", worst);
    CHECK(dlq_nf4_code[0] == -1.0f && dlq_nf4_code[7] == 0.0f && dlq_nf4_code[15] == 1.0f, "NF4 endpoints and zero");
    int sorted = 1;
    for (int i = 0; i < 15; i++) sorted &= dlq_nf4_code[i] < dlq_nf4_code[i + 1];
    CHECK(sorted, "NF4 code book is sorted");
    printf("  code book matches QLoRA's construction within %.2g\n", worst);
}

static void round_trip(dlq_rng *r) {
    /* nearest code vs brute force */
    int bad = 0;
    for (int i = 0; i <= 4000; i++) {
        float x = -1.0f + 2.0f * (float)i / 4000.0f;
        int k = dlq_nf4_index(x), best = 0;
        for (int j = 1; j < 16; j++)
            if (fabsf(x - dlq_nf4_code[j]) < fabsf(x - dlq_nf4_code[best])) best = j;
        bad += fabsf(x - dlq_nf4_code[k]) != fabsf(x - dlq_nf4_code[best]);
    }
    CHECK(bad == 0, "nearest NF4 code wrong for %d of 4001 values", bad);
    for (int dq = 0; dq <= 1; dq++) {
        int64_t rows = 37, cols = 150; /* blocks of 64: 64, 64, 22 */
        float *w = malloc((size_t)(rows * cols) * 4), *d = malloc((size_t)(rows * cols) * 4);
        for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.05 * dlq_rng_normal(r));
        for (int64_t j = 0; j < 64; j++) w[3 * cols + j] = 0; /* an all-zero block */
        dlq_nf4 q;
        dlq_err err = {0};
        CHECK(dlq_nf4_quantize(&q, w, rows, cols, 64, dq, &err) == 0, "%s", err.msg);
        CHECK(q.nblk_row == 3 && q.row_bytes == 75, "NF4 layout");
        dlq_nf4_dequantize(&q, d);
        double maxgap = 0;
        for (int i = 0; i < 15; i++) maxgap = fmax(maxgap, dlq_nf4_code[i + 1] - dlq_nf4_code[i]);
        int over = 0, zero_ok = 1;
        for (int64_t rr = 0; rr < rows; rr++)
            for (int64_t j = 0; j < cols; j++) {
                float a = q.absmax[rr * 3 + j / 64];
                double e = fabs((double)w[rr * cols + j] - d[rr * cols + j]);
                double amax_err = 0;
                if (dq) { /* the block's true absmax may differ from the stored one by half an int8 step */
                    int64_t bi = rr * 3 + j / 64;
                    amax_err = 0.5 * q.absmax_scale[bi / 256] + 1e-7;
                }
                over += e > 0.5 * maxgap * a + amax_err * 1.0 + 1e-7;
                if (rr == 3 && j < 64) zero_ok &= d[rr * cols + j] == 0;
            }
        CHECK(over == 0, "dq %d: %d weights further than half a code gap from their code", dq, over);
        CHECK(zero_ok, "an all-zero block dequantizes to zeros");
        if (!dq) { /* the absmax element of a block is exact */
            int exact = 1;
            for (int64_t rr = 0; rr < rows; rr++) {
                int64_t jm = 0;
                for (int64_t j = 0; j < 64; j++) if (fabsf(w[rr * cols + j]) > fabsf(w[rr * cols + jm])) jm = j;
                exact &= d[rr * cols + jm] == w[rr * cols + jm] || rr == 3;
            }
            CHECK(exact, "block absmax reproduced exactly");
        }
        dlq_nf4_free(&q);
        free(w);
        free(d);
    }
    float bad_w[4] = {1, NAN, 0, 0};
    dlq_nf4 q;
    dlq_err err = {0};
    CHECK(dlq_nf4_quantize(&q, bad_w, 1, 4, 64, 0, &err) != 0 && strstr(err.msg, "finite"), "NaN refused: %s", err.msg);
}

static void dlq_round_trip(dlq_rng *r, int dq) {
    dlq_model *base;
    dlq_err err = {0};
    if (dlq_model_load(&base, "tests/fixtures/hf/llama", NULL, &err)) { CHECK(0, "%s", err.msg); return; }
    dlq_tmodel_opts o = {.mode = DLQ_MODE_LORA, .B = 1, .T = 16, .seed = 3, .lora_r = 4, .lora_alpha = 8, .targets = 0x7f};
    dlq_tmodel *tm;
    if (dlq_tmodel_create(&tm, base, &o, &err)) { CHECK(0, "%s", err.msg); dlq_model_destroy(base); return; }
    dlq_nf4_model nm;
    CHECK(dlq_nf4_tmodel_init(tm, &nm, 64, dq, &err) == 0, "%s", err.msg);
    for (int l = 0; l < tm->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            for (int64_t i = 0; i < T->out * T->r; i++) T->B[i] = 0.05f * (float)dlq_rng_normal(r);
        }
    char path[256];
    snprintf(path, sizeof path, "/tmp/dlqat-test-nf4-%d.dlq", (int)getpid());
    CHECK(dlq_nf4_export_dlq(tm, &nm, path, NULL, &err) == 0, "export: %s", err.msg);
    dlq_model *qm = NULL, *fm = NULL;
    CHECK(dlq_model_load(&qm, path, NULL, &err) == 0, "load: %s", err.msg);
    CHECK(dlq_tmodel_to_model(tm, &fm, &err) == 0, "%s", err.msg);
    if (qm && fm) {
        CHECK(!strcmp(qm->q_method, "nf4-lora") && qm->q_bits == 4 && qm->q_group == 64, "quant header: %s %d %d", qm->q_method,
              qm->q_bits, qm->q_group);
        int T = 16, V = tm->cfg.vocab_size;
        int32_t ids[16], tg[16];
        for (int i = 0; i < T; i++) ids[i] = (int32_t)(dlq_rng_u64(r) % (uint64_t)V);
        for (int i = 0; i < T; i++) tg[i] = i + 1 < T ? ids[i + 1] : -1;
        float *l1 = malloc((size_t)T * V * 4), *l2 = malloc((size_t)T * V * 4);
        double mx, d = t_logit_diff(qm, fm, ids, T, l1, l2, &mx);
        CHECK(d / mx <= 1e-5, "dq %d: .dlq logits differ from the training model by %.3g relative", dq, d / mx);
        double ls;
        int64_t nv;
        dlq_tmodel_eval(tm, ids, tg, &ls, &nv, &err);
        double nll = dlq_nll_mean(l1, ids, T, V);
        CHECK(fabs(ls / (double)nv - nll) < 1e-4, "training NLL %.6f vs .dlq %.6f", ls / (double)nv, nll);
        /* and the adapter matters: the NF4 base alone differs */
        dlq_tlinear *T0 = &tm->layers[0].p[DLQ_P_Q];
        memset(T0->B, 0, (size_t)(T0->out * T0->r) * 4);
        double ls0;
        dlq_tmodel_eval(tm, ids, tg, &ls0, &nv, &err);
        CHECK(ls0 != ls, "the LoRA adapter does not change the output");
        printf("  NF4%s + LoRA .dlq: logits rel diff %.2e, NLL train %.6f / .dlq %.6f\n", dq ? " (double quant)" : "", d / mx,
               ls / (double)nv, nll);
        free(l1); free(l2);
    }
    /* a damaged NF4 entry: block size beyond the row */
    {
        dlq_file f;
        memset(&f, 0, sizeof f);
        if (dlq_file_open(&f, path, &err) == 0) {
            json_t *ts = json_object_get(f.json, "tensors"), *t;
            size_t i;
            json_array_foreach(ts, i, t) {
                if (!strcmp(json_string_value(json_object_get(t, "type")), "nf4")) {
                    json_object_set_new(t, "block", json_integer(100000));
                    dlq_model *m2 = calloc(1, sizeof *m2);
                    dlq_weight w;
                    snprintf(m2->path, sizeof m2->path, "%s", path);
                    int rc = dlq_nf4_bind(m2, &f, t, "x", json_integer_value(json_array_get(json_object_get(t, "shape"), 0)),
                                          json_integer_value(json_array_get(json_object_get(t, "shape"), 1)), &w, &err);
                    CHECK(rc == DLQ_EFORMAT && strstr(err.msg, "invalid NF4"), "damaged NF4 block: %s", err.msg);
                    dlq_model_destroy(m2);
                    break;
                }
            }
            dlq_file_close(&f);
        }
    }
    unlink(path);
    dlq_model_destroy(qm);
    dlq_model_destroy(fm);
    dlq_tmodel_destroy(tm);
    dlq_nf4_model_free(&nm);
    dlq_model_destroy(base);
}

int main(void) {
    const uint64_t seed = 4242;
    printf("seed %llu\n", (unsigned long long)seed);
    dlq_rng r;
    dlq_rng_seed(&r, seed);
    code_book();
    round_trip(&r);
    dlq_round_trip(&r, 0);
    dlq_round_trip(&r, 1);
    return T_DONE();
}
