/*
 * The connection pool of cm_net: connections in least-recently-used order,
 * the peer map saying which connection to a peer is current, handing work
 * not yet sent from one connection to another, resolving two connections
 * to the same peer, and making room when the pool is full.
 */
#include <string.h>

#include "cm_net_int.h"

/* A server connection from a peer we already have an established connection
 * with, established this long before, means the peer lost that connection
 * (it restarted): the new one replaces it. A simultaneous open is faster.
 * If the peer had opened the older one too, no wait is needed. */
#define POOL_STALE_AFTER (1000 * NGTCP2_MILLISECONDS)

/* ---- LRU ---------------------------------------------------------------- */

static void pool_lru_unlink(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else if (net->lru_head == c)
    net->lru_head = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  else if (net->lru_tail == c)
    net->lru_tail = c->prev;
  c->prev = c->next = NULL;
}

static void pool_lru_append(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  c->next = NULL;
  c->prev = net->lru_tail;
  if (net->lru_tail != NULL)
    net->lru_tail->next = c;
  else
    net->lru_head = c;
  net->lru_tail = c;
}

void cm_net__conn_touch(cm_net_conn_t *c) {
  if (c->net->lru_tail == c)
    return;
  pool_lru_unlink(c);
  pool_lru_append(c);
}

int cm_net__conn_idle(const cm_net_conn_t *c) {
  return c->state == CM_CONN_ESTABLISHED && c->nstreams == 0 && c->qlen == 0;
}

int cm_net__pool_has_room(const cm_net_t *net, uint32_t want) {
  const cm_net_conn_t *c;
  uint32_t room = net->nconns < net->cfg.max_connections
                      ? net->cfg.max_connections - net->nconns
                      : 0;
  for (c = net->lru_head; c != NULL && room < want; c = c->next)
    if (c->in_pool && cm_net__conn_idle(c))
      room++;
  return room >= want;
}

int cm_net__make_room(cm_net_t *net) {
  cm_net_conn_t *c;
  if (net->nconns < net->cfg.max_connections)
    return 0;
  /* Only connections in the pool: a half-open one is not idle, and one
   * being admitted must not make room by closing itself. */
  for (c = net->lru_head; c != NULL; c = c->next) {
    if (c->in_pool && cm_net__conn_idle(c)) {
      net->st.conns_evicted++;
      cm_net__conn_close(c, CM_ECLOSED, 1);
      return 0;
    }
  }
  return CM_ELIMIT;
}

/* ---- peer map ------------------------------------------------------------ */

static void pool_make_current(cm_net_conn_t *c) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net__addr_key(&c->peer, key);
  /* Only fails without memory; the connection then serves what it has
   * and a later send opens another. */
  if (cm_net_map_put(&c->net->peers, key, sizeof(key), c) == 0) {
    c->current = 1;
    c->retiring = 0;
  }
}

static void pool_unset_current(cm_net_conn_t *c) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  if (!c->current)
    return;
  cm_net__addr_key(&c->peer, key);
  cm_net_map_del(&c->net->peers, key, sizeof(key), c);
  c->current = 0;
}

static cm_net_conn_t *pool_find_other(cm_net_conn_t *c) {
  cm_net_conn_t *o, *best = NULL;
  for (o = c->net->lru_head; o != NULL; o = o->next) {
    if (o == c || o->state >= CM_CONN_CLOSING || o->half_open ||
        !cm_addr_eq(&o->peer, &c->peer))
      continue;
    if (best == NULL || (o->state == CM_CONN_ESTABLISHED && !o->retiring))
      best = o;
  }
  return best;
}

/* Hand datagrams and requests not yet on the wire to another connection to
 * the same peer. */
