/* Hugging Face exports (export.h, docs/export.md): a dequantized F16/BF16
 * transformers folder, and a GPTQ (AutoGPTQ v1 checkpoint format) folder. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "export/export.h"
#include "io/hf_write.h"
#include "kernels/qpack.h"

/* ---- tokenizer files in a scratch folder (copied by the folder writer) ---- */

typedef struct tokdir {
    char dir[64];
    int used;
} tokdir;

static int write_file(const char *dir, const char *name, const void *data, size_t n, dlq_err *err) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", p, strerror(errno));
    int ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    return ok ? DLQ_OK : dlq_errf(err, DLQ_EIO, "%s: write failed", p);
}

static void tokdir_remove(tokdir *t) {
    if (!t->used) return;
    static const char *const names[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"};
    char p[256];
    for (int i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s/%s", t->dir, names[i]); unlink(p); }
    rmdir(t->dir);
    t->used = 0;
}

static json_t *piece_json(const dlq_tokenizer *t, int32_t id) {
    if (id < 0 || id >= dlq_tok_vocab_size(t)) return json_null();
    size_t n;
    const char *p = dlq_tok_piece(t, id, &n);
    return json_stringn(p, n);
}

/* tokenizer.model (SentencePiece) or tokenizer.json, and a
 * tokenizer_config.json; *made = 0 (with a warning) when the model's
 * tokenizer has no Hugging Face form (a llama2.c tokenizer.bin) */
static int make_tokdir(const dlq_model *m, tokdir *td, dlq_export_report *r, int *made, dlq_err *err) {
    *made = 0;
    if (!m->tok) return dlq_export_warn(r, err, "the model has no tokenizer: no tokenizer files written");
    int spm = !strcmp(m->tok_kind, "sentencepiece"), js = !strcmp(m->tok_kind, "hf_json");
    if (!spm && !js)
        return dlq_export_warn(r, err, "the model's tokenizer (%s) has no Hugging Face file form: no tokenizer files written",
                               m->tok_kind[0] ? m->tok_kind : "from GGUF metadata");
    void *data;
    size_t n;
    int rc = dlq_export_tok_bytes(m, &data, &n, err);
    if (rc) return rc;
    if (!data) return dlq_export_warn(r, err, "the model's tokenizer file is not available: no tokenizer files written");
    snprintf(td->dir, sizeof td->dir, "/tmp/dlqat-tok-XXXXXX");
    if (!mkdtemp(td->dir)) { free(data); return dlq_errf(err, DLQ_EIO, "cannot create a scratch folder: %s", strerror(errno)); }
    td->used = 1;
    rc = write_file(td->dir, spm ? "tokenizer.model" : "tokenizer.json", data, n, err);
    free(data);
    if (rc) return rc;
    const dlq_tokenizer *t = m->tok;
    dlq_tok_meta tm;
    dlq_tok_get_meta(t, &tm);
    json_t *c = json_object();
    json_object_set_new(c, "tokenizer_class", json_string(spm ? "LlamaTokenizer" : "PreTrainedTokenizerFast"));
    json_object_set_new(c, "add_bos_token", json_boolean(dlq_tok_add_bos(t)));
    json_object_set_new(c, "add_eos_token", json_boolean(tm.add_eos));
    json_object_set_new(c, "bos_token", piece_json(t, dlq_tok_bos(t)));
    json_object_set_new(c, "eos_token", piece_json(t, dlq_tok_eos(t)));
    json_object_set_new(c, "unk_token", piece_json(t, tm.unk));
    if (tm.pad >= 0) json_object_set_new(c, "pad_token", piece_json(t, tm.pad));
    if (spm) json_object_set_new(c, "legacy", json_true());
    json_object_set_new(c, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(c, "model_max_length", json_integer(m->cfg.max_seq));
    char *s = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    if (!s) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    rc = write_file(td->dir, "tokenizer_config.json", s, strlen(s), err);
    free(s);
    if (!rc) *made = 1;
    return rc;
}

int dlq_export_tokenizer_folder(const dlq_model *m, char *dir, size_t cap, dlq_err *err) {
    dlq_export_report r = {0};
    tokdir td = {.used = 0};
    int made = 0, rc = make_tokdir(m, &td, &r, &made, err);
    dlq_export_report_free(&r);
    if (rc || !made) {
        tokdir_remove(&td);
        if (cap) dir[0] = 0;
        return rc;
    }
    snprintf(dir, cap, "%s", td.dir);
    return DLQ_OK;
}

void dlq_export_tokenizer_folder_remove(const char *dir) {
    if (!dir || !dir[0]) return;
    tokdir td = {.used = 1};
    snprintf(td.dir, sizeof td.dir, "%s", dir);
    tokdir_remove(&td);
}

static dlq_dtype out_dtype(const dlq_export_opts *o) {
    return o && (o->dtype == DLQ_BF16 || o->dtype == DLQ_F32) ? o->dtype : DLQ_F16;
}

static float round_to(float v, dlq_dtype d) {
    return d == DLQ_BF16 ? dlq_bf16_to_f32(dlq_f32_to_bf16(v)) : d == DLQ_F16 ? dlq_f16_to_f32(dlq_f32_to_f16(v)) : v;
}

/* the model weight an HF tensor view was made from */
static const dlq_weight *weight_of(const dlq_model *m, const void *data) {
    if (m->tok_emb.data == data) return &m->tok_emb;
    if (m->lm_head.data == data) return &m->lm_head;
    if (m->out_norm.data == data) return &m->out_norm;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        const dlq_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                  &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            if (ws[i]->data == data) return ws[i];
    }
    return NULL;
}

int dlq_export_hf(const dlq_model *m, const char *dir, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err) {
    dlq_dtype dt = out_dtype(o);
    dlq_hf_tensor *t;
    size_t n;
    int rc = dlq_hf_tensors_from_model(m, &t, &n, err);
    if (rc) return rc;
    float **bufs = calloc(n ? n : 1, sizeof *bufs);
    if (!bufs) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const dlq_weight *w = weight_of(m, t[i].data);
        if (!w) { rc = dlq_errf(err, DLQ_EINVAL, "%s: internal: no weight for '%s'", dir, t[i].name); break; }
        dlq_export_tensor *e = dlq_export_add(r, t[i].name, dlq_dtype_name(dt), w, err);
        if (!e) { rc = DLQ_ENOMEM; break; }
        int64_t C = w->cols;
        float *x = malloc(sizeof(float) * (size_t)C), *y = malloc(sizeof(float) * (size_t)C);
        if (w->dtype == DLQ_QPACK && !(bufs[i] = malloc(sizeof(float) * (size_t)(w->rows * C)))) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
        if (!x || !y) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
        for (int64_t rr = 0; rr < w->rows && !rc; rr++) {
            dlq_export_row_f32(w, rr, x);
            if (bufs[i]) memcpy(bufs[i] + rr * C, x, sizeof(float) * (size_t)C);
            for (int64_t j = 0; j < C; j++) y[j] = round_to(x[j], dt);
            dlq_export_err(e, y, x, C);
        }
        free(x);
        free(y);
        if (bufs[i]) { t[i].data = bufs[i]; t[i].dtype = DLQ_F32; }
    }
    tokdir td = {.used = 0};
    int made = 0;
    if (!rc) rc = make_tokdir(m, &td, r, &made, err);
    if (!rc) rc = dlq_hf_write_model(dir, &m->cfg, t, n, dt, made ? td.dir : NULL, err);
    tokdir_remove(&td);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    return rc;
}

/* ---- GPTQ ---- */

/* bit b of the stream of 32 `bits`-wide values starting at value index k0 */
static void pack32(uint32_t *words, const uint8_t *v, int64_t stride, int bits) {
    for (int w = 0; w < bits; w++) words[w] = 0;
    for (int k = 0; k < 32; k++) {
        uint32_t val = v[k * stride];
        for (int b = 0; b < bits; b++) {
            int pos = k * bits + b;
            words[pos / 32] |= ((val >> b) & 1u) << (pos % 32);
        }
    }
}

void dlq_gptq_pack_rows(int32_t *dst, const uint8_t *vals, int64_t rows, int64_t cols, int bits) {
    /* dst [rows*bits/32][cols]: column c's values down the rows, 32 at a time */
    uint32_t wd[8];
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r0 = 0; r0 < rows; r0 += 32) {
            pack32(wd, vals + r0 * cols + c, cols, bits);
            for (int w = 0; w < bits; w++) dst[(r0 / 32 * bits + w) * cols + c] = (int32_t)wd[w];
        }
}

