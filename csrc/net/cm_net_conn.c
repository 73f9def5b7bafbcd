/*
 * One QUIC connection of cm_net: creation as client or server, the ngtcp2
 * callback table, the datagram queue, reading packets, the write pass,
 * timers and closing. Streams are in cm_net_stream.c, the pool and the
 * peer map in cm_net_pool.c. ngtcp2 callbacks never write packets or free
 * anything: they change state and mark the connection dirty; the
 * endpoint's flush (after each I/O pass) calls cm_net__conn_write and
 * cm_net__conn_finish.
 */
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "cm_net_int.h"

/* Transport parameters. Up to 16 exchanges at once; their messages share
 * the connection window (conn_settings). */
#define CONN_MAX_STREAMS_BIDI 16
/* Accept any DATAGRAM frame that fits a packet; we bound our own. */
#define CONN_MAX_DATAGRAM_FRAME 65535
/* Re-run the write pass inline when a deadline has already passed after
 * writing (pacing), at most this often, instead of a round through the
 * loop. */
#define CONN_INLINE_EXPIRY_ROUNDS 4
/* How much longer the end that accepted a connection waits before closing
 * it for idleness (conn_idle_at): far more than a close takes to arrive,
 * nothing beside a floor of minutes. */
#define CONN_IDLE_ACCEPTOR_GRACE CM_SEC(1)

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

/* ---- closing ------------------------------------------------------------- */

void cm_net__conn_close(cm_net_conn_t *c, int status, int send_close) {
  cm_net_t *net = c->net;
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
  if (c->in_pool)
    net->nconns--;
  c->in_pool = 0;
  cm_net__half_open_leave(c);

  cm_net__pool_handover(c, status, was_handshake);
  while ((m = c->qhead) != NULL) {
    c->qhead = m->next;
    net->st.drop_closed++;
    free(m);
  }
  c->qtail = NULL;
  c->qlen = 0;
  /* Callbacks may call back into cm_net: this connection is already out of
   * every table, so nothing they do reaches it. */
  cm_net__streams_fail(c, rstatus);
  cm_net__mark_dirty(c);
}

void cm_net__conn_free(cm_net_conn_t *c) {
  cm_net_t *net = c->net;
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
  cm_net__half_open_leave(c);
  cm_net__pool_remove(c);
  /* A connection refused after its first packet is freed at once, and that
   * packet may have marked it dirty. */
  if (c->dirty) {
    cm_net_conn_t **p = &net->dirty_head;
    while (*p != c)
      p = &(*p)->dirty_next;
    *p = c->dirty_next;
  }
  cm_net__streams_free(c);
  while ((m = c->qhead) != NULL) {
    c->qhead = m->next;
    free(m);
  }
  if (c->qc != NULL)
    ngtcp2_conn_del(c->qc);
  if (c->tls != NULL)
    gnutls_deinit(c->tls);
  cm_net__ring_release(c->ring);
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
                          net->sendbuf, (size_t)n, 1);
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

static void conn_established(cm_net_conn_t *c) {
  if (c->state != CM_CONN_HANDSHAKE)
    return;
  c->state = CM_CONN_ESTABLISHED;
  c->established_at = cm_net__now();
  c->net->st.handshakes_ok++;
  cm_net__key_accepted(c);
  cm_net__mark_dirty(c);
  cm_net__pool_established(c);
  if (!c->is_client)
    cm_net__accept_verified(c);
}

static int conn_handshake_completed_cb(ngtcp2_conn *qc, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  c->rx_proof = 1;
  /* The peer proved the key or a CA-issued certificate. A client still
   * waits for confirmation before sending: the server may yet refuse the
   * client's certificate. */
  c->verified = 1;
  if (!c->is_client)
    conn_established(c);
  return 0;
}

static int conn_handshake_confirmed_cb(ngtcp2_conn *qc, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  c->rx_proof = 1;
  conn_established(c);
  return 0;
}

/* The peer acknowledged a datagram or stream data of ours: a packet of its
 * that QUIC authenticated (cm_net_conn.rx_proof). */
