/*
 * Transport figures on loopback: cm_net endpoints sharing one libuv loop
 * (one thread runs both ends of every exchange).
 *
 * Usage: net_bench [PINGS]   (default 20000)
 *   - handshake: a datagram to a fresh peer, per mode (key, mtls, none):
 *     time until it is delivered and UDP bytes both ways, over 50 peers;
 *   - probe round trip: a 64-byte DATAGRAM ping answered by a 16-byte pong
 *     over an established connection, PINGS times: median and p99;
 *   - memory per connection: heap and RSS growth for 200 connections,
 *     per connection end.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cm_net.h"

#define HS_PEERS 50
#define MEM_PEERS 200
#define PING_LEN 64 /* about a ping message with its source id and address */
#define PONG_LEN 16 /* about an ack */
#define WAIT_MS 10000

typedef struct ep {
  cm_net_t *net;
  cm_addr_t addr;
  int ndgram;
  int echo; /* answer each datagram with a pong */
  int closed;
} ep_t;

static void on_dgram(void *ud, const cm_addr_t *from, const uint8_t *d,
                     size_t len) {
  ep_t *e = ud;
  static const uint8_t pong[PONG_LEN];
  (void)d;
  (void)len;
  e->ndgram++;
  if (e->echo)
    cm_net_send_datagram(e->net, from, pong, sizeof(pong));
}

static const cm_net_callbacks_t cbs = {.on_datagram = on_dgram};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "%s: %s\n", what, cm_strerror(rc));
  exit(1);
}

static void ep_start(ep_t *e, uv_loop_t *loop, const cm_net_config_t *cfg) {
  cm_addr_t any;
  int rc;
  memset(e, 0, sizeof(*e));
  cm_addr_parse("127.0.0.1:1", &any);
  any.port = 0;
  if ((rc = cm_net_new(&e->net, loop, &any, cfg, &cbs, e)) != 0)
    die("cm_net_new", rc);
  cm_net_local_addr(e->net, &e->addr);
}

static void ep_closed(void *arg) { ((ep_t *)arg)->closed = 1; }

static void ep_close_all(uv_loop_t *loop, ep_t *eps, int n) {
  int i, open = n;
  for (i = 0; i < n; i++)
    cm_net_close(eps[i].net, ep_closed, &eps[i]);
  while (open > 0) {
    uv_run(loop, UV_RUN_ONCE);
    for (open = 0, i = 0; i < n; i++)
      open += !eps[i].closed;
  }
}

/* Run the loop until *p >= want or WAIT_MS pass. */
static int wait_ge(uv_loop_t *loop, const int *p, int want) {
  uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000u;
  while (*p < want) {
    if (now_ns() > end)
      return 0;
    uv_run(loop, UV_RUN_NOWAIT);
  }
  return 1;
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

static uint64_t bytes_both(ep_t *a, ep_t *b) {
  cm_net_stats_t sa, sb;
  cm_net_stats(a->net, &sa);
  cm_net_stats(b->net, &sb);
  return sa.bytes_out + sb.bytes_out;
}

static cm_net_key_t bench_key;

static void cfg_for(cm_net_config_t *cfg, int mode, const char *dir) {
  static char ca[256], cert[256], key[256];
  cm_net_config_default(cfg);
  cfg->max_connections = 1024;
  if (mode == 0) {
    bench_key.id = 1;
    memset(bench_key.key, 0x42, sizeof(bench_key.key));
    cfg->keys = &bench_key;
    cfg->nkeys = 1;
  } else if (mode == 1) {
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cert, sizeof(cert), "%s/n.pem", dir);
    snprintf(key, sizeof(key), "%s/n.key", dir);
    cfg->auth = CM_AUTH_MTLS;
    cfg->ca_file = ca;
    cfg->cert_file = cert;
    cfg->key_file = key;
  } else {
    cfg->auth = CM_AUTH_NONE;
  }
}

static void bench_handshakes(const char *dir) {
  static const char *names[] = {"key", "mtls", "none"};
  int m, i;
  for (m = 0; m < 3; m++) {
    uv_loop_t loop;
    cm_net_config_t cfg;
    ep_t eps[HS_PEERS + 1];
    uint64_t us[HS_PEERS], bytes[HS_PEERS];
    uv_loop_init(&loop);
    cfg_for(&cfg, m, dir);
    for (i = 0; i <= HS_PEERS; i++)
      ep_start(&eps[i], &loop, &cfg);
    for (i = 0; i < HS_PEERS; i++) {
      ep_t *b = &eps[i + 1];
      uint64_t b0 = bytes_both(&eps[0], b), t0 = now_ns();
      cm_net_send_datagram(eps[0].net, &b->addr, (const uint8_t *)"x", 1);
      if (!wait_ge(&loop, &b->ndgram, 1)) {
        fprintf(stderr, "%s: handshake %d timed out\n", names[m], i);
        exit(1);
      }
      us[i] = (now_ns() - t0) / 1000u;
      /* Let the last ACKs and HANDSHAKE_DONE land before counting. */
      {
        uint64_t end = now_ns() + 20000000u;
        while (now_ns() < end)
          uv_run(&loop, UV_RUN_NOWAIT);
      }
      bytes[i] = bytes_both(&eps[0], b) - b0;
    }
    qsort(us, HS_PEERS, sizeof(us[0]), cmp_u64);
    qsort(bytes, HS_PEERS, sizeof(bytes[0]), cmp_u64);
    printf("handshake %-4s: first datagram delivered median %llu us "
           "(p10 %llu, p90 %llu); UDP bytes both ways median %llu\n",
           names[m], (unsigned long long)us[HS_PEERS / 2],
           (unsigned long long)us[HS_PEERS / 10],
           (unsigned long long)us[HS_PEERS * 9 / 10],
           (unsigned long long)bytes[HS_PEERS / 2]);
    ep_close_all(&loop, eps, HS_PEERS + 1);
    uv_loop_close(&loop);
  }
}

