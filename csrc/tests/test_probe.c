/*
 * The failure detector's message flow on one node: probe, indirect probes
 * through helpers, nacks and local health, the buddy system, forwarding for
 * others, and the round that phi does not reorder.
 */
#include "cm_node.h"
#include "cm_test.h"
#include "cm_test_node.h"

#define T0 CM_SEC(100)

static cm_addr_t addr_of(uint32_t i) { return cm_addr_from_index(i, 7946); }

struct sent {
  cm_addr_t to;
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  size_t count;
  uint8_t raw[1500]; /* msgs point into it */
};

/* Collect datagrams the node emitted (up to max). */
static size_t collect(cm_node_t *n, struct sent *out, size_t max) {
  cm_addr_t to;
  const uint8_t *d;
  size_t len, k = 0;
  while (cm_node_poll_datagram(n, &to, &d, &len)) {
    if (k == max)
      continue;
    memcpy(out[k].raw, d, len);
    out[k].to = to;
    CM_CHECK_OK(cm_wire_packet_decode(out[k].raw, len, out[k].msgs,
                                      CM_WIRE_MAX_MSGS, &out[k].count));
    k++;
  }
  return k;
}

static const cm_msg_t *find_msg(const struct sent *s, uint8_t type) {
  size_t i;
  for (i = 0; i < s->count; i++)
    if (s->msgs[i].type == type)
      return &s->msgs[i];
  return NULL;
}

static void feed_from(cm_node_t *n, uint32_t from_idx, const cm_msg_t *m,
                      cm_time_t now) {
  cm_addr_t from = addr_of(from_idx);
  cm_tnode_feed(n, &from, m, now);
}

/* Node "n1" (index 1) knowing peers n2..n{k+1}. */
static cm_node_t *node_with_peers(uint32_t k, cm_config_t *cfg) {
  cm_config_t c;
  cm_node_t *n = NULL;
  cm_addr_t a = addr_of(1);
  uint32_t i;
  if (cfg == NULL) {
    cm_tconfig_pinned(&c);
    cfg = &c;
  }
  CM_CHECK_OK(cm_node_new(&n, cfg, "n1", &a, NULL, 0, 3, T0));
  for (i = 2; i < k + 2; i++) {
    char id[16];
    cm_addr_t p = addr_of(i);
    snprintf(id, sizeof(id), "n%u", i);
    cm_tnode_alive(n, id, 0, &p, T0);
  }
  return n;
}

/* Tick at every deadline the node names before t, then at t: as a driver
 * does. Jumping past a deadline by more than a probe timeout would be, to
 * the node, a stall of its own (cm_node_tick). */
static void tick_through(cm_node_t *n, cm_time_t t) {
  cm_time_t d;
  while ((d = cm_node_next_deadline(n)) < t)
    cm_node_tick(n, d);
  cm_node_tick(n, t);
}

/* Tick forward in 1 ms steps until the node sends a ping; return its time. */
static cm_time_t run_to_ping(cm_node_t *n, cm_time_t from, struct sent *ping) {
  cm_time_t t;
  struct sent out[16];
  for (t = from; t < from + CM_SEC(30); t += CM_MSEC(1)) {
    size_t k, i;
    cm_node_tick(n, t);
    k = collect(n, out, 16);
    for (i = 0; i < k; i++)
      if (find_msg(&out[i], CM_MSG_PING) != NULL) {
        *ping = out[i];
        return t;
      }
  }
  CM_CHECK(!"no ping within 30 s");
  return 0;
}

CM_TEST(probe_ack_keeps_target_alive) {
  cm_node_t *n = node_with_peers(4, NULL);
  struct sent ping;
  cm_msg_t ack;
  cm_node_stats_t st;
  cm_time_t t = run_to_ping(n, T0, &ping);
  uint32_t target = ping.to.ip[3];
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = find_msg(&ping, CM_MSG_PING)->u.ping.seq;
  feed_from(n, target, &ack, t + CM_MSEC(1));
  cm_node_tick(n, t + CM_SEC(2));
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.probe_acks, 1);
  CM_CHECK_EQ(st.suspect, 0);
  CM_CHECK_EQ(st.indirect_probes, 0);
  cm_node_free(n);
}

CM_TEST(probe_timeout_asks_k_helpers_then_suspects) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping, out[16];
  cm_node_stats_t st;
  cm_time_t t;
  size_t k, i, reqs = 0;
  cm_tconfig_pinned(&c);
  n = node_with_peers(5, &c);
  t = run_to_ping(n, T0, &ping);
  /* Just before the timeout: nothing yet. */
  cm_node_tick(n, t + c.probe_timeout - 1);
  CM_CHECK_EQ(collect(n, out, 16), 0);
  cm_node_tick(n, t + c.probe_timeout);
  k = collect(n, out, 16);
  for (i = 0; i < k; i++) {
    const cm_msg_t *r = find_msg(&out[i], CM_MSG_PING_REQ);
    if (r == NULL)
      continue;
    reqs++;
    CM_CHECK(!cm_addr_eq(&out[i].to, &ping.to)); /* never the target */
    CM_CHECK(cm_addr_eq(&r->u.ping_req.target_addr, &ping.to));
    CM_CHECK_EQ(r->u.ping_req.want_nack, 1);
  }
  CM_CHECK_EQ(reqs, c.indirect_checks);
  tick_through(n, t + c.probe_interval);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.suspect, 1);
  CM_CHECK_EQ(st.probe_failures, 1);
  /* No helper even nacked: three missing nacks raise the health score. */
  CM_CHECK_EQ(st.health, 3);
  cm_node_free(n);
}

/* A probe asks after the incarnation it was sent to. A target declared
 * failed that comes back at a higher incarnation while the probe is out (a
 * restarted process refuting its old record) is not suspected when the
 * probe, sent to the old process, ends unanswered: that silence says
 * nothing about the new one, which the next round probes. */
