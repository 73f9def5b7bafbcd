/*
 * Options whose effect no other test pins: each test runs the node under a
 * value other than the default (or two values) and checks what changes, so
 * it fails if the option were read nowhere. docs/configuration.md gives the
 * meaning of each.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "cm_engine.h"
#include "cm_node.h"
#include "cm_phi.h"
#include "cm_test.h"
#include "cm_test_engine.h"
#include "cm_test_net.h"
#include "cm_test_node.h"

#define T0 CM_SEC(100)

static cm_addr_t opt_addr(uint32_t i) { return cm_addr_from_index(i, 7946); }

/* One message into n, as if from member index `from`. */
static void opt_feed(cm_node_t *n, uint32_t from, const cm_msg_t *m,
                     cm_time_t now) {
  cm_addr_t a = opt_addr(from);
  cm_tnode_feed(n, &a, m, now);
}

/* Node "a" (index 1) under c, knowing `count` members m0.. alive at index
 * 10 + i. */
static cm_node_t *opt_node(const cm_config_t *c, int count) {
  cm_node_t *n = NULL;
  cm_addr_t a = opt_addr(1);
  int i;
  CM_CHECK_OK(cm_node_new(&n, c, "a", &a, NULL, 0, 7, T0));
  for (i = 0; i < count; i++) {
    char id[16];
    cm_addr_t m = opt_addr(10 + (uint32_t)i);
    snprintf(id, sizeof(id), "m%d", i);
    cm_tnode_alive(n, id, 1, &m, T0);
  }
  return n;
}

/* ---------------------------------------------------------------- phi */

/* phi of m0 as "a" reports it, 1.5 s after the last of eleven pings that
 * came exactly 1 s apart (so the measured spread is 0). */
static double phi_after_regular_pings(const cm_config_t *c) {
  cm_node_t *n = opt_node(c, 1);
  cm_member_info_t info;
  cm_msg_t p;
  cm_time_t t = T0;
  int i;
  memset(&p, 0, sizeof(p));
  p.type = CM_MSG_PING;
  cm_wire_id_set(&p.u.ping.target, "a", 1);
  cm_wire_id_set(&p.u.ping.source, "m0", 2);
  p.u.ping.source_addr = opt_addr(10);
  for (i = 0; i <= 10; i++) {
    t = T0 + CM_SEC(i);
    p.u.ping.seq = (uint32_t)i;
    opt_feed(n, 10, &p, t);
  }
  CM_CHECK(cm_node_member_find(n, "m0", &info, t + CM_MSEC(1500)));
  cm_node_free(n);
  return info.phi;
}

/* The reported phi is that of a normal distribution whose spread is at
 * least phi_min_std and whose mean is lengthened by phi_acceptable_pause:
 * with a spread of 0 measured, 1.5 s of silence after 1 s gaps is 5
 * standard deviations of 100 ms but 1.25 of 400 ms; a pause of 300 ms
 * brings it to 2 of 100 ms. */
CM_TEST(options_phi_min_std_and_acceptable_pause_shape_phi) {
  cm_config_t c;
  double base, wide, paused;
  cm_config_lan(&c);
  c.phi_min_std = CM_MSEC(100);
  c.phi_acceptable_pause = 0;
  base = phi_after_regular_pings(&c);
  CM_CHECK_NEAR(base, cm_phi_normal(1.5e6, 1e6, 1e5), 1e-9);
  c.phi_min_std = CM_MSEC(400);
  wide = phi_after_regular_pings(&c);
  CM_CHECK_NEAR(wide, cm_phi_normal(1.5e6, 1e6, 4e5), 1e-9);
  c.phi_min_std = CM_MSEC(100);
  c.phi_acceptable_pause = CM_MSEC(300);
  paused = phi_after_regular_pings(&c);
  CM_CHECK_NEAR(paused, cm_phi_normal(1.5e6, 1.3e6, 1e5), 1e-9);
  /* Far apart, so none of the three could pass for another. */
  CM_CHECK(base > 6.0 && wide < 1.2 && paused > 1.5 && paused < 2.0);
}

