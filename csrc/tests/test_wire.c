/*
 * Wire codec tests. Rejection tests build their input by hand with the bb_*
 * helpers rather than by mutating the encoder's output, so a bug shared by
 * encoder and decoder cannot hide; each one changes a single field of an
 * otherwise valid input, so it fails if that one rule is dropped.
 */
#include "cm_test.h"
#include "cm_wire.h"

#include <stdlib.h>

/* {"dc": "eu-west", "role": "db"} in canonical form. */
static const uint8_t TAGS[] = {2,   'd', 'c', 0,   7,   'e', 'u',
                               '-', 'w', 'e', 's', 't', 4,   'r',
                               'o', 'l', 'e', 0,   2,   'd', 'b'};

/* A byte builder for hand-made inputs. */
typedef struct bb {
  uint8_t b[8192];
  size_t n;
} bb_t;

static void bb_u8(bb_t *b, unsigned v) { b->b[b->n++] = (uint8_t)v; }
static void bb_u16(bb_t *b, unsigned v) {
  bb_u8(b, v >> 8);
  bb_u8(b, v);
}
static void bb_u32(bb_t *b, uint32_t v) {
  bb_u16(b, v >> 16);
  bb_u16(b, v & 0xffff);
}
static void bb_raw(bb_t *b, const void *p, size_t n) {
  memcpy(b->b + b->n, p, n);
  b->n += n;
}
static void bb_id(bb_t *b, const char *s) {
  bb_u8(b, (unsigned)strlen(s));
  bb_raw(b, s, strlen(s));
}
/* 10.0.0.1:port */
static void bb_addr4(bb_t *b, unsigned port) {
  static const uint8_t ip[4] = {10, 0, 0, 1};
  bb_u8(b, 4);
  bb_raw(b, ip, 4);
  bb_u16(b, port);
}

/* A packet holding one message of type with body. */
static void bb_packet1(bb_t *p, unsigned type, const bb_t *body) {
  p->n = 0;
  bb_u8(p, CM_WIRE_VERSION);
  bb_u8(p, 1);
  bb_u8(p, type);
  bb_u16(p, (unsigned)body->n);
  bb_raw(p, body->b, body->n);
}

static cm_addr_t addr4(uint8_t last, uint16_t port) {
  cm_addr_t a;
  memset(&a, 0, sizeof(a));
  a.family = 4;
  a.ip[0] = 10;
  a.ip[3] = last;
  a.port = port;
  return a;
}

static cm_addr_t addr6(uint16_t port) {
  static const uint8_t ip[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                 0,    0,    0,    0,    0, 0, 0, 1};
  cm_addr_t a;
  memset(&a, 0, sizeof(a));
  a.family = 6;
  memcpy(a.ip, ip, 16);
  a.port = port;
  return a;
}

static void set_id(cm_wire_id_t *id, const char *s) {
  CM_CHECK_OK(cm_wire_id_set(id, s, strlen(s)));
}

/* A valid message of each type, every field distinct from its default. */
static cm_msg_t sample(uint8_t type) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  m.type = type;
  switch (type) {
  case CM_MSG_PING:
    m.u.ping.seq = 0x01020304;
    set_id(&m.u.ping.target, "node-b");
    set_id(&m.u.ping.source, "node-a");
    m.u.ping.source_addr = addr4(1, 7946);
    break;
  case CM_MSG_ACK:
    m.u.ack.seq = 0xdeadbeef;
    break;
  case CM_MSG_PING_REQ:
    m.u.ping_req.seq = 7;
    set_id(&m.u.ping_req.target, "node-c");
    m.u.ping_req.target_addr = addr6(7947);
    m.u.ping_req.want_nack = 1;
    break;
  case CM_MSG_NACK:
    m.u.nack.seq = 0xffffffff;
    break;
  case CM_MSG_ALIVE:
    set_id(&m.u.alive.node, "node-a");
    m.u.alive.incarnation = 42;
    m.u.alive.addr = addr4(1, 7946);
    m.u.alive.tags = TAGS;
    m.u.alive.tags_len = sizeof(TAGS);
    break;
  case CM_MSG_SUSPECT:
    set_id(&m.u.suspect.node, "node-c");
    m.u.suspect.incarnation = 3;
    set_id(&m.u.suspect.from, "node-a");
    break;
  case CM_MSG_DEAD:
    set_id(&m.u.suspect.node, "node-d");
    m.u.suspect.incarnation = 0xfffffffe;
    set_id(&m.u.suspect.from, "node-b");
    break;
  case CM_MSG_LEAVE:
    set_id(&m.u.leave.node, "node-a");
    m.u.leave.incarnation = 9;
    break;
  case CM_MSG_USER_EVENT_REF:
    m.u.uev.ltime = 41;
    set_id(&m.u.uev.origin, "node-f");
    m.u.uev.name = (const uint8_t *)"blob";
    m.u.uev.name_len = 4;
    m.u.uev.payload = (const uint8_t *)"\0\x10\0\0\1\2\3\4\5\6\7\x08";
    m.u.uev.payload_len = CM_UEV_REF_LEN;
    break;
  case CM_MSG_USER_EVENT:
    m.u.uev.ltime = 0x0102030405060708ull;
    set_id(&m.u.uev.origin, "node-e");
    m.u.uev.flags = CM_UEV_COALESCE | 0x80; /* a later version's bit too */
    m.u.uev.name = (const uint8_t *)"deploy";
    m.u.uev.name_len = 6;
    m.u.uev.payload = (const uint8_t *)"v1.2\0\xff";
    m.u.uev.payload_len = 6;
    break;
  case CM_MSG_QUERY:
    m.u.qry.ltime = 77;
    m.u.qry.qid = 0xa1b2c3d4;
    set_id(&m.u.qry.origin, "node-q");
    m.u.qry.origin_addr = addr6(7950);
    m.u.qry.flags = CM_QUERY_WANT_ACK | 0x40;
    m.u.qry.relay = 2;
    m.u.qry.timeout_ms = 3200;
    m.u.qry.filter = (const uint8_t *)"{\"tags\":{\"role\":\"db.*\"}}";
    m.u.qry.filter_len = 24;
    m.u.qry.name = (const uint8_t *)"load";
    m.u.qry.name_len = 4;
    m.u.qry.payload = (const uint8_t *)"?";
    m.u.qry.payload_len = 1;
    break;
  case CM_MSG_QUERY_RESPONSE:
    m.u.qresp.ltime = 77;
    m.u.qresp.qid = 0xa1b2c3d4;
    set_id(&m.u.qresp.from, "node-r");
    m.u.qresp.flags = 0;
    m.u.qresp.payload = (const uint8_t *)"0.42";
    m.u.qresp.payload_len = 4;
    break;
  case CM_MSG_QUERY_RELAY:
    m.u.qrelay.target = addr4(9, 7950);
    m.u.qrelay.resp.ltime = 78;
    m.u.qrelay.resp.qid = 5;
    set_id(&m.u.qrelay.resp.from, "node-s");
    m.u.qrelay.resp.flags = CM_QRESP_ACK;
    break;
  case CM_MSG_COORD: {
    size_t i;
    for (i = 0; i < CM_COORD_WIRE_LEN; i++)
      m.u.coord.b[i] = (uint8_t)(0x11 * i + 3);
    break;
  }
  }
  return m;
}

static int id_eq(const cm_wire_id_t *a, const cm_wire_id_t *b) {
  return a->len == b->len && memcmp(a->s, b->s, a->len) == 0 &&
         b->s[b->len] == '\0';
}

