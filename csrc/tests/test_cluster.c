/*
 * Whole small clusters of core nodes over the simulator's in-memory network:
 * probe -> suspect -> failed, refutation, leave and tag dissemination, end to
 * end, with no sockets.
 */
#include "cm_sim.h"
#include "cm_test.h"

struct watch {
  uint32_t n;
  uint32_t target;
  uint8_t state;
};

static int all_alive(cm_sim_t *s, void *ud) {
  uint32_t n = cm_sim_size(s), i;
  (void)ud;
  for (i = 0; i < n; i++) {
    cm_node_stats_t st;
    cm_node_t *node = cm_sim_node(s, i);
    if (node == NULL)
      continue;
    cm_node_stats(node, &st);
    if (st.alive != n)
      return 0;
  }
  return 1;
}

/* Every up node other than the target sees it in the wanted state. */
static int others_see(cm_sim_t *s, void *ud) {
  struct watch *w = ud;
  uint32_t up = 0, i;
  for (i = 0; i < w->n; i++)
    if (i != w->target && cm_sim_is_up(s, i))
      up++;
  return cm_sim_count_seeing(s, w->target, w->state) >= up;
}

/* The first up node whose hand-kept counts and lists do not match its
 * member table: 1 with *node and *what filled, or 0. */
static int broken_node(cm_sim_t *s, uint32_t *node, const char **what) {
  uint32_t i;
  for (i = 0; i < cm_sim_size(s); i++)
    if (cm_sim_is_up(s, i) &&
        cm_node_check_invariants(cm_sim_node(s, i), what) != 0) {
      *node = i;
      return 1;
    }
  return 0;
}

static void check_nodes_at(cm_sim_t *s, const char *file, int line) {
  uint32_t node;
  const char *what;
  if (broken_node(s, &node, &what))
    cm_test_fail(file, line, "n%u at %llu us: %s", node,
                 (unsigned long long)cm_sim_now(s), what ? what : "?");
}

/* Every up node's counts match its table. */
#define CHECK_NODES(s) check_nodes_at((s), __FILE__, __LINE__)

/* A test's end: the counts still match, and the simulation is freed. */
#define SIM_DONE(s)                                                            \
  do {                                                                         \
    CHECK_NODES(s);                                                            \
    cm_sim_free(s);                                                            \
  } while (0)

static cm_sim_t *formed_cluster(uint32_t n, uint64_t seed) {
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  uint32_t i;
  cm_sim_config_default(&c);
  c.nodes = n;
  c.seed = seed;
  CM_CHECK_OK(cm_sim_new(&s, &c));
  for (i = 1; i < n; i++)
    CM_CHECK_OK(cm_sim_join(s, i, 0));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), all_alive, NULL));
  return s;
}

CM_TEST(cluster_forms) {
  cm_sim_t *s = formed_cluster(5, 1);
  SIM_DONE(s);
}

struct ev_log {
  uint32_t suspect[8], failed[8];
  cm_time_t first_suspect, first_failed;
};

static void log_events(void *ud, uint32_t node, const cm_event_t *ev) {
  struct ev_log *l = ud;
  if (strcmp(ev->id, "n3") != 0 || node >= 8)
    return;
  if (ev->type == CM_EV_SUSPECT) {
    l->suspect[node]++;
    if (l->first_suspect == 0)
      l->first_suspect = ev->time;
  } else if (ev->type == CM_EV_FAILED) {
    l->failed[node]++;
    if (l->first_failed == 0)
      l->first_failed = ev->time;
  }
}

CM_TEST(cluster_detects_crash) {
  cm_sim_t *s = formed_cluster(5, 2);
  struct watch w = {5, 3, CM_STATE_FAILED};
  struct watch alive = {5, 3, CM_STATE_ALIVE};
  struct ev_log log;
  uint32_t i;
  memset(&log, 0, sizeof(log));
  cm_sim_on_event(s, log_events, &log);
  CM_CHECK(others_see(s, &alive));
  CM_CHECK_OK(cm_sim_crash(s, 3));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(60), others_see, &w));
  /* probe -> suspect -> failed: everyone went through suspect first, and
   * the verdict waited at least the suspicion minimum. */
  for (i = 0; i < 5; i++)
    if (i != 3) {
      CM_CHECK_EQ(log.suspect[i], 1);
      CM_CHECK_EQ(log.failed[i], 1);
    }
  CM_CHECK(log.first_failed - log.first_suspect >=
           cm_suspicion_min(cm_node_config(cm_sim_node(s, 0)), 4));
  /* And nobody else was hurt on the way. */
  for (i = 0; i < 5; i++)
    if (i != 3)
      CM_CHECK_EQ(cm_sim_count_seeing(s, i, CM_STATE_ALIVE), 4);
  SIM_DONE(s);
}

