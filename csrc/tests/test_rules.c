/*
 * The membership rules, one named test each, driven by hand-made messages
 * into a single core node (no network). docs/protocol.md states each rule.
 */
#include <stdlib.h>

#include "cm_merge.h"
#include "cm_node.h"
#include "cm_node_int.h"
#include "cm_test.h"
#include "cm_test_node.h"

#define T0 CM_SEC(100)

static cm_addr_t addr_of(uint32_t i) { return cm_addr_from_index(i, 7946); }

static cm_node_t *mk_node_cfg(const char *id, uint32_t idx,
                              const cm_config_t *c) {
  cm_node_t *n = NULL;
  cm_addr_t a = addr_of(idx);
  CM_CHECK_OK(cm_node_new(&n, c, id, &a, NULL, 0, 7, T0));
  return n;
}

static cm_node_t *mk_node(const char *id, uint32_t idx) {
  cm_config_t c;
  cm_tconfig_pinned(&c);
  return mk_node_cfg(id, idx, &c);
}

static void feed(cm_node_t *n, const cm_msg_t *m, cm_time_t now) {
  cm_addr_t from = addr_of(99);
  cm_tnode_feed(n, &from, m, now);
}

static void alive_at(cm_node_t *n, const char *id, uint32_t inc, uint32_t idx,
                     const uint8_t *tags, size_t tlen, cm_time_t now) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, id, strlen(id));
  m.u.alive.incarnation = inc;
  m.u.alive.addr = addr_of(idx);
  m.u.alive.tags = tags;
  m.u.alive.tags_len = (uint16_t)tlen;
  feed(n, &m, now);
}

static void alive(cm_node_t *n, const char *id, uint32_t inc, uint32_t idx,
                  const uint8_t *tags, size_t tlen) {
  alive_at(n, id, inc, idx, tags, tlen, T0);
}

static void accuse_at(cm_node_t *n, uint8_t type, const char *id, uint32_t inc,
                      const char *from, cm_time_t now) {
  cm_addr_t src = addr_of(99);
  cm_tnode_accuse(n, &src, type, id, inc, from, now);
}

static void accuse(cm_node_t *n, uint8_t type, const char *id, uint32_t inc,
                   const char *from) {
  accuse_at(n, type, id, inc, from, T0);
}

/* A conviction this node saw coming: `from` suspects id, a second before
 * it declares it failed (a conviction alone, of a member held alive, or
 * held suspect for less than half the shortest suspicion, is an
 * accusation). */
static void convict_at(cm_node_t *n, const char *id, uint32_t inc,
                       const char *from, cm_time_t now) {
  accuse_at(n, CM_MSG_SUSPECT, id, inc, from, now - CM_SEC(1));
  accuse_at(n, CM_MSG_DEAD, id, inc, from, now);
}

static void convict(cm_node_t *n, const char *id, uint32_t inc,
                    const char *from) {
  convict_at(n, id, inc, from, T0);
}

static void leave(cm_node_t *n, const char *id, uint32_t inc) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_LEAVE;
  cm_wire_id_set(&m.u.leave.node, id, strlen(id));
  m.u.leave.incarnation = inc;
  feed(n, &m, T0);
}

static cm_member_info_t info_of(cm_node_t *n, const char *id) {
  cm_member_info_t i;
  memset(&i, 0, sizeof(i));
  i.state = 0xff;
  cm_node_member_find(n, id, &i, T0);
  return i;
}

static uint8_t state_of(cm_node_t *n, const char *id) {
  return info_of(n, id).state;
}

/* The last event of a given type, if any, after draining the queue. */
static int drain_events(cm_node_t *n, uint8_t type, cm_event_t *out) {
  cm_event_t ev;
  int found = 0;
  while (cm_node_poll_event(n, &ev))
    if (ev.type == type) {
      *out = ev;
      found = 1;
    }
  return found;
}

static void drain_datagrams(cm_node_t *n) {
  cm_addr_t to;
  const uint8_t *d;
  size_t len;
  while (cm_node_poll_datagram(n, &to, &d, &len))
    ;
}

/* A node "a" that knows "b" alive at incarnation 5. */
static cm_node_t *with_b(void) {
  cm_node_t *n = mk_node("a", 1);
  cm_event_t ev;
  alive(n, "b", 5, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_JOINED, &ev));
  CM_CHECK_STR(ev.id, "b");
  return n;
}

CM_TEST(rule_alive_of_unknown_node_adds_it) {
  cm_node_t *n = with_b();
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  cm_node_free(n);
}

CM_TEST(rule_alive_needs_strictly_higher_incarnation) {
  cm_node_t *n = with_b();
  static const uint8_t tags[] = {1, 'k', 0, 1, 'v'};
  alive(n, "b", 5, 2, tags, sizeof(tags)); /* same incarnation: ignored */
  CM_CHECK_EQ(info_of(n, "b").tags_len, 0);
  alive(n, "b", 4, 2, tags, sizeof(tags));
  CM_CHECK_EQ(info_of(n, "b").tags_len, 0);
  alive(n, "b", 6, 2, tags, sizeof(tags));
  CM_CHECK_EQ(info_of(n, "b").tags_len, sizeof(tags));
  CM_CHECK_EQ(info_of(n, "b").incarnation, 6);
  cm_node_free(n);
}

CM_TEST(rule_suspect_beats_alive_at_equal_incarnation) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  accuse(n, CM_MSG_SUSPECT, "b", 5, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  CM_CHECK(drain_events(n, CM_EV_SUSPECT, &ev));
  cm_node_free(n);
}

CM_TEST(rule_suspect_beats_alive_at_higher_incarnation) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_SUSPECT, "b", 9, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 9);
  cm_node_free(n);
}

CM_TEST(rule_suspect_of_older_incarnation_is_ignored) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_SUSPECT, "b", 4, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  cm_node_free(n);
}

CM_TEST(rule_alive_beats_suspect_only_when_higher) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  accuse(n, CM_MSG_SUSPECT, "b", 5, "c");
  alive(n, "b", 5, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  alive(n, "b", 6, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_RECOVERED, &ev));
  cm_node_free(n);
}

CM_TEST(rule_failed_beats_alive_and_suspect) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  alive(n, "c", 1, 3, NULL, 0);
  convict(n, "b", 5, "c"); /* alive -> suspect -> failed */
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_FAILED);
  CM_CHECK(drain_events(n, CM_EV_FAILED, &ev));
  /* (by e, not b: a conviction by a member held failed is an accusation) */
  convict(n, "c", 1, "e"); /* suspect -> failed */
  CM_CHECK_EQ(state_of(n, "c"), CM_STATE_FAILED);
  /* A suspicion cannot bring a failed node back to suspect. */
  accuse(n, CM_MSG_SUSPECT, "c", 1, "b");
  CM_CHECK_EQ(state_of(n, "c"), CM_STATE_FAILED);
  cm_node_free(n);
}

CM_TEST(rule_failed_of_older_incarnation_is_ignored) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_DEAD, "b", 4, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  cm_node_free(n);
}

CM_TEST(rule_alive_with_higher_incarnation_revives_failed) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  convict(n, "b", 5, "c");
  alive(n, "b", 5, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_FAILED);
  alive(n, "b", 6, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_RECOVERED, &ev));
  cm_node_free(n);
}

CM_TEST(rule_left_is_final_for_its_incarnation) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  leave(n, "b", 5);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_LEFT);
  CM_CHECK(drain_events(n, CM_EV_LEFT, &ev));
  accuse(n, CM_MSG_SUSPECT, "b", 5, "c");
  accuse(n, CM_MSG_DEAD, "b", 5, "c");
  alive(n, "b", 5, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_LEFT);
  /* A restarted node comes back with a higher incarnation: joined again. */
  alive(n, "b", 6, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_JOINED, &ev));
  cm_node_free(n);
}

CM_TEST(rule_leave_overrides_failed) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_DEAD, "b", 5, "c");
  leave(n, "b", 5);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_LEFT);
  cm_node_free(n);
}

/* Run the node's timers from `from` for `secs`, dropping what it sends; the
 * last event of type `want` is kept in *out, and counted. */
static int run_timers(cm_node_t *n, cm_time_t from, int secs, uint8_t want,
                      cm_event_t *out) {
  cm_time_t t;
  int seen = 0;
  for (t = from; t <= from + CM_SEC(secs); t += CM_MSEC(100)) {
    cm_addr_t to;
    uint64_t req;
    uint8_t *data;
    size_t len;
    cm_event_t ev;
    cm_node_tick(n, t);
    drain_datagrams(n);
    while (cm_node_poll_stream(n, &to, &req, &data, &len, NULL)) {
      free(data);
      cm_node_pushpull_failed(n, req, t);
    }
    while (cm_node_poll_event(n, &ev))
      if (ev.type == want) {
        *out = ev;
        seen++;
      }
  }
  return seen;
}

/* A member that left is forgotten after reap_left_after, with the updates
 * about it. With 70 members the broadcast queue has grown past its first
 * allocation, so forgetting them scans slots the growth added and nothing
 * has used yet (valgrind runs this test: those slots must be initialised).
 * The timers run from just before the tombstone ends (a day of them would
 * take long and only fail the silent members). */
CM_TEST(rule_left_member_is_reaped_after_queue_growth) {
  cm_node_t *n = mk_node("a", 1);
  const cm_config_t *c = cm_node_config(n);
  cm_node_stats_t st;
  cm_event_t ev;
  char id[16];
  int i;
  for (i = 0; i < 70; i++) {
    snprintf(id, sizeof(id), "m%d", i);
    alive(n, id, 1, 10 + (uint32_t)i, NULL, 0);
  }
  leave(n, "m7", 1);
  CM_CHECK_EQ(state_of(n, "m7"), CM_STATE_LEFT);
  CM_CHECK_EQ(
      run_timers(n, T0 + c->reap_left_after - CM_SEC(1), 3, CM_EV_REAPED, &ev),
      1);
  CM_CHECK_STR(ev.id, "m7");
  CM_CHECK_EQ(state_of(n, "m7"), 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 70);
  CM_CHECK_EQ(st.left, 0);
  cm_node_free(n);
}

static uint32_t self_inc(cm_node_t *n) { return info_of(n, "a").incarnation; }

/* The id a message is about. */
static const char *msg_subject(const cm_msg_t *m) {
  switch (m->type) {
  case CM_MSG_ALIVE:
    return m->u.alive.node.s;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    return m->u.suspect.node.s;
  case CM_MSG_LEAVE:
    return m->u.leave.node.s;
  default:
    return "";
  }
}

static uint32_t msg_incarnation(const cm_msg_t *m) {
  switch (m->type) {
  case CM_MSG_ALIVE:
    return m->u.alive.incarnation;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    return m->u.suspect.incarnation;
  case CM_MSG_LEAVE:
    return m->u.leave.incarnation;
  default:
    return 0;
  }
}

/* Whether the node's next gossip carries the message of type about id at
 * incarnation inc. */
static int gossips(cm_node_t *n, uint8_t type, const char *id, uint32_t inc) {
  cm_addr_t to;
  const uint8_t *d;
  size_t len, count, i;
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  int found = 0;
  cm_node_tick(n, T0 + CM_SEC(1));
  while (cm_node_poll_datagram(n, &to, &d, &len)) {
    CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &count));
    for (i = 0; i < count; i++)
      if (msgs[i].type == type && strcmp(msg_subject(&msgs[i]), id) == 0 &&
          msg_incarnation(&msgs[i]) == inc)
        found = 1;
  }
  return found;
}

/* After a refutation, the node's next gossip carries alive(self, inc). */
static int gossips_alive_self(cm_node_t *n, uint32_t inc) {
  return gossips(n, CM_MSG_ALIVE, "a", inc);
}

CM_TEST(rule_suspected_node_refutes_with_higher_incarnation) {
  cm_node_t *n = with_b();
  cm_node_stats_t st;
  accuse(n, CM_MSG_SUSPECT, "a", 3, "b");
  CM_CHECK_EQ(self_inc(n), 4);
  CM_CHECK_EQ(state_of(n, "a"), CM_STATE_ALIVE);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.refutations, 1);
  CM_CHECK_EQ(st.health, 1); /* being accused raises the awareness score */
  CM_CHECK(gossips_alive_self(n, 4));
  cm_node_free(n);
}

CM_TEST(rule_node_declared_failed_refutes) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_DEAD, "a", 0, "b");
  CM_CHECK_EQ(self_inc(n), 1);
  CM_CHECK_EQ(state_of(n, "a"), CM_STATE_ALIVE);
  cm_node_free(n);
}

CM_TEST(rule_false_leave_in_our_name_is_refuted) {
  cm_node_t *n = with_b();
  leave(n, "a", 0);
  CM_CHECK_EQ(self_inc(n), 1);
  CM_CHECK_EQ(state_of(n, "a"), CM_STATE_ALIVE);
  cm_node_free(n);
}

CM_TEST(rule_old_accusation_of_self_needs_no_refutation) {
  cm_node_t *n = with_b();
  accuse(n, CM_MSG_SUSPECT, "a", 0, "b");
  CM_CHECK_EQ(self_inc(n), 1);
  accuse(n, CM_MSG_SUSPECT, "a", 0, "b"); /* stale: already refuted */
  CM_CHECK_EQ(self_inc(n), 1);
  cm_node_free(n);
}

/* A restarted node (fresh state, incarnation 0) learns from a peer's table
 * that its previous life was declared failed at 7, and rejoins above it. */
CM_TEST(rule_restarted_node_rejoins_with_higher_incarnation) {
  cm_node_t *peer = mk_node("p", 3), *fresh = mk_node("a", 1);
  uint8_t *req, *reply;
  size_t rlen, plen;
  uint64_t id;
  cm_addr_t to, seed = addr_of(3);
  int join;
  alive(peer, "a", 7, 1, NULL, 0);
  convict(peer, "a", 7, "p");
  CM_CHECK_EQ(state_of(peer, "a"), CM_STATE_FAILED);
  CM_CHECK_OK(cm_node_join(fresh, &seed, 1, T0));
  CM_CHECK(cm_node_poll_stream(fresh, &to, &id, &req, &rlen, &join));
  CM_CHECK(join);
  CM_CHECK(cm_addr_eq(&to, &seed));
  /* The peer ignores alive(a, 0): older than what it knows. */
  CM_CHECK_OK(cm_node_handle_pushpull(peer, &to, req, rlen, T0, &reply, &plen));
  CM_CHECK_EQ(state_of(peer, "a"), CM_STATE_FAILED);
  CM_CHECK_OK(cm_node_pushpull_reply(fresh, id, reply, plen, T0));
  CM_CHECK_EQ(self_inc(fresh), 8);
  CM_CHECK_EQ(state_of(fresh, "p"), CM_STATE_ALIVE);
  /* The refutation reaches the peer: alive again at 8. */
  alive(peer, "a", 8, 1, NULL, 0);
  CM_CHECK_EQ(state_of(peer, "a"), CM_STATE_ALIVE);
  free(req);
  free(reply);
  cm_node_free(peer);
  cm_node_free(fresh);
}

