/*
 * Network coordinates: the Vivaldi arithmetic (cm_coord.c) on layouts with a
 * known answer, its guards against bad input, the COORD message and the
 * push-pull field, and whole simulated clusters with sites, measured against
 * the simulator's true RTTs.
 */
#include <math.h>
#include <stdlib.h>

#include "cm_coord.h"
#include "cm_sim.h"
#include "cm_test.h"
#include "cm_test_node.h"

/* ---- The arithmetic ---- */

/* Serf's coordinate tests' harness, written for ours: every cycle, each
 * client measures one random peer against a truth matrix (seconds). */
static void coord_simulate(cm_coord_client_t *cl, size_t n, const double *truth,
                           int cycles, uint64_t seed) {
  uint64_t r = seed;
  int c;
  size_t i;
  for (c = 0; c < cycles; c++)
    for (i = 0; i < n; i++) {
      size_t j;
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      j = (size_t)((r >> 33) % n);
      if (j == i)
        continue;
      cm_coord_update(&cl[i], &cl[j].c, truth[i * n + j], 0);
    }
}

/* Mean and largest |estimate - truth| over all pairs, in seconds. */
static void coord_eval(const cm_coord_client_t *cl, size_t n,
                       const double *truth, double *avg, double *max) {
  double sum = 0;
  size_t i, j, k = 0;
  *max = 0;
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++) {
      double e = fabs(cm_coord_rtt(&cl[i].c, &cl[j].c) - truth[i * n + j]);
      sum += e;
      k++;
      if (e > *max)
        *max = e;
    }
  *avg = sum / (double)k;
}

CM_TEST(coord_learns_a_line) {
  enum { N = 10 };
  cm_coord_client_t cl[N];
  double truth[N * N], avg, max;
  size_t i, j;
  for (i = 0; i < N; i++) {
    cm_coord_client_init(&cl[i], i + 1);
    for (j = 0; j < N; j++)
      truth[i * N + j] = 0.010 * fabs((double)i - (double)j);
  }
  coord_simulate(cl, N, truth, 1000, 1);
  coord_eval(cl, N, truth, &avg, &max);
  printf("    line: mean error %.3f ms, worst %.3f ms\n", avg * 1e3, max * 1e3);
  /* Serf's bounds for the same layout: 3.1 ms mean, 13 ms worst. */
  CM_CHECK(avg < 0.0031);
  CM_CHECK(max < 0.0130);
  for (i = 0; i < N; i++)
    CM_CHECK(cm_coord_valid(&cl[i].c));
}

CM_TEST(coord_learns_two_sites) {
  enum { N = 25 };
  cm_coord_client_t cl[N];
  double truth[N * N], avg, max;
  size_t i, j;
  for (i = 0; i < N; i++) {
    cm_coord_client_init(&cl[i], i + 7);
    for (j = 0; j < N; j++)
      truth[i * N + j] = i == j ? 0 : (i % 2 == j % 2 ? 0.001 : 0.010);
  }
  coord_simulate(cl, N, truth, 1000, 2);
  coord_eval(cl, N, truth, &avg, &max);
  printf("    two sites: mean error %.1f us, worst %.1f us\n", avg * 1e6,
         max * 1e6);
  /* Serf's bounds for its split layout: 60 us mean, 480 us worst. */
  CM_CHECK(avg < 0.000060);
  CM_CHECK(max < 0.00048);
}

