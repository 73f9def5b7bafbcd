/*
 * The stateless check of a client's Initial (RFC 9001 5.2 to 5.4): that
 * the packet was protected with the Initial keys its Destination
 * Connection ID derives. Anyone can derive those keys, so passing proves
 * nothing about the sender; it proves the sender did a QUIC client's work
 * instead of writing random bytes under a valid header. It costs a few
 * microseconds and keeps nothing, and admission runs it before anything
 * that could be spent on the packet (cm_net_accept.c).
 */
#include <gnutls/crypto.h>
#include <string.h>

#include "cm_net_int.h"

/* QUIC version 1, the only version the transport speaks. */
#define INITIAL_VERSION_V1 0x00000001u
/* RFC 9001 5.2: HKDF-Extract's salt for version 1 Initial secrets. */
static const uint8_t initial_salt_v1[20] =
    "\x38\x76\x2c\xf7\xf5\x59\x34\xb3\x4d\x17"
    "\x9a\xe6\xa4\xc8\x0c\xad\xcc\xbb\x7f\x0a";
/* SHA-256 output: the length of every Initial secret. */
#define INITIAL_SECRET_LEN 32
/* RFC 8446 7.1: every HKDF label starts with this. */
static const char initial_label_prefix[] = "tls13 ";
/* The longest label used here ("client in") and its prefix, with the
 * two length bytes, the label's length byte and the empty context's. */
#define INITIAL_LABEL_INFO_MAX (2 + 1 + 6 + 9 + 1)
/* RFC 9001 5.4.2: the sample starts 4 bytes after the packet number's
 * first byte, whatever the packet number's length. */
#define INITIAL_SAMPLE_OFFSET 4
#define INITIAL_SAMPLE_LEN 16
/* AES-128-GCM's tag. */
#define INITIAL_TAG_LEN 16
/* RFC 9000 17.2: connection IDs are at most 20 bytes in version 1. */
#define INITIAL_CID_MAX 20

/* HKDF-Expand-Label (RFC 8446 7.1) with SHA-256 and an empty context. */
int cm_net__expand_label(const uint8_t secret[32], const char *label,
                         uint8_t *out, size_t outlen) {
  uint8_t info[INITIAL_LABEL_INFO_MAX];
  size_t prefix = sizeof(initial_label_prefix) - 1, label_len = strlen(label);
  size_t n = 0;
  gnutls_datum_t prk = {(unsigned char *)secret, INITIAL_SECRET_LEN};
  gnutls_datum_t in;

  if (prefix + label_len + 4 > sizeof(info))
    return CM_EINVAL;
  info[n++] = (uint8_t)(outlen >> 8);
  info[n++] = (uint8_t)(outlen & 0xff);
  info[n++] = (uint8_t)(prefix + label_len);
  memcpy(&info[n], initial_label_prefix, prefix);
  memcpy(&info[n + prefix], label, label_len);
  n += prefix + label_len;
  info[n++] = 0; /* no context */
  in.data = info;
  in.size = (unsigned)n;
  return gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &in, out, outlen) == 0
             ? 0
             : CM_ETLS;
}

int cm_net__initial_keys(const uint8_t *dcid, size_t dcidlen,
                         cm_net_initial_keys_t *k) {
  uint8_t initial[INITIAL_SECRET_LEN], client[INITIAL_SECRET_LEN];
  gnutls_datum_t ikm = {(unsigned char *)dcid, (unsigned)dcidlen};
  gnutls_datum_t salt = {(unsigned char *)initial_salt_v1,
                         sizeof(initial_salt_v1)};
  int rv = CM_ETLS;

  if (gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &salt, initial) == 0 &&
      (rv = cm_net__expand_label(initial, "client in", client,
                                 sizeof(client))) == 0 &&
      (rv = cm_net__expand_label(client, "quic key", k->key, sizeof(k->key))) ==
          0 &&
      (rv = cm_net__expand_label(client, "quic iv", k->iv, sizeof(k->iv))) == 0)
    rv = cm_net__expand_label(client, "quic hp", k->hp, sizeof(k->hp));
  return rv;
}

int cm_net__initial_hp_mask(const uint8_t hp[CM_NET_INITIAL_KEY_LEN],
                            const uint8_t *sample, uint8_t mask[16]) {
  /* AES-128 of one block: CBC over a single block with a zero IV is the
   * ECB that RFC 9001 5.4.3 asks for, which GnuTLS does not offer. */
  static const uint8_t zero_iv[16];
  gnutls_datum_t key = {(unsigned char *)hp, CM_NET_INITIAL_KEY_LEN};
  gnutls_datum_t iv = {(unsigned char *)zero_iv, sizeof(zero_iv)};
  gnutls_cipher_hd_t h;
  int rv;

  if (gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_128_CBC, &key, &iv) != 0)
    return CM_ETLS;
  rv = gnutls_cipher_encrypt2(h, sample, INITIAL_SAMPLE_LEN, mask, 16);
  gnutls_cipher_deinit(h);
  return rv == 0 ? 0 : CM_ETLS;
}