CM_TEST(rule_two_live_nodes_with_one_id_is_a_conflict) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  cm_node_stats_t st;
  alive(n, "b", 9, 42, NULL, 0); /* "b" from another address */
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  {
    cm_addr_t want = addr_of(2);
    cm_member_info_t b = info_of(n, "b");
    CM_CHECK(cm_addr_eq(&b.addr, &want));
  }
  CM_CHECK(drain_events(n, CM_EV_CONFLICT, &ev));
  {
    cm_addr_t other = addr_of(42);
    CM_CHECK(cm_addr_eq(&ev.other_addr, &other));
  }
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.conflicts, 1);
  cm_node_free(n);
}

CM_TEST(rule_claim_of_our_id_elsewhere_is_reported_not_refuted) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  alive(n, "a", 3, 42, NULL, 0);
  CM_CHECK_EQ(self_inc(n), 0); /* no duel of incarnations */
  CM_CHECK(drain_events(n, CM_EV_CONFLICT, &ev));
  CM_CHECK_STR(ev.id, "a");
  cm_node_free(n);
}

CM_TEST(rule_failed_member_may_return_at_new_address) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  cm_addr_t want = addr_of(43);
  convict(n, "b", 5, "a");
  alive(n, "b", 6, 43, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  {
    cm_member_info_t b = info_of(n, "b");
    CM_CHECK(cm_addr_eq(&b.addr, &want));
  }
  CM_CHECK(drain_events(n, CM_EV_ADDR_CHANGED, &ev));
  cm_node_free(n);
}

CM_TEST(rule_news_of_unknown_nodes_is_dropped_and_counted) {
  cm_node_t *n = with_b();
  cm_node_stats_t st;
  accuse(n, CM_MSG_SUSPECT, "zz", 1, "b");
  accuse(n, CM_MSG_DEAD, "zz", 1, "b");
  leave(n, "zz", 1);
  CM_CHECK_EQ(state_of(n, "zz"), 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_unknown, 3);
  CM_CHECK_EQ(st.members, 2);
  cm_node_free(n);
}

CM_TEST(rule_malformed_packet_changes_nothing) {
  cm_node_t *n = with_b();
  cm_node_stats_t before, after;
  static const uint8_t junk[] = {1, 1, CM_MSG_ALIVE, 0, 200, 1, 'x'};
  cm_addr_t from = addr_of(99);
  cm_node_stats(n, &before);
  CM_CHECK(cm_node_recv(n, &from, junk, sizeof(junk), T0) < 0);
  CM_CHECK(cm_node_recv(n, &from, junk, 0, T0) < 0);
  cm_node_stats(n, &after);
  CM_CHECK_EQ(after.drop_malformed, before.drop_malformed + 2);
  CM_CHECK_EQ(after.members, before.members);
  CM_CHECK_EQ(after.alive, before.alive);
  CM_CHECK_EQ(after.incarnation, before.incarnation);
  cm_node_free(n);
}

CM_TEST(tags_change_bumps_incarnation_and_limits_are_errors) {
  cm_node_t *n = mk_node("a", 1);
  char big[300];
  cm_event_t ev;
  CM_CHECK_OK(cm_node_set_tag(n, "role", "worker", T0));
  CM_CHECK_EQ(self_inc(n), 1);
  CM_CHECK(drain_events(n, CM_EV_TAGS_UPDATED, &ev));
  memset(big, 'v', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CM_CHECK_EQ(cm_node_set_tag(n, "zone", big, T0), CM_ETAGVAL);
  CM_CHECK_EQ(cm_node_set_tag(n, "", "x", T0), CM_ETAGKEY);
  CM_CHECK_EQ(cm_node_set_tag(n, "a=b", "x", T0), CM_ETAGKEY);
  big[100] = '\0';
  CM_CHECK_EQ(cm_node_set_tag(n, big, "x", T0), CM_ETAGKEY);
  CM_CHECK_EQ(cm_node_remove_tag(n, "zone", T0), CM_ENOENT);
  CM_CHECK_EQ(self_inc(n), 1); /* errors changed nothing */
  CM_CHECK_OK(cm_node_remove_tag(n, "role", T0));
  CM_CHECK_EQ(self_inc(n), 2);
  CM_CHECK_EQ(info_of(n, "a").tags_len, 0);
  cm_node_free(n);
}

CM_TEST(tags_total_size_limit_is_an_error_not_a_truncation) {
  cm_node_t *n = mk_node("a", 1);
  char key[8], val[250];
  int i, rc = 0;
  memset(val, 'v', sizeof(val) - 1);
  val[sizeof(val) - 1] = '\0';
  for (i = 0; i < 10 && rc == 0; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    rc = cm_node_set_tag(n, key, val, T0);
  }
  CM_CHECK_EQ(rc, CM_ETAGSET);
  CM_CHECK_EQ(i, 5); /* four 255-byte pairs fit in 1024, the fifth does not */
  CM_CHECK_EQ(self_inc(n), 4);
  cm_node_free(n);
}

CM_TEST(node_new_rejects_bad_arguments) {
  cm_config_t c;
  cm_node_t *n = NULL;
  cm_addr_t a = addr_of(1), bad = {0};
  cm_tconfig_pinned(&c);
  CM_CHECK_EQ(cm_node_new(&n, &c, "", &a, NULL, 0, 1, T0), CM_ENODEID);
  CM_CHECK_EQ(cm_node_new(&n, &c, "has space", &a, NULL, 0, 1, T0), CM_ENODEID);
  CM_CHECK_EQ(cm_node_new(&n, &c, "x", &bad, NULL, 0, 1, T0), CM_EADDR);
  c.gossip_nodes = 0;
  CM_CHECK_EQ(cm_node_new(&n, &c, "x", &a, NULL, 0, 1, T0), CM_ECONFIG);
  CM_CHECK(n == NULL);
}

CM_TEST(leave_is_idempotent_and_blocks_changes) {
  cm_node_t *n = with_b();
  CM_CHECK_OK(cm_node_leave(n, T0));
  CM_CHECK_OK(cm_node_leave(n, T0));
  CM_CHECK_EQ(state_of(n, "a"), CM_STATE_LEFT);
  CM_CHECK_EQ(cm_node_set_tag(n, "k", "v", T0), CM_ESTATE);
  /* Accusations no longer provoke refutations once we are leaving. */
  accuse(n, CM_MSG_DEAD, "a", 0, "b");
  CM_CHECK_EQ(self_inc(n), 0);
  CM_CHECK(!cm_node_leave_done(n));
  drain_datagrams(n);
  cm_node_free(n);
}

static size_t pp_build(uint8_t *buf, size_t cap, uint8_t kind,
                       const cm_pp_entry_t *e, size_t n) {
  cm_wbuf_t w = {buf, 0, cap};
  size_t i;
  CM_CHECK_OK(cm_wire_pp_begin(&w, kind, 0));
  for (i = 0; i < n; i++)
    CM_CHECK_OK(cm_wire_pp_add(&w, &e[i]));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  return w.len;
}

static cm_pp_entry_t pp_entry(const char *id, uint32_t inc, uint32_t idx,
                              uint8_t state) {
  cm_pp_entry_t e;
  memset(&e, 0, sizeof(e));
  cm_wire_id_set(&e.node, id, strlen(id));
  e.incarnation = inc;
  e.addr = addr_of(idx);
  e.state = state;
  return e;
}

/* Hand the node a push-pull request of these entries at now; the reply is
 * dropped. */
static void pp_push_at(cm_node_t *n, const cm_pp_entry_t *e, size_t count,
                       cm_time_t now) {
  uint8_t buf[4096], *reply = NULL;
  size_t len, rlen;
  cm_addr_t from = addr_of(9);
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, e, count);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, now, &reply, &rlen));
  free(reply);
}

static void pp_push(cm_node_t *n, const cm_pp_entry_t *e, size_t count) {
  pp_push_at(n, e, count, T0);
}

/* Push-pull merges with the same rules; a remote "failed" only makes us
 * suspect, since we have not seen the failure ourselves. */
CM_TEST(pushpull_merge_applies_the_rules) {
  cm_node_t *n = with_b();
  uint8_t buf[4096], *reply = NULL;
  size_t len, rlen;
  cm_pp_entry_t e[5];
  cm_addr_t from = addr_of(9);
  cm_pp_header_t h;
  alive(n, "c", 2, 3, NULL, 0);
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE); /* the sender itself */
  e[1] = pp_entry("b", 5, 2, CM_STATE_FAILED);
  e[2] = pp_entry("c", 2, 3, CM_STATE_LEFT);
  e[3] = pp_entry("new", 0, 10, CM_STATE_ALIVE);
  e[4] = pp_entry("ghost", 3, 11, CM_STATE_FAILED); /* unknown: ignored */
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, e, 5);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, T0, &reply, &rlen));
  CM_CHECK_EQ(state_of(n, "s"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(state_of(n, "c"), CM_STATE_LEFT);
  CM_CHECK_EQ(state_of(n, "new"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "ghost"), 0xff);
  /* The reply is our whole table, us first. */
  CM_CHECK_OK(cm_wire_pp_decode(reply, rlen, &h));
  CM_CHECK_EQ(h.kind, CM_PP_RESPONSE);
  CM_CHECK_EQ(h.count, 5);
  {
    size_t off = 0;
    cm_pp_entry_t first;
    CM_CHECK(cm_wire_pp_next(reply, rlen, &off, &first));
    CM_CHECK_STR(first.node.s, "a");
  }
  free(reply);
  cm_node_free(n);
}

/* Times each id's alive record went out in gossip over `secs` of ticks. */
static void count_alive_gossip(cm_node_t *n, cm_time_t from, int secs,
                               const char **ids, int nids, int *counts) {
  cm_time_t t;
  int i;
  for (i = 0; i < nids; i++)
    counts[i] = 0;
  for (t = from; t < from + CM_SEC(secs); t += CM_MSEC(10)) {
    cm_addr_t to;
    const uint8_t *d;
    size_t len, k, nm;
    cm_msg_t msgs[CM_WIRE_MAX_MSGS];
    cm_node_tick(n, t);
    while (cm_node_poll_datagram(n, &to, &d, &len)) {
      if (cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &nm) != 0)
        continue;
      for (k = 0; k < nm; k++)
        for (i = 0; i < nids; i++)
          if (msgs[k].type == CM_MSG_ALIVE &&
              strcmp(msgs[k].u.alive.node.s, ids[i]) == 0)
            counts[i]++;
    }
  }
}

/* Everything a push-pull teaches is gossiped with the full retransmit limit:
 * new members (a joiner's table may hold members that joined a moment ago,
 * which most of the cluster has not heard of; passing such records on once
 * instead made a 1,000-node join take 30 s instead of 6 s in the simulator)
 * and changes to known ones (a failed member alive again after a partition
 * heals). */
CM_TEST(pushpull_news_is_relayed_in_full) {
  cm_node_t *n = with_b();
  uint8_t buf[4096], *reply = NULL;
  size_t len, rlen;
  cm_pp_entry_t e[3];
  cm_addr_t from = addr_of(9);
  const char *ids[] = {"s", "m1", "b"};
  int counts[3];
  convict(n, "b", 5, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_FAILED);
  drain_datagrams(n);
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("m1", 0, 10, CM_STATE_ALIVE);
  e[2] = pp_entry("b", 6, 2, CM_STATE_ALIVE);
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, e, 3);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, T0, &reply, &rlen));
  free(reply);
  CM_CHECK_EQ(state_of(n, "m1"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  drain_datagrams(n);
  count_alive_gossip(n, T0, 30, ids, 3, counts);
  /* 4 members: limit max(4 * ceil(log10(5)), ceil(ln 3 + ln 100)) = 6. */
  CM_CHECK_EQ(counts[0], 6);
  CM_CHECK_EQ(counts[1], 6);
  CM_CHECK_EQ(counts[2], 6);
  cm_node_free(n);
}

/* Adopting a table the cluster already knows merges it like a join reply
 * (members, events) but queues nothing to gossip; a bad table is refused,
 * counted, and changes nothing. */
CM_TEST(adopt_table_merges_without_queueing_gossip) {
  cm_node_t *n = mk_node("a", 1);
  uint8_t buf[4096];
  size_t len;
  cm_pp_entry_t e[3];
  cm_event_t ev;
  cm_node_stats_t st;
  int joined = 0;
  uint32_t own; /* a new node queues its own alive record */
  cm_node_stats(n, &st);
  own = (uint32_t)st.bcast_queue;
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("m1", 0, 10, CM_STATE_ALIVE);
  e[2] = pp_entry("m2", 4, 11, CM_STATE_ALIVE);
  len = pp_build(buf, sizeof(buf), CM_PP_RESPONSE, e, 3);
  CM_CHECK(cm_node_adopt_table(n, buf, len - 1, T0) < 0);
  CM_CHECK(cm_node_adopt_table(NULL, buf, len, T0) == CM_EINVAL);
  CM_CHECK_EQ(state_of(n, "s"), 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_pushpull, 1);
  CM_CHECK_OK(cm_node_adopt_table(n, buf, len, T0));
  CM_CHECK_EQ(state_of(n, "s"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "m1"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "m2").incarnation, 4);
  while (cm_node_poll_event(n, &ev))
    joined += ev.type == CM_EV_JOINED;
  CM_CHECK_EQ(joined, 3);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.bcast_queue, own);
  /* The same table as a join reply queues every member it brought. */
  {
    cm_node_t *j = mk_node("a", 1);
    CM_CHECK_OK(cm_node_pushpull_reply(j, 1, buf, len, T0));
    cm_node_stats(j, &st);
    CM_CHECK_EQ(st.bcast_queue, own + 3);
    cm_node_free(j);
  }
  cm_node_free(n);
}

