/* Merging a quantization-aware training state into plain integers
 * (docs/spec.md §4):
 *   q = clamp(round((W0 + scale*B A - b) / s), qmin, qmax),  scale = m*s,  bias = m*b
 * so that w = scale*q + bias; no adapter is left. */
#ifndef DLQ_QUANT_EXPORT_H
#define DLQ_QUANT_EXPORT_H

#include "train/tmodel.h"

/* Writes tm (mode QUANT) as a .dlq file: quantized projections packed,
 * everything else as stored in the base model, tokenizer embedded.
 * metadata_json: an object stored under "metadata" (may be NULL). */
int dlq_quant_export_dlq(const dlq_tmodel *tm, const char *path, const char *method, const char *metadata_json,
                         dlq_err *err);

/* The same writer with the projections written by fn (called for every
 * non-frozen projection; name is its tensor name) and the "quant" object
 * given as JSON text (NULL: the default one for method). */
struct dlq_file_writer;
typedef int (*dlq_proj_export_fn)(void *user, struct dlq_file_writer *fw, const char *name, int layer, int proj, dlq_err *err);
int dlq_export_dlq_with(const dlq_tmodel *tm, const char *path, const char *method, const char *quant_json,
                        const char *metadata_json, dlq_proj_export_fn fn, void *user, dlq_err *err);

/* The merged integers and per-group scale/bias of one quantized projection
 * (q int8 [out*in], scale/bias [out*ngroups]); wp is scratch [out*in]. */
void dlq_quant_merge_layer(const dlq_tlinear *L, float *wp, int8_t *q, float *scale, float *bias);

/* An in-memory model whose quantized projections are the fake-quantized fp32
 * weights m*(s*q+b) of tm (everything else borrowed from the base model; no
 * tokenizer). For evaluation and parity tests. Free with dlq_model_destroy. */
/* Embeds the model's tokenizer (its original file bytes) into a .dlq being
 * written; nothing when the model has none. Shared by the .dlq writers. */
struct dlq_file_writer;
int dlq_quant_write_tokenizer(struct dlq_file_writer *fw, const dlq_model *m, dlq_err *err);
int dlq_tmodel_to_model(const dlq_tmodel *tm, dlq_model **out, dlq_err *err);

#endif
