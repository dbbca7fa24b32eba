/* Model loading: format detection and the Hugging Face folder path. The
 * llama2.c and GGUF paths are in load_llama2c.c / load_gguf.c. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/mapfile.h"
#include "io/dlq_file.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "model/load_internal.h"

const char *dlq_model_format_name(dlq_model_format f) {
    switch (f) {
    case DLQ_FMT_HF: return "huggingface";
    case DLQ_FMT_LLAMA2C: return "llama2.c";
    case DLQ_FMT_GGUF: return "gguf";
    case DLQ_FMT_DLQ: return "dlq";
    }
    return "?";
}

void dlq_permute_rope_rows(void *dst, const void *src, int n_heads, int head_dim, size_t row_bytes) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < half; i++) {
                size_t to = (size_t)h * head_dim + (size_t)c * half + i;
                size_t from = (size_t)h * head_dim + 2 * (size_t)i + c;
                memcpy((char *)dst + to * row_bytes, (const char *)src + from * row_bytes, row_bytes);
            }
}

void *dlq_model_own(dlq_model *m, size_t bytes, dlq_err *err) {
    void **no = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *no);
    if (!no) { dlq_errf(err, DLQ_ENOMEM, "out of memory"); return NULL; }
    m->owned = no;
    void *p = dlq_malloc(bytes, err);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

int dlq_bind_weight(dlq_weight *w, const dlq_tensor_info *t, int64_t rows, int64_t cols, const char *name,
                    const char *what, dlq_err *err) {
    if (!t) return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' is missing", what, name);
    if (t->dtype != DLQ_F32 && t->dtype != DLQ_F16 && t->dtype != DLQ_BF16)
        return dlq_errf(err, DLQ_EUNSUP, "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", what, name,
                        t->dtype < DLQ_DTYPE_COUNT ? dlq_dtype_name(t->dtype) : "(quantized)");
    int ok = (rows == 1 && t->ndim == 1 && t->shape[0] == cols) ||
             (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[96] = "";
        int n = 0;
        for (int i = 0; i < t->ndim && n < 80; i++) n += snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (rows == 1)
            return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' has shape [%s]; the config implies [%lld]", what, name, got, (long long)cols);
        return dlq_errf(err, DLQ_EFORMAT, "%s: tensor '%s' has shape [%s]; the config implies [%lld, %lld]", what, name, got,
                        (long long)rows, (long long)cols);
    }
    w->data = t->data;
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    return DLQ_OK;
}

size_t dlq_weight_bytes(const dlq_weight *w) {
    if (!w->data) return 0;
    if (w->dtype == DLQ_QPACK)
        return (size_t)(w->rows * w->row_bytes) + (size_t)(w->rows * w->qng) * 2 * (w->qpdtype == DLQ_F16 ? 2 : 4);
    return (size_t)(w->rows * w->cols) * dlq_dtype_size(w->dtype);
}

void dlq_model_count_bytes(dlq_model *m) {
    size_t b = dlq_weight_bytes(&m->tok_emb) + dlq_weight_bytes(&m->out_norm);
    if (m->lm_head.data != m->tok_emb.data) b += dlq_weight_bytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        const dlq_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                  &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) b += dlq_weight_bytes(ws[i]);
    }
    m->weight_bytes = b;
}

int64_t dlq_model_n_params(const dlq_model *m) {
    const dlq_config *c = &m->cfg;
    int64_t D = c->dim, H = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per = 2 * D + D * q + 2 * D * kv + q * D + 3 * D * H + (c->qkv_bias ? q + 2 * kv : 0);
    return (int64_t)c->vocab_size * D * (c->tied ? 1 : 2) + D + per * c->n_layers;
}

int dlq_bind_hf_names(dlq_model *m, dlq_bind_fn bind, void *ctx, dlq_err *err) {
    const dlq_config *c = &m->cfg;
    int64_t D = c->dim, H = c->hidden_dim, V = c->vocab_size;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int rc;
#define BIND(w, name, r, cc) if ((rc = bind(ctx, m, name, r, cc, &(w), err))) return rc
    BIND(m->tok_emb, "model.embed_tokens.weight", V, D);
    BIND(m->out_norm, "model.norm.weight", 1, D);
    if (c->tied) m->lm_head = m->tok_emb;
    else BIND(m->lm_head, "lm_head.weight", V, D);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        dlq_layer *L = &m->layers[l];
        char n[160];
#define LB(w, suffix, r, cc) snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix); BIND(L->w, n, r, cc)
        LB(attn_norm, "input_layernorm.weight", 1, D);
        LB(wq, "self_attn.q_proj.weight", q, D);
        LB(wk, "self_attn.k_proj.weight", kv, D);
        LB(wv, "self_attn.v_proj.weight", kv, D);
        LB(wo, "self_attn.o_proj.weight", D, q);
        if (c->qkv_bias) {
            LB(bq, "self_attn.q_proj.bias", 1, q);
            LB(bk, "self_attn.k_proj.bias", 1, kv);
            LB(bv, "self_attn.v_proj.bias", 1, kv);
        }
        LB(ffn_norm, "post_attention_layernorm.weight", 1, D);
        LB(w_gate, "mlp.gate_proj.weight", H, D);
        LB(w_up, "mlp.up_proj.weight", H, D);
        LB(w_down, "mlp.down_proj.weight", D, H);
#undef LB
    }
#undef BIND
    return DLQ_OK;
}

/* ---- Hugging Face folder ---- */

