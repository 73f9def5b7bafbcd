/*
 * The engine thread and its command queue, the calls other threads make,
 * and the start and stop of nodes on the loop. Commands reach the loop
 * through a locked queue and a uv_async_t; synchronous ones wait on a
 * condition variable for the loop to complete them.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cm_engine_int.h"

#define ENGINE_EVENT_QUEUE_DEFAULT 4096
#define ENGINE_LEAVE_GRACE_DEFAULT CM_SEC(5)
/* The event ring starts with room for the results of a join and a leave
 * outstanding at once, the most the Python API ever has; more outstanding
 * calls grow it when they are made. */
#define ENGINE_RESULTS_PREALLOCATED 2

/* ------------------------------------------------------------ fork() */

/* What a fork() child can rely on. Every descriptor the engine holds is
 * recorded in an atomic slot reachable from the engine without a lock:
 * the loop's in e->loop_fds, each node's in n->fds, and each node stays on
 * the engine's list (updated with single atomic stores) until its slots
 * are cleared. A slot is written just after the call that creates its
 * descriptor returns, and cleared just before the descriptor is closed, so
 * the child never closes a number the parent had already closed (and
 * perhaps reused). A fork() in the instant between a creation and its
 * recording, that is while cm_engine_new, cm_enode_start or the loop's
 * start of a node runs, leaves that descriptor open in the child: Python
 * cannot fork then, for those calls hold the GIL until they return. */

/* Record fds[0..n) in slots[first..], clearing the rest from first on;
 * n 0 clears them. */
static void fds_set(_Atomic int *slots, size_t nslots, size_t first,
                    const int *fds, size_t n) {
  size_t i;
  for (i = first; i < nslots; i++)
    atomic_store(&slots[i], i - first < n ? fds[i - first] : -1);
}

static void fds_close(_Atomic int *slots, size_t nslots) {
  size_t i;
  for (i = 0; i < nslots; i++) {
    int fd = atomic_exchange(&slots[i], -1);
    if (fd >= 0)
      close(fd);
  }
}

void cm_engine_forget_after_fork(cm_engine_t *e) {
  cm_enode_t *n;
  if (e == NULL)
    return;
  fds_close(e->loop_fds, ENGINE_LOOP_FDS);
  for (n = atomic_load(&e->all); n != NULL; n = atomic_load(&n->next_all))
    fds_close(n->fds, ENGINE_NODE_FDS);
}

/* libuv exposes only the epoll descriptor (uv_backend_fd); the wake-up
 * and signal descriptors are read from fields uv.h declares for Unix
 * loops. */
static void engine_record_loop_fds(cm_engine_t *e) {
  int fds[ENGINE_LOOP_FDS] = {
      uv_backend_fd(&e->loop), e->loop.async_io_watcher.fd, e->loop.async_wfd,
      e->loop.signal_pipefd[0], e->loop.signal_pipefd[1]};
  fds_set(e->loop_fds, ENGINE_LOOP_FDS, 0, fds, ENGINE_LOOP_FDS);
}

/* The node's eventfd is slot 0; the transport's follow. */
static void enode_record_net_fds(cm_enode_t *n) {
  int fds[ENGINE_NODE_FDS - 1];
  size_t k = cm_net_fds(n->net, fds, ENGINE_NODE_FDS - 1);
  fds_set(n->fds, ENGINE_NODE_FDS, 1, fds,
          k < ENGINE_NODE_FDS - 1 ? k : ENGINE_NODE_FDS - 1);
}

