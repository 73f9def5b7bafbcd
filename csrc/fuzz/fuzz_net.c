/*
 * Fuzz the transport's receive path: UDP datagrams reaching a cm_net
 * endpoint (A) through the real ngtcp2 and GnuTLS code, in memory. Each
 * input starts two endpoints, A and a peer B, on a fixed clock with
 * seeded connection IDs (cm_net__fuzz_* hooks, fuzz builds only), and
 * their packets go from one to the other through a queue here, never a
 * socket. B completes a handshake with A first (cluster-key mode), and the
 * target keeps B's 1-RTT secret (GnuTLS key log), so it can seal packets
 * of its own as B would: fuzzed frames then reach A's frame handling and
 * the stream layer (cm_net_stream.c) as authenticated input. The input is
 * a config byte, then a script of records:
 *
 *   0 RAW      u8 src | u16 len | bytes: a datagram as is
 *   1 INITIAL  u8 src | u8 flags | u8 dcidlen | u8 toklen | token |
 *              u16 len | frames: a client Initial sealed with the Initial
 *              keys of its DCID (so it passes the stateless check), padded
 *              to 1200 bytes unless flags & 1; with flags & 2, under the
 *              token and SCID of the last Retry A sent, from its address
 *   2 FRAMES   u16 len | frames: a 1-RTT packet from B sealed with B's key
 *   3 B_REQ    u16 len | bytes: B sends a push-pull request to A
 *   4 B_DGRAM  u16 len | bytes: B sends a datagram to A
 *   5 A_RESP   u8 which | u16 len | bytes: A answers a request it received
 *   6 PUMP     u8 mode: deliver the packets in flight between A and B
 *              (mode: drop some, reverse, duplicate)
 *   7 TICK     u32 microseconds: advance the clock, run both timers
 *   8 A_REQ    u16 len | bytes: A sends a request to B
 *
 * (op: the record's first byte modulo 9; integers big-endian; src picks
 * B's address, a known peer's or a stranger's, IPv4 or IPv6). After every
 * record A's tables must agree with their counts (fz_check), a datagram
 * from anyone but an authenticated B must never close A's authenticated
 * connection to B, and each request of A's is answered exactly once,
 * by the end at the latest. A violation aborts.
 */
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cm_net_int.h"
#include "fz_input.h"

#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#error "build with -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION (make fuzz-build)"
#endif

#define FZ_T0 (1000 * NGTCP2_SECONDS)
#define FZ_QMAX 512              /* packets in flight */
#define FZ_MAX_MESSAGE 4096      /* A's max_stream_message */
#define FZ_MAX_TICK (120u << 20) /* a TICK moves at most ~2 minutes */
#define FZ_MAX_REQS 64
#define FZ_MAX_TOKENS 64
#define FZ_NSRC 16

typedef struct fz_pkt {
  cm_net_t *to;
  cm_addr_t from;
  size_t len;
  uint8_t *data;
} fz_pkt_t;

static uv_loop_t fz_loop;
static cm_net_t *fz_a, *fz_b;
static cm_addr_t fz_a_addr, fz_b_addr;
static fz_pkt_t fz_q[FZ_QMAX];
static size_t fz_qn;
static uint64_t fz_dropped_out; /* A's packets to strangers */
/* The last Retry A sent a stranger: to whom, its SCID and its token, for
 * an INITIAL to come back with (flags bit 1) */
static cm_addr_t fz_retry_to;
static uint8_t fz_retry_scid[20], fz_retry_token[256];
static size_t fz_retry_scidlen, fz_retry_toklen;

/* B's 1-RTT keys (AES-128-GCM), once its handshake is done */
static uint8_t fz_secret[64];
static size_t fz_secret_len;
static int fz_have_keys;
static uint8_t fz_key[16], fz_iv[12], fz_hp[16];
static uint64_t fz_pn;

/* A's requests: answered[i] for request id i + 1 */
static int fz_answered[FZ_MAX_REQS];
static unsigned fz_nreqs;
/* requests A received, by token */
static uint64_t fz_tokens[FZ_MAX_TOKENS];
static size_t fz_ntokens;

