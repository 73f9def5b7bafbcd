/*
 * A node that restarts on the same address: its peers hold connections the
 * new process knows nothing of. With the same static secret the new process
 * answers their packets with stateless resets (RFC 9000 10.3) that the peer
 * can authenticate; with any secret, the new process connecting to the peer
 * replaces the stale connection. Each test crashes endpoint A (its final
 * CONNECTION_CLOSE is blocked, as if the process died) and opens A' on the
 * same port. All endpoints share one loop; every wait has a deadline.
 */
#include <stdlib.h>
#include <time.h>

#include "cm_net.h"
#include "cm_test.h"

#define R_WAIT_MS 5000
/* How quickly a peer must be talking to the restarted node. */
#define R_RECOVER_MS 2000
/* Resend period while waiting: a stale connection loses what it carries. */
#define R_RESEND_MS 20
/* Longer than cm_net's threshold (1 s) after which an inbound connection
 * from a peer we are connected to means that peer restarted. */
#define R_STALE_MS 1200

typedef struct rnode {
  cm_net_t *net;
  cm_addr_t addr;
  int ndgram;
  cm_addr_t last_from;
  int closed;
  int nstale;
} rnode_t;

static void r_on_datagram(void *ud, const cm_addr_t *from, const uint8_t *d,
                          size_t len) {
  rnode_t *n = ud;
  (void)d;
  (void)len;
  n->ndgram++;
  n->last_from = *from;
}

static const cm_net_callbacks_t r_cb = {.on_datagram = r_on_datagram};

/* What the engine does for a known member: connect to it. */
static void r_on_stale_peer(void *ud, const cm_addr_t *from) {
  rnode_t *n = ud;
  n->nstale++;
  CM_CHECK_OK(cm_net_connect(n->net, from));
}

static const cm_net_callbacks_t r_cb_connect = {
    .on_datagram = r_on_datagram, .on_stale_peer = r_on_stale_peer};

static cm_net_key_t r_key;

static void r_cfg(cm_net_config_t *cfg, uint8_t secret) {
  cm_net_config_default(cfg);
  r_key.id = 1;
  memset(r_key.key, 0x5a, sizeof(r_key.key));
  cfg->keys = &r_key;
  cfg->nkeys = 1;
  memset(cfg->static_secret, secret, sizeof(cfg->static_secret));
}

/* Start n bound to `at` (port 0: ephemeral) with callbacks cb. */
static void r_start(rnode_t *n, uv_loop_t *loop, const cm_net_config_t *cfg,
                    const cm_addr_t *at, const cm_net_callbacks_t *cb) {
  memset(n, 0, sizeof(*n));
  CM_CHECK_OK(cm_net_new(&n->net, loop, at, cfg, cb, n));
  CM_CHECK_OK(cm_net_local_addr(n->net, &n->addr));
}

static uint64_t r_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void r_deadline_cb(uv_timer_t *t) { *(int *)t->data = 1; }

typedef int (*r_pred_fn)(void *);

/* Run the loop until pred holds or ms pass. A short repeating timer keeps
 * the loop waking so pred may also act (resend) on its own schedule. */
