#include "cm_test_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cm_net_int.h"
#include "cm_test.h"

int cm_tn_udp_socket(void) { return cm_tn_udp_socket_at("127.0.0.1"); }

int cm_tn_udp_socket_at(const char *ip) {
  struct sockaddr_in sin;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  CM_CHECK(fd >= 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  CM_CHECK(inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
  CM_CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
  return fd;
}

cm_addr_t cm_tn_socket_addr(int fd) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  cm_addr_t a;
  CM_CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
  memset(&a, 0, sizeof(a));
  a.family = 4;
  memcpy(a.ip, &sin.sin_addr, 4);
  a.port = ntohs(sin.sin_port);
  return a;
}

int cm_tn_udp_send(int fd, const cm_addr_t *to, const uint8_t *d, size_t len,
                   int strict) {
  struct sockaddr_in sin;
  ssize_t n;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  memcpy(&sin.sin_addr, to->ip, 4);
  sin.sin_port = htons(to->port);
  n = sendto(fd, d, len, strict ? 0 : MSG_DONTWAIT, (struct sockaddr *)&sin,
             sizeof(sin));
  if (strict)
    CM_CHECK(n == (ssize_t)len);
  return n == (ssize_t)len ? 0 : -1;
}

uint64_t cm_tn_rand(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

void cm_tn_random_bytes(uint64_t *s, uint8_t *d, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    d[i] = (uint8_t)cm_tn_rand(s);
}

void cm_tn_forged_initial(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN]) {
  memset(d, 0, CM_TN_INITIAL_LEN);
  d[0] = 0xc3; /* long header, Initial, 4-byte packet number */
  d[4] = 1;    /* version 1 */
  d[5] = 8;    /* DCID length */
  cm_tn_random_bytes(s, d + 6, 8);
  d[14] = 8; /* SCID length */
  cm_tn_random_bytes(s, d + 15, 8);
  d[23] = 0;    /* token length */
  d[24] = 0x44; /* length, 2-byte varint: 1024 */
  d[25] = 0x00;
  cm_tn_random_bytes(s, d + 26, CM_TN_INITIAL_LEN - 26);
}

/* ---- protected Initials -------------------------------------------------- */

/* QUIC frame types and the TLS handshake types used below. */
#define TN_FRAME_CRYPTO 0x06
#define TN_TLS_CLIENT_HELLO 0x01
#define TN_TLS_FINISHED 0x14
/* Packet number length of the Initials built here, and GCM's tag. */
#define TN_PN_LEN 4
#define TN_TAG_LEN 16
/* The ClientHello length declared by cm_tn_partial_hello: far more than
 * it carries. */
#define TN_HELLO_DECLARED 600

void cm_tn_partial_hello(uint64_t *s, uint8_t hs[CM_TN_HELLO_LEN]) {
  hs[0] = TN_TLS_CLIENT_HELLO;
  hs[1] = 0;
  hs[2] = (uint8_t)(TN_HELLO_DECLARED >> 8);
  hs[3] = (uint8_t)(TN_HELLO_DECLARED & 0xff);
  hs[4] = 3; /* legacy_version TLS 1.2 */
  hs[5] = 3;
  cm_tn_random_bytes(s, hs + 6, CM_TN_HELLO_LEN - 6); /* random, ... */
}

void cm_tn_bad_hello(uint8_t hs[CM_TN_HELLO_LEN]) {
  /* A whole Finished message before any ClientHello. */
  memset(hs, 0, CM_TN_HELLO_LEN);
  hs[0] = TN_TLS_FINISHED;
  hs[3] = CM_TN_HELLO_LEN - 4;
}

void cm_tn_sealed_initial_frames(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN],
                                 const uint8_t *dcid, size_t dcidlen,
                                 const uint8_t *token, size_t tokenlen,
                                 const uint8_t *frames, size_t flen) {
  cm_net_initial_keys_t k;
  uint8_t plain[CM_TN_INITIAL_LEN], mask[16], nonce[CM_NET_INITIAL_IV_LEN];
  gnutls_datum_t key;
  gnutls_aead_cipher_hd_t h;
  size_t o = 0, pn_off, rest, plen, clen, i;

  CM_CHECK(dcidlen >= 8 && dcidlen <= 20 && tokenlen < 64);
  CM_CHECK(flen < 1000);
  d[o++] = 0xc0 | (TN_PN_LEN - 1); /* long header, Initial */
  d[o++] = 0;
  d[o++] = 0;
  d[o++] = 0;
  d[o++] = 1; /* version 1 */
  d[o++] = (uint8_t)dcidlen;
  memcpy(d + o, dcid, dcidlen);
  o += dcidlen;
  d[o++] = 8; /* SCID length */
  cm_tn_random_bytes(s, d + o, 8);
  o += 8;
  d[o++] = (uint8_t)tokenlen; /* 1-byte varint */
  /* Without a token, token may be NULL, which memcpy must never see. */
  if (tokenlen > 0)
    memcpy(d + o, token, tokenlen);
  o += tokenlen;
  rest = CM_TN_INITIAL_LEN - o - 2; /* after a 2-byte Length */
  d[o++] = (uint8_t)(0x40 | (rest >> 8));
  d[o++] = (uint8_t)(rest & 0xff);
  pn_off = o;
  memset(d + pn_off, 0, TN_PN_LEN); /* packet number 0 */
  /* The frames, then PADDING (zeros). */
  plen = rest - TN_PN_LEN - TN_TAG_LEN;
  memset(plain, 0, plen);
  memcpy(plain, frames, flen);

  CM_CHECK_OK(cm_net__initial_keys(dcid, dcidlen, &k));
  key.data = k.key;
  key.size = sizeof(k.key);
  memcpy(nonce, k.iv, sizeof(nonce)); /* packet number 0: the IV itself */
  CM_CHECK(gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_128_GCM, &key) == 0);
  clen = plen + TN_TAG_LEN;
  CM_CHECK(gnutls_aead_cipher_encrypt(
               h, nonce, sizeof(nonce), d, pn_off + TN_PN_LEN, TN_TAG_LEN,
               plain, plen, d + pn_off + TN_PN_LEN, &clen) == 0);
  gnutls_aead_cipher_deinit(h);
  CM_CHECK_EQ(clen, plen + TN_TAG_LEN);
  /* Header protection last, over the sample of the ciphertext. */
  CM_CHECK_OK(cm_net__initial_hp_mask(k.hp, d + pn_off + 4, mask));
  d[0] ^= mask[0] & 0x0f;
  for (i = 0; i < TN_PN_LEN; i++)
    d[pn_off + i] ^= mask[1 + i];
}

