/*
 * Rate limits of cm_net: the token bucket the endpoint-wide limits use, and
 * the per-source limit on new inbound connections (cm_net_int.h).
 */
#include <string.h>

#include "cm_net_int.h"

int cm_net__bucket_take(double *tokens, uint64_t *last, double rate,
                        uint64_t now) {
  double burst = rate;
  /* A reading earlier than the last refills nothing (unsigned, the
   * difference would be huge and refill the whole burst). */
  if (now > *last) {
    *tokens += (double)(now - *last) * rate / (double)NGTCP2_SECONDS;
    *last = now;
  }
  if (*tokens > burst)
    *tokens = burst;
  if (*tokens < 1.0)
    return 0;
  *tokens -= 1.0;
  return 1;
}

void cm_net__srclimit_init(cm_net_srclimit_t *l, uint64_t seed, uint32_t rate,
                           int per_address) {
  memset(l, 0, sizeof(*l));
  l->seed = seed;
  l->rate = (double)rate;
  l->per_address = per_address;
}

/* The bucket refilled to `now`, capped at the burst. */
static double src_tokens(const cm_net_srclimit_t *l, const cm_net_src_slot_t *s,
                         uint64_t now) {
  double t = s->tokens;
  if (now > s->ts)
    t += (double)(now - s->ts) * l->rate / (double)NGTCP2_SECONDS;
  return t > l->rate ? l->rate : t;
}

int cm_net__srclimit_take(cm_net_srclimit_t *l, const cm_addr_t *from,
                          uint64_t now) {
  /* Zero past the key's length, so one compare serves both kinds. */
  uint8_t key[CM_NET_ADDR_KEY_LEN] = {0};
  cm_net_src_slot_t *cand[2], *s = NULL;
  uint64_t h;
  int i;

  if (l->rate <= 0.0)
    return 1;
  if (l->per_address)
    cm_net__addr_key(from, key);
  else
    cm_net__ip_key(from, key);
  h = cm_net__hash(l->seed, key, sizeof(key));
  cand[0] = &l->slots[h % CM_NET_SRC_SLOTS];
  cand[1] = &l->slots[(h >> 32) % CM_NET_SRC_SLOTS];
  for (i = 0; i < 2 && s == NULL; i++)
    if (cand[i]->used && memcmp(cand[i]->key, key, sizeof(key)) == 0)
      s = cand[i];
  for (i = 0; i < 2 && s == NULL; i++)
    if (!cand[i]->used || src_tokens(l, cand[i], now) >= l->rate) {
      s = cand[i];
      memcpy(s->key, key, sizeof(key));
      s->used = 1;
      s->tokens = l->rate;
      s->ts = now;
    }
  if (s == NULL)
    s = cand[0];
  s->tokens = src_tokens(l, s, now);
  if (now > s->ts)
    s->ts = now;
  if (s->tokens < 1.0)
    return 0;
  s->tokens -= 1.0;
  return 1;
}

/* ---- sources admitted lately -------------------------------------------- */

void cm_net__recent_init(cm_net_recent_t *r, uint64_t seed, uint64_t window,
                         uint64_t now) {
  memset(r, 0, sizeof(*r));
  r->seed = seed;
  r->window = window > 0 ? window : 1;
  r->epoch = now;
}

/* Begin the generations `now` falls in: marks older than two windows are
 * gone, those of the last window kept. */
static void recent_advance(cm_net_recent_t *r, uint64_t now) {
  if (now < r->epoch + r->window)
    return;
  if (now >= r->epoch + 2 * r->window) {
    memset(r->bits, 0, sizeof(r->bits));
    r->epoch = now;
    return;
  }
  r->cur ^= 1;
  memset(r->bits[r->cur], 0, sizeof(r->bits[r->cur]));
  r->epoch += r->window;
}

static void recent_bits(const cm_net_recent_t *r, const cm_addr_t *from,
                        uint32_t bit[2]) {
  uint8_t key[CM_NET_IP_KEY_LEN];
  uint64_t h;
  cm_net__ip_key(from, key);
  h = cm_net__hash(r->seed, key, sizeof(key));
  bit[0] = (uint32_t)(h % CM_NET_RECENT_BITS);
  bit[1] = (uint32_t)((h >> 32) % CM_NET_RECENT_BITS);
}

static int recent_has(const uint64_t *set, uint32_t bit) {
  return (set[bit / 64] >> (bit % 64)) & 1u;
}

void cm_net__recent_mark(cm_net_recent_t *r, const cm_addr_t *from,
                         uint64_t now) {
  uint32_t bit[2];
  int i;
  recent_advance(r, now);
  recent_bits(r, from, bit);
  for (i = 0; i < 2; i++)
    r->bits[r->cur][bit[i] / 64] |= (uint64_t)1 << (bit[i] % 64);
}

int cm_net__recent_seen(cm_net_recent_t *r, const cm_addr_t *from,
                        uint64_t now) {
  uint32_t bit[2];
  int g;
  recent_advance(r, now);
  recent_bits(r, from, bit);
  for (g = 0; g < 2; g++)
    if (recent_has(r->bits[g], bit[0]) && recent_has(r->bits[g], bit[1]))
      return 1;
  return 0;
}