CM_TEST(probe_failure_accuses_only_the_probed_incarnation) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping;
  cm_node_stats_t st;
  cm_msg_t dead;
  cm_time_t t;
  char id[16], other[16];
  uint32_t target;
  cm_tconfig_pinned(&c);
  n = node_with_peers(4, &c);
  t = run_to_ping(n, T0, &ping);
  target = ping.to.ip[3];
  snprintf(id, sizeof(id), "n%u", target);
  snprintf(other, sizeof(other), "n%u", target == 2 ? 3 : 2);
  memset(&dead, 0, sizeof(dead));
  dead.type = CM_MSG_DEAD;
  cm_wire_id_set(&dead.u.suspect.node, id, strlen(id));
  dead.u.suspect.incarnation = 0;
  cm_wire_id_set(&dead.u.suspect.from, other, strlen(other));
  /* Suspected a second before: a conviction alone of a member held alive,
   * or held suspect for less than half the shortest suspicion, would be an
   * accusation (docs/protocol.md, "Suspicion"). */
  dead.type = CM_MSG_SUSPECT;
  feed_from(n, target == 2 ? 3 : 2, &dead, t + CM_MSEC(50) - CM_SEC(1));
  dead.type = CM_MSG_DEAD;
  feed_from(n, target == 2 ? 3 : 2, &dead, t + CM_MSEC(50));
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.failed, 1);
  cm_tnode_alive(n, id, 1, &ping.to, t + CM_MSEC(250));
  tick_through(n, t + c.probe_interval);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.probe_failures, 1);
  CM_CHECK_EQ(st.failed, 0);
  CM_CHECK_EQ(st.suspect, 0);
  CM_CHECK_EQ(st.suspicions, 1); /* the one before the conviction: none since */
  cm_node_free(n);
}

/* The SUSPECTs of n5 in its own name that n1 sends n5 when a probe of it
 * is answered, n1 holding n5 suspect, its own health poor (it was accused)
 * or not. */
static size_t tells_after_ack(int poor) {
  cm_node_t *n = node_with_peers(4, NULL);
  cm_addr_t by = addr_of(4), five = addr_of(5);
  struct sent ping, out[16];
  cm_node_stats_t st;
  cm_msg_t ack;
  cm_time_t t;
  size_t k, i, m, told = 0;
  cm_tnode_accuse(n, &by, CM_MSG_SUSPECT, "n5", 0, "n4", T0);
  if (poor)
    cm_tnode_accuse(n, &by, CM_MSG_SUSPECT, "n1", 0, "n4", T0);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.health, poor ? 1u : 0u);
  CM_CHECK_EQ(st.suspect, 1);
  t = run_to_ping(n, T0, &ping);
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = find_msg(&ping, CM_MSG_PING)->u.ping.seq;
  cm_tnode_feed(n, &ping.to, &ack, t + CM_MSEC(1));
  k = collect(n, out, 16);
  for (i = 0; i < k; i++)
    for (m = 0; m < out[i].count; m++)
      if (out[i].msgs[m].type == CM_MSG_SUSPECT &&
          strcmp(out[i].msgs[m].u.suspect.node.s, "n5") == 0 &&
          strcmp(out[i].msgs[m].u.suspect.from.s, "n5") == 0 &&
          out[i].msgs[m].u.suspect.incarnation == 0) {
        CM_CHECK(cm_addr_eq(&out[i].to, &five));
        told++;
      }
  cm_node_free(n);
  return told;
}

/* A node whose local health score is above 0 that reaches a member again
 * (a probe answered) tells each member it holds suspect so, directly: a
 * suspicion raised, or gossiped, while it was cut off never reached its
 * subject, and a live one refutes before this node's timer convicts it
 * (docs/protocol.md, "Suspicion"). At a score of 0 it tells none. */
CM_TEST(probe_ack_after_poor_health_tells_the_suspects) {
  CM_CHECK_EQ(tells_after_ack(1), 1);
  CM_CHECK_EQ(tells_after_ack(0), 0);
}

CM_TEST(probe_nacks_spare_local_health) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping, out[16];
  cm_node_stats_t st;
  cm_time_t t;
  size_t k, i;
  cm_tconfig_pinned(&c);
  n = node_with_peers(5, &c);
  t = run_to_ping(n, T0, &ping);
  cm_node_tick(n, t + c.probe_timeout);
  k = collect(n, out, 16);
  for (i = 0; i < k; i++) {
    const cm_msg_t *r = find_msg(&out[i], CM_MSG_PING_REQ);
    cm_msg_t nack;
    if (r == NULL)
      continue;
    memset(&nack, 0, sizeof(nack));
    nack.type = CM_MSG_NACK;
    nack.u.nack.seq = r->u.ping_req.seq;
    feed_from(n, out[i].to.ip[3], &nack, t + c.probe_timeout + 1);
  }
  tick_through(n, t + c.probe_interval);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.nacks_in, c.indirect_checks);
  CM_CHECK_EQ(st.suspect, 1); /* the target is still suspected */
  CM_CHECK_EQ(st.health, 0);  /* but we are not to blame */
  cm_node_free(n);
}

/* How the helpers of n1's first probe answer (nack_plan): each helper asked
 * nacks `nacks[i]` times (0: silent); with `strangers`, the one member
 * neither probed nor asked, and an address no member has, each send a nack
 * of the same seq, and the first helper one of another seq. */
struct nack_plan {
  uint32_t nacks[3];
  int strangers;
  /* 1: the target is accused by another member first, while the probe is
   * out; 2: the second helper is declared failed before the verdict. */
  int twist;
};

/* n1 with 5 peers, the pinned profile but for k (`confirmations`) and
 * nack_confirms. Its first probe goes unanswered and its helpers answer as
 * `plan` says; after that every ping but to the target is acked and nobody
 * nacks. Returns the target's id in `id`, the helpers' indexes in asking
 * order in `helpers`, and the probe's end (the suspicion's start); st is
 * read there. */
static cm_node_t *first_probe_fails(uint32_t confirmations,
                                    uint32_t nack_confirms,
                                    const struct nack_plan *plan, char *id,
                                    size_t id_cap, uint32_t *helpers,
                                    cm_time_t *end, cm_node_stats_t *st) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping, out[16];
  cm_time_t t;
  size_t k, i, h = 0;
  uint32_t j, asked = 0, seq = 0;
  cm_tconfig_pinned(&c);
  c.suspicion_confirmations = confirmations;
  c.nack_confirms = nack_confirms;
  n = node_with_peers(5, &c);
  t = run_to_ping(n, T0, &ping);
  snprintf(id, id_cap, "n%u", ping.to.ip[3]);
  if (plan->twist == 1) {
    char by[16];
    cm_addr_t from = addr_of(ping.to.ip[3] == 2 ? 3 : 2);
    snprintf(by, sizeof(by), "n%u", ping.to.ip[3] == 2 ? 3 : 2);
    cm_tnode_accuse(n, &from, CM_MSG_SUSPECT, id, 0, by, t + 1);
  }
  cm_node_tick(n, t + c.probe_timeout);
  k = collect(n, out, 16);
  for (i = 0; i < k; i++) {
    const cm_msg_t *r = find_msg(&out[i], CM_MSG_PING_REQ);
    cm_msg_t nack;
    if (r == NULL)
      continue;
    CM_CHECK(h < 3);
    memset(&nack, 0, sizeof(nack));
    nack.type = CM_MSG_NACK;
    nack.u.nack.seq = r->u.ping_req.seq;
    for (j = 0; j < plan->nacks[h]; j++)
      feed_from(n, out[i].to.ip[3], &nack, t + c.probe_timeout + 1);
    asked |= 1u << out[i].to.ip[3];
    helpers[h] = out[i].to.ip[3];
    seq = r->u.ping_req.seq;
    h++;
  }
  CM_CHECK_EQ(h, 3);
  if (plan->strangers) {
    cm_msg_t nack;
    memset(&nack, 0, sizeof(nack));
    nack.type = CM_MSG_NACK;
    nack.u.nack.seq = seq;
    for (j = 2; j < 7; j++)
      if (j != ping.to.ip[3] && !(asked & (1u << j)))
        feed_from(n, j, &nack, t + c.probe_timeout + 1);
    feed_from(n, 9, &nack, t + c.probe_timeout + 1);
    nack.u.nack.seq = seq + 1000;
    feed_from(n, helpers[0], &nack, t + c.probe_timeout + 1);
  }
  if (plan->twist == 2) {
    char dead[16], by[16];
    cm_addr_t from = addr_of(helpers[0]);
    snprintf(dead, sizeof(dead), "n%u", helpers[1]);
    snprintf(by, sizeof(by), "n%u", helpers[0]);
    cm_tnode_accuse(n, &from, CM_MSG_SUSPECT, dead, 0, by,
                    t + c.probe_timeout + 2 - CM_SEC(1));
    cm_tnode_accuse(n, &from, CM_MSG_DEAD, dead, 0, by,
                    t + c.probe_timeout + 2);
  }
  *end = t + c.probe_interval;
  tick_through(n, *end);
  cm_node_stats(n, st);
  return n;
}

