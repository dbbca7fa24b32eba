#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/vec.h"
#include "nn/nn.h"

/* One head through sgemm: P[T, S] = softmax(scale * Q_h K_h^T) with the causal
 * (and sliding-window) mask for queries at positions pos0..pos0+T-1, then
 * out_h[T, hd] = P V_h. Shared by inference and training (bit-identical). */
static void head_gemm(float *out_h, float *P, const float *qh, const float *kh, const float *vh, int64_t ldq,
                      int64_t ldkv, int T, int pos0, int hd, int window, float scale) {
    int S = pos0 + T;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, hd, scale, qh, (int)ldq, kh, (int)ldkv, 0.0f, P, S);
    #pragma omp parallel for schedule(static) if (T > 8)
    for (int i = 0; i < T; i++) {
        float *si = P + (int64_t)i * S;
        int hi = pos0 + i, lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
        dlq_softmax_inplace(si + lo, (size_t)(hi - lo + 1)); /* vectorized exp (kernels/vec.h) */
        if (lo > 0) memset(si, 0, (size_t)lo * sizeof(float));
        if (hi + 1 < S) memset(si + hi + 1, 0, (size_t)(S - hi - 1) * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, P, S, vh, (int)ldkv, 0.0f, out_h, (int)ldq);
}

void dlq_attention_forward(float *out, const float *q, const float *k, const float *v, int64_t ldkv, int T, int pos0,
                           int n_heads, int n_kv_heads, int hd, int window, float *scores) {
    int group = n_heads / n_kv_heads;
    int64_t ldq = (int64_t)n_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_heads; h++)
        head_gemm(out + (int64_t)h * hd, scores, q + (int64_t)h * hd, k + (int64_t)(h / group) * hd,
                  v + (int64_t)(h / group) * hd, ldq, ldkv, T, pos0, hd, window, scale);
}

void dlq_attention_ref(float *out, const float *q, const float *k, const float *v, int64_t ldkv, int T, int pos0,
                       int n_heads, int n_kv_heads, int hd, int window) {
    int group = n_heads / n_kv_heads;
    int64_t ldq = (int64_t)n_heads * hd;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < T; i++) {
            int hi = pos0 + i, lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
            const float *qi = q + i * ldq + (int64_t)h * hd;
            double mx = -INFINITY, p[hi + 1];
            for (int j = lo; j <= hi; j++) {
                const float *kj = k + j * ldkv + (int64_t)(h / group) * hd;
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)qi[d] * kj[d];
                p[j] = s / sqrt((double)hd);
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0;
            for (int j = lo; j <= hi; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = lo; j <= hi; j++) o += p[j] * v[j * ldkv + (int64_t)(h / group) * hd + d];
                out[i * ldq + (int64_t)h * hd + d] = (float)(o / sum);
            }
        }
}

/* ---- training ----
 * Below ATT_GEMM_T tokens the per-head products are plain loops with the
 * heads spread over threads; from ATT_GEMM_T up each head's products go
 * through sgemm (BLAS threads inside) with the softmax rows spread over
 * threads, exactly as dlq_attention_forward does (bit-identical output). */
#define ATT_GEMM_T 32

void dlq_attention_forward_train(float *out, float *probs, const float *q, const float *k, const float *v, int T,
                                 int n_heads, int n_kv_heads, int hd, int window) {
    if (T <= 0) return;
    int group = n_heads / n_kv_heads;
    int64_t ldq = (int64_t)n_heads * hd, ldkv = (int64_t)n_kv_heads * hd, TT = (int64_t)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    if (T >= ATT_GEMM_T) {
        for (int h = 0; h < n_heads; h++)
            head_gemm(out + (int64_t)h * hd, probs + h * TT, q + (int64_t)h * hd, k + (int64_t)(h / group) * hd,
                      v + (int64_t)(h / group) * hd, ldq, ldkv, T, 0, hd, window, scale);
        return;
    }
    #pragma omp parallel for schedule(static) if (n_heads > 1 && T > 1)
    for (int h = 0; h < n_heads; h++) {
        const float *kh = k + (int64_t)(h / group) * hd, *vh = v + (int64_t)(h / group) * hd;
        for (int i = 0; i < T; i++) {
            const float *qi = q + i * ldq + (int64_t)h * hd;
            float *si = probs + h * TT + (int64_t)i * T, *oi = out + i * ldq + (int64_t)h * hd;
            int lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
            for (int j = lo; j <= i; j++) {
                const float *kj = kh + j * ldkv;
                float s = 0;
                for (int c = 0; c < hd; c++) s += qi[c] * kj[c];
                si[j] = s * scale;
            }
            dlq_softmax_inplace(si + lo, (size_t)(i - lo + 1));
            for (int j = 0; j < lo; j++) si[j] = 0;
            for (int j = i + 1; j < T; j++) si[j] = 0;
            for (int c = 0; c < hd; c++) oi[c] = 0;
            for (int j = lo; j <= i; j++) {
                const float *vj = vh + j * ldkv;
                float p = si[j];
                for (int c = 0; c < hd; c++) oi[c] += p * vj[c];
            }
        }
    }
}

