/* GGUF models: config from {arch}.* metadata, llama.cpp tensor names, q/k
 * rows of "llama" files permuted back from llama.cpp's interleaved RoPE
 * layout, tokenizer from tokenizer.ggml.* when present. F32/F16/BF16 tensors
 * are bound in place; block-quantized ones (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K..Q6_K, IQ4_NL, IQ4_XS) are dequantized to owned f32 copies at load;
 * any other ggml type is refused naming the tensor and the type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ggml_quant.h"
#include "model/load_internal.h"

/* dlq_bind_weight, dequantizing a block-quantized tensor first */
static int bind_any(dlq_model *m, dlq_weight *w, const dlq_tensor_info *t, int64_t rows, int64_t cols, const char *name,
                    const char *path, dlq_err *err) {
    if (!t || t->dtype != DLQ_DTYPE_COUNT) return dlq_bind_weight(w, t, rows, cols, name, path, err);
    if (!dlq_ggml_can_dequant((uint32_t)t->file_type))
        return dlq_errf(err, DLQ_EUNSUP, "%s: tensor '%s' is ggml type %s, which is not supported for loading (F32, F16, "
                        "BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS)", path, name,
                        dlq_ggml_type_name((uint32_t)t->file_type));
    dlq_tensor_info f = *t;
    int64_t n = dlq_tensor_numel(t);
    float *buf = dlq_model_own(m, sizeof(float) * (size_t)(n ? n : 1), err);
    if (!buf) return DLQ_ENOMEM;
    int rc = dlq_ggml_dequant((uint32_t)t->file_type, t->data, buf, n, err);
    if (rc) return dlq_err_prefix(err, "%s: tensor '%s'", path, name);
    f.dtype = DLQ_F32;
    f.data = buf;
    f.nbytes = sizeof(float) * (size_t)n;
    return dlq_bind_weight(w, &f, rows, cols, name, path, err);
}

static int get_u32_opt(const dlq_gguf *g, const char *key, uint32_t def, uint32_t *out, dlq_err *err) {
    if (!dlq_gguf_find(g, key)) { *out = def; return DLQ_OK; }
    return dlq_gguf_get_u32(g, key, out, err);
}

static int get_f32_opt(const dlq_gguf *g, const char *key, float def, float *out, dlq_err *err) {
    if (!dlq_gguf_find(g, key)) { *out = def; return DLQ_OK; }
    return dlq_gguf_get_f32(g, key, out, err);
}

/* q/k of a llama GGUF: permute rows back into an owned copy */
static int bind_permuted(dlq_model *m, dlq_weight *w, const dlq_tensor_info *t, int n_heads, int64_t rows, int64_t cols,
                         const char *name, const char *path, dlq_err *err) {
    int rc = bind_any(m, w, t, rows, cols, name, path, err);
    if (rc) return rc;
    size_t row_bytes = (size_t)cols * dlq_dtype_size(w->dtype);
    void *dst = dlq_model_own(m, row_bytes * (size_t)rows, err);
    if (!dst) return DLQ_ENOMEM;
    dlq_permute_rope_rows(dst, w->data, n_heads, m->cfg.head_dim, row_bytes);
    w->data = dst;
    return DLQ_OK;
}

int dlq_load_gguf_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err) {
    dlq_gguf *g = calloc(1, sizeof *g);
    if (!g) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    m->src = g;
    int rc = dlq_gguf_open(g, path, err);
    if (rc) return rc;
    dlq_gguf_str a;
    if ((rc = dlq_gguf_get_str(g, "general.architecture", &a, err))) return dlq_err_prefix(err, "%s", path);
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)(a.len < 31 ? a.len : 31), a.ptr);
    dlq_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    int permute;
    if (!strcmp(arch, "llama")) { c->arch = DLQ_ARCH_LLAMA; permute = 1; }
    else if (!strcmp(arch, "qwen2")) { c->arch = DLQ_ARCH_QWEN2; permute = 0; c->qkv_bias = 1; }
    else return dlq_errf(err, DLQ_EUNSUP, "%s: GGUF architecture \"%s\" is not supported (llama, qwen2)", path, arch);

    char k[128];
    uint32_t v;
#define U32(suffix, def, field)                                                        \
    snprintf(k, sizeof k, "%s.%s", arch, suffix);                                      \
    if ((rc = get_u32_opt(g, k, def, &v, err))) return dlq_err_prefix(err, "%s", path); \
    c->field = (int)v
    U32("block_count", 0, n_layers);
    U32("embedding_length", 0, dim);
    U32("feed_forward_length", 0, hidden_dim);
    U32("attention.head_count", 0, n_heads);
    U32("attention.head_count_kv", (uint32_t)c->n_heads, n_kv_heads);
    U32("context_length", 2048, max_seq);
    U32("attention.key_length", c->n_heads ? (uint32_t)(c->dim / c->n_heads) : 0, head_dim);
