/* GGUF reader (versions 2 and 3). Layout (little-endian):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
 *   padding to general.alignment (default 32), tensor data.
 * string = u64 len + bytes (no NUL). array value = u32 elem type, u64 count, elems.
 * ne[0] is the fastest-varying dimension; dlq_tensor_info.shape is reversed
 * (row-major, shape[0] slowest). Every count, length and offset is validated
 * against the file size before it is trusted. */
#ifndef DLQ_IO_GGUF_H
#define DLQ_IO_GGUF_H

#include <stdint.h>

#include "core/err.h"
#include "core/mapfile.h"
#include "core/tensor.h"

enum dlq_gguf_type {
    DLQ_GGUF_UINT8 = 0, DLQ_GGUF_INT8 = 1, DLQ_GGUF_UINT16 = 2, DLQ_GGUF_INT16 = 3,
    DLQ_GGUF_UINT32 = 4, DLQ_GGUF_INT32 = 5, DLQ_GGUF_FLOAT32 = 6, DLQ_GGUF_BOOL = 7,
    DLQ_GGUF_STRING = 8, DLQ_GGUF_ARRAY = 9, DLQ_GGUF_UINT64 = 10, DLQ_GGUF_INT64 = 11,
    DLQ_GGUF_FLOAT64 = 12, DLQ_GGUF_TYPE_COUNT
};

/* ggml tensor types we name (values are ggml's) */
enum dlq_ggml_type {
    DLQ_GGML_F32 = 0, DLQ_GGML_F16 = 1, DLQ_GGML_Q4_0 = 2, DLQ_GGML_Q4_1 = 3,
    DLQ_GGML_Q5_0 = 6, DLQ_GGML_Q5_1 = 7, DLQ_GGML_Q8_0 = 8, DLQ_GGML_Q2_K = 10,
    DLQ_GGML_Q3_K = 11, DLQ_GGML_Q4_K = 12, DLQ_GGML_Q5_K = 13, DLQ_GGML_Q6_K = 14,
    DLQ_GGML_BF16 = 30
};

typedef struct dlq_gguf_str {
    const char *ptr;  /* points into the mapping; NOT NUL-terminated */
    uint64_t len;
} dlq_gguf_str;

typedef struct dlq_gguf_kv {
    dlq_gguf_str key;
    uint32_t type;       /* enum dlq_gguf_type */
    uint32_t arr_type;   /* element type when type == ARRAY */
    uint64_t arr_n;      /* element count when type == ARRAY */
    const uint8_t *val;  /* raw value bytes in the mapping (for arrays: first element) */
    const uint8_t **arr_str; /* for arrays of strings: pointer to each element's u64 length
                                field (precomputed at open so element access is O(1)); else NULL */
} dlq_gguf_kv;

typedef struct dlq_gguf {
    dlq_mapfile file;
    uint32_t version;
    uint64_t n_kv;
    dlq_gguf_kv *kv;
    uint64_t n_tensors;
    dlq_tensor_info *tensors;  /* dtype = DLQ_F32/F16/BF16 where it maps, else DLQ_DTYPE_COUNT;
                                  file_type = ggml type; nbytes from the type's block size */
    uint32_t alignment;
    uint64_t data_offset;
} dlq_gguf;

int dlq_gguf_open(dlq_gguf *g, const char *path, dlq_err *err);
/* Same, over bytes already in memory (not owned; used by tests/fuzzing). */
int dlq_gguf_parse(dlq_gguf *g, const uint8_t *data, size_t size, const char *what, dlq_err *err);
void dlq_gguf_close(dlq_gguf *g);

/* Lookup: returns the kv or NULL. */
const dlq_gguf_kv *dlq_gguf_find(const dlq_gguf *g, const char *key);
const dlq_tensor_info *dlq_gguf_find_tensor(const dlq_gguf *g, const char *name);

/* Typed scalar getters: return 0 and fill *out, or DLQ_EFORMAT (missing key
 * or wrong type; message names the key). Integer getters accept any integer
 * type whose value fits; f32 accepts F32/F64. */
int dlq_gguf_get_u32(const dlq_gguf *g, const char *key, uint32_t *out, dlq_err *err);
int dlq_gguf_get_i64(const dlq_gguf *g, const char *key, int64_t *out, dlq_err *err);
int dlq_gguf_get_f32(const dlq_gguf *g, const char *key, float *out, dlq_err *err);
int dlq_gguf_get_bool(const dlq_gguf *g, const char *key, int *out, dlq_err *err);
int dlq_gguf_get_str(const dlq_gguf *g, const char *key, dlq_gguf_str *out, dlq_err *err);

