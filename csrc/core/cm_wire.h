/*
 * Wire format: the bytes membership messages are made of. Versioned, compact,
 * big-endian, every field bounds-checked. docs/protocol.md ("Wire format")
 * documents each layout byte by byte; keep the two in step.
 *
 * A datagram ("packet") carries one or more messages:
 *   u8 version | u8 count | count x ( u8 type | u16 body_len | body )
 * A push-pull exchange (on a stream) carries a full state table:
 *   u8 version | u8 kind | u8 flags | u32 count | count x entry
 *
 * Decoding is all-or-nothing: a packet with any malformed part is rejected as
 * a whole and the caller sees nothing of it. What a newer version may add is
 * not malformed: messages of unknown types (skipped by body_len), unknown
 * push-pull flag bits, version bytes up to CM_WIRE_VERSION_COMPAT, and
 * version extension bytes past the ones known here (docs/protocol.md, "Rules
 * for future versions").
 */
#ifndef CM_WIRE_H
#define CM_WIRE_H

#include "cm_common.h"
#include "cm_coord.h"

/* The version this code writes, and the range it speaks (advertised in
 * ALIVE messages and push-pull entries). Version bytes 1..COMPAT all share
 * this framing and are read; 0 and COMPAT+1..255 are refused. */
#define CM_WIRE_VERSION 1
#define CM_WIRE_VERSION_MIN 1
#define CM_WIRE_VERSION_MAX 2 /* 2: network coordinates (COORD, ext) */
#define CM_WIRE_VERSION_COMPAT 127
#define CM_WIRE_EXT_MAX_REST 253 /* ext_len is a u8 and holds vmin, vmax */

/* Hard limits of the format itself; configuration may only be stricter. */
#define CM_WIRE_MAX_MSGS 64          /* messages in one packet */
#define CM_WIRE_MAX_PACKET 65507     /* largest UDP payload */
#define CM_WIRE_MAX_TAGS_LEN 4096    /* encoded tag set of one node */
#define CM_WIRE_MAX_TAG_KEY 128      /* bytes in one key */
#define CM_WIRE_MAX_TAG_VALUE 1024   /* bytes in one value */
#define CM_WIRE_PP_MAX_ENTRIES 65536 /* members in one push-pull */
#define CM_WIRE_MAX_EVENT_NAME 128   /* bytes in a user event's name */

enum cm_msg_type {
  CM_MSG_PING = 1,
  CM_MSG_ACK = 2,
  CM_MSG_PING_REQ = 3,
  CM_MSG_NACK = 4,
  CM_MSG_ALIVE = 5,
  CM_MSG_SUSPECT = 6,
  CM_MSG_DEAD = 7,
  CM_MSG_LEAVE = 8,
  CM_MSG_USER_EVENT = 9,
  CM_MSG_QUERY = 10,
  CM_MSG_QUERY_RESPONSE = 11,
  CM_MSG_QUERY_RELAY = 12,
  CM_MSG_USER_EVENT_REF = 13,
  CM_MSG_COORD = 14,
};
/* The last type this version knows. */
#define CM_MSG_TYPE_LAST CM_MSG_COORD

/* Types outside 1..CM_MSG_TYPE_LAST other than 0 are a newer version's:
 * decoded as raw bodies, skipped by receivers, re-encoded verbatim. 0 is
 * never a type. */
typedef struct cm_msg_raw {
  const uint8_t *body;
  uint16_t len;
} cm_msg_raw_t;

/* The protocol versions a node speaks, with bytes of later versions' fields
 * carried unread (rest points into the decoded buffer). vmin 0: not
 * advertised, which is encoded as no extension at all. */
typedef struct cm_wire_ext {
  uint8_t vmin, vmax;
  const uint8_t *rest;
  uint8_t rest_len;
} cm_wire_ext_t;

/* Member states as they travel in push-pull entries. */
enum cm_state {
  CM_STATE_ALIVE = 0,
  CM_STATE_SUSPECT = 1,
  CM_STATE_FAILED = 2,
  CM_STATE_LEFT = 3,
};

/* A node id as decoded: copied, NUL-terminated for convenience. */
typedef struct cm_wire_id {
  uint8_t len;
  char s[CM_ID_MAX + 1];
} cm_wire_id_t;

