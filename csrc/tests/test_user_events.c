/*
 * User events (cm_node_user.c): delivered once everywhere, ordered by a
 * Lamport clock, duplicates and stale copies dropped and counted, every
 * bound checked at its edge with nothing changed by what it refuses.
 */
#include <stdlib.h>

#include "cm_node.h"
#include "cm_rand.h"
#include "cm_sim.h"
#include "cm_test.h"
#include "cm_test_node.h"

#define U_T0 CM_SEC(100)

static cm_addr_t u_addr(uint32_t i) { return cm_addr_from_index(i, 7946); }

/* An event from origin at ltime, with a one-byte payload. */
static cm_msg_t u_event(const char *origin, uint64_t ltime, const char *name,
                        const uint8_t *payload, uint16_t len) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_USER_EVENT;
  m.u.uev.ltime = ltime;
  CM_CHECK_OK(cm_wire_id_set(&m.u.uev.origin, origin, strlen(origin)));
  m.u.uev.name = (const uint8_t *)name;
  m.u.uev.name_len = (uint8_t)strlen(name);
  m.u.uev.payload = len > 0 ? payload : NULL;
  m.u.uev.payload_len = len;
  return m;
}

static void u_feed(cm_node_t *n, const char *origin, uint64_t ltime,
                   const char *name, cm_time_t now) {
  cm_addr_t from = u_addr(99);
  uint8_t b = (uint8_t)ltime;
  cm_msg_t m = u_event(origin, ltime, name, &b, 1);
  cm_tnode_feed(n, &from, &m, now);
}

/* What a test keeps of a delivered event (its pointers last only until
 * the next call into the node). */
typedef struct {
  uint64_t ltime;
  size_t payload_len;
  uint8_t p[2]; /* the payload's first bytes */
} u_got_t;

/* The next message for the application, which must be a user event
 * (nothing here sends queries). */
static int u_poll(cm_node_t *n, cm_app_msg_t *m) {
  if (!cm_node_poll_app(n, m))
    return 0;
  CM_CHECK_EQ(m->kind, CM_APP_EVENT);
  return 1;
}

/* Events waiting at n, drained: how many, the first max kept in out. */
static size_t u_drain(cm_node_t *n, u_got_t *out, size_t max) {
  cm_app_msg_t ev;
  size_t k = 0;
  while (u_poll(n, &ev)) {
    if (k < max) {
      memset(&out[k], 0, sizeof(out[k]));
      out[k].ltime = ev.ltime;
      out[k].payload_len = ev.payload_len;
      memcpy(out[k].p, ev.payload, ev.payload_len < 2 ? ev.payload_len : 2);
    }
    k++;
  }
  return k;
}

/* ---- one node, by hand --------------------------------------------------- */

CM_TEST(uev_delivered_once_copies_counted) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t ev;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, U_T0);
  u_feed(n, "a", 5, "deploy", U_T0);
  u_feed(n, "a", 5, "deploy", U_T0 + 1);
  u_feed(n, "a", 5, "deploy", U_T0 + 2);
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.ltime, 5);
  CM_CHECK_STR(ev.node, "a");
  CM_CHECK_STR(ev.name, "deploy");
  CM_CHECK_EQ(ev.name_len, 6);
  CM_CHECK_EQ(ev.payload_len, 1);
  CM_CHECK_EQ(ev.payload[0], 5);
  CM_CHECK_EQ(ev.flags, 0);
  CM_CHECK_EQ(ev.time, U_T0);
  CM_CHECK(!u_poll(n, &ev));
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.duplicate, 2);
  /* Same time and name from another origin, or another payload: a
   * different event. */
  u_feed(n, "b", 5, "deploy", U_T0);
  {
    cm_addr_t from = u_addr(99);
    uint8_t p = 9;
    cm_msg_t m = u_event("a", 5, "deploy", &p, 1);
    cm_tnode_feed(n, &from, &m, U_T0);
  }
  CM_CHECK_EQ(u_drain(n, NULL, 0), 2);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 3);
  cm_node_free(n);
}

CM_TEST(uev_lamport_clock_witnesses_what_arrives) {
  cm_config_t c;
  cm_node_t *n;
  cm_app_msg_t ev;
  uint64_t t;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, U_T0);
  CM_CHECK_OK(cm_node_send_user_event(n, "x", 1, NULL, 0, 0, U_T0, &t));
  CM_CHECK_EQ(t, 0);
  CM_CHECK_OK(cm_node_send_user_event(n, "x", 1, NULL, 0, 0, U_T0, &t));
  CM_CHECK_EQ(t, 1);
  u_feed(n, "a", 1000, "seen", U_T0);
  CM_CHECK_OK(
      cm_node_send_user_event(n, "y", 1, (const uint8_t *)"p", 1, 1, U_T0, &t));
  CM_CHECK_EQ(t, 1001); /* after what it saw */
  /* Its own events are delivered to itself too, in order. */
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.ltime, 0);
  CM_CHECK_STR(ev.node, "self");
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.ltime, 1);
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.ltime, 1000);
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.ltime, 1001);
  CM_CHECK_EQ(ev.flags, CM_APP_COALESCE);
  CM_CHECK_EQ(ev.payload_len, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 3);
  cm_node_free(n);
}

/* Older than the buffer spans, an event could not be told from one
 * forgotten: dropped and counted, as Serf does. So is one older than every
 * record of a full buffer. */
CM_TEST(uev_older_than_the_buffer_dropped) {
  cm_config_t c;
  cm_node_t *n;
  uint64_t i;
  cm_config_lan(&c);
  c.user_event_buffer = 16;
  n = cm_tnode_new(&c, U_T0);
  u_feed(n, "a", 100, "e", U_T0);
  u_feed(n, "a", 84, "e", U_T0); /* 101 - 16 = 85: too old */
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_old, 1);
  u_feed(n, "a", 85, "e", U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_old, 1);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 2);
  /* Fill the buffer with 86..100 (100 and 85 are held): 16 records. */
  for (i = 86; i < 100; i++)
    u_feed(n, "b", i, "e", U_T0 + CM_SEC(i));
  CM_CHECK_EQ(u_drain(n, NULL, 0), 14);
  /* Within the clock's span but below every record: cannot be kept. */
  u_feed(n, "c", 85, "e", U_T0 + CM_SEC(200));
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_old, 2);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 0);
  /* A newer one takes the oldest record's place. */
  u_feed(n, "c", 101, "e", U_T0 + CM_SEC(200));
  CM_CHECK_EQ(u_drain(n, NULL, 0), 1);
  /* And the evicted one (85 from a) is now old by the clock. */
  u_feed(n, "a", 85, "e", U_T0 + CM_SEC(200));
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_old, 3);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 17);
  cm_node_free(n);
}

