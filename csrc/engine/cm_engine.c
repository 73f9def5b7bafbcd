#include "cm_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#define ENGINE_EVENT_QUEUE_DEFAULT 4096
#define ENGINE_LEAVE_GRACE_DEFAULT CM_SEC(5)
/* Join retries back off from 200 ms to 2 s: quick when a seed is just
 * starting, gentle when it is down. */
#define ENGINE_JOIN_BACKOFF_MIN CM_MSEC(200)
#define ENGINE_JOIN_BACKOFF_MAX CM_SEC(2)
#define ENGINE_MAX_SEEDS 64

enum cmd_kind {
  CMD_START = 1,
  CMD_STOP,
  CMD_JOIN,
  CMD_LEAVE,
  CMD_SET_TAGS,
  CMD_SET_FAULT,
  CMD_SHUTDOWN,
};

struct cmd {
  enum cmd_kind kind;
  cm_enode_t *node;
  int sync;
  int done;
  int result;
  uint64_t token;
  /* CMD_JOIN */
  cm_addr_t seeds[ENGINE_MAX_SEEDS];
  size_t nseeds;
  cm_time_t timeout;
  /* CMD_SET_TAGS */
  uint8_t *blob;
  size_t blob_len;
  /* CMD_SET_FAULT */
  cm_net_fault_t fault;
  int fault_off;
  struct cmd *next;
};

struct join_state {
  int active;
  uint64_t token;
  cm_addr_t seeds[ENGINE_MAX_SEEDS];
  size_t nseeds;
  cm_time_t deadline;
  cm_time_t backoff;
  uint64_t reqs[ENGINE_MAX_SEEDS];
  size_t nreqs;
  int retry_pending;
};

struct cm_enode {
  cm_engine_t *e;
  cm_enode_config_t cfg;
  char id[CM_ID_MAX + 1];
  uint8_t *tags;
  cm_net_key_t *keys;
  char *ca_file, *cert_file, *key_file;
  cm_addr_t addr;

  /* Loop thread only. */
  cm_node_t *node;
  cm_net_t *net;
  uv_timer_t timer;
  uv_timer_t join_timer;
  uv_idle_t idle;   /* keeps the poll phase from blocking while a tick waits */
  uv_check_t check; /* runs the tick after this iteration's I/O */
  int handles_open;
  int closing;
  int finalized;
  int want_stop;
  struct cmd *stop_cmd; /* completed when closed */
  int start_result;
  struct join_state join;
  int leaving;
  uint64_t leave_token;
  cm_time_t leave_deadline;

  /* Shared, under lock. */
  pthread_mutex_t lock;
  cm_snapshot_t *snap;
  cm_enode_stats_t stats;
  cm_eevent_t *q;
  size_t q_head, q_len, q_cap;
  uint64_t q_dropped;
  int running;
  int efd;
  struct cm_enode *next_all; /* engine's list of handles, under cmd_lock */
};

struct cm_engine {
  uv_loop_t loop;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t cmd_lock;
  pthread_cond_t cmd_cond;
  struct cmd *cmds, *cmds_tail;
  int shutting_down;      /* under cmd_lock: refuse new commands */
  int loop_shutting_down; /* loop thread's own view */
  struct cmd *shutdown_cmd;
  int live_nodes; /* loop thread: nodes not yet finalized */
  cm_enode_t *all;
  atomic_uint_fast64_t next_token;
};

static cm_time_t engine_now(void) { return uv_hrtime() / 1000u; }

/* --------------------------------------------------------- event queue */

static void q_wake(cm_enode_t *n) {
  uint64_t one = 1;
  ssize_t r = write(n->efd, &one, sizeof(one));
  (void)r; /* EAGAIN means the counter is already non-zero: still awake */
}

static void q_push_locked(cm_enode_t *n, const cm_eevent_t *ev) {
  size_t need = n->q_dropped > 0 ? 2 : 1;
  if (n->q_len + need > n->q_cap) {
    n->q_dropped++;
    n->stats.events_dropped++;
    return;
  }
  if (n->q_dropped > 0) {
    cm_eevent_t *d = &n->q[(n->q_head + n->q_len++) % n->q_cap];
    memset(d, 0, sizeof(*d));
    d->kind = CM_EEV_DROPPED;
    d->dropped = n->q_dropped;
    n->q_dropped = 0;
  }
  n->q[(n->q_head + n->q_len++) % n->q_cap] = *ev;
  q_wake(n);
}

