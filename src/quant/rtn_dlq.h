/* Round-to-nearest quantization of a loaded model straight into a .dlq file,
 * one tensor at a time (no training state, no full-precision copy of the
 * model: peak memory is one projection in fp32). For deployment benchmarks
 * and quick baselines; DL-QAT training writes its .dlq with
 * dlq_quant_export_dlq (quant/export.h). */
#ifndef DLQ_QUANT_RTN_DLQ_H
#define DLQ_QUANT_RTN_DLQ_H

#include "model/model.h"

typedef struct dlq_rtn_opts {
    int bits;              /* 2..8, the seven projections of every layer */
    int group;             /* 0 = per-channel */
    dlq_dtype param_dtype; /* group scale/bias as DLQ_F32 or DLQ_F16 */
    int head_bits;         /* 0: the output head as stored; 2..8: quantized too (an untied head only) */
    int clip_search;       /* dlq_quant_init_rtn's clipping search */
} dlq_rtn_opts;

/* Writes m with min-max RTN integers (quant/quant.h: s, b from the group
 * range, w = s*q + b) to path; embeddings, norms and biases as stored, the
 * tokenizer embedded when the model has one. metadata_json may be NULL. */
int dlq_quant_rtn_to_dlq(const dlq_model *m, const char *path, const dlq_rtn_opts *o, const char *metadata_json,
                         dlq_err *err);

#endif
