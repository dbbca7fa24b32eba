/* GGUF export (export.h, docs/export.md): tensors in llama.cpp's names and
 * types, llama.cpp metadata, the tokenizer as tokenizer.ggml.*. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"
#include "io/ggml_quant.h"
#include "io/gguf.h"
#include "kernels/qpack.h"
#include "tokenizer/bpe_internal.h" /* dlq_bpe_pre_kind: the pre-tokenizer name llama.cpp expects */

typedef struct gx {
    const dlq_model *m;
    const dlq_export_opts *o;
    dlq_export_report *r;
    dlq_gguf_writer *w;
    void **bufs; /* tensor data must outlive dlq_gguf_write */
    size_t nb, cap;
    int n_type[64]; /* packed tensors per output ggml type (general.file_type) */
    struct { char why[320], first[96]; int n; } reason[16]; /* approximations, reported once per reason */
    int n_reason;
} gx;

static void note_reason(gx *x, const char *name, const char *why) {
    for (int i = 0; i < x->n_reason; i++)
        if (!strcmp(x->reason[i].why, why)) { x->reason[i].n++; return; }
    if (x->n_reason == 16) return;
    snprintf(x->reason[x->n_reason].why, sizeof x->reason[0].why, "%s", why);
    snprintf(x->reason[x->n_reason].first, sizeof x->reason[0].first, "%s", name);
    x->reason[x->n_reason++].n = 1;
}

