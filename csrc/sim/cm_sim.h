/*
 * Deterministic simulator: many csrc/core nodes in one process on a virtual
 * clock and a simulated network (latency, loss, partitions, crashes, pauses,
 * restarts). Every node runs the same code paths as a real one; only the
 * driver differs. The same seed gives the same run, bit for bit.
 */
#ifndef CM_SIM_H
#define CM_SIM_H

#include "cm_config.h"
#include "cm_node.h"

typedef struct cm_sim cm_sim_t;

typedef struct cm_sim_config {
  uint32_t nodes;        /* nodes created, named n0..n{N-1} */
  cm_config_t node;      /* protocol configuration of every node */
  uint64_t seed;         /* reproduces the run */
  double loss;           /* probability a datagram is lost */
  cm_time_t latency_min; /* one-way latency, uniform in [min, max] */
  cm_time_t latency_max;
  /* Sites, in place of the uniform latency when not 0 (at most
   * CM_SIM_MAX_SITES): node i is in site i % sites, two nodes of one site
   * are site_rtt apart, and each pair of sites an RTT drawn once from
   * [site_rtt_min, site_rtt_max]. Each datagram or stream message takes
   * half its pair's RTT times 1 +- jitter (uniform), so the RTT's mean is
   * the pair's (cm_sim_true_rtt). */
  uint32_t sites;
  cm_time_t site_rtt, site_rtt_min, site_rtt_max;
  double jitter;            /* 0..1 */
  cm_time_t stream_timeout; /* a push-pull to an unreachable peer fails */
  uint32_t pause_buffer;    /* datagrams a paused node's socket holds */
  cm_time_t leave_grace;    /* a leaving node stops at the latest after this */
} cm_sim_config_t;

typedef struct cm_sim_stats {
  uint64_t datagrams_sent, datagrams_delivered, datagrams_lost,
      datagrams_blocked, datagrams_to_down;
  uint64_t bytes_sent;
  uint64_t streams_sent, streams_failed, stream_bytes;
  uint64_t events;
  uint64_t steps; /* node inputs processed */
} cm_sim_stats_t;

/* Called for every membership event any node reports. */
typedef void (*cm_sim_event_fn)(void *ud, uint32_t node, const cm_event_t *ev);
/* Rewrites what node sends before it travels: a datagram (stream 0) or a
 * push-pull request or reply (stream 1). Writes at most cap bytes to out and
 * returns their number; 0 drops the message. A test's stand-in for a node of
 * another protocol version. */
typedef size_t (*cm_sim_rewrite_fn)(void *ud, uint32_t node, int stream,
                                    const uint8_t *in, size_t len, uint8_t *out,
                                    size_t cap);

#define CM_SIM_MAX_SITES 64

void cm_sim_config_default(cm_sim_config_t *c);
/* Errors: CM_EINVAL (0 nodes or more than 16M), CM_ECONFIG, CM_ENOMEM. */
int cm_sim_new(cm_sim_t **out, const cm_sim_config_t *c);
void cm_sim_free(cm_sim_t *s);
void cm_sim_on_event(cm_sim_t *s, cm_sim_event_fn fn, void *ud);
void cm_sim_on_send(cm_sim_t *s, cm_sim_rewrite_fn fn, void *ud);

cm_time_t cm_sim_now(const cm_sim_t *s);
uint32_t cm_sim_size(const cm_sim_t *s);
/* The node's current instance, or NULL while it is down. */
cm_node_t *cm_sim_node(cm_sim_t *s, uint32_t i);
int cm_sim_is_up(const cm_sim_t *s, uint32_t i);
cm_addr_t cm_sim_addr(uint32_t i);
void cm_sim_id(uint32_t i, char *buf, size_t len);
/* The index of the simulated node at addr: 1 and *out filled, or 0. */
int cm_sim_index_of(const cm_sim_t *s, const cm_addr_t *addr, uint32_t *out);

/* Commands, effective at the current virtual time. Errors: CM_EINVAL (bad
 * index), CM_ESTATE (node down, or already up for restart). */
int cm_sim_join(cm_sim_t *s, uint32_t i, uint32_t seed_node);
int cm_sim_crash(cm_sim_t *s, uint32_t i);
/* A new instance of node i (fresh state, incarnation 0) joins via seed. */
int cm_sim_restart(cm_sim_t *s, uint32_t i, uint32_t seed_node);
int cm_sim_pause(cm_sim_t *s, uint32_t i, cm_time_t duration);
int cm_sim_leave(cm_sim_t *s, uint32_t i);
int cm_sim_set_tag(cm_sim_t *s, uint32_t i, const char *key, const char *value);
/* From start to end, datagrams and streams between nodes of different sides
 * are blocked (only from side 0 to side 1 when oneway). side has one byte per
 * node. Errors: CM_EINVAL, CM_ENOMEM. */
int cm_sim_partition(cm_sim_t *s, const uint8_t *side, cm_time_t start,
                     cm_time_t end, int oneway);
void cm_sim_set_loss(cm_sim_t *s, double loss);

/* Fast formation: hand every up node the whole cluster at once, through the
 * code path a join reply takes. One push-pull RESPONSE is encoded with the
 * cm_wire encoder, listing every up node as it describes itself (id,
 * address, incarnation, tags, alive; the lowest-numbered up node first, as
 * the "sender") and fed to each up node with cm_node_pushpull_reply. Each
 * node then knows every other one alive, reports the same JOINED events and
 * queues the same alive broadcasts as after a real join reply carrying the
 * full table. No virtual time passes; nothing is sent. Errors: CM_ENOMEM, the
 * encoder's (CM_ELIMIT past CM_WIRE_PP_MAX_ENTRIES nodes) or the node's
 * (CM_ETOOBIG above max_pushpull_size). */
int cm_sim_bootstrap(cm_sim_t *s);
/* Broadcasts waiting in the queues of all up nodes: 0 once the gossip that
 * formation caused has drained. */
uint64_t cm_sim_queued(const cm_sim_t *s);

/* Run the simulation until virtual time t. */
void cm_sim_run_until(cm_sim_t *s, cm_time_t t);
/* Run until cond returns nonzero (checked after each node step that could
 * change it, and at least every check_every) or the deadline passes.
 * Returns 1 if cond became true. */
int cm_sim_run_cond(cm_sim_t *s, cm_time_t deadline,
                    int (*cond)(cm_sim_t *s, void *ud), void *ud);
void cm_sim_stats(const cm_sim_t *s, cm_sim_stats_t *out);

/* The mean RTT between nodes i and j that the network gives: the pair's
 * with sites, else latency_min + latency_max. */
cm_time_t cm_sim_true_rtt(const cm_sim_t *s, uint32_t i, uint32_t j);

/* How many up nodes see member `id` in `state` (searching each registry). */
uint32_t cm_sim_count_seeing(cm_sim_t *s, uint32_t id_index, uint8_t state);

#endif