/* Lifeguard's nacks tell a prober that the target, not itself, is the
 * trouble: at every profile a crash found by probes costs no survivor any
 * of its health, and every nack arrives while its probe is still open. */
CM_TEST(cluster_crash_costs_no_prober_its_health_at_every_profile) {
  void (*profiles[])(cm_config_t *) = {cm_config_lan, cm_config_wan,
                                       cm_config_local};
  size_t pi;
  for (pi = 0; pi < sizeof(profiles) / sizeof(profiles[0]); pi++) {
    cm_sim_config_t sc;
    cm_sim_t *s = NULL;
    struct watch w = {8, 3, CM_STATE_FAILED};
    uint64_t nacks = 0, stale = 0;
    uint32_t i, worst = 0;
    cm_time_t end;
    cm_sim_config_default(&sc);
    profiles[pi](&sc.node);
    sc.nodes = 8;
    sc.seed = 11;
    CM_CHECK_OK(cm_sim_new(&s, &sc));
    for (i = 1; i < 8; i++)
      CM_CHECK_OK(cm_sim_join(s, i, 0));
    CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(120), all_alive, NULL));
    cm_sim_run_until(s, cm_sim_now(s) + 4 * sc.node.probe_interval);
    CM_CHECK_OK(cm_sim_crash(s, 3));
    end = cm_sim_now(s) + CM_SEC(300);
    while (!others_see(s, &w) && cm_sim_now(s) < end) {
      cm_sim_run_until(s, cm_sim_now(s) + sc.node.probe_interval / 10);
      for (i = 0; i < 8; i++)
        if (i != 3) {
          cm_node_stats_t st;
          cm_node_stats(cm_sim_node(s, i), &st);
          if (st.health > worst)
            worst = st.health;
        }
    }
    CM_CHECK(others_see(s, &w));
    for (i = 0; i < 8; i++)
      if (i != 3) {
        cm_node_stats_t st;
        cm_node_stats(cm_sim_node(s, i), &st);
        nacks += st.nacks_in;
        stale += st.drop_stale;
      }
    CM_CHECK(nacks > 0);
    CM_CHECK_EQ(stale, 0);
    CM_CHECK_EQ(worst, 0);
    SIM_DONE(s);
  }
}

CM_TEST(cluster_leave_is_left_not_failed) {
  cm_sim_t *s = formed_cluster(5, 3);
  struct watch w = {5, 4, CM_STATE_LEFT};
  CM_CHECK_OK(cm_sim_leave(s, 4));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), others_see, &w));
  /* Long after, still left: the failure detector must not relabel it. */
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(60));
  CM_CHECK_EQ(cm_sim_count_seeing(s, 4, CM_STATE_LEFT), 4);
  CM_CHECK_EQ(cm_sim_count_seeing(s, 4, CM_STATE_FAILED), 0);
  SIM_DONE(s);
}

static int tag_seen_everywhere(cm_sim_t *s, void *ud) {
  uint32_t n = cm_sim_size(s), i;
  (void)ud;
  for (i = 0; i < n; i++) {
    cm_member_info_t info;
    cm_tag_t t;
    if (!cm_node_member_find(cm_sim_node(s, i), "n2", &info, cm_sim_now(s)))
      return 0;
    if (!cm_tags_get(info.tags, info.tags_len, "role", 4, &t) ||
        t.value_len != 6 || memcmp(t.value, "worker", 6) != 0)
      return 0;
  }
  return 1;
}

CM_TEST(cluster_tag_disseminates) {
  cm_sim_t *s = formed_cluster(8, 4);
  CM_CHECK_OK(cm_sim_set_tag(s, 2, "role", "worker"));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(10), tag_seen_everywhere,
                           NULL));
  SIM_DONE(s);
}

