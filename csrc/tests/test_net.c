/*
 * cm_net over real sockets on 127.0.0.1 (ephemeral ports), every endpoint
 * on one libuv loop. Each wait runs the loop until a condition holds or a
 * deadline passes; a test fails rather than hangs.
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cm_net.h"
#include "cm_net_int.h"
#include "cm_test.h"
#include "cm_test_net.h"

#define T_WAIT_MS 5000
#define T_MAX_NODES 8

typedef struct tnode {
  cm_net_t *net;
  cm_addr_t addr;
  int ndgram;
  cm_addr_t last_from;
  size_t last_len;
  uint8_t last[CM_NET_DATAGRAM_MAX];
  int nreq;
  int no_reply;     /* leave requests unanswered */
  size_t reply_len; /* 0: as long as the request */
  size_t retry_len; /* if the reply is refused, answer again with this many
                       bytes (0: do not) */
  int last_respond; /* what the last cm_net_stream_respond returned */
  int nresp, nresp_ok, nresp_bad;
  int last_status;
  size_t last_resp_len;
  int closed;
  int nstale; /* on_stale_peer reports */
  /* With t_cb_known: the addresses its is_known_peer calls members', and
   * how many times it was asked. */
  const cm_addr_t *known;
  size_t nknown;
  int nasked;
} tnode_t;

/* Reply bytes derive from the request so content is checked end to end. */
static uint8_t t_reply_byte(size_t i) { return (uint8_t)(i * 7 + 3); }

static void t_on_datagram(void *ud, const cm_addr_t *from, const uint8_t *d,
                          size_t len) {
  tnode_t *n = ud;
  n->ndgram++;
  n->last_from = *from;
  n->last_len = len;
  memcpy(n->last, d, len < sizeof(n->last) ? len : sizeof(n->last));
}

static void t_on_request(void *ud, const cm_addr_t *from, uint64_t token,
                         const uint8_t *d, size_t len) {
  tnode_t *n = ud;
  size_t rlen = n->reply_len ? n->reply_len : len, i;
  uint8_t *r;
  (void)from;
  (void)d;
  n->nreq++;
  if (n->no_reply)
    return;
  r = malloc(rlen ? rlen : 1);
  if (r == NULL)
    return;
  for (i = 0; i < rlen; i++)
    r[i] = t_reply_byte(i);
  n->last_respond = cm_net_stream_respond(n->net, token, r, rlen);
  if (n->last_respond != 0 && n->retry_len > 0 && n->retry_len <= rlen)
    cm_net_stream_respond(n->net, token, r, n->retry_len);
  free(r);
}

static void t_on_response(void *ud, uint64_t rid, int status, const uint8_t *d,
                          size_t len) {
  tnode_t *n = ud;
  size_t i;
  (void)rid;
  n->nresp++;
  n->last_status = status;
  n->last_resp_len = len;
  if (status != 0)
    return;
  for (i = 0; i < len; i++)
    if (d[i] != t_reply_byte(i)) {
      n->nresp_bad++;
      return;
    }
  n->nresp_ok++;
}

static const cm_net_callbacks_t t_cb = {.on_datagram = t_on_datagram,
                                        .on_stream_request = t_on_request,
                                        .on_stream_response = t_on_response};

static void t_key(cm_net_key_t *k, uint8_t id, uint8_t fill) {
  k->id = id;
  memset(k->key, fill, sizeof(k->key));
}

static cm_net_key_t t_keys[1];

static void t_cfg(cm_net_config_t *cfg) {
  cm_net_config_default(cfg);
  t_key(&t_keys[0], 1, 0x11);
  cfg->keys = t_keys;
  cfg->nkeys = 1;
  cfg->max_queued_datagrams = 4096;
}

/* Start n bound to `bind` (its port replaced by an ephemeral one) with
 * callbacks cb. */
static void t_start_with(tnode_t *n, uv_loop_t *loop,
                         const cm_net_config_t *cfg, const char *bind,
                         const cm_net_callbacks_t *cb) {
  cm_addr_t a;
  memset(n, 0, sizeof(*n));
  CM_CHECK_OK(cm_addr_parse(bind, &a));
  a.port = 0; /* ephemeral */
  CM_CHECK_OK(cm_net_new(&n->net, loop, &a, cfg, cb, n));
  CM_CHECK_OK(cm_net_local_addr(n->net, &n->addr));
  CM_CHECK(n->addr.port != 0);
}

/* Start n bound to exactly `at` with callbacks cb. */
static void t_start_bound(tnode_t *n, uv_loop_t *loop,
                          const cm_net_config_t *cfg, const cm_addr_t *at,
                          const cm_net_callbacks_t *cb) {
  memset(n, 0, sizeof(*n));
  CM_CHECK_OK(cm_net_new(&n->net, loop, at, cfg, cb, n));
  CM_CHECK_OK(cm_net_local_addr(n->net, &n->addr));
  CM_CHECK(cm_addr_eq(&n->addr, at));
}

static void t_start_at(tnode_t *n, uv_loop_t *loop, const cm_net_config_t *cfg,
                       const char *bind) {
  t_start_with(n, loop, cfg, bind, &t_cb);
}

static void t_start(tnode_t *n, uv_loop_t *loop, const cm_net_config_t *cfg) {
  t_start_at(n, loop, cfg, "127.0.0.1:1");
}

static void t_deadline_cb(uv_timer_t *t) { *(int *)t->data = 1; }

typedef int (*t_pred_fn)(void *);

/* Run the loop until pred holds or ms pass; returns pred's last value. */
static int t_run(uv_loop_t *loop, t_pred_fn pred, void *arg, unsigned ms) {
  uv_timer_t t;
  int expired = 0, ok;
  uv_timer_init(loop, &t);
  t.data = &expired;
  uv_timer_start(&t, t_deadline_cb, ms, 0);
  while (!(ok = pred(arg)) && !expired)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

typedef struct {
  const int *p;
  int want;
} t_ge_t;

static int t_ge(void *arg) {
  t_ge_t *g = arg;
  return *g->p >= g->want;
}

static int t_wait_ge(uv_loop_t *loop, const int *p, int want, unsigned ms) {
  t_ge_t g = {p, want};
  return t_run(loop, t_ge, &g, ms);
}

static void t_closed_cb(void *arg) { ((tnode_t *)arg)->closed = 1; }

typedef struct {
  tnode_t **nodes;
  size_t n;
} t_all_t;

static int t_all_closed(void *arg) {
  t_all_t *a = arg;
  size_t i;
  for (i = 0; i < a->n; i++)
    if (!a->nodes[i]->closed)
      return 0;
  return 1;
}

static void t_walk_cb(uv_handle_t *h, void *arg) {
  (void)h;
  (*(int *)arg)++;
}

/* Close every node, wait for all done callbacks, and check the loop holds
 * no handle of ours any more; the loop stays usable. */
static void t_finish_keep_loop(uv_loop_t *loop, tnode_t **nodes, size_t n) {
  t_all_t a = {nodes, n};
  size_t i;
  int handles = 0;
  for (i = 0; i < n; i++)
    cm_net_close(nodes[i]->net, t_closed_cb, nodes[i]);
  CM_CHECK(t_run(loop, t_all_closed, &a, T_WAIT_MS));
  uv_run(loop, UV_RUN_NOWAIT);
  uv_walk(loop, t_walk_cb, &handles);
  CM_CHECK_EQ(handles, 0);
}

/* The same, and close the loop. */
static void t_finish(uv_loop_t *loop, tnode_t **nodes, size_t n) {
  t_finish_keep_loop(loop, nodes, n);
  CM_CHECK_OK(uv_loop_close(loop));
}

static cm_net_stats_t t_stats(tnode_t *n) {
  cm_net_stats_t st;
  cm_net_stats(n->net, &st);
  return st;
}

/* Two endpoints, for conditions over both. */
typedef struct {
  tnode_t *a, *b;
} t_pair_t;

static uint64_t t_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- datagrams ----------------------------------------------------------- */

CM_TEST(net_datagrams_both_ways) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_net_stats_t st;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);

  CM_CHECK_EQ(cm_net_is_connected(a.net, &b.addr), 0);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"ping", 4));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(cm_net_is_connected(a.net, &b.addr), 1);
  CM_CHECK_EQ(cm_net_is_connected(b.net, &a.addr), 1);
  CM_CHECK_EQ(b.last_len, 4);
  CM_CHECK(memcmp(b.last, "ping", 4) == 0);
  CM_CHECK(cm_addr_eq(&b.last_from, &a.addr));

  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"pong", 4));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &b.addr));

  /* A burst both ways, full-size, over the one connection. */
  for (i = 0; i < 500; i++) {
    uint8_t buf[CM_NET_DATAGRAM_MAX];
    memset(buf, i & 0xff, sizeof(buf));
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, buf, sizeof(buf)));
    CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, buf, 100));
  }
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 501, T_WAIT_MS));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 501, T_WAIT_MS));
  CM_CHECK_EQ(b.last_len, CM_NET_DATAGRAM_MAX);
  CM_CHECK_EQ(
      cm_net_send_datagram(a.net, &b.addr, b.last, CM_NET_DATAGRAM_MAX + 1),
      CM_ETOOBIG);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &a.addr, b.last, 1), CM_EADDR);

  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_open, 1);
  CM_CHECK_EQ(st.datagrams_out, 501);
  CM_CHECK_EQ(st.datagrams_in, 501);
  CM_CHECK(st.handshakes_ok >= 1);
  CM_CHECK_EQ(st.handshakes_failed, 0);
  CM_CHECK_EQ(st.drop_oversized, 1);
  st = t_stats(&b);
  CM_CHECK_EQ(st.conns_open, 1);
  CM_CHECK_EQ(st.conns_accepted, 1);
  t_finish(&loop, all, 2);
}

/* Everything sent to b arrived and everything b sent arrived back. */
static int t_quiet_both_ways(void *arg) {
  t_pair_t *p = arg;
  cm_net_stats_t sa = t_stats(p->a), sb = t_stats(p->b);
  return sa.packets_out == sb.packets_in && sa.bytes_out == sb.bytes_in &&
         sb.packets_out == sa.packets_in && sb.bytes_out == sa.bytes_in;
}

/* Packets with no payload are counted apart: b, which only receives, sends
 * nothing else (its handshake and its acknowledgements); of a's packets,
 * all but its ten datagrams (one per packet, each sent once the one before
 * had arrived) are. A burst queued at once shares packets: fewer payload
 * packets than datagrams, still none of them counted as control. Packets
 * that never leave (a blocked peer) are in neither count. */
CM_TEST(net_control_packets_are_counted_apart) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  cm_net_fault_t f;
  tnode_t a, b, c;
  tnode_t *all[] = {&a, &b, &c};
  t_pair_t pair = {&a, &b};
  cm_net_stats_t sa, sb, sc;
  uint64_t payload_before;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  for (i = 0; i < 10; i++) {
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"d", 1));
    CM_CHECK(t_wait_ge(&loop, &b.ndgram, i + 1, T_WAIT_MS));
  }
  CM_CHECK(t_run(&loop, t_quiet_both_ways, &pair, T_WAIT_MS));
  sa = t_stats(&a);
  sb = t_stats(&b);
  CM_CHECK_EQ(sa.datagrams_out, 10);
  CM_CHECK_EQ(sa.packets_out - sa.control_packets_out, 10);
  CM_CHECK(sa.control_packets_out >= 1); /* its Initial at least */
  CM_CHECK(sa.control_bytes_out < sa.bytes_out);
  CM_CHECK(sb.packets_out > 0);
  CM_CHECK_EQ(sb.control_packets_out, sb.packets_out);
  CM_CHECK_EQ(sb.control_bytes_out, sb.bytes_out);

  payload_before = sa.packets_out - sa.control_packets_out;
  for (i = 0; i < 20; i++)
    CM_CHECK_OK(
        cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"burst", 5));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 30, T_WAIT_MS));
  CM_CHECK(t_run(&loop, t_quiet_both_ways, &pair, T_WAIT_MS));
  sa = t_stats(&a);
  CM_CHECK_EQ(sa.datagrams_out, 30);
  CM_CHECK(sa.packets_out - sa.control_packets_out - payload_before >= 1);
  CM_CHECK(sa.packets_out - sa.control_packets_out - payload_before < 20);
  CM_CHECK_EQ(t_stats(&b).control_packets_out, t_stats(&b).packets_out);

  /* c's packets to a blocked peer are dropped before the socket. */
  t_start(&c, &loop, &cfg);
  memset(&f, 0, sizeof(f));
  f.blocked = &b.addr;
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(c.net, &f));
  CM_CHECK_OK(cm_net_send_datagram(c.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 31, 300) == 0);
  sc = t_stats(&c);
  CM_CHECK(sc.drop_fault > 0);
  CM_CHECK_EQ(sc.packets_out, 0);
  CM_CHECK_EQ(sc.control_packets_out, 0);
  t_finish(&loop, all, 3);
}

/* An empty datagram is refused when it is sent: queued, it aborted the
 * process in ngtcp2's write of an empty DATAGRAM frame (found by fuzz_net). */
CM_TEST(net_empty_datagram_refused) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t none = 0;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, &none, 0), CM_EINVAL);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"ping", 4));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, NULL, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, &none, 0), CM_EINVAL);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"pong", 4));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 2, T_WAIT_MS));
  CM_CHECK_EQ(b.last_len, 4);
  t_finish(&loop, all, 2);
}

/* An empty request and an empty response: each arrives as a FIN with no
 * data, which the stream layer must take without touching its buffer
 * before it has one (UBSan: an offset applied to NULL; found by
 * fuzz_net). */
CM_TEST(net_empty_messages) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t none = 0;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, &none, 0, 1));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(b.nreq, 1);
  CM_CHECK_EQ(a.last_status, 0);
  CM_CHECK_EQ(a.last_resp_len, 0);
  CM_CHECK_EQ(a.nresp_ok, 1);
  t_finish(&loop, all, 2);
}

CM_TEST(net_three_endpoints) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t n[3];
  tnode_t *all[] = {&n[0], &n[1], &n[2]};
  int i, j;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  for (i = 0; i < 3; i++)
    t_start(&n[i], &loop, &cfg);
  for (i = 0; i < 3; i++)
    for (j = 0; j < 3; j++)
      if (i != j)
        CM_CHECK_OK(cm_net_send_datagram(n[i].net, &n[j].addr,
                                         (const uint8_t *)"hello", 5));
  for (i = 0; i < 3; i++)
    CM_CHECK(t_wait_ge(&loop, &n[i].ndgram, 2, T_WAIT_MS));
  t_finish(&loop, all, 3);
}

CM_TEST(net_simultaneous_open_keeps_one) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  /* Both open before either runs: two handshakes cross. */
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"y", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  for (i = 0; i < 100; i++) {
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
    CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"y", 1));
    CM_CHECK(t_wait_ge(&loop, &a.ndgram, i + 2, T_WAIT_MS));
    CM_CHECK(t_wait_ge(&loop, &b.ndgram, i + 2, T_WAIT_MS));
  }
  /* The duplicate retired on both sides, the same one. */
  CM_CHECK_EQ(t_stats(&a).conns_open, 1);
  CM_CHECK_EQ(t_stats(&b).conns_open, 1);
  t_finish(&loop, all, 2);
}

CM_TEST(net_ipv6) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  cm_addr_t probe;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  struct sockaddr_in6 sin6;

  /* Skip quietly on hosts without IPv6 loopback. */
  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) != 0) {
    if (fd >= 0)
      close(fd);
    return;
  }
  close(fd);
  CM_CHECK_OK(cm_addr_parse("[::1]:1", &probe));
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start_at(&a, &loop, &cfg, "[::1]:1");
  t_start_at(&b, &loop, &cfg, "[::1]:1");
  CM_CHECK_EQ(a.addr.family, 6);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"v6", 2));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&b.last_from, &a.addr));
  t_finish(&loop, all, 2);
}

/* ---- streams ------------------------------------------------------------- */

CM_TEST(net_stream_200k) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  size_t len = 200 * 1024;
  uint8_t *req = malloc(len);
  int i;

  CM_CHECK(req != NULL);
  memset(req, 0xab, len);
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  b.reply_len = 210 * 1024;
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, req, len, 7));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, 0);
  CM_CHECK_EQ(a.last_resp_len, 210 * 1024);
  CM_CHECK_EQ(a.nresp_ok, 1);
  CM_CHECK_EQ(b.nreq, 1);

  /* More requests at once than the initial stream credit (16), so credit
   * must come back as streams close. */
  b.reply_len = 1000;
  for (i = 0; i < 40; i++)
    CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, req, 3000, 100 + i));
  CM_CHECK(t_wait_ge(&loop, &a.nresp_ok, 41, T_WAIT_MS));
  CM_CHECK_EQ(a.nresp_bad, 0);
  CM_CHECK_EQ(t_stats(&a).requests_out, 41);
  CM_CHECK_EQ(t_stats(&b).responses_out, 41);
  CM_CHECK_EQ(t_stats(&a).conns_idle, 1);
  free(req);
  t_finish(&loop, all, 2);
}

