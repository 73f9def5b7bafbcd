/*
 * The wire codec. docs/protocol.md (Wire format) is the byte-level
 * specification.
 *
 * Every read goes through a wire_rd_t cursor that cannot pass its end, so a
 * hostile length field can make a read fail but never overrun. Every format
 * is canonical (one valid encoding per value), which is what lets the fuzzer
 * check that decoding then re-encoding gives back the input bytes.
 *
 * Writers compute the exact size first and only then write, so a message
 * that does not fit leaves the buffer untouched.
 */
#include "cm_wire.h"

#include <stdlib.h>
#include <string.h>

#define WIRE_PKT_HDR 2 /* version, count */
#define WIRE_MSG_HDR 3 /* type, body_len */
#define WIRE_PP_HDR 7  /* version, kind, flags, u32 count */
#define WIRE_PP_COUNT_OFF 3
#define WIRE_TAG_KEY_MIN 0x21 /* '!' : keys have no space or control byte */
#define WIRE_TAG_KEY_MAX 0x7e
#define WIRE_TAG_VAL_MIN 0x20 /* values may hold spaces, not control bytes */
#define WIRE_DEL 0x7f

typedef struct wire_rd {
  const uint8_t *p;
  size_t len;
  size_t off;
  /* What running out of bytes means here: CM_ETRUNC at the top level of a
   * packet or push-pull; CM_EBADMSG inside a length-delimited part (a message
   * body, a tags blob), whose declared length was a lie. */
  int short_err;
} wire_rd_t;

static wire_rd_t wire_rd(const uint8_t *p, size_t len, int short_err) {
  wire_rd_t r;
  r.p = p;
  r.len = len;
  r.off = 0;
  r.short_err = short_err;
  return r;
}

static int wire_bytes(wire_rd_t *r, size_t n, const uint8_t **out) {
  if (r->len - r->off < n) {
    *out = NULL; /* callers never look, but compilers cannot tell */
    return r->short_err;
  }
  *out = r->p + r->off;
  r->off += n;
  return 0;
}

static int wire_u8(wire_rd_t *r, uint8_t *v) {
  const uint8_t *b;
  int rc = wire_bytes(r, 1, &b);
  if (rc == 0)
    *v = b[0];
  return rc;
}

static int wire_u16(wire_rd_t *r, uint16_t *v) {
  const uint8_t *b;
  int rc = wire_bytes(r, 2, &b);
  if (rc == 0)
    *v = (uint16_t)((b[0] << 8) | b[1]);
  return rc;
}