/* Probe: "are you alive?" The target id lets a node at a reused address
 * answer only for itself; the source address is where the ack goes. */
typedef struct cm_msg_ping {
  uint32_t seq;
  cm_wire_id_t target;
  cm_wire_id_t source;
  cm_addr_t source_addr;
} cm_msg_ping_t;

typedef struct cm_msg_ack {
  uint32_t seq;
} cm_msg_ack_t;

/* Ask a helper to probe target on our behalf (SWIM's ping-req). */
typedef struct cm_msg_ping_req {
  uint32_t seq;
  cm_wire_id_t target;
  cm_addr_t target_addr;
  uint8_t want_nack; /* helper answers NACK if the target does not ack */
} cm_msg_ping_req_t;

typedef struct cm_msg_nack {
  uint32_t seq;
} cm_msg_nack_t;

/* "node is alive at incarnation, at addr, with these tags". tags points into
 * the decoded buffer (or the caller's memory when encoding). */
typedef struct cm_msg_alive {
  cm_wire_id_t node;
  uint32_t incarnation;
  cm_addr_t addr;
  const uint8_t *tags;
  uint16_t tags_len;
  cm_wire_ext_t ext; /* optional trailing field */
} cm_msg_alive_t;

/* SUSPECT and DEAD name the accuser; LEAVE is sent by a node about itself. */
typedef struct cm_msg_accuse {
  cm_wire_id_t node;
  uint32_t incarnation;
  cm_wire_id_t from;
} cm_msg_accuse_t;

typedef struct cm_msg_leave {
  cm_wire_id_t node;
  uint32_t incarnation;
} cm_msg_leave_t;

/* An application's event for every member: its origin's Lamport time and
 * id, a name (1..CM_WIRE_MAX_EVENT_NAME bytes of 0x21..0x7e) and an opaque
 * payload. name and payload point into the decoded buffer (or the caller's
 * memory when encoding). Flag bits other than CM_UEV_COALESCE and
 * CM_UEV_SYNCED are a later version's: kept and relayed, otherwise
 * ignored. */
#define CM_UEV_COALESCE 0x01
/* Sent again by a push-pull's answerer (anti-entropy), not by gossip. */
#define CM_UEV_SYNCED 0x02
/* Bytes a user event needs beside its name and payload, with room for a
 * probe in the same packet: the bound max_user_event_size must leave. */
#define CM_UEV_OVERHEAD 256
/* USER_EVENT_REF has USER_EVENT's fields, but its payload is a reference
 * to the event's, which travels on a stream (CM_PP_FETCH): the payload's
 * size (u32) and FNV-1a digest (u64), CM_UEV_REF_LEN bytes. */
#define CM_UEV_REF_LEN 12
/* Bounds of the settings max_user_event_stream and user_event_store. */
#define CM_UEV_STREAM_MAX (64u << 20)
#define CM_UEV_STORE_MAX (1u << 30)
typedef struct cm_msg_user_event {
  uint64_t ltime;
  cm_wire_id_t origin;
  uint8_t flags;
  uint8_t name_len;
  const uint8_t *name;
  uint16_t payload_len;
  const uint8_t *payload;
} cm_msg_user_event_t;

/* A query: asked of every member, answered by those its filter selects
 * (the filter is opaque here: the application reads it), with an ack and
 * a response each, sent straight to origin_addr and through `relay` other
 * members. The same name and payload rules as a user event; the filter at
 * most CM_WIRE_MAX_QUERY_FILTER bytes. */
#define CM_QUERY_WANT_ACK 0x01
#define CM_WIRE_MAX_QUERY_FILTER 1024
#define CM_WIRE_MAX_QUERY_RELAY 5
typedef struct cm_msg_query {
  uint64_t ltime;
  uint32_t qid; /* chosen by the origin */
  cm_wire_id_t origin;
  cm_addr_t origin_addr;
  uint8_t flags;
  uint8_t relay;       /* 0..CM_WIRE_MAX_QUERY_RELAY */
  uint32_t timeout_ms; /* how long the origin waits, from when it asked */
  uint16_t filter_len;
  const uint8_t *filter;
  uint8_t name_len;
  const uint8_t *name;
  uint16_t payload_len;
  const uint8_t *payload;
} cm_msg_query_t;

/* An ack (flag CM_QRESP_ACK, no payload) or a response to query qid of
 * ltime, from `from`. */
