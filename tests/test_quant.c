/* Quantizer math and the merge/export path:
 *  - STE backward vs its double-precision reference (ragged groups, per-channel, clamped values)
 *  - oscillation dampening: gradient vs central differences of its value, zero when clipped
 *  - RTN round-trip error bounds per bit width (|w - dequant| <= s/2)
 *  - bit packing round trip and packed dot / dequant vs scalar
 *  - merged .dlq == training-time fake quantization: integers bit for bit,
 *    logits within 1e-4 relative, for a ragged group size and per-channel. */
#include "core/mapfile.h"
#include "core/rng.h"
#include "io/dlq_file.h"
#include "kernels/qpack.h"
#include "model/forward.h"
#include "quant/export.h"
#include "quant/quant.h"
#include "t.h"
#include "t_model.h"

static const uint64_t SEED = 424242;

static void test_ste(dlq_rng *r) {
    int64_t rows = 5, cols = 37;
    int groups[] = {8, 16, 0, 37, 5};
    for (int bits = 2; bits <= 8; bits += 3)
        for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
            dlq_qspec q = {.bits = bits, .group = groups[gi]};
            int64_t ng = dlq_qgroups(cols, q.group);
            float w[5 * 37], G[5 * 37], s[5 * 37], b[5 * 37], m[5 * 37], dwp[5 * 37];
            float gs[5 * 37] = {0}, gb[5 * 37] = {0}, gm[5 * 37] = {0};
            double rdwp[5 * 37], rgs[5 * 37] = {0}, rgb[5 * 37] = {0}, rgm[5 * 37] = {0};
            for (int i = 0; i < rows * cols; i++) { w[i] = (float)dlq_rng_normal(r); G[i] = (float)dlq_rng_normal(r); }
            dlq_quant_init_rtn(w, rows, cols, &q, 0, s, b, m);
            for (int i = 0; i < rows * ng; i++) { s[i] *= 0.7f; m[i] = 1.0f + 0.1f * (float)dlq_rng_normal(r); } /* force clamping */
            dlq_fq_backward(dwp, G, w, rows, cols, &q, s, b, m, gs, gb, gm, 0);
            dlq_fq_backward_ref(rdwp, G, w, rows, cols, &q, s, b, m, rgs, rgb, rgm);
            double e = 0;
            int clamped = 0;
            for (int i = 0; i < rows * cols; i++) { e = fmax(e, fabs(dwp[i] - rdwp[i])); clamped += dwp[i] == 0; }
            for (int i = 0; i < rows * ng; i++) {
                e = fmax(e, fabs(gs[i] - rgs[i]) / (1 + fabs(rgs[i])));
                e = fmax(e, fabs(gb[i] - rgb[i]) / (1 + fabs(rgb[i])));
                e = fmax(e, fabs(gm[i] - rgm[i]) / (1 + fabs(rgm[i])));
            }
            CHECK(e < 1e-5, "STE bits %d group %d: max error %.3g (seed %llu)", bits, q.group, e, (unsigned long long)SEED);
            CHECK(clamped > 0, "test must exercise clamping (bits %d group %d)", bits, q.group);
        }
}