static int blob_eq(const uint8_t *a, size_t alen, const uint8_t *b,
                   size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int qresp_eq(const cm_msg_qresp_t *a, const cm_msg_qresp_t *b) {
  return a->ltime == b->ltime && a->qid == b->qid &&
         id_eq(&a->from, &b->from) && a->flags == b->flags &&
         blob_eq(a->payload, a->payload_len, b->payload, b->payload_len);
}

static int msg_eq(const cm_msg_t *a, const cm_msg_t *b) {
  if (a->type != b->type)
    return 0;
  switch (a->type) {
  case CM_MSG_PING:
    return a->u.ping.seq == b->u.ping.seq &&
           id_eq(&a->u.ping.target, &b->u.ping.target) &&
           id_eq(&a->u.ping.source, &b->u.ping.source) &&
           cm_addr_eq(&a->u.ping.source_addr, &b->u.ping.source_addr);
  case CM_MSG_ACK:
    return a->u.ack.seq == b->u.ack.seq;
  case CM_MSG_NACK:
    return a->u.nack.seq == b->u.nack.seq;
  case CM_MSG_PING_REQ:
    return a->u.ping_req.seq == b->u.ping_req.seq &&
           id_eq(&a->u.ping_req.target, &b->u.ping_req.target) &&
           cm_addr_eq(&a->u.ping_req.target_addr, &b->u.ping_req.target_addr) &&
           a->u.ping_req.want_nack == b->u.ping_req.want_nack;
  case CM_MSG_ALIVE:
    return id_eq(&a->u.alive.node, &b->u.alive.node) &&
           a->u.alive.incarnation == b->u.alive.incarnation &&
           cm_addr_eq(&a->u.alive.addr, &b->u.alive.addr) &&
           blob_eq(a->u.alive.tags, a->u.alive.tags_len, b->u.alive.tags,
                   b->u.alive.tags_len);
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    return id_eq(&a->u.suspect.node, &b->u.suspect.node) &&
           a->u.suspect.incarnation == b->u.suspect.incarnation &&
           id_eq(&a->u.suspect.from, &b->u.suspect.from);
  case CM_MSG_LEAVE:
    return id_eq(&a->u.leave.node, &b->u.leave.node) &&
           a->u.leave.incarnation == b->u.leave.incarnation;
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF:
    return a->u.uev.ltime == b->u.uev.ltime &&
           id_eq(&a->u.uev.origin, &b->u.uev.origin) &&
           a->u.uev.flags == b->u.uev.flags &&
           blob_eq(a->u.uev.name, a->u.uev.name_len, b->u.uev.name,
                   b->u.uev.name_len) &&
           blob_eq(a->u.uev.payload, a->u.uev.payload_len, b->u.uev.payload,
                   b->u.uev.payload_len);
  case CM_MSG_QUERY:
    return a->u.qry.ltime == b->u.qry.ltime && a->u.qry.qid == b->u.qry.qid &&
           id_eq(&a->u.qry.origin, &b->u.qry.origin) &&
           cm_addr_eq(&a->u.qry.origin_addr, &b->u.qry.origin_addr) &&
           a->u.qry.flags == b->u.qry.flags &&
           a->u.qry.relay == b->u.qry.relay &&
           a->u.qry.timeout_ms == b->u.qry.timeout_ms &&
           blob_eq(a->u.qry.filter, a->u.qry.filter_len, b->u.qry.filter,
                   b->u.qry.filter_len) &&
           blob_eq(a->u.qry.name, a->u.qry.name_len, b->u.qry.name,
                   b->u.qry.name_len) &&
           blob_eq(a->u.qry.payload, a->u.qry.payload_len, b->u.qry.payload,
                   b->u.qry.payload_len);
  case CM_MSG_QUERY_RESPONSE:
    return qresp_eq(&a->u.qresp, &b->u.qresp);
  case CM_MSG_QUERY_RELAY:
    return cm_addr_eq(&a->u.qrelay.target, &b->u.qrelay.target) &&
           qresp_eq(&a->u.qrelay.resp, &b->u.qrelay.resp);
  case CM_MSG_COORD:
    return memcmp(a->u.coord.b, b->u.coord.b, CM_COORD_WIRE_LEN) == 0;
  default:
    return 0;
  }
}

static size_t encode(const cm_msg_t *msgs, size_t n, uint8_t *buf, size_t cap) {
  cm_wbuf_t w = {buf, 0, cap};
  size_t i;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  for (i = 0; i < n; i++)
    CM_CHECK_OK(cm_wire_packet_add(&w, &msgs[i]));
  CM_CHECK_EQ(cm_wire_packet_count(&w), n);
  return w.len;
}

/* Decode expecting failure; checks the caller is told of no message. */
static int reject(const uint8_t *buf, size_t len) {
  cm_msg_t out[CM_WIRE_MAX_MSGS];
  size_t count = 99;
  int rc = cm_wire_packet_decode(buf, len, out, CM_WIRE_MAX_MSGS, &count);
  CM_CHECK(rc != 0);
  CM_CHECK_EQ(count, 0);
  return rc;
}

static void accept1(const uint8_t *buf, size_t len, cm_msg_t *out) {
  size_t count = 0;
  CM_CHECK_OK(cm_wire_packet_decode(buf, len, out, 1, &count));
  CM_CHECK_EQ(count, 1);
}

/* ---- Packets: round trips and sizes ---- */

CM_TEST(wire_roundtrip_every_message_type) {
  uint8_t t;
  for (t = CM_MSG_PING; t <= CM_MSG_TYPE_LAST; t++) {
    cm_msg_t in = sample(t), out;
    uint8_t buf[512];
    size_t len = encode(&in, 1, buf, sizeof(buf));
    memset(&out, 0xee, sizeof(out));
    accept1(buf, len, &out);
    CM_CHECK(msg_eq(&in, &out));
  }
}

CM_TEST(wire_alive_tags_point_into_the_packet) {
  cm_msg_t in = sample(CM_MSG_ALIVE), out;
  uint8_t buf[256];
  size_t len = encode(&in, 1, buf, sizeof(buf));
  accept1(buf, len, &out);
  CM_CHECK(out.u.alive.tags >= buf && out.u.alive.tags < buf + len);
}

CM_TEST(wire_roundtrip_packet_of_several_messages) {
  cm_msg_t in[10], out[10];
  uint8_t buf[2048];
  size_t len, count = 0, i;
  for (i = 0; i < 8; i++)
    in[i] = sample((uint8_t)(CM_MSG_LEAVE - i));
  in[8] = sample(CM_MSG_ALIVE);
  in[8].u.alive.tags_len = 0;
  in[8].u.alive.tags = NULL;
  in[8].u.alive.addr = addr6(1);
  in[9] = sample(CM_MSG_ACK);
  len = encode(in, 10, buf, sizeof(buf));
  CM_CHECK_OK(cm_wire_packet_decode(buf, len, out, 10, &count));
  CM_CHECK_EQ(count, 10);
  for (i = 0; i < 8; i++)
    CM_CHECK(msg_eq(&in[i], &out[i]));
  CM_CHECK_EQ(out[8].u.alive.tags_len, 0);
  CM_CHECK(cm_addr_eq(&out[8].u.alive.addr, &in[8].u.alive.addr));
  CM_CHECK(msg_eq(&in[9], &out[9]));
}

CM_TEST(wire_msg_size_is_exactly_the_bytes_appended) {
  uint8_t buf[512];
  uint8_t t;
  for (t = CM_MSG_PING; t <= CM_MSG_TYPE_LAST; t++) {
    cm_msg_t m = sample(t);
    cm_wbuf_t w = {buf, 0, sizeof(buf)};
    size_t before;
    CM_CHECK_OK(cm_wire_packet_begin(&w));
    CM_CHECK_OK(cm_wire_packet_add(&w, &m));
    before = w.len;
    CM_CHECK_OK(cm_wire_packet_add(&w, &m));
    CM_CHECK_EQ(w.len - before, cm_wire_msg_size(&m));
    /* body_len covers the body only. */
    CM_CHECK_EQ((buf[before + 1] << 8) | buf[before + 2],
                cm_wire_msg_size(&m) - 3);
  }
}

CM_TEST(wire_msg_size_of_type_zero_is_zero) {
  cm_msg_t m;
  memset(&m, 0, sizeof(m));
  CM_CHECK_EQ(cm_wire_msg_size(&m), 0);
  CM_CHECK_EQ(cm_wire_msg_size(NULL), 0);
  m.type = CM_MSG_TYPE_LAST + 1; /* a newer version's: its raw body */
  m.u.raw.len = 0;
  CM_CHECK_EQ(cm_wire_msg_size(&m), 3);
}

/* The ALIVE of the documented examples: n1 at incarnation 2, 10.0.0.1:7946,
 * with the given tags blob. */
static void doc_alive(cm_msg_t *m, const uint8_t *tags, size_t tags_len) {
  memset(m, 0, sizeof(*m));
  m->type = CM_MSG_ALIVE;
  set_id(&m->u.alive.node, "n1");
  m->u.alive.incarnation = 2;
  m->u.alive.addr = addr4(1, 7946);
  m->u.alive.tags = tags;
  m->u.alive.tags_len = tags_len;
}

/* The worked examples of docs/protocol.md (Wire format), byte for byte. */
CM_TEST(wire_encoding_matches_documented_examples) {
  static const uint8_t ping[] = {0x01, 0x01, 0x01, 0x00, 0x11, 0x00, 0x00, 0x00,
                                 0x01, 0x02, 0x6e, 0x32, 0x02, 0x6e, 0x31, 0x04,
                                 0x0a, 0x00, 0x00, 0x01, 0x1f, 0x0a};
  static const uint8_t alive[] = {0x01, 0x01, 0x05, 0x00, 0x17, 0x02, 0x6e,
                                  0x31, 0x00, 0x00, 0x00, 0x02, 0x04, 0x0a,
                                  0x00, 0x00, 0x01, 0x1f, 0x0a, 0x00, 0x07,
                                  0x02, 0x64, 0x63, 0x00, 0x02, 0x65, 0x75};
  static const uint8_t tags[] = {0x02, 0x64, 0x63, 0x00, 0x02, 0x65, 0x75};
  cm_msg_t m;
  uint8_t buf[64];
  size_t len;
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_PING;
  m.u.ping.seq = 1;
  set_id(&m.u.ping.target, "n2");
  set_id(&m.u.ping.source, "n1");
  m.u.ping.source_addr = addr4(1, 7946);
  len = encode(&m, 1, buf, sizeof(buf));
  CM_CHECK(blob_eq(buf, len, ping, sizeof(ping)));

  doc_alive(&m, tags, sizeof(tags));
  len = encode(&m, 1, buf, sizeof(buf));
  CM_CHECK(blob_eq(buf, len, alive, sizeof(alive)));
}

/* A user event's name is 1..128 bytes of 0x21..0x7e: the decoder refuses
 * any other, and the encoder refuses to write one. */
CM_TEST(wire_user_event_names_checked_both_ways) {
  cm_msg_t m = sample(CM_MSG_USER_EVENT), out;
  uint8_t buf[512];
  size_t len = encode(&m, 1, buf, sizeof(buf));
  /* version, count, type, u16 body_len, u64 ltime, origin (1 + 6), flags */
  const size_t name_len_at = 2 + 3 + 8 + 7 + 1;
  char longname[CM_WIRE_MAX_EVENT_NAME + 1];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  CM_CHECK_EQ(buf[name_len_at], 6);
  accept1(buf, len, &out);
  CM_CHECK_EQ(out.u.uev.flags, CM_UEV_COALESCE | 0x80);
  buf[name_len_at + 1] = ' ';
  CM_CHECK_EQ(reject(buf, len), CM_EBADMSG);
  buf[name_len_at + 1] = 'd';
  buf[name_len_at + 1 + 5] = 0x7f;
  CM_CHECK_EQ(reject(buf, len), CM_EBADMSG);
  buf[name_len_at + 1 + 5] = 'y';
  buf[name_len_at] = 7; /* the name swallows the payload's length */
  CM_CHECK(reject(buf, len) != 0);
  buf[name_len_at] = 6;
  accept1(buf, len, &out);

  CM_CHECK_OK(cm_wire_packet_begin(&w));
  m.u.uev.name = (const uint8_t *)"a b";
  m.u.uev.name_len = 3;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  m.u.uev.name_len = 0;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  memset(longname, 'n', sizeof(longname));
  m.u.uev.name = (const uint8_t *)longname;
  m.u.uev.name_len = CM_WIRE_MAX_EVENT_NAME;
  CM_CHECK_OK(cm_wire_packet_add(&w, &m));
  CM_CHECK_EQ(cm_event_name_valid(longname, CM_WIRE_MAX_EVENT_NAME + 1), 0);
  CM_CHECK_EQ(cm_event_name_valid(NULL, 1), 0);
}

/* A query's relay count and filter are bounded, both ways. */
CM_TEST(wire_query_bounds_checked_both_ways) {
  cm_msg_t m = sample(CM_MSG_QUERY), out;
  uint8_t buf[2048];
  static uint8_t filter[CM_WIRE_MAX_QUERY_FILTER + 1];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t len = encode(&m, 1, buf, sizeof(buf));
  /* version, count, type, body_len, ltime, qid, origin (1 + 6), addr
   * (1 + 16 + 2), flags: then relay. */
  const size_t relay_at = 2 + 3 + 8 + 4 + 7 + 19 + 1;
  accept1(buf, len, &out);
  CM_CHECK_EQ(out.u.qry.relay, 2);
  CM_CHECK_EQ(buf[relay_at], 2);
  buf[relay_at] = CM_WIRE_MAX_QUERY_RELAY;
  accept1(buf, len, &out);
  buf[relay_at] = CM_WIRE_MAX_QUERY_RELAY + 1;
  CM_CHECK_EQ(reject(buf, len), CM_EBADMSG);
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  m.u.qry.relay = CM_WIRE_MAX_QUERY_RELAY + 1;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  m.u.qry.relay = 0;
  m.u.qry.filter = filter;
  m.u.qry.filter_len = CM_WIRE_MAX_QUERY_FILTER + 1;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  m.u.qry.filter_len = CM_WIRE_MAX_QUERY_FILTER;
  CM_CHECK_OK(cm_wire_packet_add(&w, &m));
  accept1(buf, w.len, &out);
  CM_CHECK_EQ(out.u.qry.filter_len, CM_WIRE_MAX_QUERY_FILTER);
}

/* ---- Writer limits ---- */

CM_TEST(wire_add_enospc_leaves_buffer_unchanged) {
  uint8_t t;
  for (t = CM_MSG_PING; t <= CM_MSG_TYPE_LAST; t++) {
    cm_msg_t first = sample(CM_MSG_ACK), m = sample(t);
    uint8_t buf[512], snap[512];
    cm_wbuf_t w = {buf, 0, 0};
    memset(buf, 0xa5, sizeof(buf));
    w.cap = 2 + cm_wire_msg_size(&first) + cm_wire_msg_size(&m) - 1;
    CM_CHECK_OK(cm_wire_packet_begin(&w));
    CM_CHECK_OK(cm_wire_packet_add(&w, &first));
    memcpy(snap, buf, sizeof(buf));
    CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_ENOSPC);
    CM_CHECK_EQ(w.len, 2 + cm_wire_msg_size(&first));
    CM_CHECK_EQ(cm_wire_packet_count(&w), 1);
    CM_CHECK(memcmp(buf, snap, sizeof(buf)) == 0);
    w.cap++;
    CM_CHECK_OK(cm_wire_packet_add(&w, &m));
    CM_CHECK_EQ(w.len, w.cap);
  }
}

