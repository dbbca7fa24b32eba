/* Private to src/model/: helpers shared by the format-specific loaders. */
#ifndef DLQ_MODEL_LOAD_INTERNAL_H
#define DLQ_MODEL_LOAD_INTERNAL_H

#include "core/tensor.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "model/model.h"

/* Checks t's dtype and shape ([rows, cols], or [cols] when rows == 1) and
 * points w at its data. Errors name the tensor and what the config implies. */
int dlq_bind_weight(dlq_weight *w, const dlq_tensor_info *t, int64_t rows, int64_t cols, const char *name,
                    const char *what, dlq_err *err);
/* Binds every weight of m by its Hugging Face name (embeddings, norms, the
 * seven projections and Qwen2 biases of each layer, lm_head unless tied),
 * asking bind() for each with the shape the config implies. Allocates
 * m->layers. */
typedef int (*dlq_bind_fn)(void *ctx, dlq_model *m, const char *name, int64_t rows, int64_t cols, dlq_weight *w,
                           dlq_err *err);
int dlq_bind_hf_names(dlq_model *m, dlq_bind_fn bind, void *ctx, dlq_err *err);
/* A buffer freed with the model. */
void *dlq_model_own(dlq_model *m, size_t bytes, dlq_err *err);
size_t dlq_weight_bytes(const dlq_weight *w);
void dlq_model_count_bytes(dlq_model *m);

int dlq_load_llama2c_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err);
int dlq_load_dlq_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err);
/* Records where the tokenizer came from (for exports). */
void dlq_model_note_tokenizer(dlq_model *m, const char *path);
int dlq_load_gguf_model(dlq_model *m, const char *path, const dlq_load_opts *opts, dlq_err *err);

#endif
