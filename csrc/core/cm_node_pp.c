/*
 * Push-pull: the full-state exchange over a stream, both sides of it, and
 * the adoption of the table a join is answered with.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_merge.h"
#include "cm_node_int.h"

/* all_coords: every member's coordinate, not only ours. A join's exchange
 * carries them all, so that a newcomer knows everyone's at once; the
 * periodic ones carry only the sender's own, since each member's arrives
 * first-hand with the ACKs of our probes of it: 44 bytes per entry saved
 * on every exchange. */
static int node_pp_build(cm_node_t *n, uint8_t kind, uint8_t flags,
                         int all_coords, uint8_t **out, size_t *out_len) {
  uint8_t later[CM_PP_LATER_MAX];
  cm_wbuf_t w;
  uint32_t i;
  size_t cap = 4096;
  int rc;
  /* Estimate generously; grow and retry if short, bounded by the limit. */
  cap += (size_t)n->reg.count * (CM_ID_MAX + 32 + CM_COORD_WIRE_LEN);
  for (i = 0; i < n->reg.high; i++)
    if (n->reg.m[i].in_use)
      cap += n->reg.m[i].tags_len;
  if (cap > n->cfg.max_pushpull_size)
    cap = n->cfg.max_pushpull_size;
  w.p = malloc(cap);
  if (w.p == NULL)
    return CM_ENOMEM;
  w.cap = cap;
  w.len = 0;
  /* Entries carry the versions each member speaks. */
  rc = cm_wire_pp_begin(&w, kind, flags | CM_PP_FLAG_EXT);
  /* Self first: the receiver reads the sender's id from entry 0. */
  for (i = 0; rc == 0 && i <= n->reg.high; i++) {
    uint32_t s = i == 0 ? n->self : i - 1;
    cm_member_t *m;
    cm_pp_entry_t e;
    if (i > 0 && s == n->self)
      continue;
    if (s >= n->reg.high)
      break;
    m = &n->reg.m[s];
    if (!m->in_use)
      continue;
    memset(&e, 0, sizeof(e));
    cm_wire_id_set(&e.node, cm_member_id(m), m->id_len);
    e.incarnation = m->incarnation;
    e.addr = m->addr;
    e.state = m->state;
    e.tags = m->tags;
    e.tags_len = m->tags_len;
    cm_node__ext_of(m, &e.ext);
    e.ext.rest = later;
    if (i == 0) {
      /* Our own entry carries our user-event and query clocks, once we
       * have any (a member that restarts, or joins, takes the cluster's,
       * and its messages are not too old for everyone else's buffers),
       * then our coordinate, after clocks of 0 if there are none yet. */
      int clocks = cm_node__clocks(n, later);
      if (cm_node__coord_wire(n, s, later + CM_PP_CLOCKS_LEN)) {
        if (!clocks)
          memset(later, 0, CM_PP_CLOCKS_LEN);
        e.ext.rest_len = CM_PP_LATER_MAX;
      } else if (clocks) {
        e.ext.rest_len = CM_PP_CLOCKS_LEN;
      }
    } else if (all_coords && cm_node__coord_wire(n, s, later)) {
      /* Everyone else's: the member's coordinate, as we hold it. */
      e.ext.rest_len = CM_COORD_WIRE_LEN;
    }
    rc = cm_wire_pp_add(&w, &e);
    if (rc == CM_ENOSPC) {
      /* The state no longer fits the configured bound: send what fits;
       * gossip and later exchanges carry the rest. */
      n->st.drop_pushpull++;
      rc = 0;
      break;
    }
  }
  if (rc == 0)
    rc = cm_wire_pp_finish(&w);
  if (rc != 0) {
    free(w.p);
    return rc;
  }
  *out = w.p;
  *out_len = w.len;
  return 0;
}

uint64_t cm_node__stream_out(cm_node_t *n, const cm_addr_t *to, uint8_t *data,
                             size_t len, int join) {
  struct cm_stream_out *s, *ns;
  ns = cm_grow(n->streams, &n->streams_cap, n->nstreams, sizeof(*ns), 8);
  if (ns == NULL) {
    free(data);
    return 0;
  }
  n->streams = ns;
  s = &n->streams[n->nstreams++];
  s->to = *to;
  s->req_id = ++n->next_req_id;
  s->data = data;
  s->len = len;
  s->is_join = join;
  return s->req_id;
}

