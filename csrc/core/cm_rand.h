/* Seeded pseudo-random source (xoshiro256**): the core's only randomness,
 * injected so that a seed reproduces a run. Not for cryptographic use. */
#ifndef CM_RAND_H
#define CM_RAND_H

#include <stdint.h>

typedef struct cm_rand {
  uint64_t s[4];
} cm_rand_t;

void cm_rand_seed(cm_rand_t *r, uint64_t seed);
uint64_t cm_rand_next(cm_rand_t *r);
/* Uniform in [0, bound); bound 0 returns 0. */
uint32_t cm_rand_below(cm_rand_t *r, uint32_t bound);
/* Uniform in [0, 1). */
double cm_rand_unit(cm_rand_t *r);

#endif
