/* The quantization-aware trainable linear layer (DLQ_TL_QUANT): DL-QAT's
 * W' = W0 + scale*B A (B A optional), fake-quantized with learnable per-group
 * s, b, m (src/quant/quant.h). The fake-quantized weight and the full-size
 * weight gradient G = dY^T X exist only as per-layer transients in the shared
 * workspace (dlq_tl_ws.wq / .gq), never kept for the whole model. */
#ifndef DLQ_QLINEAR_H
#define DLQ_QLINEAR_H

#include "quant/quant.h"
#include "train/tlinear.h"

typedef struct dlq_qstate {
    dlq_qspec spec;
    int64_t ngroups;      /* per row */
    float *s, *b, *m;     /* [out * ngroups] */
    float *gs, *gb, *gm;
    int lsq;              /* LSQ gradient scale for s */
    float dampen;         /* oscillation dampening weight (per matrix, mean over its elements; 0 = off) */
} dlq_qstate;

/* W' (fp32, [out*in]) of a quant layer: W0 widened, plus scale*B A if r > 0. */
void dlq_qlinear_wprime(const dlq_tlinear *L, float *wp);

#endif