void cm_tn_sealed_initial(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN],
                          const uint8_t *dcid, size_t dcidlen,
                          const uint8_t *token, size_t tokenlen,
                          const uint8_t *hs, size_t hslen) {
  uint8_t f[1000];
  CM_CHECK(hslen + 4 < sizeof(f));
  /* CRYPTO at offset 0 with the handshake data. */
  f[0] = TN_FRAME_CRYPTO;
  f[1] = 0;
  f[2] = (uint8_t)(0x40 | (hslen >> 8));
  f[3] = (uint8_t)(hslen & 0xff);
  memcpy(f + 4, hs, hslen);
  cm_tn_sealed_initial_frames(s, d, dcid, dcidlen, token, tokenlen, f,
                              hslen + 4);
}

/* ---- capture of real Initials ------------------------------------------- */

static void tn_nop_dgram(void *ud, const cm_addr_t *from, const uint8_t *d,
                         size_t len) {}
static void tn_nop_req(void *ud, const cm_addr_t *from, uint64_t token,
                       const uint8_t *d, size_t len) {}
static void tn_nop_resp(void *ud, uint64_t rid, int status, const uint8_t *d,
                        size_t len) {}
static void tn_closed(void *arg) { *(int *)arg = 1; }

static uint64_t tn_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* 1 if pkt is a QUIC v1 Initial whose DCID none of the first n has. */
static int tn_new_initial(const uint8_t *pkt, size_t len,
                          uint8_t (*pkts)[CM_TN_PKT_MAX], size_t n) {
  size_t i, dl;
  if (len < 1200 || (pkt[0] & 0xf0) != 0xc0 || pkt[5] > 20)
    return 0;
  dl = pkt[5];
  for (i = 0; i < n; i++)
    if (pkts[i][5] == dl && memcmp(pkts[i] + 6, pkt + 6, dl) == 0)
      return 0;
  return 1;
}

size_t cm_tn_capture_initials(const cm_net_key_t *key, size_t want,
                              uint8_t (*pkts)[CM_TN_PKT_MAX], size_t *lens) {
  static const cm_net_callbacks_t cb = {.on_datagram = tn_nop_dgram,
                                        .on_stream_request = tn_nop_req,
                                        .on_stream_response = tn_nop_resp};
  uv_loop_t loop;
  cm_net_config_t cfg;
  cm_net_t *net = NULL;
  cm_addr_t local, to;
  struct sockaddr_in sin;
  socklen_t slen = sizeof(sin);
  uint8_t buf[CM_TN_PKT_MAX + 1];
  size_t got = 0, i;
  uint64_t end;
  int fd, closed = 0;

  /* The capturing socket listens on every loopback address. */
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  CM_CHECK(fd >= 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_ANY);
  CM_CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
  CM_CHECK(getsockname(fd, (struct sockaddr *)&sin, &slen) == 0);
  CM_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);

  CM_CHECK_OK(uv_loop_init(&loop));
  cm_net_config_default(&cfg);
  cfg.keys = key;
  cfg.nkeys = 1;
  cfg.max_connections = (uint32_t)want + 2;
  cfg.max_half_open = 1;
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:1", &local));
  local.port = 0;
  CM_CHECK_OK(cm_net_new(&net, &loop, &local, &cfg, &cb, NULL));
  to = local;
  to.port = ntohs(sin.sin_port);
  for (i = 0; i < want; i++) {
    to.ip[2] = (uint8_t)(1 + i / 250);
    to.ip[3] = (uint8_t)(1 + i % 250);
    CM_CHECK_OK(cm_net_send_datagram(net, &to, (const uint8_t *)"x", 1));
  }
  end = tn_now_ms() + 10000;
  while (got < want && tn_now_ms() < end) {
    ssize_t n;
    uv_run(&loop, UV_RUN_NOWAIT);
    while (got < want && (n = recv(fd, buf, sizeof(buf), 0)) > 0)
      if ((size_t)n <= CM_TN_PKT_MAX &&
          tn_new_initial(buf, (size_t)n, pkts, got)) {
        memcpy(pkts[got], buf, (size_t)n);
        lens[got++] = (size_t)n;
      }
    if (got < want) {
      struct timespec ts = {0, 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  cm_net_close(net, tn_closed, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  CM_CHECK_OK(uv_loop_close(&loop));
  close(fd);
  return got;
}