size_t dlq_attention_backward_scratch(int T, int n_heads) {
    size_t TT = (size_t)T * (size_t)T;
    return T >= ATT_GEMM_T ? TT : TT * (size_t)n_heads;
}

/* Per head h (kv head g = h / group), with P = probs[h], dO = dout_h:
 *   dV_g += P^T dO;  dP = dO V_g^T;  dS = P .* (dP - rowsum(P .* dP));
 *   dQ_h = scale dS K_g;  dK_g += scale dS^T Q_h.
 * Masked entries have P = 0, so dS is 0 there: the mask (and window) needs
 * no separate handling. dq, dk and dv are all overwritten. */
void dlq_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs, const float *q,
                            const float *k, const float *v, int T, int n_heads, int n_kv_heads, int hd, float *scratch) {
    if (T <= 0) return;
    int group = n_heads / n_kv_heads;
    int64_t ldq = (int64_t)n_heads * hd, ldkv = (int64_t)n_kv_heads * hd, TT = (int64_t)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    memset(dk, 0, (size_t)T * (size_t)ldkv * sizeof *dk);
    memset(dv, 0, (size_t)T * (size_t)ldkv * sizeof *dv);
    if (T >= ATT_GEMM_T) {
        float *dS = scratch;
        for (int h = 0; h < n_heads; h++) {
            int g = h / group;
            const float *P = probs + h * TT, *dOh = dout + (int64_t)h * hd, *qh = q + (int64_t)h * hd;
            const float *kg = k + (int64_t)g * hd, *vg = v + (int64_t)g * hd;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, dOh, (int)ldq, 1.0f,
                        dv + (int64_t)g * hd, (int)ldkv);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dOh, (int)ldq, vg, (int)ldkv, 0.0f,
                        dS, T);
            #pragma omp parallel for schedule(static) if (T > 8)
            for (int i = 0; i < T; i++) {
                const float *pi = P + (int64_t)i * T;
                float *si = dS + (int64_t)i * T;
                float rs = 0;
                for (int j = 0; j <= i; j++) rs += pi[j] * si[j];
                for (int j = 0; j <= i; j++) si[j] = pi[j] * (si[j] - rs);
                for (int j = i + 1; j < T; j++) si[j] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dS, T, kg, (int)ldkv, 0.0f,
                        dq + (int64_t)h * hd, (int)ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dS, T, qh, (int)ldq, 1.0f,
                        dk + (int64_t)g * hd, (int)ldkv);
        }
        return;
    }
    /* small T. Phase 1, heads in parallel: dS_h into scratch and dq. */
    #pragma omp parallel for schedule(static) if (n_heads > 1 && T > 1)
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        const float *kg = k + (int64_t)g * hd, *vg = v + (int64_t)g * hd;
        for (int i = 0; i < T; i++) {
            const float *pi = probs + h * TT + (int64_t)i * T, *doi = dout + i * ldq + (int64_t)h * hd;
            float *si = scratch + h * TT + (int64_t)i * T, *dqi = dq + i * ldq + (int64_t)h * hd;
            float rs = 0;
            for (int j = 0; j <= i; j++) {
                float s = 0;
                if (pi[j] != 0.0f) {
                    const float *vj = vg + j * ldkv;
                    for (int c = 0; c < hd; c++) s += doi[c] * vj[c];
                }
                si[j] = s;
                rs += pi[j] * s;
            }
            for (int c = 0; c < hd; c++) dqi[c] = 0;
            for (int j = 0; j <= i; j++) {
                float ds = pi[j] * (si[j] - rs) * scale;
                si[j] = ds; /* scaled dS */
                if (ds == 0.0f) continue;
                const float *kj = kg + j * ldkv;
                for (int c = 0; c < hd; c++) dqi[c] += ds * kj[c];
            }
        }
    }
    /* Phase 2, (kv head, key row) in parallel: dk/dv rows summed over the
     * group's heads and the query rows in a fixed order. */
    #pragma omp parallel for schedule(static) if ((int64_t)n_kv_heads * T > 1)
    for (int64_t gj = 0; gj < (int64_t)n_kv_heads * T; gj++) {
        int g = (int)(gj / T), j = (int)(gj % T);
        float *dkj = dk + j * ldkv + (int64_t)g * hd, *dvj = dv + j * ldkv + (int64_t)g * hd;
        for (int h = g * group; h < (g + 1) * group; h++)
            for (int i = j; i < T; i++) {
                float p = probs[h * TT + (int64_t)i * T + j], ds = scratch[h * TT + (int64_t)i * T + j];
                const float *qi = q + i * ldq + (int64_t)h * hd, *doi = dout + i * ldq + (int64_t)h * hd;
                if (p != 0.0f)
                    for (int c = 0; c < hd; c++) dvj[c] += p * doi[c];
                if (ds != 0.0f)
                    for (int c = 0; c < hd; c++) dkj[c] += ds * qi[c];
            }
    }
}
