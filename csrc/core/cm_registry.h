/*
 * The member table: stable slots (indices survive other members' removal,
 * so queues can refer to them), a hash index by node id, and one by
 * address, built on the first look-up by address.
 */
#ifndef CM_REGISTRY_H
#define CM_REGISTRY_H

#include "cm_common.h"
#include "cm_coord.h"
#include "cm_phi.h"
#include "cm_suspicion.h"

/* Ids shorter than this are stored in the member itself; longer ones on the
 * heap. Most ids are host names or short labels, and a 10,000-node
 * simulation holds 10^8 member records, so every byte here counts. */
#define CM_MEMBER_ID_INLINE 24

/* What a node holds of a member's network coordinate. */
typedef struct cm_coord_cache {
  cm_coord_t c;
  cm_time_t at;          /* when it arrived */
  uint8_t first_hand;    /* from the member itself, not relayed */
  cm_coord_filter_t rtt; /* our last RTT samples to it */
} cm_coord_cache_t;

/* The round trips of our last direct probes of a member answered, in
 * microseconds; the last is ring[(pos + 15) % 16]. */
typedef struct cm_rtt_ring {
  uint32_t ring[16];
  uint8_t n, pos;
} cm_rtt_ring_t;

/* State only some members need: suspects, and peers heard from directly. */
typedef struct cm_member_ext {
  cm_suspicion_t *susp;    /* while suspect */
  cm_coord_cache_t *coord; /* once its coordinate or an RTT is known */
  struct cm_hist *hist;    /* once it had trouble, with history on (one
                              allocation: free() frees it) */
  struct cm_rtt_ring *rtt; /* once a direct probe of it was answered */
  /* The confirmations of the suspicion that ended at susp_ended, for the
   * history entry of what ended it (cm_node_hist.c). */
  uint32_t susp_last_n;
  cm_time_t susp_ended;
  /* When this node last took it back from failed (0: never): a conviction
   * it sends soon after is from across a cut (cm_node__accuse). */
  cm_time_t recovered;
  cm_phi_t *phi;     /* once something has arrived from it */
  uint32_t susp_pos; /* while suspect: its place in the node's deadline heap */
  /* Once it has sent user events or queries: its budget of new ones of
   * each (cm_node_user.c), as of the time beside it. */
  double uev_tokens, qry_tokens;
  cm_time_t uev_ts, qry_ts;
} cm_member_ext_t;

typedef struct cm_member {
  union {
    char inl[CM_MEMBER_ID_INLINE];
    char *heap;
  } idu; /* NUL-terminated; use cm_member_id() */
  uint64_t id_hash;
  cm_addr_t addr;
  uint8_t id_len;
  uint8_t in_use;
  uint8_t state; /* enum cm_state */
  uint8_t conflict_reported;
  uint16_t tags_len;
  /* Protocol versions the member speaks, as advertised; 0: never heard
   * (it speaks version 1 only). Fill the padding before incarnation. */
  uint8_t vmin, vmax;
  uint32_t incarnation;
  uint8_t *tags; /* canonical blob, owned */
  cm_time_t state_change;
  cm_member_ext_t *ext;
} cm_member_t;

static inline const char *cm_member_id(const cm_member_t *m) {
  return m->id_len < CM_MEMBER_ID_INLINE ? m->idu.inl : m->idu.heap;
}

/* The member's extension, allocated on first use; NULL on no memory. */
cm_member_ext_t *cm_member_ext(cm_member_t *m);

/* An open-addressing table of slots, at most half full counting deleted
 * marks: the registry's indexes. */
typedef struct cm_slot_table {
  int32_t *t;    /* slot, or -1 (empty) / -2 (deleted); NULL: not built */
  uint32_t cap;  /* a power of two */
  uint32_t live; /* slots indexed */
  uint32_t used; /* live + deleted entries */
} cm_slot_table_t;

typedef struct cm_registry {
  cm_member_t *m;
  uint32_t cap;   /* slots allocated */
  uint32_t high;  /* slots ever used: [0, high) */
  uint32_t count; /* slots in use */
  uint32_t *free_slots;
  uint32_t nfree;
  cm_slot_table_t ids;
  /* Members with an address, by address. Built by cm_registry_index_addrs
   * and exact from then on; a simulation, which never looks members up by
   * address, saves its memory. */
  cm_slot_table_t addrs;
} cm_registry_t;

uint64_t cm_id_hash(const char *id, size_t len);

int cm_registry_init(cm_registry_t *r);
void cm_registry_free(cm_registry_t *r);
/* Slot of id, or -1. */
int32_t cm_registry_find(const cm_registry_t *r, const char *id, size_t len);
/* Add a member (id must not be present). Returns slot >= 0 or CM_ENOMEM. */
int32_t cm_registry_add(cm_registry_t *r, const char *id, size_t len);
/* Remove a slot, freeing what it owns. */
void cm_registry_remove(cm_registry_t *r, uint32_t slot);
/* Set a member's address; the only way to change it once the address
 * index is built, which it keeps exact. */
void cm_registry_set_addr(cm_registry_t *r, uint32_t slot,
                          const cm_addr_t *addr);
/* Build the address index unless built: 0 or CM_ENOMEM. */
int cm_registry_index_addrs(cm_registry_t *r);
/* The members at addr, one per call: start with *cursor 0 and call again
 * while it returns a slot (>= 0); -1 when there are no more, or when the
 * index is not built. Each call costs O(1) expected (a probe of a table
 * at most half full); a scan costs that per member found at addr. */
int32_t cm_registry_find_addr(const cm_registry_t *r, const cm_addr_t *addr,
                              uint32_t *cursor);
/* Replace a member's tags with a copy. Returns 0 or CM_ENOMEM. */
int cm_member_set_tags(cm_member_t *m, const uint8_t *tags, size_t len);

#endif