/* Lamport times at or past 2^47 are refused before the clock sees them;
 * one just below moves the clock there and still leaves it 2^47 sends of
 * room: no message can pin a clock at its end (sends stop only at 2^48). */
CM_TEST(uev_implausible_time_refused) {
  cm_config_t c;
  cm_node_t *n;
  uint64_t t;
  cm_config_lan(&c);
  n = cm_tnode_new(&c, U_T0);
  u_feed(n, "a", UINT64_C(1) << 47, "e", U_T0);
  u_feed(n, "a", UINT64_C(1) << 48, "e", U_T0);
  u_feed(n, "a", UINT64_MAX, "e", U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_ltime, 3);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 0);
  CM_CHECK_OK(cm_node_send_user_event(n, "x", 1, NULL, 0, 0, U_T0, &t));
  CM_CHECK_EQ(t, 0); /* the refused ones moved nothing */
  u_feed(n, "a", (UINT64_C(1) << 47) - 1, "e", U_T0);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 2);
  CM_CHECK_OK(cm_node_send_user_event(n, "x", 1, NULL, 0, 0, U_T0, &t));
  CM_CHECK_EQ(t, UINT64_C(1) << 47);
  cm_node_free(n);
}

/* More events re-sent by one push-pull answer than fit one packet (61
 * small ones: a packet holds at most 60 messages) go out in several. */
CM_TEST(uev_sync_of_more_events_than_a_packet_holds) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint64_t synced = 0;
  uint32_t i;
  int k;
  cm_sim_config_default(&sc);
  sc.nodes = 3;
  sc.seed = 1;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  for (k = 0; k < 61; k++) {
    CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 0), "e", 1, NULL, 0, 0,
                                        cm_sim_now(s), NULL));
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(25));
  }
  cm_sim_run_until(s, cm_sim_now(s) + 2 * cm_pushpull_scaled(&sc.node, 3));
  for (i = 0; i < 3; i++) {
    CM_CHECK_EQ(u_drain(cm_sim_node(s, i), NULL, 0), 61);
    synced += cm_tnode_stats(cm_sim_node(s, i)).events_synced;
  }
  CM_CHECK(synced >= 61);
  cm_sim_free(s);
}

/* Events re-sent by anti-entropy are bounded by their own budget, not the
 * origin's: a member cut off while one origin sent 250 events, within its
 * rate, gets all 250 from the push-pull that follows. */
CM_TEST(uev_sync_burst_is_not_charged_to_the_origin) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint8_t side[5];
  uint32_t cut = 4;
  cm_time_t t0, end;
  size_t got = 0;
  int k;
  cm_sim_config_default(&sc);
  sc.nodes = 5;
  sc.seed = 12;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(2));
  memset(side, 0, sizeof(side));
  side[cut] = 1;
  t0 = cm_sim_now(s);
  CM_CHECK_OK(cm_sim_partition(s, side, t0, t0 + CM_SEC(6), 0));
  for (k = 0; k < 250; k++) {
    CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 0), "tick", 4, NULL, 0,
                                        0, cm_sim_now(s), NULL));
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(21)); /* 48 a second */
  }
  cm_sim_run_until(s, t0 + CM_SEC(6));
  got = u_drain(cm_sim_node(s, cut), NULL, 0);
  end = cm_sim_now(s) + 2 * cm_pushpull_scaled(&sc.node, 5);
  while (cm_sim_now(s) < end && got < 250) {
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(500));
    got += u_drain(cm_sim_node(s, cut), NULL, 0);
  }
  CM_CHECK_EQ(got, 250);
  CM_CHECK_EQ(cm_tnode_stats(cm_sim_node(s, cut)).user_events.drop_rate, 0);
  cm_sim_free(s);
}

/* One origin gets twice the send rate, an honest sender's budget with room
 * to spare; past it, new events are dropped and counted. Others are not
 * affected, and the budget refills with time. */
CM_TEST(uev_flood_from_one_origin_limited) {
  cm_config_t c;
  cm_node_t *n;
  uint64_t i;
  cm_config_lan(&c);
  c.user_event_rate = 10;
  n = cm_tnode_new(&c, U_T0);
  {
    cm_addr_t a = u_addr(2);
    cm_tnode_alive(n, "a", 1, &a, U_T0);
  }
  for (i = 0; i < 30; i++)
    u_feed(n, "a", i, "e", U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 20);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_rate, 10);
  u_feed(n, "b", 30, "e", U_T0); /* a stranger: the shared budget */
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 21);
  u_feed(n, "a", 31, "e", U_T0 + CM_MSEC(100)); /* 2 tokens back */
  u_feed(n, "a", 32, "e", U_T0 + CM_MSEC(100));
  u_feed(n, "a", 33, "e", U_T0 + CM_MSEC(100));
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 23);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_rate, 11);
  /* A copy of one already delivered is a duplicate, not a new event: it
   * costs nothing. */
  u_feed(n, "a", 0, "e", U_T0 + CM_MSEC(100));
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.duplicate, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_rate, 11);
  cm_node_free(n);
}

/* Sizes: the receiver checks name + payload against its limit. */
CM_TEST(uev_over_the_size_limit_dropped) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t from = u_addr(99);
  static uint8_t big[2048];
  cm_msg_t m;
  cm_config_lan(&c);
  c.max_user_event_size = 100;
  n = cm_tnode_new(&c, U_T0);
  m = u_event("a", 1, "ab", big, 98);
  cm_tnode_feed(n, &from, &m, U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 1);
  m = u_event("a", 2, "ab", big, 99);
  cm_tnode_feed(n, &from, &m, U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_size, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 1);
  cm_node_free(n);
}

/* What the sender is told, and that a refusal sends nothing and moves no
 * clock. */