CM_TEST(net_stream_limits_and_timeout) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t buf[4096];

  memset(buf, 1, sizeof(buf));
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_stream_message = 2048;
  cfg.request_timeout = CM_MSEC(200);
  t_start(&a, &loop, &cfg);
  cfg.max_stream_message = 8192;
  t_start(&b, &loop, &cfg);

  CM_CHECK_EQ(cm_net_stream_request(a.net, &b.addr, buf, 4096, 1), CM_ETOOBIG);
  /* The reply is over the requester's bound: refused, reported once. */
  b.reply_len = 4000;
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, buf, 10, 2));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, CM_ETOOBIG);

  /* An unanswered request times out, exactly once. */
  b.no_reply = 1;
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, buf, 10, 3));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 2, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, CM_ETIMEDOUT);
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 3, 300) == 0);
  CM_CHECK_EQ(a.nresp, 2);
  CM_CHECK_EQ(cm_net_stream_respond(b.net, 12345, buf, 1), CM_ENOENT);

  /* A request to a peer that never answers the handshake times out at
   * the request's deadline, not the handshake's, exactly once. */
  {
    int fd = cm_tn_udp_socket();
    cm_addr_t silent = cm_tn_socket_addr(fd);
    uint64_t t0 = t_now_us();
    CM_CHECK_OK(cm_net_stream_request(a.net, &silent, buf, 10, 5));
    CM_CHECK(t_wait_ge(&loop, &a.nresp, 3, T_WAIT_MS));
    CM_CHECK_EQ(a.last_status, CM_ETIMEDOUT);
    CM_CHECK(t_now_us() - t0 < 2000000); /* the handshake's is 5 s */
    CM_CHECK(t_wait_ge(&loop, &a.nresp, 4, 300) == 0);
    close(fd);
  }

  /* Closing with a request in flight reports it as closed. */
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, buf, 10, 4));
  t_finish(&loop, all, 2);
  CM_CHECK_EQ(a.nresp, 4);
  CM_CHECK_EQ(a.last_status, CM_ECLOSED);
}

/* ---- stream memory ------------------------------------------------------- */

#define T_FLOW_MSG (16 * 1024) /* max_stream_message of these tests */
#define T_FLOW_STREAMS 16
/* What a connection may make its peer hold: the connection window. */
#define T_FLOW_CAP (T_FLOW_MSG + 1 + CM_NET_CONN_WINDOW_SLACK)

/* A peer that does not play by our write order: it opens 16 streams and
 * sends each all but the last byte of a message, round robin, never a
 * FIN, as fast as flow and congestion control let it. */
typedef struct {
  tnode_t *from, *to;
  cm_net_conn_t *c;
  int64_t ids[T_FLOW_STREAMS];
  size_t off[T_FLOW_STREAMS];
  size_t sent;
  const uint8_t *data; /* kept until the test ends: ngtcp2 resends from it */
} t_flood_streams_t;

static int t_flood_streams(void *arg) {
  t_flood_streams_t *f = arg;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  uint8_t pkt[CM_NET_MAX_UDP_PAYLOAD];
  uint64_t now = cm_net__now();
  int i, progress = 1;

  ngtcp2_path_storage_zero(&ps);
  while (progress) {
    progress = 0;
    for (i = 0; i < T_FLOW_STREAMS; i++) {
      ngtcp2_vec v;
      ngtcp2_ssize n, nd = -1;
      if (f->off[i] == T_FLOW_MSG - 1)
        continue;
      v.base = (uint8_t *)f->data + f->off[i];
      v.len = T_FLOW_MSG - 1 - f->off[i];
      n = ngtcp2_conn_writev_stream(f->c->qc, &ps.path, &pi, pkt, sizeof(pkt),
                                    &nd, 0, f->ids[i], &v, 1, now);
      if (n <= 0)
        continue;
      if (nd > 0) {
        f->off[i] += (size_t)nd;
        f->sent += (size_t)nd;
        progress = 1;
      }
      cm_net__send_packet(f->from->net, (struct sockaddr *)&f->c->peer_sa,
                          &f->c->peer, pkt, (size_t)n, nd <= 0);
    }
  }
  ngtcp2_conn_update_pkt_tx_time(f->c->qc, now);
  /* Done once the receiver holds all that was sent and no more can be:
   * every message is sent up to its last byte, or the connection window
   * is used up. */
  return t_stats(f->to).stream_in_peak >= f->sent &&
         (f->sent == T_FLOW_STREAMS * (T_FLOW_MSG - 1) ||
          ngtcp2_conn_get_max_data_left(f->c->qc) == 0);
}

static void t_tick_cb(uv_timer_t *t) { (void)t; }

/* The sender has a message's worth of connection credit again. */
static int t_credit_back(void *arg) {
  t_flood_streams_t *f = arg;
  return ngtcp2_conn_get_max_data_left(f->c->qc) >= T_FLOW_MSG;
}

/* Inbound stream bytes one connection makes us hold are bounded by the
 * connection window, whatever the peer does: 16 messages left one byte
 * short of complete cannot pin 16 x max_stream_message. When the peer
 * then resets its streams, the credit comes back. */
CM_TEST(net_stream_memory_bounded_by_flow_control) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t key[CM_NET_ADDR_KEY_LEN];
  uint8_t *data = calloc(1, T_FLOW_MSG);
  t_flood_streams_t f;
  uv_timer_t tick;
  int i;

  CM_CHECK(data != NULL);
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_stream_message = T_FLOW_MSG;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  memset(&f, 0, sizeof(f));
  f.from = &a;
  f.to = &b;
  f.data = data;
  cm_net__addr_key(&b.addr, key);
  f.c = cm_net_map_get(&a.net->peers, key, sizeof(key));
  CM_CHECK(f.c != NULL && f.c->state == CM_CONN_ESTABLISHED);
  for (i = 0; i < T_FLOW_STREAMS; i++)
    CM_CHECK_OK(ngtcp2_conn_open_bidi_stream(f.c->qc, &f.ids[i], NULL));
  /* Pacing holds writes back without any event to wake the loop. */
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, t_tick_cb, 2, 2);
  CM_CHECK(t_run(&loop, t_flood_streams, &f, T_WAIT_MS));
  printf("    sent %zu bytes on %d streams; receiver held at most %llu "
         "(cap %d)\n",
         f.sent, T_FLOW_STREAMS, (unsigned long long)t_stats(&b).stream_in_peak,
         T_FLOW_CAP);
  CM_CHECK(t_stats(&b).stream_in_peak <= T_FLOW_CAP);
  CM_CHECK(f.sent < T_FLOW_STREAMS * (T_FLOW_MSG - 1));
  CM_CHECK_EQ(b.nreq, 0);
  /* Resetting its side of each stream (RESET_STREAM alone) hands back
   * the credit for what the receiver held. */
  for (i = 0; i < T_FLOW_STREAMS; i++)
    CM_CHECK_OK(ngtcp2_conn_shutdown_stream_write(f.c->qc, 0, f.ids[i], 1));
  cm_net__mark_dirty(f.c);
  CM_CHECK(t_run(&loop, t_credit_back, &f, T_WAIT_MS));
  uv_close((uv_handle_t *)&tick, NULL);
  t_finish(&loop, all, 2);
  free(data);
}

/* The write order, on a stream list built by hand: streams go out in the
 * order they were created, and a message begun is finished before another
 * starts, even one created earlier that became ready since; a begun one
 * that is blocked blocks the others. */
CM_TEST(net_stream_write_order) {
  cm_net_conn_t c;
  cm_net_stream_t s[3];
  int i;

  memset(&c, 0, sizeof(c));
  memset(s, 0, sizeof(s));
  for (i = 0; i < 3; i++) {
    s[i].id = 4 * i;
    s[i].local = 1;
    s[i].outlen = 100;
    cm_net__stream_append(&c, &s[i]);
  }
  CM_CHECK_EQ(c.nstreams, 3);
  CM_CHECK(cm_net__stream_next(&c) == &s[0]);
  /* s[1] has begun while s[0] waited (a reply not given yet, say). */
  s[0].local = 0;
  s[1].outoff = 10;
  s[0].out_ready = 1;
  CM_CHECK(cm_net__stream_next(&c) == &s[1]);
  s[1].blocked = 1;
  CM_CHECK(cm_net__stream_next(&c) == NULL);
  s[1].blocked = 0;
  s[1].fin_sent = 1;
  CM_CHECK(cm_net__stream_next(&c) == &s[0]);
}

/* With the same small bound, 16 requests and 16 replies just under it, all
 * at once both ways, complete: one connection window never holds two
 * partial messages, so none waits on another; and the receiver never
 * holds more than the window. */
CM_TEST(net_stream_concurrent_near_limit_complete) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t *req = malloc(T_FLOW_MSG);
  int i;

  CM_CHECK(req != NULL);
  memset(req, 0x5c, T_FLOW_MSG);
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_stream_message = T_FLOW_MSG;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  a.reply_len = b.reply_len = T_FLOW_MSG - 1;
  for (i = 0; i < T_FLOW_STREAMS; i++) {
    CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, req, T_FLOW_MSG - 1,
                                      (uint64_t)i));
    CM_CHECK_OK(cm_net_stream_request(b.net, &a.addr, req, T_FLOW_MSG - 1,
                                      100 + (uint64_t)i));
  }
  CM_CHECK(t_wait_ge(&loop, &a.nresp_ok, T_FLOW_STREAMS, T_WAIT_MS));
  CM_CHECK(t_wait_ge(&loop, &b.nresp_ok, T_FLOW_STREAMS, T_WAIT_MS));
  CM_CHECK_EQ(a.nresp, T_FLOW_STREAMS);
  CM_CHECK_EQ(b.nresp, T_FLOW_STREAMS);
  CM_CHECK_EQ(a.nreq, T_FLOW_STREAMS);
  CM_CHECK(t_stats(&a).stream_in_peak <= T_FLOW_CAP);
  CM_CHECK(t_stats(&b).stream_in_peak <= T_FLOW_CAP);
  free(req);
  t_finish(&loop, all, 2);
}

/* ---- authentication ------------------------------------------------------ */

static int t_refused(void *arg) { return t_stats(arg).auth_refused >= 1; }

CM_TEST(net_wrong_key_refused) {
  uv_loop_t loop;
  cm_net_config_t ca, cb;
  cm_net_key_t ka, kb;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_net_stats_t sa, sb;

  CM_CHECK_OK(uv_loop_init(&loop));
  cm_net_config_default(&ca);
  cb = ca;
  t_key(&ka, 1, 0x11);
  t_key(&kb, 1, 0x22); /* same id, other key */
  ca.keys = &ka;
  ca.nkeys = 1;
  cb.keys = &kb;
  cb.nkeys = 1;
  t_start(&a, &loop, &ca);
  t_start(&b, &loop, &cb);

  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK_OK(
      cm_net_stream_request(a.net, &b.addr, (const uint8_t *)"r", 1, 9));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, CM_EAUTH);
  sa = t_stats(&a);
  sb = t_stats(&b);
  CM_CHECK_EQ(b.ndgram, 0);
  CM_CHECK_EQ(b.nreq, 0);
  CM_CHECK(sb.auth_refused >= 1);
  CM_CHECK(sa.auth_refused >= 1);
  CM_CHECK_EQ(sa.handshakes_ok, 0);
  CM_CHECK_EQ(sb.handshakes_ok, 0);
  CM_CHECK_EQ(sa.drop_closed, 1);
  t_finish(&loop, all, 2);
}

CM_TEST(net_key_rotation) {
  uv_loop_t loop;
  cm_net_config_t c1, c2, c3;
  cm_net_key_t ring[2], k1, k2;
  tnode_t n1, n2, n3;
  tnode_t *all[] = {&n1, &n2, &n3};

  CM_CHECK_OK(uv_loop_init(&loop));
  t_key(&ring[0], 1, 0x11);
  t_key(&ring[1], 2, 0x22);
  k1 = ring[0];
  k2 = ring[1];
  cm_net_config_default(&c1);
  c2 = c3 = c1;
  c1.keys = ring;
  c1.nkeys = 2;
  c1.primary = 1;
  c2.keys = &k1;
  c2.nkeys = 1;
  c3.keys = &k2;
  c3.nkeys = 1;
  t_start(&n1, &loop, &c1);
  t_start(&n2, &loop, &c2);
  t_start(&n3, &loop, &c3);

  /* n1 offers key 2, n2 refuses it, n1 retries with key 1. */
  CM_CHECK_OK(cm_net_send_datagram(n1.net, &n2.addr, (const uint8_t *)"a", 1));
  CM_CHECK_OK(cm_net_send_datagram(n1.net, &n3.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &n2.ndgram, 1, T_WAIT_MS));
  CM_CHECK(t_wait_ge(&loop, &n3.ndgram, 1, T_WAIT_MS));
  CM_CHECK_OK(cm_net_send_datagram(n2.net, &n1.addr, (const uint8_t *)"c", 1));
  CM_CHECK_OK(cm_net_send_datagram(n3.net, &n1.addr, (const uint8_t *)"d", 1));
  CM_CHECK(t_wait_ge(&loop, &n1.ndgram, 2, T_WAIT_MS));
  /* n2 and n3 share no key: refused. */
  CM_CHECK_OK(cm_net_send_datagram(n2.net, &n3.addr, (const uint8_t *)"e", 1));
  CM_CHECK(t_run(&loop, t_refused, &n3, T_WAIT_MS));
  CM_CHECK_EQ(n3.ndgram, 1);
  CM_CHECK_EQ(t_stats(&n1).handshakes_failed, 1); /* the refused key 2 */
  t_finish(&loop, all, 3);
}

/* A client remembers which key each peer accepted, to skip the refused
 * handshake next time; that memory is bounded (four hints per place in the
 * pool, then it starts over), and a peer whose hint was forgotten is
 * reached again through one more refusal. */
#define T_HINT_PEERS 6
CM_TEST(net_key_hints_bounded) {
  uv_loop_t loop;
  cm_net_config_t c1, c2;
  cm_net_key_t ring[2], old;
  tnode_t a, p[T_HINT_PEERS];
  tnode_t *all[1 + T_HINT_PEERS];
  uint64_t failed;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_key(&ring[0], 2, 0x22); /* the new key, primary */
  t_key(&ring[1], 1, 0x11);
  old = ring[1];
  cm_net_config_default(&c1);
  c2 = c1;
  c1.keys = ring;
  c1.nkeys = 2;
  c1.max_connections = 1;
  c1.max_half_open = 1;
  c2.keys = &old;
  c2.nkeys = 1;
  t_start(&a, &loop, &c1);
  all[0] = &a;
  for (i = 0; i < T_HINT_PEERS; i++) {
    t_start(&p[i], &loop, &c2);
    all[1 + i] = &p[i];
  }
  for (i = 0; i < T_HINT_PEERS; i++) {
    CM_CHECK_OK(
        cm_net_send_datagram(a.net, &p[i].addr, (const uint8_t *)"k", 1));
    CM_CHECK(t_wait_ge(&loop, &p[i].ndgram, 1, T_WAIT_MS));
    CM_CHECK_EQ(t_stats(&a).handshakes_failed, (uint64_t)i + 1);
    /* Four hints at most for a pool of one: the fifth starts over. */
    CM_CHECK_EQ(a.net->key_hints.count, i < 4 ? i + 1 : i - 3);
  }
  /* The last peer's hint is held: no refusal to reach it again. */
  failed = t_stats(&a).handshakes_failed;
  CM_CHECK_OK(cm_net_send_datagram(a.net, &p[T_HINT_PEERS - 1].addr,
                                   (const uint8_t *)"k", 1));
  CM_CHECK(t_wait_ge(&loop, &p[T_HINT_PEERS - 1].ndgram, 2, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).handshakes_failed, failed);
  /* The first peer's was forgotten: one refusal, then through. */
  CM_CHECK_OK(cm_net_send_datagram(a.net, &p[0].addr, (const uint8_t *)"k", 1));
  CM_CHECK(t_wait_ge(&loop, &p[0].ndgram, 2, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).handshakes_failed, failed + 1);
  t_finish(&loop, all, 1 + T_HINT_PEERS);
}

/* The keyring replaced on a running endpoint: a key added is accepted at
 * once, a new primary is offered first, a key removed is refused to new
 * handshakes, and connections already open carry on throughout. */
