#include "cm_common.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cm_strerror(int err) {
  switch (err) {
  case CM_OK:
    return "success";
#define CM_STRERROR_CASE(name, val, msg)                                       \
  case CM_##name:                                                              \
    return msg;
    CM_ERRNO_MAP(CM_STRERROR_CASE)
#undef CM_STRERROR_CASE
  default:
    return "unknown error";
  }
}

const char *cm_err_name(int err) {
  switch (err) {
  case CM_OK:
    return "OK";
#define CM_ERRNAME_CASE(name, val, msg)                                        \
  case CM_##name:                                                              \
    return #name;
    CM_ERRNO_MAP(CM_ERRNAME_CASE)
#undef CM_ERRNAME_CASE
  default:
    return "EUNKNOWN";
  }
}

static int parse_port(const char *s, uint16_t *port) {
  char *end;
  long v;
  if (*s < '0' || *s > '9')
    return CM_EADDR;
  v = strtol(s, &end, 10);
  if (*end != '\0' || v < 1 || v > 65535)
    return CM_EADDR;
  *port = (uint16_t)v;
  return 0;
}

int cm_addr_parse(const char *s, cm_addr_t *out) {
  char host[INET6_ADDRSTRLEN + 1];
  const char *colon;
  size_t hlen;
  cm_addr_t a;

  if (s == NULL || out == NULL)
    return CM_EADDR;
  memset(&a, 0, sizeof(a));
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':')
      return CM_EADDR;
    hlen = (size_t)(close - s - 1);
    if (hlen == 0 || hlen >= sizeof(host))
      return CM_EADDR;
    memcpy(host, s + 1, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET6, host, a.ip) != 1)
      return CM_EADDR;
    a.family = 6;
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return CM_EADDR;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof(host))
      return CM_EADDR;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, a.ip) != 1)
      return CM_EADDR;
    a.family = 4;
  }
  if (parse_port(colon + 1, &a.port) != 0)
    return CM_EADDR;
  *out = a;
  return 0;
}

int cm_addr_format(const cm_addr_t *a, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN];
  int n;
  if (a == NULL || buf == NULL || len == 0)
    return CM_EINVAL;
  if (a->family == 4) {
    if (inet_ntop(AF_INET, a->ip, host, sizeof(host)) == NULL)
      return CM_EADDR;
    n = snprintf(buf, len, "%s:%u", host, (unsigned)a->port);
  } else if (a->family == 6) {
    if (inet_ntop(AF_INET6, a->ip, host, sizeof(host)) == NULL)
      return CM_EADDR;
    n = snprintf(buf, len, "[%s]:%u", host, (unsigned)a->port);
  } else {
    n = snprintf(buf, len, "(unset)");
  }
  return (n < 0 || (size_t)n >= len) ? CM_ENOSPC : 0;
}

int cm_addr_eq(const cm_addr_t *a, const cm_addr_t *b) {
  size_t n;
  if (a->family != b->family || a->port != b->port)
    return 0;
  n = a->family == 6 ? 16 : 4;
  return memcmp(a->ip, b->ip, n) == 0;
}

int cm_addr_valid(const cm_addr_t *a) {
  return a != NULL && (a->family == 4 || a->family == 6) && a->port != 0;
}

cm_addr_t cm_addr_from_index(uint32_t index, uint16_t port) {
  cm_addr_t a;
  memset(&a, 0, sizeof(a));
  a.family = 4;
  a.ip[0] = 10;
  a.ip[1] = (uint8_t)(index >> 16);
  a.ip[2] = (uint8_t)(index >> 8);
  a.ip[3] = (uint8_t)index;
  a.port = port;
  return a;
}

int cm_id_valid(const char *id, size_t len) {
  size_t i;
  if (id == NULL || len == 0 || len > CM_ID_MAX)
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c <= 0x20 || c >= 0x7f)
      return 0;
  }
  return 1;
}

void *cm_grow(void *arr, size_t *cap, size_t len, size_t elem, size_t first) {
  size_t ncap;
  void *na;
  if (len < *cap)
    return arr;
  ncap = *cap ? *cap * 2 : first;
  na = realloc(arr, ncap * elem);
  if (na != NULL)
    *cap = ncap;
  return na;
}
