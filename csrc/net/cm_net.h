/*
 * cm_net: the QUIC transport of clustermember. One UDP socket per node; the
 * node is QUIC client and server on it, so a peer's UDP source address is its
 * listening address and that address is the identity handed to callbacks.
 * Membership datagrams travel as QUIC DATAGRAM frames, push-pull exchanges as
 * one bidirectional stream each (request, FIN, response, FIN). The transport
 * never interprets payloads, and delivers nothing from a peer before TLS 1.3
 * has authenticated it.
 *
 * Threading: everything runs on the libuv loop given to cm_net_new; every
 * function must be called on that loop's thread. Callbacks run on it too and
 * may call any cm_net function (calls made from a callback only queue work,
 * which is carried out after the current I/O pass).
 */
#ifndef CM_NET_H
#define CM_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cm_common.h"

typedef enum cm_auth_mode {
  CM_AUTH_KEY = 0,  /* shared cluster key: TLS 1.3 external PSK + ECDHE */
  CM_AUTH_MTLS = 1, /* mutual TLS with a cluster CA */
  CM_AUTH_NONE = 2  /* no authentication; explicit opt-in, caller warns */
} cm_auth_mode_t;

#define CM_KEY_LEN 32

/* Largest datagram payload: what fits one QUIC packet in a 1452-byte UDP
 * payload (1500-byte Ethernet MTU less IPv6 and UDP headers) after the short
 * header, AEAD tag and DATAGRAM frame header. Matches the core's default
 * max_packet_size. */
#define CM_NET_DATAGRAM_MAX 1400

/* A cluster key. The PSK identity sent in the handshake names the key by a
 * fingerprint of its content (never by id or place in the ring), so nodes
 * whose keyrings hold the same keys in any order find a common one, which
 * lets a cluster rotate keys. id is the caller's label for the key. */
typedef struct cm_net_key {
  uint8_t id;
  uint8_t key[CM_KEY_LEN];
} cm_net_key_t;

/* retry_threshold: derive it from max_half_open (the default). */
#define CM_NET_RETRY_DERIVED UINT32_MAX
/* retry_threshold: never send a Retry, whatever max_half_open is. */
#define CM_NET_RETRY_NEVER (UINT32_MAX - 1)

typedef struct cm_net_config {
  cm_auth_mode_t auth;
  /* CM_AUTH_KEY: accept a peer using any key of the ring, connect with
   * keys[primary]. The array is copied. */
  const cm_net_key_t *keys;
  size_t nkeys;
  size_t primary;
  /* CM_AUTH_MTLS: PEM files, read once in cm_net_new. Peers must present a
   * certificate chaining to the CA, on both sides of the handshake.
   * cert_file and key_file both NULL: present none (peers refuse us; for
   * tests of exactly that). */
  const char *ca_file;
  const char *cert_file;
  const char *key_file;
  uint32_t max_connections;        /* pool of authenticated connections (and our
                                      own attempts); LRU idle one evicted */
  cm_time_t idle_timeout;          /* idle connections closed; <= a day */
  cm_time_t handshake_timeout;     /* give up a connection attempt after this */
  cm_time_t request_timeout;       /* a stream request fails after this */
  size_t max_stream_message;       /* bound on one push-pull message */
  uint32_t max_queued_datagrams;   /* per connection, waiting to be sent */
  uint32_t accept_rate;            /* new inbound connections per second */
  uint32_t accept_rate_per_source; /* the same from one IP address (IPv6:
                                      its /64), also the burst; 0: none */
  /* Inbound connections not yet authenticated, held apart from the pool:
   * at most max_connections (admission needs room in the pool for every
   * one of them anyway); 0 (the default): derived from the pool,
   * min(128, max_connections / 4), at least 1. When all are taken a known
   * peer (is_known_peer) displaces the oldest stranger's; a stranger
   * displaces the oldest of the stranger holding the most, unless its own
   * source holds as many, or, from a source holding none, the oldest
   * stranger's once it has been there max_half_open / accept_rate
   * seconds; never a known peer's. */
  uint32_t max_half_open;
  /* From this many half-open connections on, an Initial without a token
   * is answered with a stateless Retry (0: always; max_half_open or more,
   * e.g. CM_NET_RETRY_NEVER: never, a full table refuses instead).
   * CM_NET_RETRY_DERIVED (the default): a quarter of max_half_open, so 0
   * for tables under 4. Also answered with a Retry while Retry is on:
   * Initials without a token beyond a small endpoint-wide rate (100/s),
   * and only an address a token proved is admitted as a known peer's.
   * Retries to strangers: 5,000/s, accept_rate_per_source of it per IP;
   * to a known peer's address, 5,000/s of its own. */
  uint32_t retry_threshold;
  uint8_t static_secret[32]; /* stateless reset and Retry tokens derive
                                from it */
} cm_net_config_t;

