/*
 * The cm_net endpoint: the UDP socket, routing of incoming packets by
 * connection ID, the microsecond timer, the flush after each I/O pass, the
 * public API, fault injection and shutdown.
 */
#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "cm_net_int.h"

/* Packets waiting in libuv when the socket would block; past this QUIC's
 * loss recovery is cheaper than more memory. */
#define NET_MAX_PENDING_SENDS 1024
/* Stateless resets: a trigger must be able to hold a reset smaller than
 * itself (RFC 9000 10.3.3), and resets are rate-limited so we cannot be
 * used as an amplifier. */
#define NET_RESET_MIN_TRIGGER                                                  \
  (1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1)
#define NET_RESET_MAX_RANDLEN 24
#define NET_RESET_RATE 100.0
/* Reports of peers holding stale connections to us: each costs the owner a
 * look-up among the members, and a restart needs one per peer. */
#define NET_STALE_RATE 100.0
/* Socket buffers: a burst of full-size packets overflows the 208 KiB
 * default long before congestion control reacts on a fast LAN. */
#define NET_SOCKET_BUFFER (2 * 1024 * 1024)

/* Defaults, and why. */
/* Every peer of a cluster of a few hundred stays connected. */
#define NET_DEF_MAX_CONNECTIONS 512
/* Far above a probe period, so a connected peer stays connected. */
#define NET_DEF_IDLE_TIMEOUT CM_SEC(60)
/* Many round trips on any LAN or WAN; a dead peer costs no more. */
#define NET_DEF_HANDSHAKE_TIMEOUT CM_SEC(5)
/* memberlist's TCP push-pull timeout. */
#define NET_DEF_REQUEST_TIMEOUT CM_SEC(10)
/* 65536 members of about 256 bytes each. */
#define NET_DEF_MAX_STREAM_MESSAGE (16u << 20)
/* The largest allowed: four million members. Flow-control windows derive
 * from it and must stay far inside QUIC's 2^62 varints on any size_t. */
#define NET_MAX_STREAM_MESSAGE (1u << 30)
/* A few probe periods of gossip while a handshake completes. */
#define NET_DEF_MAX_QUEUED 256
/* A whole cluster restarting at once still gets in within a second. */
#define NET_DEF_ACCEPT_RATE 1000
/* Per IP address, and every node of a test or demo cluster runs on
 * 127.0.0.1: the benchmarks' 100 agents on loopback all connect to one
 * seed at once and soon to each other, so one address must be allowed a
 * burst of 200 (all of them twice, as across a restart). A flood from one
 * address gets no more half-open connections for it: max_half_open and
 * its per-source share hold those. */
#define NET_DEF_ACCEPT_RATE_PER_SOURCE 200
/* max_half_open, derived: a quarter of the pool, so handshakes in flight
 * never claim more of it than that once authenticated, and at most 128:
 * above the 100 agents of a loopback cluster joining one seed at once, so
 * a real join never meets a full table, while accept_rate x
 * handshake_timeout (5,000) can no longer fill memory. At least 1, so
 * every pool can accept. */
#define NET_HALF_OPEN_MAX_DERIVED 128
#define NET_HALF_OPEN_POOL_SHARE 4
/* retry_threshold, derived: a quarter of max_half_open. An endpoint with a
 * few handshakes in flight pays no extra round trip; past that, a flood
 * from spoofed addresses costs it no state at all. Under 4 places, 0: a
 * table that small is full at once, so every Initial without a token is
 * answered with a Retry. */
#define NET_RETRY_HALF_OPEN_SHARE 4

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
uint64_t cm_net__fuzz_clock;
uint64_t cm_net__fuzz_rand_state;
void (*cm_net__fuzz_send)(cm_net_t *net, const cm_addr_t *to,
                          const uint8_t *data, size_t len);
#endif

uint64_t cm_net__now(void) {
  struct timespec ts;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  if (cm_net__fuzz_clock != 0)
    return cm_net__fuzz_clock;
#endif
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

int cm_net__rand(void *dest, size_t len) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  if (cm_net__fuzz_rand_state != 0) {
    uint8_t *d = dest;
    size_t i;
    for (i = 0; i < len; i++) { /* xorshift64 */
      cm_net__fuzz_rand_state ^= cm_net__fuzz_rand_state << 13;
      cm_net__fuzz_rand_state ^= cm_net__fuzz_rand_state >> 7;
      cm_net__fuzz_rand_state ^= cm_net__fuzz_rand_state << 17;
      d[i] = (uint8_t)cm_net__fuzz_rand_state;
    }
    return 0;
  }
#endif
  return gnutls_rnd(GNUTLS_RND_NONCE, dest, len) == 0 ? 0 : CM_ETLS;
}

