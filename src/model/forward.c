#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/linear.h"
#include "model/forward.h"
#include "nn/nn.h"

void dlq_state_destroy(dlq_state *s) {
    if (!s) return;
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->att, &s->hb, &s->hb2, &s->scores, &s->wscratch,
                      &s->kcache, &s->vcache, &s->cos_t, &s->sin_t};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(*bufs[i]);
    free(s->pos);
    free(s);
}

int dlq_state_create(dlq_state **out, const dlq_model *m, int B, int T, int S, dlq_err *err) {
    *out = NULL;
    const dlq_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || S < T)
        return dlq_errf(err, DLQ_EINVAL, "invalid state sizes: batch %d, tokens %d, cache %d", B, T, S);
    dlq_state *s = calloc(1, sizeof *s);
    if (!s) return dlq_errf(err, DLQ_ENOMEM, "out of memory");
    s->B = B; s->T = T; s->S = S;
    s->q_dim = c->n_heads * c->head_dim;
    s->kv_dim = c->n_kv_heads * c->head_dim;
    size_t n = (size_t)B * T, hd2 = (size_t)c->head_dim / 2;
    size_t maxcols = (size_t)(c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
    if ((size_t)s->q_dim > maxcols) maxcols = (size_t)s->q_dim;
    size_t sizes[] = {n * c->dim, n * c->dim, n * s->q_dim, n * s->q_dim, n * c->hidden_dim, n * c->hidden_dim,
                      (size_t)T * S, dlq_linear_scratch_floats((int64_t)maxcols),
                      (size_t)c->n_layers * B * S * s->kv_dim, (size_t)c->n_layers * B * S * s->kv_dim,
                      (size_t)S * hd2, (size_t)S * hd2};
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->att, &s->hb, &s->hb2, &s->scores, &s->wscratch,
                      &s->kcache, &s->vcache, &s->cos_t, &s->sin_t};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        *bufs[i] = malloc(sizes[i] * sizeof(float) + 64);
        s->bytes += sizes[i] * sizeof(float);
        if (!*bufs[i]) {
            dlq_state_destroy(s);
            return dlq_errf(err, DLQ_ENOMEM, "out of memory for the forward state (%zu MiB in buffer %zu)",
                            sizes[i] * sizeof(float) >> 20, i);
        }
    }
    s->pos = malloc(n * sizeof(int32_t));
    if (!s->pos) { dlq_state_destroy(s); return dlq_errf(err, DLQ_ENOMEM, "out of memory"); }
    float inv[hd2 ? hd2 : 1];
    dlq_rope_inv_freq(c, inv);
    if (m->rope_freq_factors)
        for (size_t i = 0; i < hd2; i++) inv[i] /= m->rope_freq_factors[i];
    for (int p = 0; p < S; p++)
        for (size_t i = 0; i < hd2; i++) {
            float a = (float)p * inv[i]; /* the angle in fp32, as HF computes it */
            s->cos_t[(size_t)p * hd2 + i] = (float)cos((double)a);
            s->sin_t[(size_t)p * hd2 + i] = (float)sin((double)a);
        }
    *out = s;
    return DLQ_OK;
}

/* the linear layer of a forward call: batch-invariant rows when the state asks */
static void lin(const dlq_state *s, float *y, int64_t ldy, const float *x, int64_t n, const dlq_weight *w,
                const dlq_weight *bias) {
    if (s->rowwise) dlq_linear_rowwise(y, ldy, x, n, w, bias, s->wscratch);
    else dlq_linear(y, ldy, x, n, w, bias, s->wscratch);
}

static void vec_f32(const dlq_weight *w, float *out) { dlq_weight_row(w, 0, out); }