static void q_push(cm_enode_t *n, const cm_eevent_t *ev) {
  pthread_mutex_lock(&n->lock);
  q_push_locked(n, ev);
  pthread_mutex_unlock(&n->lock);
}

static void q_result(cm_enode_t *n, uint8_t kind, uint64_t token, int status) {
  cm_eevent_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = kind;
  ev.token = token;
  ev.status = status;
  q_push(n, &ev);
}

int cm_enode_next_event(cm_enode_t *n, cm_eevent_t *out) {
  int got = 0;
  pthread_mutex_lock(&n->lock);
  if (n->q_len > 0) {
    *out = n->q[n->q_head];
    n->q_head = (n->q_head + 1) % n->q_cap;
    n->q_len--;
    got = 1;
  } else if (n->q_dropped > 0) {
    memset(out, 0, sizeof(*out));
    out->kind = CM_EEV_DROPPED;
    out->dropped = n->q_dropped;
    n->q_dropped = 0;
    got = 1;
  } else {
    uint64_t v;
    ssize_t r = read(n->efd, &v, sizeof(v));
    (void)r;
  }
  pthread_mutex_unlock(&n->lock);
  return got;
}

int cm_enode_event_fd(const cm_enode_t *n) { return n->efd; }

/* ------------------------------------------------------------ snapshots */

void cm_snapshot_release(cm_snapshot_t *s) {
  if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
    free(s);
}

cm_snapshot_t *cm_snapshot_alloc(uint32_t count, size_t tags_len) {
  cm_snapshot_t *s =
      calloc(1, sizeof(cm_snapshot_t) + (size_t)count * sizeof(cm_emember_t) +
                    tags_len);
  if (s == NULL)
    return NULL;
  atomic_init(&s->refs, 1);
  s->members = (cm_emember_t *)(s + 1);
  s->count = count;
  return s;
}

/* Layout: header, members, tag bytes; one allocation. */
static cm_snapshot_t *snapshot_build(cm_node_t *node, uint64_t version) {
  uint32_t slots = cm_node_member_slots(node), i, k = 0;
  size_t tags = 0, size;
  cm_member_info_t info;
  cm_time_t now = engine_now();
  cm_snapshot_t *s;
  uint8_t *tp;
  for (i = 0; i < slots; i++)
    if (cm_node_member_get(node, i, &info, now))
      tags += info.tags_len;
  size = sizeof(cm_snapshot_t) + (size_t)slots * sizeof(cm_emember_t) + tags;
  s = malloc(size);
  if (s == NULL)
    return NULL;
  atomic_init(&s->refs, 1);
  s->members = (cm_emember_t *)(s + 1);
  tp = (uint8_t *)(s->members + slots);
  for (i = 0; i < slots; i++) {
    cm_emember_t *m;
    if (!cm_node_member_get(node, i, &info, now))
      continue;
    m = &s->members[k++];
    memset(m, 0, sizeof(*m));
    strcpy(m->id, info.id);
    m->addr = info.addr;
    m->incarnation = info.incarnation;
    m->state = info.state;
    m->is_self = (uint8_t)info.is_self;
    m->state_change = info.state_change;
    m->phi = info.phi;
    m->tags_len = (uint16_t)info.tags_len;
    m->tags = tp;
    if (info.tags_len > 0)
      memcpy(tp, info.tags, info.tags_len);
    tp += info.tags_len;
  }
  s->count = k;
  s->version = version;
  return s;
}

cm_snapshot_t *cm_enode_snapshot(cm_enode_t *n) {
  cm_snapshot_t *s;
  pthread_mutex_lock(&n->lock);
  s = n->snap;
  if (s != NULL)
    atomic_fetch_add(&s->refs, 1);
  pthread_mutex_unlock(&n->lock);
  return s;
}

void cm_enode_stats(cm_enode_t *n, cm_enode_stats_t *out) {
  pthread_mutex_lock(&n->lock);
  *out = n->stats;
  pthread_mutex_unlock(&n->lock);
}

cm_addr_t cm_enode_addr(const cm_enode_t *n) { return n->addr; }

int cm_enode_running(cm_enode_t *n) {
  int r;
  pthread_mutex_lock(&n->lock);
  r = n->running;
  pthread_mutex_unlock(&n->lock);
  return r;
}

/* ------------------------------------------------------- loop: driving */

