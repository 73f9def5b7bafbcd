/*
 * Private structures of cm_net, shared by its files: the endpoint, routing
 * and public API (cm_net.c), admission of inbound connections
 * (cm_net_accept.c), one connection's QUIC state and write pass
 * (cm_net_conn.c), request/response streams (cm_net_stream.c), the
 * connection pool and peer map (cm_net_pool.c), keyring use
 * (cm_net_keys.c), rate limits (cm_net_limit.c), addresses
 * (cm_net_addr.c), TLS set-up (cm_net_tls.c), certificates
 * (cm_net_cert.c), the stateless check of client Initials
 * (cm_net_initial.c) and the hash map routing connection IDs and peer
 * addresses (cm_net_map.c).
 */
#ifndef CM_NET_INT_H
#define CM_NET_INT_H

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/socket.h>

#include "cm_net.h"
#include "cm_rand.h"

/* Our connection IDs: one fixed length, so short-header packets can be
 * routed (their DCID carries no length). Every packet a peer sends us
 * carries one, so it is as short as safety allows: 8 random bytes, which
 * an off-path attacker cannot guess (2^64) and which never collide among
 * the connections of one endpoint in practice; RFC 9000 allows 0 to 20.
 * Peers parse only their own IDs, so nodes with other lengths interoperate. */
#define CM_NET_SCID_LEN 8
/* The client's first DCID; RFC 9000 asks for at least 8 random bytes. */
#define CM_NET_INITIAL_DCID_LEN 18
/* UDP payload we build packets into: 1500-byte MTU less IPv6 and UDP. */
#define CM_NET_MAX_UDP_PAYLOAD 1452
/* QUIC max_idle_timeout advertised (cm_net_conn.c), and the longest idle
 * timeout or floor: a day, in cm_time_t. */
#define CM_NET_IDLE_ADVERTISED CM_SEC(86400)
/* Receive buffer: the largest UDP datagram, so nothing is truncated. */
#define CM_NET_RECV_BUF 65536

/* ---- hash map: byte-string keys (CIDs, addresses, tokens) to pointers -- */

#define CM_NET_MAP_KEY_MAX 24
/* Peer map key length (cm_net__addr_key). */
#define CM_NET_ADDR_KEY_LEN 19
/* Source key length (cm_net__ip_key): family and 8 address bytes, all of an
 * IPv4 address and the /64 of an IPv6 one. */
#define CM_NET_IP_KEY_LEN 9

typedef struct cm_net_map_entry {
  struct cm_net_map_entry *next;
  uint64_t hash;
  uint8_t keylen;
  uint8_t key[CM_NET_MAP_KEY_MAX];
  void *val;
} cm_net_map_entry_t;

typedef struct cm_net_map {
  cm_net_map_entry_t **buckets;
  size_t nbuckets;
  size_t count;
  uint64_t seed;
} cm_net_map_t;

int cm_net_map_init(cm_net_map_t *m, uint64_t seed);
void cm_net_map_free(cm_net_map_t *m);
/* Insert or replace. 0, CM_EINVAL (key too long) or CM_ENOMEM. */
int cm_net_map_put(cm_net_map_t *m, const void *key, size_t len, void *val);
void *cm_net_map_get(const cm_net_map_t *m, const void *key, size_t len);
/* Remove only if the entry maps to val (NULL: whatever it maps to). */
void cm_net_map_del(cm_net_map_t *m, const void *key, size_t len,
                    const void *val);

/* Seeded FNV-1a with a splitmix64 finaliser; the map's hash. */
uint64_t cm_net__hash(uint64_t seed, const void *key, size_t len);

