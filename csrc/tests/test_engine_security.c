/*
 * Hostile traffic against a running cluster. Three engine nodes (cluster-key
 * mode, then mutual TLS) are attacked by intruders: engine nodes holding the
 * wrong key or certificate that try to join, cm_net endpoints on a loop of
 * this thread that send datagrams and push-pull requests, with or without
 * the right credentials, and a raw UDP socket sending garbage. Every attack
 * must be refused or dropped and counted, leave every registry exactly as
 * it was (members, states, incarnations, addresses, tags), and the cluster
 * must still spread news afterwards. Waits poll against deadlines.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_engine.h"
#include "cm_test.h"
#include "cm_test_engine.h"
#include "cm_test_net.h"

#define S_NODES 3
#define S_WAIT_MS 30000
/* An intruder's join gives up after this; refusal is what we wait for. */
#define S_JOIN_TIMEOUT CM_SEC(2)
#define S_RAW_RANDOM 40 /* random UDP datagrams per node */
/* Raw datagrams per node counted as garbage: the random ones, a truncated
 * Initial and two short headers. */
#define S_RAW_GARBAGE (S_RAW_RANDOM + 3)
#define S_BAD_DGRAMS 6 /* kinds of undecodable membership datagrams */

typedef int (*s_pred_fn)(void *arg);

/* Poll pred until it holds or ms pass, running the intruders' loop (may be
 * NULL) in between. */
static int s_wait(uv_loop_t *loop, s_pred_fn pred, void *arg, unsigned ms) {
  uint64_t end = cm_te_now_ms() + ms;
  while (!pred(arg)) {
    if (cm_te_now_ms() > end)
      return pred(arg);
    if (loop != NULL)
      uv_run(loop, UV_RUN_NOWAIT);
    cm_te_nap_ms(2);
  }
  return 1;
}

/* ---- the cluster ----------------------------------------------------------
 */

typedef struct s_pki {
  char dir[64];
  char ca[96], ca_key[96];
  char cert[S_NODES][96], key[S_NODES][96];
  char other[96], other_key[96]; /* issued by another CA */
} s_pki_t;

typedef struct s_cluster {
  cm_engine_t *e;
  cm_enode_t *n[S_NODES];
  cm_addr_t addr[S_NODES];
} s_cluster_t;

static cm_net_key_t s_key(uint8_t id, uint8_t fill) {
  cm_net_key_t k;
  k.id = id;
  memset(k.key, fill, sizeof(k.key));
  return k;
}

static void s_pki_make(s_pki_t *p) {
  char ca2[96], ca2key[96], cn[16];
  int i;
  strcpy(p->dir, "/tmp/cm_sec_test_XXXXXX");
  CM_CHECK(mkdtemp(p->dir) != NULL);
  snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", p->dir);
  snprintf(p->ca_key, sizeof(p->ca_key), "%s/ca.key", p->dir);
  CM_CHECK_OK(cm_net_gen_ca(p->ca, p->ca_key, "cluster", 30));
  for (i = 0; i < S_NODES; i++) {
    snprintf(p->cert[i], sizeof(p->cert[i]), "%s/n%d.pem", p->dir, i);
    snprintf(p->key[i], sizeof(p->key[i]), "%s/n%d.key", p->dir, i);
    snprintf(cn, sizeof(cn), "node-%d", i);
    CM_CHECK_OK(
        cm_net_gen_cert(p->ca, p->ca_key, p->cert[i], p->key[i], cn, 30));
  }
  snprintf(ca2, sizeof(ca2), "%s/ca2.pem", p->dir);
  snprintf(ca2key, sizeof(ca2key), "%s/ca2.key", p->dir);
  snprintf(p->other, sizeof(p->other), "%s/x.pem", p->dir);
  snprintf(p->other_key, sizeof(p->other_key), "%s/x.key", p->dir);
  CM_CHECK_OK(cm_net_gen_ca(ca2, ca2key, "other", 30));
  CM_CHECK_OK(
      cm_net_gen_cert(ca2, ca2key, p->other, p->other_key, "intruder", 30));
  unlink(ca2);
  unlink(ca2key);
}

static void s_pki_free(s_pki_t *p) {
  int i;
  unlink(p->ca);
  unlink(p->ca_key);
  for (i = 0; i < S_NODES; i++) {
    unlink(p->cert[i]);
    unlink(p->key[i]);
  }
  unlink(p->other);
  unlink(p->other_key);
  rmdir(p->dir);
}