/* From `from` on, ack every ping but to the target (`id`); ask nothing of
 * anyone else. Ticks every millisecond and at every deadline the node
 * names. Returns the time the target was declared failed, or 0 if not by
 * `until`. With `suspects_out`, counts the SUSPECTs of the target sent,
 * each of which must name n1 as its accuser. */
static cm_time_t failed_at(cm_node_t *n, const char *id, cm_time_t from,
                           cm_time_t until, size_t *suspects_out) {
  cm_time_t t = from;
  while (t < until) {
    struct sent out[16];
    cm_member_info_t info;
    size_t k, i, m;
    cm_time_t d = cm_node_next_deadline(n);
    t = d > t && d < t + CM_MSEC(1) ? d : t + CM_MSEC(1);
    cm_node_tick(n, t);
    k = collect(n, out, 16);
    for (i = 0; i < k; i++) {
      const cm_msg_t *p = find_msg(&out[i], CM_MSG_PING);
      char to[16];
      cm_msg_t ack;
      snprintf(to, sizeof(to), "n%u", out[i].to.ip[3]);
      /* (One sent to the target itself, in its own name, tells it: n1's
       * health is poor (a helper did not nack) and it reached a member.) */
      for (m = 0; suspects_out != NULL && m < out[i].count; m++)
        if (out[i].msgs[m].type == CM_MSG_SUSPECT &&
            strcmp(out[i].msgs[m].u.suspect.node.s, id) == 0 &&
            !(strcmp(to, id) == 0 &&
              strcmp(out[i].msgs[m].u.suspect.from.s, id) == 0)) {
          CM_CHECK_STR(out[i].msgs[m].u.suspect.from.s, "n1");
          (*suspects_out)++;
        }
      if (p == NULL || strcmp(to, id) == 0)
        continue;
      memset(&ack, 0, sizeof(ack));
      ack.type = CM_MSG_ACK;
      ack.u.ack.seq = p->u.ping.seq;
      feed_from(n, out[i].to.ip[3], &ack, t);
    }
    CM_CHECK(cm_node_member_find(n, id, &info, t));
    if (info.state == CM_STATE_FAILED)
      return t;
  }
  return 0;
}

/* first_probe_fails, then failed_at over the next 13 s: how long after the
 * probe's end the target was declared failed (0: not within them). */
static cm_time_t fails_after_probe(uint32_t confirmations,
                                   uint32_t nack_confirms,
                                   const struct nack_plan *plan,
                                   cm_node_stats_t *st) {
  uint32_t helpers[3];
  char id[16];
  cm_time_t end, at;
  cm_node_t *n = first_probe_fails(confirmations, nack_confirms, plan, id,
                                   sizeof(id), helpers, &end, st);
  at = failed_at(n, id, end, end + CM_SEC(13), NULL);
  cm_node_free(n);
  return at == 0 ? 0 : at - end;
}

/* Two helpers that nacked are two other members that could not reach the
 * target either: one confirmation, which with one awaited (the LAN
 * profile's k) ends the suspicion at the minimum, 4 x 0.5 s = 2 s (12 s
 * unconfirmed). It is in the member's history as a nack, naming the first
 * helper that nacked, with the helpers asked and the nacks heard; it is not
 * gossiped as that helper's accusation (n1's own SUSPECT is, naming n1).
 * The silent third still counts against n1's health. */
CM_TEST(probe_nacks_of_two_helpers_confirm_the_suspicion) {
  struct nack_plan plan = {{1, 0, 1}, 0, 0};
  cm_hist_read_t h[8];
  cm_node_stats_t st;
  cm_time_t end;
  uint32_t helpers[3];
  char id[16], first[16];
  size_t suspects = 0;
  cm_node_t *n =
      first_probe_fails(1, 1, &plan, id, sizeof(id), helpers, &end, &st);
  CM_CHECK_EQ(st.nacks_in, 2);
  CM_CHECK_EQ(st.health, 1);
  CM_CHECK_EQ(st.suspect, 1);
  CM_CHECK_EQ(cm_node_history(n, id, h, 8), 2);
  CM_CHECK_EQ(h[0].e.event, CM_EV_SUSPECT);
  CM_CHECK_EQ(h[0].e.source, CM_HIST_PROBE);
  CM_CHECK_STR(h[0].by, "n1");
  CM_CHECK_EQ(h[1].e.event, CM_EV_CONFIRMED);
  CM_CHECK_EQ(h[1].e.source, CM_HIST_NACK);
  CM_CHECK_EQ(h[1].e.confirmations, 1);
  CM_CHECK_EQ(h[1].e.helpers, 3);
  CM_CHECK_EQ(h[1].e.nacks, 2);
  snprintf(first, sizeof(first), "n%u", helpers[0]);
  CM_CHECK_STR(h[1].by, first);
  CM_CHECK_EQ(failed_at(n, id, end, end + CM_SEC(13), &suspects),
              end + CM_SEC(2));
  cm_node_free(n);
  /* What n1 gossiped of the target in those 2 s: its own SUSPECT (the
   * pending one, and the buddy's), never one naming a helper (failed_at
   * checks each). */
  CM_CHECK(suspects > 0);
}

