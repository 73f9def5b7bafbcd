/*
 * Input limits, each checked at its edge: the largest allowed input is
 * accepted, one more is refused with a counted drop or a clear error, and
 * nothing changes. Limits of the wire format itself are in test_wire.c,
 * those of the transport in test_net.c; docs/configuration.md lists them
 * all with the test of each.
 */
#include <stdlib.h>

#include "cm_net_int.h"
#include "cm_node.h"
#include "cm_test.h"
#include "cm_test_node.h"

#define L_T0 CM_SEC(100)

static cm_addr_t l_addr(uint32_t i) { return cm_addr_from_index(i, 7946); }

static cm_node_t *l_node(const cm_config_t *c) {
  cm_node_t *n = NULL;
  cm_addr_t a = l_addr(1);
  CM_CHECK_OK(cm_node_new(&n, c, "self", &a, NULL, 0, 7, L_T0));
  return n;
}

/* A packet of one ALIVE for id, with tags. */
static size_t l_alive_packet(uint8_t *buf, size_t cap, const char *id,
                             uint32_t inc, uint32_t idx, const uint8_t *tags,
                             size_t tlen) {
  cm_wbuf_t w = {buf, 0, cap};
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  CM_CHECK_OK(cm_wire_id_set(&m.u.alive.node, id, strlen(id)));
  m.u.alive.incarnation = inc;
  m.u.alive.addr = l_addr(idx);
  m.u.alive.tags = tags;
  m.u.alive.tags_len = (uint16_t)tlen;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  CM_CHECK_OK(cm_wire_packet_add(&w, &m));
  return w.len;
}

static void l_alive(cm_node_t *n, const char *id, uint32_t inc, uint32_t idx) {
  uint8_t buf[256];
  size_t len = l_alive_packet(buf, sizeof(buf), id, inc, idx, NULL, 0);
  cm_addr_t from = l_addr(99);
  CM_CHECK_OK(cm_node_recv(n, &from, buf, len, L_T0));
}

static cm_member_info_t l_info(cm_node_t *n, const char *id) {
  cm_member_info_t i;
  memset(&i, 0, sizeof(i));
  i.state = 0xff;
  cm_node_member_find(n, id, &i, L_T0);
  return i;
}

/* ---- number of members --------------------------------------------------- */

/* max_members bounds the registry: at the limit, a newcomer is dropped and
 * counted (the count is what makes a too-small limit visible), while news
 * about known members still applies. */
CM_TEST(limit_members_at_its_edge) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  cm_pp_entry_t e;
  uint8_t buf[512], *reply = NULL;
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  cm_addr_t from = l_addr(9);
  size_t rlen;
  cm_config_lan(&c);
  c.max_members = 4; /* self and three others */
  n = l_node(&c);
  l_alive(n, "m1", 1, 2);
  l_alive(n, "m2", 1, 3);
  l_alive(n, "m3", 1, 4); /* the largest registry allowed */
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 4);
  CM_CHECK_EQ(st.drop_limit, 0);
  l_alive(n, "m4", 1, 5); /* one more: refused, counted */
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 4);
  CM_CHECK_EQ(st.alive, 4);
  CM_CHECK_EQ(st.drop_limit, 1);
  CM_CHECK_EQ(l_info(n, "m4").state, 0xff);
  /* The same through push-pull. */
  memset(&e, 0, sizeof(e));
  CM_CHECK_OK(cm_wire_id_set(&e.node, "m5", 2));
  e.incarnation = 1;
  e.addr = l_addr(6);
  e.state = CM_STATE_ALIVE;
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK_OK(
      cm_node_handle_pushpull(n, &from, buf, w.len, L_T0, &reply, &rlen));
  free(reply);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 4);
  CM_CHECK_EQ(st.drop_limit, 2);
  CM_CHECK_EQ(l_info(n, "m5").state, 0xff);
  /* Known members are still updated at the limit. */
  l_alive(n, "m3", 2, 4);
  CM_CHECK_EQ(l_info(n, "m3").incarnation, 2);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_limit, 2);
  cm_node_free(n);
}

