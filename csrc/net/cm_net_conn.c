/*
 * One QUIC connection of cm_net: creation as client or server, ngtcp2
 * callbacks, datagram queue, request/response streams, the write pass and
 * closing. ngtcp2 callbacks never write packets or free anything: they
 * change state and mark the connection dirty; the endpoint's flush (after
 * each I/O pass) calls cm_net__conn_write and cm_net__conn_finish.
 */
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "cm_net_int.h"

/* Transport parameters. Push-pull messages are a few hundred KiB in a
 * cluster of hundreds, so a 1 MiB stream window lets one go in a round trip
 * or two; several may run at once. */
#define CONN_STREAM_WINDOW (1024 * 1024)
#define CONN_CONN_WINDOW (4 * 1024 * 1024)
#define CONN_MAX_STREAMS_BIDI 16
/* Accept any DATAGRAM frame that fits a packet; we bound our own. */
#define CONN_MAX_DATAGRAM_FRAME 65535
/* A server connection from a peer we already have an established connection
 * with, established this long before, means the peer lost that connection
 * (it restarted): the new one replaces it. A simultaneous open is faster.
 * If the peer had opened the older one too, no wait is needed. */
#define CONN_STALE_AFTER (1000 * NGTCP2_MILLISECONDS)
/* Re-run the write pass inline when a deadline has already passed after
 * writing (pacing), at most this often, instead of a round through the
 * loop. */
#define CONN_INLINE_EXPIRY_ROUNDS 4

static void conn_key_accepted(cm_net_conn_t *c);
static cm_net_conn_t *conn_retry_next_key(cm_net_conn_t *c);

static ngtcp2_conn *conn_get_qc(ngtcp2_crypto_conn_ref *ref) {
  return ((cm_net_conn_t *)ref->user_data)->qc;
}

static void conn_path(cm_net_conn_t *c, ngtcp2_path *path) {
  path->local.addr = (ngtcp2_sockaddr *)&c->net->local_sa;
  path->local.addrlen = c->net->local_salen;
  path->remote.addr = (ngtcp2_sockaddr *)&c->peer_sa;
  path->remote.addrlen = c->peer_salen;
  path->user_data = NULL;
}

static int conn_status_for_requests(int status) {
  switch (status) {
  case CM_EAUTH:
  case CM_ETIMEDOUT:
  case CM_ETOOBIG:
    return status;
  default:
    return CM_ECLOSED;
  }
}

/* ---- LRU ---------------------------------------------------------------- */

static void conn_lru_unlink(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else if (net->lru_head == c)
    net->lru_head = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  else if (net->lru_tail == c)
    net->lru_tail = c->prev;
  c->prev = c->next = NULL;
}

static void conn_lru_append(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  c->next = NULL;
  c->prev = net->lru_tail;
  if (net->lru_tail != NULL)
    net->lru_tail->next = c;
  else
    net->lru_head = c;
  net->lru_tail = c;
}

void cm_net__conn_touch(cm_net_conn_t *c) {
  if (c->net->lru_tail == c)
    return;
  conn_lru_unlink(c);
  conn_lru_append(c);
}

int cm_net__conn_idle(const cm_net_conn_t *c) {
  return c->state == CM_CONN_ESTABLISHED && c->nstreams == 0 && c->qlen == 0;
}

/* ---- peer map ------------------------------------------------------------ */

static void conn_make_current(cm_net_conn_t *c) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net__addr_key(&c->peer, key);
  /* Only fails without memory; the connection then serves what it has
   * and a later send opens another. */
  if (cm_net_map_put(&c->net->peers, key, sizeof(key), c) == 0) {
    c->current = 1;
    c->retiring = 0;
  }
}

static void conn_unset_current(cm_net_conn_t *c) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  if (!c->current)
    return;
  cm_net__addr_key(&c->peer, key);
  cm_net_map_del(&c->net->peers, key, sizeof(key), c);
  c->current = 0;
}

static cm_net_conn_t *conn_find_other(cm_net_conn_t *c) {
  cm_net_conn_t *o, *best = NULL;
  for (o = c->net->lru_head; o != NULL; o = o->next) {
    if (o == c || o->state >= CM_CONN_CLOSING ||
        !cm_addr_eq(&o->peer, &c->peer))
      continue;
    if (best == NULL || (o->state == CM_CONN_ESTABLISHED && !o->retiring))
      best = o;
  }
  return best;
}

/* Hand datagrams and requests not yet on the wire to another connection to
 * the same peer. */
