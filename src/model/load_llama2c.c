/* llama2.c checkpoints: config from the header, fp32 weights from the
 * mapping; q/k rows are permuted from Meta's interleaved RoPE layout into the
 * internal (HF) layout, into buffers the model owns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "model/load_internal.h"

static void set_f32(dlq_weight *w, const float *data, int64_t rows, int64_t cols) {
    w->data = data;
    w->dtype = DLQ_F32;
    w->rows = rows;
    w->cols = cols;
}

int dlq_load_llama2c_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err) {
    dlq_llama2c *f = calloc(1, sizeof *f);
    if (!f) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    m->src = f;
    int rc = dlq_llama2c_open(f, path, err);
    if (rc) return rc;
    dlq_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->arch = DLQ_ARCH_LLAMA;
    c->dim = f->dim;
    c->hidden_dim = f->hidden_dim;
    c->n_layers = f->n_layers;
    c->n_heads = f->n_heads;
    c->n_kv_heads = f->n_kv_heads;
    c->head_dim = f->dim / f->n_heads;
    c->vocab_size = f->vocab_size;
    c->max_seq = f->seq_len;
    c->rope_theta = 10000.0f; /* llama2.c's precompute_freqs_cis default */
    c->norm_eps = 1e-5f;      /* llama2.c ModelArgs.norm_eps */
    c->tied = f->shared_classifier;
    c->bos_id = 1;
    c->eos_id = 2;
    if ((rc = dlq_config_validate(c, path, err))) return rc;

    int64_t D = c->dim, H = c->hidden_dim, hd = c->head_dim, kv = (int64_t)c->n_kv_heads * hd;
    set_f32(&m->tok_emb, f->tok_emb, c->vocab_size, D);
    set_f32(&m->out_norm, f->rms_final, 1, D);
    if (c->tied) m->lm_head = m->tok_emb;
    else set_f32(&m->lm_head, f->wcls, c->vocab_size, D);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    float *perm = dlq_model_own(m, (size_t)c->n_layers * (size_t)(D * D + kv * D) * sizeof(float), err);
    if (!m->layers || !perm) return dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", path);
    for (int64_t l = 0; l < c->n_layers; l++) {
        dlq_layer *L = &m->layers[l];
        float *pq = perm + l * (D * D + kv * D), *pk = pq + D * D;
        dlq_permute_rope_rows(pq, f->wq + l * D * D, c->n_heads, (int)hd, (size_t)D * sizeof(float));
        dlq_permute_rope_rows(pk, f->wk + l * kv * D, c->n_kv_heads, (int)hd, (size_t)D * sizeof(float));
        set_f32(&L->attn_norm, f->rms_att + l * D, 1, D);
        set_f32(&L->wq, pq, D, D);
        set_f32(&L->wk, pk, kv, D);
        set_f32(&L->wv, f->wv + l * kv * D, kv, D);
        set_f32(&L->wo, f->wo + l * D * D, D, D);
        set_f32(&L->ffn_norm, f->rms_ffn + l * D, 1, D);
        set_f32(&L->w_gate, f->w1 + l * H * D, H, D);
        set_f32(&L->w_down, f->w2 + l * D * H, D, H);
        set_f32(&L->w_up, f->w3 + l * H * D, H, D);
    }
    /* tokenizer: --tokenizer, else beside the checkpoint tokenizer.bin (llama2.c's default), or
       tok<vocab_size>.model / .bin (llama2.c's names for a custom vocabulary, e.g. tok512) */
    const char *tp = opts ? opts->tokenizer_path : NULL;
    char buf[1200];
    if (!tp) {
        snprintf(buf, sizeof buf, "%s", path);
        char *slash = strrchr(buf, '/');
        if (slash) slash[1] = 0; else buf[0] = 0;
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "tokenizer.bin");
        if (dlq_path_exists(buf)) tp = buf;
        else {
            /* the SentencePiece model first: it carries the normalizer the model was trained with */
            snprintf(buf + n, sizeof buf - n, "tok%d.model", c->vocab_size);
            if (!dlq_path_exists(buf)) snprintf(buf + n, sizeof buf - n, "tok%d.bin", c->vocab_size);
            if (dlq_path_exists(buf)) tp = buf;
        }
    }
    if (tp && (rc = dlq_tok_load_file(&m->tok, tp, c->vocab_size, err))) return rc;
    if (tp) dlq_model_note_tokenizer(m, tp);
    return DLQ_OK;
}
