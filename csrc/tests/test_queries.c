/*
 * Queries (cm_node_user.c): asked of every member through gossip, answered
 * by an ack and a response each, straight to the origin and through relays,
 * delivered at the origin once per member until the query's time is up.
 */
#include <stdlib.h>

#include "cm_node.h"
#include "cm_sim.h"
#include "cm_test.h"
#include "cm_test_node.h"

#define Q_T0 CM_SEC(100)

static cm_addr_t q_addr(uint32_t i) { return cm_addr_from_index(i, 7946); }

/* A query from origin (known at q_addr(2)) with id qid. */
static cm_msg_t q_query(const char *origin, uint64_t ltime, uint32_t qid,
                        uint32_t timeout_ms) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_QUERY;
  m.u.qry.ltime = ltime;
  m.u.qry.qid = qid;
  CM_CHECK_OK(cm_wire_id_set(&m.u.qry.origin, origin, strlen(origin)));
  m.u.qry.origin_addr = q_addr(2);
  m.u.qry.flags = CM_QUERY_WANT_ACK;
  m.u.qry.timeout_ms = timeout_ms;
  m.u.qry.name = (const uint8_t *)"load";
  m.u.qry.name_len = 4;
  m.u.qry.filter = (const uint8_t *)"role=db";
  m.u.qry.filter_len = 7;
  return m;
}

static cm_msg_t q_reply(const char *from, uint64_t ltime, uint32_t qid,
                        int ack) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_QUERY_RESPONSE;
  m.u.qresp.ltime = ltime;
  m.u.qresp.qid = qid;
  CM_CHECK_OK(cm_wire_id_set(&m.u.qresp.from, from, strlen(from)));
  m.u.qresp.flags = ack ? CM_QRESP_ACK : 0;
  if (!ack) {
    m.u.qresp.payload = (const uint8_t *)from;
    m.u.qresp.payload_len = (uint16_t)strlen(from);
  }
  return m;
}

/* Datagrams n has to send, decoded: how many carry a message of `type`;
 * *to gets the address of the last. */
static int q_sent(cm_node_t *n, uint8_t type, cm_addr_t *to) {
  const uint8_t *d;
  size_t len;
  cm_addr_t a;
  int found = 0;
  while (cm_node_poll_datagram(n, &a, &d, &len)) {
    cm_msg_t msgs[CM_WIRE_MAX_MSGS];
    size_t k, i;
    CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &k));
    for (i = 0; i < k; i++)
      if (msgs[i].type == type) {
        found++;
        if (to != NULL)
          *to = a;
      }
  }
  return found;
}

CM_TEST(query_delivered_with_its_filter_and_answered_once_each_way) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99), to, origin = q_addr(2);
  cm_msg_t q = q_query("o", 9, 42, 5000);
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  cm_tnode_alive(n, "o", 1, &origin, Q_T0);
  q_sent(n, 0, NULL);
  cm_tnode_feed(n, &from, &q, Q_T0);
  cm_tnode_feed(n, &from, &q, Q_T0 + 1); /* a copy */
  CM_CHECK(cm_node_poll_app(n, &m));
  CM_CHECK_EQ(m.kind, CM_APP_QUERY);
  CM_CHECK_EQ(m.qid, 42);
  CM_CHECK_EQ(m.ltime, 9);
  CM_CHECK_STR(m.node, "o");
  CM_CHECK(cm_addr_eq(&m.origin_addr, &origin));
  CM_CHECK_EQ(m.flags, CM_APP_WANT_ACK);
  CM_CHECK_STR(m.name, "load");
  CM_CHECK_EQ(m.filter_len, 7);
  CM_CHECK(memcmp(m.filter, "role=db", 7) == 0);
  CM_CHECK_EQ(m.payload_len, 0);
  CM_CHECK_EQ(m.deadline, Q_T0 + CM_SEC(5));
  CM_CHECK(!cm_node_poll_app(n, &m));
  CM_CHECK_EQ(cm_tnode_stats(n).queries.delivered, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).queries.duplicate, 1);

  CM_CHECK_OK(cm_node_query_respond(n, "o", 42, 1, NULL, 0, Q_T0 + 2));
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, &to), 1);
  CM_CHECK(cm_addr_eq(&to, &origin));
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 1, NULL, 0, Q_T0 + 3),
              CM_EEXIST);
  CM_CHECK_OK(cm_node_query_respond(n, "o", 42, 0, (const uint8_t *)"0.4", 3,
                                    Q_T0 + 4));
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, &to), 1);
  CM_CHECK_EQ(
      cm_node_query_respond(n, "o", 42, 0, (const uint8_t *)"x", 1, Q_T0 + 5),
      CM_EEXIST);
  CM_CHECK_EQ(cm_tnode_stats(n).replies_sent, 2);
  cm_node_free(n);
}

