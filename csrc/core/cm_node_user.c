/*
 * User events: an application's message for every member, spread by the
 * same gossip as membership news (docs/events.md).
 *
 * Each node keeps a Lamport clock. An event carries its origin's time;
 * every node that learns of it moves its own clock past that time, so an
 * event sent after another was seen has a later time. The last
 * user_event_buffer events are remembered: a copy of one of them is a
 * duplicate, and an event older than the clock by more than the buffer
 * spans is dropped, since it could no longer be told from one already
 * delivered (Serf's rule). A new event is delivered once here and relayed
 * up to the retransmit limit, behind membership news in each packet.
 *
 * Bounds: a node sends at most user_event_rate events per second; from any
 * one origin it accepts at most twice that (an honest sender never meets
 * it), origins it does not know sharing one such budget; sizes are checked
 * by the decoder and against max_user_event_size before anything is kept.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_node_int.h"

/* FNV-1a over name and payload: a fingerprint that makes the comparison
 * of a copy against the records cheap; equal records are then compared
 * byte for byte. */
static uint64_t uev_digest(const uint8_t *name, size_t name_len,
                           const uint8_t *payload, size_t payload_len) {
  uint64_t h = UINT64_C(14695981039346656037);
  size_t i;
  for (i = 0; i < name_len; i++)
    h = (h ^ name[i]) * UINT64_C(1099511628211);
  h = (h ^ 0xff) * UINT64_C(1099511628211);
  for (i = 0; i < payload_len; i++)
    h = (h ^ payload[i]) * UINT64_C(1099511628211);
  return h;
}

int cm_node__uev_init(cm_node_t *n, cm_time_t now) {
  cm_bcast_init(&n->uq, n->cfg.user_event_buffer);
  n->uev_tokens = (double)n->cfg.user_event_rate;
  n->uev_ts = now;
  n->uev_stranger_tokens = 2.0 * n->cfg.user_event_rate;
  n->uev_stranger_ts = now;
  return 0;
}

static void uev_release(struct cm_uev *u) {
  free(u->payload);
  memset(u, 0, sizeof(*u));
}

static void uev_out_free_all(cm_node_t *n) {
  struct cm_uev_out *o, *next;
  for (o = n->uout_head; o != NULL; o = next) {
    next = o->next;
    free(o);
  }
  free(n->uout_last);
  n->uout_head = n->uout_tail = n->uout_last = NULL;
  n->nuout = 0;
}

void cm_node__uev_free(cm_node_t *n) {
  uint32_t i;
  if (n->uevs != NULL)
    for (i = 0; i < n->cfg.user_event_buffer; i++)
      uev_release(&n->uevs[i]);
  free(n->uevs);
  n->uevs = NULL;
  cm_bcast_free(&n->uq);
  uev_out_free_all(n);
}

/* Refill a token bucket of capacity cap and rate cap per second. */
static int uev_take(double *tokens, cm_time_t *ts, double cap, cm_time_t now) {
  if (now > *ts) {
    *tokens += cap * (double)(now - *ts) / (double)CM_SEC(1);
    if (*tokens > cap)
      *tokens = cap;
    *ts = now;
  }
  if (*tokens < 1.0)
    return 0;
  *tokens -= 1.0;
  return 1;
}

/* The origin's budget for one more new event: its own, once known. */
static int uev_origin_allows(cm_node_t *n, const cm_wire_id_t *origin,
                             cm_time_t now) {
  double cap = 2.0 * n->cfg.user_event_rate;
  int32_t slot = cm_registry_find(&n->reg, origin->s, origin->len);
  cm_member_ext_t *x;
  if (slot >= 0 && (uint32_t)slot != n->self &&
      (x = cm_member_ext(cm_node__m(n, (uint32_t)slot))) != NULL) {
    if (x->uev_ts == 0) {
      x->uev_tokens = cap;
      x->uev_ts = now;
    }
    return uev_take(&x->uev_tokens, &x->uev_ts, cap, now);
  }
  return uev_take(&n->uev_stranger_tokens, &n->uev_stranger_ts, cap, now);
}

static int uev_same(const struct cm_uev *u, const cm_msg_user_event_t *e,
                    uint64_t digest) {
  return u->in_use && u->ltime == e->ltime && u->digest == digest &&
         u->origin_len == e->origin.len &&
         memcmp(u->origin, e->origin.s, e->origin.len) == 0 &&
         u->name_len == e->name_len &&
         memcmp(u->name, e->name, e->name_len) == 0 &&
         u->payload_len == e->payload_len &&
         (e->payload_len == 0 ||
          memcmp(u->payload, e->payload, e->payload_len) == 0);
}