static void test_dampen(dlq_rng *r) {
    int64_t rows = 5, cols = 37;
    int groups[] = {8, 0, 5};
    for (int bits = 2; bits <= 4; bits++)
        for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
            dlq_qspec q = {.bits = bits, .group = groups[gi]};
            int64_t ng = dlq_qgroups(cols, q.group);
            int gsz = dlq_qgroup_size(cols, q.group);
            float w[5 * 37], s[5 * 37], b[5 * 37], m[5 * 37], g[5 * 37] = {0};
            for (int i = 0; i < rows * cols; i++) w[i] = (float)dlq_rng_normal(r);
            dlq_quant_init_rtn(w, rows, cols, &q, 0, s, b, m);
            for (int i = 0; i < rows * ng; i++) s[i] *= 0.7f; /* some values outside the range: clipped */
            dlq_fq_dampen_grad(g, w, rows, cols, &q, s, b, 0.5f);
            double e = 0;
            int tested = 0, clipped = 0, clip_bad = 0;
            for (int i = 0; i < rows * cols; i++) {
                int64_t k = (i / cols) * ng + (i % cols) / gsz;
                float x = (w[i] - b[k]) / s[k];
                float frac = x - floorf(x);
                if (x < dlq_qmin(bits) || x > dlq_qmax(bits)) { clipped++; clip_bad += g[i] != 0; continue; }
                if (fabsf(frac - 0.5f) < 0.05f || x - dlq_qmin(bits) < 0.05f || dlq_qmax(bits) - x < 0.05f) continue;
                float h = 1e-3f * s[k], w0 = w[i];
                w[i] = w0 + h;
                double rp = dlq_fq_dampen(w, rows, cols, &q, s, b);
                w[i] = w0 - h;
                double rm = dlq_fq_dampen(w, rows, cols, &q, s, b);
                w[i] = w0;
                double fd = 0.5 * (rp - rm) / (2.0 * h); /* coef 0.5 */
                e = fmax(e, fabs(g[i] - fd) / (1 + fabs(fd)));
                tested++;
            }
            CHECK(tested > rows * cols / 4 && e < 1e-3, "dampening gradient vs central differences, bits %d group %d: "
                  "max rel error %.3g over %d values", bits, q.group, e, tested);
            CHECK(clipped > 0 && clip_bad == 0, "clipped values get no dampening gradient (bits %d group %d: %d of %d)",
                  bits, q.group, clip_bad, clipped);
            /* on the grid: no penalty */
            for (int i = 0; i < rows * cols; i++) {
                int64_t k = (i / cols) * ng + (i % cols) / gsz;
                w[i] = s[k] * (float)(dlq_qmin(bits) + (i % (1 << bits))) + b[k];
            }
            double r0 = dlq_fq_dampen(w, rows, cols, &q, s, b);
            CHECK(r0 < 1e-8, "weights on the grid: dampening %.3g", r0);
        }
}