/* One helper's nack is one link's word, perhaps a bad link: no
 * confirmation, so the suspicion waits the maximum, 12 s. Nor are a
 * helper's second nack, a nack from the member not asked, or one from an
 * address no member has, a second helper: each still counts for n1's
 * health, as any nack of its probe does in memberlist. A nack of another
 * seq is dropped and counted. */
CM_TEST(probe_nack_of_one_helper_confirms_nothing) {
  struct nack_plan plan = {{1, 0, 0}, 0, 0};
  cm_node_stats_t st;
  CM_CHECK_EQ(fails_after_probe(1, 1, &plan, &st), CM_SEC(12));
  CM_CHECK_EQ(st.nacks_in, 1);
  plan.nacks[0] = 2;
  plan.strangers = 1;
  CM_CHECK_EQ(fails_after_probe(1, 1, &plan, &st), CM_SEC(12));
  CM_CHECK_EQ(st.nacks_in, 4);
  CM_CHECK_EQ(st.drop_stale, 1);
  CM_CHECK_EQ(st.health, 0);
}

/* However many helpers nack, a probe brings one confirmation: with two
 * awaited (k = 2) and all three nacking, the suspicion ends at timeout(1)
 * = 12 - 10 log 2 / log 3 = 5.690702 s, not at the minimum. */
CM_TEST(probe_nacks_bring_one_confirmation_at_most) {
  struct nack_plan plan = {{1, 1, 1}, 0, 0};
  cm_node_stats_t st;
  CM_CHECK_EQ(fails_after_probe(2, 1, &plan, &st), 5690702);
  CM_CHECK_EQ(st.nacks_in, 3);
}

/* A probe of a member already suspect is itself the confirmation; its
 * helpers' nacks add none. The target, accused by another member while
 * n1's probe is out (at t + 1), has with k = 2 and all three helpers
 * nacking one confirmation, n1's: timeout(1) = 5.690702 s from the
 * accusation, not the minimum. And a helper declared failed before the
 * verdict is no second helper: with two nacks, one of them its, the
 * suspicion waits the maximum (k = 1). */
CM_TEST(probe_nacks_count_only_for_the_suspicion_they_raise) {
  struct nack_plan plan = {{1, 1, 1}, 0, 1};
  cm_node_stats_t st;
  /* The accusation came at t + 1, the probe's end at t + 500 ms. */
  CM_CHECK_EQ(fails_after_probe(2, 1, &plan, &st), 5690702 + 1 - CM_MSEC(500));
  CM_CHECK_EQ(st.nacks_in, 3);
  plan.nacks[2] = 0;
  plan.twist = 2;
  CM_CHECK_EQ(fails_after_probe(1, 1, &plan, &st), CM_SEC(12));
  CM_CHECK_EQ(st.nacks_in, 2);
}

/* nack_confirms 0 is memberlist's rule: nacks spare n1's health and
 * confirm nothing; unconfirmed, the suspicion waits the maximum, 12 s. */
CM_TEST(probe_nacks_confirm_nothing_when_off) {
  struct nack_plan plan = {{1, 1, 1}, 0, 0};
  cm_node_stats_t st;
  CM_CHECK_EQ(fails_after_probe(1, 0, &plan, &st), CM_SEC(12));
  CM_CHECK_EQ(st.nacks_in, 3);
  CM_CHECK_EQ(st.health, 0);
}

/* Two helpers at one address are one process (a member restarted under a
 * new id at the old one's address before the old was found failed): their
 * nacks are one link's word. n1 knows n2, n3 and n4 (both at address 3)
 * and n5; its probe of n5 asks the other three; nacks from address 3 (one
 * per request, as that process sends) confirm nothing, while one from n2
 * with one from address 3 do. */
CM_TEST(probe_nacks_from_one_address_are_one_helper) {
  int with_n2;
  for (with_n2 = 0; with_n2 < 2; with_n2++) {
    cm_config_t c;
    cm_node_t *n = NULL;
    cm_addr_t a = addr_of(1), a2 = addr_of(2), a3 = addr_of(3), a5 = addr_of(5);
    struct sent ping, out[16];
    cm_time_t t = T0, end;
    size_t k, i;
    uint32_t from3 = 0;
    cm_tconfig_pinned(&c);
    c.suspicion_confirmations = 1;
    c.nack_confirms = 1;
    CM_CHECK_OK(cm_node_new(&n, &c, "n1", &a, NULL, 0, 3, T0));
    cm_tnode_alive(n, "n2", 0, &a2, T0);
    cm_tnode_alive(n, "n3", 0, &a3, T0);
    cm_tnode_alive(n, "n4", 0, &a3, T0);
    cm_tnode_alive(n, "n5", 0, &a5, T0);
    /* Ack every probe until the one of n5. */
    for (;;) {
      cm_msg_t ack;
      t = run_to_ping(n, t, &ping);
      if (ping.to.ip[3] == 5)
        break;
      memset(&ack, 0, sizeof(ack));
      ack.type = CM_MSG_ACK;
      ack.u.ack.seq = find_msg(&ping, CM_MSG_PING)->u.ping.seq;
      feed_from(n, ping.to.ip[3], &ack, t);
      t += CM_MSEC(1);
    }
    cm_node_tick(n, t + c.probe_timeout);
    k = collect(n, out, 16);
    for (i = 0; i < k; i++) {
      const cm_msg_t *r = find_msg(&out[i], CM_MSG_PING_REQ);
      cm_msg_t nack;
      if (r == NULL)
        continue;
      memset(&nack, 0, sizeof(nack));
      nack.type = CM_MSG_NACK;
      nack.u.nack.seq = r->u.ping_req.seq;
      if (out[i].to.ip[3] == 3)
        from3++;
      if (out[i].to.ip[3] == 3 || with_n2)
        feed_from(n, out[i].to.ip[3], &nack, t + c.probe_timeout + 1);
    }
    CM_CHECK_EQ(from3, 2);
    end = t + c.probe_interval;
    tick_through(n, end);
    CM_CHECK_EQ(failed_at(n, "n5", end, end + CM_SEC(13), NULL),
                end + (with_n2 ? CM_SEC(2) : CM_SEC(12)));
    cm_node_free(n);
  }
}

/* A helper tries the target where the asker said and, if it holds the
 * target live at another address (it moved, and one of the two has not
 * heard yet), there too, with the same seq: the answer from either is
 * relayed. */