CM_TEST(coord_refuses_what_is_not_a_coordinate) {
  cm_coord_client_t cl;
  cm_coord_t ok, bad, before;
  cm_coord_client_init(&cl, 3);
  cm_coord_init(&ok);
  ok.vec[0] = 0.01;
  ok.error = 0.5;
  before = cl.c;
  bad = ok;
  bad.vec[3] = NAN;
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  bad = ok;
  bad.height = INFINITY;
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  bad = ok;
  bad.vec[7] = -(CM_COORD_LIMIT * 2);
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  bad = ok;
  bad.height = -0.001;
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  bad = ok;
  bad.error = CM_COORD_ERROR_MAX * 2;
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  bad = ok;
  bad.adjustment = NAN;
  CM_CHECK_EQ(cm_coord_update(&cl, &bad, 0.01, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_coord_update(&cl, &ok, -0.001, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_coord_update(&cl, &ok, NAN, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_coord_update(&cl, &ok, CM_COORD_LIMIT + 1, 0), CM_EINVAL);
  CM_CHECK_EQ(cl.rejected, 9);
  CM_CHECK_EQ(cl.updates, 0);
  CM_CHECK(memcmp(&before, &cl.c, sizeof(before)) == 0);
  CM_CHECK_OK(cm_coord_update(&cl, &ok, 0.01, 0));
  CM_CHECK_EQ(cl.updates, 1);
  CM_CHECK(memcmp(&before, &cl.c, sizeof(before)) != 0);
}

/* Converge a client against peers placed on a line (10 ms apart) and
 * return it confident. */
static void coord_confident(cm_coord_client_t *me, cm_coord_t *peers, int n) {
  int k, i;
  cm_coord_client_init(me, 11);
  for (i = 0; i < n; i++) {
    cm_coord_init(&peers[i]);
    peers[i].vec[0] = 0.010 * (i + 1);
    peers[i].error = 0.2;
  }
  /* We sit at the origin of that line: RTT to peer i is its distance. */
  for (k = 0; k < 200; k++)
    for (i = 0; i < n; i++)
      cm_coord_update(me, &peers[i], 0.010 * (i + 1), (uint64_t)i + 1);
  CM_CHECK(me->c.error <= CM_COORD_OUTLIER_ERROR);
}

CM_TEST(coord_outlier_refused_once_confident) {
  cm_coord_client_t me;
  cm_coord_t peers[4], liar, before;
  int i;
  coord_confident(&me, peers, 4);
  before = me.c;
  /* Claims to be 5 s away, and sure of it, but answers in 10 ms. */
  cm_coord_init(&liar);
  liar.vec[0] = 5.0;
  liar.error = 0;
  CM_CHECK_EQ(cm_coord_update(&me, &liar, 0.010, 99), CM_ELIMIT);
  CM_CHECK(memcmp(&before, &me.c, sizeof(before)) == 0);
  CM_CHECK_EQ(me.resets, 0);
  /* However often it lies, one peer alone never resets us. */
  for (i = 0; i < 3 * CM_COORD_OUTLIERS_RESET; i++)
    CM_CHECK_EQ(cm_coord_update(&me, &liar, 0.010, 99), CM_ELIMIT);
  CM_CHECK_EQ(me.resets, 0);
  CM_CHECK(memcmp(&before, &me.c, sizeof(before)) == 0);
  /* An honest peer in between clears the count of refusals in a row. */
  CM_CHECK_OK(cm_coord_update(&me, &peers[0], 0.010, 0));
  CM_CHECK_EQ(me.outliers_in_row, 0);
}

CM_TEST(coord_diverged_coordinate_resets_itself) {
  cm_coord_client_t me;
  cm_coord_t peers[4], far;
  int i;
  coord_confident(&me, peers, 4);
  /* Our own coordinate went wrong (say, dragged 3 s away): every honest
   * sample is an outlier now, and the eighth in a row starts us again. */
  far = me.c;
  far.vec[1] = 3.0;
  me.c = far;
  for (i = 0; i < CM_COORD_OUTLIERS_RESET - 1; i++)
    CM_CHECK_EQ(
        cm_coord_update(&me, &peers[i % 4], 0.010, (uint64_t)(i % 4) + 1),
        CM_ELIMIT);
  CM_CHECK_EQ(me.resets, 0);
  CM_CHECK_EQ(cm_coord_update(&me, &peers[0], 0.010, 1), CM_ELIMIT);
  CM_CHECK_EQ(me.resets, 1);
  CM_CHECK_EQ(me.c.vec[1], 0);
  CM_CHECK_EQ(me.c.error, CM_COORD_ERROR_MAX);
  /* And learns again from the same peers. */
  CM_CHECK_OK(cm_coord_update(&me, &peers[0], 0.010, 0));
}

CM_TEST(coord_filter_takes_the_median_of_three) {
  cm_coord_filter_t f;
  memset(&f, 0, sizeof(f));
  CM_CHECK_NEAR(cm_coord_filter_add(&f, 0.004), 0.004, 1e-9);
  CM_CHECK_NEAR(cm_coord_filter_add(&f, 0.002), 0.004, 1e-9);
  CM_CHECK_NEAR(cm_coord_filter_add(&f, 0.003), 0.003, 1e-9);
  /* A blip does not move it. */
  CM_CHECK_NEAR(cm_coord_filter_add(&f, 0.500), 0.003, 1e-9);
  CM_CHECK_NEAR(cm_coord_filter_add(&f, 0.003), 0.003, 1e-9);
}

CM_TEST(coord_wire_form_is_documented_and_exact) {
  /* docs/protocol.md, "COORD": vec (1 ms, 0, ..., 0, -2 ms), height
   * 0.25 ms, adjustment -0.5 ms... in binary32, big-endian. */
  static const uint8_t doc[CM_COORD_WIRE_LEN] = {
      0x3a, 0x83, 0x12, 0x6f, 0,    0,    0,    0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0xbb, 0x03, 0x12, 0x6f, 0x39,
      0x83, 0x12, 0x6f, 0xba, 0x03, 0x12, 0x6f, 0x3e, 0x80, 0x00, 0x00};
  cm_coord_t c, back;
  uint8_t out[CM_COORD_WIRE_LEN];
  cm_coord_init(&c);
  c.vec[0] = 0.001;
  c.vec[7] = -0.002;
  c.height = 0.00025;
  c.adjustment = -0.0005;
  c.error = 0.25;
  cm_coord_to_wire(&c, out);
  CM_CHECK(memcmp(out, doc, sizeof(doc)) == 0);
  cm_coord_from_wire(out, &back);
  CM_CHECK_NEAR(back.vec[0], 0.001, 1e-10);
  CM_CHECK_NEAR(back.vec[7], -0.002, 1e-10);
  CM_CHECK_NEAR(back.height, 0.00025, 1e-10);
  CM_CHECK_EQ(back.error, 0.25);
  CM_CHECK(cm_coord_valid(&back));
  /* Any bits decode; the reader judges the values. */
  memset(out, 0xff, sizeof(out));
  cm_coord_from_wire(out, &back);
  CM_CHECK(!cm_coord_valid(&back));
}

/* ---- At the node: COORD after the ACK, and in push-pull ---- */

static const cm_addr_t *coord_addr(uint32_t i) {
  static cm_addr_t a[8];
  a[i] = cm_addr_from_index(i, 7946);
  return &a[i];
}

/* ALIVE of id at i's address, advertising versions 1..vmax. */
static void coord_alive(cm_node_t *n, const char *id, uint32_t i, uint8_t vmax,
                        cm_time_t now) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  CM_CHECK_OK(cm_wire_id_set(&m.u.alive.node, id, strlen(id)));
  m.u.alive.addr = *coord_addr(i);
  m.u.alive.ext.vmin = vmax ? 1 : 0;
  m.u.alive.ext.vmax = vmax;
  cm_tnode_feed(n, coord_addr(i), &m, now);
}

/* Tick until the node pings someone; returns the ping's seq and target. */
static uint32_t coord_next_ping(cm_node_t *n, cm_time_t *now, cm_addr_t *to) {
  int k;
  for (k = 0; k < 4000; k++) {
    const uint8_t *d;
    size_t len, count, i;
    cm_msg_t msgs[CM_WIRE_MAX_MSGS];
    cm_node_tick(n, *now);
    while (cm_node_poll_datagram(n, to, &d, &len)) {
      CM_CHECK_OK(
          cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &count));
      for (i = 0; i < count; i++)
        if (msgs[i].type == CM_MSG_PING) {
          uint32_t seq = msgs[i].u.ping.seq;
          while (cm_node_poll_datagram(n, to, &d, &len))
            ;
          return seq;
        }
    }
    *now += CM_MSEC(1);
  }
  cm_test_fail(__FILE__, __LINE__, "no ping in 4 s");
}

/* A packet from `from` holding msgs[0..k). */
static void coord_feed(cm_node_t *n, const cm_addr_t *from,
                       const cm_msg_t *msgs, size_t k, cm_time_t now) {
  uint8_t buf[512];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t i;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  for (i = 0; i < k; i++)
    CM_CHECK_OK(cm_wire_packet_add(&w, &msgs[i]));
  CM_CHECK_OK(cm_node_recv(n, from, buf, w.len, now));
}

static void coord_msgs(cm_msg_t m[2], uint32_t seq, const cm_coord_t *c) {
  memset(m, 0, 2 * sizeof(*m));
  m[0].type = CM_MSG_ACK;
  m[0].u.ack.seq = seq;
  m[1].type = CM_MSG_COORD;
  cm_coord_to_wire(c, m[1].u.coord.b);
}

CM_TEST(coord_ack_carries_the_target_coordinate_and_rtt) {
  cm_config_t cfg;
  cm_time_t now = CM_SEC(1);
  cm_node_t *n;
  cm_addr_t to;
  cm_msg_t m[2];
  cm_coord_t peer, mine;
  cm_member_info_t info;
  cm_node_stats_t st;
  uint32_t seq;
  cm_tconfig_pinned(&cfg);
  n = cm_tnode_new(&cfg, now);
  coord_alive(n, "b", 2, 2, now);
  cm_coord_init(&peer);
  peer.vec[0] = 0.020;
  peer.error = 0.3;
  /* A COORD with no ACK of ours before it: ignored, counted. */
  memset(m, 0, sizeof(m));
  m[0].type = CM_MSG_COORD;
  cm_coord_to_wire(&peer, m[0].u.coord.b);
  coord_feed(n, coord_addr(2), m, 1, now);
  st = cm_tnode_stats(n);
  CM_CHECK_EQ(st.coord_ignored, 1);
  CM_CHECK_EQ(st.coord_updates, 0);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(!info.has_coord);

  seq = coord_next_ping(n, &now, &to);
  CM_CHECK(cm_addr_eq(&to, coord_addr(2)));
  /* The ACK and the COORD, 30 ms after the ping. */
  coord_msgs(m, seq, &peer);
  coord_feed(n, coord_addr(2), m, 2, now + CM_MSEC(30));
  st = cm_tnode_stats(n);
  CM_CHECK_EQ(st.probe_acks, 1);
  CM_CHECK_EQ(st.coord_updates, 1);
  /* The round trip is in the histogram too: 30 ms, in (25 ms, 50 ms]. */
  CM_CHECK_EQ(st.probe_rtt_count, 1);
  CM_CHECK_NEAR(st.probe_rtt_sum, 0.030, 1e-9);
  CM_CHECK_EQ(cm_rtt_bucket_bounds[7], 0.05);
  CM_CHECK_EQ(st.probe_rtt_buckets[7], 1);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(info.has_coord);
  CM_CHECK_NEAR(info.coord.vec[0], 0.020, 1e-9);
  /* We moved: away from b's position, since b said 20 ms and it was 30. */
  CM_CHECK_OK(cm_node_coord(n, &mine));
  CM_CHECK(mine.vec[0] < 0);
  CM_CHECK(mine.error < CM_COORD_ERROR_MAX);
  CM_CHECK(cm_node_member_find(n, "self", &info, now));
  CM_CHECK(info.has_coord && info.coord.vec[0] == mine.vec[0]);

  /* The next probe's ACK with a coordinate no one could hold: the ack
   * counts, the coordinate does not. */
  now += CM_SEC(1);
  seq = coord_next_ping(n, &now, &to);
  peer.vec[2] = NAN;
  coord_msgs(m, seq, &peer);
  coord_feed(n, coord_addr(2), m, 2, now + CM_MSEC(30));
  st = cm_tnode_stats(n);
  CM_CHECK_EQ(st.probe_acks, 2);
  CM_CHECK_EQ(st.coord_updates, 1);
  CM_CHECK_EQ(st.coord_rejected, 1);
  CM_CHECK_OK(cm_node_coord(n, &peer));
  CM_CHECK(memcmp(&peer, &mine, sizeof(mine)) == 0);
  cm_node_free(n);
}

/* Which messages the node's answer to a ping from `from` holds. */
static size_t coord_answer(cm_node_t *n, uint32_t from, const char *id,
                           cm_msg_t *out, cm_time_t now) {
  cm_msg_t ping;
  cm_addr_t to;
  const uint8_t *d;
  size_t len, count = 0;
  memset(&ping, 0, sizeof(ping));
  ping.type = CM_MSG_PING;
  ping.u.ping.seq = 77;
  CM_CHECK_OK(cm_wire_id_set(&ping.u.ping.target, "self", 4));
  CM_CHECK_OK(cm_wire_id_set(&ping.u.ping.source, id, strlen(id)));
  ping.u.ping.source_addr = *coord_addr(from);
  cm_tnode_feed(n, coord_addr(from), &ping, now);
  CM_CHECK(cm_node_poll_datagram(n, &to, &d, &len));
  CM_CHECK_OK(cm_wire_packet_decode(d, len, out, CM_WIRE_MAX_MSGS, &count));
  while (cm_node_poll_datagram(n, &to, &d, &len))
    ;
  return count;
}

CM_TEST(coord_sent_only_to_members_that_read_it) {
  cm_config_t cfg;
  cm_time_t now = CM_SEC(1);
  cm_node_t *n;
  cm_msg_t out[CM_WIRE_MAX_MSGS];
  cm_coord_t c;
  size_t k;
  cm_tconfig_pinned(&cfg);
  n = cm_tnode_new(&cfg, now);
  coord_alive(n, "v2", 2, 2, now);
  coord_alive(n, "v1", 3, 0, now);
  /* Drain the gossip the ALIVEs queued, so answers are only the ack. */
  now += CM_SEC(5);
  cm_node_tick(n, now);
  {
    cm_addr_t to;
    const uint8_t *d;
    size_t len;
    while (cm_node_poll_datagram(n, &to, &d, &len))
      ;
  }
  k = coord_answer(n, 2, "v2", out, now);
  CM_CHECK(k >= 2);
  CM_CHECK_EQ(out[0].type, CM_MSG_ACK);
  CM_CHECK_EQ(out[1].type, CM_MSG_COORD);
  cm_coord_from_wire(out[1].u.coord.b, &c);
  CM_CHECK(cm_coord_valid(&c));
  CM_CHECK_EQ(c.error, CM_COORD_ERROR_MAX);
  k = coord_answer(n, 3, "v1", out, now);
  CM_CHECK(k >= 1);
  CM_CHECK_EQ(out[0].type, CM_MSG_ACK);
  CM_CHECK(k == 1 || out[1].type != CM_MSG_COORD);
  cm_node_free(n);
  /* Off: no COORD to anyone. */
  cfg.coordinates = 0;
  n = cm_tnode_new(&cfg, now);
  coord_alive(n, "v2", 2, 2, now);
  k = coord_answer(n, 2, "v2", out, now);
  CM_CHECK(k == 1 || out[1].type != CM_MSG_COORD);
  CM_CHECK_EQ(cm_node_coord(n, &c), CM_ESTATE);
  /* And it says it speaks version 1: no one sends it a COORD. */
  {
    cm_member_info_t info;
    CM_CHECK(cm_node_member_find(n, "self", &info, now));
    CM_CHECK_EQ(info.proto_max, 1);
    CM_CHECK(!info.has_coord);
  }
  cm_node_free(n);
}

/* A push-pull request from `sender` (entry 0, its clocks 0 and coordinate
 * cs) that also carries `other` with coordinate co; a join's if join. */
static int coord_pp_join;
static size_t coord_pp(uint8_t *buf, size_t cap, const char *sender,
                       uint32_t si, const cm_coord_t *cs, const char *other,
                       uint32_t oi, const cm_coord_t *co) {
  uint8_t later0[CM_PP_CLOCKS_LEN + CM_COORD_WIRE_LEN],
      later1[CM_COORD_WIRE_LEN];
  cm_wbuf_t w = {buf, 0, cap};
  cm_pp_entry_t e;
  memset(later0, 0, sizeof(later0));
  cm_coord_to_wire(cs, later0 + CM_PP_CLOCKS_LEN);
  cm_coord_to_wire(co, later1);
  CM_CHECK_OK(cm_wire_pp_begin(
      &w, CM_PP_REQUEST,
      (uint8_t)(CM_PP_FLAG_EXT | (coord_pp_join ? CM_PP_FLAG_JOIN : 0))));
  memset(&e, 0, sizeof(e));
  CM_CHECK_OK(cm_wire_id_set(&e.node, sender, strlen(sender)));
  e.addr = *coord_addr(si);
  e.ext.vmin = 1;
  e.ext.vmax = 2;
  e.ext.rest = later0;
  e.ext.rest_len = sizeof(later0);
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  CM_CHECK_OK(cm_wire_id_set(&e.node, other, strlen(other)));
  e.addr = *coord_addr(oi);
  e.ext.rest = later1;
  e.ext.rest_len = sizeof(later1);
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  return w.len;
}

static cm_coord_t coord_at(double x) {
  cm_coord_t c;
  cm_coord_init(&c);
  c.vec[0] = x;
  c.error = 0.4;
  return c;
}

/* The coordinates in a push-pull answer of 3 entries: ours (after our
 * clocks) always; how many of the members' it carries is returned. */
static int coord_check_reply(const uint8_t *reply, size_t rlen) {
  cm_pp_header_t h;
  cm_pp_entry_t e;
  size_t off = 0;
  int seen = 0, carried = 0;
  CM_CHECK_OK(cm_wire_pp_decode(reply, rlen, &h));
  while (cm_wire_pp_next(reply, rlen, &off, &e)) {
    cm_coord_t got;
    if (strcmp(e.node.s, "self") == 0) {
      CM_CHECK_EQ(e.ext.rest_len, CM_PP_CLOCKS_LEN + CM_COORD_WIRE_LEN);
      cm_coord_from_wire(e.ext.rest + CM_PP_CLOCKS_LEN, &got);
      CM_CHECK_EQ(got.error, CM_COORD_ERROR_MAX);
    } else if (e.ext.rest_len > 0) {
      CM_CHECK_EQ(e.ext.rest_len, CM_COORD_WIRE_LEN);
      cm_coord_from_wire(e.ext.rest, &got);
      CM_CHECK(got.vec[0] > 0.009 && got.vec[0] < 0.021);
      carried++;
    }
    seen++;
  }
  CM_CHECK_EQ(seen, 3);
  return carried;
}

CM_TEST(coord_pushpull_carries_the_senders_own_and_a_joins_everyones) {
  cm_config_t cfg;
  cm_time_t now = CM_SEC(1);
  cm_node_t *n;
  cm_coord_t b = coord_at(0.010), c = coord_at(0.020), fake = coord_at(0.090);
  cm_member_info_t info;
  uint8_t buf[1024], *reply = NULL, *req;
  size_t len, rlen = 0;
  cm_addr_t to;
  uint64_t req_id;
  int is_join;
  cm_tconfig_pinned(&cfg);
  n = cm_tnode_new(&cfg, now);
  /* b's periodic push-pull, from b's address: b's own word is taken; what
   * it says of c is not (one member must not set what we hold of all). */
  len = coord_pp(buf, sizeof(buf), "b", 2, &b, "c", 3, &c);
  CM_CHECK_OK(
      cm_node_handle_pushpull(n, coord_addr(2), buf, len, now, &reply, &rlen));
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(info.has_coord && info.coord.vec[0] == (double)(float)0.010);
  CM_CHECK(cm_node_member_find(n, "c", &info, now));
  CM_CHECK(!info.has_coord);
  /* A periodic exchange's answer carries only ours. */
  CM_CHECK_EQ(coord_check_reply(reply, rlen), 0);
  free(reply);
  /* Entry 0 naming b, from c's address: not b's word. */
  len = coord_pp(buf, sizeof(buf), "b", 2, &fake, "c", 3, &c);
  CM_CHECK_OK(cm_node_handle_pushpull(n, coord_addr(3), buf, len,
                                      now + CM_SEC(1), &reply, &rlen));
  free(reply);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(info.coord.vec[0] == (double)(float)0.010);
  /* A join's request is answered with everyone's. */
  coord_pp_join = 1;
  len = coord_pp(buf, sizeof(buf), "b", 2, &b, "c", 3, &c);
  coord_pp_join = 0;
  CM_CHECK_OK(
      cm_node_handle_pushpull(n, coord_addr(2), buf, len, now, &reply, &rlen));
  CM_CHECK_EQ(coord_check_reply(reply, rlen), 1); /* b's: c's is unknown */
  free(reply);
  /* An invalid one from the right peer: refused, counted, nothing moves. */
  fake.vec[0] = INFINITY;
  len = coord_pp(buf, sizeof(buf), "b", 2, &fake, "c", 3, &c);
  CM_CHECK_OK(cm_node_handle_pushpull(n, coord_addr(2), buf, len,
                                      now + CM_SEC(2), &reply, &rlen));
  free(reply);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(info.coord.vec[0] == (double)(float)0.010);
  CM_CHECK(cm_tnode_stats(n).coord_rejected >= 1);
  cm_node_free(n);

  /* Our own join's answer gives everyone's: relayed, so they fill in what
   * we hold nothing of, and a member's own word replaces them. */
  n = cm_tnode_new(&cfg, now);
  CM_CHECK_OK(cm_node_join(n, coord_addr(2), 1, now));
  CM_CHECK(cm_node_poll_stream(n, &to, &req_id, &req, &len, &is_join));
  free(req);
  CM_CHECK(is_join);
  {
    uint8_t later0[CM_PP_CLOCKS_LEN + CM_COORD_WIRE_LEN],
        later1[CM_COORD_WIRE_LEN];
    cm_wbuf_t w = {buf, 0, sizeof(buf)};
    cm_pp_entry_t e;
    memset(later0, 0, sizeof(later0));
    cm_coord_to_wire(&b, later0 + CM_PP_CLOCKS_LEN);
    cm_coord_to_wire(&c, later1);
    CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_RESPONSE, CM_PP_FLAG_EXT));
    memset(&e, 0, sizeof(e));
    CM_CHECK_OK(cm_wire_id_set(&e.node, "b", 1));
    e.addr = *coord_addr(2);
    e.ext.vmin = 1;
    e.ext.vmax = 2;
    e.ext.rest = later0;
    e.ext.rest_len = sizeof(later0);
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
    CM_CHECK_OK(cm_wire_id_set(&e.node, "c", 1));
    e.addr = *coord_addr(3);
    e.ext.rest = later1;
    e.ext.rest_len = sizeof(later1);
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
    CM_CHECK_OK(cm_wire_pp_finish(&w));
    CM_CHECK_OK(cm_node_pushpull_reply(n, req_id, buf, w.len, now));
  }
  CM_CHECK(cm_node_member_find(n, "c", &info, now));
  CM_CHECK(info.has_coord && info.coord.vec[0] == (double)(float)0.020);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK(info.has_coord && info.coord.vec[0] == (double)(float)0.010);
  /* c's own word replaces the seed's copy. */
  fake = coord_at(0.030);
  len = coord_pp(buf, sizeof(buf), "c", 3, &fake, "b", 2, &b);
  CM_CHECK_OK(cm_node_handle_pushpull(n, coord_addr(3), buf, len,
                                      now + CM_SEC(1), &reply, &rlen));
  free(reply);
  CM_CHECK(cm_node_member_find(n, "c", &info, now));
  CM_CHECK(info.coord.vec[0] == (double)(float)0.030);
  cm_node_free(n);
}

