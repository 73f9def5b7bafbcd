/*
 * Real nodes: several cm_enodes in one engine, talking QUIC over loopback in
 * cluster-key mode. Every wait polls a condition against a generous
 * deadline; nothing depends on a fixed sleep.
 */
#include <dirent.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_engine.h"
#include "cm_test.h"
#include "cm_test_engine.h"

#define NODES 5

static cm_net_key_t test_key(void) {
  cm_net_key_t k;
  int i;
  k.id = 1;
  for (i = 0; i < CM_KEY_LEN; i++)
    k.key[i] = (uint8_t)(i * 7 + 3);
  return k;
}

static cm_enode_t *start_node_q(cm_engine_t *e, int i, const cm_net_key_t *key,
                                uint32_t queue) {
  cm_net_config_t net;
  char id[16];
  cm_net_config_default(&net);
  net.keys = key;
  net.nkeys = 1;
  snprintf(id, sizeof(id), "node-%d", i);
  return cm_te_start(e, id, &net, (uint64_t)i + 1, queue);
}

static cm_enode_t *start_node(cm_engine_t *e, int i, const cm_net_key_t *key) {
  return start_node_q(e, i, key, 0);
}

/* State of member `id` in n's registry, or 0xff if unknown. */
static uint8_t seen_state(cm_enode_t *n, const char *id) {
  cm_snapshot_t *s = cm_enode_snapshot(n);
  uint8_t st = 0xff;
  uint32_t i;
  if (s == NULL)
    return st;
  for (i = 0; i < s->count; i++)
    if (strcmp(s->members[i].id, id) == 0)
      st = s->members[i].state;
  cm_snapshot_release(s);
  return st;
}

typedef int (*cond_fn)(cm_enode_t **nodes, void *arg);

static int wait_for(cond_fn f, cm_enode_t **nodes, void *arg, int seconds) {
  int waited;
  for (waited = 0; waited < seconds * 1000; waited += 20) {
    if (f(nodes, arg))
      return 1;
    cm_te_nap_ms(20);
  }
  return f(nodes, arg);
}

struct want {
  int skip; /* node index not asked (or -1) */
  const char *id;
  uint8_t state;
  int count; /* for all_converged */
};

static int all_see(cm_enode_t **nodes, void *arg) {
  struct want *w = arg;
  int i;
  for (i = 0; i < NODES; i++)
    if (i != w->skip && nodes[i] != NULL &&
        seen_state(nodes[i], w->id) != w->state)
      return 0;
  return 1;
}

static int all_converged(cm_enode_t **nodes, void *arg) {
  struct want *w = arg;
  int i;
  for (i = 0; i < NODES; i++)
    if (nodes[i] != NULL && cm_te_alive_count(nodes[i]) != w->count)
      return 0;
  return 1;
}

static int wait_join(cm_enode_t *n, int64_t token) {
  cm_eevent_t ev;
  int waited;
  for (waited = 0; waited < 30000; waited += 10) {
    while (cm_enode_next_event(n, &ev))
      if (ev.kind == CM_EEV_JOINED && ev.token == (uint64_t)token)
        return ev.status;
    cm_te_nap_ms(10);
  }
  return CM_ETIMEDOUT;
}

/* Events read while waiting for results. */
struct seen {
  uint64_t dropped; /* reported as dropped */
  int joined;       /* member events of type joined */
};

/* Read n's events until each of the count tokens has its result (status[i]
 * holds it; NO_RESULT until then) or 30 s pass, tallying what else came.
 * Returns how many results came; a token answered twice fails the test. */
#define NO_RESULT 1
static int wait_results(cm_enode_t *n, const int64_t *tok, int *status,
                        int count, struct seen *seen) {
  cm_eevent_t ev;
  int i, got = 0, waited;
  memset(seen, 0, sizeof(*seen));
  for (i = 0; i < count; i++)
    status[i] = NO_RESULT;
  for (waited = 0; waited < 30000 && got < count; waited += 10) {
    while (got < count && cm_enode_next_event(n, &ev)) {
      if (ev.kind == CM_EEV_DROPPED)
        seen->dropped += ev.dropped;
      else if (ev.kind == CM_EEV_MEMBER && ev.ev.type == CM_EV_JOINED)
        seen->joined++;
      for (i = 0; i < count; i++)
        if ((ev.kind == CM_EEV_JOINED || ev.kind == CM_EEV_LEFT) &&
            ev.token == (uint64_t)tok[i]) {
          CM_CHECK_EQ(status[i], NO_RESULT);
          status[i] = ev.status;
          got++;
        }
    }
    if (got < count)
      cm_te_nap_ms(10);
  }
  return got;
}

