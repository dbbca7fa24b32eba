/* Rotation of a full-precision model before quantization (QuaRot, Ashkboos
 * et al. 2024; SpinQuant's R1/R2 with fixed random rotations): the function
 * of the model is unchanged, but every projection's weights are expressed in
 * a rotated basis where they spread evenly over the input channels, so a
 * uniform grid fits them better.
 *
 *   residual stream x -> T x    (T orthogonal on dim)
 *     every RMSNorm weight is first folded into the matrices that read the
 *     norm's output (q/k/v, gate/up, the head) and set to 1, since
 *     RMSNorm(T x) = T RMSNorm(x) only for an all-ones weight;
 *     embedding rows e -> T e; q/k/v/gate/up/head rows w -> T w;
 *     o/down columns c -> T c.
 *   per attention head, v -> U v (U orthogonal on head_dim): v rows of each
 *     KV head (and the v bias) -> U, o's columns of each head -> U.
 *
 * T = (Q_m (x) H_p) D: D random signs, H_p the normalized Walsh-Hadamard
 * transform of the largest power-of-two block p dividing n, Q_m a random
 * orthogonal m x m matrix (m = n / p; identity when n is a power of two)
 * mixing the m blocks. U is built the same way from its own seed stream.
 * The result is the same LLaMA architecture (norm weights all one, head
 * untied), so every export and kernel serves it unchanged. */
#ifndef DLQ_MODEL_ROTATE_H
#define DLQ_MODEL_ROTATE_H

#include <stdint.h>

#include "model/model.h"

/* An orthogonal transform of size n (the T above). */
typedef struct dlq_rot {
    int n, p, m;     /* n = m * p, p a power of two */
    float *sign;     /* [n] +-1 */
    float *qm;       /* [m][m] row-major orthogonal, NULL when m == 1 */
    float *tmp;      /* [n] scratch */
} dlq_rot;

int dlq_rot_init(dlq_rot *r, int n, uint64_t seed, dlq_err *err);
void dlq_rot_free(dlq_rot *r);
/* x <- T x (length n) */
void dlq_rot_apply(const dlq_rot *r, float *x);
/* Scalar reference: the dense matrix of T ([n][n] row-major), built by
 * applying T to each unit vector; for tests. */
void dlq_rot_dense(const dlq_rot *r, float *out);

/* Gram-Schmidt orthonormalization of the rows of r [d][d] (twice per row, in
 * double precision). Returns DLQ_ENOMEM (r untouched) if its scratch cannot
 * be allocated. */
int dlq_orthonormalize(float *r, int d);

/* Rotates m in place: the residual stream by T (seed) and each head's v/o by
 * U (seed + 1). The weights it changes become owned fp32 copies; cfg.tied
 * becomes 0. Refuses a quantized model. On an error other than a refusal the
 * model is left half-rotated: destroy it. */
int dlq_model_rotate(dlq_model *m, uint64_t seed, dlq_err *err);

#endif