/* ---- per-source rate limit ----------------------------------------------
 * A token bucket per source for new inbound connections, so one source
 * cannot take the endpoint's whole accept rate. For strangers a source is
 * an IP address, not address and port: one host has tens of thousands of
 * ports, and an IPv6 host usually a whole /64, so that is what counts as
 * one source. For known peers (members) it is the address and port, the
 * member's identity: members of a test or demo cluster share one IP, and
 * a stranger on a member's IP must not use up the member's budget.
 * The table is fixed-size, so a spray of addresses costs no memory: each
 * address has two candidate slots (seeded hash); a newcomer takes a free
 * slot or one whose bucket has refilled (its source has been quiet for a
 * second), and otherwise shares the first candidate's bucket, which can
 * only make it stricter. */
#define CM_NET_SRC_SLOTS 1024

typedef struct cm_net_src_slot {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  uint8_t used;
  double tokens;
  uint64_t ts; /* ngtcp2 timestamp of the last refill */
} cm_net_src_slot_t;

typedef struct cm_net_srclimit {
  uint64_t seed;
  double rate;     /* tokens per second, and the burst; 0: no limit */
  int per_address; /* sources are addresses and ports, not IPs */
  cm_net_src_slot_t slots[CM_NET_SRC_SLOTS];
} cm_net_srclimit_t;

/* A token bucket of `rate` tokens a second and a burst of as many: 1 if a
 * token was taken at `now` (ngtcp2 timestamp), 0 if none was left. */
int cm_net__bucket_take(double *tokens, uint64_t *last, double rate,
                        uint64_t now);
void cm_net__srclimit_init(cm_net_srclimit_t *l, uint64_t seed, uint32_t rate,
                           int per_address);
/* 1 if `from` may open one more connection at `now` (a token is taken),
 * 0 if it is over its rate. */
int cm_net__srclimit_take(cm_net_srclimit_t *l, const cm_addr_t *from,
                          uint64_t now);

/* ---- sources admitted lately -------------------------------------------
 * Which strangers' sources (IP addresses, cm_net__ip_key) were let in
 * lately: two generations of a bit set, each marked source setting two
 * bits (seeded hash). A source marked stays seen for one to two windows.
 * Fixed-size: many sources only make others look seen too (a false
 * positive), which withholds a priority and never grants one. */
#define CM_NET_RECENT_BITS 65536

typedef struct cm_net_recent {
  uint64_t seed;
  uint64_t window; /* ngtcp2 duration of one generation */
  uint64_t epoch;  /* ngtcp2 timestamp the current generation began */
  int cur;
  uint64_t bits[2][CM_NET_RECENT_BITS / 64];
} cm_net_recent_t;

void cm_net__recent_init(cm_net_recent_t *r, uint64_t seed, uint64_t window,
                         uint64_t now);
void cm_net__recent_mark(cm_net_recent_t *r, const cm_addr_t *from,
                         uint64_t now);
/* 1 if `from` (its IP) was marked within the last one to two windows. */
int cm_net__recent_seen(cm_net_recent_t *r, const cm_addr_t *from,
                        uint64_t now);

/* ---- queued datagram ---------------------------------------------------- */

/* A keyring as the transport holds it (CM_AUTH_KEY): the keys, its
 * primary, and one GnuTLS client credential per key (a client offers one
 * PSK identity per handshake). Reference-counted: a client connection holds
 * the ring it offered a key from, so cm_net_set_keys never frees a
 * credential a handshake still uses. */
typedef struct cm_net_ring {
  unsigned refs;
  size_t n, primary;
  cm_net_key_t *keys;
  gnutls_psk_client_credentials_t *creds;
} cm_net_ring_t;

typedef struct cm_net_msg {
  struct cm_net_msg *next;
  cm_addr_t from; /* delayed delivery only */
  uint64_t due;   /* delayed delivery only, ngtcp2 timestamp */
  size_t len;
  uint8_t data[];
} cm_net_msg_t;

/* ---- streams ------------------------------------------------------------ */

typedef struct cm_net_conn cm_net_conn_t;