#define CM_QRESP_ACK 0x01
typedef struct cm_msg_qresp {
  uint64_t ltime;
  uint32_t qid;
  cm_wire_id_t from;
  uint8_t flags;
  uint16_t payload_len;
  const uint8_t *payload;
} cm_msg_qresp_t;

/* A response a member is asked to pass on to `target` (the query's
 * origin): the relay sends it as a QUERY_RESPONSE. */
typedef struct cm_msg_qrelay {
  cm_addr_t target;
  cm_msg_qresp_t resp;
} cm_msg_qrelay_t;

/* The sender's network coordinate (version 2), sent with the ACK that
 * answers a direct probe: exactly CM_COORD_WIRE_LEN bytes, kept as they
 * came (cm_coord_from_wire reads them; any bit pattern decodes, and the
 * reader checks the values). */
typedef struct cm_msg_coord {
  uint8_t b[CM_COORD_WIRE_LEN];
} cm_msg_coord_t;

typedef struct cm_msg {
  uint8_t type; /* enum cm_msg_type */
  union {
    cm_msg_ping_t ping;
    cm_msg_ack_t ack;
    cm_msg_ping_req_t ping_req;
    cm_msg_nack_t nack;
    cm_msg_alive_t alive;
    cm_msg_accuse_t suspect; /* also used for DEAD */
    cm_msg_leave_t leave;
    cm_msg_user_event_t uev;
    cm_msg_query_t qry;
    cm_msg_qresp_t qresp; /* also the inside of a QUERY_RELAY's */
    cm_msg_qrelay_t qrelay;
    cm_msg_coord_t coord;
    cm_msg_raw_t raw; /* a type this version does not know */
  } u;
} cm_msg_t;

/* A bounded output buffer. Writers never exceed cap. */
typedef struct cm_wbuf {
  uint8_t *p;
  size_t len;
  size_t cap;
} cm_wbuf_t;

/* Fill a cm_wire_id_t from a C string. Returns 0 or CM_ENODEID. */
int cm_wire_id_set(cm_wire_id_t *id, const char *s, size_t len);

/* Bytes m takes in a packet, including its type and length prefix; 0 for
 * type 0. */
size_t cm_wire_msg_size(const cm_msg_t *m);

/* Start a packet in w (w->len is reset). Returns 0 or CM_ENOSPC (w
 * unchanged). A packet never grows past CM_WIRE_MAX_PACKET, whatever w->cap. */
int cm_wire_packet_begin(cm_wbuf_t *w);
/* Same with another version byte, 1..CM_WIRE_VERSION_COMPAT (else
 * CM_EINVAL): what a peer of a newer version would send. */
int cm_wire_packet_begin_version(cm_wbuf_t *w, uint8_t version);
/* Append m. Returns 0; CM_ENOSPC (w unchanged) if it does not fit in w->cap;
 * CM_ELIMIT if the packet already holds CM_WIRE_MAX_MSGS; CM_EINVAL if m
 * cannot be encoded (bad id, address or tags). */
int cm_wire_packet_add(cm_wbuf_t *w, const cm_msg_t *m);
/* Messages in the packet being built. */
unsigned cm_wire_packet_count(const cm_wbuf_t *w);

/* Decode a whole packet into msgs[0..*count), messages of unknown types
 * included (as raw bodies). Pointers inside msgs (tags, raw bodies, ext)
 * point into buf. Returns 0, or CM_ETRUNC, CM_EVERSION, CM_EMSGTYPE (type 0),
 * CM_EBADMSG, CM_ETOOBIG (len over CM_WIRE_MAX_PACKET, tags over
 * CM_WIRE_MAX_TAGS_LEN), CM_ELIMIT (more than max_msgs messages); on error
 * *count is 0 and the contents of msgs are unspecified. */
int cm_wire_packet_decode(const uint8_t *buf, size_t len, cm_msg_t *msgs,
                          size_t max_msgs, size_t *count);

/* ---- Tags: a canonical encoding, so equal sets are equal bytes ----
 * blob = repeated ( u8 key_len | key | u16 value_len | value ), keys
 * printable ASCII without '=', strictly ascending, unique. */
typedef struct cm_tag {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} cm_tag_t;

/* Validate a tags blob. Returns 0, CM_ETOOBIG (len over CM_WIRE_MAX_TAGS_LEN)
 * or CM_EBADMSG. */