static const uint8_t fz_keybytes[CM_KEY_LEN] =
    "fuzz-net-cluster-key-0123456789";

/* ---- addresses ------------------------------------------------------------
 */

/* 0: B; 1-3: known peers (no key); 4-11: strangers on 8 IPs; 12-14: one
 * stranger IP, three ports; 15: an IPv6 stranger. */
static cm_addr_t fz_src(uint8_t i) {
  cm_addr_t a;
  i %= FZ_NSRC;
  if (i == 0)
    return fz_b_addr;
  memset(&a, 0, sizeof(a));
  a.family = 4;
  if (i < 4) {
    a.ip[0] = 127;
    a.ip[3] = 1;
    a.port = (uint16_t)(40000 + i);
  } else if (i < 12) {
    a.ip[0] = 10;
    a.ip[2] = i;
    a.ip[3] = 1;
    a.port = (uint16_t)(1000 + i);
  } else if (i < 15) {
    a.ip[0] = 10;
    a.ip[1] = 9;
    a.port = (uint16_t)(2000 + i);
  } else {
    a.family = 6;
    a.ip[0] = 0xfd;
    a.ip[15] = 1;
    a.port = 3000;
  }
  return a;
}

static int fz_known(void *ud, const cm_addr_t *from) {
  unsigned i;
  (void)ud;
  for (i = 0; i < 4; i++) {
    cm_addr_t k = fz_src((uint8_t)i);
    if (cm_addr_eq(&k, from))
      return 1;
  }
  return 0;
}

/* ---- the wire between A and B ---------------------------------------------
 */

/* A Retry (RFC 9000 17.2.5): type 3, version 1, DCID, SCID, token, then
 * a 16-byte integrity tag. */
static void fz_keep_retry(const cm_addr_t *to, const uint8_t *d, size_t len) {
  size_t o = 5, dl, sl;
  if (len < 7 || (d[0] & 0xf0) != 0xf0 || d[1] || d[2] || d[3] || d[4] != 1)
    return;
  dl = d[o++];
  if (dl > 20 || o + dl + 1 > len)
    return;
  o += dl;
  sl = d[o++];
  if (sl > sizeof(fz_retry_scid) || o + sl + 16 > len ||
      len - o - sl - 16 > sizeof(fz_retry_token))
    return;
  fz_retry_to = *to;
  memcpy(fz_retry_scid, d + o, sl);
  fz_retry_scidlen = sl;
  o += sl;
  fz_retry_toklen = len - o - 16;
  memcpy(fz_retry_token, d + o, fz_retry_toklen);
}

static void fz_send(cm_net_t *net, const cm_addr_t *to, const uint8_t *data,
                    size_t len) {
  cm_net_t *dst = NULL;
  if (net == fz_a && cm_addr_eq(to, &fz_b_addr))
    dst = fz_b;
  else if (net == fz_b && cm_addr_eq(to, &fz_a_addr))
    dst = fz_a;
  if (dst == NULL && net == fz_a)
    fz_keep_retry(to, data, len);
  if (dst == NULL || fz_qn == FZ_QMAX) {
    fz_dropped_out++;
    return;
  }
  fz_q[fz_qn].to = dst;
  fz_q[fz_qn].from = net == fz_a ? fz_a_addr : fz_b_addr;
  fz_q[fz_qn].len = len;
  fz_q[fz_qn].data = malloc(len);
  FZ_CHECK(fz_q[fz_qn].data != NULL);
  memcpy(fz_q[fz_qn].data, data, len);
  fz_qn++;
}

static void fz_flush(void) {
  int i;
  for (i = 0; i < 8 && (fz_a->flush_scheduled || fz_b->flush_scheduled); i++) {
    cm_net__flush_now(fz_a);
    cm_net__flush_now(fz_b);
  }
}

