/*
 * What a node says and reports: membership events, the broadcast queue's
 * updates piggybacked on packets, the packets themselves, gossip, the
 * dispatch of a received packet, and the queues the driver polls.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_merge.h"
#include "cm_node_int.h"

/* Queue an event for the driver; past CM_EVENT_QUEUE_MAX waiting, it is
 * dropped and counted. */
void cm_node__event(cm_node_t *n, uint8_t type, const cm_member_t *m,
                    const cm_addr_t *other, cm_time_t now) {
  cm_event_t *ev;
  if (n->ev_len == n->ev_cap) {
    size_t ncap = n->ev_cap ? n->ev_cap * 2 : 64;
    cm_event_t *ne;
    size_t i;
    if (ncap > CM_EVENT_QUEUE_MAX ||
        (ne = malloc(ncap * sizeof(*ne))) == NULL) {
      n->st.events_dropped++;
      return;
    }
    for (i = 0; i < n->ev_len; i++)
      ne[i] = n->events[(n->ev_head + i) % n->ev_cap];
    free(n->events);
    n->events = ne;
    n->ev_cap = ncap;
    n->ev_head = 0;
  }
  ev = &n->events[(n->ev_head + n->ev_len) % n->ev_cap];
  n->ev_len++;
  memset(ev, 0, sizeof(*ev));
  ev->type = type;
  ev->state = m->state;
  memcpy(ev->id, cm_member_id(m), m->id_len + 1u);
  ev->addr = m->addr;
  if (other != NULL)
    ev->other_addr = *other;
  ev->incarnation = m->incarnation;
  ev->time = now;
  if (type == CM_EV_SUSPECT || type == CM_EV_FAILED ||
      type == CM_EV_RECOVERED || type == CM_EV_LEFT || type == CM_EV_JOINED)
    cm_node__hist_record(n, (uint32_t)(m - n->reg.m), type, now);
}

/* ------------------------------------------------------------ broadcasts */

static uint32_t node_retransmit_limit(const cm_node_t *n) {
  return cm_retransmit_limit(&n->cfg, n->reg.count);
}

/* Turn a queued reference into the message it stands for. Returns 0 if the
 * update can no longer be expressed (its subject or accuser is gone). */
static int node_item_msg(cm_node_t *n, const cm_bcast_item_t *it,
                         cm_msg_t *msg) {
  cm_member_t *m;
  if (it->key >= n->reg.high || !n->reg.m[it->key].in_use)
    return 0;
  m = cm_node__m(n, it->key);
  memset(msg, 0, sizeof(*msg));
  msg->type = it->kind;
  switch (it->kind) {
  case CM_MSG_ALIVE:
    cm_wire_id_set(&msg->u.alive.node, cm_member_id(m), m->id_len);
    msg->u.alive.incarnation = it->incarnation;
    msg->u.alive.addr = m->addr;
    msg->u.alive.tags = m->tags;
    msg->u.alive.tags_len = m->tags_len;
    cm_node__ext_of(m, &msg->u.alive.ext);
    return 1;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD: {
    cm_member_t *from;
    if (it->aux >= n->reg.high || !n->reg.m[it->aux].in_use)
      return 0;
    from = cm_node__m(n, it->aux);
    cm_wire_id_set(&msg->u.suspect.node, cm_member_id(m), m->id_len);
    msg->u.suspect.incarnation = it->incarnation;
    cm_wire_id_set(&msg->u.suspect.from, cm_member_id(from), from->id_len);
    return 1;
  }
  case CM_MSG_LEAVE:
    cm_wire_id_set(&msg->u.leave.node, cm_member_id(m), m->id_len);
    msg->u.leave.incarnation = it->incarnation;
    return 1;
  default:
    return 0;
  }
}

static size_t node_item_size(void *ud, const cm_bcast_item_t *it) {
  cm_msg_t msg;
  if (!node_item_msg((cm_node_t *)ud, it, &msg))
    return 0;
  return cm_wire_msg_size(&msg);
}