/* A free record, or the one of the lowest time if that is below ltime
 * (evicted: its relay is forgotten). CM_NO_SLOT: every record is newer, so
 * the event is too old to tell from one forgotten. */
static uint32_t uev_place(cm_node_t *n, uint64_t ltime) {
  uint32_t i, oldest = CM_NO_SLOT;
  for (i = 0; i < n->cfg.user_event_buffer; i++) {
    if (!n->uevs[i].in_use)
      return i;
    if (oldest == CM_NO_SLOT || n->uevs[i].ltime < n->uevs[oldest].ltime)
      oldest = i;
  }
  if (n->uevs[oldest].ltime >= ltime)
    return CM_NO_SLOT;
  cm_bcast_forget(&n->uq, oldest);
  uev_release(&n->uevs[oldest]);
  n->nuev--;
  return oldest;
}

/* Queue the event for the driver; past CM_UEV_QUEUE_MAX, counted. */
static void uev_deliver(cm_node_t *n, const struct cm_uev *u, cm_time_t now) {
  struct cm_uev_out *o;
  if (n->nuout >= CM_UEV_QUEUE_MAX ||
      (o = malloc(sizeof(*o) + u->name_len + 1u + u->payload_len)) == NULL) {
    n->st.user_events_dropped++;
    return;
  }
  memset(o, 0, sizeof(*o));
  memcpy(o->data, u->name, u->name_len);
  o->data[u->name_len] = '\0';
  if (u->payload_len > 0)
    memcpy(o->data + u->name_len + 1, u->payload, u->payload_len);
  o->ev.ltime = u->ltime;
  memcpy(o->ev.origin, u->origin, u->origin_len + 1u);
  o->ev.name = (const char *)o->data;
  o->ev.name_len = u->name_len;
  o->ev.payload = u->payload_len > 0 ? o->data + u->name_len + 1 : NULL;
  o->ev.payload_len = u->payload_len;
  o->ev.coalesce = (u->flags & CM_UEV_COALESCE) != 0;
  o->ev.time = now;
  if (n->uout_tail != NULL)
    n->uout_tail->next = o;
  else
    n->uout_head = o;
  n->uout_tail = o;
  n->nuout++;
  n->st.user_events_delivered++;
}

/* Keep, deliver and relay a new event. Returns 0, CM_ENOMEM or
 * CM_ELIMIT (too old for the buffer). */
static int uev_accept(cm_node_t *n, const cm_msg_user_event_t *e,
                      uint64_t digest, cm_time_t now) {
  struct cm_uev *u;
  uint32_t i;
  if (n->uevs == NULL) {
    n->uevs = calloc(n->cfg.user_event_buffer, sizeof(*n->uevs));
    if (n->uevs == NULL)
      return CM_ENOMEM;
  }
  i = uev_place(n, e->ltime);
  if (i == CM_NO_SLOT)
    return CM_ELIMIT;
  u = &n->uevs[i];
  if (e->payload_len > 0) {
    u->payload = malloc(e->payload_len);
    if (u->payload == NULL)
      return CM_ENOMEM;
    memcpy(u->payload, e->payload, e->payload_len);
  }
  u->in_use = 1;
  u->ltime = e->ltime;
  u->digest = digest;
  u->flags = e->flags;
  u->name_len = e->name_len;
  memcpy(u->name, e->name, e->name_len);
  u->name[e->name_len] = '\0';
  u->origin_len = e->origin.len;
  memcpy(u->origin, e->origin.s, e->origin.len + 1u);
  u->payload_len = e->payload_len;
  n->nuev++;
  uev_deliver(n, u, now);
  if (!cm_node__news_pending(n) && n->next_gossip < now)
    n->next_gossip = now;
  if (cm_bcast_push(&n->uq, i, CM_MSG_USER_EVENT, CM_PRIO_NORMAL, 0, 0) != 0)
    n->st.updates_dropped++;
  return 0;
}

void cm_node__on_user_event(cm_node_t *n, const cm_msg_user_event_t *e,
                            cm_time_t now) {
  uint64_t digest;
  uint32_t i;
  if (e->ltime >= CM_UEV_LTIME_MAX) {
    n->st.drop_user_event_ltime++;
    return;
  }
  if ((size_t)e->name_len + e->payload_len > n->cfg.max_user_event_size) {
    n->st.drop_user_event_size++;
    return;
  }
  /* Witness: our next event comes after this one. */
  if (e->ltime >= n->uev_clock)
    n->uev_clock = e->ltime + 1;
  if (n->uev_clock > n->cfg.user_event_buffer &&
      e->ltime < n->uev_clock - n->cfg.user_event_buffer) {
    n->st.drop_user_event_old++;
    return;
  }
  digest = uev_digest(e->name, e->name_len, e->payload, e->payload_len);
  if (n->uevs != NULL)
    for (i = 0; i < n->cfg.user_event_buffer; i++)
      if (uev_same(&n->uevs[i], e, digest)) {
        n->st.user_events_duplicate++;
        return;
      }
  if (!uev_origin_allows(n, &e->origin, now)) {
    n->st.drop_user_event_rate++;
    return;
  }
  if (uev_accept(n, e, digest, now) == CM_ELIMIT)
    n->st.drop_user_event_old++;
}