typedef struct cm_net_stream {
  struct cm_net_stream *next; /* in conn->streams */
  cm_net_conn_t *conn;
  int64_t id;          /* -1 until opened */
  int local;           /* we sent the request */
  uint64_t request_id; /* local: caller's id; remote: token */
  uint8_t *out;        /* request or response; kept until the stream ends */
  size_t outlen, outoff;
  int out_ready; /* remote: response given */
  int fin_sent;
  int blocked; /* flow-control blocked during this write pass */
  uint8_t *in;
  size_t inlen, incap;
  int done; /* local: response callback ran; remote: answered or abandoned */
  int in_fin_seen;     /* the whole message arrived */
  int closed;          /* ngtcp2 closed it; freed after the write pass */
  size_t in_credit;    /* connection credit held for bytes delivered to us and
                          not yet given back (cm_net_stream.c) */
  uint64_t abort_code; /* nonzero: shut the stream down with this code */
  uint64_t deadline;   /* local: ngtcp2 timestamp of the request timeout */
} cm_net_stream_t;

/* The connection window beyond one whole message (max_stream_message + 1):
 * a round trip's worth of small messages is not held up while the credit
 * for a large one comes back. */
#define CM_NET_CONN_WINDOW_SLACK (64 * 1024)

/* Application error codes: on stream shutdown, then on connection close. */
#define CM_NET_APP_CANCEL 1 /* requester gave up (timeout) */
#define CM_NET_APP_TOOBIG 2 /* message over max_stream_message */
#define CM_NET_APP_IDLE 3   /* idle: the peer counts it as its own timeout */

/* ---- connections -------------------------------------------------------- */

typedef enum cm_net_conn_state {
  CM_CONN_HANDSHAKE = 0,
  CM_CONN_ESTABLISHED = 1,
  CM_CONN_CLOSING = 2, /* close decided; carried out at the next flush */
  CM_CONN_DEAD = 3     /* detached from every table, freed at the flush */
} cm_net_conn_state_t;

struct cm_net_conn {
  cm_net_t *net;
  ngtcp2_conn *qc;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  cm_addr_t peer;
  struct sockaddr_storage peer_sa;
  socklen_t peer_salen;
  int is_client;
  cm_net_conn_state_t state;
  int verified;   /* TLS authenticated the peer: payload may be delivered */
  int in_pool;    /* counted in nconns: ours, or inbound and verified */
  int half_open;  /* inbound, not verified: in the half-open list */
  int known_peer; /* inbound: is_known_peer said its source is a member's */
  uint64_t half_open_at; /* ngtcp2 timestamp it entered the half-open list */
  int current;           /* the peer map points here */
  int retiring;        /* a duplicate of another connection to the same peer */
  int writing;         /* inside conn_write: callbacks need not mark it dirty */
  cm_net_ring_t *ring; /* client, CM_AUTH_KEY: the ring it offers from */
  size_t key_idx;      /* client, CM_AUTH_KEY: the ring's entry offered */
  size_t key_tries;    /* keys tried before this one for the same send */
  uint64_t established_at;
  int send_close;   /* CLOSING: send CONNECTION_CLOSE first */
  int close_status; /* CLOSING: why, as a CM_E* code for requests */
  ngtcp2_ccerr ccerr;
  ngtcp2_cid odcid; /* server: the DCID of the client's Initial (its first,
                       or our Retry's SCID), also routed here */
  int has_odcid;
  cm_net_msg_t *qhead, *qtail; /* datagrams waiting to be written */
  uint32_t qlen;
  cm_net_stream_t *streams; /* in creation order: written in that order */
  size_t nstreams;
  size_t in_held;                    /* the streams' in_credit, summed */
  struct cm_net_conn *prev, *next;   /* LRU order: head least recently used */
  struct cm_net_conn *hprev, *hnext; /* half-open list, oldest first */
  struct cm_net_conn *dirty_next;
  int dirty;
  uint64_t expiry; /* ngtcp2 timestamp: min(QUIC expiry, request deadlines,
                      unanswered deadline) */
  /* The idle timer (cm_net_conn.c, conn_idle_at): `last_rx` the last
   * packet received from the peer (creation before any), `wait_since` the
   * first packet we sent with payload (ack-eliciting) since then (0: none).
   * A packet counts as the peer's when QUIC authenticated it, which shows
   * as a callback during the read: `rx_proof`. */
  uint64_t last_rx;
  uint64_t wait_since;
  int rx_proof;
};