int cm_node__pp_request(cm_node_t *n, const cm_addr_t *to, int join) {
  struct cm_stream_out *s;
  uint8_t *data;
  size_t len;
  int rc;
  rc = node_pp_build(n, CM_PP_REQUEST, join ? CM_PP_FLAG_JOIN : 0, join, &data,
                     &len);
  if (rc != 0)
    return rc;
  if (cm_node__stream_out(n, to, data, len, join) == 0)
    return CM_ENOMEM;
  s = &n->streams[n->nstreams - 1];
  if (join) {
    /* The join's requests (one per seed) have consecutive ids: the first
     * answer among them is followed up, and no other reply is. */
    if (!n->join_followup)
      n->join_req_lo = s->req_id;
    n->join_req_hi = s->req_id;
    n->join_followup = 1;
  }
  n->st.pushpull_out++;
  return 0;
}

/* One slot of the table of winners: an entry's offset + 1 (0: empty) and
 * its id's hash. */
struct node_pp_win {
  size_t off1;
  uint64_t hash;
};

/* The slot for entry e (at offset off) in tab (mask + 1 slots): the one
 * holding an entry with e's id, or the empty one where it would go. */
static struct node_pp_win *node_pp_slot(struct node_pp_win *tab, size_t mask,
                                        const uint8_t *buf, size_t len,
                                        const cm_pp_entry_t *e, size_t off,
                                        uint64_t hash) {
  size_t i = (size_t)hash & mask;
  for (;; i = (i + 1) & mask) {
    struct node_pp_win *w = &tab[i];
    size_t o;
    cm_pp_entry_t other;
    if (w->off1 == 0 || w->off1 == off + 1)
      return w;
    if (w->hash != hash)
      continue;
    o = w->off1 - 1;
    if (cm_wire_pp_next(buf, len, &o, &other) &&
        other.node.len == e->node.len &&
        memcmp(other.node.s, e->node.s, e->node.len) == 0)
      return w;
  }
}

/* For each id in a validated push-pull, the entry that ranks highest
 * (cm_merge_entry_cmp): a table of mask + 1 slots, at most half full, in
 * *out (free it). Returns 0 or CM_ENOMEM. */
static int node_pp_winners(const uint8_t *buf, size_t len, uint32_t count,
                           struct node_pp_win **out, size_t *mask) {
  size_t cap = 2, off = 0, at = 0;
  struct node_pp_win *tab;
  cm_pp_entry_t e;
  while (cap < 2 * (size_t)count)
    cap *= 2;
  tab = calloc(cap, sizeof(*tab));
  if (tab == NULL)
    return CM_ENOMEM;
  while (cm_wire_pp_next(buf, len, &off, &e)) {
    uint64_t hash = cm_id_hash(e.node.s, e.node.len);
    struct node_pp_win *w = node_pp_slot(tab, cap - 1, buf, len, &e, at, hash);
    size_t o = w->off1 - 1;
    cm_pp_entry_t held;
    if (w->off1 == 0 || (cm_wire_pp_next(buf, len, &o, &held) &&
                         cm_merge_entry_cmp(&e, &held) > 0)) {
      w->off1 = at + 1;
      w->hash = hash;
    }
    at = off;
  }
  *out = tab;
  *mask = cap - 1;
  return 0;
}

/* Merge a validated push-pull message of count entries with the merge rule.
 * An id named more than once is merged once, with its highest entry, so the
 * result does not depend on the order of the entries (honest peers never
 * send duplicates: their tables are keyed by id). The first entry is the
 * sender; its suspect and failed entries name no accuser (a table says what
 * its sender holds, not who accused). Returns 0, or
 * CM_ENOMEM with nothing merged. */
/* Coordinates taken from a push-pull: from the entry of the peer that
 * sent it (entry 0, when its address is the stream's: first-hand), and,
 * from the answer to our own join only, everyone's as the seed holds
 * them (relayed: shown until first-hand ones come, never used to move our
 * own). Any other exchange gives none: one member could otherwise replace
 * what we hold of all the others. */
struct node_pp_coords {
  const cm_addr_t *peer; /* NULL: entry 0 is not taken first-hand */
  int relayed;
};