CM_TEST(uev_send_refusals_change_nothing) {
  cm_config_t c;
  cm_node_t *n;
  static uint8_t big[2048];
  char longname[CM_WIRE_MAX_EVENT_NAME + 1];
  uint64_t t = 77;
  int i;
  cm_config_lan(&c);
  c.user_event_rate = 5;
  c.max_user_event_size = 200;
  c.max_user_event_stream = 0; /* datagrams only */
  n = cm_tnode_new(&c, U_T0);
  memset(longname, 'n', sizeof(longname));
  CM_CHECK_EQ(cm_node_send_user_event(n, "a b", 3, NULL, 0, 0, U_T0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_send_user_event(n, "", 0, NULL, 0, 0, U_T0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_send_user_event(n, longname, sizeof(longname), NULL, 0, 0,
                                      U_T0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_send_user_event(n, "e", 1, NULL, 3, 0, U_T0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(cm_node_send_user_event(n, "e", 1, big, 200, 0, U_T0, &t),
              CM_ETOOBIG);
  CM_CHECK_EQ(cm_node_send_user_event(NULL, "e", 1, NULL, 0, 0, U_T0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(t, 77);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_event_queue, 0);
  CM_CHECK_OK(cm_node_send_user_event(n, "e", 1, big, 199, 0, U_T0, &t));
  CM_CHECK_EQ(t, 0);
  for (i = 1; i < 5; i++)
    CM_CHECK_OK(cm_node_send_user_event(n, "e", 1, NULL, 0, 0, U_T0, NULL));
  CM_CHECK_EQ(cm_node_send_user_event(n, "e", 1, NULL, 0, 0, U_T0, &t),
              CM_ELIMIT);
  CM_CHECK_EQ(t, 0);
  CM_CHECK_OK(
      cm_node_send_user_event(n, "e", 1, NULL, 0, 0, U_T0 + CM_MSEC(200), &t));
  CM_CHECK_EQ(t, 5); /* the refused one took no time */
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 6);
  CM_CHECK_OK(cm_node_leave(n, U_T0 + CM_SEC(1)));
  CM_CHECK_EQ(
      cm_node_send_user_event(n, "e", 1, NULL, 0, 0, U_T0 + CM_SEC(2), &t),
      CM_ESTATE);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 6);
  cm_node_free(n);
}

/* A relay is piggybacked up to twice the retransmit limit (nothing
 * repairs a missed event later), then the queue is empty again and the
 * gossip timer idles. */
/* A LAN node at U_T0 that holds members m2..m5 alive. */
static cm_node_t *u_node_with_members(const cm_config_t *c) {
  cm_node_t *n = cm_tnode_new(c, U_T0);
  int i;
  for (i = 2; i < 6; i++) {
    char id[8];
    cm_addr_t a = u_addr((uint32_t)i);
    snprintf(id, sizeof(id), "m%d", i);
    cm_tnode_alive(n, id, 1, &a, U_T0);
  }
  return n;
}

CM_TEST(uev_relayed_up_to_the_retransmit_limit) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t to;
  const uint8_t *d;
  size_t len, sends = 0;
  cm_time_t now = U_T0;
  cm_config_lan(&c);
  n = u_node_with_members(&c);
  /* Let the membership news go first. */
  while (cm_tnode_stats(n).bcast_queue > 0 && now < U_T0 + CM_SEC(60)) {
    now += CM_MSEC(10);
    cm_node_tick(n, now);
    while (cm_node_poll_datagram(n, &to, &d, &len))
      ;
  }
  CM_CHECK_EQ(cm_tnode_stats(n).bcast_queue, 0);
  u_feed(n, "m2", 3, "e", now);
  CM_CHECK_EQ(cm_tnode_stats(n).user_event_queue, 1);
  CM_CHECK(cm_node_next_deadline(n) <= now + c.gossip_interval);
  while (cm_tnode_stats(n).user_event_queue > 0 && now < U_T0 + CM_SEC(120)) {
    now += CM_MSEC(10);
    cm_node_tick(n, now);
    while (cm_node_poll_datagram(n, &to, &d, &len)) {
      cm_msg_t msgs[CM_WIRE_MAX_MSGS];
      size_t k, j;
      CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &k));
      for (j = 0; j < k; j++)
        if (msgs[j].type == CM_MSG_USER_EVENT) {
          CM_CHECK_EQ(msgs[j].u.uev.ltime, 3);
          sends++;
        }
    }
  }
  CM_CHECK_EQ(cm_tnode_stats(n).user_event_queue, 0);
  CM_CHECK_EQ(sends, 2 * cm_retransmit_limit(&c, 5)); /* twice membership's */
  cm_node_free(n);
}

/* The user events in the datagrams n sends until `until`: how many, and
 * how many of them carry CM_UEV_SYNCED. */
static void u_relayed(cm_node_t *n, cm_time_t *now, cm_time_t until,
                      size_t *sent, size_t *synced) {
  cm_addr_t to;
  const uint8_t *d;
  size_t len;
  *sent = *synced = 0;
  while (*now < until) {
    *now += CM_MSEC(10);
    cm_node_tick(n, *now);
    while (cm_node_poll_datagram(n, &to, &d, &len)) {
      cm_msg_t msgs[CM_WIRE_MAX_MSGS];
      size_t k, j;
      CM_CHECK_OK(cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &k));
      for (j = 0; j < k; j++)
        if (msgs[j].type == CM_MSG_USER_EVENT) {
          (*sent)++;
          if (msgs[j].u.uev.flags & CM_UEV_SYNCED)
            (*synced)++;
        }
    }
  }
}

/* An event learnt by anti-entropy is passed on still marked re-sent, so a
 * newcomer does not take it for a fresh one; once a fresh copy of it
 * arrives, it is passed on as fresh. An event learnt by gossip never
 * carries the mark. */
CM_TEST(uev_learnt_by_antientropy_relayed_marked_until_a_fresh_copy) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t from = u_addr(99);
  cm_time_t now = U_T0;
  uint8_t b = 1;
  cm_msg_t m;
  size_t sent, synced;
  cm_config_lan(&c);
  n = u_node_with_members(&c);
  u_relayed(n, &now, now + CM_SEC(30), &sent, &synced); /* membership first */
  m = u_event("m2", 3, "a", &b, 1);
  m.u.uev.flags = CM_UEV_SYNCED;
  cm_tnode_feed(n, &from, &m, now);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 1);
  u_relayed(n, &now, now + c.gossip_interval * 2, &sent, &synced);
  CM_CHECK(sent > 0);
  CM_CHECK_EQ(synced, sent);
  m.u.uev.flags = 0; /* the same event, fresh */
  cm_tnode_feed(n, &from, &m, now);
  CM_CHECK_EQ(u_drain(n, NULL, 0), 0);
  u_relayed(n, &now, now + c.gossip_interval * 2, &sent, &synced);
  CM_CHECK(sent > 0);
  CM_CHECK_EQ(synced, 0);
  u_feed(n, "m3", 4, "b", now); /* by gossip */
  u_relayed(n, &now, now + CM_SEC(30), &sent, &synced);
  CM_CHECK(sent > 0);
  CM_CHECK_EQ(synced, 0);
  cm_node_free(n);
}

/* ---- a cluster ----------------------------------------------------------- */

#define U_NODES 50
#define U_PER_SENDER 20

static int u_all_alive(cm_sim_t *s, void *ud) {
  uint32_t i;
  (void)ud;
  for (i = 0; i < cm_sim_size(s); i++) {
    cm_node_stats_t st;
    cm_node_stats(cm_sim_node(s, i), &st);
    if (st.alive != cm_sim_size(s))
      return 0;
  }
  return 1;
}