static void pool_move_pending(cm_net_conn_t *from, cm_net_conn_t *to) {
  cm_net_stream_t **p = &from->streams;
  if (from->qhead != NULL) {
    if (to->qtail != NULL)
      to->qtail->next = from->qhead;
    else
      to->qhead = from->qhead;
    to->qtail = from->qtail;
    to->qlen += from->qlen;
    from->qhead = from->qtail = NULL;
    from->qlen = 0;
  }
  while (*p != NULL) {
    cm_net_stream_t *s = *p;
    if (s->local && s->id < 0 && !s->done) {
      *p = s->next;
      from->nstreams--;
      cm_net__stream_append(to, s);
    } else {
      p = &s->next;
    }
  }
  cm_net__mark_dirty(to);
}

/* ---- membership of the pool ---------------------------------------------- */

void cm_net__pool_add(cm_net_conn_t *c, int in_pool) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  pool_lru_append(c);
  if (in_pool) {
    c->in_pool = 1;
    net->nconns++;
  }
  net->st.conns_opened++;
  /* An inbound connection carries what we send its peer only once TLS has
   * authenticated the peer (cm_net__pool_established): its source address
   * proves nothing until then, and a handshake a forger never finishes
   * must not hold what we send the member whose address it wrote. */
  cm_net__addr_key(&c->peer, key);
  if (c->is_client && cm_net_map_get(&net->peers, key, sizeof(key)) == NULL)
    pool_make_current(c);
  cm_net__mark_dirty(c);
}

void cm_net__pool_remove(cm_net_conn_t *c) {
  pool_unset_current(c);
  pool_lru_unlink(c);
}

void cm_net__pool_handover(cm_net_conn_t *c, int status, int was_handshake) {
  cm_net_conn_t *o;
  if (!c->current)
    return;
  pool_unset_current(c);
  o = pool_find_other(c);
  if (o == NULL && status == CM_EAUTH && was_handshake &&
      (o = cm_net__key_retry(c)) != NULL)
    ; /* the retry became current when it registered */
  else if (o != NULL)
    pool_make_current(o);
  if (o != NULL)
    pool_move_pending(c, o);
}

/* ---- duplicates ---------------------------------------------------------- */

static int pool_addr_less(const cm_addr_t *a, const cm_addr_t *b) {
  size_t n = a->family == 6 ? 16 : 4;
  int d;
  if (a->family != b->family)
    return a->family < b->family;
  d = memcmp(a->ip, b->ip, n);
  if (d != 0)
    return d < 0;
  return a->port < b->port;
}

static const cm_addr_t *pool_initiator(const cm_net_conn_t *c) {
  return c->is_client ? &c->net->local : &c->peer;
}

/* Both ends apply the same rule to a pair of connections opened at once,
 * so they keep the same one: the one whose initiator has the lower
 * address. */
void cm_net__pool_established(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net_conn_t *cur, *winner, *loser;

  cm_net__addr_key(&c->peer, key);
  cur = cm_net_map_get(&net->peers, key, sizeof(key));
  if (cur == c)
    return;
  if (cur == NULL) {
    pool_make_current(c);
    return;
  }
  if (cur->state == CM_CONN_HANDSHAKE) {
    pool_unset_current(cur);
    pool_make_current(c);
    pool_move_pending(cur, c);
    return;
  }
  /* The peer opened this one although it had opened `cur` already: it
   * no longer has `cur` (it restarted), however young `cur` is. */
  if (!c->is_client &&
      (!cur->is_client ||
       c->established_at - cur->established_at > POOL_STALE_AFTER)) {
    pool_unset_current(cur);
    pool_make_current(c);
    pool_move_pending(cur, c);
    cm_net__conn_close(cur, CM_ECLOSED, 1);
    return;
  }
  if (pool_addr_less(pool_initiator(c), pool_initiator(cur))) {
    winner = c;
    loser = cur;
    pool_unset_current(cur);
    pool_make_current(c);
  } else {
    winner = cur;
    loser = c;
  }
  pool_move_pending(loser, winner);
  loser->retiring = 1;
  cm_net__mark_dirty(loser);
}