#undef U32
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    if ((rc = get_f32_opt(g, k, 10000.0f, &c->rope_theta, err))) return dlq_err_prefix(err, "%s", path);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    if ((rc = get_f32_opt(g, k, 1e-5f, &c->norm_eps, err))) return dlq_err_prefix(err, "%s", path);
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    dlq_gguf_str st;
    if (dlq_gguf_find(g, k) && dlq_gguf_get_str(g, k, &st, err) == 0) {
        if (st.len == 6 && !memcmp(st.ptr, "linear", 6)) {
            c->rope_kind = DLQ_ROPE_LINEAR;
            snprintf(k, sizeof k, "%s.rope.scaling.factor", arch);
            if ((rc = get_f32_opt(g, k, 1.0f, &c->rope_factor, err))) return dlq_err_prefix(err, "%s", path);
        } else if (!(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
            return dlq_errf(err, DLQ_EUNSUP, "%s: rope scaling \"%.*s\" is not supported", path, (int)st.len, st.ptr);
        }
    }
    const dlq_tensor_info *emb = dlq_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2) return dlq_errf(err, DLQ_EFORMAT, "%s: tensor 'token_embd.weight' is missing or not 2-D", path);
    c->vocab_size = (int)emb->shape[0];
    const dlq_tensor_info *outw = dlq_gguf_find_tensor(g, "output.weight");
    c->tied = outw == NULL;
    c->bos_id = c->eos_id = -1;
    if (dlq_gguf_find(g, "tokenizer.ggml.bos_token_id")) { dlq_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v, err); c->bos_id = (int)v; }
    if (dlq_gguf_find(g, "tokenizer.ggml.eos_token_id")) { dlq_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v, err); c->eos_id = (int)v; }
    if ((rc = dlq_config_validate(c, path, err))) return rc;

    int64_t D = c->dim, H = c->hidden_dim, V = c->vocab_size;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
#define BIND(w, name, r, cc) \
    if ((rc = bind_any(m, &(w), dlq_gguf_find_tensor(g, name), r, cc, name, path, err))) return rc
    BIND(m->tok_emb, "token_embd.weight", V, D);
    BIND(m->out_norm, "output_norm.weight", 1, D);
    if (c->tied) m->lm_head = m->tok_emb;
    else BIND(m->lm_head, "output.weight", V, D);
    const dlq_tensor_info *rf = dlq_gguf_find_tensor(g, "rope_freqs.weight");
    if (rf) {
        if (rf->dtype != DLQ_F32 || rf->ndim != 1 || rf->shape[0] != c->head_dim / 2)
            return dlq_errf(err, DLQ_EFORMAT, "%s: rope_freqs.weight must be F32 [%d]", path, c->head_dim / 2);
        float *f = dlq_model_own(m, sizeof(float) * (size_t)(c->head_dim / 2), err);
        if (!f) return DLQ_ENOMEM;
        memcpy(f, rf->data, sizeof(float) * (size_t)(c->head_dim / 2));
        m->rope_freq_factors = f;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        dlq_layer *L = &m->layers[l];
        char n[96];
#define LB(w, suffix, r, cc) snprintf(n, sizeof n, "blk.%d.%s", l, suffix); BIND(L->w, n, r, cc)
        LB(attn_norm, "attn_norm.weight", 1, D);
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        if (permute) { if ((rc = bind_permuted(m, &L->wq, dlq_gguf_find_tensor(g, n), c->n_heads, q, D, n, path, err))) return rc; }
        else { BIND(L->wq, n, q, D); }
        snprintf(n, sizeof n, "blk.%d.attn_k.weight", l);
        if (permute) { if ((rc = bind_permuted(m, &L->wk, dlq_gguf_find_tensor(g, n), c->n_kv_heads, kv, D, n, path, err))) return rc; }
        else { BIND(L->wk, n, kv, D); }
        LB(wv, "attn_v.weight", kv, D);
        LB(wo, "attn_output.weight", D, q);
        if (c->qkv_bias) {
            LB(bq, "attn_q.bias", 1, q);
            LB(bk, "attn_k.bias", 1, kv);
            LB(bv, "attn_v.bias", 1, kv);
        }
        LB(ffn_norm, "ffn_norm.weight", 1, D);
        LB(w_gate, "ffn_gate.weight", H, D);
        LB(w_up, "ffn_up.weight", H, D);
        LB(w_down, "ffn_down.weight", D, H);
#undef LB
    }
#undef BIND
    const char *tp = opts ? opts->tokenizer_path : NULL;
    if (tp) {
        rc = dlq_tok_load_file(&m->tok, tp, c->vocab_size, err);
        if (!rc) dlq_model_note_tokenizer(m, tp);
    }
    else if (dlq_gguf_find(g, "tokenizer.ggml.model")) {
        dlq_gguf_str tm = {0};
        dlq_err ign = {0};
        /* llama.cpp's "none" / "no_vocab": a model without a tokenizer (token ids only) */
        if (dlq_gguf_get_str(g, "tokenizer.ggml.model", &tm, &ign) == 0 &&
            ((tm.len == 4 && !memcmp(tm.ptr, "none", 4)) || (tm.len == 8 && !memcmp(tm.ptr, "no_vocab", 8))))
            return rc;
        rc = dlq_tok_load_gguf(&m->tok, g, err);
    }
    return rc;
}