static void conn_move_pending(cm_net_conn_t *from, cm_net_conn_t *to) {
  cm_net_stream_t **p = &from->streams;
  if (from->qhead != NULL) {
    if (to->qtail != NULL)
      to->qtail->next = from->qhead;
    else
      to->qhead = from->qhead;
    to->qtail = from->qtail;
    to->qlen += from->qlen;
    from->qhead = from->qtail = NULL;
    from->qlen = 0;
  }
  while (*p != NULL) {
    cm_net_stream_t *s = *p;
    if (s->local && s->id < 0 && !s->done) {
      *p = s->next;
      from->nstreams--;
      s->conn = to;
      s->next = to->streams;
      to->streams = s;
      to->nstreams++;
    } else {
      p = &s->next;
    }
  }
  cm_net__mark_dirty(to);
}

/* ---- closing ------------------------------------------------------------- */

static void conn_free_stream(cm_net_stream_t *s) {
  free(s->out);
  free(s->in);
  free(s);
}

void cm_net__conn_close(cm_net_conn_t *c, int status, int send_close) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s;
  cm_net_msg_t *m;
  int rstatus = conn_status_for_requests(status);

  int was_handshake = c->state == CM_CONN_HANDSHAKE;

  if (c->state >= CM_CONN_CLOSING)
    return;
  if (was_handshake) {
    net->st.handshakes_failed++;
    if (status == CM_EAUTH)
      net->st.auth_refused++;
  }
  if (status == CM_ETIMEDOUT)
    net->st.conns_timed_out++;
  c->state = CM_CONN_CLOSING;
  c->send_close = send_close;
  c->close_status = status;
  net->nconns--;

  if (c->current) {
    cm_net_conn_t *o;
    conn_unset_current(c);
    o = conn_find_other(c);
    if (o == NULL && status == CM_EAUTH && was_handshake &&
        (o = conn_retry_next_key(c)) != NULL)
      ; /* the retry became current when it registered */
    else if (o != NULL)
      conn_make_current(o);
    if (o != NULL)
      conn_move_pending(c, o);
  }
  while ((m = c->qhead) != NULL) {
    c->qhead = m->next;
    net->st.drop_closed++;
    free(m);
  }
  c->qtail = NULL;
  c->qlen = 0;
  /* Callbacks may call back into cm_net: this connection is already out of
   * every table, so nothing they do reaches it. */
  for (s = c->streams; s != NULL; s = s->next) {
    if (!s->local) {
      if (!s->done)
        cm_net_map_del(&net->tokens, &s->request_id, sizeof(s->request_id), s);
      s->done = 1;
      continue;
    }
    if (s->done)
      continue;
    s->done = 1;
    if (net->cb.on_stream_response != NULL)
      net->cb.on_stream_response(net->ud, s->request_id, rstatus, NULL, 0);
  }
  cm_net__mark_dirty(c);
}

void cm_net__conn_free(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s;
  cm_net_msg_t *m;

  if (c->qc != NULL) {
    size_t n = ngtcp2_conn_get_scid(c->qc, NULL), i;
    ngtcp2_cid *ids = n > 0 ? calloc(n, sizeof(*ids)) : NULL;
    if (ids != NULL) {
      n = ngtcp2_conn_get_scid(c->qc, ids);
      for (i = 0; i < n; i++)
        cm_net_map_del(&net->cids, ids[i].data, ids[i].datalen, c);
      free(ids);
    } else if (n > 0) {
      /* Without memory for the list, sweep the table: slower, complete. */
      size_t b;
      for (b = 0; b < net->cids.nbuckets; b++) {
        cm_net_map_entry_t *e = net->cids.buckets[b], *next;
        for (; e != NULL; e = next) {
          next = e->next;
          if (e->val == c)
            cm_net_map_del(&net->cids, e->key, e->keylen, c);
        }
      }
    }
  }
  if (c->has_odcid)
    cm_net_map_del(&net->cids, c->odcid.data, c->odcid.datalen, c);
  conn_unset_current(c);
  conn_lru_unlink(c);
  while ((s = c->streams) != NULL) {
    c->streams = s->next;
    if (!s->local && !s->done)
      cm_net_map_del(&net->tokens, &s->request_id, sizeof(s->request_id), s);
    conn_free_stream(s);
  }
  while ((m = c->qhead) != NULL) {
    c->qhead = m->next;
    free(m);
  }
  if (c->qc != NULL)
    ngtcp2_conn_del(c->qc);
  if (c->tls != NULL)
    gnutls_deinit(c->tls);
  free(c);
}

void cm_net__conn_finish(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  if (c->send_close && c->qc != NULL && !ngtcp2_conn_in_closing_period(c->qc) &&
      !ngtcp2_conn_in_draining_period(c->qc)) {
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n;
    ngtcp2_path_storage_zero(&ps);
    n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, &pi, net->sendbuf,
                                           sizeof(net->sendbuf), &c->ccerr,
                                           cm_net__now());
    if (n > 0)
      cm_net__send_packet(net, (struct sockaddr *)&c->peer_sa, &c->peer,
                          net->sendbuf, (size_t)n);
  }
  c->state = CM_CONN_DEAD;
  cm_net__conn_free(c);
}

/* ---- ngtcp2 callbacks ---------------------------------------------------- */

