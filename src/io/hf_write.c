/* Hugging Face model / PEFT adapter writers and the adapter reader: see hf_write.h. */
#include "io/hf_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "io/safetensors.h"
#include "model/model.h"

#define TRANSFORMERS_VERSION "4.46.3"
#define PEFT_VERSION "0.13.2"

/* ------------------------------------------------------------------ names */

static const char *const MODULES[][2] = {
    {"q_proj", "self_attn"}, {"k_proj", "self_attn"}, {"v_proj", "self_attn"}, {"o_proj", "self_attn"},
    {"gate_proj", "mlp"},    {"up_proj", "mlp"},      {"down_proj", "mlp"},
};

const char *dlq_hf_module_parent(const char *module) {
    if (!module) return NULL;
    for (size_t i = 0; i < sizeof MODULES / sizeof MODULES[0]; i++)
        if (!strcmp(module, MODULES[i][0])) return MODULES[i][1];
    return NULL;
}

int dlq_hf_tensor_name(char *buf, size_t cap, int layer, const char *module, const char *suffix) {
    const char *parent = dlq_hf_module_parent(module);
    int k;
    if (!suffix || (strcmp(suffix, "weight") && strcmp(suffix, "bias"))) return DLQ_EINVAL;
    if (parent) k = snprintf(buf, cap, "model.layers.%d.%s.%s.%s", layer, parent, module, suffix);
    else if (module && (!strcmp(module, "input_layernorm") || !strcmp(module, "post_attention_layernorm")))
        k = snprintf(buf, cap, "model.layers.%d.%s.%s", layer, module, suffix);
    else return DLQ_EINVAL;
    return k < 0 || (size_t)k >= cap ? DLQ_EINVAL : DLQ_OK;
}

int dlq_peft_tensor_name(char *buf, size_t cap, int layer, const char *module, char ab) {
    const char *parent = dlq_hf_module_parent(module);
    if (!parent || (ab != 'A' && ab != 'B')) return DLQ_EINVAL;
    int k = snprintf(buf, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, parent, module, ab);
    return k < 0 || (size_t)k >= cap ? DLQ_EINVAL : DLQ_OK;
}

/* in / out features of a module in a model with config c */
static void module_dims(const dlq_config *c, const char *module, int64_t *in, int64_t *out) {
    int64_t D = c->dim, H = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    *in = D;
    *out = D;
    if (!strcmp(module, "q_proj")) *out = q;
    else if (!strcmp(module, "k_proj") || !strcmp(module, "v_proj")) *out = kv;
    else if (!strcmp(module, "o_proj")) *in = q;
    else if (!strcmp(module, "gate_proj") || !strcmp(module, "up_proj")) *out = H;
    else if (!strcmp(module, "down_proj")) *in = H;
}

/* -------------------------------------------------------- model -> tensors */

static void put_w(dlq_hf_tensor *t, const char *name, const dlq_weight *w, int vec) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = w->data;
    t->dtype = w->dtype;
    if (vec) { t->ndim = 1; t->shape[0] = w->rows * w->cols; }
    else { t->ndim = 2; t->shape[0] = w->rows; t->shape[1] = w->cols; }
}

int dlq_hf_tensors_from_model(const dlq_model *m, dlq_hf_tensor **out, size_t *n, dlq_err *err) {
    *out = NULL;
    *n = 0;
    const dlq_config *c = &m->cfg;
    size_t cap = 3 + (size_t)c->n_layers * 12;
    dlq_hf_tensor *t = dlq_calloc(cap, sizeof *t, err);
    if (!t) return DLQ_ENOMEM;
    size_t k = 0;
    char nm[160];
    put_w(&t[k++], "model.embed_tokens.weight", &m->tok_emb, 0);
    for (int l = 0; l < c->n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
#define W(mod, suf, w, vec) dlq_hf_tensor_name(nm, sizeof nm, l, mod, suf); put_w(&t[k++], nm, &L->w, vec)
        W("input_layernorm", "weight", attn_norm, 1);
        W("q_proj", "weight", wq, 0);
        if (c->qkv_bias) { W("q_proj", "bias", bq, 1); }
        W("k_proj", "weight", wk, 0);
        if (c->qkv_bias) { W("k_proj", "bias", bk, 1); }
        W("v_proj", "weight", wv, 0);
        if (c->qkv_bias) { W("v_proj", "bias", bv, 1); }
        W("o_proj", "weight", wo, 0);
        W("post_attention_layernorm", "weight", ffn_norm, 1);
        W("gate_proj", "weight", w_gate, 0);
        W("up_proj", "weight", w_up, 0);
        W("down_proj", "weight", w_down, 0);
#undef W
    }
    put_w(&t[k++], "model.norm.weight", &m->out_norm, 1);
    if (!c->tied) put_w(&t[k++], "lm_head.weight", &m->lm_head, 0);
    *out = t;
    *n = k;
    return DLQ_OK;
}