typedef struct cm_net_callbacks {
  /* A datagram from an authenticated peer. */
  void (*on_datagram)(void *ud, const cm_addr_t *from, const uint8_t *data,
                      size_t len);
  /* A complete push-pull request. Answer with cm_net_stream_respond(token);
   * the data is valid during the call only. */
  void (*on_stream_request)(void *ud, const cm_addr_t *from, uint64_t token,
                            const uint8_t *data, size_t len);
  /* Exactly once per accepted cm_net_stream_request: status 0 with the
   * reply, or CM_ETIMEDOUT, CM_EAUTH (peer refused us or failed to
   * authenticate), CM_ETOOBIG (reply over max_stream_message), CM_ECLOSED
   * (connection or endpoint closed, request refused by the peer). */
  void (*on_stream_response)(void *ud, uint64_t request_id, int status,
                             const uint8_t *data, size_t len);
  /* Optional. `from`, with which we hold no connection, sent packets on a
   * connection we do not know: it holds one to an earlier process at our
   * address (we restarted) and loses what it sends on it until we connect
   * to it, which cm_net_connect does. Rate-limited; the address is
   * unauthenticated, so connect only if it is a known peer's. */
  void (*on_stale_peer)(void *ud, const cm_addr_t *from);
  /* Optional. 1 if `from` (address and port) is the address of a known
   * peer (a member), else 0. Asked before a stale-peer report spends the
   * endpoint's report budget, and at admission of a new inbound handshake
   * once its Initial has passed the stateless check and a Retry token has
   * proven its address (with Retry off, whatever its address), and to
   * choose the budget of a Retry (which grants nothing by itself): a known
   * peer's handshake has a rate of its own, is not charged to the rate
   * strangers share, and takes precedence over strangers' for a half-open
   * place, so strangers cannot lock members out. NULL: every sender is a
   * stranger. Must be cheap (it runs for every unroutable packet): a hash
   * look-up. */
  int (*is_known_peer)(void *ud, const cm_addr_t *from);
} cm_net_callbacks_t;

typedef struct cm_net_stats {
  uint64_t handshakes_ok;           /* connections that reached confirmed */
  uint64_t handshakes_failed;       /* connections closed before that, and
                                       inbound ones TLS refused at their
                                       first packet (never accepted) */
  uint64_t auth_refused;            /* failures due to TLS authentication */
  uint64_t handshakes_refused;      /* of handshakes_failed: inbound Initials
                                       TLS refused at their first packet,
                                       freed at once (never accepted) */
  uint64_t conns_open;              /* currently open (not closing) */
  uint64_t conns_idle;              /* open, established, nothing in flight */
  uint64_t conns_opened;            /* total: as client plus as server */
  uint64_t conns_accepted;          /* total opened as server (first packet
                                       processed without error) */
  uint64_t conns_evicted;           /* closed to make room in the pool */
  uint64_t conns_timed_out;         /* closed by idle or handshake timeout */
  uint64_t bytes_in, bytes_out;     /* UDP payload bytes */
  uint64_t packets_in, packets_out; /* UDP datagrams */
  /* Of packets_out, and of bytes_out: packets with no new datagram or
   * stream data in them (acknowledgements alone, handshakes, loss probes
   * and ngtcp2's resends of lost stream data, closes, stateless resets,
   * Retries). */
  uint64_t control_packets_out, control_bytes_out;
  uint64_t datagrams_in, datagrams_out; /* DATAGRAM frames (payloads) */
  uint64_t requests_out, requests_in, responses_out;
  uint64_t stateless_resets_sent;
  uint64_t stale_peers;           /* on_stale_peer reports */
  uint64_t drop_garbage;          /* undecodable, undecryptable or unroutable
                                     UDP datagrams (Initials that fail the
                                     stateless check included) */
  uint64_t drop_queue_full;       /* datagram queue or socket queue full */
  uint64_t drop_oversized;        /* datagram or stream message too large */
  uint64_t drop_auth;             /* payload from an unauthenticated peer */
  uint64_t drop_rate_limit;       /* handshakes over their rate */
  uint64_t drop_source_limit;     /* of those: handshakes over the per-source
                                     rate, a stranger's IP's or a known
                                     peer's own (also in drop_rate_limit) */
  uint64_t accepts_fresh;         /* strangers' handshakes let past
                                     accept_rate on the budget of sources
                                     not let in lately (whatever then
                                     became of them) */
  uint64_t drop_pool_full;        /* inbound connection with no room in
                                     the pool: Initial dropped, or closed
                                     once authenticated */
  uint64_t drop_closed;           /* queued payload lost with its connection */
  uint64_t drop_fault;            /* fault injection */
  uint64_t send_errors;           /* the socket refused a packet */
  uint64_t sends_deferred;        /* packets the socket had no room for at
                                     once, sent when it had */
  uint64_t conns_half_open;       /* inbound, not yet authenticated, open now */
  uint64_t drop_half_open;        /* inbound handshakes refused: half-open
                                     connections at max_half_open and none
                                     the newcomer may displace */
  uint64_t half_open_displaced;   /* half-open connections closed to admit
                                     a known peer's, or one from a source
                                     holding fewer */
  uint64_t retries_sent;          /* stateless Retry packets */
  uint64_t drop_retry_rate_limit; /* Initials a Retry was due for, over
                                     the Retry rate: dropped */
  uint64_t drop_bad_token;        /* Initials with an invalid or expired
                                     token: dropped */
  uint64_t resets_rate_limited;   /* stateless resets due but over their
                                     rate: not sent */
  uint64_t stream_in_peak; /* most inbound stream bytes one connection held
                              at once, not yet delivered */
} cm_net_stats_t;