CM_TEST(cluster_paused_node_refutes) {
  cm_sim_t *s = formed_cluster(5, 5);
  cm_member_info_t info;
  uint32_t inc0;
  struct watch w = {5, 1, CM_STATE_ALIVE};
  const cm_config_t *c = cm_node_config(cm_sim_node(s, 0));
  cm_time_t end;
  int pauses = 0;
  CM_CHECK(cm_node_member_find(cm_sim_node(s, 1), "n1", &info, 0));
  inc0 = info.incarnation;
  /* Paused for a probe period and half the suspicion's minimum: a probe
   * sent in its first half fails, so it is suspected; no verdict can come
   * before a period and the whole minimum, and it refutes when it
   * resumes. Again until it has had to refute (at most 20 times); nobody
   * holds it failed at any moment. */
  do {
    CM_CHECK(pauses++ < 20);
    CM_CHECK_OK(
        cm_sim_pause(s, 1, c->probe_interval + cm_suspicion_min(c, 5) / 2));
    end = cm_sim_now(s) + CM_SEC(10);
    while (cm_sim_now(s) < end) {
      cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(20));
      CM_CHECK_EQ(cm_sim_count_seeing(s, 1, CM_STATE_FAILED), 0);
    }
    CM_CHECK(cm_node_member_find(cm_sim_node(s, 1), "n1", &info, 0));
  } while (info.incarnation == inc0);
  CM_CHECK(others_see(s, &w));
  CM_CHECK_EQ(cm_sim_count_seeing(s, 1, CM_STATE_FAILED), 0);
  CM_CHECK(cm_node_member_find(cm_sim_node(s, 1), "n1", &info, 0));
  CM_CHECK(info.incarnation > inc0);
  SIM_DONE(s);
}

/* Stalls and suspicions summed over the up nodes, and the most stalls any
 * one node counted other than `except`. */
struct stall_sum {
  uint64_t stalls, suspicions, stalls_elsewhere;
};

static struct stall_sum stall_sum(cm_sim_t *s, uint32_t except) {
  struct stall_sum r = {0, 0, 0};
  uint32_t i;
  for (i = 0; i < cm_sim_size(s); i++) {
    cm_node_stats_t st;
    if (!cm_sim_is_up(s, i))
      continue;
    cm_node_stats(cm_sim_node(s, i), &st);
    r.stalls += st.stalls;
    r.suspicions += st.suspicions;
    if (i != except)
      r.stalls_elsewhere += st.stalls;
  }
  return r;
}

/* The simulator ticks each node at its own deadline, as a real driver does.
 * Tag changes at times off every timer's grid bring news to nodes whose
 * gossip timer was idle for a while: that is no stall, and nobody is
 * suspected. */
CM_TEST(cluster_news_off_the_tick_grid_is_no_stall) {
  cm_sim_t *s = formed_cluster(8, 6);
  struct stall_sum before = stall_sum(s, UINT32_MAX), after;
  uint32_t i, past = 0;
  for (i = 0; i < 40; i++) {
    char v[16];
    /* 0.3 to 1.3 s apart, never a whole number of milliseconds. */
    cm_sim_run_until(s, cm_sim_now(s) + CM_MSEC(300) +
                            CM_USEC(1 + (i * 7919) % 1000000));
    snprintf(v, sizeof(v), "v%u", i);
    CM_CHECK_OK(cm_sim_set_tag(s, i % 8, "rev", v));
    /* The news is due to go out now, not at a time already past. */
    if (cm_node_next_deadline(cm_sim_node(s, i % 8)) < cm_sim_now(s))
      past++;
  }
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(10));
  after = stall_sum(s, UINT32_MAX);
  CM_CHECK_EQ(after.stalls - before.stalls, 0);
  CM_CHECK_EQ(after.suspicions - before.suspicions, 0);
  CM_CHECK_EQ(past, 0);
  SIM_DONE(s);
}

/* A node the driver does not run for several probe periods notices when it
 * resumes; the others, which kept running, do not. */
CM_TEST(cluster_paused_node_counts_its_stall) {
  cm_sim_t *s = formed_cluster(5, 7);
  struct stall_sum r;
  cm_node_stats_t st;
  CM_CHECK_OK(cm_sim_pause(s, 2, CM_SEC(3)));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(10));
  cm_node_stats(cm_sim_node(s, 2), &st);
  CM_CHECK_EQ(st.stalls, 1);
  r = stall_sum(s, 2);
  CM_CHECK_EQ(r.stalls_elsewhere, 0);
  SIM_DONE(s);
}

/* ---- A node of a newer protocol version among version-1 nodes ---- */

#define V2_TYPE 0x40 /* a message type version 1 does not know */
#define V2_FLAG 0x80 /* a push-pull flag bit version 1 does not know */

/* Stands in for a build of one node of the next version (V_NEXT, past
 * every version this build speaks): every packet it sends goes out as
 * V_NEXT and leads with a message of V2_TYPE; its push-pulls carry V2_FLAG;
 * it advertises versions 1..V_NEXT with one byte of a field V_NEXT adds. */