CM_TEST(net_keys_replaced_while_running) {
  uv_loop_t loop;
  cm_net_config_t c1, c2;
  cm_net_key_t k1, k2, both[2];
  tnode_t a, b, c, d;
  tnode_t *all[] = {&a, &b, &c, &d};
  cm_net_stats_t sb;
  uint64_t a_hs;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_key(&k1, 1, 0x11);
  t_key(&k2, 2, 0x22);
  cm_net_config_default(&c1);
  c2 = c1;
  c1.keys = &k1;
  c1.nkeys = 1;
  c2.keys = &k2;
  c2.nkeys = 1;
  t_start(&a, &loop, &c1);
  t_start(&b, &loop, &c1);
  t_start(&c, &loop, &c2);
  t_start(&d, &loop, &c2);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"1", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  a_hs = t_stats(&a).handshakes_ok;

  /* Install: b accepts the new key; c, which holds only it, gets in. */
  both[0] = k1;
  both[1] = k2;
  CM_CHECK_OK(cm_net_set_keys(b.net, both, 2, 0));
  CM_CHECK_OK(cm_net_send_datagram(c.net, &b.addr, (const uint8_t *)"2", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 2, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&b.last_from, &c.addr));
  CM_CHECK_EQ(t_stats(&b).auth_refused, 0);

  /* Use: b offers the new key first: d, which holds only it, accepts at
   * the first try. */
  sb = t_stats(&b);
  CM_CHECK_OK(cm_net_set_keys(b.net, both, 2, 1));
  CM_CHECK_OK(cm_net_send_datagram(b.net, &d.addr, (const uint8_t *)"3", 1));
  CM_CHECK(t_wait_ge(&loop, &d.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&b).handshakes_failed, sb.handshakes_failed);

  /* Remove: a new handshake with the old key is refused; the connection
   * a already has is not touched. */
  CM_CHECK_OK(cm_net_set_keys(b.net, &k2, 1, 0));
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"4", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 3, T_WAIT_MS));
  CM_CHECK_EQ(b.last[0], '4');
  CM_CHECK_EQ(t_stats(&a).handshakes_ok, a_hs);
  {
    tnode_t e;
    t_start(&e, &loop, &c1);
    CM_CHECK_OK(cm_net_send_datagram(e.net, &b.addr, (const uint8_t *)"5", 1));
    CM_CHECK(t_run(&loop, t_refused, &b, T_WAIT_MS));
    CM_CHECK_EQ(b.ndgram, 3);
    cm_net_close(e.net, t_closed_cb, &e);
    CM_CHECK_EQ(cm_net_set_keys(e.net, &k2, 1, 0), CM_ECLOSED); /* closing */
    CM_CHECK(t_wait_ge(&loop, &e.closed, 1, T_WAIT_MS));
  }

  /* What cannot be a ring is refused, and changes nothing. */
  CM_CHECK_EQ(cm_net_set_keys(b.net, &k2, 0, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_net_set_keys(b.net, &k2, 1, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_set_keys(b.net, NULL, 1, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_net_set_keys(NULL, &k2, 1, 0), CM_EINVAL);
  CM_CHECK_OK(cm_net_send_datagram(d.net, &b.addr, (const uint8_t *)"6", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 4, T_WAIT_MS));
  t_finish(&loop, all, 4);
}

/* A ring replaced while a handshake with the old one is under way: the
 * refused handshake is retried from the new ring's primary, and the send
 * still arrives. */
CM_TEST(net_key_retry_after_the_ring_changes) {
  uv_loop_t loop;
  cm_net_config_t ca, cb;
  cm_net_key_t k1, k2, k3, old_ring[2], new_ring[2];
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  CM_CHECK_OK(uv_loop_init(&loop));
  t_key(&k1, 1, 0x11);
  t_key(&k2, 2, 0x22);
  t_key(&k3, 3, 0x33);
  old_ring[0] = k1;
  old_ring[1] = k2;
  new_ring[0] = k3;
  new_ring[1] = k2;
  cm_net_config_default(&ca);
  cb = ca;
  ca.keys = old_ring;
  ca.nkeys = 2;
  cb.keys = &k2;
  cb.nkeys = 1;
  t_start(&a, &loop, &ca);
  t_start(&b, &loop, &cb);
  /* a offers k1 (refused); before the refusal comes, its ring changes. */
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"r", 1));
  CM_CHECK_OK(cm_net_set_keys(a.net, new_ring, 2, 0));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  /* k1 refused, then k3 (the new primary) refused, then k2 accepted. */
  CM_CHECK_EQ(t_stats(&a).handshakes_failed, 2);
  t_finish(&loop, all, 2);
}

/* Mid-rotation, two nodes hold the same keys in another order (and under
 * other ids): the handshake names a key by its content, so the first key
 * offered is found at once, either way. */
CM_TEST(net_key_rings_in_any_order_meet) {
  uv_loop_t loop;
  cm_net_config_t c1, c2;
  cm_net_key_t r1[2], r2[2];
  tnode_t n1, n2;
  tnode_t *all[] = {&n1, &n2};

  CM_CHECK_OK(uv_loop_init(&loop));
  t_key(&r1[0], 1, 0x11);
  t_key(&r1[1], 2, 0x22);
  t_key(&r2[0], 1, 0x22);
  t_key(&r2[1], 2, 0x11);
  cm_net_config_default(&c1);
  c2 = c1;
  c1.keys = r1;
  c1.nkeys = 2;
  c2.keys = r2;
  c2.nkeys = 2;
  t_start(&n1, &loop, &c1);
  t_start(&n2, &loop, &c2);
  CM_CHECK_OK(cm_net_send_datagram(n1.net, &n2.addr, (const uint8_t *)"a", 1));
  CM_CHECK(t_wait_ge(&loop, &n2.ndgram, 1, T_WAIT_MS));
  CM_CHECK_OK(cm_net_send_datagram(n2.net, &n1.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &n1.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&n1).handshakes_failed, 0);
  CM_CHECK_EQ(t_stats(&n2).handshakes_failed, 0);
  CM_CHECK_EQ(t_stats(&n1).auth_refused + t_stats(&n2).auth_refused, 0);
  t_finish(&loop, all, 2);
}

typedef struct {
  char dir[64];
  char path[8][96];
} t_pki_t;

enum { T_CA1, T_CA1KEY, T_N1, T_N1KEY, T_N2, T_N2KEY, T_X, T_XKEY };

/* A CA with two nodes, and a node of another CA, in a temporary dir. */
static void t_pki(t_pki_t *p) {
  static const char *names[8] = {"ca.pem", "ca.key", "n1.pem", "n1.key",
                                 "n2.pem", "n2.key", "x.pem",  "x.key"};
  char ca2[96], ca2key[96];
  int i;
  strcpy(p->dir, "/tmp/cm_net_test_XXXXXX");
  CM_CHECK(mkdtemp(p->dir) != NULL);
  for (i = 0; i < 8; i++)
    snprintf(p->path[i], sizeof(p->path[i]), "%s/%s", p->dir, names[i]);
  snprintf(ca2, sizeof(ca2), "%s/ca2.pem", p->dir);
  snprintf(ca2key, sizeof(ca2key), "%s/ca2.key", p->dir);
  CM_CHECK_OK(cm_net_gen_ca(p->path[T_CA1], p->path[T_CA1KEY], "cluster", 30));
  CM_CHECK_OK(cm_net_gen_cert(p->path[T_CA1], p->path[T_CA1KEY], p->path[T_N1],
                              p->path[T_N1KEY], "n1", 30));
  CM_CHECK_OK(cm_net_gen_cert(p->path[T_CA1], p->path[T_CA1KEY], p->path[T_N2],
                              p->path[T_N2KEY], "n2", 30));
  CM_CHECK_OK(cm_net_gen_ca(ca2, ca2key, "other", 30));
  CM_CHECK_OK(cm_net_gen_cert(ca2, ca2key, p->path[T_X], p->path[T_XKEY],
                              "intruder", 30));
  unlink(ca2);
  unlink(ca2key);
}

static void t_pki_free(t_pki_t *p) {
  int i;
  for (i = 0; i < 8; i++)
    unlink(p->path[i]);
  rmdir(p->dir);
}

static void t_cfg_mtls(cm_net_config_t *cfg, const t_pki_t *p, int cert,
                       int key) {
  cm_net_config_default(cfg);
  cfg->auth = CM_AUTH_MTLS;
  cfg->ca_file = p->path[T_CA1];
  cfg->cert_file = cert >= 0 ? p->path[cert] : NULL;
  cfg->key_file = key >= 0 ? p->path[key] : NULL;
}

CM_TEST(net_mtls) {
  uv_loop_t loop;
  cm_net_config_t c1, c2, cx, cn;
  t_pki_t pki;
  tnode_t n1, n2, x, nocert;
  tnode_t *all[] = {&n1, &n2, &x, &nocert};
  cm_net_stats_t st;

  t_pki(&pki);
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg_mtls(&c1, &pki, T_N1, T_N1KEY);
  t_cfg_mtls(&c2, &pki, T_N2, T_N2KEY);
  t_cfg_mtls(&cx, &pki, T_X, T_XKEY); /* trusts our CA, cert from another */
  t_cfg_mtls(&cn, &pki, -1, -1);      /* trusts our CA, no certificate */
  t_start(&n1, &loop, &c1);
  t_start(&n2, &loop, &c2);
  t_start(&x, &loop, &cx);
  t_start(&nocert, &loop, &cn);
  /* A keyring belongs to cluster-key mode only. */
  CM_CHECK_EQ(cm_net_set_keys(n1.net, t_keys, 1, 0), CM_EINVAL);

  CM_CHECK_OK(cm_net_send_datagram(n1.net, &n2.addr, (const uint8_t *)"a", 1));
  CM_CHECK(t_wait_ge(&loop, &n2.ndgram, 1, T_WAIT_MS));
  CM_CHECK_OK(
      cm_net_stream_request(n2.net, &n1.addr, (const uint8_t *)"q", 1, 1));
  CM_CHECK(t_wait_ge(&loop, &n2.nresp_ok, 1, T_WAIT_MS));

  /* Client with a certificate from another CA: n1 refuses it. */
  CM_CHECK_OK(cm_net_send_datagram(x.net, &n1.addr, (const uint8_t *)"b", 1));
  CM_CHECK_OK(
      cm_net_stream_request(x.net, &n1.addr, (const uint8_t *)"q", 1, 2));
  CM_CHECK(t_wait_ge(&loop, &x.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(x.last_status, CM_EAUTH);
  /* Server with a certificate from another CA: n2 refuses it. */
  CM_CHECK_OK(
      cm_net_stream_request(n2.net, &x.addr, (const uint8_t *)"q", 1, 3));
  CM_CHECK(t_wait_ge(&loop, &n2.nresp, 2, T_WAIT_MS));
  CM_CHECK_EQ(n2.last_status, CM_EAUTH);
  /* Client without a certificate. */
  CM_CHECK_OK(
      cm_net_stream_request(nocert.net, &n1.addr, (const uint8_t *)"q", 1, 4));
  CM_CHECK(t_wait_ge(&loop, &nocert.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(nocert.last_status, CM_EAUTH);

  CM_CHECK_EQ(n1.ndgram, 0);
  CM_CHECK_EQ(n1.nreq, 1); /* n2's only */
  CM_CHECK_EQ(x.nreq, 0);
  st = t_stats(&n1);
  CM_CHECK(st.auth_refused >= 2);
  CM_CHECK(t_stats(&n2).auth_refused >= 1);
  t_finish(&loop, all, 4);
  t_pki_free(&pki);
}

/* Left at their defaults, max_half_open and retry_threshold follow the
 * pool, so every pool of at least one connection starts, and a table
 * under four places answers every Initial without a token with a Retry
 * (a threshold of 1 would be Retry never, on a table of one); explicit
 * values are kept as given. */
CM_TEST(net_config_derived_from_the_pool) {
  static const uint32_t pools[] = {1,   2,   3,   4,   7,   8,   64,
                                   127, 128, 129, 511, 512, 513, 100000};
  /* What each pool above derives: max_half_open, retry_threshold. */
  static const uint32_t want[][2] = {
      {1, 0},  {1, 0},  {1, 0},  {1, 0},    {1, 0},    {2, 0},    {16, 4},
      {31, 7}, {32, 8}, {32, 8}, {127, 31}, {128, 32}, {128, 32}, {128, 32}};
  uv_loop_t loop;
  cm_net_config_t cfg, d;
  tnode_t a;
  tnode_t *all[] = {&a};
  size_t i;

  CM_CHECK_OK(uv_loop_init(&loop));
  for (i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
    t_cfg(&cfg);
    cfg.max_connections = pools[i];
    d = cfg;
    cm_net_config_derive(&d);
    CM_CHECK_EQ(d.max_half_open, want[i][0]);
    CM_CHECK_EQ(d.retry_threshold, want[i][1]);
    t_start(&a, &loop, &cfg);
    t_finish_keep_loop(&loop, all, 1);
  }
  /* Explicit values stay: 0 is still "a Retry for every handshake". */
  t_cfg(&cfg);
  cfg.max_connections = 8;
  cfg.retry_threshold = 0;
  d = cfg;
  cm_net_config_derive(&d);
  CM_CHECK_EQ(d.max_half_open, 2);
  CM_CHECK_EQ(d.retry_threshold, 0);
  cfg.max_half_open = 8; /* as large as the pool */
  cfg.retry_threshold = CM_NET_RETRY_DERIVED;
  d = cfg;
  cm_net_config_derive(&d);
  CM_CHECK_EQ(d.max_half_open, 8);
  CM_CHECK_EQ(d.retry_threshold, 2);
  t_start(&a, &loop, &cfg);
  t_finish(&loop, all, 1);
}

CM_TEST(net_auth_none_and_bad_config) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  cm_net_t *net;
  cm_addr_t any, other;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};

  CM_CHECK_OK(uv_loop_init(&loop));
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:1", &any));
  any.port = 0;
  cm_net_config_default(&cfg);
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, &cfg, &t_cb, NULL), CM_ECONFIG);
  /* Half-open connections: no more than the pool. */
  t_cfg(&cfg);
  cfg.max_half_open = cfg.max_connections + 1;
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, &cfg, &t_cb, NULL), CM_ECONFIG);
  /* Stream messages up to 1 GiB: windows derive from the bound. */
  t_cfg(&cfg);
  cfg.max_stream_message = ((size_t)1 << 30) + 1;
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, &cfg, &t_cb, NULL), CM_ECONFIG);
  cm_net_config_default(&cfg);
  cfg.auth = CM_AUTH_MTLS;
  cfg.ca_file = "/nonexistent/ca.pem";
  cfg.cert_file = "/nonexistent/c.pem";
  cfg.key_file = "/nonexistent/k.pem";
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, &cfg, &t_cb, NULL), CM_ETLS);
  /* Missing arguments, an address of no family, one this host does not
   * have (TEST-NET-1, never sent to), a port another socket holds: each a
   * clear error, nothing left open. */
  t_cfg(&cfg);
  CM_CHECK_EQ(cm_net_new(NULL, &loop, &any, &cfg, &t_cb, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_new(&net, NULL, &any, &cfg, &t_cb, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_new(&net, &loop, NULL, &cfg, &t_cb, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, NULL, &t_cb, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_new(&net, &loop, &any, &cfg, NULL, NULL), CM_EINVAL);
  memset(&other, 0, sizeof(other));
  CM_CHECK_EQ(cm_net_new(&net, &loop, &other, &cfg, &t_cb, NULL), CM_EADDR);
  CM_CHECK_OK(cm_addr_parse("192.0.2.1:7946", &other));
  CM_CHECK_EQ(cm_net_new(&net, &loop, &other, &cfg, &t_cb, NULL), CM_EADDR);
  cm_net_config_default(&cfg);
  cfg.auth = CM_AUTH_NONE;
  t_start(&a, &loop, &cfg);
  CM_CHECK_EQ(cm_net_new(&net, &loop, &a.addr, &cfg, &t_cb, NULL),
              CM_EADDRINUSE);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  t_finish(&loop, all, 2);
}

/* ---- hostile input ------------------------------------------------------- */

static void t_udp_send(int fd, const cm_addr_t *to, const uint8_t *d,
                       size_t len) {
  cm_tn_udp_send(fd, to, d, len, 1);
}

typedef struct {
  tnode_t *n;
  uint64_t want;
} t_garbage_t;

static int t_garbage_seen(void *arg) {
  t_garbage_t *g = arg;
  cm_net_stats_t st = t_stats(g->n);
  return st.packets_in >= g->want;
}

CM_TEST(net_garbage_dropped) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t buf[1500];
  uint64_t seed = 12345;
  int fd, i;
  size_t j;
  t_garbage_t g;
  cm_net_stats_t st;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  CM_CHECK(fd >= 0);

  /* Random bytes of every size class, in batches the socket buffer
   * holds. */
  g.n = &a;
  for (i = 0; i < 200; i++) {
    size_t len = 1 + (size_t)(i * 37 % 1400);
    for (j = 0; j < len; j++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      buf[j] = (uint8_t)(seed >> 56);
    }
    t_udp_send(fd, &a.addr, buf, len);
    if (i % 20 == 19) {
      g.want = (uint64_t)i + 1;
      CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
    }
  }
  /* A long-header Initial, truncated below the 1200-byte minimum. */
  memset(buf, 0, sizeof(buf));
  buf[0] = 0xc3;
  buf[4] = 1; /* version 1 */
  buf[5] = 8; /* dcid len */
  memset(buf + 6, 0xaa, 8);
  buf[14] = 8; /* scid len */
  memset(buf + 15, 0xbb, 8);
  buf[23] = 0;    /* token len */
  buf[24] = 0x44; /* length (2-byte varint) */
  buf[25] = 0x00;
  t_udp_send(fd, &a.addr, buf, 300);
  /* A full-size Initial whose protection is garbage. */
  t_udp_send(fd, &a.addr, buf, 1200);
  /* Short headers under an unknown connection ID. */
  buf[0] = 0x40;
  t_udp_send(fd, &a.addr, buf, 60);
  t_udp_send(fd, &a.addr, buf, 5);
  /* An empty UDP datagram. */
  t_udp_send(fd, &a.addr, buf, 0);

  g.want = 205;
  CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
  st = t_stats(&a);
  /* Each of the 205, the empty one too, counted once as garbage: the input
   * is fixed, so the count is exact. */
  CM_CHECK_EQ(st.drop_garbage, 205);
  CM_CHECK_EQ(st.datagrams_in, 0);
  CM_CHECK_EQ(st.conns_open, 0); /* the forged Initial kept no connection */
  /* It was garbage, not a connection accepted and failed. */
  CM_CHECK_EQ(st.conns_accepted, 0);
  CM_CHECK_EQ(st.handshakes_failed, 0);
  CM_CHECK_EQ(a.ndgram, 0);
  CM_CHECK_EQ(a.nreq, 0);

  /* Still serving. */
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"ok", 2));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &b.addr));
  close(fd);
  t_finish(&loop, all, 2);
}