CM_TEST(helper_tries_the_address_it_holds_too) {
  cm_config_t c;
  cm_node_t *n;
  struct sent out[4];
  cm_msg_t req, ack;
  const cm_msg_t *p0, *p1;
  cm_tconfig_pinned(&c);
  c.nack_confirms = 1;
  n = node_with_peers(3, &c);
  memset(&req, 0, sizeof(req));
  req.type = CM_MSG_PING_REQ;
  req.u.ping_req.seq = 500;
  cm_wire_id_set(&req.u.ping_req.target, "n3", 2);
  req.u.ping_req.target_addr = addr_of(9);
  req.u.ping_req.want_nack = 1;
  feed_from(n, 2, &req, T0);
  CM_CHECK_EQ(collect(n, out, 4), 2);
  p0 = find_msg(&out[0], CM_MSG_PING);
  p1 = find_msg(&out[1], CM_MSG_PING);
  CM_CHECK(p0 != NULL && p1 != NULL);
  CM_CHECK_EQ(out[0].to.ip[3], 9);
  CM_CHECK_EQ(out[1].to.ip[3], 3);
  CM_CHECK_EQ(p0->u.ping.seq, p1->u.ping.seq);
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = p1->u.ping.seq;
  feed_from(n, 3, &ack, T0 + 1);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(out[0].to.ip[3], 2);
  CM_CHECK_EQ(find_msg(&out[0], CM_MSG_ACK)->u.ack.seq, 500);
  /* A target it does not know is tried where the asker said only. */
  cm_wire_id_set(&req.u.ping_req.target, "n9", 2);
  feed_from(n, 2, &req, T0 + 2);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(out[0].to.ip[3], 9);
  cm_node_free(n);
  /* nack_confirms 0: memberlist's helper, the asker's address only. */
  c.nack_confirms = 0;
  n = node_with_peers(3, &c);
  cm_wire_id_set(&req.u.ping_req.target, "n3", 2);
  feed_from(n, 2, &req, T0);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(out[0].to.ip[3], 9);
  cm_node_free(n);
}

CM_TEST(indirect_ack_through_helper_counts) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping, out[16];
  cm_node_stats_t st;
  cm_time_t t;
  size_t k;
  cm_msg_t ack;
  cm_tconfig_pinned(&c);
  n = node_with_peers(5, &c);
  t = run_to_ping(n, T0, &ping);
  cm_node_tick(n, t + c.probe_timeout);
  k = collect(n, out, 16);
  CM_CHECK(k >= 1);
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = find_msg(&ping, CM_MSG_PING)->u.ping.seq;
  feed_from(n, out[0].to.ip[3], &ack, t + c.probe_timeout + 1);
  tick_through(n, t + c.probe_interval);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.suspect, 0);
  CM_CHECK_EQ(st.probe_acks, 1);
  cm_node_free(n);
}

CM_TEST(awareness_stretches_probe_interval) {
  cm_config_t c;
  cm_node_t *n;
  struct sent ping;
  cm_time_t t1, t2, t3, t4;
  cm_node_stats_t st;
  cm_tconfig_pinned(&c);
  n = node_with_peers(5, &c);
  /* Nobody answers anything: each failed probe with three silent helpers
   * adds 3 to the health score (capped at awareness_max - 1 = 7), and each
   * probe period lasts probe_interval * (score + 1). */
  t1 = run_to_ping(n, T0, &ping);
  t2 = run_to_ping(n, t1 + CM_MSEC(1), &ping);
  t3 = run_to_ping(n, t2 + CM_MSEC(1), &ping);
  t4 = run_to_ping(n, t3 + CM_MSEC(1), &ping);
  CM_CHECK_EQ(t2 - t1, c.probe_interval);     /* score 0 when it started */
  CM_CHECK_EQ(t3 - t2, 4 * c.probe_interval); /* score 3 */
  CM_CHECK_EQ(t4 - t3, 7 * c.probe_interval); /* score 6 */
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.health, 7);
  cm_node_free(n);
}

CM_TEST(buddy_probe_of_suspect_carries_the_suspicion) {
  cm_node_t *n = node_with_peers(1, NULL); /* only n2: it is the target */
  struct sent ping;
  cm_msg_t sus;
  const cm_msg_t *m;
  memset(&sus, 0, sizeof(sus));
  sus.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&sus.u.suspect.node, "n2", 2);
  cm_wire_id_set(&sus.u.suspect.from, "n1", 2);
  feed_from(n, 9, &sus, T0);
  run_to_ping(n, T0, &ping);
  m = find_msg(&ping, CM_MSG_SUSPECT);
  CM_CHECK(m != NULL);
  CM_CHECK_STR(m->u.suspect.node.s, "n2");
  cm_node_free(n);
}

CM_TEST(ping_is_acked_and_wrong_target_dropped) {
  cm_node_t *n = node_with_peers(2, NULL);
  struct sent out[4];
  cm_msg_t ping;
  cm_node_stats_t st;
  memset(&ping, 0, sizeof(ping));
  ping.type = CM_MSG_PING;
  ping.u.ping.seq = 77;
  cm_wire_id_set(&ping.u.ping.target, "n1", 2);
  cm_wire_id_set(&ping.u.ping.source, "n2", 2);
  ping.u.ping.source_addr = addr_of(2);
  feed_from(n, 2, &ping, T0);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(find_msg(&out[0], CM_MSG_ACK)->u.ack.seq, 77);
  cm_wire_id_set(&ping.u.ping.target, "someone-else", 12);
  feed_from(n, 2, &ping, T0);
  CM_CHECK_EQ(collect(n, out, 4), 0);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_wrong_target, 1);
  cm_node_free(n);
}

CM_TEST(helper_forwards_ack_or_nacks) {
  cm_config_t c;
  cm_node_t *n;
  struct sent out[4];
  cm_msg_t req, ack;
  const cm_msg_t *p;
  cm_tconfig_pinned(&c);
  n = node_with_peers(3, &c);
  memset(&req, 0, sizeof(req));
  req.type = CM_MSG_PING_REQ;
  req.u.ping_req.seq = 500;
  cm_wire_id_set(&req.u.ping_req.target, "n3", 2);
  req.u.ping_req.target_addr = addr_of(3);
  req.u.ping_req.want_nack = 1;
  /* n2 asks us to probe n3; n3 answers; we relay the ack with n2's seq. */
  feed_from(n, 2, &req, T0);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  p = find_msg(&out[0], CM_MSG_PING);
  CM_CHECK(p != NULL && strcmp(p->u.ping.target.s, "n3") == 0);
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = p->u.ping.seq;
  feed_from(n, 3, &ack, T0 + 1);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(out[0].to.ip[3], 2);
  CM_CHECK_EQ(find_msg(&out[0], CM_MSG_ACK)->u.ack.seq, 500);
  /* Again, but n3 stays silent: a nack goes back after the timeout. */
  feed_from(n, 2, &req, T0 + 2);
  collect(n, out, 4);
  cm_node_tick(n, T0 + 2 + c.probe_timeout);
  CM_CHECK(collect(n, out, 4) >= 1);
  CM_CHECK_EQ(out[0].to.ip[3], 2);
  CM_CHECK_EQ(find_msg(&out[0], CM_MSG_NACK)->u.nack.seq, 500);
  cm_node_free(n);
}

