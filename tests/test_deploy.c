/* Deployment path: RTN straight to .dlq (F16 / F32 group parameters, an
 * 8-bit output head), loading it as views into the mapping (no owned fp32
 * copies), the packed forward (decode kernels and the dequantize + sgemm
 * prompt path) against a dense fp32 model of the same dequantized weights,
 * and the .dlq version rules (version 1 files still load, newer ones are
 * refused with a message). */
#include <stdint.h>

#include "core/rng.h"
#include "io/dlq_file.h"
#include "kernels/linear.h"
#include "kernels/qkernels.h"
#include "model/forward.h"
#include "quant/quant.h"
#include "quant/rtn_dlq.h"
#include "export/export.h"
#include "t.h"
#include "train/checkpoint.h"

#define FIX "tests/fixtures/hf/llama"

static const dlq_weight *proj(const dlq_layer *L, int p) {
    const dlq_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down, NULL};
    return w[p];
}

/* the integers and parameters the .dlq must hold, recomputed here */
static double check_weight(const dlq_weight *src, const dlq_weight *got, int bits, int group, int f16, const char *what) {
    int64_t rows = src->rows, cols = src->cols, ng = dlq_qgroups(cols, group);
    dlq_qspec q = {.bits = bits, .group = group};
    float *wf = malloc((size_t)(rows * cols) * 4), *s = malloc((size_t)(rows * ng) * 4), *b = malloc((size_t)(rows * ng) * 4),
          *m = malloc((size_t)(rows * ng) * 4), *row = malloc((size_t)cols * 4);
    int8_t *qi = malloc((size_t)(rows * cols));
    dlq_weight_rows_f32(src, 0, rows, wf);
    dlq_quant_init_rtn(wf, rows, cols, &q, 0, s, b, m);
    dlq_fq_forward(wf, wf, rows, cols, &q, s, b, m, qi);
    CHECK(got->dtype == DLQ_QPACK && got->qbits == bits && got->qpdtype == (f16 ? DLQ_F16 : DLQ_F32), "%s: packing", what);
    double e = 0;
    int gs = dlq_qgroup_size(cols, group);
    for (int64_t r = 0; r < rows; r++) {
        dlq_weight_row(got, r, row);
        for (int64_t j = 0; j < cols; j++) {
            float sc = s[r * ng + j / gs] * m[r * ng + j / gs], bi = b[r * ng + j / gs] * m[r * ng + j / gs];
            if (f16) { sc = dlq_f16_to_f32(dlq_f32_to_f16(sc)); bi = dlq_f16_to_f32(dlq_f32_to_f16(bi)); }
            e = fmax(e, fabs(row[j] - ((double)sc * qi[r * cols + j] + bi)));
        }
    }
    free(wf); free(s); free(b); free(m); free(row); free(qi);
    return e;
}

/* a dense fp32 twin of a packed model: the dequantized weights, owned here */
static dlq_model *dense_twin(const dlq_model *pm, float **bufs, int *nb) {
    dlq_model *d = malloc(sizeof *d);
    *d = *pm;
    d->layers = malloc((size_t)pm->cfg.n_layers * sizeof *d->layers);
    memcpy(d->layers, pm->layers, (size_t)pm->cfg.n_layers * sizeof *d->layers);
    *nb = 0;
    for (int l = 0; l <= pm->cfg.n_layers; l++)
        for (int p = 0; p < 7; p++) {
            dlq_weight *w = l < pm->cfg.n_layers ? (dlq_weight *)proj(&d->layers[l], p) : (p == 0 ? &d->lm_head : NULL);
            if (!w || w->dtype != DLQ_QPACK) continue;
            float *f = malloc((size_t)(w->rows * w->cols) * 4);
            dlq_weight_rows_f32(w, 0, w->rows, f);
            bufs[(*nb)++] = f;
            dlq_weight nw = {.data = f, .dtype = DLQ_F32, .rows = w->rows, .cols = w->cols};
            *w = nw;
        }
    return d;
}

static void forward_all(const dlq_model *m, const int32_t *tok, int T, float *batched, float *incr) {
    dlq_state *s;
    dlq_err err = {0};
    if (dlq_state_create(&s, m, 1, T, T, &err)) { CHECK(0, "%s", err.msg); return; }
    int rc = dlq_forward(m, s, tok, 1, T, 0, batched, 0, &err);
    CHECK(rc == 0, "batched forward: %s", err.msg);
    for (int t = 0; t < T && incr; t++) {
        rc = dlq_forward(m, s, tok + t, 1, 1, t, incr + (size_t)t * m->cfg.vocab_size, 0, &err);
        CHECK(rc == 0, "decode forward: %s", err.msg);
    }
    dlq_state_destroy(s);
}