static void enode_begin_stop(cm_enode_t *n);
static void on_timer(uv_timer_t *t);

static int join_owns(struct join_state *j, uint64_t req_id) {
  size_t i;
  for (i = 0; i < j->nreqs; i++)
    if (j->reqs[i] == req_id) {
      j->reqs[i] = j->reqs[--j->nreqs];
      return 1;
    }
  return 0;
}

static void join_finish(cm_enode_t *n, int status) {
  n->join.active = 0;
  n->join.nreqs = 0;
  if (n->join.retry_pending) {
    uv_timer_stop(&n->join_timer);
    n->join.retry_pending = 0;
  }
  q_result(n, CM_EEV_JOINED, n->join.token, status);
}

/* A join attempt's request failed; when none is left, retry or give up. */
static void join_attempt_failed(cm_enode_t *n);

/* Publish what the last input changed and hand the node's output to the
 * transport. Called after every input to the node. */
static void enode_flush(cm_enode_t *n, int force_snapshot) {
  cm_addr_t to;
  const uint8_t *data;
  uint8_t *sdata;
  size_t len;
  uint64_t req_id;
  int is_join, changed = force_snapshot, rc;
  cm_event_t ev;
  cm_time_t now, d;
  uint64_t send_errors = 0;
  uint32_t prev_inc;

  if (n->node == NULL)
    return;
  while (cm_node_poll_datagram(n->node, &to, &data, &len))
    if (cm_net_send_datagram(n->net, &to, data, len) != 0)
      send_errors++;
  while (cm_node_poll_stream(n->node, &to, &req_id, &sdata, &len, &is_join)) {
    rc = cm_net_stream_request(n->net, &to, sdata, len, req_id);
    free(sdata);
    if (is_join && n->join.active && rc == 0 &&
        n->join.nreqs < ENGINE_MAX_SEEDS)
      n->join.reqs[n->join.nreqs++] = req_id;
    if (rc != 0) {
      send_errors++;
      cm_node_pushpull_failed(n->node, req_id, engine_now());
    }
  }
  pthread_mutex_lock(&n->lock);
  while (cm_node_poll_event(n->node, &ev)) {
    cm_eevent_t e;
    memset(&e, 0, sizeof(e));
    e.kind = CM_EEV_MEMBER;
    e.ev = ev;
    changed = 1;
    /* The snapshot is published below, before the consumer can act on
     * these events: it takes the same lock. */
    q_push_locked(n, &e);
  }
  /* A refutation raises our own incarnation without any event: republish,
   * or the snapshot's record of ourselves would lag the stats. */
  prev_inc = n->stats.node.incarnation;
  cm_node_stats(n->node, &n->stats.node);
  if (n->stats.node.incarnation != prev_inc)
    changed = 1;
  if (changed) {
    cm_snapshot_t *s =
        snapshot_build(n->node, n->snap != NULL ? n->snap->version + 1 : 1);
    if (s != NULL) {
      cm_snapshot_release(n->snap);
      n->snap = s;
    }
  }
  cm_net_stats(n->net, &n->stats.net);
  n->stats.send_errors += send_errors;
  pthread_mutex_unlock(&n->lock);

  if (n->join.active && n->join.nreqs == 0 && !n->join.retry_pending)
    join_attempt_failed(n);

  now = engine_now();
  if (n->leaving && (cm_node_leave_done(n->node) || now >= n->leave_deadline)) {
    /* Stop from the timer, not from inside a transport callback. */
    n->want_stop = 1;
    uv_timer_start(&n->timer, on_timer, 0, 0);
    return;
  }
  d = cm_node_next_deadline(n->node);
  if (n->leaving && d > n->leave_deadline)
    d = n->leave_deadline;
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
    enode_begin_stop(n);
    return;
  }
  cm_node_tick(n->node, engine_now());
  enode_flush(n, 0);
}

static void on_timer(uv_timer_t *t) {
  cm_enode_t *n = t->data;
  uv_idle_start(&n->idle, on_idle);
  uv_check_start(&n->check, on_check);
}

static void join_send(cm_enode_t *n) {
  int rc = cm_node_join(n->node, n->join.seeds, n->join.nseeds, engine_now());
  if (rc != 0) {
    join_finish(n, rc);
    return;
  }
  enode_flush(n, 0);
}

static void on_join_retry(uv_timer_t *t) {
  cm_enode_t *n = t->data;
  n->join.retry_pending = 0;
  if (n->join.active)
    join_send(n);
}