#define V_NEXT (CM_WIRE_VERSION_MAX + 1)
struct v2 {
  uint32_t node;
  char id[CM_ID_MAX + 1];
  uint64_t packets, trimmed, streams;
};

static const uint8_t V2_LATER[] = {0xab};

static void v2_ext(const struct v2 *v, const cm_wire_id_t *id,
                   cm_wire_ext_t *x) {
  if (strcmp(id->s, v->id) != 0)
    return;
  x->vmin = 1;
  x->vmax = V_NEXT;
  x->rest = V2_LATER;
  x->rest_len = sizeof(V2_LATER);
}

static size_t v2_packet(struct v2 *v, const uint8_t *in, size_t len,
                        uint8_t *out, size_t cap) {
  static const uint8_t hello[] = {'v', '2'};
  cm_msg_t msgs[CM_WIRE_MAX_MSGS], extra;
  cm_wbuf_t w = {out, 0, cap};
  size_t count, i;
  CM_CHECK_OK(cm_wire_packet_decode(in, len, msgs, CM_WIRE_MAX_MSGS, &count));
  memset(&extra, 0, sizeof(extra));
  extra.type = V2_TYPE;
  extra.u.raw.body = hello;
  extra.u.raw.len = sizeof(hello);
  CM_CHECK_OK(cm_wire_packet_begin_version(&w, V_NEXT));
  CM_CHECK_OK(cm_wire_packet_add(&w, &extra));
  for (i = 0; i < count; i++) {
    if (msgs[i].type == CM_MSG_ALIVE)
      v2_ext(v, &msgs[i].u.alive.node, &msgs[i].u.alive.ext);
    /* A full packet loses its last gossip, which later packets carry. */
    if (cm_wire_packet_add(&w, &msgs[i]) != 0) {
      v->trimmed++;
      break;
    }
  }
  v->packets++;
  return w.len;
}

static size_t v2_pushpull(struct v2 *v, const uint8_t *in, size_t len,
                          uint8_t *out, size_t cap) {
  cm_pp_header_t h;
  cm_pp_entry_t e;
  cm_wbuf_t w = {out, 0, cap};
  size_t off = 0;
  CM_CHECK_OK(cm_wire_pp_decode(in, len, &h));
  CM_CHECK(h.flags & CM_PP_FLAG_EXT);
  CM_CHECK_OK(cm_wire_pp_begin_version(&w, V_NEXT, h.kind,
                                       (uint8_t)(h.flags | V2_FLAG)));
  while (cm_wire_pp_next(in, len, &off, &e)) {
    v2_ext(v, &e.node, &e.ext);
    CM_CHECK_OK(cm_wire_pp_add(&w, &e));
  }
  CM_CHECK_OK(cm_wire_pp_finish(&w));
  v->streams++;
  return w.len;
}

static size_t v2_rewrite(void *ud, uint32_t node, int stream, const uint8_t *in,
                         size_t len, uint8_t *out, size_t cap) {
  struct v2 *v = ud;
  if (node != v->node) {
    CM_CHECK(len <= cap);
    memcpy(out, in, len);
    return len;
  }
  return stream ? v2_pushpull(v, in, len, out, cap)
                : v2_packet(v, in, len, out, cap);
}

CM_TEST(cluster_with_a_version_2_node_stays_whole) {
  struct v2 v;
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  uint32_t n = 5, i;
  cm_sim_config_default(&c);
  c.nodes = n;
  c.seed = 14;
  memset(&v, 0, sizeof(v));
  v.node = 2;
  cm_sim_id(v.node, v.id, sizeof(v.id));
  CM_CHECK_OK(cm_sim_new(&s, &c));
  cm_sim_on_send(s, v2_rewrite, &v);
  for (i = 1; i < n; i++)
    CM_CHECK_OK(cm_sim_join(s, i, 0));
  CM_CHECK(cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(30), all_alive, NULL));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(120));
  CM_CHECK(v.packets > 100);
  CM_CHECK(v.streams > 0);
  for (i = 0; i < n; i++) {
    cm_node_t *node = cm_sim_node(s, i);
    cm_member_info_t info;
    cm_node_stats_t st;
    cm_node_stats(node, &st);
    CM_CHECK_EQ(st.alive, n);
    CM_CHECK_EQ(st.suspicions, 0);
    CM_CHECK_EQ(st.drop_malformed, 0);
    CM_CHECK_EQ(st.drop_pushpull, 0);
    if (i == v.node) {
      CM_CHECK_EQ(st.skipped_unknown, 0);
      continue;
    }
    CM_CHECK(st.skipped_unknown > 0);
    CM_CHECK(cm_node_member_find(node, v.id, &info, cm_sim_now(s)));
    CM_CHECK_EQ(info.proto_min, 1);
    CM_CHECK_EQ(info.proto_max, V_NEXT);
    CM_CHECK(cm_node_member_find(node, cm_node_id(cm_sim_node(s, 0)), &info,
                                 cm_sim_now(s)));
    CM_CHECK_EQ(info.proto_min, CM_WIRE_VERSION_MIN);
    CM_CHECK_EQ(info.proto_max, CM_WIRE_VERSION_MAX);
  }
  SIM_DONE(s);
}