/* Network settings: the cluster key (key != NULL) or mTLS with the given
 * files (cert NULL: present none). */
static void s_net_cfg(cm_net_config_t *c, const cm_net_key_t *key,
                      const s_pki_t *p, const char *cert, const char *ckey) {
  cm_net_config_default(c);
  if (key != NULL) {
    c->keys = key;
    c->nkeys = 1;
    return;
  }
  c->auth = CM_AUTH_MTLS;
  c->ca_file = p->ca;
  c->cert_file = cert;
  c->key_file = ckey;
}

static cm_enode_t *s_start_node(cm_engine_t *e, const char *id,
                                const cm_net_config_t *net, uint64_t seed) {
  return cm_te_start(e, id, net, seed, 0);
}

/* The JOINED result of token, or CM_ETIMEDOUT. */
static int s_join_result(cm_enode_t *n, int64_t token) {
  uint64_t end = cm_te_now_ms() + S_WAIT_MS;
  cm_eevent_t ev;
  while (cm_te_now_ms() < end) {
    while (cm_enode_next_event(n, &ev))
      if (ev.kind == CM_EEV_JOINED && ev.token == (uint64_t)token)
        return ev.status;
    cm_te_nap_ms(5);
  }
  return CM_ETIMEDOUT;
}

static int s_converged(void *arg) {
  s_cluster_t *cl = arg;
  int i;
  for (i = 0; i < S_NODES; i++)
    if (cm_te_alive_count(cl->n[i]) != S_NODES)
      return 0;
  return 1;
}

/* One net config per node (mTLS nodes differ by certificate). */
static void s_cluster_start(s_cluster_t *cl, const cm_net_config_t *net) {
  char id[16];
  int i;
  CM_CHECK_OK(cm_engine_new(&cl->e));
  for (i = 0; i < S_NODES; i++) {
    snprintf(id, sizeof(id), "node-%d", i);
    cl->n[i] = s_start_node(cl->e, id, &net[i], (uint64_t)i + 1);
    cl->addr[i] = cm_enode_addr(cl->n[i]);
  }
  for (i = 1; i < S_NODES; i++) {
    int64_t tok = cm_enode_join(cl->n[i], &cl->addr[0], 1, CM_SEC(10));
    CM_CHECK(tok > 0);
    CM_CHECK_OK(s_join_result(cl->n[i], tok));
  }
  CM_CHECK(s_wait(NULL, s_converged, cl, S_WAIT_MS));
}

/* ---- registry snapshots ----------------------------------------------------
 */

typedef struct s_member {
  char id[CM_ID_MAX + 1];
  cm_addr_t addr;
  uint32_t incarnation;
  uint8_t state;
  uint16_t tags_len;
  uint8_t tags[256];
} s_member_t;

typedef struct s_view {
  uint32_t count;
  s_member_t m[8];
} s_view_t;

static int s_member_cmp(const void *x, const void *y) {
  return strcmp(((const s_member_t *)x)->id, ((const s_member_t *)y)->id);
}

static void s_view_take(cm_enode_t *n, s_view_t *v) {
  cm_snapshot_t *s = cm_enode_snapshot(n);
  uint32_t i;
  memset(v, 0, sizeof(*v));
  CM_CHECK(s != NULL);
  CM_CHECK(s->count <= 8);
  for (i = 0; i < s->count; i++) {
    s_member_t *m = &v->m[i];
    const cm_emember_t *e = &s->members[i];
    strcpy(m->id, e->id);
    m->addr = e->addr;
    m->incarnation = e->incarnation;
    m->state = e->state;
    m->tags_len = e->tags_len;
    CM_CHECK(e->tags_len <= sizeof(m->tags));
    if (e->tags_len > 0)
      memcpy(m->tags, e->tags, e->tags_len);
  }
  v->count = s->count;
  cm_snapshot_release(s);
  qsort(v->m, v->count, sizeof(v->m[0]), s_member_cmp);
}

static void s_view_check_same(cm_enode_t *n, const s_view_t *before) {
  s_view_t now;
  uint32_t i;
  s_view_take(n, &now);
  CM_CHECK_EQ(now.count, before->count);
  for (i = 0; i < now.count; i++) {
    const s_member_t *a = &before->m[i], *b = &now.m[i];
    CM_CHECK_STR(b->id, a->id);
    CM_CHECK(cm_addr_eq(&b->addr, &a->addr));
    CM_CHECK_EQ(b->state, a->state);
    CM_CHECK_EQ(b->incarnation, a->incarnation);
    CM_CHECK_EQ(b->tags_len, a->tags_len);
    CM_CHECK(memcmp(b->tags, a->tags, a->tags_len) == 0);
  }
}