/* ------------------------------------------------------------ config.json */

static const char *torch_dtype(dlq_dtype d) {
    return d == DLQ_BF16 ? "bfloat16" : d == DLQ_F16 ? "float16" : "float32";
}

/* float config values as the shortest decimal that round-trips the float32
 * (so 1e-5f is written 1e-05, not 9.99999974737875e-06) */
static json_t *jfloat(float f) {
    char b[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        if ((float)strtod(b, NULL) == f) break;
    }
    return json_real(strtod(b, NULL));
}

char *dlq_hf_config_json(const dlq_config *c, dlq_dtype dtype_out) {
    static const char *const arch[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
    static const char *const mtype[] = {"llama", "mistral", "qwen2"};
    int a = (unsigned)c->arch <= DLQ_ARCH_QWEN2 ? (int)c->arch : 0;
    json_t *o = json_object();
    json_t *ar = json_array();
    json_array_append_new(ar, json_string(arch[a]));
    json_object_set_new(o, "architectures", ar);
    json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id) : json_null());
    json_object_set_new(o, "eos_token_id", c->eos_id >= 0 ? json_integer(c->eos_id) : json_null());
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->dim));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "intermediate_size", json_integer(c->hidden_dim));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq));
    if (c->arch == DLQ_ARCH_QWEN2) json_object_set_new(o, "max_window_layers", json_integer(c->n_layers));
    if (c->arch == DLQ_ARCH_LLAMA) json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "model_type", json_string(mtype[a]));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    if (c->arch == DLQ_ARCH_LLAMA) json_object_set_new(o, "pretraining_tp", json_integer(1));
    json_object_set_new(o, "rms_norm_eps", jfloat(c->norm_eps));
    if (c->rope_kind == DLQ_ROPE_LLAMA3) {
        json_t *rs = json_object();
        json_object_set_new(rs, "factor", jfloat(c->rope_factor));
        json_object_set_new(rs, "high_freq_factor", jfloat(c->rope_high_freq));
        json_object_set_new(rs, "low_freq_factor", jfloat(c->rope_low_freq));
        json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_orig_max));
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(o, "rope_scaling", rs);
    } else if (c->rope_kind == DLQ_ROPE_LINEAR) {
        json_t *rs = json_object();
        json_object_set_new(rs, "factor", jfloat(c->rope_factor));
        json_object_set_new(rs, "rope_type", json_string("linear"));
        json_object_set_new(rs, "type", json_string("linear"));
        json_object_set_new(o, "rope_scaling", rs);
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    json_object_set_new(o, "rope_theta", jfloat(c->rope_theta));
    if (c->arch == DLQ_ARCH_MISTRAL || c->arch == DLQ_ARCH_QWEN2)
        json_object_set_new(o, "sliding_window", c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied));
    json_object_set_new(o, "torch_dtype", json_string(torch_dtype(dtype_out)));
    json_object_set_new(o, "transformers_version", json_string(TRANSFORMERS_VERSION));
    json_object_set_new(o, "use_cache", json_true());
    if (c->arch == DLQ_ARCH_QWEN2) json_object_set_new(o, "use_sliding_window", json_false());
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    return s;
}

/* ----------------------------------------------------------- file helpers */

static int write_text(const char *dir, const char *name, const char *text, dlq_err *err) {
    char p[2048];
    if (dlq_path_join(p, sizeof p, dir, name)) return dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", p, strerror(errno));
    size_t n = strlen(text);
    int rc = DLQ_OK;
    const char *q = text;
    while (n && !rc) {
        ssize_t k = write(fd, q, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", p, strerror(errno));
        } else { q += k; n -= (size_t)k; }
    }
    if (!rc && write(fd, "\n", 1) != 1) rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", p, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", p, strerror(errno));
    if (close(fd) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", p, strerror(errno));
    return rc;
}

static int write_json(const char *dir, const char *name, json_t *o, dlq_err *err) {
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (!s) return dlq_errf(err, DLQ_ENOMEM, "%s/%s: cannot serialise JSON", dir, name);
    int rc = write_text(dir, name, s, err);
    free(s);
    return rc;
}

static int copy_file(const char *src, const char *dir, const char *name, dlq_err *err) {
    char *buf;
    size_t len;
    int rc = dlq_read_file(src, &buf, &len, err);
    if (rc) return rc;
    char p[2048];
    if (dlq_path_join(p, sizeof p, dir, name)) { free(buf); return dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir); }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { free(buf); return dlq_errf(err, DLQ_EIO, "%s: cannot create: %s", p, strerror(errno)); }
    const char *q = buf;
    size_t n = len;
    while (n && !rc) {
        ssize_t k = write(fd, q, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = dlq_errf(err, DLQ_EIO, "%s: write failed: %s", p, strerror(errno));
        } else { q += k; n -= (size_t)k; }
    }
    if (!rc && fsync(fd) != 0) rc = dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", p, strerror(errno));
    if (close(fd) != 0 && !rc) rc = dlq_errf(err, DLQ_EIO, "%s: close failed: %s", p, strerror(errno));
    free(buf);
    return rc;
}