CM_TEST(query_respond_refusals_change_nothing) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99);
  cm_msg_t q = q_query("o", 9, 42, 1000);
  static uint8_t big[2048];
  cm_config_lan(&c);
  c.max_user_event_size = 100;
  c.max_user_event_stream = 1000;
  n = cm_tnode_new(&c, Q_T0);
  {
    cm_addr_t origin = q_addr(2);
    cm_tnode_alive(n, "o", 1, &origin, Q_T0);
  }
  cm_tnode_feed(n, &from, &q, Q_T0);
  CM_CHECK(cm_node_poll_app(n, &m));
  q_sent(n, 0, NULL);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 43, 0, NULL, 0, Q_T0), CM_ENOENT);
  CM_CHECK_EQ(cm_node_query_respond(n, "p", 42, 0, NULL, 0, Q_T0), CM_ENOENT);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 1, big, 1, Q_T0), CM_EINVAL);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 0, NULL, 1, Q_T0), CM_EINVAL);
  CM_CHECK_EQ(cm_node_query_respond(n, "", 42, 0, NULL, 0, Q_T0), CM_EINVAL);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 0, big, 1001, Q_T0),
              CM_ETOOBIG);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 0, NULL, 0, Q_T0 + CM_SEC(1)),
              CM_ETIMEDOUT);
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, NULL), 0);
  CM_CHECK_EQ(cm_tnode_stats(n).replies_sent, 0);
  /* Still answerable in time, once. */
  CM_CHECK_OK(cm_node_query_respond(n, "o", 42, 0, big, 100, Q_T0 + 10));
  CM_CHECK_OK(cm_node_leave(n, Q_T0 + 20));
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 1, NULL, 0, Q_T0 + 30),
              CM_ESTATE);
  cm_node_free(n);
}

/* The origin delivers the first ack and the first response of each member
 * while the query runs; copies, replies to no query of ours, to another
 * time, or late are counted and dropped. Then the query ends, once. */