static uint32_t wire_load_u32(const uint8_t *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
         ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static int wire_u32(wire_rd_t *r, uint32_t *v) {
  const uint8_t *b;
  int rc = wire_bytes(r, 4, &b);
  if (rc == 0)
    *v = wire_load_u32(b);
  return rc;
}

static int wire_u64(wire_rd_t *r, uint64_t *v) {
  uint32_t hi, lo;
  int rc;
  if ((rc = wire_u32(r, &hi)) != 0 || (rc = wire_u32(r, &lo)) != 0)
    return rc;
  *v = ((uint64_t)hi << 32) | lo;
  return 0;
}

static int wire_rd_id(wire_rd_t *r, cm_wire_id_t *id) {
  const uint8_t *b;
  uint8_t n;
  int rc;
  if ((rc = wire_u8(r, &n)) != 0 || (rc = wire_bytes(r, n, &b)) != 0)
    return rc;
  if (!cm_id_valid((const char *)b, n))
    return CM_EBADMSG;
  id->len = n;
  memcpy(id->s, b, n);
  id->s[n] = '\0';
  return 0;
}

static int wire_rd_addr(wire_rd_t *r, cm_addr_t *a) {
  const uint8_t *b;
  uint8_t fam;
  size_t n;
  int rc;
  if ((rc = wire_u8(r, &fam)) != 0)
    return rc;
  if (fam != 4 && fam != 6)
    return CM_EBADMSG;
  n = fam == 4 ? 4 : 16;
  if ((rc = wire_bytes(r, n, &b)) != 0)
    return rc;
  memset(a, 0, sizeof(*a));
  a->family = fam;
  memcpy(a->ip, b, n);
  if ((rc = wire_u16(r, &a->port)) != 0)
    return rc;
  return a->port == 0 ? CM_EBADMSG : 0;
}

/* u16 tags_len | tags. check is 0 only when re-reading an already validated
 * push-pull, where the per-byte tag check would be wasted work. */
static int wire_rd_tags(wire_rd_t *r, const uint8_t **tags, uint16_t *tags_len,
                        int check) {
  int rc;
  if ((rc = wire_u16(r, tags_len)) != 0)
    return rc;
  if (*tags_len > CM_WIRE_MAX_TAGS_LEN)
    return CM_ETOOBIG;
  if ((rc = wire_bytes(r, *tags_len, tags)) != 0)
    return rc;
  return check ? cm_tags_validate(*tags, *tags_len) : 0;
}

static int wire_version_ok(uint8_t v) {
  return v >= 1 && v <= CM_WIRE_VERSION_COMPAT;
}

/* u8 ext_len | u8 vmin | u8 vmax | rest. ext_len 0 means "not advertised"
 * and is only valid where the extension is not optional itself (push-pull
 * entries under CM_PP_FLAG_EXT); ext_len 1 is never valid. */
static int wire_rd_ext(wire_rd_t *r, cm_wire_ext_t *x, int allow_empty) {
  const uint8_t *b;
  uint8_t n;
  int rc;
  memset(x, 0, sizeof(*x));
  if ((rc = wire_u8(r, &n)) != 0 || (rc = wire_bytes(r, n, &b)) != 0)
    return rc;
  if (n == 0)
    return allow_empty ? 0 : CM_EBADMSG;
  if (n < 2 || b[0] == 0 || b[0] > b[1])
    return CM_EBADMSG;
  x->vmin = b[0];
  x->vmax = b[1];
  x->rest_len = (uint8_t)(n - 2);
  x->rest = n > 2 ? b + 2 : NULL;
  return 0;
}

/* u64 ltime | u32 qid | id from | u8 flags | u16 payload_len | payload */
static int wire_rd_qresp(wire_rd_t *r, cm_msg_qresp_t *q) {
  int rc;
  if ((rc = wire_u64(r, &q->ltime)) != 0 || (rc = wire_u32(r, &q->qid)) != 0 ||
      (rc = wire_rd_id(r, &q->from)) != 0 ||
      (rc = wire_u8(r, &q->flags)) != 0 ||
      (rc = wire_u16(r, &q->payload_len)) != 0 ||
      (rc = wire_bytes(r, q->payload_len, &q->payload)) != 0)
    return rc;
  if (q->payload_len == 0)
    q->payload = NULL;
  return 0;
}

static int wire_rd_body(wire_rd_t *r, cm_msg_t *m) {
  int rc;
  switch (m->type) {
  case CM_MSG_PING:
    if ((rc = wire_u32(r, &m->u.ping.seq)) != 0 ||
        (rc = wire_rd_id(r, &m->u.ping.target)) != 0 ||
        (rc = wire_rd_id(r, &m->u.ping.source)) != 0)
      return rc;
    return wire_rd_addr(r, &m->u.ping.source_addr);
  case CM_MSG_ACK:
    return wire_u32(r, &m->u.ack.seq);
  case CM_MSG_NACK:
    return wire_u32(r, &m->u.nack.seq);
  case CM_MSG_PING_REQ:
    if ((rc = wire_u32(r, &m->u.ping_req.seq)) != 0 ||
        (rc = wire_rd_id(r, &m->u.ping_req.target)) != 0 ||
        (rc = wire_rd_addr(r, &m->u.ping_req.target_addr)) != 0 ||
        (rc = wire_u8(r, &m->u.ping_req.want_nack)) != 0)
      return rc;
    return m->u.ping_req.want_nack <= 1 ? 0 : CM_EBADMSG;
  case CM_MSG_ALIVE:
    if ((rc = wire_rd_id(r, &m->u.alive.node)) != 0 ||
        (rc = wire_u32(r, &m->u.alive.incarnation)) != 0 ||
        (rc = wire_rd_addr(r, &m->u.alive.addr)) != 0)
      return rc;
    if ((rc = wire_rd_tags(r, &m->u.alive.tags, &m->u.alive.tags_len, 1)) != 0)
      return rc;
    if (r->off == r->len) {
      memset(&m->u.alive.ext, 0, sizeof(m->u.alive.ext));
      return 0;
    }
    return wire_rd_ext(r, &m->u.alive.ext, 0);
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    if ((rc = wire_rd_id(r, &m->u.suspect.node)) != 0 ||
        (rc = wire_u32(r, &m->u.suspect.incarnation)) != 0)
      return rc;
    return wire_rd_id(r, &m->u.suspect.from);
  case CM_MSG_LEAVE:
    if ((rc = wire_rd_id(r, &m->u.leave.node)) != 0)
      return rc;
    return wire_u32(r, &m->u.leave.incarnation);
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF: {
    cm_msg_user_event_t *e = &m->u.uev;
    if ((rc = wire_u64(r, &e->ltime)) != 0 ||
        (rc = wire_rd_id(r, &e->origin)) != 0 ||
        (rc = wire_u8(r, &e->flags)) != 0 ||
        (rc = wire_u8(r, &e->name_len)) != 0 ||
        (rc = wire_bytes(r, e->name_len, &e->name)) != 0)
      return rc;
    if (!cm_event_name_valid((const char *)e->name, e->name_len))
      return CM_EBADMSG;
    if ((rc = wire_u16(r, &e->payload_len)) != 0 ||
        (rc = wire_bytes(r, e->payload_len, &e->payload)) != 0)
      return rc;
    if (e->payload_len == 0)
      e->payload = NULL;
    return 0;
  }
  case CM_MSG_QUERY: {
    cm_msg_query_t *q = &m->u.qry;
    if ((rc = wire_u64(r, &q->ltime)) != 0 ||
        (rc = wire_u32(r, &q->qid)) != 0 ||
        (rc = wire_rd_id(r, &q->origin)) != 0 ||
        (rc = wire_rd_addr(r, &q->origin_addr)) != 0 ||
        (rc = wire_u8(r, &q->flags)) != 0 ||
        (rc = wire_u8(r, &q->relay)) != 0 ||
        (rc = wire_u32(r, &q->timeout_ms)) != 0 ||
        (rc = wire_u16(r, &q->filter_len)) != 0)
      return rc;
    if (q->relay > CM_WIRE_MAX_QUERY_RELAY ||
        q->filter_len > CM_WIRE_MAX_QUERY_FILTER)
      return CM_EBADMSG;
    if ((rc = wire_bytes(r, q->filter_len, &q->filter)) != 0 ||
        (rc = wire_u8(r, &q->name_len)) != 0 ||
        (rc = wire_bytes(r, q->name_len, &q->name)) != 0)
      return rc;
    if (!cm_event_name_valid((const char *)q->name, q->name_len))
      return CM_EBADMSG;
    if ((rc = wire_u16(r, &q->payload_len)) != 0 ||
        (rc = wire_bytes(r, q->payload_len, &q->payload)) != 0)
      return rc;
    if (q->filter_len == 0)
      q->filter = NULL;
    if (q->payload_len == 0)
      q->payload = NULL;
    return 0;
  }
  case CM_MSG_QUERY_RESPONSE:
    return wire_rd_qresp(r, &m->u.qresp);
  case CM_MSG_QUERY_RELAY:
    if ((rc = wire_rd_addr(r, &m->u.qrelay.target)) != 0)
      return rc;
    return wire_rd_qresp(r, &m->u.qrelay.resp);
  case CM_MSG_COORD: {
    const uint8_t *b;
    if ((rc = wire_bytes(r, CM_COORD_WIRE_LEN, &b)) != 0)
      return rc;
    memcpy(m->u.coord.b, b, CM_COORD_WIRE_LEN);
    return 0;
  }
  default:
    /* A newer version's message: kept whole, understood by nobody here. */
    m->u.raw.body = r->len > 0 ? r->p : NULL;
    m->u.raw.len = (uint16_t)r->len;
    r->off = r->len;
    return 0;
  }
}

/* ---- Writing. Callers have checked the room; these never fail. ---- */

static uint8_t *wire_put_u8(uint8_t *p, uint8_t v) {
  *p = v;
  return p + 1;
}

static uint8_t *wire_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return p + 2;
}

