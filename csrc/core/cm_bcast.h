/*
 * The broadcast queue: updates waiting to be piggybacked on outgoing packets.
 * - one pending update per key (a member); a newer one supersedes the older;
 * - higher priority first, then fewest transmissions, then the most
 *   recently queued or sent (so fresh news goes first);
 * - each update is sent up to a retransmit limit, then dropped; one marked
 *   vital (cm_bcast_mark_vital) up to twice that limit;
 * - bounded: when full, the least valuable update (lowest priority, most
 *   transmitted, oldest; a vital one only if all are) makes room.
 * Items are small references; the owner encodes them when they are sent.
 */
#ifndef CM_BCAST_H
#define CM_BCAST_H

#include "cm_common.h"

enum cm_prio { CM_PRIO_NORMAL = 0, CM_PRIO_HIGH = 1, CM_PRIO_CRITICAL = 2 };
#define CM_PRIO_COUNT 3
/* Transmission counts are tracked up to this; limits above it are clamped. */
#define CM_BCAST_MAX_TX 255
#define CM_BCAST_WORDS ((CM_BCAST_MAX_TX + 64) / 64)

typedef struct cm_bcast_item {
  uint32_t key;         /* member slot the update is about */
  uint32_t aux;         /* owner's data (e.g. the accuser's slot) */
  uint32_t incarnation; /* owner's data */
  uint8_t kind;         /* owner's data (message type) */
  uint8_t prio;
  uint8_t transmits;
  uint8_t in_use;
  uint8_t vital; /* sent up to twice the limit: CM_BCAST_VITAL_* or 0 */
  uint64_t seq;  /* insertion order: larger is newer */
  int32_t prev, next;
} cm_bcast_item_t;

typedef struct cm_bcast {
  cm_bcast_item_t *items;
  uint32_t cap, used, max;
  int32_t free_head;
  int32_t *by_key; /* key -> item index or -1 */
  uint32_t nkeys;
  int32_t heads[CM_PRIO_COUNT][CM_BCAST_MAX_TX + 1];
  int32_t tails[CM_PRIO_COUNT][CM_BCAST_MAX_TX + 1];
  /* Bit t of nonempty[p] is set while bucket (p, t) holds an item: a packet
   * visits the buckets that hold something, not all 768 of them. */
  uint64_t nonempty[CM_PRIO_COUNT][CM_BCAST_WORDS];
  uint64_t next_seq;
  uint64_t dropped; /* evicted because the queue was full */
} cm_bcast_t;

/* Encoded size of an item's message, or 0 if it can no longer be sent (the
 * owner then drops it). */
typedef size_t (*cm_bcast_size_fn)(void *ud, const cm_bcast_item_t *it);

int cm_bcast_init(cm_bcast_t *q, uint32_t max_items);
void cm_bcast_free(cm_bcast_t *q);
/* Queue an update about key, superseding any pending one for that key.
 * Returns 0 or CM_ENOMEM. */
int cm_bcast_push(cm_bcast_t *q, uint32_t key, uint8_t kind, uint8_t prio,
                  uint32_t incarnation, uint32_t aux);
/* How an update came to be vital: of its own (a refutation), or inherited
 * from the vital update it superseded, which passes on no further. */
enum { CM_BCAST_VITAL_OWN = 1, CM_BCAST_VITAL_INHERITED = 2 };
/* Send the pending update about key, if any, up to twice the limit: an
 * update whose miss costs more than a delay. `how` is a CM_BCAST_VITAL_*.
 * A later push about the key supersedes it unmarked. */
void cm_bcast_mark_vital(cm_bcast_t *q, uint32_t key, uint8_t how);
/* Drop the pending update about key, if any. */
void cm_bcast_forget(cm_bcast_t *q, uint32_t key);
/* Drop every pending update whose aux equals aux (a reaped accuser). */
void cm_bcast_forget_aux(cm_bcast_t *q, uint32_t aux);
uint32_t cm_bcast_len(const cm_bcast_t *q);
const cm_bcast_item_t *cm_bcast_peek_key(const cm_bcast_t *q, uint32_t key);

/* Choose updates for one packet with room bytes free, in queue order,
 * skipping those that do not fit. Chosen items are copied to out[0..ret) and
 * their transmission counted; those that reached limit (twice limit if
 * vital, at most CM_BCAST_MAX_TX) are removed. */
size_t cm_bcast_take(cm_bcast_t *q, size_t room, uint32_t limit,
                     cm_bcast_size_fn size_fn, void *ud, cm_bcast_item_t *out,
                     size_t max_out);

#endif