static cm_enode_stats_t s_stats(cm_enode_t *n) {
  cm_enode_stats_t st;
  cm_enode_stats(n, &st);
  return st;
}

/* ---- intruders ------------------------------------------------------------
 */

/* A cm_net endpoint on a loop of the test thread. */
typedef struct s_intruder {
  uv_loop_t loop;
  cm_net_t *net;
  int ndgram, nreq, nresp, nresp_ok, nresp_auth;
  int closed;
} s_intruder_t;

static void s_on_dgram(void *ud, const cm_addr_t *from, const uint8_t *d,
                       size_t len) {
  (void)from;
  (void)d;
  (void)len;
  ((s_intruder_t *)ud)->ndgram++;
}

static void s_on_request(void *ud, const cm_addr_t *from, uint64_t token,
                         const uint8_t *d, size_t len) {
  (void)from;
  (void)token;
  (void)d;
  (void)len;
  ((s_intruder_t *)ud)->nreq++;
}

static void s_on_response(void *ud, uint64_t rid, int status, const uint8_t *d,
                          size_t len) {
  s_intruder_t *x = ud;
  (void)rid;
  (void)d;
  (void)len;
  x->nresp++;
  x->nresp_ok += status == 0;
  x->nresp_auth += status == CM_EAUTH;
}

static const cm_net_callbacks_t s_intruder_cb = {
    .on_datagram = s_on_dgram,
    .on_stream_request = s_on_request,
    .on_stream_response = s_on_response};

static void s_intruder_start(s_intruder_t *x, const cm_net_config_t *cfg) {
  cm_addr_t any;
  memset(x, 0, sizeof(*x));
  CM_CHECK_OK(uv_loop_init(&x->loop));
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:1", &any));
  any.port = 0;
  CM_CHECK_OK(cm_net_new(&x->net, &x->loop, &any, cfg, &s_intruder_cb, x));
}

static void s_intruder_closed(void *arg) { ((s_intruder_t *)arg)->closed = 1; }

static int s_is_closed(void *arg) { return ((s_intruder_t *)arg)->closed; }

static void s_intruder_stop(s_intruder_t *x) {
  cm_net_close(x->net, s_intruder_closed, x);
  CM_CHECK(s_wait(&x->loop, s_is_closed, x, S_WAIT_MS));
  uv_run(&x->loop, UV_RUN_NOWAIT);
  CM_CHECK_OK(uv_loop_close(&x->loop));
}

typedef struct {
  s_intruder_t *x;
  int want;
} s_resp_t;

static int s_resp_seen(void *arg) {
  s_resp_t *r = arg;
  return r->x->nresp >= r->want;
}

/* An intruder whose handshake must fail: a datagram and a request to every
 * node; every request must fail as refused authentication and nothing may
 * come back. */
static void s_attack_refused(s_cluster_t *cl, const cm_net_config_t *cfg) {
  s_intruder_t x;
  s_resp_t r;
  int i;
  s_intruder_start(&x, cfg);
  for (i = 0; i < S_NODES; i++) {
    CM_CHECK_OK(cm_net_send_datagram(x.net, &cl->addr[i],
                                     (const uint8_t *)"\x01\x00", 2));
    CM_CHECK_OK(cm_net_stream_request(x.net, &cl->addr[i],
                                      (const uint8_t *)"\x01\x01\x00", 3,
                                      (uint64_t)i + 1));
  }
  r.x = &x;
  r.want = S_NODES;
  CM_CHECK(s_wait(&x.loop, s_resp_seen, &r, S_WAIT_MS));
  CM_CHECK_EQ(x.nresp_auth, S_NODES);
  CM_CHECK_EQ(x.nresp_ok, 0);
  CM_CHECK_EQ(x.ndgram, 0);
  CM_CHECK_EQ(x.nreq, 0);
  s_intruder_stop(&x);
}