/* Array element access (kv must be an ARRAY of the matching element type). */
dlq_gguf_str dlq_gguf_arr_str(const dlq_gguf_kv *kv, uint64_t i);
float dlq_gguf_arr_f32(const dlq_gguf_kv *kv, uint64_t i);
int64_t dlq_gguf_arr_int(const dlq_gguf_kv *kv, uint64_t i); /* any integer element type */

/* Size in bytes of n elements of a ggml type (0 if unknown or n not a whole
 * number of blocks). */
uint64_t dlq_ggml_nbytes(uint32_t ggml_type, uint64_t n);
const char *dlq_ggml_type_name(uint32_t ggml_type);


/* ---- writer (src/io/gguf_write.c) ----------------------------------------
 * A small builder: add metadata and tensors in the order they should appear,
 * then dlq_gguf_write() emits a GGUF v3 file atomically (temp file in the
 * same folder + fsync + rename). Metadata values are copied when added;
 * tensor data is NOT copied: the pointer must stay valid until the write.
 * Tensor shapes are row-major (shape[0] slowest), like dlq_tensor_info; the
 * writer reverses them into ggml's ne[] order. Each tensor's data is placed
 * at the next multiple of the alignment (default 32; adding a
 * "general.alignment" UINT32 key changes it, it must be a power of two).
 * Every add function returns 0 or a DLQ_E* status with err filled (duplicate
 * key or tensor name, bad type, byte count not matching the shape, ...). */
typedef struct dlq_gguf_writer dlq_gguf_writer;

dlq_gguf_writer *dlq_gguf_writer_new(dlq_err *err);
void dlq_gguf_writer_free(dlq_gguf_writer *w);

int dlq_gguf_add_u8(dlq_gguf_writer *w, const char *key, uint8_t v, dlq_err *err);
int dlq_gguf_add_i8(dlq_gguf_writer *w, const char *key, int8_t v, dlq_err *err);
int dlq_gguf_add_u16(dlq_gguf_writer *w, const char *key, uint16_t v, dlq_err *err);
int dlq_gguf_add_i16(dlq_gguf_writer *w, const char *key, int16_t v, dlq_err *err);
int dlq_gguf_add_u32(dlq_gguf_writer *w, const char *key, uint32_t v, dlq_err *err);
int dlq_gguf_add_i32(dlq_gguf_writer *w, const char *key, int32_t v, dlq_err *err);
int dlq_gguf_add_u64(dlq_gguf_writer *w, const char *key, uint64_t v, dlq_err *err);
int dlq_gguf_add_i64(dlq_gguf_writer *w, const char *key, int64_t v, dlq_err *err);
int dlq_gguf_add_f32(dlq_gguf_writer *w, const char *key, float v, dlq_err *err);
int dlq_gguf_add_f64(dlq_gguf_writer *w, const char *key, double v, dlq_err *err);
int dlq_gguf_add_bool(dlq_gguf_writer *w, const char *key, int v, dlq_err *err);
int dlq_gguf_add_str(dlq_gguf_writer *w, const char *key, const char *s, dlq_err *err);
/* string with explicit length (may contain NUL bytes) */
int dlq_gguf_add_strn(dlq_gguf_writer *w, const char *key, const char *s, uint64_t len, dlq_err *err);
int dlq_gguf_add_arr_str(dlq_gguf_writer *w, const char *key, const char *const *strs, size_t n, dlq_err *err);
int dlq_gguf_add_arr_f32(dlq_gguf_writer *w, const char *key, const float *v, size_t n, dlq_err *err);
int dlq_gguf_add_arr_i32(dlq_gguf_writer *w, const char *key, const int32_t *v, size_t n, dlq_err *err);
/* Array of any fixed-size scalar element type (UINT8..FLOAT64 except STRING
 * and ARRAY); `elems` holds n little-endian values of that type. */
int dlq_gguf_add_arr(dlq_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, size_t n,
                     dlq_err *err);
/* Escape hatch (tests, nested arrays): `type` and the already-serialized
 * value bytes are written as given, unchecked. */
int dlq_gguf_add_raw(dlq_gguf_writer *w, const char *key, uint32_t type, const void *bytes, size_t nbytes,
                     dlq_err *err);

int dlq_gguf_add_tensor(dlq_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, dlq_err *err);

int dlq_gguf_write(dlq_gguf_writer *w, const char *path, dlq_err *err);

#endif