static void test_rtn_bounds(dlq_rng *r) {
    int64_t rows = 7, cols = 100;
    for (int bits = 2; bits <= 8; bits++)
        for (int group = 0; group <= 64; group += 32) { /* per-channel, 32 (ragged tail of 4), 64 (ragged 36) */
            dlq_qspec q = {.bits = bits, .group = group};
            int64_t ng = dlq_qgroups(cols, group);
            int gsz = dlq_qgroup_size(cols, group);
            float w[700], wq[700], s[700], b[700], m[700];
            int8_t qi[700];
            for (int i = 0; i < rows * cols; i++) w[i] = (float)dlq_rng_normal(r);
            w[3] = w[4] = 0; /* some duplicates */
            dlq_quant_init_rtn(w, rows, cols, &q, 0, s, b, m);
            dlq_fq_forward(wq, w, rows, cols, &q, s, b, m, qi);
            double worst = 0;
            int range_ok = 1;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < cols; j++) {
                    int64_t g = i * ng + j / gsz;
                    worst = fmax(worst, fabs(wq[i * cols + j] - w[i * cols + j]) / s[g]);
                    range_ok &= qi[i * cols + j] >= dlq_qmin(bits) && qi[i * cols + j] <= dlq_qmax(bits);
                }
            CHECK(worst <= 0.5 + 1e-4, "RTN bits %d group %d: error %.4f steps > 1/2", bits, group, worst);
            CHECK(range_ok, "RTN bits %d: integers out of range", bits);
        }
    /* symmetric: b = 0, error <= s/2 everywhere; integer zero point: b/s integral */
    for (int bits = 2; bits <= 8; bits += 2) {
        float w[200], wq[200], s[8], b[8], m[8];
        for (int i = 0; i < 200; i++) w[i] = (float)dlq_rng_normal(r) + (i < 100 ? 0.5f : 0.0f);
        dlq_qspec qs = {.bits = bits, .group = 50, .sym = 1};
        dlq_quant_init_rtn(w, 4, 50, &qs, 0, s, b, m);
        dlq_fq_forward(wq, w, 4, 50, &qs, s, b, m, NULL);
        double worst = 0;
        int zero = 1;
        for (int i = 0; i < 200; i++) worst = fmax(worst, fabs(wq[i] - w[i]) / s[i / 50]);
        for (int g = 0; g < 4; g++) zero &= b[g] == 0.0f;
        CHECK(zero && worst <= 0.5 + 1e-4, "symmetric bits %d: b zero %d, error %.3f steps", bits, zero, worst);
        dlq_qspec qz = {.bits = bits, .group = 50, .int_zero = 1};
        dlq_quant_init_rtn(w, 4, 50, &qz, 0, s, b, m);
        int integral = 1;
        for (int g = 0; g < 4; g++) integral &= fabsf(b[g] / s[g] - rintf(b[g] / s[g])) < 1e-4f;
        b[0] += 0.37f * s[0];
        dlq_quant_snap_zero(b, s, 4);
        integral &= fabsf(b[0] / s[0] - rintf(b[0] / s[0])) < 1e-4f;
        CHECK(integral, "integer zero point bits %d: b/s not integral", bits);
        dlq_fq_forward(wq, w, 4, 50, &qz, s, b, m, NULL);
        worst = 0;
        for (int i = 0; i < 200; i++) worst = fmax(worst, fabs(wq[i] - w[i]) / s[i / 50]);
        CHECK(worst <= 1.0 + 1e-4, "integer zero point bits %d: error %.3f steps", bits, worst);
    }
    /* constant group: s guarded, exact reconstruction */
    float w[8] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f}, wq[8], s[1], b[1], m[1];
    dlq_qspec q = {.bits = 3, .group = 0};
    dlq_quant_init_rtn(w, 1, 8, &q, 0, s, b, m);
    dlq_fq_forward(wq, w, 1, 8, &q, s, b, m, NULL);
    CHECK(s[0] > 0 && fabsf(wq[0] - 0.3f) < 1e-6f, "constant group: s %g, wq %g", s[0], wq[0]);
    /* clipping search never increases the error */
    float w2[256], s1[8], b1[8], m1[8], s2[8], b2[8], m2[8], q1[256], q2[256];
    for (int i = 0; i < 256; i++) w2[i] = (float)(dlq_rng_normal(r) * (i % 17 == 0 ? 4 : 1));
    dlq_qspec q3 = {.bits = 3, .group = 32};
    dlq_quant_init_rtn(w2, 2, 128, &q3, 0, s1, b1, m1);
    dlq_quant_init_rtn(w2, 2, 128, &q3, 1, s2, b2, m2);
    dlq_fq_forward(q1, w2, 2, 128, &q3, s1, b1, m1, NULL);
    dlq_fq_forward(q2, w2, 2, 128, &q3, s2, b2, m2, NULL);
    double e1 = 0, e2 = 0;
    for (int i = 0; i < 256; i++) { e1 += (q1[i] - w2[i]) * (q1[i] - w2[i]); e2 += (q2[i] - w2[i]) * (q2[i] - w2[i]); }
    CHECK(e2 <= e1 + 1e-9, "clip search: %g > %g", e2, e1);
}

