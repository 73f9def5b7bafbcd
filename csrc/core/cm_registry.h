/*
 * The member table: stable slots (indices survive other members' removal,
 * so queues can refer to them) and a hash index by node id.
 */
#ifndef CM_REGISTRY_H
#define CM_REGISTRY_H

#include "cm_common.h"
#include "cm_phi.h"
#include "cm_suspicion.h"

typedef struct cm_member {
  char id[CM_ID_MAX + 1];
  uint8_t id_len;
  uint8_t in_use;
  uint8_t state; /* enum cm_state */
  uint8_t conflict_reported;
  uint32_t incarnation;
  uint64_t id_hash;
  cm_addr_t addr;
  uint8_t *tags; /* canonical blob, owned */
  uint16_t tags_len;
  cm_time_t state_change;
  cm_time_t last_probed;
  cm_suspicion_t *susp; /* while suspect */
  cm_phi_t *phi;        /* once something has arrived from it */
  uint8_t phi_watched;
} cm_member_t;

typedef struct cm_registry {
  cm_member_t *m;
  uint32_t cap;   /* slots allocated */
  uint32_t high;  /* slots ever used: [0, high) */
  uint32_t count; /* slots in use */
  uint32_t *free_slots;
  uint32_t nfree;
  int32_t *index; /* open addressing: slot or -1 (empty) / -2 (deleted) */
  uint32_t index_cap;
  uint32_t index_used; /* live + deleted entries */
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
/* Replace a member's tags with a copy. Returns 0 or CM_ENOMEM. */
int cm_member_set_tags(cm_member_t *m, const uint8_t *tags, size_t len);

#endif