/* One datagram to `to`, from `from`, in a buffer of its exact size. */
static void fz_deliver(cm_net_t *to, const cm_addr_t *from, const uint8_t *data,
                       size_t len) {
  struct sockaddr_storage ss;
  uint8_t *copy = malloc(len ? len : 1);
  FZ_CHECK(copy != NULL);
  if (len > 0)
    memcpy(copy, data, len);
  FZ_CHECK(cm_net__addr_to_sa(from, &ss) > 0);
  cm_net__recv(to, (struct sockaddr *)&ss, copy, len, 0);
  free(copy);
  fz_flush();
}

static void fz_clear_queue(void) {
  size_t i;
  for (i = 0; i < fz_qn; i++)
    free(fz_q[i].data);
  fz_qn = 0;
}

/* Deliver what is in flight, and what that provokes, for a few rounds.
 * mode bit 0: drop every third packet; bit 1: reverse each round's order;
 * bit 2: deliver each packet twice. */
static void fz_pump(uint8_t mode, int rounds) {
  fz_pkt_t batch[FZ_QMAX];
  size_t n, i, k;
  int r;
  for (r = 0; r < rounds && fz_qn > 0; r++) {
    n = fz_qn;
    memcpy(batch, fz_q, n * sizeof(batch[0]));
    fz_qn = 0;
    for (k = 0; k < n; k++) {
      i = (mode & 2) ? n - 1 - k : k;
      if (!((mode & 1) && k % 3 == 2)) {
        fz_deliver(batch[i].to, &batch[i].from, batch[i].data, batch[i].len);
        if (mode & 4)
          fz_deliver(batch[i].to, &batch[i].from, batch[i].data, batch[i].len);
      }
      free(batch[i].data);
    }
    /* a millisecond per round trip */
    cm_net__fuzz_clock += NGTCP2_MILLISECONDS;
    cm_net__expire(fz_a);
    cm_net__expire(fz_b);
    fz_flush();
  }
}

/* ---- callbacks ------------------------------------------------------------
 */

static void fz_a_dgram(void *ud, const cm_addr_t *from, const uint8_t *d,
                       size_t len) {
  (void)ud;
  /* only an authenticated peer's payload is delivered */
  FZ_CHECK(cm_addr_eq(from, &fz_b_addr));
  FZ_CHECK(len <= CM_NET_DATAGRAM_MAX + 64);
  (void)d;
}

static void fz_a_req(void *ud, const cm_addr_t *from, uint64_t token,
                     const uint8_t *d, size_t len) {
  (void)ud;
  (void)d;
  FZ_CHECK(cm_addr_eq(from, &fz_b_addr));
  FZ_CHECK(len <= FZ_MAX_MESSAGE);
  if (fz_ntokens < FZ_MAX_TOKENS)
    fz_tokens[fz_ntokens++] = token;
}

static void fz_a_resp(void *ud, uint64_t rid, int status, const uint8_t *d,
                      size_t len) {
  (void)ud;
  (void)d;
  FZ_CHECK(rid >= 1 && rid <= fz_nreqs);
  FZ_CHECK(!fz_answered[rid - 1]);
  fz_answered[rid - 1] = 1;
  FZ_CHECK(status != 0 || len <= FZ_MAX_MESSAGE);
}

static void fz_b_dgram(void *ud, const cm_addr_t *from, const uint8_t *d,
                       size_t len) {}

static void fz_b_req(void *ud, const cm_addr_t *from, uint64_t token,
                     const uint8_t *d, size_t len) {
  static const uint8_t reply[] = "pong";
  (void)cm_net_stream_respond(fz_b, token, reply, sizeof(reply));
}

static void fz_b_resp(void *ud, uint64_t rid, int status, const uint8_t *d,
                      size_t len) {}

/* ---- sealing packets -------------------------------------------------------
 * AES-128-GCM with a 4-byte packet number, and AES header protection (what
 * the Initial keys use, and the first suite cm_net offers). */