static void conn_rand_cb(uint8_t *dest, size_t len,
                         const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  /* ngtcp2 cannot take a failure here; gnutls_rnd only fails when the
   * library is unusable, and then the handshake fails too. */
  (void)cm_net__rand(dest, len);
}

static int conn_get_new_cid_cb(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token,
                               size_t cidlen, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  if (cm_net__rand(cid->data, cidlen) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          token, c->net->cfg.static_secret, sizeof(c->net->cfg.static_secret),
          cid) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  if (cm_net_map_put(&c->net->cids, cid->data, cid->datalen, c) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int conn_remove_cid_cb(ngtcp2_conn *qc, const ngtcp2_cid *cid,
                              void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  cm_net_map_del(&c->net->cids, cid->data, cid->datalen, c);
  return 0;
}

static int conn_addr_less(const cm_addr_t *a, const cm_addr_t *b) {
  size_t n = a->family == 6 ? 16 : 4;
  int d;
  if (a->family != b->family)
    return a->family < b->family;
  d = memcmp(a->ip, b->ip, n);
  if (d != 0)
    return d < 0;
  return a->port < b->port;
}

static const cm_addr_t *conn_initiator(const cm_net_conn_t *c) {
  return c->is_client ? &c->net->local : &c->peer;
}

/* Both ends apply the same rule to a pair of connections opened at once,
 * so they keep the same one: the one whose initiator has the lower
 * address. */
static void conn_established(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  cm_net_conn_t *cur, *winner, *loser;
  uint64_t now = cm_net__now();

  if (c->state != CM_CONN_HANDSHAKE)
    return;
  c->state = CM_CONN_ESTABLISHED;
  c->established_at = now;
  net->st.handshakes_ok++;
  conn_key_accepted(c);
  cm_net__mark_dirty(c);

  cm_net__addr_key(&c->peer, key);
  cur = cm_net_map_get(&net->peers, key, sizeof(key));
  if (cur == c)
    return;
  if (cur == NULL) {
    conn_make_current(c);
    return;
  }
  if (cur->state == CM_CONN_HANDSHAKE) {
    conn_unset_current(cur);
    conn_make_current(c);
    conn_move_pending(cur, c);
    return;
  }
  /* The peer opened this one although it had opened `cur` already: it
   * no longer has `cur` (it restarted), however young `cur` is. */
  if (!c->is_client &&
      (!cur->is_client || now - cur->established_at > CONN_STALE_AFTER)) {
    conn_unset_current(cur);
    conn_make_current(c);
    conn_move_pending(cur, c);
    cm_net__conn_close(cur, CM_ECLOSED, 1);
    return;
  }
  if (conn_addr_less(conn_initiator(c), conn_initiator(cur))) {
    winner = c;
    loser = cur;
    conn_unset_current(cur);
    conn_make_current(c);
  } else {
    winner = cur;
    loser = c;
  }
  conn_move_pending(loser, winner);
  loser->retiring = 1;
  cm_net__mark_dirty(loser);
}

static int conn_handshake_completed_cb(ngtcp2_conn *qc, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  /* The peer proved the key or a CA-issued certificate. A client still
   * waits for confirmation before sending: the server may yet refuse the
   * client's certificate. */
  c->verified = 1;
  if (!c->is_client)
    conn_established(c);
  return 0;
}

static int conn_handshake_confirmed_cb(ngtcp2_conn *qc, void *ud) {
  (void)qc;
  conn_established(ud);
  return 0;
}

static int conn_recv_datagram_cb(ngtcp2_conn *qc, uint32_t flags,
                                 const uint8_t *data, size_t len, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  (void)flags;
  if (!c->verified || c->state >= CM_CONN_CLOSING) {
    c->net->st.drop_auth++;
    return 0;
  }
  c->net->st.datagrams_in++;
  cm_net__conn_touch(c);
  cm_net__deliver_datagram(c->net, &c->peer, data, len);
  return 0;
}

static int conn_stream_append(cm_net_conn_t *c, cm_net_stream_t *s,
                              const uint8_t *data, size_t len) {
  size_t max = c->net->cfg.max_stream_message;
  if (len > max - s->inlen)
    return CM_ETOOBIG;
  if (s->inlen + len > s->incap) {
    size_t cap = s->incap ? s->incap : 4096;
    uint8_t *p;
    while (cap < s->inlen + len)
      cap *= 2;
    if (cap > max)
      cap = max;
    p = realloc(s->in, cap);
    if (p == NULL)
      return CM_ENOMEM;
    s->in = p;
    s->incap = cap;
  }
  memcpy(s->in + s->inlen, data, len);
  s->inlen += len;
  return 0;
}

static void conn_stream_abort(cm_net_conn_t *c, cm_net_stream_t *s,
                              uint64_t code) {
  s->abort_code = code;
  cm_net__mark_dirty(c);
}

static void conn_stream_complete(cm_net_conn_t *c, cm_net_stream_t *s) {
  cm_net_t *net = c->net;
  if (s->local) {
    s->done = 1;
    if (net->cb.on_stream_response != NULL)
      net->cb.on_stream_response(net->ud, s->request_id, 0, s->in, s->inlen);
  } else {
    s->request_id = ++net->next_token;
    if (cm_net_map_put(&net->tokens, &s->request_id, sizeof(s->request_id),
                       s) != 0) {
      s->done = 1;
      conn_stream_abort(c, s, CM_NET_APP_CANCEL);
    } else {
      net->st.requests_in++;
      if (net->cb.on_stream_request != NULL)
        net->cb.on_stream_request(net->ud, &c->peer, s->request_id, s->in,
                                  s->inlen);
    }
  }
  free(s->in);
  s->in = NULL;
  s->inlen = s->incap = 0;
}

static int conn_recv_stream_data_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                                    uint64_t offset, const uint8_t *data,
                                    size_t len, void *ud, void *sud) {
  cm_net_conn_t *c = ud;
  cm_net_t *net = c->net;
  cm_net_stream_t *s = sud;
  int rv;
  (void)offset;

  /* Give the credit back at once: a message is bounded by
   * max_stream_message, not by flow control. */
  ngtcp2_conn_extend_max_stream_offset(qc, id, len);
  ngtcp2_conn_extend_max_offset(qc, len);

  if (!c->verified || c->state >= CM_CONN_CLOSING) {
    net->st.drop_auth++;
    return 0;
  }
  if (s == NULL) {
    if (!ngtcp2_is_bidi_stream(id) || ngtcp2_conn_is_local_stream(qc, id))
      return 0;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    s->conn = c;
    s->id = id;
    s->next = c->streams;
    c->streams = s;
    c->nstreams++;
    if (ngtcp2_conn_set_stream_user_data(qc, id, s) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  cm_net__conn_touch(c);
  if ((s->local && s->done) || s->abort_code || s->in_fin_seen)
    return 0;
  rv = conn_stream_append(c, s, data, len);
  if (rv == CM_ETOOBIG) {
    net->st.drop_oversized++;
    if (s->local) {
      s->done = 1;
      if (net->cb.on_stream_response != NULL)
        net->cb.on_stream_response(net->ud, s->request_id, CM_ETOOBIG, NULL, 0);
    }
    conn_stream_abort(c, s, CM_NET_APP_TOOBIG);
    return 0;
  }
  if (rv != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    s->in_fin_seen = 1;
    conn_stream_complete(c, s);
  }
  return 0;
}

static int conn_stream_close_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                                uint64_t app_error_code, void *ud, void *sud) {
  cm_net_conn_t *c = ud;
  cm_net_t *net = c->net;
  cm_net_stream_t *s = sud;
  (void)flags;
  /* ngtcp2 returns stream credit by itself only for streams it never
   * reported; without this the peer stalls after CONN_MAX_STREAMS. */
  if (ngtcp2_is_bidi_stream(id) && !ngtcp2_conn_is_local_stream(qc, id))
    ngtcp2_conn_extend_max_streams_bidi(qc, 1);
  cm_net__mark_dirty(c);
  if (s == NULL)
    return 0;
  s->closed = 1;
  if (s->local && !s->done) {
    s->done = 1;
    if (net->cb.on_stream_response != NULL)
      net->cb.on_stream_response(
          net->ud, s->request_id,
          app_error_code == CM_NET_APP_TOOBIG ? CM_ETOOBIG : CM_ECLOSED, NULL,
          0);
  } else if (!s->local && !s->done) {
    s->done = 1;
    cm_net_map_del(&net->tokens, &s->request_id, sizeof(s->request_id), s);
  }
  return 0;
}

static int conn_extend_cb(ngtcp2_conn *qc, uint64_t max, void *ud) {
  (void)qc;
  (void)max;
  cm_net__mark_dirty(ud);
  return 0;
}

static int conn_extend_stream_data_cb(ngtcp2_conn *qc, int64_t id, uint64_t max,
                                      void *ud, void *sud) {
  (void)qc;
  (void)id;
  (void)max;
  (void)sud;
  cm_net__mark_dirty(ud);
  return 0;
}

static const ngtcp2_callbacks conn_callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = conn_handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = conn_recv_stream_data_cb,
    .stream_close = conn_stream_close_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .extend_max_local_streams_bidi = conn_extend_cb,
    .rand = conn_rand_cb,
    .get_new_connection_id = conn_get_new_cid_cb,
    .remove_connection_id = conn_remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .extend_max_stream_data = conn_extend_stream_data_cb,
    .handshake_confirmed = conn_handshake_confirmed_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = conn_recv_datagram_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- creation ------------------------------------------------------------ */

static int conn_alloc(cm_net_t *net, const cm_addr_t *peer, int is_client,
                      cm_net_conn_t **out) {
  cm_net_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return CM_ENOMEM;
  c->net = net;
  c->ref.get_conn = conn_get_qc;
  c->ref.user_data = c;
  c->peer = *peer;
  c->is_client = is_client;
  c->state = CM_CONN_HANDSHAKE;
  c->expiry = UINT64_MAX;
  ngtcp2_ccerr_default(&c->ccerr);
  *out = c;
  return 0;
}

static void conn_settings(cm_net_t *net, ngtcp2_settings *s,
                          ngtcp2_transport_params *p) {
  ngtcp2_settings_default(s);
  s->initial_ts = cm_net__now();
  s->handshake_timeout = net->cfg.handshake_timeout * NGTCP2_MICROSECONDS;
  s->max_tx_udp_payload_size = CM_NET_MAX_UDP_PAYLOAD;
  /* Full-size packets from the start, so a CM_NET_DATAGRAM_MAX datagram
   * fits without waiting for path MTU discovery; clusters run on LANs. */
  s->no_tx_udp_payload_size_shaping = 1;
  s->no_pmtud = 1;

  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = CONN_STREAM_WINDOW;
  p->initial_max_stream_data_bidi_remote = CONN_STREAM_WINDOW;
  p->initial_max_data = CONN_CONN_WINDOW;
  p->initial_max_streams_bidi = CONN_MAX_STREAMS_BIDI;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = net->cfg.idle_timeout * NGTCP2_MICROSECONDS;
  p->max_datagram_frame_size = CONN_MAX_DATAGRAM_FRAME;
  /* The source address is the peer's identity: no migration. */
  p->disable_active_migration = 1;
}

static void conn_register(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  conn_lru_append(c);
  net->nconns++;
  net->st.conns_opened++;
  cm_net__addr_key(&c->peer, key);
  if (cm_net_map_get(&net->peers, key, sizeof(key)) == NULL)
    conn_make_current(c);
  cm_net__mark_dirty(c);
}

static int conn_addr_to_sa(const cm_addr_t *a, cm_net_conn_t *c) {
  memset(&c->peer_sa, 0, sizeof(c->peer_sa));
  if (a->family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&c->peer_sa;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, a->ip, 4);
    sin->sin_port = htons(a->port);
    c->peer_salen = sizeof(*sin);
    return 0;
  }
  if (a->family == 6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->peer_sa;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, a->ip, 16);
    sin6->sin6_port = htons(a->port);
    c->peer_salen = sizeof(*sin6);
    return 0;
  }
  return CM_EADDR;
}