CM_TEST(query_origin_takes_each_reply_once_until_its_time_is_up) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99);
  cm_msg_t r;
  uint32_t qid = 0;
  int acks = 0, resps = 0, done = 0, i;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  CM_CHECK_OK(cm_node_query(n, "load", 4, NULL, 0, NULL, 0, 1, 0, CM_SEC(2),
                            Q_T0, &qid));
  CM_CHECK(qid != 0);
  CM_CHECK_EQ(cm_node_next_deadline(n) <= Q_T0 + CM_SEC(2), 1);
  /* Its own node gets it too. */
  CM_CHECK(cm_node_poll_app(n, &m));
  CM_CHECK_EQ(m.kind, CM_APP_QUERY);
  CM_CHECK_EQ(m.qid, qid);
  CM_CHECK_STR(m.node, "self");
  for (i = 0; i < 6; i++) { /* the members that answer: a to f */
    char id[2] = {(char)('a' + i), 0};
    cm_addr_t a = q_addr(10 + (uint32_t)i);
    cm_tnode_alive(n, id, 1, &a, Q_T0);
  }
  r = q_reply("a", 0, qid, 1);
  cm_tnode_feed(n, &from, &r, Q_T0 + 1);
  cm_tnode_feed(n, &from, &r, Q_T0 + 2); /* a relayed copy */
  r = q_reply("a", 0, qid, 0);
  cm_tnode_feed(n, &from, &r, Q_T0 + 3);
  r = q_reply("b", 0, qid, 0);
  cm_tnode_feed(n, &from, &r, Q_T0 + 4);
  r = q_reply("b", 0, qid + 1, 0); /* no such query */
  cm_tnode_feed(n, &from, &r, Q_T0 + 5);
  r = q_reply("c", 1, qid, 0); /* another time */
  cm_tnode_feed(n, &from, &r, Q_T0 + 6);
  r = q_reply("d", 0, qid, 1); /* an ack with a payload */
  r.u.qresp.payload = (const uint8_t *)"x";
  r.u.qresp.payload_len = 1;
  cm_tnode_feed(n, &from, &r, Q_T0 + 7);
  /* This node answers its own query: no packet, straight in. */
  CM_CHECK_OK(cm_node_query_respond(n, "self", qid, 0, (const uint8_t *)"me", 2,
                                    Q_T0 + 8));
  while (cm_node_poll_app(n, &m)) {
    CM_CHECK_EQ(m.kind, CM_APP_REPLY);
    CM_CHECK_EQ(m.qid, qid);
    if (m.flags & CM_APP_ACK) {
      acks++;
      CM_CHECK_STR(m.node, "a");
    } else {
      resps++;
      const char *want = strcmp(m.node, "self") == 0 ? "me" : m.node;
      CM_CHECK_EQ(m.payload_len, strlen(want));
      CM_CHECK(memcmp(m.payload, want, m.payload_len) == 0);
    }
  }
  CM_CHECK_EQ(acks, 1);
  CM_CHECK_EQ(resps, 3);
  CM_CHECK_EQ(cm_tnode_stats(n).replies_in, 4);
  CM_CHECK_EQ(cm_tnode_stats(n).reply_duplicate, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).drop_reply, 3);
  /* Time is up: a reply at the deadline is late, even before the tick
   * that ends the query. */
  r = q_reply("e", 0, qid, 0);
  cm_tnode_feed(n, &from, &r, Q_T0 + CM_SEC(2));
  cm_node_tick(n, Q_T0 + CM_SEC(2));
  r = q_reply("f", 0, qid, 0);
  cm_tnode_feed(n, &from, &r, Q_T0 + CM_SEC(2) + 1);
  while (cm_node_poll_app(n, &m)) {
    CM_CHECK_EQ(m.kind, CM_APP_QUERY_DONE);
    CM_CHECK_EQ(m.qid, qid);
    done++;
  }
  CM_CHECK_EQ(done, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).drop_reply, 5);
  CM_CHECK_EQ(cm_tnode_stats(n).queries.sent, 1);
  cm_node_free(n);
}

/* A relay passes a response on only to the address of a live member: no
 * member can be used to reflect packets at any address. */
CM_TEST(query_relay_only_to_a_member) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t from = q_addr(99), to, member = q_addr(2);
  cm_msg_t rel;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  cm_tnode_alive(n, "o", 1, &member, Q_T0);
  q_sent(n, 0, NULL);
  memset(&rel, 0, sizeof(rel));
  rel.type = CM_MSG_QUERY_RELAY;
  rel.u.qrelay.target = q_addr(77);
  rel.u.qrelay.resp = q_reply("r", 3, 5, 0).u.qresp;
  cm_tnode_feed(n, &from, &rel, Q_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).drop_relay, 1);
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, NULL), 0);
  rel.u.qrelay.target = member;
  cm_tnode_feed(n, &from, &rel, Q_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).replies_relayed, 1);
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, &to), 1);
  CM_CHECK(cm_addr_eq(&to, &member));
  cm_node_free(n);
}