static void fz_seal(uint8_t *pkt, size_t pn_off, uint64_t pn,
                    const uint8_t key[16], const uint8_t iv[12],
                    const uint8_t hp[16], const uint8_t *plain, size_t plen,
                    size_t *outlen) {
  gnutls_datum_t k = {(unsigned char *)key, 16};
  gnutls_aead_cipher_hd_t h;
  uint8_t nonce[12], mask[16];
  size_t hdrlen = pn_off + 4, clen = plen + 16, i;
  memcpy(nonce, iv, 12);
  for (i = 0; i < 8; i++)
    nonce[4 + i] ^= (uint8_t)(pn >> (56 - 8 * i));
  for (i = 0; i < 4; i++)
    pkt[pn_off + i] = (uint8_t)(pn >> (24 - 8 * i));
  FZ_CHECK(gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_128_GCM, &k) == 0);
  FZ_CHECK(gnutls_aead_cipher_encrypt(h, nonce, 12, pkt, hdrlen, 16, plain,
                                      plen, pkt + hdrlen, &clen) == 0);
  gnutls_aead_cipher_deinit(h);
  FZ_CHECK(clen == plen + 16);
  FZ_CHECK(cm_net__initial_hp_mask(hp, pkt + pn_off + 4, mask) == 0);
  pkt[0] ^= mask[0] & ((pkt[0] & 0x80) ? 0x0f : 0x1f);
  for (i = 0; i < 4; i++)
    pkt[pn_off + i] ^= mask[1 + i];
  *outlen = hdrlen + clen;
}

static void fz_expand(const char *label, uint8_t *out, size_t len) {
  FZ_CHECK(fz_secret_len == 32);
  FZ_CHECK(cm_net__expand_label(fz_secret, label, out, len) == 0);
}

static int fz_keylog(gnutls_session_t s, const char *label,
                     const gnutls_datum_t *secret) {
  (void)s;
  if (strcmp(label, "CLIENT_TRAFFIC_SECRET_0") == 0 &&
      secret->size <= sizeof(fz_secret)) {
    memcpy(fz_secret, secret->data, secret->size);
    fz_secret_len = secret->size;
  }
  return 0;
}

/* A client Initial carrying `frames`, sealed under its DCID's keys. */
static void fz_initial(fz_in_t *in) {
  uint8_t src, flags, dcidlen, tl, pkt[1500], plain[1400];
  uint16_t flen;
  const uint8_t *dcid, *tok, *frames;
  size_t got, toklen, o = 0, plen, pn_off, len, i;
  cm_net_initial_keys_t k;
  cm_addr_t from;
  if (fz_u8(in, &src) || fz_u8(in, &flags) || fz_u8(in, &dcidlen) ||
      fz_u8(in, &tl))
    return;
  dcidlen = (uint8_t)(8 + dcidlen % 13); /* 8 to 20 */
  dcid = fz_bytes(in, dcidlen, &got);
  if (got < dcidlen)
    return;
  tok = fz_bytes(in, tl % 64, &toklen);
  if (fz_u16(in, &flen))
    return;
  frames = fz_bytes(in, flen % 1100, &got);
  from = fz_src(src);
  if ((flags & 2) && fz_retry_scidlen >= 8) {
    /* back with the last Retry's token, from where it was sent */
    from = fz_retry_to;
    dcid = fz_retry_scid;
    dcidlen = (uint8_t)fz_retry_scidlen;
    tok = fz_retry_token;
    toklen = fz_retry_toklen;
  }
  pkt[o++] = 0xc3; /* Initial, 4-byte packet number */
  pkt[o++] = 0;
  pkt[o++] = 0;
  pkt[o++] = 0;
  pkt[o++] = 1;
  pkt[o++] = dcidlen;
  memcpy(pkt + o, dcid, dcidlen);
  o += dcidlen;
  pkt[o++] = 8;
  for (i = 0; i < 8; i++)
    pkt[o++] = (uint8_t)(0xa0 + i + src);
  pkt[o++] = (uint8_t)(0x40 | toklen >> 8); /* 2-byte varint */
  pkt[o++] = (uint8_t)(toklen & 0xff);
  memcpy(pkt + o, tok, toklen);
  o += toklen;
  plen = got < 4 ? 4 : got;
  if (!(flags & 1) && o + 2 + 4 + plen + 16 < 1200)
    plen = 1200 - (o + 2 + 4 + 16);
  memset(plain, 0, plen);
  memcpy(plain, frames, got);
  len = 4 + plen + 16;
  pkt[o++] = (uint8_t)(0x40 | len >> 8);
  pkt[o++] = (uint8_t)(len & 0xff);
  pn_off = o;
  FZ_CHECK(cm_net__initial_keys(dcid, dcidlen, &k) == 0);
  fz_seal(pkt, pn_off, flags >> 4, k.key, k.iv, k.hp, plain, plen, &len);
  fz_deliver(fz_a, &from, pkt, len);
}