static void wire_store_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint8_t *wire_put_u32(uint8_t *p, uint32_t v) {
  wire_store_u32(p, v);
  return p + 4;
}

static uint8_t *wire_put_bytes(uint8_t *p, const void *b, size_t n) {
  if (n > 0)
    memcpy(p, b, n);
  return p + n;
}

static uint8_t *wire_put_u64(uint8_t *p, uint64_t v) {
  p = wire_put_u32(p, (uint32_t)(v >> 32));
  return wire_put_u32(p, (uint32_t)v);
}

static uint8_t *wire_put_id(uint8_t *p, const cm_wire_id_t *id) {
  p = wire_put_u8(p, id->len);
  return wire_put_bytes(p, id->s, id->len);
}

static size_t wire_addr_iplen(const cm_addr_t *a) {
  return a->family == 6 ? 16 : 4;
}

static uint8_t *wire_put_addr(uint8_t *p, const cm_addr_t *a) {
  p = wire_put_u8(p, a->family);
  p = wire_put_bytes(p, a->ip, wire_addr_iplen(a));
  return wire_put_u16(p, a->port);
}

static uint8_t *wire_put_tags(uint8_t *p, const uint8_t *tags, uint16_t len) {
  p = wire_put_u16(p, len);
  return wire_put_bytes(p, tags, len);
}

static size_t wire_id_size(const cm_wire_id_t *id) { return 1 + id->len; }

static size_t wire_addr_size(const cm_addr_t *a) {
  return 1 + wire_addr_iplen(a) + 2;
}

static int wire_id_ok(const cm_wire_id_t *id) {
  return id->len >= 1 && id->len <= CM_ID_MAX && cm_id_valid(id->s, id->len);
}

static int wire_tags_ok(const uint8_t *tags, uint16_t len) {
  if (len == 0)
    return 1;
  return tags != NULL && cm_tags_validate(tags, len) == 0;
}

/* Whether m would decode back to itself; the encoder refuses anything the
 * decoder would reject, so no node can emit a packet its peers drop. */
static size_t wire_ext_size(const cm_wire_ext_t *x) {
  return x->vmin == 0 ? 1 : 3 + (size_t)x->rest_len;
}

/* Writes the u8 ext_len too, 0 for "not advertised". */
static uint8_t *wire_put_ext(uint8_t *p, const cm_wire_ext_t *x) {
  if (x->vmin == 0)
    return wire_put_u8(p, 0);
  p = wire_put_u8(p, (uint8_t)(2 + x->rest_len));
  p = wire_put_u8(p, x->vmin);
  p = wire_put_u8(p, x->vmax);
  return wire_put_bytes(p, x->rest, x->rest_len);
}

static int wire_ext_ok(const cm_wire_ext_t *x) {
  if (x->vmin == 0)
    return x->rest_len == 0;
  return x->vmin <= x->vmax && x->rest_len <= CM_WIRE_EXT_MAX_REST &&
         (x->rest_len == 0 || x->rest != NULL);
}

static int wire_qresp_ok(const cm_msg_qresp_t *q) {
  return wire_id_ok(&q->from) && (q->payload_len == 0 || q->payload != NULL);
}

static size_t wire_qresp_size(const cm_msg_qresp_t *q) {
  return 8 + 4 + wire_id_size(&q->from) + 1 + 2 + (size_t)q->payload_len;
}

static int wire_msg_ok(const cm_msg_t *m) {
  switch (m->type) {
  case CM_MSG_PING:
    return wire_id_ok(&m->u.ping.target) && wire_id_ok(&m->u.ping.source) &&
           cm_addr_valid(&m->u.ping.source_addr);
  case CM_MSG_ACK:
  case CM_MSG_NACK:
  case CM_MSG_COORD:
    return 1;
  case CM_MSG_PING_REQ:
    return wire_id_ok(&m->u.ping_req.target) &&
           cm_addr_valid(&m->u.ping_req.target_addr) &&
           m->u.ping_req.want_nack <= 1;
  case CM_MSG_ALIVE:
    return wire_id_ok(&m->u.alive.node) && cm_addr_valid(&m->u.alive.addr) &&
           wire_tags_ok(m->u.alive.tags, m->u.alive.tags_len) &&
           wire_ext_ok(&m->u.alive.ext);
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    return wire_id_ok(&m->u.suspect.node) && wire_id_ok(&m->u.suspect.from);
  case CM_MSG_LEAVE:
    return wire_id_ok(&m->u.leave.node);
  case CM_MSG_QUERY:
    return wire_id_ok(&m->u.qry.origin) &&
           cm_addr_valid(&m->u.qry.origin_addr) &&
           m->u.qry.relay <= CM_WIRE_MAX_QUERY_RELAY &&
           m->u.qry.filter_len <= CM_WIRE_MAX_QUERY_FILTER &&
           (m->u.qry.filter_len == 0 || m->u.qry.filter != NULL) &&
           m->u.qry.name != NULL &&
           cm_event_name_valid((const char *)m->u.qry.name,
                               m->u.qry.name_len) &&
           (m->u.qry.payload_len == 0 || m->u.qry.payload != NULL);
  case CM_MSG_QUERY_RESPONSE:
    return wire_qresp_ok(&m->u.qresp);
  case CM_MSG_QUERY_RELAY:
    return cm_addr_valid(&m->u.qrelay.target) &&
           wire_qresp_ok(&m->u.qrelay.resp);
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF:
    return wire_id_ok(&m->u.uev.origin) && m->u.uev.name != NULL &&
           cm_event_name_valid((const char *)m->u.uev.name,
                               m->u.uev.name_len) &&
           (m->u.uev.payload_len == 0 || m->u.uev.payload != NULL);
  case 0:
    return 0;
  default:
    return m->u.raw.len == 0 || m->u.raw.body != NULL;
  }
}