/* At most CM_QUERIES_MAX of a node's queries run at once, and each send is
 * within the rate; refusals send nothing. */
CM_TEST(query_bounds_at_the_sender) {
  cm_config_t c;
  cm_node_t *n;
  uint32_t qid;
  int i;
  cm_config_lan(&c);
  c.user_event_rate = 1000;
  n = cm_tnode_new(&c, Q_T0);
  CM_CHECK_EQ(cm_node_query(n, "a b", 3, NULL, 0, NULL, 0, 0, 0, 0, Q_T0, &qid),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 0, 6, 0, Q_T0, &qid),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 0, 0, CM_SEC(3601),
                            Q_T0, &qid),
              CM_EINVAL);
  for (i = 0; i < 64; i++)
    CM_CHECK_OK(cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 0, 0, CM_SEC(1),
                              Q_T0, NULL));
  CM_CHECK_EQ(
      cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 0, 0, CM_SEC(1), Q_T0, &qid),
      CM_ELIMIT);
  CM_CHECK_EQ(cm_tnode_stats(n).queries.sent, 64);
  cm_node_tick(n, Q_T0 + CM_SEC(1));
  CM_CHECK_OK(cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 0, 0, CM_SEC(1),
                            Q_T0 + CM_SEC(1), &qid));
  cm_node_free(n);
}

CM_TEST(query_default_timeout_is_serfs) {
  cm_config_t c;
  cm_config_lan(&c);
  /* 16 x 100 ms x ceil(log10(n + 1)) */
  CM_CHECK_EQ(cm_query_timeout(&c, 1), CM_MSEC(1600));
  CM_CHECK_EQ(cm_query_timeout(&c, 9), CM_MSEC(1600));
  CM_CHECK_EQ(cm_query_timeout(&c, 10), CM_MSEC(3200));
  CM_CHECK_EQ(cm_query_timeout(&c, 99), CM_MSEC(3200));
  CM_CHECK_EQ(cm_query_timeout(&c, 100), CM_MSEC(4800));
}

/* ---- a cluster ----------------------------------------------------------- */

#define Q_NODES 30
#define Q_LARGE 20000

struct q_run {
  uint32_t origin;
  uint32_t qid;
  size_t large; /* answers of this many bytes (0: one byte) */
  int acks, resps, done, extra;
  uint8_t acked[Q_NODES], responded[Q_NODES];
  int delivered[Q_NODES];
};

/* Every node answers the query (an ack and its index); the origin tallies
 * what comes back. */
static void q_drive(cm_sim_t *s, struct q_run *r) {
  uint32_t i;
  for (i = 0; i < Q_NODES; i++) {
    cm_node_t *n = cm_sim_node(s, i);
    cm_app_msg_t m;
    while (cm_node_poll_app(n, &m)) {
      if (m.kind == CM_APP_QUERY && m.qid == r->qid) {
        static uint8_t answer[Q_LARGE];
        char origin[CM_ID_MAX + 1];
        r->delivered[i]++;
        memcpy(origin, m.node, sizeof(origin));
        memset(answer, (int)i, sizeof(answer));
        CM_CHECK_OK(
            cm_node_query_respond(n, origin, m.qid, 1, NULL, 0, cm_sim_now(s)));
        CM_CHECK_OK(cm_node_query_respond(n, origin, m.qid, 0, answer,
                                          r->large ? r->large : 1,
                                          cm_sim_now(s)));
      } else if (m.kind == CM_APP_REPLY && i == r->origin) {
        char id[16];
        uint32_t who;
        CM_CHECK_EQ(sscanf(m.node, "n%u", &who), 1);
        CM_CHECK(who < Q_NODES);
        cm_sim_id(who, id, sizeof(id));
        CM_CHECK_STR(m.node, id);
        if (m.flags & CM_APP_ACK) {
          r->acks++;
          r->acked[who]++;
        } else {
          CM_CHECK_EQ(m.payload_len, r->large ? r->large : 1);
          CM_CHECK_EQ(m.payload[0], who);
          CM_CHECK_EQ(m.payload[m.payload_len - 1], who);
          r->resps++;
          r->responded[who]++;
        }
      } else if (m.kind == CM_APP_QUERY_DONE && i == r->origin) {
        r->done++;
      } else {
        r->extra++;
      }
    }
  }
}