CM_TEST(pushpull_bad_input_is_dropped_and_counted) {
  cm_node_t *n = with_b();
  uint8_t buf[4096], *reply = NULL;
  size_t len, rlen;
  cm_pp_entry_t e = pp_entry("x", 1, 9, CM_STATE_ALIVE);
  cm_addr_t from = addr_of(9);
  cm_node_stats_t st;
  /* A response where a request is expected. */
  len = pp_build(buf, sizeof(buf), CM_PP_RESPONSE, &e, 1);
  CM_CHECK(cm_node_handle_pushpull(n, &from, buf, len, T0, &reply, &rlen) < 0);
  /* Truncated. */
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, &e, 1);
  CM_CHECK(cm_node_handle_pushpull(n, &from, buf, len - 1, T0, &reply, &rlen) <
           0);
  /* A reply that is a request. */
  CM_CHECK(cm_node_pushpull_reply(n, 1, buf, len, T0) < 0);
  CM_CHECK(reply == NULL);
  CM_CHECK_EQ(state_of(n, "x"), 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_pushpull, 3);
  CM_CHECK_EQ(st.members, 2);
  cm_node_free(n);
}

/* The transport asks whether an address that claims a stale connection to
 * us is a member's before it connects there: members count, failed ones
 * too (a restart reaches them first), but not ourselves, strangers or
 * members that left. */
CM_TEST(member_at_address_excludes_self_strangers_and_left) {
  cm_node_t *n = with_b();
  cm_addr_t b = addr_of(2), c = addr_of(3), self = addr_of(1);
  CM_CHECK_EQ(cm_node_has_member_at(n, &b), 1);
  CM_CHECK_EQ(cm_node_has_member_at(n, &self), 0);
  CM_CHECK_EQ(cm_node_has_member_at(n, &c), 0);
  CM_CHECK_EQ(cm_node_has_member_at(n, NULL), 0);
  alive(n, "c", 1, 3, NULL, 0);
  convict(n, "c", 1, "b");
  CM_CHECK_EQ(state_of(n, "c"), CM_STATE_FAILED);
  CM_CHECK_EQ(cm_node_has_member_at(n, &c), 1);
  accuse(n, CM_MSG_LEAVE, "b", 5, "b");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_LEFT);
  CM_CHECK_EQ(cm_node_has_member_at(n, &b), 0);
  cm_node_free(n);
}

/* The look-up follows a member that comes back at another address (a
 * failed one may move), and counts every member at a shared address. */
CM_TEST(member_at_address_follows_address_changes) {
  cm_node_t *n = with_b();
  cm_addr_t b = addr_of(2), moved = addr_of(4);
  CM_CHECK_EQ(cm_node_has_member_at(n, &b), 1);
  convict(n, "b", 5, "a");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_FAILED);
  alive(n, "b", 6, 4, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(cm_node_has_member_at(n, &b), 0);
  CM_CHECK_EQ(cm_node_has_member_at(n, &moved), 1);
  /* A second member at b's old address, then b leaving: still one there. */
  alive(n, "c", 1, 2, NULL, 0);
  accuse(n, CM_MSG_LEAVE, "b", 6, "b");
  CM_CHECK_EQ(cm_node_has_member_at(n, &moved), 0);
  CM_CHECK_EQ(cm_node_has_member_at(n, &b), 1);
  cm_node_free(n);
}

/* Node a ("self") climbs to incarnation `to` by refutations, each as far
 * as one accusation can take it (half of CM_INC_STEP_MAX): the only way up
 * there, about 512 of them from 0 to the top. */
static void climb_self(cm_node_t *n, uint32_t to) {
  uint32_t inc = self_inc(n);
  while (inc < to) {
    uint64_t far = (uint64_t)inc + CM_INC_STEP_MAX / 2;
    uint32_t next = far < (uint64_t)to - 1 ? (uint32_t)far : to - 1;
    accuse(n, CM_MSG_SUSPECT, "a", next, "b");
    CM_CHECK_EQ(self_inc(n), next + 1);
    inc = next + 1;
  }
}

/* Member b climbs to incarnation `to` by its own alive records, each as far
 * as one may go (CM_INC_STEP_MAX). */
static void climb_b(cm_node_t *n, uint32_t to) {
  uint32_t inc = info_of(n, "b").incarnation;
  while (inc < to) {
    inc = to - inc > CM_INC_STEP_MAX ? inc + CM_INC_STEP_MAX : to;
    alive(n, "b", inc, 2, NULL, 0);
    CM_CHECK_EQ(info_of(n, "b").incarnation, inc);
  }
}

/* Incarnations saturate instead of wrapping: a refutation of an accusation
 * at UINT32_MAX - 1 takes the last incarnation, and from there accusations
 * about us (at UINT32_MAX) cannot be answered. They are dropped and counted;
 * wrapping to 0 would make the refutation older than the accusation, and
 * every peer would ignore it. */
CM_TEST(rule_refutation_saturates_at_the_last_incarnation) {
  cm_node_t *n = with_b();
  static const uint8_t tags[] = {1, 'k', 0, 1, 'v'};
  cm_node_stats_t st;
  uint64_t refuted;
  climb_self(n, UINT32_MAX);
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  cm_node_stats(n, &st);
  refuted = st.refutations;
  CM_CHECK_EQ(st.drop_incarnation, 0);
  accuse(n, CM_MSG_SUSPECT, "a", UINT32_MAX, "b");
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  accuse(n, CM_MSG_DEAD, "a", UINT32_MAX, "b");
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  leave(n, "a", UINT32_MAX);
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  alive(n, "a", UINT32_MAX, 1, tags, sizeof(tags)); /* other tags */
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  CM_CHECK_EQ(info_of(n, "a").tags_len, 0);
  CM_CHECK_EQ(state_of(n, "a"), CM_STATE_ALIVE);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.refutations, refuted);
  CM_CHECK_EQ(st.drop_incarnation, 4);
  CM_CHECK(gossips_alive_self(n, UINT32_MAX));
  cm_node_free(n);
}

/* An accusation that would raise a member to UINT32_MAX is implausible: an
 * honest peer accuses at the incarnation it holds, and a member gets there
 * only by its own alive. The member could not refute it, so every node
 * drops it (counted), about others and about itself, by datagram or
 * push-pull. A member already at UINT32_MAX can still be suspected: the
 * accusation is about its current life, and failure detection must go on. */
CM_TEST(rule_accusation_raising_to_the_last_incarnation_is_dropped) {
  cm_node_t *n = with_b();
  cm_pp_entry_t e[3];
  cm_node_stats_t st;
  accuse(n, CM_MSG_SUSPECT, "b", UINT32_MAX, "c");
  accuse(n, CM_MSG_DEAD, "b", UINT32_MAX, "c");
  leave(n, "b", UINT32_MAX);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  accuse(n, CM_MSG_DEAD, "a", UINT32_MAX, "b");
  CM_CHECK_EQ(self_inc(n), 0);
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("b", UINT32_MAX, 2, CM_STATE_FAILED);
  e[2] = pp_entry("a", UINT32_MAX, 1, CM_STATE_LEFT);
  pp_push(n, e, 3);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  CM_CHECK_EQ(self_inc(n), 0);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.refutations, 0);
  CM_CHECK_EQ(st.health, 0);
  CM_CHECK_EQ(st.drop_incarnation, 6);
  climb_b(n, UINT32_MAX);
  CM_CHECK_EQ(info_of(n, "b").incarnation, UINT32_MAX);
  accuse(n, CM_MSG_SUSPECT, "b", UINT32_MAX, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  cm_node_free(n);
}

/* A tag change needs a new incarnation; at the last one it is refused and
 * changes nothing, instead of wrapping to 0 where every peer ignores it. */
CM_TEST(tags_change_at_the_last_incarnation_is_refused) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  CM_CHECK_OK(cm_node_set_tag(n, "role", "worker", T0));
  climb_self(n, UINT32_MAX);
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  drain_events(n, CM_EV_TAGS_UPDATED, &ev);
  CM_CHECK_EQ(cm_node_set_tag(n, "zone", "eu", T0), CM_ELIMIT);
  CM_CHECK_EQ(cm_node_remove_tag(n, "role", T0), CM_ELIMIT);
  CM_CHECK_EQ(cm_node_set_tags(n, NULL, 0, T0), CM_ELIMIT);
  CM_CHECK_EQ(self_inc(n), UINT32_MAX);
  CM_CHECK_EQ(info_of(n, "a").tags_len, 1 + 4 + 2 + 6);
  CM_CHECK(!drain_events(n, CM_EV_TAGS_UPDATED, &ev));
  cm_node_free(n);
}

/* One record cannot carry a member far up: news about another member more
 * than CM_INC_STEP_MAX above the incarnation held (alive or accusation, by
 * datagram or push-pull) is dropped and counted, so that no single forged
 * or corrupt message (the review's alive or suspect at 2^32 - 2) can bring
 * it near the last incarnation, where it could no longer refute. Up to the
 * step, news applies as usual. */
CM_TEST(rule_news_far_above_the_held_incarnation_is_dropped) {
  cm_node_t *n = with_b();
  const uint32_t far = 5 + CM_INC_STEP_MAX + 1;
  cm_pp_entry_t e[2];
  cm_node_stats_t st;
  alive(n, "b", far, 2, NULL, 0);
  alive(n, "b", UINT32_MAX - 1, 3, NULL, 0); /* elsewhere, too */
  accuse(n, CM_MSG_SUSPECT, "b", far, "c");
  accuse(n, CM_MSG_SUSPECT, "b", UINT32_MAX - 1, "c");
  accuse(n, CM_MSG_DEAD, "b", far, "c");
  leave(n, "b", far);
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("b", far, 2, CM_STATE_FAILED);
  pp_push(n, e, 2);
  e[1] = pp_entry("b", far, 2, CM_STATE_ALIVE);
  pp_push(n, e, 2);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_incarnation, 8);
  CM_CHECK_EQ(st.suspicions, 0);
  /* At the step exactly, it is news. */
  accuse(n, CM_MSG_SUSPECT, "b", far - 1, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(info_of(n, "b").incarnation, far - 1);
  cm_node_free(n);
}

/* About itself a node takes any incarnation (a restarted process begins at
 * 0 below its old records), but one refutation climbs at most half a step:
 * an accusation at 2^32 - 2 no longer carries it to the last incarnation,
 * and a peer that still holds the incarnation it had accepts the
 * refutation. An old record far above is passed in a few refutations, each
 * drawn by hearing the record again. */
CM_TEST(rule_a_refutation_climbs_at_most_half_a_step) {
  const uint32_t half = CM_INC_STEP_MAX / 2, old = 3 * CM_INC_STEP_MAX;
  cm_node_t *n = with_b(), *peer = mk_node("p", 3);
  int rounds = 0;
  alive(peer, "a", 0, 1, NULL, 0);
  accuse(n, CM_MSG_SUSPECT, "a", UINT32_MAX - 1, "b");
  CM_CHECK_EQ(self_inc(n), half + 1);
  CM_CHECK(gossips_alive_self(n, half + 1));
  alive(peer, "a", half + 1, 1, NULL, 0);
  CM_CHECK_EQ(info_of(peer, "a").incarnation, half + 1);
  cm_node_free(n);
  /* A restart below a record far above: climbs out of it. */
  n = with_b();
  while (self_inc(n) <= old && rounds < 100) {
    accuse(n, CM_MSG_DEAD, "a", old, "b");
    rounds++;
  }
  CM_CHECK_EQ(rounds, 6);
  CM_CHECK_EQ(self_inc(n), old + 1);
  cm_node_free(n);
  cm_node_free(peer);
}

/* A confirmation at a higher incarnation than the suspicion held (its
 * subject refuted, then was accused again at the new incarnation) counts
 * as a confirmation but does not raise the incarnation held: the
 * refutation, arriving second, must still win (alive needs a strictly
 * higher incarnation). Raising it kept the member suspect until its timer
 * failed it. As memberlist does; the news goes on at its own incarnation. */
CM_TEST(
    rule_a_confirmation_at_a_higher_incarnation_leaves_the_refutation_to_win) {
  cm_node_t *n = with_b();
  alive(n, "c", 1, 3, NULL, 0);
  alive(n, "d", 1, 4, NULL, 0);
  accuse(n, CM_MSG_SUSPECT, "b", 5, "c");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  accuse(n, CM_MSG_SUSPECT, "b", 6, "d");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  CM_CHECK(gossips(n, CM_MSG_SUSPECT, "b", 6));
  alive(n, "b", 6, 2, NULL, 0);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 6);
  cm_node_free(n);
}

/* A failed member accused again at a higher incarnation: the dead record
 * with the higher incarnation supersedes. Its incarnation rises (it stays
 * failed) and the news is passed on, so an alive record older than the
 * accusation, still in flight, cannot revive it. */
CM_TEST(rule_dead_raises_the_incarnation_of_a_failed_member) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  alive(n, "x", 3, 3, NULL, 0);
  convict(n, "x", 3, "b");
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  drain_events(n, CM_EV_FAILED, &ev);
  accuse(n, CM_MSG_DEAD, "x", 5, "b");
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  CM_CHECK_EQ(info_of(n, "x").incarnation, 5);
  CM_CHECK(!drain_events(n, CM_EV_FAILED, &ev)); /* no new state */
  alive(n, "x", 4, 3, NULL, 0);                  /* stale */
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  alive(n, "x", 5, 3, NULL, 0); /* dead beats alive at equal incarnation */
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  CM_CHECK(gossips(n, CM_MSG_DEAD, "x", 5));
  alive(n, "x", 6, 3, NULL, 0); /* x refuted it */
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_RECOVERED, &ev));
  cm_node_free(n);
}

/* Likewise a left member: a later leave, or a later life declared failed,
 * raises its incarnation; it stays left, and older alive records are
 * ignored. */
CM_TEST(rule_leave_or_dead_raises_the_incarnation_of_a_left_member) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  alive(n, "x", 3, 3, NULL, 0);
  leave(n, "x", 3);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_LEFT);
  drain_events(n, CM_EV_LEFT, &ev);
  leave(n, "x", 5);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_LEFT);
  CM_CHECK_EQ(info_of(n, "x").incarnation, 5);
  alive(n, "x", 4, 3, NULL, 0);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_LEFT);
  CM_CHECK(gossips(n, CM_MSG_LEAVE, "x", 5));
  accuse(n, CM_MSG_DEAD, "x", 7, "b");
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_LEFT);
  CM_CHECK_EQ(info_of(n, "x").incarnation, 7);
  alive(n, "x", 6, 3, NULL, 0);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_LEFT);
  CM_CHECK(!drain_events(n, CM_EV_LEFT, &ev));
  CM_CHECK(!drain_events(n, CM_EV_FAILED, &ev));
  alive(n, "x", 8, 3, NULL, 0); /* a restart */
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, CM_EV_JOINED, &ev));
  cm_node_free(n);
}

/* The same through push-pull, where a remote failed entry otherwise only
 * counts as a suspicion: about a member we hold failed or left, it is a dead
 * record like any other. */