/* The messages of a given type among k packets sent, and the first. */
static size_t count_msgs(const struct sent *out, size_t k, uint8_t type,
                         const cm_msg_t **first) {
  size_t i, c = 0;
  for (i = 0; i < k; i++)
    if (find_msg(&out[i], type) != NULL) {
      if (c++ == 0 && first != NULL)
        *first = find_msg(&out[i], type);
    }
  return c;
}

/* The helper nacks early enough for the nack to be counted: the asker asks
 * probe_timeout into its period and judges at its end; a nack later than
 * that would count as missing, against the asker's own health. After the
 * nack the helper still relays an ack until probe_timeout. */
CM_TEST(helper_nacks_before_the_asker_judges_at_every_profile) {
  void (*profiles[])(cm_config_t *) = {cm_config_lan, cm_config_wan,
                                       cm_config_local, cm_tconfig_pinned};
  size_t pi;
  for (pi = 0; pi < sizeof(profiles) / sizeof(profiles[0]); pi++) {
    cm_config_t c;
    cm_node_t *n;
    struct sent out[16];
    cm_msg_t req, ack;
    const cm_msg_t *m = NULL;
    cm_time_t wait;
    uint32_t seq;
    size_t k;
    profiles[pi](&c);
    wait = cm_nack_wait(&c);
    /* Room for the trip back: a fifth of what the asker has left. */
    CM_CHECK(c.probe_timeout + wait +
                 (c.probe_interval - c.probe_timeout) / 5 <=
             c.probe_interval);
    CM_CHECK(wait > 0 && wait <= c.probe_timeout);
    n = node_with_peers(3, &c);
    memset(&req, 0, sizeof(req));
    req.type = CM_MSG_PING_REQ;
    req.u.ping_req.seq = 700;
    cm_wire_id_set(&req.u.ping_req.target, "n3", 2);
    req.u.ping_req.target_addr = addr_of(3);
    req.u.ping_req.want_nack = 1;
    feed_from(n, 2, &req, T0 + 37);
    CM_CHECK_EQ(collect(n, out, 16), 1);
    seq = find_msg(&out[0], CM_MSG_PING)->u.ping.seq;
    /* Ticked only at its deadlines, as a driver does: nothing is nacked
     * before T0 + 37 + wait, and the nack goes at that very time. */
    for (;;) {
      cm_time_t t = cm_node_next_deadline(n);
      CM_CHECK(t <= T0 + 37 + wait);
      cm_node_tick(n, t);
      k = count_msgs(out, collect(n, out, 16), CM_MSG_NACK, &m);
      if (k > 0) {
        CM_CHECK_EQ(t, T0 + 37 + wait);
        break;
      }
    }
    CM_CHECK_EQ(k, 1);
    CM_CHECK_EQ(m->u.nack.seq, 700);
    /* Between the nack and the relay's end: no second nack. */
    cm_node_tick(n, T0 + 37 + (wait + c.probe_timeout) / 2);
    CM_CHECK_EQ(count_msgs(out, collect(n, out, 16), CM_MSG_NACK, NULL), 0);
    /* A late ack from the target, before probe_timeout: relayed. */
    memset(&ack, 0, sizeof(ack));
    ack.type = CM_MSG_ACK;
    ack.u.ack.seq = seq;
    if (wait < c.probe_timeout) {
      feed_from(n, 3, &ack, T0 + 37 + c.probe_timeout - 1);
      k = collect(n, out, 16);
      CM_CHECK_EQ(k, 1);
      CM_CHECK_EQ(out[0].to.ip[3], 2);
      CM_CHECK_EQ(find_msg(&out[0], CM_MSG_ACK)->u.ack.seq, 700);
    }
    /* And no second nack, whatever comes later. */
    cm_node_tick(n, T0 + c.probe_timeout + CM_SEC(1));
    CM_CHECK_EQ(count_msgs(out, collect(n, out, 16), CM_MSG_NACK, NULL), 0);
    cm_node_free(n);
  }
}

CM_TEST(forward_table_is_bounded) {
  cm_node_t *n = node_with_peers(3, NULL);
  struct sent out[4];
  cm_node_stats_t st;
  cm_msg_t req;
  int i;
  memset(&req, 0, sizeof(req));
  req.type = CM_MSG_PING_REQ;
  cm_wire_id_set(&req.u.ping_req.target, "n3", 2);
  req.u.ping_req.target_addr = addr_of(3);
  for (i = 0; i < 200; i++) {
    req.u.ping_req.seq = (uint32_t)i;
    feed_from(n, 2, &req, T0);
    collect(n, out, 4);
  }
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.ping_reqs_in, 200);
  CM_CHECK_EQ(st.drop_forward_full, 200 - 64);
  cm_node_free(n);
}

/* Answer what n1 sent as its peers would: every peer but `silent` acks a
 * ping to it, and a helper asked to probe `silent` nacks. Each ping to a
 * peer is counted in probes[peer index]. */
static void answer_probes(cm_node_t *n, uint32_t silent, cm_time_t t,
                          uint32_t *probes) {
  struct sent out[16];
  size_t k = collect(n, out, 16), i;
  for (i = 0; i < k; i++) {
    const cm_msg_t *p = find_msg(&out[i], CM_MSG_PING);
    const cm_msg_t *r = find_msg(&out[i], CM_MSG_PING_REQ);
    uint32_t to = out[i].to.ip[3];
    cm_msg_t reply;
    memset(&reply, 0, sizeof(reply));
    if (p != NULL) {
      probes[to]++;
      if (to == silent)
        continue;
      reply.type = CM_MSG_ACK;
      reply.u.ack.seq = p->u.ping.seq;
      feed_from(n, to, &reply, t);
    } else if (r != NULL) {
      reply.type = CM_MSG_NACK;
      reply.u.nack.seq = r->u.ping_req.seq;
      feed_from(n, to, &reply, t);
    }
  }
}

/* SWIM's bound on probe targets: one probe per member per round, whatever
 * phi says. n1 has 20 peers that all answer, except n7, which pinged 20
 * times in the 20 ms before n1's first probe (phi has its samples, and a
 * history that makes any silence remarkable) and then went silent; it stays
 * suspect, so live, for the whole 12 s, and its phi, still reported, is far
 * above the threshold. 12 s is 24 periods from the first probe: one round
 * of 20 and 4 periods of the next, so every member is probed at least once
 * and at most twice, n7 included. (With phi's early probes n7 took 21 of
 * the 24 and 17 members none.) */