/* The gossip timer is idle while the queue is empty: cm_node_next_deadline
 * leaves it out and nobody ticks for it, so its deadline goes stale. News
 * that ends an idle spell restarts it due now: gossiped at once, as before,
 * but no longer reported as a deadline long past, which the tick would take
 * for a stall of this node. */
void cm_node__broadcast(cm_node_t *n, uint32_t slot, uint8_t kind, uint8_t prio,
                        uint32_t inc, uint32_t aux, cm_time_t now) {
  const cm_bcast_item_t *was = cm_bcast_peek_key(&n->bq, slot);
  /* A later alive record that supersedes a vital one (a refutation, then a
   * tag change) still clears what that one cleared; once: a third (another
   * tag change) goes the usual limit, so a chain of changes cannot keep
   * the doubled budget forever. */
  int vital = was != NULL && was->vital == CM_BCAST_VITAL_OWN &&
              was->kind == CM_MSG_ALIVE && kind == CM_MSG_ALIVE;
  if (!cm_node__news_pending(n) && n->next_gossip < now)
    n->next_gossip = now;
  if (cm_bcast_push(&n->bq, slot, kind, prio, inc, aux) != 0)
    n->st.updates_dropped++;
  else if (vital)
    cm_bcast_mark_vital(&n->bq, slot, CM_BCAST_VITAL_INHERITED);
}

/* ---------------------------------------------------------------- output */

static int node_emit(cm_node_t *n, const cm_addr_t *to, const uint8_t *data,
                     size_t len) {
  struct cm_dg *d, *nd;
  if (n->dg_read == n->ndg) {
    n->ndg = n->dg_read = 0;
    n->arena_len = 0;
  }
  if (n->arena_len + len > n->arena_cap) {
    size_t ncap = n->arena_cap ? n->arena_cap : 4096;
    uint8_t *na;
    while (ncap < n->arena_len + len)
      ncap *= 2;
    na = realloc(n->arena, ncap);
    if (na == NULL)
      return CM_ENOMEM;
    n->arena = na;
    n->arena_cap = ncap;
  }
  nd = cm_grow(n->dgs, &n->dg_cap, n->ndg, sizeof(*nd), 16);
  if (nd == NULL)
    return CM_ENOMEM;
  n->dgs = nd;
  memcpy(n->arena + n->arena_len, data, len);
  d = &n->dgs[n->ndg++];
  d->to = *to;
  d->off = n->arena_len;
  d->len = len;
  n->arena_len += len;
  n->st.packets_out++;
  n->st.bytes_out += len;
  return 0;
}

/* Build and emit one packet to `to`: the given messages first, then, if
 * `piggyback`, as many queued broadcasts and user events as fit. Nothing
 * is sent if the packet would be empty. */
static void node_send(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                      size_t nmsgs, int piggyback) {
  cm_wbuf_t w = {n->pkt, 0, n->cfg.max_packet_size};
  cm_bcast_item_t items[CM_PIGGYBACK_MAX];
  size_t i, k, count;
  cm_wire_packet_begin(&w);
  for (i = 0; i < nmsgs; i++)
    if (cm_wire_packet_add(&w, &msgs[i]) != 0)
      return;
  if (piggyback) {
    k = cm_bcast_take(&n->bq, w.cap - w.len, node_retransmit_limit(n),
                      node_item_size, n, items, CM_PIGGYBACK_MAX - nmsgs);
    for (i = 0; i < k; i++) {
      cm_msg_t msg;
      if (node_item_msg(n, &items[i], &msg))
        cm_wire_packet_add(&w, &msg);
    }
    /* User events after membership news, in the room left. */
    cm_node__uev_piggyback(n, &w, CM_PIGGYBACK_MAX - cm_wire_packet_count(&w));
  }
  count = cm_wire_packet_count(&w);
  if (count == 0)
    return;
  n->st.msgs_out += count;
  node_emit(n, to, w.p, w.len);
}

void cm_node__send(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                   size_t nmsgs) {
  node_send(n, to, msgs, nmsgs, 1);
}

void cm_node__send_bare(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                        size_t nmsgs) {
  node_send(n, to, msgs, nmsgs, 0);
}

/* Gossip also reaches recently failed members, so a falsely failed node
 * hears about it and refutes (memberlist's GossipToTheDeadTime). */