/* A member declared gone at `at`: failed by a dead record, or left. */
static void l_gone(cm_node_t *n, const char *id, uint8_t type, cm_time_t at) {
  cm_addr_t from = l_addr(99);
  /* A conviction alone of a member held alive, or held suspect for less
   * than half the shortest suspicion, is an accusation. */
  if (type == CM_MSG_DEAD)
    cm_tnode_accuse(n, &from, CM_MSG_SUSPECT, id, 1, "m1", at - CM_SEC(1));
  cm_tnode_accuse(n, &from, type, id, 1, "m1", at);
}

/* Tombstones (members that left or failed) are kept for a day, and they
 * count toward max_members: with churn, a registry full of them would
 * refuse every newcomer for that day. A full registry instead forgets the
 * tombstone gone longest (reported as reaped, counted in
 * tombstones_evicted) and takes the newcomer; but not one gone for less
 * than gossip_to_dead, whose news may still be spreading. Only a registry
 * of live members and young tombstones refuses one. */
CM_TEST(limit_a_full_registry_forgets_its_oldest_tombstone) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  cm_event_t ev;
  cm_addr_t a4 = l_addr(5), a5 = l_addr(6), a6 = l_addr(7);
  cm_time_t later;
  int reaped = 0;
  cm_config_lan(&c);
  c.max_members = 4;
  n = l_node(&c);
  later = L_T0 + CM_SEC(2) + c.gossip_to_dead;
  l_alive(n, "m1", 1, 2);
  l_alive(n, "m2", 1, 3);
  l_alive(n, "m3", 1, 4);
  l_gone(n, "m3", CM_MSG_LEAVE, L_T0 + CM_SEC(1));
  l_gone(n, "m2", CM_MSG_DEAD, L_T0 + CM_SEC(2));
  while (cm_node_poll_event(n, &ev))
    ;
  /* Too young: both still spreading. Refused, counted. */
  cm_tnode_alive(n, "m4", 1, &a4, L_T0 + CM_SEC(3));
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_limit, 1);
  CM_CHECK_EQ(st.tombstones_evicted, 0);
  CM_CHECK_EQ(l_info(n, "m4").state, 0xff);
  cm_tnode_alive(n, "m4", 1, &a4, later); /* m3 has been gone longest */
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 4);
  CM_CHECK_EQ(st.drop_limit, 1);
  CM_CHECK_EQ(st.tombstones_evicted, 1);
  CM_CHECK_EQ(l_info(n, "m4").state, CM_STATE_ALIVE);
  CM_CHECK_EQ(l_info(n, "m3").state, 0xff);
  CM_CHECK_EQ(l_info(n, "m2").state, CM_STATE_FAILED);
  while (cm_node_poll_event(n, &ev))
    if (ev.type == CM_EV_REAPED) {
      CM_CHECK_STR(ev.id, "m3");
      reaped++;
    }
  CM_CHECK_EQ(reaped, 1);
  cm_tnode_alive(n, "m5", 1, &a5, later); /* then m2 */
  CM_CHECK_EQ(l_info(n, "m2").state, 0xff);
  CM_CHECK_EQ(l_info(n, "m5").state, CM_STATE_ALIVE);
  cm_tnode_alive(n, "m6", 1, &a6, later); /* every member alive: refused */
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, 4);
  CM_CHECK_EQ(st.alive, 4);
  CM_CHECK_EQ(st.tombstones_evicted, 2);
  CM_CHECK_EQ(st.drop_limit, 2);
  CM_CHECK_EQ(l_info(n, "m6").state, 0xff);
  CM_CHECK_OK(cm_node_check_invariants(n, NULL));
  cm_node_free(n);
}

/* A node's push-pull carries its whole registry, itself included, and the
 * format holds at most CM_WIRE_PP_MAX_ENTRIES entries: max_members may not
 * exceed that, or a full node could neither send nor answer a push-pull.
 * At the largest accepted value a full registry goes out whole, in one
 * message that decodes; one more is refused by validation. */
