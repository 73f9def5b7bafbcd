/*
 * The request/response layer of cm_net: one bidirectional QUIC stream per
 * push-pull exchange (request, FIN, response, FIN). Requests are queued
 * until their connection is established and has stream credit; each
 * message is gathered whole, bounded by max_stream_message, and handed to
 * the caller once its FIN arrives.
 *
 * Memory: what a peer can make us hold is bounded by QUIC flow control.
 * Connection credit for the bytes ngtcp2 hands us is given back by us,
 * exactly once, when the message is delivered or dropped (abort, reset,
 * timeout, close); ngtcp2 gives back itself what it received but never
 * handed us (out-of-order data of a stream shut down for reading or reset,
 * and data arriving after that). Stream credit is never extended: a
 * stream's window holds its one message. We write streams in creation
 * order, finishing one before starting the next, so a peer doing the same
 * never has two partial messages sharing its window with us.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_net_int.h"

/* Give back the connection credit s holds and drop what it gathered. */
static void stream_release_in(cm_net_conn_t *c, cm_net_stream_t *s) {
  if (s->in_credit > 0) {
    ngtcp2_conn_extend_max_offset(c->qc, s->in_credit);
    c->in_held -= s->in_credit;
    s->in_credit = 0;
    cm_net__mark_dirty(c);
  }
  free(s->in);
  s->in = NULL;
  s->inlen = s->incap = 0;
}

static void stream_free(cm_net_stream_t *s) {
  free(s->out);
  free(s->in);
  free(s);
}

void cm_net__stream_append(cm_net_conn_t *c, cm_net_stream_t *s) {
  cm_net_stream_t **p = &c->streams;
  while (*p != NULL)
    p = &(*p)->next;
  s->next = NULL;
  s->conn = c;
  *p = s;
  c->nstreams++;
}

static int stream_append(cm_net_conn_t *c, cm_net_stream_t *s,
                         const uint8_t *data, size_t len) {
  size_t max = c->net->cfg.max_stream_message;
  /* Nothing to keep: s->in may still be NULL, which takes no offset. */
  if (len == 0)
    return 0;
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
  s->in_credit += len;
  c->in_held += len;
  if (c->in_held > c->net->st.stream_in_peak)
    c->net->st.stream_in_peak = c->in_held;
  return 0;
}

static void stream_abort(cm_net_conn_t *c, cm_net_stream_t *s, uint64_t code) {
  s->abort_code = code;
  stream_release_in(c, s);
  cm_net__mark_dirty(c);
}

static void stream_complete(cm_net_conn_t *c, cm_net_stream_t *s) {
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
      stream_abort(c, s, CM_NET_APP_CANCEL);
    } else {
      net->st.requests_in++;
      if (net->cb.on_stream_request != NULL)
        net->cb.on_stream_request(net->ud, &c->peer, s->request_id, s->in,
                                  s->inlen);
    }
  }
  stream_release_in(c, s);
}