/* ---- The hand-kept counts, checked after every step of a busy run ---- */

struct broken {
  uint32_t node;
  const char *what;
};

static int counts_broken(cm_sim_t *s, void *ud) {
  struct broken *b = ud;
  return broken_node(s, &b->node, &b->what);
}

/* Run to `until`, checking every up node after every step. */
static void run_checked_at(cm_sim_t *s, cm_time_t until, const char *file,
                           int line) {
  struct broken b = {0, NULL};
  if (cm_sim_run_cond(s, until, counts_broken, &b))
    cm_test_fail(file, line, "n%u at %llu us: %s", b.node,
                 (unsigned long long)cm_sim_now(s), b.what ? b.what : "?");
}

#define RUN_CHECKED(s, secs)                                                   \
  run_checked_at((s), cm_sim_now(s) + CM_SEC(secs), __FILE__, __LINE__)

/* Joins through different seeds, loss, crashes and their suspicions and
 * failures, a pause and its refutation, tag changes, a partition that
 * heals by reconnecting, a leave, reaping of the left and the failed, a
 * crashed node restarted, and heavy loss: after each step of every node,
 * each up node's per-state counts, suspect list, probe order,
 * broadcast queue and output queues match its member table. */
CM_TEST(node_counters_match_the_table) {
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  uint32_t n = 12, i;
  uint8_t side[12];
  cm_node_stats_t st;
  cm_sim_config_default(&c);
  c.nodes = n;
  c.seed = 21;
  c.loss = 0.02;
  c.node.reconnect_timeout = CM_SEC(40);
  c.node.reap_left_after = CM_SEC(30);
  CM_CHECK_OK(cm_sim_new(&s, &c));
  for (i = 1; i < n; i++)
    CM_CHECK_OK(cm_sim_join(s, i, i < 4 ? 0 : i % 4));
  RUN_CHECKED(s, 20);
  CM_CHECK(all_alive(s, NULL));
  CM_CHECK_OK(cm_sim_set_tag(s, 3, "role", "db"));
  CM_CHECK_OK(cm_sim_crash(s, 5));
  CM_CHECK_OK(cm_sim_pause(s, 7, CM_SEC(3)));
  RUN_CHECKED(s, 30);
  CM_CHECK(cm_sim_count_seeing(s, 5, CM_STATE_FAILED) > 0);
  for (i = 0; i < n; i++)
    side[i] = i < n / 2;
  CM_CHECK_OK(cm_sim_partition(s, side, cm_sim_now(s) + CM_SEC(1),
                               cm_sim_now(s) + CM_SEC(25), 0));
  RUN_CHECKED(s, 40);
  CM_CHECK_OK(cm_sim_leave(s, 9));
  RUN_CHECKED(s, 10);
  CM_CHECK(cm_sim_count_seeing(s, 9, CM_STATE_LEFT) > 0);
  CM_CHECK_OK(cm_sim_restart(s, 5, 0));
  CM_CHECK_OK(cm_sim_crash(s, 11));
  CM_CHECK_OK(cm_sim_set_tag(s, 0, "role", "seed"));
  RUN_CHECKED(s, 90);
  /* Left and failed members were reaped on the way. */
  cm_node_stats(cm_sim_node(s, 0), &st);
  CM_CHECK(cm_sim_count_seeing(s, 9, CM_STATE_LEFT) == 0);
  CM_CHECK(cm_sim_count_seeing(s, 11, CM_STATE_FAILED) == 0);
  CM_CHECK(st.members < n);
  cm_sim_set_loss(s, 0.3);
  CM_CHECK_OK(cm_sim_pause(s, 2, CM_SEC(10)));
  RUN_CHECKED(s, 60);
  cm_node_stats(cm_sim_node(s, 0), &st);
  CM_CHECK(st.suspicions > 0);
  SIM_DONE(s);
}