/* ------------------------------------------------------- dissemination */

/* How many times "a" sends its own ALIVE record at incarnation `inc` or
 * later while its timers run from `from` for `secs` seconds. */
static int own_alive_sends(cm_node_t *n, uint32_t inc, cm_time_t from,
                           int secs) {
  cm_time_t t;
  int sends = 0;
  for (t = from; t < from + CM_SEC(secs); t += CM_MSEC(10)) {
    cm_addr_t to;
    const uint8_t *d;
    size_t len, k, nm;
    cm_msg_t msgs[CM_WIRE_MAX_MSGS];
    cm_event_t ev;
    cm_node_tick(n, t);
    while (cm_node_poll_event(n, &ev))
      ;
    while (cm_node_poll_datagram(n, &to, &d, &len)) {
      CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &nm));
      for (k = 0; k < nm; k++)
        sends += msgs[k].type == CM_MSG_ALIVE &&
                 strcmp(msgs[k].u.alive.node.s, "a") == 0 &&
                 msgs[k].u.alive.incarnation >= inc;
    }
  }
  return sends;
}

static uint32_t own_incarnation(const cm_node_t *n) {
  cm_node_stats_t st;
  cm_node_stats(n, &st);
  return st.incarnation;
}

/* An update is sent retransmit_mult x ceil(log10(n + 1)) times, and never
 * fewer than ceil(ln(n - 1) + ln 100): with four members (a and three
 * others), retransmit_mult times, but at least 6. */
CM_TEST(options_retransmit_mult_sets_how_often_an_update_is_sent) {
  static const uint32_t mults[] = {1, 5, 8};
  static const uint32_t sends[] = {6, 6, 8};
  size_t i;
  for (i = 0; i < sizeof(mults) / sizeof(mults[0]); i++) {
    cm_config_t c;
    cm_node_t *n;
    uint32_t inc;
    cm_config_lan(&c);
    c.retransmit_mult = mults[i];
    n = opt_node(&c, 3);
    CM_CHECK_EQ(cm_retransmit_limit(&c, 4), sends[i]);
    own_alive_sends(n, 0, T0, 5); /* the first announcement goes out */
    inc = own_incarnation(n);
    CM_CHECK_OK(cm_node_set_tag(n, "k", "v", T0 + CM_SEC(5)));
    CM_CHECK(own_incarnation(n) > inc);
    CM_CHECK_EQ(own_alive_sends(n, inc + 1, T0 + CM_SEC(5), 10), sends[i]);
    cm_node_free(n);
  }
}

/* At most max_broadcast_queue updates wait to be sent; past it the least
 * valuable is dropped and counted. Forty newcomers and this node's own
 * record are 41 updates: 16 kept and 25 dropped under a bound of 16, all
 * kept under the default. */
CM_TEST(options_max_broadcast_queue_bounds_pending_updates) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  cm_config_lan(&c);
  n = opt_node(&c, 40);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.bcast_queue, 41);
  CM_CHECK_EQ(st.updates_dropped, 0);
  cm_node_free(n);
  c.max_broadcast_queue = 16;
  n = opt_node(&c, 40);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 41); /* the members are all known */
  CM_CHECK_EQ(st.bcast_queue, 16);
  CM_CHECK_EQ(st.updates_dropped, 25);
  cm_node_free(n);
}

/* ----------------------------------------------------------- transport */

/* The default transport settings with one cluster key. */
static void opt_net_config(cm_net_config_t *net, cm_net_key_t *key) {
  memset(key, 0, sizeof(*key));
  key->id = 1;
  memset(key->key, 0x5a, sizeof(key->key));
  cm_net_config_default(net);
  net->keys = key;
  net->nkeys = 1;
}

/* A handshake nobody answers fails after handshake_timeout (300 ms here),
 * not after the idle timeout (60 s) nor the request's (20 s): a join
 * through a socket that reads nothing counts a failed, timed out handshake
 * within a few seconds. */
