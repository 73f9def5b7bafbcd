/*
 * One clustermember node in its own process, for cluster benchmarks
 * (bench/engine_bench.py starts N of them on 127.0.0.1).
 *
 * Usage: cm_node_run ID PORT SEED|- POOL SECONDS
 *   ID       node id
 *   PORT     UDP port on 127.0.0.1
 *   SEED     host:port to join through, or "-" to start alone
 *   POOL     connection pool bound (0: the default, 512)
 *   SECONDS  run this long, then stop (without leaving) and exit
 *
 * Cluster-key mode, LAN profile. Prints one JSON object per second on
 * stdout: time since start, registry counts and the cumulative stats the
 * benchmark takes deltas of.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_engine.h"

#define RUN_REPORT_MS 1000
#define RUN_JOIN_TIMEOUT CM_SEC(60)

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(cm_enode_t *n, double t, int joined) {
  cm_enode_stats_t st;
  cm_enode_stats(n, &st);
  printf("{\"t\": %.3f, \"joined\": %d, \"members\": %u, \"alive\": %u, "
         "\"suspect\": %u, \"failed\": %u, "
         "\"bytes_in\": %llu, \"bytes_out\": %llu, "
         "\"packets_in\": %llu, \"packets_out\": %llu, "
         "\"control_packets_out\": %llu, \"control_bytes_out\": %llu, "
         "\"core_bytes_out\": %llu, "
         "\"datagrams_out\": %llu, \"msgs_out\": %llu, "
         "\"handshakes_ok\": %llu, \"handshakes_failed\": %llu, "
         "\"conns_open\": %llu, \"conns_evicted\": %llu, "
         "\"conns_timed_out\": %llu, \"pushpull_out\": %llu, "
         "\"probes\": %llu, \"probe_failures\": %llu, "
         "\"suspicions\": %llu, \"failures_declared\": %llu, "
         "\"send_errors\": %llu}\n",
         t, joined, st.node.members, st.node.alive, st.node.suspect,
         st.node.failed, (unsigned long long)st.net.bytes_in,
         (unsigned long long)st.net.bytes_out,
         (unsigned long long)st.net.packets_in,
         (unsigned long long)st.net.packets_out,
         (unsigned long long)st.net.control_packets_out,
         (unsigned long long)st.net.control_bytes_out,
         (unsigned long long)st.node.bytes_out,
         (unsigned long long)st.net.datagrams_out,
         (unsigned long long)st.node.msgs_out,
         (unsigned long long)st.net.handshakes_ok,
         (unsigned long long)st.net.handshakes_failed,
         (unsigned long long)st.net.conns_open,
         (unsigned long long)st.net.conns_evicted,
         (unsigned long long)st.net.conns_timed_out,
         (unsigned long long)st.node.pushpull_out,
         (unsigned long long)st.node.probes,
         (unsigned long long)st.node.probe_failures,
         (unsigned long long)st.node.suspicions,
         (unsigned long long)st.node.failures_declared,
         (unsigned long long)st.send_errors);
  fflush(stdout);
}

int main(int argc, char **argv) {
  cm_engine_t *e = NULL;
  cm_enode_t *n = NULL;
  cm_enode_config_t c;
  cm_net_key_t key;
  cm_addr_t seed;
  double t0, seconds, next;
  int joined = 0, rc;
  int64_t token = 0;

  if (argc != 6) {
    fprintf(stderr, "usage: %s ID PORT SEED|- POOL SECONDS\n", argv[0]);
    return 2;
  }
  memset(&c, 0, sizeof(c));
  cm_config_lan(&c.proto);
  cm_net_config_default(&c.net);
  key.id = 1;
  memset(key.key, 0x42, sizeof(key.key));
  c.net.keys = &key;
  c.net.nkeys = 1;
  if (atoi(argv[4]) > 0) {
    c.net.max_connections = (uint32_t)atoi(argv[4]);
    /* The half-open table must stay below the pool. */
    c.net.max_half_open =
        c.net.max_connections > 1 ? c.net.max_connections - 1 : 1;
  }
  c.id = argv[1];
  if (cm_addr_parse("127.0.0.1:1", &c.bind) != 0)
    return 2;
  c.bind.port = (uint16_t)atoi(argv[2]);
  c.seed = (uint64_t)c.bind.port;
  memcpy(c.net.static_secret, &c.seed, sizeof(c.seed));
  seconds = atof(argv[5]);

  if ((rc = cm_engine_new(&e)) != 0 || (rc = cm_enode_start(e, &c, &n)) != 0) {
    fprintf(stderr, "start: %s\n", cm_strerror(rc));
    return 1;
  }
  if (strcmp(argv[3], "-") == 0) {
    joined = 1;
  } else {
    if (cm_addr_parse(argv[3], &seed) != 0) {
      fprintf(stderr, "bad seed address %s\n", argv[3]);
      return 2;
    }
    token = cm_enode_join(n, &seed, 1, RUN_JOIN_TIMEOUT);
    if (token < 0) {
      fprintf(stderr, "join: %s\n", cm_strerror((int)token));
      return 1;
    }
  }
  t0 = now_sec();
  next = t0 + RUN_REPORT_MS / 1000.0;
  while (now_sec() - t0 < seconds) {
    cm_eevent_t ev;
    struct timespec nap = {0, 10 * 1000000L};
    while (cm_enode_next_event(n, &ev))
      if (ev.kind == CM_EEV_JOINED && ev.token == (uint64_t)token) {
        if (ev.status != 0)
          fprintf(stderr, "join failed: %s\n", cm_strerror(ev.status));
        joined = ev.status == 0;
      }
    if (now_sec() >= next) {
      report(n, now_sec() - t0, joined);
      next += RUN_REPORT_MS / 1000.0;
    }
    nanosleep(&nap, NULL);
  }
  report(n, now_sec() - t0, joined);
  cm_engine_free(e);
  return 0;
}
