/*
 * A binary min-heap of deadlines, each with the id of what is due (a member
 * slot). Entries move as the heap changes; the owner learns every entry's
 * new position through a callback, so it can later update or remove an
 * entry in O(log n) instead of searching for it. The node keeps its
 * suspicions here: at 10,000 members, half of them suspect in a partition,
 * finding the next deadline is then O(1) and ending a suspicion O(log S),
 * where a scan of the list cost O(S) at every tick.
 */
#ifndef CM_THEAP_H
#define CM_THEAP_H

#include "cm_common.h"

typedef struct cm_theap_entry {
  cm_time_t key;
  uint32_t id;
} cm_theap_entry_t;

/* Entry id now sits at position pos. */
typedef void (*cm_theap_moved_fn)(void *ud, uint32_t id, uint32_t pos);

typedef struct cm_theap {
  cm_theap_entry_t *e;
  uint32_t len, cap;
  cm_theap_moved_fn moved;
  void *ud;
} cm_theap_t;

void cm_theap_init(cm_theap_t *h, cm_theap_moved_fn moved, void *ud);
void cm_theap_free(cm_theap_t *h);
/* Add an entry; its position is reported through the callback. Errors:
 * CM_ENOMEM (the heap is unchanged), CM_ELIMIT (2^31 entries). */
int cm_theap_push(cm_theap_t *h, cm_time_t key, uint32_t id);
/* Remove the entry at pos (< len). */
void cm_theap_remove(cm_theap_t *h, uint32_t pos);
/* Give the entry at pos (< len) a new key, earlier or later. */
void cm_theap_update(cm_theap_t *h, uint32_t pos, cm_time_t key);
/* Restore the heap after keys were changed in place through h->e. */
void cm_theap_heapify(cm_theap_t *h);

/* The earliest key, or CM_TIME_NEVER when empty. */
static inline cm_time_t cm_theap_min(const cm_theap_t *h) {
  return h->len > 0 ? h->e[0].key : CM_TIME_NEVER;
}

#endif
