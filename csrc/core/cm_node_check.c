/*
 * cm_node_check_invariants: every count and list the node keeps by hand
 * alongside its member table, recomputed from the table and compared. A
 * test and debugging aid; nothing in the node calls it.
 */
#include <stdlib.h>

#include "cm_node_int.h"

#define CHECK(cond, text)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      *what = (text);                                                          \
      return CM_ESTATE;                                                        \
    }                                                                          \
  } while (0)

static int check_in_table(const cm_node_t *n, uint32_t slot) {
  return slot < n->reg.high && n->reg.m[slot].in_use;
}

/* The registry's own counts, and its id index finds every member. */
static int check_registry(const cm_node_t *n, const char **what) {
  const cm_registry_t *r = &n->reg;
  uint32_t i, used = 0, with_addr = 0;
  CHECK(r->high <= r->cap, "registry: high above cap");
  for (i = 0; i < r->high; i++) {
    const cm_member_t *m = &r->m[i];
    if (!m->in_use)
      continue;
    used++;
    if (m->addr.family == 4 || m->addr.family == 6)
      with_addr++;
    CHECK(m->state <= CM_STATE_LEFT, "registry: member in no known state");
    CHECK(cm_registry_find(r, cm_member_id(m), m->id_len) == (int32_t)i,
          "registry: member not found by its id");
  }
  CHECK(r->count == used, "registry: count != slots in use");
  CHECK(r->nfree + r->count == r->high, "registry: free + used != high");
  CHECK(r->ids.live == used, "registry: id index size != slots in use");
  CHECK(r->addrs.t == NULL || r->addrs.live == with_addr,
        "registry: address index size != members with an address");
  return 0;
}

/* st.alive, st.suspect, st.failed and st.left against the table; this node
 * is alive, or left once it leaves. */
static int check_states(const cm_node_t *n, const char **what) {
  uint32_t c[4] = {0, 0, 0, 0}, i;
  const cm_member_t *self;
  CHECK(check_in_table(n, n->self), "self: slot not in the table");
  self = &n->reg.m[n->self];
  CHECK(self->state == (n->leaving ? CM_STATE_LEFT : CM_STATE_ALIVE),
        "self: neither alive nor, once leaving, left");
  for (i = 0; i < n->reg.high; i++)
    if (n->reg.m[i].in_use && n->reg.m[i].state <= CM_STATE_LEFT)
      c[n->reg.m[i].state]++;
  CHECK(n->st.alive == c[CM_STATE_ALIVE], "st.alive != members alive");
  CHECK(n->st.suspect == c[CM_STATE_SUSPECT], "st.suspect != members suspect");
  CHECK(n->st.failed == c[CM_STATE_FAILED], "st.failed != members failed");
  CHECK(n->st.left == c[CM_STATE_LEFT], "st.left != members left");
  return 0;
}

/* The suspect list holds each suspect once, with its suspicion; nobody
 * else holds one. */
static int check_lists(const cm_node_t *n, uint8_t *seen, const char **what) {
  uint32_t i;
  const cm_theap_t *h = &n->suspects;
  CHECK(h->len <= h->cap, "suspects: length above capacity");
  CHECK(h->len == n->st.suspect, "suspects: length != members suspect");
  for (i = 0; i < h->len; i++) {
    uint32_t s = h->e[i].id;
    const cm_member_t *m;
    CHECK(check_in_table(n, s), "suspects: entry not in the table");
    m = &n->reg.m[s];
    CHECK(m->state == CM_STATE_SUSPECT, "suspects: entry not suspect");
    CHECK(m->ext != NULL && m->ext->susp != NULL,
          "suspects: entry without a suspicion");
    CHECK(!(seen[s] & 1), "suspects: entry listed twice");
    CHECK(m->ext->susp_pos == i, "suspects: member's heap position is stale");
    CHECK(m->ext->susp->n <= m->ext->susp->k &&
              m->ext->susp->nfrom ==
                  m->ext->susp->n + (m->ext->susp->unnamed ? 0u : 1u),
          "suspects: accusers counted != confirmations + the origin");
    CHECK(h->e[i].key == cm_suspicion_deadline(m->ext->susp),
          "suspects: heap key != the suspicion's deadline");
    CHECK(i == 0 || h->e[(i - 1) / 2].key <= h->e[i].key,
          "suspects: heap out of order");
    seen[s] |= 1;
  }
  for (i = 0; i < n->reg.high; i++) {
    const cm_member_t *m = &n->reg.m[i];
    if (!m->in_use || m->ext == NULL)
      continue;
    CHECK(m->ext->susp == NULL || m->state == CM_STATE_SUSPECT,
          "suspects: suspicion held by a member not suspect");
  }
  return 0;
}