/* The tokenizer files of a Hugging Face folder that exist in tok_src, copied into tmp. */
static int copy_tokenizer_files(const char *tok_src, const char *tmp, dlq_err *err) {
    static const char *const tok_files[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                            "special_tokens_map.json", "added_tokens.json"};
    int rc = DLQ_OK;
    for (size_t i = 0; !rc && i < sizeof tok_files / sizeof tok_files[0]; i++) {
        char src[2048];
        if (dlq_path_join(src, sizeof src, tok_src, tok_files[i])) return dlq_errf(err, DLQ_EINVAL, "%s: path too long", tok_src);
        if (dlq_path_exists(src)) rc = copy_file(src, tmp, tok_files[i], err);
    }
    return rc;
}

static int fsync_path(const char *p) {
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static void parent_of(const char *p, char *out, size_t cap) {
    snprintf(out, cap, "%s", p);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') out[--n] = 0;
    char *s = strrchr(out, '/');
    if (!s) snprintf(out, cap, ".");
    else if (s == out) out[1] = 0;
    else *s = 0;
}

/* Removes the plain files in d and d itself. Refuses (returns -1, touching
 * nothing) if d holds anything but plain files. */
static int remove_flat_dir(const char *d, int dry_run) {
    DIR *dp = opendir(d);
    if (!dp) return -1;
    struct dirent *e;
    int bad = 0;
    char p[2048];
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode)) { bad = 1; break; }
        if (!dry_run) unlink(p);
    }
    closedir(dp);
    if (bad) return -1;
    return dry_run ? 0 : rmdir(d);
}

/* Creates "<dir>.tmp.XXXXXX" (mode 0755). */
static int make_tmp_dir(const char *dir, char *tmp, size_t cap, dlq_err *err) {
    char d[2048];
    snprintf(d, sizeof d, "%s", dir);
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') d[--n] = 0;
    if (!n) return dlq_errf(err, DLQ_EINVAL, "output folder name is empty");
    if ((size_t)snprintf(tmp, cap, "%s.tmp.XXXXXX", d) >= cap) return dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    if (!mkdtemp(tmp)) return dlq_errf(err, DLQ_EIO, "%s: cannot create a temporary folder next to it: %s", dir, strerror(errno));
    chmod(tmp, 0755);
    return DLQ_OK;
}

/* Moves the finished tmp folder to dir (replacing a previous export). */
static int install_dir(const char *tmp, const char *dir, dlq_err *err) {
    char parent[2048];
    parent_of(dir, parent, sizeof parent);
    if (fsync_path(tmp) != 0) return dlq_errf(err, DLQ_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return dlq_errf(err, DLQ_EINVAL, "%s: exists and is not a folder", dir);
        if (rmdir(dir) != 0) { /* not empty */
            if (remove_flat_dir(dir, 1) != 0)
                return dlq_errf(err, DLQ_EINVAL, "%s: exists and holds sub-folders; not replacing it", dir);
            char old[2100];
            snprintf(old, sizeof old, "%s.old.XXXXXX", tmp);
            if (!mkdtemp(old) || rmdir(old) != 0) return dlq_errf(err, DLQ_EIO, "%s: cannot make a backup name: %s", dir, strerror(errno));
            if (rename(dir, old) != 0) return dlq_errf(err, DLQ_EIO, "%s: cannot move aside: %s", dir, strerror(errno));
            if (rename(tmp, dir) != 0) {
                int e = errno;
                rename(old, dir);
                return dlq_errf(err, DLQ_EIO, "%s: rename from %s failed: %s", dir, tmp, strerror(e));
            }
            fsync_path(parent);
            remove_flat_dir(old, 0);
            return DLQ_OK;
        }
    }
    if (rename(tmp, dir) != 0) return dlq_errf(err, DLQ_EIO, "%s: rename from %s failed: %s", dir, tmp, strerror(errno));
    fsync_path(parent);
    return DLQ_OK;
}

static void discard_tmp(const char *tmp) { remove_flat_dir(tmp, 0); }

