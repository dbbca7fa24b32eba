#include "core/rng.h"

#include <math.h>

double dlq_rng_normal(dlq_rng *r) {
    double u1 = dlq_rng_f64(r), u2 = dlq_rng_f64(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