/* ---- Whole clusters with sites ---- */

struct coord_acc {
  double median;  /* of |estimate - truth| / truth over the pairs sampled */
  double nearest; /* fraction of nodes whose nearest(1) is right */
  uint32_t known; /* pairs with a coordinate at the estimating node */
};

static int coord_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Each node's view: its own coordinate and the ones it holds. nearest(1)
 * counts as right when its true RTT is within 10% of the true nearest. */
static struct coord_acc coord_accuracy(cm_sim_t *s) {
  uint32_t n = cm_sim_size(s), i, j, k = 0, good = 0;
  double *err = malloc(sizeof(double) * n * n);
  struct coord_acc a = {0, 0, 0};
  CM_CHECK(err != NULL);
  for (i = 0; i < n; i++) {
    cm_node_t *node = cm_sim_node(s, i);
    cm_coord_t me;
    double best_est = INFINITY, best_true = INFINITY, pick_true = INFINITY;
    CM_CHECK_OK(cm_node_coord(node, &me));
    for (j = 0; j < n; j++) {
      char id[32];
      cm_member_info_t info;
      double truth = (double)cm_sim_true_rtt(s, i, j) / 1e6, est;
      if (j == i)
        continue;
      if (truth < best_true)
        best_true = truth;
      cm_sim_id(j, id, sizeof(id));
      if (!cm_node_member_find(node, id, &info, cm_sim_now(s)) ||
          !info.has_coord)
        continue;
      est = cm_coord_rtt(&me, &info.coord);
      err[k++] = fabs(est - truth) / truth;
      if (est < best_est) {
        best_est = est;
        pick_true = truth;
      }
    }
    if (pick_true <= 1.1 * best_true)
      good++;
  }
  qsort(err, k, sizeof(double), coord_cmp);
  a.median = k > 0 ? err[k / 2] : INFINITY;
  a.nearest = (double)good / n;
  a.known = k;
  free(err);
  return a;
}

