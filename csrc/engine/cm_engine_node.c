/*
 * Driving one node on the loop thread: every input (a datagram, a stream
 * request or response, a timer) goes to the protocol core, then the flush
 * hands the core's output to the transport and publishes events, stats and
 * the registry snapshot. The transport callbacks and the node's timers live
 * here.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_engine_int.h"

static void on_timer(uv_timer_t *t);

/* A tenth of the thread's time at most: the wait after a build is nine
 * times what the build took. */
#define ENGINE_SNAPSHOT_DUTY 9
/* Coordinates and round trips move a little with every probe; readers see
 * them at most this stale, without an O(members) build per probe. */
#define CM_ENGINE_COORD_REFRESH CM_SEC(2)

/* What moves with every probe, and is republished at that pace: our
 * coordinate, members', the round trips measured. */
static uint64_t flush_soft(const cm_node_stats_t *st) {
  return st->coord_updates + st->coord_heard + st->probe_rtt_count;
}

/* Is there anything a snapshot would publish? Events, or a refutation,
 * which raises our own incarnation without any event (the snapshot's
 * record of ourselves would lag the stats). st: the core's stats now. */
static int flush_has_news(const cm_enode_t *n, const cm_node_stats_t *st) {
  return cm_node_events_pending(n->node) > 0 ||
         st->incarnation != n->stats.node.incarnation ||
         (flush_soft(st) != n->snap_soft &&
          cm_engine__now() >= n->snap_built + CM_ENGINE_COORD_REFRESH);
}

/* Keep connections' idle timeout at two probe rounds of the current
 * membership (cm_net_set_idle_floor): in a shuffled round a peer is probed
 * at most two rounds apart, so a connection outlives the gap and the pair
 * pays no handshake for it. Below the configured idle_timeout it changes
 * nothing; past a day it stops there. */
static void flush_idle_floor(cm_enode_t *n, const cm_node_stats_t *st) {
  uint64_t members = (uint64_t)st->alive + st->suspect;
  cm_time_t interval = n->cfg.proto.probe_interval, floor;
  if (interval > ENGINE_IDLE_FLOOR_MAX / 2u ||
      (interval > 0 && members > ENGINE_IDLE_FLOOR_MAX / (2u * interval)))
    floor = ENGINE_IDLE_FLOOR_MAX;
  else
    floor = 2u * members * interval;
  cm_net_set_idle_floor(n->net, floor);
}

/* Publish the core's events and a snapshot that shows them. The snapshot
 * is built before the lock is taken (the core belongs to this thread, and
 * nothing changes it between the build and the poll below), so a reader
 * waiting for the lock (next_events, holding the GIL) waits for a pointer
 * swap and the queue, never for an O(members) build; the consumer can still
 * act on an event only once the snapshot agrees, since both are published
 * in one critical section. The eventfd is written once, after it. */
static void flush_publish(cm_enode_t *n, int changed) {
  cm_event_t ev;
  cm_node_stats_t st;
  cm_snapshot_t *s = NULL;
  int pushed = 0;
  cm_node_stats(n->node, &st);
  flush_idle_floor(n, &st);
  if (changed || flush_has_news(n, &st)) {
    cm_time_t t0 = cm_engine__now();
    s = cm_engine__snapshot_build(n->node, n->net,
                                  n->snap != NULL ? n->snap->version + 1 : 1);
    n->snap_next = cm_engine__now();
    n->snap_built = n->snap_next;
    n->snap_soft = flush_soft(&st);
    n->snap_next += (n->snap_next - t0) * ENGINE_SNAPSHOT_DUTY;
  }
  pthread_mutex_lock(&n->lock);
  while (cm_node_poll_event(n->node, &ev)) {
    cm_eevent_t e;
    memset(&e, 0, sizeof(e));
    e.kind = CM_EEV_MEMBER;
    e.ev = ev;
    pushed |= cm_engine__q_put_locked(n, &e);
  }
  n->stats.node = st;
  n->snap_held = 0;
  if (s != NULL) {
    cm_snapshot_release(n->snap);
    n->snap = s;
  }
  pthread_mutex_unlock(&n->lock);
  if (pushed)
    cm_engine__q_wake(n);
}

