/*
 * Forgetting and retrying: left and long-failed members are reaped, and
 * recently failed ones are tried again with a push-pull.
 */
#include "cm_node_int.h"

static int node_filter_reconnect(const cm_node_t *n, uint32_t s,
                                 cm_time_t now) {
  const cm_member_t *m = &n->reg.m[s];
  return m->state == CM_STATE_FAILED &&
         now - m->state_change < n->cfg.reconnect_timeout;
}

/* Forget a member that left or failed: reported as reaped. */
static void node_forget(cm_node_t *n, uint32_t i, cm_time_t now) {
  cm_member_t *m = &n->reg.m[i];
  cm_node__event(n, CM_EV_REAPED, m, NULL, now);
  cm_node__count_state(n, m->state, -1);
  cm_bcast_forget(&n->bq, i);
  cm_bcast_forget_aux(&n->bq, i);
  cm_registry_remove(&n->reg, i);
}

void cm_node__reap(cm_node_t *n, cm_time_t now) {
  uint32_t i;
  for (i = 0; i < n->reg.high; i++) {
    cm_member_t *m = &n->reg.m[i];
    cm_time_t age;
    if (!m->in_use || i == n->self)
      continue;
    age = now - m->state_change;
    if ((m->state == CM_STATE_LEFT && age >= n->cfg.reap_left_after) ||
        (m->state == CM_STATE_FAILED && age >= n->cfg.reconnect_timeout))
      node_forget(n, i, now);
  }
}

int cm_node__evict_tombstone(cm_node_t *n, cm_time_t now) {
  uint32_t i, oldest = CM_NO_SLOT;
  if (n->st.failed + n->st.left == 0)
    return 0;
  for (i = 0; i < n->reg.high; i++) {
    const cm_member_t *m = &n->reg.m[i];
    if (!m->in_use || i == n->self ||
        (m->state != CM_STATE_FAILED && m->state != CM_STATE_LEFT) ||
        now - m->state_change < n->cfg.gossip_to_dead)
      continue;
    if (oldest == CM_NO_SLOT || m->state_change < n->reg.m[oldest].state_change)
      oldest = i;
  }
  if (oldest == CM_NO_SLOT)
    return 0;
  node_forget(n, oldest, now);
  n->st.tombstones_evicted++;
  return 1;
}

/* Keep trying failed members, so a healed partition merges back
 * without anyone rejoining by hand (Serf's reconnect). */
void cm_node__reconnect(cm_node_t *n, cm_time_t now) {
  uint32_t peer;
  if (n->st.failed > 0 &&
      cm_node__pick(n, 1, node_filter_reconnect, CM_NO_SLOT, now, &peer) == 1)
    cm_node__pp_request(n, &cm_node__m(n, peer)->addr, 0);
}