int cm_tags_validate(const uint8_t *blob, size_t len);
/* Iterate a validated blob: *off starts at 0; returns 1 with *tag filled,
 * 0 at the end. */
int cm_tags_next(const uint8_t *blob, size_t len, size_t *off, cm_tag_t *tag);
/* Find key; returns 1 and fills *tag if present. */
int cm_tags_get(const uint8_t *blob, size_t len, const char *key,
                size_t key_len, cm_tag_t *tag);
/* Write into out (capacity cap) the blob with key set to value (replacing
 * any old value), keeping canonical order. *out_len receives the length.
 * out must not overlap blob. Returns 0, CM_ETAGKEY, CM_ETAGVAL, CM_ETAGSET
 * (result over CM_WIRE_MAX_TAGS_LEN), CM_ENOSPC, CM_EINVAL (blob invalid);
 * on error out and *out_len are untouched. */
int cm_tags_set(const uint8_t *blob, size_t len, const char *key,
                size_t key_len, const char *value, size_t value_len,
                uint8_t *out, size_t cap, size_t *out_len);
/* Same, removing key. Returns 0, CM_ENOENT, CM_ENOSPC or CM_EINVAL (blob
 * invalid); on error out and *out_len are untouched. */
int cm_tags_remove(const uint8_t *blob, size_t len, const char *key,
                   size_t key_len, uint8_t *out, size_t cap, size_t *out_len);
/* 1 if key may be a tag key: 1..CM_WIRE_MAX_TAG_KEY bytes of 0x21..0x7e
 * other than '='; else 0. */
int cm_tag_key_valid(const char *key, size_t len);
/* 1 if name may name a user event: 1..CM_WIRE_MAX_EVENT_NAME bytes of
 * 0x21..0x7e; else 0. */
int cm_event_name_valid(const char *name, size_t len);

/* ---- Push-pull: full state exchange ---- */
/* Stream messages: push-pull's request and response, and the fetch of an
 * event's payload (below). Each begins with the version and the kind. */
enum cm_pp_kind {
  CM_PP_REQUEST = 1,
  CM_PP_RESPONSE = 2,
  CM_PP_FETCH = 3,
  CM_PP_FETCHED = 4,
  CM_PP_REPLY = 5,
  CM_PP_REPLIED = 6
};
#define CM_PP_FLAG_JOIN 0x01
#define CM_PP_FLAG_EXT 0x02 /* every entry ends with an extension */
#define CM_PP_FLAGS_KNOWN (CM_PP_FLAG_JOIN | CM_PP_FLAG_EXT)
/* The later bytes of an entry's ext (docs/protocol.md, "ext"): in the
 * sender's own entry (entry 0), its user-event and query Lamport clocks
 * (u64 each), then (version 2) its network coordinate; in every other
 * entry, (version 2) the member's coordinate as the sender holds it. */
#define CM_PP_CLOCKS_LEN 16

typedef struct cm_pp_entry {
  cm_wire_id_t node;
  uint32_t incarnation;
  cm_addr_t addr;
  uint8_t state; /* enum cm_state */
  const uint8_t *tags;
  uint16_t tags_len;
  cm_wire_ext_t ext; /* written only under CM_PP_FLAG_EXT */
} cm_pp_entry_t;

typedef struct cm_pp_header {
  uint8_t version;
  uint8_t kind;
  uint8_t flags;
  uint32_t count;
} cm_pp_header_t;

/* Writer: begin, then one add per entry (CM_ENOSPC if it does not fit,
 * buffer unchanged; CM_EINVAL for an invalid entry; CM_ELIMIT past
 * CM_WIRE_PP_MAX_ENTRIES), then finish. add keeps the count in the header
 * current, so the buffer is a complete message after every add; finish checks
 * that a push-pull was begun (CM_EINVAL), not that ids are unique. */
int cm_wire_pp_begin(cm_wbuf_t *w, uint8_t kind, uint8_t flags);
/* Same with another version byte (1..CM_WIRE_VERSION_COMPAT). Flags may
 * hold bits unknown here; only CM_PP_FLAG_EXT changes the layout. */
int cm_wire_pp_begin_version(cm_wbuf_t *w, uint8_t version, uint8_t kind,
                             uint8_t flags);