static void form_cluster(cm_engine_t *e, cm_enode_t **nodes,
                         const cm_net_key_t *key) {
  cm_addr_t seed;
  struct want w = {-1, NULL, 0, NODES};
  int i;
  for (i = 0; i < NODES; i++)
    nodes[i] = start_node(e, i, key);
  seed = cm_enode_addr(nodes[0]);
  for (i = 1; i < NODES; i++) {
    int64_t tok = cm_enode_join(nodes[i], &seed, 1, CM_SEC(10));
    CM_CHECK(tok > 0);
    CM_CHECK_OK(wait_join(nodes[i], tok));
  }
  CM_CHECK(wait_for(all_converged, nodes, &w, 30));
}

static int tag_seen(cm_enode_t **nodes, void *arg) {
  int i;
  (void)arg;
  for (i = 0; i < NODES; i++) {
    cm_snapshot_t *s;
    uint32_t k;
    int ok = 0;
    if (nodes[i] == NULL)
      continue;
    s = cm_enode_snapshot(nodes[i]);
    for (k = 0; k < s->count; k++) {
      cm_tag_t t;
      if (strcmp(s->members[k].id, "node-1") == 0 &&
          cm_tags_get(s->members[k].tags, s->members[k].tags_len, "role", 4,
                      &t) &&
          t.value_len == 6 && memcmp(t.value, "worker", 6) == 0)
        ok = 1;
    }
    cm_snapshot_release(s);
    if (!ok)
      return 0;
  }
  return 1;
}

/* What n's queued events say about member `id`: how many times it failed
 * and left, and how many events the queue dropped (a dropped event could
 * have been a failure). Reads the queue empty. */
struct history {
  int failed;
  int left;
  uint64_t dropped;
};

static struct history read_history(cm_enode_t *n, const char *id) {
  struct history h = {0, 0, 0};
  cm_eevent_t ev;
  while (cm_enode_next_event(n, &ev)) {
    if (ev.kind == CM_EEV_DROPPED)
      h.dropped += ev.dropped;
    else if (ev.kind == CM_EEV_MEMBER && strcmp(ev.ev.id, id) == 0) {
      h.failed += ev.ev.type == CM_EV_FAILED;
      h.left += ev.ev.type == CM_EV_LEFT;
    }
  }
  return h;
}

static void lifecycle(double loss) {
  cm_engine_t *e = NULL;
  cm_enode_t *nodes[NODES];
  cm_net_key_t key = test_key();
  uint8_t blob[64];
  size_t blen;
  int i;
  struct want failed = {3, "node-3", CM_STATE_FAILED, 0};
  struct want left = {4, "node-4", CM_STATE_LEFT, 0};
  CM_CHECK_OK(cm_engine_new(&e));
  form_cluster(e, nodes, &key);
  if (loss > 0) {
    cm_net_fault_t f;
    memset(&f, 0, sizeof(f));
    f.drop_out = loss;
    for (i = 0; i < NODES; i++) {
      f.seed = (uint64_t)i + 100;
      CM_CHECK_OK(cm_enode_set_fault(nodes[i], &f));
    }
  }
  /* A tag change reaches everyone. */
  CM_CHECK_OK(
      cm_tags_set(NULL, 0, "role", 4, "worker", 6, blob, sizeof(blob), &blen));
  CM_CHECK_OK(cm_enode_set_tags(nodes[1], blob, blen));
  CM_CHECK(wait_for(tag_seen, nodes, NULL, 20));
  /* Stopped without a leave: failed everywhere. */
  cm_enode_stop(nodes[3]);
  nodes[3] = NULL;
  CM_CHECK(wait_for(all_see, nodes, &failed, 60));
  /* A graceful leave: left everywhere, never failed. The final state alone
   * would not show a failure on the way (failed, then left), so each
   * node's whole event history of node-4 is read: nodes 0-2 have queued
   * every event since node-4 joined (nodes 1 and 2 read theirs only until
   * their own join's result, before node-4 joined). */
  CM_CHECK(cm_enode_leave(nodes[4], 0) > 0);
  CM_CHECK(wait_for(all_see, nodes, &left, 30));
  for (i = 0; i < 3; i++) {
    struct history h = read_history(nodes[i], "node-4");
    CM_CHECK_EQ(h.dropped, 0);
    CM_CHECK_EQ(h.failed, 0);
    CM_CHECK(h.left >= 1);
  }
  for (i = 0; i < 3; i++) {
    char id[16];
    int j;
    snprintf(id, sizeof(id), "node-%d", i);
    for (j = 0; j < 3; j++)
      CM_CHECK_EQ(seen_state(nodes[j], id), CM_STATE_ALIVE);
  }
  cm_engine_free(e);
}