static size_t wire_body_size(const cm_msg_t *m) {
  switch (m->type) {
  case CM_MSG_PING:
    return 4 + wire_id_size(&m->u.ping.target) +
           wire_id_size(&m->u.ping.source) +
           wire_addr_size(&m->u.ping.source_addr);
  case CM_MSG_ACK:
  case CM_MSG_NACK:
    return 4;
  case CM_MSG_PING_REQ:
    return 4 + wire_id_size(&m->u.ping_req.target) +
           wire_addr_size(&m->u.ping_req.target_addr) + 1;
  case CM_MSG_ALIVE:
    return wire_id_size(&m->u.alive.node) + 4 +
           wire_addr_size(&m->u.alive.addr) + 2 + m->u.alive.tags_len +
           (m->u.alive.ext.vmin != 0 ? wire_ext_size(&m->u.alive.ext) : 0);
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    return wire_id_size(&m->u.suspect.node) + 4 +
           wire_id_size(&m->u.suspect.from);
  case CM_MSG_LEAVE:
    return wire_id_size(&m->u.leave.node) + 4;
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF:
    return 8 + wire_id_size(&m->u.uev.origin) + 1 + 1 + m->u.uev.name_len + 2 +
           (size_t)m->u.uev.payload_len;
  case CM_MSG_QUERY:
    return 8 + 4 + wire_id_size(&m->u.qry.origin) +
           wire_addr_size(&m->u.qry.origin_addr) + 1 + 1 + 4 + 2 +
           m->u.qry.filter_len + 1 + m->u.qry.name_len + 2 +
           (size_t)m->u.qry.payload_len;
  case CM_MSG_QUERY_RESPONSE:
    return wire_qresp_size(&m->u.qresp);
  case CM_MSG_QUERY_RELAY:
    return wire_addr_size(&m->u.qrelay.target) +
           wire_qresp_size(&m->u.qrelay.resp);
  case CM_MSG_COORD:
    return CM_COORD_WIRE_LEN;
  default:
    return m->u.raw.len;
  }
}

static uint8_t *wire_put_qresp(uint8_t *p, const cm_msg_qresp_t *q) {
  p = wire_put_u64(p, q->ltime);
  p = wire_put_u32(p, q->qid);
  p = wire_put_id(p, &q->from);
  p = wire_put_u8(p, q->flags);
  p = wire_put_u16(p, q->payload_len);
  return wire_put_bytes(p, q->payload, q->payload_len);
}

static uint8_t *wire_put_body(uint8_t *p, const cm_msg_t *m) {
  switch (m->type) {
  case CM_MSG_PING:
    p = wire_put_u32(p, m->u.ping.seq);
    p = wire_put_id(p, &m->u.ping.target);
    p = wire_put_id(p, &m->u.ping.source);
    return wire_put_addr(p, &m->u.ping.source_addr);
  case CM_MSG_ACK:
    return wire_put_u32(p, m->u.ack.seq);
  case CM_MSG_NACK:
    return wire_put_u32(p, m->u.nack.seq);
  case CM_MSG_PING_REQ:
    p = wire_put_u32(p, m->u.ping_req.seq);
    p = wire_put_id(p, &m->u.ping_req.target);
    p = wire_put_addr(p, &m->u.ping_req.target_addr);
    return wire_put_u8(p, m->u.ping_req.want_nack);
  case CM_MSG_ALIVE:
    p = wire_put_id(p, &m->u.alive.node);
    p = wire_put_u32(p, m->u.alive.incarnation);
    p = wire_put_addr(p, &m->u.alive.addr);
    p = wire_put_tags(p, m->u.alive.tags, m->u.alive.tags_len);
    /* Optional in an ALIVE: absent when no versions are advertised. */
    return m->u.alive.ext.vmin != 0 ? wire_put_ext(p, &m->u.alive.ext) : p;
  case CM_MSG_SUSPECT:
  case CM_MSG_DEAD:
    p = wire_put_id(p, &m->u.suspect.node);
    p = wire_put_u32(p, m->u.suspect.incarnation);
    return wire_put_id(p, &m->u.suspect.from);
  case CM_MSG_LEAVE:
    p = wire_put_id(p, &m->u.leave.node);
    return wire_put_u32(p, m->u.leave.incarnation);
  case CM_MSG_QUERY: {
    const cm_msg_query_t *q = &m->u.qry;
    p = wire_put_u64(p, q->ltime);
    p = wire_put_u32(p, q->qid);
    p = wire_put_id(p, &q->origin);
    p = wire_put_addr(p, &q->origin_addr);
    p = wire_put_u8(p, q->flags);
    p = wire_put_u8(p, q->relay);
    p = wire_put_u32(p, q->timeout_ms);
    p = wire_put_u16(p, q->filter_len);
    p = wire_put_bytes(p, q->filter, q->filter_len);
    p = wire_put_u8(p, q->name_len);
    p = wire_put_bytes(p, q->name, q->name_len);
    p = wire_put_u16(p, q->payload_len);
    return wire_put_bytes(p, q->payload, q->payload_len);
  }
  case CM_MSG_QUERY_RESPONSE:
    return wire_put_qresp(p, &m->u.qresp);
  case CM_MSG_QUERY_RELAY:
    p = wire_put_addr(p, &m->u.qrelay.target);
    return wire_put_qresp(p, &m->u.qrelay.resp);
  case CM_MSG_USER_EVENT:
  case CM_MSG_USER_EVENT_REF:
    p = wire_put_u64(p, m->u.uev.ltime);
    p = wire_put_id(p, &m->u.uev.origin);
    p = wire_put_u8(p, m->u.uev.flags);
    p = wire_put_u8(p, m->u.uev.name_len);
    p = wire_put_bytes(p, m->u.uev.name, m->u.uev.name_len);
    p = wire_put_u16(p, m->u.uev.payload_len);
    return wire_put_bytes(p, m->u.uev.payload, m->u.uev.payload_len);
  case CM_MSG_COORD:
    return wire_put_bytes(p, m->u.coord.b, CM_COORD_WIRE_LEN);
  default:
    return wire_put_bytes(p, m->u.raw.body, m->u.raw.len);
  }
}

