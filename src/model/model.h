/* A loaded LLaMA-family model: config, frozen weights (views into mapped
 * files, in their stored dtype), tokenizer.
 *
 * Internal RoPE layout: Hugging Face's (rotate_half: within a head, dimension
 * i pairs with i + head_dim/2). llama2.c checkpoints and GGUF "llama" files
 * store q/k rows in Meta's interleaved layout (pairs (2i, 2i+1)); the loader
 * permutes those rows once into the HF layout (docs/numerics.md). */
#ifndef DLQ_MODEL_MODEL_H
#define DLQ_MODEL_MODEL_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

/* A 2-D weight (rows = output features, cols = input features), row-major,
 * or a 1-D vector (rows = 1). */
typedef struct dlq_weight {
    const void *data;
    dlq_dtype dtype;   /* F32, F16, BF16, or QPACK */
    int64_t rows, cols;
    /* QPACK only: row r holds cols unsigned (q - qmin) values of qbits bits,
     * LSB-first, in row_bytes bytes at data + r*row_bytes; the weight is
     * w = qscale[g] * q + qbias[g] for group g = j / qgroup of the row
     * (qscale/qbias are [rows][qng]). The group parameters are stored as
     * qpdtype: F32 in qscale/qbias, or F16 in qscale_h/qbias_h (qscale/qbias
     * NULL then); dlq_qparams_row (kernels/qkernels.h) reads either. */
    int qbits, qgroup;
    int64_t qng, row_bytes;
    const float *qscale, *qbias;
    dlq_dtype qpdtype;
    const uint16_t *qscale_h, *qbias_h;
    /* Row lookups (dlq_weight_row) read with pread from an open file when
     * row_fd_set: rows of the stored dtype at byte row_off + r*cols*size.
     * Set on an untied embedding table, so that a lookup does not map the
     * table's pages into the process (the kernel maps whole page-cache folios
     * on a fault: a few hundred lookups made a 250 MiB table resident). */
    int row_fd_set, row_fd;
    int64_t row_off;
} dlq_weight;

typedef struct dlq_layer {
    dlq_weight attn_norm, wq, wk, wv, wo, bq, bk, bv;
    dlq_weight ffn_norm, w_gate, w_up, w_down;
} dlq_layer;

typedef enum dlq_model_format {
    DLQ_FMT_HF = 1, DLQ_FMT_LLAMA2C = 2, DLQ_FMT_GGUF = 3, DLQ_FMT_DLQ = 4
} dlq_model_format;

typedef struct dlq_model {
    dlq_config cfg;
    dlq_model_format format;
    char path[1024];
    dlq_weight tok_emb, out_norm, lm_head;
    dlq_layer *layers;
    dlq_tokenizer *tok;   /* NULL when the model ships none */
    void *src;            /* format-specific owner of the mappings */
    void **owned;         /* buffers the loader allocated (permuted / converted tensors) */
    int n_owned;
    size_t weight_bytes;  /* bytes of all weights as stored */
    const float *rope_freq_factors; /* [head_dim/2] divisors of inv_freq (GGUF rope_freqs.weight), or NULL */
    /* where the tokenizer came from, so exports can embed it byte for byte:
     * kind "sentencepiece" | "hf_json" | "llama2c" | "" (none / GGUF metadata) */
    char tok_kind[16];
    char tok_path[1024];          /* the file, or "" when tok_blob is set */
    const void *tok_blob;         /* embedded copy (a .dlq file) */
    size_t tok_blob_n;
    /* quantization summary of a .dlq model (bits 0 = not quantized) */
    int q_bits, q_group;
    char q_method[32];
    /* the file tok_emb's rows are read from (tok_emb.row_fd), owned by this
     * model when emb_fd_open (a copy of the struct must clear it) */
    int emb_fd_open, emb_fd;
    /* dlq_model_rotate ran: every projection, the embedding and the head are
     * owned fp32 buffers (src/model/rotate.h) */
    int rotated;
} dlq_model;

typedef struct dlq_load_opts {
    const char *tokenizer_path; /* override / required for llama2.c checkpoints */
    const char *adapter_path;   /* PEFT LoRA adapter to merge at load (optional) */
} dlq_load_opts;

/* path: a Hugging Face folder (config.json + safetensors), a llama2.c .bin or
 * a .gguf. Every tensor's shape and dtype is checked against the config. */
int dlq_model_load(dlq_model **out, const char *path, const dlq_load_opts *opts, dlq_err *err);
/* Merges a PEFT LoRA adapter folder (adapter_config.json +
 * adapter_model.safetensors) into the model's weights (fp32 copies). */
int dlq_model_apply_adapter(dlq_model *m, const char *adapter_dir, dlq_err *err);
void dlq_model_destroy(dlq_model *m);
int64_t dlq_model_n_params(const dlq_model *m);
const char *dlq_model_format_name(dlq_model_format f);

/* Meta (interleaved pairs) -> HF (rotate_half) layout for the rows of a q or
 * k projection: n_heads heads of head_dim rows each, row_bytes per row.
 * HF row h*hd + c*hd/2 + i  <-  Meta row h*hd + 2*i + c. */
void dlq_permute_rope_rows(void *dst, const void *src, int n_heads, int head_dim, size_t row_bytes);

#endif
