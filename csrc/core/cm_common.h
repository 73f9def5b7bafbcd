/*
 * Shared vocabulary of every clustermember layer: error codes, time, addresses.
 * Nothing here does I/O.
 */
#ifndef CM_COMMON_H
#define CM_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic time in microseconds, always supplied by the caller. */
typedef uint64_t cm_time_t;
#define CM_USEC(x) ((cm_time_t)(x))
#define CM_MSEC(x) ((cm_time_t)(x)*1000u)
#define CM_SEC(x) ((cm_time_t)(x)*1000000u)
#define CM_TIME_NEVER UINT64_MAX

/* One error table; every public function returns 0 or one of these. */
#define CM_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, -1, "invalid argument")                                           \
  XX(ENOMEM, -2, "out of memory")                                              \
  XX(ETRUNC, -3, "message truncated")                                          \
  XX(EVERSION, -4, "unsupported protocol version")                             \
  XX(EMSGTYPE, -5, "unknown message type")                                     \
  XX(EBADMSG, -6, "malformed message")                                         \
  XX(ETOOBIG, -7, "message or field too large")                                \
  XX(ENOSPC, -8, "buffer too small")                                           \
  XX(ETAGKEY, -9, "tag key empty, too long or not printable")                  \
  XX(ETAGVAL, -10, "tag value too long")                                       \
  XX(ETAGSET, -11, "tag set too large")                                        \
  XX(ESTATE, -12, "operation not allowed in this state")                       \
  XX(ENOENT, -13, "no such entry")                                             \
  XX(EEXIST, -14, "already exists")                                            \
  XX(ELIMIT, -15, "limit exceeded")                                            \
  XX(EADDR, -16, "invalid address")                                            \
  XX(ENODEID, -17, "invalid node id")                                          \
  XX(ECONFIG, -18, "invalid configuration")                                    \
  XX(EAUTH, -19, "authentication failed")                                      \
  XX(ETLS, -20, "TLS error")                                                   \
  XX(EQUIC, -21, "QUIC error")                                                 \
  XX(EIO, -22, "I/O error")                                                    \
  XX(ECLOSED, -23, "closed")                                                   \
  XX(EAGAIN, -24, "resource temporarily unavailable")                          \
  XX(ETIMEDOUT, -25, "timed out")                                              \
  XX(EADDRINUSE, -26, "address already in use")                                \
  XX(EDUPLICATE, -27, "node id in use by another live process")

enum cm_errno {
  CM_OK = 0,
#define CM_ERRNO_ENUM(name, val, msg) CM_##name = (val),
  CM_ERRNO_MAP(CM_ERRNO_ENUM)
#undef CM_ERRNO_ENUM
};

/* Human-readable text and symbolic name of an error code (never NULL). */
const char *cm_strerror(int err);
const char *cm_err_name(int err);

/* A node's network address. The core treats it as an opaque, comparable key
 * that it copies into messages; only the transport resolves it. */
typedef struct cm_addr {
  uint8_t family; /* 4 or 6; 0 means unset */
  uint8_t ip[16]; /* network byte order; IPv4 uses the first 4 bytes */
  uint16_t port;  /* host byte order */
} cm_addr_t;

#define CM_ADDR_STRLEN 64 /* "[v6]:port" plus NUL fits */

/* Parse "1.2.3.4:7946" or "[::1]:7946". Returns 0 or CM_EADDR. */
int cm_addr_parse(const char *s, cm_addr_t *out);
/* Format into buf (at least CM_ADDR_STRLEN). Returns 0 or CM_ENOSPC. */
int cm_addr_format(const cm_addr_t *a, char *buf, size_t len);
int cm_addr_eq(const cm_addr_t *a, const cm_addr_t *b);
int cm_addr_valid(const cm_addr_t *a);
/* Convenience for simulators and tests: 10.x.y.z:port from an integer. */
cm_addr_t cm_addr_from_index(uint32_t index, uint16_t port);

/* Room for one more element in a growable array of *cap elements of elem
 * bytes holding len: doubles it (to first when empty) once full. Returns
 * the array to use from now on, or NULL (out of memory; arr and *cap are
 * unchanged). */
void *cm_grow(void *arr, size_t *cap, size_t len, size_t elem, size_t first);

/* Node identity: 1..CM_ID_MAX bytes of printable ASCII, no spaces. */
#define CM_ID_MAX 64
int cm_id_valid(const char *id, size_t len);

#endif
