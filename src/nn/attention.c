#include <cblas.h>
#include <math.h>

#include "nn/nn.h"

void dlq_attention_forward(float *out, const float *q, const float *k, const float *v, int64_t ldkv, int T, int pos0,
                           int n_heads, int n_kv_heads, int hd, int window, float *scores) {
    int S = pos0 + T, group = n_heads / n_kv_heads;
    int64_t ldq = (int64_t)n_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (int64_t)h * hd;
        const float *kh = k + (int64_t)(h / group) * hd, *vh = v + (int64_t)(h / group) * hd;
        /* scores[T, S] = scale * Q_h K_h^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, hd, scale, qh, (int)ldq, kh, (int)ldkv, 0.0f,
                    scores, S);
        #pragma omp parallel for schedule(static) if (T > 8)
        for (int i = 0; i < T; i++) {
            float *si = scores + (int64_t)i * S;
            int hi = pos0 + i, lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
            float mx = -INFINITY;
            for (int j = lo; j <= hi; j++) mx = si[j] > mx ? si[j] : mx;
            float sum = 0;
            for (int j = lo; j <= hi; j++) { si[j] = expf(si[j] - mx); sum += si[j]; }
            float inv = 1.0f / sum;
            for (int j = 0; j < lo; j++) si[j] = 0;
            for (int j = lo; j <= hi; j++) si[j] *= inv;
            for (int j = hi + 1; j < S; j++) si[j] = 0;
        }
        /* out_h[T, hd] = P V_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, scores, S, vh, (int)ldkv, 0.0f,
                    out + (int64_t)h * hd, (int)ldq);
    }
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