CM_TEST(probe_round_holds_for_a_quiet_peer) {
  cm_config_t c;
  cm_node_t *n;
  cm_msg_t p;
  cm_node_stats_t st;
  cm_member_info_t info;
  uint32_t probes[32] = {0}, i, total = 0;
  cm_time_t t = T0, start;
  cm_tconfig_pinned(&c);
  n = node_with_peers(20, &c);
  memset(&p, 0, sizeof(p));
  p.type = CM_MSG_PING;
  cm_wire_id_set(&p.u.ping.target, "n1", 2);
  cm_wire_id_set(&p.u.ping.source, "n7", 2);
  p.u.ping.source_addr = addr_of(7);
  for (i = 0; i < 20; i++) {
    t += CM_MSEC(1);
    p.u.ping.seq = i;
    feed_from(n, 7, &p, t);
  }
  answer_probes(n, 7, t, probes);
  CM_CHECK_EQ(probes[7], 0);
  start = t + CM_MSEC(1);
  for (t = start; t < start + CM_SEC(12); t += CM_MSEC(1)) {
    cm_node_tick(n, t);
    answer_probes(n, 7, t, probes);
  }
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.health, 0); /* periods were not stretched */
  CM_CHECK(cm_node_member_find(n, "n7", &info, t));
  CM_CHECK_EQ(info.state, CM_STATE_SUSPECT);
  CM_CHECK(info.phi > c.phi_threshold);
  for (i = 2; i < 22; i++)
    if (probes[i] < 1 || probes[i] > 2)
      fprintf(stderr, "n%u probed %u times in 12 s\n", i, probes[i]);
  for (i = 2; i < 22; i++) {
    CM_CHECK(probes[i] >= 1);
    CM_CHECK(probes[i] <= 2);
    total += probes[i];
  }
  CM_CHECK_EQ(total, 24);
  cm_node_free(n);
}

static int hint_connected(void *ud, const cm_addr_t *a) {
  (void)ud;
  return a->ip[3] == 5 || a->ip[3] == 6;
}

/* With a transport hint, gossip rounds go to connected peers first. */
CM_TEST(gossip_prefers_connected_peers) {
  cm_node_t *n = node_with_peers(20, NULL);
  struct sent out[16];
  cm_time_t t = T0;
  int round, to_connected = 0, total = 0;
  cm_node_set_peer_hint(n, hint_connected, NULL);
  for (round = 0; round < 50; round++) {
    size_t k, i;
    CM_CHECK_OK(cm_node_set_tag(n, "round", round % 2 ? "odd" : "even", t));
    t += CM_MSEC(100);
    cm_node_tick(n, t);
    k = collect(n, out, 16);
    for (i = 0; i < k; i++) {
      if (find_msg(&out[i], CM_MSG_PING) || find_msg(&out[i], CM_MSG_PING_REQ))
        continue;
      total++;
      to_connected += out[i].to.ip[3] == 5 || out[i].to.ip[3] == 6;
    }
  }
  CM_CHECK(total >= 100);
  /* Two of twenty peers: 10% of rounds by chance; well over a third here. */
  CM_CHECK(to_connected * 3 > total);
  cm_node_free(n);
}

/* A node that was itself paused does not convict a suspect for time it did
 * not live through: the suspicion timer resumes where it stopped. */
CM_TEST(own_stall_does_not_count_against_suspects) {
  cm_config_t c;
  cm_node_t *n;
  cm_msg_t sus;
  cm_member_info_t info;
  cm_node_stats_t st;
  cm_time_t d;
  cm_tconfig_pinned(&c);
  n = node_with_peers(5, &c);
  memset(&sus, 0, sizeof(sus));
  sus.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&sus.u.suspect.node, "n3", 2);
  cm_wire_id_set(&sus.u.suspect.from, "n2", 2);
  feed_from(n, 2, &sus, T0);
  CM_CHECK(cm_node_member_find(n, "n3", &info, T0));
  CM_CHECK_EQ(info.state, CM_STATE_SUSPECT);
  /* The process sleeps 60 s, far past the suspicion's maximum. */
  d = cm_node_next_deadline(n);
  cm_node_tick(n, d + CM_SEC(60));
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.stalls, 1);
  CM_CHECK(cm_node_member_find(n, "n3", &info, d + CM_SEC(60)));
  CM_CHECK_EQ(info.state, CM_STATE_SUSPECT);
  CM_CHECK_EQ(st.failures_declared, 0);
  /* Left alone afterwards, the suspicion still runs out. */
  {
    cm_time_t t = d + CM_SEC(60);
    struct sent out[16];
    while (t < d + CM_SEC(120)) {
      t += CM_MSEC(50);
      cm_node_tick(n, t);
      collect(n, out, 16);
    }
  }
  CM_CHECK(cm_node_member_find(n, "n3", &info, 0));
  CM_CHECK_EQ(info.state, CM_STATE_FAILED);
  cm_node_free(n);
}

/* Tick at the node's own deadlines, as a driver does, up to `until`;
 * returns the time of the last tick. */
static cm_time_t tick_deadlines(cm_node_t *n, cm_time_t from, cm_time_t until) {
  struct sent out[16];
  cm_time_t d, t = from;
  while ((d = cm_node_next_deadline(n)) <= until) {
    t = d > t ? d : t;
    cm_node_tick(n, t);
    collect(n, out, 16);
  }
  return t;
}

/* Confirmations that arrive after the timeout they shorten to has already
 * run out make the suspicion due at once: the node was running all along,
 * so the tick that convicts is no stall of its own. */
CM_TEST(late_confirmations_are_no_stall) {
  cm_node_t *n = node_with_peers(8, NULL);
  cm_msg_t sus;
  cm_member_info_t info;
  cm_node_stats_t st;
  cm_time_t t = T0 + CM_SEC(3) + CM_MSEC(250);
  const char *accusers[] = {"n4", "n5", "n6"};
  uint32_t i;
  memset(&sus, 0, sizeof(sus));
  sus.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&sus.u.suspect.node, "n3", 2);
  cm_wire_id_set(&sus.u.suspect.from, "n2", 2);
  feed_from(n, 2, &sus, T0);
  tick_deadlines(n, T0, t);
  /* The minimum timeout, 2 s, is 1.25 s past when these arrive. */
  for (i = 0; i < 3; i++) {
    cm_wire_id_set(&sus.u.suspect.from, accusers[i], 2);
    feed_from(n, 4 + i, &sus, t);
  }
  CM_CHECK_EQ(cm_node_next_deadline(n), t);
  cm_node_tick(n, t);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.stalls, 0);
  CM_CHECK(cm_node_member_find(n, "n3", &info, t));
  CM_CHECK_EQ(info.state, CM_STATE_FAILED);
  cm_node_free(n);
}

/* A peer still accusing an older incarnation missed the refutation: it is
 * sent the newer alive record directly. */
