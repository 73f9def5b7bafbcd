/*
 * Lifeguard's dynamic suspicion timeout. A suspicion starts at max and, as
 * independent confirmations c arrive (k expected), falls to
 *   max - (log(c+1) / log(k+1)) * (max - min), never below min.
 * It is never due before its last confirmation arrived: one that comes after
 * the shortened timeout has run out makes it due then, not at a time already
 * past, which the node's tick would take for a stall of its own.
 */
#ifndef CM_SUSPICION_H
#define CM_SUSPICION_H

#include "cm_common.h"

/* Room for confirmer identities; k never exceeds this. */
#define CM_SUSPICION_MAX_K 16

typedef struct cm_suspicion {
  cm_time_t start;
  cm_time_t confirmed; /* when the last confirmation arrived */
  cm_time_t min, max;
  uint32_t k;      /* confirmations expected */
  uint32_t n;      /* confirmations seen */
  uint32_t nfrom;  /* accusers seen: the first and the confirmers */
  uint8_t unnamed; /* no first accuser named yet (learnt from a table) */
  /* Started by a conviction this node did not see coming (cm_node__accuse):
   * later ones are confirmations too. */
  uint8_t from_verdict;
  uint64_t from[]; /* their hashes: room for k + 1 */
} cm_suspicion_t;

/* A suspicion accused by *from_hash at now, or with no accuser named if
 * from_hash is NULL (learnt from a push-pull table, which says what its
 * sender holds, not who accused), sized for its k (clamped to MAX_K): 64
 * bytes for the default k of 2, where room for MAX_K took 184; a node holds
 * one per suspect, and a simulated partition of 10,000 nodes 5 * 10^7. Free
 * it with free(). NULL when out of memory. */
cm_suspicion_t *cm_suspicion_new(cm_time_t now, uint32_t k, cm_time_t min,
                                 cm_time_t max, const uint64_t *from_hash);

enum {
  CM_SUSPICION_COUNTED = 1, /* a new, independent confirmation */
  CM_SUSPICION_ORIGIN = 2,  /* the first accuser of an unnamed suspicion */
};
/* Record an accusation received at now; `independent` if it cannot be the
 * one a table passed on (this node's own probe). Returns
 * CM_SUSPICION_COUNTED if it was a new, independent confirmation (which
 * shortens the timeout); CM_SUSPICION_ORIGIN if the suspicion had no accuser
 * named and this one, not independent, becomes its first (no shorter
 * timeout: that accuser is likely the very one whose suspicion the table
 * passed on); 0 if the accuser was already counted or enough confirmations
 * are in. */
int cm_suspicion_confirm(cm_suspicion_t *s, uint64_t from_hash, cm_time_t now,
                         int independent);
/* The timeout for c confirmations, as a duration from start. */
cm_time_t cm_suspicion_timeout(cm_time_t min, cm_time_t max, uint32_t k,
                               uint32_t c);
/* start + the timeout for the confirmations seen, or the last confirmation's
 * time if that is later. */
cm_time_t cm_suspicion_deadline(const cm_suspicion_t *s);

#endif