/* ---- Packets ---- */

int cm_wire_id_set(cm_wire_id_t *id, const char *s, size_t len) {
  if (id == NULL || !cm_id_valid(s, len))
    return CM_ENODEID;
  id->len = (uint8_t)len;
  memcpy(id->s, s, len);
  id->s[len] = '\0';
  return 0;
}

size_t cm_wire_msg_size(const cm_msg_t *m) {
  if (m == NULL || m->type == 0)
    return 0;
  return WIRE_MSG_HDR + wire_body_size(m);
}

int cm_wire_packet_begin(cm_wbuf_t *w) {
  return cm_wire_packet_begin_version(w, CM_WIRE_VERSION);
}

int cm_wire_packet_begin_version(cm_wbuf_t *w, uint8_t version) {
  if (w == NULL || w->p == NULL || !wire_version_ok(version))
    return CM_EINVAL;
  if (w->cap < WIRE_PKT_HDR)
    return CM_ENOSPC;
  w->p[0] = version;
  w->p[1] = 0;
  w->len = WIRE_PKT_HDR;
  return 0;
}

int cm_wire_packet_add(cm_wbuf_t *w, const cm_msg_t *m) {
  size_t need, room;
  uint8_t *p;
  if (w == NULL || m == NULL || w->p == NULL || w->len < WIRE_PKT_HDR ||
      !wire_version_ok(w->p[0]))
    return CM_EINVAL;
  if (!wire_msg_ok(m))
    return CM_EINVAL;
  if (w->p[1] >= CM_WIRE_MAX_MSGS)
    return CM_ELIMIT;
  need = cm_wire_msg_size(m);
  /* A larger packet would not fit in one datagram, so peers reject it. */
  room = w->cap < CM_WIRE_MAX_PACKET ? w->cap : CM_WIRE_MAX_PACKET;
  if (w->len > room || room - w->len < need)
    return CM_ENOSPC;
  p = w->p + w->len;
  p = wire_put_u8(p, m->type);
  p = wire_put_u16(p, (uint16_t)(need - WIRE_MSG_HDR));
  wire_put_body(p, m);
  w->len += need;
  w->p[1]++;
  return 0;
}

unsigned cm_wire_packet_count(const cm_wbuf_t *w) {
  if (w == NULL || w->p == NULL || w->len < WIRE_PKT_HDR)
    return 0;
  return w->p[1];
}

int cm_wire_packet_decode(const uint8_t *buf, size_t len, cm_msg_t *msgs,
                          size_t max_msgs, size_t *count) {
  wire_rd_t r = wire_rd(buf, len, CM_ETRUNC);
  uint8_t ver, n, i;
  int rc;
  if (count == NULL)
    return CM_EINVAL;
  *count = 0;
  if ((buf == NULL && len > 0) || (msgs == NULL && max_msgs > 0))
    return CM_EINVAL;
  if (len > CM_WIRE_MAX_PACKET)
    return CM_ETOOBIG;
  if ((rc = wire_u8(&r, &ver)) != 0)
    return rc;
  if (!wire_version_ok(ver))
    return CM_EVERSION;
  if ((rc = wire_u8(&r, &n)) != 0)
    return rc;
  if (n == 0 || n > CM_WIRE_MAX_MSGS)
    return CM_EBADMSG;
  if (n > max_msgs)
    return CM_ELIMIT;
  for (i = 0; i < n; i++) {
    const uint8_t *body;
    uint16_t body_len;
    uint8_t type;
    wire_rd_t br;
    if ((rc = wire_u8(&r, &type)) != 0 || (rc = wire_u16(&r, &body_len)) != 0)
      return rc;
    /* Any other type is a newer version's, skipped by its length like the
     * rest; only that length must be honest. */
    if (type == 0)
      return CM_EMSGTYPE;
    if ((rc = wire_bytes(&r, body_len, &body)) != 0)
      return rc;
    br = wire_rd(body, body_len, CM_EBADMSG);
    msgs[i].type = type;
    if ((rc = wire_rd_body(&br, &msgs[i])) != 0)
      return rc;
    if (br.off != body_len)
      return CM_EBADMSG;
  }
  if (r.off != len)
    return CM_EBADMSG;
  *count = n;
  return 0;
}

/* ---- Tags ---- */

static int wire_key_byte_ok(uint8_t c) {
  return c >= WIRE_TAG_KEY_MIN && c <= WIRE_TAG_KEY_MAX && c != '=';
}

/* UTF-8 text passes byte by byte (every byte of a multi-byte sequence is
 * >= 0x80); well-formedness is left to whoever displays it. */
static int wire_val_byte_ok(uint8_t c) {
  return c >= WIRE_TAG_VAL_MIN && c != WIRE_DEL;
}

/* Byte-wise order, a proper prefix first: the canonical key order. */
static int wire_key_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n > 0 ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c;
  return alen < blen ? -1 : alen > blen;
}

int cm_tag_key_valid(const char *key, size_t len) {
  size_t i;
  if (key == NULL || len == 0 || len > CM_WIRE_MAX_TAG_KEY)
    return 0;
  for (i = 0; i < len; i++)
    if (!wire_key_byte_ok((uint8_t)key[i]))
      return 0;
  return 1;
}

int cm_event_name_valid(const char *name, size_t len) {
  size_t i;
  if (name == NULL || len == 0 || len > CM_WIRE_MAX_EVENT_NAME)
    return 0;
  for (i = 0; i < len; i++)
    if ((uint8_t)name[i] < WIRE_TAG_KEY_MIN ||
        (uint8_t)name[i] > WIRE_TAG_KEY_MAX)
      return 0;
  return 1;
}

static int wire_value_valid(const char *v, size_t len) {
  size_t i;
  if (len > CM_WIRE_MAX_TAG_VALUE || (len > 0 && v == NULL))
    return 0;
  for (i = 0; i < len; i++)
    if (!wire_val_byte_ok((uint8_t)v[i]))
      return 0;
  return 1;
}

