/*
 * Support for tests that attack an endpoint from outside: a raw UDP socket
 * and the packets it sends (random bytes, forged QUIC Initials, and real
 * Initials captured from a cm_net client, each opening a fresh handshake).
 */
#ifndef CM_TEST_NET_H
#define CM_TEST_NET_H

#include <stddef.h>
#include <stdint.h>

#include "cm_net.h"

/* A UDP socket on 127.0.0.1 (ephemeral port); fails the test if it cannot
 * be made. */
int cm_tn_udp_socket(void);
/* The same on another loopback address ("127.0.0.2": another source). */
int cm_tn_udp_socket_at(const char *ip);
/* The address a socket is bound to. */
cm_addr_t cm_tn_socket_addr(int fd);
/* Send len bytes to `to` (IPv4). strict: fail the test unless the whole
 * datagram was accepted by the kernel; otherwise return 0 on success and -1
 * when the socket buffer is full (a flood keeps going). */
int cm_tn_udp_send(int fd, const cm_addr_t *to, const uint8_t *d, size_t len,
                   int strict);
/* Next value of a 64-bit LCG: random enough for garbage. */
uint64_t cm_tn_rand(uint64_t *s);
/* Fill d with len random bytes. */
void cm_tn_random_bytes(uint64_t *s, uint8_t *d, size_t len);
/* A 1200-byte QUIC v1 Initial header with a random 8-byte DCID and garbage
 * protection: it passes the header checks and fails decryption, so an
 * endpoint drops it before spending anything on it. */
#define CM_TN_INITIAL_LEN 1200
void cm_tn_forged_initial(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN]);

/* A 1200-byte QUIC v1 client Initial under the given DCID (8 to 20 bytes)
 * and token (under 64 bytes), protected as a client protects it (RFC 9001
 * 5.2 keys derived from the DCID), whose CRYPTO frame carries the hslen
 * bytes of handshake data at hs: it passes an endpoint's stateless check,
 * and TLS makes of it what hs deserves. */
void cm_tn_sealed_initial(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN],
                          const uint8_t *dcid, size_t dcidlen,
                          const uint8_t *token, size_t tokenlen,
                          const uint8_t *hs, size_t hslen);
/* The same with the given frames (under 1000 bytes) in place of the CRYPTO
 * frame, padded: a packet that passes the stateless check whatever the
 * frames are. */
void cm_tn_sealed_initial_frames(uint64_t *s, uint8_t d[CM_TN_INITIAL_LEN],
                                 const uint8_t *dcid, size_t dcidlen,
                                 const uint8_t *token, size_t tokenlen,
                                 const uint8_t *frames, size_t flen);
/* Handshake data for it: the first bytes of a ClientHello declaring more
 * (a server waits for the rest: a handshake stalled half-open), or a
 * complete handshake message no server accepts first (TLS fails on it). */
#define CM_TN_HELLO_LEN 48
void cm_tn_partial_hello(uint64_t *s, uint8_t hs[CM_TN_HELLO_LEN]);
void cm_tn_bad_hello(uint8_t hs[CM_TN_HELLO_LEN]);

/* Real client Initials, one per handshake: a cm_net client (keyed with key)
 * connects to many loopback addresses (127.0.1.x) that one socket serves,
 * and the first packet of each connection is kept. Returns how many were
 * captured (at most want) into pkts[i] / lens[i]. */
#define CM_TN_PKT_MAX 1500
size_t cm_tn_capture_initials(const cm_net_key_t *key, size_t want,
                              uint8_t (*pkts)[CM_TN_PKT_MAX], size_t *lens);

#endif