static cm_sim_t *coord_sites_sim(uint32_t n, uint64_t seed) {
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  cm_sim_config_default(&c);
  cm_tconfig_pinned(&c.node);
  c.nodes = n;
  c.seed = seed;
  c.sites = 3;
  c.site_rtt = CM_USEC(200);
  c.site_rtt_min = CM_MSEC(20);
  c.site_rtt_max = CM_MSEC(80);
  c.jitter = 0.1;
  CM_CHECK_OK(cm_sim_new(&s, &c));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  return s;
}

CM_TEST(coord_cluster_of_three_sites_learns_its_rtts) {
  cm_sim_t *s = coord_sites_sim(100, 5);
  struct coord_acc a;
  uint32_t i;
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(60));
  a = coord_accuracy(s);
  printf("    N=100 after 60 s: median relative error %.3f, nearest(1) right "
         "%.2f, pairs known %u\n",
         a.median, a.nearest, a.known);
  CM_CHECK(a.median <= 0.15);
  CM_CHECK(a.nearest >= 0.95);
  /* Push-pull spread what probes alone had not reached yet. */
  CM_CHECK(a.known > 100 * 99 * 9 / 10);
  for (i = 0; i < 100; i++) {
    cm_node_stats_t st;
    cm_node_stats(cm_sim_node(s, i), &st);
    CM_CHECK(st.coord_updates > 50);
    CM_CHECK_EQ(st.coord_resets, 0);
    CM_CHECK_EQ(st.suspicions, 0);
  }
  cm_sim_free(s);
}

