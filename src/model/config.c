#include "model/config.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

const char *dlq_arch_name(dlq_arch a) {
    switch (a) {
    case DLQ_ARCH_LLAMA: return "llama";
    case DLQ_ARCH_MISTRAL: return "mistral";
    case DLQ_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

static int get_int(json_t *root, const char *key, int def, int *out, const char *path, dlq_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return DLQ_OK; }
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < -2147483647 || x > 2147483647)
            return dlq_errf(err, DLQ_EFORMAT, "%s: \"%s\" = %lld is out of range", path, key, (long long)x);
        *out = (int)x;
        return DLQ_OK;
    }
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0))) {
        *out = (int)json_integer_value(json_array_get(v, 0)); /* e.g. eos_token_id: [128001, ...] */
        return DLQ_OK;
    }
    return dlq_errf(err, DLQ_EFORMAT, "%s: \"%s\" should be an integer", path, key);
}

static int get_num(json_t *root, const char *key, double def, double *out, const char *path, dlq_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return DLQ_OK; }
    if (!json_is_number(v)) return dlq_errf(err, DLQ_EFORMAT, "%s: \"%s\" should be a number", path, key);
    *out = json_number_value(v);
    return DLQ_OK;
}

static int get_bool(json_t *root, const char *key, int def, int *out, const char *path, dlq_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return DLQ_OK; }
    if (!json_is_boolean(v)) return dlq_errf(err, DLQ_EFORMAT, "%s: \"%s\" should be true or false", path, key);
    *out = json_is_true(v);
    return DLQ_OK;
}

int dlq_config_from_hf(dlq_config *c, const char *path, dlq_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root && je.line < 0)
        return dlq_errf(err, DLQ_EIO, "%s: %s", path, je.text); /* not readable: jansson has no line then */
    if (!root) return dlq_errf(err, DLQ_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    int rc = dlq_config_from_json(c, root, path, err);
    json_decref(root);
    return rc;
}

int dlq_config_from_json(dlq_config *c, void *root_json, const char *path, dlq_err *err) {
    memset(c, 0, sizeof *c);
    json_t *root = root_json;
    int rc = DLQ_OK;
    if (!json_is_object(root)) { rc = dlq_errf(err, DLQ_EFORMAT, "%s: expected a JSON object", path); goto done; }

    const char *mt = json_string_value(json_object_get(root, "model_type"));
    const char *ar = NULL;
    json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0) ar = json_string_value(json_array_get(archs, 0));
    if ((mt && !strcmp(mt, "llama")) || (ar && !strcmp(ar, "LlamaForCausalLM"))) c->arch = DLQ_ARCH_LLAMA;
    else if ((mt && !strcmp(mt, "mistral")) || (ar && !strcmp(ar, "MistralForCausalLM"))) c->arch = DLQ_ARCH_MISTRAL;
    else if ((mt && !strcmp(mt, "qwen2")) || (ar && !strcmp(ar, "Qwen2ForCausalLM"))) c->arch = DLQ_ARCH_QWEN2;
    else {
        rc = dlq_errf(err, DLQ_EUNSUP, "%s: unsupported model (model_type \"%s\", architecture \"%s\"); "
                      "supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM",
                      path, mt ? mt : "?", ar ? ar : "?");
        goto done;
    }
    /* the fields a LLaMA config cannot do without: say which is missing, not "0 is invalid" */
    static const char *required[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                     "vocab_size"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        json_t *v = json_object_get(root, required[i]);
        if (!v || json_is_null(v)) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: \"%s\" is missing (a %s config needs it)", path, required[i],
                          dlq_arch_name(c->arch));
            goto done;
        }
    }
    double theta, eps;
    if ((rc = get_int(root, "hidden_size", 0, &c->dim, path, err)) ||
        (rc = get_int(root, "intermediate_size", 0, &c->hidden_dim, path, err)) ||
        (rc = get_int(root, "num_hidden_layers", 0, &c->n_layers, path, err)) ||
        (rc = get_int(root, "num_attention_heads", 0, &c->n_heads, path, err)) ||
        (rc = get_int(root, "num_key_value_heads", 0, &c->n_kv_heads, path, err)) ||
        (rc = get_int(root, "head_dim", 0, &c->head_dim, path, err)) ||
        (rc = get_int(root, "vocab_size", 0, &c->vocab_size, path, err)) ||
        (rc = get_int(root, "max_position_embeddings", 2048, &c->max_seq, path, err)) ||
        (rc = get_num(root, "rope_theta", 10000.0, &theta, path, err)) ||
        (rc = get_num(root, "rms_norm_eps", 1e-6, &eps, path, err)) ||
        (rc = get_bool(root, "tie_word_embeddings", c->arch == DLQ_ARCH_QWEN2 ? 0 : 0, &c->tied, path, err)) ||
        (rc = get_int(root, "bos_token_id", -1, &c->bos_id, path, err)) ||
        (rc = get_int(root, "eos_token_id", -1, &c->eos_id, path, err)))
        goto done;
    if (!json_object_get(root, "tie_word_embeddings")) c->tied = 0; /* HF PretrainedConfig default is true,
        but Llama/Mistral/Qwen2 configs set it explicitly; absent means the class default: false */
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    if (!c->head_dim && c->n_heads) c->head_dim = c->dim / c->n_heads;
    c->rope_theta = (float)theta;
    c->norm_eps = (float)eps;

    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "silu") != 0) {
        rc = dlq_errf(err, DLQ_EUNSUP, "%s: hidden_act \"%s\" is not supported (only silu)", path, act);
        goto done;
    }
    int ab = 0, mb = 0;
    if ((rc = get_bool(root, "attention_bias", 0, &ab, path, err)) || (rc = get_bool(root, "mlp_bias", 0, &mb, path, err)))
        goto done;
    if (mb) { rc = dlq_errf(err, DLQ_EUNSUP, "%s: mlp_bias=true is not supported", path); goto done; }
    if (ab && c->arch != DLQ_ARCH_QWEN2) {
        rc = dlq_errf(err, DLQ_EUNSUP, "%s: attention_bias=true is not supported for %s (o_proj bias)", path,
                      dlq_arch_name(c->arch));
        goto done;
    }
    c->qkv_bias = c->arch == DLQ_ARCH_QWEN2;

    if (c->arch == DLQ_ARCH_MISTRAL) {
        if ((rc = get_int(root, "sliding_window", 0, &c->sliding_window, path, err))) goto done;
    } else if (c->arch == DLQ_ARCH_QWEN2) {
        int use_sw = 0;
        if ((rc = get_bool(root, "use_sliding_window", 0, &use_sw, path, err))) goto done;
        if (use_sw) { rc = dlq_errf(err, DLQ_EUNSUP, "%s: Qwen2 use_sliding_window=true is not supported", path); goto done; }
    }

    json_t *rs = json_object_get(root, "rope_scaling");
    c->rope_kind = DLQ_ROPE_DEFAULT;
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) { rc = dlq_errf(err, DLQ_EFORMAT, "%s: rope_scaling should be an object or null", path); goto done; }
        const char *ty = json_string_value(json_object_get(rs, "rope_type"));
        if (!ty) ty = json_string_value(json_object_get(rs, "type"));
        double f = 1, lo = 1, hi = 4;
        int orig = 8192;
        if ((rc = get_num(rs, "factor", 1.0, &f, path, err)) || (rc = get_num(rs, "low_freq_factor", 1.0, &lo, path, err)) ||
            (rc = get_num(rs, "high_freq_factor", 4.0, &hi, path, err)) ||
            (rc = get_int(rs, "original_max_position_embeddings", 8192, &orig, path, err)))
            goto done;
        if (!ty || !strcmp(ty, "default")) c->rope_kind = DLQ_ROPE_DEFAULT;
        else if (!strcmp(ty, "llama3")) c->rope_kind = DLQ_ROPE_LLAMA3;
        else if (!strcmp(ty, "linear")) c->rope_kind = DLQ_ROPE_LINEAR;
        else { rc = dlq_errf(err, DLQ_EUNSUP, "%s: rope_scaling type \"%s\" is not supported (default, linear, llama3)", path, ty); goto done; }
        if (!(f > 0) || (c->rope_kind == DLQ_ROPE_LLAMA3 && !(hi > lo))) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: rope_scaling has invalid factors (factor %g, low %g, high %g)", path, f, lo, hi);
            goto done;
        }
        c->rope_factor = (float)f;
        c->rope_low_freq = (float)lo;
        c->rope_high_freq = (float)hi;
        c->rope_orig_max = orig;
    }
    rc = dlq_config_validate(c, path, err);