/* Run query r.qid at origin r.origin over s until its default time is up
 * and a second more, every node answering. */
static void q_run(cm_sim_t *s, const cm_sim_config_t *sc, struct q_run *r,
                  uint8_t relay) {
  cm_time_t end;
  CM_CHECK_OK(cm_node_query(cm_sim_node(s, r->origin), "load", 4, NULL, 0,
                            (const uint8_t *)"?", 1, 1, relay, 0, cm_sim_now(s),
                            &r->qid));
  end = cm_sim_now(s) + cm_query_timeout(&sc->node, Q_NODES) + CM_SEC(1);
  while (cm_sim_now(s) < end) {
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(5));
    q_drive(s, r);
  }
}

/* 30 nodes: every member gets the query once and the origin every ack and
 * every response, once each, before the default timeout; then the query
 * ends, once. */
CM_TEST(query_every_member_answers_once) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  struct q_run r;
  uint32_t i;
  cm_sim_config_default(&sc);
  sc.nodes = Q_NODES;
  sc.seed = 33;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(2));
  memset(&r, 0, sizeof(r));
  r.origin = 5;
  q_run(s, &sc, &r, 0);
  for (i = 0; i < Q_NODES; i++) {
    CM_CHECK_EQ(r.delivered[i], 1);
    CM_CHECK_EQ(r.acked[i], 1);
    CM_CHECK_EQ(r.responded[i], 1);
  }
  CM_CHECK_EQ(r.acks, Q_NODES);
  CM_CHECK_EQ(r.resps, Q_NODES);
  CM_CHECK_EQ(r.done, 1);
  CM_CHECK_EQ(r.extra, 0);
  CM_CHECK_EQ(cm_tnode_stats(cm_sim_node(s, r.origin)).reply_duplicate, 0);
  cm_sim_free(s);
}

/* Answers too large for a datagram (20 kB) come on streams, to the origin:
 * every one once, none lost, and nothing taken for a push-pull. */
CM_TEST(query_large_answers_come_on_streams) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  struct q_run r;
  uint64_t streamed = 0;
  uint32_t i;
  cm_sim_config_default(&sc);
  sc.nodes = Q_NODES;
  sc.seed = 34;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(2));
  memset(&r, 0, sizeof(r));
  r.origin = 7;
  r.large = Q_LARGE;
  q_run(s, &sc, &r, 0);
  for (i = 0; i < Q_NODES; i++) {
    cm_node_stats_t st = cm_tnode_stats(cm_sim_node(s, i));
    CM_CHECK_EQ(r.responded[i], 1);
    CM_CHECK_EQ(st.reply_stream_failed, 0);
    CM_CHECK_EQ(st.pushpull_failed + st.drop_pushpull, 0);
    streamed += st.replies_streamed;
  }
  CM_CHECK_EQ(r.resps, Q_NODES);
  CM_CHECK_EQ(r.acks, Q_NODES);
  CM_CHECK_EQ(streamed, Q_NODES - 1); /* the origin answers itself */
  CM_CHECK_EQ(cm_tnode_stats(cm_sim_node(s, r.origin)).drop_reply, 0);
  cm_sim_free(s);
}

/* Drops every packet node `from` sends that holds a QUERY_RESPONSE: its
 * direct answers never arrive; its relay requests do. */