CM_TEST(wire_begin_needs_room_for_the_header) {
  uint8_t buf[2] = {0x77, 0x77};
  cm_wbuf_t w = {buf, 0, 1};
  CM_CHECK_EQ(cm_wire_packet_begin(&w), CM_ENOSPC);
  CM_CHECK_EQ(buf[0], 0x77);
  w.cap = 2;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  CM_CHECK_EQ(w.len, 2);
  CM_CHECK_EQ(cm_wire_packet_count(&w), 0);
}

CM_TEST(wire_add_rejects_what_it_cannot_encode) {
  cm_msg_t bad[9];
  static const uint8_t unsorted[] = {1, 'b', 0, 0, 1, 'a', 0, 0};
  uint8_t buf[512], snap[512];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t i;
  bad[0] = sample(CM_MSG_PING);
  bad[0].u.ping.target.len = 0;
  bad[1] = sample(CM_MSG_PING);
  bad[1].u.ping.source.s[0] = '\t';
  bad[2] = sample(CM_MSG_PING);
  bad[2].u.ping.source_addr.family = 5;
  bad[3] = sample(CM_MSG_PING_REQ);
  bad[3].u.ping_req.target_addr.port = 0;
  bad[4] = sample(CM_MSG_PING_REQ);
  bad[4].u.ping_req.want_nack = 2;
  bad[5] = sample(CM_MSG_ALIVE);
  bad[5].u.alive.tags = unsorted;
  bad[5].u.alive.tags_len = sizeof(unsorted);
  bad[6] = sample(CM_MSG_DEAD);
  bad[6].u.suspect.from.len = CM_ID_MAX + 1;
  bad[7] = sample(CM_MSG_ACK);
  bad[7].type = 0;
  bad[8] = sample(CM_MSG_ALIVE);
  bad[8].u.alive.tags = NULL;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  memcpy(snap, buf, sizeof(buf));
  for (i = 0; i < 9; i++) {
    CM_CHECK_EQ(cm_wire_packet_add(&w, &bad[i]), CM_EINVAL);
    CM_CHECK_EQ(w.len, 2);
    CM_CHECK(memcmp(buf, snap, sizeof(buf)) == 0);
  }
}

CM_TEST(wire_add_stops_at_max_msgs) {
  cm_msg_t ack = sample(CM_MSG_ACK);
  uint8_t buf[1024];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t i, len;
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  for (i = 0; i < CM_WIRE_MAX_MSGS; i++)
    CM_CHECK_OK(cm_wire_packet_add(&w, &ack));
  len = w.len;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &ack), CM_ELIMIT);
  CM_CHECK_EQ(w.len, len);
  CM_CHECK_EQ(cm_wire_packet_count(&w), CM_WIRE_MAX_MSGS);
}

CM_TEST(wire_packet_never_exceeds_a_datagram) {
  size_t cap = CM_WIRE_MAX_PACKET + 4096, n = 0, count = 0;
  uint8_t *buf = malloc(cap), *tags = malloc(CM_WIRE_MAX_TAGS_LEN);
  cm_msg_t m = sample(CM_MSG_ALIVE);
  cm_msg_t *out = malloc(CM_WIRE_MAX_MSGS * sizeof(*out));
  cm_wbuf_t w = {buf, 0, cap};
  int rc;
  CM_CHECK(buf != NULL && tags != NULL && out != NULL);
  /* One tag with a value of 1024 'x' is 1030 bytes; 3 of them fit. */
  {
    char key[4] = "k0", val[CM_WIRE_MAX_TAG_VALUE];
    size_t tl = 0, k;
    uint8_t tmp[CM_WIRE_MAX_TAGS_LEN];
    memset(val, 'x', sizeof(val));
    for (k = 0; k < 3; k++) {
      key[1] = (char)('0' + k);
      memcpy(tmp, tags, tl);
      CM_CHECK_OK(cm_tags_set(tmp, tl, key, 2, val, sizeof(val), tags,
                              CM_WIRE_MAX_TAGS_LEN, &tl));
    }
    m.u.alive.tags = tags;
    m.u.alive.tags_len = (uint16_t)tl;
  }
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  while ((rc = cm_wire_packet_add(&w, &m)) == 0)
    n++;
  CM_CHECK_EQ(rc, CM_ENOSPC);
  CM_CHECK(w.len <= CM_WIRE_MAX_PACKET);
  CM_CHECK(w.len + cm_wire_msg_size(&m) > CM_WIRE_MAX_PACKET);
  CM_CHECK_OK(cm_wire_packet_decode(buf, w.len, out, CM_WIRE_MAX_MSGS, &count));
  CM_CHECK_EQ(count, n);
  free(buf);
  free(tags);
  free(out);
}

CM_TEST(wire_id_set_validates) {
  cm_wire_id_t id;
  char long_id[CM_ID_MAX + 1];
  memset(long_id, 'a', sizeof(long_id));
  CM_CHECK_OK(cm_wire_id_set(&id, "node-1", 6));
  CM_CHECK_EQ(id.len, 6);
  CM_CHECK_STR(id.s, "node-1");
  CM_CHECK_OK(cm_wire_id_set(&id, long_id, CM_ID_MAX));
  CM_CHECK_EQ(id.s[CM_ID_MAX], '\0');
  CM_CHECK_EQ(cm_wire_id_set(&id, long_id, CM_ID_MAX + 1), CM_ENODEID);
  CM_CHECK_EQ(cm_wire_id_set(&id, "", 0), CM_ENODEID);
  CM_CHECK_EQ(cm_wire_id_set(&id, "a b", 3), CM_ENODEID);
}

/* ---- Packet decoder rejections ---- */

CM_TEST(wire_decode_rejects_empty_input) {
  size_t count = 99;
  cm_msg_t out;
  CM_CHECK_EQ(cm_wire_packet_decode(NULL, 0, &out, 1, &count), CM_ETRUNC);
  CM_CHECK_EQ(count, 0);
}

CM_TEST(wire_decode_rejects_truncation_at_every_offset) {
  cm_msg_t in[8];
  uint8_t buf[1024];
  size_t len, k;
  uint8_t t;
  for (t = CM_MSG_PING; t <= CM_MSG_LEAVE; t++)
    in[t - 1] = sample(t);
  len = encode(in, 8, buf, sizeof(buf));
  for (k = 0; k < len; k++) {
    /* A copy of exactly k bytes, so ASan sees any read past the end. */
    uint8_t *cut = malloc(k ? k : 1);
    CM_CHECK(cut != NULL);
    memcpy(cut, buf, k);
    CM_CHECK_EQ(reject(cut, k), CM_ETRUNC);
    free(cut);
  }
}

CM_TEST(wire_decode_rejects_bad_version) {
  cm_msg_t m = sample(CM_MSG_ACK);
  uint8_t buf[64];
  size_t len = encode(&m, 1, buf, sizeof(buf));
  buf[0] = CM_WIRE_VERSION_COMPAT + 1;
  CM_CHECK_EQ(reject(buf, len), CM_EVERSION);
  buf[0] = 0xff;
  CM_CHECK_EQ(reject(buf, len), CM_EVERSION);
  buf[0] = 0;
  CM_CHECK_EQ(reject(buf, len), CM_EVERSION);
}