static int conn_ack_datagram_cb(ngtcp2_conn *qc, uint64_t id, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  (void)id;
  c->rx_proof = 1;
  return 0;
}

static int conn_acked_stream_cb(ngtcp2_conn *qc, int64_t id, uint64_t offset,
                                uint64_t len, void *ud, void *sud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  (void)id;
  (void)offset;
  (void)len;
  (void)sud;
  c->rx_proof = 1;
  return 0;
}

static int conn_recv_datagram_cb(ngtcp2_conn *qc, uint32_t flags,
                                 const uint8_t *data, size_t len, void *ud) {
  cm_net_conn_t *c = ud;
  (void)qc;
  (void)flags;
  c->rx_proof = 1;
  if (!c->verified || c->state >= CM_CONN_CLOSING) {
    c->net->st.drop_auth++;
    return 0;
  }
  c->net->st.datagrams_in++;
  cm_net__conn_touch(c);
  cm_net__deliver_datagram(c->net, &c->peer, data, len);
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
    .recv_stream_data = cm_net__stream_recv_cb,
    .stream_close = cm_net__stream_close_cb,
    .stream_reset = cm_net__stream_reset_cb,
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
    .ack_datagram = conn_ack_datagram_cb,
    .acked_stream_data_offset = conn_acked_stream_cb,
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
  c->last_rx = cm_net__now();
  ngtcp2_ccerr_default(&c->ccerr);
  *out = c;
  return 0;
}

/* The idle timeout in force now: the configured one, raised to the floor
 * (cm_net_set_idle_floor). Both are at most CM_NET_IDLE_ADVERTISED. */
static cm_time_t conn_idle_timeout(const cm_net_t *net) {
  return net->idle_floor > net->cfg.idle_timeout ? net->idle_floor
                                                 : net->cfg.idle_timeout;
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
  /* ngtcp2 puts an ACK frame in an outgoing packet only once the packet
   * to acknowledge is older than min(max_ack_delay, srtt / 8), or is due
   * at once. A probe's answer is written a few microseconds after its ping
   * arrives, sooner than that, so it went out without the ACK and an
   * ACK-only packet followed it (three probes in four on loopback). Every
   * ack-eliciting packet is acknowledged at once instead, so the answer
   * carries the ACK. The write pass runs once per loop turn, after every
   * packet read in it, so a burst's acknowledgements stay batched; and
   * max_ack_delay keeps its default, which peers add to their probe
   * timeout (RFC 9002, 6.2.1): a 0 there would make them send loss probes
   * on any millisecond's scheduling delay. */
  s->ack_thresh = 1;

  ngtcp2_transport_params_default(p);
  /* A stream carries one message each way, so its window holds a whole
   * message and one byte more (a message over the bound is seen and
   * refused, not stalled) and is never extended. Connection credit comes
   * back only when a message is delivered or its stream freed
   * (cm_net_stream.c), so the connection window bounds what a peer can
   * make us hold: one message and a little, not 16 of them. Senders
   * finish one message before starting the next, so a message always
   * fits and nothing waits on another. */
  p->initial_max_stream_data_bidi_local = net->cfg.max_stream_message + 1;
  p->initial_max_stream_data_bidi_remote = net->cfg.max_stream_message + 1;
  p->initial_max_data =
      net->cfg.max_stream_message + 1 + CM_NET_CONN_WINDOW_SLACK;
  p->initial_max_streams_bidi = CONN_MAX_STREAMS_BIDI;
  p->initial_max_streams_uni = 0;
  /* The idle timeout is kept here (conn_idle_at), where it follows the
   * floor as the membership grows; QUIC's own, which the handshake fixes
   * for the connection's life, is made long enough never to come first
   * between two ends that both do so. A peer advertising less (QUIC keeps
   * the smaller) closes by QUIC's timer. */
  p->max_idle_timeout = CM_NET_IDLE_ADVERTISED * NGTCP2_MICROSECONDS;
  p->max_datagram_frame_size = CONN_MAX_DATAGRAM_FRAME;
  /* The source address is the peer's identity: no migration. */
  p->disable_active_migration = 1;
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
  c->ring = cm_net__ring_ref(net->ring);
  c->key_idx = key_idx;
  c->peer_salen = cm_net__addr_to_sa(peer, &c->peer_sa);
  rv = CM_EADDR;
  if (c->peer_salen == 0)
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
  cm_net__pool_add(c, 1);
  *out = c;
  return 0;
fail:
  cm_net__conn_free(c);
  return rv;
}