/* A connection is its peer's address as much as its connection ID: a
 * packet under the ID from another source is dropped as garbage (a
 * stranger who saw the ID cannot speak for the peer), and the connection
 * carries on. */
CM_TEST(net_connection_id_from_another_source_refused) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t key[CM_NET_ADDR_KEY_LEN], pkt[64];
  cm_net_conn_t *c;
  const ngtcp2_cid *dcid;
  cm_net_stats_t before, after;
  t_garbage_t g;
  uint64_t seed = 7;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"1", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  /* The ID b's packets to a carry: one a routes to its connection. */
  cm_net__addr_key(&a.addr, key);
  c = cm_net_map_get(&b.net->peers, key, sizeof(key));
  CM_CHECK(c != NULL && c->qc != NULL);
  dcid = ngtcp2_conn_get_dcid(c->qc);
  CM_CHECK(dcid->datalen > 0);
  CM_CHECK(cm_net_map_get(&a.net->cids, dcid->data, dcid->datalen) != NULL);
  cm_tn_random_bytes(&seed, pkt, sizeof(pkt));
  pkt[0] = 0x40 | (pkt[0] & 0x3f); /* short header */
  memcpy(pkt + 1, dcid->data, dcid->datalen);
  before = t_stats(&a);
  fd = cm_tn_udp_socket_at("127.0.0.2");
  t_udp_send(fd, &a.addr, pkt, sizeof(pkt));
  g.n = &a;
  g.want = before.packets_in + 1;
  CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
  after = t_stats(&a);
  CM_CHECK_EQ(after.drop_garbage, before.drop_garbage + 1);
  CM_CHECK_EQ(after.stateless_resets_sent, before.stateless_resets_sent);
  CM_CHECK_EQ(after.conns_open, before.conns_open);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"2", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 2, T_WAIT_MS));
  CM_CHECK_EQ(a.last[0], '2');
  close(fd);
  t_finish(&loop, all, 2);
}

/* Send `count` protected Initials without a token, each under a new DCID,
 * whose ClientHello TLS refuses at once (bad) or waits on (stalled), from
 * fd to n in batches the socket buffer holds, waiting until n has read
 * them. */
static void t_send_hellos(uv_loop_t *loop, tnode_t *n, int fd, uint64_t *seed,
                          int count, int bad) {
  uint8_t pkt[CM_TN_INITIAL_LEN], hs[CM_TN_HELLO_LEN], dcid[8];
  t_garbage_t g = {n, t_stats(n).packets_in};
  int i;
  for (i = 0; i < count; i++) {
    cm_tn_random_bytes(seed, dcid, sizeof(dcid));
    if (bad)
      cm_tn_bad_hello(hs);
    else
      cm_tn_partial_hello(seed, hs);
    cm_tn_sealed_initial(seed, pkt, dcid, sizeof(dcid), NULL, 0, hs,
                         sizeof(hs));
    t_udp_send(fd, &n->addr, pkt, sizeof(pkt));
    if (i % 50 == 49 || i == count - 1) {
      g.want += (uint64_t)(i % 50) + 1;
      CM_CHECK(t_run(loop, t_garbage_seen, &g, T_WAIT_MS));
    }
  }
}

/* The same, each a stalled handshake. */
static void t_send_stalled(uv_loop_t *loop, tnode_t *n, int fd, uint64_t *seed,
                           int count) {
  t_send_hellos(loop, n, fd, seed, count, 0);
}

/* Random payloads under valid Initial headers, from many addresses (as a
 * sender that spoofs them can): all refused by the stateless check, as
 * garbage, before they can spend anything. The endpoint-wide accept rate
 * is untouched, no Retry is sent for them even where every handshake
 * gets one, and a real client connects at once afterwards. */
CM_TEST(net_garbage_initials_spend_nothing) {
  enum { SOURCES = 50, EACH = 10 };
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint8_t pkt[CM_TN_INITIAL_LEN];
  uint64_t seed = 4242;
  cm_net_stats_t st;
  int s, i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate = 5;
  cfg.retry_threshold = 0; /* a Retry for every handshake */
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  for (s = 0; s < SOURCES; s++) {
    char ip[16];
    t_garbage_t g = {&a, t_stats(&a).packets_in + EACH};
    int fd;
    snprintf(ip, sizeof(ip), "127.0.0.%d", 100 + s);
    fd = cm_tn_udp_socket_at(ip);
    for (i = 0; i < EACH; i++) {
      cm_tn_forged_initial(&seed, pkt);
      t_udp_send(fd, &a.addr, pkt, sizeof(pkt));
    }
    CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
    close(fd);
  }
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_garbage, SOURCES * EACH);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  CM_CHECK_EQ(st.drop_source_limit, 0);
  CM_CHECK_EQ(st.retries_sent, 0);
  CM_CHECK_EQ(st.drop_retry_rate_limit, 0);
  CM_CHECK_EQ(st.conns_accepted, 0);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"ok", 2));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_rate_limit, 0); /* its first attempt got in */
  CM_CHECK_EQ(st.conns_accepted, 1);
  t_finish(&loop, all, 2);
}

/* One address sending handshakes (protected Initials, each under a new
 * connection ID) faster than accept_rate_per_source: the excess is refused
 * before any connection exists and counted, whichever port of that address
 * it comes from; another address is not affected, and a real peer still
 * connects. The exact edge of the bucket is
 * in test_limits.c (limit_accepts_per_source_at_its_edge), with a clock the
 * test controls. */
CM_TEST(net_accepts_per_source_limited) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 777, limited;
  int fd1, fd2, fd3;
  cm_net_stats_t st;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate_per_source = 5;
  cfg.retry_threshold = CM_NET_RETRY_NEVER; /* the rate alone */
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  fd1 = cm_tn_udp_socket_at("127.0.0.2");
  fd2 = cm_tn_udp_socket_at("127.0.0.3");
  fd3 = cm_tn_udp_socket_at("127.0.0.2"); /* the same address, a new port */
  t_send_stalled(&loop, &a, fd1, &seed, 10);
  t_send_stalled(&loop, &a, fd3, &seed, 10);
  st = t_stats(&a);
  /* 5 at once, then 5 a second: at most a few more in the time taken,
   * over both ports (one port alone would leave 10 refused). */
  CM_CHECK(st.drop_source_limit >= 12);
  CM_CHECK(st.drop_source_limit <= 15);
  CM_CHECK_EQ(st.drop_rate_limit, st.drop_source_limit);
  /* Only those admitted hold a (half-open) connection. */
  CM_CHECK_EQ(st.conns_half_open, 20 - st.drop_source_limit);
  CM_CHECK_EQ(st.conns_accepted, 20 - st.drop_source_limit);
  limited = st.drop_source_limit;
  /* Another address has its own budget. */
  t_send_stalled(&loop, &a, fd2, &seed, 1);
  CM_CHECK_EQ(t_stats(&a).drop_source_limit, limited);
  /* A real peer connects and is heard. */
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"ok", 2));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  close(fd1);
  close(fd2);
  close(fd3);
  t_finish(&loop, all, 2);
}

/* max_stream_message at its edge, both ways: a request and a reply of
 * exactly the bound go through; one byte more is refused at the sender
 * (CM_ETOOBIG, counted) or, if the sender allows more, by the receiver
 * (counted there, the requester told CM_ETOOBIG). */
CM_TEST(net_stream_limit_at_its_edge) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b, c;
  tnode_t *all[] = {&a, &b, &c};
  uint8_t buf[4096];

  memset(buf, 1, sizeof(buf));
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_stream_message = 2048;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  cfg.max_stream_message = 8192;
  t_start(&c, &loop, &cfg);

  /* Exactly the bound, request and reply. */
  b.reply_len = 2048;
  CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, buf, 2048, 1));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, 0);
  CM_CHECK_EQ(a.nresp_ok, 1);
  CM_CHECK_EQ(a.last_resp_len, 2048);
  CM_CHECK_EQ(b.nreq, 1);
  /* One more byte of request: refused before sending, counted. */
  CM_CHECK_EQ(cm_net_stream_request(a.net, &b.addr, buf, 2049, 2), CM_ETOOBIG);
  CM_CHECK_EQ(t_stats(&a).drop_oversized, 1);
  /* One more byte of reply, from a peer that allows it: the requester
   * refuses it. */
  c.reply_len = 2049;
  CM_CHECK_OK(cm_net_stream_request(a.net, &c.addr, buf, 10, 3));
  CM_CHECK(t_wait_ge(&loop, &a.nresp, 2, T_WAIT_MS));
  CM_CHECK_EQ(a.last_status, CM_ETOOBIG);
  CM_CHECK_EQ(a.nresp_ok, 1);
  /* A sender with a larger bound: the receiver refuses and counts. */
  CM_CHECK_OK(cm_net_stream_request(c.net, &b.addr, buf, 2049, 4));
  CM_CHECK(t_wait_ge(&loop, &c.nresp, 1, T_WAIT_MS));
  CM_CHECK_EQ(c.last_status, CM_ETOOBIG);
  CM_CHECK_EQ(b.nreq, 1); /* only the one that fit */
  CM_CHECK(t_stats(&b).drop_oversized >= 1);
  /* A reply over the responder's own bound: refused before sending,
   * counted, and the request is still the responder's to answer. */
  {
    uint64_t over = t_stats(&b).drop_oversized;
    b.reply_len = 2049;
    b.retry_len = 2048;
    CM_CHECK_OK(cm_net_stream_request(a.net, &b.addr, buf, 10, 5));
    CM_CHECK(t_wait_ge(&loop, &a.nresp, 3, T_WAIT_MS));
    CM_CHECK_EQ(b.last_respond, CM_ETOOBIG);
    CM_CHECK_EQ(t_stats(&b).drop_oversized, over + 1);
    CM_CHECK_EQ(a.last_status, 0);
    CM_CHECK_EQ(a.last_resp_len, 2048);
    CM_CHECK_EQ(a.nresp_ok, 2);
  }
  t_finish(&loop, all, 3);
}

/* ---- pool, timeouts, faults ---------------------------------------------- */

typedef struct {
  tnode_t *n;
  uint64_t open;
} t_open_t;

static int t_open_is(void *arg) {
  t_open_t *o = arg;
  return t_stats(o->n).conns_open == o->open;
}

/* Start a with a pool of two (and one half-open place, no Retry, no
 * per-source limit) and np peers with the usual settings. */
static void t_start_small_pool(uv_loop_t *loop, tnode_t *a, tnode_t *p,
                               int np) {
  cm_net_config_t cfg, small;
  int i;
  t_cfg(&cfg);
  small = cfg;
  small.max_connections = 2;
  small.max_half_open = 1;
  small.retry_threshold = 1;
  small.accept_rate_per_source = 0;
  t_start(a, loop, &small);
  for (i = 0; i < np; i++)
    t_start(&p[i], loop, &cfg);
}

CM_TEST(net_pool_eviction) {
  uv_loop_t loop;
  tnode_t a, p[3];
  tnode_t *all[] = {&a, &p[0], &p[1], &p[2]};
  cm_net_stats_t st;
  t_open_t o;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_start_small_pool(&loop, &a, p, 3);
  for (i = 0; i < 2; i++) {
    CM_CHECK_OK(
        cm_net_send_datagram(a.net, &p[i].addr, (const uint8_t *)"x", 1));
    CM_CHECK(t_wait_ge(&loop, &p[i].ndgram, 1, T_WAIT_MS));
  }
  /* p[0] is least recently used: it goes to make room for p[2]. */
  CM_CHECK_OK(cm_net_send_datagram(a.net, &p[1].addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &p[1].ndgram, 2, T_WAIT_MS));
  CM_CHECK_OK(cm_net_send_datagram(a.net, &p[2].addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &p[2].ndgram, 1, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_evicted, 1);
  CM_CHECK_EQ(st.conns_open, 2);
  o.n = &p[0];
  o.open = 0;
  CM_CHECK(t_run(&loop, t_open_is, &o, T_WAIT_MS)); /* p[0] saw the close */
  CM_CHECK_EQ(t_stats(&p[1]).conns_open, 1);
  /* An inbound connection also evicts (p[1], now the LRU). */
  CM_CHECK_OK(cm_net_send_datagram(p[0].net, &a.addr, (const uint8_t *)"y", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &p[0].addr));
  CM_CHECK_EQ(t_stats(&a).conns_evicted, 2);
  t_finish(&loop, all, 4);
}

CM_TEST(net_idle_timeout) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_open_t oa = {&a, 0}, ob = {&b, 0};

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.idle_timeout = CM_MSEC(300);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK(t_run(&loop, t_open_is, &oa, T_WAIT_MS));
  CM_CHECK(t_run(&loop, t_open_is, &ob, T_WAIT_MS));
  /* a, which opened it, timed out first and told b, which counts it so;
   * no close crossed another (a packet to a connection already gone would
   * have drawn a stateless reset). */
  CM_CHECK_EQ(t_stats(&a).conns_timed_out, 1);
  CM_CHECK_EQ(t_stats(&b).conns_timed_out, 1);
  CM_CHECK_EQ(t_stats(&a).stateless_resets_sent, 0);
  CM_CHECK_EQ(t_stats(&b).stateless_resets_sent, 0);
  /* A new send reconnects. */
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 2, T_WAIT_MS));
  t_finish(&loop, all, 2);
}

static int t_either_timed_out(void *arg) {
  t_pair_t *p = arg;
  return t_stats(p->a).conns_timed_out + t_stats(p->b).conns_timed_out > 0;
}

/* a and b on a new loop, with the given idle timeout and floor on both,
 * connected by a datagram from a that b has received. */
static void t_floor_pair(uv_loop_t *loop, tnode_t *a, tnode_t *b,
                         cm_time_t idle, cm_time_t floor) {
  cm_net_config_t cfg;
  CM_CHECK_OK(uv_loop_init(loop));
  t_cfg(&cfg);
  cfg.idle_timeout = idle;
  t_start(a, loop, &cfg);
  t_start(b, loop, &cfg);
  cm_net_set_idle_floor(a->net, floor);
  cm_net_set_idle_floor(b->net, floor);
  CM_CHECK_OK(cm_net_send_datagram(a->net, &b->addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(loop, &b->ndgram, 1, T_WAIT_MS));
}

/* An idle floor raised on both ends outlasts the configured timeout: the
 * connection that net_idle_timeout sees closed within 300 ms is still open
 * five times later. */
CM_TEST(net_idle_floor_keeps_a_connection_open) {
  uv_loop_t loop;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_open_t oa = {&a, 1};
  t_pair_t pair = {&a, &b};

  t_floor_pair(&loop, &a, &b, CM_MSEC(300), CM_SEC(30));
  CM_CHECK(!t_run(&loop, t_either_timed_out, &pair, 1500));
  CM_CHECK(t_run(&loop, t_open_is, &oa, 0));
  CM_CHECK_EQ(t_stats(&a).handshakes_ok, 1);
  t_finish(&loop, all, 2);
}

/* A peer that answers only at the QUIC level (its acknowledgements of our
 * datagrams), never with a datagram of its own, is answering: the
 * connection stays open past the configured idle timeout while one end
 * sends one way, as gossip and a probe round's one-way traffic do. */
CM_TEST(net_idle_floor_keeps_a_one_way_connection_open) {
  uv_loop_t loop;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_pair_t pair = {&a, &b};
  int i;

  t_floor_pair(&loop, &a, &b, CM_MSEC(300), CM_SEC(30));
  for (i = 0; i < 15; i++) {
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"z", 1));
    CM_CHECK(!t_run(&loop, t_either_timed_out, &pair, 100));
  }
  CM_CHECK_EQ(b.ndgram, 16);
  CM_CHECK_EQ(t_stats(&a).handshakes_ok, 1);
  t_finish(&loop, all, 2);
}

/* A floor raised once the connection is open reaches it: QUIC fixes its
 * own idle timeout at the handshake, so a connection made while the
 * membership was small kept the small timeout and paid a handshake the
 * next time its pair was quiet that long. */