static void *keep(gx *x, size_t bytes, dlq_err *err) {
    if (x->nb == x->cap) {
        size_t nc = x->cap ? 2 * x->cap : 64;
        void **nbf = realloc(x->bufs, nc * sizeof *nbf);
        if (!nbf) { dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
        x->bufs = nbf;
        x->cap = nc;
    }
    void *p = dlq_calloc(1, bytes ? bytes : 1, err);
    if (p) x->bufs[x->nb++] = p;
    return p;
}

/* llama.cpp's q/k row order (Meta's interleaved RoPE pairs): Meta row
 * h*hd + 2i + c holds HF row h*hd + c*hd/2 + i (inverse of
 * dlq_permute_rope_rows) */
static int64_t meta_src_row(int64_t r, int hd) {
    int64_t h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static uint32_t dense_ggml(dlq_dtype d) { return d == DLQ_F16 ? DLQ_GGML_F16 : d == DLQ_BF16 ? DLQ_GGML_BF16 : DLQ_GGML_F32; }

/* The output type of a packed weight, and why when it is not exact. */
static uint32_t pick_type(const dlq_weight *w, char *why, size_t cap) {
    int64_t C = w->cols;
    int bits = w->qbits;
    int64_t g = w->qng == 1 ? C : w->qgroup;
    int blocks32 = C % 32 == 0 && g % 32 == 0;
    why[0] = 0;
    if ((bits == 4 || bits == 5) && blocks32) return bits == 4 ? DLQ_GGML_Q4_1 : DLQ_GGML_Q5_1;
    if (bits >= 6 && C % 32 == 0) {
        snprintf(why, cap, "%d-bit weights have no exact GGUF type: re-quantized to Q8_0", bits);
        return DLQ_GGML_Q8_0;
    }
    if (bits <= 3 && C % 256 == 0) {
        snprintf(why, cap, "%d-bit weights have no exact GGUF type: approximated by %s", bits, bits == 2 ? "Q2_K" : "Q3_K");
        return bits == 2 ? DLQ_GGML_Q2_K : DLQ_GGML_Q3_K;
    }
    if (bits <= 3 && blocks32) {
        snprintf(why, cap, "rows of %lld are not whole 256-value K-quant blocks: %d-bit weights stored exactly as Q4_1",
                 (long long)C, bits);
        return DLQ_GGML_Q4_1;
    }
    if (C % 32) snprintf(why, cap, "rows of %lld values are not whole 32-value blocks: written as F16", (long long)C);
    else snprintf(why, cap, "group %lld is not a multiple of 32: written as F16", (long long)g);
    return DLQ_GGML_F16;
}

static int is_exact_type(uint32_t t, int bits) {
    return t == DLQ_GGML_Q4_1 || (t == DLQ_GGML_Q5_1 && bits == 5);
}

/* one 2-D weight (or a 1-D vector when vec) */
static int put_weight(gx *x, const char *name, const dlq_weight *w, int permute_hd, int vec, dlq_err *err) {
    int64_t R = w->rows, C = w->cols;
    uint32_t type;
    char why[256] = "";
    if (vec) type = DLQ_GGML_F32;
    else if (w->dtype == DLQ_QPACK) type = pick_type(w, why, sizeof why);
    else type = dense_ggml(w->dtype);
    if (w->dtype == DLQ_QPACK && !is_exact_type(type, w->qbits)) {
        if (x->o->exact)
            return dlq_errf(err, DLQ_EUNSUP, "%s (%d-bit, group %d): %s; refusing under --exact", name, w->qbits, w->qgroup, why);
        char full[300];
        snprintf(full, sizeof full, "%d-bit, group %d: %s", w->qbits, w->qgroup, why);
        note_reason(x, name, full);
        x->r->approx = 1;
    }
    if (w->dtype == DLQ_QPACK) x->n_type[type]++;
    dlq_export_tensor *t = dlq_export_add(x->r, name, dlq_ggml_type_name(type), w, err);
    if (!t) return DLQ_ENOMEM;
    uint64_t rowb = dlq_ggml_nbytes(type, (uint64_t)C);
    uint8_t *out = keep(x, (size_t)(rowb * (uint64_t)R), err);
    const float *psc = NULL, *pbi = NULL;
    float *pown = NULL;
    if (w->dtype == DLQ_QPACK) {
        int prc = dlq_export_qparams(w, &psc, &pbi, &pown, err);
        if (prc) return prc;
    }
    float *xf = malloc(sizeof(float) * (size_t)C), *yf = malloc(sizeof(float) * (size_t)C);
    int8_t *q = malloc((size_t)C);
    uint8_t *u = malloc((size_t)C);
    int rc = DLQ_OK;
    if (!out || !xf || !yf || !q || !u) rc = out ? dlq_errf(err, DLQ_ENOMEM, "out of memory") : DLQ_ENOMEM;
    int qmin = w->dtype == DLQ_QPACK ? -(1 << (w->qbits - 1)) : 0;
    int64_t eg = w->dtype == DLQ_QPACK ? (w->qng == 1 ? C : w->qgroup) : C;
    for (int64_t r = 0; r < R && !rc; r++) {
        int64_t sr = permute_hd ? meta_src_row(r, permute_hd) : r;
        uint8_t *dst = out + (size_t)r * rowb;
        dlq_export_row_f32(w, sr, xf);
        const float *sc = w->dtype == DLQ_QPACK ? psc + sr * w->qng : NULL;
        const float *bi = w->dtype == DLQ_QPACK ? pbi + sr * w->qng : NULL;
        if (w->dtype == DLQ_QPACK && (type == DLQ_GGML_Q4_1 || type == DLQ_GGML_Q5_1)) {
            dlq_qunpack_row(q, (const uint8_t *)w->data + sr * w->row_bytes, C, w->qbits);
            for (int64_t j = 0; j < C; j++) u[j] = (uint8_t)(q[j] - qmin);
            for (int64_t b = 0; b < C / 32; b++) {
                int64_t g = b * 32 / eg;
                float d = sc[g], mn = bi[g] + sc[g] * (float)qmin;
                if (type == DLQ_GGML_Q4_1) dlq_q4_1_encode(dst + b * DLQ_Q4_1_BYTES, u + b * 32, d, mn);
                else dlq_q5_1_encode(dst + b * DLQ_Q5_1_BYTES, u + b * 32, d, mn);
            }
        } else if (type == DLQ_GGML_Q8_0) {
            for (int64_t b = 0; b < C / 32; b++) dlq_q8_0_quantize(dst + b * DLQ_Q8_0_BYTES, xf + b * 32);
        } else if (type == DLQ_GGML_Q2_K || type == DLQ_GGML_Q3_K) {
            for (int64_t sb = 0; sb < C / 256; sb++) {
                float step[16], off[16];
                for (int k = 0; k < 16; k++) {
                    int64_t g = (sb * 256 + 16 * k) / eg;
                    step[k] = sc[g];
                    off[k] = bi[g] + sc[g] * (float)qmin;
                }
                if (type == DLQ_GGML_Q2_K) dlq_q2_k_quantize(dst + sb * DLQ_Q2_K_BYTES, xf + sb * 256, step, off);
                else dlq_q3_k_quantize(dst + sb * DLQ_Q3_K_BYTES, xf + sb * 256, step);
            }
        } else if (w->dtype != DLQ_QPACK && type == dense_ggml(w->dtype)) {
            size_t es = dlq_dtype_size(w->dtype);
            memcpy(dst, (const char *)w->data + (size_t)(sr * C) * es, (size_t)C * es);
        } else if (type == DLQ_GGML_F32) {
            memcpy(dst, xf, sizeof(float) * (size_t)C);
        } else { /* F16 fallback */
            for (int64_t j = 0; j < C; j++) {
                uint16_t h = dlq_f32_to_f16(xf[j]);
                dst[2 * j] = (uint8_t)h;
                dst[2 * j + 1] = (uint8_t)(h >> 8);
            }
        }
        if ((rc = dlq_ggml_dequant(type, dst, yf, C, err))) break;
        for (int64_t j = 0; j < C && !rc; j++)
            if (!isfinite(yf[j]) && isfinite(xf[j]))
                rc = dlq_errf(err, DLQ_EINVAL, "%s: row %lld overflows %s (value %g)", name, (long long)sr,
                              dlq_ggml_type_name(type), (double)xf[j]);
        dlq_export_err(t, yf, xf, C);
    }
    free(pown);
    free(xf);
    free(yf);
    free(q);
    free(u);
    if (rc) return rc;
    int64_t shape[2] = {R, C};
    return vec ? dlq_gguf_add_tensor(x->w, name, type, 1, &C, out, (size_t)rowb, err)
               : dlq_gguf_add_tensor(x->w, name, type, 2, shape, out, (size_t)(rowb * (uint64_t)R), err);
}

/* ---- tokenizer ---- */

static json_t *find_regex(json_t *o) {
    if (json_is_object(o)) {
        json_t *p = json_object_get(o, "pattern");
        json_t *re = json_is_object(p) ? json_object_get(p, "Regex") : NULL;
        if (json_is_string(re)) return re;
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            json_t *f = find_regex(v);
            if (f) return f;
        }
    } else if (json_is_array(o)) {
        size_t i;
        json_t *v;
        json_array_foreach(o, i, v) {
            json_t *f = find_regex(v);
            if (f) return f;
        }
    }
    return NULL;
}

/* merges and tokenizer.ggml.pre of a byte-level BPE tokenizer.json */
static int put_bpe(gx *x, dlq_err *err) {
    void *data;
    size_t n;
    int rc = dlq_export_tok_bytes(x->m, &data, &n, err);
    if (rc) return rc;
    if (!data || strcmp(x->m->tok_kind, "hf_json")) {
        free(data);
        return dlq_errf(err, DLQ_EUNSUP, "%s: a byte-level BPE tokenizer without its tokenizer.json: cannot write the merges",
                        x->m->path);
    }
    json_error_t je;
    json_t *root = json_loadb(data, n, 0, &je);
    free(data);
    if (!root) return dlq_errf(err, DLQ_EFORMAT, "%s: embedded tokenizer.json: %s", x->m->path, je.text);
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    size_t nm = json_array_size(merges);
    char **ms = calloc(nm ? nm : 1, sizeof *ms);
    if (!ms) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < nm && !rc; i++) {
        json_t *e = json_array_get(merges, i);
        if (json_is_string(e)) ms[i] = strdup(json_string_value(e));
        else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0))) {
            const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
            size_t la = strlen(a), lb = b ? strlen(b) : 0;
            if ((ms[i] = malloc(la + lb + 2))) { memcpy(ms[i], a, la); ms[i][la] = ' '; memcpy(ms[i] + la + 1, b ? b : "", lb + 1); }
        } else {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: tokenizer.json merge %zu is neither \"a b\" nor [a, b]", x->m->path, i);
            break;
        }
        if (!ms[i]) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    }
    if (!rc) rc = dlq_gguf_add_arr_str(x->w, "tokenizer.ggml.merges", (const char *const *)ms, nm, err);
    for (size_t i = 0; ms && i < nm; i++) free(ms[i]);
    free(ms);
    if (!rc) {
        json_t *re = find_regex(json_object_get(root, "pre_tokenizer"));
        int kind = re ? dlq_bpe_pre_kind(json_string_value(re), NULL) : DLQ_BPE_PRE_GPT2;
        const char *pre = kind == DLQ_BPE_PRE_LLAMA3 ? "llama-bpe" : kind == DLQ_BPE_PRE_QWEN2 ? "qwen2" : "gpt-2";
        if (!kind) rc = dlq_export_warn(x->r, err, "tokenizer.json pre-tokenizer regex not recognised: tokenizer.ggml.pre = gpt-2");
        if (!rc) rc = dlq_gguf_add_str(x->w, "tokenizer.ggml.pre", pre, err);
    }
    json_decref(root);
    return rc;
}

