/*
 * Admission of inbound connections: what an Initial from an unknown
 * connection ID must pass before the endpoint keeps any state for it, and
 * the half-open table such connections live in until TLS authenticates
 * the peer. In order:
 *   1. a well-formed QUIC v1 Initial of at least 1200 bytes that the
 *      Initial keys of its DCID authenticate (cm_net_initial.c), checked
 *      statelessly before anything is spent on it (else drop_garbage);
 *   2. its source address proven, or the endpoint calm: a token, if it
 *      carries one, that we issued in a Retry to this address and port for
 *      this connection (else drop_bad_token); without one, it goes on only
 *      while fewer than retry_threshold connections are half-open and a
 *      small endpoint-wide budget for unproven addresses lasts (every such
 *      Initial spends it, whatever then becomes of it, so Initials that
 *      TLS refuses turn Retry on as surely as ones that stall); else a
 *      stateless Retry and nothing kept (retries_sent, or
 *      drop_retry_rate_limit over its budget: a member's address its own,
 *      a stranger its IP's share of the strangers' cap). With Retry off
 *      (retry_threshold at or above max_half_open) no address is ever
 *      proven;
 *   3. whether the sender is a known peer (is_known_peer: a member's
 *      address and port), asked only of a proven address while Retry is
 *      on, as anyone can write a member's address on a packet; a known
 *      peer's Initial is held to its own per-address rate, a proven
 *      stranger's to its IP's rate and to the endpoint-wide rate strangers
 *      share, past which a source not let in lately has a budget of its
 *      own (drop_source_limit, drop_rate_limit; accepts_fresh); an
 *      unproven one let in
 *      while calm has spent the unproven budget and nothing more;
 *   4. room among the half-open connections: a known peer displaces the
 *      oldest stranger's; a stranger displaces the oldest of the stranger
 *      holding the most, unless its own source holds as many, or, from a
 *      source holding none, the oldest stranger's that has had its time
 *      (accept_min_life), and never a known peer's; when the table holds
 *      known peers' only, the fair share applies among them
 *      (drop_half_open);
 *   5. room the pool could make once the peer is authenticated, for it
 *      and every half-open connection before it: free places and idle
 *      connections (else drop_pool_full, before any state);
 *   6. a first packet that ngtcp2 and TLS process without error, else the
 *      connection is freed at once, never accepted: a refused handshake
 *      (handshakes_refused; the client is sent TLS's alert) or
 *      drop_garbage; only then is a victim displaced (step 4).
 * An unauthenticated connection takes no place in the pool, so it can
 * never cost an authenticated one its place: it joins the pool once TLS
 * has authenticated the peer (cm_net__accept_verified).
 */
#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <string.h>

#include "cm_net_int.h"

/* A Retry costs a few microseconds and about 110 bytes, less than the
 * 1200-byte Initial it answers, so it amplifies nothing; the cap bounds
 * what a flood from spoofed addresses makes us send to strangers (about
 * 0.55 MB/s). Each IP has accept_rate_per_source of it, so one address
 * cannot take it all. A member's address has a budget of this size of its
 * own, apart: a flood from strangers cannot keep a member (a restart, say)
 * from the Retry it needs, and a sender forging that member's address can
 * make us send Retries only to that member. */
#define ACCEPT_RETRY_RATE 5000u
/* Room for a Retry: header, two connection IDs of at most 20 bytes, the
 * token and the 16-byte integrity tag. */
#define ACCEPT_RETRY_BUF 256
/* A token answers one Retry, but the client carries it on every Initial
 * of that connection, retransmissions included, until its handshake
 * completes or handshake_timeout gives it up: with its first
 * retransmission a second after the Initial (ngtcp2's PTO at its initial
 * RTT, 333 ms) and the next two seconds later, a token that expired
 * sooner would leave an Initial dropped under load to wait out the rest of
 * handshake_timeout. Never under 3 s; beyond that, a token seen on the
 * path is still of use only from the address and port it was issued to,
 * for that connection. */
#define ACCEPT_TOKEN_MIN_LIFETIME (3 * NGTCP2_SECONDS)
/* And never over 10 s (ngtcp2's examples' lifetime), whatever
 * handshake_timeout says: an Initial captured on the path replays from its
 * address, port and connection ID no longer than that. */