CM_TEST(net_idle_floor_raised_reaches_an_open_connection) {
  uv_loop_t loop;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_open_t oa = {&a, 1}, ob = {&b, 1};
  t_pair_t pair = {&a, &b};

  t_floor_pair(&loop, &a, &b, CM_MSEC(300), 0);
  cm_net_set_idle_floor(a.net, CM_SEC(30));
  cm_net_set_idle_floor(b.net, CM_SEC(30));
  CM_CHECK(!t_run(&loop, t_either_timed_out, &pair, 1500));
  CM_CHECK(t_run(&loop, t_open_is, &oa, 0));
  CM_CHECK(t_run(&loop, t_open_is, &ob, 0));
  CM_CHECK_EQ(t_stats(&a).handshakes_ok, 1);
  t_finish(&loop, all, 2);
}

/* The end whose timeout runs out first closes the connection and tells
 * the other, whose own timeout (from its view of the membership) is
 * longer: b, floored at 30 s, sees it closed as idle within seconds, and
 * nothing it sends later is lost to a connection a has dropped. */
CM_TEST(net_idle_close_tells_the_peer) {
  uv_loop_t loop;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_open_t ob = {&b, 0};

  t_floor_pair(&loop, &a, &b, CM_MSEC(300), CM_SEC(30));
  cm_net_set_idle_floor(a.net, 0);
  CM_CHECK(t_run(&loop, t_open_is, &ob, 5000));
  CM_CHECK_EQ(t_stats(&a).conns_timed_out, 1);
  CM_CHECK_EQ(t_stats(&b).conns_timed_out, 1);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"w", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  t_finish(&loop, all, 2);
}

typedef struct {
  tnode_t *n;
  uint64_t want;
} t_timed_out_t;

static int t_timed_out_ge(void *arg) {
  t_timed_out_t *t = arg;
  return t_stats(t->n).conns_timed_out >= t->want;
}

/* The floor is the connection's idle timeout, in the same unit: with the
 * floor at 600 ms over a configured 200 ms, a quiet connection closes, and
 * not before about 600 ms (load can only make it later). a opened it, so
 * a closes it (the acceptor waits a little longer) and tells b. */
CM_TEST(net_idle_floor_is_the_idle_timeout) {
  uv_loop_t loop;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_timed_out_t gone_a = {&a, 1};
  t_open_t ob = {&b, 0};
  uint64_t t0 = t_now_us();

  t_floor_pair(&loop, &a, &b, CM_MSEC(200), CM_MSEC(600));
  CM_CHECK(t_run(&loop, t_timed_out_ge, &gone_a, 10000));
  CM_CHECK(t_now_us() - t0 >= 500000);
  CM_CHECK(t_run(&loop, t_open_is, &ob, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&b).conns_timed_out, 1);
  CM_CHECK_EQ(t_stats(&b).stateless_resets_sent, 0);

  t_finish(&loop, all, 2);
}

/* The floor extends quiet connections only: once a peer stops answering
 * what we send, the configured idle timeout (300 ms) still ends the
 * connection, not the floor (30 s). Without it a partitioned peer's
 * connection would hold its queue and spent congestion window until the
 * floor ran out. */
CM_TEST(net_idle_floor_still_gives_up_an_unanswering_peer) {
  uv_loop_t loop;
  cm_net_fault_t f;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_timed_out_t gone = {&a, 1};

  t_floor_pair(&loop, &a, &b, CM_MSEC(300), CM_SEC(30));
  memset(&f, 0, sizeof(f));
  f.blocked = &b.addr;
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"y", 1));
  CM_CHECK(t_run(&loop, t_timed_out_ge, &gone, 10000));
  CM_CHECK_EQ(b.ndgram, 1);
  CM_CHECK_OK(cm_net_set_fault(a.net, NULL));
  t_finish(&loop, all, 2);
}

typedef struct {
  tnode_t *n;
  uint64_t want;
} t_fault_t;

static int t_fault_dropped(void *arg) {
  t_fault_t *w = arg;
  return t_stats(w->n).drop_fault >= w->want;
}

CM_TEST(net_fault_injection) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b, c;
  tnode_t *all[] = {&a, &b, &c};
  cm_net_fault_t f;
  t_fault_t fw;
  int i, sent = 2000;
  uint64_t t0;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  t_start(&c, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));

  memset(&f, 0, sizeof(f));
  f.drop_out = 0.3;
  f.seed = 42;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  for (i = 0; i < sent; i++)
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  /* Wait for the survivors: stop when nothing more arrives. */
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1 + 1200, T_WAIT_MS));
  t_wait_ge(&loop, &b.ndgram, 1 + sent, 300);
  CM_CHECK(b.ndgram - 1 > sent * 6 / 10);
  CM_CHECK(b.ndgram - 1 < sent * 8 / 10);
  CM_CHECK_EQ((uint64_t)(sent - (b.ndgram - 1)), t_stats(&a).drop_fault);

  /* Incoming drops only from one peer. */
  memset(&f, 0, sizeof(f));
  f.drop_in = 1.0;
  f.peer = c.addr;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  CM_CHECK_OK(cm_net_send_datagram(c.net, &a.addr, (const uint8_t *)"c", 1));
  fw.n = &a;
  fw.want = t_stats(&a).drop_fault + 1;
  CM_CHECK(t_run(&loop, t_fault_dropped, &fw, T_WAIT_MS));
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &b.addr));

  /* Delay. */
  memset(&f, 0, sizeof(f));
  f.delay = CM_MSEC(100);
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  t0 = t_now_us();
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 2, T_WAIT_MS));
  CM_CHECK(t_now_us() - t0 >= 100000);

  /* A blocked peer loses everything. */
  memset(&f, 0, sizeof(f));
  f.blocked = &b.addr;
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 3, 300) == 0);
  /* Datagrams lost in a partition stay lost; the connection survives. */
  CM_CHECK_OK(cm_net_set_fault(a.net, NULL));
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 3, T_WAIT_MS));
  f.drop_out = 1.5;
  CM_CHECK_EQ(cm_net_set_fault(a.net, &f), CM_EINVAL);
  t_finish(&loop, all, 3);
}

/* Delayed datagrams arrive in the order sent; those still held when the
 * endpoint closes are freed, never delivered. */
CM_TEST(net_fault_delay_keeps_order_and_dies_with_the_endpoint) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_net_fault_t f;
  uint8_t d;
  int i;
  uint64_t t0;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"0", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  memset(&f, 0, sizeof(f));
  f.delay = CM_MSEC(150);
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  t0 = t_now_us();
  for (i = 1; i <= 3; i++) {
    d = (uint8_t)('0' + i);
    CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, &d, 1));
  }
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 4, T_WAIT_MS));
  CM_CHECK(t_now_us() - t0 >= 150000);
  CM_CHECK_EQ(a.last[0], '3');
  /* Held at a when it closes: wait until a has taken it in (its packet
   * counted), well inside the delay, then close. */
  {
    uint64_t in = t_stats(&a).packets_in;
    CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"5", 1));
    t0 = t_now_us();
    while (t_stats(&a).packets_in == in && t_now_us() - t0 < T_WAIT_MS * 1000u)
      uv_run(&loop, UV_RUN_ONCE);
    CM_CHECK(t_stats(&a).packets_in > in);
    CM_CHECK(a.net->delay_head != NULL);
  }
  t_finish(&loop, all, 2);
  CM_CHECK_EQ(a.ndgram, 4);
}

/* Every call refuses what it cannot act on, sends nothing and opens
 * nothing; after cm_net_close, every call that would send says so. */
CM_TEST(net_calls_refuse_bad_arguments_and_a_closing_endpoint) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_net_fault_t f;
  cm_addr_t out;
  static uint8_t big[CM_NET_DATAGRAM_MAX + 1];
  uint8_t x = 'x';

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_stream_message = 64;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_EQ(cm_net_local_addr(NULL, &out), CM_EINVAL);
  CM_CHECK_EQ(cm_net_local_addr(a.net, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_send_datagram(NULL, &b.addr, &x, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, NULL, &x, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, NULL, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, big, sizeof(big)),
              CM_ETOOBIG);
  CM_CHECK_EQ(cm_net_connect(a.net, NULL), CM_EINVAL);
  CM_CHECK_EQ(cm_net_connect(a.net, &a.addr), CM_EADDR);
  CM_CHECK_EQ(cm_net_stream_request(a.net, &b.addr, NULL, 5, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_stream_request(a.net, &a.addr, &x, 1, 1), CM_EADDR);
  CM_CHECK_EQ(cm_net_stream_request(a.net, &b.addr, big, 65, 1), CM_ETOOBIG);
  CM_CHECK_EQ(cm_net_stream_respond(NULL, 1, &x, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_stream_respond(a.net, 1, NULL, 1), CM_EINVAL);
  CM_CHECK_EQ(cm_net_stream_respond(a.net, 1, &x, 1), CM_ENOENT);
  CM_CHECK_EQ(cm_net_is_connected(NULL, &b.addr), 0);
  CM_CHECK_EQ(cm_net_is_connected(a.net, NULL), 0);
  CM_CHECK_EQ(cm_net_set_fault(NULL, NULL), CM_EINVAL);
  memset(&f, 0, sizeof(f));
  f.nblocked = 1; /* and no list */
  CM_CHECK_EQ(cm_net_set_fault(a.net, &f), CM_EINVAL);
  CM_CHECK_EQ(cm_net_fds(NULL, NULL, 0), 0);
  CM_CHECK_EQ(t_stats(&a).drop_oversized, 2);
  CM_CHECK_EQ(t_stats(&a).conns_open, 0);
  CM_CHECK_EQ(t_stats(&a).packets_out, 0);
  CM_CHECK_EQ(t_stats(&a).drop_fault, 0);

  /* Closing: refused from now on, before the close has run. */
  cm_net_close(a.net, t_closed_cb, &a);
  CM_CHECK_EQ(cm_net_send_datagram(a.net, &b.addr, &x, 1), CM_ECLOSED);
  CM_CHECK_EQ(cm_net_connect(a.net, &b.addr), CM_ECLOSED);
  CM_CHECK_EQ(cm_net_stream_request(a.net, &b.addr, &x, 1, 1), CM_ECLOSED);
  CM_CHECK_EQ(cm_net_stream_respond(a.net, 1, &x, 1), CM_ECLOSED);
  CM_CHECK_EQ(t_stats(&a).conns_open, 0);
  cm_net_close(a.net, t_closed_cb, &a); /* a second close is a no-op */
  CM_CHECK(t_wait_ge(&loop, &a.closed, 1, T_WAIT_MS));
  all[0] = &b;
  t_finish(&loop, all, 1);
}

/* cm_net_connect answers reports anyone can forge, so it takes only a free
 * place in the pool: with the pool full it refuses and closes nothing, where
 * a send (our own decision) may close an idle connection to make room. */
CM_TEST(net_connect_takes_only_a_free_place) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b, c;
  tnode_t *all[] = {&a, &b, &c};

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&b, &loop, &cfg);
  t_start(&c, &loop, &cfg);
  cfg.max_connections = 1;
  cfg.max_half_open = 1;
  t_start(&a, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"b", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(cm_net_connect(a.net, &c.addr), CM_ELIMIT);
  CM_CHECK(cm_net_is_connected(a.net, &b.addr));
  CM_CHECK_EQ(t_stats(&a).conns_open, 1);
  CM_CHECK_OK(cm_net_connect(a.net, &b.addr)); /* already connected */
  CM_CHECK_EQ(t_stats(&a).conns_open, 1);
  t_finish(&loop, all, 3);
}

/* ---- a full socket ------------------------------------------------------- */

#define T_SKIP 77
#define T_FULL_DGRAMS 120
#define T_FULL_LEN 600

/* What a sent has arrived, whole: every packet a counted as sent, b
 * counted as received. */
static int t_sent_is_received(void *arg) {
  t_pair_t *p = arg;
  cm_net_stats_t sa = t_stats(p->a), sb = t_stats(p->b);
  return sa.packets_out == sb.packets_in && sa.bytes_out == sb.bytes_in;
}

static void t_full_socket(void *arg) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_pair_t pair = {&a, &b};
  uint8_t d[T_FULL_LEN];
  int fds[2], small = 4096, i;
  cm_net_stats_t st;
  (void)arg;
  /* Loopback of our own, behind a token bucket (2 Mbit/s): packets wait
   * in the queue and keep their room in the sender's socket buffer. */
  if (unshare(CLONE_NEWNET) != 0 ||
      system("ip link set lo up && tc qdisc add dev lo root tbf rate 2mbit "
             "burst 4kb limit 1mb") != 0)
    cm_test_child_exit(T_SKIP);
  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).sends_deferred, 0);
  /* The smallest send buffer the kernel allows: room for a few packets. */
  CM_CHECK_EQ(cm_net_fds(a.net, fds, 2), 2);
  CM_CHECK_OK(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
  for (i = 0; i < T_FULL_DGRAMS; i++) {
    memset(d, i, sizeof(d));
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, d, sizeof(d)));
  }
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1 + T_FULL_DGRAMS, 4 * T_WAIT_MS));
  CM_CHECK_EQ(b.last_len, T_FULL_LEN);
  CM_CHECK_EQ(b.last[0], (uint8_t)(T_FULL_DGRAMS - 1));
  CM_CHECK(t_run(&loop, t_sent_is_received, &pair, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK(st.sends_deferred > 0);
  CM_CHECK_EQ(st.send_errors, 0);
  CM_CHECK_EQ(st.drop_queue_full, 0);
  CM_CHECK_EQ(a.net->outstanding_sends, 0);
  t_finish(&loop, all, 2);
}

/* A socket with no room (a slow link): packets wait for room, are sent
 * whole and counted once, never lost or counted as errors. Runs in a
 * child, in a network namespace of its own (needs root, ip and tc). */
CM_TEST(net_packets_wait_for_room_in_a_full_socket) {
  int rc = cm_test_in_child(t_full_socket, NULL, 60000);
  if (rc == T_SKIP) {
    printf("    skipped: no network namespace with a rate limit here "
           "(needs root, ip and tc)\n");
    return;
  }
  CM_CHECK_EQ(rc, 0);
}

/* ---- lifecycle ----------------------------------------------------------- */

CM_TEST(net_create_close_cycles) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  for (i = 0; i < 200; i++) {
    t_all_t all;
    tnode_t *one[] = {&a};
    t_start(&a, &loop, &cfg);
    cm_net_close(a.net, t_closed_cb, &a);
    all.nodes = one;
    all.n = 1;
    CM_CHECK(t_run(&loop, t_all_closed, &all, T_WAIT_MS));
  }
  /* And with live connections, twenty times. */
  for (i = 0; i < 20; i++) {
    tnode_t *two[] = {&a, &b};
    t_all_t all = {two, 2};
    t_start(&a, &loop, &cfg);
    t_start(&b, &loop, &cfg);
    CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"x", 1));
    CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
    cm_net_close(a.net, t_closed_cb, &a);
    cm_net_close(b.net, t_closed_cb, &b);
    CM_CHECK(t_run(&loop, t_all_closed, &all, T_WAIT_MS));
  }
  CM_CHECK_OK(uv_loop_close(&loop));
}

/* ---- admission of inbound connections ------------------------------------ */

/* Real client Initials (the cluster's key, so each starts a handshake that
 * a server carries to the point of waiting for the client's Finished, and
 * holds half-open until its handshake timeout), sent by the test. */
#define T_INITIALS 24

typedef struct {
  uint8_t (*pkts)[CM_TN_PKT_MAX];
  size_t lens[T_INITIALS];
  size_t n, next;
} t_initials_t;

static void t_initials(t_initials_t *in) {
  in->pkts = malloc(T_INITIALS * sizeof(*in->pkts));
  CM_CHECK(in->pkts != NULL);
  in->n = cm_tn_capture_initials(&t_keys[0], T_INITIALS, in->pkts, in->lens);
  in->next = 0;
  CM_CHECK_EQ(in->n, T_INITIALS);
}

/* Send the next `count` captured Initials from fd to n, and wait until n
 * has read them. */
static void t_send_initials(uv_loop_t *loop, t_initials_t *in, int fd,
                            tnode_t *n, size_t count) {
  t_garbage_t g = {n, t_stats(n).packets_in + count};
  size_t i;
  CM_CHECK(in->next + count <= in->n);
  for (i = 0; i < count; i++, in->next++)
    t_udp_send(fd, &n->addr, in->pkts[in->next], in->lens[in->next]);
  CM_CHECK(t_run(loop, t_garbage_seen, &g, T_WAIT_MS));
}

/* Half-open connections are capped apart from the pool, and one source
 * cannot keep the table: a newcomer from a source holding fewer displaces
 * the oldest of the source holding the most, while more from that source
 * are refused, and a real peer still gets in. */