/* With 10% of datagrams lost, every member gets every event, exactly once:
 * two senders, 20 events each, 50 nodes. */
CM_TEST(uev_every_member_once_under_loss) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint32_t i, senders[2] = {3, 41};
  uint64_t dups = 0;
  int k;
  cm_sim_config_default(&sc);
  sc.nodes = U_NODES;
  sc.seed = 21;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), u_all_alive, NULL));
  cm_sim_set_loss(s, 0.10);
  for (k = 0; k < U_PER_SENDER; k++) {
    for (i = 0; i < 2; i++) {
      uint8_t p[2] = {(uint8_t)i, (uint8_t)k};
      CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, senders[i]), "tick", 4,
                                          p, 2, 0, cm_sim_now(s), NULL));
    }
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(37));
  }
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(20));
  for (i = 0; i < U_NODES; i++) {
    cm_node_t *n = cm_sim_node(s, i);
    u_got_t ev[2 * U_PER_SENDER + 1];
    uint8_t seen[2][U_PER_SENDER];
    size_t got = u_drain(n, ev, 2 * U_PER_SENDER + 1), j;
    cm_node_stats_t st = cm_tnode_stats(n);
    CM_CHECK_EQ(got, 2 * U_PER_SENDER);
    memset(seen, 0, sizeof(seen));
    for (j = 0; j < got; j++) {
      CM_CHECK_EQ(ev[j].payload_len, 2);
      CM_CHECK(ev[j].p[0] < 2 && ev[j].p[1] < U_PER_SENDER);
      seen[ev[j].p[0]][ev[j].p[1]]++;
    }
    for (j = 0; j < 2 * U_PER_SENDER; j++)
      CM_CHECK_EQ(seen[j / U_PER_SENDER][j % U_PER_SENDER], 1);
    CM_CHECK_EQ(
        st.user_events.drop_old + st.user_events.drop_rate + st.app_dropped, 0);
    CM_CHECK_EQ(st.failures_declared, 0);
    dups += st.user_events.duplicate;
  }
  CM_CHECK(dups > 0); /* copies arrived, and were recognised */
  cm_sim_free(s);
}

/* An event sent by a node that has seen another comes after it, wherever
 * the two are compared. */
CM_TEST(uev_causal_order_in_a_cluster) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  cm_app_msg_t ev;
  uint64_t t1 = 0, t2 = 0;
  uint32_t i;
  cm_sim_config_default(&sc);
  sc.nodes = 10;
  sc.seed = 5;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  for (i = 0; i < 5; i++) /* move node 2's clock ahead of the others' */
    CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 2), "warm", 4, NULL, 0,
                                        0, cm_sim_now(s), NULL));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  for (i = 0; i < 10; i++)
    u_drain(cm_sim_node(s, i), NULL, 0);
  CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 2), "first", 5, NULL, 0, 0,
                                      cm_sim_now(s), &t1));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  CM_CHECK(u_poll(cm_sim_node(s, 7), &ev));
  CM_CHECK_STR(ev.name, "first");
  CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 7), "second", 6, NULL, 0,
                                      0, cm_sim_now(s), &t2));
  CM_CHECK(t2 > t1);
  cm_sim_free(s);
}

/* A member cut off while an event spread gets it afterwards from a peer's
 * answer to its periodic push-pull (anti-entropy), once; a member that
 * joins after the event never gets it. */
CM_TEST(uev_missed_event_comes_by_pushpull_not_replayed_to_newcomers) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint8_t side[20];
  uint32_t i, cut = 7, late = 19;
  cm_time_t t0, end;
  uint64_t synced = 0;
  int got[20];
  cm_sim_config_default(&sc);
  sc.nodes = 20;
  sc.seed = 8;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  for (i = 1; i < late; i++)
    CM_CHECK_OK(cm_sim_join(s, i, 0));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(30));
  for (i = 0; i < late; i++) {
    cm_node_stats_t st = cm_tnode_stats(cm_sim_node(s, i));
    CM_CHECK_EQ(st.alive, late);
  }
  /* Cut `cut` off for 4 s, the event's whole spread. */
  memset(side, 0, sizeof(side));
  side[cut] = 1;
  t0 = cm_sim_now(s);
  CM_CHECK_OK(cm_sim_partition(s, side, t0, t0 + CM_SEC(4), 0));
  CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 3), "deploy", 6,
                                      (const uint8_t *)"v2", 2, 0,
                                      cm_sim_now(s), NULL));
  cm_sim_run_until(s, t0 + CM_SEC(4));
  CM_CHECK_EQ(u_drain(cm_sim_node(s, cut), NULL, 0), 0); /* missed it */
  CM_CHECK_OK(cm_sim_join(s, late, 0));
  /* Two push-pull intervals: the cut-off member asks someone in one. */
  end = cm_sim_now(s) + 2 * cm_pushpull_scaled(&sc.node, 20);
  memset(got, 0, sizeof(got));
  got[cut] = 0;
  while (cm_sim_now(s) < end) {
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(100));
    for (i = 0; i < 20; i++)
      got[i] += (int)u_drain(cm_sim_node(s, i), NULL, 0);
  }
  CM_CHECK_EQ(got[cut], 1);
  CM_CHECK_EQ(got[late], 0);
  for (i = 0; i < late; i++)
    CM_CHECK_EQ(got[i], 1); /* and nobody twice */
  for (i = 0; i < 20; i++)
    synced += cm_tnode_stats(cm_sim_node(s, i)).events_synced;
  CM_CHECK(synced > 0);
  CM_CHECK(cm_tnode_stats(cm_sim_node(s, late)).events_before_join > 0);
  cm_sim_free(s);
}

/* ---- clocks across restarts, and at their end ------------------------- */

static size_t r_drain(cm_node_t *n, uint8_t kind) {
  cm_app_msg_t m;
  size_t k = 0;
  while (cm_node_poll_app(n, &m))
    if (m.kind == kind)
      k++;
  return k;
}

static int r_all_alive(cm_sim_t *s, void *ud) {
  uint32_t i, want = *(uint32_t *)ud;
  for (i = 0; i < cm_sim_size(s); i++) {
    cm_node_t *n = cm_sim_node(s, i);
    cm_node_stats_t st;
    if (n == NULL)
      return 0;
    cm_node_stats(n, &st);
    if (st.alive != want)
      return 0;
  }
  return 1;
}

/* A restarted member starts its Lamport clocks at 0; the first push-pull
 * (its join) gives it the cluster's, so after more than user_event_buffer
 * events in the cluster's life its own events are not too old for anyone. */