int cm_wire_pp_add(cm_wbuf_t *w, const cm_pp_entry_t *e);
int cm_wire_pp_finish(cm_wbuf_t *w);

/* Validate a whole push-pull message and read its header. Returns 0 or
 * CM_ETRUNC (input ends early, including fewer entries than count) /
 * CM_EVERSION / CM_EBADMSG (trailing bytes, bad entry) / CM_ETOOBIG.
 * Unknown flag bits are kept in hdr->flags and otherwise ignored. A node
 * id may appear twice: the receiver merges only its highest entry
 * (cm_merge_entry_cmp), so the order of the entries does not matter. Iterate
 * entries afterwards with cm_wire_pp_next, *off starting at 0; it returns 1
 * per entry and 0 at the end. */
int cm_wire_pp_decode(const uint8_t *buf, size_t len, cm_pp_header_t *hdr);
int cm_wire_pp_next(const uint8_t *buf, size_t len, size_t *off,
                    cm_pp_entry_t *e);

/* ---- Fetching the payload of a USER_EVENT_REF, on a stream ---- */
/* FETCH asks for the payload of the event (ltime, origin) whose digest is
 * `digest`: u8 version, u8 kind CM_PP_FETCH, u8 flags (0; others
 * ignored), u64 ltime, id origin, u64 digest. FETCHED answers: u8 version,
 * u8 kind CM_PP_FETCHED, u8 status, u32 payload_len, payload; the payload
 * is empty unless the status is CM_FETCH_HELD. */
#define CM_FETCH_HELD 0
#define CM_FETCH_NOT_HELD 1
#define CM_WIRE_FETCHED_HDR 7
int cm_wire_fetch_encode(cm_wbuf_t *w, uint64_t ltime,
                         const cm_wire_id_t *origin, uint64_t digest);
/* 0, or CM_ETRUNC / CM_EVERSION / CM_EBADMSG (another kind, a bad id,
 * trailing bytes). */
int cm_wire_fetch_decode(const uint8_t *buf, size_t len, uint64_t *ltime,
                         cm_wire_id_t *origin, uint64_t *digest);
/* w must hold CM_WIRE_FETCHED_HDR + payload_len bytes (CM_ENOSPC). */
int cm_wire_fetched_encode(cm_wbuf_t *w, uint8_t status, const uint8_t *payload,
                           uint32_t payload_len);
/* 0, or CM_ETRUNC / CM_EVERSION / CM_EBADMSG (another kind, an unknown
 * status, a payload with CM_FETCH_NOT_HELD, a length that is not the
 * message's). *payload points into buf. */
int cm_wire_fetched_decode(const uint8_t *buf, size_t len, uint8_t *status,
                           const uint8_t **payload, uint32_t *payload_len);
/* The kind of a stream message (enum cm_pp_kind), or 0 if it is too short
 * or of a version this node does not read. */
uint8_t cm_wire_stream_kind(const uint8_t *buf, size_t len);

/* ---- A query's answer too large for a datagram, on a stream ---- */
/* REPLY: u8 version, u8 kind CM_PP_REPLY, u8 0, then a QUERY_RESPONSE's
 * fields with a u32 payload length: u64 ltime, u32 qid, id from, u8 flags,
 * u32 payload_len, payload. REPLIED (u8 version, u8 kind CM_PP_REPLIED, u8
 * 0) says it was read. */
typedef struct cm_wire_sreply {
  uint64_t ltime;
  uint32_t qid;
  cm_wire_id_t from;
  uint8_t flags;
  uint32_t payload_len;
  const uint8_t *payload;
} cm_wire_sreply_t;
#define CM_WIRE_REPLIED_LEN 3
/* Its encoded size. */
size_t cm_wire_sreply_size(const cm_wire_sreply_t *r);
/* 0, or CM_EINVAL / CM_ENOSPC. */
int cm_wire_sreply_encode(cm_wbuf_t *w, const cm_wire_sreply_t *r);
/* 0, or CM_ETRUNC / CM_EVERSION / CM_EBADMSG; r->payload points into buf. */
int cm_wire_sreply_decode(const uint8_t *buf, size_t len, cm_wire_sreply_t *r);
/* 0, or CM_EINVAL / CM_ENOSPC. */
int cm_wire_replied_encode(cm_wbuf_t *w);

#endif