CM_TEST(wire_decode_rejects_count_zero) {
  static const uint8_t p[] = {CM_WIRE_VERSION, 0};
  CM_CHECK_EQ(reject(p, sizeof(p)), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_count_over_callers_max) {
  cm_msg_t in[3] = {sample(CM_MSG_ACK), sample(CM_MSG_NACK),
                    sample(CM_MSG_ACK)},
           out[3];
  uint8_t buf[64];
  size_t len = encode(in, 3, buf, sizeof(buf)), count = 99;
  CM_CHECK_EQ(cm_wire_packet_decode(buf, len, out, 2, &count), CM_ELIMIT);
  CM_CHECK_EQ(count, 0);
  CM_CHECK_OK(cm_wire_packet_decode(buf, len, out, 3, &count));
  CM_CHECK_EQ(count, 3);
}

/* 65 well-formed ACKs: the count byte is the only thing wrong. */
CM_TEST(wire_decode_rejects_count_over_format_max) {
  bb_t p;
  cm_msg_t *out = malloc((CM_WIRE_MAX_MSGS + 1) * sizeof(*out));
  size_t i, count = 99;
  CM_CHECK(out != NULL);
  p.n = 0;
  bb_u8(&p, CM_WIRE_VERSION);
  bb_u8(&p, CM_WIRE_MAX_MSGS + 1);
  for (i = 0; i < CM_WIRE_MAX_MSGS + 1; i++) {
    bb_u8(&p, CM_MSG_ACK);
    bb_u16(&p, 4);
    bb_u32(&p, (uint32_t)i);
  }
  CM_CHECK_EQ(
      cm_wire_packet_decode(p.b, p.n, out, CM_WIRE_MAX_MSGS + 1, &count),
      CM_EBADMSG);
  CM_CHECK_EQ(count, 0);
  p.b[1] = CM_WIRE_MAX_MSGS;
  CM_CHECK_OK(
      cm_wire_packet_decode(p.b, p.n - 7, out, CM_WIRE_MAX_MSGS, &count));
  CM_CHECK_EQ(count, CM_WIRE_MAX_MSGS);
  free(out);
}

CM_TEST(wire_decode_rejects_oversized_packet) {
  size_t len = CM_WIRE_MAX_PACKET + 1;
  uint8_t *buf = calloc(len, 1);
  CM_CHECK(buf != NULL);
  buf[0] = CM_WIRE_VERSION;
  buf[1] = 1;
  CM_CHECK_EQ(reject(buf, len), CM_ETOOBIG);
  free(buf);
}

/* Type 0 is never assigned; every other unknown type is a newer version's
 * and decodes as a raw body. */
CM_TEST(wire_decode_rejects_type_zero) {
  cm_msg_t out;
  bb_t body, p;
  body.n = 0;
  bb_u32(&body, 1);
  bb_packet1(&p, 0, &body);
  CM_CHECK_EQ(reject(p.b, p.n), CM_EMSGTYPE);
  bb_packet1(&p, CM_MSG_TYPE_LAST + 1, &body);
  accept1(p.b, p.n, &out);
  CM_CHECK_EQ(out.type, CM_MSG_TYPE_LAST + 1);
  CM_CHECK_EQ(out.u.raw.len, 4);
  CM_CHECK(out.u.raw.body == p.b + 5);
  bb_packet1(&p, 0xff, &body);
  accept1(p.b, p.n, &out);
  CM_CHECK_EQ(out.type, 0xff);
}

/* Type 0 is judged before the body length is checked against the packet:
 * a cut-off message of type 0 is reported as CM_EMSGTYPE, while the same
 * cut in a known type's body, or in an unknown type's (which is skipped by
 * its length, so its length is checked like any other), is a truncation,
 * which shows the order; a packet that ends inside the header (type,
 * body_len) is one too. */
CM_TEST(wire_decode_reports_type_zero_before_length) {
  bb_t body, p;
  body.n = 0;
  bb_u32(&body, 1);
  bb_packet1(&p, CM_MSG_ACK, &body);
  CM_CHECK_EQ(reject(p.b, p.n - 1), CM_ETRUNC);
  bb_packet1(&p, 0, &body);
  CM_CHECK_EQ(reject(p.b, p.n - 1), CM_EMSGTYPE);
  CM_CHECK_EQ(reject(p.b, 4), CM_ETRUNC); /* inside body_len */
  bb_packet1(&p, CM_MSG_TYPE_LAST + 1, &body);
  CM_CHECK_EQ(reject(p.b, p.n - 1), CM_ETRUNC);
  CM_CHECK_EQ(reject(p.b, 4), CM_ETRUNC);
}

/* body_len one short of the PING's fields, with the missing byte present
 * right after it: the body must not borrow from what follows. */
CM_TEST(wire_decode_rejects_body_len_too_short) {
  cm_msg_t in[2] = {sample(CM_MSG_PING), sample(CM_MSG_ACK)}, out[2];
  uint8_t buf[128];
  size_t len = encode(in, 2, buf, sizeof(buf)), count;
  CM_CHECK_OK(cm_wire_packet_decode(buf, len, out, 2, &count));
  buf[4]--;
  CM_CHECK_EQ(reject(buf, len), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_body_len_too_long) {
  bb_t body, p;
  body.n = 0;
  bb_u32(&body, 1);
  bb_packet1(&p, CM_MSG_NACK, &body);
  {
    cm_msg_t out;
    accept1(p.b, p.n, &out);
    CM_CHECK_EQ(out.u.nack.seq, 1);
  }
  bb_u8(&body, 0);
  bb_packet1(&p, CM_MSG_NACK, &body);
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_trailing_bytes) {
  cm_msg_t in[2] = {sample(CM_MSG_LEAVE), sample(CM_MSG_ALIVE)};
  uint8_t buf[256];
  size_t len = encode(in, 2, buf, sizeof(buf));
  buf[len] = 0;
  CM_CHECK_EQ(reject(buf, len + 1), CM_EBADMSG);
  /* A whole extra message beyond count is trailing bytes too. */
  buf[1] = 1;
  CM_CHECK_EQ(reject(buf, len), CM_EBADMSG);
}

/* LEAVE is id | u32: the id is the only field that varies here. */
static int leave_with_id(const uint8_t *id, size_t id_len) {
  bb_t body, p;
  body.n = 0;
  bb_u8(&body, (unsigned)id_len);
  bb_raw(&body, id, id_len);
  bb_u32(&body, 1);
  bb_packet1(&p, CM_MSG_LEAVE, &body);
  return reject(p.b, p.n);
}

CM_TEST(wire_decode_rejects_bad_ids) {
  uint8_t id[CM_ID_MAX + 1];
  cm_msg_t out;
  bb_t body, p;
  memset(id, 'a', sizeof(id));
  body.n = 0;
  bb_u8(&body, CM_ID_MAX);
  bb_raw(&body, id, CM_ID_MAX);
  bb_u32(&body, 1);
  bb_packet1(&p, CM_MSG_LEAVE, &body);
  accept1(p.b, p.n, &out);
  CM_CHECK_EQ(out.u.leave.node.len, CM_ID_MAX);

  CM_CHECK_EQ(leave_with_id(id, 0), CM_EBADMSG);
  CM_CHECK_EQ(leave_with_id(id, CM_ID_MAX + 1), CM_EBADMSG);
  id[3] = 0x01;
  CM_CHECK_EQ(leave_with_id(id, 8), CM_EBADMSG);
  id[3] = ' ';
  CM_CHECK_EQ(leave_with_id(id, 8), CM_EBADMSG);
  id[3] = 0x7f;
  CM_CHECK_EQ(leave_with_id(id, 8), CM_EBADMSG);
  id[3] = 0xc3;
  CM_CHECK_EQ(leave_with_id(id, 8), CM_EBADMSG);
}

/* PING ending in an address whose family and port are given. */
static int ping_with_addr(unsigned family, size_t ip_len, unsigned port) {
  static const uint8_t ip[16] = {10, 0, 0, 1};
  bb_t body, p;
  cm_msg_t out[1];
  size_t count = 99;
  int rc;
  body.n = 0;
  bb_u32(&body, 1);
  bb_id(&body, "b");
  bb_id(&body, "a");
  bb_u8(&body, family);
  bb_raw(&body, ip, ip_len);
  bb_u16(&body, port);
  bb_packet1(&p, CM_MSG_PING, &body);
  rc = cm_wire_packet_decode(p.b, p.n, out, 1, &count);
  CM_CHECK_EQ(count, rc == 0 ? 1 : 0);
  return rc;
}

CM_TEST(wire_decode_rejects_bad_address_family) {
  CM_CHECK_OK(ping_with_addr(4, 4, 7946));
  CM_CHECK_OK(ping_with_addr(6, 16, 7946));
  CM_CHECK_EQ(ping_with_addr(0, 4, 7946), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(5, 4, 7946), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(2, 4, 7946), CM_EBADMSG);
  /* The family decides the length: a v6 family with 4 bytes is short. */
  CM_CHECK_EQ(ping_with_addr(6, 4, 7946), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(4, 16, 7946), CM_EBADMSG);
  /* Unknown families are rejected as such, not for the length they imply. */
  CM_CHECK_EQ(ping_with_addr(0, 16, 7946), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(5, 16, 7946), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(0x46, 16, 7946), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_port_zero) {
  CM_CHECK_OK(ping_with_addr(4, 4, 1));
  CM_CHECK_EQ(ping_with_addr(4, 4, 0), CM_EBADMSG);
  CM_CHECK_EQ(ping_with_addr(6, 16, 0), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_want_nack_2) {
  bb_t body, p;
  cm_msg_t out;
  unsigned v;
  for (v = 0; v < 256; v++) {
    body.n = 0;
    bb_u32(&body, 1);
    bb_id(&body, "c");
    bb_addr4(&body, 7946);
    bb_u8(&body, v);
    bb_packet1(&p, CM_MSG_PING_REQ, &body);
    if (v <= 1) {
      accept1(p.b, p.n, &out);
      CM_CHECK_EQ(out.u.ping_req.want_nack, v);
    } else {
      CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
    }
  }
}

/* ALIVE n1 with the given tags blob; tags_len is declared_len. */
static int alive_with_tags(const void *tags, size_t len, size_t declared_len) {
  bb_t body, p;
  cm_msg_t out[1];
  size_t count = 99;
  int rc;
  body.n = 0;
  bb_id(&body, "n1");
  bb_u32(&body, 1);
  bb_addr4(&body, 7946);
  bb_u16(&body, (unsigned)declared_len);
  bb_raw(&body, tags, len);
  bb_packet1(&p, CM_MSG_ALIVE, &body);
  rc = cm_wire_packet_decode(p.b, p.n, out, 1, &count);
  CM_CHECK_EQ(count, rc == 0 ? 1 : 0);
  /* The decoder and the standalone validator must agree. */
  if (len == declared_len && rc != CM_ETOOBIG)
    CM_CHECK_EQ(cm_tags_validate(tags, len), rc);
  return rc;
}

#define ALIVE_TAGS(lit) alive_with_tags(lit, sizeof(lit) - 1, sizeof(lit) - 1)

CM_TEST(wire_decode_accepts_good_tags) {
  CM_CHECK_OK(ALIVE_TAGS(""));
  CM_CHECK_OK(ALIVE_TAGS("\x02"
                         "dc\x00\x02"
                         "eu"));
  /* Prefix first, then byte order; empty values; spaces and UTF-8. */
  CM_CHECK_OK(ALIVE_TAGS("\x01"
                         "a\x00\x00"
                         "\x02"
                         "ab\x00\x03"
                         "x y"
                         "\x01"
                         "b\x00\x02\xc3\xa9"));
}

CM_TEST(wire_decode_rejects_unsorted_tag_keys) {
  CM_CHECK_EQ(ALIVE_TAGS("\x01"
                         "b\x00\x00"
                         "\x01"
                         "a\x00\x00"),
              CM_EBADMSG);
  /* A longer key before its own prefix is out of order too. */
  CM_CHECK_EQ(ALIVE_TAGS("\x02"
                         "ab\x00\x00"
                         "\x01"
                         "a\x00\x00"),
              CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_duplicate_tag_key) {
  CM_CHECK_EQ(ALIVE_TAGS("\x01"
                         "a\x00\x01"
                         "1"
                         "\x01"
                         "a\x00\x01"
                         "2"),
              CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_bad_tag_keys) {
  CM_CHECK_EQ(ALIVE_TAGS("\x03"
                         "a=b\x00\x00"),
              CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x00\x00\x00"), CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x03"
                         "a b\x00\x00"),
              CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x02"
                         "a\x7f\x00\x00"),
              CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x02"
                         "a\x80\x00\x00"),
              CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_tag_key_over_max) {
  uint8_t t[3 + CM_WIRE_MAX_TAG_KEY + 1];
  memset(t, 'k', sizeof(t));
  t[0] = CM_WIRE_MAX_TAG_KEY;
  t[1 + CM_WIRE_MAX_TAG_KEY] = 0;
  t[2 + CM_WIRE_MAX_TAG_KEY] = 0;
  CM_CHECK_OK(
      alive_with_tags(t, 3 + CM_WIRE_MAX_TAG_KEY, 3 + CM_WIRE_MAX_TAG_KEY));
  t[0] = CM_WIRE_MAX_TAG_KEY + 1;
  t[1 + CM_WIRE_MAX_TAG_KEY] = 'k';
  t[2 + CM_WIRE_MAX_TAG_KEY] = 0;
  t[3 + CM_WIRE_MAX_TAG_KEY] = 0;
  CM_CHECK_EQ(alive_with_tags(t, sizeof(t), sizeof(t)), CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_control_bytes_in_tag_values) {
  uint8_t t[] = {1, 'k', 0, 3, 'a', 'b', 'c'};
  unsigned c;
  for (c = 0; c < 256; c++) {
    t[5] = (uint8_t)c;
    if (c < 0x20 || c == 0x7f)
      CM_CHECK_EQ(alive_with_tags(t, sizeof(t), sizeof(t)), CM_EBADMSG);
    else
      CM_CHECK_OK(alive_with_tags(t, sizeof(t), sizeof(t)));
  }
}

CM_TEST(wire_decode_rejects_tag_value_over_max) {
  size_t n = 4 + CM_WIRE_MAX_TAG_VALUE + 1;
  uint8_t *t = malloc(n);
  CM_CHECK(t != NULL);
  memset(t, 'v', n);
  t[0] = 1;
  t[2] = CM_WIRE_MAX_TAG_VALUE >> 8;
  t[3] = CM_WIRE_MAX_TAG_VALUE & 0xff;
  CM_CHECK_OK(alive_with_tags(t, n - 1, n - 1));
  t[3]++;
  CM_CHECK_EQ(alive_with_tags(t, n, n), CM_EBADMSG);
  free(t);
}

/* Lengths inside the blob that run past it: the key, the value length, the
 * value. */
CM_TEST(wire_decode_rejects_tag_lengths_past_the_blob) {
  CM_CHECK_EQ(ALIVE_TAGS("\x05"
                         "ab"),
              CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x01"
                         "a\x00"),
              CM_EBADMSG);
  CM_CHECK_EQ(ALIVE_TAGS("\x01"
                         "a\x00\x05"
                         "ab"),
              CM_EBADMSG);
}

CM_TEST(wire_decode_rejects_tags_len_past_the_body) {
  static const uint8_t t[] = {1, 'a', 0, 0};
  CM_CHECK_OK(alive_with_tags(t, sizeof(t), sizeof(t)));
  CM_CHECK_EQ(alive_with_tags(t, sizeof(t), sizeof(t) + 1), CM_EBADMSG);
  CM_CHECK_EQ(alive_with_tags(t, sizeof(t), sizeof(t) - 1), CM_EBADMSG);
}

/* An oversized tags_len is reported as such before its bytes are looked for.
 */
CM_TEST(wire_decode_rejects_oversized_tags_len_before_reading) {
  static const uint8_t t[] = {1, 'a', 0, 0};
  CM_CHECK_EQ(alive_with_tags(t, sizeof(t), CM_WIRE_MAX_TAGS_LEN + 1),
              CM_ETOOBIG);
  CM_CHECK_EQ(alive_with_tags(t, sizeof(t), 0xffff), CM_ETOOBIG);
}

CM_TEST(wire_decode_rejects_oversized_tags) {
  size_t n = CM_WIRE_MAX_TAGS_LEN + 1;
  uint8_t *t = calloc(n, 1);
  CM_CHECK(t != NULL);
  CM_CHECK_EQ(alive_with_tags(t, n, n), CM_ETOOBIG);
  CM_CHECK_EQ(cm_tags_validate(t, n), CM_ETOOBIG);
  free(t);
}

/* ---- Tag helpers ---- */

#define BLOB_EQ(out, len, lit)                                                 \
  CM_CHECK(blob_eq(out, len, (const uint8_t *)lit, sizeof(lit) - 1))

CM_TEST(wire_tags_set_into_empty) {
  uint8_t out[64];
  size_t n = 0;
  CM_CHECK_OK(cm_tags_set(NULL, 0, "role", 4, "db", 2, out, sizeof(out), &n));
  BLOB_EQ(out, n,
          "\x04"
          "role\x00\x02"
          "db");
  CM_CHECK_OK(cm_tags_validate(out, n));
}

CM_TEST(wire_tags_set_replaces_existing_value) {
  uint8_t out[64], out2[64];
  size_t n = 0;
  CM_CHECK_OK(
      cm_tags_set(TAGS, sizeof(TAGS), "dc", 2, "us", 2, out, sizeof(out), &n));
  BLOB_EQ(out, n,
          "\x02"
          "dc\x00\x02"
          "us"
          "\x04"
          "role\x00\x02"
          "db");
  CM_CHECK_OK(cm_tags_set(out, n, "role", 4, "", 0, out2, sizeof(out2), &n));
  BLOB_EQ(out2, n,
          "\x02"
          "dc\x00\x02"
          "us"
          "\x04"
          "role\x00\x00");
}

CM_TEST(wire_tags_set_inserts_in_canonical_order) {
  static const char *keys[] = {"b", "ab", "c", "a", "B", "aa"};
  uint8_t a[256], b[256];
  size_t n = 0, i, off = 0;
  cm_tag_t t;
  for (i = 0; i < 6; i++) {
    memcpy(b, a, n);
    CM_CHECK_OK(
        cm_tags_set(b, n, keys[i], strlen(keys[i]), "v", 1, a, sizeof(a), &n));
    CM_CHECK_OK(cm_tags_validate(a, n));
  }
  BLOB_EQ(a, n,
          "\x01"
          "B\x00\x01v"
          "\x01"
          "a\x00\x01v"
          "\x02"
          "aa\x00\x01v"
          "\x02"
          "ab\x00\x01v"
          "\x01"
          "b\x00\x01v"
          "\x01"
          "c\x00\x01v");
  for (i = 0; cm_tags_next(a, n, &off, &t); i++)
    CM_CHECK_EQ(t.value_len, 1);
  CM_CHECK_EQ(i, 6);
}

CM_TEST(wire_tags_remove) {
  uint8_t out[64];
  size_t n = 0;
  CM_CHECK_OK(
      cm_tags_remove(TAGS, sizeof(TAGS), "dc", 2, out, sizeof(out), &n));
  BLOB_EQ(out, n,
          "\x04"
          "role\x00\x02"
          "db");
  CM_CHECK_OK(
      cm_tags_remove(TAGS, sizeof(TAGS), "role", 4, out, sizeof(out), &n));
  BLOB_EQ(out, n,
          "\x02"
          "dc\x00\x07"
          "eu-west");
  CM_CHECK_OK(cm_tags_remove(out, n, "dc", 2, out + 32, 32, &n));
  CM_CHECK_EQ(n, 0);
}

CM_TEST(wire_tags_remove_missing_is_enoent) {
  uint8_t out[64];
  size_t n = 77;
  memset(out, 0x5a, sizeof(out));
  CM_CHECK_EQ(
      cm_tags_remove(TAGS, sizeof(TAGS), "rol", 3, out, sizeof(out), &n),
      CM_ENOENT);
  CM_CHECK_EQ(cm_tags_remove(TAGS, sizeof(TAGS), "zz", 2, out, sizeof(out), &n),
              CM_ENOENT);
  CM_CHECK_EQ(cm_tags_remove(NULL, 0, "dc", 2, out, sizeof(out), &n),
              CM_ENOENT);
  CM_CHECK_EQ(n, 77);
  CM_CHECK_EQ(out[0], 0x5a);
}

CM_TEST(wire_tags_set_rejects_bad_keys) {
  char key[CM_WIRE_MAX_TAG_KEY + 1];
  uint8_t out[512];
  size_t n;
  memset(key, 'k', sizeof(key));
  CM_CHECK_OK(cm_tags_set(NULL, 0, key, CM_WIRE_MAX_TAG_KEY, "", 0, out,
                          sizeof(out), &n));
  CM_CHECK_EQ(cm_tags_set(NULL, 0, key, CM_WIRE_MAX_TAG_KEY + 1, "", 0, out,
                          sizeof(out), &n),
              CM_ETAGKEY);
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "", 0, "", 0, out, sizeof(out), &n),
              CM_ETAGKEY);
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "a=b", 3, "", 0, out, sizeof(out), &n),
              CM_ETAGKEY);
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "a b", 3, "", 0, out, sizeof(out), &n),
              CM_ETAGKEY);
  CM_CHECK(cm_tag_key_valid("a-b.c_d/e", 9));
  CM_CHECK(!cm_tag_key_valid("\xc3\xa9", 2));
}