int cm_tags_validate(const uint8_t *blob, size_t len) {
  wire_rd_t r = wire_rd(blob, len, CM_EBADMSG);
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  if (len > CM_WIRE_MAX_TAGS_LEN)
    return CM_ETOOBIG;
  if (blob == NULL && len > 0)
    return CM_EBADMSG;
  while (r.off < len) {
    const uint8_t *key, *val;
    uint8_t klen;
    uint16_t vlen;
    int rc;
    if ((rc = wire_u8(&r, &klen)) != 0 ||
        (rc = wire_bytes(&r, klen, &key)) != 0)
      return rc;
    if (!cm_tag_key_valid((const char *)key, klen))
      return CM_EBADMSG;
    /* Strictly ascending makes keys unique and the encoding canonical. */
    if (prev != NULL && wire_key_cmp(prev, prev_len, key, klen) >= 0)
      return CM_EBADMSG;
    prev = key;
    prev_len = klen;
    if ((rc = wire_u16(&r, &vlen)) != 0 ||
        (rc = wire_bytes(&r, vlen, &val)) != 0)
      return rc;
    if (!wire_value_valid((const char *)val, vlen))
      return CM_EBADMSG;
  }
  return 0;
}

int cm_tags_next(const uint8_t *blob, size_t len, size_t *off, cm_tag_t *tag) {
  size_t o = *off, klen, vlen;
  /* The blob is validated; these checks only stop a misuse from overrunning.
   */
  if (o >= len)
    return 0;
  klen = blob[o];
  if (len - o - 1 < klen + 2)
    return 0;
  vlen = ((size_t)blob[o + 1 + klen] << 8) | blob[o + 2 + klen];
  if (len - o - 3 - klen < vlen)
    return 0;
  tag->key = (const char *)blob + o + 1;
  tag->key_len = klen;
  tag->value = (const char *)blob + o + 3 + klen;
  tag->value_len = vlen;
  *off = o + 3 + klen + vlen;
  return 1;
}

/* Where key belongs in a validated blob: *at is the offset of the first entry
 * not below key; returns the size of the entry holding key, 0 if absent. */
static size_t wire_tags_find(const uint8_t *blob, size_t len, const char *key,
                             size_t key_len, size_t *at) {
  size_t off = 0, next = 0;
  cm_tag_t t;
  while (cm_tags_next(blob, len, &next, &t)) {
    int c = wire_key_cmp((const uint8_t *)t.key, t.key_len,
                         (const uint8_t *)key, key_len);
    if (c >= 0) {
      *at = off;
      return c == 0 ? next - off : 0;
    }
    off = next;
  }
  *at = off;
  return 0;
}

int cm_tags_get(const uint8_t *blob, size_t len, const char *key,
                size_t key_len, cm_tag_t *tag) {
  size_t at, n, next;
  if (key == NULL || key_len == 0)
    return 0;
  n = wire_tags_find(blob, len, key, key_len, &at);
  if (n == 0)
    return 0;
  next = at;
  return cm_tags_next(blob, len, &next, tag);
}

int cm_tags_set(const uint8_t *blob, size_t len, const char *key,
                size_t key_len, const char *value, size_t value_len,
                uint8_t *out, size_t cap, size_t *out_len) {
  size_t at, old, entry, total;
  uint8_t *p;
  if (!cm_tag_key_valid(key, key_len))
    return CM_ETAGKEY;
  if (!wire_value_valid(value, value_len))
    return CM_ETAGVAL;
  if (out_len == NULL || (out == NULL && cap > 0) ||
      cm_tags_validate(blob, len) != 0)
    return CM_EINVAL;
  old = wire_tags_find(blob, len, key, key_len, &at);
  entry = 1 + key_len + 2 + value_len;
  total = len - old + entry;
  if (total > CM_WIRE_MAX_TAGS_LEN)
    return CM_ETAGSET;
  if (total > cap)
    return CM_ENOSPC;
  p = wire_put_bytes(out, blob, at);
  p = wire_put_u8(p, (uint8_t)key_len);
  p = wire_put_bytes(p, key, key_len);
  p = wire_put_u16(p, (uint16_t)value_len);
  p = wire_put_bytes(p, value, value_len);
  if (len > at + old)
    memcpy(p, blob + at + old, len - at - old);
  *out_len = total;
  return 0;
}

int cm_tags_remove(const uint8_t *blob, size_t len, const char *key,
                   size_t key_len, uint8_t *out, size_t cap, size_t *out_len) {
  size_t at, old, total;
  if (out_len == NULL || (out == NULL && cap > 0) ||
      cm_tags_validate(blob, len) != 0)
    return CM_EINVAL;
  if (!cm_tag_key_valid(key, key_len))
    return CM_ENOENT;
  old = wire_tags_find(blob, len, key, key_len, &at);
  if (old == 0)
    return CM_ENOENT;
  total = len - old;
  if (total > cap)
    return CM_ENOSPC;
  if (at > 0)
    memcpy(out, blob, at);
  if (len > at + old)
    memcpy(out + at, blob + at + old, len - at - old);
  *out_len = total;
  return 0;
}

/* ---- Push-pull ---- */

static int wire_pp_entry_ok(const cm_pp_entry_t *e, int has_ext) {
  return wire_id_ok(&e->node) && cm_addr_valid(&e->addr) &&
         e->state <= CM_STATE_LEFT && wire_tags_ok(e->tags, e->tags_len) &&
         (!has_ext || wire_ext_ok(&e->ext));
}

static size_t wire_pp_entry_size(const cm_pp_entry_t *e, int has_ext) {
  return wire_id_size(&e->node) + 4 + wire_addr_size(&e->addr) + 1 + 2 +
         e->tags_len + (has_ext ? wire_ext_size(&e->ext) : 0);
}