static void join_attempt_failed(cm_enode_t *n) {
  cm_time_t now = engine_now();
  if (now + n->join.backoff >= n->join.deadline) {
    join_finish(n, CM_ETIMEDOUT);
    return;
  }
  n->join.retry_pending = 1;
  uv_timer_start(&n->join_timer, on_join_retry, n->join.backoff / 1000, 0);
  n->join.backoff *= 2;
  if (n->join.backoff > ENGINE_JOIN_BACKOFF_MAX)
    n->join.backoff = ENGINE_JOIN_BACKOFF_MAX;
}

static void on_datagram(void *ud, const cm_addr_t *from, const uint8_t *data,
                        size_t len) {
  cm_enode_t *n = ud;
  if (n->node == NULL || n->closing)
    return;
  cm_node_recv(n->node, from, data, len, engine_now());
  enode_flush(n, 0);
}

static void on_stream_request(void *ud, const cm_addr_t *from, uint64_t token,
                              const uint8_t *data, size_t len) {
  cm_enode_t *n = ud;
  uint8_t *reply = NULL;
  size_t rlen = 0;
  if (n->node == NULL || n->closing)
    return;
  if (cm_node_handle_pushpull(n->node, from, data, len, engine_now(), &reply,
                              &rlen) == 0) {
    cm_net_stream_respond(n->net, token, reply, rlen);
    free(reply);
  }
  enode_flush(n, 0);
}

static void enode_connect_members(cm_enode_t *n);

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
  mine = n->join.active && join_owns(&n->join, req_id);
  if (status == 0) {
    if (mine)
      refuted = enode_refutations(n);
    rc = cm_node_pushpull_reply(n->node, req_id, data, len, engine_now());
    if (mine)
      refuted = enode_refutations(n) - refuted;
  } else {
    cm_node_pushpull_failed(n->node, req_id, engine_now());
  }
  if (mine && rc == 0) {
    /* Publish the merged table before reporting success, so a caller that
     * reads the registry right after join() sees the cluster. */
    uint64_t token = n->join.token;
    n->join.active = 0;
    n->join.nreqs = 0;
    if (n->join.retry_pending) {
      uv_timer_stop(&n->join_timer);
      n->join.retry_pending = 0;
    }
    if (refuted > 0)
      enode_connect_members(n);
    enode_flush(n, 1);
    q_result(n, CM_EEV_JOINED, token, 0);
    return;
  }
  enode_flush(n, 0);
}

/* ------------------------------------------------- loop: start and stop */

static void cmd_complete(cm_engine_t *e, struct cmd *c, int result) {
  if (!c->sync) {
    free(c);
    return;
  }
  pthread_mutex_lock(&e->cmd_lock);
  c->result = result;
  c->done = 1;
  pthread_cond_broadcast(&e->cmd_cond);
  pthread_mutex_unlock(&e->cmd_lock);
}

static void engine_maybe_exit(cm_engine_t *e);

static void enode_finalize(cm_enode_t *n) {
  cm_engine_t *e = n->e;
  int was_leaving = n->leaving;
  cm_node_free(n->node);
  n->node = NULL;
  n->net = NULL;
  n->finalized = 1;
  pthread_mutex_lock(&n->lock);
  n->running = 0;
  pthread_mutex_unlock(&n->lock);
  if (n->join.active)
    join_finish(n, CM_ECLOSED);
  if (was_leaving)
    q_result(n, CM_EEV_LEFT, n->leave_token, 0);
  e->live_nodes--;
  if (n->stop_cmd != NULL) {
    struct cmd *c = n->stop_cmd;
    n->stop_cmd = NULL;
    cmd_complete(e, c, n->start_result);
  }
  engine_maybe_exit(e);
}

static void enode_handle_done(cm_enode_t *n) {
  if (--n->handles_open == 0)
    enode_finalize(n);
}

static void on_handle_closed(uv_handle_t *h) { enode_handle_done(h->data); }

static void on_net_closed(void *arg) { enode_handle_done(arg); }

static void enode_begin_stop(cm_enode_t *n) {
  if (n->closing)
    return;
  n->closing = 1;
  uv_close((uv_handle_t *)&n->timer, on_handle_closed);
  uv_close((uv_handle_t *)&n->join_timer, on_handle_closed);
  uv_close((uv_handle_t *)&n->idle, on_handle_closed);
  uv_close((uv_handle_t *)&n->check, on_handle_closed);
  if (n->net != NULL) {
    /* The net's done callback counts as one more handle. */
    n->handles_open++;
    cm_net_close(n->net, on_net_closed, n);
  }
}

