/*
 * History: each member's recent state changes as this node saw them, with
 * what caused each (this node's failed probe, an accuser's gossip, a
 * push-pull, a timeout, the member's own word), so that an operator can
 * read why a node was suspected (cm_node_history). A member's record starts
 * with its first suspicion, failure or leave: a healthy cluster keeps none.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_node_int.h"

void cm_node__hist_cause(cm_node_t *n, uint8_t source, const char *by,
                         size_t by_len) {
  n->hcause.source = source;
  n->hcause.by = by;
  n->hcause.by_len = by_len;
}

void cm_node__hist_record(cm_node_t *n, uint32_t slot, uint8_t event,
                          cm_time_t now) {
  struct cm_hist_cause c = n->hcause;
  cm_member_t *m = cm_node__m(n, slot);
  cm_member_ext_t *x = m->ext;
  cm_hist_entry_t *e;
  struct cm_hist *h;
  int32_t by;
  if (n->cfg.history == 0 || slot == n->self ||
      (event == CM_EV_JOINED && (x == NULL || x->hist == NULL)))
    return;
  if ((x = cm_member_ext(m)) == NULL)
    return;
  if (x->hist == NULL) {
    x->hist =
        calloc(1, sizeof(*x->hist) + n->cfg.history * sizeof(cm_hist_entry_t));
    if (x->hist == NULL)
      return;
    x->hist->cap = (uint8_t)n->cfg.history;
  }
  h = x->hist;
  if (h->len < h->cap)
    e = &h->e[(h->head + h->len++) % h->cap];
  else {
    e = &h->e[h->head];
    h->head = (uint8_t)((h->head + 1) % h->cap);
  }
  memset(e, 0, sizeof(*e));
  e->time = now;
  e->event = event;
  e->state = m->state;
  e->source = c.source;
  e->health = (uint8_t)(n->awareness > 255 ? 255 : n->awareness);
  e->incarnation = m->incarnation;
  e->rtt_us = x->rtt != NULL && x->rtt->n > 0
                  ? x->rtt->ring[(x->rtt->pos + 15) % 16]
                  : 0;
  e->by_slot = CM_HIST_NOBODY;
  if (c.by_len > 0 && (by = cm_registry_find(&n->reg, c.by, c.by_len)) >= 0) {
    e->by_slot = (uint32_t)by;
    e->by_hash = cm_node__m(n, (uint32_t)by)->id_hash;
  }
  if (c.source == CM_HIST_PROBE || c.source == CM_HIST_NACK) {
    /* The helpers asked, and those of them that nacked (a nack from no
     * helper, or a second, counts for health only). */
    uint32_t i, nacked = 0;
    for (i = 0; i < n->probe.expected_nacks && i < CM_PROBE_HELPERS_MAX; i++)
      nacked += n->probe.helper_nacked[i];
    e->helpers =
        (uint8_t)(n->probe.expected_nacks > 255 ? 255
                                                : n->probe.expected_nacks);
    e->nacks = (uint8_t)nacked;
  }
  if (x->susp != NULL)
    e->confirmations = (uint8_t)(x->susp->n > 255 ? 255 : x->susp->n);
  else if (x->susp_ended == now && now != 0)
    /* What ended a suspicion just now (a timeout, a death, a refutation):
     * the confirmations it had gathered. */
    e->confirmations = (uint8_t)(x->susp_last_n > 255 ? 255 : x->susp_last_n);
}

size_t cm_node_history(const cm_node_t *n, const char *id, cm_hist_read_t *out,
                       size_t cap) {
  const struct cm_hist *h;
  int32_t slot;
  size_t k, skip, i;
  if (n == NULL || id == NULL || (out == NULL && cap > 0))
    return 0;
  slot = cm_registry_find(&n->reg, id, strnlen(id, CM_ID_MAX + 1));
  if (slot < 0 || n->reg.m[slot].ext == NULL ||
      (h = n->reg.m[slot].ext->hist) == NULL)
    return 0;
  k = h->len < cap ? h->len : cap;
  skip = h->len - k;
  for (i = 0; i < k; i++) {
    cm_hist_read_t *r = &out[i];
    const cm_member_t *by;
    r->e = h->e[(h->head + skip + i) % h->cap];
    r->by[0] = '\0';
    if (r->e.by_slot == CM_HIST_NOBODY || r->e.by_slot >= n->reg.high)
      continue;
    by = &n->reg.m[r->e.by_slot];
    /* The slot may hold another member since: then the accuser is
     * forgotten, and named by no one. */
    if (by->in_use && by->id_hash == r->e.by_hash)
      memcpy(r->by, cm_member_id(by), by->id_len + 1u);
  }
  return k;
}
