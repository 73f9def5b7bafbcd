/*
 * User events and queries: an application's messages for every member,
 * spread by the same gossip as membership news (docs/events.md).
 *
 * Each kind has its own Lamport clock and store. A message carries its
 * origin's time; every node that learns of it moves its own clock past that
 * time, so one sent after another was seen has a later time. The last
 * user_event_buffer messages of each kind are remembered: a copy of one of
 * them is a duplicate, and one older than the clock by more than the buffer
 * spans is dropped, since it could no longer be told from one already
 * delivered (Serf's rule). A new one is delivered once here and relayed up
 * to twice the retransmit limit (cm_node__app_limit), behind membership
 * news in each packet.
 *
 * A query is delivered to the application with its opaque filter; the
 * application decides whether to answer, and answers through
 * cm_node_query_respond: an ack and a response, each at most once, sent to
 * the origin directly and through `relay` other members, who pass them on
 * only to the address of a live member. The origin delivers the first ack
 * and the first response of each member until the query's time is up, then
 * ends it.
 *
 * Bounds: a node sends at most user_event_rate messages of each kind per
 * second; from any one origin it accepts at most twice that (an honest
 * sender never meets it), origins it does not know sharing one such
 * budget; sizes are checked by the decoder and against
 * max_user_event_size before anything is kept.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_node_int.h"

#define URESP_DONE 0x02 /* in cm_urec.answered: responded */

/* FNV-1a over name, payload and filter: a fingerprint that makes the
 * comparison of a copy against the records cheap; equal records are then
 * compared byte for byte. */
static uint64_t fnv(uint64_t h, const uint8_t *p, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    h = (h ^ p[i]) * UINT64_C(1099511628211);
  return (h ^ 0xff) * UINT64_C(1099511628211);
}

/* What a received or sent message is made of, whatever its kind. */
struct uin {
  uint64_t ltime;
  const cm_wire_id_t *origin;
  uint8_t flags;
  const uint8_t *name;
  uint8_t name_len;
  const uint8_t *payload; /* NULL for a reference not yet fetched */
  uint32_t payload_len;
  const uint8_t *filter;
  uint16_t filter_len;
  const cm_msg_query_t *q; /* queries */
  /* Learnt by anti-entropy: passed on marked so (CM_UEV_SYNCED). */
  uint8_t synced;
  /* A payload on streams: its digest; where its reference came from. */
  uint8_t big;
  uint64_t pdigest;
  const cm_addr_t *from;
};

#define FNV_BASIS UINT64_C(14695981039346656037)

/* A payload's reference: its size and digest (cm_wire.h). */
static void ref_encode(uint8_t out[CM_UEV_REF_LEN], uint32_t size,
                       uint64_t pdigest) {
  int i;
  for (i = 3; i >= 0; i--, size >>= 8)
    out[i] = (uint8_t)size;
  for (i = 11; i >= 4; i--, pdigest >>= 8)
    out[i] = (uint8_t)pdigest;
}

static void ref_decode(const uint8_t in[CM_UEV_REF_LEN], uint32_t *size,
                       uint64_t *pdigest) {
  int i;
  *size = 0;
  *pdigest = 0;
  for (i = 0; i < 4; i++)
    *size = (*size << 8) | in[i];
  for (i = 4; i < CM_UEV_REF_LEN; i++)
    *pdigest = (*pdigest << 8) | in[i];
}

static uint64_t uin_digest(const struct uin *u) {
  uint64_t h = fnv(FNV_BASIS, u->name, u->name_len);
  if (u->big) {
    uint8_t ref[CM_UEV_REF_LEN];
    ref_encode(ref, u->payload_len, u->pdigest);
    h = fnv(h, ref, sizeof(ref));
  } else {
    h = fnv(h, u->payload, u->payload_len);
  }
  return fnv(h, u->filter, u->filter_len);
}

static void store_init(struct cm_ustore *s, uint8_t type, uint32_t cap,
                       double rate, cm_app_counts_t *count, cm_time_t now) {
  memset(s, 0, sizeof(*s));
  s->type = type;
  cm_bcast_init(&s->relay, cap);
  s->tokens = rate;
  s->ts = now;
  s->stranger_tokens = 2.0 * rate;
  s->stranger_ts = now;
  s->sync_tokens = (double)cap;
  s->sync_ts = now;
  s->count = count;
}

void cm_node__uev_init(cm_node_t *n, cm_time_t now) {
  double rate = (double)n->cfg.user_event_rate;
  store_init(&n->ue, CM_MSG_USER_EVENT, n->cfg.user_event_buffer, rate,
             &n->st.user_events, now);
  store_init(&n->qs, CM_MSG_QUERY, n->cfg.user_event_buffer, rate,
             &n->st.queries, now);
}

static void urec_release(struct cm_ustore *s, struct cm_urec *r) {
  if (r->big && r->data != NULL)
    s->big_bytes -= r->payload_len;
  free(r->data);
  memset(r, 0, sizeof(*r));
}

static void store_free(cm_node_t *n, struct cm_ustore *s) {
  uint32_t i;
  if (s->recs != NULL)
    for (i = 0; i < n->cfg.user_event_buffer; i++)
      urec_release(s, &s->recs[i]);
  free(s->recs);
  s->recs = NULL;
  cm_bcast_free(&s->relay);
}

void cm_node__uev_free(cm_node_t *n) {
  struct cm_app_out *o, *next;
  size_t i;
  store_free(n, &n->ue);
  store_free(n, &n->qs);
  for (i = 0; i < CM_QUERIES_MAX; i++)
    free(n->qout[i].seen);
  for (o = n->aout_head; o != NULL; o = next) {
    next = o->next;
    free(o);
  }
  free(n->aout_last);
  n->aout_head = n->aout_tail = n->aout_last = NULL;
  n->naout = 0;
}

