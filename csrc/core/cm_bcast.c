#include "cm_bcast.h"

#include <stdlib.h>
#include <string.h>

/* Smallest encoded update (type, length, shortest leave); once less room
 * than this is left, no further item can fit and the scan stops. */
#define CM_BCAST_MIN_MSG 10

int cm_bcast_init(cm_bcast_t *q, uint32_t max_items) {
  int p, t;
  memset(q, 0, sizeof(*q));
  q->max = max_items;
  q->free_head = -1;
  for (p = 0; p < CM_PRIO_COUNT; p++)
    for (t = 0; t <= CM_BCAST_MAX_TX; t++)
      q->heads[p][t] = q->tails[p][t] = -1;
  return 0;
}

void cm_bcast_free(cm_bcast_t *q) {
  free(q->items);
  free(q->by_key);
  memset(q, 0, sizeof(*q));
}

static void bcast_unlink(cm_bcast_t *q, int32_t i) {
  cm_bcast_item_t *it = &q->items[i];
  if (it->prev >= 0)
    q->items[it->prev].next = it->next;
  else
    q->heads[it->prio][it->transmits] = it->next;
  if (it->next >= 0)
    q->items[it->next].prev = it->prev;
  else
    q->tails[it->prio][it->transmits] = it->prev;
  if (q->heads[it->prio][it->transmits] < 0)
    q->nonempty[it->prio][it->transmits / 64] &=
        ~(UINT64_C(1) << (it->transmits % 64));
  it->prev = it->next = -1;
}

/* Insert at the head of its bucket in O(1): a bucket is ordered by when its
 * items were queued or last sent, most recent first. */
static void bcast_link(cm_bcast_t *q, int32_t i) {
  cm_bcast_item_t *it = &q->items[i];
  int32_t *head = &q->heads[it->prio][it->transmits];
  it->prev = -1;
  it->next = *head;
  if (*head >= 0)
    q->items[*head].prev = i;
  else
    q->tails[it->prio][it->transmits] = i;
  *head = i;
  q->nonempty[it->prio][it->transmits / 64] |= UINT64_C(1)
                                               << (it->transmits % 64);
}

static void bcast_release(cm_bcast_t *q, int32_t i) {
  cm_bcast_item_t *it = &q->items[i];
  bcast_unlink(q, i);
  if (it->key < q->nkeys && q->by_key[it->key] == i)
    q->by_key[it->key] = -1;
  it->in_use = 0;
  it->next = q->free_head;
  q->free_head = i;
  q->used--;
}

static int bcast_reserve_key(cm_bcast_t *q, uint32_t key) {
  uint32_t n, i;
  int32_t *nk;
  if (key < q->nkeys)
    return 0;
  n = q->nkeys ? q->nkeys : 64;
  while (n <= key)
    n *= 2;
  nk = realloc(q->by_key, (size_t)n * sizeof(*nk));
  if (nk == NULL)
    return CM_ENOMEM;
  for (i = q->nkeys; i < n; i++)
    nk[i] = -1;
  q->by_key = nk;
  q->nkeys = n;
  return 0;
}

/* The least valuable item: lowest priority, most transmitted, oldest; a
 * vital one only if every item is vital (a refutation's relay, often sent a
 * few times already, would otherwise be the first to go when a flood of
 * news fills the queue). */
static int32_t bcast_victim(const cm_bcast_t *q) {
  int32_t first = -1, i;
  int p, w;
  for (p = 0; p < CM_PRIO_COUNT; p++)
    for (w = CM_BCAST_WORDS - 1; w >= 0; w--) {
      uint64_t bits = q->nonempty[p][w];
      while (bits != 0) {
        int b = 63 - __builtin_clzll(bits);
        bits &= ~(UINT64_C(1) << b);
        for (i = q->tails[p][w * 64 + b]; i >= 0; i = q->items[i].prev) {
          if (first < 0)
            first = i;
          if (!q->items[i].vital)
            return i;
        }
      }
    }
  return first;
}

static int32_t bcast_alloc(cm_bcast_t *q) {
  int32_t i;
  if (q->free_head >= 0) {
    i = q->free_head;
    q->free_head = q->items[i].next;
    return i;
  }
  if (q->cap == q->used) {
    uint32_t ncap = q->cap ? q->cap * 2 : 64;
    cm_bcast_item_t *ni;
    if (ncap > q->max)
      ncap = q->max;
    if (ncap <= q->cap)
      return -1;
    ni = realloc(q->items, (size_t)ncap * sizeof(*ni));
    if (ni == NULL)
      return -1;
    /* The new slots are free until allocated: cm_bcast_forget_aux looks at
     * every slot up to cap and must read them as not in use. */
    memset(ni + q->cap, 0, (size_t)(ncap - q->cap) * sizeof(*ni));
    q->items = ni;
    q->cap = ncap;
  }
  return (int32_t)q->used; /* items [0, used) are all in use here */
}

