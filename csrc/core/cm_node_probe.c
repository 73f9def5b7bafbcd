/*
 * Probe scheduling and the failure detector's inputs: random picks, the
 * round-robin probe order, phi (kept for display), direct and indirect probes,
 * the pings, acks and nacks that answer them, and local health (Lifeguard's
 * awareness, and a stall of this node).
 */
#include <stdlib.h>
#include <string.h>

#include "cm_merge.h"
#include "cm_node_int.h"

/* Lifeguard's local health score, kept in [0, awareness_max): probe
 * intervals and timeouts are scaled by it (cm_node__scaled). */
void cm_node__awareness(cm_node_t *n, int delta) {
  int64_t v = (int64_t)n->awareness + delta;
  int64_t hi = (int64_t)n->cfg.awareness_max - 1;
  if (v < 0)
    v = 0;
  if (v > hi)
    v = hi;
  n->awareness = (uint32_t)v;
}

/* ----------------------------------------------------------- random picks */

static int node_pick_has(const uint32_t *out, size_t k, uint32_t slot) {
  size_t i;
  for (i = 0; i < k; i++)
    if (out[i] == slot)
      return 1;
  return 0;
}

/* Up to want distinct random slots passing filter, excluding self and
 * `exclude`. Small registries are scanned; large ones sampled. */
