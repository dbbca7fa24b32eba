/* Hugging Face model folders and PEFT LoRA adapters: writers (and the adapter
 * reader), with the tensor names transformers / PEFT use.
 *
 * Model folder (dlq_hf_write_model): config.json (LlamaForCausalLM /
 * MistralForCausalLM / Qwen2ForCausalLM), generation_config.json,
 * model.safetensors ("format": "pt"), and the tokenizer files copied from a
 * source folder. Everything is written to "<dir>.tmp.XXXXXX" and renamed to
 * dir at the end, so a crash never leaves a half-written folder. An existing
 * dir holding only plain files (a previous export) is replaced; one holding
 * sub-folders is refused.
 *
 * Adapter folder (dlq_peft_write_adapter): adapter_config.json (PEFT
 * LoraConfig) + adapter_model.safetensors with names
 *   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight  [r, in]
 *   base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight  [out, r]
 *   base_model.model.model.layers.N.mlp.gate_proj.lora_A.weight ...
 * loadable by peft.PeftModel.from_pretrained(base, dir). */
#ifndef DLQ_IO_HF_WRITE_H
#define DLQ_IO_HF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "core/tensor.h"
#include "model/config.h"

struct dlq_model;

/* One tensor to write: data in F32, F16 or BF16, row-major, shape in PyTorch
 * order (a linear weight is {out, in}; a norm / bias is {n}). */
typedef struct dlq_hf_tensor {
    char name[160];
    const void *data;
    dlq_dtype dtype;
    int ndim;
    int64_t shape[DLQ_MAX_DIMS];
} dlq_hf_tensor;

/* Module names: "q_proj", "k_proj", "v_proj", "o_proj" (self_attn),
 * "gate_proj", "up_proj", "down_proj" (mlp), "input_layernorm",
 * "post_attention_layernorm". Return 0, or DLQ_EINVAL for an unknown module. */
/* "model.layers.<layer>.self_attn.q_proj.weight" (suffix "weight" or "bias") */
int dlq_hf_tensor_name(char *buf, size_t cap, int layer, const char *module, const char *suffix);
/* "base_model.model.model.layers.<layer>.self_attn.q_proj.lora_A.weight" (ab = 'A' or 'B') */
int dlq_peft_tensor_name(char *buf, size_t cap, int layer, const char *module, char ab);
/* "self_attn" or "mlp" (or NULL for an unknown module) */
const char *dlq_hf_module_parent(const char *module);

/* All weights of a loaded model as HF tensors (views, no copies), in HF
 * order; lm_head is omitted when cfg.tied. *out is malloc'd. Weights of any
 * source format are already in HF layout (see model.h). */
int dlq_hf_tensors_from_model(const struct dlq_model *m, dlq_hf_tensor **out, size_t *n, dlq_err *err);

/* The config.json text for cfg (malloc'd JSON, indented). dtype_out gives
 * torch_dtype. */
char *dlq_hf_config_json(const dlq_config *cfg, dlq_dtype dtype_out);

/* Writes a HF folder (see above). tensors are converted to dtype_out (F32,
 * BF16 or F16; round-to-nearest-even; a tensor already in dtype_out is copied
 * bit-exactly). Conversions are held in memory until the file is written.
 * tokenizer_src_dir_or_NULL: tokenizer.model, tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json are
 * copied when present. */
int dlq_hf_write_model(const char *dir, const dlq_config *cfg, const dlq_hf_tensor *tensors, size_t n,
                       dlq_dtype dtype_out, const char *tokenizer_src_dir_or_NULL, dlq_err *err);

/* The same folder (atomic, config.json + generation_config.json +
 * model.safetensors + tokenizer files) with the safetensors tensors given as
 * ready infos written as they are (any dtype: e.g. GPTQ's int32 qweight),
 * config_extra_json (an object, or NULL) merged into config.json, and extra
 * text files (name, text) added. torch_dtype names config.json's dtype. */
int dlq_hf_write_folder(const char *dir, const dlq_config *cfg, dlq_dtype torch_dtype, const dlq_tensor_info *st, size_t n,
                        const char *config_extra_json, const char *const *extra_names, const char *const *extra_texts,
                        size_t n_extra, const char *tok_src, dlq_err *err);

/* ---- PEFT LoRA adapters ---- */
typedef struct dlq_peft_config {
    int r;
    double lora_alpha;
    int use_rslora;                    /* scaling alpha/sqrt(r) instead of alpha/r */
    int n_targets;
    char target_modules[8][32];        /* e.g. "q_proj", "v_proj" */
    char base_model[1024];             /* base_model_name_or_path ("" -> null) */
} dlq_peft_config;

static inline double dlq_peft_scaling(const dlq_peft_config *c) {
    return c->use_rslora ? c->lora_alpha / __builtin_sqrt((double)c->r) : c->lora_alpha / c->r;
}

/* tensors: F32 (or F16/BF16, written as F32) named with dlq_peft_tensor_name;
 * every name must be a lora_A/lora_B of a target module with shapes [r, in] /
 * [out, r]. Atomic like dlq_hf_write_model. */
int dlq_peft_write_adapter(const char *dir, const dlq_peft_config *cfg, const dlq_hf_tensor *tensors, size_t n,
                           dlq_err *err);

typedef struct dlq_lora_pair {
    int layer;
    char module[32];      /* "q_proj", ... */
    int64_t in, out;      /* A is [r, in], B is [out, r] */
    float *A, *B;         /* fp32, owned */
} dlq_lora_pair;

typedef struct dlq_peft_adapter {
    dlq_peft_config cfg;
    double scaling;       /* lora_alpha / r, or / sqrt(r) with use_rslora */
    dlq_lora_pair *pairs; /* sorted by layer, then module */
    size_t n_pairs;
} dlq_peft_adapter;

/* Reads dir/adapter_config.json and dir/adapter_model.safetensors. Refuses
 * non-LoRA adapters, unsupported options (use_dora, bias != "none",
 * fan_in_fan_out, rank_pattern / alpha_pattern, modules_to_save), names that
 * are not lora_A/lora_B of a target module, unpaired A/B, and shapes that do
 * not match r. base_cfg_or_NULL: also checks in/out against the model. */
int dlq_peft_read_adapter(const char *dir, const dlq_config *base_cfg_or_NULL, dlq_peft_adapter **out, dlq_err *err);
const dlq_lora_pair *dlq_peft_find(const dlq_peft_adapter *a, int layer, const char *module);
void dlq_peft_adapter_free(dlq_peft_adapter *a);

#endif