/* A member holds a connection to the process that had our address before
 * us: connect to it, which makes it drop that connection. Only for known
 * members, so a forged source cannot make us open connections elsewhere. */
static void on_stale_peer(void *ud, const cm_addr_t *from) {
  cm_enode_t *n = ud;
  if (n->node == NULL || n->closing || n->net == NULL ||
      !cm_node_has_member_at(n->node, from))
    return;
  (void)cm_net_connect(n->net, from);
}

/* Called after a join whose reply made us refute a record of ourselves:
 * this id ran before, likely at this address. Members that had declared
 * that process failed may hold a connection to it still in its handshake,
 * retrying at growing intervals, with what they send to us queued behind
 * it; members that had not may hold an established one we do not know.
 * Our connecting to each replaces both at once, before our refutation
 * reaches them. Bounded to half the default pool; past that, on_stale_peer
 * and our own probes reach the rest. */
#define ENGINE_RESTART_CONNECT_MAX 256

static void enode_connect_members(cm_enode_t *n) {
  cm_member_info_t info;
  uint32_t slot, slots, done = 0;
  cm_time_t now = engine_now();
  slots = cm_node_member_slots(n->node);
  for (slot = 0; slot < slots && done < ENGINE_RESTART_CONNECT_MAX; slot++) {
    if (!cm_node_member_get(n->node, slot, &info, now) || info.is_self ||
        info.state == CM_STATE_LEFT)
      continue;
    if (cm_net_connect(n->net, &info.addr) == 0)
      done++;
  }
}

static int engine_peer_hint(void *ud, const cm_addr_t *addr) {
  cm_enode_t *n = ud;
  return n->net != NULL && cm_net_is_connected(n->net, addr);
}

static void enode_do_start(cm_enode_t *n, struct cmd *c) {
  cm_engine_t *e = n->e;
  cm_net_callbacks_t cb = {.on_datagram = on_datagram,
                           .on_stream_request = on_stream_request,
                           .on_stream_response = on_stream_response,
                           .on_stale_peer = on_stale_peer};
  int rc;
  n->timer.data = n;
  n->join_timer.data = n;
  n->idle.data = n;
  n->check.data = n;
  uv_timer_init(&e->loop, &n->timer);
  uv_timer_init(&e->loop, &n->join_timer);
  uv_idle_init(&e->loop, &n->idle);
  uv_check_init(&e->loop, &n->check);
  n->handles_open = 4;
  e->live_nodes++;
  rc = cm_net_new(&n->net, &e->loop, &n->cfg.bind, &n->cfg.net, &cb, n);
  if (rc == 0)
    rc = cm_net_local_addr(n->net, &n->addr);
  if (rc == 0)
    rc = cm_node_new(&n->node, &n->cfg.proto, n->id, &n->addr, n->tags,
                     n->cfg.tags_len, n->cfg.seed, engine_now());
  if (rc != 0) {
    n->start_result = rc;
    n->stop_cmd = c;
    if (n->node != NULL) {
      cm_node_free(n->node);
      n->node = NULL;
    }
    enode_begin_stop(n);
    return;
  }
  cm_node_set_peer_hint(n->node, engine_peer_hint, n);
  pthread_mutex_lock(&n->lock);
  n->running = 1;
  pthread_mutex_unlock(&n->lock);
  enode_flush(n, 1);
  cmd_complete(e, c, 0);
}

static void engine_maybe_exit(cm_engine_t *e) {
  if (e->loop_shutting_down && e->live_nodes == 0 && e->shutdown_cmd != NULL) {
    struct cmd *c = e->shutdown_cmd;
    e->shutdown_cmd = NULL;
    uv_close((uv_handle_t *)&e->async, NULL);
    cmd_complete(e, c, 0);
  }
}

static int join_has_others(const cm_addr_t *seeds, size_t n,
                           const cm_addr_t *self) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!cm_addr_eq(&seeds[i], self))
      return 1;
  return 0;
}