static int bind_st(void *ctx, dlq_model *m, const char *name, int64_t rows, int64_t cols, dlq_weight *w, dlq_err *err) {
    return dlq_bind_weight(w, dlq_st_find((const dlq_safetensors *)ctx, name), rows, cols, name, m->path, err);
}

/* a folder without config.json: name what is in it that dlqat can load instead */
static int no_config(const char *dir, dlq_err *err) {
    char found[600] = "";
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d)) && n + 1 < sizeof found) {
        size_t l = strlen(e->d_name);
        int model = (l > 4 && !strcmp(e->d_name + l - 4, ".bin") && strncmp(e->d_name, "tok", 3)) ||
                    (l > 5 && !strcmp(e->d_name + l - 5, ".gguf")) || (l > 4 && !strcmp(e->d_name + l - 4, ".dlq"));
        if (model) n += (size_t)snprintf(found + n, sizeof found - n, "%s%s/%s", n ? ", " : "", dir, e->d_name);
    }
    if (d) closedir(d);
    if (n >= sizeof found) n = sizeof found - 1;
    return dlq_errf(err, DLQ_EINVAL, "%s: a folder without config.json is not a Hugging Face model%s%s", dir,
                    n ? "; give the model file instead: " : " (give a Hugging Face folder, a llama2.c .bin, a .gguf or a .dlq)",
                    found);
}

static int load_hf(dlq_model *m, const char *dir, const dlq_load_opts *opts, dlq_err *err) {
    char p[1200];
    if (dlq_path_join(p, sizeof p, dir, "config.json")) return dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    if (!dlq_path_exists(p)) return no_config(dir, err);
    int rc = dlq_config_from_hf(&m->cfg, p, err);
    if (rc) return rc;
    dlq_safetensors *st = calloc(1, sizeof *st);
    if (!st) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    m->src = st;
    if ((rc = dlq_st_open(st, dir, err))) return rc;

    const dlq_config *c = &m->cfg;
    if ((rc = dlq_bind_hf_names(m, bind_st, st, err))) return rc;
    /* tokenizer: explicit path, else tokenizer.model, else tokenizer.json */
    const char *tp = opts ? opts->tokenizer_path : NULL;
    if (tp) {
        if ((rc = dlq_tok_load_file(&m->tok, tp, c->vocab_size, err))) return rc;
        dlq_model_note_tokenizer(m, tp);
    } else {
        if (dlq_path_join(p, sizeof p, dir, "tokenizer.model") == 0 && dlq_path_exists(p)) {
            if ((rc = dlq_tok_load_spm(&m->tok, p, err))) return rc;
            dlq_model_note_tokenizer(m, p);
        } else if (dlq_path_join(p, sizeof p, dir, "tokenizer.json") == 0 && dlq_path_exists(p)) {
            if ((rc = dlq_tok_load_hf_json(&m->tok, p, err))) return rc;
            dlq_model_note_tokenizer(m, p);
        }
    }
    if (m->tok) {
        /* tokenizer_config.json decides BOS/EOS insertion (add_bos_token) */
        if (dlq_path_join(p, sizeof p, dir, "tokenizer_config.json") == 0 && dlq_path_exists(p)) {
            json_error_t je;
            json_t *tc = json_load_file(p, 0, &je);
            if (!tc) return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d: %s", p, je.line, je.text);
            json_t *ab = json_object_get(tc, "add_bos_token");
            if (json_is_boolean(ab)) dlq_tok_set_add_bos(m->tok, json_is_true(ab));
            json_decref(tc);
        }
        if (dlq_tok_vocab_size(m->tok) > c->vocab_size)
            return dlq_errf(err, DLQ_EFORMAT, "%s: tokenizer has %d tokens but the model's vocabulary is %d", dir,
                            dlq_tok_vocab_size(m->tok), c->vocab_size);
    }
    return DLQ_OK;
}