#define ACCEPT_TOKEN_MAX_LIFETIME (10 * NGTCP2_SECONDS)
/* Strangers' sources let in lately: one let in within the last one to two
 * windows is not new. A new node needs one handshake per peer; a flood
 * spends the budget of the new only from addresses not let in for a
 * window or more, so it must spread over about accept_rate /
 * ACCEPT_FRESH_SHARE to twice that many addresses it owns to keep it
 * spent. */
#define ACCEPT_FRESH_WINDOW NGTCP2_SECONDS
/* The budget past accept_rate for sources not let in lately, as a
 * fraction of accept_rate (at least 1 a second): proven strangers'
 * handshakes are bounded by accept_rate plus that budget. */
#define ACCEPT_FRESH_SHARE 4
/* Initials without a token admitted per second while the endpoint is
 * calm, endpoint-wide: a cluster starting at once gets its first
 * handshakes without the Retry's round trip, and a flood of them, from
 * however many forged addresses, turns Retry on within a second. */
#define ACCEPT_UNPROVEN_RATE 100.0
/* Label of the Retry token key, so it differs from the stateless reset
 * key derived from the same static secret. */
static const char accept_token_label[] = "clustermember retry token";

uint32_t cm_net__retry_rate(void) { return ACCEPT_RETRY_RATE; }

static double accept_fresh_rate(const cm_net_t *net) {
  double r = (double)net->cfg.accept_rate / ACCEPT_FRESH_SHARE;
  return r < 1.0 ? 1.0 : r;
}

/* handshake_timeout, within [ACCEPT_TOKEN_MIN_LIFETIME,
 * ACCEPT_TOKEN_MAX_LIFETIME]; compared in microseconds first, so a huge
 * setting cannot overflow the conversion. */
static uint64_t accept_token_lifetime(const cm_net_t *net) {
  uint64_t t = net->cfg.handshake_timeout;
  if (t >= ACCEPT_TOKEN_MAX_LIFETIME / NGTCP2_MICROSECONDS)
    return ACCEPT_TOKEN_MAX_LIFETIME;
  t *= NGTCP2_MICROSECONDS;
  return t < ACCEPT_TOKEN_MIN_LIFETIME ? ACCEPT_TOKEN_MIN_LIFETIME : t;
}

int cm_net__accept_init(cm_net_t *net, uint64_t seed) {
  uint64_t now = cm_net__now();
  net->retry_tokens = ACCEPT_RETRY_RATE;
  net->unproven_tokens = ACCEPT_UNPROVEN_RATE;
  net->fresh_tokens = accept_fresh_rate(net);
  net->fresh_ts = now;
  cm_net__recent_init(&net->admitted, seed, ACCEPT_FRESH_WINDOW, now);
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, net->cfg.static_secret,
                       sizeof(net->cfg.static_secret), accept_token_label,
                       sizeof(accept_token_label) - 1, net->token_secret) != 0)
    return CM_ETLS;
  return 0;
}

int cm_net__retry_token(cm_net_t *net, uint8_t *token, size_t cap,
                        uint32_t version, const struct sockaddr *sa,
                        socklen_t salen, const ngtcp2_cid *retry_scid,
                        const ngtcp2_cid *odcid, uint64_t ts) {
  ngtcp2_ssize n;
  if (cap < NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN)
    return CM_ETLS;
  n = ngtcp2_crypto_generate_retry_token(
      token, net->token_secret, sizeof(net->token_secret), version,
      (const ngtcp2_sockaddr *)sa, (ngtcp2_socklen)salen, retry_scid, odcid,
      ts);
  return n < 0 ? CM_ETLS : (int)n;
}

/* 1 if a Retry to `from` is within its budget (one is taken): a member's
 * address its own; a stranger its IP's share, then the strangers' cap. */
static int accept_retry_budget(cm_net_t *net, const cm_addr_t *from,
                               uint64_t now) {
  /* Asking grants no priority: the sender must still answer the Retry,
   * from that address, to get further. */
  if (net->cb.is_known_peer != NULL && net->cb.is_known_peer(net->ud, from))
    return cm_net__srclimit_take(&net->peerretry, from, now);
  return cm_net__srclimit_take(&net->retrylimit, from, now) &&
         cm_net__bucket_take(&net->retry_tokens, &net->retry_ts,
                             (double)ACCEPT_RETRY_RATE, now);
}