/* Every live peer is in the probe order, so a round reaches it. */
static int check_order(const cm_node_t *n, uint8_t *seen, const char **what) {
  uint32_t i;
  CHECK(n->order_pos <= n->order_len && n->order_len <= n->order_cap,
        "order: position, length and capacity out of order");
  for (i = 0; i < n->order_len; i++)
    if (n->order[i] < n->reg.high)
      seen[n->order[i]] |= 4;
  for (i = 0; i < n->reg.high; i++)
    CHECK(i == n->self || !cm_node__live(&n->reg.m[i]) || (seen[i] & 4),
          "order: a live peer is not in the probe order");
  return 0;
}

/* The broadcast queue's count, its index by member, and what its items
 * refer to: members still in the table (a reap forgets a member's
 * updates, and those it accused in). */
static int check_bcast(const cm_node_t *n, const char **what) {
  const cm_bcast_t *q = &n->bq;
  uint32_t i, used = 0, linked = 0;
  int p, t;
  CHECK(q->used <= q->cap && q->used <= q->max,
        "bcast: length above capacity or bound");
  for (i = 0; i < q->cap; i++) {
    const cm_bcast_item_t *it = &q->items[i];
    if (!it->in_use)
      continue;
    used++;
    CHECK(it->key < q->nkeys && q->by_key[it->key] == (int32_t)i,
          "bcast: item not indexed by its member");
    CHECK(check_in_table(n, it->key), "bcast: update about a member gone");
    CHECK((it->kind != CM_MSG_SUSPECT && it->kind != CM_MSG_DEAD) ||
              check_in_table(n, it->aux),
          "bcast: accusation by a member gone");
  }
  CHECK(q->used == used, "bcast: length != items in use");
  for (i = 0; i < q->nkeys; i++)
    CHECK(q->by_key[i] < 0 || ((uint32_t)q->by_key[i] < q->cap &&
                               q->items[q->by_key[i]].in_use &&
                               q->items[q->by_key[i]].key == i),
          "bcast: index names an item not about its member");
  for (p = 0; p < CM_PRIO_COUNT; p++)
    for (t = 0; t <= CM_BCAST_MAX_TX; t++) {
      int32_t j;
      for (j = q->heads[p][t]; j >= 0 && linked <= used; j = q->items[j].next) {
        CHECK((uint32_t)j < q->cap && q->items[j].in_use &&
                  q->items[j].prio == p && q->items[j].transmits == t,
              "bcast: bucket holds an item not of its priority and count");
        linked++;
      }
    }
  CHECK(linked == used, "bcast: items in buckets != items in use");
  return 0;
}

/* One store of user events or queries: the count of records, every relay
 * about a record held, the clock past every record. */
