/* Model hyper-parameters, from a Hugging Face config.json, a llama2.c header
 * or GGUF metadata, validated once so the rest of the code can trust them. */
#ifndef DLQ_MODEL_CONFIG_H
#define DLQ_MODEL_CONFIG_H

#include "core/err.h"

typedef enum dlq_arch { DLQ_ARCH_LLAMA = 0, DLQ_ARCH_MISTRAL = 1, DLQ_ARCH_QWEN2 = 2 } dlq_arch;

typedef enum dlq_rope_kind {
    DLQ_ROPE_DEFAULT = 0,
    DLQ_ROPE_LINEAR = 1, /* positions / factor */
    DLQ_ROPE_LLAMA3 = 2, /* Llama-3.1 frequency-dependent scaling */
} dlq_rope_kind;

typedef struct dlq_config {
    dlq_arch arch;
    int dim;          /* hidden size */
    int hidden_dim;   /* MLP (intermediate) width */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;     /* explicit or dim / n_heads */
    int vocab_size;
    int max_seq;      /* max_position_embeddings: the default evaluation context */
    float rope_theta;
    float norm_eps;
    dlq_rope_kind rope_kind;
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max;
    int tied;         /* lm_head shares the token embedding */
    int qkv_bias;     /* q/k/v projections have biases (Qwen2) */
    int sliding_window; /* 0 = none */
    int bos_id, eos_id; /* -1 if unknown */
} dlq_config;

const char *dlq_arch_name(dlq_arch a);

/* Parses a Hugging Face config.json (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM). Unknown architectures and unsupported options (e.g.
 * rope_scaling "yarn", biases on MLPs) are refused with a message naming them. */
int dlq_config_from_hf(dlq_config *c, const char *config_json_path, dlq_err *err);
/* The same from a parsed JSON object (a json_t *), e.g. inside a .dlq file. */
int dlq_config_from_json(dlq_config *c, void *root_json, const char *what, dlq_err *err);
int dlq_config_validate(const dlq_config *c, const char *what, dlq_err *err);

/* Fills inv_freq[head_dim/2] exactly as Hugging Face computes it in float32,
 * including the llama3 / linear scaling rules. */
void dlq_rope_inv_freq(const dlq_config *c, float *inv_freq);

#endif