/* User events read so far by each node: how many, and whether each came
 * with its bytes intact. */
struct uev_seen {
  int count[NODES];
  int bad;
};

static int uev_all_have(cm_enode_t **nodes, void *arg) {
  struct uev_seen *u = arg;
  cm_eevent_t ev;
  int i;
  for (i = 0; i < NODES; i++) {
    while (cm_enode_next_event(nodes[i], &ev)) {
      if (ev.kind == CM_EEV_APP && ev.app.kind == CM_APP_EVENT) {
        u->count[i]++;
        if (strcmp(ev.app.name, "deploy") != 0 || ev.app.payload_len != 4 ||
            memcmp(ev.app.payload, "v1.2", 4) != 0 ||
            strcmp(ev.app.node, "node-2") != 0)
          u->bad++;
      }
      cm_eevent_release(&ev);
    }
  }
  for (i = 0; i < NODES; i++)
    if (u->count[i] < 1)
      return 0;
  return 1;
}

/* A user event sent from a caller's thread reaches every node once, with
 * its bytes; events still queued when the engine stops are freed with it
 * (valgrind and ASan check). */
CM_TEST(engine_user_event_reaches_every_node_once) {
  cm_engine_t *e = NULL;
  cm_enode_t *nodes[NODES];
  cm_net_key_t key = test_key();
  struct uev_seen u;
  uint64_t t = 99;
  int i;
  memset(&u, 0, sizeof(u));
  CM_CHECK_OK(cm_engine_new(&e));
  form_cluster(e, nodes, &key);
  CM_CHECK_EQ(cm_enode_send_event(nodes[2], "bad name", 8, NULL, 0, 0, &t),
              CM_EINVAL);
  CM_CHECK_EQ(t, 99);
  CM_CHECK_OK(cm_enode_send_event(nodes[2], "deploy", 6,
                                  (const uint8_t *)"v1.2", 4, 1, &t));
  CM_CHECK(wait_for(uev_all_have, nodes, &u, 30));
  cm_te_nap_ms(300); /* copies still travelling would show as a second */
  uev_all_have(nodes, &u);
  for (i = 0; i < NODES; i++)
    CM_CHECK_EQ(u.count[i], 1);
  CM_CHECK_EQ(u.bad, 0);
  /* Left in the queues: freed by the engine. */
  CM_CHECK_OK(cm_enode_send_event(nodes[0], "deploy", 6,
                                  (const uint8_t *)"v1.3", 4, 0, NULL));
  cm_te_nap_ms(300);
  cm_enode_stop(nodes[4]); /* its queue is freed here, the others' below */
  cm_engine_free(e);
}

CM_TEST(engine_five_nodes_over_quic) { lifecycle(0.0); }

CM_TEST(engine_five_nodes_with_ten_percent_loss) { lifecycle(0.10); }