static int check_store(const cm_node_t *n, const struct cm_ustore *s,
                       const char **what) {
  const cm_bcast_t *q = &s->relay;
  uint32_t i, held = 0;
  uint64_t big = 0;
  for (i = 0; s->recs != NULL && i < n->cfg.user_event_buffer; i++) {
    const struct cm_urec *r = &s->recs[i];
    if (!r->in_use)
      continue;
    held++;
    CHECK(r->ltime < s->clock, "user events: a record not before the clock");
    CHECK(!r->pending || (r->big && r->data == NULL),
          "user events: a pending record that is not a reference, or holds");
    CHECK(!r->big || r->payload_len > 0, "user events: an empty reference");
    if (r->big && r->data != NULL)
      big += r->payload_len;
  }
  CHECK(held == s->n, "user events: records held != count");
  CHECK(big == s->big_bytes, "user events: payloads held != big_bytes");
  CHECK(big <= n->cfg.user_event_store, "user events: over user_event_store");
  for (i = 0; i < q->cap; i++)
    if (q->items[i].in_use)
      CHECK(s->recs != NULL && q->items[i].key < n->cfg.user_event_buffer &&
                s->recs[q->items[i].key].in_use &&
                !s->recs[q->items[i].key].pending,
            "user events: a relay of a record not held");
  return 0;
}

/* Both stores, this node's queries and the application queue. */
static int check_user_events(const cm_node_t *n, const char **what) {
  const struct cm_app_out *o;
  size_t queued = 0, i, j;
  int rc = check_store(n, &n->ue, what);
  if (rc == 0)
    rc = check_store(n, &n->qs, what);
  if (rc != 0)
    return rc;
  for (i = 0; i < CM_QUERIES_MAX; i++) {
    const struct cm_qout *q = &n->qout[i];
    if (!q->active)
      continue;
    CHECK(q->qid != 0, "queries: an active query without an id");
    CHECK(q->seen_n * 2 <= q->seen_cap || q->seen_cap == 0,
          "queries: answer set over half full");
    for (j = i + 1; j < CM_QUERIES_MAX; j++)
      CHECK(!n->qout[j].active || n->qout[j].qid != q->qid,
            "queries: two in flight under one id");
  }
  for (o = n->aout_head; o != NULL && queued <= n->naout; o = o->next)
    queued++;
  CHECK(queued == n->naout, "application queue length");
  return 0;
}

/* The output queues' lengths within what they hold. */
static int check_outputs(const cm_node_t *n, const char **what) {
  size_t i;
  CHECK(n->ev_len <= n->ev_cap && n->ev_cap <= CM_EVENT_QUEUE_MAX &&
            (n->ev_cap == 0 || n->ev_head < n->ev_cap),
        "events: head or length outside the ring");
  CHECK(n->dg_read <= n->ndg && n->ndg <= n->dg_cap,
        "datagrams: read position, count and capacity out of order");
  CHECK(n->arena_len <= n->arena_cap, "datagrams: arena above capacity");
  for (i = n->dg_read; i < n->ndg; i++)
    CHECK(n->dgs[i].off + n->dgs[i].len <= n->arena_len,
          "datagrams: one outside the arena");
  CHECK(n->nstreams <= n->streams_cap, "streams: count above capacity");
  CHECK(n->awareness < n->cfg.awareness_max || n->awareness == 0,
        "health: awareness at or above awareness_max");
  CHECK(!n->probe.active || !n->probe.acked, "probe: active but acked");
  return 0;
}

int cm_node_check_invariants(const cm_node_t *n, const char **what) {
  const char *ignored;
  uint8_t *seen;
  int rc;
  if (what == NULL)
    what = &ignored;
  *what = NULL;
  if (n == NULL)
    return CM_EINVAL;
  rc = check_registry(n, what);
  if (rc == 0)
    rc = check_states(n, what);
  if (rc != 0)
    return rc;
  seen = calloc(n->reg.high + 1u, 1);
  if (seen == NULL) {
    *what = "no memory to check the lists";
    return CM_ENOMEM;
  }
  rc = check_lists(n, seen, what);
  if (rc == 0)
    rc = check_order(n, seen, what);
  free(seen);
  if (rc == 0)
    rc = check_bcast(n, what);
  if (rc == 0)
    rc = check_user_events(n, what);
  if (rc == 0)
    rc = check_outputs(n, what);
  return rc;
}