/* ---- fault injection ----------------------------------------------------- */

static int net_blocked(const cm_net_t *net, const cm_addr_t *a) {
  size_t i;
  for (i = 0; i < net->fault.nblocked; i++)
    if (cm_addr_eq(&net->blocked[i], a))
      return 1;
  return 0;
}

static int net_fault_drop(cm_net_t *net, const cm_addr_t *peer, double p) {
  if (p <= 0.0)
    return 0;
  if (net->fault.peer.family != 0 && !cm_addr_eq(&net->fault.peer, peer))
    return 0;
  return cm_rand_unit(&net->frand) < p;
}

void cm_net__deliver_datagram(cm_net_t *net, const cm_addr_t *from,
                              const uint8_t *data, size_t len) {
  cm_net_msg_t *m;
  if (net_fault_drop(net, from, net->fault.drop_in)) {
    net->st.drop_fault++;
    return;
  }
  if (net->fault.delay == 0) {
    if (net->cb.on_datagram != NULL)
      net->cb.on_datagram(net->ud, from, data, len);
    return;
  }
  m = malloc(sizeof(*m) + len);
  if (m == NULL) {
    net->st.drop_fault++;
    return;
  }
  m->next = NULL;
  m->from = *from;
  m->due = cm_net__now() + net->fault.delay * NGTCP2_MICROSECONDS;
  m->len = len;
  memcpy(m->data, data, len);
  /* A constant delay keeps the queue in due order. */
  if (net->delay_tail != NULL)
    net->delay_tail->next = m;
  else
    net->delay_head = m;
  net->delay_tail = m;
  cm_net__schedule_flush(net);
}

static void net_deliver_delayed(cm_net_t *net, uint64_t now) {
  cm_net_msg_t *m;
  while ((m = net->delay_head) != NULL && m->due <= now) {
    net->delay_head = m->next;
    if (net->delay_head == NULL)
      net->delay_tail = NULL;
    if (net->cb.on_datagram != NULL && !net->closing)
      net->cb.on_datagram(net->ud, &m->from, m->data, m->len);
    free(m);
  }
}

static void net_free_delayed(cm_net_t *net) {
  cm_net_msg_t *m;
  while ((m = net->delay_head) != NULL) {
    net->delay_head = m->next;
    free(m);
  }
  net->delay_tail = NULL;
}

/* ---- sending ------------------------------------------------------------- */

/* What a deferred send keeps before the packet's bytes. */
struct net_sent {
  size_t len;
  int control;
};

/* A packet gone out: counted, and apart if it carries no payload. */
static void net_count_sent(cm_net_t *net, size_t len, int control) {
  net->st.packets_out++;
  net->st.bytes_out += len;
  if (control) {
    net->st.control_packets_out++;
    net->st.control_bytes_out += len;
  }
}

static void net_send_cb(uv_udp_send_t *req, int status) {
  cm_net_t *net = req->handle->data;
  const struct net_sent *sent = (const struct net_sent *)(req + 1);
  net->outstanding_sends--;
  if (status == 0) {
    net_count_sent(net, sent->len, sent->control);
  } else if (status != UV_ECANCELED) {
    net->st.send_errors++;
  }
  free(req);
}

void cm_net__send_packet(cm_net_t *net, const struct sockaddr *sa,
                         const cm_addr_t *to, const uint8_t *data, size_t len,
                         int control) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  uv_udp_send_t *req;
  struct net_sent *sent;
  int rv;

  if (net_blocked(net, to)) {
    net->st.drop_fault++;
    return;
  }
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  if (cm_net__fuzz_send != NULL) {
    net_count_sent(net, len, control);
    cm_net__fuzz_send(net, to, data, len);
    return;
  }
#endif
  rv = uv_udp_try_send(&net->udp, &b, 1, sa);
  if (rv >= 0) {
    net_count_sent(net, len, control);
    return;
  }
  if (rv != UV_EAGAIN) {
    net->st.send_errors++;
    return;
  }
  if (net->outstanding_sends >= NET_MAX_PENDING_SENDS) {
    net->st.drop_queue_full++;
    return;
  }
  /* The request, what to count, then the packet bytes, in one allocation. */
  req = malloc(sizeof(*req) + sizeof(*sent) + len);
  if (req == NULL) {
    net->st.drop_queue_full++;
    return;
  }
  sent = (struct net_sent *)(req + 1);
  sent->len = len;
  sent->control = control;
  memcpy((uint8_t *)(sent + 1), data, len);
  b = uv_buf_init((char *)(sent + 1), (unsigned)len);
  if (uv_udp_send(req, &net->udp, &b, 1, sa, net_send_cb) != 0) {
    free(req);
    net->st.send_errors++;
    return;
  }
  net->outstanding_sends++;
  net->st.sends_deferred++;
}