/* One member lies: every COORD it sends says it sits at (x, -x, 0, ...)
 * and is sure of it (error 0). */
struct coord_liar {
  uint32_t node;
  uint64_t lies;
  double x;
};

static size_t coord_lie(void *ud, uint32_t node, int stream, const uint8_t *in,
                        size_t len, uint8_t *out, size_t cap) {
  struct coord_liar *l = ud;
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  cm_wbuf_t w = {out, 0, cap};
  size_t count, i;
  CM_CHECK(len <= cap);
  if (node != l->node || stream ||
      cm_wire_packet_decode(in, len, msgs, CM_WIRE_MAX_MSGS, &count) != 0) {
    memcpy(out, in, len);
    return len;
  }
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  for (i = 0; i < count; i++) {
    if (msgs[i].type == CM_MSG_COORD) {
      cm_coord_t c;
      cm_coord_init(&c);
      c.vec[0] = l->x;
      c.vec[1] = -l->x;
      c.error = 0;
      cm_coord_to_wire(&c, msgs[i].u.coord.b);
      l->lies++;
    }
    CM_CHECK_OK(cm_wire_packet_add(&w, &msgs[i]));
  }
  return w.len;
}

CM_TEST(coord_a_lying_member_drags_no_one) {
  cm_sim_t *s = coord_sites_sim(100, 6);
  struct coord_liar l = {17, 0, 5.0};
  struct coord_acc a;
  uint64_t rejected = 0;
  uint32_t i;
  cm_sim_on_send(s, coord_lie, &l);
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(60));
  a = coord_accuracy(s);
  printf("    one liar: median relative error %.3f, nearest(1) right %.2f, "
         "%llu lies\n",
         a.median, a.nearest, (unsigned long long)l.lies);
  CM_CHECK(l.lies > 50);
  CM_CHECK(a.median <= 0.15);
  CM_CHECK(a.nearest >= 0.95);
  for (i = 0; i < 100; i++) {
    cm_node_stats_t st;
    cm_coord_t c;
    double mag = 0;
    int d;
    cm_node_stats(cm_sim_node(s, i), &st);
    rejected += st.coord_rejected;
    CM_CHECK_OK(cm_node_coord(cm_sim_node(s, i), &c));
    for (d = 0; d < CM_COORD_DIMS; d++)
      mag += c.vec[d] * c.vec[d];
    /* Everyone stays within the cluster's own scale (sites 20-80 ms). */
    if (i != l.node)
      CM_CHECK(sqrt(mag) < 0.2);
  }
  CM_CHECK(rejected > 50);
  cm_sim_free(s);
}