/* An engine node with bad credentials tries to join through node 0. */
static void s_attack_join(s_cluster_t *cl, const cm_net_config_t *cfg) {
  cm_engine_t *e = NULL;
  cm_enode_t *n;
  int64_t tok;
  int rc;
  CM_CHECK_OK(cm_engine_new(&e));
  n = s_start_node(e, "intruder", cfg, 99);
  tok = cm_enode_join(n, &cl->addr[0], 1, S_JOIN_TIMEOUT);
  CM_CHECK(tok > 0);
  rc = s_join_result(n, tok);
  CM_CHECK_EQ(rc, CM_EAUTH);            /* not a timeout: the seed refused us */
  CM_CHECK_EQ(cm_te_alive_count(n), 1); /* it learned nobody */
  /* One refusal could be forged on the path: the join gave up only after
   * the seed had refused it attempt after attempt. */
  CM_CHECK(s_stats(n).net.auth_refused >= 3);
  cm_engine_free(e);
}

/* ---- raw UDP garbage ------------------------------------------------------
 */

static void s_udp_send(int fd, const cm_addr_t *to, const uint8_t *d,
                       size_t len) {
  cm_tn_udp_send(fd, to, d, len, 1);
}

typedef struct {
  cm_enode_t *n;
  uint64_t want;
} s_ge_t;

static int s_garbage_seen(void *arg) {
  s_ge_t *g = arg;
  return s_stats(g->n).net.drop_garbage >= g->want;
}

/* Random datagrams, truncated and forged Initials, short headers under
 * unknown connection IDs. Returns how many were sent. */
static uint64_t s_attack_raw(s_cluster_t *cl) {
  uint8_t buf[1400];
  uint64_t seed = 7;
  int fd = cm_tn_udp_socket(), i, k;
  size_t j;
  for (k = 0; k < S_NODES; k++) {
    s_ge_t g = {cl->n[k], s_stats(cl->n[k]).net.drop_garbage};
    for (i = 0; i < S_RAW_RANDOM; i++) {
      size_t len = 1 + (size_t)(cm_tn_rand(&seed) % sizeof(buf));
      for (j = 0; j < len; j++)
        buf[j] = (uint8_t)cm_tn_rand(&seed);
      s_udp_send(fd, &cl->addr[k], buf, len);
    }
    memset(buf, 0, sizeof(buf));
    buf[0] = 0xc3; /* long header, Initial */
    buf[4] = 1;    /* QUIC v1 */
    buf[5] = 8;
    memset(buf + 6, 0xaa, 8);
    buf[14] = 8;
    memset(buf + 15, 0xbb, 8);
    buf[24] = 0x44;
    s_udp_send(fd, &cl->addr[k], buf, 300); /* below the 1200 minimum */
    /* Garbage protection: this one costs a connection attempt that fails
     * at once, not a garbage count. */
    s_udp_send(fd, &cl->addr[k], buf, 1200);
    buf[0] = 0x40; /* short header */
    s_udp_send(fd, &cl->addr[k], buf, 60);
    s_udp_send(fd, &cl->addr[k], buf, 5);
    g.want += S_RAW_GARBAGE;
    CM_CHECK(s_wait(NULL, s_garbage_seen, &g, S_WAIT_MS));
  }
  close(fd);
  return S_RAW_GARBAGE;
}

/* ---- authenticated garbage -------------------------------------------------
 */

typedef struct {
  cm_enode_t *n;
  uint64_t malformed, pushpull;
} s_core_drops_t;

static int s_core_dropped(void *arg) {
  s_core_drops_t *d = arg;
  cm_enode_stats_t st = s_stats(d->n);
  return st.node.drop_malformed >= d->malformed &&
         st.node.drop_pushpull >= d->pushpull;
}

/* An intruder holding valid credentials sends membership payloads that do
 * not decode, as datagrams and as push-pull requests. The core must drop
 * and count each; nothing answers the requests. */