static void net_send_reset(cm_net_t *net, const struct sockaddr *sa,
                           const cm_addr_t *from, const ngtcp2_version_cid *vc,
                           size_t trigger_len) {
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  uint8_t rnd[NET_RESET_MAX_RANDLEN];
  uint8_t buf[1 + NET_RESET_MAX_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN];
  size_t randlen;
  ngtcp2_cid cid;
  ngtcp2_ssize n;

  if (trigger_len < NET_RESET_MIN_TRIGGER || vc->dcidlen != CM_NET_SCID_LEN)
    return;
  if (!cm_net__bucket_take(&net->reset_tokens, &net->reset_ts, NET_RESET_RATE,
                           cm_net__now())) {
    net->st.resets_rate_limited++;
    return;
  }
  randlen = trigger_len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
  if (randlen > NET_RESET_MAX_RANDLEN)
    randlen = NET_RESET_MAX_RANDLEN;
  ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, net->cfg.static_secret, sizeof(net->cfg.static_secret),
          &cid) != 0 ||
      cm_net__rand(rnd, randlen) != 0)
    return;
  n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
  if (n <= 0)
    return;
  net->st.stateless_resets_sent++;
  cm_net__send_packet(net, sa, from, buf, (size_t)n, 1);
}

/* ---- flush and timer ----------------------------------------------------- */

static void net_idle_cb(uv_idle_t *h) { (void)h; }

void cm_net__schedule_flush(cm_net_t *net) {
  if (net->flush_scheduled)
    return;
  net->flush_scheduled = 1;
  /* An active idle handle makes the loop poll without blocking, so work
   * queued from a timer or another handle goes out in this iteration. */
  uv_idle_start(&net->idle, net_idle_cb);
}

void cm_net__mark_dirty(cm_net_conn_t *c) {
  if (c->dirty || c->writing)
    return;
  c->dirty = 1;
  c->dirty_next = c->net->dirty_head;
  c->net->dirty_head = c;
  cm_net__schedule_flush(c->net);
}