CM_TEST(limit_max_members_is_what_pushpull_carries) {
  const uint32_t max = CM_WIRE_PP_MAX_ENTRIES;
  cm_config_t c;
  cm_node_t *n = NULL;
  cm_node_stats_t st;
  cm_pp_entry_t e;
  cm_pp_header_t h;
  cm_wbuf_t w;
  cm_addr_t from = l_addr(9);
  uint8_t *reply = NULL;
  size_t rlen;
  const char *why = NULL;
  char id[16];
  uint32_t i;
  cm_config_lan(&c);
  c.max_members = max + 1;
  CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
  CM_CHECK(why != NULL && strstr(why, "max_members") != NULL &&
           strstr(why, "65536") != NULL);
  CM_CHECK_EQ(cm_node_new(&n, &c, "self", &from, NULL, 0, 7, L_T0), CM_ECONFIG);
  c.max_members = max;
  CM_CHECK_OK(cm_config_validate(&c, NULL));
  n = l_node(&c);
  /* A request from a peer that brings max - 1 others: sender first. */
  w.cap = 64 + (size_t)max * 32;
  w.p = malloc(w.cap);
  CM_CHECK(w.p != NULL);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  for (i = 0; i < max - 1; i++) {
    memset(&e, 0, sizeof(e));
    snprintf(id, sizeof(id), "m%u", (unsigned)i);
    CM_CHECK_OK(cm_wire_id_set(&e.node, id, strlen(id)));
    e.incarnation = 1;
    e.addr = l_addr(10 + i);
    e.state = CM_STATE_ALIVE;
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  }
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK_OK(
      cm_node_handle_pushpull(n, &from, w.p, w.len, L_T0, &reply, &rlen));
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.members, max);
  CM_CHECK_EQ(st.drop_limit, 0);
  CM_CHECK_EQ(st.drop_pushpull, 0);
  /* The reply is the whole registry, every entry of it. */
  CM_CHECK_OK(cm_wire_pp_decode(reply, rlen, &h));
  CM_CHECK_EQ(h.count, max);
  free(reply);
  free(w.p);
  cm_node_free(n);
}

/* ---- datagram size ------------------------------------------------------- */

/* An ALIVE packet of exactly `want` bytes, tags of up to 200-byte values
 * padding it out. */
static size_t l_packet_of(uint8_t *buf, size_t cap, size_t want,
                          const char *id) {
  uint8_t tags[1100], tmp[1100];
  char val[256];
  char k[2] = {'a', '\0'};
  size_t tlen = 0, len, left;
  memset(val, 'v', sizeof(val));
  len = l_alive_packet(buf, cap, id, 1, 2, NULL, 0);
  CM_CHECK(want >= len + 4);
  left = want - len; /* bytes of tags still to add */
  while (left > 0) {
    /* One tag adds 1 + key + 2 + value bytes. */
    size_t v = left - 4 > 200 && left - 4 - 200 < 4 ? 100 : left - 4;
    if (v > 200)
      v = 200;
    CM_CHECK_OK(cm_tags_set(tags, tlen, k, 1, val, v, tmp, sizeof(tmp), &tlen));
    memcpy(tags, tmp, tlen);
    left -= 4 + v;
    k[0]++;
  }
  len = l_alive_packet(buf, cap, id, 1, 2, tags, tlen);
  CM_CHECK_EQ(len, want);
  return len;
}

CM_TEST(limit_datagram_size_at_its_edge) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  uint8_t buf[700];
  cm_addr_t from = l_addr(99);
  size_t len;
  cm_config_lan(&c);
  c.max_packet_size = 600;
  c.max_tags_size = 400;       /* an alive record must still fit one packet */
  c.max_user_event_size = 300; /* so must a user event */
  CM_CHECK_OK(cm_config_validate(&c, NULL));
  n = l_node(&c);
  len = l_packet_of(buf, sizeof(buf), 600, "big");
  CM_CHECK_OK(cm_node_recv(n, &from, buf, len, L_T0));
  CM_CHECK_EQ(l_info(n, "big").state, CM_STATE_ALIVE);
  len = l_packet_of(buf, sizeof(buf), 601, "bigger");
  CM_CHECK_EQ(cm_node_recv(n, &from, buf, len, L_T0), CM_ETOOBIG);
  CM_CHECK_EQ(l_info(n, "bigger").state, 0xff);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.drop_malformed, 1);
  CM_CHECK_EQ(st.members, 2);
  cm_node_free(n);
}

/* ---- tag sizes, as configured -------------------------------------------- */

/* Incoming tags are held to the wire format's limits (test_wire.c), the
 * local ones to the configured ones, each at its edge. */