/* ---- endpoint ----------------------------------------------------------- */

struct cm_net {
  uv_loop_t *loop;
  cm_net_config_t cfg;
  cm_time_t idle_floor; /* cm_net_set_idle_floor: connections' minimum */
  cm_net_key_t *keys;
  cm_net_callbacks_t cb;
  void *ud;

  uv_udp_t udp;
  uv_check_t check; /* flushes dirty connections after each I/O pass */
  uv_idle_t idle;   /* keeps the loop from blocking while a flush waits */
  uv_poll_t timer_poll;
  int timer_fd; /* timerfd: microsecond deadlines, libuv timers are ms */
  uint64_t timer_armed;
  int handles_open;

  struct sockaddr_storage local_sa;
  socklen_t local_salen;
  cm_addr_t local;

  /* TLS */
  gnutls_priority_t prio;
  gnutls_certificate_credentials_t cert_cred;
  cm_net_ring_t *ring; /* CM_AUTH_KEY: the keyring, replaceable */
  gnutls_psk_server_credentials_t psk_server;

  cm_net_map_t cids;      /* connection ID -> conn */
  cm_net_map_t peers;     /* peer address -> current conn */
  cm_net_map_t tokens;    /* inbound request token -> stream */
  cm_net_map_t key_hints; /* peer address -> 1 + key index it accepted */
  uint64_t next_token;

  cm_net_conn_t *lru_head, *lru_tail; /* every connection not yet freed */
  cm_net_conn_t *dirty_head;
  uint32_t nconns;                      /* in the pool, not closing */
  cm_net_conn_t *half_head, *half_tail; /* half-open, oldest first */
  uint32_t nhalf_open;
  /* Source -> its half-open count: a stranger's IP (cm_net__ip_key), a
   * known peer's address (cm_net__addr_key); the key lengths differ, so
   * the two never meet. */
  cm_net_map_t half_srcs;

  /* token buckets (ngtcp2 timestamps) */
  double accept_tokens;
  uint64_t accept_ts;
  double reset_tokens;
  uint64_t reset_ts;
  double stale_tokens; /* on_stale_peer reports */
  uint64_t stale_ts;
  double retry_tokens;
  uint64_t retry_ts;
  double unproven_tokens; /* Initials without a token admitted (calm only) */
  uint64_t unproven_ts;
  double fresh_tokens; /* strangers new lately, past accept_rate */
  uint64_t fresh_ts;
  uint8_t token_secret[32];     /* Retry tokens: derived from static_secret */
  cm_net_srclimit_t srclimit;   /* strangers' accepts per IP address */
  cm_net_srclimit_t peerlimit;  /* known peers' accepts per address */
  cm_net_srclimit_t retrylimit; /* Retries to strangers per IP address */
  cm_net_srclimit_t peerretry;  /* Retries to members' addresses, each */
  cm_net_recent_t admitted;     /* strangers' IPs let in lately */

  /* fault injection */
  cm_net_fault_t fault;
  cm_addr_t *blocked;
  cm_rand_t frand;
  cm_net_msg_t *delay_head, *delay_tail;

  size_t outstanding_sends; /* uv_udp_send requests in flight */
  int flush_scheduled;
  int closing;
  int timer_dirty;
  void (*done)(void *);
  void *done_arg;

  cm_net_stats_t st;
  uint8_t sendbuf[CM_NET_MAX_UDP_PAYLOAD];
  uint8_t recvbuf[CM_NET_RECV_BUF];
  /* The stateless Initial check decrypts a copy here: the packet itself
   * is read again by ngtcp2 if admitted. As large as what is received. */
  uint8_t initial_scratch[CM_NET_RECV_BUF];
};