CM_TEST(wire_tags_set_rejects_bad_values) {
  char val[CM_WIRE_MAX_TAG_VALUE + 1];
  uint8_t out[2048];
  size_t n;
  memset(val, 'v', sizeof(val));
  CM_CHECK_OK(cm_tags_set(NULL, 0, "k", 1, val, CM_WIRE_MAX_TAG_VALUE, out,
                          sizeof(out), &n));
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "k", 1, val, CM_WIRE_MAX_TAG_VALUE + 1, out,
                          sizeof(out), &n),
              CM_ETAGVAL);
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "k", 1, "a\nb", 3, out, sizeof(out), &n),
              CM_ETAGVAL);
  CM_CHECK_EQ(cm_tags_set(NULL, 0, "k", 1, "a\0b", 3, out, sizeof(out), &n),
              CM_ETAGVAL);
  CM_CHECK_OK(cm_tags_set(NULL, 0, "k", 1, "caf\xc3\xa9 au lait", 12, out,
                          sizeof(out), &n));
}

CM_TEST(wire_tags_set_enospc_leaves_out_untouched) {
  uint8_t out[64];
  size_t n = 77, need = sizeof(TAGS) + 1 + 1 + 2 + 1;
  memset(out, 0x5a, sizeof(out));
  CM_CHECK_EQ(
      cm_tags_set(TAGS, sizeof(TAGS), "z", 1, "1", 1, out, need - 1, &n),
      CM_ENOSPC);
  CM_CHECK_EQ(n, 77);
  CM_CHECK_EQ(out[0], 0x5a);
  CM_CHECK_OK(cm_tags_set(TAGS, sizeof(TAGS), "z", 1, "1", 1, out, need, &n));
  CM_CHECK_EQ(n, need);
  CM_CHECK_EQ(cm_tags_remove(TAGS, sizeof(TAGS), "dc", 2, out, 8, &n),
              CM_ENOSPC);
}

