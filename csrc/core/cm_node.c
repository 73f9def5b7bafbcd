#include "cm_node.h"

#include <stdlib.h>
#include <string.h>

#include "cm_bcast.h"
#include "cm_merge.h"
#include "cm_rand.h"
#include "cm_registry.h"

/* Indirect probes this node runs for others at once; more are dropped
 * (counted) so a flood of ping-reqs cannot grow memory. */
#define CM_FWD_MAX 64
/* Peers whose phi is evaluated at each probe: the detector is only worth
 * running for peers heard from often, and this bounds the per-probe cost. */
#define CM_PHI_WATCH_MAX 32
/* Events kept for a driver that does not drain them; older ones win. */
#define CM_EVENT_QUEUE_MAX 65536
/* Broadcasts piggybacked per packet at most (the wire allows 64). */
#define CM_PIGGYBACK_MAX 60
/* How often left and long-failed members are looked at for reaping. */
#define CM_REAP_PERIOD CM_SEC(1)
/* A random pick tries this many slots per wanted member before giving up,
 * so a sparse registry cannot make it spin. */
#define CM_PICK_TRIES 8
#define CM_NO_SLOT UINT32_MAX

struct cm_probe {
  uint8_t active;
  uint8_t acked;
  uint8_t indirect;
  uint32_t slot;
  uint64_t target_hash;
  uint32_t seq;
  cm_time_t start, timeout_at, end_at;
  uint32_t expected_nacks, nacks;
};

struct cm_fwd {
  uint8_t active;
  uint8_t want_nack;
  uint32_t seq;      /* of our ping to the target */
  uint32_t orig_seq; /* of the requester's probe */
  cm_addr_t requester;
  cm_time_t deadline;
};

struct cm_dg {
  cm_addr_t to;
  size_t off, len;
};

struct cm_stream_out {
  cm_addr_t to;
  uint64_t req_id;
  uint8_t *data;
  size_t len;
  int is_join;
};

struct cm_node {
  cm_config_t cfg;
  cm_registry_t reg;
  uint32_t self;
  cm_rand_t rng;
  cm_bcast_t bq;
  uint8_t leaving;
  uint32_t awareness;

  struct cm_probe probe;
  uint32_t seq;
  uint32_t *order;
  uint32_t order_len, order_pos, order_cap;
  cm_time_t next_probe, next_gossip, next_pushpull, next_reconnect, next_reap;

  struct cm_fwd fwd[CM_FWD_MAX];
  uint32_t *suspects;
  uint32_t nsuspects, suspects_cap;
  uint32_t watch[CM_PHI_WATCH_MAX];
  uint32_t nwatch;

  /* Outputs. */
  uint8_t *pkt; /* packet being built, cfg.max_packet_size */
  uint8_t *arena;
  size_t arena_len, arena_cap;
  struct cm_dg *dgs;
  size_t ndg, dg_read, dg_cap;
  struct cm_stream_out *streams;
  size_t nstreams, streams_cap;
  cm_event_t *events;
  size_t ev_head, ev_len, ev_cap;
  uint64_t next_req_id;
  cm_peer_hint_fn hint;
  void *hint_ud;

  cm_node_stats_t st;
};

/* ---------------------------------------------------------------- helpers */

static cm_member_t *node_m(cm_node_t *n, uint32_t slot) {
  return &n->reg.m[slot];
}

static cm_member_t *node_self(cm_node_t *n) { return &n->reg.m[n->self]; }

static int node_live(const cm_member_t *m) {
  return m->in_use &&
         (m->state == CM_STATE_ALIVE || m->state == CM_STATE_SUSPECT);
}

static uint32_t node_live_count(const cm_node_t *n) {
  return n->st.alive + n->st.suspect;
}

static cm_time_t node_scaled(const cm_node_t *n, cm_time_t t) {
  return t * (cm_time_t)(n->awareness + 1);
}

static void node_awareness(cm_node_t *n, int delta) {
  int64_t v = (int64_t)n->awareness + delta;
  int64_t hi = (int64_t)n->cfg.awareness_max - 1;
  if (v < 0)
    v = 0;
  if (v > hi)
    v = hi;
  n->awareness = (uint32_t)v;
}

static void node_count_state(cm_node_t *n, uint8_t state, int delta) {
  uint32_t *c = NULL;
  switch (state) {
  case CM_STATE_ALIVE:
    c = &n->st.alive;
    break;
  case CM_STATE_SUSPECT:
    c = &n->st.suspect;
    break;
  case CM_STATE_FAILED:
    c = &n->st.failed;
    break;
  case CM_STATE_LEFT:
    c = &n->st.left;
    break;
  }
  if (c != NULL)
    *c = (uint32_t)((int64_t)*c + delta);
}

static void node_event(cm_node_t *n, uint8_t type, const cm_member_t *m,
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
}

static int node_suspects_add(cm_node_t *n, uint32_t slot) {
  if (n->nsuspects == n->suspects_cap) {
    uint32_t ncap = n->suspects_cap ? n->suspects_cap * 2 : 16;
    uint32_t *ns = realloc(n->suspects, ncap * sizeof(*ns));
    if (ns == NULL)
      return CM_ENOMEM;
    n->suspects = ns;
    n->suspects_cap = ncap;
  }
  n->suspects[n->nsuspects++] = slot;
  return 0;
}

static void node_suspects_remove(cm_node_t *n, uint32_t slot) {
  uint32_t i;
  for (i = 0; i < n->nsuspects; i++)
    if (n->suspects[i] == slot) {
      n->suspects[i] = n->suspects[--n->nsuspects];
      return;
    }
}

static void node_watch_remove(cm_node_t *n, uint32_t slot) {
  uint32_t i;
  for (i = 0; i < n->nwatch; i++)
    if (n->watch[i] == slot) {
      n->watch[i] = n->watch[--n->nwatch];
      return;
    }
}

/* Move a member to a state, keeping counters and the suspicion bookkeeping
 * consistent. */
static void node_set_state(cm_node_t *n, uint32_t slot, uint8_t state,
                           cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  if (m->state == CM_STATE_SUSPECT && state != CM_STATE_SUSPECT) {
    if (m->ext != NULL) {
      free(m->ext->susp);
      m->ext->susp = NULL;
    }
    node_suspects_remove(n, slot);
  }
  node_count_state(n, m->state, -1);
  m->state = state;
  node_count_state(n, state, +1);
  m->state_change = now;
}

/* ------------------------------------------------------------ broadcasts */

static uint32_t node_retransmit_limit(const cm_node_t *n) {
  return cm_retransmit_limit(&n->cfg, n->reg.count);
}

/* Turn a queued reference into the message it stands for. Returns 0 if the
 * update can no longer be expressed (its subject or accuser is gone). */
/* The versions m advertises, relayed as known. */
static void node_ext_of(const cm_member_t *m, cm_wire_ext_t *x) {
  memset(x, 0, sizeof(*x));
  x->vmin = m->vmin;
  x->vmax = m->vmax;
}

/* Versions belong to an incarnation: taken with it, kept when a relay did
 * not carry them. */
static void node_keep_ext(cm_member_t *m, const cm_wire_ext_t *x) {
  if (x->vmin == 0)
    return;
  m->vmin = x->vmin;
  m->vmax = x->vmax;
}