static int64_t numel_of(const dlq_hf_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static int check_tensor(const dlq_hf_tensor *t, const char *dir, dlq_err *err) {
    if (!t->name[0]) return dlq_errf(err, DLQ_EINVAL, "%s: a tensor has no name", dir);
    if (!t->data) return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s' has no data", dir, t->name);
    if (t->dtype != DLQ_F32 && t->dtype != DLQ_F16 && t->dtype != DLQ_BF16)
        return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': dtype %s (need F32, F16 or BF16)", dir, t->name,
                        (unsigned)t->dtype < DLQ_DTYPE_COUNT ? dlq_dtype_name(t->dtype) : "?");
    if (t->ndim < 1 || t->ndim > DLQ_MAX_DIMS) return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': ndim %d", dir, t->name, t->ndim);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] <= 0 || t->shape[i] > ((int64_t)1 << 40))
            return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': shape[%d] = %lld", dir, t->name, i, (long long)t->shape[i]);
    return DLQ_OK;
}

/* Builds safetensors infos converting to dtype_out; conversions go to *bufs[i]. */
static int convert_all(const dlq_hf_tensor *t, size_t n, dlq_dtype out, const char *dir, dlq_tensor_info *info,
                       void **bufs, dlq_err *err) {
    for (size_t i = 0; i < n; i++) {
        int rc = check_tensor(&t[i], dir, err);
        if (rc) return rc;
        int64_t ne = numel_of(&t[i]);
        dlq_tensor_info *x = &info[i];
        memset(x, 0, sizeof *x);
        if (strlen(t[i].name) >= sizeof x->name) return dlq_errf(err, DLQ_EINVAL, "%s: tensor name '%s' is too long", dir, t[i].name);
        snprintf(x->name, sizeof x->name, "%s", t[i].name);
        x->dtype = out;
        x->file_type = -1;
        x->ndim = t[i].ndim;
        memcpy(x->shape, t[i].shape, sizeof x->shape);
        x->nbytes = (size_t)ne * dlq_dtype_size(out);
        if (t[i].dtype == out) { x->data = t[i].data; continue; }
        float *f = t[i].dtype == DLQ_F32 ? NULL : dlq_malloc((size_t)ne * sizeof(float), err);
        void *o = out == DLQ_F32 ? NULL : dlq_malloc(x->nbytes, err);
        if ((t[i].dtype != DLQ_F32 && !f) || (out != DLQ_F32 && !o)) { free(f); free(o); return DLQ_ENOMEM; }
        const float *src = t[i].data;
        if (f) { dlq_to_f32(f, t[i].data, t[i].dtype, (size_t)ne); src = f; }
        if (out == DLQ_F32) { bufs[i] = f; x->data = f; continue; }
        uint16_t *h = o;
        if (out == DLQ_BF16) for (int64_t k = 0; k < ne; k++) h[k] = dlq_f32_to_bf16(src[k]);
        else for (int64_t k = 0; k < ne; k++) h[k] = dlq_f32_to_f16(src[k]);
        free(f);
        bufs[i] = o;
        x->data = o;
    }
    return DLQ_OK;
}

static int write_st(const char *dir, const char *name, const dlq_hf_tensor *t, size_t n, dlq_dtype out, dlq_err *err) {
    dlq_tensor_info *info = dlq_calloc(n ? n : 1, sizeof *info, err);
    void **bufs = dlq_calloc(n ? n : 1, sizeof *bufs, err);
    int rc = info && bufs ? convert_all(t, n, out, dir, info, bufs, err) : DLQ_ENOMEM;
    char p[2048];
    if (!rc && dlq_path_join(p, sizeof p, dir, name)) rc = dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    if (!rc) rc = dlq_st_write(p, info, n, "{\"format\": \"pt\"}", err);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(info);
    return rc;
}

/* ------------------------------------------------------------- HF model */

int dlq_hf_write_model(const char *dir, const dlq_config *cfg, const dlq_hf_tensor *tensors, size_t n,
                       dlq_dtype dtype_out, const char *tok_src, dlq_err *err) {
    if (!dir || !cfg || (n && !tensors)) return dlq_errf(err, DLQ_EINVAL, "hf write: missing argument");
    if (dtype_out != DLQ_F32 && dtype_out != DLQ_BF16 && dtype_out != DLQ_F16)
        return dlq_errf(err, DLQ_EINVAL, "%s: output dtype must be F32, BF16 or F16", dir);
    int rc = dlq_config_validate(cfg, dir, err);
    if (rc) return rc;
    if (cfg->arch == DLQ_ARCH_QWEN2 && cfg->head_dim * cfg->n_heads != cfg->dim)
        return dlq_errf(err, DLQ_EUNSUP, "%s: transformers' Qwen2 derives head_dim = hidden_size / heads; %d != %d / %d",
                        dir, cfg->head_dim, cfg->dim, cfg->n_heads);
    if (cfg->qkv_bias && cfg->arch != DLQ_ARCH_QWEN2)
        return dlq_errf(err, DLQ_EUNSUP, "%s: q/k/v biases are only expressible for Qwen2 configs", dir);
    if (tok_src && !dlq_path_is_dir(tok_src))
        return dlq_errf(err, DLQ_EINVAL, "%s: tokenizer source is not a folder", tok_src);
    char tmp[2048];
    if ((rc = make_tmp_dir(dir, tmp, sizeof tmp, err))) return rc;

    char *cj = dlq_hf_config_json(cfg, dtype_out);
    if (!cj) rc = dlq_errf(err, DLQ_ENOMEM, "%s: cannot build config.json", dir);
    else rc = write_text(tmp, "config.json", cj, err);
    free(cj);
    if (!rc) {
        json_t *g = json_object();
        json_object_set_new(g, "_from_model_config", json_true());
        if (cfg->bos_id >= 0) json_object_set_new(g, "bos_token_id", json_integer(cfg->bos_id));
        if (cfg->eos_id >= 0) json_object_set_new(g, "eos_token_id", json_integer(cfg->eos_id));
        json_object_set_new(g, "transformers_version", json_string(TRANSFORMERS_VERSION));
        rc = write_json(tmp, "generation_config.json", g, err);
        json_decref(g);
    }
    if (!rc) rc = write_st(tmp, "model.safetensors", tensors, n, dtype_out, err);
    if (!rc && tok_src) rc = copy_tokenizer_files(tok_src, tmp, err);
    if (!rc) rc = install_dir(tmp, dir, err);
    if (rc) discard_tmp(tmp);
    return rc;
}