CM_TEST(pushpull_dead_and_left_records_raise_the_incarnation) {
  cm_node_t *n = with_b();
  cm_pp_entry_t e[5];
  alive(n, "x", 3, 3, NULL, 0);
  alive(n, "y", 3, 4, NULL, 0);
  alive(n, "z", 3, 5, NULL, 0);
  alive(n, "w", 3, 6, NULL, 0);
  convict(n, "x", 3, "b");
  leave(n, "y", 3);
  convict(n, "z", 3, "b");
  leave(n, "w", 3);
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("x", 5, 3, CM_STATE_FAILED);
  e[2] = pp_entry("y", 5, 4, CM_STATE_LEFT);
  e[3] = pp_entry("z", 5, 5, CM_STATE_LEFT);
  e[4] = pp_entry("w", 5, 6, CM_STATE_FAILED);
  pp_push(n, e, 5);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  CM_CHECK_EQ(state_of(n, "y"), CM_STATE_LEFT);
  CM_CHECK_EQ(state_of(n, "z"), CM_STATE_LEFT); /* leave overrides failed */
  CM_CHECK_EQ(state_of(n, "w"), CM_STATE_LEFT);
  CM_CHECK_EQ(info_of(n, "x").incarnation, 5);
  CM_CHECK_EQ(info_of(n, "y").incarnation, 5);
  CM_CHECK_EQ(info_of(n, "z").incarnation, 5);
  CM_CHECK_EQ(info_of(n, "w").incarnation, 5);
  alive(n, "x", 4, 3, NULL, 0);
  alive(n, "y", 4, 4, NULL, 0);
  alive(n, "w", 4, 6, NULL, 0);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  CM_CHECK_EQ(state_of(n, "y"), CM_STATE_LEFT);
  CM_CHECK_EQ(state_of(n, "w"), CM_STATE_LEFT);
  cm_node_free(n);
}

/* A stale alive record about b at the incarnation it had when it went away,
 * at now: by gossip, and in the table of a peer that was away (push-pull).
 * Returns whether either brought b back. */
static int stale_alive_revives(cm_node_t *n, cm_time_t now) {
  cm_pp_entry_t e[2];
  cm_event_t ev;
  int revived;
  cm_node_tick(n, now); /* reaping runs on the node's timers */
  drain_events(n, CM_EV_REAPED, &ev);
  alive_at(n, "b", 5, 2, NULL, 0, now);
  e[0] = pp_entry("away", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("b", 5, 2, CM_STATE_ALIVE);
  pp_push_at(n, e, 2, now);
  revived = state_of(n, "b") == CM_STATE_ALIVE;
  drain_events(n, CM_EV_JOINED, &ev);
  return revived;
}

/* b, gone and held in `state`, stays so through stale alive records 16 min
 * and 20 h later; then its real return at a higher incarnation is taken,
 * with event `back`. */
static void tombstone_holds_until_rejoin(cm_node_t *n, uint8_t state,
                                         uint8_t back) {
  static const int minutes[] = {16, 20 * 60};
  cm_event_t ev;
  size_t i;
  for (i = 0; i < sizeof(minutes) / sizeof(minutes[0]); i++) {
    CM_CHECK(!stale_alive_revives(n, T0 + CM_SEC(minutes[i] * 60)));
    CM_CHECK_EQ(state_of(n, "b"), state);
  }
  alive_at(n, "b", 6, 2, NULL, 0, T0 + CM_SEC(20 * 3600)); /* its rejoin */
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK(drain_events(n, back, &ev));
}

/* Left and failed members are tombstones for a day by default (Serf's
 * TombstoneTimeout and ReconnectTimeout): a peer away for longer than the
 * 15 minutes left members used to be kept still holds b alive at the
 * incarnation b left with, and pushes it by gossip or push-pull; that must
 * not bring b back. b's real return, at a higher incarnation, is a join. */
CM_TEST(rule_left_member_is_a_tombstone_for_a_day) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  leave(n, "b", 5);
  CM_CHECK(drain_events(n, CM_EV_LEFT, &ev));
  tombstone_holds_until_rejoin(n, CM_STATE_LEFT, CM_EV_JOINED);
  cm_node_free(n);
}

CM_TEST(rule_failed_member_is_a_tombstone_for_a_day) {
  cm_node_t *n = with_b();
  cm_event_t ev;
  convict(n, "b", 5, "c");
  CM_CHECK(drain_events(n, CM_EV_FAILED, &ev));
  tombstone_holds_until_rejoin(n, CM_STATE_FAILED, CM_EV_RECOVERED);
  cm_node_free(n);
}

/* The limit: once the tombstone is reaped, nothing of b is left to compare
 * with, and a stale alive record is indistinguishable from a first join
 * (docs/protocol.md, "Tombstones"). */
CM_TEST(rule_stale_alive_after_the_tombstone_is_a_join) {
  cm_node_t *n = with_b();
  const cm_config_t *c = cm_node_config(n);
  leave(n, "b", 5);
  CM_CHECK(!stale_alive_revives(n, T0 + c->reap_left_after - CM_SEC(2)));
  CM_CHECK(stale_alive_revives(n, T0 + c->reap_left_after + CM_SEC(2)));
  cm_node_free(n);
}

/* One push-pull naming x twice, at incarnation 5 from .20 and 6 from .21: the
 * table must not depend on which entry comes first. The higher incarnation
 * wins, as it would for two separate records applied oldest first. */
CM_TEST(pushpull_duplicate_ids_merge_the_same_in_any_order) {
  cm_node_t *n1 = mk_node("a", 1), *n2 = mk_node("a", 1);
  cm_pp_entry_t e[3];
  cm_member_info_t i1, i2;
  e[0] = pp_entry("s", 1, 9, CM_STATE_ALIVE);
  e[1] = pp_entry("x", 5, 20, CM_STATE_ALIVE);
  e[2] = pp_entry("x", 6, 21, CM_STATE_ALIVE);
  pp_push(n1, e, 3);
  e[1] = pp_entry("x", 6, 21, CM_STATE_ALIVE);
  e[2] = pp_entry("x", 5, 20, CM_STATE_ALIVE);
  pp_push(n2, e, 3);
  i1 = info_of(n1, "x");
  i2 = info_of(n2, "x");
  CM_CHECK_EQ(i1.incarnation, i2.incarnation);
  CM_CHECK(cm_addr_eq(&i1.addr, &i2.addr));
  CM_CHECK_EQ(i1.incarnation, 6);
  CM_CHECK(cm_addr_eq(&i1.addr, &e[1].addr));
  cm_node_free(n1);
  cm_node_free(n2);
}

/* ---- Push-pull merges the same in every order ---- */

static uint64_t prop_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Subjects of the random records: ourselves, members held in every state,
 * members not held. */
static const char *const prop_ids[] = {"a", "m0", "m1", "m2", "m3", "u0", "u1"};
#define PROP_IDS (sizeof(prop_ids) / sizeof(prop_ids[0]))

/* Node "a" holding m0 alive, m1 suspect, m2 failed, m3 left, all at 5. */
static cm_node_t *prop_node(void) {
  cm_node_t *n = mk_node("a", 1);
  int i;
  for (i = 0; i < 4; i++)
    alive(n, prop_ids[1 + i], 5, 10 + (uint32_t)i, NULL, 0);
  accuse(n, CM_MSG_SUSPECT, "m1", 5, "c");
  accuse(n, CM_MSG_DEAD, "m2", 5, "c");
  leave(n, "m3", 5);
  return n;
}

static cm_pp_entry_t prop_record(uint64_t *rng) {
  static const uint8_t tags[] = {1, 'k', 0, 1, 'v'};
  uint64_t r = prop_next(rng);
  const char *id = prop_ids[r % PROP_IDS];
  /* Incarnations around the held 5; addresses the held one or another. */
  cm_pp_entry_t e =
      pp_entry(id, 3 + (uint32_t)(r >> 8) % 5,
               (uint32_t)(r >> 16) % 2 == 0
                   ? (id[0] == 'a' ? 1 : 10 + (uint32_t)(id[1] - '0'))
                   : 20 + (uint32_t)(r >> 24) % 2,
               (uint8_t)((r >> 32) % 4));
  if ((r >> 40) % 2) {
    e.tags = tags;
    e.tags_len = sizeof(tags);
  }
  return e;
}

/* The table a node holds, for comparison: every member with its state,
 * incarnation, address and tags. */
static void prop_check_same(cm_node_t *x, cm_node_t *y, uint64_t set) {
  uint32_t s;
  cm_node_stats_t sx, sy;
  cm_node_stats(x, &sx);
  cm_node_stats(y, &sy);
  if (sx.members != sy.members)
    cm_test_fail(__FILE__, __LINE__, "set %llu: %u members against %u",
                 (unsigned long long)set, sx.members, sy.members);
  for (s = 0; s < cm_node_member_slots(x); s++) {
    cm_member_info_t a, b;
    if (!cm_node_member_get(x, s, &a, T0))
      continue;
    if (!cm_node_member_find(y, a.id, &b, T0) || a.state != b.state ||
        a.incarnation != b.incarnation || !cm_addr_eq(&a.addr, &b.addr) ||
        a.tags_len != b.tags_len ||
        (a.tags_len > 0 && memcmp(a.tags, b.tags, a.tags_len) != 0))
      cm_test_fail(__FILE__, __LINE__,
                   "set %llu: %s is %s at %u in one order, not the other",
                   (unsigned long long)set, a.id, cm_state_name(a.state),
                   a.incarnation);
  }
}

/* Apply e[0..k) through the real push-pull path to a fresh node. */
static cm_node_t *prop_apply(const cm_pp_entry_t *e, size_t k) {
  cm_node_t *n = prop_node();
  pp_push(n, e, k);
  return n;
}

/* Swap e[i] and e[j], then check that e[0..k) leaves first's table. */
static void prop_swap_and_check(cm_pp_entry_t *e, size_t i, size_t j, size_t k,
                                cm_node_t *first, uint64_t set) {
  cm_pp_entry_t t = e[j];
  cm_node_t *other;
  e[j] = e[i];
  e[i] = t;
  other = prop_apply(e, k);
  prop_check_same(first, other, set);
  prop_check_same(other, first, set);
  cm_node_free(other);
}

/* Random sets of records, many naming one id several times with different
 * incarnations, states, addresses and tags: every permutation of a set of up
 * to 5 (and a seeded walk of 200 random swaps for sets of 8) leaves the
 * same table. */
CM_TEST(pushpull_merge_is_the_same_in_every_order) {
  uint64_t rng = 14, set;
  for (set = 0; set < 300; set++) {
    size_t k = set < 200 ? 2 + set % 4 : 8, i, j, c[8] = {0};
    cm_pp_entry_t e[8];
    cm_node_t *first;
    for (i = 0; i < k; i++)
      e[i] = prop_record(&rng);
    first = prop_apply(e, k);
    if (k <= 5) {
      /* Heap's algorithm: every permutation, each one swap from the last. */
      i = 1;
      while (i < k) {
        if (c[i] < i) {
          prop_swap_and_check(e, i, i % 2 == 0 ? 0 : c[i], k, first, set);
          c[i]++;
          i = 1;
        } else {
          c[i++] = 0;
        }
      }
    } else {
      int round;
      /* Seeded shuffles, one random swap at a time. */
      for (round = 0; round < 200; round++) {
        i = 1 + (size_t)(prop_next(&rng) % (k - 1));
        j = (size_t)(prop_next(&rng) % i);
        prop_swap_and_check(e, i, j, k, first, set);
      }
    }
    cm_node_free(first);
  }
}

/* A newer peer's message of an unknown type is skipped, and the rest of
 * its packet still applies. */
CM_TEST(rule_unknown_message_type_is_skipped_not_fatal) {
  cm_node_t *n = mk_node("a", 1);
  cm_addr_t from = addr_of(99);
  cm_node_stats_t st;
  uint8_t pkt[64];
  size_t len = 0;
  pkt[len++] = 2; /* a newer version */
  pkt[len++] = 2;
  pkt[len++] = 0x40;
  pkt[len++] = 0;
  pkt[len++] = 3;
  pkt[len++] = 'x';
  pkt[len++] = 'y';
  pkt[len++] = 'z';
  pkt[len++] = CM_MSG_ALIVE;
  pkt[len++] = 0;
  pkt[len++] = 15;
  pkt[len++] = 1;
  pkt[len++] = 'b';
  memcpy(pkt + len, "\0\0\0\5\4\0\0\0\0\x1f\x0a\0\0", 13);
  {
    cm_addr_t b = addr_of(2);
    memcpy(pkt + len + 5, b.ip, 4);
  }
  len += 13;
  CM_CHECK_OK(cm_node_recv(n, &from, pkt, len, T0));
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 5);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.skipped_unknown, 1);
  CM_CHECK_EQ(st.drop_malformed, 0);
  cm_node_free(n);
}

/* Versions travel with the incarnation: a member's ALIVE or push-pull entry
 * sets what it speaks, a relay without them keeps it, and the node
 * advertises its own in its push-pull. */