size_t cm_net__key_for(cm_net_t *net, const cm_addr_t *peer) {
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  uintptr_t hint;
  cm_net__addr_key(peer, key);
  hint = (uintptr_t)cm_net_map_get(&net->key_hints, key, sizeof(key));
  if (hint == 0 || hint > net->cfg.nkeys)
    return net->cfg.primary;
  return (size_t)(hint - 1);
}

static void conn_key_accepted(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  if (!c->is_client || net->cfg.auth != CM_AUTH_KEY)
    return;
  cm_net__addr_key(&c->peer, key);
  if (c->key_idx == net->cfg.primary) {
    cm_net_map_del(&net->key_hints, key, sizeof(key), NULL);
    return;
  }
  /* Hints only save failed handshakes during a rotation: rather than let
   * the table grow without bound, start it over. */
  if (net->key_hints.count >= 4 * (size_t)net->cfg.max_connections) {
    cm_net_map_free(&net->key_hints);
    if (cm_net_map_init(&net->key_hints, net->cids.seed ^ 0x5a5a) != 0)
      return;
  }
  (void)cm_net_map_put(&net->key_hints, key, sizeof(key),
                       (void *)(uintptr_t)(c->key_idx + 1));
}

/* A peer refused the key we offered: try the next key of the ring with a
 * new connection that inherits what waits to be sent. */
