/* NF4 (QLoRA, Dettmers et al. 2023): 4-bit NormalFloat weights with block-wise
 * absmax scaling, optional double quantization of the absmax values, and a
 * full-precision LoRA adapter kept beside the frozen NF4 base.
 *
 *   code book: the 16 NF4 values of QLoRA (bitsandbytes' NF4 table), in [-1, 1]
 *   blocks:    `block` consecutive weights of a row (64 by default; the last
 *              block of a row may be shorter); absmax a = max |w| of the block
 *   code:      c = argmin_k |w/a - nf4[k]|  (ties to the lower index)
 *   weight:    w = nf4[c] * a
 *   double quantization (optional): the fp32 absmax values are stored as int8
 *   q = round((a - mean) / s_j), s_j = max |a - mean| / 127 per chunk of 256
 *   absmax values, one fp32 s_j per chunk and one fp32 mean per tensor: 8.5
 *   instead of 32 bits per 64 weights. (bitsandbytes quantizes the absmax with
 *   its 8-bit dynamic float map; dlqat uses this linear int8 form.)
 *
 * Codes are packed two per byte, low nibble first, each row starting on a
 * byte (row_bytes = ceil(in/2)). In a .dlq file (docs/formats.md) a tensor
 * entry {"type": "nf4", "shape": [out, in], "block", "row_bytes", "codes",
 * "absmax" | ("absmax_q", "absmax_scale", "absmax_offset", "dq_block"),
 * "lora": {"r", "alpha", "A", "B"}} holds the weights and the adapter; the
 * loader dequantizes to fp32 and adds alpha/r * B A. */
#ifndef DLQ_QUANT_NF4_H
#define DLQ_QUANT_NF4_H

#include <stdint.h>

#include "core/err.h"

extern const float dlq_nf4_code[16];

/* index of the code nearest to x (x in [-1, 1]; outside it clamps) */
int dlq_nf4_index(float x);

typedef struct dlq_nf4 {
    int64_t rows, cols;
    int block;            /* weights per absmax block (along a row) */
    int64_t nblk_row;     /* blocks per row */
    int64_t row_bytes;    /* ceil(cols/2) */
    uint8_t *codes;       /* [rows * row_bytes] */
    float *absmax;        /* [rows * nblk_row] (after double quantization: its dequantized values) */
    int double_quant;
    int dq_block;         /* absmax values per int8 chunk (256) */
    int8_t *absmax_q;     /* [rows * nblk_row] */
    float *absmax_scale;  /* [ceil(rows*nblk_row / dq_block)] */
    float absmax_offset;
} dlq_nf4;

int dlq_nf4_quantize(dlq_nf4 *q, const float *w, int64_t rows, int64_t cols, int block, int double_quant, dlq_err *err);
/* w [rows*cols] = nf4[code] * absmax */
void dlq_nf4_dequantize(const dlq_nf4 *q, float *w);
void dlq_nf4_free(dlq_nf4 *q);

/* ---- .dlq ---- */
struct dlq_file_writer;
struct dlq_file;
struct dlq_weight;
struct dlq_model;
/* Appends an "nf4" tensor entry (with the LoRA adapter A [r*in], B [out*r]
 * when r > 0) to a .dlq writer. */
int dlq_nf4_write(struct dlq_file_writer *fw, const char *name, const dlq_nf4 *q, int r, float alpha, const float *A,
                  const float *B, dlq_err *err);
/* Binds an "nf4" entry (json_t *) of f: dequantized, adapter added, as an fp32
 * weight owned by m. */
int dlq_nf4_bind(struct dlq_model *m, const struct dlq_file *f, void *entry, const char *name, int64_t rows, int64_t cols,
                 struct dlq_weight *w, dlq_err *err);



/* ---- training (QLoRA) ---- */
#include "train/tmodel.h"

typedef struct dlq_nf4_model {
    int n;              /* n_layers * DLQ_N_PROJ */
    dlq_nf4 *q;         /* per projection (empty where not adapted) */
    float *wbuf;        /* the dequantized NF4 bases the training model now points to */
} dlq_nf4_model;

/* tm in LoRA mode: every LoRA-adapted projection's frozen base becomes its
 * NF4 dequantization (so training sees exactly what the .dlq holds). */
int dlq_nf4_tmodel_init(dlq_tmodel *tm, dlq_nf4_model *nm, int block, int double_quant, dlq_err *err);
/* .dlq with NF4 projections and their LoRA adapters (quant method "nf4-lora"). */
int dlq_nf4_export_dlq(const dlq_tmodel *tm, const dlq_nf4_model *nm, const char *path, const char *metadata_json, dlq_err *err);
void dlq_nf4_model_free(dlq_nf4_model *nm);
#endif
