/*
 * TLS 1.3 for cm_net: credentials per authentication mode, and one GnuTLS
 * session per QUIC connection wired to ngtcp2's crypto layer.
 */
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_net_int.h"

/* QUIC forbids the TLS 1.3 middlebox compatibility mode. Key mode allows
 * only PSK with (EC)DHE so every connection has forward secrecy; the PSK
 * binder hash is SHA-256, hence AES-128-GCM/ChaCha20 stay enabled. */
static const char tls_prio_key[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:-CIPHER-ALL:"
    "+AES-128-GCM:+CHACHA20-POLY1305:+AES-256-GCM:-GROUP-ALL:+GROUP-X25519:"
    "+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE";
static const char tls_prio_cert[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"
    "+CHACHA20-POLY1305:+AES-256-GCM:-GROUP-ALL:+GROUP-X25519:"
    "+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE";

/* ALPN keeps other QUIC services from mistaking us for them and back. */
static const char tls_alpn[] = "clustermember/1";

#define TLS_PSK_PREFIX "cm-key-"
#define TLS_PSK_FP_LEN 8 /* bytes of the key's fingerprint, in hex */
#define TLS_PSK_IDENT_MAX (sizeof(TLS_PSK_PREFIX) + 2 * TLS_PSK_FP_LEN)

/* A key's PSK identity: "cm-key-" and the first 8 bytes of
 * SHA-256("clustermember psk identity" || key), in hex. Named by its
 * content, not its place in a keyring: two nodes whose rings hold the same
 * keys in another order (the middle of a rotation) find each other's. */
static int tls_psk_identity(const uint8_t key[CM_KEY_LEN], char *buf,
                            size_t len) {
  static const char label[] = "clustermember psk identity";
  uint8_t in[sizeof(label) - 1 + CM_KEY_LEN], digest[32];
  size_t i, off;
  memcpy(in, label, sizeof(label) - 1);
  memcpy(in + sizeof(label) - 1, key, CM_KEY_LEN);
  if (len < TLS_PSK_IDENT_MAX ||
      gnutls_hash_fast(GNUTLS_DIG_SHA256, in, sizeof(in), digest) != 0)
    return CM_ETLS;
  off = (size_t)snprintf(buf, len, "%s", TLS_PSK_PREFIX);
  for (i = 0; i < TLS_PSK_FP_LEN; i++)
    off += (size_t)snprintf(buf + off, len - off, "%02x", digest[i]);
  return 0;
}

/* Server side: the identity names the key; any key of the ring is
 * accepted, which is what lets a cluster rotate keys. An unknown identity
 * gets a random key, so it fails like a wrong key (a binder mismatch, an
 * authentication alert the client retries with its next key) instead of
 * an internal error. */
static int tls_psk_lookup(gnutls_session_t s, const gnutls_datum_t *ident,
                          gnutls_datum_t *key) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(s);
  cm_net_conn_t *c = ref->user_data;
  cm_net_t *net = c->net;
  char want[TLS_PSK_IDENT_MAX];
  const uint8_t *found = NULL;
  size_t i;
  for (i = 0; i < net->ring->n && found == NULL; i++) {
    if (tls_psk_identity(net->ring->keys[i].key, want, sizeof(want)) != 0)
      continue;
    if (ident->size == strlen(want) &&
        memcmp(ident->data, want, ident->size) == 0)
      found = net->ring->keys[i].key;
  }
  key->data = gnutls_malloc(CM_KEY_LEN);
  if (key->data == NULL)
    return -1;
  key->size = CM_KEY_LEN;
  if (found != NULL) {
    memcpy(key->data, found, CM_KEY_LEN);
  } else if (cm_net__rand(key->data, CM_KEY_LEN) != 0) {
    gnutls_free(key->data);
    key->data = NULL;
    return -1;
  }
  return 0;
}

cm_net_ring_t *cm_net__ring_ref(cm_net_ring_t *r) {
  if (r != NULL)
    r->refs++;
  return r;
}

void cm_net__ring_release(cm_net_ring_t *r) {
  size_t i;
  if (r == NULL || --r->refs > 0)
    return;
  if (r->creds != NULL)
    for (i = 0; i < r->n; i++)
      if (r->creds[i] != NULL)
        gnutls_psk_free_client_credentials(r->creds[i]);
  free(r->creds);
  free(r->keys);
  free(r);
}

int cm_net__ring_new(const cm_net_key_t *keys, size_t n, size_t primary,
                     cm_net_ring_t **out) {
  cm_net_ring_t *r = calloc(1, sizeof(*r));
  size_t i;
  *out = NULL;
  if (r == NULL)
    return CM_ENOMEM;
  r->refs = 1;
  r->n = n;
  r->primary = primary;
  r->keys = malloc(n * sizeof(*r->keys));
  r->creds = calloc(n, sizeof(*r->creds));
  if (r->keys == NULL || r->creds == NULL) {
    cm_net__ring_release(r);
    return CM_ENOMEM;
  }
  memcpy(r->keys, keys, n * sizeof(*r->keys));
  for (i = 0; i < n; i++) {
    char ident[TLS_PSK_IDENT_MAX];
    gnutls_datum_t user, key;
    if (gnutls_psk_allocate_client_credentials(&r->creds[i]) != 0) {
      cm_net__ring_release(r);
      return CM_ENOMEM;
    }
    user.data = (unsigned char *)ident;
    key.data = (unsigned char *)r->keys[i].key;
    key.size = CM_KEY_LEN;
    if (tls_psk_identity(r->keys[i].key, ident, sizeof(ident)) != 0 ||
        (user.size = (unsigned)strlen(ident),
         gnutls_psk_set_client_credentials2(r->creds[i], &user, &key,
                                            GNUTLS_PSK_KEY_RAW) != 0)) {
      cm_net__ring_release(r);
      return CM_ETLS;
    }
  }
  *out = r;
  return 0;
}

int cm_net__tls_init(cm_net_t *net) {
  const cm_net_config_t *cfg = &net->cfg;
  int rv;

  rv = gnutls_priority_init(
      &net->prio, cfg->auth == CM_AUTH_KEY ? tls_prio_key : tls_prio_cert,
      NULL);
  if (rv != 0)
    return CM_ETLS;

  if (cfg->auth == CM_AUTH_KEY) {
    if (gnutls_psk_allocate_server_credentials(&net->psk_server) != 0)
      return CM_ENOMEM;
    gnutls_psk_set_server_credentials_function2(net->psk_server,
                                                tls_psk_lookup);
    /* One client credential per key: a refused handshake is retried with
     * the next key (cm_net_keys.c). */
    return cm_net__ring_new(cfg->keys, cfg->nkeys, cfg->primary, &net->ring);
  }

  if (gnutls_certificate_allocate_credentials(&net->cert_cred) != 0)
    return CM_ENOMEM;
  if (cfg->auth == CM_AUTH_NONE)
    return cm_net__tls_self_signed(net->cert_cred);

  rv = gnutls_certificate_set_x509_trust_file(net->cert_cred, cfg->ca_file,
                                              GNUTLS_X509_FMT_PEM);
  if (rv <= 0) /* the number of CA certificates read; none is an error */
    return CM_ETLS;
  if (cfg->cert_file == NULL)
    return 0;
  rv = gnutls_certificate_set_x509_key_file(net->cert_cred, cfg->cert_file,
                                            cfg->key_file, GNUTLS_X509_FMT_PEM);
  return rv < 0 ? CM_ETLS : 0;
}

void cm_net__tls_free(cm_net_t *net) {
  if (net->prio != NULL)
    gnutls_priority_deinit(net->prio);
  cm_net__ring_release(net->ring);
  if (net->psk_server != NULL)
    gnutls_psk_free_server_credentials(net->psk_server);
  if (net->cert_cred != NULL)
    gnutls_certificate_free_credentials(net->cert_cred);
  net->prio = NULL;
  net->ring = NULL;
  net->psk_server = NULL;
  net->cert_cred = NULL;
}

int cm_net__tls_session(cm_net_t *net, cm_net_conn_t *c) {
  gnutls_datum_t alpn;
  unsigned flags = (c->is_client ? GNUTLS_CLIENT : GNUTLS_SERVER) |
                   GNUTLS_NO_END_OF_EARLY_DATA;
  int rv;

  if (gnutls_init(&c->tls, flags) != 0)
    return CM_ENOMEM;
  if (gnutls_priority_set(c->tls, net->prio) != 0)
    return CM_ETLS;
  rv = c->is_client ? ngtcp2_crypto_gnutls_configure_client_session(c->tls)
                    : ngtcp2_crypto_gnutls_configure_server_session(c->tls);
  if (rv != 0)
    return CM_ETLS;
  /* ngtcp2's crypto layer owns the session pointer slot. */
  gnutls_session_set_ptr(c->tls, &c->ref);

  switch (net->cfg.auth) {
  case CM_AUTH_KEY:
    rv =
        gnutls_credentials_set(c->tls, GNUTLS_CRD_PSK,
                               c->is_client ? (void *)c->ring->creds[c->key_idx]
                                            : (void *)net->psk_server);
    break;
  case CM_AUTH_MTLS:
    rv = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, net->cert_cred);
    if (rv == 0 && !c->is_client) {
      gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE);
      /* Otherwise a GnuTLS client silently withholds a certificate that
       * none of our advertised CAs issued, and the refusal is obscured. */
      gnutls_certificate_send_x509_rdn_sequence(c->tls, 1);
    }
    /* Peers are named by address, not host name: the chain to the cluster
     * CA is the whole check, on both sides. */
    if (rv == 0)
      gnutls_session_set_verify_cert(c->tls, NULL, 0);
    break;
  default:
    rv = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, net->cert_cred);
    break;
  }
  if (rv != 0)
    return CM_ETLS;

  alpn.data = (unsigned char *)tls_alpn;
  alpn.size = (unsigned)strlen(tls_alpn);
  if (gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
    return CM_ETLS;
  return 0;
}

int cm_net__tls_alert_is_auth(uint8_t alert) {
  switch (alert) {
  case GNUTLS_A_HANDSHAKE_FAILURE:
  case GNUTLS_A_BAD_CERTIFICATE:
  case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
  case GNUTLS_A_CERTIFICATE_REVOKED:
  case GNUTLS_A_CERTIFICATE_EXPIRED:
  case GNUTLS_A_CERTIFICATE_UNKNOWN:
  case GNUTLS_A_ILLEGAL_PARAMETER: /* GnuTLS: PSK binder mismatch */
  case GNUTLS_A_UNKNOWN_CA:
  case GNUTLS_A_ACCESS_DENIED:
  case GNUTLS_A_DECRYPT_ERROR:
  case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
  case GNUTLS_A_CERTIFICATE_REQUIRED:
    return 1;
  default:
    return 0;
  }
}