static cm_net_conn_t *conn_retry_next_key(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
  cm_net_conn_t *n;
  if (!c->is_client || net->cfg.auth != CM_AUTH_KEY ||
      c->key_tries + 1 >= net->cfg.nkeys || net->closing)
    return NULL;
  if (cm_net__conn_new_client(net, &c->peer, (c->key_idx + 1) % net->cfg.nkeys,
                              &n) != 0)
    return NULL;
  n->key_tries = c->key_tries + 1;
  return n;
}

int cm_net__conn_new_client(cm_net_t *net, const cm_addr_t *peer,
                            size_t key_idx, cm_net_conn_t **out) {
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_path path;
  ngtcp2_cid dcid, scid;
  cm_net_conn_t *c;
  int rv;

  rv = conn_alloc(net, peer, 1, &c);
  if (rv != 0)
    return rv;
  c->key_idx = key_idx;
  rv = conn_addr_to_sa(peer, c);
  if (rv != 0)
    goto fail;
  dcid.datalen = CM_NET_INITIAL_DCID_LEN;
  scid.datalen = CM_NET_SCID_LEN;
  rv = CM_ETLS;
  if (cm_net__rand(dcid.data, dcid.datalen) != 0 ||
      cm_net__rand(scid.data, scid.datalen) != 0)
    goto fail;
  conn_settings(net, &settings, &params);
  conn_path(c, &path);
  rv = ngtcp2_conn_client_new(&c->qc, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                              &conn_callbacks, &settings, &params, NULL, c);
  if (rv != 0) {
    c->qc = NULL;
    rv = rv == NGTCP2_ERR_NOMEM ? CM_ENOMEM : CM_EQUIC;
    goto fail;
  }
  rv = cm_net__tls_session(net, c);
  if (rv != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);
  rv = cm_net_map_put(&net->cids, scid.data, scid.datalen, c);
  if (rv != 0)
    goto fail;
  conn_register(c);
  *out = c;
  return 0;
fail:
  cm_net__conn_free(c);
  return rv;
}