static int wire_rd_entry(wire_rd_t *r, cm_pp_entry_t *e, int check,
                         int has_ext) {
  int rc;
  if ((rc = wire_rd_id(r, &e->node)) != 0 ||
      (rc = wire_u32(r, &e->incarnation)) != 0 ||
      (rc = wire_rd_addr(r, &e->addr)) != 0 ||
      (rc = wire_u8(r, &e->state)) != 0)
    return rc;
  if (e->state > CM_STATE_LEFT)
    return CM_EBADMSG;
  if ((rc = wire_rd_tags(r, &e->tags, &e->tags_len, check)) != 0)
    return rc;
  if (!has_ext) {
    memset(&e->ext, 0, sizeof(e->ext));
    return 0;
  }
  return wire_rd_ext(r, &e->ext, 1);
}

static int wire_pp_started(const cm_wbuf_t *w) {
  return w != NULL && w->p != NULL && w->len >= WIRE_PP_HDR &&
         w->len <= w->cap && wire_version_ok(w->p[0]);
}

int cm_wire_pp_begin(cm_wbuf_t *w, uint8_t kind, uint8_t flags) {
  return cm_wire_pp_begin_version(w, CM_WIRE_VERSION, kind, flags);
}

int cm_wire_pp_begin_version(cm_wbuf_t *w, uint8_t version, uint8_t kind,
                             uint8_t flags) {
  uint8_t *p;
  if (w == NULL || w->p == NULL || !wire_version_ok(version) ||
      (kind != CM_PP_REQUEST && kind != CM_PP_RESPONSE))
    return CM_EINVAL;
  if (w->cap < WIRE_PP_HDR)
    return CM_ENOSPC;
  p = wire_put_u8(w->p, version);
  p = wire_put_u8(p, kind);
  p = wire_put_u8(p, flags);
  wire_put_u32(p, 0);
  w->len = WIRE_PP_HDR;
  return 0;
}

int cm_wire_pp_add(cm_wbuf_t *w, const cm_pp_entry_t *e) {
  uint32_t count;
  size_t need;
  uint8_t *p;
  int has_ext;
  if (!wire_pp_started(w) || e == NULL)
    return CM_EINVAL;
  has_ext = (w->p[2] & CM_PP_FLAG_EXT) != 0;
  if (!wire_pp_entry_ok(e, has_ext))
    return CM_EINVAL;
  count = wire_load_u32(w->p + WIRE_PP_COUNT_OFF);
  if (count >= CM_WIRE_PP_MAX_ENTRIES)
    return CM_ELIMIT;
  need = wire_pp_entry_size(e, has_ext);
  if (w->cap - w->len < need)
    return CM_ENOSPC;
  p = wire_put_id(w->p + w->len, &e->node);
  p = wire_put_u32(p, e->incarnation);
  p = wire_put_addr(p, &e->addr);
  p = wire_put_u8(p, e->state);
  p = wire_put_tags(p, e->tags, e->tags_len);
  if (has_ext)
    wire_put_ext(p, &e->ext);
  w->len += need;
  /* The count is kept current, so the buffer is a complete message after
   * every add. */
  wire_store_u32(w->p + WIRE_PP_COUNT_OFF, count + 1);
  return 0;
}

int cm_wire_pp_finish(cm_wbuf_t *w) {
  return wire_pp_started(w) ? 0 : CM_EINVAL;
}

int cm_wire_pp_decode(const uint8_t *buf, size_t len, cm_pp_header_t *hdr) {
  wire_rd_t r = wire_rd(buf, len, CM_ETRUNC);
  uint8_t ver, kind, flags;
  uint32_t count, i;
  int rc;
  if (hdr == NULL || (buf == NULL && len > 0))
    return CM_EINVAL;
  if ((rc = wire_u8(&r, &ver)) != 0)
    return rc;
  if (!wire_version_ok(ver))
    return CM_EVERSION;
  if ((rc = wire_u8(&r, &kind)) != 0 || (rc = wire_u8(&r, &flags)) != 0 ||
      (rc = wire_u32(&r, &count)) != 0)
    return rc;
  /* Flag bits unknown here are a newer version's and change no layout. */
  if (kind != CM_PP_REQUEST && kind != CM_PP_RESPONSE)
    return CM_EBADMSG;
  if (count > CM_WIRE_PP_MAX_ENTRIES)
    return CM_ETOOBIG;
  /* Each entry is at least 16 bytes, so this loop is bounded by len whatever
   * count claims. */
  for (i = 0; i < count; i++) {
    cm_pp_entry_t e;
    if ((rc = wire_rd_entry(&r, &e, 1, flags & CM_PP_FLAG_EXT)) != 0)
      return rc;
  }
  if (r.off != len)
    return CM_EBADMSG;
  hdr->version = ver;
  hdr->kind = kind;
  hdr->flags = flags;
  hdr->count = count;
  return 0;
}

int cm_wire_pp_next(const uint8_t *buf, size_t len, size_t *off,
                    cm_pp_entry_t *e) {
  wire_rd_t r = wire_rd(buf, len, CM_ETRUNC);
  r.off = *off == 0 ? WIRE_PP_HDR : *off;
  if (r.off >= len)
    return 0;
  /* Validated by cm_wire_pp_decode; bounds are still checked (cheaply), the
   * tag bytes are not. */
  if (wire_rd_entry(&r, e, 0, buf[2] & CM_PP_FLAG_EXT) != 0)
    return 0;
  *off = r.off;
  return 1;
}

/* ---- Fetch ---- */

uint8_t cm_wire_stream_kind(const uint8_t *buf, size_t len) {
  if (buf == NULL || len < 2 || !wire_version_ok(buf[0]))
    return 0;
  return buf[1];
}

int cm_wire_fetch_encode(cm_wbuf_t *w, uint64_t ltime,
                         const cm_wire_id_t *origin, uint64_t digest) {
  uint8_t *p;
  if (w == NULL || w->p == NULL || origin == NULL || !wire_id_ok(origin))
    return CM_EINVAL;
  if (w->cap < 3 + 8 + wire_id_size(origin) + 8)
    return CM_ENOSPC;
  p = wire_put_u8(w->p, CM_WIRE_VERSION);
  p = wire_put_u8(p, CM_PP_FETCH);
  p = wire_put_u8(p, 0);
  p = wire_put_u64(p, ltime);
  p = wire_put_id(p, origin);
  p = wire_put_u64(p, digest);
  w->len = (size_t)(p - w->p);
  return 0;
}