done:
    return rc;
}

int dlq_config_validate(const dlq_config *c, const char *what, dlq_err *err) {
#define BAD(...) return dlq_errf(err, DLQ_EFORMAT, __VA_ARGS__)
    if (c->dim <= 0 || c->dim > (1 << 20)) BAD("%s: hidden size %d is invalid", what, c->dim);
    if (c->hidden_dim <= 0 || c->hidden_dim > (1 << 22)) BAD("%s: intermediate size %d is invalid", what, c->hidden_dim);
    if (c->n_layers <= 0 || c->n_layers > 4096) BAD("%s: number of layers %d is invalid", what, c->n_layers);
    if (c->n_heads <= 0 || c->n_heads > 4096) BAD("%s: number of heads %d is invalid", what, c->n_heads);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        BAD("%s: %d key/value heads do not divide %d attention heads", what, c->n_kv_heads, c->n_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 4096) BAD("%s: head_dim %d is invalid (must be even)", what, c->head_dim);
    if (c->vocab_size <= 0 || c->vocab_size > (1 << 24)) BAD("%s: vocab size %d is invalid", what, c->vocab_size);
    if (c->max_seq <= 0) BAD("%s: context length %d is invalid", what, c->max_seq);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) BAD("%s: rope_theta %g is invalid", what, c->rope_theta);
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps)) BAD("%s: rms_norm_eps %g is invalid", what, c->norm_eps);
    if (c->sliding_window < 0) BAD("%s: sliding_window %d is invalid", what, c->sliding_window);
#undef BAD
    return DLQ_OK;
}

void dlq_rope_inv_freq(const dlq_config *c, float *inv) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)) in float32 */
        float ex = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf(c->rope_theta, ex);
    }
    if (c->rope_kind == DLQ_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= c->rope_factor;
    } else if (c->rope_kind == DLQ_ROPE_LLAMA3) {
        const float pi = 3.14159265358979323846f;
        float old = (float)c->rope_orig_max, f = c->rope_factor, lo = c->rope_low_freq, hi = c->rope_high_freq;
        float low_wl = old / lo, high_wl = old / hi;
        for (int i = 0; i < half; i++) {
            float wl = 2 * pi / inv[i];
            float v = wl > low_wl ? inv[i] / f : inv[i];
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float smooth = (old / wl - lo) / (hi - lo);
                v = (1 - smooth) * v / f + smooth * v;
            }
            inv[i] = v;
        }
    }
}