/* Refill a token bucket of capacity cap and rate cap per second. */
static int bucket_take(double *tokens, cm_time_t *ts, double cap,
                       cm_time_t now) {
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

/* The origin's budget for one more new message of this kind: its own,
 * once known. */
static int origin_allows(cm_node_t *n, struct cm_ustore *s,
                         const cm_wire_id_t *origin, cm_time_t now) {
  double cap = 2.0 * n->cfg.user_event_rate;
  int32_t slot = cm_registry_find(&n->reg, origin->s, origin->len);
  cm_member_ext_t *x;
  if (slot >= 0 && (uint32_t)slot != n->self &&
      (x = cm_member_ext(cm_node__m(n, (uint32_t)slot))) != NULL) {
    double *tokens = s->type == CM_MSG_QUERY ? &x->qry_tokens : &x->uev_tokens;
    cm_time_t *ts = s->type == CM_MSG_QUERY ? &x->qry_ts : &x->uev_ts;
    if (*ts == 0) {
      *tokens = cap;
      *ts = now;
    }
    return bucket_take(tokens, ts, cap, now);
  }
  return bucket_take(&s->stranger_tokens, &s->stranger_ts, cap, now);
}

static const uint8_t *urec_filter(const struct cm_urec *r) {
  return r->data != NULL ? r->data + r->payload_len : NULL;
}

static int urec_same(const struct cm_urec *r, const struct uin *u,
                     uint64_t digest) {
  return r->in_use && r->ltime == u->ltime && r->digest == digest &&
         r->origin_len == u->origin->len &&
         memcmp(r->origin, u->origin->s, u->origin->len) == 0 &&
         (u->q == NULL || r->qid == u->q->qid) && r->name_len == u->name_len &&
         memcmp(r->name, u->name, u->name_len) == 0 &&
         r->payload_len == u->payload_len && r->big == u->big &&
         (u->big ? r->pdigest == u->pdigest
                 : (u->payload_len == 0 ||
                    memcmp(r->data, u->payload, u->payload_len) == 0)) &&
         r->filter_len == u->filter_len &&
         (u->filter_len == 0 ||
          memcmp(urec_filter(r), u->filter, u->filter_len) == 0);
}

/* A free record, or the one of the lowest time if that is below ltime
 * (evicted: its relay is forgotten). CM_NO_SLOT: every record is newer, so
 * the message is too old to tell from one forgotten. */
static uint32_t store_place(cm_node_t *n, struct cm_ustore *s, uint64_t ltime) {
  uint32_t i, oldest = CM_NO_SLOT;
  for (i = 0; i < n->cfg.user_event_buffer; i++) {
    if (!s->recs[i].in_use)
      return i;
    if (oldest == CM_NO_SLOT || s->recs[i].ltime < s->recs[oldest].ltime)
      oldest = i;
  }
  if (s->recs[oldest].ltime >= ltime)
    return CM_NO_SLOT;
  cm_bcast_forget(&s->relay, oldest);
  urec_release(s, &s->recs[oldest]);
  s->n--;
  return oldest;
}

/* ------------------------------------------------------ to the application */

/* Queue m (its pointers copied into the record) for the application; past
 * CM_APP_QUEUE_MAX, counted, unless `always`. */
static void app_push(cm_node_t *n, const cm_app_msg_t *m, int always) {
  struct cm_app_out *o;
  size_t name = m->name != NULL ? m->name_len + 1u : 0;
  uint8_t *p;
  if ((n->naout >= CM_APP_QUEUE_MAX && !always) ||
      (o = malloc(sizeof(*o) + name + m->filter_len + m->payload_len)) ==
          NULL) {
    n->st.app_dropped++;
    return;
  }
  o->next = NULL;
  o->m = *m;
  p = o->data;
  if (m->name != NULL) {
    memcpy(p, m->name, m->name_len);
    p[m->name_len] = '\0';
    o->m.name = (const char *)p;
    p += name;
  }
  o->m.filter = m->filter_len > 0 ? p : NULL;
  if (m->filter_len > 0)
    memcpy(p, m->filter, m->filter_len);
  p += m->filter_len;
  o->m.payload = m->payload_len > 0 ? p : NULL;
  if (m->payload_len > 0)
    memcpy(p, m->payload, m->payload_len);
  if (n->aout_tail != NULL)
    n->aout_tail->next = o;
  else
    n->aout_head = o;
  n->aout_tail = o;
  n->naout++;
}

/* Deliver record r, its payload at `payload` (r->data, or the bytes just
 * fetched when they could not be kept). */
static void urec_deliver(cm_node_t *n, struct cm_ustore *s,
                         const struct cm_urec *r, const uint8_t *payload,
                         cm_time_t now) {
  cm_app_msg_t m;
  memset(&m, 0, sizeof(m));
  m.kind = s->type == CM_MSG_QUERY ? CM_APP_QUERY : CM_APP_EVENT;
  m.ltime = r->ltime;
  memcpy(m.node, r->origin, r->origin_len + 1u);
  m.name = r->name;
  m.name_len = r->name_len;
  m.payload = payload;
  m.payload_len = r->payload_len;
  m.time = now;
  if (s->type == CM_MSG_QUERY) {
    m.flags = r->flags & CM_QUERY_WANT_ACK ? CM_APP_WANT_ACK : 0;
    m.qid = r->qid;
    m.origin_addr = r->origin_addr;
    m.filter = urec_filter(r);
    m.filter_len = r->filter_len;
    m.deadline = r->deadline;
  } else {
    m.flags = r->flags & CM_UEV_COALESCE ? CM_APP_COALESCE : 0;
  }
  s->count->delivered++;
  app_push(n, &m, 0);
}

int cm_node_poll_app(cm_node_t *n, cm_app_msg_t *m) {
  struct cm_app_out *o;
  free(n->aout_last);
  n->aout_last = NULL;
  o = n->aout_head;
  if (o == NULL)
    return 0;
  n->aout_head = o->next;
  if (n->aout_head == NULL)
    n->aout_tail = NULL;
  n->naout--;
  n->aout_last = o; /* its bytes stay valid until the next call */
  *m = o->m;
  return 1;
}

/* ---------------------------------------------------------- the stores */

/* Deliver a message now complete, and relay it. */
static void store_announce(cm_node_t *n, struct cm_ustore *s, uint32_t i,
                           const uint8_t *payload, cm_time_t now) {
  urec_deliver(n, s, &s->recs[i], payload, now);
  if (!cm_node__news_pending(n) && n->next_gossip < now)
    n->next_gossip = now;
  if (cm_bcast_push(&s->relay, i, s->type, CM_PRIO_NORMAL, 0, 0) != 0)
    n->st.updates_dropped++;
}

/* Whether the payload of record i has served its turn: relayed to the
 * end, or held as long as relaying takes (the app limit's gossip rounds;
 * a node with no one to tell never finishes). */
static int urec_spent(const cm_node_t *n, const struct cm_ustore *s, uint32_t i,
                      cm_time_t now) {
  cm_time_t turn = (cm_time_t)cm_node__app_limit(n) * n->cfg.gossip_interval;
  return cm_bcast_peek_key(&s->relay, i) == NULL ||
         now - s->recs[i].seen >= turn;
}

/* Whether record r is one of this node's own events. */
static int urec_own(cm_node_t *n, const struct cm_urec *r) {
  const cm_member_t *self = cm_node__self(n);
  return r->origin_len == self->id_len &&
         memcmp(r->origin, cm_member_id(self), self->id_len) == 0;
}

/* Whether record i's payload must be kept: this node's own, still having
 * its turn. Its origin is the source of last resort for every member. */
static int urec_protected(cm_node_t *n, const struct cm_ustore *s, uint32_t i,
                          cm_time_t now) {
  return urec_own(n, &s->recs[i]) && !urec_spent(n, s, i, now);
}

/* Whether `need` more bytes of our own fit in user_event_store beside our
 * payloads still having their turn. */
static int store_room_for(cm_node_t *n, const struct cm_ustore *s, size_t need,
                          cm_time_t now) {
  uint64_t kept = 0;
  uint32_t i;
  for (i = 0; s->recs != NULL && i < n->cfg.user_event_buffer; i++) {
    const struct cm_urec *r = &s->recs[i];
    if (r->in_use && r->big && r->data != NULL && urec_protected(n, s, i, now))
      kept += r->payload_len;
  }
  return kept + need <= n->cfg.user_event_store;
}

/* Forget payloads on streams, other than record `keep`'s and our own still
 * having their turn, until `need` more bytes fit in user_event_store: first
 * those that have served their turn (urec_spent: the members this node told
 * have had their chance to fetch), the oldest first. Their records stay, so
 * a copy is still known for one, and their references are still passed on
 * (a member that fetches it from here is told it is not held, and asks the
 * next source, the origin last); the payload is no longer served from here.
 * 1 if the room was made, 0 if only protected payloads are left. */
static int store_make_room(cm_node_t *n, struct cm_ustore *s, size_t need,
                           uint32_t keep, cm_time_t now) {
  while (s->big_bytes + need > n->cfg.user_event_store) {
    uint32_t i, oldest = CM_NO_SLOT;
    int oldest_spent = 0;
    struct cm_urec *r;
    for (i = 0; i < n->cfg.user_event_buffer; i++) {
      int spent;
      r = &s->recs[i];
      if (i == keep || !r->in_use || !r->big || r->data == NULL ||
          urec_protected(n, s, i, now))
        continue;
      spent = urec_spent(n, s, i, now);
      if (oldest == CM_NO_SLOT || spent > oldest_spent ||
          (spent == oldest_spent && r->seen < s->recs[oldest].seen)) {
        oldest = i;
        oldest_spent = spent;
      }
    }
    if (oldest == CM_NO_SLOT)
      return 0;
    r = &s->recs[oldest];
    s->big_bytes -= r->payload_len;
    free(r->data);
    r->data = NULL;
    n->st.payloads_forgotten++;
  }
  return 1;
}

/* Hold the payload of record i, fetched or sent: room made, copied,
 * counted. 0, CM_ELIMIT (no room: not held) or CM_ENOMEM. */
static int store_hold(cm_node_t *n, struct cm_ustore *s, uint32_t i,
                      const uint8_t *payload, uint32_t len, cm_time_t now) {
  struct cm_urec *r = &s->recs[i];
  if (!store_make_room(n, s, len, i, now))
    return CM_ELIMIT;
  r->data = malloc(len > 0 ? len : 1);
  if (r->data == NULL)
    return CM_ENOMEM;
  memcpy(r->data, payload, len);
  s->big_bytes += len;
  return 0;
}

/* Keep a new message in record *at; deliver and relay it unless it is a
 * reference still to fetch (pending). Returns 0, CM_ENOMEM or CM_ELIMIT
 * (too old for the buffer). */
static int store_accept(cm_node_t *n, struct cm_ustore *s, const struct uin *u,
                        uint64_t digest, cm_time_t now, uint32_t *at) {
  struct cm_urec *r;
  uint32_t i;
  size_t bytes = (size_t)u->payload_len + u->filter_len;
  if (s->recs == NULL) {
    s->recs = calloc(n->cfg.user_event_buffer, sizeof(*s->recs));
    if (s->recs == NULL)
      return CM_ENOMEM;
  }
  i = store_place(n, s, u->ltime);
  if (i == CM_NO_SLOT)
    return CM_ELIMIT;
  r = &s->recs[i];
  if (u->big) {
    r->big = 1;
    r->pdigest = u->pdigest;
    r->payload_len = u->payload_len;
    ref_encode(r->ref, u->payload_len, u->pdigest);
    if (u->payload == NULL) {
      r->pending = 1;
    } else if (store_hold(n, s, i, u->payload, u->payload_len, now) != 0) {
      memset(r, 0, sizeof(*r));
      return CM_ENOMEM;
    }
  } else if (bytes > 0) {
    r->data = malloc(bytes);
    if (r->data == NULL)
      return CM_ENOMEM;
    if (u->payload_len > 0)
      memcpy(r->data, u->payload, u->payload_len);
    if (u->filter_len > 0)
      memcpy(r->data + u->payload_len, u->filter, u->filter_len);
  }
  r->in_use = 1;
  r->ltime = u->ltime;
  r->digest = digest;
  r->flags = u->flags;
  r->synced = u->synced;
  r->name_len = u->name_len;
  memcpy(r->name, u->name, u->name_len);
  r->name[u->name_len] = '\0';
  r->origin_len = u->origin->len;
  memcpy(r->origin, u->origin->s, u->origin->len + 1u);
  r->payload_len = u->payload_len;
  r->filter_len = u->filter_len;
  r->seen = now;
  if (u->q != NULL) {
    r->qid = u->q->qid;
    r->origin_addr = u->q->origin_addr;
    r->relay = u->q->relay;
    r->timeout_ms = u->q->timeout_ms;
    r->deadline = now + (cm_time_t)u->q->timeout_ms * 1000;
  }
  s->n++;
  if (at != NULL)
    *at = i;
  if (!r->pending)
    store_announce(n, s, i, r->data, now);
  return 0;
}

static void fetch_start(cm_node_t *n, uint32_t rec, const cm_addr_t *from);

/* A message from the network: the clock, staleness, copies, the origin's
 * budget, then keep it. */
static void store_receive(cm_node_t *n, struct cm_ustore *s,
                          const struct uin *u, int synced, cm_time_t now) {
  uint64_t digest;
  uint32_t i;
  int rc;
  if (u->ltime >= CM_UEV_LTIME_ACCEPT) {
    s->count->drop_ltime++;
    return;
  }
  if (u->big
          ? u->payload_len == 0 || u->payload_len > n->cfg.max_user_event_stream
          : (size_t)u->name_len + u->payload_len + u->filter_len >
                n->cfg.max_user_event_size) {
    s->count->drop_size++;
    return;
  }
  /* Witness: our next one comes after this one. */
  if (u->ltime >= s->clock)
    s->clock = u->ltime + 1;
  if (s->clock > n->cfg.user_event_buffer &&
      u->ltime < s->clock - n->cfg.user_event_buffer) {
    s->count->drop_old++;
    return;
  }
  digest = uin_digest(u);
  if (s->recs != NULL)
    for (i = 0; i < n->cfg.user_event_buffer; i++)
      if (urec_same(&s->recs[i], u, digest)) {
        s->count->duplicate++;
        /* A fresh copy still going round: the event is news to whoever
         * joined meanwhile, so pass it on as such. */
        if (!synced)
          s->recs[i].synced = 0;
        /* Another member has it: one more place to fetch it from. */
        if (s->recs[i].pending && u->from != NULL)
          fetch_start(n, i, u->from);
        return;
      }
  /* Re-sent by anti-entropy: bounded by their own budget (one buffer a
   * push-pull interval), not the origin's, which a burst of re-sent
   * events would exhaust though the origin kept to its rate. */
  if (synced) {
    double cap = (double)n->cfg.user_event_buffer;
    cm_time_t interval = cm_pushpull_scaled(&n->cfg, cm_node__live_count(n));
    if (now > s->sync_ts) {
      s->sync_tokens +=
          cap * (double)(now - s->sync_ts) / (double)(interval ? interval : 1);
      if (s->sync_tokens > cap)
        s->sync_tokens = cap;
      s->sync_ts = now;
    }
    if (s->sync_tokens < 1.0) {
      n->st.drop_sync_rate++;
      return;
    }
    s->sync_tokens -= 1.0;
  } else if (!origin_allows(n, s, u->origin, now)) {
    s->count->drop_rate++;
    return;
  }
  rc = store_accept(n, s, u, digest, now, &i);
  if (rc == CM_ELIMIT)
    s->count->drop_old++;
  else if (rc == 0 && s->recs[i].pending)
    fetch_start(n, i, u->from);
}

/* A message of this node's: the checks a sender gets errors for, then
 * keep it at the clock's time. */
static int store_send(cm_node_t *n, struct cm_ustore *s, struct uin *u,
                      cm_time_t now) {
  cm_member_t *self = cm_node__self(n);
  cm_wire_id_t origin;
  int rc;
  if (!cm_event_name_valid((const char *)u->name, u->name_len) ||
      (u->payload == NULL && u->payload_len > 0) ||
      (u->filter == NULL && u->filter_len > 0))
    return CM_EINVAL;
  if (!u->big && (size_t)u->name_len + u->payload_len + u->filter_len >
                     n->cfg.max_user_event_size)
    return CM_ETOOBIG;
  if (n->leaving)
    return CM_ESTATE;
  if (s->clock >= CM_UEV_LTIME_MAX)
    return CM_ELIMIT;
  /* A large payload does not push out one of ours still being passed on:
   * the sender is the source of last resort (wait, and send again). */
  if (u->big && !store_room_for(n, s, u->payload_len, now))
    return CM_ELIMIT;
  if (!bucket_take(&s->tokens, &s->ts, (double)n->cfg.user_event_rate, now))
    return CM_ELIMIT;
  cm_wire_id_set(&origin, cm_member_id(self), self->id_len);
  u->ltime = s->clock;
  u->origin = &origin;
  rc = store_accept(n, s, u, uin_digest(u), now, NULL);
  if (rc != 0) {
    s->tokens += 1.0; /* nothing was sent */
    return rc == CM_ELIMIT ? CM_ENOMEM : rc;
  }
  s->clock++;
  s->count->sent++;
  return 0;
}

/* ----------------------------------------------------------- user events */

/* How far back anti-entropy reaches: two push-pull intervals. */
cm_time_t cm_node__sync_window(const cm_node_t *n) {
  return 2 * cm_pushpull_scaled(&n->cfg, cm_node__live_count(n));
}

void cm_node__on_user_event(cm_node_t *n, const cm_addr_t *from,
                            const cm_msg_t *msg, cm_time_t now) {
  const cm_msg_user_event_t *e = &msg->u.uev;
  struct uin u;
  /* A newcomer gets no replay of what was sent before it joined: during
   * its first sync window it cannot tell such an event from one it missed,
   * so it takes events from gossip only. */
  if ((e->flags & CM_UEV_SYNCED) && n->joined_at != 0 &&
      now - n->joined_at < cm_node__sync_window(n)) {
    n->st.events_before_join++;
    return;
  }
  memset(&u, 0, sizeof(u));
  u.ltime = e->ltime;
  u.origin = &e->origin;
  u.flags = e->flags & (uint8_t)~CM_UEV_SYNCED;
  u.synced = (e->flags & CM_UEV_SYNCED) != 0;
  u.name = e->name;
  u.name_len = e->name_len;
  u.payload = e->payload;
  u.payload_len = e->payload_len;
  if (msg->type == CM_MSG_USER_EVENT_REF) {
    /* The payload's size and digest; the payload itself is fetched. */
    if (e->payload_len != CM_UEV_REF_LEN) {
      n->st.user_events.drop_size++;
      return;
    }
    u.big = 1;
    u.payload = NULL;
    ref_decode(e->payload, &u.payload_len, &u.pdigest);
    u.from = from;
  }
  store_receive(n, &n->ue, &u, (e->flags & CM_UEV_SYNCED) != 0, now);
}

int cm_node_send_user_event(cm_node_t *n, const char *name, size_t name_len,
                            const uint8_t *payload, size_t payload_len,
                            int coalesce, cm_time_t now, uint64_t *ltime) {
  struct uin u;
  int rc;
  if (n == NULL || name_len > CM_WIRE_MAX_EVENT_NAME)
    return CM_EINVAL;
  if (payload == NULL && payload_len > 0)
    return CM_EINVAL;
  memset(&u, 0, sizeof(u));
  /* Too large for a datagram: its reference is gossiped, the payload
   * fetched on streams. */
  if (name_len + payload_len > n->cfg.max_user_event_size) {
    /* (A name alone over the limit has nothing to put on a stream.) */
    if (payload_len == 0 || payload_len > n->cfg.max_user_event_stream)
      return CM_ETOOBIG;
    u.big = 1;
    u.pdigest = fnv(FNV_BASIS, payload, payload_len);
  }
  u.flags = coalesce ? CM_UEV_COALESCE : 0;
  u.name = (const uint8_t *)name;
  u.name_len = (uint8_t)name_len;
  u.payload = payload_len > 0 ? payload : NULL;
  u.payload_len = (uint32_t)payload_len;
  rc = store_send(n, &n->ue, &u, now);
  if (rc == 0 && ltime != NULL)
    *ltime = u.ltime;
  return rc;
}

/* --------------------------------------------------------------- queries */

void cm_node__on_query(cm_node_t *n, const cm_msg_query_t *q, cm_time_t now) {
  struct uin u;
  int32_t slot = cm_registry_find(&n->reg, q->origin.s, q->origin.len);
  /* Answers go to origin_addr: only to the address of the live member that
   * asked, or a query could aim every member's answers at any host. */
  if (slot < 0 || !cm_node__live(cm_node__m(n, (uint32_t)slot)) ||
      !cm_addr_eq(&cm_node__m(n, (uint32_t)slot)->addr, &q->origin_addr)) {
    n->st.drop_query_origin++;
    return;
  }
  memset(&u, 0, sizeof(u));
  u.ltime = q->ltime;
  u.origin = &q->origin;
  u.flags = q->flags;
  u.name = q->name;
  u.name_len = q->name_len;
  u.payload = q->payload;
  u.payload_len = q->payload_len;
  u.filter = q->filter;
  u.filter_len = q->filter_len;
  u.q = q;
  store_receive(n, &n->qs, &u, 0, now);
}

static struct cm_qout *qout_find(cm_node_t *n, uint32_t qid) {
  size_t i;
  for (i = 0; i < CM_QUERIES_MAX; i++)
    if (n->qout[i].active && n->qout[i].qid == qid)
      return &n->qout[i];
  return NULL;
}

int cm_node_query(cm_node_t *n, const char *name, size_t name_len,
                  const uint8_t *filter, size_t filter_len,
                  const uint8_t *payload, size_t payload_len, int want_ack,
                  uint8_t relay, cm_time_t timeout, cm_time_t now,
                  uint32_t *qid) {
  cm_msg_query_t q;
  struct cm_qout *slot = NULL;
  struct uin u;
  size_t i;
  int rc;
  if (n == NULL || name_len > CM_WIRE_MAX_EVENT_NAME ||
      relay > CM_WIRE_MAX_QUERY_RELAY || filter_len > CM_WIRE_MAX_QUERY_FILTER)
    return CM_EINVAL;
  if (payload_len > UINT16_MAX)
    return CM_ETOOBIG;
  if (timeout == 0)
    timeout = cm_query_timeout(&n->cfg, cm_node__live_count(n));
  if (timeout > CM_SEC(3600))
    return CM_EINVAL;
  for (i = 0; i < CM_QUERIES_MAX && slot == NULL; i++)
    if (!n->qout[i].active)
      slot = &n->qout[i];
  if (slot == NULL)
    return CM_ELIMIT;
  memset(&q, 0, sizeof(q));
  do
    q.qid = cm_rand_next(&n->rng) & UINT32_MAX;
  while (q.qid == 0 || qout_find(n, q.qid) != NULL);
  q.origin_addr = cm_node__self(n)->addr;
  q.flags = want_ack ? CM_QUERY_WANT_ACK : 0;
  q.relay = relay;
  q.timeout_ms = (uint32_t)((timeout + 999) / 1000);
  memset(&u, 0, sizeof(u));
  u.flags = q.flags;
  u.name = (const uint8_t *)name;
  u.name_len = (uint8_t)name_len;
  u.payload = payload_len > 0 ? payload : NULL;
  u.payload_len = (uint16_t)payload_len;
  u.filter = filter_len > 0 ? filter : NULL;
  u.filter_len = (uint16_t)filter_len;
  u.q = &q;
  if ((payload == NULL && payload_len > 0) || (filter == NULL && filter_len))
    return CM_EINVAL;
  /* In flight before it is delivered here: our own answer may come at
   * once. */
  free(slot->seen);
  memset(slot, 0, sizeof(*slot));
  slot->active = 1;
  slot->qid = q.qid;
  slot->ltime = n->qs.clock;
  slot->deadline = now + timeout;
  rc = store_send(n, &n->qs, &u, now);
  if (rc != 0) {
    slot->active = 0;
    return rc;
  }
  if (qid != NULL)
    *qid = q.qid;
  return 0;
}

/* Record that `from` answered (acks and responses apart); 0 if it had. */
static int qout_note(struct cm_qout *q, const cm_wire_id_t *from, int ack) {
  uint64_t h = cm_id_hash(from->s, from->len) * 2u + (ack ? 1u : 0u), *t;
  uint32_t i, cap;
  if (h == 0)
    h = 2;
  if (q->seen_n * 2 >= q->seen_cap) {
    cap = q->seen_cap ? q->seen_cap * 2 : 16;
    t = calloc(cap, sizeof(*t));
    if (t == NULL)
      return 1; /* without memory, a repeat may go through: never a loss */
    for (i = 0; i < q->seen_cap; i++) {
      uint32_t j = (uint32_t)(q->seen[i] & (cap - 1));
      if (q->seen[i] == 0)
        continue;
      while (t[j] != 0)
        j = (j + 1) & (cap - 1);
      t[j] = q->seen[i];
    }
    free(q->seen);
    q->seen = t;
    q->seen_cap = cap;
  }
  for (i = (uint32_t)(h & (q->seen_cap - 1)); q->seen[i] != 0;
       i = (i + 1) & (q->seen_cap - 1))
    if (q->seen[i] == h)
      return 0;
  q->seen[i] = h;
  q->seen_n++;
  return 1;
}

/* An answer to one of our queries, from a datagram or a stream (whose
 * payload may be up to `limit`): delivered once per member and kind. */
static void reply_take(cm_node_t *n, const cm_wire_sreply_t *r, size_t limit,
                       cm_time_t now) {
  struct cm_qout *q = qout_find(n, r->qid);
  cm_app_msg_t m;
  int ack = (r->flags & CM_QRESP_ACK) != 0;
  if (q == NULL || q->ltime != r->ltime || now >= q->deadline ||
      (ack && r->payload_len > 0) || r->payload_len > limit) {
    n->st.drop_reply++;
    return;
  }
  /* From members only, and no more than two a member: forged answers can
   * neither speak for others nor grow the answer set without bound. */
  if (cm_registry_find(&n->reg, r->from.s, r->from.len) < 0 ||
      q->seen_n >= 2 * n->reg.count) {
    n->st.drop_reply++;
    return;
  }
  if (!qout_note(q, &r->from, ack)) {
    n->st.reply_duplicate++;
    return;
  }
  memset(&m, 0, sizeof(m));
  m.kind = CM_APP_REPLY;
  m.flags = ack ? CM_APP_ACK : 0;
  m.qid = r->qid;
  m.ltime = r->ltime;
  memcpy(m.node, r->from.s, r->from.len + 1u);
  m.payload = r->payload;
  m.payload_len = r->payload_len;
  m.time = now;
  n->st.replies_in++;
  app_push(n, &m, 0);
}

static void sreply_of(cm_wire_sreply_t *out, const cm_msg_qresp_t *r) {
  memset(out, 0, sizeof(*out));
  out->ltime = r->ltime;
  out->qid = r->qid;
  out->from = r->from;
  out->flags = r->flags;
  out->payload_len = r->payload_len;
  out->payload = r->payload;
}

void cm_node__on_reply(cm_node_t *n, const cm_msg_qresp_t *r, cm_time_t now) {
  cm_wire_sreply_t s;
  sreply_of(&s, r);
  reply_take(n, &s, n->cfg.max_user_event_size, now);
}

int cm_node__on_sreply(cm_node_t *n, const uint8_t *req, size_t len,
                       uint8_t **reply, size_t *reply_len, cm_time_t now) {
  cm_wire_sreply_t r;
  cm_wbuf_t w;
  int rc = cm_wire_sreply_decode(req, len, &r);
  if (rc != 0) {
    n->st.drop_reply++;
    return rc;
  }
  reply_take(n, &r, n->cfg.max_user_event_stream, now);
  w.cap = CM_WIRE_REPLIED_LEN;
  w.len = 0;
  w.p = malloc(w.cap);
  if (w.p == NULL)
    return CM_ENOMEM;
  cm_wire_replied_encode(&w);
  *reply = w.p;
  *reply_len = w.len;
  return 0;
}

/* Our answers in flight on streams, by request id: their end is theirs,
 * not a push-pull's. */
int cm_node__sreply_done(cm_node_t *n, uint64_t req_id, int failed) {
  size_t i;
  if (req_id == 0)
    return CM_ENOENT;
  for (i = 0; i < CM_SREPLY_MAX; i++)
    if (n->sreply_req[i] == req_id) {
      n->sreply_req[i] = 0;
      if (failed)
        n->st.reply_stream_failed++;
      return 0;
    }
  return CM_ENOENT;
}

/* Send an answer too large for a datagram to the origin on a stream. */
static int sreply_send(cm_node_t *n, const cm_addr_t *to,
                       const cm_wire_sreply_t *r) {
  cm_wbuf_t w;
  uint64_t req;
  w.cap = cm_wire_sreply_size(r);
  w.len = 0;
  w.p = malloc(w.cap);
  if (w.p == NULL)
    return CM_ENOMEM;
  if (cm_wire_sreply_encode(&w, r) != 0) {
    free(w.p);
    return CM_EINVAL;
  }
  req = cm_node__stream_out(n, to, w.p, w.len, 0);
  if (req == 0)
    return CM_ENOMEM;
  n->sreply_req[n->sreply_next++ % CM_SREPLY_MAX] = req;
  n->st.replies_streamed++;
  return 0;
}

void cm_node__on_relay(cm_node_t *n, const cm_msg_qrelay_t *r) {
  cm_msg_t out;
  /* Only to a live member: a relay must not reflect to any address. */
  if (!cm_node_has_member_at(n, &r->target) ||
      r->resp.payload_len > n->cfg.max_user_event_size) {
    n->st.drop_relay++;
    return;
  }
  memset(&out, 0, sizeof(out));
  out.type = CM_MSG_QUERY_RESPONSE;
  out.u.qresp = r->resp;
  n->st.replies_relayed++;
  cm_node__send(n, &r->target, &out, 1);
}

static struct cm_urec *query_find(cm_node_t *n, const char *origin,
                                  size_t origin_len, uint32_t qid) {
  uint32_t i;
  if (n->qs.recs == NULL)
    return NULL;
  for (i = 0; i < n->cfg.user_event_buffer; i++) {
    struct cm_urec *r = &n->qs.recs[i];
    if (r->in_use && r->qid == qid && r->origin_len == origin_len &&
        memcmp(r->origin, origin, origin_len) == 0)
      return r;
  }
  return NULL;
}

int cm_node_query_respond(cm_node_t *n, const char *origin, uint32_t qid,
                          int ack, const uint8_t *payload, size_t payload_len,
                          cm_time_t now) {
  size_t origin_len = origin != NULL ? strnlen(origin, CM_ID_MAX + 1) : 0;
  uint8_t done = ack ? CM_QRESP_ACK : URESP_DONE;
  uint32_t helpers[CM_WIRE_MAX_QUERY_RELAY];
  cm_member_t *self;
  struct cm_urec *r;
  cm_msg_t msg;
  size_t k, i;
  if (n == NULL || !cm_id_valid(origin, origin_len) ||
      (payload == NULL && payload_len > 0) || (ack && payload_len > 0))
    return CM_EINVAL;
  if (payload_len > n->cfg.max_user_event_size &&
      payload_len > n->cfg.max_user_event_stream)
    return CM_ETOOBIG;
  if (n->leaving)
    return CM_ESTATE;
  r = query_find(n, origin, origin_len, qid);
  if (r == NULL)
    return CM_ENOENT;
  if (now >= r->deadline)
    return CM_ETIMEDOUT;
  if (r->answered & done)
    return CM_EEXIST;
  r->answered |= done;
  self = cm_node__self(n);
  memset(&msg, 0, sizeof(msg));
  msg.type = CM_MSG_QUERY_RESPONSE;
  msg.u.qresp.ltime = r->ltime;
  msg.u.qresp.qid = qid;
  cm_wire_id_set(&msg.u.qresp.from, cm_member_id(self), self->id_len);
  msg.u.qresp.flags = ack ? CM_QRESP_ACK : 0;
  msg.u.qresp.payload = payload_len > 0 ? payload : NULL;
  msg.u.qresp.payload_len = (uint16_t)payload_len;
  if (payload_len > n->cfg.max_user_event_size) {
    /* Too large for a datagram: on a stream, to the origin only. */
    cm_wire_sreply_t big;
    sreply_of(&big, &msg.u.qresp);
    big.payload_len = (uint32_t)payload_len;
    n->st.replies_sent++;
    if (origin_len == self->id_len &&
        memcmp(origin, cm_member_id(self), origin_len) == 0) {
      reply_take(n, &big, n->cfg.max_user_event_stream, now);
      return 0;
    }
    return sreply_send(n, &r->origin_addr, &big);
  }
  n->st.replies_sent++;
  if (origin_len == self->id_len &&
      memcmp(origin, cm_member_id(self), origin_len) == 0) {
    cm_node__on_reply(n, &msg.u.qresp, now); /* our own query */
    return 0;
  }
  cm_node__send(n, &r->origin_addr, &msg, 1);
  /* The same through `relay` other members, in case the way from here to
   * the origin is the one that fails. */
  k = cm_node__pick(n, r->relay, cm_node__filter_alive, CM_NO_SLOT, now,
                    helpers);
  for (i = 0; i < k; i++) {
    cm_msg_t rel;
    if (cm_addr_eq(&cm_node__m(n, helpers[i])->addr, &r->origin_addr))
      continue;
    memset(&rel, 0, sizeof(rel));
    rel.type = CM_MSG_QUERY_RELAY;
    rel.u.qrelay.target = r->origin_addr;
    rel.u.qrelay.resp = msg.u.qresp;
    cm_node__send(n, &cm_node__m(n, helpers[i])->addr, &rel, 1);
  }
  return 0;
}

void cm_node__queries_expire(cm_node_t *n, cm_time_t now) {
  size_t i;
  for (i = 0; i < CM_QUERIES_MAX; i++) {
    struct cm_qout *q = &n->qout[i];
    cm_app_msg_t m;
    if (!q->active || now < q->deadline)
      continue;
    memset(&m, 0, sizeof(m));
    m.kind = CM_APP_QUERY_DONE;
    m.qid = q->qid;
    m.ltime = q->ltime;
    m.time = now;
    app_push(n, &m, 1);
    free(q->seen);
    memset(q, 0, sizeof(*q));
  }
}

cm_time_t cm_node__queries_deadline(const cm_node_t *n) {
  cm_time_t d = CM_TIME_NEVER;
  size_t i;
  for (i = 0; i < CM_QUERIES_MAX; i++)
    if (n->qout[i].active && n->qout[i].deadline < d)
      d = n->qout[i].deadline;
  return d;
}

/* ------------------------------------------------------------- relaying */

static int urec_msg(const struct cm_ustore *s, uint32_t cap,
                    const cm_bcast_item_t *it, cm_msg_t *msg) {
  const struct cm_urec *r;
  if (s->recs == NULL || it->key >= cap || !s->recs[it->key].in_use)
    return 0;
  r = &s->recs[it->key];
  memset(msg, 0, sizeof(*msg));
  msg->type = s->type;
  if (s->type == CM_MSG_USER_EVENT) {
    cm_msg_user_event_t *e = &msg->u.uev;
    e->ltime = r->ltime;
    cm_wire_id_set(&e->origin, r->origin, r->origin_len);
    e->flags = r->flags;
    /* What anti-entropy brought stays marked as it travels on: a newcomer
     * must not take an event sent before it joined for a fresh one. */
    if (r->synced)
      e->flags |= CM_UEV_SYNCED;
    e->name = (const uint8_t *)r->name;
    e->name_len = r->name_len;
    e->payload = r->payload_len > 0 ? r->data : NULL;
    e->payload_len = (uint16_t)r->payload_len;
    if (r->big) {
      /* Told on only once fetched here (those told fetch from us); still
       * told on once forgotten, since others hold it (its origin, first). */
      if (r->pending)
        return 0;
      msg->type = CM_MSG_USER_EVENT_REF;
      e->payload = r->ref;
      e->payload_len = CM_UEV_REF_LEN;
    }
  } else {
    cm_msg_query_t *q = &msg->u.qry;
    q->ltime = r->ltime;
    q->qid = r->qid;
    cm_wire_id_set(&q->origin, r->origin, r->origin_len);
    q->origin_addr = r->origin_addr;
    q->flags = r->flags;
    q->relay = r->relay;
    q->timeout_ms = r->timeout_ms;
    q->filter = urec_filter(r);
    q->filter_len = r->filter_len;
    if (r->filter_len == 0)
      q->filter = NULL;
    q->name = (const uint8_t *)r->name;
    q->name_len = r->name_len;
    q->payload = r->payload_len > 0 ? r->data : NULL;
    q->payload_len = (uint16_t)r->payload_len;
  }
  return 1;
}

/* How many times each node relays an event or a query: twice what it does
 * for membership news. Nothing repairs a missed application message later
 * (push-pull carries membership only), so each is sent more; they are rare
 * beside probes, and each member stops relaying one after a second or two. */
uint32_t cm_node__app_limit(const cm_node_t *n) {
  uint32_t limit = 2 * cm_retransmit_limit(&n->cfg, n->reg.count);
  return limit < CM_BCAST_MAX_TX ? limit : CM_BCAST_MAX_TX;
}

struct piggy {
  cm_node_t *n;
  const struct cm_ustore *s;
};

static size_t urec_size(void *ud, const cm_bcast_item_t *it) {
  struct piggy *p = ud;
  cm_msg_t msg;
  if (!urec_msg(p->s, p->n->cfg.user_event_buffer, it, &msg))
    return 0;
  return cm_wire_msg_size(&msg);
}

static void store_piggyback(cm_node_t *n, struct cm_ustore *s, cm_wbuf_t *w,
                            size_t max_msgs) {
  cm_bcast_item_t items[CM_PIGGYBACK_MAX];
  struct piggy p = {n, s};
  size_t k, i;
  if (cm_bcast_len(&s->relay) == 0 || max_msgs == 0)
    return;
  if (max_msgs > CM_PIGGYBACK_MAX)
    max_msgs = CM_PIGGYBACK_MAX;
  k = cm_bcast_take(&s->relay, w->cap - w->len, cm_node__app_limit(n),
                    urec_size, &p, items, max_msgs);
  for (i = 0; i < k; i++) {
    cm_msg_t msg;
    if (urec_msg(s, n->cfg.user_event_buffer, &items[i], &msg))
      cm_wire_packet_add(w, &msg);
  }
}

void cm_node__uev_piggyback(cm_node_t *n, cm_wbuf_t *w, size_t max_msgs) {
  /* Queries first: they wait on answers, events on nothing. */
  store_piggyback(n, &n->qs, w, max_msgs);
  store_piggyback(n, &n->ue, w,
                  CM_PIGGYBACK_MAX > cm_wire_packet_count(w)
                      ? CM_PIGGYBACK_MAX - cm_wire_packet_count(w)
                      : 0);
}

/* ------------------------------------------------------------ clocks */

static void put_u64(uint8_t *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

int cm_node__clocks(const cm_node_t *n, uint8_t out[CM_PP_CLOCKS_LEN]) {
  if (n->ue.clock == 0 && n->qs.clock == 0)
    return 0;
  put_u64(out, n->ue.clock);
  put_u64(out + 8, n->qs.clock);
  return 1;
}

static void witness(struct cm_ustore *s, uint64_t clock) {
  if (clock < CM_UEV_LTIME_ACCEPT && clock > s->clock)
    s->clock = clock;
}

void cm_node__witness_clocks(cm_node_t *n, const uint8_t *in) {
  witness(&n->ue, get_u64(in));
  witness(&n->qs, get_u64(in + 8));
}

/* ------------------------------------------------------- anti-entropy */

void cm_node__app_sync(cm_node_t *n, const cm_addr_t *from, cm_time_t now) {
  const struct cm_ustore *s = &n->ue;
  cm_msg_t msgs[CM_PIGGYBACK_MAX];
  size_t k = 0, room = 0, hdr = 3 + 2; /* one message's and the packet's */
  cm_time_t window = cm_node__sync_window(n);
  uint32_t i;
  if (s->recs == NULL || n->leaving || !cm_node_has_member_at(n, from))
    return;
  for (i = 0; i < n->cfg.user_event_buffer; i++) {
    const struct cm_urec *r = &s->recs[i];
    cm_bcast_item_t it;
    cm_msg_t m;
    size_t size;
    if (!r->in_use || now - r->seen > window)
      continue;
    memset(&it, 0, sizeof(it));
    it.key = i;
    if (!urec_msg(s, n->cfg.user_event_buffer, &it, &m))
      continue;
    m.u.uev.flags |= CM_UEV_SYNCED;
    size = cm_wire_msg_size(&m);
    /* A full packet goes before this one is added to the next. */
    if (k == CM_PIGGYBACK_MAX ||
        (k > 0 && room + size + hdr > n->cfg.max_packet_size)) {
      cm_node__send(n, from, msgs, k);
      k = 0;
      room = 0;
    }
    msgs[k++] = m;
    room += size;
    n->st.events_synced++;
  }
  if (k > 0)
    cm_node__send(n, from, msgs, k);
}

/* ------------------------------------------- payloads on streams: fetch */

/* Whether f still stands for a record waiting for its payload. */
static int fetch_live(const cm_node_t *n, const struct cm_fetch *f) {
  const struct cm_urec *r;
  if (!f->active || n->ue.recs == NULL || f->rec >= n->cfg.user_event_buffer)
    return 0;
  r = &n->ue.recs[f->rec];
  return r->in_use && r->pending && r->ltime == f->ltime &&
         r->digest == f->digest;
}

/* Ask the next source for the payload; none left: idle until another
 * member tells us of the event. */
static void fetch_next(cm_node_t *n, struct cm_fetch *f) {
  const struct cm_urec *r = &n->ue.recs[f->rec];
  cm_wire_id_t origin;
  f->req_id = 0;
  while (f->next < f->nsrc) {
    const cm_addr_t *to = &f->src[f->next++];
    cm_wbuf_t w;
    w.cap = 3 + 8 + 1 + CM_ID_MAX + 8;
    w.len = 0;
    w.p = malloc(w.cap);
    if (w.p == NULL)
      return;
    if (cm_wire_id_set(&origin, r->origin, r->origin_len) != 0 ||
        cm_wire_fetch_encode(&w, r->ltime, &origin, r->pdigest) != 0) {
      free(w.p);
      return;
    }
    f->req_id = cm_node__stream_out(n, to, w.p, w.len, 0);
    return;
  }
}

static void fetch_add_source(struct cm_fetch *f, const cm_addr_t *a) {
  uint8_t i;
  for (i = 0; i < f->nsrc; i++)
    if (cm_addr_eq(&f->src[i], a)) {
      /* Tried and failed, and it tells us again: try it again. */
      if (f->req_id == 0 && i < f->next)
        f->next = i;
      return;
    }
  /* Full: the oldest source already tried makes room, so a member that
   * holds the payload is never shut out by ones that did not. */
  if (f->nsrc == CM_FETCH_SOURCES && f->next > 0) {
    memmove(&f->src[0], &f->src[1], (CM_FETCH_SOURCES - 1) * sizeof(f->src[0]));
    f->nsrc--;
    f->next--;
  }
  if (f->nsrc < CM_FETCH_SOURCES)
    f->src[f->nsrc++] = *a;
}

/* Fetch record rec's payload from `from`, which told us of it, then from
 * the others that do and from its origin. At most CM_FETCH_MAX at once: an
 * entry whose record is gone, or that has tried every source, makes room;
 * past that the reference is counted (fetch_busy) and a later copy of it
 * starts the fetch. */
static void fetch_start(cm_node_t *n, uint32_t rec, const cm_addr_t *from) {
  const struct cm_urec *r = &n->ue.recs[rec];
  struct cm_fetch *f = NULL, *room = NULL;
  int32_t slot;
  size_t i;
  for (i = 0; i < CM_FETCH_MAX; i++) {
    struct cm_fetch *g = &n->fetch[i];
    if (g->active && !fetch_live(n, g))
      memset(g, 0, sizeof(*g));
    if (g->active && g->rec == rec)
      f = g;
    else if (!g->active && room == NULL)
      room = g;
  }
  for (i = 0; f == NULL && room == NULL && i < CM_FETCH_MAX; i++)
    if (n->fetch[i].req_id == 0 && n->fetch[i].next >= n->fetch[i].nsrc)
      room = &n->fetch[i];
  if (f == NULL) {
    if (room == NULL) {
      n->st.fetch_busy++;
      return;
    }
    f = room;
    memset(f, 0, sizeof(*f));
    f->active = 1;
    f->rec = rec;
    f->ltime = r->ltime;
    f->digest = r->digest;
  }
  if (from != NULL)
    fetch_add_source(f, from);
  /* The origin holds it too, unless it has had to forget it since. */
  slot = cm_registry_find(&n->reg, r->origin, r->origin_len);
  if (slot >= 0 && (uint32_t)slot != n->self &&
      cm_node__live(cm_node__m(n, (uint32_t)slot)))
    fetch_add_source(f, &cm_node__m(n, (uint32_t)slot)->addr);
  if (f->req_id == 0)
    fetch_next(n, f);
}

static struct cm_fetch *fetch_by_req(cm_node_t *n, uint64_t req_id) {
  size_t i;
  if (req_id == 0)
    return NULL;
  for (i = 0; i < CM_FETCH_MAX; i++)
    if (n->fetch[i].active && n->fetch[i].req_id == req_id)
      return &n->fetch[i];
  return NULL;
}

int cm_node__fetch_reply(cm_node_t *n, uint64_t req_id, const uint8_t *buf,
                         size_t len, cm_time_t now) {
  struct cm_fetch *f = fetch_by_req(n, req_id);
  struct cm_urec *r;
  const uint8_t *payload;
  uint32_t plen;
  uint8_t status;
  int rc;
  if (f == NULL)
    return CM_ENOENT;
  f->req_id = 0;
  if (!fetch_live(n, f)) {
    memset(f, 0, sizeof(*f));
    return 0;
  }
  r = &n->ue.recs[f->rec];
  rc = buf != NULL ? cm_wire_fetched_decode(buf, len, &status, &payload, &plen)
                   : CM_EINVAL;
  if (rc == 0 && status == CM_FETCH_HELD &&
      (plen != r->payload_len || fnv(FNV_BASIS, payload, plen) != r->pdigest))
    rc = CM_EBADMSG; /* not the payload the reference names */
  if (rc == 0 && status == CM_FETCH_HELD) {
    rc = store_hold(n, &n->ue, f->rec, payload, plen, now);
    if (rc == CM_ELIMIT) {
      /* No room beside what must be kept: delivered all the same, and
       * passed on for others to fetch elsewhere. */
      n->st.payloads_forgotten++;
      r->data = NULL;
      rc = 0;
    }
    if (rc == 0) {
      r->pending = 0;
      n->st.events_fetched++;
      memset(f, 0, sizeof(*f));
      store_announce(n, &n->ue, (uint32_t)(r - n->ue.recs), payload, now);
      return 0;
    }
  }
  n->st.fetch_failed++;
  fetch_next(n, f);
  return rc;
}

int cm_node__fetch_failed(cm_node_t *n, uint64_t req_id, cm_time_t now) {
  struct cm_fetch *f = fetch_by_req(n, req_id);
  (void)now;
  if (f == NULL)
    return CM_ENOENT;
  n->st.fetch_failed++;
  if (fetch_live(n, f))
    fetch_next(n, f);
  else
    memset(f, 0, sizeof(*f));
  return 0;
}

/* ------------------------------------------- payloads on streams: serve */

int cm_node__on_fetch(cm_node_t *n, const uint8_t *req, size_t len,
                      uint8_t **reply, size_t *reply_len) {
  const struct cm_ustore *s = &n->ue;
  const struct cm_urec *found = NULL;
  cm_wire_id_t origin;
  uint64_t ltime, digest;
  cm_wbuf_t w;
  uint32_t i;
  int rc = cm_wire_fetch_decode(req, len, &ltime, &origin, &digest);
  if (rc != 0) {
    n->st.drop_pushpull++;
    return rc;
  }
  for (i = 0; s->recs != NULL && i < n->cfg.user_event_buffer; i++) {
    const struct cm_urec *r = &s->recs[i];
    if (r->in_use && r->big && !r->pending && r->data != NULL &&
        r->ltime == ltime && r->pdigest == digest &&
        r->origin_len == origin.len &&
        memcmp(r->origin, origin.s, origin.len) == 0) {
      found = r;
      break;
    }
  }
  w.cap = CM_WIRE_FETCHED_HDR + (found != NULL ? found->payload_len : 0);
  w.len = 0;
  w.p = malloc(w.cap);
  if (w.p == NULL)
    return CM_ENOMEM;
  rc = found != NULL ? cm_wire_fetched_encode(&w, CM_FETCH_HELD, found->data,
                                              found->payload_len)
                     : cm_wire_fetched_encode(&w, CM_FETCH_NOT_HELD, NULL, 0);
  if (rc != 0) {
    free(w.p);
    return rc;
  }
  if (found != NULL)
    n->st.events_served++;
  *reply = w.p;
  *reply_len = w.len;
  return 0;
}