static void engine_run_cmd(cm_engine_t *e, struct cmd *c) {
  cm_enode_t *n = c->node;
  int rc;
  switch (c->kind) {
  case CMD_START:
    enode_do_start(n, c);
    return;
  case CMD_STOP:
    if (n->finalized || (n->node == NULL && !n->closing)) {
      cmd_complete(e, c, 0);
      return;
    }
    if (n->closing) {
      /* Already closing (a leave finishing): complete with it. */
      if (n->stop_cmd == NULL) {
        n->stop_cmd = c;
        n->start_result = 0;
      } else {
        cmd_complete(e, c, 0);
      }
      return;
    }
    n->stop_cmd = c;
    n->start_result = 0;
    enode_begin_stop(n);
    return;
  case CMD_JOIN:
    if (n->node == NULL || n->closing || n->leaving) {
      q_result(n, CM_EEV_JOINED, c->token, CM_ECLOSED);
    } else if (n->join.active) {
      q_result(n, CM_EEV_JOINED, c->token, CM_ESTATE);
    } else {
      memset(&n->join, 0, sizeof(n->join));
      n->join.active = 1;
      n->join.token = c->token;
      memcpy(n->join.seeds, c->seeds, c->nseeds * sizeof(cm_addr_t));
      n->join.nseeds = c->nseeds;
      n->join.deadline = engine_now() + c->timeout;
      n->join.backoff = ENGINE_JOIN_BACKOFF_MIN;
      if (join_has_others(c->seeds, c->nseeds, &n->addr))
        join_send(n);
      else
        join_finish(n, 0); /* only ourselves, or none: a cluster of one */
    }
    cmd_complete(e, c, 0);
    return;
  case CMD_LEAVE:
    if (n->node == NULL || n->closing) {
      q_result(n, CM_EEV_LEFT, c->token, CM_ECLOSED);
    } else if (!n->leaving) {
      n->leaving = 1;
      n->leave_token = c->token;
      n->leave_deadline = engine_now() + n->cfg.leave_grace;
      cm_node_leave(n->node, engine_now());
      if (n->join.active)
        join_finish(n, CM_ECLOSED);
      enode_flush(n, 1);
    }
    cmd_complete(e, c, 0);
    return;
  case CMD_SET_TAGS:
    if (n->node == NULL || n->closing) {
      cmd_complete(e, c, CM_ECLOSED);
      return;
    }
    rc = cm_node_set_tags(n->node, c->blob, c->blob_len, engine_now());
    if (rc == 0)
      enode_flush(n, 1);
    cmd_complete(e, c, rc);
    return;
  case CMD_SET_FAULT:
    if (n->net == NULL || n->closing) {
      cmd_complete(e, c, CM_ECLOSED);
      return;
    }
    cmd_complete(e, c,
                 cm_net_set_fault(n->net, c->fault_off ? NULL : &c->fault));
    return;
  case CMD_SHUTDOWN: {
    cm_enode_t *it;
    e->loop_shutting_down = 1;
    e->shutdown_cmd = c;
    pthread_mutex_lock(&e->cmd_lock);
    it = e->all;
    pthread_mutex_unlock(&e->cmd_lock);
    for (; it != NULL; it = it->next_all)
      if (it->node != NULL && !it->closing)
        enode_begin_stop(it);
    engine_maybe_exit(e);
    return;
  }
  }
}

static void on_async(uv_async_t *a) {
  cm_engine_t *e = a->data;
  struct cmd *list, *c;
  pthread_mutex_lock(&e->cmd_lock);
  list = e->cmds;
  e->cmds = e->cmds_tail = NULL;
  pthread_mutex_unlock(&e->cmd_lock);
  while ((c = list) != NULL) {
    list = c->next;
    c->next = NULL;
    engine_run_cmd(e, c);
  }
}