/* Fault injection for tests and the simulator; off by default. Drops apply
 * to DATAGRAM payloads (membership messages), optionally only to/from
 * `peer`; `blocked` peers lose every UDP packet both ways (a partition). */
typedef struct cm_net_fault {
  double drop_out;          /* fraction of outgoing datagrams dropped */
  double drop_in;           /* fraction of incoming datagrams dropped */
  cm_addr_t peer;           /* family 0: drops apply to every peer */
  cm_time_t delay;          /* incoming datagrams delivered this much later */
  const cm_addr_t *blocked; /* copied */
  size_t nblocked;
  uint64_t seed; /* the fault PRNG's seed */
} cm_net_fault_t;

typedef struct cm_net cm_net_t;

/* Defaults: cluster-key mode, no keys (caller supplies them), 512
 * connections, 60 s idle timeout, 5 s handshake, 10 s request timeout,
 * 16 MiB stream messages, 256 queued datagrams, 1000 accepts/s, of which
 * 200/s from any one IP address, and max_half_open and retry_threshold
 * derived from the pool (128 and 32 for 512 connections). */
void cm_net_config_default(cm_net_config_t *cfg);

/* Replace the derived settings still at their defaults (max_half_open 0,
 * retry_threshold CM_NET_RETRY_DERIVED) with the values cm_net_new uses
 * for cfg's pool; explicit values are left as they are. */
void cm_net_config_derive(cm_net_config_t *cfg);

/* Bind a UDP socket to `bind` (port 0 picks an ephemeral port) and start
 * serving on `loop`. Returns 0, CM_EINVAL (NULL argument), CM_EADDR,
 * CM_ECONFIG (no keys, primary out of range, missing mTLS file names,
 * zero bounds, max_half_open above max_connections), CM_ETLS (credentials or
 * files unusable), CM_EADDRINUSE (another socket holds the address), CM_EIO
 * (socket or timer could not be set up, or binding was refused, e.g. a
 * privileged port), CM_ENOMEM. */
int cm_net_new(cm_net_t **out, uv_loop_t *loop, const cm_addr_t *bind,
               const cm_net_config_t *cfg, const cm_net_callbacks_t *cb,
               void *ud);

/* The bound address, with the real port. Returns 0 or CM_EIO. */
int cm_net_local_addr(cm_net_t *net, cm_addr_t *out);

/* The descriptors the endpoint holds (its UDP socket and timerfd): writes
 * at most max of them to out and returns how many there are. */
size_t cm_net_fds(const cm_net_t *net, int *out, size_t max);

/* Send a datagram, opening a connection if none exists; queued until the
 * handshake completes. Returns 0 (queued or sent; delivery not promised),
 * CM_EINVAL (also for an empty datagram), CM_EADDR (invalid or own address),
 * CM_ETOOBIG (len over CM_NET_DATAGRAM_MAX), CM_EAGAIN (queue full, counted),
 * CM_ELIMIT (pool full of busy connections), CM_ECLOSED (endpoint closing),
 * CM_ETLS, CM_EQUIC, CM_ENOMEM. */