/* ------------------------------------------------------------ PEFT write */

static int parse_peft_name(const char *name, int *layer, char *module, char *ab) {
    char parent[32], mod[32], tail[16];
    int n = 0;
    if (sscanf(name, "base_model.model.model.layers.%d.%31[^.].%31[^.].lora_%c.%15s%n", layer, parent, mod, ab, tail, &n) != 5 ||
        name[n] != 0 || strcmp(tail, "weight") || *layer < 0)
        return -1;
    const char *p = dlq_hf_module_parent(mod);
    if (!p || strcmp(p, parent) || (*ab != 'A' && *ab != 'B')) return -1;
    snprintf(module, 32, "%s", mod);
    return 0;
}

static int is_target(const dlq_peft_config *c, const char *module) {
    for (int i = 0; i < c->n_targets; i++)
        if (!strcmp(c->target_modules[i], module)) return 1;
    return 0;
}

int dlq_peft_write_adapter(const char *dir, const dlq_peft_config *cfg, const dlq_hf_tensor *t, size_t n, dlq_err *err) {
    if (!dir || !cfg || (n && !t)) return dlq_errf(err, DLQ_EINVAL, "peft write: missing argument");
    if (cfg->r <= 0 || !(cfg->lora_alpha > 0) || !isfinite(cfg->lora_alpha))
        return dlq_errf(err, DLQ_EINVAL, "%s: LoRA r = %d / lora_alpha = %g are invalid", dir, cfg->r, cfg->lora_alpha);
    if (cfg->n_targets <= 0 || cfg->n_targets > 8) return dlq_errf(err, DLQ_EINVAL, "%s: %d target modules", dir, cfg->n_targets);
    for (int i = 0; i < cfg->n_targets; i++)
        if (!dlq_hf_module_parent(cfg->target_modules[i]))
            return dlq_errf(err, DLQ_EINVAL, "%s: unknown target module '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                            dir, cfg->target_modules[i]);
    for (size_t i = 0; i < n; i++) {
        int layer;
        char mod[32], ab;
        if (parse_peft_name(t[i].name, &layer, mod, &ab))
            return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s' is not named like a PEFT LoRA weight "
                            "(base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight)", dir, t[i].name);
        if (!is_target(cfg, mod)) return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': %s is not a target module", dir, t[i].name, mod);
        if (t[i].ndim != 2 || (ab == 'A' && t[i].shape[0] != cfg->r) || (ab == 'B' && t[i].shape[1] != cfg->r))
            return dlq_errf(err, DLQ_EINVAL, "%s: tensor '%s': shape must be %s with r = %d", dir, t[i].name,
                            ab == 'A' ? "[r, in]" : "[out, r]", cfg->r);
    }
    char tmp[2048];
    int rc = make_tmp_dir(dir, tmp, sizeof tmp, err);
    if (rc) return rc;
    json_t *o = json_object();
    json_object_set_new(o, "alpha_pattern", json_object());
    json_object_set_new(o, "auto_mapping", json_null());
    json_object_set_new(o, "base_model_name_or_path", cfg->base_model[0] ? json_string(cfg->base_model) : json_null());
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_false());
    json_object_set_new(o, "inference_mode", json_true());
    json_object_set_new(o, "init_lora_weights", json_true());
    json_object_set_new(o, "layer_replication", json_null());
    json_object_set_new(o, "layers_pattern", json_null());
    json_object_set_new(o, "layers_to_transform", json_null());
    json_object_set_new(o, "loftq_config", json_object());
    double ia;
    json_object_set_new(o, "lora_alpha", modf(cfg->lora_alpha, &ia) == 0 && fabs(cfg->lora_alpha) < 1e15
                                             ? json_integer((json_int_t)cfg->lora_alpha) : json_real(cfg->lora_alpha));
    json_object_set_new(o, "lora_dropout", json_real(0.0));
    json_object_set_new(o, "megatron_config", json_null());
    json_object_set_new(o, "megatron_core", json_string("megatron.core"));
    json_object_set_new(o, "modules_to_save", json_null());
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "r", json_integer(cfg->r));
    json_object_set_new(o, "rank_pattern", json_object());
    json_object_set_new(o, "revision", json_null());
    json_t *tm = json_array();
    for (int i = 0; i < cfg->n_targets; i++) json_array_append_new(tm, json_string(cfg->target_modules[i]));
    json_object_set_new(o, "target_modules", tm);
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "use_dora", json_false());
    json_object_set_new(o, "use_rslora", json_boolean(cfg->use_rslora));
    rc = write_json(tmp, "adapter_config.json", o, err);
    json_decref(o);
    if (!rc) rc = write_st(tmp, "adapter_model.safetensors", t, n, DLQ_F32, err);
    if (!rc) rc = install_dir(tmp, dir, err);
    if (rc) discard_tmp(tmp);
    return rc;
}