CM_TEST(uev_restarted_member_takes_the_clusters_clock) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint32_t i, five = 5;
  int k;
  size_t got = 0;
  uint64_t old = 0;
  cm_sim_config_default(&sc);
  sc.nodes = 5;
  sc.seed = 3;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  /* 600 events from node 0, at 40 a second (below user_event_rate). */
  for (k = 0; k < 600; k++) {
    static const uint8_t pad[40];
    CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 0), "tick", 4, pad, 40,
                                        0, cm_sim_now(s), NULL));
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(25));
  }
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  for (i = 0; i < 5; i++)
    CM_CHECK_EQ(r_drain(cm_sim_node(s, i), CM_APP_EVENT), 600);
  CM_CHECK_OK(cm_sim_crash(s, 4));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(1));
  CM_CHECK_OK(cm_sim_restart(s, 4, 0));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(60), r_all_alive, &five));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(10));
  for (i = 0; i < 5; i++) {
    r_drain(cm_sim_node(s, i), CM_APP_EVENT);
    if (i < 4)
      old += cm_tnode_stats(cm_sim_node(s, i)).user_events.drop_old;
  }
  CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 4), "hello", 5, NULL, 0, 0,
                                      cm_sim_now(s), NULL));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(10));
  for (i = 0; i < 4; i++) {
    got += r_drain(cm_sim_node(s, i), CM_APP_EVENT);
    old -= cm_tnode_stats(cm_sim_node(s, i)).user_events.drop_old;
  }
  CM_CHECK_EQ(got, 4);
  CM_CHECK_EQ(old, 0); /* none of its copies was taken for too old */
  cm_sim_free(s);
}

/* The same for queries: a restarted member asks, every member gets it. */
CM_TEST(query_restarted_member_takes_the_clusters_clock) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  uint32_t i, five = 5, qid;
  int k;
  size_t asked = 0;
  cm_sim_config_default(&sc);
  sc.nodes = 5;
  sc.seed = 4;
  sc.node.user_event_buffer = 16; /* 512 queries otherwise; same effect */
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  for (k = 0; k < 40; k++) {
    CM_CHECK_OK(cm_node_query(cm_sim_node(s, 0), "q", 1, NULL, 0, NULL, 0, 1, 0,
                              CM_MSEC(500), cm_sim_now(s), NULL));
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(50));
  }
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(3));
  for (i = 0; i < 5; i++)
    r_drain(cm_sim_node(s, i), CM_APP_QUERY);
  CM_CHECK_OK(cm_sim_crash(s, 4));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(1));
  CM_CHECK_OK(cm_sim_restart(s, 4, 0));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(60), r_all_alive, &five));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(10));
  CM_CHECK_OK(cm_node_query(cm_sim_node(s, 4), "keys", 4, NULL, 0, NULL, 0, 1,
                            0, CM_SEC(2), cm_sim_now(s), &qid));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(3));
  for (i = 0; i < 4; i++)
    asked += r_drain(cm_sim_node(s, i), CM_APP_QUERY);
  CM_CHECK_EQ(asked, 4);
  cm_sim_free(s);
}

/* One event at the highest time accepted, from one key holder, spreads;
 * every member can still send (the clocks keep 2^47 of room). */
CM_TEST(uev_no_message_pins_the_clocks) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  cm_msg_t m;
  cm_addr_t from = cm_sim_addr(2);
  uint32_t i;
  int refused = 0;
  cm_sim_config_default(&sc);
  sc.nodes = 5;
  sc.seed = 9;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(2));
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_USER_EVENT;
  m.u.uev.ltime = (UINT64_C(1) << 47) - 1;
  CM_CHECK_OK(cm_wire_id_set(&m.u.uev.origin, "mallory", 7));
  m.u.uev.name = (const uint8_t *)"x";
  m.u.uev.name_len = 1;
  cm_tnode_feed(cm_sim_node(s, 1), &from, &m, cm_sim_now(s));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  for (i = 0; i < 5; i++) {
    int rc = cm_node_send_user_event(cm_sim_node(s, i), "deploy", 6, NULL, 0, 0,
                                     cm_sim_now(s), NULL);
    refused += rc == CM_ELIMIT;
  }
  CM_CHECK_EQ(refused, 0);
  cm_sim_free(s);
}

/* ---- payloads on streams (USER_EVENT_REF, FETCH) ------------------------- */

/* A reference to a payload of `size` bytes whose digest is `pdigest`. */
static cm_msg_t u_ref(const char *origin, uint64_t ltime, const char *name,
                      uint8_t ref[CM_UEV_REF_LEN], uint32_t size,
                      uint64_t pdigest) {
  cm_msg_t m = u_event(origin, ltime, name, ref, CM_UEV_REF_LEN);
  int i;
  m.type = CM_MSG_USER_EVENT_REF;
  for (i = 3; i >= 0; i--, size >>= 8)
    ref[i] = (uint8_t)size;
  for (i = 11; i >= 4; i--, pdigest >>= 8)
    ref[i] = (uint8_t)pdigest;
  return m;
}

/* FNV-1a as the core computes a payload's digest. */
static uint64_t u_fnv(const uint8_t *p, size_t len) {
  uint64_t h = UINT64_C(14695981039346656037);
  size_t i;
  for (i = 0; i < len; i++)
    h = (h ^ p[i]) * UINT64_C(1099511628211);
  return (h ^ 0xff) * UINT64_C(1099511628211);
}

/* 1 if n has a stream request queued (taken and freed). */
static int u_stream_queued(cm_node_t *n) {
  cm_addr_t to;
  uint64_t req;
  uint8_t *data;
  size_t len;
  if (!cm_node_poll_stream(n, &to, &req, &data, &len, NULL))
    return 0;
  free(data);
  return 1;
}

/* The one stream request n has queued: its target, id and FETCH fields. */
static uint64_t u_fetch_out(cm_node_t *n, cm_addr_t *to, uint64_t *ltime) {
  uint64_t req = 0, digest;
  uint8_t *data;
  size_t len;
  cm_wire_id_t origin;
  CM_CHECK(cm_node_poll_stream(n, to, &req, &data, &len, NULL));
  CM_CHECK_OK(cm_wire_fetch_decode(data, len, ltime, &origin, &digest));
  free(data);
  CM_CHECK(!u_stream_queued(n));
  return req;
}

/* Answer request req with a FETCHED; what the node said of it. */
static int u_fetched(cm_node_t *n, uint64_t req, uint8_t status,
                     const uint8_t *p, uint32_t len, cm_time_t now) {
  cm_wbuf_t w;
  int rc;
  w.cap = CM_WIRE_FETCHED_HDR + len;
  w.len = 0;
  w.p = malloc(w.cap);
  CM_CHECK(w.p != NULL);
  CM_CHECK_OK(cm_wire_fetched_encode(&w, status, p, len));
  rc = cm_node_pushpull_reply(n, req, w.p, w.len, now);
  free(w.p);
  return rc;
}

