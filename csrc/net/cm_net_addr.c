/*
 * Addresses in cm_net: conversion between cm_addr_t and the socket API's
 * sockaddr, and the byte keys the endpoint's tables use for a peer.
 */
#include <netinet/in.h>
#include <string.h>

#include "cm_net_int.h"

void cm_net__addr_key(const cm_addr_t *a, uint8_t key[CM_NET_ADDR_KEY_LEN]) {
  memset(key, 0, CM_NET_ADDR_KEY_LEN);
  key[0] = a->family;
  memcpy(key + 1, a->ip, a->family == 6 ? 16 : 4);
  key[17] = (uint8_t)(a->port >> 8);
  key[18] = (uint8_t)a->port;
}

void cm_net__ip_key(const cm_addr_t *a, uint8_t key[CM_NET_IP_KEY_LEN]) {
  memset(key, 0, CM_NET_IP_KEY_LEN);
  key[0] = a->family;
  /* An IPv6 host is usually given a whole /64: its other addresses are not
   * other sources. */
  memcpy(key + 1, a->ip, a->family == 6 ? 8 : 4);
}

int cm_net__sa_to_addr(const struct sockaddr *sa, cm_addr_t *a) {
  memset(a, 0, sizeof(*a));
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    a->family = 4;
    memcpy(a->ip, &sin->sin_addr, 4);
    a->port = ntohs(sin->sin_port);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    a->family = 6;
    memcpy(a->ip, &sin6->sin6_addr, 16);
    a->port = ntohs(sin6->sin6_port);
    return 0;
  }
  return CM_EADDR;
}

socklen_t cm_net__addr_to_sa(const cm_addr_t *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (a->family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, a->ip, 4);
    sin->sin_port = htons(a->port);
    return sizeof(*sin);
  }
  if (a->family == 6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, a->ip, 16);
    sin6->sin6_port = htons(a->port);
    return sizeof(*sin6);
  }
  return 0;
}