static void test_pack(dlq_rng *r) {
    for (int bits = 2; bits <= 8; bits++)
        for (int64_t n = 1; n < 70; n += 13) {
            int8_t q[70], back[70];
            uint8_t buf[80];
            float sc[10], bi[10], x[70], deq[70];
            int group = 5 + (int)(n % 7);
            for (int64_t j = 0; j < n; j++) { q[j] = (int8_t)(dlq_qmin(bits) + (int)(dlq_rng_u64(r) % (1u << bits))); x[j] = (float)dlq_rng_normal(r); }
            for (int g = 0; g < 10; g++) { sc[g] = (float)dlq_rng_f64(r) + 0.1f; bi[g] = (float)dlq_rng_normal(r); }
            memset(buf, 0xAA, sizeof buf);
            dlq_qpack_row(buf, q, n, bits);
            CHECK(buf[dlq_qrow_bytes(n, bits)] == 0xAA, "pack wrote past the row (bits %d n %lld)", bits, (long long)n);
            dlq_qunpack_row(back, buf, n, bits);
            CHECK(memcmp(q, back, (size_t)n) == 0, "pack round trip bits %d n %lld", bits, (long long)n);
            dlq_qdequant_row(deq, buf, n, bits, group, sc, bi);
            double ref = 0, err = 0;
            for (int64_t j = 0; j < n; j++) {
                float w = sc[j / group] * q[j] + bi[j / group];
                err = fmax(err, fabs(deq[j] - w));
                ref += (double)w * x[j];
            }
            CHECK(err < 1e-6, "dequant bits %d n %lld: %g", bits, (long long)n, err);
            float d = dlq_qdot_row(buf, n, bits, group, sc, bi, x);
            CHECK(fabs(d - ref) < 1e-4 * (1 + fabs(ref)), "qdot bits %d n %lld: %g vs %g", bits, (long long)n, d, ref);
        }
}