static void accept_send_retry(cm_net_t *net, const struct sockaddr *sa,
                              socklen_t salen, const cm_addr_t *from,
                              const ngtcp2_pkt_hd *hd, uint64_t now) {
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  uint8_t buf[ACCEPT_RETRY_BUF];
  ngtcp2_cid scid;
  ngtcp2_ssize n;
  int tlen;

  if (!accept_retry_budget(net, from, now)) {
    net->st.drop_retry_rate_limit++;
    return;
  }
  scid.datalen = CM_NET_SCID_LEN;
  if (cm_net__rand(scid.data, scid.datalen) != 0)
    return;
  tlen = cm_net__retry_token(net, token, sizeof(token), hd->version, sa, salen,
                             &scid, &hd->dcid, now);
  if (tlen < 0)
    return;
  n = ngtcp2_crypto_write_retry(buf, sizeof(buf), hd->version, &hd->scid, &scid,
                                &hd->dcid, token, (size_t)tlen);
  if (n < 0)
    return;
  net->st.retries_sent++;
  cm_net__send_packet(net, sa, from, buf, (size_t)n, 1);
}

/* ---- half-open table ----------------------------------------------------- */

/* The key a half-open connection is counted under: a known peer's address
 * and port, a stranger's IP (cm_net_int.h, half_srcs). Its length. */
static size_t accept_source_key(const cm_addr_t *a, int known,
                                uint8_t key[CM_NET_ADDR_KEY_LEN]) {
  if (known) {
    cm_net__addr_key(a, key);
    return CM_NET_ADDR_KEY_LEN;
  }
  cm_net__ip_key(a, key);
  return CM_NET_IP_KEY_LEN;
}

static uintptr_t accept_source_count(cm_net_t *net, const cm_addr_t *a,
                                     int known) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  size_t n = accept_source_key(a, known, key);
  return (uintptr_t)cm_net_map_get(&net->half_srcs, key, n);
}

static int accept_half_open_join(cm_net_conn_t *c, int known, uint64_t now) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  size_t klen = accept_source_key(&c->peer, known, key);
  uintptr_t n = (uintptr_t)cm_net_map_get(&net->half_srcs, key, klen);
  if (cm_net_map_put(&net->half_srcs, key, klen, (void *)(n + 1)) != 0)
    return CM_ENOMEM;
  c->half_open = 1;
  c->known_peer = known;
  c->half_open_at = now;
  c->hnext = NULL;
  c->hprev = net->half_tail;
  if (net->half_tail != NULL)
    net->half_tail->hnext = c;
  else
    net->half_head = c;
  net->half_tail = c;
  net->nhalf_open++;
  return 0;
}

void cm_net__half_open_leave(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  size_t klen;
  uintptr_t n;
  if (!c->half_open)
    return;
  c->half_open = 0;
  if (c->hprev != NULL)
    c->hprev->hnext = c->hnext;
  else
    net->half_head = c->hnext;
  if (c->hnext != NULL)
    c->hnext->hprev = c->hprev;
  else
    net->half_tail = c->hprev;
  c->hprev = c->hnext = NULL;
  net->nhalf_open--;
  klen = accept_source_key(&c->peer, c->known_peer, key);
  n = (uintptr_t)cm_net_map_get(&net->half_srcs, key, klen);
  if (n > 1)
    /* Replacing an existing entry allocates nothing, so cannot fail. */
    (void)cm_net_map_put(&net->half_srcs, key, klen, (void *)(n - 1));
  else
    cm_net_map_del(&net->half_srcs, key, klen, NULL);
}

/* How long a stranger's half-open connection keeps its place before a
 * stranger from a source holding none may take it: as long as the table
 * lasts at accept_rate, so bursts cannot cycle it faster than a sustained
 * flood may (128 ms by default, ample for a handshake on a LAN); no
 * minimum without accept_rate. */
static uint64_t accept_min_life(const cm_net_t *net) {
  if (net->cfg.accept_rate == 0)
    return 0;
  return (uint64_t)net->cfg.max_half_open * NGTCP2_SECONDS /
         net->cfg.accept_rate;
}