/* A reference is fetched from the member that sent it; one that does not
 * hold it, or answers with another payload, costs only that try: the next
 * member that tells of it is asked, and the event is delivered once, with
 * the payload the reference names. */
CM_TEST(uev_stream_fetch_tries_each_source_until_the_payload_checks) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t a = u_addr(7), b = u_addr(8), to;
  static uint8_t payload[5000], wrong[5000];
  uint8_t ref[CM_UEV_REF_LEN];
  uint64_t req, lt;
  cm_app_msg_t ev;
  cm_msg_t m;
  size_t i;
  for (i = 0; i < sizeof(payload); i++) {
    payload[i] = (uint8_t)(i * 7);
    wrong[i] = (uint8_t)(i * 7 + (i == 4321));
  }
  cm_config_lan(&c);
  n = cm_tnode_new(&c, U_T0);
  m = u_ref("far", 5, "blob", ref, sizeof(payload), u_fnv(payload, 5000));
  cm_tnode_feed(n, &a, &m, U_T0);
  CM_CHECK(!cm_node_poll_app(n, &ev)); /* not before its payload */
  req = u_fetch_out(n, &to, &lt);
  CM_CHECK(cm_addr_eq(&to, &a) && lt == 5);
  CM_CHECK_OK(u_fetched(n, req, CM_FETCH_NOT_HELD, NULL, 0, U_T0));
  CM_CHECK_EQ(cm_tnode_stats(n).fetch_failed, 1);
  /* b tells of it too: asked next; its payload is not the one named. */
  cm_tnode_feed(n, &b, &m, U_T0 + 10);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.duplicate, 1);
  req = u_fetch_out(n, &to, &lt);
  CM_CHECK(cm_addr_eq(&to, &b));
  CM_CHECK_EQ(u_fetched(n, req, CM_FETCH_HELD, wrong, sizeof(wrong), U_T0 + 20),
              CM_EBADMSG);
  CM_CHECK_EQ(cm_tnode_stats(n).fetch_failed, 2);
  CM_CHECK(!cm_node_poll_app(n, &ev));
  /* a again, now holding it (a request that failed may be retried). */
  cm_tnode_feed(n, &a, &m, U_T0 + 30);
  req = u_fetch_out(n, &to, &lt);
  CM_CHECK(cm_addr_eq(&to, &a));
  CM_CHECK_OK(
      u_fetched(n, req, CM_FETCH_HELD, payload, sizeof(payload), U_T0 + 40));
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_STR(ev.name, "blob");
  CM_CHECK_EQ(ev.payload_len, sizeof(payload));
  CM_CHECK(memcmp(ev.payload, payload, sizeof(payload)) == 0);
  CM_CHECK(!cm_node_poll_app(n, &ev));
  CM_CHECK_EQ(cm_tnode_stats(n).events_fetched, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.delivered, 1);
  /* A late answer to a finished fetch, and later copies: nothing more. */
  /* (req is no fetch's now: read as a push-pull reply, and refused) */
  CM_CHECK(u_fetched(n, req, CM_FETCH_HELD, payload, sizeof(payload),
                     U_T0 + 50) != 0);
  cm_tnode_feed(n, &b, &m, U_T0 + 60);
  CM_CHECK(!cm_node_poll_app(n, &ev));
  CM_CHECK(!u_stream_queued(n));
  /* It is relayed now, as a reference (only a node holding it tells). */
  CM_CHECK_EQ(cm_tnode_stats(n).user_event_queue, 1);
  cm_node_free(n);
}

/* A node serves the payloads it holds, and says so when it does not. */
static void u_serve(cm_node_t *n, const char *origin, uint64_t ltime,
                    uint64_t digest, uint8_t want, uint32_t want_len) {
  cm_wire_id_t id;
  uint8_t buf[64], *reply = NULL, status;
  const uint8_t *p;
  uint32_t plen;
  size_t rlen = 0;
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  CM_CHECK_OK(cm_wire_id_set(&id, origin, strlen(origin)));
  CM_CHECK_OK(cm_wire_fetch_encode(&w, ltime, &id, digest));
  CM_CHECK_OK(
      cm_node_handle_pushpull(n, NULL, buf, w.len, U_T0, &reply, &rlen));
  CM_CHECK_OK(cm_wire_fetched_decode(reply, rlen, &status, &p, &plen));
  CM_CHECK_EQ(status, want);
  CM_CHECK_EQ(plen, want_len);
  free(reply);
}

/* Payloads kept are bounded by user_event_store: the oldest are forgotten
 * (no longer served or relayed), the newest kept. A sender never pushes out
 * one of its own payloads still being passed on: it is told to wait
 * (CM_ELIMIT) until that one has had its turn (twice the retransmit
 * limit's gossip rounds; 0.8 s for a node alone). Sizes past the limits are
 * refused; nothing is sent by a refusal. */
CM_TEST(uev_stream_store_bounded_and_limits_refused) {
  cm_config_t c;
  cm_node_t *n;
  static uint8_t p[3][40000];
  uint64_t t[3];
  const char *self = "self"; /* cm_tnode_new's id */
  cm_node_stats_t st;
  int i;
  cm_config_lan(&c);
  c.max_user_event_stream = 40000;
  c.user_event_store = 80000;
  n = cm_tnode_new(&c, U_T0);
  for (i = 0; i < 3; i++)
    memset(p[i], 'a' + i, sizeof(p[i]));
  for (i = 0; i < 2; i++)
    CM_CHECK_OK(cm_node_send_user_event(n, "big", 3, p[i], sizeof(p[i]), 0,
                                        U_T0 + i, &t[i]));
  CM_CHECK_EQ(cm_node_send_user_event(n, "big", 3, p[2], sizeof(p[2]), 0,
                                      U_T0 + CM_MSEC(799), &t[2]),
              CM_ELIMIT);
  CM_CHECK_EQ(cm_tnode_stats(n).payloads_forgotten, 0);
  CM_CHECK_OK(cm_node_send_user_event(n, "big", 3, p[2], sizeof(p[2]), 0,
                                      U_T0 + CM_MSEC(800), &t[2]));
  st = cm_tnode_stats(n);
  CM_CHECK_EQ(st.user_events.sent, 3);
  CM_CHECK_EQ(st.payloads_forgotten, 1);
  u_serve(n, self, t[0], u_fnv(p[0], 40000), CM_FETCH_NOT_HELD, 0);
  u_serve(n, self, t[1], u_fnv(p[1], 40000), CM_FETCH_HELD, 40000);
  u_serve(n, self, t[2], u_fnv(p[2], 40000), CM_FETCH_HELD, 40000);
  u_serve(n, self, t[2], u_fnv(p[1], 40000), CM_FETCH_NOT_HELD, 0);
  u_serve(n, "other", t[2], u_fnv(p[2], 40000), CM_FETCH_NOT_HELD, 0);
  CM_CHECK_EQ(cm_tnode_stats(n).events_served, 2);
  /* Over the stream limit: refused, no time taken. */
  CM_CHECK_EQ(cm_node_send_user_event(n, "big", 3, p[0], 40001, 0,
                                      U_T0 + CM_SEC(1), &t[0]),
              CM_ETOOBIG);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 3);
  cm_node_free(n);
}