struct q_block {
  uint32_t from;
  int dropped;
};

static size_t q_block_direct(void *ud, uint32_t node, int stream,
                             const uint8_t *in, size_t len, uint8_t *out,
                             size_t cap) {
  struct q_block *b = ud;
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  size_t k, i;
  if (!stream && node == b->from &&
      cm_wire_packet_decode(in, len, msgs, CM_WIRE_MAX_MSGS, &k) == 0)
    for (i = 0; i < k; i++)
      if (msgs[i].type == CM_MSG_QUERY_RESPONSE) {
        b->dropped++;
        return 0;
      }
  CM_CHECK(len <= cap);
  memcpy(out, in, len);
  return len;
}

/* A member whose every direct answer is lost still gets through, by the
 * members it asks to relay; without relays it does not. */
CM_TEST(query_answers_get_through_by_relays) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  struct q_run r;
  struct q_block b = {12, 0};
  int relay;
  for (relay = 0; relay <= 2; relay += 2) {
    cm_node_stats_t st;
    uint64_t relayed = 0;
    uint32_t i;
    cm_sim_config_default(&sc);
    sc.nodes = Q_NODES;
    sc.seed = 34;
    CM_CHECK_OK(cm_sim_new(&s, &sc));
    CM_CHECK_OK(cm_sim_bootstrap(s));
    cm_sim_on_send(s, q_block_direct, &b);
    cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(2));
    memset(&r, 0, sizeof(r));
    r.origin = 5;
    b.dropped = 0;
    q_run(s, &sc, &r, (uint8_t)relay);
    CM_CHECK_EQ(r.delivered[b.from], 1);
    CM_CHECK(b.dropped >= 2); /* the ack and the response, sent direct */
    CM_CHECK_EQ(r.acked[b.from], relay > 0);
    CM_CHECK_EQ(r.responded[b.from], relay > 0);
    CM_CHECK_EQ(r.resps, Q_NODES - (relay > 0 ? 0 : 1));
    for (i = 0; i < Q_NODES; i++) {
      st = cm_tnode_stats(cm_sim_node(s, i));
      relayed += st.replies_relayed;
    }
    /* Every member's two answers through `relay` others each. */
    CM_CHECK(relayed <= (uint64_t)Q_NODES * 2 * (uint64_t)relay);
    CM_CHECK(relay == 0 ? relayed == 0 : relayed >= 2);
    cm_sim_free(s);
  }
}

/* A query whose answers would go anywhere but the asking member's own
 * address is dropped before anyone answers it: no member can be made to
 * aim answers at an arbitrary host. */
CM_TEST(query_answers_only_to_the_askers_address) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99), origin = q_addr(2);
  cm_msg_t q = q_query("o", 9, 42, 5000);
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  cm_tnode_feed(n, &from, &q, Q_T0); /* "o" is no member */
  CM_CHECK(!cm_node_poll_app(n, &m));
  cm_tnode_alive(n, "o", 1, &origin, Q_T0);
  q.u.qry.origin_addr = q_addr(77); /* not o's address */
  cm_tnode_feed(n, &from, &q, Q_T0);
  CM_CHECK(!cm_node_poll_app(n, &m));
  CM_CHECK_EQ(cm_tnode_stats(n).drop_query_origin, 2);
  CM_CHECK_EQ(cm_node_query_respond(n, "o", 42, 1, NULL, 0, Q_T0), CM_ENOENT);
  q.u.qry.origin_addr = origin;
  cm_tnode_feed(n, &from, &q, Q_T0);
  CM_CHECK(cm_node_poll_app(n, &m));
  CM_CHECK_EQ(m.qid, 42);
  cm_node_free(n);
}

/* Answers from ids that are no member are dropped, and one query takes at
 * most two answers a member: a flood of forged answers neither speaks for
 * others nor grows the answer set. */
