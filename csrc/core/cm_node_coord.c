/*
 * Network coordinates at the node: this node's own, learnt from the probes
 * it sends anyway (the RTT of a direct probe and the coordinate the target
 * sends with its ACK), and members' as last heard, first-hand from an ACK
 * or a member's own push-pull entry, or relayed in others' push-pull.
 * docs/protocol.md, "Network coordinates".
 */
#include <stdlib.h>
#include <string.h>

#include "cm_node_int.h"

static cm_coord_cache_t *node_coord_cache(cm_node_t *n, uint32_t slot) {
  cm_member_ext_t *x = cm_member_ext(cm_node__m(n, slot));
  if (x == NULL)
    return NULL;
  if (x->coord == NULL)
    x->coord = calloc(1, sizeof(*x->coord));
  return x->coord;
}

/* A direct probe of slot was acked rtt after it was sent: the COORD that
 * follows the ACK in the same packet is the target's. */
void cm_node__coord_acked(cm_node_t *n, uint32_t slot, cm_time_t rtt) {
  if (!n->cfg.coordinates)
    return;
  n->coord_rtt_slot = slot;
  n->coord_rtt = rtt;
}

/* The sender's coordinate. Used only right after the ACK of our probe of
 * it, from its address: then it comes with an RTT we measured. */
void cm_node__on_coord(cm_node_t *n, const cm_addr_t *from,
                       const cm_msg_coord_t *msg, cm_time_t now) {
  uint32_t slot = n->coord_rtt_slot;
  cm_coord_cache_t *cc;
  cm_coord_t remote;
  n->coord_rtt_slot = CM_NO_SLOT;
  if (!n->cfg.coordinates || slot == CM_NO_SLOT || slot >= n->reg.high ||
      !n->reg.m[slot].in_use || !cm_addr_eq(from, &n->reg.m[slot].addr)) {
    n->st.coord_ignored++;
    return;
  }
  cm_coord_from_wire(msg->b, &remote);
  if (!cm_coord_valid(&remote)) {
    n->coord.rejected++;
    return;
  }
  if ((cc = node_coord_cache(n, slot)) == NULL)
    return;
  cm_coord_update(&n->coord, &remote,
                  cm_coord_filter_add(&cc->rtt, (double)n->coord_rtt / 1e6),
                  n->reg.m[slot].id_hash);
  cc->c = remote;
  cc->at = now == 0 ? 1 : now;
  cc->first_hand = 1;
  n->st.coord_heard++;
}

/* An ACK of our probe came without a COORD: the RTT still counts, against
 * the target's coordinate as it last sent it (with an earlier ACK, or in its
 * own push-pull entry). A coordinate moves little between a member's
 * rounds. */
void cm_node__coord_unpaired(cm_node_t *n) {
  uint32_t slot = n->coord_rtt_slot;
  cm_coord_cache_t *cc;
  double rtt;
  n->coord_rtt_slot = CM_NO_SLOT;
  if (slot >= n->reg.high || !n->reg.m[slot].in_use ||
      n->reg.m[slot].ext == NULL || (cc = n->reg.m[slot].ext->coord) == NULL)
    return;
  rtt = cm_coord_filter_add(&cc->rtt, (double)n->coord_rtt / 1e6);
  /* Only what the member itself said: a relayed copy moves no one. */
  if (cc->at != 0 && cc->first_hand)
    cm_coord_update(&n->coord, &cc->c, rtt, n->reg.m[slot].id_hash);
}

/* The COORD to send with an ACK to the member at slot (-1: unknown): only
 * to a member that speaks version 2, which reads it. While our coordinate
 * is still settling (error above CM_COORD_SETTLED), with every ACK; then
 * with one in CM_COORD_ACK_EVERY: the prober uses the copy it holds in
 * between, and a settled coordinate moves little in a few rounds. */