CM_TEST(net_half_open_capped_and_shared) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  t_initials_t in;
  cm_net_stats_t st;
  int fd1, fd2;

  t_cfg(&cfg);
  t_initials(&in);
  CM_CHECK_OK(uv_loop_init(&loop));
  cfg.max_half_open = 8;
  cfg.retry_threshold = 8; /* no Retry: the cap alone */
  cfg.accept_rate_per_source = 0;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  fd1 = cm_tn_udp_socket_at("127.0.0.2");
  fd2 = cm_tn_udp_socket_at("127.0.0.3");
  t_send_initials(&loop, &in, fd1, &a, 20);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, 8);
  CM_CHECK_EQ(st.conns_accepted, 8);
  CM_CHECK_EQ(st.drop_half_open, 12);
  CM_CHECK_EQ(st.half_open_displaced, 0);
  /* Another source takes the place of the first source's oldest. */
  t_send_initials(&loop, &in, fd2, &a, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, 8);
  CM_CHECK_EQ(st.half_open_displaced, 1);
  CM_CHECK_EQ(st.drop_half_open, 12);
  /* A real peer connects through the full table. */
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"ok", 2));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).half_open_displaced, 2);
  close(fd1);
  close(fd2);
  free(in.pkts);
  t_finish(&loop, all, 2);
}

/* An Initial that decrypts but whose handshake data TLS refuses is not a
 * connection: with the half-open table full it displaces nobody, and it
 * is counted as a failed handshake, never as accepted. */
CM_TEST(net_half_open_displaced_only_by_a_good_first_packet) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint8_t pkt[CM_TN_INITIAL_LEN], hs[CM_TN_HELLO_LEN], dcid[8];
  uint64_t seed = 31;
  t_garbage_t g;
  cm_net_stats_t st;
  int fd1, fd2;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_half_open = 2;
  cfg.retry_threshold = 2; /* no Retry: the table alone */
  cfg.accept_rate_per_source = 0;
  t_start(&a, &loop, &cfg);
  fd1 = cm_tn_udp_socket_at("127.0.0.2");
  fd2 = cm_tn_udp_socket_at("127.0.0.3");
  t_send_stalled(&loop, &a, fd1, &seed, 2);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, 2);
  CM_CHECK_EQ(st.conns_accepted, 2);
  /* Another source, which a good handshake would let displace one. */
  cm_tn_random_bytes(&seed, dcid, sizeof(dcid));
  cm_tn_bad_hello(hs);
  cm_tn_sealed_initial(&seed, pkt, dcid, sizeof(dcid), NULL, 0, hs, sizeof(hs));
  g.n = &a;
  g.want = st.packets_in + 1;
  t_udp_send(fd2, &a.addr, pkt, sizeof(pkt));
  CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, 0);
  CM_CHECK_EQ(st.conns_half_open, 2);
  CM_CHECK_EQ(st.conns_accepted, 2);
  CM_CHECK_EQ(st.handshakes_failed, 1);
  CM_CHECK_EQ(st.drop_garbage, 0);
  /* Nor does one that QUIC itself refuses before TLS sees anything (a
   * STREAM frame has no place in an Initial): dropped as garbage. */
  {
    static const uint8_t stream_frame[] = {0x08, 0x00};
    cm_tn_random_bytes(&seed, dcid, sizeof(dcid));
    cm_tn_sealed_initial_frames(&seed, pkt, dcid, sizeof(dcid), NULL, 0,
                                stream_frame, sizeof(stream_frame));
    g.want = st.packets_in + 1;
    t_udp_send(fd2, &a.addr, pkt, sizeof(pkt));
    CM_CHECK(t_run(&loop, t_garbage_seen, &g, T_WAIT_MS));
    st = t_stats(&a);
    CM_CHECK_EQ(st.drop_garbage, 1);
    CM_CHECK_EQ(st.half_open_displaced, 0);
    CM_CHECK_EQ(st.conns_half_open, 2);
    CM_CHECK_EQ(st.handshakes_failed, 1);
  }
  /* A good one from there does displace. */
  t_send_stalled(&loop, &a, fd2, &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, 1);
  CM_CHECK_EQ(st.conns_accepted, 3);
  close(fd1);
  close(fd2);
  t_finish(&loop, all, 1);
}

/* ---- known peers first -----------------------------------------------------
 */

static int t_is_listed(void *ud, const cm_addr_t *from) {
  tnode_t *n = ud;
  size_t i;
  n->nasked++;
  for (i = 0; i < n->nknown; i++)
    if (cm_addr_eq(&n->known[i], from))
      return 1;
  return 0;
}

static const cm_net_callbacks_t t_cb_known = {.on_datagram = t_on_datagram,
                                              .on_stream_request = t_on_request,
                                              .on_stream_response =
                                                  t_on_response,
                                              .is_known_peer = t_is_listed};

/* A half-open table of `places` without Retry, whose stalled handshakes outlast
 * every wait of the test: a place only frees up by displacement. */
static void t_cfg_small_table(cm_net_config_t *cfg, uint32_t places) {
  t_cfg(cfg);
  cfg->max_half_open = places;
  cfg->retry_threshold = places; /* no Retry: the table alone */
  cfg->accept_rate_per_source = 0;
  cfg->handshake_timeout = CM_SEC(60);
}

/* More sources than places, each holding one stalled handshake: while the
 * places are young no stranger can displace another (each would then hold
 * as many), but a member can, so members still connect while the table is
 * held. */
CM_TEST(net_known_peer_gets_through_a_table_held_by_many) {
  enum { PLACES = 8, SOURCES = 9 };
  /* accept_rate SOURCES: all at once, and a place's life before a new
   * source may take it (max_half_open / accept_rate) of 8/9 s. */
  const uint64_t life_us = (uint64_t)PLACES * 1000000u / SOURCES;
  uv_loop_t loop;
  cm_net_config_t cfg, peer;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 51, t0;
  cm_net_stats_t st;
  int fd[SOURCES], i, young;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg_small_table(&cfg, PLACES);
  cfg.accept_rate = SOURCES;
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  t_cfg(&peer);
  t_start(&b, &loop, &peer);
  a.known = &b.addr;
  a.nknown = 1;
  t0 = t_now_us();
  for (i = 0; i < SOURCES; i++) {
    char ip[16];
    snprintf(ip, sizeof(ip), "127.0.0.%d", 20 + i);
    fd[i] = cm_tn_udp_socket_at(ip);
    t_send_stalled(&loop, &a, fd[i], &seed, 1);
  }
  /* The last source found every place young: refused (on a machine slow
   * enough to have taken a whole life over the sends, the node may have
   * found the oldest old and displaced it instead). */
  young = t_now_us() - t0 < life_us;
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, PLACES);
  CM_CHECK_EQ(st.drop_half_open + st.half_open_displaced, SOURCES - PLACES);
  if (young)
    CM_CHECK_EQ(st.half_open_displaced, 0);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"m", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &b.addr));
  CM_CHECK_EQ(t_stats(&a).half_open_displaced, st.half_open_displaced + 1);
  for (i = 0; i < SOURCES; i++)
    close(fd[i]);
  t_finish(&loop, all, 2);
}

/* A table held by known peers' handshakes: a stranger displaces none of
 * them, however few it holds; a known peer does, by fair share among
 * them, and a known peer's source is its address and port. */
CM_TEST(net_known_peer_never_displaced_by_a_stranger) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  cm_addr_t members[2];
  uint64_t seed = 52;
  cm_net_stats_t st;
  int k1, k2, s1;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg_small_table(&cfg, 2);
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  k1 = cm_tn_udp_socket_at("127.0.0.1");
  k2 = cm_tn_udp_socket_at("127.0.0.1");
  s1 = cm_tn_udp_socket_at("127.0.0.30");
  members[0] = cm_tn_socket_addr(k1);
  members[1] = cm_tn_socket_addr(k2);
  a.known = members;
  a.nknown = 2;
  t_send_stalled(&loop, &a, k1, &seed, 2);
  CM_CHECK_EQ(t_stats(&a).conns_half_open, 2);
  /* A stranger holding nothing is refused. */
  t_send_stalled(&loop, &a, s1, &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, 0);
  CM_CHECK_EQ(st.drop_half_open, 1);
  /* Another member on the same IP takes the place of the first's oldest. */
  t_send_stalled(&loop, &a, k2, &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, 1);
  CM_CHECK_EQ(st.conns_half_open, 2);
  /* Now both hold one: neither may displace the other. */
  t_send_stalled(&loop, &a, k1, &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, 1);
  CM_CHECK_EQ(st.drop_half_open, 2);
  close(k1);
  close(k2);
  close(s1);
  t_finish(&loop, all, 1);
}

/* Strangers use up the per-IP budget of a member's IP, the endpoint's
 * budget they share and the budget of sources new lately: the member
 * connects at its first attempt all the same, on budgets of its own. */
CM_TEST(net_known_peer_rates_apart_from_strangers) {
  uv_loop_t loop;
  cm_net_config_t cfg, peer;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 53;
  cm_net_stats_t st;
  int s1, s2, s3, s4;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate = 2;
  cfg.accept_rate_per_source = 1;
  cfg.retry_threshold = CM_NET_RETRY_NEVER; /* the rates alone */
  cfg.handshake_timeout = CM_SEC(60);
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  t_cfg(&peer);
  t_start(&b, &loop, &peer);
  a.known = &b.addr;
  a.nknown = 1;
  s1 = cm_tn_udp_socket_at("127.0.0.1"); /* the member's IP */
  s2 = cm_tn_udp_socket_at("127.0.0.2");
  s3 = cm_tn_udp_socket_at("127.0.0.3");
  s4 = cm_tn_udp_socket_at("127.0.0.4");
  t_send_stalled(&loop, &a, s1, &seed, 2); /* 127.0.0.1's one, then none */
  t_send_stalled(&loop, &a, s2, &seed, 1); /* the endpoint's second */
  t_send_stalled(&loop, &a, s3, &seed, 2); /* the new's, then its IP's over */
  t_send_stalled(&loop, &a, s4, &seed, 1); /* none left for the new */
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_accepted, 3);
  CM_CHECK_EQ(st.accepts_fresh, 1);
  CM_CHECK(st.drop_source_limit >= 1);
  CM_CHECK(st.drop_rate_limit >= 3);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"m", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).drop_source_limit, st.drop_source_limit);
  CM_CHECK_EQ(t_stats(&a).drop_rate_limit, st.drop_rate_limit);
  close(s1);
  close(s2);
  close(s3);
  close(s4);
  t_finish(&loop, all, 2);
}

/* A pool full of idle authenticated connections meets a flood of
 * handshakes: none of them may cost an authenticated connection its
 * place, because unauthenticated ones take no place in the pool. */
CM_TEST(net_half_open_never_evicts_authenticated) {
  uv_loop_t loop;
  tnode_t a, p[2];
  tnode_t *all[] = {&a, &p[0], &p[1]};
  t_initials_t in;
  cm_net_stats_t st;
  int fd, i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_start_small_pool(&loop, &a, p, 2);
  t_initials(&in); /* with the key t_cfg set */
  for (i = 0; i < 2; i++) {
    CM_CHECK_OK(
        cm_net_send_datagram(p[i].net, &a.addr, (const uint8_t *)"x", 1));
    CM_CHECK(t_wait_ge(&loop, &a.ndgram, i + 1, T_WAIT_MS));
  }
  CM_CHECK_EQ(t_stats(&a).conns_idle, 2); /* the pool is full and idle */
  fd = cm_tn_udp_socket_at("127.0.0.2");
  t_send_initials(&loop, &in, fd, &a, 20);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_evicted, 0);
  CM_CHECK_EQ(st.drop_pool_full, 0);
  CM_CHECK_EQ(st.conns_half_open, 1);
  CM_CHECK_EQ(st.drop_half_open, 19);
  for (i = 0; i < 2; i++) {
    CM_CHECK(cm_net_is_connected(a.net, &p[i].addr));
    CM_CHECK_OK(
        cm_net_send_datagram(p[i].net, &a.addr, (const uint8_t *)"y", 1));
  }
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 4, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).handshakes_ok, 2); /* over the same connections */
  close(fd);
  free(in.pkts);
  t_finish(&loop, all, 3);
}

static int t_pool_full_seen(void *arg) {
  return t_stats(arg).drop_pool_full >= 1;
}

/* Keep a's connection to p busy: a request p leaves unanswered. */
static void t_make_busy(uv_loop_t *loop, tnode_t *a, tnode_t *p, uint64_t id) {
  p->no_reply = 1;
  CM_CHECK_OK(
      cm_net_stream_request(a->net, &p->addr, (const uint8_t *)"q", 1, id));
  CM_CHECK(t_wait_ge(loop, &p->nreq, 1, T_WAIT_MS));
}

/* A handshake that could find no room in the pool once authenticated
 * (every connection busy) is refused before it costs one: the Initial is
 * dropped and counted, nothing is accepted, the busy ones stay. */
CM_TEST(net_pool_full_of_busy_refuses_before_handshake) {
  uv_loop_t loop;
  tnode_t a, p[3];
  tnode_t *all[] = {&a, &p[0], &p[1], &p[2]};
  cm_net_stats_t st;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_start_small_pool(&loop, &a, p, 3);
  for (i = 0; i < 2; i++)
    t_make_busy(&loop, &a, &p[i], (uint64_t)i);
  CM_CHECK_OK(cm_net_send_datagram(p[2].net, &a.addr, (const uint8_t *)"z", 1));
  CM_CHECK(t_run(&loop, t_pool_full_seen, &a, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_accepted, 0);
  CM_CHECK_EQ(st.conns_evicted, 0);
  CM_CHECK_EQ(a.ndgram, 0);
  for (i = 0; i < 2; i++)
    CM_CHECK(cm_net_is_connected(a.net, &p[i].addr));
  t_finish(&loop, all, 4);
}

static int t_half_open_1(void *arg) {
  return t_stats(arg).conns_half_open == 1;
}

/* a's peer p is authenticated and out of the half-open table. */
typedef struct {
  tnode_t *a;
  uint64_t handshakes;
} t_auth_t;

static int t_authenticated(void *arg) {
  t_auth_t *w = arg;
  cm_net_stats_t st = t_stats(w->a);
  return st.handshakes_ok >= w->handshakes && st.conns_half_open == 0;
}

/* A handshake begun holds its place: while one is half-open and the pool
 * has room for just it (one idle connection), the next is refused before
 * it costs a handshake. When the first is authenticated and finds no room
 * left after all (the idle connection became busy meanwhile), it is
 * closed and counted, and no busy connection is evicted. */
CM_TEST(net_pool_room_held_for_half_open) {
  uv_loop_t loop;
  cm_net_config_t cfg, small;
  tnode_t a, p[5];
  tnode_t *all[] = {&a, &p[0], &p[1], &p[2], &p[3], &p[4]};
  cm_addr_t blocked[2];
  cm_net_fault_t f;
  cm_net_stats_t st;
  t_auth_t w;
  uint64_t refused;
  int i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  small = cfg;
  small.max_connections = 3;
  small.max_half_open = 2;
  small.retry_threshold = 2;
  small.accept_rate_per_source = 0;
  t_start(&a, &loop, &small);
  for (i = 0; i < 5; i++)
    t_start(&p[i], &loop, &cfg);
  t_make_busy(&loop, &a, &p[0], 0);
  t_make_busy(&loop, &a, &p[1], 1);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &p[2].addr, (const uint8_t *)"i", 1));
  CM_CHECK(t_wait_ge(&loop, &p[2].ndgram, 1, T_WAIT_MS)); /* idle */
  /* p[3]'s handshake begins, then stalls: a hears nothing more from it. */
  CM_CHECK_OK(cm_net_send_datagram(p[3].net, &a.addr, (const uint8_t *)"z", 1));
  CM_CHECK(t_run(&loop, t_half_open_1, &a, T_WAIT_MS));
  memset(&f, 0, sizeof(f));
  blocked[0] = p[3].addr;
  blocked[1] = p[4].addr;
  f.blocked = blocked;
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  /* The one idle place is p[3]'s: p[4] is refused. */
  CM_CHECK_OK(cm_net_send_datagram(p[4].net, &a.addr, (const uint8_t *)"w", 1));
  CM_CHECK(t_run(&loop, t_pool_full_seen, &a, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&a).conns_accepted, 1);
  f.nblocked = 2; /* p[4]'s retries would only add to the count */
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  t_make_busy(&loop, &a, &p[2], 2);
  /* p[3] resends its part of the handshake; a authenticates it and finds
   * every place busy. */
  w.a = &a;
  w.handshakes = t_stats(&a).handshakes_ok + 1;
  refused = t_stats(&a).drop_pool_full;
  f.blocked = &blocked[1];
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(a.net, &f));
  CM_CHECK(t_run(&loop, t_authenticated, &w, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_pool_full, refused + 1);
  CM_CHECK_EQ(st.conns_accepted, 1);
  CM_CHECK_EQ(st.conns_evicted, 0);
  CM_CHECK_EQ(a.ndgram, 0);
  CM_CHECK_EQ(cm_net_is_connected(a.net, &p[3].addr), 0);
  for (i = 0; i < 3; i++)
    CM_CHECK(cm_net_is_connected(a.net, &p[i].addr));
  CM_CHECK_OK(cm_net_set_fault(a.net, NULL));
  t_finish(&loop, all, 6);
}

/* A server that answers every Initial without a token with a Retry: a
 * cm_net client follows it, and the connection works both ways. */