/* A 1-RTT packet from B carrying `frames`. */
static void fz_frames(fz_in_t *in) {
  uint8_t pkt[1500], plain[1400];
  uint16_t flen;
  const uint8_t *frames;
  const ngtcp2_cid *dcid;
  size_t got, o = 0, plen, len;
  cm_net_conn_t *c;
  if (fz_u16(in, &flen))
    return;
  frames = fz_bytes(in, flen % 1300, &got);
  c = fz_b->lru_head;
  if (!fz_have_keys || c == NULL || c->state != CM_CONN_ESTABLISHED)
    return;
  dcid = ngtcp2_conn_get_dcid(c->qc);
  pkt[o++] = 0x43; /* short header, key phase 0, 4-byte packet number */
  memcpy(pkt + o, dcid->data, dcid->datalen);
  o += dcid->datalen;
  plen = got < 4 ? 4 : got;
  memset(plain, 0, plen);
  memcpy(plain, frames, got);
  fz_seal(pkt, o, fz_pn++, fz_key, fz_iv, fz_hp, plain, plen, &len);
  fz_deliver(fz_a, &fz_b_addr, pkt, len);
}

/* ---- invariants -----------------------------------------------------------
 */

static void fz_check(cm_net_t *net) {
  cm_net_conn_t *c;
  cm_net_stream_t *s;
  uint32_t pool = 0, half = 0;
  for (c = net->lru_head; c != NULL; c = c->next) {
    size_t held = 0, ns = 0;
    for (s = c->streams; s != NULL; s = s->next) {
      held += s->in_credit;
      ns++;
      FZ_CHECK(s->inlen <= net->cfg.max_stream_message);
    }
    FZ_CHECK(held == c->in_held);
    FZ_CHECK(ns == c->nstreams);
    pool += c->in_pool != 0;
    half += c->half_open != 0;
    FZ_CHECK(!(c->in_pool && c->half_open));
  }
  FZ_CHECK(pool == net->nconns);
  FZ_CHECK(half == net->nhalf_open);
  FZ_CHECK(net->nconns <= net->cfg.max_connections);
  FZ_CHECK(net->nhalf_open <= net->cfg.max_half_open);
  for (c = net->half_head, half = 0; c != NULL; c = c->hnext)
    half++;
  FZ_CHECK(half == net->nhalf_open);
}

/* ---- set-up and tear-down -------------------------------------------------
 */

static void fz_closed(void *arg) { (*(int *)arg)++; }