CM_TEST(coord_node_thrown_far_away_starts_again) {
  cm_sim_t *s = coord_sites_sim(30, 8);
  cm_node_t *node;
  cm_coord_t far;
  cm_node_stats_t st;
  struct coord_acc a;
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(40));
  node = cm_sim_node(s, 4);
  CM_CHECK_OK(cm_node_coord(node, &far));
  far.vec[2] = 4.0;
  far.error = 0.1;
  CM_CHECK_OK(cm_node_coord_set(node, &far));
  far.vec[2] = NAN;
  CM_CHECK_EQ(cm_node_coord_set(node, &far), CM_EINVAL);
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(60));
  cm_node_stats(node, &st);
  CM_CHECK_EQ(st.coord_resets, 1);
  CM_CHECK_OK(cm_node_coord(node, &far));
  CM_CHECK(fabs(far.vec[2]) < 0.2);
  a = coord_accuracy(s);
  CM_CHECK(a.median <= 0.15);
  cm_sim_free(s);
}

/* A simulated LAN: one site, 0.5 ms between any two nodes. */
static cm_sim_t *coord_lan_sim(uint32_t n, uint64_t seed) {
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  cm_sim_config_default(&c);
  cm_tconfig_pinned(&c.node);
  c.nodes = n;
  c.seed = seed;
  c.sites = 1;
  c.site_rtt = c.site_rtt_min = c.site_rtt_max = CM_USEC(500);
  c.jitter = 0.1;
  CM_CHECK_OK(cm_sim_new(&s, &c));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  return s;
}