static int r_run(uv_loop_t *loop, r_pred_fn pred, void *arg, unsigned ms) {
  uv_timer_t deadline, tick;
  int expired = 0, dummy = 0, ok;
  uv_timer_init(loop, &deadline);
  uv_timer_init(loop, &tick);
  deadline.data = &expired;
  tick.data = &dummy;
  uv_timer_start(&deadline, r_deadline_cb, ms, 0);
  uv_timer_start(&tick, r_deadline_cb, R_RESEND_MS / 2, R_RESEND_MS / 2);
  while (!(ok = pred(arg)) && !expired)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

static int r_never(void *arg) {
  (void)arg;
  return 0;
}

static void r_closed_cb(void *arg) { ((rnode_t *)arg)->closed = 1; }

static int r_is_closed(void *arg) { return ((rnode_t *)arg)->closed; }

static void r_close(uv_loop_t *loop, rnode_t *n) {
  cm_net_close(n->net, r_closed_cb, n);
  CM_CHECK(r_run(loop, r_is_closed, n, R_WAIT_MS));
}

/* Kill A as a crash would: nothing it sends on the way out reaches peer. */
static void r_crash(uv_loop_t *loop, rnode_t *a, const cm_addr_t *peer) {
  cm_net_fault_t f;
  memset(&f, 0, sizeof(f));
  f.blocked = peer;
  f.nblocked = 1;
  CM_CHECK_OK(cm_net_set_fault(a->net, &f));
  r_close(loop, a);
}

static void r_walk_cb(uv_handle_t *h, void *arg) {
  (void)h;
  (*(int *)arg)++;
}

static void r_finish(uv_loop_t *loop) {
  int handles = 0;
  uv_run(loop, UV_RUN_NOWAIT);
  uv_walk(loop, r_walk_cb, &handles);
  CM_CHECK_EQ(handles, 0);
  CM_CHECK_OK(uv_loop_close(loop));
}

/* Crash A (nothing it sends on the way out reaches B) and bring A' up on
 * A's address with cfg and callbacks cb. */
static void r_restart(uv_loop_t *loop, rnode_t *a, rnode_t *a2, rnode_t *b,
                      const cm_net_config_t *cfg,
                      const cm_net_callbacks_t *cb) {
  cm_addr_t at = a->addr;
  r_crash(loop, a, &b->addr);
  r_start(a2, loop, cfg, &at, cb);
  CM_CHECK(cm_addr_eq(&a2->addr, &at));
}

/* Close the two live endpoints and check the loop is left empty. */
static void r_end(uv_loop_t *loop, rnode_t *a2, rnode_t *b) {
  r_close(loop, a2);
  r_close(loop, b);
  r_finish(loop);
}

static cm_net_stats_t r_stats(rnode_t *n) {
  cm_net_stats_t st;
  cm_net_stats(n->net, &st);
  return st;
}

/* `from` sends to `to` every R_RESEND_MS until `to` has one more datagram
 * than at the start. */
typedef struct {
  rnode_t *from, *to;
  int want;
  uint64_t last_send;
} r_resend_t;

static int r_resend_until(void *arg) {
  r_resend_t *r = arg;
  uint64_t now;
  if (r->to->ndgram >= r->want)
    return 1;
  now = r_now_ms();
  if (now - r->last_send >= R_RESEND_MS) {
    r->last_send = now;
    cm_net_send_datagram(r->from->net, &r->to->addr, (const uint8_t *)"r", 1);
  }
  return 0;
}

/* Deliver one datagram from -> to, resending, within ms; returns the time
 * it took in ms, or -1. */
static long r_deliver(uv_loop_t *loop, rnode_t *from, rnode_t *to,
                      unsigned ms) {
  r_resend_t r = {from, to, to->ndgram + 1, 0};
  uint64_t t0 = r_now_ms();
  if (!r_run(loop, r_resend_until, &r, ms))
    return -1;
  return (long)(r_now_ms() - t0);
}

/* Start A and B on ephemeral ports and connect them: the opener (A if
 * a_opens) delivers a datagram first, then the other answers. */
static void r_pair(uv_loop_t *loop, const cm_net_config_t *cfg, rnode_t *a,
                   rnode_t *b, int a_opens) {
  cm_addr_t any;
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:1", &any));
  any.port = 0; /* ephemeral */
  r_start(a, loop, cfg, &any, &r_cb);
  r_start(b, loop, cfg, &any, &r_cb);
  CM_CHECK(r_deliver(loop, a_opens ? a : b, a_opens ? b : a, R_WAIT_MS) >= 0);
  CM_CHECK(r_deliver(loop, a_opens ? b : a, a_opens ? a : b, R_WAIT_MS) >= 0);
}

/* B opened an established connection to A. A crashes; A' comes up on A's
 * port with the same static secret; B keeps sending to A's address. B must
 * recognise A's stateless reset, drop the stale connection and reach A'
 * over a new one within R_RECOVER_MS.
 *
 * Only the side that opened a connection can be reset: the other side
 * addresses the opener's handshake connection ID, which carries no reset
 * token (RFC 9000 announces one only for the server's), and ngtcp2 checks
 * resets against the tokens of the IDs in use. When the restarted node was
 * the opener, its first packet to the peer replaces the stale connection
 * instead (next tests). */
CM_TEST(net_reset_restarted_peer) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  rnode_t a, a2, b;
  cm_net_stats_t sb0, sb, sa2;
  long took;

  CM_CHECK_OK(uv_loop_init(&loop));
  r_cfg(&cfg, 0x42);
  r_pair(&loop, &cfg, &a, &b, 0);
  sb0 = r_stats(&b);
  CM_CHECK_EQ(sb0.conns_open, 1);

  r_restart(&loop, &a, &a2, &b, &cfg, &r_cb);     /* same port, same secret */
  CM_CHECK(cm_net_is_connected(b.net, &a2.addr)); /* B has not noticed */

  took = r_deliver(&loop, &b, &a2, R_RECOVER_MS);
  sa2 = r_stats(&a2);
  sb = r_stats(&b);
  CM_CHECK(took >= 0);
  printf("    B reaches the restarted node after %ld ms\n", took);
  CM_CHECK(cm_addr_eq(&a2.last_from, &b.addr));
  CM_CHECK(sa2.stateless_resets_sent >= 1);
  CM_CHECK(sa2.drop_garbage >= 1); /* the stale packets that triggered it */
  CM_CHECK_EQ(sb.handshakes_ok, sb0.handshakes_ok + 1);
  CM_CHECK_EQ(sb.conns_timed_out, 0);
  CM_CHECK_EQ(sb.conns_open, 1);
  CM_CHECK_EQ(sb.stateless_resets_sent, 0); /* B answered no reset with one */
  /* And back, on the new connection. */
  CM_CHECK(r_deliver(&loop, &a2, &b, R_WAIT_MS) >= 0);
  CM_CHECK_EQ(r_stats(&b).handshakes_ok, sb0.handshakes_ok + 1);

  r_end(&loop, &a2, &b);
}