void dlq_model_note_tokenizer(dlq_model *m, const char *path) {
    const char *k = dlq_str_endswith(path, ".json") ? "hf_json" : dlq_str_endswith(path, ".bin") ? "llama2c"
                  : dlq_path_is_dir(path) ? "" : "sentencepiece";
    if (dlq_path_is_dir(path)) { /* a folder given as --tokenizer: the file dlq_tok_load_file picked */
        static const char *names[] = {"tokenizer.model", "tokenizer.json", "tokenizer.bin"};
        for (int i = 0; i < 3; i++) {
            char p[1200];
            if (dlq_path_join(p, sizeof p, path, names[i]) == 0 && dlq_path_exists(p)) { dlq_model_note_tokenizer(m, p); return; }
        }
        return;
    }
    snprintf(m->tok_kind, sizeof m->tok_kind, "%s", k);
    snprintf(m->tok_path, sizeof m->tok_path, "%s", path);
}

static void free_src(dlq_model *m) {
    if (!m->src) return;
    switch (m->format) {
    case DLQ_FMT_HF: dlq_st_close((dlq_safetensors *)m->src); break;
    case DLQ_FMT_LLAMA2C: dlq_llama2c_close((dlq_llama2c *)m->src); break;
    case DLQ_FMT_GGUF: dlq_gguf_close((dlq_gguf *)m->src); break;
    case DLQ_FMT_DLQ: dlq_file_close((dlq_file *)m->src); break;
    }
    free(m->src);
    m->src = NULL;
}

/* An untied embedding table that is a view into a mapped file gets its rows
 * read with pread (dlq_weight.row_fd): generation looks up a few hundred rows
 * of a table of tens of thousands, and reading them through the mapping made
 * the whole table resident (see model.h). A tied table is streamed whole by
 * the head anyway, so it stays mapped. Without the file (or on any failure)
 * rows are read through the mapping as before. */
static void read_embedding_rows(dlq_model *m) {
    dlq_weight *w = &m->tok_emb;
    if (!w->data || w->data == m->lm_head.data || w->dtype == DLQ_QPACK || !m->src) return;
    const dlq_mapfile *files = NULL;
    int n = 0;
    switch (m->format) {
    case DLQ_FMT_HF: files = ((dlq_safetensors *)m->src)->files; n = ((dlq_safetensors *)m->src)->nfiles; break;
    case DLQ_FMT_LLAMA2C: files = &((dlq_llama2c *)m->src)->file; n = 1; break;
    case DLQ_FMT_GGUF: files = &((dlq_gguf *)m->src)->file; n = 1; break;
    case DLQ_FMT_DLQ: files = &((dlq_file *)m->src)->map; n = 1; break;
    }
    size_t bytes = (size_t)(w->rows * w->cols) * dlq_dtype_size(w->dtype);
    for (int i = 0; i < n; i++) {
        const uint8_t *p = w->data;
        if (!files[i].data || p < files[i].data || p + bytes > files[i].data + files[i].size) continue;
        int fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;
        struct stat st; /* the same file as the mapping, not one renamed over it since */
        if (fstat(fd, &st) || (uint64_t)st.st_dev != files[i].dev || (uint64_t)st.st_ino != files[i].ino) {
            close(fd);
            return;
        }
        m->emb_fd = fd;
        m->emb_fd_open = 1;
        w->row_fd_set = 1;
        w->row_fd = fd;
        w->row_off = (int64_t)(p - files[i].data);
        return;
    }
}

void dlq_model_destroy(dlq_model *m) {
    if (!m) return;
    free_src(m);
    if (m->emb_fd_open) close(m->emb_fd);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    if (m->tok) dlq_tok_destroy(m->tok);
    free(m);
}

int dlq_model_load(dlq_model **out, const char *path, const dlq_load_opts *opts, dlq_err *err) {
    *out = NULL;
    dlq_model *m = calloc(1, sizeof *m);
    if (!m) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    int rc;
    if (dlq_path_is_dir(path)) {
        m->format = DLQ_FMT_HF;
        rc = load_hf(m, path, opts, err);
    } else if (dlq_str_endswith(path, ".gguf")) {
        m->format = DLQ_FMT_GGUF;
        rc = dlq_load_gguf_model(m, path, opts, err);
    } else if (dlq_str_endswith(path, ".dlq")) {
        m->format = DLQ_FMT_DLQ;
        rc = dlq_load_dlq_model(m, path, opts, err);
    } else if (dlq_str_endswith(path, ".bin")) {
        m->format = DLQ_FMT_LLAMA2C;
        rc = dlq_load_llama2c_model(m, path, opts, err);
    } else if (!dlq_path_exists(path)) {
        rc = dlq_errf(err, DLQ_EIO, "%s: no such file or folder", path);
    } else {
        rc = dlq_errf(err, DLQ_EINVAL, "%s: unknown model format: expected a Hugging Face folder (config.json + "
                      "safetensors), a llama2.c .bin, a .gguf or a .dlq file", path);
    }
    if (!rc && opts && opts->adapter_path) rc = dlq_model_apply_adapter(m, opts->adapter_path, err);
    if (rc) { dlq_model_destroy(m); return rc; }
    read_embedding_rows(m);
    dlq_model_count_bytes(m);
    *out = m;
    return DLQ_OK;
}