CM_TEST(query_answers_from_members_only_and_bounded) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99), a = q_addr(2);
  uint32_t qid;
  int i, got = 0;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  cm_tnode_alive(n, "a", 1, &a, Q_T0);
  CM_CHECK_OK(
      cm_node_query(n, "q", 1, NULL, 0, NULL, 0, 1, 0, CM_SEC(5), Q_T0, &qid));
  for (i = 0; i < 1000; i++) {
    char id[16];
    cm_msg_t r;
    snprintf(id, sizeof(id), "x%d", i);
    r = q_reply(id, 0, qid, 1);
    cm_tnode_feed(n, &from, &r, Q_T0 + 1);
  }
  CM_CHECK_EQ(cm_tnode_stats(n).drop_reply, 1000);
  /* The members' answers: a's ack and response, this node's own. */
  {
    cm_msg_t r = q_reply("a", 0, qid, 1);
    cm_tnode_feed(n, &from, &r, Q_T0 + 2);
    r = q_reply("a", 0, qid, 0);
    cm_tnode_feed(n, &from, &r, Q_T0 + 3);
  }
  CM_CHECK_OK(cm_node_query_respond(n, "self", qid, 1, NULL, 0, Q_T0 + 4));
  CM_CHECK_OK(cm_node_query_respond(n, "self", qid, 0, NULL, 0, Q_T0 + 5));
  while (cm_node_poll_app(n, &m))
    got += m.kind == CM_APP_REPLY;
  CM_CHECK_EQ(got, 4);
  /* Two members, two answers each: the set is full. */
  {
    cm_msg_t r = q_reply("a", 0, qid, 0);
    cm_tnode_feed(n, &from, &r, Q_T0 + 6);
  }
  CM_CHECK_EQ(cm_tnode_stats(n).drop_reply, 1001);
  CM_CHECK_EQ(cm_tnode_stats(n).reply_duplicate, 0);
  cm_node_free(n);
}

/* An answer on a stream whose stream fails is counted as such, not as a
 * failed push-pull; a stream answer that cannot be read is dropped. */
CM_TEST(query_stream_answer_failure_and_bad_input_counted) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t m;
  cm_addr_t from = q_addr(99), to;
  cm_msg_t q = q_query("o", 9, 42, 1000);
  static uint8_t big[3000];
  static const uint8_t junk[] = {1, CM_PP_REPLY, 0, 0};
  uint8_t *data = NULL, *reply = NULL;
  size_t len, rlen;
  uint64_t req;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, Q_T0);
  {
    cm_addr_t origin = q_addr(2);
    cm_tnode_alive(n, "o", 1, &origin, Q_T0);
  }
  cm_tnode_feed(n, &from, &q, Q_T0);
  CM_CHECK(cm_node_poll_app(n, &m));
  CM_CHECK_OK(cm_node_query_respond(n, "o", 42, 0, big, sizeof(big), Q_T0));
  CM_CHECK_EQ(q_sent(n, CM_MSG_QUERY_RESPONSE, NULL), 0); /* no datagram */
  CM_CHECK(cm_node_poll_stream(n, &to, &req, &data, &len, NULL));
  CM_CHECK(cm_addr_eq(&to, &q.u.qry.origin_addr));
  CM_CHECK_EQ(cm_wire_stream_kind(data, len), CM_PP_REPLY);
  free(data);
  cm_node_pushpull_failed(n, req, Q_T0 + 1);
  CM_CHECK_EQ(cm_tnode_stats(n).reply_stream_failed, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).pushpull_failed, 0);
  CM_CHECK_EQ(cm_tnode_stats(n).replies_streamed, 1);
  CM_CHECK_EQ(cm_node_handle_pushpull(n, &from, junk, sizeof(junk), Q_T0,
                                      &reply, &rlen),
              CM_ETRUNC);
  CM_CHECK(reply == NULL);
  CM_CHECK_EQ(cm_tnode_stats(n).drop_reply, 1);
  cm_node_free(n);
}