/* merged .dlq vs the training-time fake quantization */
static void test_export_parity(dlq_rng *r, int bits, int group, int lora_r) {
    dlq_model *base;
    dlq_err err = {0};
    if (dlq_model_load(&base, "tests/fixtures/hf/llama", NULL, &err)) { CHECK(0, "%s", err.msg); return; }
    dlq_tmodel_opts o = {.mode = DLQ_MODE_QUANT, .B = 1, .T = 16, .seed = 5, .lora_r = lora_r, .lora_alpha = 2.0f * lora_r,
                         .targets = 0x7f, .qspec = {bits, group}};
    dlq_tmodel *tm;
    if (dlq_tmodel_create(&tm, base, &o, &err)) { CHECK(0, "%s", err.msg); dlq_model_destroy(base); return; }
    /* move away from the init: perturb s, b, m and give B non-zero values */
    for (int l = 0; l < tm->cfg.n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            dlq_tlinear *T = &tm->layers[l].p[p];
            for (int64_t i = 0; i < T->out * T->q->ngroups; i++) {
                T->q->s[i] *= 1.0f + 0.05f * (float)dlq_rng_normal(r);
                T->q->b[i] += 0.1f * T->q->s[i] * (float)dlq_rng_normal(r);
                T->q->m[i] = 1.0f + 0.05f * (float)dlq_rng_normal(r);
            }
            for (int64_t i = 0; i < T->out * T->r; i++) T->B[i] = 0.02f * (float)dlq_rng_normal(r);
        }
    char path[256];
    snprintf(path, sizeof path, "/tmp/dlqat-test-parity-%d.dlq", (int)getpid());
    CHECK(dlq_quant_export_dlq(tm, path, "dlqat", "{\"test\": true}", &err) == 0, "export: %s", err.msg);
    dlq_model *qm = NULL, *fm = NULL;
    CHECK(dlq_model_load(&qm, path, NULL, &err) == 0, "load .dlq: %s", err.msg);
    CHECK(dlq_tmodel_to_model(tm, &fm, &err) == 0, "%s", err.msg);
    if (qm && fm) {
        /* integers bit for bit */
        int mism = 0, checked = 0;
        for (int l = 0; l < tm->cfg.n_layers; l++)
            for (int p = 0; p < DLQ_N_PROJ; p++) {
                const dlq_tlinear *T = &tm->layers[l].p[p];
                const dlq_weight *w = (const dlq_weight *[]){&qm->layers[l].wq, &qm->layers[l].wk, &qm->layers[l].wv,
                                                              &qm->layers[l].wo, &qm->layers[l].w_gate, &qm->layers[l].w_up,
                                                              &qm->layers[l].w_down}[p];
                CHECK(w->dtype == DLQ_QPACK && w->qbits == bits, "layer %d proj %d not packed", l, p);
                float *wp = malloc((size_t)(T->out * T->in) * 4);
                int8_t *q = malloc((size_t)(T->out * T->in)), *u = malloc((size_t)T->in);
                dlq_qlinear_wprime(T, wp);
                dlq_fq_forward(wp, wp, T->out, T->in, &T->q->spec, T->q->s, T->q->b, T->q->m, q);
                for (int64_t rr = 0; rr < T->out; rr++) {
                    dlq_qunpack_row(u, (const uint8_t *)w->data + rr * w->row_bytes, T->in, bits);
                    mism += memcmp(u, q + rr * T->in, (size_t)T->in) != 0;
                    checked++;
                }
                free(wp); free(q); free(u);
            }
        CHECK(mism == 0, "%d of %d rows have different integers (bits %d group %d)", mism, checked, bits, group);
        /* logits */
        int T = 16, V = tm->cfg.vocab_size;
        int32_t ids[16];
        for (int i = 0; i < T; i++) ids[i] = (int32_t)(dlq_rng_u64(r) % (uint64_t)V);
        float *l1 = malloc((size_t)T * V * 4), *l2 = malloc((size_t)T * V * 4);
        double mx, d = t_logit_diff(qm, fm, ids, T, l1, l2, &mx);
        CHECK(d / mx <= 1e-4, "bits %d group %d: .dlq logits differ from the fake-quantized model by %.3g (relative %.3g)",
              bits, group, d, d / mx);
        printf("parity bits %d group %d lora %d: integers identical (%d rows), logits max rel diff %.2e\n", bits, group, lora_r,
               checked, d / mx);
        /* and the training forward agrees with the inference forward on the fake model */
        int32_t tg[16];
        for (int i = 0; i < T; i++) tg[i] = i + 1 < T ? ids[i + 1] : -1;
        double ls;
        int64_t nv;
        dlq_tmodel_eval(tm, ids, tg, &ls, &nv, &err);
        double nll = dlq_nll_mean(l2, ids, T, V);
        CHECK(fabs(ls / (double)nv - nll) < 1e-4, "training forward NLL %.6f vs inference %.6f", ls / (double)nv, nll);
        free(l1); free(l2);
    }
    /* a damaged .dlq is refused */
    {
        char *buf;
        size_t n;
        if (dlq_read_file(path, &buf, &n, &err) == 0) {
            buf[n / 2] ^= 0x10;
            dlq_file f;
            memset(&f, 0, sizeof f);
            CHECK(dlq_file_parse(&f, (const uint8_t *)buf, n, "mutated", &err) == DLQ_EFORMAT && strstr(err.msg, "checksum"),
                  "bit flip detected: %s", err.msg);
            buf[n / 2] ^= 0x10;
            for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
                memset(&f, 0, sizeof f);
                int rc = dlq_file_parse(&f, (const uint8_t *)buf, cut, "truncated", &err);
                CHECK(rc != 0, "truncated to %zu accepted", cut);
            }
            free(buf);
        }
    }
    unlink(path);
    dlq_model_destroy(qm);
    dlq_model_destroy(fm);
    dlq_tmodel_destroy(tm);
    dlq_model_destroy(base);
}

int main(void) {
    dlq_rng r;
    dlq_rng_seed(&r, SEED);
    printf("seed %llu\n", (unsigned long long)SEED);
    test_ste(&r);
    test_dampen(&r);
    test_rtn_bounds(&r);
    test_pack(&r);
    test_export_parity(&r, 3, 24, 4);  /* ragged: 64 = 24+24+16, 96 = 4 x 24 */
    test_export_parity(&r, 2, 0, 0);   /* per-channel, no LoRA */
    test_export_parity(&r, 4, 32, 2);
    return T_DONE();
}