/* ---- cm_net.c: the endpoint --------------------------------------------- */
uint64_t cm_net__now(void);
void cm_net__schedule_flush(cm_net_t *net);
void cm_net__mark_dirty(cm_net_conn_t *c);
/* Send one UDP packet (now, or once the socket has room); counted once it
 * is out, in the control counters too if `control` (no payload). */
void cm_net__send_packet(cm_net_t *net, const struct sockaddr *sa,
                         const cm_addr_t *to, const uint8_t *data, size_t len,
                         int control);
int cm_net__rand(void *dest, size_t len);
void cm_net__deliver_datagram(cm_net_t *net, const cm_addr_t *from,
                              const uint8_t *data, size_t len);
/* A UDP datagram received from sa (partial: truncated by the socket). */
void cm_net__recv(cm_net_t *net, const struct sockaddr *sa, const uint8_t *data,
                  size_t len, int partial);
/* Handle every deadline passed (the timer's work). */
void cm_net__expire(cm_net_t *net);
/* Carry out a scheduled flush now (the check handle's work). */
void cm_net__flush_now(cm_net_t *net);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* Fuzz builds only (the fuzzers' Makefile rule defines the macro): while
 * nonzero, cm_net__now() returns cm_net__fuzz_clock and cm_net__rand()
 * draws from a xorshift64 of this state, and a set cm_net__fuzz_send takes
 * every outgoing packet instead of the socket, so a fuzzer drives
 * endpoints deterministically in memory. */
extern uint64_t cm_net__fuzz_clock;
extern uint64_t cm_net__fuzz_rand_state;
extern void (*cm_net__fuzz_send)(cm_net_t *net, const cm_addr_t *to,
                                 const uint8_t *data, size_t len);
#endif

/* ---- cm_net_addr.c: addresses -------------------------------------------- */
/* Peer map key: family, address and port bytes only. */
void cm_net__addr_key(const cm_addr_t *a, uint8_t key[CM_NET_ADDR_KEY_LEN]);
/* Source key: family and IPv4 address, or family and IPv6 /64. */
void cm_net__ip_key(const cm_addr_t *a, uint8_t key[CM_NET_IP_KEY_LEN]);
/* 0, or CM_EADDR for a family other than IPv4 and IPv6. */
int cm_net__sa_to_addr(const struct sockaddr *sa, cm_addr_t *a);
/* The sockaddr's length, or 0 for an address of no family. */
socklen_t cm_net__addr_to_sa(const cm_addr_t *a, struct sockaddr_storage *ss);

/* ---- cm_net_accept.c: admission ------------------------------------------ */
/* A long-header packet under a connection ID we do not know. */
void cm_net__accept(cm_net_t *net, const struct sockaddr *sa,
                    const cm_addr_t *from, const uint8_t *data, size_t len);
/* Derive the Retry token secret from the static secret, and start the
 * budget and record of strangers new lately. 0 or CM_ETLS. */
int cm_net__accept_init(cm_net_t *net, uint64_t seed);
/* Retries a second: to strangers in all, and to each member's address. */
uint32_t cm_net__retry_rate(void);
/* A Retry token for a client at sa whose Initial (QUIC `version`) had DCID
 * odcid, answered with a Retry of SCID retry_scid at ts. Its length, or
 * CM_ETLS. */
int cm_net__retry_token(cm_net_t *net, uint8_t *token, size_t cap,
                        uint32_t version, const struct sockaddr *sa,
                        socklen_t salen, const ngtcp2_cid *retry_scid,
                        const ngtcp2_cid *odcid, uint64_t ts);
/* A half-open connection leaves the half-open list (verified or closing). */
void cm_net__half_open_leave(cm_net_conn_t *c);
/* A server connection was authenticated: it takes a place in the pool,
 * evicting the LRU idle one if need be, or is closed (drop_pool_full). */
void cm_net__accept_verified(cm_net_conn_t *c);

/* ---- cm_net_initial.c: the stateless check of a client's Initial --------- */
#define CM_NET_INITIAL_KEY_LEN 16 /* AES-128 */
#define CM_NET_INITIAL_IV_LEN 12
/* The client's Initial keys (RFC 9001 5.2): packet key, IV, header
 * protection key. */
typedef struct cm_net_initial_keys {
  uint8_t key[CM_NET_INITIAL_KEY_LEN];
  uint8_t iv[CM_NET_INITIAL_IV_LEN];
  uint8_t hp[CM_NET_INITIAL_KEY_LEN];
} cm_net_initial_keys_t;
/* The client Initial keys of QUIC version 1 for the DCID of a client's
 * first Initial. 0 or CM_ETLS. */
int cm_net__initial_keys(const uint8_t *dcid, size_t dcidlen,
                         cm_net_initial_keys_t *k);
/* HKDF-Expand-Label (RFC 8446 7.1) with SHA-256 and an empty context, of a
 * label of at most 9 bytes. 0, CM_EINVAL (label too long) or CM_ETLS. */
int cm_net__expand_label(const uint8_t secret[32], const char *label,
                         uint8_t *out, size_t outlen);
/* The header protection mask for a 16-byte sample. 0 or CM_ETLS. */
int cm_net__initial_hp_mask(const uint8_t hp[CM_NET_INITIAL_KEY_LEN],
                            const uint8_t *sample, uint8_t mask[16]);
/* 0 if the first packet of the datagram is a QUIC version 1 client Initial
 * that the Initial keys of its DCID authenticate; else CM_EBADMSG (not
 * one, or not authentic), CM_ENOSPC (longer than cap) or CM_ETLS. Works
 * in scratch (cap bytes) and keeps nothing. */
int cm_net__initial_check(const uint8_t *data, size_t len, uint8_t *scratch,
                          size_t cap);

/* ---- cm_net_pool.c: the pool and the peer map ---------------------------- */
/* Make room for one more connection, evicting the LRU idle one if need be.
 * 0 or CM_ELIMIT. */
int cm_net__make_room(cm_net_t *net);
/* 1 if free places and idle connections in the pool add up to `want`;
 * changes nothing. */
int cm_net__pool_has_room(const cm_net_t *net, uint32_t want);
/* A new connection is registered (LRU list; current for its peer if none
 * is); in_pool: it also takes a place in the pool now. */
void cm_net__pool_add(cm_net_conn_t *c, int in_pool);
/* Out of the LRU list and the peer map, before it is freed. */
void cm_net__pool_remove(cm_net_conn_t *c);
/* A closing connection hands the peer, and what waits to be sent to it, to
 * another connection to the same peer (or a retry with the next key). */
void cm_net__pool_handover(cm_net_conn_t *c, int status, int was_handshake);
/* A connection just established: settle which one to its peer is current. */
void cm_net__pool_established(cm_net_conn_t *c);
int cm_net__conn_idle(const cm_net_conn_t *c);
void cm_net__conn_touch(cm_net_conn_t *c);

/* ---- cm_net_keys.c: the keyring ------------------------------------------ */
/* The keyring entry to offer a peer: the one it last accepted, else the
 * primary. */
size_t cm_net__key_for(cm_net_t *net, const cm_addr_t *peer);
/* A ring of copies of keys[0..n) with primary (refs 1): 0, CM_ENOMEM or
 * CM_ETLS. */
int cm_net__ring_new(const cm_net_key_t *keys, size_t n, size_t primary,
                     cm_net_ring_t **out);
cm_net_ring_t *cm_net__ring_ref(cm_net_ring_t *r);
void cm_net__ring_release(cm_net_ring_t *r);

/* A client handshake succeeded with c->key_idx: remember it for the peer. */
void cm_net__key_accepted(cm_net_conn_t *c);
/* After a refusal: a new connection with the next key, or NULL. */
cm_net_conn_t *cm_net__key_retry(cm_net_conn_t *c);

/* ---- cm_net_stream.c: request/response streams --------------------------- */
int cm_net__stream_recv_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                           uint64_t offset, const uint8_t *data, size_t len,
                           void *ud, void *sud);