static int node_pp_merge(cm_node_t *n, const uint8_t *buf, size_t len,
                         uint32_t count, cm_time_t now, int quiet,
                         const struct node_pp_coords *co) {
  size_t off = 0, at = 0, mask;
  struct node_pp_win *tab;
  cm_pp_entry_t e;
  cm_wire_id_t sender;
  int first = 1, is_sender, first_hand;
  int rc = node_pp_winners(buf, len, count, &tab, &mask);
  if (rc != 0)
    return rc;
  memset(&sender, 0, sizeof(sender));
  n->in_pushpull = 1;
  n->pp_tells = 0;
  for (; cm_wire_pp_next(buf, len, &off, &e); at = off) {
    uint64_t hash = cm_id_hash(e.node.s, e.node.len);
    is_sender = first;
    if (first) {
      sender = e.node;
      first = 0;
      if (e.ext.rest_len >= CM_PP_CLOCKS_LEN)
        cm_node__witness_clocks(n, e.ext.rest);
    }
    if (node_pp_slot(tab, mask, buf, len, &e, at, hash)->off1 != at + 1)
      continue; /* a higher entry names the same id */
    if (e.state == CM_STATE_ALIVE) {
      cm_msg_alive_t a;
      a.node = e.node;
      a.incarnation = e.incarnation;
      a.addr = e.addr;
      a.tags = e.tags;
      a.tags_len = e.tags_len;
      a.ext = e.ext;
      cm_node__alive(n, &a, now, quiet);
    } else {
      static const uint8_t kinds[] = {0, CM_NEWS_UNNAMED_SUSPECT,
                                      CM_NEWS_PP_FAILED, CM_NEWS_LEAVE};
      cm_node__accuse(n, kinds[e.state & 3], e.node.s, e.node.len,
                      e.incarnation, sender.s, sender.len, now);
    }
    first_hand = is_sender && co->peer != NULL && cm_addr_eq(&e.addr, co->peer);
    if (e.ext.rest_len >= CM_COORD_WIRE_LEN && (co->relayed || first_hand)) {
      int32_t slot = cm_registry_find(&n->reg, e.node.s, e.node.len);
      if (slot >= 0)
        cm_node__coord_from_pp(n, (uint32_t)slot, &e.ext, is_sender, first_hand,
                               now);
    }
  }
  n->in_pushpull = 0;
  free(tab);
  return 0;
}

static int node_pp_check(cm_node_t *n, const uint8_t *buf, size_t len,
                         uint8_t want_kind, uint32_t *count) {
  cm_pp_header_t h;
  int rc;
  if (len > n->cfg.max_pushpull_size) {
    n->st.drop_pushpull++;
    return CM_ETOOBIG;
  }
  rc = cm_wire_pp_decode(buf, len, &h);
  if (rc == 0 && h.kind != want_kind)
    rc = CM_EBADMSG;
  if (rc == 0 && h.count == 0)
    rc = CM_EBADMSG;
  if (rc != 0)
    n->st.drop_pushpull++;
  else
    *count = h.count;
  return rc;
}

int cm_node_handle_pushpull(cm_node_t *n, const cm_addr_t *from,
                            const uint8_t *req, size_t len, cm_time_t now,
                            uint8_t **reply, size_t *reply_len) {
  cm_pp_header_t h;
  uint32_t count;
  int rc;
  if (n == NULL || req == NULL || reply == NULL || reply_len == NULL)
    return CM_EINVAL;
  switch (cm_wire_stream_kind(req, len)) {
  case CM_PP_FETCH:
    return cm_node__on_fetch(n, req, len, reply, reply_len);
  case CM_PP_REPLY:
    return cm_node__on_sreply(n, req, len, reply, reply_len, now);
  default:
    break;
  }
  rc = node_pp_check(n, req, len, CM_PP_REQUEST, &count);
  if (rc != 0)
    return rc;
  n->st.pushpull_in++;
  /* Merge before answering, so a refutation this exchange provokes (the
   * peer thought we had failed) is already in the reply. */
  {
    struct node_pp_coords co = {from, 0};
    rc = node_pp_merge(n, req, len, count, now, 0, &co);
  }
  if (rc != 0)
    return rc;
  /* Anti-entropy for user events too, on the periodic exchanges (a join's
   * would replay what came before the newcomer). */
  if (cm_wire_pp_decode(req, len, &h) != 0)
    h.flags = 0;
  if (from != NULL && !(h.flags & CM_PP_FLAG_JOIN))
    cm_node__app_sync(n, from, now);
  return node_pp_build(n, CM_PP_RESPONSE, 0, (h.flags & CM_PP_FLAG_JOIN) != 0,
                       reply, reply_len);
}