CM_TEST(net_retry_then_connect) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_net_stats_t st;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.retry_threshold = 0;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"r", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &b.addr));
  st = t_stats(&a);
  CM_CHECK(st.retries_sent >= 1);
  CM_CHECK_EQ(st.drop_bad_token, 0);
  CM_CHECK_EQ(st.conns_accepted, 1);
  CM_CHECK_EQ(st.handshakes_ok, 1);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &b.addr, (const uint8_t *)"s", 1));
  CM_CHECK(t_wait_ge(&loop, &b.ndgram, 1, T_WAIT_MS));
  CM_CHECK_EQ(t_stats(&b).handshakes_ok, 1);
  t_finish(&loop, all, 2);
}

/* Send one protected Initial (a partial ClientHello) carrying `token`
 * under DCID dcid from fd, and wait until n has read it. */
static void t_send_token(uv_loop_t *loop, tnode_t *n, int fd, uint64_t *seed,
                         const ngtcp2_cid *dcid, const uint8_t *token,
                         size_t tokenlen) {
  uint8_t pkt[CM_TN_INITIAL_LEN], hs[CM_TN_HELLO_LEN];
  t_garbage_t g = {n, t_stats(n).packets_in + 1};
  cm_tn_partial_hello(seed, hs);
  cm_tn_sealed_initial(seed, pkt, dcid->data, dcid->datalen, token, tokenlen,
                       hs, sizeof(hs));
  t_udp_send(fd, &n->addr, pkt, sizeof(pkt));
  CM_CHECK(t_run(loop, t_garbage_seen, &g, T_WAIT_MS));
}

/* Tokens are bound to the address and port the Retry went to and to the
 * connection it answered, and expire with the handshake the client makes
 * with them: a forged token, one replayed from another address or port,
 * and one older than handshake_timeout are counted drops; one a second
 * younger, and the right one from the right address, pass and their
 * handshakes begin. */
CM_TEST(net_retry_tokens_checked) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN], forged[sizeof(token)];
  struct sockaddr_storage ss;
  socklen_t sslen;
  ngtcp2_cid scid, scid2, odcid;
  cm_addr_t from;
  uint64_t seed = 99;
  int fd1, fd2, fd3, tlen, old;
  cm_net_stats_t st;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.retry_threshold = 0;
  t_start(&a, &loop, &cfg);
  fd1 = cm_tn_udp_socket_at("127.0.0.2");
  fd2 = cm_tn_udp_socket_at("127.0.0.3");
  fd3 = cm_tn_udp_socket_at("127.0.0.2");
  from = cm_tn_socket_addr(fd1);
  sslen = cm_net__addr_to_sa(&from, &ss);
  scid.datalen = CM_NET_SCID_LEN;
  cm_tn_random_bytes(&seed, scid.data, scid.datalen);
  odcid.datalen = 8;
  cm_tn_random_bytes(&seed, odcid.data, odcid.datalen);
  tlen = cm_net__retry_token(a.net, token, sizeof(token), NGTCP2_PROTO_VER_V1,
                             (struct sockaddr *)&ss, sslen, &scid, &odcid,
                             cm_net__now());
  CM_CHECK(tlen > 0);
  memcpy(forged, token, (size_t)tlen);
  forged[tlen / 2] ^= 1;
  t_send_token(&loop, &a, fd1, &seed, &scid, forged, (size_t)tlen);
  CM_CHECK_EQ(t_stats(&a).drop_bad_token, 1);
  t_send_token(&loop, &a, fd2, &seed, &scid, token, (size_t)tlen);
  CM_CHECK_EQ(t_stats(&a).drop_bad_token, 2);
  t_send_token(&loop, &a, fd3, &seed, &scid, token, (size_t)tlen);
  CM_CHECK_EQ(t_stats(&a).drop_bad_token, 3);
  /* Under another connection ID than the one the Retry gave. */
  odcid.data[0] ^= 1;
  t_send_token(&loop, &a, fd1, &seed, &odcid, token, (size_t)tlen);
  CM_CHECK_EQ(t_stats(&a).drop_bad_token, 4);
  odcid.data[0] ^= 1;
  /* Older than handshake_timeout: the client has given that connection up. */
  old =
      cm_net__retry_token(a.net, forged, sizeof(forged), NGTCP2_PROTO_VER_V1,
                          (struct sockaddr *)&ss, sslen, &scid, &odcid,
                          cm_net__now() - (cfg.handshake_timeout + CM_SEC(1)) *
                                              NGTCP2_MICROSECONDS);
  CM_CHECK(old > 0);
  t_send_token(&loop, &a, fd1, &seed, &scid, forged, (size_t)old);
  CM_CHECK_EQ(t_stats(&a).drop_bad_token, 5);
  /* Within it, as a retransmission carries the token a few seconds after
   * the Retry (PTOs of 1 s, then 2 s): it still passes. */
  scid2.datalen = CM_NET_SCID_LEN;
  cm_tn_random_bytes(&seed, scid2.data, scid2.datalen);
  old =
      cm_net__retry_token(a.net, forged, sizeof(forged), NGTCP2_PROTO_VER_V1,
                          (struct sockaddr *)&ss, sslen, &scid2, &odcid,
                          cm_net__now() - (cfg.handshake_timeout - CM_SEC(1)) *
                                              NGTCP2_MICROSECONDS);
  CM_CHECK(old > 0);
  t_send_token(&loop, &a, fd1, &seed, &scid2, forged, (size_t)old);
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_bad_token, 5);
  CM_CHECK_EQ(st.conns_accepted, 1);
  /* The right token from the right address passes the check. */
  t_send_token(&loop, &a, fd1, &seed, &scid, token, (size_t)tlen);
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_bad_token, 5);
  CM_CHECK_EQ(st.drop_garbage, 0);
  CM_CHECK_EQ(st.retries_sent, 0);
  CM_CHECK_EQ(st.conns_accepted, 2);
  CM_CHECK_EQ(st.conns_half_open, 2);
  close(fd1);
  close(fd2);
  close(fd3);
  t_finish(&loop, all, 1);
}

/* A token `age_s` seconds old from fd, for a new connection: 1 if n
 * accepted it (a handshake began), 0 if it was dropped as a bad token. */
static int t_token_of_age(uv_loop_t *loop, tnode_t *n, int fd, uint64_t *seed,
                          double age_s) {
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  struct sockaddr_storage ss;
  cm_addr_t from = cm_tn_socket_addr(fd);
  socklen_t sslen = cm_net__addr_to_sa(&from, &ss);
  ngtcp2_cid scid, odcid;
  uint64_t bad = t_stats(n).drop_bad_token;
  int tlen;
  scid.datalen = CM_NET_SCID_LEN;
  cm_tn_random_bytes(seed, scid.data, scid.datalen);
  odcid.datalen = 8;
  cm_tn_random_bytes(seed, odcid.data, odcid.datalen);
  tlen = cm_net__retry_token(n->net, token, sizeof(token), NGTCP2_PROTO_VER_V1,
                             (struct sockaddr *)&ss, sslen, &scid, &odcid,
                             cm_net__now() -
                                 (uint64_t)(age_s * (double)NGTCP2_SECONDS));
  CM_CHECK(tlen > 0);
  t_send_token(loop, n, fd, seed, &scid, token, (size_t)tlen);
  return t_stats(n).drop_bad_token == bad;
}

/* A token lasts handshake_timeout, but never under 3 s (the client's
 * retransmissions carry it a second and three seconds after its Initial)
 * nor over 10 s (a captured Initial replays no longer). */
CM_TEST(net_retry_token_life_bounded) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t shortt, longt;
  tnode_t *all[] = {&shortt, &longt};
  uint64_t seed = 717;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.retry_threshold = 0;
  cfg.handshake_timeout = CM_SEC(1);
  t_start(&shortt, &loop, &cfg);
  cfg.handshake_timeout = CM_SEC(60);
  t_start(&longt, &loop, &cfg);
  fd = cm_tn_udp_socket_at("127.0.0.2");
  CM_CHECK_EQ(t_token_of_age(&loop, &shortt, fd, &seed, 2.5), 1);
  CM_CHECK_EQ(t_token_of_age(&loop, &shortt, fd, &seed, 3.5), 0);
  CM_CHECK_EQ(t_token_of_age(&loop, &longt, fd, &seed, 9.0), 1);
  CM_CHECK_EQ(t_token_of_age(&loop, &longt, fd, &seed, 11.0), 0);
  close(fd);
  t_finish(&loop, all, 2);
}

/* ---- unproven addresses ------------------------------------------------ */

/* Initials whose ClientHello TLS refuses hold no half-open place, so they
 * never reach retry_threshold, yet each costs a TLS run. Without a token
 * they are admitted only while the small endpoint-wide budget for unproven
 * addresses lasts, and spend nothing else; past it, Retries, which a
 * sender that forges its address never answers. The endpoint-wide rate
 * proven strangers need is untouched, every Initial is counted under what
 * became of it, and a stranger connects at its first proven attempt. */
CM_TEST(net_refused_initials_turn_retry_on) {
  /* The unproven budget: a bucket of 100 that refills at 100 a second
   * (cm_net_accept.c). */
  enum { FLOOD = 300, UNPROVEN_BURST = 100, UNPROVEN_RATE = 100 };
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 71, t0, admitted;
  cm_net_stats_t st;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate = 50; /* under the unproven budget: spent, it is gone */
  cfg.accept_rate_per_source = 0;
  t_start(&a, &loop, &cfg);
  t_start(&b, &loop, &cfg);
  fd = cm_tn_udp_socket_at("127.0.0.2");
  t0 = t_now_us();
  t_send_hellos(&loop, &a, fd, &seed, FLOOD, 1);
  /* What the budget can have let through: its burst and its refill while
   * the flood lasted (milliseconds here, most of a second under valgrind),
   * which must leave most of the flood to Retries for the test to mean
   * anything. */
  admitted = UNPROVEN_BURST + UNPROVEN_RATE * (t_now_us() - t0) / 1000000 + 1;
  CM_CHECK(admitted < FLOOD * 2 / 3);
  st = t_stats(&a);
  CM_CHECK(st.handshakes_refused >= UNPROVEN_BURST);
  CM_CHECK(st.handshakes_refused <= admitted);
  CM_CHECK_EQ(st.handshakes_failed, st.handshakes_refused);
  CM_CHECK_EQ(st.handshakes_refused + st.retries_sent +
                  st.drop_retry_rate_limit,
              FLOOD);
  CM_CHECK(st.retries_sent >= (FLOOD - admitted) / 2);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  CM_CHECK_EQ(st.conns_accepted, 0);
  CM_CHECK_EQ(st.conns_half_open, 0);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"s", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_accepted, 1);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  close(fd);
  t_finish(&loop, all, 2);
}

/* Initials without a token from a member's address and port (as anyone can
 * forge them) are a stranger's: let in while the node is calm as unproven
 * (is_known_peer not asked, the member's own rate not spent), then sent
 * Retries, for which alone the member's address is looked up. The member,
 * at that address, proves it with a token and connects at its first
 * attempt on a rate of its own. */
CM_TEST(net_forged_member_address_spends_nothing_of_the_members) {
  enum { FORGED = 40, CALM = 32, RATE = 2 };
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  cm_addr_t member;
  uint64_t seed = 72;
  cm_net_stats_t st;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate_per_source = RATE; /* a stranger's per IP, a member's own */
  cfg.handshake_timeout = CM_SEC(60);
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  CM_CHECK_EQ(t_stats(&a).retries_sent, 0);
  fd = cm_tn_udp_socket_at("127.0.0.1");
  member = cm_tn_socket_addr(fd);
  a.known = &member;
  a.nknown = 1;
  t_send_hellos(&loop, &a, fd, &seed, FORGED, 0);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_accepted, CALM); /* retry_threshold, as unproven */
  CM_CHECK_EQ(st.retries_sent, FORGED - CALM);
  CM_CHECK_EQ(a.nasked, FORGED - CALM); /* for the Retries' budget only */
  CM_CHECK_EQ(st.drop_source_limit, 0);
  /* The member, at the address the forged Initials came from. */
  close(fd);
  t_cfg(&cfg);
  t_start_bound(&b, &loop, &cfg, &member, &t_cb);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"m", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&a.last_from, &member));
  st = t_stats(&a);
  CM_CHECK_EQ(st.drop_source_limit, 0);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  CM_CHECK_EQ(st.drop_retry_rate_limit, 0);
  CM_CHECK_EQ(st.conns_accepted, CALM + 1);
  CM_CHECK_EQ(t_stats(&b).handshakes_ok, 1);
  t_finish(&loop, all, 2);
}

/* Retries have budgets: a stranger's IP its share (accept_rate_per_source)
 * of the strangers' cap, and a member's address one of its own, apart from
 * it. A flood from one address cannot take the Retries of others, and
 * strangers that spent the whole cap cannot keep a member (one restarted,
 * say) from the Retry it needs to get back in. */
CM_TEST(net_member_retry_budget_apart) {
  enum { FLOOD = 20, SHARE = 5 };
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 75;
  cm_net_stats_t st;
  uint64_t sent;
  int fd2, fd3, fd4;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.retry_threshold = 0; /* a Retry for every Initial without a token */
  cfg.accept_rate_per_source = SHARE;
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  t_cfg(&cfg);
  t_start(&b, &loop, &cfg);
  a.known = &b.addr;
  a.nknown = 1;
  fd2 = cm_tn_udp_socket_at("127.0.0.2");
  fd3 = cm_tn_udp_socket_at("127.0.0.3");
  fd4 = cm_tn_udp_socket_at("127.0.0.4");
  t_send_hellos(&loop, &a, fd2, &seed, FLOOD, 0);
  st = t_stats(&a);
  sent = st.retries_sent;
  CM_CHECK(sent >= SHARE && sent < SHARE + 3); /* and what refilled */
  CM_CHECK_EQ(st.drop_retry_rate_limit, FLOOD - sent);
  /* Another IP has a share of its own. */
  t_send_hellos(&loop, &a, fd3, &seed, 1, 0);
  CM_CHECK_EQ(t_stats(&a).retries_sent, sent + 1);
  /* Strangers spend the whole cap (a flood of thousands of Initials from
   * as many addresses does; set here, so that it stays spent). */
  a.net->retry_tokens = -1e9;
  a.net->retry_ts = cm_net__now();
  t_send_hellos(&loop, &a, fd4, &seed, 1, 0);
  st = t_stats(&a);
  CM_CHECK_EQ(st.retries_sent, sent + 1);
  CM_CHECK_EQ(st.drop_retry_rate_limit, FLOOD - sent + 1);
  /* The member gets its Retry, and in. */
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"m", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.retries_sent, sent + 2);
  CM_CHECK_EQ(st.drop_retry_rate_limit, FLOOD - sent + 1);
  CM_CHECK_EQ(st.conns_accepted, 1);
  close(fd2);
  close(fd3);
  close(fd4);
  t_finish(&loop, all, 2);
}

/* A half-open inbound connection is not the node's connection to the
 * address it came from: one forged Initial carrying a member's address and
 * port, let in while the node is calm, must not hold what the node then
 * sends that member until the forged handshake times out. The node opens
 * its own connection, and the member gets the datagram at once. */
CM_TEST(net_half_open_carries_nothing_for_its_address) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, m;
  tnode_t *all[] = {&a, &m};
  cm_addr_t member;
  uint64_t seed = 76;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.handshake_timeout = CM_SEC(60); /* outlasts every wait of the test */
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_known);
  fd = cm_tn_udp_socket_at("127.0.0.1");
  member = cm_tn_socket_addr(fd);
  a.known = &member;
  a.nknown = 1;
  t_send_stalled(&loop, &a, fd, &seed, 1);
  CM_CHECK_EQ(t_stats(&a).conns_half_open, 1);
  CM_CHECK(!cm_net_is_connected(a.net, &member));
  close(fd);
  t_cfg(&cfg);
  t_start_bound(&m, &loop, &cfg, &member, &t_cb);
  CM_CHECK_OK(cm_net_send_datagram(a.net, &member, (const uint8_t *)"x", 1));
  CM_CHECK(t_wait_ge(&loop, &m.ndgram, 1, T_WAIT_MS));
  CM_CHECK(cm_addr_eq(&m.last_from, &a.addr));
  CM_CHECK_EQ(t_stats(&a).conns_half_open, 1);
  t_finish(&loop, all, 2);
}

typedef struct {
  uint64_t until_us;
} t_time_t;

static int t_time_passed(void *arg) {
  return t_now_us() >= ((t_time_t *)arg)->until_us;
}

/* Run the loop until the monotonic clock reads until_us, whatever wakes it
 * (libuv's timers count from its cached, millisecond clock). */
static void t_run_until(uv_loop_t *loop, uint64_t until_us) {
  t_time_t w = {until_us};
  uint64_t now;
  while ((now = t_now_us()) < until_us) {
    uv_update_time(loop);
    (void)t_run(loop, t_time_passed, &w,
                (unsigned)((until_us - now) / 1000u) + 1);
  }
}