static void net_timer_arm(cm_net_t *net) {
  struct itimerspec its;
  uint64_t min = UINT64_MAX;
  cm_net_conn_t *c;

  for (c = net->lru_head; c != NULL; c = c->next)
    if (c->state < CM_CONN_CLOSING && c->expiry < min)
      min = c->expiry;
  if (net->delay_head != NULL && net->delay_head->due < min)
    min = net->delay_head->due;
  if (min == net->timer_armed)
    return;
  memset(&its, 0, sizeof(its));
  if (min != UINT64_MAX) {
    if (min == 0)
      min = 1; /* all-zero would disarm */
    its.it_value.tv_sec = (time_t)(min / NGTCP2_SECONDS);
    its.it_value.tv_nsec = (long)(min % NGTCP2_SECONDS);
  }
  if (timerfd_settime(net->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
    net->timer_armed = min;
}

static void net_teardown(cm_net_t *net);

static void net_flush(cm_net_t *net) {
  cm_net_conn_t *c;
  net->flush_scheduled = 0;
  uv_idle_stop(&net->idle);
  while ((c = net->dirty_head) != NULL) {
    net->dirty_head = c->dirty_next;
    c->dirty = 0;
    c->dirty_next = NULL;
    if (c->state == CM_CONN_ESTABLISHED || c->state == CM_CONN_HANDSHAKE)
      cm_net__conn_write(c);
    /* A close decided while writing is carried out right away (freeing
     * takes the connection off the dirty list if it is back on it). */
    if (c->state == CM_CONN_CLOSING)
      cm_net__conn_finish(c);
  }
  if (net->closing) {
    net_teardown(net);
    return;
  }
  net_timer_arm(net);
}

void cm_net__flush_now(cm_net_t *net) {
  if (net->flush_scheduled)
    net_flush(net);
}

static void net_check_cb(uv_check_t *h) { cm_net__flush_now(h->data); }

static void net_timer_cb(uv_poll_t *h, int status, int events) {
  cm_net_t *net = h->data;
  uint64_t expirations;
  ssize_t r;
  (void)status;
  (void)events;
  /* Only clears readability: EAGAIN (re-armed since) needs no action. */
  r = read(net->timer_fd, &expirations, sizeof(expirations));
  (void)r;
  net->timer_armed = UINT64_MAX;
  cm_net__expire(net);
}

void cm_net__expire(cm_net_t *net) {
  cm_net_conn_t *c;
  uint64_t now = cm_net__now();
  /* Nothing is freed here (closes are carried out in the flush), so the
   * list can be walked while callbacks run. */
  for (c = net->lru_head; c != NULL; c = c->next)
    if (c->state < CM_CONN_CLOSING && c->expiry <= now)
      cm_net__conn_handle_expiry(c, now);
  net_deliver_delayed(net, now);
  cm_net__schedule_flush(net);
}

/* ---- receiving ----------------------------------------------------------- */

/* 1 if the packet was a stateless reset for the current connection to
 * `from` (which is then closing), else 0. */
static int net_try_reset(cm_net_t *net, const cm_addr_t *from,
                         const uint8_t *data, size_t len) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net_conn_t *c;
  cm_net__addr_key(from, key);
  c = cm_net_map_get(&net->peers, key, sizeof(key));
  if (c == NULL || c->state != CM_CONN_ESTABLISHED)
    return 0;
  cm_net__conn_read(c, data, len);
  return c->state >= CM_CONN_CLOSING;
}

/* A stateless reset only ends the peer's stale connection if that
 * connection's ID came with a reset token, which a client's first ID never
 * does: so where we restarted and the peer was the server, only our
 * connecting to it replaces its stale connection. */
static void net_report_stale(cm_net_t *net, const cm_addr_t *from) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  if (net->cb.on_stale_peer == NULL)
    return;
  cm_net__addr_key(from, key);
  if (cm_net_map_get(&net->peers, key, sizeof(key)) != NULL)
    return;
  /* Strangers' packets, garbage included, must not use up the budget that
   * known peers need when we restart. */
  if (net->cb.is_known_peer != NULL && !net->cb.is_known_peer(net->ud, from))
    return;
  if (!cm_net__bucket_take(&net->stale_tokens, &net->stale_ts, NET_STALE_RATE,
                           cm_net__now()))
    return;
  net->st.stale_peers++;
  net->cb.on_stale_peer(net->ud, from);
}

static void net_dispatch(cm_net_t *net, const struct sockaddr *sa,
                         const cm_addr_t *from, const uint8_t *data,
                         size_t len) {
  ngtcp2_version_cid vc;
  cm_net_conn_t *c;

  if (ngtcp2_pkt_decode_version_cid(&vc, data, len, CM_NET_SCID_LEN) != 0) {
    net->st.drop_garbage++;
    return;
  }
  c = cm_net_map_get(&net->cids, vc.dcid, vc.dcidlen);
  if (c != NULL) {
    /* The source address is the peer's identity; another source using
     * its connection ID is not that peer. */
    if (!cm_addr_eq(&c->peer, from)) {
      net->st.drop_garbage++;
      return;
    }
    cm_net__conn_read(c, data, len);
    return;
  }
  if (data[0] & 0x80) {
    cm_net__accept(net, sa, from, data, len);
    return;
  }
  /* A stateless reset looks like a short header under a random connection
   * ID, so it routes nowhere: let the connection to its sender check the
   * token (ngtcp2 does, once decryption fails). The peer restarted. */
  if (net_try_reset(net, from, data, len))
    return;
  net->st.drop_garbage++;
  net_send_reset(net, sa, from, &vc, len);
  net_report_stale(net, from);
}

static void net_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  cm_net_t *net = h->data;
  (void)hint;
  *buf = uv_buf_init((char *)net->recvbuf, sizeof(net->recvbuf));
}

static void net_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *sa, unsigned flags) {
  cm_net_t *net = h->data;
  (void)buf;
  /* nread 0 with no address only means the socket is drained. */
  if (nread < 0 || sa == NULL || net->closing)
    return;
  cm_net__recv(net, sa, net->recvbuf, (size_t)nread,
               (flags & UV_UDP_PARTIAL) != 0);
}

void cm_net__recv(cm_net_t *net, const struct sockaddr *sa, const uint8_t *data,
                  size_t len, int partial) {
  cm_addr_t from;
  if (cm_net__sa_to_addr(sa, &from) != 0) {
    net->st.drop_garbage++;
    return;
  }
  if (net_blocked(net, &from)) {
    net->st.drop_fault++;
    return;
  }
  net->st.packets_in++;
  net->st.bytes_in += (uint64_t)len;
  if (len == 0 || partial) {
    net->st.drop_garbage++;
    return;
  }
  net_dispatch(net, sa, &from, data, len);
}