static int node_filter_gossip(const cm_node_t *n, uint32_t s, cm_time_t now) {
  const cm_member_t *m = &n->reg.m[s];
  if (cm_node__live(m))
    return 1;
  return m->state == CM_STATE_FAILED &&
         now - m->state_change < n->cfg.gossip_to_dead;
}

/* An accusation older than what we know means its sender missed the
 * refutation that answered it: epidemic gossip leaves a few nodes out now
 * and then (about e^-(sends/n) each). Send that node the news directly, so
 * it does not carry a stale suspicion to a false verdict. */
static void node_correct_stale(cm_node_t *n, const cm_addr_t *from,
                               const cm_wire_id_t *id, uint32_t inc) {
  int32_t slot = cm_registry_find(&n->reg, id->s, id->len);
  cm_member_t *m;
  cm_msg_t alive;
  if (slot < 0)
    return;
  m = cm_node__m(n, (uint32_t)slot);
  if (inc >= m->incarnation || m->state != CM_STATE_ALIVE)
    return;
  memset(&alive, 0, sizeof(alive));
  alive.type = CM_MSG_ALIVE;
  alive.u.alive.node = *id;
  alive.u.alive.incarnation = m->incarnation;
  alive.u.alive.addr = m->addr;
  alive.u.alive.tags = m->tags;
  alive.u.alive.tags_len = m->tags_len;
  cm_node__ext_of(m, &alive.u.alive.ext);
  n->st.stale_corrections++;
  cm_node__send(n, from, &alive, 1);
}

static void node_dispatch(cm_node_t *n, const cm_addr_t *from,
                          const cm_msg_t *msg, cm_time_t now) {
  if (msg->type == CM_MSG_SUSPECT || msg->type == CM_MSG_DEAD)
    node_correct_stale(n, from, &msg->u.suspect.node,
                       msg->u.suspect.incarnation);
  else if (msg->type == CM_MSG_LEAVE)
    node_correct_stale(n, from, &msg->u.leave.node, msg->u.leave.incarnation);
  switch (msg->type) {
  case CM_MSG_PING:
    cm_node__on_ping(n, from, &msg->u.ping, now);
    break;
  case CM_MSG_ACK:
    cm_node__on_ack(n, from, msg->u.ack.seq, now);
    break;
  case CM_MSG_PING_REQ:
    cm_node__on_ping_req(n, from, &msg->u.ping_req, now);
    break;
  case CM_MSG_NACK:
    cm_node__on_nack(n, from, msg->u.nack.seq);
    break;
  case CM_MSG_ALIVE:
    cm_node__alive(n, &msg->u.alive, now, 0);
    break;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    cm_node__accuse(
        n, msg->type == CM_MSG_SUSPECT ? CM_NEWS_SUSPECT : CM_NEWS_DEAD,
        msg->u.suspect.node.s, msg->u.suspect.node.len,
        msg->u.suspect.incarnation, msg->u.suspect.from.s,
        msg->u.suspect.from.len, now);
    break;
  case CM_MSG_LEAVE:
    cm_node__accuse(n, CM_NEWS_LEAVE, msg->u.leave.node.s,
                    msg->u.leave.node.len, msg->u.leave.incarnation, NULL, 0,
                    now);
    break;
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF:
    cm_node__on_user_event(n, from, msg, now);
    break;
  case CM_MSG_QUERY:
    cm_node__on_query(n, &msg->u.qry, now);
    break;
  case CM_MSG_QUERY_RESPONSE:
    cm_node__on_reply(n, &msg->u.qresp, now);
    break;
  case CM_MSG_QUERY_RELAY:
    cm_node__on_relay(n, &msg->u.qrelay);
    break;
  case CM_MSG_COORD:
    cm_node__on_coord(n, from, &msg->u.coord, now);
    break;
  default:
    /* A newer version's message: skipped by its length. */
    n->st.skipped_unknown++;
    break;
  }
}