CM_TEST(wire_tags_set_rejects_a_set_over_the_wire_limit) {
  uint8_t *a = malloc(2 * CM_WIRE_MAX_TAGS_LEN), *b = a + CM_WIRE_MAX_TAGS_LEN;
  char val[CM_WIRE_MAX_TAG_VALUE];
  char key[2] = "0";
  size_t n = 0;
  int rc = 0;
  CM_CHECK(a != NULL);
  memset(val, 'v', sizeof(val));
  while (rc == 0) {
    memcpy(b, a, n);
    rc = cm_tags_set(b, n, key, 1, val, sizeof(val), a, CM_WIRE_MAX_TAGS_LEN,
                     &n);
    key[0]++;
  }
  CM_CHECK_EQ(rc, CM_ETAGSET);
  CM_CHECK(n <= CM_WIRE_MAX_TAGS_LEN);
  CM_CHECK_OK(cm_tags_validate(a, n));
  free(a);
}

CM_TEST(wire_tags_set_rejects_an_invalid_input_blob) {
  static const uint8_t bad[] = {1, 'b', 0, 0, 1, 'a', 0, 0};
  uint8_t out[64];
  size_t n;
  CM_CHECK_EQ(
      cm_tags_set(bad, sizeof(bad), "c", 1, "", 0, out, sizeof(out), &n),
      CM_EINVAL);
  CM_CHECK_EQ(cm_tags_remove(bad, sizeof(bad), "a", 1, out, sizeof(out), &n),
              CM_EINVAL);
}

CM_TEST(wire_tags_get) {
  cm_tag_t t;
  CM_CHECK(cm_tags_get(TAGS, sizeof(TAGS), "role", 4, &t));
  CM_CHECK_EQ(t.value_len, 2);
  CM_CHECK(memcmp(t.value, "db", 2) == 0);
  CM_CHECK(cm_tags_get(TAGS, sizeof(TAGS), "dc", 2, &t));
  CM_CHECK(memcmp(t.value, "eu-west", 7) == 0);
  CM_CHECK(!cm_tags_get(TAGS, sizeof(TAGS), "rol", 3, &t));
  CM_CHECK(!cm_tags_get(TAGS, sizeof(TAGS), "roles", 5, &t));
  CM_CHECK(!cm_tags_get(TAGS, sizeof(TAGS), "a", 1, &t));
  CM_CHECK(!cm_tags_get(NULL, 0, "a", 1, &t));
}

/* ---- Push-pull ---- */

static cm_pp_entry_t pp_entry(const char *id, uint32_t inc, cm_addr_t addr,
                              uint8_t state, const uint8_t *tags,
                              uint16_t tags_len) {
  cm_pp_entry_t e;
  memset(&e, 0, sizeof(e));
  set_id(&e.node, id);
  e.incarnation = inc;
  e.addr = addr;
  e.state = state;
  e.tags = tags;
  e.tags_len = tags_len;
  return e;
}

static size_t pp_build(uint8_t *buf, size_t cap, const cm_pp_entry_t *es,
                       size_t n) {
  cm_wbuf_t w = {buf, 0, cap};
  size_t i;
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_RESPONSE, CM_PP_FLAG_JOIN));
  for (i = 0; i < n; i++)
    CM_CHECK_OK(cm_wire_pp_add(&w, &es[i]));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  return w.len;
}

/* Four entries, one per state, v4 and v6, with and without tags. */
static size_t pp_sample(uint8_t *buf, size_t cap, cm_pp_entry_t *es) {
  static const uint8_t t2[] = {1, 'z', 0, 1, '1'};
  es[0] =
      pp_entry("node-a", 1, addr4(1, 7946), CM_STATE_ALIVE, TAGS, sizeof(TAGS));
  es[1] =
      pp_entry("node-b", 0xffffffff, addr6(7946), CM_STATE_SUSPECT, NULL, 0);
  es[2] = pp_entry("node-c", 3, addr4(3, 1), CM_STATE_FAILED, t2, sizeof(t2));
  es[3] = pp_entry("node", 0, addr4(4, 65535), CM_STATE_LEFT, NULL, 0);
  return pp_build(buf, cap, es, 4);
}

static int pp_reject(const uint8_t *buf, size_t len) {
  cm_pp_header_t h;
  int rc;
  memset(&h, 0x77, sizeof(h));
  rc = cm_wire_pp_decode(buf, len, &h);
  CM_CHECK(rc != 0);
  return rc;
}

CM_TEST(wire_pp_roundtrip_several_entries_with_tags) {
  cm_pp_entry_t in[4], out;
  cm_pp_header_t h;
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in), off = 0, i = 0;
  CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
  CM_CHECK_EQ(h.kind, CM_PP_RESPONSE);
  CM_CHECK_EQ(h.flags, CM_PP_FLAG_JOIN);
  CM_CHECK_EQ(h.count, 4);
  while (cm_wire_pp_next(buf, len, &off, &out)) {
    CM_CHECK(i < 4);
    CM_CHECK(id_eq(&in[i].node, &out.node));
    CM_CHECK_EQ(out.incarnation, in[i].incarnation);
    CM_CHECK(cm_addr_eq(&out.addr, &in[i].addr));
    CM_CHECK_EQ(out.state, in[i].state);
    CM_CHECK(blob_eq(out.tags, out.tags_len, in[i].tags, in[i].tags_len));
    i++;
  }
  CM_CHECK_EQ(i, 4);
  CM_CHECK_EQ(off, len);
}

CM_TEST(wire_pp_roundtrip_empty_request) {
  uint8_t buf[16];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  cm_pp_header_t h;
  cm_pp_entry_t e;
  size_t off = 0;
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK_EQ(w.len, 7);
  CM_CHECK_OK(cm_wire_pp_decode(buf, w.len, &h));
  CM_CHECK_EQ(h.kind, CM_PP_REQUEST);
  CM_CHECK_EQ(h.flags, 0);
  CM_CHECK_EQ(h.count, 0);
  CM_CHECK(!cm_wire_pp_next(buf, w.len, &off, &e));
}

CM_TEST(wire_pp_header_is_as_documented) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  pp_sample(buf, sizeof(buf), in);
  CM_CHECK_EQ(buf[0], CM_WIRE_VERSION);
  CM_CHECK_EQ(buf[1], CM_PP_RESPONSE);
  CM_CHECK_EQ(buf[2], CM_PP_FLAG_JOIN);
  CM_CHECK(memcmp(buf + 3, "\x00\x00\x00\x04", 4) == 0);
  CM_CHECK_EQ(buf[7], 6);
  CM_CHECK(memcmp(buf + 8, "node-a", 6) == 0);
}

/* The worked example of docs/protocol.md (Wire format). */
CM_TEST(wire_pp_encoding_matches_documented_example) {
  static const uint8_t doc[] = {0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02,
                                0x6e, 0x31, 0x00, 0x00, 0x00, 0x02, 0x04, 0x0a,
                                0x00, 0x00, 0x01, 0x1f, 0x0a, 0x00, 0x00, 0x00};
  cm_pp_entry_t e = pp_entry("n1", 2, addr4(1, 7946), CM_STATE_ALIVE, NULL, 0);
  uint8_t buf[64];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_RESPONSE, 0));
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK(blob_eq(buf, w.len, doc, sizeof(doc)));
}

CM_TEST(wire_pp_add_enospc_leaves_buffer_unchanged) {
  cm_pp_entry_t e =
      pp_entry("node-a", 1, addr6(1), CM_STATE_ALIVE, TAGS, sizeof(TAGS));
  uint8_t buf[256], snap[256];
  cm_wbuf_t w = {buf, 0, 0};
  size_t one;
  memset(buf, 0xa5, sizeof(buf));
  w.cap = sizeof(buf);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  one = w.len - 7;
  set_id(&e.node, "node-b");
  w.cap = w.len + one - 1;
  memcpy(snap, buf, sizeof(buf));
  CM_CHECK_EQ(cm_wire_pp_add(&w, &e), CM_ENOSPC);
  CM_CHECK_EQ(w.len, 7 + one);
  CM_CHECK(memcmp(buf, snap, sizeof(buf)) == 0);
  w.cap++;
  CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  CM_CHECK_EQ(w.len, w.cap);
  CM_CHECK_EQ(buf[6], 2);
}

CM_TEST(wire_pp_writer_rejects_what_it_cannot_encode) {
  static const uint8_t bad_tags[] = {1, 'a', 0, 1, '\n'};
  cm_pp_entry_t bad[5];
  uint8_t buf[256];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t i;
  CM_CHECK_EQ(cm_wire_pp_begin(&w, 0, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_wire_pp_begin(&w, 3, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_wire_pp_begin_version(&w, 0, CM_PP_REQUEST, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_wire_pp_begin_version(&w, CM_WIRE_VERSION_COMPAT + 1,
                                       CM_PP_REQUEST, 0),
              CM_EINVAL);
  w.cap = 6;
  CM_CHECK_EQ(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0), CM_ENOSPC);
  w.cap = sizeof(buf);
  for (i = 0; i < 5; i++)
    bad[i] = pp_entry("n", 1, addr4(1, 1), CM_STATE_ALIVE, NULL, 0);
  CM_CHECK_EQ(cm_wire_pp_add(&w, &bad[4]), CM_EINVAL); /* not begun */
  bad[0].node.len = 0;
  bad[1].addr.family = 0;
  bad[2].addr.port = 0;
  bad[3].state = 4;
  bad[4].tags = bad_tags;
  bad[4].tags_len = sizeof(bad_tags);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_REQUEST, 0));
  for (i = 0; i < 5; i++)
    CM_CHECK_EQ(cm_wire_pp_add(&w, &bad[i]), CM_EINVAL);
  CM_CHECK_EQ(w.len, 7);
}

CM_TEST(wire_pp_rejects_bad_version) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  buf[0] = 0;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EVERSION);
  buf[0] = CM_WIRE_VERSION_COMPAT + 1;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EVERSION);
}

CM_TEST(wire_pp_rejects_bad_kind) {
  cm_pp_entry_t in[4];
  cm_pp_header_t h;
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  buf[1] = CM_PP_REQUEST;
  CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
  buf[1] = 0;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
  buf[1] = 3;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
}