/* ---- lifecycle ----------------------------------------------------------- */

void cm_net_config_default(cm_net_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->auth = CM_AUTH_KEY;
  cfg->max_connections = NET_DEF_MAX_CONNECTIONS;
  cfg->idle_timeout = NET_DEF_IDLE_TIMEOUT;
  cfg->handshake_timeout = NET_DEF_HANDSHAKE_TIMEOUT;
  cfg->request_timeout = NET_DEF_REQUEST_TIMEOUT;
  cfg->max_stream_message = NET_DEF_MAX_STREAM_MESSAGE;
  cfg->max_queued_datagrams = NET_DEF_MAX_QUEUED;
  cfg->accept_rate = NET_DEF_ACCEPT_RATE;
  cfg->accept_rate_per_source = NET_DEF_ACCEPT_RATE_PER_SOURCE;
  /* Derived from the pool when the endpoint starts, so setting only
   * max_connections keeps them consistent with it. */
  cfg->max_half_open = 0;
  cfg->retry_threshold = CM_NET_RETRY_DERIVED;
}

void cm_net_config_derive(cm_net_config_t *cfg) {
  if (cfg->max_half_open == 0) {
    uint32_t n = cfg->max_connections / NET_HALF_OPEN_POOL_SHARE;
    if (n > NET_HALF_OPEN_MAX_DERIVED)
      n = NET_HALF_OPEN_MAX_DERIVED;
    cfg->max_half_open = n > 0 ? n : 1;
  }
  if (cfg->retry_threshold == CM_NET_RETRY_DERIVED) {
    cfg->retry_threshold = cfg->max_half_open / NET_RETRY_HALF_OPEN_SHARE;
  }
}

/* Checks a configuration whose derived settings were filled in. */
static int net_config_check(const cm_net_config_t *cfg) {
  if (cfg->max_connections == 0 || cfg->idle_timeout == 0 ||
      cfg->idle_timeout > CM_NET_IDLE_ADVERTISED ||
      cfg->handshake_timeout == 0 || cfg->request_timeout == 0 ||
      cfg->max_stream_message == 0 ||
      cfg->max_stream_message > NET_MAX_STREAM_MESSAGE ||
      cfg->max_queued_datagrams == 0 ||
      cfg->max_half_open > cfg->max_connections)
    return CM_ECONFIG;
  switch (cfg->auth) {
  case CM_AUTH_KEY:
    if (cfg->keys == NULL || cfg->nkeys == 0 || cfg->primary >= cfg->nkeys)
      return CM_ECONFIG;
    return 0;
  case CM_AUTH_MTLS:
    /* No certificate and key at all is allowed: such a node can only be
     * refused by its peers, which is what tests need to show. */
    if (cfg->ca_file == NULL ||
        (cfg->cert_file == NULL) != (cfg->key_file == NULL))
      return CM_ECONFIG;
    return 0;
  case CM_AUTH_NONE:
    return 0;
  default:
    return CM_ECONFIG;
  }
}

static void net_free(cm_net_t *net) {
  if (net->timer_fd >= 0)
    close(net->timer_fd);
  cm_net__tls_free(net);
  cm_net_map_free(&net->cids);
  cm_net_map_free(&net->peers);
  cm_net_map_free(&net->tokens);
  cm_net_map_free(&net->key_hints);
  cm_net_map_free(&net->half_srcs);
  net_free_delayed(net);
  free(net->blocked);
  free(net);
}

static void net_handle_closed(uv_handle_t *h) {
  cm_net_t *net = h->data;
  void (*done)(void *);
  void *arg;
  if (--net->handles_open > 0)
    return;
  done = net->done;
  arg = net->done_arg;
  net_free(net);
  if (done != NULL)
    done(arg);
}

static void net_close_handles(cm_net_t *net) {
  uv_close((uv_handle_t *)&net->udp, net_handle_closed);
  uv_close((uv_handle_t *)&net->check, net_handle_closed);
  uv_close((uv_handle_t *)&net->idle, net_handle_closed);
  uv_close((uv_handle_t *)&net->timer_poll, net_handle_closed);
}