static void enode_close_efd(cm_enode_t *n) {
  fds_set(n->fds, 1, 0, NULL, 0);
  if (n->efd >= 0)
    close(n->efd);
  n->efd = -1;
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
    cm_engine__join_finish(n, CM_ECLOSED);
  if (was_leaving)
    cm_engine__q_result(n, CM_EEV_LEFT, n->leave_token, 0);
  if (n->live_prev != NULL)
    n->live_prev->live_next = n->live_next;
  else
    e->live = n->live_next;
  if (n->live_next != NULL)
    n->live_next->live_prev = n->live_prev;
  n->live_prev = n->live_next = NULL;
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

void cm_engine__begin_stop(cm_enode_t *n) {
  if (n->closing)
    return;
  n->closing = 1;
  fds_set(n->fds, ENGINE_NODE_FDS, 1, NULL, 0);
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

static void enode_do_start(cm_enode_t *n, struct cmd *c) {
  cm_engine_t *e = n->e;
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
  n->live_next = e->live;
  if (e->live != NULL)
    e->live->live_prev = n;
  e->live = n;
  rc = cm_net_new(&n->net, &e->loop, &n->cfg.bind, &n->cfg.net,
                  &cm_engine__net_callbacks, n);
  if (rc == 0) {
    enode_record_net_fds(n);
    rc = cm_net_local_addr(n->net, &n->addr);
  }
  if (rc == 0)
    rc = cm_node_new(&n->node, &n->cfg.proto, n->id, &n->addr, n->tags,
                     n->cfg.tags_len, n->cfg.seed, cm_engine__now());
  if (rc != 0) {
    n->start_result = rc;
    n->stop_cmd = c;
    if (n->node != NULL) {
      cm_node_free(n->node);
      n->node = NULL;
    }
    cm_engine__begin_stop(n);
    return;
  }
  cm_node_set_peer_hint(n->node, cm_engine__peer_hint, n);
  pthread_mutex_lock(&n->lock);
  n->running = 1;
  pthread_mutex_unlock(&n->lock);
  cm_engine__flush(n, 1);
  cmd_complete(e, c, 0);
}

static void engine_maybe_exit(cm_engine_t *e) {
  if (e->loop_shutting_down && e->live == NULL && e->shutdown_cmd != NULL) {
    struct cmd *c = e->shutdown_cmd;
    e->shutdown_cmd = NULL;
    uv_close((uv_handle_t *)&e->async, NULL);
    cmd_complete(e, c, 0);
  }
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
    cm_engine__begin_stop(n);
    return;
  case CMD_JOIN:
    cm_engine__join_start(n, c);
    cmd_complete(e, c, 0);
    return;
  case CMD_LEAVE:
    if (n->node == NULL || n->closing) {
      cm_engine__q_result(n, CM_EEV_LEFT, c->token, CM_ECLOSED);
    } else if (n->leaving) {
      cm_engine__q_result(n, CM_EEV_LEFT, c->token, CM_ESTATE);
    } else {
      n->leaving = 1;
      n->leave_token = c->token;
      n->leave_deadline =
          cm_engine__now() + (c->timeout ? c->timeout : n->cfg.leave_grace);
      cm_node_leave(n->node, cm_engine__now());
      if (n->join.active)
        cm_engine__join_finish(n, CM_ECLOSED);
      cm_engine__flush(n, 1);
    }
    cmd_complete(e, c, 0);
    return;
  case CMD_SET_TAGS:
    if (n->node == NULL || n->closing) {
      cmd_complete(e, c, CM_ECLOSED);
      return;
    }
    rc = cm_node_set_tags(n->node, c->blob, c->blob_len, cm_engine__now());
    if (rc == 0)
      cm_engine__flush(n, 1);
    cmd_complete(e, c, rc);
    return;
  case CMD_SEND_EVENT:
  case CMD_QUERY:
  case CMD_QUERY_RESPOND:
    if (n->node == NULL || n->closing || n->leaving) {
      cmd_complete(e, c, CM_ECLOSED);
      return;
    }
    if (c->kind == CMD_SEND_EVENT)
      rc = cm_node_send_user_event(n->node, c->ev_name, c->ev_name_len,
                                   c->ev_payload, c->ev_payload_len, c->ev_flag,
                                   cm_engine__now(), &c->ev_ltime);
    else if (c->kind == CMD_QUERY)
      rc = cm_node_query(n->node, c->ev_name, c->ev_name_len, c->ev_filter,
                         c->ev_filter_len, c->ev_payload, c->ev_payload_len,
                         c->ev_flag, c->ev_relay, c->ev_timeout,
                         cm_engine__now(), &c->ev_qid);
    else
      rc = cm_node_query_respond(n->node, c->ev_name, c->ev_qid, c->ev_flag,
                                 c->ev_payload, c->ev_payload_len,
                                 cm_engine__now());
    if (rc == 0)
      cm_engine__flush(n, 0);
    cmd_complete(e, c, rc);
    return;
  case CMD_SET_KEYS: {
    cm_net_key_t *copy;
    if (n->net == NULL || n->closing) {
      cmd_complete(e, c, CM_ECLOSED);
      return;
    }
    copy = malloc(c->nkeys * sizeof(*copy));
    rc = copy == NULL ? CM_ENOMEM
                      : cm_net_set_keys(n->net, c->keys, c->nkeys, c->primary);
    if (rc == 0) {
      memcpy(copy, c->keys, c->nkeys * sizeof(*copy));
      free(n->keys);
      n->keys = copy;
      n->cfg.net.keys = copy;
      n->cfg.net.nkeys = c->nkeys;
      n->cfg.net.primary = c->primary;
    } else {
      free(copy);
    }
    cmd_complete(e, c, rc);
    return;
  }
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
    /* Closing completes later, in close callbacks: the list stays as it
     * is during this walk. */
    for (it = e->live; it != NULL; it = it->live_next)
      if (!it->closing)
        cm_engine__begin_stop(it);
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

/* Queue c for the loop; a sync command is waited for. CM_ECLOSED once the
 * engine is shutting down, but for the shutdown's own command. */
static int engine_submit(cm_engine_t *e, struct cmd *c) {
  /* Read before queuing: the loop frees an async command once it ran. */
  int rc = 0, sync = c->sync;
  pthread_mutex_lock(&e->cmd_lock);
  if (e->shutting_down && c->kind != CMD_SHUTDOWN) {
    pthread_mutex_unlock(&e->cmd_lock);
    return CM_ECLOSED;
  }
  if (e->cmds_tail != NULL)
    e->cmds_tail->next = c;
  else
    e->cmds = c;
  e->cmds_tail = c;
  pthread_mutex_unlock(&e->cmd_lock);
  uv_async_send(&e->async);
  if (sync) {
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
  engine_record_loop_fds(e);
  pthread_mutex_init(&e->cmd_lock, NULL);
  pthread_cond_init(&e->cmd_cond, NULL);
  atomic_init(&e->next_token, 1);
  if (pthread_create(&e->thread, NULL, engine_thread, e) != 0) {
    uv_close((uv_handle_t *)&e->async, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    fds_set(e->loop_fds, ENGINE_LOOP_FDS, 0, NULL, 0);
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
  while (n->q_len > 0) {
    cm_eevent_release(&n->q[n->q_head]);
    n->q_head = (n->q_head + 1) % n->q_cap;
    n->q_len--;
  }
  free(n->q);
  cm_snapshot_release(n->snap);
  enode_close_efd(n);
  pthread_mutex_destroy(&n->lock);
  free(n);
}

void cm_engine_shutdown(cm_engine_t *e) {
  struct cmd c;
  int first;
  if (e == NULL)
    return;
  /* The first caller shuts down; the others wait until it has. */
  pthread_mutex_lock(&e->cmd_lock);
  first = !e->shutting_down;
  e->shutting_down = 1;
  while (!first && !e->shut_down)
    pthread_cond_wait(&e->cmd_cond, &e->cmd_lock);
  pthread_mutex_unlock(&e->cmd_lock);
  if (!first)
    return;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_SHUTDOWN;
  c.sync = 1;
  engine_submit(e, &c);
  pthread_join(e->thread, NULL);
  fds_set(e->loop_fds, ENGINE_LOOP_FDS, 0, NULL, 0);
  uv_loop_close(&e->loop);
  pthread_mutex_lock(&e->cmd_lock);
  e->shut_down = 1;
  pthread_cond_broadcast(&e->cmd_cond);
  pthread_mutex_unlock(&e->cmd_lock);
}

void cm_engine_free(cm_engine_t *e) {
  cm_enode_t *n;
  if (e == NULL)
    return;
  cm_engine_shutdown(e);
  /* Each node's descriptor is closed while the node is still on the list:
   * see cm_engine_forget_after_fork. */
  while ((n = atomic_load(&e->all)) != NULL) {
    enode_close_efd(n);
    atomic_store(&e->all, atomic_load(&n->next_all));
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
  fds_set(n->fds, ENGINE_NODE_FDS, 0, NULL, 0);
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
  n->q_max = n->cfg.event_queue_max;
  n->q_cap = n->q_max + ENGINE_RESULTS_PREALLOCATED * ENGINE_RESULT_SLOTS;
  n->q = calloc(n->q_cap, sizeof(*n->q));
  n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  fds_set(n->fds, 1, 0, &n->efd, n->efd >= 0);
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
  atomic_store(&n->next_all, atomic_load(&e->all));
  atomic_store(&e->all, n);
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
  _Atomic(cm_enode_t *) *pp;
  if (n == NULL)
    return;
  e = n->e;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_STOP;
  c.node = n;
  c.sync = 1;
  if (engine_submit(e, &c) == CM_ECLOSED)
    return; /* the engine is shutting down and will free it */
  /* Closed while still on the list: see cm_engine_forget_after_fork. */
  enode_close_efd(n);
  pthread_mutex_lock(&e->cmd_lock);
  for (pp = &e->all; atomic_load(pp) != NULL; pp = &atomic_load(pp)->next_all)
    if (atomic_load(pp) == n) {
      atomic_store(pp, atomic_load(&n->next_all));
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

/* Submit a command whose outcome is a result event: room for the result
 * is reserved first, here, where running out of memory can still be
 * reported. Returns the token or a negative error. */
static int64_t submit_with_result(cm_enode_t *n, struct cmd *c) {
  int64_t token = (int64_t)c->token;
  int rc = cm_engine__q_reserve(n);
  if (rc == 0) {
    rc = engine_submit(n->e, c);
    if (rc != 0)
      cm_engine__q_unreserve(n);
  }
  if (rc != 0) {
    free(c);
    return rc;
  }
  return token;
}

int64_t cm_enode_join(cm_enode_t *n, const cm_addr_t *seeds, size_t nseeds,
                      cm_time_t timeout) {
  struct cmd *c;
  size_t i;
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
  return submit_with_result(n, c);
}

int64_t cm_enode_leave(cm_enode_t *n, cm_time_t timeout) {
  struct cmd *c;
  if (n == NULL)
    return CM_EINVAL;
  c = cmd_new(CMD_LEAVE, n);
  if (c == NULL)
    return CM_ENOMEM;
  c->timeout = timeout;
  return submit_with_result(n, c);
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

/* A command the caller waits for, about n, carrying a name (or origin) and
 * a payload: what user events and queries share. */
static void app_cmd(struct cmd *c, cm_enode_t *n, enum cmd_kind kind,
                    const char *name, size_t name_len, const uint8_t *payload,
                    size_t payload_len, int flag) {
  memset(c, 0, sizeof(*c));
  c->kind = kind;
  c->node = n;
  c->sync = 1;
  c->ev_name = name;
  c->ev_name_len = name_len;
  c->ev_payload = payload;
  c->ev_payload_len = payload_len;
  c->ev_flag = flag;
}

int cm_enode_send_event(cm_enode_t *n, const char *name, size_t name_len,
                        const uint8_t *payload, size_t payload_len,
                        int coalesce, uint64_t *ltime) {
  struct cmd c;
  int rc;
  if (n == NULL || name == NULL || (payload == NULL && payload_len > 0))
    return CM_EINVAL;
  app_cmd(&c, n, CMD_SEND_EVENT, name, name_len, payload, payload_len,
          coalesce);
  rc = engine_submit(n->e, &c);
  if (rc == 0 && ltime != NULL)
    *ltime = c.ev_ltime;
  return rc;
}

int cm_enode_query(cm_enode_t *n, const char *name, size_t name_len,
                   const uint8_t *filter, size_t filter_len,
                   const uint8_t *payload, size_t payload_len, int want_ack,
                   uint8_t relay, cm_time_t timeout, uint32_t *qid) {
  struct cmd c;
  int rc;
  if (n == NULL || name == NULL || (payload == NULL && payload_len > 0) ||
      (filter == NULL && filter_len > 0))
    return CM_EINVAL;
  app_cmd(&c, n, CMD_QUERY, name, name_len, payload, payload_len, want_ack);
  c.ev_filter = filter;
  c.ev_filter_len = filter_len;
  c.ev_relay = relay;
  c.ev_timeout = timeout;
  rc = engine_submit(n->e, &c);
  if (rc == 0 && qid != NULL)
    *qid = c.ev_qid;
  return rc;
}

int cm_enode_query_respond(cm_enode_t *n, const char *origin, uint32_t qid,
                           int ack, const uint8_t *payload,
                           size_t payload_len) {
  struct cmd c;
  if (n == NULL || origin == NULL || (payload == NULL && payload_len > 0))
    return CM_EINVAL;
  app_cmd(&c, n, CMD_QUERY_RESPOND, origin, 0, payload, payload_len, ack);
  c.ev_qid = qid;
  return engine_submit(n->e, &c);
}

int cm_enode_set_keys(cm_enode_t *n, const cm_net_key_t *keys, size_t nkeys,
                      size_t primary) {
  struct cmd c;
  if (n == NULL || keys == NULL || nkeys == 0 || primary >= nkeys)
    return CM_EINVAL;
  memset(&c, 0, sizeof(c));
  c.kind = CMD_SET_KEYS;
  c.node = n;
  c.sync = 1;
  c.keys = keys;
  c.nkeys = nkeys;
  c.primary = primary;
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