/* The count says one entry more than there is: the bytes ran out. */
CM_TEST(wire_pp_rejects_too_few_entries) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  buf[6] = 5;
  CM_CHECK_EQ(pp_reject(buf, len), CM_ETRUNC);
}

/* The count says one entry fewer than there is: the last is trailing. */
CM_TEST(wire_pp_rejects_too_many_entries) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  buf[6] = 3;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
}

CM_TEST(wire_pp_rejects_count_over_max) {
  uint8_t buf[7] = {CM_WIRE_VERSION, CM_PP_REQUEST, 0, 0, 1, 0, 1};
  CM_CHECK_EQ(pp_reject(buf, sizeof(buf)), CM_ETOOBIG);
}

CM_TEST(wire_pp_rejects_bad_state) {
  cm_pp_entry_t e = pp_entry("n1", 1, addr4(1, 1), CM_STATE_LEFT, NULL, 0);
  cm_pp_header_t h;
  uint8_t buf[64];
  size_t len = pp_build(buf, sizeof(buf), &e, 1);
  /* header 7 | id 3 | incarnation 4 | addr 7 | state */
  size_t state_at = 7 + 3 + 4 + 7;
  CM_CHECK_EQ(buf[state_at], CM_STATE_LEFT);
  CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
  buf[state_at] = 4;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
  buf[state_at] = 0xff;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
}

CM_TEST(wire_pp_rejects_bad_entry_fields) {
  cm_pp_entry_t e =
      pp_entry("n1", 1, addr4(1, 1), CM_STATE_ALIVE, TAGS, sizeof(TAGS));
  uint8_t buf[128], orig[128];
  size_t len = pp_build(buf, sizeof(buf), &e, 1);
  memcpy(orig, buf, len);
  buf[7] = 0; /* id length */
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
  memcpy(buf, orig, len);
  buf[7 + 3 + 4] = 5; /* family */
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
  memcpy(buf, orig, len);
  buf[7 + 3 + 4 + 5] = 0; /* port 1 -> 0 */
  buf[7 + 3 + 4 + 6] = 0;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
  memcpy(buf, orig, len);
  buf[len - 1] = '\t'; /* last byte of the last tag value */
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
}

/* Duplicate ids are not a format error: each entry is merged on its own. */
CM_TEST(wire_pp_allows_repeated_ids) {
  cm_pp_entry_t es[2], e;
  uint8_t buf[256];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  cm_pp_header_t h;
  size_t off = 0, n = 0;
  es[0] = pp_entry("a", 1, addr4(1, 1), CM_STATE_ALIVE, NULL, 0);
  es[1] = pp_entry("a", 2, addr4(4, 1), CM_STATE_FAILED, NULL, 0);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_RESPONSE, 0));
  CM_CHECK_OK(cm_wire_pp_add(&w, &es[0]));
  CM_CHECK_OK(cm_wire_pp_add(&w, &es[1]));
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  CM_CHECK_OK(cm_wire_pp_decode(buf, w.len, &h));
  CM_CHECK_EQ(h.count, 2);
  while (cm_wire_pp_next(buf, w.len, &off, &e))
    CM_CHECK_EQ(e.incarnation, ++n);
  CM_CHECK_EQ(n, 2);
}

CM_TEST(wire_pp_rejects_trailing_bytes) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  buf[len] = 0;
  CM_CHECK_EQ(pp_reject(buf, len + 1), CM_EBADMSG);
}

CM_TEST(wire_pp_rejects_truncation_at_every_offset) {
  cm_pp_entry_t in[4];
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in), k;
  for (k = 0; k < len; k++) {
    uint8_t *cut = malloc(k ? k : 1);
    CM_CHECK(cut != NULL);
    memcpy(cut, buf, k);
    CM_CHECK_EQ(pp_reject(cut, k), CM_ETRUNC);
    free(cut);
  }
}

/* ---- Forward compatibility: what a newer peer may send ---- */

/* ACK, a message of a type this version does not know, NACK. */
static void bb_with_unknown(bb_t *p, unsigned version, unsigned unknown_len,
                            unsigned declared_len) {
  p->n = 0;
  bb_u8(p, version);
  bb_u8(p, 3);
  bb_u8(p, CM_MSG_ACK);
  bb_u16(p, 4);
  bb_u32(p, 11);
  bb_u8(p, 0x40);
  bb_u16(p, declared_len);
  while (unknown_len-- > 0)
    bb_u8(p, 0xee);
  bb_u8(p, CM_MSG_NACK);
  bb_u16(p, 4);
  bb_u32(p, 12);
}

CM_TEST(wire_decode_skips_unknown_type_by_its_length) {
  cm_msg_t out[3];
  size_t count = 0;
  bb_t p;
  bb_with_unknown(&p, CM_WIRE_VERSION, 5, 5);
  CM_CHECK_OK(cm_wire_packet_decode(p.b, p.n, out, 3, &count));
  CM_CHECK_EQ(count, 3);
  CM_CHECK_EQ(out[0].type, CM_MSG_ACK);
  CM_CHECK_EQ(out[0].u.ack.seq, 11);
  CM_CHECK_EQ(out[2].type, CM_MSG_NACK);
  CM_CHECK_EQ(out[2].u.nack.seq, 12);
}

/* A length that runs past the packet is malformed, known type or not. */
CM_TEST(wire_decode_rejects_truncated_unknown_type) {
  bb_t p;
  bb_with_unknown(&p, CM_WIRE_VERSION, 5, 5);
  p.n = 2 + 7 + 3 + 4; /* cut inside the unknown body */
  p.b[1] = 2;
  CM_CHECK_EQ(reject(p.b, p.n), CM_ETRUNC);
  bb_with_unknown(&p, CM_WIRE_VERSION, 5, 200);
  CM_CHECK_EQ(reject(p.b, p.n), CM_ETRUNC);
}

/* Versions 1..127 share this framing and are read; 0 and 128.. are not. */
CM_TEST(wire_decode_accepts_compatible_higher_versions) {
  cm_msg_t out[3];
  size_t count = 0;
  bb_t p;
  bb_with_unknown(&p, 2, 1, 1);
  CM_CHECK_OK(cm_wire_packet_decode(p.b, p.n, out, 3, &count));
  CM_CHECK_EQ(count, 3);
  p.b[0] = 127;
  CM_CHECK_OK(cm_wire_packet_decode(p.b, p.n, out, 3, &count));
  p.b[0] = 128;
  CM_CHECK_EQ(reject(p.b, p.n), CM_EVERSION);
  p.b[0] = 0;
  CM_CHECK_EQ(reject(p.b, p.n), CM_EVERSION);
}

CM_TEST(wire_pp_ignores_unknown_flag_bits) {
  cm_pp_entry_t in[4];
  cm_pp_header_t h;
  uint8_t buf[512];
  size_t len = pp_sample(buf, sizeof(buf), in);
  unsigned bit;
  for (bit = 0x04; bit <= 0x80; bit <<= 1) {
    buf[2] = (uint8_t)(bit | CM_PP_FLAG_JOIN);
    CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
    CM_CHECK_EQ(h.count, 4);
    CM_CHECK(h.flags & CM_PP_FLAG_JOIN);
  }
  buf[0] = 2;
  CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
  buf[0] = 128;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EVERSION);
}

/* ---- Version extension: ALIVE trailing field, push-pull entries ---- */

static const uint8_t LATER[] = {0xab, 0xcd}; /* fields of a later version */

/* An ALIVE of "n1" with no tags and the extension bytes given verbatim. */
static void bb_alive_ext(bb_t *p, const uint8_t *ext, size_t ext_n) {
  bb_t body;
  body.n = 0;
  bb_id(&body, "n1");
  bb_u32(&body, 2);
  bb_addr4(&body, 7946);
  bb_u16(&body, 0);
  bb_raw(&body, ext, ext_n);
  bb_packet1(p, CM_MSG_ALIVE, &body);
}

CM_TEST(wire_alive_carries_versions_and_keeps_later_fields) {
  static const uint8_t ext[] = {4, 1, 3, 0xab, 0xcd}, only[] = {2, 1, 1};
  cm_msg_t m = sample(CM_MSG_ALIVE), out;
  uint8_t buf[128], again[128];
  size_t len, len2;
  bb_t p;
  /* Without versions the body is as before: no extension byte at all. */
  len = encode(&m, 1, buf, sizeof(buf));
  CM_CHECK_EQ(len, 2 + cm_wire_msg_size(&m));
  m.u.alive.ext.vmin = 1;
  m.u.alive.ext.vmax = 3;
  m.u.alive.ext.rest = LATER;
  m.u.alive.ext.rest_len = sizeof(LATER);
  len2 = encode(&m, 1, buf, sizeof(buf));
  CM_CHECK_EQ(len2, len + sizeof(ext));
  CM_CHECK(memcmp(buf + len, ext, sizeof(ext)) == 0);
  accept1(buf, len2, &out);
  CM_CHECK(msg_eq(&m, &out));
  CM_CHECK_EQ(out.u.alive.ext.vmin, 1);
  CM_CHECK_EQ(out.u.alive.ext.vmax, 3);
  CM_CHECK_EQ(out.u.alive.ext.rest_len, 2);
  CM_CHECK(out.u.alive.ext.rest == buf + len + 3);
  CM_CHECK_EQ(encode(&out, 1, again, sizeof(again)), len2);
  CM_CHECK(memcmp(buf, again, len2) == 0);
  bb_alive_ext(&p, only, sizeof(only));
  accept1(p.b, p.n, &out);
  CM_CHECK_EQ(out.u.alive.ext.vmax, 1);
}

CM_TEST(wire_alive_rejects_bad_version_extension) {
  static const uint8_t empty[] = {0}, one[] = {1, 1}, zero_min[] = {2, 0, 1},
                       inverted[] = {2, 3, 2}, past[] = {4, 1, 1, 0};
  static const uint8_t after[] = {2, 1, 1, 0};
  bb_t p;
  bb_alive_ext(&p, empty, sizeof(empty)); /* absent is written as nothing */
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
  bb_alive_ext(&p, one, sizeof(one));
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
  bb_alive_ext(&p, zero_min, sizeof(zero_min));
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
  bb_alive_ext(&p, inverted, sizeof(inverted));
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
  bb_alive_ext(&p, past, sizeof(past)); /* ext_len past the body */
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
  bb_alive_ext(&p, after, sizeof(after)); /* later fields go inside ext */
  CM_CHECK_EQ(reject(p.b, p.n), CM_EBADMSG);
}