static int net_open_socket(cm_net_t *net, const cm_addr_t *bind) {
  struct sockaddr_storage ss;
  int namelen = (int)sizeof(net->local_sa), bufsize, rv;
  unsigned flags = bind->family == 6 ? UV_UDP_IPV6ONLY : 0;

  if (cm_net__addr_to_sa(bind, &ss) == 0)
    return CM_EADDR;
  rv = uv_udp_bind(&net->udp, (struct sockaddr *)&ss, flags);
  if (rv == UV_EADDRINUSE)
    return CM_EADDRINUSE;
  if (rv != 0)
    return rv == UV_EADDRNOTAVAIL || rv == UV_EINVAL || rv == UV_EAFNOSUPPORT
               ? CM_EADDR
               : CM_EIO;
  if (uv_udp_getsockname(&net->udp, (struct sockaddr *)&net->local_sa,
                         &namelen) != 0)
    return CM_EIO;
  net->local_salen = (socklen_t)namelen;
  if (cm_net__sa_to_addr((struct sockaddr *)&net->local_sa, &net->local) != 0)
    return CM_EIO;
  /* Best effort: the kernel caps these at net.core.[rw]mem_max, and the
   * defaults still work, only with more loss under bursts. */
  bufsize = NET_SOCKET_BUFFER;
  (void)uv_recv_buffer_size((uv_handle_t *)&net->udp, &bufsize);
  bufsize = NET_SOCKET_BUFFER;
  (void)uv_send_buffer_size((uv_handle_t *)&net->udp, &bufsize);
  if (uv_udp_recv_start(&net->udp, net_alloc_cb, net_recv_cb) != 0)
    return CM_EIO;
  return 0;
}

int cm_net_new(cm_net_t **out, uv_loop_t *loop, const cm_addr_t *bind,
               const cm_net_config_t *cfg, const cm_net_callbacks_t *cb,
               void *ud) {
  cm_net_t *net;
  cm_net_config_t c;
  uint64_t seed[4];
  int rv;

  if (out == NULL || loop == NULL || bind == NULL || cfg == NULL || cb == NULL)
    return CM_EINVAL;
  if (bind->family != 4 && bind->family != 6)
    return CM_EADDR;
  c = *cfg;
  cm_net_config_derive(&c);
  rv = net_config_check(&c);
  if (rv != 0)
    return rv;
  net = calloc(1, sizeof(*net));
  if (net == NULL)
    return CM_ENOMEM;
  net->timer_fd = -1;
  net->loop = loop;
  net->cfg = c;
  net->cb = *cb;
  net->ud = ud;
  net->timer_armed = UINT64_MAX;
  net->reset_tokens = NET_RESET_RATE;
  net->stale_tokens = NET_STALE_RATE;
  net->stale_ts = cm_net__now();
  net->accept_tokens = (double)cfg->accept_rate;
  net->reset_ts = net->accept_ts = cm_net__now();
  net->retry_ts = net->accept_ts;
  net->unproven_ts = net->accept_ts;
  if (cm_net__rand(seed, sizeof(seed)) != 0) {
    net_free(net);
    return CM_ETLS;
  }
  if (cm_net_map_init(&net->cids, seed[0]) != 0 ||
      cm_net_map_init(&net->peers, seed[1]) != 0 ||
      cm_net_map_init(&net->tokens, seed[2]) != 0 ||
      cm_net_map_init(&net->key_hints, seed[2] ^ seed[0]) != 0 ||
      cm_net_map_init(&net->half_srcs, seed[3] ^ seed[1]) != 0) {
    net_free(net);
    return CM_ENOMEM;
  }
  cm_rand_seed(&net->frand, seed[0]);
  cm_net__srclimit_init(&net->srclimit, seed[3], cfg->accept_rate_per_source,
                        0);
  cm_net__srclimit_init(&net->peerlimit, seed[3] ^ seed[2],
                        cfg->accept_rate_per_source, 1);
  cm_net__srclimit_init(&net->retrylimit, seed[3] ^ seed[1],
                        cfg->accept_rate_per_source, 0);
  cm_net__srclimit_init(&net->peerretry, seed[3] ^ seed[0],
                        cm_net__retry_rate(), 1);
  rv = cm_net__accept_init(net, seed[2] ^ seed[1]);
  if (rv != 0) {
    net_free(net);
    return rv;
  }
  rv = cm_net__tls_init(net);
  /* The files were read; keep no pointers into the caller's memory. */
  net->cfg.ca_file = net->cfg.cert_file = net->cfg.key_file = NULL;
  if (rv != 0) {
    net_free(net);
    return rv;
  }
  net->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (net->timer_fd < 0) {
    net_free(net);
    return CM_EIO;
  }
  if (uv_udp_init(loop, &net->udp) != 0) {
    net_free(net);
    return CM_EIO;
  }
  /* From here on handles exist: failures close them and free net in the
   * close callbacks. */
  net->udp.data = net;
  uv_check_init(loop, &net->check);
  net->check.data = net;
  uv_idle_init(loop, &net->idle);
  net->idle.data = net;
  net->handles_open = 3;
  if (uv_poll_init(loop, &net->timer_poll, net->timer_fd) != 0) {
    uv_close((uv_handle_t *)&net->udp, net_handle_closed);
    uv_close((uv_handle_t *)&net->check, net_handle_closed);
    uv_close((uv_handle_t *)&net->idle, net_handle_closed);
    return CM_EIO;
  }
  net->timer_poll.data = net;
  net->handles_open = 4;
  rv = net_open_socket(net, bind);
  if (rv == 0 &&
      (uv_check_start(&net->check, net_check_cb) != 0 ||
       uv_poll_start(&net->timer_poll, UV_READABLE, net_timer_cb) != 0))
    rv = CM_EIO;
  if (rv != 0) {
    net_close_handles(net);
    return rv;
  }
  *out = net;
  return 0;
}

