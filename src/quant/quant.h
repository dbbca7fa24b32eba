/* Uniform asymmetric n-bit group quantization with a real-valued offset and
 * a per-group magnitude (docs/spec.md §1–2):
 *
 *   x  = (W' - b) / s            per group of `group` consecutive inputs of a row
 *   q  = clamp(round(x), qmin, qmax),   qmin = -2^(n-1), qmax = 2^(n-1) - 1
 *   Wq = m * (s*q + b)
 *
 * round() is round-half-to-even (rintf in the default rounding mode), the
 * same function at training, merge and export time (dlq_qround). The last
 * group of a row is shorter when group does not divide the row; group = cols
 * is per-channel. Per-group parameters are stored row-major [rows][ngroups]. */
#ifndef DLQ_QUANT_H
#define DLQ_QUANT_H

#include <math.h>
#include <stdint.h>

#include "core/err.h"

typedef struct dlq_qspec {
    int bits;    /* 2..8 */
    int group;   /* elements per group along the input dimension; 0 or >= cols = per-channel */
    int sym;     /* symmetric: b = 0 (s = absmax / qmax), b never trained */
    int int_zero;/* integer zero point: b/s is kept an integer (GPTQ / EfficientQAT form w = s*(u - z)) */
} dlq_qspec;

static inline int dlq_qmin(int bits) { return -(1 << (bits - 1)); }
static inline int dlq_qmax(int bits) { return (1 << (bits - 1)) - 1; }
static inline float dlq_qround(float x) { return rintf(x); }
static inline int64_t dlq_qgroups(int64_t cols, int group) {
    return group <= 0 || group >= cols ? 1 : (cols + group - 1) / group;
}
static inline int dlq_qgroup_size(int64_t cols, int group) { return group <= 0 || group >= cols ? (int)cols : group; }

int dlq_qspec_validate(const dlq_qspec *q, dlq_err *err);

/* RTN min-max initialisation: s = (max - min) / (2^n - 1), b = min - s*qmin,
 * m = 1; s is guarded against zero (constant groups). sym: s = absmax/qmax,
 * b = 0. int_zero: b is then rounded to a multiple of s (dlq_quant_snap_zero). With clip_search, the
 * range [min*r, max*r] is tried for r in 1.00, 0.95, ..., 0.50 and the r with
 * the least squared reconstruction error of the group is kept. */
void dlq_quant_init_rtn(const float *w, int64_t rows, int64_t cols, const dlq_qspec *q, int clip_search, float *s,
                        float *b, float *m);

/* int_zero: b <- s * round(b / s) for n groups. */
void dlq_quant_snap_zero(float *b, const float *s, int64_t n);

/* Wq = m*(s*clamp(round((wp-b)/s))+b); wq may alias wp. If qout is non-NULL
 * the integers q are stored there too (as int8, q in [qmin, qmax]). */
void dlq_fq_forward(float *wq, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s,
                    const float *b, const float *m, int8_t *qout);

/* STE backward given G = dL/dWq (SPEC §2), with Gq = m*G and the in-range
 * mask I: dwp = Gq*I (dwp may alias G; NULL to skip); gs += sum Gq*(q - I*x);
 * gb += sum Gq*(1 - I); gm += sum G*(s*q + b). Any of gs/gb/gm may be NULL.
 * lsq_scale: multiply gs by 1/sqrt(group_numel*qmax) (LSQ; 0 = off). */
void dlq_fq_backward(float *dwp, const float *G, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q,
                     const float *s, const float *b, const float *m, float *gs, float *gb, float *gm, int lsq_scale);

/* Oscillation dampening (Nagel et al. 2022, "Overcoming Oscillations in
 * Quantization-Aware Training"): R = sum over the matrix of (clip(x) - q)^2
 * with x = (wp - b)/s, clip to [qmin, qmax], q = clamp(round(x)) held fixed
 * (stop-gradient), so the latent weight is pulled toward the grid point it
 * rounds to and stops flipping between two. dlq_fq_dampen returns R;
 * dlq_fq_dampen_grad adds coef * dR/dwp = coef * 2 (clip(x) - q)/s (zero where
 * x is clipped) into dwp. */
double dlq_fq_dampen(const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s, const float *b);
void dlq_fq_dampen_grad(float *dwp, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q, const float *s,
                        const float *b, float coef);

/* Scalar, double-precision reference of the two above, for tests. */
void dlq_fq_backward_ref(double *dwp, const float *G, const float *wp, int64_t rows, int64_t cols, const dlq_qspec *q,
                         const float *s, const float *b, const float *m, double *gs, double *gb, double *gm);

#endif