int dlq_forward(const dlq_model *m, dlq_state *s, const int32_t *tokens, int B, int T, int pos0, float *logits,
                int last_only, dlq_err *err) {
    const dlq_config *c = &m->cfg;
    if (B > s->B || T > s->T || T <= 0 || B <= 0)
        return dlq_errf(err, DLQ_EINVAL, "forward: %d x %d tokens exceed the state's %d x %d", B, T, s->B, s->T);
    if (pos0 < 0 || pos0 + T > s->S)
        return dlq_errf(err, DLQ_EINVAL, "forward: positions %d..%d exceed the cache of %d", pos0, pos0 + T - 1, s->S);
    int64_t n = (int64_t)B * T, D = c->dim, H = c->hidden_dim;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return dlq_errf(err, DLQ_EINVAL, "forward: token id %d at index %lld is outside the vocabulary [0, %d)",
                            tokens[i], (long long)i, c->vocab_size);
    for (int64_t i = 0; i < n; i++) {
        dlq_weight_row(&m->tok_emb, tokens[i], s->x + i * D);
        s->pos[i] = pos0 + (int32_t)(i % T);
    }
    int qd = s->q_dim, kvd = s->kv_dim, hd = c->head_dim;
    float normw[D > H ? D : H];
    for (int l = 0; l < c->n_layers; l++) {
        const dlq_layer *L = &m->layers[l];
        vec_f32(&L->attn_norm, normw);
        dlq_rmsnorm_forward(s->xn, s->x, normw, n, (int)D, c->norm_eps);
        lin(s, s->q, qd, s->xn, n, &L->wq, &L->bq);
        for (int b = 0; b < B; b++) {
            size_t off = (((size_t)l * s->B + b) * s->S + pos0) * kvd;
            float *kc = s->kcache + off, *vc = s->vcache + off;
            lin(s, kc, kvd, s->xn + (int64_t)b * T * D, T, &L->wk, &L->bk);
            lin(s, vc, kvd, s->xn + (int64_t)b * T * D, T, &L->wv, &L->bv);
            dlq_rope_forward(kc, T, c->n_kv_heads, hd, s->pos + (int64_t)b * T, s->cos_t, s->sin_t);
        }
        dlq_rope_forward(s->q, n, c->n_heads, hd, s->pos, s->cos_t, s->sin_t);
        for (int b = 0; b < B; b++) {
            size_t base = ((size_t)l * s->B + b) * s->S * kvd;
            dlq_attention_forward(s->att + (int64_t)b * T * qd, s->q + (int64_t)b * T * qd, s->kcache + base,
                                  s->vcache + base, kvd, T, pos0, c->n_heads, c->n_kv_heads, hd, c->sliding_window,
                                  s->scores);
        }
        /* x += att Wo^T  (into xn, then add) */
        lin(s, s->xn, D, s->att, n, &L->wo, NULL);
        for (int64_t i = 0; i < n * D; i++) s->x[i] += s->xn[i];
        vec_f32(&L->ffn_norm, normw);
        dlq_rmsnorm_forward(s->xn, s->x, normw, n, (int)D, c->norm_eps);
        lin(s, s->hb, H, s->xn, n, &L->w_gate, NULL);
        lin(s, s->hb2, H, s->xn, n, &L->w_up, NULL);
        dlq_swiglu_forward(s->hb, s->hb, s->hb2, n * H);
        lin(s, s->xn, D, s->hb, n, &L->w_down, NULL);
        for (int64_t i = 0; i < n * D; i++) s->x[i] += s->xn[i];
    }
    if (!logits) return DLQ_OK;
    vec_f32(&m->out_norm, normw);
    if (last_only) {
        for (int b = 0; b < B; b++)
            memcpy(s->x + (int64_t)b * D, s->x + ((int64_t)b * T + T - 1) * D, (size_t)D * sizeof(float));
        n = B;
    }
    dlq_rmsnorm_forward(s->xn, s->x, normw, n, (int)D, c->norm_eps);
    lin(s, logits, c->vocab_size, s->xn, n, &m->lm_head, NULL);
    return DLQ_OK;
}

double dlq_nll_mean(const float *logits, const int32_t *tokens, int n, int V) {
    double total = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *l = logits + (int64_t)t * V;
        double mx = l[0];
        for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        double se = 0;
        for (int j = 0; j < V; j++) se += exp((double)l[j] - mx);
        total += mx + log(se) - l[tokens[t + 1]];
    }
    return n > 1 ? total / (n - 1) : 0.0;
}