/* References that cannot be right are dropped and counted, and a FETCH
 * that cannot be read is refused: nothing kept, nothing asked. */
CM_TEST(uev_stream_bad_references_and_requests_change_nothing) {
  cm_config_t c;
  cm_node_t *n;
  cm_addr_t a = u_addr(7);
  uint8_t ref[CM_UEV_REF_LEN], *reply = NULL;
  static const uint8_t junk[] = {1, CM_PP_FETCH, 0, 0, 0};
  size_t rlen;
  cm_msg_t m;
  cm_config_lan(&c);
  c.max_user_event_stream = 1000;
  n = cm_tnode_new(&c, U_T0);
  m = u_ref("far", 1, "x", ref, 1001, 5); /* over the limit */
  cm_tnode_feed(n, &a, &m, U_T0);
  m = u_ref("far", 2, "x", ref, 0, 5); /* empty */
  cm_tnode_feed(n, &a, &m, U_T0);
  m = u_ref("far", 3, "x", ref, 10, 5);
  m.u.uev.payload_len = CM_UEV_REF_LEN - 1; /* not a reference */
  cm_tnode_feed(n, &a, &m, U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_size, 3);
  CM_CHECK(!u_stream_queued(n));
  CM_CHECK_EQ(
      cm_node_handle_pushpull(n, &a, junk, sizeof(junk), U_T0, &reply, &rlen),
      CM_ETRUNC);
  CM_CHECK(reply == NULL);
  CM_CHECK_EQ(cm_tnode_stats(n).drop_pushpull, 1);
  /* A reference with streams turned off is over the limit too. */
  cm_node_free(n);
  c.max_user_event_stream = 0;
  n = cm_tnode_new(&c, U_T0);
  m = u_ref("far", 1, "x", ref, 10, 5);
  cm_tnode_feed(n, &a, &m, U_T0);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.drop_size, 1);
  CM_CHECK_EQ(cm_node_send_user_event(n, "x", 1, junk, 1024, 0, U_T0, NULL),
              CM_ETOOBIG);
  cm_node_free(n);
}

/* In a cluster, a 200 kB event reaches every member once, intact, each
 * fetching it from a member that told it (one fetch a member), also with
 * 10% of datagrams lost. */
CM_TEST(uev_stream_payload_reaches_every_member_once) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  static uint8_t big[200000];
  uint64_t fetched = 0, served = 0;
  uint32_t i;
  int round;
  for (i = 0; i < sizeof(big); i++)
    big[i] = (uint8_t)(i ^ (i >> 8));
  cm_sim_config_default(&sc);
  sc.nodes = 20;
  sc.seed = 9;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), u_all_alive, NULL));
  for (round = 0; round < 2; round++) {
    if (round == 1)
      cm_sim_set_loss(s, 0.10);
    big[0] = (uint8_t)round;
    CM_CHECK_OK(cm_node_send_user_event(cm_sim_node(s, 3), "big", 3, big,
                                        sizeof(big), 0, cm_sim_now(s), NULL));
    cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(20));
    for (i = 0; i < sc.nodes; i++) {
      cm_app_msg_t ev;
      CM_CHECK(u_poll(cm_sim_node(s, i), &ev));
      CM_CHECK_EQ(ev.payload_len, sizeof(big));
      CM_CHECK(memcmp(ev.payload, big, sizeof(big)) == 0);
      CM_CHECK(!cm_node_poll_app(cm_sim_node(s, i), &ev));
    }
  }
  for (i = 0; i < sc.nodes; i++) {
    cm_node_stats_t st = cm_tnode_stats(cm_sim_node(s, i));
    fetched += st.events_fetched;
    served += st.events_served;
    CM_CHECK_EQ(st.failures_declared, 0);
  }
  CM_CHECK_EQ(fetched, 2 * (sc.nodes - 1));
  CM_CHECK_EQ(served, fetched); /* every payload served was taken */
  cm_sim_free(s);
}

/* Four members that told of an event and no longer hold it fill the
 * fetch's list of sources; a fifth that holds it is still asked (the
 * oldest source tried makes room), and the event is delivered. */
CM_TEST(uev_stream_fetch_source_list_full_still_asks_a_new_one) {
  cm_config_t c;
  cm_node_t *n;
  static uint8_t payload[3000];
  uint8_t ref[CM_UEV_REF_LEN];
  cm_addr_t to, e = u_addr(20);
  uint64_t req, lt;
  cm_app_msg_t ev;
  cm_msg_t m;
  uint32_t k;
  memset(payload, 'p', sizeof(payload));
  cm_config_lan(&c);
  n = cm_tnode_new(&c, U_T0);
  m = u_ref("far", 5, "blob", ref, sizeof(payload), u_fnv(payload, 3000));
  for (k = 0; k < 4; k++) { /* the list holds 4 (CM_FETCH_SOURCES) */
    cm_addr_t a = u_addr(10 + k);
    cm_tnode_feed(n, &a, &m, U_T0 + k * 10);
    req = u_fetch_out(n, &to, &lt);
    CM_CHECK(cm_addr_eq(&to, &a));
    CM_CHECK_OK(
        u_fetched(n, req, CM_FETCH_NOT_HELD, NULL, 0, U_T0 + k * 10 + 1));
  }
  cm_tnode_feed(n, &e, &m, U_T0 + CM_SEC(1));
  req = u_fetch_out(n, &to, &lt);
  CM_CHECK(cm_addr_eq(&to, &e));
  CM_CHECK_OK(u_fetched(n, req, CM_FETCH_HELD, payload, sizeof(payload),
                        U_T0 + CM_SEC(1) + 1));
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_EQ(ev.payload_len, sizeof(payload));
  CM_CHECK_EQ(cm_tnode_stats(n).events_fetched, 1);
  cm_node_free(n);
}

/* An event whose name alone is over max_user_event_size has no payload to
 * put on a stream: refused, not sent as a reference to nothing. */