/* ------------------------------------------------------------- PEFT read */

void dlq_peft_adapter_free(dlq_peft_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_pairs; i++) { free(a->pairs[i].A); free(a->pairs[i].B); }
    free(a->pairs);
    free(a);
}

const dlq_lora_pair *dlq_peft_find(const dlq_peft_adapter *a, int layer, const char *module) {
    for (size_t i = 0; a && i < a->n_pairs; i++)
        if (a->pairs[i].layer == layer && !strcmp(a->pairs[i].module, module)) return &a->pairs[i];
    return NULL;
}

static int module_rank(const char *m) {
    for (size_t i = 0; i < sizeof MODULES / sizeof MODULES[0]; i++)
        if (!strcmp(m, MODULES[i][0])) return (int)i;
    return 99;
}

static int cmp_pair(const void *x, const void *y) {
    const dlq_lora_pair *a = x, *b = y;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return module_rank(a->module) - module_rank(b->module);
}

static int json_nonempty(json_t *v) {
    return v && !json_is_null(v) && !((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0));
}

static int parse_adapter_config(const char *path, dlq_peft_config *c, dlq_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return dlq_errf(err, dlq_path_exists(path) ? DLQ_EFORMAT : DLQ_EIO, "%s: %s%s (line %d)", path,
                            dlq_path_exists(path) ? "invalid JSON: " : "cannot read: ", je.text, je.line);
    int rc = DLQ_OK;
#define BAD(code, ...) do { rc = dlq_errf(err, code, __VA_ARGS__); goto done; } while (0)
    if (!json_is_object(o)) BAD(DLQ_EFORMAT, "%s: expected a JSON object", path);
    const char *pt = json_string_value(json_object_get(o, "peft_type"));
    if (!pt || strcmp(pt, "LORA")) BAD(DLQ_EUNSUP, "%s: peft_type \"%s\" is not supported (only LORA)", path, pt ? pt : "?");
    json_t *r = json_object_get(o, "r"), *al = json_object_get(o, "lora_alpha");
    if (!json_is_integer(r) || json_integer_value(r) <= 0 || json_integer_value(r) > 65536)
        BAD(DLQ_EFORMAT, "%s: \"r\" must be a positive integer", path);
    c->r = (int)json_integer_value(r);
    if (!al || json_is_null(al)) c->lora_alpha = 8; /* PEFT's LoraConfig default */
    else if (!json_is_number(al) || !(json_number_value(al) > 0)) BAD(DLQ_EFORMAT, "%s: \"lora_alpha\" must be a positive number", path);
    else c->lora_alpha = json_number_value(al);
    json_t *rs = json_object_get(o, "use_rslora");
    if (rs && !json_is_null(rs) && !json_is_boolean(rs)) BAD(DLQ_EFORMAT, "%s: \"use_rslora\" must be true or false", path);
    c->use_rslora = json_is_true(rs);
    if (json_is_true(json_object_get(o, "use_dora"))) BAD(DLQ_EUNSUP, "%s: use_dora=true (DoRA) is not supported", path);
    if (json_is_true(json_object_get(o, "fan_in_fan_out"))) BAD(DLQ_EUNSUP, "%s: fan_in_fan_out=true is not supported", path);
    const char *bias = json_string_value(json_object_get(o, "bias"));
    if (bias && strcmp(bias, "none")) BAD(DLQ_EUNSUP, "%s: bias \"%s\" is not supported (only \"none\")", path, bias);
    if (json_nonempty(json_object_get(o, "rank_pattern")) || json_nonempty(json_object_get(o, "alpha_pattern")))
        BAD(DLQ_EUNSUP, "%s: per-module rank_pattern / alpha_pattern are not supported", path);
    if (json_nonempty(json_object_get(o, "modules_to_save"))) BAD(DLQ_EUNSUP, "%s: modules_to_save is not supported", path);
    json_t *tm = json_object_get(o, "target_modules");
    if (json_is_string(tm)) BAD(DLQ_EUNSUP, "%s: target_modules as a regular expression (\"%s\") is not supported; list the modules",
                               path, json_string_value(tm));
    if (!json_is_array(tm) || !json_array_size(tm)) BAD(DLQ_EFORMAT, "%s: \"target_modules\" must be a non-empty list", path);
    size_t i;
    json_t *v;
    json_array_foreach(tm, i, v) {
        const char *s = json_string_value(v);
        if (!s || !dlq_hf_module_parent(s))
            BAD(DLQ_EUNSUP, "%s: target module \"%s\" is not supported (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                path, s ? s : "?");
        if (is_target(c, s)) continue;
        if (c->n_targets == 8) BAD(DLQ_EFORMAT, "%s: too many target modules", path);
        snprintf(c->target_modules[c->n_targets++], sizeof c->target_modules[0], "%s", s);
    }
    const char *bm = json_string_value(json_object_get(o, "base_model_name_or_path"));
    if (bm) snprintf(c->base_model, sizeof c->base_model, "%s", bm);
#undef BAD
done:
    json_decref(o);
    return rc;
}

int dlq_peft_read_adapter(const char *dir, const dlq_config *base, dlq_peft_adapter **out, dlq_err *err) {
    *out = NULL;
    char cp[2048], sp[2048];
    if (dlq_path_join(cp, sizeof cp, dir, "adapter_config.json") || dlq_path_join(sp, sizeof sp, dir, "adapter_model.safetensors"))
        return dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    dlq_peft_adapter *a = dlq_calloc(1, sizeof *a, err);
    if (!a) return DLQ_ENOMEM;
    int rc = parse_adapter_config(cp, &a->cfg, err);
    if (rc) { free(a); return rc; }
    a->scaling = dlq_peft_scaling(&a->cfg);
    if (!dlq_path_exists(sp)) {
        free(a);
        return dlq_errf(err, DLQ_EIO, "%s: missing (adapter_model.bin is not supported; save with safe_serialization)", sp);
    }
    dlq_safetensors st;
    if ((rc = dlq_st_open(&st, sp, err))) { free(a); return rc; }
    a->pairs = calloc(st.ntensors ? st.ntensors : 1, sizeof *a->pairs);
    if (!a->pairs) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", sp); goto fail; }
    const int r = a->cfg.r;
#define BAD(...) do { rc = dlq_errf(err, DLQ_EFORMAT, __VA_ARGS__); goto fail; } while (0)
    for (size_t i = 0; i < st.ntensors; i++) {
        const dlq_tensor_info *t = &st.tensors[i];
        int layer;
        char mod[32], ab;
        if (parse_peft_name(t->name, &layer, mod, &ab))
            BAD("%s: unexpected tensor '%s' (expected base_model.model.model.layers.N.<self_attn|mlp>.<module>.lora_<A|B>.weight)", sp, t->name);
        if (!is_target(&a->cfg, mod)) BAD("%s: tensor '%s': %s is not in target_modules", sp, t->name, mod);
        if (t->dtype != DLQ_F32 && t->dtype != DLQ_F16 && t->dtype != DLQ_BF16)
            BAD("%s: tensor '%s': dtype %s (need F32, F16 or BF16)", sp, t->name,
                t->dtype < DLQ_DTYPE_COUNT ? dlq_dtype_name(t->dtype) : "?");
        if (t->ndim != 2 || (ab == 'A' && t->shape[0] != r) || (ab == 'B' && t->shape[1] != r) || t->shape[0] <= 0 || t->shape[1] <= 0)
            BAD("%s: tensor '%s' has shape [%lld, %lld]; expected %s with r = %d", sp, t->name, (long long)t->shape[0],
                t->ndim > 1 ? (long long)t->shape[1] : -1LL, ab == 'A' ? "[r, in]" : "[out, r]", r);
        int64_t in = ab == 'A' ? t->shape[1] : -1, outd = ab == 'B' ? t->shape[0] : -1;
        if (base) {
            int64_t ein, eout;
            module_dims(base, mod, &ein, &eout);
            if (layer >= base->n_layers) BAD("%s: tensor '%s': layer %d, the model has %d", sp, t->name, layer, base->n_layers);
            if ((ab == 'A' && in != ein) || (ab == 'B' && outd != eout))
                BAD("%s: tensor '%s' has shape [%lld, %lld]; the model's %s is [%lld out, %lld in]", sp, t->name,
                    (long long)t->shape[0], (long long)t->shape[1], mod, (long long)eout, (long long)ein);
        }
        dlq_lora_pair *p = NULL;
        for (size_t k = 0; k < a->n_pairs; k++)
            if (a->pairs[k].layer == layer && !strcmp(a->pairs[k].module, mod)) p = &a->pairs[k];
        if (!p) {
            p = &a->pairs[a->n_pairs++];
            p->layer = layer;
            snprintf(p->module, sizeof p->module, "%s", mod);
            p->in = p->out = -1;
        }
        float **dst = ab == 'A' ? &p->A : &p->B;
        if (*dst) BAD("%s: tensor '%s' appears twice", sp, t->name);
        size_t ne = (size_t)(t->shape[0] * t->shape[1]);
        if (!(*dst = malloc(ne * sizeof(float)))) { rc = dlq_errf(err, DLQ_ENOMEM, "%s: out of memory", sp); goto fail; }
        dlq_to_f32(*dst, t->data, t->dtype, ne);
        if (ab == 'A') p->in = in;
        else p->out = outd;
    }
    for (size_t k = 0; k < a->n_pairs; k++)
        if (!a->pairs[k].A || !a->pairs[k].B)
            BAD("%s: layer %d %s has lora_%c but no lora_%c", sp, a->pairs[k].layer, a->pairs[k].module,
                a->pairs[k].A ? 'A' : 'B', a->pairs[k].A ? 'B' : 'A');
    if (!a->n_pairs) BAD("%s: no LoRA tensors", sp);
#undef BAD
    qsort(a->pairs, a->n_pairs, sizeof *a->pairs, cmp_pair);
    dlq_st_close(&st);
    *out = a;
    return DLQ_OK;
fail:
    dlq_st_close(&st);
    dlq_peft_adapter_free(a);
    return rc;
}

/* --------------------------------------------- HF folder, tensors as given */

int dlq_hf_write_folder(const char *dir, const dlq_config *cfg, dlq_dtype torch_dtype, const dlq_tensor_info *st, size_t n,
                        const char *config_extra_json, const char *const *extra_names, const char *const *extra_texts,
                        size_t n_extra, const char *tok_src, dlq_err *err) {
    if (!dir || !cfg || (n && !st)) return dlq_errf(err, DLQ_EINVAL, "hf write: missing argument");
    int rc = dlq_config_validate(cfg, dir, err);
    if (rc) return rc;
    if (tok_src && !dlq_path_is_dir(tok_src)) return dlq_errf(err, DLQ_EINVAL, "%s: tokenizer source is not a folder", tok_src);
    json_t *extra = NULL;
    if (config_extra_json) {
        json_error_t je;
        if (!(extra = json_loads(config_extra_json, 0, &je)) || !json_is_object(extra)) {
            json_decref(extra);
            return dlq_errf(err, DLQ_EINVAL, "%s: config extra is not a JSON object: %s", dir, je.text);
        }
    }
    char tmp[2048];
    if ((rc = make_tmp_dir(dir, tmp, sizeof tmp, err))) { json_decref(extra); return rc; }
    char *cj = dlq_hf_config_json(cfg, torch_dtype);
    json_t *co = cj ? json_loads(cj, JSON_PRESERVE_ORDER, NULL) : NULL;
    free(cj);
    if (!co) rc = dlq_errf(err, DLQ_ENOMEM, "%s: cannot build config.json", dir);
    else {
        if (extra) json_object_update(co, extra);
        rc = write_json(tmp, "config.json", co, err);
    }
    json_decref(co);
    json_decref(extra);
    if (!rc) {
        json_t *g = json_object();
        json_object_set_new(g, "_from_model_config", json_true());
        if (cfg->bos_id >= 0) json_object_set_new(g, "bos_token_id", json_integer(cfg->bos_id));
        if (cfg->eos_id >= 0) json_object_set_new(g, "eos_token_id", json_integer(cfg->eos_id));
        json_object_set_new(g, "transformers_version", json_string(TRANSFORMERS_VERSION));
        rc = write_json(tmp, "generation_config.json", g, err);
        json_decref(g);
    }
    char p[2048];
    if (!rc && dlq_path_join(p, sizeof p, tmp, "model.safetensors")) rc = dlq_errf(err, DLQ_EINVAL, "%s: path too long", dir);
    if (!rc) rc = dlq_st_write(p, st, n, "{\"format\": \"pt\"}", err);
    for (size_t i = 0; !rc && i < n_extra; i++) rc = write_text(tmp, extra_names[i], extra_texts[i], err);
    if (!rc && tok_src) rc = copy_tokenizer_files(tok_src, tmp, err);
    if (!rc) rc = install_dir(tmp, dir, err);
    if (rc) discard_tmp(tmp);
    return rc;
}
