#include "cm_theap.h"

#include <stdlib.h>

void cm_theap_init(cm_theap_t *h, cm_theap_moved_fn moved, void *ud) {
  h->e = NULL;
  h->len = h->cap = 0;
  h->moved = moved;
  h->ud = ud;
}

void cm_theap_free(cm_theap_t *h) {
  free(h->e);
  h->e = NULL;
  h->len = h->cap = 0;
}

static void theap_put(cm_theap_t *h, uint32_t pos, cm_theap_entry_t x) {
  h->e[pos] = x;
  if (h->moved != NULL)
    h->moved(h->ud, x.id, pos);
}

/* Move the entry at pos up until its parent is not later; returns where it
 * stopped. */
static uint32_t theap_up(cm_theap_t *h, uint32_t pos) {
  cm_theap_entry_t x = h->e[pos];
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    if (h->e[parent].key <= x.key)
      break;
    theap_put(h, pos, h->e[parent]);
    pos = parent;
  }
  theap_put(h, pos, x);
  return pos;
}

static void theap_down(cm_theap_t *h, uint32_t pos) {
  cm_theap_entry_t x = h->e[pos];
  for (;;) {
    uint32_t c = 2 * pos + 1;
    if (c >= h->len)
      break;
    if (c + 1 < h->len && h->e[c + 1].key < h->e[c].key)
      c++;
    if (x.key <= h->e[c].key)
      break;
    theap_put(h, pos, h->e[c]);
    pos = c;
  }
  theap_put(h, pos, x);
}

int cm_theap_push(cm_theap_t *h, cm_time_t key, uint32_t id) {
  if (h->len == h->cap) {
    uint32_t ncap;
    cm_theap_entry_t *ne;
    if (h->cap >= (UINT32_C(1) << 30))
      return CM_ELIMIT;
    ncap = h->cap ? h->cap * 2 : 16;
    ne = realloc(h->e, (size_t)ncap * sizeof(*ne));
    if (ne == NULL)
      return CM_ENOMEM;
    h->e = ne;
    h->cap = ncap;
  }
  h->e[h->len].key = key;
  h->e[h->len].id = id;
  theap_up(h, h->len++);
  return 0;
}

void cm_theap_update(cm_theap_t *h, uint32_t pos, cm_time_t key) {
  h->e[pos].key = key;
  if (theap_up(h, pos) == pos)
    theap_down(h, pos);
}

void cm_theap_remove(cm_theap_t *h, uint32_t pos) {
  cm_theap_entry_t last = h->e[--h->len];
  if (pos == h->len)
    return;
  h->e[pos] = last;
  if (theap_up(h, pos) == pos)
    theap_down(h, pos);
}

void cm_theap_heapify(cm_theap_t *h) {
  uint32_t i;
  for (i = h->len / 2; i-- > 0;)
    theap_down(h, i);
  /* Entries theap_down never touched (leaves that stayed) keep their
   * positions; report them too, so every position is current. */
  if (h->moved != NULL)
    for (i = 0; i < h->len; i++)
      h->moved(h->ud, h->e[i].id, i);
}