int cm_bcast_push(cm_bcast_t *q, uint32_t key, uint8_t kind, uint8_t prio,
                  uint32_t incarnation, uint32_t aux) {
  int32_t i;
  cm_bcast_item_t *it;
  if (prio >= CM_PRIO_COUNT)
    prio = CM_PRIO_CRITICAL;
  if (bcast_reserve_key(q, key) != 0)
    return CM_ENOMEM;
  if (q->by_key[key] >= 0)
    bcast_release(q, q->by_key[key]);
  if (q->used == q->max) {
    int32_t v = bcast_victim(q);
    if (v < 0)
      return CM_ENOMEM;
    bcast_release(q, v);
    q->dropped++;
  }
  i = bcast_alloc(q);
  if (i < 0)
    return CM_ENOMEM;
  it = &q->items[i];
  memset(it, 0, sizeof(*it));
  it->key = key;
  it->kind = kind;
  it->prio = prio;
  it->incarnation = incarnation;
  it->aux = aux;
  it->in_use = 1;
  it->seq = q->next_seq++;
  bcast_link(q, i);
  q->by_key[key] = i;
  q->used++;
  return 0;
}

void cm_bcast_mark_vital(cm_bcast_t *q, uint32_t key, uint8_t how) {
  if (key < q->nkeys && q->by_key[key] >= 0)
    q->items[q->by_key[key]].vital = how;
}

void cm_bcast_forget(cm_bcast_t *q, uint32_t key) {
  if (key < q->nkeys && q->by_key[key] >= 0)
    bcast_release(q, q->by_key[key]);
}

void cm_bcast_forget_aux(cm_bcast_t *q, uint32_t aux) {
  uint32_t i;
  for (i = 0; i < q->cap; i++)
    if (q->items[i].in_use && q->items[i].aux == aux)
      bcast_release(q, (int32_t)i);
}

uint32_t cm_bcast_len(const cm_bcast_t *q) { return q->used; }

const cm_bcast_item_t *cm_bcast_peek_key(const cm_bcast_t *q, uint32_t key) {
  if (key < q->nkeys && q->by_key[key] >= 0)
    return &q->items[q->by_key[key]];
  return NULL;
}

size_t cm_bcast_take(cm_bcast_t *q, size_t room, uint32_t limit,
                     cm_bcast_size_fn size_fn, void *ud, cm_bcast_item_t *out,
                     size_t max_out) {
  int32_t chosen[256];
  size_t n = 0, k;
  int p, w;
  if (limit > CM_BCAST_MAX_TX)
    limit = CM_BCAST_MAX_TX;
  if (limit == 0)
    limit = 1;
  if (max_out > sizeof(chosen) / sizeof(chosen[0]))
    max_out = sizeof(chosen) / sizeof(chosen[0]);
  for (p = CM_PRIO_COUNT - 1; p >= 0; p--) {
    for (w = 0; w < CM_BCAST_WORDS; w++) {
      /* Only bucket t changes while it is scanned (an item released);
       * chosen items move only after the scan. */
      uint64_t bits = q->nonempty[p][w];
      while (bits != 0) {
        int t = w * 64 + __builtin_ctzll(bits);
        int32_t i = q->heads[p][t];
        bits &= bits - 1;
        while (i >= 0 && n < max_out && room >= CM_BCAST_MIN_MSG) {
          int32_t next = q->items[i].next;
          size_t sz = size_fn(ud, &q->items[i]);
          if (sz == 0) {
            bcast_release(q, i);
          } else if (sz <= room) {
            chosen[n++] = i;
            room -= sz;
          }
          i = next;
        }
        if (n == max_out || room < CM_BCAST_MIN_MSG)
          goto done;
      }
    }
  }
done:
  /* Count the transmission only after choosing, so that moving an item to
   * the next bucket cannot make the scan above visit it twice. Relink in
   * reverse so the chosen keep their relative order at the new head. */
  for (k = 0; k < n; k++)
    out[k] = q->items[chosen[k]];
  while (n > 0 && k-- > 0) {
    int32_t i = chosen[k];
    cm_bcast_item_t *it = &q->items[i];
    bcast_unlink(q, i);
    it->transmits++;
    out[k].transmits = it->transmits;
    bcast_link(q, i);
    if (it->transmits >= (it->vital ? 2 * limit : limit) ||
        it->transmits >= CM_BCAST_MAX_TX)
      bcast_release(q, i);
  }
  return n;
}