int cm_net_send_datagram(cm_net_t *net, const cm_addr_t *to,
                         const uint8_t *data, size_t len);

/* Send a request on a new stream; on_stream_response follows exactly once if
 * this returns 0, never otherwise. Errors as cm_net_send_datagram, with
 * CM_ETOOBIG above max_stream_message. */
int cm_net_stream_request(cm_net_t *net, const cm_addr_t *to,
                          const uint8_t *data, size_t len, uint64_t request_id);

/* Answer the request named by token (from on_stream_request), once.
 * Returns 0, CM_ENOENT (unknown token, or its connection closed),
 * CM_ETOOBIG, CM_ECLOSED, CM_ENOMEM. */
int cm_net_stream_respond(cm_net_t *net, uint64_t token, const uint8_t *data,
                          size_t len);

/* Close every connection (CONNECTION_CLOSE to established peers), fail
 * pending requests with CM_ECLOSED, close all handles; done(arg) runs on the
 * loop when everything is freed. Call once; net is invalid afterwards except
 * that functions called from callbacks until done return CM_ECLOSED. */
void cm_net_close(cm_net_t *net, void (*done)(void *arg), void *arg);

void cm_net_stats(const cm_net_t *net, cm_net_stats_t *out);

/* 1 if an authenticated connection to `peer` is open (sending to it costs
 * no handshake), else 0. Lets gossip prefer connected peers. */
int cm_net_is_connected(const cm_net_t *net, const cm_addr_t *peer);

/* The versions of the libraries under the transport: those it was compiled
 * against and those it runs with (a wheel bundles its own; a source build
 * links the system's). Static strings. */
typedef struct cm_net_versions {
  const char *ngtcp2_built, *ngtcp2_running;
  const char *gnutls_built, *gnutls_running;
  const char *libuv_built, *libuv_running;
} cm_net_versions_t;
void cm_net_versions(cm_net_versions_t *out);

/* Open a connection to `to` unless one exists or is being made, with
 * nothing to send yet, into a free place of the pool only: it never closes
 * another connection to make room (it answers reports anyone can forge).
 * Errors: CM_EINVAL, CM_ECLOSED, CM_EADDR, CM_ELIMIT (pool full). */
int cm_net_connect(cm_net_t *net, const cm_addr_t *to);

/* Replace the keyring (cluster-key mode): new handshakes offer keys[primary]
 * first and accept any key of the ring at once; connections already open
 * stay open. Returns 0, CM_EINVAL (not in cluster-key mode, no keys, primary
 * out of range), CM_ECLOSED, CM_ENOMEM or CM_ETLS; on error the old ring
 * stays. */
int cm_net_set_keys(cm_net_t *net, const cm_net_key_t *keys, size_t nkeys,
                    size_t primary);

/* Give connections an idle timeout of at least `floor` (0: the configured
 * idle_timeout alone; at most a day), open ones included: a quiet
 * connection is closed once the timeout in force when its deadline comes
 * has run since the peer's last packet, with a CONNECTION_CLOSE that the
 * peer counts as an idle close too (the end that accepted the connection
 * waits a second longer, so the two closes do not cross). A peer that
 * stops answering what we send is still given up after idle_timeout. The
 * engine keeps the floor at two probe rounds of its current membership: a
 * peer probed once a round then stays connected, where a fixed timeout
 * below the round made it pay a handshake every round. */
void cm_net_set_idle_floor(cm_net_t *net, cm_time_t floor);

/* Replace the fault settings (f NULL turns faults off). Returns 0,
 * CM_EINVAL (fractions outside [0, 1]) or CM_ENOMEM. */
int cm_net_set_fault(cm_net_t *net, const cm_net_fault_t *f);

/* Certificates (ECDSA P-256, PEM files; private keys written mode 0600).
 * cm_net_gen_ca writes a self-signed CA. cm_net_gen_cert writes a node
 * certificate issued by the CA in ca_cert/ca_key, or self-signed when
 * ca_cert is NULL. Returns 0, CM_EINVAL, CM_ETLS or CM_EIO. */
int cm_net_gen_ca(const char *cert_file, const char *key_file,
                  const char *common_name, uint32_t days);
int cm_net_gen_cert(const char *ca_cert, const char *ca_key,
                    const char *cert_file, const char *key_file,
                    const char *common_name, uint32_t days);

#endif