/* An untied embedding table is read row by row with pread (so generating
 * does not map the table into the process); the rows equal the mapped ones,
 * and a failing read falls back to the mapping. */
static void check_embedding_rows(const dlq_model *m, const char *what) {
    const dlq_weight *w = &m->tok_emb;
    CHECK(w->row_fd_set == !m->cfg.tied, "%s: embedding rows read from the file: %d (tied %d)", what, w->row_fd_set,
          m->cfg.tied);
    dlq_weight bad = *w;
    bad.row_fd = -1; /* pread fails: the mapping is read instead */
    float *a = malloc((size_t)w->cols * 4), *b = malloc((size_t)w->cols * 4), *c = malloc((size_t)w->cols * 4);
    double e = 0;
    for (int64_t r = 0; r < w->rows; r++) {
        dlq_weight_row(w, r, a);
        dlq_weight_row(&bad, r, c);
        dlq_to_f32(b, (const char *)w->data + (size_t)(r * w->cols) * dlq_dtype_size(w->dtype), w->dtype, (size_t)w->cols);
        e = fmax(e, fmax(t_maxabs(a, b, (size_t)w->cols, NULL), t_maxabs(c, b, (size_t)w->cols, NULL)));
    }
    CHECK(e == 0, "%s: embedding rows differ from the mapped table by %g", what, e);
    free(a); free(b); free(c);
}

static void test_rtn_file(const dlq_model *base, int bits, int group, int f16, int head_bits) {
    char path[] = "/tmp/dlq_test_deploy_XXXXXX.dlq";
    int fd = mkstemps(path, 4);
    close(fd);
    dlq_err err = {0};
    dlq_rtn_opts o = {.bits = bits, .group = group, .param_dtype = f16 ? DLQ_F16 : DLQ_F32, .head_bits = head_bits};
    int rc = dlq_quant_rtn_to_dlq(base, path, &o, "{\"source\": \"test\"}", &err);
    CHECK(rc == 0, "rtn to dlq: %s", err.msg);
    dlq_model *pm;
    if (rc || dlq_model_load(&pm, path, NULL, &err)) { CHECK(0, "load: %s", err.msg); unlink(path); return; }
    CHECK(pm->n_owned == 0, "the .dlq loader allocated %d weight buffers (expected views only)", pm->n_owned);
    check_embedding_rows(pm, "packed .dlq");
    char what[96];
    double e = 0;
    for (int l = 0; l < base->cfg.n_layers; l++)
        for (int p = 0; p < 7; p++) {
            snprintf(what, sizeof what, "W%d g%d %s layer %d proj %d", bits, group, f16 ? "f16" : "f32", l, p);
            e = fmax(e, check_weight(proj(&base->layers[l], p), proj(&pm->layers[l], p), bits, group, f16, what));
        }
    if (head_bits) e = fmax(e, check_weight(&base->lm_head, &pm->lm_head, head_bits, group, f16, "head"));
    else CHECK(pm->lm_head.dtype == base->lm_head.dtype, "head kept as stored");
    CHECK(e < 1e-6, "W%d g%d: dequantized weights differ from RTN by %g", bits, group, e);
    /* the packed forward vs a dense fp32 model of the same weights, on every ISA */
    int T = 9, V = base->cfg.vocab_size;
    int32_t tok[9];
    for (int i = 0; i < T; i++) tok[i] = (i * 37 + 11) % V;
    float *bufs[64];
    int nb;
    dlq_model *dm = dense_twin(pm, bufs, &nb);
    float *ref = malloc((size_t)T * V * 4), *lb = malloc((size_t)T * V * 4), *li = malloc((size_t)T * V * 4);
    forward_all(dm, tok, T, ref, NULL);
    double mag = 0;
    for (int i = 0; i < T * V; i++) mag = fmax(mag, fabs(ref[i]));
    for (int isa = 0; isa <= (int)dlq_qisa_supported(); isa++) {
        dlq_qisa_force((dlq_qisa)isa);
        dlq_qact_force(DLQ_QACT_F32); /* the reference numerics; int8 activations below */
        forward_all(pm, tok, T, lb, li);
        double eb = t_maxabs(lb, ref, (size_t)T * V, NULL), ei = t_maxabs(li, ref, (size_t)T * V, NULL);
        CHECK(eb < 1e-5 * (1 + mag), "W%d g%d %s: prompt-path logits differ from the dense twin by %g", bits, group,
              dlq_qisa_name((dlq_qisa)isa), eb);
        CHECK(ei < 1e-5 * (1 + mag), "W%d g%d %s: decode-path logits differ from the dense twin by %g", bits, group,
              dlq_qisa_name((dlq_qisa)isa), ei);
        /* int8 activations: close, not equal (argmax agreement on most steps) */
        dlq_qact_force(DLQ_QACT_I8);
        forward_all(pm, tok, T, lb, li);
        dlq_qact_force(DLQ_QACT_F32);
        double e8 = t_maxabs(li, ref, (size_t)T * V, NULL);
        CHECK(e8 < 0.05 * (1 + mag), "W%d g%d %s: int8-activation decode logits off by %g (scale %g)", bits, group,
              dlq_qisa_name((dlq_qisa)isa), e8, mag);
    }
    dlq_qisa_force(DLQ_QISA_AVX512);
    /* the exporters read F16 group parameters too: rows through the export
     * helper equal the dense twin, and a GGUF export of the file succeeds */
    double ex = 0;
    float *xr = malloc((size_t)pm->cfg.hidden_dim * 4 + (size_t)pm->cfg.dim * 4);
    for (int l = 0; l < pm->cfg.n_layers; l++)
        for (int p = 0; p < 7; p++) {
            const dlq_weight *w = proj(&pm->layers[l], p), *dw = proj(&dm->layers[l], p);
            for (int64_t r = 0; r < w->rows; r++) {
                dlq_export_row_f32(w, r, xr);
                ex = fmax(ex, t_maxabs(xr, (const float *)dw->data + r * w->cols, (size_t)w->cols, NULL));
            }
        }
    /* 1e-6: the export helper dequantizes with scalar mul+add, the SIMD
     * kernels may fuse (FMA): the two differ by an ulp, never more */
    CHECK(ex < 1e-6, "W%d g%d %s: export rows differ from the dequantized weights by %g", bits, group, f16 ? "f16" : "f32", ex);
    free(xr);
    char gpath[] = "/tmp/dlq_test_deploy_XXXXXX.gguf";
    int gfd = mkstemps(gpath, 5);
    close(gfd);
    dlq_export_opts eo = {0};
    dlq_export_report rep = {0};
    CHECK(dlq_export_gguf(pm, gpath, &eo, &rep, &err) == 0, "GGUF export of a W%d g%d %s .dlq: %s", bits, group,
          f16 ? "f16" : "f32", err.msg);
    dlq_export_report_free(&rep);
    unlink(gpath);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(dm->layers); free(dm);
    free(ref); free(lb); free(li);
    dlq_model_destroy(pm);
    unlink(path);
}