CM_TEST(limit_tag_sizes_at_their_edge) {
  cm_config_t c;
  cm_node_t *n;
  char key[130], val[300];
  uint8_t blob[2048];
  size_t blen = 0;
  int i;
  cm_config_lan(&c);
  n = l_node(&c);
  memset(key, 'k', sizeof(key));
  memset(val, 'v', sizeof(val));
  key[c.max_tag_key] = '\0';
  val[c.max_tag_value] = '\0';
  CM_CHECK_OK(cm_node_set_tag(n, key, "x", L_T0));
  CM_CHECK_OK(cm_node_set_tag(n, "v", val, L_T0));
  key[c.max_tag_key] = 'k';
  key[c.max_tag_key + 1] = '\0';
  val[c.max_tag_value] = 'v';
  val[c.max_tag_value + 1] = '\0';
  CM_CHECK_EQ(cm_node_set_tag(n, key, "x", L_T0), CM_ETAGKEY);
  CM_CHECK_EQ(cm_node_set_tag(n, "v", val, L_T0), CM_ETAGVAL);
  cm_node_free(n);

  /* The whole set: exactly max_tags_size is accepted, one byte more not. */
  n = l_node(&c);
  for (i = 0; i < 4; i++) {
    uint8_t tmp[2048];
    size_t tl;
    char k[2] = {(char)('a' + i), '\0'};
    /* 4 pairs of 1 + 1 + 2 + 252 = 256 bytes: 1024 in all. */
    CM_CHECK_OK(cm_tags_set(blob, blen, k, 1, val, 252, tmp, sizeof(tmp), &tl));
    memcpy(blob, tmp, tl);
    blen = tl;
  }
  CM_CHECK_EQ(blen, c.max_tags_size);
  CM_CHECK_EQ(cm_node_check_tags(n, blob, blen), 0);
  {
    uint8_t tmp[2048];
    size_t tl;
    CM_CHECK_OK(
        cm_tags_set(blob, blen, "d", 1, val, 253, tmp, sizeof(tmp), &tl));
    CM_CHECK_EQ(tl, c.max_tags_size + 1);
    CM_CHECK_EQ(cm_node_check_tags(n, tmp, tl), CM_ETAGSET);
  }
  cm_node_free(n);
}

/* ---- push-pull size ------------------------------------------------------ */

/* A push-pull request of exactly `want` bytes: p0 alive, then entries
 * about failed strangers (ignored by the merge, so the reply stays small)
 * whose tags pad the message out. */
static size_t l_pp_of(uint8_t *buf, size_t cap, size_t want) {
  cm_wbuf_t w = {buf, 0, cap};
  cm_pp_entry_t e;
  uint8_t tags[1100];
  char val[1024], id[16];
  size_t tl, i = 0, empty, left;
  memset(val, 'v', sizeof(val));
  memset(&e, 0, sizeof(e));
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  for (;;) {
    snprintf(id, sizeof(id), "p%zu", i);
    CM_CHECK_OK(cm_wire_id_set(&e.node, id, strlen(id)));
    e.incarnation = 1;
    e.addr = l_addr(10 + (uint32_t)i);
    e.state = i == 0 ? CM_STATE_ALIVE : CM_STATE_FAILED;
    e.tags = NULL;
    e.tags_len = 0;
    /* Size of this entry without tags, measured in a scratch message. */
    {
      uint8_t scratch[512];
      cm_wbuf_t sw = {scratch, 0, sizeof(scratch)};
      size_t hdr;
      CM_CHECK_OK(cm_wire_pp_begin(&sw, CM_PP_REQUEST, 0));
      hdr = sw.len;
      CM_CHECK_OK(cm_wire_pp_add(&sw, &e));
      empty = sw.len - hdr;
    }
    left = want - w.len;
    if (i > 0 && left <= empty + 4 + 1000) {
      CM_CHECK(left >= empty + 4);
      CM_CHECK_OK(cm_tags_set(NULL, 0, "k", 1, val, left - empty - 4, tags,
                              sizeof(tags), &tl));
      e.tags = tags;
      e.tags_len = (uint16_t)tl;
      CM_CHECK_OK(cm_wire_pp_add(&w, &e));
      break;
    }
    if (i > 0) {
      size_t v = 996; /* leave room for a last entry with tags */
      if (left - (empty + 4 + v) < empty + 4)
        v = left - 2 * (empty + 4);
      CM_CHECK_OK(
          cm_tags_set(NULL, 0, "k", 1, val, v, tags, sizeof(tags), &tl));
      e.tags = tags;
      e.tags_len = (uint16_t)tl;
    }
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
    i++;
  }
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK_EQ(w.len, want);
  return w.len;
}