int cm_net__stream_close_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                            uint64_t app_error_code, void *ud, void *sud);
int cm_net__stream_reset_cb(ngtcp2_conn *qc, int64_t id, uint64_t final_size,
                            uint64_t app_error_code, void *ud, void *sud);
/* Put s last on c's stream list. */
void cm_net__stream_append(cm_net_conn_t *c, cm_net_stream_t *s);
int cm_net__conn_request(cm_net_conn_t *c, const uint8_t *data, size_t len,
                         uint64_t request_id);
/* Write pass: open streams for queued requests and carry out shutdowns;
 * the next stream with data to write; free the streams ngtcp2 closed. */
void cm_net__streams_prepare(cm_net_conn_t *c);
cm_net_stream_t *cm_net__stream_next(cm_net_conn_t *c);
void cm_net__streams_sweep(cm_net_conn_t *c);
/* The earlier of e and the first request deadline. */
uint64_t cm_net__streams_deadline(const cm_net_conn_t *c, uint64_t e);
/* Fail requests past their deadline with CM_ETIMEDOUT. */
void cm_net__streams_expire(cm_net_conn_t *c, uint64_t now);
/* The connection is closing: fail its requests with `status`. */
void cm_net__streams_fail(cm_net_conn_t *c, int status);
void cm_net__streams_free(cm_net_conn_t *c);