static int put_tokenizer(gx *x, dlq_err *err) {
    const dlq_tokenizer *t = x->m->tok;
    if (!t) { /* llama.cpp's "no vocabulary" type: it loads the model and takes token ids (llama.vocab_size dummy tokens) */
        int rc = dlq_export_warn(x->r, err, "the model has no tokenizer: tokenizer.ggml.model = none (llama.cpp runs it on token ids)");
        return rc ? rc : dlq_gguf_add_str(x->w, "tokenizer.ggml.model", "none", err);
    }
    int V = x->m->cfg.vocab_size, nt = dlq_tok_vocab_size(t);
    int spm = dlq_tok_kind_of(t) == DLQ_TOK_SPM;
    if (nt > V)
        return dlq_errf(err, DLQ_EFORMAT, "%s: the tokenizer has %d tokens but the embedding only %d rows", x->m->path, nt, V);
    int rc = dlq_gguf_add_str(x->w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", err);
    if (rc) return rc;
    char **pieces = calloc((size_t)V, sizeof *pieces);
    float *scores = calloc((size_t)V, sizeof *scores);
    int32_t *types = calloc((size_t)V, sizeof *types);
    if (!pieces || !scores || !types) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int i = 0; i < V && !rc; i++) {
        if (i < nt) {
            size_t len;
            const char *p = dlq_tok_piece(t, i, &len);
            if ((pieces[i] = malloc(len + 1))) { memcpy(pieces[i], p, len); pieces[i][len] = 0; }
            if (memchr(p, 0, len)) rc = dlq_errf(err, DLQ_EUNSUP, "token %d contains a NUL byte", i);
            scores[i] = dlq_tok_score(t, i);
            types[i] = dlq_tok_type(t, i);
        } else { /* embedding rows past the tokenizer: padding, as convert_hf_to_gguf.py names them */
            if ((pieces[i] = malloc(24))) snprintf(pieces[i], 24, "[PAD%d]", i);
            types[i] = DLQ_TOKTYPE_UNUSED;
        }
        if (!rc && !pieces[i]) rc = dlq_errf(err, DLQ_ENOMEM, "out of memory");
    }
    if (!rc && V > nt) rc = dlq_export_warn(x->r, err, "vocabulary %d > tokenizer's %d tokens: padded with [PADn] tokens", V, nt);
    if (!rc) rc = dlq_gguf_add_arr_str(x->w, "tokenizer.ggml.tokens", (const char *const *)pieces, (size_t)V, err);
    if (!rc) rc = dlq_gguf_add_arr_f32(x->w, "tokenizer.ggml.scores", scores, (size_t)V, err);
    if (!rc) rc = dlq_gguf_add_arr_i32(x->w, "tokenizer.ggml.token_type", types, (size_t)V, err);
    for (int i = 0; pieces && i < V; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    if (!rc && !spm) rc = put_bpe(x, err);
    if (rc) return rc;
    dlq_tok_meta tm;
    dlq_tok_get_meta(t, &tm);
    int32_t bos = dlq_tok_bos(t), eos = dlq_tok_eos(t);
    if (bos < 0 && x->m->cfg.bos_id >= 0) bos = x->m->cfg.bos_id;
    if (eos < 0 && x->m->cfg.eos_id >= 0) eos = x->m->cfg.eos_id;
    if (bos >= 0) rc = dlq_gguf_add_u32(x->w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err);
    if (!rc && eos >= 0) rc = dlq_gguf_add_u32(x->w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err);
    if (!rc && tm.unk >= 0) rc = dlq_gguf_add_u32(x->w, "tokenizer.ggml.unknown_token_id", (uint32_t)tm.unk, err);
    if (!rc && tm.pad >= 0) rc = dlq_gguf_add_u32(x->w, "tokenizer.ggml.padding_token_id", (uint32_t)tm.pad, err);
    if (!rc) rc = dlq_gguf_add_bool(x->w, "tokenizer.ggml.add_bos_token", dlq_tok_add_bos(t), err);
    if (!rc) rc = dlq_gguf_add_bool(x->w, "tokenizer.ggml.add_eos_token", tm.add_eos, err);
    if (!rc && spm) rc = dlq_gguf_add_bool(x->w, "tokenizer.ggml.add_space_prefix", tm.add_space_prefix, err);
    return rc;
}

/* ---- metadata ---- */

static uint32_t file_type(const gx *x) {
    /* llama_ftype of the most common packed type; dense models by the
     * projections' stored type */
    static const struct { uint32_t ggml, ftype; } map[] = {
        {DLQ_GGML_Q4_1, 3}, {DLQ_GGML_Q5_1, 9}, {DLQ_GGML_Q8_0, 7}, {DLQ_GGML_Q2_K, 10}, {DLQ_GGML_Q3_K, 11}, {DLQ_GGML_F16, 1}};
    int best = -1, bn = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (x->n_type[map[i].ggml] > bn) { bn = x->n_type[map[i].ggml]; best = (int)i; }
    if (best >= 0) return map[best].ftype;
    dlq_dtype d = x->m->cfg.n_layers ? x->m->layers[0].wq.dtype : DLQ_F32;
    return d == DLQ_F16 ? 1 : d == DLQ_BF16 ? 32 : 0;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

static int put_hparams(gx *x, const char *arch, dlq_err *err) {
    const dlq_config *c = &x->m->cfg;
    char k[128];
    int rc = dlq_gguf_add_str(x->w, "general.architecture", arch, err);
    char nm[1024];
    snprintf(nm, sizeof nm, "%s", base_name(x->m->path));
    char *dot = strrchr(nm, '.');
    if (dot && dot != nm) *dot = 0;
    if (!rc) rc = dlq_gguf_add_str(x->w, "general.name", nm, err);
#define U32(key, v) if (!rc) { snprintf(k, sizeof k, "%s." key, arch); rc = dlq_gguf_add_u32(x->w, k, (uint32_t)(v), err); }
#define F32(key, v) if (!rc) { snprintf(k, sizeof k, "%s." key, arch); rc = dlq_gguf_add_f32(x->w, k, (float)(v), err); }
    U32("vocab_size", c->vocab_size);
    U32("context_length", c->max_seq);
    U32("embedding_length", c->dim);
    U32("block_count", c->n_layers);
    U32("feed_forward_length", c->hidden_dim);
    U32("rope.dimension_count", c->head_dim);
    U32("attention.head_count", c->n_heads);
    U32("attention.head_count_kv", c->n_kv_heads);
    if (c->head_dim * c->n_heads != c->dim) {
        U32("attention.key_length", c->head_dim);
        U32("attention.value_length", c->head_dim);
    }
    F32("attention.layer_norm_rms_epsilon", c->norm_eps);
    F32("rope.freq_base", c->rope_theta);
    if (c->rope_kind == DLQ_ROPE_LINEAR) {
        if (!rc) { snprintf(k, sizeof k, "%s.rope.scaling.type", arch); rc = dlq_gguf_add_str(x->w, k, "linear", err); }
        F32("rope.scaling.factor", c->rope_factor);
    }
#undef U32
#undef F32
    if (!rc) rc = dlq_gguf_add_u32(x->w, "general.file_type", file_type(x), err);
    if (!rc && x->m->q_bits) rc = dlq_gguf_add_u32(x->w, "general.quantization_version", 2, err);
    return rc;
}

int dlq_export_gguf(const dlq_model *m, const char *path, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err) {
    const dlq_config *c = &m->cfg;
    dlq_export_opts od = {0};
    if (!o) o = &od;
    const char *arch = c->arch == DLQ_ARCH_QWEN2 ? "qwen2" : "llama"; /* Mistral runs as llama in llama.cpp */
    int permute = c->arch != DLQ_ARCH_QWEN2;
    gx x = {.m = m, .o = o, .r = r};
    x.w = dlq_gguf_writer_new(err);
    if (!x.w) return err->code ? err->code : DLQ_ENOMEM;
    int rc = DLQ_OK;
    /* tensors first (their types decide general.file_type), metadata keys are
     * written before tensor infos by the writer regardless of call order */
    rc = put_weight(&x, "token_embd.weight", &m->tok_emb, 0, 0, err);
    if (!rc) rc = put_weight(&x, "output_norm.weight", &m->out_norm, 0, 1, err);
    if (!rc && !c->tied) rc = put_weight(&x, "output.weight", &m->lm_head, 0, 0, err);
    if (!rc && c->rope_kind == DLQ_ROPE_LLAMA3) {
        /* llama.cpp applies Llama-3.1 scaling as per-frequency divisors */
        int half = c->head_dim / 2;
        float *ff = keep(&x, sizeof(float) * (size_t)half, err), *sc = malloc(sizeof(float) * (size_t)half),
              *bs = malloc(sizeof(float) * (size_t)half);
        if (!ff || !sc || !bs) rc = ff ? dlq_errf(err, DLQ_ENOMEM, "out of memory") : DLQ_ENOMEM;
        else {
            dlq_config plain = *c;
            plain.rope_kind = DLQ_ROPE_DEFAULT;
            dlq_rope_inv_freq(c, sc);
            dlq_rope_inv_freq(&plain, bs);
            for (int i = 0; i < half; i++) ff[i] = bs[i] / sc[i];
            int64_t n = half;
            rc = dlq_gguf_add_tensor(x.w, "rope_freqs.weight", DLQ_GGML_F32, 1, &n, ff, sizeof(float) * (size_t)half, err);
        }
        free(sc);
        free(bs);
    }
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const dlq_layer *L = &m->layers[l];
        char n[96];
#define PW(suffix, w, perm, vec) if (!rc) { snprintf(n, sizeof n, "blk.%d." suffix, l); rc = put_weight(&x, n, &L->w, perm, vec, err); }
        PW("attn_norm.weight", attn_norm, 0, 1);
        PW("attn_q.weight", wq, permute ? c->head_dim : 0, 0);
        PW("attn_k.weight", wk, permute ? c->head_dim : 0, 0);
        PW("attn_v.weight", wv, 0, 0);
        PW("attn_output.weight", wo, 0, 0);
        if (c->qkv_bias) {
            PW("attn_q.bias", bq, 0, 1);
            PW("attn_k.bias", bk, 0, 1);
            PW("attn_v.bias", bv, 0, 1);
        }
        PW("ffn_norm.weight", ffn_norm, 0, 1);
        PW("ffn_gate.weight", w_gate, 0, 0);
        PW("ffn_up.weight", w_up, 0, 0);
        PW("ffn_down.weight", w_down, 0, 0);
#undef PW
    }
    for (int i = 0; i < x.n_reason && !rc; i++)
        rc = dlq_export_warn(r, err, "%d tensor%s (%s%s): %s", x.reason[i].n, x.reason[i].n > 1 ? "s" : "", x.reason[i].first,
                             x.reason[i].n > 1 ? ", ..." : "", x.reason[i].why);
    if (!rc) rc = put_hparams(&x, arch, err);
    if (!rc) rc = put_tokenizer(&x, err);
    if (!rc) rc = dlq_gguf_write(x.w, path, err);
    dlq_gguf_writer_free(x.w);
    for (size_t i = 0; i < x.nb; i++) free(x.bufs[i]);
    free(x.bufs);
    return rc;
}