CM_TEST(limit_pushpull_size_at_its_edge) {
  cm_config_t c;
  cm_node_t *n;
  cm_node_stats_t st;
  uint8_t *buf = malloc(8192), *reply = NULL;
  cm_addr_t from = l_addr(9);
  size_t len, rlen;
  CM_CHECK(buf != NULL);
  cm_config_lan(&c);
  c.max_pushpull_size = 4096; /* the smallest allowed */
  CM_CHECK_OK(cm_config_validate(&c, NULL));
  n = l_node(&c);
  len = l_pp_of(buf, 8192, 4096);
  CM_CHECK_OK(cm_node_handle_pushpull(n, &from, buf, len, L_T0, &reply, &rlen));
  free(reply);
  reply = NULL;
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.pushpull_in, 1);
  CM_CHECK_EQ(st.drop_pushpull, 0);
  CM_CHECK_EQ(l_info(n, "p0").state, CM_STATE_ALIVE);
  cm_node_free(n);

  n = l_node(&c);
  len = l_pp_of(buf, 8192, 4097);
  CM_CHECK_EQ(cm_node_handle_pushpull(n, &from, buf, len, L_T0, &reply, &rlen),
              CM_ETOOBIG);
  CM_CHECK(reply == NULL);
  /* A reply to our own request is held to the same bound. */
  CM_CHECK(cm_node_pushpull_reply(n, 1, buf, len, L_T0) < 0);
  cm_node_stats(n, &st);
  CM_CHECK_EQ(st.pushpull_in, 0);
  CM_CHECK_EQ(st.drop_pushpull, 2);
  CM_CHECK_EQ(st.members, 1);
  CM_CHECK_EQ(l_info(n, "p0").state, 0xff);
  cm_node_free(n);
  free(buf);
}

/* ---- connection attempts per source per second ----------------------------
 */

static cm_addr_t l_src(uint32_t i) {
  cm_addr_t a = cm_addr_from_index(i, 4000);
  return a;
}

/* The per-source bucket with explicit clock readings: `rate` attempts at
 * once are allowed, the next is refused, one more is allowed each 1/rate s,
 * other sources are unaffected, and the table never grows. A source is an
 * IP address whatever the port, and for IPv6 its /64. */
CM_TEST(limit_accepts_per_source_at_its_edge) {
  cm_net_srclimit_t *l = malloc(sizeof(*l));
  cm_addr_t a = l_src(1), b = l_src(2);
  const uint64_t t0 = 1000 * NGTCP2_SECONDS, tick = NGTCP2_SECONDS / 10;
  uint32_t i;
  CM_CHECK(l != NULL);
  cm_net__srclimit_init(l, 99, 10, 0);
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 0); /* the 11th */
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick - 1), 0);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick), 1); /* refilled one */
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick), 0);
  /* Another port of the same address is the same source. */
  {
    cm_addr_t a2 = a;
    a2.port++;
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a2, t0 + tick), 0);
  }
  /* IPv6: any address of one /64 is the same source; another /64 is not. */
  {
    cm_addr_t v1, v2, v3;
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:2::1]:7000", &v1));
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:2:ffff::9]:7001", &v2));
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:3::1]:7000", &v3));
    for (i = 0; i < 10; i++)
      CM_CHECK_EQ(cm_net__srclimit_take(l, i % 2 ? &v1 : &v2, t0), 1);
    CM_CHECK_EQ(cm_net__srclimit_take(l, &v1, t0), 0);
    CM_CHECK_EQ(cm_net__srclimit_take(l, &v2, t0), 0);
    CM_CHECK_EQ(cm_net__srclimit_take(l, &v3, t0), 1);
  }
  /* Another source has its own budget. */
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &b, t0 + tick), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &b, t0 + tick), 0);
  /* After a quiet second a source has its whole burst again, no more. */
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + 20 * tick), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + 20 * tick), 0);
  /* A spray of 100,000 addresses, each once: all get their first attempt
   * (slots of quiet sources are reused) in a table of fixed size. */
  {
    uint32_t ok = 0;
    for (i = 0; i < 100000; i++) {
      cm_addr_t s = l_src(1000 + i);
      ok += (uint32_t)cm_net__srclimit_take(l, &s, t0 + 40 * tick + i * tick);
    }
    CM_CHECK_EQ(ok, 100000);
  }
  /* Known peers' table: a source is an address and port, so another port
   * of an address at its limit has a budget of its own. */
  cm_net__srclimit_init(l, 99, 10, 1);
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 0);
  {
    cm_addr_t a2 = a;
    a2.port++;
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a2, t0), 1);
  }
  /* Rate 0: no limit. */
  cm_net__srclimit_init(l, 99, 0, 0);
  for (i = 0; i < 1000; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 1);
  free(l);
}