/* With 10% loss for 60 s, no live node is ever marked failed. */
CM_TEST(engine_loss_causes_no_false_failure) {
  cm_engine_t *e = NULL;
  cm_enode_t *nodes[NODES];
  cm_net_key_t key = test_key();
  cm_net_fault_t f;
  int i, t;
  CM_CHECK_OK(cm_engine_new(&e));
  form_cluster(e, nodes, &key);
  memset(&f, 0, sizeof(f));
  f.drop_out = 0.10;
  for (i = 0; i < NODES; i++) {
    f.seed = (uint64_t)i + 7;
    CM_CHECK_OK(cm_enode_set_fault(nodes[i], &f));
  }
  for (t = 0; t < 60000; t += 100) {
    for (i = 0; i < NODES; i++) {
      cm_enode_stats_t st;
      cm_eevent_t ev;
      while (cm_enode_next_event(nodes[i], &ev))
        if (ev.kind == CM_EEV_MEMBER && ev.ev.type != CM_EV_JOINED)
          fprintf(stderr, "    t=%d ms node-%d sees %s %s inc %u\n", t, i,
                  ev.ev.id, cm_event_name(ev.ev.type), ev.ev.incarnation);
      cm_enode_stats(nodes[i], &st);
      CM_CHECK_EQ(st.node.failed, 0);
    }
    cm_te_nap_ms(100);
  }
  for (i = 0; i < NODES; i++) {
    cm_enode_stats_t st;
    cm_enode_stats(nodes[i], &st);
    CM_CHECK_EQ(st.node.failures_declared, 0);
    CM_CHECK(st.net.drop_fault > 0);
  }
  cm_engine_free(e);
}

CM_TEST(engine_join_timeout_names_no_false_success) {
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *n;
  cm_addr_t nowhere;
  int64_t tok;
  CM_CHECK_OK(cm_engine_new(&e));
  n = start_node(e, 0, &key);
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:9", &nowhere));
  tok = cm_enode_join(n, &nowhere, 1, CM_SEC(2));
  CM_CHECK(tok > 0);
  CM_CHECK_EQ(wait_join(n, tok), CM_ETIMEDOUT);
  cm_engine_free(e);
}

CM_TEST(engine_start_stop_cycles) {
  cm_net_key_t key = test_key();
  int i;
  for (i = 0; i < 1000; i++) {
    cm_engine_t *e = NULL;
    cm_enode_t *n;
    CM_CHECK_OK(cm_engine_new(&e));
    n = start_node(e, i, &key);
    if (i % 2 == 0)
      cm_enode_stop(n);
    cm_engine_free(e);
  }
}

/* A consumer that does not read loses events, never blocks the engine, and
 * is told how many it lost, in order, when it reads again. */
CM_TEST(engine_full_event_queue_reports_drops) {
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *slow, *others[4];
  cm_addr_t seed;
  cm_eevent_t ev;
  int i, joined = 0, waited;
  uint64_t dropped = 0;
  CM_CHECK_OK(cm_engine_new(&e));
  slow = start_node_q(e, 0, &key, 2);
  seed = cm_enode_addr(slow);
  for (i = 0; i < 4; i++) {
    others[i] = start_node(e, i + 1, &key);
    CM_CHECK(cm_enode_join(others[i], &seed, 1, CM_SEC(10)) > 0);
  }
  /* The slow node's registry fills (4 joins) while nobody reads its queue. */
  for (waited = 0; waited < 30000 && cm_te_alive_count(slow) < 5; waited += 20)
    cm_te_nap_ms(20);
  CM_CHECK_EQ(cm_te_alive_count(slow), 5);
  while (cm_enode_next_event(slow, &ev)) {
    if (ev.kind == CM_EEV_DROPPED)
      dropped += ev.dropped;
    else if (ev.kind == CM_EEV_MEMBER && ev.ev.type == CM_EV_JOINED)
      joined++;
  }
  CM_CHECK(dropped > 0);
  CM_CHECK_EQ(joined + (int)dropped, 4);
  {
    cm_enode_stats_t st;
    cm_enode_stats(slow, &st);
    CM_CHECK_EQ(st.events_dropped, dropped);
  }
  cm_engine_free(e);
}

/* A full event queue loses member events, never the result of a join: the
 * joiner's queue holds 2 events and the join merges 4 members at once. The
 * result arrives, after the report of what was dropped before it. */