CM_TEST(versions_are_recorded_per_member_and_advertised) {
  cm_node_t *n = mk_node("a", 1);
  uint8_t buf[4096], *reply = NULL;
  cm_addr_t from = addr_of(9);
  cm_pp_entry_t e[2], got;
  cm_pp_header_t h;
  cm_msg_t m;
  size_t len, rlen, off = 0;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, "b", 1);
  m.u.alive.incarnation = 5;
  m.u.alive.addr = addr_of(2);
  m.u.alive.ext.vmin = 1;
  m.u.alive.ext.vmax = 3;
  feed(n, &m, T0);
  CM_CHECK_EQ(info_of(n, "b").proto_min, 1);
  CM_CHECK_EQ(info_of(n, "b").proto_max, 3);
  CM_CHECK_EQ(info_of(n, "a").proto_min, CM_WIRE_VERSION_MIN);
  CM_CHECK_EQ(info_of(n, "a").proto_max, CM_WIRE_VERSION_MAX);
  m.u.alive.incarnation = 6; /* relayed by a node that dropped them */
  memset(&m.u.alive.ext, 0, sizeof(m.u.alive.ext));
  feed(n, &m, T0);
  CM_CHECK_EQ(info_of(n, "b").incarnation, 6);
  CM_CHECK_EQ(info_of(n, "b").proto_max, 3);
  e[0] = pp_entry("c", 1, 3, CM_STATE_ALIVE);
  e[1] = pp_entry("b", 7, 2, CM_STATE_ALIVE);
  e[1].ext.vmin = 2;
  e[1].ext.vmax = 2;
  {
    cm_wbuf_t w = {buf, 0, sizeof(buf)};
    CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, CM_PP_FLAG_EXT));
    CM_CHECK_OK(cm_wire_pp_add(&w, &e[0]));
    CM_CHECK_OK(cm_wire_pp_add(&w, &e[1]));
    len = w.len;
  }
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, T0, &reply, &rlen));
  CM_CHECK_EQ(info_of(n, "b").proto_min, 2);
  CM_CHECK_EQ(info_of(n, "c").proto_min, 0); /* never advertised */
  /* c's versions, learned late at the incarnation held, are filled in. */
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, "c", 1);
  m.u.alive.incarnation = 1;
  m.u.alive.addr = info_of(n, "c").addr;
  m.u.alive.ext.vmin = 1;
  m.u.alive.ext.vmax = 2;
  feed(n, &m, T0);
  CM_CHECK_EQ(info_of(n, "c").proto_min, 1);
  CM_CHECK_EQ(info_of(n, "c").proto_max, 2);
  CM_CHECK_EQ(info_of(n, "c").incarnation, 1);
  CM_CHECK_OK(cm_wire_pp_decode(reply, rlen, &h));
  CM_CHECK(h.flags & CM_PP_FLAG_EXT);
  CM_CHECK(cm_wire_pp_next(reply, rlen, &off, &got)); /* self first */
  CM_CHECK_STR(got.node.s, "a");
  CM_CHECK_EQ(got.ext.vmin, CM_WIRE_VERSION_MIN);
  CM_CHECK_EQ(got.ext.vmax, CM_WIRE_VERSION_MAX);
  while (cm_wire_pp_next(reply, rlen, &off, &got))
    if (strcmp(got.node.s, "b") == 0)
      CM_CHECK_EQ(got.ext.vmax, 2);
  free(reply);
  CM_CHECK(gossips(n, CM_MSG_ALIVE, "b", 7));
  cm_node_free(n);
}

/* ---- Timers: reaping, reconnect, gossip to the dead, suspicion ---- */

/* One message the node sent while driven, and when and to whom. */
struct sent_msg {
  cm_time_t t;
  cm_addr_t to;
  uint8_t type;
  uint32_t incarnation;
  char subject[CM_ID_MAX + 1];
  char from[CM_ID_MAX + 1]; /* SUSPECT and DEAD: the accuser */
};

/* A push-pull request the node opened. */
struct sent_pp {
  cm_time_t t;
  cm_addr_t to;
};

/* What a driven node did (drive_tick). */
struct drive_log {
  struct sent_msg *msgs;
  size_t nmsgs, msgs_cap;
  struct sent_pp pp[64];
  size_t npp;
  cm_event_t ev[64];
  size_t nev;
  const cm_addr_t *silent; /* pings to it are not acked (NULL: none) */
  /* If set, push-pull requests are answered with this table (the next
   * one, then the last again); otherwise they fail. */
  const uint8_t *replies[4];
  size_t reply_lens[4], nreplies, replied;
};

static void log_msg(struct drive_log *l, cm_time_t t, const cm_addr_t *to,
                    const cm_msg_t *m) {
  struct sent_msg *s;
  if (l->nmsgs == l->msgs_cap) {
    size_t ncap = l->msgs_cap ? l->msgs_cap * 2 : 256;
    struct sent_msg *nm = realloc(l->msgs, ncap * sizeof(*nm));
    CM_CHECK(nm != NULL);
    l->msgs = nm;
    l->msgs_cap = ncap;
  }
  s = &l->msgs[l->nmsgs++];
  memset(s, 0, sizeof(*s));
  s->t = t;
  s->to = *to;
  s->type = m->type;
  s->incarnation = msg_incarnation(m);
  snprintf(s->subject, sizeof(s->subject), "%s", msg_subject(m));
  if (m->type == CM_MSG_SUSPECT || m->type == CM_MSG_DEAD)
    snprintf(s->from, sizeof(s->from), "%s", m->u.suspect.from.s);
}

/* One tick at t, as in a network where every member answers (but
 * l->silent): each ping the node sends is acked at once, so its own probes
 * never fail (no accusations or health changes of its own). What it sends, the
 * push-pull requests it opens (each then failed) and its events go to the log.
 */
static void drive_tick(cm_node_t *n, cm_time_t t, struct drive_log *l) {
  uint32_t seqs[16];
  size_t nseqs = 0, i;
  cm_addr_t to;
  const uint8_t *d;
  size_t len;
  uint64_t req;
  uint8_t *data;
  cm_event_t ev;
  cm_node_tick(n, t);
  while (cm_node_poll_datagram(n, &to, &d, &len)) {
    cm_msg_t msgs[CM_WIRE_MAX_MSGS];
    size_t count;
    CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &count));
    for (i = 0; i < count; i++) {
      log_msg(l, t, &to, &msgs[i]);
      if (msgs[i].type == CM_MSG_PING && nseqs < 16 &&
          (l->silent == NULL || !cm_addr_eq(&to, l->silent)))
        seqs[nseqs++] = msgs[i].u.ping.seq;
    }
  }
  while (cm_node_poll_stream(n, &to, &req, &data, &len, NULL)) {
    CM_CHECK(l->npp < sizeof(l->pp) / sizeof(l->pp[0]));
    l->pp[l->npp].t = t;
    l->pp[l->npp++].to = to;
    free(data);
    if (l->nreplies > 0) {
      size_t k = l->replied < l->nreplies ? l->replied++ : l->nreplies - 1;
      CM_CHECK_OK(
          cm_node_pushpull_reply(n, req, l->replies[k], l->reply_lens[k], t));
    } else {
      cm_node_pushpull_failed(n, req, t);
    }
  }
  for (i = 0; i < nseqs; i++) {
    cm_msg_t ack;
    memset(&ack, 0, sizeof(ack));
    ack.type = CM_MSG_ACK;
    ack.u.ack.seq = seqs[i];
    feed(n, &ack, t);
  }
  while (cm_node_poll_event(n, &ev)) {
    CM_CHECK(l->nev < sizeof(l->ev) / sizeof(l->ev[0]));
    l->ev[l->nev++] = ev;
  }
}

/* drive_tick every 100 ms from `from`, at every deadline the node names
 * in between (as a driver does), and once at `until` exactly. */
static void drive(cm_node_t *n, cm_time_t from, cm_time_t until,
                  struct drive_log *l) {
  cm_time_t t = from, last, d;
  while (t < until) {
    drive_tick(n, t, l);
    last = t;
    t += CM_MSEC(100);
    while ((d = cm_node_next_deadline(n)) > last && d < t && d < until) {
      drive_tick(n, d, l);
      last = d;
    }
  }
  drive_tick(n, until, l);
}

/* Messages of a type (0: any) about subject (NULL: any) accused by from
 * (NULL: any) sent to `to` (NULL: anyone) at a time in [t0, t1]. */
static size_t sent_count(const struct drive_log *l, uint8_t type,
                         const char *subject, const char *from,
                         const cm_addr_t *to, cm_time_t t0, cm_time_t t1) {
  size_t i, k = 0;
  for (i = 0; i < l->nmsgs; i++) {
    const struct sent_msg *s = &l->msgs[i];
    if ((type == 0 || s->type == type) &&
        (subject == NULL || strcmp(s->subject, subject) == 0) &&
        (from == NULL || strcmp(s->from, from) == 0) &&
        (to == NULL || cm_addr_eq(&s->to, to)) && s->t >= t0 && s->t <= t1)
      k++;
  }
  return k;
}

/* The events of a type about id in the log: how many, the last in *out. */
static int logged_events(const struct drive_log *l, uint8_t type,
                         const char *id, cm_event_t *out) {
  size_t i;
  int k = 0;
  for (i = 0; i < l->nev; i++)
    if (l->ev[i].type == type && strcmp(l->ev[i].id, id) == 0) {
      *out = l->ev[i];
      k++;
    }
  return k;
}

static void drive_log_free(struct drive_log *l) { free(l->msgs); }

/* ids[0..k) alive at incarnation 1, at addresses first, first + 1, ... */
static void alive_each(cm_node_t *n, const char *const *ids, size_t k,
                       uint32_t first) {
  size_t i;
  for (i = 0; i < k; i++)
    alive(n, ids[i], 1, first + (uint32_t)i, NULL, 0);
}

static void check_counts(cm_node_t *n, uint32_t members, uint32_t alive,
                         uint32_t suspect, uint32_t failed, uint32_t left) {
  cm_node_stats_t st;
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, members);
  CM_CHECK_EQ(st.alive, alive);
  CM_CHECK_EQ(st.suspect, suspect);
  CM_CHECK_EQ(st.failed, failed);
  CM_CHECK_EQ(st.left, left);
}

/* A node "a" (config c) that knows `left` (at index 2), which left, and
 * `failed` (index 3), declared failed by `accuser`, both at T0. */
static cm_node_t *with_gone(const cm_config_t *c, const char *left,
                            const char *failed, const char *accuser) {
  cm_node_t *n = mk_node_cfg("a", 1, c);
  alive(n, left, 1, 2, NULL, 0);
  alive(n, failed, 1, 3, NULL, 0);
  convict(n, failed, 1, accuser);
  leave(n, left, 1);
  return n;
}

/* Left members are forgotten reap_left_after after they left, failed ones
 * reconnect_timeout after they failed, each at that moment and not a tick
 * before; alive and suspect members as old as both stay. (Timeouts of 30 s
 * and 45 s here; a suspicion of 50 s keeps s suspect throughout.) */
CM_TEST(rule_left_and_failed_members_are_reaped_on_time) {
  static const char *const ids[] = {"b", "s", "l", "f"};
  cm_config_t c;
  cm_node_t *n;
  struct drive_log l;
  cm_event_t ev;
  cm_tconfig_pinned(&c);
  c.reap_left_after = CM_SEC(30);
  c.reconnect_timeout = CM_SEC(45);
  c.suspicion_mult = 100; /* 3 live < k + 2 = 4: timeout = min = 50 s */
  n = mk_node_cfg("a", 1, &c);
  memset(&l, 0, sizeof(l));
  alive_each(n, ids, 4, 2);
  accuse(n, CM_MSG_SUSPECT, "s", 1, "b");
  leave(n, "l", 1);
  /* suspected for half the shortest suspicion (25 s) before the conviction */
  accuse_at(n, CM_MSG_SUSPECT, "f", 1, "b", T0 - CM_SEC(25));
  accuse(n, CM_MSG_DEAD, "f", 1, "b");
  check_counts(n, 5, 2, 1, 1, 1);
  drain_events(n, CM_EV_REAPED, &ev); /* joined, suspect, left, failed */
  drive(n, T0, T0 + CM_SEC(30) - 1, &l);
  CM_CHECK_EQ(state_of(n, "l"), CM_STATE_LEFT);
  CM_CHECK_EQ(l.nev, 0);
  /* Reaping runs once a second, at this node's own phase. */
  drive(n, T0 + CM_SEC(30), T0 + CM_SEC(31), &l);
  CM_CHECK_EQ(logged_events(&l, CM_EV_REAPED, "l", &ev), 1);
  CM_CHECK(ev.time >= T0 + CM_SEC(30) && ev.time < T0 + CM_SEC(31));
  CM_CHECK_EQ(ev.state, CM_STATE_LEFT);
  CM_CHECK_EQ(state_of(n, "l"), 0xff);
  check_counts(n, 4, 2, 1, 1, 0);
  drive(n, T0 + CM_SEC(31) + CM_MSEC(100), T0 + CM_SEC(45) - 1, &l);
  CM_CHECK_EQ(state_of(n, "f"), CM_STATE_FAILED);
  CM_CHECK_EQ(l.nev, 1);
  drive(n, T0 + CM_SEC(45), T0 + CM_SEC(49), &l);
  CM_CHECK_EQ(logged_events(&l, CM_EV_REAPED, "f", &ev), 1);
  CM_CHECK(ev.time >= T0 + CM_SEC(45) && ev.time < T0 + CM_SEC(46));
  CM_CHECK_EQ(ev.state, CM_STATE_FAILED);
  CM_CHECK_EQ(l.nev, 2); /* nothing else reaped, nothing else happened */
  CM_CHECK_EQ(state_of(n, "f"), 0xff);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "s"), CM_STATE_SUSPECT);
  check_counts(n, 3, 2, 1, 0, 0);
  drive_log_free(&l);
  cm_node_free(n);
}

/* Reaping l drops the updates queued about it (its LEAVE) and those it
 * accused (DEAD(x) from l). Nobody can be gossiped to here (gossip_to_dead
 * 0, no live member), so the queue only changes by reaping. */
CM_TEST(rule_reaping_drops_the_members_queued_updates) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  struct drive_log l;
  cm_tconfig_pinned(&c);
  c.reap_left_after = CM_SEC(30);
  c.gossip_to_dead = 0;
  n = with_gone(&c, "l", "x", "l");
  memset(&l, 0, sizeof(l));
  drive(n, T0, T0 + CM_SEC(30) - 1, &l);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.bcast_queue, 3); /* alive(a), leave(l), dead(x) from l */
  CM_CHECK_EQ(sent_count(&l, 0, NULL, NULL, NULL, T0, T0 + CM_SEC(31)), 0);
  drive(n, T0 + CM_SEC(30), T0 + CM_SEC(31), &l);
  CM_CHECK_EQ(state_of(n, "l"), 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.bcast_queue, 1); /* alive(a) */
  drive_log_free(&l);
  cm_node_free(n);
}

/* Periodic timers start at a random phase, so nodes started together (a
 * deployment, a simulator run) neither probe, gossip, push-pull, reconnect
 * nor reap in step, nor on the whole seconds of the clock that started
 * them: the first deadline of each is drawn per node, probes and gossip
 * within one interval, the rest between half a period and one. In step,
 * a 1,000-node partition's reconnects all fired at once, and news after
 * a quiet spell met every node's stale deadline together and read as a
 * stall. Sixteen nodes with sixteen seeds at one instant: every
 * first deadline in its window, and spread over it. */