CM_TEST(coord_a_believable_liar_on_a_lan_drags_no_one) {
  cm_sim_t *s = coord_lan_sim(20, 9);
  /* 90 ms away: believable under the 10 ms floor the bound once had. */
  struct coord_liar l = {3, 0, 0.090 / 1.4142135623730951};
  struct coord_acc a;
  cm_sim_on_send(s, coord_lie, &l);
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(120));
  a = coord_accuracy(s);
  printf("    LAN, one member 90 ms off: median relative error %.3f, %llu "
         "lies\n",
         a.median, (unsigned long long)l.lies);
  CM_CHECK(l.lies > 20);
  CM_CHECK(a.median <= 0.15);
  cm_sim_free(s);
}

/* A push-pull request from `liar` that says every other member sits 3 s
 * away, sure of it. */
static size_t coord_poison(uint8_t *buf, size_t cap, cm_sim_t *s,
                           uint32_t liar) {
  uint8_t later0[CM_PP_CLOCKS_LEN + CM_COORD_WIRE_LEN], lat[CM_COORD_WIRE_LEN];
  cm_wbuf_t w = {buf, 0, cap};
  cm_coord_t far;
  uint32_t j, n = cm_sim_size(s);
  memset(later0, 0, sizeof(later0));
  cm_coord_init(&far);
  cm_coord_to_wire(&far, later0 + CM_PP_CLOCKS_LEN);
  far.vec[0] = 3.0;
  far.error = 0;
  cm_coord_to_wire(&far, lat);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, CM_PP_FLAG_EXT));
  for (j = 0; j < n; j++) {
    uint32_t k = j == 0 ? liar : (j == liar ? 0 : j);
    cm_pp_entry_t e;
    char id[32];
    memset(&e, 0, sizeof(e));
    cm_sim_id(k, id, sizeof(id));
    CM_CHECK_OK(cm_wire_id_set(&e.node, id, strlen(id)));
    e.addr = cm_sim_addr(k);
    e.ext.vmin = 1;
    e.ext.vmax = 2;
    e.ext.rest = j == 0 ? later0 : lat;
    e.ext.rest_len = j == 0 ? sizeof(later0) : sizeof(lat);
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  }
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  return w.len;
}