/* ---- cm_net_conn.c: one connection --------------------------------------- */
int cm_net__conn_new_client(cm_net_t *net, const cm_addr_t *peer,
                            size_t key_idx, cm_net_conn_t **out);
/* odcid: the client's first DCID when hd carries a valid Retry token, else
 * NULL. The connection is in no list until the caller admits it. */
int cm_net__conn_new_server(cm_net_t *net, const struct sockaddr *sa,
                            socklen_t salen, const cm_addr_t *peer,
                            const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                            cm_net_conn_t **out);
void cm_net__conn_read(cm_net_conn_t *c, const uint8_t *data, size_t len);
/* The first packet of a server connection: only the ngtcp2 result, so
 * admission can refuse the connection before it counts (nothing else is
 * done; on 0 the caller marks it dirty). */
int cm_net__conn_read_pkt(cm_net_conn_t *c, const uint8_t *data, size_t len);
/* A server connection whose first packet failed (rv): never admitted, it
 * is freed now. Refused by TLS, it is a failed handshake and the client is
 * sent the alert; refused by ngtcp2, it was garbage. */
void cm_net__conn_refuse_first(cm_net_conn_t *c, int rv);
void cm_net__conn_write(cm_net_conn_t *c);
void cm_net__conn_handle_expiry(cm_net_conn_t *c, uint64_t now);
/* Decide to close: detaches the conn from routing, fails its requests. */
void cm_net__conn_close(cm_net_conn_t *c, int status, int send_close);
/* Carry out a decided close and free the connection. */
void cm_net__conn_finish(cm_net_conn_t *c);
void cm_net__conn_free(cm_net_conn_t *c);
int cm_net__conn_enqueue(cm_net_conn_t *c, const uint8_t *data, size_t len);

/* ---- cm_net_tls.c: TLS --------------------------------------------------- */
int cm_net__tls_init(cm_net_t *net);
void cm_net__tls_free(cm_net_t *net);
int cm_net__tls_session(cm_net_t *net, cm_net_conn_t *c);
/* A TLS alert that means the peer failed (or refused) authentication. */
int cm_net__tls_alert_is_auth(uint8_t alert);
/* In-memory ECDSA P-256 self-signed certificate for CM_AUTH_NONE. */
int cm_net__tls_self_signed(gnutls_certificate_credentials_t cred);

#endif