CM_TEST(rule_timers_start_at_a_random_phase) {
  enum { NODES = 16, TIMERS = 5 };
  cm_time_t first[TIMERS][NODES], lo[TIMERS], hi[TIMERS];
  cm_config_t c;
  int t, i, j;
  cm_tconfig_pinned(&c);
  lo[0] = 0, hi[0] = c.probe_interval;
  lo[1] = 0, hi[1] = c.gossip_interval;
  lo[2] = c.pushpull_interval / 2, hi[2] = c.pushpull_interval + 1;
  lo[3] = c.reconnect_interval / 2, hi[3] = c.reconnect_interval + 1;
  lo[4] = CM_REAP_PERIOD / 2, hi[4] = CM_REAP_PERIOD + 1;
  for (i = 0; i < NODES; i++) {
    cm_node_t *n = NULL;
    cm_addr_t a = addr_of(1);
    CM_CHECK_OK(cm_node_new(&n, &c, "a", &a, NULL, 0, (uint64_t)i + 1, T0));
    first[0][i] = n->next_probe - T0;
    first[1][i] = n->next_gossip - T0;
    first[2][i] = n->next_pushpull - T0;
    first[3][i] = n->next_reconnect - T0;
    first[4][i] = n->next_reap - T0;
    cm_node_free(n);
  }
  for (t = 0; t < TIMERS; t++) {
    int distinct = 0;
    cm_time_t min = first[t][0], max = first[t][0];
    for (i = 0; i < NODES; i++) {
      int seen = 0;
      CM_CHECK(first[t][i] >= lo[t] && first[t][i] < hi[t]);
      for (j = 0; j < i; j++)
        seen |= first[t][j] == first[t][i];
      distinct += !seen;
      min = first[t][i] < min ? first[t][i] : min;
      max = first[t][i] > max ? first[t][i] : max;
    }
    if (distinct < NODES - 2 || max - min < (hi[t] - lo[t]) / 4)
      cm_test_fail(__FILE__, __LINE__,
                   "timer %d: %d distinct first deadlines of %d, spread "
                   "%lld of a window of %lld",
                   t, distinct, NODES, (long long)(max - min),
                   (long long)(hi[t] - lo[t]));
  }
}

/* While f is failed, every reconnect_interval the node opens a push-pull
 * with it, and no longer once reconnect_timeout has passed since it failed
 * (60 s here); never with l, which left. No member is alive, so these are
 * the only push-pulls (the periodic one picks alive members). */
CM_TEST(rule_failed_member_is_reconnected_until_the_timeout) {
  cm_config_t c;
  cm_node_t *n;
  struct drive_log l;
  cm_addr_t f = addr_of(3);
  cm_time_t first;
  size_t i;
  cm_tconfig_pinned(&c);
  c.reconnect_timeout = CM_SEC(60);
  n = with_gone(&c, "l", "f", "z");
  memset(&l, 0, sizeof(l));
  drive(n, T0, T0 + CM_SEC(70), &l);
  /* Every 2 s from this node's own phase (the first between 1 and 2 s),
   * up to the last before f is as old as the timeout (60 s). */
  CM_CHECK(l.npp >= 29 && l.npp <= 30);
  first = l.pp[0].t;
  CM_CHECK(first >= T0 + c.reconnect_interval / 2 &&
           first <= T0 + c.reconnect_interval);
  for (i = 0; i < l.npp; i++) {
    CM_CHECK(cm_addr_eq(&l.pp[i].to, &f));
    CM_CHECK_EQ(l.pp[i].t, first + c.reconnect_interval * i);
  }
  CM_CHECK(l.pp[l.npp - 1].t < T0 + CM_SEC(60));
  CM_CHECK(l.pp[l.npp - 1].t + c.reconnect_interval >= T0 + CM_SEC(60));
  drive_log_free(&l);
  cm_node_free(n);
}

/* Node a (LAN profile) joins through s at T0, and s answers with itself and
 * four others: e[0..4] of `e`, which has room for six (e[5] is x, a member
 * that joined after s answered). The retransmit-budget wait of a follow-up
 * at that size goes to *f. */
static cm_node_t *joined_at_t0(cm_config_t *c, cm_pp_entry_t e[6],
                               cm_time_t *f) {
  cm_addr_t seed = addr_of(2), to;
  cm_node_t *n;
  uint64_t req;
  uint8_t *data, buf[4096];
  size_t len;
  int is_join = 0;
  cm_tconfig_pinned(c);
  n = mk_node_cfg("a", 1, c);
  CM_CHECK_OK(cm_node_join(n, &seed, 1, T0));
  CM_CHECK(cm_node_poll_stream(n, &to, &req, &data, &len, &is_join));
  CM_CHECK(is_join && cm_addr_eq(&to, &seed));
  free(data);
  e[0] = pp_entry("s", 1, 2, CM_STATE_ALIVE);
  e[1] = pp_entry("b", 1, 3, CM_STATE_ALIVE);
  e[2] = pp_entry("c", 1, 4, CM_STATE_ALIVE);
  e[3] = pp_entry("d", 1, 5, CM_STATE_ALIVE);
  e[4] = pp_entry("e", 1, 6, CM_STATE_ALIVE);
  e[5] = pp_entry("x", 1, 7, CM_STATE_ALIVE);
  len = pp_build(buf, sizeof(buf), CM_PP_RESPONSE, e, 5);
  CM_CHECK_OK(cm_node_pushpull_reply(n, req, buf, len, T0));
  *f = (cm_time_t)cm_retransmit_limit(c, 6) * c->gossip_interval;
  return n;
}

/* A join is followed up: between one and two times an update's retransmit
 * budget after the seed's answer, a push-pull with a random member, since
 * in a join storm the seed's table lacks those who joined after it
 * answered. Then the periodic push-pull, at the phase it had. */
CM_TEST(rule_a_join_is_followed_up_by_a_pushpull_with_a_random_member) {
  cm_config_t c;
  cm_addr_t self = addr_of(1);
  cm_pp_entry_t e[6];
  struct drive_log l;
  cm_time_t f;
  cm_node_t *n = joined_at_t0(&c, e, &f);
  memset(&l, 0, sizeof(l));
  drive(n, T0, T0 + c.pushpull_interval + CM_SEC(1), &l);
  CM_CHECK_EQ(l.npp, 2);
  CM_CHECK(l.pp[0].t >= T0 + f && l.pp[0].t <= T0 + 2 * f);
  CM_CHECK(!cm_addr_eq(&l.pp[0].to, &self));
  CM_CHECK(l.pp[1].t >= T0 + c.pushpull_interval / 2 &&
           l.pp[1].t <= T0 + c.pushpull_interval);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A follow-up that brings members this node did not know is followed up
 * again after twice the wait (the storm is still going on); one that
 * brings nothing new ends the follow-ups, and the periodic push-pull keeps
 * its phase. */
CM_TEST(rule_a_followup_that_brings_news_is_followed_up_again) {
  cm_config_t c;
  cm_pp_entry_t e[6];
  struct drive_log l;
  uint8_t more[4096];
  cm_time_t f;
  cm_node_t *n = joined_at_t0(&c, e, &f);
  memset(&l, 0, sizeof(l));
  /* The first follow-up brings x; the second brings nothing new. */
  l.replies[0] = l.replies[1] = more;
  l.reply_lens[0] = l.reply_lens[1] =
      pp_build(more, sizeof(more), CM_PP_RESPONSE, e, 6);
  l.nreplies = 2;
  drive(n, T0, T0 + c.pushpull_interval + CM_SEC(1), &l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  CM_CHECK_EQ(l.npp, 3);
  CM_CHECK(l.pp[0].t >= T0 + f && l.pp[0].t <= T0 + 2 * f);
  CM_CHECK(l.pp[1].t >= l.pp[0].t + 2 * f && l.pp[1].t <= l.pp[0].t + 4 * f);
  CM_CHECK(l.pp[2].t >= T0 + c.pushpull_interval / 2 &&
           l.pp[2].t <= T0 + c.pushpull_interval);
  drive_log_free(&l);
  cm_node_free(n);
}

/* Only an answer to the join is followed up: after a join that failed, a
 * later push-pull's reply leaves the periodic push-pull where it was. */
CM_TEST(rule_only_the_join_answer_is_followed_up) {
  cm_node_t *n = mk_node("a", 1);
  cm_addr_t seed = addr_of(9), b = addr_of(2), to;
  cm_pp_entry_t e[2];
  uint64_t id;
  uint8_t *req, buf[1024];
  size_t len;
  cm_time_t later = T0 + CM_SEC(3600), periodic;
  alive(n, "b", 1, 2, NULL, 0);
  CM_CHECK_OK(cm_node_join(n, &seed, 1, T0));
  CM_CHECK(cm_node_poll_stream(n, &to, &id, &req, &len, NULL));
  free(req);
  cm_node_pushpull_failed(n, id, T0 + CM_SEC(1)); /* the join failed */
  CM_CHECK_OK(cm_node__pp_request(n, &b, 0));     /* an hour later, with b */
  CM_CHECK(cm_node_poll_stream(n, &to, &id, &req, &len, NULL));
  free(req);
  e[0] = pp_entry("b", 1, 2, CM_STATE_ALIVE);
  e[1] = pp_entry("a", 0, 1, CM_STATE_ALIVE);
  len = pp_build(buf, sizeof(buf), CM_PP_RESPONSE, e, 2);
  periodic = n->next_pushpull = later + CM_SEC(20);
  CM_CHECK_OK(cm_node_pushpull_reply(n, id, buf, len, later));
  CM_CHECK_EQ(n->next_pushpull, periodic);
  CM_CHECK_EQ(n->pushpull_after_followup, 0);
  cm_node_free(n);
}

/* The reconnect reaches f, which was only cut off: it refutes the verdict
 * in its reply, and the reply brings it back alive. */
CM_TEST(rule_reconnect_reply_brings_a_failed_member_back) {
  cm_node_t *n = mk_node("a", 1), *f = mk_node("f", 2);
  struct drive_log l;
  cm_addr_t to, want = addr_of(2), from = addr_of(1);
  uint64_t req;
  uint8_t *data, *reply;
  size_t len, rlen;
  cm_event_t ev;
  cm_time_t t;
  memset(&l, 0, sizeof(l));
  alive(n, "f", 5, 2, NULL, 0);
  convict(n, "f", 5, "z");
  drain_events(n, CM_EV_FAILED, &ev);
  /* The first reconnect, within one reconnect interval (2 s). */
  for (t = T0; !cm_node_poll_stream(n, &to, &req, &data, &len, NULL);
       t = cm_node_next_deadline(n)) {
    CM_CHECK(t <= T0 + CM_SEC(2));
    cm_node_tick(n, t);
  }
  CM_CHECK(cm_addr_eq(&to, &want));
  CM_CHECK_OK(cm_node_handle_pushpull(f, &from, data, len, t, &reply, &rlen));
  CM_CHECK_EQ(info_of(f, "f").incarnation, 6); /* refuted failed@5 */
  CM_CHECK_OK(cm_node_pushpull_reply(n, req, reply, rlen, t));
  CM_CHECK_EQ(state_of(n, "f"), CM_STATE_ALIVE);
  CM_CHECK_EQ(info_of(n, "f").incarnation, 6);
  CM_CHECK(drain_events(n, CM_EV_RECOVERED, &ev));
  CM_CHECK_STR(ev.id, "f");
  check_counts(n, 2, 2, 0, 0, 0);
  free(data);
  free(reply);
  drive_log_free(&l);
  cm_node_free(n);
  cm_node_free(f);
}

/* Gossip reaches a failed member for gossip_to_dead after it failed (30 s),
 * so a member failed by mistake hears of it and refutes; not after. A tag
 * change every second gives each round news to send; f failed at 0.1 s. */
CM_TEST(rule_gossip_reaches_the_dead_for_gossip_to_dead) {
  cm_node_t *n = mk_node("a", 1);
  struct drive_log l;
  cm_addr_t f = addr_of(3), b = addr_of(2);
  cm_time_t t;
  int k;
  memset(&l, 0, sizeof(l));
  alive(n, "b", 1, 2, NULL, 0);
  alive(n, "f", 1, 3, NULL, 0);
  drive(n, T0, T0 + CM_MSEC(50), &l);
  convict_at(n, "f", 1, "b", T0 + CM_MSEC(100));
  CM_CHECK_EQ(state_of(n, "f"), CM_STATE_FAILED);
  for (t = T0 + CM_MSEC(100); t <= T0 + CM_SEC(40); t += CM_MSEC(100)) {
    if ((t - T0) % CM_SEC(1) == 0) {
      char v[16];
      snprintf(v, sizeof(v), "%d", (int)((t - T0) / CM_SEC(1)));
      CM_CHECK_OK(cm_node_set_tag(n, "k", v, t));
    }
    drive_tick(n, t, &l);
  }
  /* Each second's news reaches f, the last at 30 s (29.9 s after it
   * failed); nothing after. */
  for (k = 1; k < 30; k++)
    CM_CHECK(sent_count(&l, 0, NULL, NULL, &f, T0 + CM_SEC(k),
                        T0 + CM_SEC(k + 1) - 1) > 0);
  CM_CHECK(sent_count(&l, 0, NULL, NULL, &f, T0 + CM_SEC(30), T0 + CM_SEC(30)) >
           0);
  CM_CHECK_EQ(
      sent_count(&l, 0, NULL, NULL, &f, T0 + CM_SEC(30) + 1, T0 + CM_SEC(40)),
      0);
  /* ... while gossip goes on to the living. */
  for (k = 31; k < 40; k++)
    CM_CHECK(sent_count(&l, CM_MSG_ALIVE, "a", NULL, &b, T0 + CM_SEC(k),
                        T0 + CM_SEC(k + 1) - 1) > 0);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A node "a" with b, c, d and x alive at incarnation 1: five live members,
 * so with c's k confirmations expected (<= 3) the suspicion timeout runs
 * from min = suspicion_mult x 0.5 s to max = 6 x min. */
static cm_node_t *with_bcdx_cfg(const cm_config_t *c) {
  static const char *const ids[] = {"b", "c", "d", "x"};
  cm_node_t *n = mk_node_cfg("a", 1, c);
  cm_event_t ev;
  alive_each(n, ids, 4, 2);
  drain_events(n, CM_EV_JOINED, &ev);
  return n;
}

/* The LAN profile's: k = 2 confirmations, min = 4 x 0.5 s = 2 s, max =
 * 12 s. */
static cm_node_t *with_bcdx(void) {
  cm_config_t c;
  cm_tconfig_pinned(&c);
  return with_bcdx_cfg(&c);
}

/* An independent accuser's SUSPECT about a member already suspected is
 * passed on with that accuser, as often as any update (6 sends with 5
 * members); an accusation already counted (the same accuser again, or the
 * first one) is not. */
CM_TEST(rule_new_confirmation_is_rebroadcast_once) {
  cm_node_t *n = with_bcdx();
  struct drive_log l;
  memset(&l, 0, sizeof(l));
  accuse(n, CM_MSG_SUSPECT, "x", 1, "b");
  drive(n, T0, T0 + CM_SEC(1) - 1, &l);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "b", NULL, T0, T0 + CM_SEC(1)), 6);
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "c", T0 + CM_SEC(1));
  drive(n, T0 + CM_SEC(1), T0 + CM_SEC(2) - 1, &l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "c", NULL, T0 + CM_SEC(1),
                         T0 + CM_SEC(2)),
              6);
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "c", T0 + CM_SEC(2));
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "b", T0 + CM_SEC(2));
  drive(n, T0 + CM_SEC(2), T0 + CM_SEC(3), &l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "c", NULL, T0 + CM_SEC(2),
                         T0 + CM_SEC(3)),
              0);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "b", NULL, T0 + CM_SEC(2),
                         T0 + CM_SEC(3)),
              0);
  drive_log_free(&l);
  cm_node_free(n);
}