CM_TEST(engine_full_event_queue_keeps_join_result) {
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *small, *others[4];
  cm_addr_t seed;
  cm_enode_stats_t st;
  struct seen seen;
  int64_t tok;
  int i, status, waited;
  CM_CHECK_OK(cm_engine_new(&e));
  for (i = 0; i < 4; i++)
    others[i] = start_node(e, i, &key);
  seed = cm_enode_addr(others[0]);
  for (i = 1; i < 4; i++) {
    tok = cm_enode_join(others[i], &seed, 1, CM_SEC(10));
    CM_CHECK(tok > 0);
    CM_CHECK_OK(wait_join(others[i], tok));
  }
  for (waited = 0; waited < 30000 && cm_te_alive_count(others[0]) < 4;
       waited += 20)
    cm_te_nap_ms(20);
  CM_CHECK_EQ(cm_te_alive_count(others[0]), 4);
  small = start_node_q(e, 4, &key, 2);
  tok = cm_enode_join(small, &seed, 1, CM_SEC(10));
  CM_CHECK(tok > 0);
  CM_CHECK_EQ(wait_results(small, &tok, &status, 1, &seen), 1);
  CM_CHECK_EQ(status, 0);
  CM_CHECK(seen.dropped > 0); /* reported before the result */
  CM_CHECK(seen.joined <= 2);
  cm_enode_stats(small, &st);
  CM_CHECK(st.events_dropped >= seen.dropped);
  cm_engine_free(e);
}

/* Every join and leave call gets its result, however many are outstanding
 * while nobody reads: the ring grows for them when the calls are made.
 * The first join waits on a seed that never answers until the leave ends
 * it; the others find it under way. */
CM_TEST(engine_results_of_many_calls_all_arrive) {
  enum { JOINS = 20, CALLS = JOINS + 1 };
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *n;
  cm_addr_t nowhere;
  struct seen seen;
  int64_t tok[CALLS];
  int status[CALLS], i;
  CM_CHECK_OK(cm_engine_new(&e));
  n = start_node_q(e, 0, &key, 1);
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:9", &nowhere));
  for (i = 0; i < JOINS; i++)
    tok[i] = cm_enode_join(n, &nowhere, 1, CM_SEC(30));
  tok[JOINS] = cm_enode_leave(n, 0);
  for (i = 0; i < CALLS; i++)
    CM_CHECK(tok[i] > 0);
  CM_CHECK_EQ(wait_results(n, tok, status, CALLS, &seen), CALLS);
  CM_CHECK_EQ(status[0], CM_ECLOSED);
  for (i = 1; i < JOINS; i++)
    CM_CHECK_EQ(status[i], CM_ESTATE);
  CM_CHECK_EQ(status[JOINS], 0);
  cm_engine_free(e);
}

static int fd_readable(int fd) {
  struct pollfd pf = {fd, POLLIN, 0};
  return poll(&pf, 1, 0) == 1;
}

/* Taking the last queued event also clears the eventfd: a consumer that
 * drains until it gets nothing is not woken once more to read it. A second
 * join answered at once (CM_ESTATE) is the last event for 30 s while the
 * first one waits on a port that never answers. */
CM_TEST(engine_last_event_taken_clears_the_eventfd) {
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *n;
  cm_addr_t nowhere;
  cm_eevent_t ev;
  int64_t first, second;
  int fd, got_second = 0;
  uint64_t start;
  CM_CHECK_OK(cm_engine_new(&e));
  n = start_node(e, 0, &key);
  fd = cm_enode_event_fd(n);
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:9", &nowhere));
  first = cm_enode_join(n, &nowhere, 1, CM_SEC(30));
  second = cm_enode_join(n, &nowhere, 1, CM_SEC(30));
  CM_CHECK(first > 0 && second > 0);
  start = cm_te_now_ms();
  while (!got_second && cm_te_now_ms() - start < 20000) {
    if (!cm_enode_next_event(n, &ev)) {
      cm_te_nap_ms(5);
      continue;
    }
    got_second = ev.kind == CM_EEV_JOINED && ev.token == (uint64_t)second;
    cm_eevent_release(&ev);
  }
  CM_CHECK(got_second);
  CM_CHECK(!fd_readable(fd));
  CM_CHECK(!cm_enode_next_event(n, &ev));
  cm_engine_free(e);
}

/* A leave called while one is under way is answered too (CM_ESTATE), and
 * the first one's result follows once the node has stopped. */