CM_TEST(uev_stream_name_alone_over_the_limit_refused) {
  cm_config_t c;
  cm_node_t *n;
  static const char name[] = "a-rather-long-event-name-of-forty-bytes!";
  cm_config_lan(&c);
  c.max_user_event_size = 16;
  n = cm_tnode_new(&c, U_T0);
  CM_CHECK_EQ(
      cm_node_send_user_event(n, name, strlen(name), NULL, 0, 0, U_T0, NULL),
      CM_ETOOBIG);
  CM_CHECK_EQ(cm_tnode_stats(n).user_events.sent, 0);
  cm_node_free(n);
}

/* Sends, references, fetches that succeed or fail, store and buffer
 * evictions in a random mix: the payloads held always add up to what the
 * store counts, within user_event_store (cm_tnode_stats checks the
 * invariants after every step). */
CM_TEST(uev_stream_store_accounting_under_a_random_mix) {
  cm_config_t c;
  cm_node_t *n;
  static uint8_t p[5000];
  uint8_t ref[CM_UEV_REF_LEN];
  cm_rand_t rng;
  uint64_t clock = 0;
  uint32_t k;
  cm_app_msg_t ev;
  cm_config_lan(&c);
  c.user_event_buffer = 16;
  c.max_user_event_stream = 5000;
  c.user_event_store = 12000;
  c.user_event_rate = 100000;
  n = cm_tnode_new(&c, U_T0);
  cm_rand_seed(&rng, 7);
  for (k = 0; k < 3000; k++) {
    cm_time_t now = U_T0 + k * CM_MSEC(10);
    uint32_t len = 1100 + (uint32_t)(cm_rand_next(&rng) % 3900);
    cm_addr_t a = u_addr(10 + (uint32_t)(cm_rand_next(&rng) % 3)), to;
    uint64_t req, t;
    uint8_t *d;
    size_t l;
    memset(p, (int)k, len);
    if (cm_rand_next(&rng) % 3 == 0) {
      int rc = cm_node_send_user_event(n, "s", 1, p, len, 0, now, &t);
      CM_CHECK(rc == 0 || rc == CM_ELIMIT); /* (its own still relayed) */
      if (rc == 0)
        clock = t + 1;
    } else {
      cm_msg_t m = u_ref("far", clock + cm_rand_next(&rng) % 4, "x", ref, len,
                         u_fnv(p, len));
      cm_tnode_feed(n, &a, &m, now);
    }
    while (cm_node_poll_stream(n, &to, &req, &d, &l, NULL)) {
      free(d);
      if (cm_rand_next(&rng) % 2)
        (void)u_fetched(n, req, CM_FETCH_HELD, p, len, now + 1);
      else
        cm_node_pushpull_failed(n, req, now + 1);
    }
    while (cm_node_poll_app(n, &ev))
      ;
    if (k % 10 == 0)
      (void)cm_tnode_stats(n);
  }
  CM_CHECK(cm_tnode_stats(n).payloads_forgotten > 0);
  CM_CHECK(cm_tnode_stats(n).events_fetched > 0);
  cm_node_free(n);
}

#define U_BURST 120

/* A burst of large events past the stores: 120 of 64 KiB (7.5 MiB) into
 * 4 MiB stores (64 payloads, the defaults' ratio), 40 from three members,
 * then 80 from a fourth. A sender whose own payloads, still having their
 * turn, fill its store is told to wait (it sends again 100 ms later); a
 * member with no room left delivers what it fetched without keeping it, and
 * passes the reference on; members that forgot a payload send those who
 * ask to the next source, its origin last. Every member gets every event,
 * once. */
CM_TEST(uev_stream_burst_past_the_store_reaches_everyone) {
  cm_sim_config_t sc;
  cm_sim_t *s = NULL;
  static uint8_t big[1 << 16];
  uint32_t i, k, waits = 0;
  cm_sim_config_default(&sc);
  sc.nodes = 20;
  sc.seed = 5;
  sc.node.user_event_store = 4u << 20;
  sc.node.max_user_event_stream = 1u << 16;
  CM_CHECK_OK(cm_sim_new(&s, &sc));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), u_all_alive, NULL));
  for (k = 0; k < U_BURST;) {
    int rc;
    memset(big, (int)k, sizeof(big));
    rc = cm_node_send_user_event(cm_sim_node(s, k < 40 ? k % 3 : 3), "big", 3,
                                 big, sizeof(big), 0, cm_sim_now(s), NULL);
    CM_CHECK(rc == 0 || rc == CM_ELIMIT);
    if (rc == 0)
      k++;
    else
      waits++, cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(100));
  }
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(60));
  for (i = 0; i < sc.nodes; i++)
    CM_CHECK_EQ(u_drain(cm_sim_node(s, i), NULL, 0), U_BURST);
  CM_CHECK(waits > 0); /* the senders were held back */
  cm_sim_free(s);
}

/* A member whose store holds only its own payloads still having their turn
 * delivers what it fetches at once, without keeping it, and passes the
 * reference on; asked for that payload, it says it does not hold it. */
CM_TEST(uev_stream_fetched_without_room_delivered_not_kept) {
  cm_config_t c;
  cm_node_t *n;
  static uint8_t own[40000], other[30000];
  uint8_t ref[CM_UEV_REF_LEN];
  cm_addr_t a = u_addr(7), to;
  uint64_t req, lt;
  cm_app_msg_t ev;
  cm_msg_t m;
  int i;
  memset(own, 'o', sizeof(own));
  memset(other, 'x', sizeof(other));
  cm_config_lan(&c);
  c.max_user_event_stream = 40000;
  c.user_event_store = 80000;
  n = cm_tnode_new(&c, U_T0);
  for (i = 0; i < 2; i++)
    CM_CHECK_OK(cm_node_send_user_event(n, "own", 3, own, sizeof(own), 0,
                                        U_T0 + i, NULL));
  for (i = 0; i < 2; i++)
    CM_CHECK(u_poll(n, &ev));
  m = u_ref("far", 50, "other", ref, sizeof(other), u_fnv(other, 30000));
  cm_tnode_feed(n, &a, &m, U_T0 + 10);
  req = u_fetch_out(n, &to, &lt);
  CM_CHECK_OK(
      u_fetched(n, req, CM_FETCH_HELD, other, sizeof(other), U_T0 + 20));
  CM_CHECK(u_poll(n, &ev));
  CM_CHECK_STR(ev.name, "other");
  CM_CHECK(ev.payload_len == sizeof(other) &&
           memcmp(ev.payload, other, sizeof(other)) == 0);
  CM_CHECK_EQ(cm_tnode_stats(n).payloads_forgotten, 1);
  CM_CHECK_EQ(cm_tnode_stats(n).user_event_queue, 3); /* relayed all the same */
  u_serve(n, "far", 50, u_fnv(other, 30000), CM_FETCH_NOT_HELD, 0);
  cm_node_free(n);
}