/* A' comes back with another static secret (no reset possible) and speaks
 * first: B must let the new inbound connection replace the established
 * stale one, and answer over it. `a_opened` says who opened the original
 * connection. */
static void replace_after_restart(int a_opened, int aged) {
  uv_loop_t loop;
  cm_net_config_t cfg, cfg2;
  rnode_t a, a2, b;
  cm_net_stats_t sb0, sb;
  long took;

  CM_CHECK_OK(uv_loop_init(&loop));
  r_cfg(&cfg, 0x42);
  r_cfg(&cfg2, 0x43);
  r_pair(&loop, &cfg, &a, &b, a_opened);
  /* Age the connection past the simultaneous-open window. This wait sets
   * up the case; it is not what the test checks. */
  if (aged)
    r_run(&loop, r_never, NULL, R_STALE_MS);
  sb0 = r_stats(&b);

  r_restart(&loop, &a, &a2, &b, &cfg2, &r_cb);
  took = r_deliver(&loop, &a2, &b, R_RECOVER_MS);
  CM_CHECK(took >= 0);
  CM_CHECK(cm_addr_eq(&b.last_from, &a2.addr));
  sb = r_stats(&b);
  CM_CHECK_EQ(sb.conns_accepted, sb0.conns_accepted + 1);
  CM_CHECK_EQ(sb.handshakes_ok, sb0.handshakes_ok + 1);
  CM_CHECK_EQ(sb.conns_open, 1); /* the stale one was closed */
  /* B's sends take the new connection at once: no handshake, no loss. */
  took = r_deliver(&loop, &b, &a2, R_RECOVER_MS);
  CM_CHECK(took >= 0);
  printf("    B answers over the replacing connection after %ld ms\n", took);
  CM_CHECK_EQ(r_stats(&b).handshakes_ok, sb0.handshakes_ok + 1);

  r_end(&loop, &a2, &b);
}

CM_TEST(net_reset_inbound_replaces_established_opener) {
  replace_after_restart(1, 1);
}

CM_TEST(net_reset_inbound_replaces_established_acceptor) {
  replace_after_restart(0, 1);
}

/* A restart within a second of A's opening the connection: B accepted the
 * stale one from A too, so a second connection from A is no simultaneous
 * open (that needs one opened by each side) and replaces it at once. */
CM_TEST(net_reset_inbound_replaces_young_connection_peer_opened) {
  replace_after_restart(1, 0);
}

