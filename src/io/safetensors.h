/* safetensors reader (single file, or a sharded set via
 * model.safetensors.index.json). Format: u64 little-endian header length N,
 * then N bytes of JSON {"name": {"dtype": "BF16", "shape": [..],
 * "data_offsets": [begin, end]}, "__metadata__": {...}}, then the byte
 * buffer; offsets are relative to the buffer start. Every offset, shape and
 * dtype is validated against the file before use. Files are memory-mapped. */
#ifndef DLQ_IO_SAFETENSORS_H
#define DLQ_IO_SAFETENSORS_H

#include "core/err.h"
#include "core/mapfile.h"
#include "core/tensor.h"

typedef struct dlq_safetensors {
    dlq_mapfile *files;      /* one per shard */
    int nfiles;
    dlq_tensor_info *tensors;
    size_t ntensors;
} dlq_safetensors;

/* path: a .safetensors file, a model.safetensors.index.json, or a folder
 * holding either (index preferred when both exist). */
int dlq_st_open(dlq_safetensors *st, const char *path, dlq_err *err);
const dlq_tensor_info *dlq_st_find(const dlq_safetensors *st, const char *name);
void dlq_st_close(dlq_safetensors *st);

/* Parses one in-memory safetensors image (used by dlq_st_open and by tests).
 * Appends the tensors to *tensors / *n (realloc'd). `what` names the file in errors. */
int dlq_st_parse(const uint8_t *data, size_t size, const char *what,
                 dlq_tensor_info **tensors, size_t *n, dlq_err *err);


/* Writes tensors[0..n) (dtype, ndim, shape, data, nbytes; nbytes must equal
 * numel x element size) as one safetensors file, in the given order with
 * contiguous data_offsets. metadata_json_or_NULL: a JSON object of string
 * values stored as "__metadata__". The header is padded with spaces to a
 * multiple of 8 bytes, as the reference implementation does. Atomic: writes
 * path.tmp.XXXXXX, fsyncs, renames over path. DLQ_U8 is written as "U8". */
int dlq_st_write(const char *path, const dlq_tensor_info *tensors, size_t n, const char *metadata_json_or_NULL,
                 dlq_err *err);

#endif
