#include "cm_rand.h"

static uint64_t rand_splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rand_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void cm_rand_seed(cm_rand_t *r, uint64_t seed) {
  int i;
  for (i = 0; i < 4; i++)
    r->s[i] = rand_splitmix(&seed);
}

uint64_t cm_rand_next(cm_rand_t *r) {
  uint64_t *s = r->s;
  uint64_t result = rand_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rand_rotl(s[3], 45);
  return result;
}

/* Lemire's multiply-shift with rejection: unbiased without division. */
uint32_t cm_rand_below(cm_rand_t *r, uint32_t bound) {
  uint64_t m;
  uint32_t l;
  if (bound == 0)
    return 0;
  m = (uint64_t)(uint32_t)(cm_rand_next(r) >> 32) * bound;
  l = (uint32_t)m;
  if (l < bound) {
    uint32_t t = (uint32_t)(-bound) % bound;
    while (l < t) {
      m = (uint64_t)(uint32_t)(cm_rand_next(r) >> 32) * bound;
      l = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

double cm_rand_unit(cm_rand_t *r) {
  return (double)(cm_rand_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
