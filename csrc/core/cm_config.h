/*
 * Protocol configuration: one struct, three profiles. docs/configuration.md
 * gives every default with the reason for its value; keep them in step.
 */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include "cm_common.h"

typedef struct cm_config {
  /* Failure detection (SWIM). */
  cm_time_t probe_interval; /* one probe per interval, scaled by awareness */
  cm_time_t probe_timeout;  /* direct ack wait before indirect probes */
  uint32_t indirect_checks; /* helpers asked to probe on our behalf (k) */
  uint32_t awareness_max;   /* local health score ceiling (multiplier) */
  /* Lifeguard suspicion: min = mult * max(1, log10 n) * probe_interval,
   * max = max_mult * min, shrinking to min once `confirmations`
   * independent accusers besides the first have confirmed it. */
  uint32_t suspicion_mult;
  uint32_t suspicion_max_mult;
  uint32_t suspicion_confirmations; /* k; memberlist derives mult - 2 */
  /* 1: a helper's nack (it could not reach the target either) confirms the
   * suspicion the probe raised, as that helper's own accusation; 0:
   * memberlist's rule, a nack speaks only of the asker's health. */
  uint32_t nack_confirms;
  /* Phi accrual over arrivals from each peer (Akka's meaning), reported
   * per member; it takes no part in the protocol. */
  double phi_threshold;           /* no effect: accepted for old configs */
  uint32_t phi_window;            /* inter-arrival samples kept per peer */
  cm_time_t phi_min_std;          /* floor of the standard deviation */
  cm_time_t phi_acceptable_pause; /* added to the mean before judging */
  uint32_t phi_min_samples;       /* samples before phi is trusted */
  /* Dissemination. */
  cm_time_t gossip_interval;
  uint32_t gossip_nodes;        /* fan-out per gossip round */
  cm_time_t gossip_to_dead;     /* keep gossiping to failed nodes this long */
  uint32_t retransmit_mult;     /* lambda: sends = mult * ceil(log10(n+1)) */
  uint32_t max_broadcast_queue; /* pending updates kept; oldest dropped */
  /* Anti-entropy. */
  cm_time_t pushpull_interval;  /* scaled up for n > 32 */
  cm_time_t reconnect_interval; /* how often to try one failed member */
  cm_time_t reconnect_timeout;  /* stop trying a failed member after this */
  cm_time_t reap_left_after;    /* forget a left member after this */
  /* Sizes and limits. */
  uint32_t max_packet_size;   /* datagram payload the core fills */
  uint32_t max_tag_key;       /* bytes in one tag key */
  uint32_t max_tag_value;     /* bytes in one tag value */
  uint32_t max_tags_size;     /* encoded size of one node's tag set */
  uint32_t max_members;       /* registry size; newcomers past it dropped */
  uint32_t max_pushpull_size; /* bytes of one push-pull message */
  /* User events (cm_node_send_user_event). */
  uint32_t user_event_buffer;   /* Lamport times remembered for duplicates */
  uint32_t max_user_event_size; /* name + payload bytes of one event */
  /* Payload bytes of one event sent on streams (a larger one than
   * max_user_event_size allows in a datagram); 0: none. */
  uint32_t max_user_event_stream;
  /* Bytes of such payloads a node keeps to deliver and pass on; the
   * oldest are forgotten first. */
  uint32_t user_event_store;
  uint32_t user_event_rate;    /* events a node may send per second */
  uint32_t query_timeout_mult; /* default query timeout, in gossip rounds
                                  per ceil(log10(n + 1)) */
  /* Network coordinates (cm_coord.h): 1 to learn this node's from probes,
   * send it with acks and carry members' in push-pull; 0 for none. */
  uint32_t coordinates;
  /* State changes kept per member for cm_node_history (0..CM_HIST_LIMIT):
   * a member's record starts with its first suspicion, failure or leave. */
  uint32_t history;
} cm_config_t;

/* Bound of the setting history. */
#define CM_HIST_LIMIT 64

/* Profiles. lan() is the default. */
void cm_config_lan(cm_config_t *c);
void cm_config_wan(cm_config_t *c);
void cm_config_local(cm_config_t *c);

/* 0, or CM_ECONFIG with a reason in why (may be NULL). */
int cm_config_validate(const cm_config_t *c, const char **why);

/* ln(100): the retransmit limit leaves under a 1% chance that an update's
 * gossip misses some member (cm_retransmit_limit). */
#define CM_RETRANSMIT_MISS_LN 4.605170185988091

/* Derived quantities, shared by the core, the simulator and tests. */
cm_time_t cm_suspicion_min(const cm_config_t *c, uint32_t n);
uint32_t cm_retransmit_limit(const cm_config_t *c, uint32_t n);
cm_time_t cm_pushpull_scaled(const cm_config_t *c, uint32_t n);
/* How long a helper waits for the target before it nacks an indirect probe:
 * probe_timeout, but no later than 4/5 of what the asker has left of its
 * period once it asked (probe_interval - probe_timeout), so the nack is back
 * before the asker judges its probe. */
cm_time_t cm_nack_wait(const cm_config_t *c);
/* A query's default timeout at n members (Serf's DefaultQueryTimeout):
 * query_timeout_mult x gossip_interval x ceil(log10(n + 1)). */
cm_time_t cm_query_timeout(const cm_config_t *c, uint32_t n);

#endif