/* A opened the connection (so B, the acceptor, addresses an ID with no
 * reset token), crashes, and A' comes back with the same secret but says
 * nothing. B's packets on the stale connection make A' report B as a stale
 * peer once; A' connecting to B replaces B's stale connection, and B's
 * sends reach A' without B ever timing out. */
CM_TEST(net_stale_peer_is_reported_and_connecting_replaces) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  rnode_t a, a2, b;
  cm_net_stats_t sb0, sb, sa2;
  long took;

  CM_CHECK_OK(uv_loop_init(&loop));
  r_cfg(&cfg, 0x42);
  r_pair(&loop, &cfg, &a, &b, 1);
  sb0 = r_stats(&b);

  r_restart(&loop, &a, &a2, &b, &cfg, &r_cb_connect);
  took = r_deliver(&loop, &b, &a2, R_RECOVER_MS);
  CM_CHECK(took >= 0);
  printf("    B reaches the restarted node after %ld ms\n", took);
  sa2 = r_stats(&a2);
  sb = r_stats(&b);
  CM_CHECK(a2.nstale >= 1);
  CM_CHECK_EQ(sa2.stale_peers, (uint64_t)a2.nstale);
  CM_CHECK_EQ(sa2.conns_opened, 1); /* reports stop once it is connected */
  CM_CHECK_EQ(sb.conns_accepted, sb0.conns_accepted + 1);
  CM_CHECK_EQ(sb.conns_open, 1); /* the stale one was replaced */
  CM_CHECK_EQ(sb.conns_timed_out, 0);

  r_end(&loop, &a2, &b);
}

/* Without the callback nothing is reported, and the stale side keeps
 * losing its sends (until its idle timeout, far beyond this wait). */
CM_TEST(net_stale_peer_without_callback_stays_unreached) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  rnode_t a, a2, b;

  CM_CHECK_OK(uv_loop_init(&loop));
  r_cfg(&cfg, 0x42);
  r_pair(&loop, &cfg, &a, &b, 1);
  r_restart(&loop, &a, &a2, &b, &cfg, &r_cb);
  CM_CHECK_EQ(r_deliver(&loop, &b, &a2, R_RECOVER_MS), -1);
  CM_CHECK_EQ(r_stats(&a2).stale_peers, 0);
  CM_CHECK(r_stats(&a2).drop_garbage >= 1);

  r_end(&loop, &a2, &b);
}

/* B keeps sending to A's restarted process, which answers each packet with
 * a stateless reset B cannot recognise (A opened the connection: B
 * addresses A's first connection ID, which has no reset token). QUIC
 * drops those packets without a word, but they are not the peer's: B
 * still gives the connection up once the configured idle timeout (300 ms)
 * has passed since its first unanswered send, not at its floor (30 s). */
typedef struct {
  rnode_t *from, *to;
  uint64_t last_send;
} r_unanswered_t;

static int r_send_until_timed_out(void *arg) {
  r_unanswered_t *r = arg;
  uint64_t now = r_now_ms();
  if (r_stats(r->from).conns_timed_out >= 1)
    return 1;
  if (now - r->last_send >= 100) {
    r->last_send = now;
    cm_net_send_datagram(r->from->net, &r->to->addr, (const uint8_t *)"u", 1);
  }
  return 0;
}

CM_TEST(net_unrecognised_resets_do_not_answer_for_the_peer) {
  uv_loop_t loop;
  cm_net_config_t cfg;
  rnode_t a, a2, b;
  r_unanswered_t r = {&b, NULL, 0};

  CM_CHECK_OK(uv_loop_init(&loop));
  r_cfg(&cfg, 0x42);
  cfg.idle_timeout = CM_MSEC(300);
  r_pair(&loop, &cfg, &a, &b, 1);
  cm_net_set_idle_floor(b.net, CM_SEC(30));
  r_restart(&loop, &a, &a2, &b, &cfg, &r_cb);
  r.to = &a2;
  CM_CHECK(r_run(&loop, r_send_until_timed_out, &r, R_WAIT_MS));
  CM_CHECK(r_stats(&a2).stateless_resets_sent >= 1);
  CM_CHECK_EQ(a2.ndgram, 0);

  r_end(&loop, &a2, &b);
}