int cm_net__stream_recv_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                           uint64_t offset, const uint8_t *data, size_t len,
                           void *ud, void *sud) {
  cm_net_conn_t *c = ud;
  cm_net_t *net = c->net;
  cm_net_stream_t *s = sud;
  int rv;
  (void)offset;

  c->rx_proof = 1;
  if (!c->verified || c->state >= CM_CONN_CLOSING) {
    ngtcp2_conn_extend_max_offset(qc, len);
    net->st.drop_auth++;
    return 0;
  }
  if (s == NULL) {
    if (!ngtcp2_is_bidi_stream(id) || ngtcp2_conn_is_local_stream(qc, id)) {
      ngtcp2_conn_extend_max_offset(qc, len);
      return 0;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    s->id = id;
    cm_net__stream_append(c, s);
    if (ngtcp2_conn_set_stream_user_data(qc, id, s) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  cm_net__conn_touch(c);
  /* Bytes we do not keep give their credit back at once. */
  if ((s->local && s->done) || s->abort_code || s->in_fin_seen) {
    ngtcp2_conn_extend_max_offset(qc, len);
    return 0;
  }
  rv = stream_append(c, s, data, len);
  if (rv == CM_ETOOBIG) {
    ngtcp2_conn_extend_max_offset(qc, len);
    net->st.drop_oversized++;
    if (s->local) {
      s->done = 1;
      if (net->cb.on_stream_response != NULL)
        net->cb.on_stream_response(net->ud, s->request_id, CM_ETOOBIG, NULL, 0);
    }
    stream_abort(c, s, CM_NET_APP_TOOBIG);
    return 0;
  }
  if (rv != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    s->in_fin_seen = 1;
    stream_complete(c, s);
  }
  return 0;
}

int cm_net__stream_close_cb(ngtcp2_conn *qc, uint32_t flags, int64_t id,
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
  stream_release_in(c, s);
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

/* The peer reset its side of the stream: what it sent of the message is
 * dropped (ngtcp2 gives back the credit for what it never handed us), and
 * a request that will never be complete is abandoned, so the stream
 * closes and gives back its stream credit too. */
int cm_net__stream_reset_cb(ngtcp2_conn *qc, int64_t id, uint64_t final_size,
                            uint64_t app_error_code, void *ud, void *sud) {
  cm_net_conn_t *c = ud;
  cm_net_stream_t *s = sud;
  (void)qc;
  (void)id;
  (void)final_size;
  (void)app_error_code;
  if (s == NULL)
    return 0;
  stream_release_in(c, s);
  if (!s->local && !s->in_fin_seen && !s->done) {
    s->done = 1;
    stream_abort(c, s, CM_NET_APP_CANCEL);
  }
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
  s->deadline = cm_net__now() + net->cfg.request_timeout * NGTCP2_MICROSECONDS;
  cm_net__stream_append(c, s);
  net->st.requests_out++;
  cm_net__conn_touch(c);
  cm_net__mark_dirty(c);
  return 0;
}

int cm_net_stream_respond(cm_net_t *net, uint64_t token, const uint8_t *data,
                          size_t len) {
  cm_net_stream_t *s;
  if (net == NULL || (data == NULL && len > 0))
    return CM_EINVAL;
  if (net->closing)
    return CM_ECLOSED;
  s = cm_net_map_get(&net->tokens, &token, sizeof(token));
  if (s == NULL || s->done || s->conn->state >= CM_CONN_CLOSING)
    return CM_ENOENT;
  if (len > net->cfg.max_stream_message) {
    net->st.drop_oversized++;
    return CM_ETOOBIG;
  }
  s->out = malloc(len > 0 ? len : 1);
  if (s->out == NULL)
    return CM_ENOMEM;
  if (len > 0)
    memcpy(s->out, data, len);
  s->outlen = len;
  s->out_ready = 1;
  s->done = 1;
  cm_net_map_del(&net->tokens, &token, sizeof(token), s);
  net->st.responses_out++;
  cm_net__conn_touch(s->conn);
  cm_net__mark_dirty(s->conn);
  return 0;
}

/* ---- the write pass's part ----------------------------------------------- */

void cm_net__streams_prepare(cm_net_conn_t *c) {
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

static int stream_writable(const cm_net_stream_t *s) {
  return s->id >= 0 && !s->closed && !s->fin_sent && (s->local || s->out_ready);
}

/* The message begun and not finished, if any (there is at most one);
 * else the first in creation order with something to write. A begun one
 * that is blocked blocks the rest: starting another would leave two
 * partial messages sharing the peer's connection window. */
cm_net_stream_t *cm_net__stream_next(cm_net_conn_t *c) {
  cm_net_stream_t *s;
  for (s = c->streams; s != NULL; s = s->next)
    if (stream_writable(s) && s->outoff > 0)
      return s->blocked ? NULL : s;
  for (s = c->streams; s != NULL; s = s->next)
    if (stream_writable(s) && !s->blocked)
      return s;
  return NULL;
}

void cm_net__streams_sweep(cm_net_conn_t *c) {
  cm_net_stream_t **p = &c->streams;
  while (*p != NULL) {
    cm_net_stream_t *s = *p;
    if (s->closed) {
      *p = s->next;
      c->nstreams--;
      if (s->id >= 0)
        ngtcp2_conn_set_stream_user_data(c->qc, s->id, NULL);
      stream_free(s);
    } else {
      p = &s->next;
    }
  }
}

uint64_t cm_net__streams_deadline(const cm_net_conn_t *c, uint64_t e) {
  const cm_net_stream_t *s;
  for (s = c->streams; s != NULL; s = s->next)
    if (s->local && !s->done && s->deadline < e)
      e = s->deadline;
  return e;
}

void cm_net__streams_expire(cm_net_conn_t *c, uint64_t now) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s;
  for (s = c->streams; s != NULL; s = s->next) {
    if (!s->local || s->done || s->deadline > now)
      continue;
    s->done = 1;
    if (s->id >= 0)
      stream_abort(c, s, CM_NET_APP_CANCEL);
    if (net->cb.on_stream_response != NULL)
      net->cb.on_stream_response(net->ud, s->request_id, CM_ETIMEDOUT, NULL, 0);
  }
}

/* ---- closing ------------------------------------------------------------- */

void cm_net__streams_fail(cm_net_conn_t *c, int status) {
  cm_net_t *net = c->net;
  cm_net_stream_t *s;
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
      net->cb.on_stream_response(net->ud, s->request_id, status, NULL, 0);
  }
}

void cm_net__streams_free(cm_net_conn_t *c) {
  cm_net_stream_t *s;
  while ((s = c->streams) != NULL) {
    c->streams = s->next;
    if (!s->local && !s->done)
      cm_net_map_del(&c->net->tokens, &s->request_id, sizeof(s->request_id), s);
    stream_free(s);
  }
}