/* The half-open connection a newcomer from `from` (known: a known peer's
 * address) takes the place of when the table is full, or NULL if it may
 * take none. Strangers' connections make way first: a known peer takes
 * the oldest of them. A stranger takes the oldest of the stranger holding
 * the most, unless its own source would then hold as many (else two
 * floods would take turns displacing each other, and one source could
 * push out everyone else); failing that, a stranger from a source holding
 * none takes the oldest stranger's place once that has had its time, so
 * a table held by many sources one place each still lets new ones in,
 * each for at least accept_min_life. A known peer's connection never
 * makes way for a stranger; only when the whole table is known peers'
 * does a known peer displace one, by the same fair share among them. */
static cm_net_conn_t *accept_victim(cm_net_t *net, const cm_addr_t *from,
                                    int known, uint64_t now) {
  cm_net_conn_t *c, *victim = NULL, *oldest = NULL;
  uintptr_t most = 0, own;
  if (known)
    for (c = net->half_head; c != NULL; c = c->hnext)
      if (!c->known_peer)
        return c;
  for (c = net->half_head; c != NULL; c = c->hnext) {
    uintptr_t n;
    if (c->known_peer != known)
      continue;
    if (oldest == NULL)
      oldest = c;
    n = accept_source_count(net, &c->peer, c->known_peer);
    if (n > most) {
      most = n;
      victim = c;
    }
  }
  if (victim == NULL)
    return NULL;
  own = accept_source_count(net, from, known);
  if (own + 1 < most)
    return victim;
  if (!known && own == 0 && now - oldest->half_open_at >= accept_min_life(net))
    return oldest;
  return NULL;
}

/* Close a half-open connection to give its place to a newcomer. Deciding
 * the close takes the victim out of the table at once, so the newcomer's
 * place is free before the close is carried out. */
static void accept_displace(cm_net_t *net, cm_net_conn_t *victim) {
  net->st.half_open_displaced++;
  cm_net__conn_close(victim, CM_ECLOSED, 1);
}

/* Room in the pool, once authenticated, for a newcomer and for every
 * half-open connection admitted before it (less the one it would
 * displace): free places and idle connections. Without it, handshakes
 * admitted together would each be carried out and then closed for want
 * of a place, losing what their clients had queued; refusing the Initial
 * instead costs nothing and the client tries again. Nothing is evicted
 * here: only an authenticated peer makes room. */
static int accept_pool_room(const cm_net_t *net) {
  uint32_t want = net->nhalf_open + 1;
  if (net->nhalf_open >= net->cfg.max_half_open)
    want--;
  return cm_net__pool_has_room(net, want);
}

void cm_net__accept_verified(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  cm_net__half_open_leave(c);
  if (c->state != CM_CONN_ESTABLISHED)
    return;
  if (cm_net__make_room(net) != 0) {
    net->st.drop_pool_full++;
    cm_net__conn_close(c, CM_ELIMIT, 1);
    return;
  }
  c->in_pool = 1;
  net->nconns++;
}

/* ---- admission ---------------------------------------------------------- */