int cm_net_local_addr(cm_net_t *net, cm_addr_t *out) {
  if (net == NULL || out == NULL)
    return CM_EINVAL;
  if (net->local.family == 0)
    return CM_EIO;
  *out = net->local;
  return 0;
}

static void net_teardown(cm_net_t *net) {
  cm_net_conn_t *c, *next;
  /* Decide every close first (callbacks for pending requests run here),
   * then write the CONNECTION_CLOSEs and free. */
  for (c = net->lru_head; c != NULL; c = c->next)
    cm_net__conn_close(c, CM_ECLOSED, c->state == CM_CONN_ESTABLISHED);
  for (c = net->lru_head; c != NULL; c = next) {
    next = c->next;
    cm_net__conn_finish(c);
  }
  net->dirty_head = NULL;
  net_free_delayed(net);
  uv_check_stop(&net->check);
  uv_idle_stop(&net->idle);
  uv_poll_stop(&net->timer_poll);
  uv_udp_recv_stop(&net->udp);
  net_close_handles(net);
}

void cm_net_close(cm_net_t *net, void (*done)(void *arg), void *arg) {
  if (net == NULL || net->closing)
    return;
  net->closing = 1;
  net->done = done;
  net->done_arg = arg;
  cm_net__schedule_flush(net);
}

/* ---- API ----------------------------------------------------------------- */

static int net_check_peer(cm_net_t *net, const cm_addr_t *to) {
  if (!cm_addr_valid(to) || to->family != net->local.family ||
      cm_addr_eq(to, &net->local))
    return CM_EADDR;
  return 0;
}

/* The connection to `to`, opened if there is none. What the protocol sends
 * may close the least recently used idle connection to make room; a
 * connection opened on a report from the network (may_evict 0) takes only
 * a free place, since anyone can write a member's address on a packet. */
static int net_conn_for(cm_net_t *net, const cm_addr_t *to, int may_evict,
                        cm_net_conn_t **out) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net_conn_t *c;
  cm_net__addr_key(to, key);
  c = cm_net_map_get(&net->peers, key, sizeof(key));
  if (c != NULL) {
    *out = c;
    return 0;
  }
  if (!may_evict && net->nconns >= net->cfg.max_connections)
    return CM_ELIMIT;
  if (cm_net__make_room(net) != 0)
    return CM_ELIMIT;
  return cm_net__conn_new_client(net, to, cm_net__key_for(net, to), out);
}

/* The checks every call that sends to `to` makes first. */
static int net_check_send(cm_net_t *net, const cm_addr_t *to,
                          const uint8_t *data, size_t len) {
  if (net == NULL || to == NULL || (data == NULL && len > 0))
    return CM_EINVAL;
  if (net->closing)
    return CM_ECLOSED;
  return net_check_peer(net, to);
}

int cm_net_connect(cm_net_t *net, const cm_addr_t *to) {
  cm_net_conn_t *c;
  int rv = net_check_send(net, to, NULL, 0);
  if (rv != 0)
    return rv;
  rv = net_conn_for(net, to, 0, &c);
  if (rv == 0)
    cm_net__mark_dirty(c);
  return rv;
}