CM_TEST(wire_add_rejects_a_bad_extension) {
  cm_msg_t m = sample(CM_MSG_ALIVE);
  uint8_t buf[128];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  CM_CHECK_OK(cm_wire_packet_begin(&w));
  m.u.alive.ext.vmin = 2;
  m.u.alive.ext.vmax = 1;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  m.u.alive.ext.vmin = 0;
  m.u.alive.ext.rest = LATER;
  m.u.alive.ext.rest_len = 1; /* later fields need versions */
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  m.u.alive.ext.vmin = 1;
  m.u.alive.ext.vmax = 1;
  m.u.alive.ext.rest = NULL;
  CM_CHECK_EQ(cm_wire_packet_add(&w, &m), CM_EINVAL);
  CM_CHECK_EQ(w.len, 2);
}

CM_TEST(wire_unknown_type_reencodes_verbatim) {
  cm_msg_t out[3];
  uint8_t buf[64];
  size_t count = 0;
  bb_t p;
  bb_with_unknown(&p, 2, 5, 5);
  CM_CHECK_OK(cm_wire_packet_decode(p.b, p.n, out, 3, &count));
  CM_CHECK_EQ(out[1].type, 0x40);
  CM_CHECK_EQ(out[1].u.raw.len, 5);
  {
    cm_wbuf_t w = {buf, 0, sizeof(buf)};
    size_t i;
    CM_CHECK_OK(cm_wire_packet_begin_version(&w, 2));
    for (i = 0; i < count; i++)
      CM_CHECK_OK(cm_wire_packet_add(&w, &out[i]));
    CM_CHECK_EQ(w.len, p.n);
    CM_CHECK(memcmp(buf, p.b, p.n) == 0);
  }
}

CM_TEST(wire_pp_entries_carry_versions_under_the_ext_flag) {
  cm_pp_entry_t in[2], e;
  cm_pp_header_t h;
  uint8_t buf[256], plain[256];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  size_t off = 0, len, plain_len;
  in[0] = pp_entry("n1", 1, addr4(1, 7946), CM_STATE_ALIVE, NULL, 0);
  in[1] = pp_entry("n2", 2, addr4(2, 7946), CM_STATE_SUSPECT, NULL, 0);
  plain_len = pp_build(plain, sizeof(plain), in, 2);
  in[0].ext.vmin = 1;
  in[0].ext.vmax = 2;
  in[0].ext.rest = LATER;
  in[0].ext.rest_len = sizeof(LATER);
  CM_CHECK_OK(cm_wire_pp_begin(&w, CM_PP_RESPONSE, CM_PP_FLAG_EXT));
  CM_CHECK_OK(cm_wire_pp_add(&w, &in[0]));
  CM_CHECK_OK(cm_wire_pp_add(&w, &in[1])); /* versions unknown: ext_len 0 */
  len = w.len;
  /* One ext_len byte per entry, and the versions with their later bytes. */
  CM_CHECK_EQ(len, plain_len + 2 + 2 + sizeof(LATER));
  CM_CHECK_OK(cm_wire_pp_decode(buf, len, &h));
  CM_CHECK_EQ(h.version, CM_WIRE_VERSION);
  CM_CHECK_EQ(h.flags, CM_PP_FLAG_EXT);
  CM_CHECK(cm_wire_pp_next(buf, len, &off, &e));
  CM_CHECK_EQ(e.ext.vmin, 1);
  CM_CHECK_EQ(e.ext.vmax, 2);
  CM_CHECK_EQ(e.ext.rest_len, 2);
  CM_CHECK(memcmp(e.ext.rest, LATER, 2) == 0);
  CM_CHECK(cm_wire_pp_next(buf, len, &off, &e));
  CM_CHECK_EQ(e.ext.vmin, 0);
  CM_CHECK(!cm_wire_pp_next(buf, len, &off, &e));
  /* Without the flag, no entry has the byte: the old layout. */
  off = 0;
  CM_CHECK_OK(cm_wire_pp_decode(plain, plain_len, &h));
  CM_CHECK(cm_wire_pp_next(plain, plain_len, &off, &e));
  CM_CHECK_EQ(e.ext.vmin, 0);
  /* ext_len 1 and inverted versions are malformed. */
  buf[len - 1] = 1;
  CM_CHECK_EQ(pp_reject(buf, len), CM_ETRUNC);
  buf[len - 1] = 0;
  /* n1's vmin above its vmax: n2's entry is 18 bytes, n1's ext 5. */
  buf[len - 18 - 4] = 3;
  CM_CHECK_EQ(pp_reject(buf, len), CM_EBADMSG);
}

/* The ALIVE example of docs/protocol.md with versions 1..1 advertised. */
CM_TEST(wire_alive_with_versions_matches_documented_example) {
  static const uint8_t doc[] = {0x01, 0x01, 0x05, 0x00, 0x1a, 0x02, 0x6e, 0x31,
                                0x00, 0x00, 0x00, 0x02, 0x04, 0x0a, 0x00, 0x00,
                                0x01, 0x1f, 0x0a, 0x00, 0x07, 0x02, 0x64, 0x63,
                                0x00, 0x02, 0x65, 0x75, 0x02, 0x01, 0x01};
  static const uint8_t tags[] = {0x02, 0x64, 0x63, 0x00, 0x02, 0x65, 0x75};
  cm_msg_t m;
  uint8_t buf[64];
  doc_alive(&m, tags, sizeof(tags));
  m.u.alive.ext.vmin = 1;
  m.u.alive.ext.vmax = 1;
  CM_CHECK_EQ(encode(&m, 1, buf, sizeof(buf)), sizeof(doc));
  CM_CHECK(memcmp(buf, doc, sizeof(doc)) == 0);
}

/* FETCH and FETCHED round-trip; what is not one of them is refused, and a
 * push-pull decoder refuses both. */
CM_TEST(wire_fetch_round_trips_and_refuses_what_is_not_one) {
  uint8_t buf[64], out[64];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  cm_wire_id_t id, got;
  cm_pp_header_t h;
  uint64_t ltime, digest;
  const uint8_t *p;
  uint32_t plen;
  uint8_t status;
  set_id(&id, "node-z");
  CM_CHECK_OK(cm_wire_fetch_encode(&w, 42, &id, 0x0102030405060708ull));
  CM_CHECK_EQ(w.len, 3 + 8 + 7 + 8);
  CM_CHECK_EQ(cm_wire_stream_kind(buf, w.len), CM_PP_FETCH);
  CM_CHECK_OK(cm_wire_fetch_decode(buf, w.len, &ltime, &got, &digest));
  CM_CHECK(ltime == 42 && id_eq(&got, &id) && digest == 0x0102030405060708ull);
  CM_CHECK_EQ(cm_wire_pp_decode(buf, w.len, &h), CM_EBADMSG);
  CM_CHECK_EQ(cm_wire_fetch_decode(buf, w.len - 1, &ltime, &got, &digest),
              CM_ETRUNC);
  memcpy(out, buf, w.len);
  out[w.len] = 0; /* a trailing byte */
  CM_CHECK_EQ(cm_wire_fetch_decode(out, w.len + 1, &ltime, &got, &digest),
              CM_EBADMSG);
  out[0] = 0; /* no version */
  CM_CHECK_EQ(cm_wire_fetch_decode(out, w.len, &ltime, &got, &digest),
              CM_EVERSION);
  CM_CHECK_EQ(cm_wire_stream_kind(out, w.len), 0);
  /* FETCHED: held with its payload, or not held with none. */
  w.len = 0;
  CM_CHECK_OK(
      cm_wire_fetched_encode(&w, CM_FETCH_HELD, (const uint8_t *)"abc", 3));
  CM_CHECK_EQ(w.len, CM_WIRE_FETCHED_HDR + 3);
  CM_CHECK_OK(cm_wire_fetched_decode(buf, w.len, &status, &p, &plen));
  CM_CHECK(status == CM_FETCH_HELD && plen == 3 && memcmp(p, "abc", 3) == 0);
  CM_CHECK_EQ(cm_wire_fetched_decode(buf, w.len - 1, &status, &p, &plen),
              CM_ETRUNC);
  CM_CHECK_EQ(cm_wire_fetch_decode(buf, w.len, &ltime, &got, &digest),
              CM_EBADMSG); /* another kind */
  CM_CHECK_EQ(
      cm_wire_fetched_encode(&w, CM_FETCH_NOT_HELD, (const uint8_t *)"abc", 3),
      CM_EINVAL);
  memcpy(out, buf, w.len);
  out[2] = CM_FETCH_NOT_HELD; /* "not held", yet a payload */
  CM_CHECK_EQ(cm_wire_fetched_decode(out, w.len, &status, &p, &plen),
              CM_EBADMSG);
  out[2] = 9; /* no such status */
  CM_CHECK_EQ(cm_wire_fetched_decode(out, w.len, &status, &p, &plen),
              CM_EBADMSG);
  w.cap = CM_WIRE_FETCHED_HDR + 2;
  CM_CHECK_EQ(
      cm_wire_fetched_encode(&w, CM_FETCH_HELD, (const uint8_t *)"abc", 3),
      CM_ENOSPC);
}

/* A query's answer on a stream round-trips; cut or padded, it is refused. */
CM_TEST(wire_stream_reply_round_trips) {
  uint8_t buf[64], out[64];
  cm_wbuf_t w = {buf, 0, sizeof(buf)};
  cm_wire_sreply_t r, got;
  memset(&r, 0, sizeof(r));
  r.ltime = 7;
  r.qid = 0xdeadbeef;
  set_id(&r.from, "node-r");
  r.flags = 0;
  r.payload = (const uint8_t *)"answer";
  r.payload_len = 6;
  CM_CHECK_OK(cm_wire_sreply_encode(&w, &r));
  CM_CHECK_EQ(w.len, cm_wire_sreply_size(&r));
  CM_CHECK_EQ(cm_wire_stream_kind(buf, w.len), CM_PP_REPLY);
  CM_CHECK_OK(cm_wire_sreply_decode(buf, w.len, &got));
  CM_CHECK(got.ltime == 7 && got.qid == 0xdeadbeef &&
           id_eq(&got.from, &r.from));
  CM_CHECK(got.payload_len == 6 && memcmp(got.payload, "answer", 6) == 0);
  CM_CHECK_EQ(cm_wire_sreply_decode(buf, w.len - 1, &got), CM_ETRUNC);
  memcpy(out, buf, w.len);
  out[w.len] = 1;
  CM_CHECK_EQ(cm_wire_sreply_decode(out, w.len + 1, &got), CM_EBADMSG);
  w.cap = w.len - 1;
  CM_CHECK_EQ(cm_wire_sreply_encode(&w, &r), CM_ENOSPC);
  w.cap = sizeof(buf);
  CM_CHECK_OK(cm_wire_replied_encode(&w));
  CM_CHECK_EQ(w.len, CM_WIRE_REPLIED_LEN);
  CM_CHECK_EQ(cm_wire_stream_kind(buf, w.len), CM_PP_REPLIED);
}
