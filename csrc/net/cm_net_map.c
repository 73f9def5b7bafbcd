/*
 * Chained hash map from short byte strings to pointers. Keys partly come from
 * the network (a client's first DCID), so the hash is seeded per endpoint to
 * keep an outsider from choosing colliding keys.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_net_int.h"

#define MAP_MIN_BUCKETS 64

uint64_t cm_net__hash(uint64_t seed, const void *key, size_t len) {
  const uint8_t *k = key;
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= k[i];
    h *= 0x100000001b3ULL;
  }
  /* splitmix64 finaliser: FNV alone mixes the high bits poorly. */
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

static uint64_t map_hash(const cm_net_map_t *m, const uint8_t *key,
                         size_t len) {
  return cm_net__hash(m->seed, key, len);
}

int cm_net_map_init(cm_net_map_t *m, uint64_t seed) {
  m->buckets = calloc(MAP_MIN_BUCKETS, sizeof(*m->buckets));
  if (m->buckets == NULL)
    return CM_ENOMEM;
  m->nbuckets = MAP_MIN_BUCKETS;
  m->count = 0;
  m->seed = seed;
  return 0;
}

void cm_net_map_free(cm_net_map_t *m) {
  size_t i;
  if (m->buckets == NULL)
    return;
  for (i = 0; i < m->nbuckets; i++) {
    cm_net_map_entry_t *e = m->buckets[i], *next;
    for (; e != NULL; e = next) {
      next = e->next;
      free(e);
    }
  }
  free(m->buckets);
  m->buckets = NULL;
  m->nbuckets = m->count = 0;
}

static void map_grow(cm_net_map_t *m) {
  size_t n = m->nbuckets * 2, i;
  cm_net_map_entry_t **nb = calloc(n, sizeof(*nb));
  /* Growing is an optimisation: without memory, keep the longer chains. */
  if (nb == NULL)
    return;
  for (i = 0; i < m->nbuckets; i++) {
    cm_net_map_entry_t *e = m->buckets[i], *next;
    for (; e != NULL; e = next) {
      next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
    }
  }
  free(m->buckets);
  m->buckets = nb;
  m->nbuckets = n;
}

static cm_net_map_entry_t **map_find(const cm_net_map_t *m, const void *key,
                                     size_t len, uint64_t h) {
  cm_net_map_entry_t **p = &m->buckets[h & (m->nbuckets - 1)];
  for (; *p != NULL; p = &(*p)->next)
    if ((*p)->hash == h && (*p)->keylen == len &&
        memcmp((*p)->key, key, len) == 0)
      return p;
  return p;
}

int cm_net_map_put(cm_net_map_t *m, const void *key, size_t len, void *val) {
  uint64_t h;
  cm_net_map_entry_t **p, *e;
  if (len > CM_NET_MAP_KEY_MAX)
    return CM_EINVAL;
  h = map_hash(m, key, len);
  p = map_find(m, key, len, h);
  if (*p != NULL) {
    (*p)->val = val;
    return 0;
  }
  e = calloc(1, sizeof(*e));
  if (e == NULL)
    return CM_ENOMEM;
  e->hash = h;
  e->keylen = (uint8_t)len;
  memcpy(e->key, key, len);
  e->val = val;
  *p = e;
  m->count++;
  if (m->count > m->nbuckets)
    map_grow(m);
  return 0;
}

void *cm_net_map_get(const cm_net_map_t *m, const void *key, size_t len) {
  cm_net_map_entry_t **p;
  if (len > CM_NET_MAP_KEY_MAX)
    return NULL;
  p = map_find(m, key, len, map_hash(m, key, len));
  return *p != NULL ? (*p)->val : NULL;
}

void cm_net_map_del(cm_net_map_t *m, const void *key, size_t len,
                    const void *val) {
  cm_net_map_entry_t **p, *e;
  if (len > CM_NET_MAP_KEY_MAX)
    return;
  p = map_find(m, key, len, map_hash(m, key, len));
  e = *p;
  if (e == NULL || (val != NULL && e->val != val))
    return;
  *p = e->next;
  free(e);
  m->count--;
}
