/* Applying a PEFT LoRA adapter to a loaded model: each adapted projection
 * becomes an owned fp32 weight W0 + scaling * B A (merged once at load). */
#include <cblas.h>
#include <string.h>

#include "io/hf_write.h"
#include "model/load_internal.h"
#include "train/tmodel.h"

int dlq_model_apply_adapter(dlq_model *m, const char *dir, dlq_err *err) {
    dlq_peft_adapter *ad;
    int rc = dlq_peft_read_adapter(dir, &m->cfg, &ad, err);
    if (rc) return rc;
    for (size_t i = 0; i < ad->n_pairs && !rc; i++) {
        const dlq_lora_pair *pr = &ad->pairs[i];
        if (pr->layer < 0 || pr->layer >= m->cfg.n_layers) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: adapter layer %d does not exist in the model", dir, pr->layer);
            break;
        }
        dlq_layer *L = &m->layers[pr->layer];
        dlq_weight *w = NULL;
        for (int p = 0; p < DLQ_N_PROJ; p++)
            if (!strcmp(pr->module, dlq_proj_names[p]))
                w = p == DLQ_P_Q ? &L->wq : p == DLQ_P_K ? &L->wk : p == DLQ_P_V ? &L->wv : p == DLQ_P_O ? &L->wo
                  : p == DLQ_P_GATE ? &L->w_gate : p == DLQ_P_UP ? &L->w_up : &L->w_down;
        if (!w || w->rows != pr->out || w->cols != pr->in) {
            rc = dlq_errf(err, DLQ_EFORMAT, "%s: adapter module %s of layer %d does not match the model", dir, pr->module,
                          pr->layer);
            break;
        }
        int r = ad->cfg.r;
        float *nw = dlq_model_own(m, (size_t)(w->rows * w->cols) * sizeof(float), err);
        if (!nw) { rc = DLQ_ENOMEM; break; }
        dlq_to_f32(nw, w->data, w->dtype, (size_t)(w->rows * w->cols));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)w->rows, (int)w->cols, r, (float)ad->scaling, pr->B, r,
                    pr->A, (int)w->cols, 1.0f, nw, (int)w->cols);
        w->data = nw;
        w->dtype = DLQ_F32;
    }
    dlq_peft_adapter_free(ad);
    if (!rc) dlq_model_count_bytes(m);
    return rc;
}