static void s_attack_authenticated(s_cluster_t *cl,
                                   const cm_net_config_t *cfg) {
  /* Versions above 127 and type 0 are refused; a higher version or an
   * unknown type alone would be a newer peer's and be read. */
  static const uint8_t bad_version[] = {128, 1, 2, 0, 4, 0, 0, 0, 1};
  static const uint8_t bad_type[] = {1, 1, 0, 0, 0};
  static const uint8_t bad_count[] = {1, 3, 2, 0, 4, 0, 0, 0, 1};
  static const uint8_t truncated_ping[] = {1, 1, 1, 0, 40, 0, 0, 0, 7, 6};
  static const uint8_t pp_response_kind[] = {1, 2, 0, 0, 0, 0, 0};
  static const uint8_t pp_empty[] = {1, 1, 0, 0, 0, 0, 0};
  static const uint8_t pp_overcount[] = {1, 1, 0, 0, 0, 0, 9, 6, 'n'};
  s_intruder_t x;
  uint8_t rnd[1024];
  uint64_t seed = 99;
  int k;
  size_t j;

  s_intruder_start(&x, cfg);
  for (k = 0; k < S_NODES; k++) {
    s_core_drops_t d;
    cm_enode_stats_t st = s_stats(cl->n[k]);
    const cm_addr_t *to = &cl->addr[k];
    d.n = cl->n[k];
    d.malformed = st.node.drop_malformed + S_BAD_DGRAMS;
    d.pushpull = st.node.drop_pushpull + 4;
    for (j = 0; j < sizeof(rnd); j++)
      rnd[j] = (uint8_t)cm_tn_rand(&seed);
    rnd[0] = 0xee; /* never a valid version */
    CM_CHECK_OK(cm_net_send_datagram(x.net, to, rnd, sizeof(rnd)));
    CM_CHECK_OK(cm_net_send_datagram(x.net, to, rnd, 1));
    CM_CHECK_OK(
        cm_net_send_datagram(x.net, to, bad_version, sizeof(bad_version)));
    CM_CHECK_OK(cm_net_send_datagram(x.net, to, bad_type, sizeof(bad_type)));
    CM_CHECK_OK(cm_net_send_datagram(x.net, to, bad_count, sizeof(bad_count)));
    CM_CHECK_OK(cm_net_send_datagram(x.net, to, truncated_ping,
                                     sizeof(truncated_ping)));
    CM_CHECK_OK(cm_net_stream_request(x.net, to, rnd, sizeof(rnd), 1));
    CM_CHECK_OK(cm_net_stream_request(x.net, to, pp_response_kind,
                                      sizeof(pp_response_kind), 2));
    CM_CHECK_OK(
        cm_net_stream_request(x.net, to, pp_empty, sizeof(pp_empty), 3));
    CM_CHECK_OK(cm_net_stream_request(x.net, to, pp_overcount,
                                      sizeof(pp_overcount), 4));
    CM_CHECK(s_wait(&x.loop, s_core_dropped, &d, S_WAIT_MS));
  }
  CM_CHECK_EQ(x.nresp_ok, 0);
  CM_CHECK_EQ(x.nreq, 0);
  s_intruder_stop(&x);
}

/* ---- after the attacks -----------------------------------------------------
 */

static int s_tag_everywhere(void *arg) {
  s_cluster_t *cl = arg;
  int i;
  for (i = 0; i < S_NODES; i++) {
    cm_snapshot_t *s = cm_enode_snapshot(cl->n[i]);
    uint32_t k;
    int ok = 0;
    for (k = 0; k < s->count; k++) {
      cm_tag_t t;
      if (strcmp(s->members[k].id, "node-1") == 0 &&
          cm_tags_get(s->members[k].tags, s->members[k].tags_len, "after", 5,
                      &t) &&
          t.value_len == 6 && memcmp(t.value, "attack", 6) == 0)
        ok = 1;
    }
    cm_snapshot_release(s);
    if (!ok)
      return 0;
  }
  return 1;
}

static void s_still_serving(s_cluster_t *cl) {
  uint8_t blob[64];
  size_t blen;
  CM_CHECK_OK(
      cm_tags_set(NULL, 0, "after", 5, "attack", 6, blob, sizeof(blob), &blen));
  CM_CHECK_OK(cm_enode_set_tags(cl->n[1], blob, blen));
  CM_CHECK(s_wait(NULL, s_tag_everywhere, cl, S_WAIT_MS));
}

static void s_report(s_cluster_t *cl, const char *mode) {
  int i;
  for (i = 0; i < S_NODES; i++) {
    cm_enode_stats_t st = s_stats(cl->n[i]);
    printf("    %s node-%d: auth_refused %llu handshakes_failed %llu "
           "drop_garbage %llu drop_malformed %llu drop_pushpull %llu\n",
           mode, i, (unsigned long long)st.net.auth_refused,
           (unsigned long long)st.net.handshakes_failed,
           (unsigned long long)st.net.drop_garbage,
           (unsigned long long)st.node.drop_malformed,
           (unsigned long long)st.node.drop_pushpull);
  }
}