/* The record of sources let in lately, with explicit clock readings: a
 * marked source is seen until two windows after the window it was marked
 * in began, then forgotten; other sources are not seen; a source is an IP
 * address whatever the port, and for IPv6 its /64; a jump of two windows
 * forgets everything; and 100,000 sources marked are all seen (a full set
 * may see more than were marked, never fewer). */
CM_TEST(limit_sources_let_in_lately_at_their_edge) {
  cm_net_recent_t *r = malloc(sizeof(*r));
  cm_addr_t a = l_src(1), b = l_src(2), a2 = l_src(1);
  const uint64_t t0 = 1000 * NGTCP2_SECONDS, w = NGTCP2_SECONDS;
  uint32_t i, seen = 0;
  CM_CHECK(r != NULL);
  cm_net__recent_init(r, 7, w, t0);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0), 0);
  cm_net__recent_mark(r, &a, t0);
  a2.port++;
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0), 1);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a2, t0), 1); /* another port */
  CM_CHECK_EQ(cm_net__recent_seen(r, &b, t0), 0);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0 + w), 1);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0 + 2 * w - 1), 1);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0 + 2 * w), 0);
  /* Marked late in a window: seen through the next one only. */
  cm_net__recent_mark(r, &b, t0 + 3 * w - 1);
  CM_CHECK_EQ(cm_net__recent_seen(r, &b, t0 + 4 * w - 1), 1);
  CM_CHECK_EQ(cm_net__recent_seen(r, &b, t0 + 4 * w), 0);
  /* A long quiet forgets all at once. */
  cm_net__recent_mark(r, &a, t0 + 5 * w);
  CM_CHECK_EQ(cm_net__recent_seen(r, &a, t0 + 9 * w), 0);
  /* IPv6: one /64 is one source. */
  {
    cm_addr_t v1, v2, v3;
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:2::1]:7000", &v1));
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:2:ffff::9]:7001", &v2));
    CM_CHECK_OK(cm_addr_parse("[2001:db8:1:3::1]:7000", &v3));
    cm_net__recent_mark(r, &v1, t0 + 10 * w);
    CM_CHECK_EQ(cm_net__recent_seen(r, &v2, t0 + 10 * w), 1);
    CM_CHECK_EQ(cm_net__recent_seen(r, &v3, t0 + 10 * w), 0);
  }
  for (i = 0; i < 100000; i++) {
    cm_addr_t s = l_src(1000 + i);
    cm_net__recent_mark(r, &s, t0 + 20 * w);
  }
  for (i = 0; i < 100000; i++) {
    cm_addr_t s = l_src(1000 + i);
    seen += (uint32_t)cm_net__recent_seen(r, &s, t0 + 20 * w);
  }
  CM_CHECK_EQ(seen, 100000);
  free(r);
}

/* The endpoint-wide token bucket with explicit clock readings: a burst of
 * `rate`, then one a 1/rate s; a reading earlier than the last refills
 * nothing and does not move the bucket's clock back. */
CM_TEST(limit_bucket_at_its_edge) {
  const uint64_t t0 = 1000 * NGTCP2_SECONDS, tick = NGTCP2_SECONDS / 10;
  double tokens = 10.0;
  uint64_t last = t0;
  int i;
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0), 1);
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0), 0);
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 + tick - 1), 0);
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 + tick), 1);
  /* Backwards: nothing refilled, the clock kept. */
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 - 50 * tick), 0);
  CM_CHECK_EQ(last, t0 + tick);
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 + 2 * tick), 1);
  /* A quiet minute refills the burst, no more. */
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 + 600 * tick), 1);
  CM_CHECK_EQ(cm_net__bucket_take(&tokens, &last, 10.0, t0 + 600 * tick), 0);
}
