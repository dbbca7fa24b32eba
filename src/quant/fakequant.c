#include <float.h>
#include <string.h>

#include "quant/quant.h"

int dlq_qspec_validate(const dlq_qspec *q, dlq_err *err) {
    if (q->bits < 2 || q->bits > 8) return dlq_errf(err, DLQ_EINVAL, "bits must be in 2..8, got %d", q->bits);
    if (q->group < 0) return dlq_errf(err, DLQ_EINVAL, "group size must be positive (or 0 = per-channel), got %d", q->group);
    return DLQ_OK;
}

static void group_params(const float *w, int n, int bits, float lo, float hi, float *s, float *b) {
    (void)w; (void)n;
    float sc = (hi - lo) / (float)((1 << bits) - 1);
    float tiny = 1e-8f * fmaxf(1.0f, fmaxf(fabsf(lo), fabsf(hi)));
    if (!(sc > tiny)) sc = tiny;
    *s = sc;
    *b = lo - sc * (float)dlq_qmin(bits);
}

static double group_err(const float *w, int n, int bits, float s, float b) {
    double e = 0;
    float qn = (float)dlq_qmin(bits), qx = (float)dlq_qmax(bits);
    for (int i = 0; i < n; i++) {
        float q = fminf(fmaxf(dlq_qround((w[i] - b) / s), qn), qx);
        double d = (double)(s * q + b) - w[i];
        e += d * d;
    }
    return e;
}

void dlq_quant_init_rtn(const float *w, int64_t rows, int64_t cols, const dlq_qspec *q, int clip_search, float *s,
                        float *b, float *m) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const float *wg = w + r * cols + g * gsz;
            int n = (int)(cols - g * gsz < gsz ? cols - g * gsz : gsz);
            float lo = FLT_MAX, hi = -FLT_MAX;
            for (int i = 0; i < n; i++) { lo = fminf(lo, wg[i]); hi = fmaxf(hi, wg[i]); }
            float bs, bb;
            if (q->sym) { /* symmetric: [-absmax, absmax] onto [-qmax, qmax] */
                float am = fmaxf(fabsf(lo), fabsf(hi));
                lo = -am;
                hi = am;
            }
            group_params(wg, n, q->bits, lo, hi, &bs, &bb);
            if (q->sym) { bs = fmaxf(fmaxf(fabsf(lo), fabsf(hi)) / (float)dlq_qmax(q->bits), 1e-8f); bb = 0; }
            if (clip_search) {
                double best = group_err(wg, n, q->bits, bs, bb);
                for (int k = 1; k <= 10; k++) {
                    float ratio = 1.0f - 0.05f * (float)k, ts, tb;
                    group_params(wg, n, q->bits, lo * ratio, hi * ratio, &ts, &tb);
                    if (q->sym) { ts = fmaxf(fmaxf(fabsf(lo), fabsf(hi)) * ratio / (float)dlq_qmax(q->bits), 1e-8f); tb = 0; }
                    double e = group_err(wg, n, q->bits, ts, tb);
                    if (e < best) { best = e; bs = ts; bb = tb; }
                }
            }
            if (q->int_zero) bb = bs * dlq_qround(bb / bs);
            s[r * ng + g] = bs;
            b[r * ng + g] = bb;
            m[r * ng + g] = 1.0f;
        }
}

void dlq_quant_snap_zero(float *b, const float *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) b[i] = s[i] * dlq_qround(b[i] / s[i]);
}

void dlq_fq_forward(float *wq, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s,
                    const float *b, const float *m, int8_t *qout) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    float qn = (float)dlq_qmin(q->bits), qx = (float)dlq_qmax(q->bits);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * gsz, j1 = j0 + gsz < cols ? j0 + gsz : cols;
            float sg = s[r * ng + g], bg = b[r * ng + g], mg = m[r * ng + g];
            for (int64_t j = j0; j < j1; j++) {
                float x = (wp[r * cols + j] - bg) / sg;
                float qq = fminf(fmaxf(dlq_qround(x), qn), qx);
                if (qout) qout[r * cols + j] = (int8_t)qq;
                wq[r * cols + j] = mg * (sg * qq + bg);
            }
        }
}

void dlq_fq_backward(float *dwp, const float *G, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q,
                     const float *s, const float *b, const float *m, float *gs, float *gb, float *gm, int lsq_scale) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    float qn = (float)dlq_qmin(q->bits), qx = (float)dlq_qmax(q->bits);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * gsz, j1 = j0 + gsz < cols ? j0 + gsz : cols;
            float sg = s[r * ng + g], bg = b[r * ng + g], mg = m[r * ng + g];
            double as = 0, ab = 0, am = 0;
            for (int64_t j = j0; j < j1; j++) {
                float x = (wp[r * cols + j] - bg) / sg, rx = dlq_qround(x);
                int in = rx >= qn && rx <= qx;
                float qq = in ? rx : (rx < qn ? qn : qx);
                float Gv = G[r * cols + j], Gq = mg * Gv;
                am += (double)Gv * (sg * qq + bg);
                as += (double)Gq * (in ? qq - x : qq);
                ab += in ? 0.0 : (double)Gq;
                if (dwp) dwp[r * cols + j] = in ? Gq : 0.0f;
            }
            if (lsq_scale) as /= sqrt((double)(j1 - j0) * qx);
            if (gs) gs[r * ng + g] += (float)as;
            if (gb) gb[r * ng + g] += (float)ab;
            if (gm) gm[r * ng + g] += (float)am;
        }
}

double dlq_fq_dampen(const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s, const float *b) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    float qn = (float)dlq_qmin(q->bits), qx = (float)dlq_qmax(q->bits);
    double r = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t k = i * ng + j / gsz;
            float x = (wp[i * cols + j] - b[k]) / s[k], qq = fminf(fmaxf(dlq_qround(x), qn), qx);
            double d = (double)fminf(fmaxf(x, qn), qx) - qq;
            r += d * d;
        }
    return r;
}

void dlq_fq_dampen_grad(float *dwp, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s,
                        const float *b, float coef) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    float qn = (float)dlq_qmin(q->bits), qx = (float)dlq_qmax(q->bits);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t k = i * ng + j / gsz;
            float x = (wp[i * cols + j] - b[k]) / s[k];
            if (x < qn || x > qx) continue; /* clipped: no gradient */
            float qq = fminf(fmaxf(dlq_qround(x), qn), qx);
            dwp[i * cols + j] += coef * 2.0f * (x - qq) / s[k];
        }
}

void dlq_fq_backward_ref(double *dwp, const float *G, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q,
                         const float *s, const float *b, const float *m, double *gs, double *gb, double *gm) {
    int64_t ng = dlq_qgroups(cols, q->group);
    int gsz = dlq_qgroup_size(cols, q->group);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t g = j / gsz, k = r * ng + g;
            double x = ((double)wp[r * cols + j] - b[k]) / s[k];
            double rx = (double)dlq_qround((float)((wp[r * cols + j] - b[k]) / s[k]));
            int in = rx >= dlq_qmin(q->bits) && rx <= dlq_qmax(q->bits);
            double qq = in ? rx : (rx < dlq_qmin(q->bits) ? dlq_qmin(q->bits) : dlq_qmax(q->bits));
            double Gv = G[r * cols + j], Gq = m[k] * Gv;
            gm[k] += Gv * (s[k] * qq + b[k]);
            gs[k] += Gq * (in ? qq - x : qq);
            gb[k] += in ? 0 : Gq;
            dwp[r * cols + j] = in ? Gq : 0;
        }
}