CM_TEST(engine_security_cluster_key) {
  /* Keys are named in the handshake by their content, not by id: the same
   * bytes under another id are the same key (test_net.c,
   * net_key_rings_in_any_order_meet); a wrong key is refused, whatever its
   * id. */
  cm_net_key_t key = s_key(1, 0x11), wrong = s_key(1, 0x22);
  cm_net_key_t wrong_id = s_key(7, 0x33);
  cm_net_config_t net[S_NODES], bad;
  s_cluster_t cl;
  s_view_t before[S_NODES];
  cm_enode_stats_t st0[S_NODES];
  int i;

  for (i = 0; i < S_NODES; i++)
    s_net_cfg(&net[i], &key, NULL, NULL, NULL);
  s_cluster_start(&cl, net);
  for (i = 0; i < S_NODES; i++) {
    s_view_take(cl.n[i], &before[i]);
    st0[i] = s_stats(cl.n[i]);
  }

  s_net_cfg(&bad, &wrong, NULL, NULL, NULL);
  s_attack_join(&cl, &bad);
  s_attack_refused(&cl, &bad);
  s_net_cfg(&bad, &wrong_id, NULL, NULL, NULL);
  s_attack_refused(&cl, &bad);
  s_attack_raw(&cl);
  s_attack_authenticated(&cl, &net[0]);

  for (i = 0; i < S_NODES; i++) {
    cm_enode_stats_t st = s_stats(cl.n[i]);
    s_view_check_same(cl.n[i], &before[i]);
    CM_CHECK(st.net.auth_refused >= st0[i].net.auth_refused + 2);
    CM_CHECK(st.net.handshakes_failed >= st0[i].net.handshakes_failed + 2);
    CM_CHECK(st.net.drop_garbage >= st0[i].net.drop_garbage + S_RAW_GARBAGE);
    CM_CHECK(st.node.drop_malformed >=
             st0[i].node.drop_malformed + S_BAD_DGRAMS);
    CM_CHECK(st.node.drop_pushpull >= st0[i].node.drop_pushpull + 4);
    CM_CHECK_EQ(st.node.suspicions, st0[i].node.suspicions);
  }
  /* Node 0 was the intruding engine's seed as well. */
  CM_CHECK(s_stats(cl.n[0]).net.auth_refused >= st0[0].net.auth_refused + 3);
  s_report(&cl, "key");
  s_still_serving(&cl);
  cm_engine_free(cl.e);
}

CM_TEST(engine_security_mtls) {
  s_pki_t pki;
  cm_net_config_t net[S_NODES], bad;
  s_cluster_t cl;
  s_view_t before[S_NODES];
  cm_enode_stats_t st0[S_NODES];
  int i;

  s_pki_make(&pki);
  for (i = 0; i < S_NODES; i++)
    s_net_cfg(&net[i], NULL, &pki, pki.cert[i], pki.key[i]);
  s_cluster_start(&cl, net);
  for (i = 0; i < S_NODES; i++) {
    s_view_take(cl.n[i], &before[i]);
    st0[i] = s_stats(cl.n[i]);
  }

  /* A certificate from another CA, then none at all. */
  s_net_cfg(&bad, NULL, &pki, pki.other, pki.other_key);
  s_attack_join(&cl, &bad);
  s_attack_refused(&cl, &bad);
  s_net_cfg(&bad, NULL, &pki, NULL, NULL);
  s_attack_join(&cl, &bad);
  s_attack_refused(&cl, &bad);
  s_attack_raw(&cl);
  /* A node with a valid certificate sending garbage. */
  s_attack_authenticated(&cl, &net[2]);

  for (i = 0; i < S_NODES; i++) {
    cm_enode_stats_t st = s_stats(cl.n[i]);
    s_view_check_same(cl.n[i], &before[i]);
    CM_CHECK(st.net.auth_refused >= st0[i].net.auth_refused + 2);
    CM_CHECK(st.net.drop_garbage >= st0[i].net.drop_garbage + S_RAW_GARBAGE);
    CM_CHECK(st.node.drop_malformed >=
             st0[i].node.drop_malformed + S_BAD_DGRAMS);
    CM_CHECK_EQ(st.node.suspicions, st0[i].node.suspicions);
  }
  CM_CHECK(s_stats(cl.n[0]).net.auth_refused >= st0[0].net.auth_refused + 4);
  s_report(&cl, "mtls");
  s_still_serving(&cl);
  cm_engine_free(cl.e);
  s_pki_free(&pki);
}