int cm_node__coord_msg(cm_node_t *n, int32_t slot, cm_msg_t *msg) {
  if (!n->cfg.coordinates || slot < 0 || n->reg.m[(uint32_t)slot].vmax < 2)
    return 0;
  if (n->coord.c.error <= CM_COORD_SETTLED &&
      n->coord_acks++ % CM_COORD_ACK_EVERY != 0)
    return 0;
  memset(msg, 0, sizeof(*msg));
  msg->type = CM_MSG_COORD;
  cm_coord_to_wire(&n->coord.c, msg->u.coord.b);
  return 1;
}

/* The coordinate a push-pull entry about the member at slot carries in
 * its later bytes (after the sender's clocks in entry 0): this node's own,
 * or the member's as held. 1 if there is one. */
int cm_node__coord_wire(const cm_node_t *n, uint32_t slot,
                        uint8_t out[CM_COORD_WIRE_LEN]) {
  cm_coord_t c;
  if (!cm_node__coord_of(n, slot, &c) ||
      (slot != n->self && n->reg.m[slot].vmin == 0))
    return 0;
  cm_coord_to_wire(&c, out);
  return 1;
}

/* All ones: "no coordinate here", for a writer that must fill the field
 * (a later version appending past it). Not a refusal. */
static int node_coord_absent(const uint8_t *b) {
  size_t i;
  for (i = 0; i < CM_COORD_WIRE_LEN; i++)
    if (b[i] != 0xff)
      return 0;
  return 1;
}

/* A push-pull entry's coordinate for the member at slot, from the entry's
 * later bytes (after the clocks in the sender's entry, entry 0; the caller
 * has decided the exchange may give it). First-hand when the entry is the
 * peer's own, from the stream's address: it replaces anything held. A
 * relayed one (the answer to our join) fills in only what we hold nothing
 * of, or hold relayed. */
void cm_node__coord_from_pp(cm_node_t *n, uint32_t slot, const cm_wire_ext_t *x,
                            int entry0, int first_hand, cm_time_t now) {
  size_t at = entry0 ? CM_PP_CLOCKS_LEN : 0;
  cm_coord_cache_t *cc;
  cm_coord_t c;
  if (!n->cfg.coordinates || slot == n->self ||
      x->rest_len < at + CM_COORD_WIRE_LEN || node_coord_absent(x->rest + at))
    return;
  cm_coord_from_wire(x->rest + at, &c);
  if (!cm_coord_valid(&c)) {
    n->coord.rejected++;
    return;
  }
  if ((cc = node_coord_cache(n, slot)) == NULL)
    return;
  if (!first_hand && cc->at != 0 && cc->first_hand)
    return;
  cc->c = c;
  cc->at = now == 0 ? 1 : now;
  cc->first_hand = (uint8_t)first_hand;
  n->st.coord_heard++;
}

int cm_node__coord_of(const cm_node_t *n, uint32_t slot, cm_coord_t *out) {
  const cm_member_t *m = &n->reg.m[slot];
  if (!n->cfg.coordinates)
    return 0;
  if (slot == n->self) {
    *out = n->coord.c;
    return 1;
  }
  if (m->ext == NULL || m->ext->coord == NULL || m->ext->coord->at == 0)
    return 0;
  *out = m->ext->coord->c;
  return 1;
}

int cm_node_coord(const cm_node_t *n, cm_coord_t *out) {
  if (n == NULL || out == NULL)
    return CM_EINVAL;
  if (!n->cfg.coordinates)
    return CM_ESTATE;
  *out = n->coord.c;
  return 0;
}

int cm_node_coord_set(cm_node_t *n, const cm_coord_t *c) {
  if (n == NULL || c == NULL || !cm_coord_valid(c))
    return CM_EINVAL;
  if (!n->cfg.coordinates)
    return CM_ESTATE;
  n->coord.c = *c;
  n->coord.outliers_in_row = 0;
  return 0;
}