/* A QUIC variable-length integer at p[*off], within len; -1 if it runs
 * past the end. */
static int initial_varint(const uint8_t *p, size_t len, size_t *off,
                          uint64_t *v) {
  size_t n, i;
  if (*off >= len)
    return -1;
  n = (size_t)1 << (p[*off] >> 6);
  if (len - *off < n)
    return -1;
  *v = p[*off] & 0x3f;
  for (i = 1; i < n; i++)
    *v = (*v << 8) | p[*off + i];
  *off += n;
  return 0;
}

/* Where the first packet's packet number starts (after the Length field)
 * and the Length field's value, for a version 1 client Initial; -1 if the
 * header is not one or the packet runs past the datagram. */
static int initial_layout(const uint8_t *p, size_t len, size_t *pn_off,
                          uint64_t *rest) {
  size_t off = 5;
  uint64_t tokenlen;
  uint32_t version;

  /* Long header, fixed bit set, packet type 0 (Initial). */
  if (len < off + 1 || (p[0] & 0xf0) != 0xc0)
    return -1;
  version =
      (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
  if (version != INITIAL_VERSION_V1 || p[off] > INITIAL_CID_MAX)
    return -1;
  off += 1 + p[off]; /* DCID */
  if (off >= len || p[off] > INITIAL_CID_MAX)
    return -1;
  off += 1 + p[off]; /* SCID */
  if (initial_varint(p, len, &off, &tokenlen) != 0 || tokenlen > len - off)
    return -1;
  off += (size_t)tokenlen;
  if (initial_varint(p, len, &off, rest) != 0 || *rest > len - off ||
      *rest < INITIAL_SAMPLE_OFFSET + INITIAL_SAMPLE_LEN)
    return -1;
  *pn_off = off;
  return 0;
}

/* Decrypt and authenticate buf[0, pn_off + rest) in place: its header
 * protection removed, its payload opened with the Initial keys. */
static int initial_open(uint8_t *buf, size_t pn_off, size_t rest,
                        const cm_net_initial_keys_t *k) {
  uint8_t mask[16], nonce[CM_NET_INITIAL_IV_LEN];
  gnutls_datum_t key = {(unsigned char *)k->key, sizeof(k->key)};
  gnutls_aead_cipher_hd_t h;
  giovec_t aad, body;
  size_t pn_len, hdr_len, i;
  int rv;

  if (cm_net__initial_hp_mask(k->hp, buf + pn_off + INITIAL_SAMPLE_OFFSET,
                              mask) != 0)
    return CM_ETLS;
  buf[0] ^= mask[0] & 0x0f; /* long header: the low four bits */
  pn_len = (size_t)(buf[0] & 0x03) + 1;
  hdr_len = pn_off + pn_len;
  if (rest < pn_len + INITIAL_TAG_LEN)
    return CM_EBADMSG;
  /* The nonce is the IV with the packet number XORed into its last
   * bytes. A client's first Initials carry small packet numbers, so the
   * truncated number is the whole one (RFC 9000 A.3 with none received). */
  memcpy(nonce, k->iv, sizeof(nonce));
  for (i = 0; i < pn_len; i++) {
    buf[pn_off + i] ^= mask[1 + i];
    nonce[sizeof(nonce) - pn_len + i] ^= buf[pn_off + i];
  }
  if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_128_GCM, &key) != 0)
    return CM_ETLS;
  aad.iov_base = buf;
  aad.iov_len = hdr_len;
  body.iov_base = buf + hdr_len;
  body.iov_len = rest - pn_len - INITIAL_TAG_LEN;
  rv = gnutls_aead_cipher_decryptv2(h, nonce, sizeof(nonce), &aad, 1, &body, 1,
                                    buf + pn_off + rest - INITIAL_TAG_LEN,
                                    INITIAL_TAG_LEN);
  gnutls_aead_cipher_deinit(h);
  return rv == 0 ? 0 : CM_EBADMSG;
}

int cm_net__initial_check(const uint8_t *data, size_t len, uint8_t *scratch,
                          size_t cap) {
  cm_net_initial_keys_t k;
  uint64_t rest;
  size_t pn_off;

  if (initial_layout(data, len, &pn_off, &rest) != 0)
    return CM_EBADMSG;
  if (pn_off + (size_t)rest > cap)
    return CM_ENOSPC;
  if (cm_net__initial_keys(data + 6, data[5], &k) != 0)
    return CM_ETLS;
  /* Only the first packet of the datagram: the one whose DCID is new to
   * us. What follows it (coalesced packets, padding) is ngtcp2's. */
  memcpy(scratch, data, pn_off + (size_t)rest);
  return initial_open(scratch, pn_off, (size_t)rest, &k);
}
