/* Exporting a loaded model (usually a bit-packed .dlq) to the formats other
 * tools run (docs/export.md):
 *
 *   GGUF  llama.cpp's file: 4-bit groups of a multiple of 32 -> Q4_1 and
 *         5-bit -> Q5_1 (u = q - qmin, d = scale, min = bias + scale*qmin:
 *         exact up to the fp16 rounding of d and min); 6..8-bit -> Q8_0;
 *         2-bit -> Q2_K, 3-bit -> Q3_K (approximations: the error is
 *         reported); rows that do not split into whole blocks -> F16.
 *         Dense tensors keep their stored type (norms as F32). q/k rows are
 *         written in llama.cpp's interleaved RoPE layout. Full llama.cpp
 *         metadata and the tokenizer (tokenizer.ggml.*).
 *   HF    a transformers folder: config.json, generation_config.json,
 *         dequantized F16/BF16 model.safetensors, tokenizer files.
 *   GPTQ  a transformers / AutoGPTQ folder: qweight, qzeros, scales, g_idx
 *         per projection + quantize_config.json, when every group's offset
 *         is an integer multiple of its scale (w = scale * (u - zero)).
 *
 * opts.exact refuses anything that is not exact up to fp16 rounding (the
 * error names the first tensor and why). Every exported weight is compared
 * with the source weights in fp32 (report). */
#ifndef DLQ_EXPORT_EXPORT_H
#define DLQ_EXPORT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "model/model.h"

typedef struct dlq_export_opts {
    int exact;        /* refuse approximations (K-quants, Q8_0, F16 fallbacks) */
    dlq_dtype dtype;  /* HF / GPTQ dense tensors: DLQ_F16 (default when 0 = F32 is given) or DLQ_BF16 */
} dlq_export_opts;

typedef struct dlq_export_tensor {
    char name[96];     /* name in the output */
    char type[16];     /* output type: "Q4_1", "F16", "gptq-int4", ... */
    int bits, group;   /* source packing (0 = dense) */
    int64_t numel;
    double max_err, sum_err; /* |exported - source| in fp32 */
} dlq_export_tensor;

typedef struct dlq_export_report {
    dlq_export_tensor *t;
    size_t n, cap;
    char **warn;       /* human-readable warnings, one per fallback / approximation */
    size_t n_warn;
    int approx;        /* 1 if some packed tensor was not exported exactly (Q8_0, K-quant, F16 fallback) */
} dlq_export_report;

void dlq_export_report_free(dlq_export_report *r);
/* max and mean |error| over all tensors (or only packed sources) */
void dlq_export_report_totals(const dlq_export_report *r, int packed_only, double *max_err, double *mean_err);

int dlq_export_gguf(const dlq_model *m, const char *path, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err);
/* A scratch folder holding the model's tokenizer in Hugging Face form (tokenizer.model or
 * tokenizer.json + tokenizer_config.json), for writers that copy tokenizer files from a folder;
 * dir = "" when the tokenizer has none (no tokenizer, a llama2.c tokenizer.bin, GGUF metadata).
 * Remove it with dlq_export_tokenizer_folder_remove. */
int dlq_export_tokenizer_folder(const dlq_model *m, char *dir, size_t cap, dlq_err *err);
void dlq_export_tokenizer_folder_remove(const char *dir);

int dlq_export_hf(const dlq_model *m, const char *dir, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err);
int dlq_export_gptq(const dlq_model *m, const char *dir, const dlq_export_opts *o, dlq_export_report *r, dlq_err *err);

/* GPTQ packing (AutoGPTQ / transformers "gptq" v1 checkpoint format): the
 * bits-wide values of each column, in 32-value runs, form one LSB-first bit
 * stream of `bits` int32 words (for 2/4/8 bits: 32/bits values per word,
 * value k at bit bits*k; 3 bits spill across words).
 *   qweight int32 [in*bits/32][out]: u = q - qmin of weight [o][i] packed
 *           along i;
 *   qzeros  int32 [ngroups][out*bits/32]: (zero - 1) packed along out.
 * Exposed for tests. */
void dlq_gptq_pack_cols(int32_t *dst, const uint8_t *vals, int64_t rows, int64_t cols, int bits);
void dlq_gptq_pack_rows(int32_t *dst, const uint8_t *vals, int64_t rows, int64_t cols, int bits);

/* ---- helpers shared by the exporters (export_common.c) ---- */
/* fp32 copy of row r of any weight (F32/F16/BF16/QPACK) */
void dlq_export_row_f32(const dlq_weight *w, int64_t r, float *out);
/* fp32 group parameters [rows][qng] of a packed weight: views of qscale/qbias,
 * or, for F16 parameters (.dlq v2), converted copies in *owned (free it). */
int dlq_export_qparams(const dlq_weight *w, const float **sc, const float **bi, float **owned, dlq_err *err);
/* appends a tensor entry (NULL on out of memory, err filled) */
dlq_export_tensor *dlq_export_add(dlq_export_report *r, const char *name, const char *type, const dlq_weight *src,
                                  dlq_err *err);
/* accumulates |a - b| over n values into t */
void dlq_export_err(dlq_export_tensor *t, const float *a, const float *b, int64_t n);
int dlq_export_warn(dlq_export_report *r, dlq_err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The embedded / original tokenizer file bytes (malloc'd), or NULL + 0 if the
 * model records none. */
int dlq_export_tok_bytes(const dlq_model *m, void **data, size_t *n, dlq_err *err);

#endif