static void *engine_thread(void *arg) {
  cm_engine_t *e = arg;
  uv_run(&e->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* ------------------------------------------------------ caller threads */

static int engine_submit(cm_engine_t *e, struct cmd *c) {
  int rc = 0;
  pthread_mutex_lock(&e->cmd_lock);
  if (e->shutting_down && c->kind != CMD_SHUTDOWN) {
    pthread_mutex_unlock(&e->cmd_lock);
    return CM_ECLOSED;
  }
  if (c->kind == CMD_SHUTDOWN)
    e->shutting_down = 1;
  if (e->cmds_tail != NULL)
    e->cmds_tail->next = c;
  else
    e->cmds = c;
  e->cmds_tail = c;
  pthread_mutex_unlock(&e->cmd_lock);
  uv_async_send(&e->async);
  if (c->sync) {
    pthread_mutex_lock(&e->cmd_lock);
    while (!c->done)
      pthread_cond_wait(&e->cmd_cond, &e->cmd_lock);
    rc = c->result;
    pthread_mutex_unlock(&e->cmd_lock);
  }
  return rc;
}

int cm_engine_new(cm_engine_t **out) {
  cm_engine_t *e;
  if (out == NULL)
    return CM_EINVAL;
  e = calloc(1, sizeof(*e));
  if (e == NULL)
    return CM_ENOMEM;
  if (uv_loop_init(&e->loop) != 0) {
    free(e);
    return CM_EIO;
  }
  e->async.data = e;
  if (uv_async_init(&e->loop, &e->async, on_async) != 0) {
    uv_loop_close(&e->loop);
    free(e);
    return CM_EIO;
  }
  pthread_mutex_init(&e->cmd_lock, NULL);
  pthread_cond_init(&e->cmd_cond, NULL);
  atomic_init(&e->next_token, 1);
  if (pthread_create(&e->thread, NULL, engine_thread, e) != 0) {
    uv_close((uv_handle_t *)&e->async, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
    pthread_mutex_destroy(&e->cmd_lock);
    pthread_cond_destroy(&e->cmd_cond);
    free(e);
    return CM_EIO;
  }
  *out = e;
  return 0;
}

static void enode_free_handle(cm_enode_t *n) {
  free(n->tags);
  free(n->keys);
  free(n->ca_file);
  free(n->cert_file);
  free(n->key_file);
  free(n->q);
  cm_snapshot_release(n->snap);
  if (n->efd >= 0)
    close(n->efd);
  pthread_mutex_destroy(&n->lock);
  free(n);
}

void cm_engine_free(cm_engine_t *e) {
  struct cmd c;
  cm_enode_t *n, *next;
  if (e == NULL)
    return;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_SHUTDOWN;
  c.sync = 1;
  engine_submit(e, &c);
  pthread_join(e->thread, NULL);
  uv_loop_close(&e->loop);
  for (n = e->all; n != NULL; n = next) {
    next = n->next_all;
    enode_free_handle(n);
  }
  pthread_mutex_destroy(&e->cmd_lock);
  pthread_cond_destroy(&e->cmd_cond);
  free(e);
}

static char *dup_or_null(const char *s) { return s != NULL ? strdup(s) : NULL; }

int cm_enode_start(cm_engine_t *e, const cm_enode_config_t *cfg,
                   cm_enode_t **out) {
  cm_enode_t *n;
  struct cmd c;
  size_t idlen;
  int rc;
  if (e == NULL || cfg == NULL || out == NULL)
    return CM_EINVAL;
  idlen = cfg->id != NULL ? strnlen(cfg->id, CM_ID_MAX + 1) : 0;
  if (!cm_id_valid(cfg->id, idlen))
    return CM_ENODEID;
  n = calloc(1, sizeof(*n));
  if (n == NULL)
    return CM_ENOMEM;
  n->efd = -1;
  pthread_mutex_init(&n->lock, NULL);
  n->e = e;
  n->cfg = *cfg;
  memcpy(n->id, cfg->id, idlen);
  n->cfg.id = n->id;
  if (n->cfg.event_queue_max == 0)
    n->cfg.event_queue_max = ENGINE_EVENT_QUEUE_DEFAULT;
  if (n->cfg.leave_grace == 0)
    n->cfg.leave_grace = ENGINE_LEAVE_GRACE_DEFAULT;
  n->q_cap = n->cfg.event_queue_max;
  n->q = calloc(n->q_cap, sizeof(*n->q));
  n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (cfg->tags_len > 0) {
    n->tags = malloc(cfg->tags_len);
    if (n->tags != NULL)
      memcpy(n->tags, cfg->tags, cfg->tags_len);
  }
  n->cfg.tags = n->tags;
  if (cfg->net.nkeys > 0 && cfg->net.keys != NULL) {
    n->keys = malloc(cfg->net.nkeys * sizeof(*n->keys));
    if (n->keys != NULL)
      memcpy(n->keys, cfg->net.keys, cfg->net.nkeys * sizeof(*n->keys));
  }
  n->cfg.net.keys = n->keys;
  n->ca_file = dup_or_null(cfg->net.ca_file);
  n->cert_file = dup_or_null(cfg->net.cert_file);
  n->key_file = dup_or_null(cfg->net.key_file);
  n->cfg.net.ca_file = n->ca_file;
  n->cfg.net.cert_file = n->cert_file;
  n->cfg.net.key_file = n->key_file;
  if (n->q == NULL || n->efd < 0 || (cfg->tags_len > 0 && n->tags == NULL) ||
      (cfg->net.nkeys > 0 && cfg->net.keys != NULL && n->keys == NULL) ||
      (cfg->net.ca_file && !n->ca_file) ||
      (cfg->net.cert_file && !n->cert_file) ||
      (cfg->net.key_file && !n->key_file)) {
    rc = n->efd < 0 ? CM_EIO : CM_ENOMEM;
    enode_free_handle(n);
    return rc;
  }
  memset(&c, 0, sizeof(c));
  c.kind = CMD_START;
  c.node = n;
  c.sync = 1;
  /* Link first, so a shutdown racing with this start still frees it. */
  pthread_mutex_lock(&e->cmd_lock);
  n->next_all = e->all;
  e->all = n;
  pthread_mutex_unlock(&e->cmd_lock);
  rc = engine_submit(e, &c);
  if (rc != 0) {
    cm_enode_stop(n);
    return rc;
  }
  *out = n;
  return 0;
}

void cm_enode_stop(cm_enode_t *n) {
  cm_engine_t *e;
  struct cmd c;
  cm_enode_t **pp;
  if (n == NULL)
    return;
  e = n->e;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_STOP;
  c.node = n;
  c.sync = 1;
  if (engine_submit(e, &c) == CM_ECLOSED)
    return; /* the engine is shutting down and will free it */
  pthread_mutex_lock(&e->cmd_lock);
  for (pp = &e->all; *pp != NULL; pp = &(*pp)->next_all)
    if (*pp == n) {
      *pp = n->next_all;
      break;
    }
  pthread_mutex_unlock(&e->cmd_lock);
  enode_free_handle(n);
}

static struct cmd *cmd_new(enum cmd_kind kind, cm_enode_t *n) {
  struct cmd *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->kind = kind;
  c->node = n;
  c->token = atomic_fetch_add(&n->e->next_token, 1);
  return c;
}

int64_t cm_enode_join(cm_enode_t *n, const cm_addr_t *seeds, size_t nseeds,
                      cm_time_t timeout) {
  struct cmd *c;
  size_t i;
  int64_t token;
  int rc;
  if (n == NULL || (seeds == NULL && nseeds > 0) || nseeds > ENGINE_MAX_SEEDS)
    return CM_EINVAL;
  for (i = 0; i < nseeds; i++)
    if (!cm_addr_valid(&seeds[i]))
      return CM_EADDR;
  c = cmd_new(CMD_JOIN, n);
  if (c == NULL)
    return CM_ENOMEM;
  if (nseeds > 0)
    memcpy(c->seeds, seeds, nseeds * sizeof(*seeds));
  c->nseeds = nseeds;
  c->timeout = timeout;
  token = (int64_t)c->token;
  rc = engine_submit(n->e, c);
  if (rc != 0) {
    free(c);
    return rc;
  }
  return token;
}

int64_t cm_enode_leave(cm_enode_t *n) {
  struct cmd *c;
  int64_t token;
  int rc;
  if (n == NULL)
    return CM_EINVAL;
  c = cmd_new(CMD_LEAVE, n);
  if (c == NULL)
    return CM_ENOMEM;
  token = (int64_t)c->token;
  rc = engine_submit(n->e, c);
  if (rc != 0) {
    free(c);
    return rc;
  }
  return token;
}

int cm_enode_set_tags(cm_enode_t *n, const uint8_t *blob, size_t len) {
  struct cmd c;
  if (n == NULL || (blob == NULL && len > 0))
    return CM_EINVAL;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_SET_TAGS;
  c.node = n;
  c.sync = 1;
  c.blob = (uint8_t *)blob; /* the caller waits: no copy needed */
  c.blob_len = len;
  return engine_submit(n->e, &c);
}

int cm_enode_set_fault(cm_enode_t *n, const cm_net_fault_t *f) {
  struct cmd c;
  if (n == NULL)
    return CM_EINVAL;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_SET_FAULT;
  c.node = n;
  c.sync = 1;
  if (f != NULL)
    c.fault = *f; /* the caller waits: blocked[] stays valid */
  else
    c.fault_off = 1;
  return engine_submit(n->e, &c);
}
