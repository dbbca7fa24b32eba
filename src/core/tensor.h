/* A named, typed, shaped view of tensor bytes that live elsewhere (usually a
 * memory-mapped file). Shapes are row-major, PyTorch order: shape[0] is the
 * slowest dimension (a linear weight (out, in) has shape {out, in}).
 * Views never own their memory. */
#ifndef DLQ_CORE_TENSOR_H
#define DLQ_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#define DLQ_MAX_DIMS 4

typedef struct dlq_tensor_info {
    char name[160];
    dlq_dtype dtype;      /* DLQ_DTYPE_COUNT if the stored type has no dlq_dtype (e.g. a GGUF Q-type) */
    int file_type;        /* format-specific type code (GGUF ggml_type, or -1) */
    int ndim;
    int64_t shape[DLQ_MAX_DIMS];
    const void *data;     /* first byte; inside the owning file's mapping */
    size_t nbytes;
} dlq_tensor_info;

static inline int64_t dlq_tensor_numel(const dlq_tensor_info *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

#endif