static int node_item_msg(cm_node_t *n, const cm_bcast_item_t *it,
                         cm_msg_t *msg) {
  cm_member_t *m;
  if (it->key >= n->reg.high || !n->reg.m[it->key].in_use)
    return 0;
  m = node_m(n, it->key);
  memset(msg, 0, sizeof(*msg));
  msg->type = it->kind;
  switch (it->kind) {
  case CM_MSG_ALIVE:
    cm_wire_id_set(&msg->u.alive.node, cm_member_id(m), m->id_len);
    msg->u.alive.incarnation = it->incarnation;
    msg->u.alive.addr = m->addr;
    msg->u.alive.tags = m->tags;
    msg->u.alive.tags_len = m->tags_len;
    node_ext_of(m, &msg->u.alive.ext);
    return 1;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD: {
    cm_member_t *from;
    if (it->aux >= n->reg.high || !n->reg.m[it->aux].in_use)
      return 0;
    from = node_m(n, it->aux);
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
static void node_broadcast(cm_node_t *n, uint32_t slot, uint8_t kind,
                           uint8_t prio, uint32_t inc, uint32_t aux,
                           cm_time_t now) {
  if (cm_bcast_len(&n->bq) == 0 && n->next_gossip < now)
    n->next_gossip = now;
  if (cm_bcast_push(&n->bq, slot, kind, prio, inc, aux) != 0)
    n->st.updates_dropped++;
}

/* ---------------------------------------------------------------- output */

static int node_emit(cm_node_t *n, const cm_addr_t *to, const uint8_t *data,
                     size_t len) {
  struct cm_dg *d;
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
  if (n->ndg == n->dg_cap) {
    size_t ncap = n->dg_cap ? n->dg_cap * 2 : 16;
    struct cm_dg *nd = realloc(n->dgs, ncap * sizeof(*nd));
    if (nd == NULL)
      return CM_ENOMEM;
    n->dgs = nd;
    n->dg_cap = ncap;
  }
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

/* Build and emit one packet to `to`: the given messages first, then as many
 * queued broadcasts as fit. Nothing is sent if the packet would be empty. */
static void node_send(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                      size_t nmsgs) {
  cm_wbuf_t w = {n->pkt, 0, n->cfg.max_packet_size};
  cm_bcast_item_t items[CM_PIGGYBACK_MAX];
  size_t i, k, count;
  cm_wire_packet_begin(&w);
  for (i = 0; i < nmsgs; i++)
    if (cm_wire_packet_add(&w, &msgs[i]) != 0)
      return;
  k = cm_bcast_take(&n->bq, w.cap - w.len, node_retransmit_limit(n),
                    node_item_size, n, items, CM_PIGGYBACK_MAX - nmsgs);
  for (i = 0; i < k; i++) {
    cm_msg_t msg;
    if (node_item_msg(n, &items[i], &msg))
      cm_wire_packet_add(&w, &msg);
  }
  count = cm_wire_packet_count(&w);
  if (count == 0)
    return;
  n->st.msgs_out += count;
  node_emit(n, to, w.p, w.len);
}

/* ----------------------------------------------------------- random picks */

typedef int (*node_filter_fn)(const cm_node_t *n, uint32_t slot, cm_time_t now);

static int node_pick_has(const uint32_t *out, size_t k, uint32_t slot) {
  size_t i;
  for (i = 0; i < k; i++)
    if (out[i] == slot)
      return 1;
  return 0;
}

/* Up to want distinct random slots passing filter, excluding self and
 * `exclude`. Small registries are scanned; large ones sampled. */
static size_t node_pick(cm_node_t *n, size_t want, node_filter_fn filter,
                        uint32_t exclude, cm_time_t now, uint32_t *out) {
  size_t k = 0;
  uint32_t high = n->reg.high;
  if (want == 0 || high == 0)
    return 0;
  if (high <= 64) {
    uint32_t cand[64], nc = 0, i;
    for (i = 0; i < high; i++)
      if (i != n->self && i != exclude && n->reg.m[i].in_use &&
          filter(n, i, now))
        cand[nc++] = i;
    while (k < want && nc > 0) {
      uint32_t j = cm_rand_below(&n->rng, nc);
      out[k++] = cand[j];
      cand[j] = cand[--nc];
    }
    return k;
  } else {
    size_t tries = want * CM_PICK_TRIES + 16;
    while (k < want && tries-- > 0) {
      uint32_t s = cm_rand_below(&n->rng, high);
      if (s == n->self || s == exclude || !n->reg.m[s].in_use ||
          !filter(n, s, now) || node_pick_has(out, k, s))
        continue;
      out[k++] = s;
    }
    if (k < want) {
      /* Few slots qualify (say one failed member among thousands): sampling
       * would keep missing them, so scan once from a random start. */
      uint32_t start = cm_rand_below(&n->rng, high), i;
      for (i = 0; i < high && k < want; i++) {
        uint32_t s = (start + i) % high;
        if (s == n->self || s == exclude || !n->reg.m[s].in_use ||
            !filter(n, s, now) || node_pick_has(out, k, s))
          continue;
        out[k++] = s;
      }
    }
    return k;
  }
}

static int node_filter_alive(const cm_node_t *n, uint32_t s, cm_time_t now) {
  return n->reg.m[s].state == CM_STATE_ALIVE;
}

/* Gossip also reaches recently failed members, so a falsely failed node
 * hears about it and refutes (memberlist's GossipToTheDeadTime). */
static int node_filter_gossip(const cm_node_t *n, uint32_t s, cm_time_t now) {
  const cm_member_t *m = &n->reg.m[s];
  if (node_live(m))
    return 1;
  return m->state == CM_STATE_FAILED &&
         now - m->state_change < n->cfg.gossip_to_dead;
}

static int node_filter_reconnect(const cm_node_t *n, uint32_t s,
                                 cm_time_t now) {
  const cm_member_t *m = &n->reg.m[s];
  return m->state == CM_STATE_FAILED &&
         now - m->state_change < n->cfg.reconnect_timeout;
}

/* ------------------------------------------------------------ membership */

/* Incarnations saturate: UINT32_MAX is the last one, and nothing adds to it.
 * Wrapping to 0 would make a refutation or tag change older than what every
 * peer holds, so they would ignore it and keep this node failed until they
 * reaped it. cm_merge drops (and this node counts) an accusation that would
 * put a member there and a refutation that would pass it
 * (docs/protocol.md, "Incarnations saturate"). */
static void node_refute(cm_node_t *n, uint32_t accused_inc, cm_time_t now) {
  cm_member_t *self = node_self(n);
  uint32_t inc =
      accused_inc > self->incarnation ? accused_inc : self->incarnation;
  self->incarnation = inc + 1; /* below UINT32_MAX: cm_merge checked */
  n->st.refutations++;
  /* Being accused means our messages are not getting through in time: the
   * local-health score rises so we probe less aggressively (Lifeguard). */
  node_awareness(n, +1);
  node_broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, self->incarnation,
                 n->self, now);
}

static void node_order_insert(cm_node_t *n, uint32_t slot) {
  uint32_t pos;
  if (n->order_len == n->order_cap) {
    uint32_t ncap = n->order_cap ? n->order_cap * 2 : 16;
    uint32_t *no = realloc(n->order, ncap * sizeof(*no));
    if (no == NULL)
      return; /* the next round's rebuild includes it */
    n->order = no;
    n->order_cap = ncap;
  }
  /* A random position in the rest of this round, so a newcomer is probed
   * within one round without skewing the order (SWIM's round-robin). */
  pos = n->order_pos + cm_rand_below(&n->rng, n->order_len - n->order_pos + 1);
  n->order[n->order_len++] = n->order[pos];
  n->order[pos] = slot;
}

static int tags_equal(const uint8_t *a, size_t alen, const uint8_t *b,
                      size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* News about a member, whichever path brought it: a datagram, a push-pull
 * entry, the table a join is answered with. */
typedef struct node_news {
  uint8_t kind; /* enum cm_news_kind */
  uint32_t incarnation;
  const char *id;
  size_t id_len;
  const cm_msg_alive_t *alive; /* CM_NEWS_ALIVE: the record */
  const char *from;            /* suspicions and dead records: the accuser */
  size_t from_len;
} node_news_t;

/* quiet: a member new to us is not queued for gossip (cm_node_adopt_table). */
static void node_add(cm_node_t *n, const cm_msg_alive_t *a, cm_time_t now,
                     int quiet) {
  int32_t slot;
  cm_member_t *m;
  if (n->reg.count >= n->cfg.max_members) {
    n->st.drop_limit++;
    return;
  }
  slot = cm_registry_add(&n->reg, a->node.s, a->node.len);
  if (slot < 0)
    return;
  m = node_m(n, (uint32_t)slot);
  if (cm_member_set_tags(m, a->tags, a->tags_len) != 0) {
    cm_registry_remove(&n->reg, (uint32_t)slot);
    return;
  }
  cm_registry_set_addr(&n->reg, (uint32_t)slot, &a->addr);
  node_keep_ext(m, &a->ext);
  m->incarnation = a->incarnation;
  m->state = CM_STATE_ALIVE;
  m->state_change = now;
  node_count_state(n, CM_STATE_ALIVE, +1);
  node_order_insert(n, (uint32_t)slot);
  if (!quiet)
    node_broadcast(n, (uint32_t)slot, CM_MSG_ALIVE, CM_PRIO_NORMAL,
                   a->incarnation, 0, now);
  node_event(n, CM_EV_JOINED, m, NULL, now);
}

/* Two processes claim one id; reported once per member (every time about
 * ourselves), so a duel of incarnations never starts. */
static void node_conflict(cm_node_t *n, uint32_t slot, const cm_addr_t *other,
                          cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  if (slot != n->self) {
    if (m->conflict_reported)
      return;
    m->conflict_reported = 1;
  }
  n->st.conflicts++;
  node_event(n, CM_EV_CONFLICT, m, other, now);
}

static void node_take_alive(cm_node_t *n, uint32_t slot,
                            const cm_msg_alive_t *a, int addr_changed,
                            int tags_changed, cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  uint8_t old;
  if (tags_changed && cm_member_set_tags(m, a->tags, a->tags_len) != 0)
    return;
  old = m->state;
  m->incarnation = a->incarnation;
  node_keep_ext(m, &a->ext);
  cm_registry_set_addr(&n->reg, slot, &a->addr);
  m->conflict_reported = 0;
  if (old != CM_STATE_ALIVE)
    node_set_state(n, slot, CM_STATE_ALIVE, now);
  if (old == CM_STATE_FAILED || old == CM_STATE_LEFT)
    node_order_insert(n, slot);
  node_broadcast(n, slot, CM_MSG_ALIVE,
                 tags_changed ? CM_PRIO_HIGH : CM_PRIO_NORMAL, a->incarnation,
                 0, now);
  if (addr_changed)
    node_event(n, CM_EV_ADDR_CHANGED, m, NULL, now);
  if (old == CM_STATE_LEFT)
    node_event(n, CM_EV_JOINED, m, NULL, now);
  else if (old != CM_STATE_ALIVE)
    node_event(n, CM_EV_RECOVERED, m, NULL, now);
  if (tags_changed && old != CM_STATE_LEFT)
    node_event(n, CM_EV_TAGS_UPDATED, m, NULL, now);
}

/* An independent accuser of a suspect shortens the timeout; the news is
 * passed on so others count it too. */
static void node_confirm(cm_node_t *n, uint32_t slot, const node_news_t *x,
                         cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  int32_t accuser = cm_registry_find(&n->reg, x->from, x->from_len);
  if (x->incarnation > m->incarnation)
    m->incarnation = x->incarnation;
  if (m->ext != NULL && m->ext->susp != NULL &&
      cm_suspicion_confirm(m->ext->susp, cm_id_hash(x->from, x->from_len),
                           now) &&
      accuser >= 0)
    node_broadcast(n, slot, CM_MSG_SUSPECT, CM_PRIO_NORMAL, m->incarnation,
                   (uint32_t)accuser, now);
}

static void node_start_suspicion(cm_node_t *n, uint32_t slot,
                                 const node_news_t *x, cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  int32_t accuser = cm_registry_find(&n->reg, x->from, x->from_len);
  uint32_t k, live;
  cm_time_t min;
  if (cm_member_ext(m) == NULL)
    return;
  m->ext->susp = malloc(sizeof(*m->ext->susp));
  if (m->ext->susp == NULL || node_suspects_add(n, slot) != 0) {
    free(m->ext->susp);
    m->ext->susp = NULL;
    return;
  }
  live = node_live_count(n);
  k = n->cfg.suspicion_mult > 2 ? n->cfg.suspicion_mult - 2 : 0;
  /* Too few others to confirm: do not wait for confirmations. */
  if (live < k + 2)
    k = 0;
  min = cm_suspicion_min(&n->cfg, live);
  cm_suspicion_start(m->ext->susp, now, k, min,
                     min * (cm_time_t)n->cfg.suspicion_max_mult,
                     cm_id_hash(x->from, x->from_len));
  m->incarnation = x->incarnation;
  /* node_set_state frees susp when leaving SUSPECT only: set it directly. */
  node_count_state(n, m->state, -1);
  m->state = CM_STATE_SUSPECT;
  node_count_state(n, CM_STATE_SUSPECT, +1);
  m->state_change = now;
  n->st.suspicions++;
  if (accuser >= 0)
    node_broadcast(n, slot, CM_MSG_SUSPECT, CM_PRIO_NORMAL, x->incarnation,
                   (uint32_t)accuser, now);
  node_event(n, CM_EV_SUSPECT, m, NULL, now);
}

/* A member declared gone: failed by a dead record, left by a leave; or, if
 * already gone, its incarnation raised (CM_MERGE_RAISE), the state kept. */
static void node_gone(cm_node_t *n, uint32_t slot, const node_news_t *x,
                      int raise, cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  int leave = x->kind == CM_NEWS_LEAVE;
  uint32_t aux = n->self;
  if (leave) {
    aux = 0;
  } else {
    int32_t accuser = cm_registry_find(&n->reg, x->from, x->from_len);
    if (accuser >= 0)
      aux = (uint32_t)accuser;
  }
  m->incarnation = x->incarnation;
  if (!raise)
    node_set_state(n, slot, leave ? CM_STATE_LEFT : CM_STATE_FAILED, now);
  node_broadcast(n, slot, leave ? CM_MSG_LEAVE : CM_MSG_DEAD,
                 leave ? CM_PRIO_CRITICAL : CM_PRIO_NORMAL, x->incarnation, aux,
                 now);
  if (!raise)
    node_event(n, leave ? CM_EV_LEFT : CM_EV_FAILED, m, NULL, now);
}

/* Apply news about a member with the one merge rule (cm_merge). */
static void node_merge(cm_node_t *n, const node_news_t *x, cm_time_t now,
                       int quiet) {
  int32_t found = cm_registry_find(&n->reg, x->id, x->id_len);
  uint32_t slot = found >= 0 ? (uint32_t)found : CM_NO_SLOT;
  const cm_msg_alive_t *a = x->alive;
  cm_merge_held_t h;
  cm_merge_news_t nw;
  memset(&h, 0, sizeof(h));
  memset(&nw, 0, sizeof(nw));
  nw.kind = x->kind;
  nw.incarnation = x->incarnation;
  if (slot != CM_NO_SLOT) {
    const cm_member_t *m = node_m(n, slot);
    h.known = 1;
    h.is_self = slot == n->self;
    h.leaving = n->leaving;
    h.state = m->state;
    h.incarnation = m->incarnation;
    if (a != NULL) {
      nw.other_addr = !cm_addr_eq(&a->addr, &m->addr);
      nw.other_tags = !tags_equal(a->tags, a->tags_len, m->tags, m->tags_len);
    }
  }
  switch (cm_merge(&h, &nw)) {
  case CM_MERGE_DROP_UNKNOWN:
    n->st.drop_unknown++;
    break;
  case CM_MERGE_DROP_INCARNATION:
    n->st.drop_incarnation++;
    break;
  case CM_MERGE_ADD:
    node_add(n, a, now, quiet);
    break;
  case CM_MERGE_CONFLICT:
    node_conflict(n, slot, &a->addr, now);
    break;
  case CM_MERGE_ALIVE:
    node_take_alive(n, slot, a, nw.other_addr, nw.other_tags, now);
    break;
  case CM_MERGE_SUSPECT:
    node_start_suspicion(n, slot, x, now);
    break;
  case CM_MERGE_CONFIRM:
    node_confirm(n, slot, x, now);
    break;
  case CM_MERGE_FAIL:
  case CM_MERGE_LEAVE:
    node_gone(n, slot, x, 0, now);
    break;
  case CM_MERGE_RAISE:
    node_gone(n, slot, x, 1, now);
    break;
  case CM_MERGE_REFUTE:
    node_refute(n, x->incarnation, now);
    break;
  default:
    break;
  }
}

static void node_alive(cm_node_t *n, const cm_msg_alive_t *a, cm_time_t now,
                       int quiet) {
  node_news_t x;
  memset(&x, 0, sizeof(x));
  x.kind = CM_NEWS_ALIVE;
  x.incarnation = a->incarnation;
  x.id = a->node.s;
  x.id_len = a->node.len;
  x.alive = a;
  node_merge(n, &x, now, quiet);
}

/* An accusation (suspect, dead or push-pull failed record) or a leave. */
static void node_accuse(cm_node_t *n, uint8_t kind, const char *id,
                        size_t id_len, uint32_t inc, const char *from,
                        size_t from_len, cm_time_t now) {
  node_news_t x;
  memset(&x, 0, sizeof(x));
  x.kind = kind;
  x.incarnation = inc;
  x.id = id;
  x.id_len = id_len;
  x.from = from;
  x.from_len = from_len;
  node_merge(n, &x, now, 0);
}

/* Declare failed the suspects whose time has come. */
static void node_check_suspects(cm_node_t *n, cm_time_t now) {
  uint32_t i = 0;
  while (i < n->nsuspects) {
    uint32_t slot = n->suspects[i];
    cm_member_t *m = node_m(n, slot);
    if (m->ext != NULL && m->ext->susp != NULL &&
        cm_suspicion_deadline(m->ext->susp) <= now) {
      uint32_t inc = m->incarnation;
      n->st.failures_declared++;
      node_set_state(n, slot, CM_STATE_FAILED, now); /* removes from list */
      node_broadcast(n, slot, CM_MSG_DEAD, CM_PRIO_NORMAL, inc, n->self, now);
      node_event(n, CM_EV_FAILED, m, NULL, now);
      continue;
    }
    i++;
  }
}

/* ------------------------------------------------------------------ phi */

static void node_arrival(cm_node_t *n, uint32_t slot, cm_time_t now) {
  cm_member_t *m = node_m(n, slot);
  if (slot == n->self)
    return;
  cm_member_ext_t *x = cm_member_ext(m);
  if (x == NULL ||
      (x->phi == NULL && (x->phi = cm_phi_new(n->cfg.phi_window)) == NULL))
    return;
  cm_phi_arrival(x->phi, now);
  if (!x->phi_watched && x->phi->count >= n->cfg.phi_min_samples &&
      n->nwatch < CM_PHI_WATCH_MAX) {
    x->phi_watched = 1;
    n->watch[n->nwatch++] = slot;
  }
}

static double node_phi(const cm_node_t *n, const cm_member_t *m,
                       cm_time_t now) {
  return cm_phi_value(m->ext != NULL ? m->ext->phi : NULL, now,
                      n->cfg.phi_min_samples, n->cfg.phi_min_std,
                      n->cfg.phi_acceptable_pause);
}

/* A watched peer that has gone quiet for longer than its history makes
 * plausible is probed out of turn: phi never convicts, it only brings the
 * next probe forward, so detection is faster with no new false positive. */
static uint32_t node_phi_target(cm_node_t *n, cm_time_t now) {
  uint32_t i, best = CM_NO_SLOT;
  double best_phi = n->cfg.phi_threshold;
  for (i = 0; i < n->nwatch; i++) {
    cm_member_t *m = node_m(n, n->watch[i]);
    double phi;
    if (!node_live(m) || m->ext == NULL ||
        now - m->ext->last_probed < n->cfg.probe_interval)
      continue;
    phi = node_phi(n, m, now);
    if (phi > best_phi) {
      best_phi = phi;
      best = n->watch[i];
    }
  }
  return best;
}

/* ---------------------------------------------------------------- probes */

static void node_order_rebuild(cm_node_t *n) {
  uint32_t i, len = 0;
  if (n->order_cap < n->reg.high) {
    uint32_t *no = realloc(n->order, n->reg.high * sizeof(*no));
    if (no == NULL)
      return;
    n->order = no;
    n->order_cap = n->reg.high;
  }
  for (i = 0; i < n->reg.high; i++)
    if (i != n->self && node_live(&n->reg.m[i]))
      n->order[len++] = i;
  for (i = len; i > 1; i--) {
    uint32_t j = cm_rand_below(&n->rng, i);
    uint32_t t = n->order[i - 1];
    n->order[i - 1] = n->order[j];
    n->order[j] = t;
  }
  n->order_len = len;
  n->order_pos = 0;
}

static uint32_t node_next_target(cm_node_t *n) {
  int rebuilt = 0;
  for (;;) {
    while (n->order_pos < n->order_len) {
      uint32_t s = n->order[n->order_pos++];
      if (s < n->reg.high && s != n->self && node_live(&n->reg.m[s]))
        return s;
    }
    if (rebuilt)
      return CM_NO_SLOT;
    node_order_rebuild(n);
    rebuilt = 1;
  }
}

static void node_ping_msg(cm_node_t *n, cm_msg_t *msg, uint32_t seq,
                          const char *target_id, size_t target_len) {
  const cm_member_t *self = &n->reg.m[n->self];
  memset(msg, 0, sizeof(*msg));
  msg->type = CM_MSG_PING;
  msg->u.ping.seq = seq;
  cm_wire_id_set(&msg->u.ping.target, target_id, target_len);
  cm_wire_id_set(&msg->u.ping.source, cm_member_id(self), self->id_len);
  msg->u.ping.source_addr = self->addr;
}

static void node_start_probe(cm_node_t *n, cm_time_t now) {
  uint32_t slot = node_phi_target(n, now);
  cm_member_t *t;
  cm_msg_t msgs[2];
  size_t nmsgs = 1;
  if (slot != CM_NO_SLOT)
    n->st.phi_probes++;
  else
    slot = node_next_target(n);
  if (slot == CM_NO_SLOT)
    return;
  t = node_m(n, slot);
  /* Only phi's early probes look at this, and only for peers with phi
   * state: no need to allocate it for everyone. */
  if (t->ext != NULL)
    t->ext->last_probed = now;
  memset(&n->probe, 0, sizeof(n->probe));
  n->probe.active = 1;
  n->probe.slot = slot;
  n->probe.target_hash = t->id_hash;
  n->probe.seq = ++n->seq;
  n->probe.start = now;
  n->probe.timeout_at = now + node_scaled(n, n->cfg.probe_timeout);
  n->probe.end_at = now + node_scaled(n, n->cfg.probe_interval);
  node_ping_msg(n, &msgs[0], n->probe.seq, cm_member_id(t), t->id_len);
  /* Buddy system: a suspect learns it is suspected from the probe itself,
   * and can refute at once instead of waiting for gossip to reach it. */
  if (t->state == CM_STATE_SUSPECT) {
    cm_member_t *self = node_self(n);
    msgs[1].type = CM_MSG_SUSPECT;
    cm_wire_id_set(&msgs[1].u.suspect.node, cm_member_id(t), t->id_len);
    msgs[1].u.suspect.incarnation = t->incarnation;
    cm_wire_id_set(&msgs[1].u.suspect.from, cm_member_id(self), self->id_len);
    nmsgs = 2;
  }
  n->st.probes++;
  node_send(n, &t->addr, msgs, nmsgs);
}

static int node_probe_target_ok(cm_node_t *n) {
  uint32_t s = n->probe.slot;
  return s < n->reg.high && n->reg.m[s].in_use &&
         n->reg.m[s].id_hash == n->probe.target_hash;
}

static void node_probe_indirect(cm_node_t *n, cm_time_t now) {
  uint32_t helpers[16], k, i;
  cm_member_t *t;
  cm_msg_t msg;
  n->probe.indirect = 1;
  if (!node_probe_target_ok(n))
    return;
  t = node_m(n, n->probe.slot);
  k = (uint32_t)node_pick(n, n->cfg.indirect_checks, node_filter_alive,
                          n->probe.slot, now, helpers);
  memset(&msg, 0, sizeof(msg));
  msg.type = CM_MSG_PING_REQ;
  msg.u.ping_req.seq = n->probe.seq;
  cm_wire_id_set(&msg.u.ping_req.target, cm_member_id(t), t->id_len);
  msg.u.ping_req.target_addr = t->addr;
  msg.u.ping_req.want_nack = 1;
  for (i = 0; i < k; i++)
    node_send(n, &node_m(n, helpers[i])->addr, &msg, 1);
  n->probe.expected_nacks = k;
  n->st.indirect_probes += k;
}

static void node_probe_end(cm_node_t *n, cm_time_t now) {
  cm_member_t *t, *self;
  n->probe.active = 0;
  if (n->probe.acked)
    return;
  n->st.probe_failures++;
  /* Lifeguard: if the helpers could not even nack, the problem is likely
   * ours; penalise once per missing nack, or once when nobody could help. */
  if (n->probe.expected_nacks > 0) {
    if (n->probe.nacks < n->probe.expected_nacks)
      node_awareness(n, (int)(n->probe.expected_nacks - n->probe.nacks));
  } else {
    node_awareness(n, +1);
  }
  if (!node_probe_target_ok(n))
    return;
  t = node_m(n, n->probe.slot);
  if (!node_live(t))
    return;
  /* Already suspect: our failed probe is an independent confirmation. */
  self = node_self(n);
  node_accuse(n, CM_NEWS_SUSPECT, cm_member_id(t), t->id_len, t->incarnation,
              cm_member_id(self), self->id_len, now);
}

static void node_probe_acked(cm_node_t *n, const cm_addr_t *from,
                             cm_time_t now) {
  n->probe.acked = 1;
  n->probe.active = 0;
  n->st.probe_acks++;
  node_awareness(n, -1);
  if (node_probe_target_ok(n) &&
      cm_addr_eq(from, &node_m(n, n->probe.slot)->addr))
    node_arrival(n, n->probe.slot, now);
}

/* ---------------------------------------------------------------- inputs */

static void node_on_ping(cm_node_t *n, const cm_addr_t *from,
                         const cm_msg_ping_t *p, cm_time_t now) {
  cm_member_t *self = node_self(n);
  cm_msg_t ack;
  int32_t src;
  n->st.pings_in++;
  if (p->target.len != self->id_len ||
      memcmp(p->target.s, cm_member_id(self), self->id_len) != 0) {
    n->st.drop_wrong_target++;
    return;
  }
  src = cm_registry_find(&n->reg, p->source.s, p->source.len);
  if (src >= 0 && cm_addr_eq(&node_m(n, (uint32_t)src)->addr, from))
    node_arrival(n, (uint32_t)src, now);
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = p->seq;
  node_send(n, from, &ack, 1);
}

static void node_on_ping_req(cm_node_t *n, const cm_addr_t *from,
                             const cm_msg_ping_req_t *r, cm_time_t now) {
  struct cm_fwd *f = NULL;
  cm_msg_t ping;
  size_t i;
  n->st.ping_reqs_in++;
  for (i = 0; i < CM_FWD_MAX; i++)
    if (!n->fwd[i].active) {
      f = &n->fwd[i];
      break;
    }
  if (f == NULL) {
    n->st.drop_forward_full++;
    return;
  }
  f->active = 1;
  f->want_nack = r->want_nack;
  f->seq = ++n->seq;
  f->orig_seq = r->seq;
  f->requester = *from;
  f->deadline = now + n->cfg.probe_timeout;
  node_ping_msg(n, &ping, f->seq, r->target.s, r->target.len);
  node_send(n, &r->target_addr, &ping, 1);
}

static void node_on_ack(cm_node_t *n, const cm_addr_t *from, uint32_t seq,
                        cm_time_t now) {
  size_t i;
  if (n->probe.active && !n->probe.acked && seq == n->probe.seq) {
    node_probe_acked(n, from, now);
    return;
  }
  for (i = 0; i < CM_FWD_MAX; i++) {
    struct cm_fwd *f = &n->fwd[i];
    if (f->active && f->seq == seq) {
      cm_msg_t ack;
      memset(&ack, 0, sizeof(ack));
      ack.type = CM_MSG_ACK;
      ack.u.ack.seq = f->orig_seq;
      f->active = 0;
      node_send(n, &f->requester, &ack, 1);
      return;
    }
  }
  n->st.drop_stale++;
}

static void node_on_nack(cm_node_t *n, uint32_t seq) {
  if (n->probe.active && seq == n->probe.seq) {
    n->probe.nacks++;
    n->st.nacks_in++;
  } else {
    n->st.drop_stale++;
  }
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
  m = node_m(n, (uint32_t)slot);
  if (inc >= m->incarnation || m->state != CM_STATE_ALIVE)
    return;
  memset(&alive, 0, sizeof(alive));
  alive.type = CM_MSG_ALIVE;
  alive.u.alive.node = *id;
  alive.u.alive.incarnation = m->incarnation;
  alive.u.alive.addr = m->addr;
  alive.u.alive.tags = m->tags;
  alive.u.alive.tags_len = m->tags_len;
  node_ext_of(m, &alive.u.alive.ext);
  n->st.stale_corrections++;
  node_send(n, from, &alive, 1);
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
    node_on_ping(n, from, &msg->u.ping, now);
    break;
  case CM_MSG_ACK:
    node_on_ack(n, from, msg->u.ack.seq, now);
    break;
  case CM_MSG_PING_REQ:
    node_on_ping_req(n, from, &msg->u.ping_req, now);
    break;
  case CM_MSG_NACK:
    node_on_nack(n, msg->u.nack.seq);
    break;
  case CM_MSG_ALIVE:
    node_alive(n, &msg->u.alive, now, 0);
    break;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    node_accuse(n, msg->type == CM_MSG_SUSPECT ? CM_NEWS_SUSPECT : CM_NEWS_DEAD,
                msg->u.suspect.node.s, msg->u.suspect.node.len,
                msg->u.suspect.incarnation, msg->u.suspect.from.s,
                msg->u.suspect.from.len, now);
    break;
  case CM_MSG_LEAVE:
    node_accuse(n, CM_NEWS_LEAVE, msg->u.leave.node.s, msg->u.leave.node.len,
                msg->u.leave.incarnation, NULL, 0, now);
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
  for (i = 0; i < count; i++)
    node_dispatch(n, from, &msgs[i], now);
  return 0;
}

/* ------------------------------------------------------------ push-pull */

static int node_pp_build(cm_node_t *n, uint8_t kind, uint8_t flags,
                         uint8_t **out, size_t *out_len) {
  cm_wbuf_t w;
  uint32_t i;
  size_t cap = 4096;
  int rc;
  /* Estimate generously; grow and retry if short, bounded by the limit. */
  cap += (size_t)n->reg.count * (CM_ID_MAX + 32);
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
    node_ext_of(m, &e.ext);
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

static int node_pp_request(cm_node_t *n, const cm_addr_t *to, int join) {
  struct cm_stream_out *s;
  uint8_t *data;
  size_t len;
  int rc;
  if (n->nstreams == n->streams_cap) {
    size_t ncap = n->streams_cap ? n->streams_cap * 2 : 8;
    struct cm_stream_out *ns = realloc(n->streams, ncap * sizeof(*ns));
    if (ns == NULL)
      return CM_ENOMEM;
    n->streams = ns;
    n->streams_cap = ncap;
  }
  rc = node_pp_build(n, CM_PP_REQUEST, join ? CM_PP_FLAG_JOIN : 0, &data, &len);
  if (rc != 0)
    return rc;
  s = &n->streams[n->nstreams++];
  s->to = *to;
  s->req_id = ++n->next_req_id;
  s->data = data;
  s->len = len;
  s->is_join = join;
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
 * sender, the accuser of the suspect and failed entries. Returns 0, or
 * CM_ENOMEM with nothing merged. */
static int node_pp_merge(cm_node_t *n, const uint8_t *buf, size_t len,
                         uint32_t count, cm_time_t now, int quiet) {
  size_t off = 0, at = 0, mask;
  struct node_pp_win *tab;
  cm_pp_entry_t e;
  cm_wire_id_t sender;
  int first = 1;
  int rc = node_pp_winners(buf, len, count, &tab, &mask);
  if (rc != 0)
    return rc;
  memset(&sender, 0, sizeof(sender));
  for (; cm_wire_pp_next(buf, len, &off, &e); at = off) {
    uint64_t hash = cm_id_hash(e.node.s, e.node.len);
    if (first) {
      sender = e.node;
      first = 0;
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
      node_alive(n, &a, now, quiet);
    } else {
      static const uint8_t kinds[] = {0, CM_NEWS_SUSPECT, CM_NEWS_PP_FAILED,
                                      CM_NEWS_LEAVE};
      node_accuse(n, kinds[e.state & 3], e.node.s, e.node.len, e.incarnation,
                  sender.s, sender.len, now);
    }
  }
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
  uint32_t count;
  int rc;
  if (n == NULL || req == NULL || reply == NULL || reply_len == NULL)
    return CM_EINVAL;
  rc = node_pp_check(n, req, len, CM_PP_REQUEST, &count);
  if (rc != 0)
    return rc;
  n->st.pushpull_in++;
  /* Merge before answering, so a refutation this exchange provokes (the
   * peer thought we had failed) is already in the reply. */
  rc = node_pp_merge(n, req, len, count, now, 0);
  if (rc != 0)
    return rc;
  (void)from;
  return node_pp_build(n, CM_PP_RESPONSE, 0, reply, reply_len);
}

/* Validate and merge a push-pull response; quiet as for node_alive. */
static int node_pp_take_response(cm_node_t *n, const uint8_t *buf, size_t len,
                                 cm_time_t now, int quiet) {
  uint32_t count;
  int rc;
  if (n == NULL || buf == NULL)
    return CM_EINVAL;
  rc = node_pp_check(n, buf, len, CM_PP_RESPONSE, &count);
  if (rc == 0)
    rc = node_pp_merge(n, buf, len, count, now, quiet);
  return rc;
}

int cm_node_pushpull_reply(cm_node_t *n, uint64_t req_id, const uint8_t *buf,
                           size_t len, cm_time_t now) {
  (void)req_id;
  return node_pp_take_response(n, buf, len, now, 0);
}

int cm_node_adopt_table(cm_node_t *n, const uint8_t *buf, size_t len,
                        cm_time_t now) {
  int rc = node_pp_take_response(n, buf, len, now, 1);
  if (rc != 0)
    return rc;
  /* In a cluster that has run for a while, push-pull phases are spread
   * over the interval; without this every node would exchange its whole
   * table at once, 15-30 s after the adoption. */
  {
    cm_time_t iv = cm_pushpull_scaled(&n->cfg, node_live_count(n));
    if (iv > (cm_time_t)UINT32_MAX - 1)
      iv = (cm_time_t)UINT32_MAX - 1;
    n->next_pushpull = now + cm_rand_below(&n->rng, (uint32_t)iv + 1);
  }
  return 0;
}

void cm_node_pushpull_failed(cm_node_t *n, uint64_t req_id, cm_time_t now) {
  (void)req_id;
  (void)now;
  n->st.pushpull_failed++;
}

/* --------------------------------------------------------------- timers */

/* Candidates drawn per gossip target when the driver says which peers are
 * connected: enough to usually find connected ones among them. */
#define CM_GOSSIP_OVERSAMPLE 4

static void node_gossip(cm_node_t *n, cm_time_t now) {
  uint32_t cand[64 * CM_GOSSIP_OVERSAMPLE], targets[64];
  size_t want = n->cfg.gossip_nodes, k, i, nt = 0;
  if (cm_bcast_len(&n->bq) == 0)
    return;
  if (n->hint == NULL) {
    nt = node_pick(n, want, node_filter_gossip, CM_NO_SLOT, now, targets);
  } else {
    /* Connected candidates first, in random order, then the others. */
    k = node_pick(n, want * CM_GOSSIP_OVERSAMPLE, node_filter_gossip,
                  CM_NO_SLOT, now, cand);
    for (i = 0; i < k && nt < want; i++)
      if (n->hint(n->hint_ud, &node_m(n, cand[i])->addr)) {
        targets[nt++] = cand[i];
        cand[i] = CM_NO_SLOT;
      }
    for (i = 0; i < k && nt < want; i++)
      if (cand[i] != CM_NO_SLOT)
        targets[nt++] = cand[i];
  }
  for (i = 0; i < nt; i++)
    node_send(n, &node_m(n, targets[i])->addr, NULL, 0);
}

void cm_node_set_peer_hint(cm_node_t *n, cm_peer_hint_fn fn, void *ud) {
  n->hint = fn;
  n->hint_ud = ud;
}

static void node_reap(cm_node_t *n, cm_time_t now) {
  uint32_t i;
  for (i = 0; i < n->reg.high; i++) {
    cm_member_t *m = &n->reg.m[i];
    cm_time_t age;
    if (!m->in_use || i == n->self)
      continue;
    age = now - m->state_change;
    if ((m->state == CM_STATE_LEFT && age >= n->cfg.reap_left_after) ||
        (m->state == CM_STATE_FAILED && age >= n->cfg.reconnect_timeout)) {
      node_event(n, CM_EV_REAPED, m, NULL, now);
      node_count_state(n, m->state, -1);
      cm_bcast_forget(&n->bq, i);
      cm_bcast_forget_aux(&n->bq, i);
      if (m->ext != NULL && m->ext->phi_watched)
        node_watch_remove(n, i);
      cm_registry_remove(&n->reg, i);
    }
  }
}

static void node_expire_forwards(cm_node_t *n, cm_time_t now) {
  size_t i;
  for (i = 0; i < CM_FWD_MAX; i++) {
    struct cm_fwd *f = &n->fwd[i];
    if (!f->active || f->deadline > now)
      continue;
    f->active = 0;
    if (f->want_nack) {
      cm_msg_t nack;
      memset(&nack, 0, sizeof(nack));
      nack.type = CM_MSG_NACK;
      nack.u.nack.seq = f->orig_seq;
      node_send(n, &f->requester, &nack, 1);
    }
  }
}

/* Called at now for a deadline that was due at `due`, much earlier: this
 * node was not running (a paused process, a starved thread, a suspended
 * machine). Time it did not live through must not count against others:
 * pending suspicions and the probe in flight are shifted by the lag, as
 * Cassandra refuses to convict after its own pause. Being late also says
 * our own health is poor. */
static void node_stalled(cm_node_t *n, cm_time_t lag) {
  uint32_t i;
  n->st.stalls++;
  node_awareness(n, +1);
  for (i = 0; i < n->nsuspects; i++) {
    cm_member_t *m = node_m(n, n->suspects[i]);
    if (m->ext != NULL && m->ext->susp != NULL)
      m->ext->susp->start += lag;
  }
  if (n->probe.active) {
    n->probe.timeout_at += lag;
    n->probe.end_at += lag;
  }
}

void cm_node_tick(cm_node_t *n, cm_time_t now) {
  cm_time_t due;
  if (n == NULL)
    return;
  /* A tick later than its deadline by more than a probe timeout means the
   * node itself stalled; any less is ordinary scheduling noise. */
  due = cm_node_next_deadline(n);
  if (due != CM_TIME_NEVER && now > due + n->cfg.probe_timeout)
    node_stalled(n, now - due);
  node_expire_forwards(n, now);
  if (n->probe.active) {
    if (!n->probe.acked && !n->probe.indirect && now >= n->probe.timeout_at)
      node_probe_indirect(n, now);
    if (now >= n->probe.end_at)
      node_probe_end(n, now);
  }
  node_check_suspects(n, now);
  if (!n->leaving && now >= n->next_probe) {
    node_start_probe(n, now);
    n->next_probe = now + node_scaled(n, n->cfg.probe_interval);
  }
  if (now >= n->next_gossip) {
    node_gossip(n, now);
    n->next_gossip = now + n->cfg.gossip_interval;
  }
  if (!n->leaving && now >= n->next_pushpull) {
    uint32_t peer;
    if (node_pick(n, 1, node_filter_alive, CM_NO_SLOT, now, &peer) == 1)
      node_pp_request(n, &node_m(n, peer)->addr, 0);
    n->next_pushpull = now + cm_pushpull_scaled(&n->cfg, node_live_count(n));
  }
  if (!n->leaving && now >= n->next_reconnect) {
    /* Keep trying failed members, so a healed partition merges back
     * without anyone rejoining by hand (Serf's reconnect). */
    uint32_t peer;
    if (n->st.failed > 0 &&
        node_pick(n, 1, node_filter_reconnect, CM_NO_SLOT, now, &peer) == 1)
      node_pp_request(n, &node_m(n, peer)->addr, 0);
    n->next_reconnect = now + n->cfg.reconnect_interval;
  }
  if (now >= n->next_reap) {
    node_reap(n, now);
    n->next_reap = now + CM_REAP_PERIOD;
  }
}

static cm_time_t min_t(cm_time_t a, cm_time_t b) { return a < b ? a : b; }

cm_time_t cm_node_next_deadline(const cm_node_t *n) {
  cm_time_t d = CM_TIME_NEVER;
  uint32_t i;
  if (n == NULL)
    return d;
  if (!n->leaving) {
    d = min_t(d, n->next_probe);
    d = min_t(d, n->next_pushpull);
    d = min_t(d, n->next_reconnect);
  }
  if (n->probe.active) {
    if (!n->probe.acked && !n->probe.indirect)
      d = min_t(d, n->probe.timeout_at);
    d = min_t(d, n->probe.end_at);
  }
  if (cm_bcast_len(&n->bq) > 0)
    d = min_t(d, n->next_gossip);
  d = min_t(d, n->next_reap);
  for (i = 0; i < CM_FWD_MAX; i++)
    if (n->fwd[i].active)
      d = min_t(d, n->fwd[i].deadline);
  for (i = 0; i < n->nsuspects; i++) {
    const cm_member_t *m = &n->reg.m[n->suspects[i]];
    if (m->ext != NULL && m->ext->susp != NULL)
      d = min_t(d, cm_suspicion_deadline(m->ext->susp));
  }
  return d;
}

/* ------------------------------------------------------------ public API */

int cm_node_check_tags(const cm_node_t *n, const uint8_t *blob, size_t len) {
  size_t off = 0;
  cm_tag_t t;
  if (len > 0 && blob == NULL)
    return CM_EINVAL;
  if (len > n->cfg.max_tags_size)
    return CM_ETAGSET;
  if (cm_tags_validate(blob, len) != 0)
    return CM_ETAGSET;
  while (cm_tags_next(blob, len, &off, &t)) {
    if (t.key_len > n->cfg.max_tag_key)
      return CM_ETAGKEY;
    if (t.value_len > n->cfg.max_tag_value)
      return CM_ETAGVAL;
  }
  return 0;
}

int cm_node_new(cm_node_t **out, const cm_config_t *cfg, const char *id,
                const cm_addr_t *addr, const uint8_t *tags, size_t tags_len,
                uint64_t seed, cm_time_t now) {
  cm_node_t *n;
  cm_member_t *self;
  int32_t slot;
  int rc;
  size_t idlen;
  if (out == NULL || cfg == NULL)
    return CM_EINVAL;
  *out = NULL;
  if (cm_config_validate(cfg, NULL) != 0)
    return CM_ECONFIG;
  idlen = id ? strnlen(id, CM_ID_MAX + 1) : 0;
  if (!cm_id_valid(id, idlen))
    return CM_ENODEID;
  if (!cm_addr_valid(addr))
    return CM_EADDR;
  n = calloc(1, sizeof(*n));
  if (n == NULL)
    return CM_ENOMEM;
  n->cfg = *cfg;
  rc = cm_node_check_tags(n, tags, tags_len);
  if (rc != 0) {
    free(n);
    return rc;
  }
  cm_rand_seed(&n->rng, seed);
  cm_registry_init(&n->reg);
  cm_bcast_init(&n->bq, cfg->max_broadcast_queue);
  n->pkt = malloc(cfg->max_packet_size);
  slot = cm_registry_add(&n->reg, id, idlen);
  if (n->pkt == NULL || slot < 0) {
    cm_node_free(n);
    return CM_ENOMEM;
  }
  n->self = (uint32_t)slot;
  n->reg.m[slot].vmin = CM_WIRE_VERSION_MIN;
  n->reg.m[slot].vmax = CM_WIRE_VERSION_MAX;
  cm_registry_set_addr(&n->reg, n->self, addr);
  self = node_self(n);
  self->state = CM_STATE_ALIVE;
  self->state_change = now;
  if (cm_member_set_tags(self, tags, tags_len) != 0) {
    cm_node_free(n);
    return CM_ENOMEM;
  }
  node_count_state(n, CM_STATE_ALIVE, +1);
  /* Timers start at a random phase so nodes started together do not probe
   * and gossip in lockstep. */
  n->next_probe = now + cm_rand_below(&n->rng, (uint32_t)cfg->probe_interval);
  n->next_gossip = now + cm_rand_below(&n->rng, (uint32_t)cfg->gossip_interval);
  n->next_pushpull =
      now + cfg->pushpull_interval / 2 +
      cm_rand_below(&n->rng, (uint32_t)(cfg->pushpull_interval / 2 + 1));
  n->next_reconnect = now + cfg->reconnect_interval;
  n->next_reap = now + CM_REAP_PERIOD;
  node_broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, 0, n->self, now);
  *out = n;
  return 0;
}

void cm_node_free(cm_node_t *n) {
  size_t i;
  if (n == NULL)
    return;
  for (i = 0; i < n->nstreams; i++)
    free(n->streams[i].data);
  free(n->streams);
  cm_registry_free(&n->reg);
  cm_bcast_free(&n->bq);
  free(n->order);
  free(n->suspects);
  free(n->pkt);
  free(n->arena);
  free(n->dgs);
  free(n->events);
  free(n);
}

const cm_config_t *cm_node_config(const cm_node_t *n) { return &n->cfg; }

int cm_node_join(cm_node_t *n, const cm_addr_t *seeds, size_t nseeds,
                 cm_time_t now) {
  size_t i;
  int rc;
  (void)now;
  if (n == NULL || (seeds == NULL && nseeds > 0))
    return CM_EINVAL;
  if (n->leaving)
    return CM_ESTATE;
  for (i = 0; i < nseeds; i++)
    if (!cm_addr_valid(&seeds[i]))
      return CM_EADDR;
  for (i = 0; i < nseeds; i++) {
    if (cm_addr_eq(&seeds[i], &node_self(n)->addr))
      continue;
    rc = node_pp_request(n, &seeds[i], 1);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int cm_node_leave(cm_node_t *n, cm_time_t now) {
  cm_member_t *self;
  if (n == NULL)
    return CM_EINVAL;
  if (n->leaving)
    return 0;
  n->leaving = 1;
  self = node_self(n);
  node_set_state(n, n->self, CM_STATE_LEFT, now);
  n->probe.active = 0;
  node_broadcast(n, n->self, CM_MSG_LEAVE, CM_PRIO_CRITICAL, self->incarnation,
                 0, now);
  return 0;
}

int cm_node_leave_done(const cm_node_t *n) {
  const cm_bcast_item_t *it;
  if (!n->leaving)
    return 0;
  if (node_live_count(n) == 0)
    return 1;
  it = cm_bcast_peek_key(&n->bq, n->self);
  return it == NULL || it->kind != CM_MSG_LEAVE;
}

int cm_node_set_tags(cm_node_t *n, const uint8_t *blob, size_t len,
                     cm_time_t now) {
  cm_member_t *self;
  int rc;
  if (n == NULL)
    return CM_EINVAL;
  if (n->leaving)
    return CM_ESTATE;
  rc = cm_node_check_tags(n, blob, len);
  if (rc != 0)
    return rc;
  self = node_self(n);
  if (self->incarnation == UINT32_MAX)
    return CM_ELIMIT; /* no later incarnation to announce it with */
  rc = cm_member_set_tags(self, blob, len);
  if (rc != 0)
    return rc;
  self->incarnation++;
  node_broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, self->incarnation,
                 n->self, now);
  node_event(n, CM_EV_TAGS_UPDATED, self, NULL, now);
  return 0;
}

int cm_node_set_tag(cm_node_t *n, const char *key, const char *value,
                    cm_time_t now) {
  uint8_t buf[CM_WIRE_MAX_TAGS_LEN];
  size_t klen, vlen, len;
  cm_member_t *self;
  int rc;
  if (n == NULL || key == NULL || value == NULL)
    return CM_EINVAL;
  klen = strlen(key);
  vlen = strlen(value);
  if (klen == 0 || klen > n->cfg.max_tag_key || !cm_tag_key_valid(key, klen))
    return CM_ETAGKEY;
  if (vlen > n->cfg.max_tag_value)
    return CM_ETAGVAL;
  self = node_self(n);
  rc = cm_tags_set(self->tags, self->tags_len, key, klen, value, vlen, buf,
                   sizeof(buf), &len);
  if (rc == CM_ENOSPC)
    return CM_ETAGSET;
  if (rc != 0)
    return rc;
  return cm_node_set_tags(n, buf, len, now);
}

int cm_node_remove_tag(cm_node_t *n, const char *key, cm_time_t now) {
  uint8_t buf[CM_WIRE_MAX_TAGS_LEN];
  size_t len;
  cm_member_t *self;
  int rc;
  if (n == NULL || key == NULL)
    return CM_EINVAL;
  self = node_self(n);
  rc = cm_tags_remove(self->tags, self->tags_len, key, strlen(key), buf,
                      sizeof(buf), &len);
  if (rc != 0)
    return rc;
  return cm_node_set_tags(n, buf, len, now);
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

uint32_t cm_node_member_slots(const cm_node_t *n) { return n->reg.high; }

int cm_node_member_get(const cm_node_t *n, uint32_t slot,
                       cm_member_info_t *info, cm_time_t now) {
  const cm_member_t *m;
  if (slot >= n->reg.high || !n->reg.m[slot].in_use)
    return 0;
  m = &n->reg.m[slot];
  info->id = cm_member_id(m);
  info->addr = m->addr;
  info->incarnation = m->incarnation;
  info->state = m->state;
  info->tags = m->tags;
  info->tags_len = m->tags_len;
  info->state_change = m->state_change;
  info->phi = node_phi(n, m, now);
  info->is_self = slot == n->self;
  info->proto_min = m->vmin;
  info->proto_max = m->vmax;
  return 1;
}

int cm_node_member_find(const cm_node_t *n, const char *id,
                        cm_member_info_t *info, cm_time_t now) {
  int32_t s = cm_registry_find(&n->reg, id, strnlen(id, CM_ID_MAX + 1));
  if (s < 0)
    return 0;
  return cm_node_member_get(n, (uint32_t)s, info, now);
}

int cm_node_has_member_at(cm_node_t *n, const cm_addr_t *addr) {
  uint32_t cursor = 0;
  int32_t s;
  if (addr == NULL || cm_registry_index_addrs(&n->reg) != 0)
    return 0;
  while ((s = cm_registry_find_addr(&n->reg, addr, &cursor)) >= 0)
    if ((uint32_t)s != n->self &&
        node_m(n, (uint32_t)s)->state != CM_STATE_LEFT)
      return 1;
  return 0;
}

void cm_node_stats(const cm_node_t *n, cm_node_stats_t *out) {
  *out = n->st;
  out->members = n->reg.count;
  out->incarnation = n->reg.m[n->self].incarnation;
  out->health = n->awareness;
  out->bcast_queue = cm_bcast_len(&n->bq);
  out->updates_dropped += n->bq.dropped;
}

const char *cm_node_id(const cm_node_t *n) {
  return cm_member_id(&n->reg.m[n->self]);
}

const cm_addr_t *cm_node_addr(const cm_node_t *n) {
  return &n->reg.m[n->self].addr;
}

const char *cm_state_name(uint8_t state) {
  static const char *const names[] = {"alive", "suspect", "failed", "left"};
  return state < 4 ? names[state] : "unknown";
}

const char *cm_event_name(uint8_t type) {
  static const char *const names[] = {
      "?",    "joined", "suspect",  "failed", "recovered",
      "left", "tags",   "conflict", "reaped", "addr_changed"};
  return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}