void dlq_gptq_pack_cols(int32_t *dst, const uint8_t *vals, int64_t rows, int64_t cols, int bits) {
    /* dst [rows][cols*bits/32]: each row's values, 32 at a time */
    uint32_t wd[8];
    int64_t oc = cols * bits / 32;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += 32) {
            pack32(wd, vals + r * cols + c0, 1, bits);
            for (int w = 0; w < bits; w++) dst[r * oc + c0 / 32 * bits + w] = (int32_t)wd[w];
        }
}

typedef struct gptq_ctx {
    dlq_tensor_info *st;
    size_t n, cap;
    void **bufs;
    size_t nb;
    int bits, group, sym;
} gptq_ctx;

static void *gkeep(gptq_ctx *g, size_t bytes, dlq_err *err) {
    void *p = dlq_calloc(1, bytes ? bytes : 1, err);
    if (!p) return NULL;
    void **nb = realloc(g->bufs, (g->nb + 1) * sizeof *nb);
    if (!nb) { free(p); dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
    g->bufs = nb;
    g->bufs[g->nb++] = p;
    return p;
}

static int gadd(gptq_ctx *g, const char *name, dlq_dtype dt, int ndim, int64_t d0, int64_t d1, void *data, dlq_err *err) {
    if (g->n == g->cap) {
        size_t nc = g->cap ? 2 * g->cap : 64;
        dlq_tensor_info *ns = realloc(g->st, nc * sizeof *ns);
        if (!ns) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
        g->st = ns;
        g->cap = nc;
    }
    dlq_tensor_info *t = &g->st[g->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->file_type = -1;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = data;
    t->nbytes = (size_t)(ndim == 1 ? d0 : d0 * d1) * dlq_dtype_size(dt);
    return DLQ_OK;
}

/* a dense tensor converted to dt */
static int gdense(gptq_ctx *g, const char *name, const dlq_weight *w, int vec, dlq_dtype dt, dlq_export_report *r, dlq_err *err) {
    int64_t R = w->rows, C = w->cols;
    dlq_export_tensor *e = dlq_export_add(r, name, dlq_dtype_name(dt), w, err);
    uint16_t *o = e ? gkeep(g, sizeof(uint16_t) * (size_t)(R * C), err) : NULL;
    float *x = o ? malloc(sizeof(float) * (size_t)C) : NULL, *y = x ? malloc(sizeof(float) * (size_t)C) : NULL;
    if (!y) { free(x); return e && o ? dlq_errf(err, DLQ_ENOMEM, "out of memory") : DLQ_ENOMEM; }
    for (int64_t rr = 0; rr < R; rr++) {
        dlq_export_row_f32(w, rr, x);
        for (int64_t j = 0; j < C; j++) {
            uint16_t h = dt == DLQ_BF16 ? dlq_f32_to_bf16(x[j]) : dlq_f32_to_f16(x[j]);
            o[rr * C + j] = h;
            y[j] = dt == DLQ_BF16 ? dlq_bf16_to_f32(h) : dlq_f16_to_f32(h);
        }
        dlq_export_err(e, y, x, C);
    }
    free(x);
    free(y);
    return gadd(g, name, dt, vec ? 1 : 2, vec ? C : R, C, o, err);
}

/* checks that w is GPTQ-expressible; fills the zero points z[out][ng] */
static int gptq_check(const dlq_weight *w, const char *name, int bits, int group, int32_t *z, dlq_err *err) {
    if (w->dtype != DLQ_QPACK)
        return dlq_errf(err, DLQ_EUNSUP, "%s is not quantized (dense %s): GPTQ needs every projection packed", name,
                        dlq_dtype_name(w->dtype));
    if (w->qbits != bits || (w->qng == 1 ? -1 : w->qgroup) != group)
        return dlq_errf(err, DLQ_EUNSUP, "%s: %d-bit group %d differs from the first projection's %d-bit group %d; GPTQ has one "
                        "setting per model", name, w->qbits, w->qgroup, bits, group);
    int64_t in = w->cols, out = w->rows;
    if (in % 32 || (out * bits) % 32 || (bits == 3 && out % 32))
        return dlq_errf(err, DLQ_EUNSUP, "%s: shape [%lld, %lld] does not pack into GPTQ's 32-bit words (%d-bit)", name,
                        (long long)out, (long long)in, bits);
    if (group > 0 && in % group)
        return dlq_errf(err, DLQ_EUNSUP, "%s: %lld inputs are not a whole number of groups of %d (ragged last group)", name,
                        (long long)in, group);
    int qmin = -(1 << (bits - 1));
    const float *psc, *pbi;
    float *pown;
    int prc = dlq_export_qparams(w, &psc, &pbi, &pown, err);
    if (prc) return prc;
    for (int64_t rr = 0; rr < out; rr++)
        for (int64_t g = 0; g < w->qng; g++) {
            float s = psc[rr * w->qng + g], b = pbi[rr * w->qng + g];
            /* w = s*q + b = s*(u + qmin) + b = s*(u - zero), zero = -qmin - b/s */
            double zf = -(double)qmin - (double)b / (double)s;
            double zr = nearbyint(zf);
            if (!(s > 0) || fabs(zf - zr) > 1e-3)
            { prc = dlq_errf(err, DLQ_EUNSUP,
                                "%s: row %lld group %lld: offset/scale = %.6g/%.6g = %.4f is not an integer, so GPTQ's "
                                "w = scale*(u - zero) cannot hold it (quantize with --int-zero)",
                                name, (long long)rr, (long long)g, (double)b, (double)s, (double)b / (double)s); goto out; }
            if (zr < 1 || zr > (double)(1 << bits))
            { prc = dlq_errf(err, DLQ_EUNSUP,
                                "%s: row %lld group %lld: zero point %.0f is outside the %d..%d that GPTQ's v1 format "
                                "(zero - 1 stored in %d bits) can hold",
                                name, (long long)rr, (long long)g, zr, 1, 1 << bits, bits); goto out; }
            z[rr * w->qng + g] = (int32_t)zr;
        }
out:
    free(pown);
    return prc;
}

static int gptq_proj(gptq_ctx *g, const char *prefix, const dlq_weight *w, dlq_export_report *r, dlq_err *err) {
    int bits = g->bits;
    int64_t in = w->cols, out = w->rows, ng = w->qng;
    int32_t *z = malloc(sizeof(int32_t) * (size_t)(out * ng));
    if (!z) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    int rc = gptq_check(w, prefix, bits, g->group, z, err);
    const float *psc = NULL, *pbi = NULL;
    float *pown = NULL;
    if (!rc) rc = dlq_export_qparams(w, &psc, &pbi, &pown, err);
    char nm[224];
    snprintf(nm, sizeof nm, "%.190s.qweight", prefix);
    char ty[16];
    snprintf(ty, sizeof ty, "gptq-int%d", bits);
    dlq_export_tensor *e = rc ? NULL : dlq_export_add(r, nm, ty, w, err);
    if (!rc && !e) rc = DLQ_ENOMEM;
    uint8_t *uT = NULL, *zm = NULL;
    int8_t *q = NULL;
    int32_t *qw = NULL, *qz = NULL, *gi = NULL;
    uint16_t *sc = NULL;
    float *x = NULL, *y = NULL;
    if (!rc) {
        uT = malloc((size_t)(in * out));
        zm = malloc((size_t)(ng * out));
        q = malloc((size_t)in);
        x = malloc(sizeof(float) * (size_t)in);
        y = malloc(sizeof(float) * (size_t)in);
        qw = gkeep(g, sizeof(int32_t) * (size_t)(in / 32 * bits * out), err);
        qz = qw ? gkeep(g, sizeof(int32_t) * (size_t)(ng * (out * bits / 32)), err) : NULL;
        sc = qz ? gkeep(g, sizeof(uint16_t) * (size_t)(ng * out), err) : NULL;
        gi = sc ? gkeep(g, sizeof(int32_t) * (size_t)in, err) : NULL;
        if (!gi) rc = DLQ_ENOMEM;
        else if (!uT || !zm || !q || !x || !y) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    }
    int qmin = -(1 << (bits - 1));
    int64_t gs = ng == 1 ? in : g->group;
    for (int64_t rr = 0; rr < out && !rc; rr++) {
        dlq_qunpack_row(q, (const uint8_t *)w->data + rr * w->row_bytes, in, bits);
        for (int64_t i = 0; i < in; i++) uT[i * out + rr] = (uint8_t)(q[i] - qmin);
        for (int64_t gg = 0; gg < ng; gg++) {
            int32_t zz = z[rr * ng + gg];
            if (zz != 1 << (bits - 1)) g->sym = 0;
            zm[gg * out + rr] = (uint8_t)((zz - 1) & ((1 << bits) - 1));
            sc[gg * out + rr] = dlq_f32_to_f16(psc[rr * ng + gg]);
        }
        /* the AutoGPTQ dequantization: scale16 * (u - zero) */
        dlq_export_row_f32(w, rr, x);
        for (int64_t i = 0; i < in; i++) {
            int64_t gg = i / gs;
            y[i] = dlq_f16_to_f32(sc[gg * out + rr]) * (float)((q[i] - qmin) - z[rr * ng + gg]);
        }
        dlq_export_err(e, y, x, in);
    }
    if (!rc) {
        dlq_gptq_pack_rows(qw, uT, in, out, bits);
        dlq_gptq_pack_cols(qz, zm, ng, out, bits);
        for (int64_t i = 0; i < in; i++) gi[i] = (int32_t)(i / gs);
        rc = gadd(g, nm, DLQ_I32, 2, in / 32 * bits, out, qw, err);
        snprintf(nm, sizeof nm, "%.190s.qzeros", prefix);
        if (!rc) rc = gadd(g, nm, DLQ_I32, 2, ng, out * bits / 32, qz, err);
        snprintf(nm, sizeof nm, "%.190s.scales", prefix);
        if (!rc) rc = gadd(g, nm, DLQ_F16, 2, ng, out, sc, err);
        snprintf(nm, sizeof nm, "%.190s.g_idx", prefix);
        if (!rc) rc = gadd(g, nm, DLQ_I32, 1, in, 0, gi, err);
    }
    free(pown); free(z); free(uT); free(zm); free(q); free(x); free(y);
    return rc;
}

int dlq_export_gptq(const dlq_model *m, const char *dir, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err) {
    const dlq_config *c = &m->cfg;
    dlq_dtype dt = out_dtype(o) == DLQ_BF16 ? DLQ_BF16 : DLQ_F16;
    if (!c->n_layers || m->layers[0].wq.dtype != DLQ_QPACK)
        return dlq_errf(err, DLQ_EUNSUP, "%s: not a quantized model: GPTQ export needs a .dlq with packed projections", m->path);
    if (c->qkv_bias) return dlq_errf(err, DLQ_EUNSUP, "%s: q/k/v biases are not supported by the GPTQ export", m->path);
    const dlq_weight *w0 = &m->layers[0].wq;
    int bits = w0->qbits;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return dlq_errf(err, DLQ_EUNSUP, "%s: %d-bit weights: GPTQ packs 2, 3, 4 or 8 bits", m->path, bits);
    gptq_ctx g = {.bits = bits, .group = w0->qng == 1 ? -1 : w0->qgroup, .sym = 1};
    int rc = gdense(&g, "model.embed_tokens.weight", &m->tok_emb, 0, dt, r, err);
    static const char *const mods[7][2] = {{"self_attn", "q_proj"}, {"self_attn", "k_proj"}, {"self_attn", "v_proj"},
                                           {"self_attn", "o_proj"}, {"mlp", "gate_proj"}, {"mlp", "up_proj"},
                                           {"mlp", "down_proj"}};
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const dlq_layer *L = &m->layers[l];
        const dlq_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        char nm[192];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        rc = gdense(&g, nm, &L->attn_norm, 1, dt, r, err);
        for (int p = 0; p < 7 && !rc; p++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s", l, mods[p][0], mods[p][1]);
            rc = gptq_proj(&g, nm, ws[p], r, err);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!rc) rc = gdense(&g, nm, &L->ffn_norm, 1, dt, r, err);
    }
    if (!rc) rc = gdense(&g, "model.norm.weight", &m->out_norm, 1, dt, r, err);
    if (!rc && !c->tied) rc = gdense(&g, "lm_head.weight", &m->lm_head, 0, dt, r, err);
    char qc[512], extra[640];
    snprintf(qc, sizeof qc,
             "{\"bits\": %d, \"group_size\": %d, \"damp_percent\": 0.01, \"desc_act\": false, \"static_groups\": false, "
             "\"sym\": %s, \"true_sequential\": true, \"model_name_or_path\": null, \"model_file_base_name\": \"model\", "
             "\"quant_method\": \"gptq\", \"checkpoint_format\": \"gptq\"}",
             bits, g.group, g.sym ? "true" : "false");
    snprintf(extra, sizeof extra, "{\"quantization_config\": %s}", qc);
    tokdir td = {.used = 0};
    int made = 0;
    if (!rc) rc = make_tokdir(m, &td, r, &made, err);
    const char *names[] = {"quantize_config.json"};
    const char *texts[] = {qc};
    if (!rc) rc = dlq_hf_write_folder(dir, c, DLQ_F16, g.st, g.n, extra, names, texts, 1, made ? td.dir : NULL, err);
    tokdir_remove(&td);
    for (size_t i = 0; i < g.nb; i++) free(g.bufs[i]);
    free(g.bufs);
    free(g.st);
    return rc;
}