/* Validate and merge a push-pull response; quiet as for cm_node__alive. */
static int node_pp_take_response(cm_node_t *n, const uint8_t *buf, size_t len,
                                 cm_time_t now, int quiet, int join_reply) {
  struct node_pp_coords co = {NULL, join_reply};
  uint32_t count;
  int rc;
  if (n == NULL || buf == NULL)
    return CM_EINVAL;
  rc = node_pp_check(n, buf, len, CM_PP_RESPONSE, &count);
  if (rc == 0)
    rc = node_pp_merge(n, buf, len, count, now, quiet, &co);
  return rc;
}

/* After the first answer to a join, a follow-up push-pull with a random
 * member, once news has had time to spread (between one and two times an
 * update's whole retransmit budget): the table adopted is the seed's at the
 * moment it answered, and in a join storm the members that joined after
 * that, and those that missed our own alive, would otherwise wait for
 * gossip that a full queue may never carry, or for the periodic push-pull.
 * A follow-up that brings members we did not know is followed up again,
 * after twice the wait, while the storm lasts. The periodic push-pull keeps
 * its random phase after them; a follow-up never comes later than it. */
static void node_pp_followup(cm_node_t *n, cm_time_t delay, cm_time_t now) {
  cm_time_t at, periodic = n->pushpull_after_followup > now
                               ? n->pushpull_after_followup
                               : n->next_pushpull;
  if (delay > (cm_time_t)UINT32_MAX / 2)
    delay = (cm_time_t)UINT32_MAX / 2;
  at = now + delay + cm_rand_below(&n->rng, (uint32_t)delay + 1);
  if (at >= periodic)
    return;
  n->followup_delay = delay;
  n->pushpull_after_followup = periodic;
  n->next_pushpull = at;
}

int cm_node_pushpull_reply(cm_node_t *n, uint64_t req_id, const uint8_t *buf,
                           size_t len, cm_time_t now) {
  uint32_t known;
  int rc;
  if (n == NULL)
    return CM_EINVAL;
  rc = cm_node__fetch_reply(n, req_id, buf, len, now);
  if (rc != CM_ENOENT)
    return rc;
  if (cm_node__sreply_done(n, req_id, 0) == 0)
    return 0;
  known = n->reg.count;
  rc = node_pp_take_response(n, buf, len, now, 0,
                             n->join_followup && req_id >= n->join_req_lo &&
                                 req_id <= n->join_req_hi);
  if (rc != 0)
    return rc;
  if (n->join_followup && req_id >= n->join_req_lo &&
      req_id <= n->join_req_hi) {
    n->join_followup = 0;
    n->joined_at = now;
    node_pp_followup(
        n,
        (cm_time_t)cm_retransmit_limit(&n->cfg, cm_node__live_count(n)) *
            n->cfg.gossip_interval,
        now);
  } else if (req_id != 0 && req_id == n->followup_req) {
    n->followup_req = 0;
    if (n->reg.count > known)
      node_pp_followup(n, 2 * n->followup_delay, now);
  }
  return 0;
}

int cm_node_adopt_table(cm_node_t *n, const uint8_t *buf, size_t len,
                        cm_time_t now) {
  int rc = node_pp_take_response(n, buf, len, now, 1, 0);
  if (rc != 0)
    return rc;
  /* In a cluster that has run for a while, push-pull phases are spread
   * over the interval; without this every node would exchange its whole
   * table at once, 15-30 s after the adoption. */
  {
    cm_time_t iv = cm_pushpull_scaled(&n->cfg, cm_node__live_count(n));
    if (iv > (cm_time_t)UINT32_MAX - 1)
      iv = (cm_time_t)UINT32_MAX - 1;
    n->next_pushpull = now + cm_rand_below(&n->rng, (uint32_t)iv + 1);
  }
  return 0;
}

void cm_node_pushpull_failed(cm_node_t *n, uint64_t req_id, cm_time_t now) {
  if (cm_node__fetch_failed(n, req_id, now) != CM_ENOENT ||
      cm_node__sreply_done(n, req_id, 1) == 0)
    return;
  n->st.pushpull_failed++;
}