int cm_net__conn_new_server(cm_net_t *net, const struct sockaddr *sa,
                            socklen_t salen, const cm_addr_t *peer,
                            const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                            cm_net_conn_t **out) {
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
  if (odcid != NULL) {
    /* The token proved the client's address, and the transport parameters
     * tell it which Initial our Retry answered (RFC 9000 7.3). */
    settings.token = hd->token;
    settings.tokenlen = hd->tokenlen;
    settings.token_type = NGTCP2_TOKEN_TYPE_RETRY;
    params.original_dcid = *odcid;
    params.retry_scid = hd->dcid;
    params.retry_scid_present = 1;
  } else {
    params.original_dcid = hd->dcid;
  }
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
    /* The client keeps addressing its Initials to the DCID it chose (or
     * our Retry gave it) until it learns ours. */
    c->odcid = hd->dcid;
    c->has_odcid = 1;
    rv = cm_net_map_put(&net->cids, hd->dcid.data, hd->dcid.datalen, c);
  }
  if (rv != 0)
    goto fail;
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

/* ---- write pass ---------------------------------------------------------- */

static void conn_fail(cm_net_conn_t *c, int liberr) {
  ngtcp2_ccerr_set_liberr(&c->ccerr, liberr, NULL, 0);
  cm_net__conn_close(c, CM_EQUIC, 1);
}

/* When the connection is given up for silence (RFC 9000, 10.1, with the
 * timeout in force now, so a connection made while the membership was
 * small gets the floor it has grown to): the timeout after the last packet
 * received. Once we have sent the peer something since, only the
 * configured timeout after that: a peer that stops answering is given up
 * as it would be without the floor. */
static uint64_t conn_idle_at(const cm_net_conn_t *c) {
  const cm_net_t *net = c->net;
  /* Never under three probe timeouts, as QUIC's own timer (RFC 9000,
   * 10.1): a slow handshake or a lossy path is not silence. */
  uint64_t pto3 = 3 * ngtcp2_conn_get_pto(c->qc);
  uint64_t cfg = net->cfg.idle_timeout * NGTCP2_MICROSECONDS;
  uint64_t now = conn_idle_timeout(net) * NGTCP2_MICROSECONDS;
  if (c->wait_since > 0)
    return c->wait_since + (cfg > pto3 ? cfg : pto3);
  /* The end that accepted the connection waits a little longer: where both
   * ends' timeouts agree, the one that opened it closes, and its close
   * arrives before the other's timer runs out instead of crossing a close
   * of the other's (a packet to a connection already gone is answered with
   * a stateless reset, and a member's with a new connection). */
  if (!c->is_client)
    now += CONN_IDLE_ACCEPTOR_GRACE * NGTCP2_MICROSECONDS;
  return c->last_rx + (now > pto3 ? now : pto3);
}

/* The connection's next deadline: QUIC's timers, request deadlines and the
 * idle deadline, whichever comes first. */