/* version 1 (F32 parameters, no "param_type") still loads; version 3 does not */
static void test_versions(const dlq_model *base) {
    char path[] = "/tmp/dlq_test_deploy_XXXXXX.dlq";
    int fd = mkstemps(path, 4);
    close(fd);
    dlq_err err = {0};
    dlq_rtn_opts o = {.bits = 4, .group = 32, .param_dtype = DLQ_F32};
    if (dlq_quant_rtn_to_dlq(base, path, &o, NULL, &err)) { CHECK(0, "%s", err.msg); return; }
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n);
    CHECK(fread(d, 1, n, f) == n, "read back");
    fclose(f);
    for (uint32_t ver = 1; ver <= 3; ver += 2) {
        memcpy(d + 8, &ver, 4);
        uint32_t crc = dlq_crc32c(0, d, n - 16);
        memcpy(d + n - 16, &crc, 4);
        dlq_file df = {0};
        int rc = dlq_file_parse(&df, d, n, "image", &err);
        if (ver == 1) CHECK(rc == 0, "a version 1 file is refused: %s", err.msg);
        else CHECK(rc == DLQ_EUNSUP && strstr(err.msg, "version 3"), "version 3: rc %d, %s", rc, err.msg);
        if (!rc) dlq_file_close(&df);
    }
    free(d);
    unlink(path);
}

int main(void) {
    dlq_model *base;
    dlq_err err = {0};
    if (dlq_model_load(&base, FIX, NULL, &err)) { CHECK(0, "%s", err.msg); return T_DONE(); }
    CHECK(!base->cfg.tied, "the fixture has an untied head");
    check_embedding_rows(base, "safetensors");
    dlq_model *tied; /* a tied table is streamed whole by the head: it stays mapped */
    if (dlq_model_load(&tied, "models/stories260K/stories260K.bin", NULL, &err) == 0) {
        CHECK(tied->cfg.tied, "stories260K has a tied head");
        check_embedding_rows(tied, "llama2.c, tied");
        dlq_model_destroy(tied);
    } else {
        CHECK(0, "%s", err.msg);
    }
    test_rtn_file(base, 4, 32, 1, 8);  /* the deployment setting: F16 parameters, 8-bit head */
    test_rtn_file(base, 3, 64, 0, 0);  /* ragged last group on down_proj (96 = 64 + 32), F32 parameters */
    test_rtn_file(base, 2, 16, 1, 0);
    test_rtn_file(base, 8, 0, 0, 0);   /* per-channel */
    test_versions(base);
    dlq_model_destroy(base);
    return T_DONE();
}