CM_TEST(stale_accusation_is_answered_with_newer_news) {
  cm_node_t *n = node_with_peers(3, NULL);
  struct sent out[4];
  cm_msg_t m;
  const cm_msg_t *a;
  cm_node_stats_t st;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, "n3", 2);
  m.u.alive.incarnation = 5;
  m.u.alive.addr = addr_of(3);
  feed_from(n, 3, &m, T0);
  collect(n, out, 4);
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&m.u.suspect.node, "n3", 2);
  m.u.suspect.incarnation = 4;
  cm_wire_id_set(&m.u.suspect.from, "n2", 2);
  feed_from(n, 4, &m, T0 + 1);
  CM_CHECK_EQ(collect(n, out, 4), 1);
  CM_CHECK_EQ(out[0].to.ip[3], 4);
  a = find_msg(&out[0], CM_MSG_ALIVE);
  CM_CHECK(a != NULL);
  CM_CHECK_STR(a->u.alive.node.s, "n3");
  CM_CHECK_EQ(a->u.alive.incarnation, 5);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.stale_corrections, 1);
  /* A current accusation is not "corrected". */
  m.u.suspect.incarnation = 5;
  feed_from(n, 4, &m, T0 + 2);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.stale_corrections, 1);
  cm_node_free(n);
}

/* ------------------------------------------------------- duplicate ids */

/* n1 hears alive(n1) from address 42: a conflict about itself. Returns the
 * ping the node sent to ask 42 (its seq), checking where it went and what
 * it names. */
static uint32_t claim_of_own_id(cm_node_t *n, cm_time_t now) {
  struct sent out[4];
  size_t k, i;
  uint32_t seq = 0;
  int pings = 0;
  cm_addr_t other = addr_of(42);
  cm_tnode_alive(n, "n1", 3, &other, now);
  k = collect(n, out, 4);
  for (i = 0; i < k; i++) {
    const cm_msg_t *p = find_msg(&out[i], CM_MSG_PING);
    if (p == NULL)
      continue;
    pings++;
    CM_CHECK(cm_addr_eq(&out[i].to, &other));
    CM_CHECK_EQ(p->u.ping.target.len, 2);
    CM_CHECK(memcmp(p->u.ping.target.s, "n1", 2) == 0);
    seq = p->u.ping.seq;
  }
  CM_CHECK_EQ(pings, k > 0 ? 1 : 0);
  return pings ? seq : 0;
}

static void ack_from(cm_node_t *n, uint32_t idx, uint32_t seq, cm_time_t now) {
  cm_msg_t ack;
  memset(&ack, 0, sizeof(ack));
  ack.type = CM_MSG_ACK;
  ack.u.ack.seq = seq;
  feed_from(n, idx, &ack, now);
}

CM_TEST(idcheck_a_process_answering_to_our_id_is_a_duplicate) {
  cm_node_t *n = node_with_peers(3, NULL);
  cm_addr_t other;
  cm_node_stats_t st;
  uint32_t seq;
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_NONE);
  seq = claim_of_own_id(n, T0);
  CM_CHECK(seq != 0);
  CM_CHECK_EQ(cm_node_id_check(n, &other), CM_IDCHECK_PENDING);
  {
    cm_addr_t want = addr_of(42);
    CM_CHECK(cm_addr_eq(&other, &want));
  }
  CM_CHECK(cm_node_next_deadline(n) <= T0 + CM_MSEC(500));
  /* The same seq from a third address proves nothing. */
  ack_from(n, 7, seq, T0 + CM_MSEC(1));
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_PENDING);
  ack_from(n, 42, seq, T0 + CM_MSEC(2));
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_DUPLICATE);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.duplicates, 1);
  /* It stays known until a driver starts over. */
  cm_node_tick(n, T0 + CM_SEC(5));
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_DUPLICATE);
  cm_node_id_check_reset(n);
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_NONE);
  cm_node_free(n);
}

CM_TEST(idcheck_silence_means_a_stale_claim_and_backs_off) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  cm_time_t t;
  cm_tconfig_pinned(&c);
  n = node_with_peers(3, &c);
  CM_CHECK(claim_of_own_id(n, T0) != 0);
  /* Pending until one probe interval has passed without an answer. */
  cm_node_tick(n, T0 + c.probe_interval - 1);
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_PENDING);
  cm_node_tick(n, T0 + c.probe_interval);
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_NONE);
  {
    struct sent out[8];
    collect(n, out, 8);
  }
  /* The predecessor's claim keeps arriving by gossip: not asked again
   * for ten probe intervals... */
  t = T0 + c.probe_interval + CM_MSEC(1);
  CM_CHECK_EQ(claim_of_own_id(n, t), 0);
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_NONE);
  /* ...then asked once more. */
  t = T0 + 11 * c.probe_interval;
  cm_node_tick(n, t);
  {
    struct sent out[8];
    collect(n, out, 8);
  }
  CM_CHECK(claim_of_own_id(n, t) != 0);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.duplicates, 0);
  CM_CHECK_EQ(st.conflicts, 3);
  cm_node_free(n);
}

CM_TEST(idcheck_the_asked_process_reports_the_conflict_and_answers) {
  cm_node_t *n = node_with_peers(3, NULL);
  cm_msg_t ping;
  cm_event_t ev;
  struct sent out[4];
  size_t k;
  int conflict = 0;
  cm_addr_t other = addr_of(42);
  while (cm_node_poll_event(n, &ev))
    ;
  memset(&ping, 0, sizeof(ping));
  ping.type = CM_MSG_PING;
  ping.u.ping.seq = 77;
  cm_wire_id_set(&ping.u.ping.target, "n1", 2);
  cm_wire_id_set(&ping.u.ping.source, "n1", 2);
  ping.u.ping.source_addr = other;
  feed_from(n, 42, &ping, T0);
  while (cm_node_poll_event(n, &ev))
    if (ev.type == CM_EV_CONFLICT) {
      conflict++;
      CM_CHECK_STR(ev.id, "n1");
      CM_CHECK(cm_addr_eq(&ev.other_addr, &other));
    }
  CM_CHECK_EQ(conflict, 1);
  /* It answers, and asks back in turn: both processes learn it. */
  k = collect(n, out, 4);
  CM_CHECK_EQ(k, 2);
  CM_CHECK(cm_addr_eq(&out[0].to, &other) && cm_addr_eq(&out[1].to, &other));
  {
    const cm_msg_t *a = find_msg(&out[0], CM_MSG_ACK);
    if (a == NULL)
      a = find_msg(&out[1], CM_MSG_ACK);
    CM_CHECK(a != NULL);
    CM_CHECK_EQ(a->u.ack.seq, 77);
  }
  CM_CHECK_EQ(cm_node_id_check(n, NULL), CM_IDCHECK_PENDING);
  cm_node_free(n);
}