static void conn_update_expiry(cm_net_conn_t *c) {
  uint64_t e = cm_net__streams_deadline(c, ngtcp2_conn_get_expiry(c->qc));
  uint64_t u = conn_idle_at(c);
  c->expiry = u < e ? u : e;
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
  int payload = 0; /* the packet being built carries a datagram or stream
                      data (it may take several calls: WRITE_MORE) */

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
        payload = 1;
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
    } else if ((s = cm_net__stream_next(c)) != NULL) {
      ngtcp2_vec v;
      uint32_t flags =
          NGTCP2_WRITE_STREAM_FLAG_MORE | NGTCP2_WRITE_STREAM_FLAG_FIN;
      v.base = s->out + s->outoff;
      v.len = s->outlen - s->outoff;
      n = ngtcp2_conn_writev_stream(c->qc, &ps.path, &pi, net->sendbuf, maxpkt,
                                    &ndatalen, flags, s->id, &v,
                                    v.len > 0 ? 1 : 0, ts);
      if (ndatalen >= 0) {
        payload |= ndatalen > 0 || v.len == 0;
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
                        net->sendbuf, (size_t)n, !payload);
    if (payload && c->wait_since == 0)
      c->wait_since = ts;
    payload = 0;
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
    cm_net__streams_prepare(c);
    rv = conn_write_packets(c, ts);
    if (rv != 0) {
      c->writing = 0;
      conn_fail(c, rv);
      return;
    }
    cm_net__streams_sweep(c);
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
  if (e->type == NGTCP2_CCERR_TYPE_IDLE_CLOSE ||
      (e->type == NGTCP2_CCERR_TYPE_APPLICATION &&
       e->error_code == CM_NET_APP_IDLE))
    return CM_ETIMEDOUT;
  return CM_ECLOSED;
}

int cm_net__conn_read_pkt(cm_net_conn_t *c, const uint8_t *data, size_t len) {
  ngtcp2_path path;
  ngtcp2_pkt_info pi;
  memset(&pi, 0, sizeof(pi));
  conn_path(c, &path);
  return ngtcp2_conn_read_pkt(c->qc, &path, &pi, data, len, cm_net__now());
}

void cm_net__conn_refuse_first(cm_net_conn_t *c, int rv) {
  cm_net_t *net = c->net;
  uint8_t alert;
  if (rv != NGTCP2_ERR_CRYPTO) {
    net->st.drop_garbage++;
    cm_net__conn_free(c);
    return;
  }
  /* TLS refused the ClientHello (a key we do not hold, for one): say so
   * in an alert, so a client with a keyring tries its next key at once. */
  alert = ngtcp2_conn_get_tls_alert(c->qc);
  ngtcp2_ccerr_set_tls_alert(&c->ccerr, alert, NULL, 0);
  net->st.handshakes_failed++;
  net->st.handshakes_refused++;
  if (cm_net__tls_alert_is_auth(alert))
    net->st.auth_refused++;
  c->send_close = 1;
  cm_net__conn_finish(c);
}

void cm_net__conn_read(cm_net_conn_t *c, const uint8_t *data, size_t len) {
  int rv;
  if (c->state >= CM_CONN_CLOSING)
    return;
  c->rx_proof = 0;
  rv = cm_net__conn_read_pkt(c, data, len);
  if (c->state >= CM_CONN_CLOSING)
    return;
  if (rv == 0) {
    /* Answered, if the packet was the peer's: QUIC returns 0 for packets
     * it drops too (undecryptable, duplicate, or a stateless reset with a
     * token it does not know, which anyone can send from the peer's
     * address). */
    if (c->rx_proof) {
      c->last_rx = cm_net__now();
      c->wait_since = 0;
    }
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
  if (c->state >= CM_CONN_CLOSING)
    return;
  if (conn_idle_at(c) <= now) {
    /* Quiet for the timeout in force: closed with a CONNECTION_CLOSE, since
     * the peer's timeout, from its own view of the membership, may be
     * longer, and a datagram it sent on later would be lost. Silent for
     * the configured timeout after we sent it something: closed without
     * one, as QUIC's idle timer closes, so what waits on it (queued
     * datagrams, requests, a congestion window spent before a partition)
     * goes to a new connection. */
    if (c->wait_since == 0)
      ngtcp2_ccerr_set_application_error(&c->ccerr, CM_NET_APP_IDLE, NULL, 0);
    cm_net__conn_close(c, CM_ETIMEDOUT, c->wait_since == 0);
    return;
  }
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
  cm_net__streams_expire(c, now);
  cm_net__mark_dirty(c);
}
