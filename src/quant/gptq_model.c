/* GPTQ over a whole model (src/quant/gptq.h): calibration activations by
 * layer-by-layer forward passes of the training model. */
#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"

/* the projections quantized together from one input, and where that input lives */
typedef struct { int p[3], np; } stage;
static const stage stages[4] = {{{DLQ_P_Q, DLQ_P_K, DLQ_P_V}, 3}, {{DLQ_P_O}, 1}, {{DLQ_P_GATE, DLQ_P_UP}, 2}, {{DLQ_P_DOWN}, 1}};

static const float *stage_input(const dlq_acts *a, int st) {
    return st == 0 ? a->xn1 : st == 1 ? a->att : st == 2 ? a->xn2 : a->hmid;
}

int dlq_gptq_model(dlq_tmodel *tm, const int32_t *tokens, int64_t nseq, const dlq_gptq_opts *o, float **owned,
                   void (*progress)(void *user, int layer, int n_layers), void *user, dlq_err *err) {
    *owned = NULL;
    const dlq_config *c = &tm->cfg;
    int64_t B = tm->opt.B, T = tm->opt.T, BT = B * T, D = c->dim;
    if (tm->opt.mode != DLQ_MODE_QUANT) return dlq_errf(err, DLQ_EINVAL, "GPTQ needs a quantization-mode training model");
    if (nseq <= 0 || nseq % B) return dlq_errf(err, DLQ_EINVAL, "GPTQ: %lld calibration sequences is not a positive multiple of the batch %lld",
                                               (long long)nseq, (long long)B);
    int64_t nchunks = nseq / B;
    size_t total_w = 0;
    int64_t max_in = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < DLQ_N_PROJ; p++) {
            const dlq_tlinear *L = &tm->layers[l].p[p];
            if (L->kind != DLQ_TL_QUANT && L->kind != DLQ_TL_QALORA) continue;
            total_w += (size_t)(L->out * L->in);
            if (L->in > max_in) max_in = L->in;
        }
    float *wbuf = malloc((total_w ? total_w : 1) * sizeof(float));
    float *X = malloc((size_t)(nseq * T * D) * sizeof(float)), *tmp = malloc((size_t)(BT * D) * sizeof(float));
    double *H = malloc((size_t)(max_in * max_in) * sizeof(double)), *Hc = malloc((size_t)(max_in * max_in) * sizeof(double));
    int rc = DLQ_OK;
    if (!wbuf || !X || !tmp || !H || !Hc) {
        rc = dlq_errf(err, DLQ_ENOMEM, "GPTQ: out of memory for %lld calibration sequences of %lld tokens", (long long)nseq, (long long)T);
        goto fail;
    }
    for (int64_t k = 0; k < nchunks; k++) dlq_tmodel_embed(tm, tokens + k * BT, X + k * BT * D);
    float *wnext = wbuf;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        dlq_tlayer *TL = &tm->layers[l];
        for (int st = 0; st < 4 && !rc; st++) {
            int any = 0;
            for (int i = 0; i < stages[st].np; i++) {
                int k = TL->p[stages[st].p[i]].kind;
                any |= k == DLQ_TL_QUANT || k == DLQ_TL_QALORA;
            }
            if (!any) continue;
            int64_t in = TL->p[stages[st].p[0]].in;
            memset(H, 0, (size_t)(in * in) * sizeof(double));
            for (int64_t k = 0; k < nchunks && !rc; k++) {
                rc = dlq_tmodel_layer_forward(tm, l, X + k * BT * D, tmp, err);
                if (!rc) dlq_gptq_add_hessian(H, stage_input(dlq_tmodel_layer_acts(tm, l), st), BT, in);
            }
            for (int i = 0; i < stages[st].np && !rc; i++) {
                dlq_tlinear *L = &TL->p[stages[st].p[i]];
                if (L->kind != DLQ_TL_QUANT && L->kind != DLQ_TL_QALORA) continue;
                dlq_qstate *Q = L->q;
                memcpy(Hc, H, (size_t)(in * in) * sizeof(double));
                dlq_to_f32(wnext, L->w0.data, L->w0.dtype, (size_t)(L->out * L->in));
                rc = dlq_gptq_layer(wnext, L->out, L->in, Hc, &Q->spec, o, Q->s, Q->b, NULL, NULL, err);
                if (rc) break;
                for (int64_t g = 0; g < L->out * Q->ngroups; g++) Q->m[g] = 1.0f;
                if (L->w) memcpy(L->w, wnext, (size_t)(L->out * L->in) * sizeof(float)); /* full QAT starts from it too */
                L->w0.data = wnext;
                L->w0.dtype = DLQ_F32;
                wnext += L->out * L->in;
            }
        }
        /* the next layer's input: this layer's output with all its parts quantized */
        for (int64_t k = 0; k < nchunks && !rc; k++) rc = dlq_tmodel_layer_forward(tm, l, X + k * BT * D, X + k * BT * D, err);
        if (!rc && progress) progress(user, l + 1, c->n_layers);
    }
    if (rc) goto fail;
    free(X); free(tmp); free(H); free(Hc);
    *owned = wbuf;
    return DLQ_OK;
fail:
    free(X); free(tmp); free(H); free(Hc);
    /* on failure some layers may already point into wbuf: the model must not be used */
    *owned = wbuf;
    return rc;
}