/* x, suspected by b at T0 and confirmed by the accusers in `by` at
 * T0 + 0.5 s, 1 s, ..., is declared failed at T0 + after exactly: not at the
 * tick before, and at that tick; then DEAD(x) from this node is gossiped as
 * often as any update (6 sends with 4 or 5 members). x acks this node's
 * pings unless silent. */
static void suspicion_fails_after(cm_node_t *n, const char *const *by,
                                  size_t nby, cm_time_t after, int silent) {
  struct drive_log l;
  cm_event_t ev;
  cm_addr_t x = addr_of(5);
  size_t i;
  memset(&l, 0, sizeof(l));
  if (silent)
    l.silent = &x;
  accuse(n, CM_MSG_SUSPECT, "x", 1, "b");
  drain_events(n, CM_EV_SUSPECT, &ev);
  drive(n, T0, T0 + CM_MSEC(400), &l);
  for (i = 0; i < nby; i++) {
    cm_time_t t = T0 + CM_MSEC(500) * (i + 1);
    accuse_at(n, CM_MSG_SUSPECT, "x", 1, by[i], t);
    drive(n, t, t + CM_MSEC(400), &l);
  }
  drive(n, T0 + CM_MSEC(500) * (nby + 1), T0 + after - 1, &l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(logged_events(&l, CM_EV_FAILED, "x", &ev), 0);
  drive_tick(n, T0 + after, &l);
  CM_CHECK_EQ(logged_events(&l, CM_EV_FAILED, "x", &ev), 1);
  CM_CHECK_EQ(ev.time, T0 + after);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  drive(n, T0 + after, T0 + after + CM_SEC(1), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_DEAD, "x", "a", NULL, T0 + after,
                         T0 + after + CM_SEC(1)),
              6);
  drive_log_free(&l);
}

/* Lifeguard through the node: timeout(c) = max - log(c + 1) / log(k + 1) x
 * (max - min) from the start of the suspicion, with k = 2, min 2 s, max
 * 12 s: 12 s unconfirmed, 12 - 10 log 2 / log 3 = 5.690702 s with one
 * confirmation, min with two. */
CM_TEST(rule_confirmations_shorten_the_suspicion_timeout) {
  static const char *const by[] = {"c", "d"};
  cm_node_t *n = with_bcdx();
  suspicion_fails_after(n, by, 0, CM_SEC(12), 0);
  cm_node_free(n);
  n = with_bcdx();
  suspicion_fails_after(n, by, 1, 5690702, 0);
  cm_node_free(n);
  n = with_bcdx();
  suspicion_fails_after(n, by, 2, CM_SEC(2), 0);
  cm_node_free(n);
}

/* The confirmations awaited are suspicion_confirmations, not memberlist's
 * suspicion_mult - 2: with multiplier 4 and none awaited, an unconfirmed
 * suspicion is due at min (2 s), not max; with multiplier 2 (min 1 s, max
 * 6 s) and one awaited, unconfirmed at max, and one confirmation (at
 * 0.5 s) brings it to min. */
CM_TEST(rule_confirmations_awaited_are_set_apart_from_the_multiplier) {
  static const char *const by[] = {"c"};
  cm_config_t c;
  cm_node_t *n;
  cm_tconfig_pinned(&c);
  c.suspicion_confirmations = 0;
  n = with_bcdx_cfg(&c);
  suspicion_fails_after(n, NULL, 0, CM_SEC(2), 0);
  cm_node_free(n);
  c.suspicion_mult = 2;
  c.suspicion_confirmations = 1;
  n = with_bcdx_cfg(&c);
  suspicion_fails_after(n, NULL, 0, CM_SEC(6), 0);
  cm_node_free(n);
  n = with_bcdx_cfg(&c);
  suspicion_fails_after(n, by, 1, CM_SEC(1), 0);
  cm_node_free(n);
}

/* x, suspect, is still suspect just before `at` and failed at `at`. */
static void x_fails_at(cm_node_t *n, cm_time_t from, cm_time_t at,
                       struct drive_log *l) {
  drive(n, from, at - 1, l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  drive_tick(n, at, l);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
}

/* c pushes its table at t, in which x is in `state`. */
static void table_says_x(cm_node_t *n, uint8_t state, cm_time_t t) {
  cm_pp_entry_t e[2];
  e[0] = pp_entry("c", 1, 3, CM_STATE_ALIVE);
  e[1] = pp_entry("x", 1, 5, state);
  pp_push_at(n, e, 2, t);
}

/* A push-pull table says what its sender holds, not who accused: c may
 * hold x suspect only because it heard b. So c's record confirms nothing
 * (however often c pushes) and is never gossiped in c's name: x, suspected
 * by b, fails unconfirmed at max (12 s), not at timeout(1) = 5.69 s.
 * Counting it made a live member fail at 10% loss in the simulator: one
 * table relayed one accusation, which then counted twice. */
CM_TEST(rule_pushpull_suspect_confirms_nothing) {
  cm_node_t *n = with_bcdx();
  struct drive_log l;
  cm_event_t ev;
  memset(&l, 0, sizeof(l));
  accuse(n, CM_MSG_SUSPECT, "x", 1, "b");
  drain_events(n, CM_EV_SUSPECT, &ev);
  drive(n, T0, T0 + CM_MSEC(400), &l);
  table_says_x(n, CM_STATE_SUSPECT, T0 + CM_MSEC(500));
  drive(n, T0 + CM_MSEC(500), T0 + CM_MSEC(1400), &l);
  /* c has since declared it failed */
  table_says_x(n, CM_STATE_FAILED, T0 + CM_MSEC(1500));
  x_fails_at(n, T0 + CM_MSEC(1500), T0 + CM_SEC(12), &l);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "c", NULL, T0, T0 + CM_SEC(12)), 0);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A suspicion learnt from a table (x held alive, c's table says suspect)
 * names no accuser and is not gossiped; x is told once, directly, in its
 * own name, which names none (so that it refutes). The first accusation
 * heard after it, b's, is likely the one the table passed on: it is relayed
 * (this node never gossiped the suspicion) but shortens nothing; d's, the
 * next, counts: x fails at timeout(1) = 5.690702 s from the table, where
 * counting b too would have made it min (2 s). */
CM_TEST(rule_pushpull_suspicion_names_its_first_accuser_heard) {
  cm_node_t *n = with_bcdx();
  cm_addr_t xa = addr_of(5);
  struct drive_log l;
  memset(&l, 0, sizeof(l));
  table_says_x(n, CM_STATE_SUSPECT, T0);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  drive(n, T0, T0 + CM_MSEC(400), &l);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "x", &xa, T0, T0 + CM_MSEC(400)), 1);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", NULL, NULL, T0, T0 + CM_MSEC(400)),
      1);
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "b", T0 + CM_MSEC(500));
  drive(n, T0 + CM_MSEC(500), T0 + CM_MSEC(900), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "b", NULL, T0 + CM_MSEC(500),
                         T0 + CM_MSEC(900)),
              6);
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "d", T0 + CM_SEC(1));
  x_fails_at(n, T0 + CM_SEC(1), T0 + 5690702, &l);
  drive_log_free(&l);
  cm_node_free(n);
}

/* This node's own failed probe cannot be the accusation a table passed on:
 * against a suspicion learnt from c's table it counts as a confirmation
 * (x silent, no other accuser): x fails at timeout(1) = 5.690702 s, not
 * unconfirmed at max (12 s). */
CM_TEST(rule_own_probe_confirms_a_suspicion_learnt_from_a_table) {
  cm_node_t *n = with_bcdx();
  cm_addr_t xa = addr_of(5);
  struct drive_log l;
  memset(&l, 0, sizeof(l));
  l.silent = &xa;
  table_says_x(n, CM_STATE_SUSPECT, T0);
  x_fails_at(n, T0, T0 + 5690702, &l);
  /* its own accusation, gossiped */
  CM_CHECK(sent_count(&l, CM_MSG_SUSPECT, "x", "a", NULL, T0, T0 + CM_SEC(6)) >
           0);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A SUSPECT whose accuser is its subject names none (how the subject of a
 * table's record is told): about a member held suspect (by b) it confirms
 * nothing and is not relayed, so x fails unconfirmed at max (12 s); about
 * one held alive it starts a suspicion with no accuser named, passed on in
 * the subject's name (6 sends), whose first named accuser (b, at 1 s) then
 * shortens nothing (d would fail at 6.19 s if b counted); about this node
 * it is refuted. */
CM_TEST(rule_suspect_in_its_subjects_name_names_no_accuser) {
  cm_node_t *n = with_bcdx();
  struct drive_log l;
  cm_event_t ev;
  memset(&l, 0, sizeof(l));
  accuse(n, CM_MSG_SUSPECT, "x", 1, "b");
  drain_events(n, CM_EV_SUSPECT, &ev);
  drive(n, T0, T0 + CM_MSEC(400), &l);
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "x", T0 + CM_MSEC(500));
  accuse_at(n, CM_MSG_SUSPECT, "d", 1, "d", T0 + CM_MSEC(500));
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_SUSPECT);
  drive(n, T0 + CM_MSEC(500), T0 + CM_SEC(1), &l);
  accuse_at(n, CM_MSG_SUSPECT, "d", 1, "b", T0 + CM_SEC(1));
  x_fails_at(n, T0 + CM_SEC(1), T0 + CM_SEC(12), &l);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "x", NULL, T0, T0 + CM_SEC(12)), 0);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "d", "d", NULL, T0, T0 + CM_SEC(12)), 6);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(self_inc(n), 0);
  accuse_at(n, CM_MSG_SUSPECT, "a", 0, "a", T0 + CM_SEC(12));
  CM_CHECK_EQ(self_inc(n), 1);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A table that names 20 members suspect, all held alive: the first 16 are
 * told directly, each in a packet of its own (the alive record queued for
 * gossip does not ride along to members likely crashed), during the merge;
 * the other 4 are passed on by gossip in their own names. */
CM_TEST(rule_a_table_tells_sixteen_subjects_directly_in_bare_packets) {
  cm_node_t *n = mk_node("a", 1);
  static char ids[24][8];
  const char *idp[24];
  cm_pp_entry_t e[21];
  uint8_t buf[4096], *reply = NULL;
  size_t len, rlen, dlen, count;
  cm_addr_t from = addr_of(99), to;
  const uint8_t *d;
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  struct drive_log l;
  uint32_t i, told = 0;
  memset(&l, 0, sizeof(l));
  for (i = 0; i < 24; i++) {
    snprintf(ids[i], sizeof(ids[i]), "m%u", i);
    idp[i] = ids[i];
  }
  alive_each(n, idp, 24, 10);
  drain_datagrams(n);
  alive(n, "late", 1, 50, NULL, 0); /* queued for gossip */
  e[0] = pp_entry("s", 1, 60, CM_STATE_ALIVE);
  for (i = 0; i < 20; i++)
    e[i + 1] = pp_entry(ids[i], 1, 10 + i, CM_STATE_SUSPECT);
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, e, 21);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, T0, &reply, &rlen));
  free(reply);
  while (cm_node_poll_datagram(n, &to, &d, &dlen)) {
    CM_CHECK_OK(cm_wire_packet_decode(d, dlen, msgs, CM_WIRE_MAX_MSGS, &count));
    CM_CHECK_EQ(count, 1);
    CM_CHECK_EQ(msgs[0].type, CM_MSG_SUSPECT);
    CM_CHECK_STR(msgs[0].u.suspect.from.s, msgs[0].u.suspect.node.s);
    CM_CHECK_STR(msgs[0].u.suspect.node.s, ids[told]);
    {
      cm_addr_t want = addr_of(10 + told);
      CM_CHECK(cm_addr_eq(&to, &want));
    }
    told++;
  }
  CM_CHECK_EQ(told, 16);
  drive(n, T0, T0 + CM_SEC(1), &l);
  for (i = 0; i < 20; i++)
    CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, ids[i], ids[i], NULL, T0,
                           T0 + CM_SEC(1)) > 0,
                i >= 16);
  CM_CHECK(
      sent_count(&l, CM_MSG_ALIVE, "late", NULL, NULL, T0, T0 + CM_SEC(1)) > 0);
  /* The count is per table: the next one tells its first 16 again. */
  for (i = 0; i < 4; i++)
    e[i + 1] = pp_entry(ids[20 + i], 1, 30 + i, CM_STATE_SUSPECT);
  len = pp_build(buf, sizeof(buf), CM_PP_REQUEST, e, 5);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, T0 + CM_SEC(1),
                                      &reply, &rlen));
  free(reply);
  told = 0;
  while (cm_node_poll_datagram(n, &to, &d, &dlen))
    told++;
  CM_CHECK_EQ(told, 4);
  drive_log_free(&l);
  cm_node_free(n);
}

/* News that clears an accusation is gossiped twice the retransmit limit: a
 * member that misses it keeps a timer that will declare a live member
 * failed, where a missed tag change only waits for a push-pull. In the
 * simulator (10% loss, 40 seeds of 300 s at 50 members) a member missed a
 * refutation and so convicted it in 3 seeds; in none with twice the limit.
 * Here (5 members: limit 6) this node's own refutation and the relay of
 * x's (held suspect) go out 12 times; d's return (held failed: no timer
 * to beat) and c's new tags, 6. A refutation superseded by a tag change
 * before it is done still goes out twice the limit; a second change, the
 * usual limit. */
