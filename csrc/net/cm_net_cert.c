/*
 * Certificate generation with GnuTLS's x509 API: a cluster CA, node
 * certificates it issues, self-signed node certificates, and the in-memory
 * self-signed certificate of CM_AUTH_NONE. ECDSA P-256 throughout: small
 * and fast to sign and verify (a CA and three certificates take ~1.5 ms).
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cm_net_int.h"

#define CERT_SERIAL_LEN 16
/* Activation is backdated so peers with slightly slow clocks accept it. */
#define CERT_BACKDATE_SEC 3600
#define CERT_DAY_SEC 86400

typedef struct cert_pair {
  gnutls_x509_crt_t crt;
  gnutls_x509_privkey_t key;
} cert_pair_t;

static void cert_pair_free(cert_pair_t *p) {
  if (p->crt != NULL)
    gnutls_x509_crt_deinit(p->crt);
  if (p->key != NULL)
    gnutls_x509_privkey_deinit(p->key);
  p->crt = NULL;
  p->key = NULL;
}

/* Make a key and a certificate for it, signed by issuer (NULL: itself). */
static int cert_make(cert_pair_t *out, const char *cn, uint32_t days, int ca,
                     const cert_pair_t *issuer) {
  uint8_t serial[CERT_SERIAL_LEN], keyid[64];
  size_t keyidlen = sizeof(keyid);
  time_t now = time(NULL);
  unsigned usage;
  int rv;

  memset(out, 0, sizeof(*out));
  if (gnutls_x509_privkey_init(&out->key) != 0 ||
      gnutls_x509_crt_init(&out->crt) != 0) {
    cert_pair_free(out);
    return CM_ENOMEM;
  }
  rv = gnutls_x509_privkey_generate(
      out->key, GNUTLS_PK_ECDSA,
      GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (rv == 0)
    rv = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  serial[0] &= 0x7f; /* a positive INTEGER */
  if (rv == 0)
    rv = gnutls_x509_crt_set_version(out->crt, 3);
  if (rv == 0)
    rv = gnutls_x509_crt_set_serial(out->crt, serial, sizeof(serial));
  if (rv == 0)
    rv = gnutls_x509_crt_set_activation_time(out->crt, now - CERT_BACKDATE_SEC);
  if (rv == 0)
    rv = gnutls_x509_crt_set_expiration_time(out->crt,
                                             now + (time_t)days * CERT_DAY_SEC);
  if (rv == 0)
    rv = gnutls_x509_crt_set_dn_by_oid(out->crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                       cn, (unsigned)strlen(cn));
  if (rv == 0)
    rv = gnutls_x509_crt_set_key(out->crt, out->key);
  if (rv == 0)
    rv = gnutls_x509_crt_set_basic_constraints(out->crt, ca ? 1 : 0, -1);
  usage = ca ? GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN
             : GNUTLS_KEY_DIGITAL_SIGNATURE;
  if (rv == 0)
    rv = gnutls_x509_crt_set_key_usage(out->crt, usage);
  if (rv == 0 && !ca)
    rv = gnutls_x509_crt_set_key_purpose_oid(out->crt, GNUTLS_KP_TLS_WWW_SERVER,
                                             0);
  if (rv == 0 && !ca)
    rv = gnutls_x509_crt_set_key_purpose_oid(out->crt, GNUTLS_KP_TLS_WWW_CLIENT,
                                             0);
  if (rv == 0)
    rv = gnutls_x509_crt_get_key_id(out->crt, 0, keyid, &keyidlen);
  if (rv == 0)
    rv = gnutls_x509_crt_set_subject_key_id(out->crt, keyid, keyidlen);
  if (rv == 0 && issuer != NULL) {
    keyidlen = sizeof(keyid);
    rv =
        gnutls_x509_crt_get_subject_key_id(issuer->crt, keyid, &keyidlen, NULL);
    if (rv == 0)
      rv = gnutls_x509_crt_set_authority_key_id(out->crt, keyid, keyidlen);
  }
  if (rv == 0)
    rv = gnutls_x509_crt_sign2(out->crt, issuer ? issuer->crt : out->crt,
                               issuer ? issuer->key : out->key,
                               GNUTLS_DIG_SHA256, 0);
  if (rv != 0) {
    cert_pair_free(out);
    return CM_ETLS;
  }
  return 0;
}

static int cert_write(const char *path, const gnutls_datum_t *d, int mode) {
  size_t off = 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return CM_EIO;
  while (off < d->size) {
    ssize_t n = write(fd, d->data + off, d->size - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close(fd);
      return CM_EIO;
    }
    off += (size_t)n;
  }
  return close(fd) == 0 ? 0 : CM_EIO;
}

static int cert_save(const cert_pair_t *p, const char *cert_file,
                     const char *key_file) {
  gnutls_datum_t c = {NULL, 0}, k = {NULL, 0};
  int rv = CM_ETLS;
  if (gnutls_x509_crt_export2(p->crt, GNUTLS_X509_FMT_PEM, &c) == 0 &&
      gnutls_x509_privkey_export2(p->key, GNUTLS_X509_FMT_PEM, &k) == 0) {
    /* The key first and private: a certificate without it is useless. */
    rv = cert_write(key_file, &k, 0600);
    if (rv == 0)
      rv = cert_write(cert_file, &c, 0644);
  }
  gnutls_free(c.data);
  gnutls_free(k.data);
  return rv;
}

static int cert_load(cert_pair_t *p, const char *cert_file,
                     const char *key_file) {
  gnutls_datum_t c = {NULL, 0}, k = {NULL, 0};
  int rv = CM_EIO;
  memset(p, 0, sizeof(*p));
  if (gnutls_load_file(cert_file, &c) != 0 ||
      gnutls_load_file(key_file, &k) != 0)
    goto out;
  rv = CM_ETLS;
  if (gnutls_x509_crt_init(&p->crt) != 0 ||
      gnutls_x509_privkey_init(&p->key) != 0 ||
      gnutls_x509_crt_import(p->crt, &c, GNUTLS_X509_FMT_PEM) != 0 ||
      gnutls_x509_privkey_import(p->key, &k, GNUTLS_X509_FMT_PEM) != 0) {
    cert_pair_free(p);
    goto out;
  }
  rv = 0;
out:
  gnutls_free(c.data);
  gnutls_free(k.data);
  return rv;
}

static int cert_args_ok(const char *cert_file, const char *key_file,
                        const char *cn, uint32_t days) {
  return cert_file != NULL && key_file != NULL && cn != NULL && cn[0] != '\0' &&
         days > 0;
}

int cm_net_gen_ca(const char *cert_file, const char *key_file,
                  const char *common_name, uint32_t days) {
  cert_pair_t ca;
  int rv;
  if (!cert_args_ok(cert_file, key_file, common_name, days))
    return CM_EINVAL;
  rv = cert_make(&ca, common_name, days, 1, NULL);
  if (rv != 0)
    return rv;
  rv = cert_save(&ca, cert_file, key_file);
  cert_pair_free(&ca);
  return rv;
}

int cm_net_gen_cert(const char *ca_cert, const char *ca_key,
                    const char *cert_file, const char *key_file,
                    const char *common_name, uint32_t days) {
  cert_pair_t ca, node;
  int rv;
  if (!cert_args_ok(cert_file, key_file, common_name, days) ||
      (ca_cert != NULL && ca_key == NULL))
    return CM_EINVAL;
  if (ca_cert != NULL) {
    rv = cert_load(&ca, ca_cert, ca_key);
    if (rv != 0)
      return rv;
  }
  rv = cert_make(&node, common_name, days, 0, ca_cert != NULL ? &ca : NULL);
  if (ca_cert != NULL)
    cert_pair_free(&ca);
  if (rv != 0)
    return rv;
  rv = cert_save(&node, cert_file, key_file);
  cert_pair_free(&node);
  return rv;
}

/* CM_AUTH_NONE still needs a server certificate: TLS 1.3 has no anonymous
 * key exchange. Nobody verifies it. */
int cm_net__tls_self_signed(gnutls_certificate_credentials_t cred) {
  cert_pair_t p;
  int rv = cert_make(&p, "clustermember-unauthenticated", 3650, 0, NULL);
  if (rv != 0)
    return rv;
  rv = gnutls_certificate_set_x509_key(cred, &p.crt, 1, p.key) == 0 ? 0
                                                                    : CM_ETLS;
  cert_pair_free(&p);
  return rv;
}