size_t cm_node__pick(cm_node_t *n, size_t want, cm_node__filter_fn filter,
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

int cm_node__filter_alive(const cm_node_t *n, uint32_t s, cm_time_t now) {
  return n->reg.m[s].state == CM_STATE_ALIVE;
}

/* ------------------------------------------------------------------ phi */

/* Phi is kept per peer for display (cm_node_member_get) and takes no part
 * in choosing probe targets: with one probe per member per round, a peer is
 * heard from about twice a round, so phi crosses its threshold only long
 * after the round-robin order has probed a silent peer (docs/protocol.md,
 * "Phi accrual"; the A/B study in docs/benchmarks.md). */
static void node_arrival(cm_node_t *n, uint32_t slot, cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  if (slot == n->self)
    return;
  cm_member_ext_t *x = cm_member_ext(m);
  if (x == NULL ||
      (x->phi == NULL && (x->phi = cm_phi_new(n->cfg.phi_window)) == NULL))
    return;
  cm_phi_arrival(x->phi, now);
}

double cm_node__phi(const cm_node_t *n, const cm_member_t *m, cm_time_t now) {
  return cm_phi_value(m->ext != NULL ? m->ext->phi : NULL, now,
                      n->cfg.phi_min_samples, n->cfg.phi_min_std,
                      n->cfg.phi_acceptable_pause);
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
    if (i != n->self && cm_node__live(&n->reg.m[i]))
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
      if (s < n->reg.high && s != n->self && cm_node__live(&n->reg.m[s]))
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

/* SWIM's rule: every live member is probed once per round, in an order
 * shuffled each round, and nothing else is probed. */
void cm_node__start_probe(cm_node_t *n, cm_time_t now) {
  uint32_t slot = node_next_target(n);
  cm_member_t *t;
  cm_msg_t msgs[2];
  size_t nmsgs = 1;
  if (slot == CM_NO_SLOT)
    return;
  t = cm_node__m(n, slot);
  memset(&n->probe, 0, sizeof(n->probe));
  n->probe.active = 1;
  n->probe.slot = slot;
  n->probe.target_hash = t->id_hash;
  n->probe.target_inc = t->incarnation;
  n->probe.seq = ++n->seq;
  n->probe.start = now;
  n->probe.timeout_at = now + cm_node__scaled(n, n->cfg.probe_timeout);
  n->probe.end_at = now + cm_node__scaled(n, n->cfg.probe_interval);
  node_ping_msg(n, &msgs[0], n->probe.seq, cm_member_id(t), t->id_len);
  /* Buddy system: a suspect learns it is suspected from the probe itself,
   * and can refute at once instead of waiting for gossip to reach it. */
  if (t->state == CM_STATE_SUSPECT) {
    cm_member_t *self = cm_node__self(n);
    msgs[1].type = CM_MSG_SUSPECT;
    cm_wire_id_set(&msgs[1].u.suspect.node, cm_member_id(t), t->id_len);
    msgs[1].u.suspect.incarnation = t->incarnation;
    cm_wire_id_set(&msgs[1].u.suspect.from, cm_member_id(self), self->id_len);
    nmsgs = 2;
  }
  n->st.probes++;
  cm_node__send(n, &t->addr, msgs, nmsgs);
}

static int node_probe_target_ok(cm_node_t *n) {
  uint32_t s = n->probe.slot;
  return s < n->reg.high && n->reg.m[s].in_use &&
         n->reg.m[s].id_hash == n->probe.target_hash;
}

void cm_node__probe_indirect(cm_node_t *n, cm_time_t now) {
  uint32_t helpers[CM_PROBE_HELPERS_MAX], k, i;
  cm_member_t *t;
  cm_msg_t msg;
  n->probe.indirect = 1;
  if (!node_probe_target_ok(n))
    return;
  t = cm_node__m(n, n->probe.slot);
  k = (uint32_t)cm_node__pick(n, n->cfg.indirect_checks, cm_node__filter_alive,
                              n->probe.slot, now, helpers);
  memset(&msg, 0, sizeof(msg));
  msg.type = CM_MSG_PING_REQ;
  msg.u.ping_req.seq = n->probe.seq;
  cm_wire_id_set(&msg.u.ping_req.target, cm_member_id(t), t->id_len);
  msg.u.ping_req.target_addr = t->addr;
  msg.u.ping_req.want_nack = 1;
  for (i = 0; i < k; i++) {
    n->probe.helper[i] = helpers[i];
    n->probe.helper_hash[i] = cm_node__m(n, helpers[i])->id_hash;
    n->probe.helper_nacked[i] = 0;
    cm_node__send(n, &cm_node__m(n, helpers[i])->addr, &msg, 1);
  }
  n->probe.expected_nacks = k;
  n->st.indirect_probes += k;
}

/* Helper i of the probe nacked and is still the live member it was. */
static int node_helper_nacked(const cm_node_t *n, uint32_t i) {
  uint32_t h = n->probe.helper[i];
  return n->probe.helper_nacked[i] && h < n->reg.high && n->reg.m[h].in_use &&
         n->reg.m[h].id_hash == n->probe.helper_hash[i] &&
         cm_node__live(&n->reg.m[h]);
}

/* When two or more helpers, at distinct addresses, nacked the probe that
 * raised a suspicion, two other members tried the target (each also at the
 * address it holds for it) and heard nothing either. That is what a
 * confirmation says, so it counts as one, credited to the first of them;
 * memberlist uses nacks only for the asker's own health. One helper's nack
 * alone (one link, perhaps bad) does not count. Only the probe that raised
 * the suspicion counts its nacks: a probe of a member already suspect is
 * itself the confirmation, so neither a probe nor an asker ever brings more
 * than one. A lone accuser with a bad link of its own gets no nack (its
 * helpers reach the target, or their nacks do not reach it), so it still
 * waits. */
static void node_nacks_confirm(cm_node_t *n, cm_time_t now) {
  uint32_t i, j, distinct = 0, first = CM_NO_SLOT;
  cm_member_t *t, *hm;
  if (!node_probe_target_ok(n))
    return;
  t = cm_node__m(n, n->probe.slot);
  if (t->state != CM_STATE_SUSPECT || t->incarnation != n->probe.target_inc)
    return;
  for (i = 0; i < n->probe.expected_nacks && i < CM_PROBE_HELPERS_MAX; i++) {
    int dup = 0;
    if (!node_helper_nacked(n, i))
      continue;
    for (j = 0; j < i && !dup; j++)
      dup = node_helper_nacked(n, j) &&
            cm_addr_eq(&n->reg.m[n->probe.helper[j]].addr,
                       &n->reg.m[n->probe.helper[i]].addr);
    if (dup)
      continue;
    if (distinct++ == 0)
      first = n->probe.helper[i];
  }
  if (distinct < 2)
    return;
  hm = cm_node__m(n, first);
  n->in_probe_end = 2;
  cm_node__accuse(n, CM_NEWS_SUSPECT, cm_member_id(t), t->id_len,
                  t->incarnation, cm_member_id(hm), hm->id_len, now);
  n->in_probe_end = 0;
}

void cm_node__probe_end(cm_node_t *n, cm_time_t now) {
  cm_member_t *t, *self;
  int raised;
  n->probe.active = 0;
  if (n->probe.acked)
    return;
  n->st.probe_failures++;
  /* Lifeguard: if the helpers could not even nack, the problem is likely
   * ours; penalise once per missing nack, or once when nobody could help. */
  if (n->probe.expected_nacks > 0) {
    if (n->probe.nacks < n->probe.expected_nacks)
      cm_node__awareness(n, (int)(n->probe.expected_nacks - n->probe.nacks));
  } else {
    cm_node__awareness(n, +1);
  }
  if (!node_probe_target_ok(n))
    return;
  t = cm_node__m(n, n->probe.slot);
  if (!cm_node__live(t))
    return;
  /* The silence speaks only of the incarnation probed. News of a later one
   * since (a refutation, or a restarted process back after it was declared
   * failed) is newer than the probe: charged to it, a failure sent to the
   * old process would suspect the new one. The next round probes that. */
  if (t->incarnation != n->probe.target_inc)
    return;
  /* Already suspect: our failed probe is an independent confirmation. */
  raised = t->state != CM_STATE_SUSPECT;
  self = cm_node__self(n);
  n->in_probe_end = 1;
  cm_node__accuse(n, CM_NEWS_SUSPECT, cm_member_id(t), t->id_len,
                  t->incarnation, cm_member_id(self), self->id_len, now);
  n->in_probe_end = 0;
  if (raised && n->cfg.nack_confirms)
    node_nacks_confirm(n, now);
}

/* A direct probe of slot answered by the target itself after rtt: into the
 * histogram, the member's last round trips, and the network coordinate. */
static void node_rtt_sample(cm_node_t *n, uint32_t slot, cm_time_t rtt) {
  cm_member_ext_t *x = cm_member_ext(cm_node__m(n, slot));
  double s = (double)rtt / 1e6;
  size_t b = 0;
  while (b + 1 < CM_RTT_BUCKETS && s > cm_rtt_bucket_bounds[b])
    b++;
  n->st.probe_rtt_count++;
  n->st.probe_rtt_sum += s;
  n->st.probe_rtt_buckets[b]++;
  if (x != NULL &&
      (x->rtt != NULL || (x->rtt = calloc(1, sizeof(*x->rtt))) != NULL)) {
    x->rtt->ring[x->rtt->pos] = (uint32_t)(rtt > UINT32_MAX ? UINT32_MAX : rtt);
    x->rtt->pos = (uint8_t)((x->rtt->pos + 1) % 16);
    if (x->rtt->n < 16)
      x->rtt->n++;
  }
  cm_node__coord_acked(n, slot, rtt);
}

static void node_probe_acked(cm_node_t *n, const cm_addr_t *from,
                             cm_time_t now) {
  n->probe.acked = 1;
  n->probe.active = 0;
  n->st.probe_acks++;
  if (n->awareness > 0)
    cm_node__tell_suspects(n);
  cm_node__awareness(n, -1);
  if (node_probe_target_ok(n) &&
      cm_addr_eq(from, &cm_node__m(n, n->probe.slot)->addr)) {
    node_arrival(n, n->probe.slot, now);
    /* Answered by the target itself (not through a helper): a round trip,
     * for the histogram and the network coordinate. */
    if (!n->probe.indirect)
      node_rtt_sample(n, n->probe.slot, now - n->probe.start);
  }
}

/* ---------------------------------------------------------------- inputs */

void cm_node__on_ping(cm_node_t *n, const cm_addr_t *from,
                      const cm_msg_ping_t *p, cm_time_t now) {
  cm_member_t *self = cm_node__self(n);
  cm_msg_t ack[2];
  int32_t src;
  n->st.pings_in++;
  if (p->target.len != self->id_len ||
      memcmp(p->target.s, cm_member_id(self), self->id_len) != 0) {
    n->st.drop_wrong_target++;
    return;
  }
  src = cm_registry_find(&n->reg, p->source.s, p->source.len);
  if (src >= 0 && cm_addr_eq(&cm_node__m(n, (uint32_t)src)->addr, from))
    node_arrival(n, (uint32_t)src, now);
  /* A ping from a process that calls itself by our id: the other side of a
   * duplicate asking whether we are live. It hears yes below; we report the
   * conflict too, so both processes say so. */
  if ((uint32_t)src == n->self && !cm_addr_eq(&p->source_addr, &self->addr))
    cm_node__conflict(n, n->self, &p->source_addr, now);
  memset(&ack[0], 0, sizeof(ack[0]));
  ack[0].type = CM_MSG_ACK;
  ack[0].u.ack.seq = p->seq;
  /* Our coordinate rides with the ack: the prober measures the RTT. */
  cm_node__send(n, from, ack, 1 + (size_t)cm_node__coord_msg(n, src, &ack[1]));
}

void cm_node__on_ping_req(cm_node_t *n, const cm_addr_t *from,
                          const cm_msg_ping_req_t *r, cm_time_t now) {
  struct cm_fwd *f = NULL;
  cm_msg_t ping;
  size_t i;
  int32_t t;
  const cm_member_t *held;
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
  f->nacked = 0;
  f->nack_at = now + cm_nack_wait(&n->cfg);
  f->seq = ++n->seq;
  f->orig_seq = r->seq;
  f->requester = *from;
  f->deadline = now + n->cfg.probe_timeout;
  node_ping_msg(n, &ping, f->seq, r->target.s, r->target.len);
  cm_node__send(n, &r->target_addr, &ping, 1);
  /* From where we stand too: a target we hold live at another address (it
   * moved, and one of us has not heard yet) is tried there as well, with
   * the same seq, so that a stale address on either side does not make a
   * nack that would confirm (nack_confirms; off, memberlist's rule). */
  if (!n->cfg.nack_confirms ||
      (t = cm_registry_find(&n->reg, r->target.s, r->target.len)) < 0 ||
      (uint32_t)t == n->self)
    return;
  held = cm_node__m(n, (uint32_t)t);
  if (cm_node__live(held) && !cm_addr_eq(&held->addr, &r->target_addr))
    cm_node__send(n, &held->addr, &ping, 1);
}

void cm_node__on_ack(cm_node_t *n, const cm_addr_t *from, uint32_t seq,
                     cm_time_t now) {
  size_t i;
  if (n->probe.active && !n->probe.acked && seq == n->probe.seq) {
    node_probe_acked(n, from, now);
    return;
  }
  if (n->idcheck.state == CM_IDCHECK_PENDING && seq == n->idcheck.seq &&
      cm_addr_eq(from, &n->idcheck.addr)) {
    n->idcheck.state = CM_IDCHECK_DUPLICATE;
    n->st.duplicates++;
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
      cm_node__send(n, &f->requester, &ack, 1);
      return;
    }
  }
  n->st.drop_stale++;
}

/* Any nack of the probe's seq counts for this node's health, as in
 * memberlist; the helper it came from (the first asked at that address not
 * yet heard) is marked for node_nacks_confirm. */
void cm_node__on_nack(cm_node_t *n, const cm_addr_t *from, uint32_t seq) {
  uint32_t i;
  if (!n->probe.active || seq != n->probe.seq) {
    n->st.drop_stale++;
    return;
  }
  n->probe.nacks++;
  n->st.nacks_in++;
  for (i = 0; i < n->probe.expected_nacks && i < CM_PROBE_HELPERS_MAX; i++) {
    uint32_t h = n->probe.helper[i];
    if (!n->probe.helper_nacked[i] && h < n->reg.high &&
        cm_addr_eq(from, &n->reg.m[h].addr)) {
      n->probe.helper_nacked[i] = 1;
      return;
    }
  }
}

void cm_node__expire_forwards(cm_node_t *n, cm_time_t now) {
  size_t i;
  for (i = 0; i < CM_FWD_MAX; i++) {
    struct cm_fwd *f = &n->fwd[i];
    if (!f->active)
      continue;
    if (f->want_nack && !f->nacked && f->nack_at <= now) {
      cm_msg_t nack;
      memset(&nack, 0, sizeof(nack));
      nack.type = CM_MSG_NACK;
      nack.u.nack.seq = f->orig_seq;
      f->nacked = 1;
      cm_node__send(n, &f->requester, &nack, 1);
    }
    if (f->deadline <= now)
      f->active = 0;
  }
}

/* Called at now for a deadline that was due at `due`, much earlier: this
 * node was not running (a paused process, a starved thread, a suspended
 * machine). Time it did not live through must not count against others:
 * pending suspicions and the probe in flight are shifted by the lag, as
 * Cassandra refuses to convict after its own pause. Being late also says
 * our own health is poor. */
void cm_node__stalled(cm_node_t *n, cm_time_t lag) {
  uint32_t i;
  n->st.stalls++;
  cm_node__awareness(n, +1);
  for (i = 0; i < n->suspects.len; i++) {
    cm_suspicion_t *s = cm_node__m(n, n->suspects.e[i].id)->ext->susp;
    s->start += lag;
    n->suspects.e[i].key = cm_suspicion_deadline(s);
  }
  cm_theap_heapify(&n->suspects);
  if (n->probe.active) {
    n->probe.timeout_at += lag;
    n->probe.end_at += lag;
  }
}

/* ------------------------------------------------------- duplicate ids */

/* Unanswered checks are not repeated sooner than this many probe
 * intervals: the claim of a dead predecessor keeps arriving by gossip until
 * the cluster declares it failed, and each would cost a ping. */
#define CM_IDCHECK_BACKOFF 10

void cm_node__id_check_start(cm_node_t *n, const cm_addr_t *other,
                             cm_time_t now) {
  struct cm_idcheck *c = &n->idcheck;
  const cm_member_t *self = cm_node__self(n);
  cm_msg_t ping;
  if (c->state != CM_IDCHECK_NONE || now < c->next_allowed || n->leaving)
    return;
  c->state = CM_IDCHECK_PENDING;
  c->seq = ++n->seq;
  c->addr = *other;
  c->deadline = now + cm_node__scaled(n, n->cfg.probe_interval);
  node_ping_msg(n, &ping, c->seq, cm_member_id(self), self->id_len);
  cm_node__send(n, other, &ping, 1);
}

void cm_node__id_check_expire(cm_node_t *n, cm_time_t now) {
  struct cm_idcheck *c = &n->idcheck;
  if (c->state != CM_IDCHECK_PENDING || now < c->deadline)
    return;
  c->state = CM_IDCHECK_NONE;
  c->next_allowed = now + CM_IDCHECK_BACKOFF * n->cfg.probe_interval;
}

int cm_node_id_check(const cm_node_t *n, cm_addr_t *other) {
  if (n == NULL)
    return CM_IDCHECK_NONE;
  if (other != NULL)
    *other = n->idcheck.addr;
  return n->idcheck.state;
}

void cm_node_id_check_reset(cm_node_t *n) {
  if (n != NULL && n->idcheck.state != CM_IDCHECK_PENDING)
    memset(&n->idcheck, 0, sizeof(n->idcheck));
}