void cm_engine__flush(cm_enode_t *n, int force_snapshot) {
  cm_addr_t to;
  const uint8_t *data;
  uint8_t *sdata;
  size_t len;
  uint64_t req_id;
  int is_join, rc;
  cm_time_t now, d;
  uint64_t send_errors = 0;

  if (n->node == NULL)
    return;
  while (cm_node_poll_datagram(n->node, &to, &data, &len))
    if (cm_net_send_datagram(n->net, &to, data, len) != 0)
      send_errors++;
  while (cm_node_poll_stream(n->node, &to, &req_id, &sdata, &len, &is_join)) {
    rc = cm_net_stream_request(n->net, &to, sdata, len, req_id);
    free(sdata);
    if (is_join && rc == 0)
      cm_engine__join_track(n, req_id);
    if (rc != 0) {
      send_errors++;
      cm_node_pushpull_failed(n->node, req_id, cm_engine__now());
    }
  }
  if (force_snapshot || n->snap == NULL || cm_engine__now() >= n->snap_next)
    flush_publish(n, force_snapshot);
  else {
    cm_node_stats_t st;
    cm_node_stats(n->node, &st);
    if (flush_has_news(n, &st))
      n->snap_held = 1; /* the timer below comes back at snap_next */
  }
  pthread_mutex_lock(&n->lock);
  cm_net_stats(n->net, &n->stats.net);
  n->stats.send_errors += send_errors;
  /* User events need no snapshot: out at once. */
  rc = cm_engine__q_app_locked(n);
  pthread_mutex_unlock(&n->lock);
  if (rc)
    cm_engine__q_wake(n);

  cm_engine__join_check(n);

  now = cm_engine__now();
  if (n->leaving && (cm_node_leave_done(n->node) || now >= n->leave_deadline)) {
    /* Events still held for the next snapshot go out with it now: the
     * node stops before that snapshot would have been due. */
    if (n->snap_held)
      flush_publish(n, 0);
    /* Stop from the timer, not from inside a transport callback. */
    n->want_stop = 1;
    uv_timer_start(&n->timer, on_timer, 0, 0);
    return;
  }
  d = cm_node_next_deadline(n->node);
  if (n->leaving && d > n->leave_deadline)
    d = n->leave_deadline;
  if (n->snap_held && d > n->snap_next)
    d = n->snap_next;
  if (n->join.active && !n->join.await_idcheck && d > n->join.deadline)
    d = n->join.deadline;
  if (d != CM_TIME_NEVER) {
    uint64_t ms = d > now ? (d - now + 999) / 1000 : 0;
    uv_timer_start(&n->timer, on_timer, ms, 0);
  }
}

static void on_idle(uv_idle_t *h) { (void)h; }

/* The protocol's timers run after the loop has read the socket: an ack that
 * arrived while this thread was descheduled is seen before the probe that
 * waited for it times out. A late thread must not accuse its peers. */
static void on_check(uv_check_t *h) {
  cm_enode_t *n = h->data;
  uv_idle_stop(&n->idle);
  uv_check_stop(&n->check);
  if (n->want_stop) {
    cm_engine__begin_stop(n);
    return;
  }
  cm_node_tick(n->node, cm_engine__now());
  cm_engine__flush(n, 0);
}

static void on_timer(uv_timer_t *t) {
  cm_enode_t *n = t->data;
  uv_idle_start(&n->idle, on_idle);
  uv_check_start(&n->check, on_check);
}

static void on_datagram(void *ud, const cm_addr_t *from, const uint8_t *data,
                        size_t len) {
  cm_enode_t *n = ud;
  if (n->node == NULL || n->closing)
    return;
  cm_node_recv(n->node, from, data, len, cm_engine__now());
  cm_engine__flush(n, 0);
}

static void on_stream_request(void *ud, const cm_addr_t *from, uint64_t token,
                              const uint8_t *data, size_t len) {
  cm_enode_t *n = ud;
  uint8_t *reply = NULL;
  size_t rlen = 0;
  if (n->node == NULL || n->closing)
    return;
  if (cm_node_handle_pushpull(n->node, from, data, len, cm_engine__now(),
                              &reply, &rlen) == 0) {
    cm_net_stream_respond(n->net, token, reply, rlen);
    free(reply);
  }
  cm_engine__flush(n, 0);
}

static uint64_t enode_refutations(const cm_enode_t *n) {
  cm_node_stats_t st;
  cm_node_stats(n->node, &st);
  return st.refutations;
}

static void on_stream_response(void *ud, uint64_t req_id, int status,
                               const uint8_t *data, size_t len) {
  cm_enode_t *n = ud;
  int rc = status, mine;
  uint64_t refuted = 0;
  if (n->node == NULL || n->closing)
    return;
  mine = cm_engine__join_response(n, req_id, status);
  if (status == 0) {
    if (mine)
      refuted = enode_refutations(n);
    rc = cm_node_pushpull_reply(n->node, req_id, data, len, cm_engine__now());
    if (mine)
      refuted = enode_refutations(n) - refuted;
  } else {
    cm_node_pushpull_failed(n->node, req_id, cm_engine__now());
  }
  if (mine && rc == 0) {
    cm_engine__join_answered(n, refuted);
    return;
  }
  cm_engine__flush(n, 0);
}

/* The transport asks for every packet it cannot route, before it spends
 * its stale-peer report budget on the sender: O(1), through the registry's
 * address index. */
static int is_known_peer(void *ud, const cm_addr_t *from) {
  cm_enode_t *n = ud;
  return n->node != NULL && !n->closing && cm_node_has_member_at(n->node, from);
}

/* A member holds a connection to the process that had our address before
 * us: connect to it, which makes it drop that connection. Only for known
 * members, so a forged source cannot make us open connections elsewhere. */
static void on_stale_peer(void *ud, const cm_addr_t *from) {
  cm_enode_t *n = ud;
  if (n->net == NULL || !is_known_peer(ud, from))
    return;
  (void)cm_net_connect(n->net, from);
}

int cm_engine__peer_hint(void *ud, const cm_addr_t *addr) {
  cm_enode_t *n = ud;
  return n->net != NULL && cm_net_is_connected(n->net, addr);
}

const cm_net_callbacks_t cm_engine__net_callbacks = {
    .on_datagram = on_datagram,
    .on_stream_request = on_stream_request,
    .on_stream_response = on_stream_response,
    .on_stale_peer = on_stale_peer,
    .is_known_peer = is_known_peer};
