/* The .dlq model file: a merged low-bit model in one documented, versioned,
 * checksummed, memory-mappable file (docs/formats.md#dlq).
 *
 *   [0, 64)  header: magic "DLQMODEL", u32 version (2; 1 is still read), u32 header size (64),
 *            u64 file size, u64 JSON offset, u64 JSON length, 24 zero bytes
 *   JSON     UTF-8 object: {"format": "dlq", "version": 2, "config": {HF-style
 *            config.json object}, "quant": {...}, "tokenizer": {...} | null,
 *            "tensors": [...], "metadata": {...}}
 *   blobs    each at a 64-byte aligned offset given in the JSON
 *   trailer  last 16 bytes: u32 CRC-32C of bytes [0, size - 16), u32 0, "DLQMEND\0"
 *
 * A tensor entry is either dense {"name", "type": "F32"|"F16"|"BF16",
 * "shape": [..], "data": [offset, nbytes]} or packed {"name", "type":
 * "packed", "bits", "group", "shape": [out, in], "row_bytes", "q": [offset,
 * nbytes], "scale": [offset, nbytes], "bias": [offset, nbytes]}: q holds each
 * row's integers as unsigned u = q - qmin, bit-packed LSB-first
 * (src/kernels/qpack.h); scale/bias are [out][ceil(in/group)] of
 * "param_type" "F32" (the default when absent) or "F16", and the weight is
 * w = scale*q + bias. The tokenizer entry is {"kind":
 * "sentencepiece"|"hf_json"|"llama2c", "data": [offset, nbytes], "add_bos",
 * "bos_id", "eos_id"}: the original tokenizer file, byte for byte. */
#ifndef DLQ_IO_DLQ_FILE_H
#define DLQ_IO_DLQ_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"
#include "core/mapfile.h"

/* Version 2 added F16 group parameters ("param_type"); the reader still
 * accepts version 1 files (F32 parameters only). */
#define DLQ_FILE_VERSION 2
#define DLQ_FILE_VERSION_MIN 1

typedef struct dlq_file_writer dlq_file_writer;

int dlq_file_writer_new(dlq_file_writer **out, dlq_err *err);
void dlq_file_writer_free(dlq_file_writer *w);
/* The config object (JSON text of an HF config.json) and free-form objects. */
int dlq_file_set_json(dlq_file_writer *w, const char *key, const char *json_text, dlq_err *err);
/* Dense tensor: data copied at write time (must stay valid until commit). */
int dlq_file_add_dense(dlq_file_writer *w, const char *name, dlq_dtype dt, int ndim, const int64_t *shape,
                       const void *data, dlq_err *err);
/* Packed tensor: q int8 [out*in] (values in [qmin, qmax]) is packed here;
 * scale/bias F32 [out*ngroups]. Data copied immediately. */
int dlq_file_add_packed(dlq_file_writer *w, const char *name, int bits, int group, int64_t out, int64_t in,
                        const int8_t *q, const float *scale, const float *bias, dlq_err *err);
/* The same with the group parameters stored as param_dtype: DLQ_F32, or
 * DLQ_F16 (rounded to nearest even; half the parameter bytes, what GGUF's
 * Q4_1 / Q8_0 store). */
int dlq_file_add_packed_ex(dlq_file_writer *w, const char *name, int bits, int group, int64_t out, int64_t in,
                           const int8_t *q, const float *scale, const float *bias, dlq_dtype param_dtype,
                           dlq_err *err);
/* For other tensor kinds (src/quant/nf4.c): copy n bytes into a blob and
 * return its [offset, nbytes] JSON pair (NULL + err on failure); append a
 * tensor entry (a json_t * object, reference stolen). */
struct json_t;
struct json_t *dlq_file_add_blob_copy(dlq_file_writer *w, const void *data, size_t n, dlq_err *err);
void dlq_file_add_entry(dlq_file_writer *w, struct json_t *entry);
int dlq_file_set_tokenizer(dlq_file_writer *w, const char *kind, const void *data, size_t n, int add_bos, int bos,
                           int eos, dlq_err *err);
/* Writes path atomically (path.tmp, fsync, rename). */
int dlq_file_commit(dlq_file_writer *w, const char *path, dlq_err *err);

/* Reader: maps the file, checks header, size, checksum and the JSON, and
 * validates every blob reference against the file before use. */
typedef struct dlq_file {
    dlq_mapfile map;
    void *json;           /* json_t * root */
    int drop_pages;       /* dlq_file_open: the data is a private mapping whose pages
                             the checksum pass drops from the process as it goes */
} dlq_file;

int dlq_file_open(dlq_file *f, const char *path, dlq_err *err);
/* Parses an in-memory image (not owned; for tests). */
int dlq_file_parse(dlq_file *f, const uint8_t *data, size_t size, const char *what, dlq_err *err);
void dlq_file_close(dlq_file *f);
/* Resolves a [offset, nbytes] JSON pair to a pointer inside the file
 * (validated: inside the data area, aligned to `align`). */
int dlq_file_blob(const dlq_file *f, void *pair_json, size_t expect_bytes, size_t align, const void **ptr,
                  size_t *nbytes, const char *what, dlq_err *err);

#endif