CM_TEST(engine_second_leave_is_answered) {
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_enode_t *n;
  struct seen seen;
  int64_t tok[2];
  int status[2];
  CM_CHECK_OK(cm_engine_new(&e));
  n = start_node(e, 0, &key);
  tok[0] = cm_enode_leave(n, 0);
  tok[1] = cm_enode_leave(n, 0);
  CM_CHECK(tok[0] > 0 && tok[1] > 0);
  CM_CHECK_EQ(wait_results(n, tok, status, 2, &seen), 2);
  CM_CHECK_EQ(status[0], 0);
  CM_CHECK_EQ(status[1], CM_ESTATE);
  CM_CHECK(!cm_enode_running(n));
  cm_engine_free(e);
}

/* Descriptors this process has open that `before` does not list, as
 * "fd=link" lines. */
static void fd_list(char *out, size_t len, const char *before) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  size_t used = 0;
  out[0] = '\0';
  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    char path[300], link[200], line[sizeof(de->d_name) + sizeof(link) + 2];
    ssize_t k;
    if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
      continue;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
    k = readlink(path, link, sizeof(link) - 1);
    if (k < 0)
      continue;
    link[k] = '\0';
    snprintf(line, sizeof(line), "%s=%s\n", de->d_name, link);
    if ((before != NULL && strstr(before, line) != NULL) ||
        used + strlen(line) + 1 > len)
      continue;
    memcpy(out + used, line, strlen(line) + 1);
    used += strlen(line);
  }
  closedir(d);
}

/* A fork() child that lives on closes what the engine held in the parent,
 * so the parent can start a node on the same port again. */
#define CHILD_LIFETIME_MS 60000
CM_TEST(engine_forget_after_fork_closes_descriptors) {
  static char before[8192], engine_fds[8192], child_fds[8192];
  cm_engine_t *e = NULL;
  cm_net_key_t key = test_key();
  cm_net_config_t net;
  cm_enode_config_t c;
  cm_enode_t *n, *again = NULL;
  int report[2], hold[2], status;
  ssize_t k;
  size_t used;
  pid_t pid;
  fd_list(before, sizeof(before), NULL);
  CM_CHECK_OK(cm_engine_new(&e));
  n = start_node(e, 0, &key);
  fd_list(engine_fds, sizeof(engine_fds), before);
  CM_CHECK(strstr(engine_fds, "socket:") != NULL);
  CM_CHECK(strstr(engine_fds, "[eventpoll]") != NULL);
  CM_CHECK_OK(pipe(report));
  CM_CHECK_OK(pipe(hold));
  pid = fork();
  CM_CHECK(pid >= 0);
  if (pid == 0) {
    char still[8192];
    struct pollfd pf;
    close(report[0]);
    close(hold[1]);
    cm_engine_forget_after_fork(e);
    fd_list(still, sizeof(still), NULL);
    /* Which of the engine's descriptors are still open, as they were. */
    k = 0;
    for (char *line = strtok(engine_fds, "\n"); line != NULL;
         line = strtok(NULL, "\n"))
      if (strstr(still, line) != NULL)
        k += write(report[1], line, strlen(line)) + write(report[1], " ", 1);
    (void)k;
    close(report[1]);
    /* Alive until the parent closes the pipe, and not much longer. */
    pf.fd = hold[0];
    pf.events = POLLIN;
    (void)poll(&pf, 1, CHILD_LIFETIME_MS);
    cm_test_child_exit(0);
  }
  close(report[1]);
  close(hold[0]);
  used = 0;
  while (used < sizeof(child_fds) - 1 &&
         (k = read(report[0], child_fds + used, sizeof(child_fds) - 1 - used)) >
             0)
    used += (size_t)k;
  child_fds[used] = '\0';
  close(report[0]);
  memset(&c, 0, sizeof(c));
  cm_config_lan(&c.proto);
  cm_net_config_default(&net);
  net.keys = &key;
  net.nkeys = 1;
  c.net = net;
  c.id = "again";
  c.bind = cm_enode_addr(n);
  cm_enode_stop(n);
  status = cm_enode_start(e, &c, &again);
  close(hold[1]);
  waitpid(pid, NULL, 0);
  CM_CHECK_STR(child_fds, "");
  CM_CHECK_OK(status);
  cm_engine_free(e);
}