/* A table held by more sources than places, one each (as a sender owning
 * many addresses can): a stranger from a source holding none takes the
 * oldest stranger's place once that has had max_half_open / accept_rate
 * seconds (not before), and a source already holding one does not. */
CM_TEST(net_stranger_gets_a_place_in_a_table_held_by_many) {
  enum { PLACES = 4, RATE = 5 };
  const uint64_t life_us = (uint64_t)PLACES * 1000000u / RATE;
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint64_t seed = 73, t0, t_held;
  cm_net_stats_t st;
  int fd[PLACES + 2], i, young, first;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg_small_table(&cfg, PLACES);
  cfg.accept_rate = RATE; /* PLACES + 1 at once, then RATE a second */
  t_start(&a, &loop, &cfg);
  for (i = 0; i < PLACES + 2; i++) {
    char ip[16];
    snprintf(ip, sizeof(ip), "127.0.0.%d", 40 + i);
    fd[i] = cm_tn_udp_socket_at(ip);
  }
  t0 = t_now_us();
  for (i = 0; i < PLACES; i++)
    t_send_stalled(&loop, &a, fd[i], &seed, 1);
  t_held = t_now_us();
  CM_CHECK_EQ(t_stats(&a).conns_half_open, PLACES);
  /* A new source while the oldest is young: refused. (On a machine slow
   * enough to have taken the whole life over the sends, the node may have
   * found it old: then it displaced it, and only one of the two.) */
  t_send_stalled(&loop, &a, fd[PLACES], &seed, 1);
  young = t_now_us() - t0 < life_us;
  st = t_stats(&a);
  first = (int)st.half_open_displaced;
  CM_CHECK_EQ(st.conns_half_open, PLACES);
  CM_CHECK_EQ(st.drop_half_open + st.half_open_displaced, 1);
  if (young)
    CM_CHECK_EQ(first, 0);
  /* Once it has had its time, another new source takes its place. */
  t_run_until(&loop, t_held + life_us);
  t_send_stalled(&loop, &a, fd[PLACES + 1], &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, PLACES);
  CM_CHECK_EQ(st.half_open_displaced, first + 1);
  CM_CHECK_EQ(st.conns_accepted, PLACES + first + 1);
  /* A source that holds a place already takes none of the others'. */
  t_send_stalled(&loop, &a, fd[PLACES + 1], &seed, 1);
  st = t_stats(&a);
  CM_CHECK_EQ(st.half_open_displaced, first + 1);
  CM_CHECK_EQ(st.drop_half_open, (1 - first) + 1);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  for (i = 0; i < PLACES + 2; i++)
    close(fd[i]);
  t_finish(&loop, all, 1);
}

/* accept_rate spent by strangers (as a flood from many addresses owned
 * and answering Retries spends it): a source not let in lately is let in
 * past it, on a budget of its own (a quarter of accept_rate, at least 1 a
 * second), once; a source let in lately, or one more new source once that
 * budget is spent, is refused. A source is new again once it has not been
 * let in for two seconds (two windows). */
CM_TEST(net_new_source_let_in_past_a_spent_accept_rate) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint64_t seed = 515, t0;
  cm_net_stats_t st;
  int fa, fb, fc, young;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.accept_rate = 1; /* a burst of 1, then 1 a second; the new: as many */
  cfg.retry_threshold = CM_NET_RETRY_NEVER; /* the rates alone */
  t_start(&a, &loop, &cfg);
  t0 = t_now_us(); /* the buckets are full from the start */
  fa = cm_tn_udp_socket_at("127.0.0.2");
  fb = cm_tn_udp_socket_at("127.0.0.3");
  fc = cm_tn_udp_socket_at("127.0.0.4");
  t_send_stalled(&loop, &a, fa, &seed, 2); /* 1 in; then it is not new */
  st = t_stats(&a);
  young = t_now_us() - t0 < 900000u;
  t_send_stalled(&loop, &a, fb, &seed, 2); /* new: 1 in; then it is not */
  t_send_stalled(&loop, &a, fc, &seed, 1); /* new, but that budget is spent */
  /* Exactly so while neither budget has refilled a whole handshake (on a
   * machine this slow, more got in on a refill). */
  if (young) {
    CM_CHECK_EQ(st.conns_accepted, 1);
    CM_CHECK_EQ(st.accepts_fresh, 0);
    CM_CHECK_EQ(st.drop_rate_limit, 1);
  }
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_accepted + st.drop_rate_limit, 5);
  CM_CHECK_EQ(st.drop_source_limit, 0);
  if (t_now_us() - t0 < 900000u) {
    CM_CHECK_EQ(st.conns_accepted, 2);
    CM_CHECK_EQ(st.accepts_fresh, 1);
    CM_CHECK_EQ(st.drop_rate_limit, 3);
  }
  /* Two windows later the first source is new again: with the rate's one
   * handshake taken (by the second), it gets the budget of the new. */
  t_run_until(&loop, t_now_us() + 2100000u);
  t0 = t_now_us();
  st = t_stats(&a);
  t_send_stalled(&loop, &a, fb, &seed, 1);
  t_send_stalled(&loop, &a, fa, &seed, 1);
  if (t_now_us() - t0 < 900000u) {
    cm_net_stats_t now = t_stats(&a);
    CM_CHECK_EQ(now.conns_accepted, st.conns_accepted + 2);
    CM_CHECK_EQ(now.accepts_fresh, st.accepts_fresh + 1);
  }
  close(fa);
  close(fb);
  close(fc);
  t_finish(&loop, all, 1);
}

/* A source whose Initials take rate tokens and are then refused a
 * half-open place (the table full, its places too young to give up) is
 * marked at the first token all the same: once accept_rate is spent, it
 * cannot go on to spend the budget of the new, which a new source then
 * finds whole. */
CM_TEST(net_initials_refused_a_place_spend_nothing_of_the_new) {
  enum { PLACES = 2, RATE = 4 }; /* the new: 1 a second; life 0.5 s */
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint64_t seed = 616, t0;
  cm_net_stats_t st;
  int f1, f2, fs, fn;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg_small_table(&cfg, PLACES);
  cfg.accept_rate = RATE;
  t_start(&a, &loop, &cfg);
  t0 = t_now_us();
  f1 = cm_tn_udp_socket_at("127.0.0.2");
  f2 = cm_tn_udp_socket_at("127.0.0.3");
  fs = cm_tn_udp_socket_at("127.0.0.4");
  fn = cm_tn_udp_socket_at("127.0.0.5");
  t_send_stalled(&loop, &a, f1, &seed, 1); /* a place each */
  t_send_stalled(&loop, &a, f2, &seed, 1);
  /* The rate's last two tokens, each refused a place; then over the rate. */
  t_send_stalled(&loop, &a, fs, &seed, 6);
  st = t_stats(&a);
  CM_CHECK_EQ(st.conns_half_open, PLACES);
  CM_CHECK_EQ(st.conns_accepted, PLACES);
  CM_CHECK_EQ(st.drop_half_open + st.drop_rate_limit, 6);
  /* Exactly so while the rate has not refilled a token (250 ms) and the
   * places are young (500 ms). */
  if (t_now_us() - t0 < 200000u) {
    CM_CHECK_EQ(st.drop_half_open, 2);
    CM_CHECK_EQ(st.accepts_fresh, 0);
    /* A new source finds the budget of the new whole (and then the
     * table full, like the other). */
    t_send_stalled(&loop, &a, fn, &seed, 1);
    st = t_stats(&a);
    CM_CHECK_EQ(st.accepts_fresh, 1);
    CM_CHECK_EQ(st.drop_rate_limit, 4);
    CM_CHECK_EQ(st.drop_half_open, 3);
  }
  close(f1);
  close(f2);
  close(fs);
  close(fn);
  t_finish(&loop, all, 1);
}

/* A pool too small for a quarter of a table to be a threshold: every
 * Initial without a token is answered with a Retry, so a flood of stalled
 * handshakes from a forged address keeps no place, and a real client
 * connects through its Retry. */
CM_TEST(net_small_pool_always_retries) {
  enum { FLOOD = 5 };
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a, b;
  tnode_t *all[] = {&a, &b};
  uint64_t seed = 74;
  cm_net_stats_t st;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  cfg.max_connections = 4;
  t_start(&a, &loop, &cfg);
  t_cfg(&cfg);
  t_start(&b, &loop, &cfg);
  fd = cm_tn_udp_socket_at("127.0.0.2");
  t_send_hellos(&loop, &a, fd, &seed, FLOOD, 0);
  st = t_stats(&a);
  CM_CHECK_EQ(st.retries_sent, FLOOD);
  CM_CHECK_EQ(st.conns_accepted, 0);
  CM_CHECK_EQ(st.conns_half_open, 0);
  CM_CHECK_OK(cm_net_send_datagram(b.net, &a.addr, (const uint8_t *)"p", 1));
  CM_CHECK(t_wait_ge(&loop, &a.ndgram, 1, T_WAIT_MS));
  st = t_stats(&a);
  CM_CHECK_EQ(st.retries_sent, FLOOD + 1);
  CM_CHECK_EQ(st.conns_accepted, 1);
  close(fd);
  t_finish(&loop, all, 2);
}

/* Packets that route nowhere, each from a new random connection ID, from
 * fd to n, in batches the socket buffer holds. */
static void t_send_unroutable(uv_loop_t *loop, tnode_t *n, int fd,
                              uint64_t *seed, int count) {
  uint8_t pkt[100];
  t_garbage_t g = {n, t_stats(n).packets_in};
  int i;
  for (i = 0; i < count; i++) {
    cm_tn_random_bytes(seed, pkt, sizeof(pkt));
    pkt[0] = (uint8_t)(0x40 | (pkt[0] & 0x3f)); /* short header */
    t_udp_send(fd, &n->addr, pkt, sizeof(pkt));
    if (i % 100 == 99 || i == count - 1) {
      g.want += (uint64_t)(i % 100) + 1;
      CM_CHECK(t_run(loop, t_garbage_seen, &g, T_WAIT_MS));
    }
  }
}

/* Stateless resets held back by their rate have their own counter:
 * drop_rate_limit counts handshakes only. */
CM_TEST(net_resets_over_rate_counted_apart) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  cm_net_stats_t st;
  uint64_t seed = 5;
  int fd;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start(&a, &loop, &cfg);
  fd = cm_tn_udp_socket_at("127.0.0.2");
  t_send_unroutable(&loop, &a, fd, &seed, 300);
  st = t_stats(&a);
  CM_CHECK(st.stateless_resets_sent >= 1);
  CM_CHECK(st.resets_rate_limited >= 1);
  CM_CHECK_EQ(st.stateless_resets_sent + st.resets_rate_limited, 300);
  CM_CHECK_EQ(st.drop_rate_limit, 0);
  close(fd);
  t_finish(&loop, all, 1);
}

static void t_on_stale(void *ud, const cm_addr_t *from) {
  (void)from;
  ((tnode_t *)ud)->nstale++;
}

/* Members of the test's cluster are on 127.0.0.1. */
static int t_is_known(void *ud, const cm_addr_t *from) {
  (void)ud;
  return from->family == 4 && from->ip[0] == 127 && from->ip[1] == 0 &&
         from->ip[2] == 0 && from->ip[3] == 1;
}

static const cm_net_callbacks_t t_cb_stale = {.on_datagram = t_on_datagram,
                                              .on_stream_request = t_on_request,
                                              .on_stream_response =
                                                  t_on_response,
                                              .on_stale_peer = t_on_stale,
                                              .is_known_peer = t_is_known};

/* Garbage from a stranger is never reported as a stale peer and spends
 * none of the report budget: afterwards a known peer's stale packets are
 * all reported at once, as many as the budget holds. */
CM_TEST(net_stale_budget_kept_from_strangers) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  tnode_t a;
  tnode_t *all[] = {&a};
  uint64_t seed = 6;
  int fd1, fd2;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  t_start_with(&a, &loop, &cfg, "127.0.0.1:1", &t_cb_stale);
  fd1 = cm_tn_udp_socket_at("127.0.0.2");
  fd2 = cm_tn_udp_socket_at("127.0.0.1");
  t_send_unroutable(&loop, &a, fd1, &seed, 2000);
  CM_CHECK_EQ(a.nstale, 0);
  CM_CHECK_EQ(t_stats(&a).stale_peers, 0);
  /* The whole budget (100 reports) is there for a known peer. */
  t_send_unroutable(&loop, &a, fd2, &seed, 100);
  CM_CHECK_EQ(a.nstale, 100);
  CM_CHECK_EQ(t_stats(&a).stale_peers, 100);
  close(fd1);
  close(fd2);
  t_finish(&loop, all, 1);
}

/* A stale-peer report may open a connection only into a free place of the
 * pool: anyone can write a member's address on a packet, and such packets
 * must not make the node close an authenticated connection for it. */
static void t_on_stale_connect(void *ud, const cm_addr_t *from) {
  tnode_t *n = ud;
  n->nstale++;
  n->last_status = cm_net_connect(n->net, from);
}

static const cm_net_callbacks_t t_cb_stale_connect = {
    .on_datagram = t_on_datagram,
    .on_stream_request = t_on_request,
    .on_stream_response = t_on_response,
    .on_stale_peer = t_on_stale_connect,
    .is_known_peer = t_is_known};

CM_TEST(net_stale_report_never_evicts) {
  uv_loop_t loop;
  cm_net_config_t cfg, small;
  tnode_t a, p[2];
  tnode_t *all[] = {&a, &p[0], &p[1]};
  uint64_t seed = 7;
  int fd, i;

  CM_CHECK_OK(uv_loop_init(&loop));
  t_cfg(&cfg);
  small = cfg;
  small.max_connections = 2;
  small.accept_rate_per_source = 0;
  t_start_with(&a, &loop, &small, "127.0.0.1:1", &t_cb_stale_connect);
  for (i = 0; i < 2; i++) {
    t_start(&p[i], &loop, &cfg);
    CM_CHECK_OK(
        cm_net_send_datagram(p[i].net, &a.addr, (const uint8_t *)"x", 1));
    CM_CHECK(t_wait_ge(&loop, &a.ndgram, i + 1, T_WAIT_MS));
  }
  /* a's pool: two idle authenticated connections. Packets from a member's
   * address it holds no connection to ask it to connect there. */
  fd = cm_tn_udp_socket_at("127.0.0.1");
  t_send_unroutable(&loop, &a, fd, &seed, 50);
  CM_CHECK(a.nstale >= 1);
  CM_CHECK_EQ(a.last_status, CM_ELIMIT);
  CM_CHECK_EQ(t_stats(&a).conns_evicted, 0);
  CM_CHECK(cm_net_is_connected(a.net, &p[0].addr));
  CM_CHECK(cm_net_is_connected(a.net, &p[1].addr));
  close(fd);
  t_finish(&loop, all, 3);
}

/* ---- figures (printed, not asserted) ------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

static int t_cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

/* First datagram to a fresh peer (handshake to confirmed plus delivery)
 * per mode, and heap per connection (both ends counted). */
CM_TEST(net_figures) {
  enum { PEERS = 10 };
  static const char *modes[] = {"key", "mtls", "none"};
  t_pki_t pki;
  int m, i;

  t_pki(&pki);
  for (m = 0; m < 3; m++) {
    uv_loop_t loop;
    cm_net_config_t cfg;
    tnode_t a, b[PEERS];
    tnode_t *all[PEERS + 1];
    uint64_t us[PEERS];
    size_t heap0 = 0, heap1 = 0;

    CM_CHECK_OK(uv_loop_init(&loop));
    if (m == 0)
      t_cfg(&cfg);
    else if (m == 1)
      t_cfg_mtls(&cfg, &pki, T_N1, T_N1KEY);
    else {
      cm_net_config_default(&cfg);
      cfg.auth = CM_AUTH_NONE;
    }
    t_start(&a, &loop, &cfg);
    all[0] = &a;
    for (i = 0; i < PEERS; i++) {
      t_start(&b[i], &loop, &cfg);
      all[i + 1] = &b[i];
    }
#ifndef T_ASAN
    heap0 = mallinfo2().uordblks;
#endif
    for (i = 0; i < PEERS; i++) {
      uint64_t t0 = t_now_us();
      CM_CHECK_OK(
          cm_net_send_datagram(a.net, &b[i].addr, (const uint8_t *)"x", 1));
      CM_CHECK(t_wait_ge(&loop, &b[i].ndgram, 1, T_WAIT_MS));
      us[i] = t_now_us() - t0;
    }
#ifndef T_ASAN
    heap1 = mallinfo2().uordblks;
#endif
    qsort(us, PEERS, sizeof(us[0]), t_cmp_u64);
    printf("    %s: first datagram to a new peer median %llu us (min %llu, "
           "max %llu)",
           modes[m], (unsigned long long)us[PEERS / 2],
           (unsigned long long)us[0], (unsigned long long)us[PEERS - 1]);
    if (heap1 > heap0)
      printf(", heap per connection end %zu KiB",
             (heap1 - heap0) / (2 * PEERS) / 1024);
    printf("\n");
    t_finish(&loop, all, PEERS + 1);
  }
  t_pki_free(&pki);
}