CM_TEST(rule_news_that_clears_an_accusation_is_sent_twice_the_limit) {
  cm_node_t *n = with_bcdx();
  static const uint8_t tags[] = {1, 'k', 0, 1, 'v'};
  static const char *const ids[] = {"a", "x", "d", "c"};
  static const size_t want[] = {12, 12, 6, 6};
  struct drive_log l;
  size_t i;
  memset(&l, 0, sizeof(l));
  drive(n, T0, T0 + CM_SEC(10), &l); /* the joins' gossip drains */
  accuse_at(n, CM_MSG_SUSPECT, "x", 1, "b", T0 + CM_SEC(10));
  convict_at(n, "d", 1, "b", T0 + CM_SEC(10));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_FAILED);
  accuse_at(n, CM_MSG_SUSPECT, "a", 1, "b", T0 + CM_SEC(10));
  alive_at(n, "x", 2, 5, NULL, 0, T0 + CM_SEC(10));
  alive_at(n, "d", 2, 4, NULL, 0, T0 + CM_SEC(10));
  alive_at(n, "c", 2, 3, tags, sizeof(tags), T0 + CM_SEC(10));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_ALIVE);
  drive(n, T0 + CM_SEC(10), T0 + CM_SEC(40), &l);
  for (i = 0; i < 4; i++)
    CM_CHECK_EQ(sent_count(&l, CM_MSG_ALIVE, ids[i], NULL, NULL,
                           T0 + CM_SEC(10), T0 + CM_SEC(40)),
                want[i]);
  accuse_at(n, CM_MSG_SUSPECT, "a", self_inc(n), "b", T0 + CM_SEC(40));
  drive(n, T0 + CM_SEC(40), T0 + CM_SEC(40) + CM_MSEC(100), &l);
  CM_CHECK(sent_count(&l, CM_MSG_ALIVE, "a", NULL, NULL, T0 + CM_SEC(40),
                      T0 + CM_SEC(41)) > 0);
  CM_CHECK_OK(cm_node_set_tag(n, "k", "v", T0 + CM_SEC(41)));
  drive(n, T0 + CM_SEC(41), T0 + CM_SEC(70), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_ALIVE, "a", NULL, NULL, T0 + CM_SEC(41),
                         T0 + CM_SEC(70)),
              12);
  /* Once: a refutation, a tag change, another tag change: the last goes
   * the usual limit. */
  accuse_at(n, CM_MSG_SUSPECT, "a", self_inc(n), "b", T0 + CM_SEC(70));
  CM_CHECK_OK(cm_node_set_tag(n, "k", "w", T0 + CM_SEC(70)));
  CM_CHECK_OK(cm_node_set_tag(n, "k", "x", T0 + CM_SEC(70)));
  drive(n, T0 + CM_SEC(70), T0 + CM_SEC(100), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_ALIVE, "a", NULL, NULL, T0 + CM_SEC(70),
                         T0 + CM_SEC(100)),
              6);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A member that flaps (failed, then back at a higher incarnation, again and
 * again: a peer flapping, or a key holder sending DEAD and ALIVE in turn)
 * is in the probe round once, not once per return: the others are still
 * each probed once per round, and the order does not grow with the flaps.
 * Two rounds of 21 members here. */
CM_TEST(rule_a_flapping_member_is_in_the_probe_round_once) {
  cm_node_t *n = mk_node("a", 1);
  struct drive_log l;
  cm_event_t ev;
  cm_addr_t b = addr_of(2);
  cm_time_t end = T0 + 42 * CM_MSEC(500);
  char id[8];
  uint32_t i, inc = 1;
  memset(&l, 0, sizeof(l));
  for (i = 0; i < 20; i++) {
    snprintf(id, sizeof(id), "m%u", i);
    alive(n, id, 1, 10 + i, NULL, 0);
  }
  alive(n, "b", 1, 2, NULL, 0);
  for (i = 0; i < 2000; i++) {
    accuse(n, CM_MSG_DEAD, "b", inc, "m0");
    alive(n, "b", ++inc, 2, NULL, 0);
  }
  while (cm_node_poll_event(n, &ev))
    ;
  drive(n, T0, end, &l);
  for (i = 0; i < 20; i++) {
    cm_addr_t m = addr_of(10 + i);
    CM_CHECK(sent_count(&l, CM_MSG_PING, NULL, NULL, &m, T0, end) >= 1);
  }
  CM_CHECK(sent_count(&l, CM_MSG_PING, NULL, NULL, &b, T0, end) <= 3);
  drive_log_free(&l);
  cm_node_free(n);
}

/* With fewer than k + 2 live members nobody is left to confirm: the timeout
 * is min (2 s) from the start. */
CM_TEST(rule_suspicion_with_too_few_members_to_confirm_is_min) {
  cm_node_t *n = with_b();
  alive(n, "x", 1, 5, NULL, 0); /* a, b, x: 3 live < 4 */
  suspicion_fails_after(n, NULL, 0, CM_SEC(2), 0);
  cm_node_free(n);
}

/* A failed probe of a member already suspect is an independent
 * confirmation by this node (Failure detection, Verdict): x, suspected by b
 * and silent to this node's probe, fails at timeout(1), not 12 s. */
CM_TEST(rule_failed_probe_of_a_suspect_confirms_it) {
  cm_node_t *n = with_bcdx();
  suspicion_fails_after(n, NULL, 0, 5690702, 1);
  cm_node_free(n);
}

/* A node reports the id and address it was made with, and each state's
 * name is the one the documentation and the Python API use. */
CM_TEST(node_reports_its_id_address_and_state_names) {
  cm_node_t *n = mk_node("a", 1);
  cm_addr_t a = addr_of(1);
  CM_CHECK_STR(cm_node_id(n), "a");
  CM_CHECK(cm_addr_eq(cm_node_addr(n), &a));
  CM_CHECK_STR(cm_state_name(CM_STATE_ALIVE), "alive");
  CM_CHECK_STR(cm_state_name(CM_STATE_SUSPECT), "suspect");
  CM_CHECK_STR(cm_state_name(CM_STATE_FAILED), "failed");
  CM_CHECK_STR(cm_state_name(CM_STATE_LEFT), "left");
  CM_CHECK_STR(cm_state_name(4), "unknown");
  cm_node_free(n);
}

/* with_bcdx, c convicted by b (this node holds it failed) and `suspect`
 * suspected by b. */
static cm_node_t *with_c_cut_off(const char *suspect) {
  cm_node_t *n = with_bcdx();
  cm_event_t ev;
  convict(n, "c", 1, "b");
  accuse(n, CM_MSG_SUSPECT, suspect, 1, "b");
  drain_events(n, CM_EV_FAILED, &ev);
  return n;
}

/* A conviction from across a cut is an accusation (docs/protocol.md,
 * "Suspicion"): its accuser's suspicion ran where this node could not see
 * it, and its subject was never told. c, convicted by b, convicts x: x is
 * suspected in c's name and told (so it refutes) and d, already suspected
 * by b, is not convicted. Back at incarnation 2 (1 s), c is still
 * from across the cut for a suspicion's longest timeout (12 s): its
 * conviction of b, suspected by d, just before is d's suspicion confirmed,
 * of x (suspected again) at that instant a conviction. */
CM_TEST(rule_conviction_from_across_a_cut_is_an_accusation) {
  cm_node_t *n = with_c_cut_off("d");
  struct drive_log l;
  cm_event_t ev;
  memset(&l, 0, sizeof(l));
  accuse_at(n, CM_MSG_DEAD, "x", 1, "c", T0 + 1);
  accuse_at(n, CM_MSG_DEAD, "d", 1, "c", T0 + 1);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(drain_events(n, CM_EV_FAILED, &ev), 0);
  drive(n, T0 + 1, T0 + CM_MSEC(400), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_DEAD, "x", NULL, NULL, T0, T0 + CM_SEC(1)),
              0);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "x", NULL, T0, T0 + CM_SEC(1)), 1);
  alive_at(n, "c", 2, 3, NULL, 0, T0 + CM_SEC(1));
  alive_at(n, "x", 2, 5, NULL, 0, T0 + CM_SEC(1));
  CM_CHECK_EQ(state_of(n, "c"), CM_STATE_ALIVE);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  accuse_at(n, CM_MSG_SUSPECT, "b", 1, "d", T0 + CM_SEC(13) - 1);
  accuse_at(n, CM_MSG_DEAD, "b", 1, "c", T0 + CM_SEC(13) - 1);
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_SUSPECT);
  convict_at(n, "x", 2, "c", T0 + CM_SEC(13));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  drive_log_free(&l);
  cm_node_free(n);
}

/* A conviction this node did not see coming is an accusation (docs/
 * protocol.md, "Suspicion"). Of x, held alive (the suspicion never reached
 * this node, and perhaps never x), c's conviction starts a suspicion in c's
 * name, with no failure: not gossiped (elsewhere it would be a suspicion
 * seen coming), but told to x directly, in x's own name. b's conviction
 * then, of a suspicion that a conviction started, is no conviction: x
 * fails by this node's own timer, at the shortest timeout, 2 s, with no
 * confirmation awaited (that suspicion ran its course elsewhere; so b's
 * counts for nothing, and x is not told again). A conviction of such a
 * suspicion at a higher incarnation raises it there: x's alive record of that
 * incarnation, arriving after, clears nothing (rule 3). A suspicion this node
 * heard as one, by a member not across a cut, is a conviction seen coming once
 * it has held it for half the shortest suspicion (1 s): it convicts at once.
 * Before, the suspicion was held back on its way here (a cut), and the subject
 * may not have heard it either: c's conviction then is c's confirmation. */
CM_TEST(rule_a_conviction_not_seen_coming_is_an_accusation) {
  cm_node_t *n = with_bcdx();
  struct drive_log l;
  cm_event_t ev;
  cm_addr_t x = addr_of(5);
  memset(&l, 0, sizeof(l));
  accuse(n, CM_MSG_DEAD, "x", 1, "c");
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(info_of(n, "x").incarnation, 1);
  CM_CHECK_EQ(drain_events(n, CM_EV_FAILED, &ev), 0);
  drive(n, T0, T0 + CM_MSEC(400), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_DEAD, "x", NULL, NULL, T0, T0 + CM_SEC(1)),
              0);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "c", NULL, T0, T0 + CM_SEC(1)), 0);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "x", NULL, T0, T0 + CM_SEC(1)), 1);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "x", &x, T0, T0 + CM_SEC(1)),
              1);
  accuse_at(n, CM_MSG_DEAD, "x", 1, "b", T0 + CM_MSEC(400));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(drain_events(n, CM_EV_FAILED, &ev), 0);
  x_fails_at(n, T0 + CM_MSEC(400), T0 + CM_SEC(2), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "x", &x, T0 + CM_MSEC(400),
                         T0 + CM_SEC(2)),
              0);
  CM_CHECK_EQ(
      sent_count(&l, CM_MSG_SUSPECT, "x", "b", NULL, T0, T0 + CM_SEC(6)), 0);
  drive_log_free(&l);
  cm_node_free(n);

  n = with_bcdx();
  accuse(n, CM_MSG_DEAD, "x", 1, "c");
  accuse(n, CM_MSG_SUSPECT, "x", 2, "b");
  CM_CHECK_EQ(info_of(n, "x").incarnation, 1);
  accuse(n, CM_MSG_DEAD, "x", 2, "b");
  CM_CHECK_EQ(info_of(n, "x").incarnation, 2);
  alive_at(n, "x", 2, 5, NULL, 0, T0 + CM_MSEC(10));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  alive_at(n, "x", 3, 5, NULL, 0, T0 + CM_MSEC(20));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_ALIVE);
  cm_node_free(n);

  n = with_bcdx();
  accuse(n, CM_MSG_SUSPECT, "x", 1, "b");
  accuse_at(n, CM_MSG_DEAD, "x", 1, "c", T0 + CM_SEC(1) - 1);
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_SUSPECT);
  CM_CHECK_EQ(drain_events(n, CM_EV_FAILED, &ev), 0);
  accuse_at(n, CM_MSG_DEAD, "x", 1, "d", T0 + CM_SEC(1));
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  CM_CHECK(drain_events(n, CM_EV_FAILED, &ev));
  cm_node_free(n);
}

/* What a conviction from across a cut does, and where the cut ends: about
 * x, suspected by b, c's conviction (c held failed) is c's confirmation,
 * told to x and not relayed, and x fails at timeout(1) = 5.690702 s, not at
 * once and not at max; x's own name, once x is back from failed, confirms
 * nothing (d fails unconfirmed at max, 12 s); a member whose suspicion was
 * refuted, or who left and came back, was never across a cut: their
 * convictions convict. */
CM_TEST(rule_conviction_from_across_a_cut_confirms_and_no_more) {
  cm_node_t *n = with_c_cut_off("x");
  struct drive_log l;
  cm_event_t ev;
  memset(&l, 0, sizeof(l));
  drive(n, T0, T0 + CM_MSEC(400), &l);
  accuse_at(n, CM_MSG_DEAD, "x", 1, "c", T0 + CM_MSEC(500));
  drive(n, T0 + CM_MSEC(500), T0 + CM_MSEC(900), &l);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "c", NULL, T0 + CM_MSEC(500),
                         T0 + CM_MSEC(900)),
              0);
  CM_CHECK_EQ(sent_count(&l, CM_MSG_SUSPECT, "x", "x", NULL, T0 + CM_MSEC(500),
                         T0 + CM_MSEC(900)),
              1);
  x_fails_at(n, T0 + CM_MSEC(900), T0 + 5690702, &l);
  drive_log_free(&l);
  cm_node_free(n);

  /* d back from failed, suspected by b, then "DEAD d from d" */
  n = with_bcdx();
  memset(&l, 0, sizeof(l));
  convict(n, "d", 1, "b");
  drive(n, T0, T0 + CM_SEC(1), &l);
  alive_at(n, "d", 2, 4, NULL, 0, T0 + CM_SEC(1));
  drive(n, T0 + CM_SEC(1), T0 + CM_SEC(2) - 1, &l);
  accuse_at(n, CM_MSG_SUSPECT, "d", 2, "b", T0 + CM_SEC(2));
  accuse_at(n, CM_MSG_DEAD, "d", 2, "d", T0 + CM_SEC(2) + 1);
  drive(n, T0 + CM_SEC(2), T0 + CM_SEC(14) - 1, &l);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_SUSPECT);
  drive_tick(n, T0 + CM_SEC(14), &l);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_FAILED);
  drive_log_free(&l);
  cm_node_free(n);

  /* c suspected and refuted; d left and came back */
  n = with_bcdx();
  accuse(n, CM_MSG_SUSPECT, "c", 1, "b");
  alive(n, "c", 2, 3, NULL, 0);
  leave(n, "d", 1);
  alive(n, "d", 2, 4, NULL, 0);
  CM_CHECK_EQ(state_of(n, "d"), CM_STATE_ALIVE);
  convict(n, "x", 1, "c");
  CM_CHECK_EQ(state_of(n, "x"), CM_STATE_FAILED);
  convict(n, "b", 1, "d");
  CM_CHECK_EQ(state_of(n, "b"), CM_STATE_FAILED);
  CM_CHECK(drain_events(n, CM_EV_FAILED, &ev));
  cm_node_free(n);
}
