/*
 * Support for tests that drive one core node by hand: its input, one
 * message at a time.
 */
#ifndef CM_TEST_NODE_H
#define CM_TEST_NODE_H

#include "cm_node.h"

/* The LAN profile with the probe and suspicion settings these tests were
 * written against pinned (0.5-s probes, 0.2-s timeout, suspicion_mult 4,
 * two confirmations awaited): what they check
 * is a rule, not the default profile, and must not move when the default
 * does. */
void cm_tconfig_pinned(cm_config_t *c);

/* Deliver message m to n as one packet from `from` at now; fails the test
 * if it cannot be encoded or the node refuses it. */
void cm_tnode_feed(cm_node_t *n, const cm_addr_t *from, const cm_msg_t *m,
                   cm_time_t now);

/* An ALIVE record of id at incarnation inc and address addr, delivered from
 * that address. */
void cm_tnode_alive(cm_node_t *n, const char *id, uint32_t inc,
                    const cm_addr_t *addr, cm_time_t now);

/* An accusation (CM_MSG_SUSPECT or CM_MSG_DEAD) of id at incarnation inc
 * by `by`, or a CM_MSG_LEAVE of id (`by` unused), delivered from `from`. */
void cm_tnode_accuse(cm_node_t *n, const cm_addr_t *from, uint8_t type,
                     const char *id, uint32_t inc, const char *by,
                     cm_time_t now);

/* A node "self" at cm_addr_from_index(1, 7946), seed 7, started at now. */
cm_node_t *cm_tnode_new(const cm_config_t *c, cm_time_t now);

/* The node's stats, once its bookkeeping has been checked
 * (cm_node_check_invariants): a mismatch fails the test. */
cm_node_stats_t cm_tnode_stats(cm_node_t *n);

#endif