/* The version and kind that open a stream message. */
static int wire_rd_stream_head(wire_rd_t *r, uint8_t want, uint8_t *third) {
  uint8_t ver, kind;
  int rc;
  if ((rc = wire_u8(r, &ver)) != 0)
    return rc;
  if (!wire_version_ok(ver))
    return CM_EVERSION;
  if ((rc = wire_u8(r, &kind)) != 0 || (rc = wire_u8(r, third)) != 0)
    return rc;
  return kind == want ? 0 : CM_EBADMSG;
}

int cm_wire_fetch_decode(const uint8_t *buf, size_t len, uint64_t *ltime,
                         cm_wire_id_t *origin, uint64_t *digest) {
  wire_rd_t r = wire_rd(buf, len, CM_ETRUNC);
  uint8_t flags;
  int rc;
  if (buf == NULL || ltime == NULL || origin == NULL || digest == NULL)
    return CM_EINVAL;
  if ((rc = wire_rd_stream_head(&r, CM_PP_FETCH, &flags)) != 0 ||
      (rc = wire_u64(&r, ltime)) != 0 || (rc = wire_rd_id(&r, origin)) != 0 ||
      (rc = wire_u64(&r, digest)) != 0)
    return rc;
  return r.off == len ? 0 : CM_EBADMSG;
}

int cm_wire_fetched_encode(cm_wbuf_t *w, uint8_t status, const uint8_t *payload,
                           uint32_t payload_len) {
  uint8_t *p;
  if (w == NULL || w->p == NULL || (payload == NULL && payload_len > 0) ||
      (status != CM_FETCH_HELD && payload_len > 0) ||
      status > CM_FETCH_NOT_HELD)
    return CM_EINVAL;
  if (w->cap < CM_WIRE_FETCHED_HDR + (size_t)payload_len)
    return CM_ENOSPC;
  p = wire_put_u8(w->p, CM_WIRE_VERSION);
  p = wire_put_u8(p, CM_PP_FETCHED);
  p = wire_put_u8(p, status);
  p = wire_put_u32(p, payload_len);
  p = wire_put_bytes(p, payload, payload_len);
  w->len = (size_t)(p - w->p);
  return 0;
}

int cm_wire_fetched_decode(const uint8_t *buf, size_t len, uint8_t *status,
                           const uint8_t **payload, uint32_t *payload_len) {
  wire_rd_t r = wire_rd(buf, len, CM_ETRUNC);
  int rc;
  if (buf == NULL || status == NULL || payload == NULL || payload_len == NULL)
    return CM_EINVAL;
  if ((rc = wire_rd_stream_head(&r, CM_PP_FETCHED, status)) != 0 ||
      (rc = wire_u32(&r, payload_len)) != 0 ||
      (rc = wire_bytes(&r, *payload_len, payload)) != 0)
    return rc;
  if (*status > CM_FETCH_NOT_HELD ||
      (*status == CM_FETCH_NOT_HELD && *payload_len > 0) || r.off != len)
    return CM_EBADMSG;
  return 0;
}

/* ---- A query's answer on a stream ---- */

size_t cm_wire_sreply_size(const cm_wire_sreply_t *r) {
  return 3 + 8 + 4 + wire_id_size(&r->from) + 1 + 4 + (size_t)r->payload_len;
}

int cm_wire_sreply_encode(cm_wbuf_t *w, const cm_wire_sreply_t *r) {
  uint8_t *p;
  if (w == NULL || w->p == NULL || r == NULL || !wire_id_ok(&r->from) ||
      (r->payload == NULL && r->payload_len > 0))
    return CM_EINVAL;
  if (w->cap < cm_wire_sreply_size(r))
    return CM_ENOSPC;
  p = wire_put_u8(w->p, CM_WIRE_VERSION);
  p = wire_put_u8(p, CM_PP_REPLY);
  p = wire_put_u8(p, 0);
  p = wire_put_u64(p, r->ltime);
  p = wire_put_u32(p, r->qid);
  p = wire_put_id(p, &r->from);
  p = wire_put_u8(p, r->flags);
  p = wire_put_u32(p, r->payload_len);
  p = wire_put_bytes(p, r->payload, r->payload_len);
  w->len = (size_t)(p - w->p);
  return 0;
}

int cm_wire_sreply_decode(const uint8_t *buf, size_t len, cm_wire_sreply_t *r) {
  wire_rd_t rd = wire_rd(buf, len, CM_ETRUNC);
  uint8_t zero;
  int rc;
  if (buf == NULL || r == NULL)
    return CM_EINVAL;
  if ((rc = wire_rd_stream_head(&rd, CM_PP_REPLY, &zero)) != 0 ||
      (rc = wire_u64(&rd, &r->ltime)) != 0 ||
      (rc = wire_u32(&rd, &r->qid)) != 0 ||
      (rc = wire_rd_id(&rd, &r->from)) != 0 ||
      (rc = wire_u8(&rd, &r->flags)) != 0 ||
      (rc = wire_u32(&rd, &r->payload_len)) != 0 ||
      (rc = wire_bytes(&rd, r->payload_len, &r->payload)) != 0)
    return rc;
  if (r->payload_len == 0)
    r->payload = NULL;
  return rd.off == len ? 0 : CM_EBADMSG;
}

int cm_wire_replied_encode(cm_wbuf_t *w) {
  uint8_t *p;
  if (w == NULL || w->p == NULL)
    return CM_EINVAL;
  if (w->cap < CM_WIRE_REPLIED_LEN)
    return CM_ENOSPC;
  p = wire_put_u8(w->p, CM_WIRE_VERSION);
  p = wire_put_u8(p, CM_PP_REPLIED);
  wire_put_u8(p, 0);
  w->len = CM_WIRE_REPLIED_LEN;
  return 0;
}