int cm_net__conn_new_server(cm_net_t *net, const struct sockaddr *sa,
                            socklen_t salen, const cm_addr_t *peer,
                            const ngtcp2_pkt_hd *hd, cm_net_conn_t **out) {
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_path path;
  ngtcp2_cid scid;
  cm_net_conn_t *c;
  int rv;

  rv = conn_alloc(net, peer, 0, &c);
  if (rv != 0)
    return rv;
  memcpy(&c->peer_sa, sa, salen);
  c->peer_salen = salen;
  scid.datalen = CM_NET_SCID_LEN;
  rv = CM_ETLS;
  if (cm_net__rand(scid.data, scid.datalen) != 0)
    goto fail;
  conn_settings(net, &settings, &params);
  settings.token = hd->token;
  settings.tokenlen = hd->tokenlen;
  params.original_dcid = hd->dcid;
  params.original_dcid_present = 1;
  params.stateless_reset_token_present = 1;
  if (ngtcp2_crypto_generate_stateless_reset_token(
          params.stateless_reset_token, net->cfg.static_secret,
          sizeof(net->cfg.static_secret), &scid) != 0)
    goto fail;
  conn_path(c, &path);
  rv = ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, &path, hd->version,
                              &conn_callbacks, &settings, &params, NULL, c);
  if (rv != 0) {
    c->qc = NULL;
    rv = rv == NGTCP2_ERR_NOMEM ? CM_ENOMEM : CM_EQUIC;
    goto fail;
  }
  rv = cm_net__tls_session(net, c);
  if (rv != 0)
    goto fail;
  ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);
  rv = cm_net_map_put(&net->cids, scid.data, scid.datalen, c);
  if (rv == 0) {
    /* The client keeps addressing its Initials to the DCID it chose until
     * it learns ours. */
    c->odcid = hd->dcid;
    c->has_odcid = 1;
    rv = cm_net_map_put(&net->cids, hd->dcid.data, hd->dcid.datalen, c);
  }
  if (rv != 0)
    goto fail;
  net->st.conns_accepted++;
  conn_register(c);
  *out = c;
  return 0;
fail:
  cm_net__conn_free(c);
  return rv;
}

/* ---- payload in ---------------------------------------------------------- */

int cm_net__conn_enqueue(cm_net_conn_t *c, const uint8_t *data, size_t len) {
  cm_net_t *net = c->net;
  cm_net_msg_t *m;
  if (c->qlen >= net->cfg.max_queued_datagrams) {
    net->st.drop_queue_full++;
    return CM_EAGAIN;
  }
  m = malloc(sizeof(*m) + len);
  if (m == NULL)
    return CM_ENOMEM;
  m->next = NULL;
  m->len = len;
  if (len > 0)
    memcpy(m->data, data, len);
  if (c->qtail != NULL)
    c->qtail->next = m;
  else
    c->qhead = m;
  c->qtail = m;
  c->qlen++;
  cm_net__conn_touch(c);
  cm_net__mark_dirty(c);
  return 0;
}

int cm_net__conn_request(cm_net_conn_t *c, const uint8_t *data, size_t len,
                         uint64_t request_id) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return CM_ENOMEM;
  s->out = malloc(len > 0 ? len : 1);
  if (s->out == NULL) {
    free(s);
    return CM_ENOMEM;
  }
  if (len > 0)
    memcpy(s->out, data, len);
  s->outlen = len;
  s->local = 1;
  s->id = -1;
  s->request_id = request_id;
  s->conn = c;
  s->deadline = cm_net__now() + net->cfg.request_timeout * NGTCP2_MICROSECONDS;
  s->next = c->streams;
  c->streams = s;
  c->nstreams++;
  net->st.requests_out++;
  cm_net__conn_touch(c);
  cm_net__mark_dirty(c);
  return 0;
}