static cm_net_t *fz_new(uint8_t conf, int is_a) {
  static const cm_net_callbacks_t cba = {fz_a_dgram, fz_a_req, fz_a_resp, NULL,
                                         fz_known};
  static const cm_net_callbacks_t cbb = {fz_b_dgram, fz_b_req, fz_b_resp, NULL,
                                         NULL};
  cm_net_config_t cfg;
  cm_net_key_t key;
  cm_addr_t bind;
  cm_net_t *net = NULL;
  cm_net_config_default(&cfg);
  key.id = 1;
  memcpy(key.key, fz_keybytes, CM_KEY_LEN);
  cfg.keys = &key;
  cfg.nkeys = 1;
  /* B may send what A must refuse as too big */
  cfg.max_stream_message = is_a ? FZ_MAX_MESSAGE : 4 * FZ_MAX_MESSAGE;
  cfg.max_queued_datagrams = 8;
  if (is_a) {
    /* conf bit 0: Retry on (else never); bit 1: a pool of 2 (else 8);
     * bit 2: no per-source limit */
    cfg.max_connections = (conf & 2) ? 2 : 8;
    cfg.max_half_open = (conf & 2) ? 1 : 3;
    cfg.retry_threshold = (conf & 1) ? 1 : CM_NET_RETRY_NEVER;
    if (conf & 4)
      cfg.accept_rate_per_source = 0;
  }
  cfg.static_secret[0] = (uint8_t)(is_a ? 'A' : 'B');
  memset(&bind, 0, sizeof(bind));
  bind.family = 4;
  bind.ip[0] = 127;
  bind.ip[3] = 1;
  FZ_CHECK(cm_net_new(&net, &fz_loop, &bind, &cfg, is_a ? &cba : &cbb, NULL) ==
           0);
  return net;
}

static void fz_setup(uint8_t conf) {
  cm_net_conn_t *c;
  cm_net__fuzz_clock = FZ_T0;
  cm_net__fuzz_rand_state = 0x5eed5eed;
  cm_net__fuzz_send = fz_send;
  fz_qn = 0;
  fz_nreqs = 0;
  fz_ntokens = 0;
  fz_have_keys = 0;
  fz_secret_len = 0;
  fz_pn = 1u << 16;
  fz_retry_scidlen = fz_retry_toklen = 0;
  memset(fz_answered, 0, sizeof(fz_answered));
  fz_a = fz_new(conf, 1);
  fz_b = fz_new(conf, 0);
  FZ_CHECK(cm_net_local_addr(fz_a, &fz_a_addr) == 0);
  FZ_CHECK(cm_net_local_addr(fz_b, &fz_b_addr) == 0);
  FZ_CHECK(cm_net_connect(fz_b, &fz_a_addr) == 0);
  c = fz_b->lru_head;
  FZ_CHECK(c != NULL && c->tls != NULL);
  gnutls_session_set_keylog_function(c->tls, fz_keylog);
  fz_flush();
  fz_pump(0, 16);
  FZ_CHECK(cm_net_is_connected(fz_a, &fz_b_addr));
  FZ_CHECK(cm_net_is_connected(fz_b, &fz_a_addr));
  if (fz_secret_len == 32 &&
      gnutls_cipher_get(c->tls) == GNUTLS_CIPHER_AES_128_GCM) {
    fz_expand("quic key", fz_key, sizeof(fz_key));
    fz_expand("quic iv", fz_iv, sizeof(fz_iv));
    fz_expand("quic hp", fz_hp, sizeof(fz_hp));
    fz_have_keys = 1;
  }
}

/* FUZZ_NET_STATS set: A's counters after each input, to see what an input
 * reached. */
static void fz_print_stats(void) {
  cm_net_stats_t st;
  cm_net_stats(fz_a, &st);
  fprintf(
      stderr,
      "A: %llu packets in, %llu garbage, %llu half-open (%llu "
      "displaced, %llu refused), %llu accepted, %llu handshakes "
      "refused, %llu retries, %llu bad tokens, %llu requests in, %llu "
      "datagrams in, %llu oversized, %llu resets sent\n",
      (unsigned long long)st.packets_in, (unsigned long long)st.drop_garbage,
      (unsigned long long)st.conns_half_open,
      (unsigned long long)st.half_open_displaced,
      (unsigned long long)st.drop_half_open,
      (unsigned long long)st.conns_accepted,
      (unsigned long long)st.handshakes_refused,
      (unsigned long long)st.retries_sent,
      (unsigned long long)st.drop_bad_token, (unsigned long long)st.requests_in,
      (unsigned long long)st.datagrams_in,
      (unsigned long long)st.drop_oversized,
      (unsigned long long)st.stateless_resets_sent);
}