int cm_node_recv(cm_node_t *n, const cm_addr_t *from, const uint8_t *buf,
                 size_t len, cm_time_t now) {
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  size_t count = 0, i;
  int rc;
  if (n == NULL || from == NULL || (buf == NULL && len > 0))
    return CM_EINVAL;
  n->st.packets_in++;
  n->st.bytes_in += len;
  if (len > n->cfg.max_packet_size) {
    n->st.drop_malformed++;
    return CM_ETOOBIG;
  }
  rc = cm_wire_packet_decode(buf, len, msgs, CM_WIRE_MAX_MSGS, &count);
  if (rc != 0) {
    n->st.drop_malformed++;
    return rc;
  }
  n->st.msgs_in += count;
  n->coord_rtt_slot = CM_NO_SLOT;
  for (i = 0; i < count; i++)
    node_dispatch(n, from, &msgs[i], now);
  if (n->coord_rtt_slot != CM_NO_SLOT)
    cm_node__coord_unpaired(n);
  return 0;
}

/* Candidates drawn per gossip target when the driver says which peers are
 * connected: enough to usually find connected ones among them. */
#define CM_GOSSIP_OVERSAMPLE 4

void cm_node__gossip(cm_node_t *n, cm_time_t now) {
  uint32_t cand[64 * CM_GOSSIP_OVERSAMPLE], targets[64];
  size_t want = n->cfg.gossip_nodes, k, i, nt = 0;
  if (!cm_node__news_pending(n))
    return;
  if (n->hint == NULL) {
    nt = cm_node__pick(n, want, node_filter_gossip, CM_NO_SLOT, now, targets);
  } else {
    /* Connected candidates first, in random order, then the others. */
    k = cm_node__pick(n, want * CM_GOSSIP_OVERSAMPLE, node_filter_gossip,
                      CM_NO_SLOT, now, cand);
    for (i = 0; i < k && nt < want; i++)
      if (n->hint(n->hint_ud, &cm_node__m(n, cand[i])->addr)) {
        targets[nt++] = cand[i];
        cand[i] = CM_NO_SLOT;
      }
    for (i = 0; i < k && nt < want; i++)
      if (cand[i] != CM_NO_SLOT)
        targets[nt++] = cand[i];
  }
  for (i = 0; i < nt; i++)
    cm_node__send(n, &cm_node__m(n, targets[i])->addr, NULL, 0);
}

void cm_node_set_peer_hint(cm_node_t *n, cm_peer_hint_fn fn, void *ud) {
  n->hint = fn;
  n->hint_ud = ud;
}

int cm_node_poll_datagram(cm_node_t *n, cm_addr_t *to, const uint8_t **data,
                          size_t *len) {
  struct cm_dg *d;
  if (n->dg_read == n->ndg)
    return 0;
  d = &n->dgs[n->dg_read++];
  *to = d->to;
  *data = n->arena + d->off;
  *len = d->len;
  return 1;
}

int cm_node_poll_stream(cm_node_t *n, cm_addr_t *to, uint64_t *req_id,
                        uint8_t **data, size_t *len, int *is_join) {
  struct cm_stream_out s;
  if (n->nstreams == 0)
    return 0;
  s = n->streams[0];
  memmove(n->streams, n->streams + 1, (n->nstreams - 1) * sizeof(s));
  n->nstreams--;
  *to = s.to;
  *req_id = s.req_id;
  *data = s.data;
  *len = s.len;
  if (is_join != NULL)
    *is_join = s.is_join;
  return 1;
}

/* An event queue drained empty gives back memory above this many entries:
 * one merge of a large push-pull can produce an event per member, and
 * keeping that peak for the node's lifetime costs more than the registry. */
#define CM_EVENT_QUEUE_KEEP 256

size_t cm_node_events_pending(const cm_node_t *n) { return n->ev_len; }

int cm_node_poll_event(cm_node_t *n, cm_event_t *ev) {
  if (n->ev_len == 0)
    return 0;
  *ev = n->events[n->ev_head];
  n->ev_head = (n->ev_head + 1) % n->ev_cap;
  n->ev_len--;
  if (n->ev_len == 0 && n->ev_cap > CM_EVENT_QUEUE_KEEP) {
    free(n->events);
    n->events = NULL;
    n->ev_cap = 0;
    n->ev_head = 0;
  }
  return 1;
}