/* ---- write pass ---------------------------------------------------------- */

static void conn_fail(cm_net_conn_t *c, int liberr) {
  ngtcp2_ccerr_set_liberr(&c->ccerr, liberr, NULL, 0);
  cm_net__conn_close(c, CM_EQUIC, 1);
}

/* Open streams for queued requests and carry out stream shutdowns. */
static void conn_prepare_streams(cm_net_conn_t *c) {
  cm_net_stream_t *s;
  for (s = c->streams; s != NULL; s = s->next) {
    s->blocked = 0;
    if (s->closed)
      continue;
    if (s->abort_code != 0 && s->id >= 0) {
      ngtcp2_conn_shutdown_stream(c->qc, 0, s->id, s->abort_code);
      s->abort_code = 0;
      s->fin_sent = 1; /* nothing more to write */
      continue;
    }
    if (s->local && s->id < 0 && !s->done && c->state == CM_CONN_ESTABLISHED) {
      int64_t id;
      if (ngtcp2_conn_open_bidi_stream(c->qc, &id, s) != 0)
        continue; /* no stream credit: extend_max_local_streams_bidi */
      s->id = id;
    }
    if (s->local && s->id < 0 && s->done)
      s->closed = 1; /* timed out before it was sent */
  }
}

static cm_net_stream_t *conn_next_stream(cm_net_conn_t *c) {
  cm_net_stream_t *s;
  for (s = c->streams; s != NULL; s = s->next)
    if (s->id >= 0 && !s->closed && !s->blocked && !s->fin_sent &&
        (s->local || s->out_ready))
      return s;
  return NULL;
}

static void conn_sweep_streams(cm_net_conn_t *c) {
  cm_net_stream_t **p = &c->streams;
  while (*p != NULL) {
    cm_net_stream_t *s = *p;
    if (s->closed) {
      *p = s->next;
      c->nstreams--;
      if (s->id >= 0)
        ngtcp2_conn_set_stream_user_data(c->qc, s->id, NULL);
      conn_free_stream(s);
    } else {
      p = &s->next;
    }
  }
}

static void conn_update_expiry(cm_net_conn_t *c) {
  cm_net_stream_t *s;
  uint64_t e = ngtcp2_conn_get_expiry(c->qc);
  for (s = c->streams; s != NULL; s = s->next)
    if (s->local && !s->done && s->deadline < e)
      e = s->deadline;
  c->expiry = e;
}

/* Write packets until ngtcp2 has nothing more or the send quantum is used.
 * Returns 0, or a ngtcp2 error that ends the connection. */
static int conn_write_packets(cm_net_conn_t *c, uint64_t ts) {
  cm_net_t *net = c->net;
  size_t maxpkt = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
  size_t quantum = ngtcp2_conn_get_send_quantum(c->qc);
  size_t npkts = 0, maxpkts;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  int dgram_ok = c->state == CM_CONN_ESTABLISHED && c->verified;

  if (maxpkt > sizeof(net->sendbuf))
    maxpkt = sizeof(net->sendbuf);
  maxpkts = quantum / maxpkt;
  if (maxpkts == 0)
    maxpkts = 1;
  ngtcp2_path_storage_zero(&ps);

  while (npkts < maxpkts) {
    ngtcp2_ssize n, ndatalen = -1;
    cm_net_stream_t *s;

    if (dgram_ok && c->qhead != NULL) {
      cm_net_msg_t *m = c->qhead;
      int accepted = 0;
      n = ngtcp2_conn_write_datagram(c->qc, &ps.path, &pi, net->sendbuf, maxpkt,
                                     &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE,
                                     0, m->data, m->len, ts);
      if (accepted) {
        c->qhead = m->next;
        if (c->qhead == NULL)
          c->qtail = NULL;
        c->qlen--;
        net->st.datagrams_out++;
        free(m);
      }
      if (n == NGTCP2_ERR_WRITE_MORE)
        continue;
      if (n == NGTCP2_ERR_INVALID_ARGUMENT) {
        /* Larger than the peer accepts: drop it, keep the connection. */
        c->qhead = m->next;
        if (c->qhead == NULL)
          c->qtail = NULL;
        c->qlen--;
        net->st.drop_oversized++;
        free(m);
        continue;
      }
      if (n < 0)
        return (int)n;
      if (n == 0) {
        /* Congestion-limited: the queue waits for ACKs. */
        dgram_ok = 0;
        continue;
      }
    } else if ((s = conn_next_stream(c)) != NULL) {
      ngtcp2_vec v;
      uint32_t flags =
          NGTCP2_WRITE_STREAM_FLAG_MORE | NGTCP2_WRITE_STREAM_FLAG_FIN;
      v.base = s->out + s->outoff;
      v.len = s->outlen - s->outoff;
      n = ngtcp2_conn_writev_stream(c->qc, &ps.path, &pi, net->sendbuf, maxpkt,
                                    &ndatalen, flags, s->id, &v,
                                    v.len > 0 ? 1 : 0, ts);
      if (ndatalen >= 0) {
        s->outoff += (size_t)ndatalen;
        if (s->outoff == s->outlen)
          s->fin_sent = 1;
      }
      if (n == NGTCP2_ERR_WRITE_MORE)
        continue;
      if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
        s->blocked = 1;
        continue;
      }
      if (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
        s->fin_sent = 1;
        continue;
      }
      if (n < 0)
        return (int)n;
      if (n == 0)
        break;
    } else {
      n = ngtcp2_conn_write_pkt(c->qc, &ps.path, &pi, net->sendbuf, maxpkt, ts);
      if (n < 0)
        return (int)n;
      if (n == 0)
        break;
    }
    cm_net__send_packet(net, (struct sockaddr *)&c->peer_sa, &c->peer,
                        net->sendbuf, (size_t)n);
    npkts++;
  }
  ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
  return 0;
}