static void bench_rtt(int pings) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  ep_t eps[2];
  uint8_t ping[PING_LEN];
  uint64_t *ns = malloc((size_t)pings * sizeof(*ns));
  int i;
  uv_loop_init(&loop);
  cfg_for(&cfg, 0, NULL);
  ep_start(&eps[0], &loop, &cfg);
  ep_start(&eps[1], &loop, &cfg);
  eps[1].echo = 1;
  memset(ping, 0xab, sizeof(ping));
  cm_net_send_datagram(eps[0].net, &eps[1].addr, ping, sizeof(ping));
  if (!wait_ge(&loop, &eps[0].ndgram, 1))
    exit(1);
  for (i = 0; i < pings; i++) {
    uint64_t t0 = now_ns();
    int want = eps[0].ndgram + 1;
    cm_net_send_datagram(eps[0].net, &eps[1].addr, ping, sizeof(ping));
    if (!wait_ge(&loop, &eps[0].ndgram, want)) {
      fprintf(stderr, "ping %d lost\n", i);
      exit(1);
    }
    ns[i] = now_ns() - t0;
  }
  qsort(ns, (size_t)pings, sizeof(ns[0]), cmp_u64);
  printf("probe round trip (%d-byte ping, %d-byte pong, %d pings): median "
         "%.1f us, p99 %.1f us, max %.1f us\n",
         PING_LEN, PONG_LEN, pings, ns[pings / 2] / 1000.0,
         ns[pings * 99 / 100] / 1000.0, ns[pings - 1] / 1000.0);
  free(ns);
  ep_close_all(&loop, eps, 2);
  uv_loop_close(&loop);
}

static void bench_memory(void) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  ep_t *eps = calloc(MEM_PEERS + 1, sizeof(*eps));
  size_t heap0, heap1;
  long rss0, rss1;
  int i;
  uv_loop_init(&loop);
  cfg_for(&cfg, 0, NULL);
  for (i = 0; i <= MEM_PEERS; i++)
    ep_start(&eps[i], &loop, &cfg);
  malloc_trim(0);
  heap0 = mallinfo2().uordblks;
  rss0 = rss_kib();
  for (i = 1; i <= MEM_PEERS; i++) {
    cm_net_send_datagram(eps[0].net, &eps[i].addr, (const uint8_t *)"x", 1);
    if (!wait_ge(&loop, &eps[i].ndgram, 1))
      exit(1);
  }
  heap1 = mallinfo2().uordblks;
  rss1 = rss_kib();
  printf("memory: %d connections (both ends in this process): heap %.1f KiB "
         "per connection end, RSS %.1f KiB per connection end\n",
         MEM_PEERS, (double)(heap1 - heap0) / 1024.0 / (2 * MEM_PEERS),
         (double)(rss1 - rss0) / (2 * MEM_PEERS));
  ep_close_all(&loop, eps, MEM_PEERS + 1);
  uv_loop_close(&loop);
  free(eps);
}

int main(int argc, char **argv) {
  char dir[] = "/tmp/cm_net_bench_XXXXXX", p[3][256];
  int pings = argc > 1 ? atoi(argv[1]) : 20000;
  if (mkdtemp(dir) == NULL)
    return 1;
  snprintf(p[0], sizeof(p[0]), "%s/ca.pem", dir);
  snprintf(p[1], sizeof(p[1]), "%s/ca.key", dir);
  cm_net_gen_ca(p[0], p[1], "bench-ca", 1);
  snprintf(p[2], sizeof(p[2]), "%s/n.pem", dir);
  {
    char k[256];
    snprintf(k, sizeof(k), "%s/n.key", dir);
    if (cm_net_gen_cert(p[0], p[1], p[2], k, "bench", 1) != 0)
      return 1;
    bench_handshakes(dir);
    unlink(k);
  }
  unlink(p[0]);
  unlink(p[1]);
  unlink(p[2]);
  rmdir(dir);
  bench_rtt(pings);
  bench_memory();
  return 0;
}