CM_TEST(coord_one_members_pushpull_moves_no_one) {
  static uint8_t buf[1 << 16];
  cm_sim_t *s = coord_lan_sim(100, 5);
  uint32_t liar = 17, i;
  uint64_t resets = 0;
  struct coord_acc a;
  int t;
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(120));
  for (t = 0; t < 120; t += 5) {
    for (i = 0; i < 100; i++) {
      uint8_t *reply = NULL;
      size_t rlen = 0, len;
      cm_addr_t from = cm_sim_addr(liar);
      if (i == liar)
        continue;
      len = coord_poison(buf, sizeof(buf), s, liar);
      CM_CHECK_OK(cm_node_handle_pushpull(cm_sim_node(s, i), &from, buf, len,
                                          cm_sim_now(s), &reply, &rlen));
      free(reply);
    }
    cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  }
  a = coord_accuracy(s);
  for (i = 0; i < 100; i++) {
    cm_node_stats_t st;
    cm_node_stats(cm_sim_node(s, i), &st);
    resets += st.coord_resets;
  }
  printf("    LAN, one member's push-pulls every 5 s: median relative error "
         "%.3f, %llu resets\n",
         a.median, (unsigned long long)resets);
  CM_CHECK_EQ(resets, 0);
  CM_CHECK(a.median <= 0.15);
  cm_sim_free(s);
}

/* The health table's round trips: the last 16 direct ones, as percentiles,
 * and when the member was last heard from. */
CM_TEST(probe_rtt_percentiles_of_the_last_sixteen) {
  cm_config_t cfg;
  cm_time_t now = CM_SEC(1), acked = 0;
  cm_node_t *n;
  cm_member_info_t info;
  uint32_t k;
  cm_tconfig_pinned(&cfg);
  n = cm_tnode_new(&cfg, now);
  coord_alive(n, "b", 2, 2, now);
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK_EQ(info.rtt_samples, 0);
  CM_CHECK_EQ(info.rtt_median_us, 0);
  /* Probes acked after 1, 2, ..., 20 ms: the ring keeps 5..20. */
  for (k = 1; k <= 20; k++) {
    cm_addr_t to;
    cm_msg_t ack;
    uint32_t seq = coord_next_ping(n, &now, &to);
    memset(&ack, 0, sizeof(ack));
    ack.type = CM_MSG_ACK;
    ack.u.ack.seq = seq;
    acked = now + CM_MSEC(k);
    cm_tnode_feed(n, &to, &ack, acked);
    now = acked + CM_MSEC(1);
  }
  CM_CHECK(cm_node_member_find(n, "b", &info, now));
  CM_CHECK_EQ(info.rtt_samples, 16);
  CM_CHECK_EQ(info.rtt_median_us, 12000); /* lower median of 5..20 */
  CM_CHECK_EQ(info.rtt_p90_us, 19000);    /* nearest rank: the 15th of 16 */
  CM_CHECK_EQ(info.rtt_max_us, 20000);
  CM_CHECK_EQ(info.last_heard, acked);
  cm_node_free(n);
}