void cm_net__conn_write(cm_net_conn_t *c) {
  int round, rv;
  if (c->state >= CM_CONN_CLOSING)
    return;
  if (c->retiring && c->nstreams == 0 && c->qlen == 0) {
    cm_net__conn_close(c, CM_ECLOSED, 1);
    return;
  }
  c->writing = 1;
  for (round = 0; round < CONN_INLINE_EXPIRY_ROUNDS; round++) {
    uint64_t ts = cm_net__now();
    conn_prepare_streams(c);
    rv = conn_write_packets(c, ts);
    if (rv != 0) {
      c->writing = 0;
      conn_fail(c, rv);
      return;
    }
    conn_sweep_streams(c);
    conn_update_expiry(c);
    ts = cm_net__now();
    if (c->expiry > ts)
      break;
    cm_net__conn_handle_expiry(c, ts);
    if (c->state >= CM_CONN_CLOSING)
      break;
  }
  c->writing = 0;
}

/* ---- packets in and timers ----------------------------------------------- */

static int conn_peer_close_status(cm_net_conn_t *c) {
  const ngtcp2_ccerr *e = ngtcp2_conn_get_ccerr(c->qc);
  if (e->type == NGTCP2_CCERR_TYPE_TRANSPORT &&
      (e->error_code & 0xff00u) == NGTCP2_CRYPTO_ERROR &&
      cm_net__tls_alert_is_auth((uint8_t)(e->error_code & 0xffu)))
    return CM_EAUTH;
  if (e->type == NGTCP2_CCERR_TYPE_IDLE_CLOSE)
    return CM_ETIMEDOUT;
  return CM_ECLOSED;
}

void cm_net__conn_read(cm_net_conn_t *c, const uint8_t *data, size_t len) {
  ngtcp2_path path;
  ngtcp2_pkt_info pi;
  int rv;

  if (c->state >= CM_CONN_CLOSING)
    return;
  memset(&pi, 0, sizeof(pi));
  conn_path(c, &path);
  rv = ngtcp2_conn_read_pkt(c->qc, &path, &pi, data, len, cm_net__now());
  if (rv == 0) {
    cm_net__mark_dirty(c);
    return;
  }
  switch (rv) {
  case NGTCP2_ERR_DRAINING: /* the peer closed, or reset us */
    cm_net__conn_close(c, conn_peer_close_status(c), 0);
    break;
  case NGTCP2_ERR_DROP_CONN:
    cm_net__conn_close(c, CM_ECLOSED, 0);
    break;
  case NGTCP2_ERR_CRYPTO: {
    uint8_t alert = ngtcp2_conn_get_tls_alert(c->qc);
    ngtcp2_ccerr_set_tls_alert(&c->ccerr, alert, NULL, 0);
    cm_net__conn_close(c, cm_net__tls_alert_is_auth(alert) ? CM_EAUTH : CM_ETLS,
                       1);
    break;
  }
  default:
    conn_fail(c, rv);
    break;
  }
}

void cm_net__conn_handle_expiry(cm_net_conn_t *c, uint64_t now) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s;
  if (c->state >= CM_CONN_CLOSING)
    return;
  if (ngtcp2_conn_get_expiry(c->qc) <= now) {
    int rv = ngtcp2_conn_handle_expiry(c->qc, now);
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
      cm_net__conn_close(c, CM_ETIMEDOUT, 0);
      return;
    }
    if (rv != 0) {
      conn_fail(c, rv);
      return;
    }
  }
  for (s = c->streams; s != NULL; s = s->next) {
    if (!s->local || s->done || s->deadline > now)
      continue;
    s->done = 1;
    if (s->id >= 0)
      s->abort_code = CM_NET_APP_CANCEL;
    if (net->cb.on_stream_response != NULL)
      net->cb.on_stream_response(net->ud, s->request_id, CM_ETIMEDOUT, NULL, 0);
  }
  cm_net__mark_dirty(c);
}