CM_TEST(options_handshake_timeout_ends_an_unanswered_handshake) {
  cm_engine_t *e = NULL;
  cm_net_config_t net;
  cm_net_key_t key;
  cm_enode_t *n;
  cm_enode_stats_t st;
  cm_addr_t silent;
  uint64_t start, took;
  int fd = cm_tn_udp_socket();
  opt_net_config(&net, &key);
  net.handshake_timeout = CM_MSEC(300);
  net.request_timeout = CM_SEC(20);
  CM_CHECK_OK(cm_engine_new(&e));
  n = cm_te_start(e, "hs", &net, 1, 0);
  silent = cm_tn_socket_addr(fd);
  start = cm_te_now_ms();
  CM_CHECK(cm_enode_join(n, &silent, 1, CM_SEC(30)) > 0);
  do {
    cm_te_nap_ms(10);
    cm_enode_stats(n, &st);
    took = cm_te_now_ms() - start;
  } while (st.net.handshakes_failed == 0 && took < 10000);
  CM_CHECK_EQ(st.net.handshakes_failed, 1);
  CM_CHECK(st.net.conns_timed_out >= 1);
  CM_CHECK(took >= 250);
  CM_CHECK(took < 4000);
  cm_engine_free(e);
  close(fd);
}

static uint64_t opt_handshakes(cm_enode_t **nodes, int count) {
  cm_enode_stats_t st;
  uint64_t total = 0;
  int i;
  for (i = 0; i < count; i++) {
    cm_enode_stats(nodes[i], &st);
    total += st.net.handshakes_ok;
  }
  return total;
}

/* The engine keeps connections open across the probe round, whatever the
 * configured idle_timeout: three nodes probing every 0.5 s with an idle
 * timeout of 0.2 s would reconnect at almost every probe (each pair hears
 * from each other about once a second). With the idle floor at two probe
 * rounds (3 s here) they settle: the connections made while joining, when
 * the membership was smaller and the floor lower, may be made again once,
 * then 3 s pass with no handshake, and the next 4 s hold at most one more
 * connection (2 handshakes, counting both ends). Without the floor no
 * second passes without one. */
CM_TEST(options_idle_timeout_stays_above_the_probe_round) {
  cm_engine_t *e = NULL;
  cm_net_config_t net;
  cm_net_key_t key;
  cm_enode_t *nodes[3];
  cm_addr_t seed;
  uint64_t before, start, quiet_since;
  int i, all;
  opt_net_config(&net, &key);
  net.idle_timeout = CM_MSEC(200);
  CM_CHECK_OK(cm_engine_new(&e));
  for (i = 0; i < 3; i++)
    nodes[i] = cm_te_start(e,
                           i == 0   ? "i0"
                           : i == 1 ? "i1"
                                    : "i2",
                           &net, (uint64_t)i + 1, 0);
  seed = cm_enode_addr(nodes[0]);
  for (i = 1; i < 3; i++)
    CM_CHECK(cm_enode_join(nodes[i], &seed, 1, CM_SEC(10)) > 0);
  start = cm_te_now_ms();
  do {
    cm_te_nap_ms(20);
    all = 1;
    for (i = 0; i < 3; i++)
      all &= cm_te_alive_count(nodes[i]) == 3;
  } while (!all && cm_te_now_ms() - start < 30000);
  CM_CHECK(all);
  /* Settled: no handshake for 3 s (formation's connections replaced). */
  before = opt_handshakes(nodes, 3);
  quiet_since = start = cm_te_now_ms();
  while (cm_te_now_ms() - quiet_since < 3000 &&
         cm_te_now_ms() - start < 30000) {
    cm_te_nap_ms(50);
    if (opt_handshakes(nodes, 3) != before) {
      before = opt_handshakes(nodes, 3);
      quiet_since = cm_te_now_ms();
    }
  }
  CM_CHECK(cm_te_now_ms() - quiet_since >= 3000);
  cm_te_nap_ms(4000);
  CM_CHECK(opt_handshakes(nodes, 3) - before <= 2);
  cm_engine_free(e);
}