int cm_node_send_user_event(cm_node_t *n, const char *name, size_t name_len,
                            const uint8_t *payload, size_t payload_len,
                            int coalesce, cm_time_t now, uint64_t *ltime) {
  cm_msg_user_event_t e;
  cm_member_t *self;
  int rc;
  if (n == NULL || !cm_event_name_valid(name, name_len) ||
      (payload == NULL && payload_len > 0))
    return CM_EINVAL;
  if (name_len + payload_len > n->cfg.max_user_event_size)
    return CM_ETOOBIG;
  if (n->leaving)
    return CM_ESTATE;
  if (n->uev_clock >= CM_UEV_LTIME_MAX)
    return CM_ELIMIT;
  if (!uev_take(&n->uev_tokens, &n->uev_ts, (double)n->cfg.user_event_rate,
                now))
    return CM_ELIMIT;
  self = cm_node__self(n);
  memset(&e, 0, sizeof(e));
  e.ltime = n->uev_clock;
  cm_wire_id_set(&e.origin, cm_member_id(self), self->id_len);
  e.flags = coalesce ? CM_UEV_COALESCE : 0;
  e.name = (const uint8_t *)name;
  e.name_len = (uint8_t)name_len;
  e.payload = payload_len > 0 ? payload : NULL;
  e.payload_len = (uint16_t)payload_len;
  rc = uev_accept(n, &e, uev_digest(e.name, name_len, payload, payload_len),
                  now);
  if (rc != 0) {
    n->uev_tokens += 1.0; /* nothing was sent */
    return rc == CM_ELIMIT ? CM_ENOMEM : rc;
  }
  n->uev_clock++;
  n->st.user_events_sent++;
  if (ltime != NULL)
    *ltime = e.ltime;
  return 0;
}

/* ------------------------------------------------------------- relaying */

static int uev_item_msg(cm_node_t *n, const cm_bcast_item_t *it,
                        cm_msg_t *msg) {
  const struct cm_uev *u;
  if (n->uevs == NULL || it->key >= n->cfg.user_event_buffer ||
      !n->uevs[it->key].in_use)
    return 0;
  u = &n->uevs[it->key];
  memset(msg, 0, sizeof(*msg));
  msg->type = CM_MSG_USER_EVENT;
  msg->u.uev.ltime = u->ltime;
  cm_wire_id_set(&msg->u.uev.origin, u->origin, u->origin_len);
  msg->u.uev.flags = u->flags;
  msg->u.uev.name = (const uint8_t *)u->name;
  msg->u.uev.name_len = u->name_len;
  msg->u.uev.payload = u->payload;
  msg->u.uev.payload_len = u->payload_len;
  return 1;
}

static size_t uev_item_size(void *ud, const cm_bcast_item_t *it) {
  cm_msg_t msg;
  if (!uev_item_msg((cm_node_t *)ud, it, &msg))
    return 0;
  return cm_wire_msg_size(&msg);
}

void cm_node__uev_piggyback(cm_node_t *n, cm_wbuf_t *w, size_t max_msgs) {
  cm_bcast_item_t items[CM_PIGGYBACK_MAX];
  size_t k, i;
  if (cm_bcast_len(&n->uq) == 0 || max_msgs == 0)
    return;
  if (max_msgs > CM_PIGGYBACK_MAX)
    max_msgs = CM_PIGGYBACK_MAX;
  k = cm_bcast_take(&n->uq, w->cap - w->len,
                    cm_retransmit_limit(&n->cfg, n->reg.count), uev_item_size,
                    n, items, max_msgs);
  for (i = 0; i < k; i++) {
    cm_msg_t msg;
    if (uev_item_msg(n, &items[i], &msg))
      cm_wire_packet_add(w, &msg);
  }
}

/* ----------------------------------------------------------------- output */

int cm_node_poll_user_event(cm_node_t *n, cm_user_event_t *ev) {
  struct cm_uev_out *o;
  free(n->uout_last);
  n->uout_last = NULL;
  o = n->uout_head;
  if (o == NULL)
    return 0;
  n->uout_head = o->next;
  if (n->uout_head == NULL)
    n->uout_tail = NULL;
  n->nuout--;
  n->uout_last = o; /* its bytes stay valid until the next call */
  *ev = o->ev;
  return 1;
}