void cm_net__accept(cm_net_t *net, const struct sockaddr *sa,
                    const cm_addr_t *from, const uint8_t *data, size_t len) {
  ngtcp2_pkt_hd hd;
  ngtcp2_cid odcid;
  const ngtcp2_cid *retried = NULL;
  cm_net_conn_t *c, *victim = NULL;
  int known;
  int retry_on = net->cfg.retry_threshold < net->cfg.max_half_open;
  /* Its address not shown to be the sender's, while a Retry could show it
   * (with Retry off, no address is ever proven and each is taken as it
   * is). */
  int unproven = retry_on;
  uint64_t now = cm_net__now();
  socklen_t salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  int rv;

  /* Also rejects Initials under 1200 bytes, so truncated ones never cost a
   * connection. */
  if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
    net->st.drop_garbage++;
    return;
  }
  /* Before anything can be spent on it (a token check, a Retry, a rate
   * token, a half-open place): random bytes under a valid header would
   * otherwise use up the budgets real clients need. */
  if (cm_net__initial_check(data, len, net->initial_scratch,
                            sizeof(net->initial_scratch)) != 0) {
    net->st.drop_garbage++;
    return;
  }
  if (hd.tokenlen > 0) {
    /* Bound to the source address and port and to the connection the
     * Retry answered, and short-lived: a token seen on the path is no use
     * from anywhere else, or for long. */
    if (ngtcp2_crypto_verify_retry_token(
            &odcid, hd.token, hd.tokenlen, net->token_secret,
            sizeof(net->token_secret), hd.version, (const ngtcp2_sockaddr *)sa,
            (ngtcp2_socklen)salen, &hd.dcid, accept_token_lifetime(net),
            now) != 0) {
      net->st.drop_bad_token++;
      return;
    }
    retried = &odcid;
    unproven = 0;
  } else if (retry_on &&
             (net->nhalf_open >= net->cfg.retry_threshold ||
              !cm_net__bucket_take(&net->unproven_tokens, &net->unproven_ts,
                                   ACCEPT_UNPROVEN_RATE, now))) {
    accept_send_retry(net, sa, salen, from, &hd, now);
    return;
  }
  /* A member's address on an Initial without a token proves nothing while
   * Retry can prove it: such an Initial is a stranger's, so forging a
   * member's address and port can neither spend that member's budget nor
   * claim its priority. */
  known = !unproven && net->cb.is_known_peer != NULL &&
          net->cb.is_known_peer(net->ud, from);
  /* Per source first, so one address over its rate takes nothing from the
   * endpoint-wide budget the others share. A known peer has a bucket of
   * its own, so strangers on its IP cannot spend it, and is not charged
   * to the endpoint-wide one: what members can send is bounded by the
   * membership itself, and strangers must not be able to lock them out.
   * An unproven address admitted while the node is calm has spent the
   * budget for unproven addresses and nothing else: what proven strangers
   * (new nodes among them) need cannot be spent by forged sources. */
  if (!unproven) {
    if (!cm_net__srclimit_take(known ? &net->peerlimit : &net->srclimit, from,
                               now)) {
      net->st.drop_source_limit++;
      net->st.drop_rate_limit++;
      return;
    }
    /* Past accept_rate, a source not let in lately has a budget of its
     * own: a flood from many addresses it owns, each let in more often
     * than that, leaves a new node's handshake the whole of it, not the
     * chance accept_rate leaves among everything strangers send. A
     * source that takes a token from either is marked at once, whatever
     * becomes of its Initial (a full half-open table, a full pool): else
     * Initials refused further on would spend the budget of the new
     * again and again from the same few addresses. */
    if (!known && net->cfg.accept_rate > 0) {
      if (!cm_net__bucket_take(&net->accept_tokens, &net->accept_ts,
                               (double)net->cfg.accept_rate, now)) {
        if (cm_net__recent_seen(&net->admitted, from, now) ||
            !cm_net__bucket_take(&net->fresh_tokens, &net->fresh_ts,
                                 accept_fresh_rate(net), now)) {
          net->st.drop_rate_limit++;
          return;
        }
        net->st.accepts_fresh++;
      }
      cm_net__recent_mark(&net->admitted, from, now);
    }
  }
  /* Chosen once, displaced only after a good first packet (below): nothing
   * in between touches the other half-open connections. */
  if (net->nhalf_open >= net->cfg.max_half_open) {
    victim = accept_victim(net, from, known, now);
    if (victim == NULL) {
      net->st.drop_half_open++;
      return;
    }
  }
  if (!accept_pool_room(net)) {
    net->st.drop_pool_full++;
    return;
  }
  if (cm_net__conn_new_server(net, sa, salen, from, &hd, retried, &c) != 0) {
    net->st.drop_garbage++;
    return;
  }
  rv = cm_net__conn_read_pkt(c, data, len);
  /* Only a first packet processed without error makes a connection: one
   * whose handshake data TLS refuses, or that ngtcp2 drops, must not have
   * cost another handshake its half-open place. */
  if (rv != 0) {
    cm_net__conn_refuse_first(c, rv);
    return;
  }
  /* Joined first: if that fails (memory only), the victim keeps its place. */
  if (accept_half_open_join(c, known, now) != 0) {
    cm_net__conn_free(c);
    net->st.drop_half_open++;
    return;
  }
  if (victim != NULL)
    accept_displace(net, victim);
  net->st.conns_accepted++;
  cm_net__pool_add(c, 0);
  cm_net__mark_dirty(c);
}