static void fz_teardown(void) {
  int done = 0;
  unsigned i;
  if (getenv("FUZZ_NET_STATS") != NULL)
    fz_print_stats();
  cm_net_close(fz_a, fz_closed, &done);
  cm_net_close(fz_b, fz_closed, &done);
  while (done < 2)
    uv_run(&fz_loop, UV_RUN_ONCE);
  fz_clear_queue();
  /* every request of A's was answered, if only by its closing */
  for (i = 0; i < fz_nreqs; i++)
    FZ_CHECK(fz_answered[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FZ_CHECK(uv_loop_init(&fz_loop) == 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  uint8_t conf = 0, op, v8;
  uint16_t v16;
  uint32_t v32;
  const uint8_t *p;
  size_t got;
  int steps = 0;

  (void)fz_u8(&in, &conf);
  fz_setup(conf);
  fz_check(fz_a);
  while (in.n > 0 && steps++ < 256) {
    int was_connected = cm_net_is_connected(fz_a, &fz_b_addr);
    int forged = 0;
    (void)fz_u8(&in, &op);
    switch (op % 9) {
    case 0: /* RAW */
      if (fz_u8(&in, &v8) || fz_u16(&in, &v16))
        break;
      p = fz_bytes(&in, v16 % 1500, &got);
      {
        cm_addr_t from = fz_src(v8);
        fz_deliver(fz_a, &from, p, got);
      }
      forged = 1;
      break;
    case 1:
      fz_initial(&in);
      forged = 1;
      break;
    case 2:
      fz_frames(&in);
      break;
    case 3: /* B_REQ: up to twice A's bound, the excess zeros */
      if (fz_u16(&in, &v16))
        break;
      {
        size_t want = v16 % (2 * FZ_MAX_MESSAGE + 2);
        uint8_t *buf = calloc(1, want + 1);
        FZ_CHECK(buf != NULL);
        p = fz_bytes(&in, want, &got);
        memcpy(buf, p, got);
        (void)cm_net_stream_request(fz_b, &fz_a_addr, buf, want, 1);
        free(buf);
      }
      fz_flush();
      break;
    case 4:
      if (fz_u16(&in, &v16))
        break;
      p = fz_bytes(&in, v16 % (CM_NET_DATAGRAM_MAX + 2), &got);
      (void)cm_net_send_datagram(fz_b, &fz_a_addr, p, got);
      fz_flush();
      break;
    case 5: /* A_RESP */
      if (fz_u8(&in, &v8) || fz_u16(&in, &v16))
        break;
      p = fz_bytes(&in, v16 % (FZ_MAX_MESSAGE + 2), &got);
      {
        /* which: a token A was given, or (bit 7) a made-up one */
        uint64_t token = (v8 & 0x80) || fz_ntokens == 0
                             ? (uint64_t)v8 * 7919
                             : fz_tokens[v8 % fz_ntokens];
        (void)cm_net_stream_respond(fz_a, token, p, got);
      }
      fz_flush();
      break;
    case 6:
      if (fz_u8(&in, &v8))
        break;
      fz_pump(v8, 1 + (v8 >> 3) % 4);
      break;
    case 7:
      if (fz_u32(&in, &v32))
        break;
      cm_net__fuzz_clock += (uint64_t)(v32 % FZ_MAX_TICK) * NGTCP2_MICROSECONDS;
      cm_net__expire(fz_a);
      cm_net__expire(fz_b);
      fz_flush();
      break;
    case 8: /* A_REQ */
      if (fz_u16(&in, &v16))
        break;
      p = fz_bytes(&in, v16 % (FZ_MAX_MESSAGE + 2), &got);
      if (fz_nreqs < FZ_MAX_REQS &&
          cm_net_stream_request(fz_a, &fz_b_addr, p, got, fz_nreqs + 1) == 0)
        fz_nreqs++;
      fz_flush();
      break;
    }
    fz_check(fz_a);
    fz_check(fz_b);
    /* No unauthenticated datagram closes an authenticated connection. */
    if (forged && was_connected)
      FZ_CHECK(cm_net_is_connected(fz_a, &fz_b_addr));
  }
  fz_teardown();
  return 0;
}