int cm_net_send_datagram(cm_net_t *net, const cm_addr_t *to,
                         const uint8_t *data, size_t len) {
  cm_net_conn_t *c;
  int rv = net_check_send(net, to, data, len);
  if (rv != 0)
    return rv;
  /* Nothing to send; ngtcp2 would abort on the empty frame's write. */
  if (len == 0)
    return CM_EINVAL;
  if (len > CM_NET_DATAGRAM_MAX) {
    net->st.drop_oversized++;
    return CM_ETOOBIG;
  }
  if (net_fault_drop(net, to, net->fault.drop_out)) {
    net->st.drop_fault++;
    return 0;
  }
  rv = net_conn_for(net, to, 1, &c);
  if (rv != 0)
    return rv;
  return cm_net__conn_enqueue(c, data, len);
}

int cm_net_stream_request(cm_net_t *net, const cm_addr_t *to,
                          const uint8_t *data, size_t len,
                          uint64_t request_id) {
  cm_net_conn_t *c;
  int rv = net_check_send(net, to, data, len);
  if (rv != 0)
    return rv;
  if (len > net->cfg.max_stream_message) {
    net->st.drop_oversized++;
    return CM_ETOOBIG;
  }
  rv = net_conn_for(net, to, 1, &c);
  if (rv != 0)
    return rv;
  return cm_net__conn_request(c, data, len, request_id);
}

void cm_net_stats(const cm_net_t *net, cm_net_stats_t *out) {
  const cm_net_conn_t *c;
  *out = net->st;
  out->conns_open = net->nconns + net->nhalf_open;
  out->conns_half_open = net->nhalf_open;
  out->conns_idle = 0;
  for (c = net->lru_head; c != NULL; c = c->next)
    out->conns_idle += (uint64_t)cm_net__conn_idle(c);
}

int cm_net_is_connected(const cm_net_t *net, const cm_addr_t *peer) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  const cm_net_conn_t *c;
  if (net == NULL || peer == NULL)
    return 0;
  cm_net__addr_key(peer, key);
  c = cm_net_map_get(&net->peers, key, sizeof(key));
  return c != NULL && c->state == CM_CONN_ESTABLISHED;
}

void cm_net_set_idle_floor(cm_net_t *net, cm_time_t floor) {
  cm_net_conn_t *c;
  cm_time_t was, now;
  if (net == NULL)
    return;
  if (floor > CM_NET_IDLE_ADVERTISED)
    floor = CM_NET_IDLE_ADVERTISED;
  was = net->idle_floor > net->cfg.idle_timeout ? net->idle_floor
                                                : net->cfg.idle_timeout;
  net->idle_floor = floor;
  now = floor > net->cfg.idle_timeout ? floor : net->cfg.idle_timeout;
  /* Open connections' idle deadlines move with it. A later one is found
   * when the earlier comes due (cm_net__conn_handle_expiry); an earlier
   * one is set now, by the write pass, which recomputes each expiry. */
  if (now >= was)
    return;
  for (c = net->lru_head; c != NULL; c = c->next)
    if (c->state < CM_CONN_CLOSING)
      cm_net__mark_dirty(c);
}

int cm_net_set_fault(cm_net_t *net, const cm_net_fault_t *f) {
  cm_addr_t *blocked = NULL;
  if (net == NULL)
    return CM_EINVAL;
  if (f == NULL) {
    free(net->blocked);
    net->blocked = NULL;
    memset(&net->fault, 0, sizeof(net->fault));
    return 0;
  }
  if (!(f->drop_out >= 0.0 && f->drop_out <= 1.0) ||
      !(f->drop_in >= 0.0 && f->drop_in <= 1.0) ||
      (f->nblocked > 0 && f->blocked == NULL))
    return CM_EINVAL;
  if (f->nblocked > 0) {
    blocked = malloc(f->nblocked * sizeof(*blocked));
    if (blocked == NULL)
      return CM_ENOMEM;
    memcpy(blocked, f->blocked, f->nblocked * sizeof(*blocked));
  }
  free(net->blocked);
  net->blocked = blocked;
  net->fault = *f;
  net->fault.blocked = blocked;
  cm_rand_seed(&net->frand, f->seed);
  return 0;
}

#define NET_STR(x) #x
#define NET_XSTR(x) NET_STR(x)

void cm_net_versions(cm_net_versions_t *out) {
  const ngtcp2_info *info = ngtcp2_version(0);
  out->ngtcp2_built = NGTCP2_VERSION;
  out->ngtcp2_running = info != NULL ? info->version_str : "unknown";
  out->gnutls_built = GNUTLS_VERSION;
  out->gnutls_running = gnutls_check_version(NULL);
  out->libuv_built = NET_XSTR(UV_VERSION_MAJOR) "." NET_XSTR(
      UV_VERSION_MINOR) "." NET_XSTR(UV_VERSION_PATCH);
  out->libuv_running = uv_version_string();
}
