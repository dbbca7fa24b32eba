/* Seeded PRNG (xoshiro256**, seeded by splitmix64): reproducible across
 * platforms; lives in the caller's context, never global. */
#ifndef DLQ_CORE_RNG_H
#define DLQ_CORE_RNG_H

#include <stdint.h>

typedef struct dlq_rng { uint64_t s[4]; } dlq_rng;

static inline uint64_t dlq_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void dlq_rng_seed(dlq_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = dlq_splitmix64(&seed);
}

static inline uint64_t dlq_rng_u64(dlq_rng *r) {
    uint64_t *s = r->s, res = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return res;
}

/* uniform in [0, 1) with 24 random bits */
static inline float dlq_rng_f32(dlq_rng *r) { return (float)(dlq_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
/* uniform in [0, 1) with 53 random bits */
static inline double dlq_rng_f64(dlq_rng *r) { return (double)(dlq_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

/* standard normal (Box-Muller) */
double dlq_rng_normal(dlq_rng *r);

#endif
