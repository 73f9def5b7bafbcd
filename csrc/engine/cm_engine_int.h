/*
 * Private structures of the engine, shared by its files: the thread, the
 * command queue, the public calls and node start/stop (cm_engine.c); the
 * event queue, snapshots and stats (cm_engine_events.c); driving a node
 * after each input, its timers and the transport callbacks
 * (cm_engine_node.c); the join state machine (cm_engine_join.c).
 */
#ifndef CM_ENGINE_INT_H
#define CM_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "cm_engine.h"

#define ENGINE_MAX_SEEDS 64
/* Ring slots reserved per join or leave call: its result, and the report
 * of events dropped before it, which must go first. */
#define ENGINE_RESULT_SLOTS 2
/* The longest idle timeout the engine gives connections: a config's own
 * maximum (ClusterConfig.idle_timeout). */
#define ENGINE_IDLE_FLOOR_MAX CM_SEC(86400)
/* Descriptors recorded for cm_engine_forget_after_fork. The loop's: its
 * epoll instance, its wake-up eventfd (or pipe, both ends) and its signal
 * pipe. A node's: its eventfd, then the transport's (a UDP socket and a
 * timerfd today, with room for more). */
#define ENGINE_LOOP_FDS 5
#define ENGINE_NODE_FDS 5

enum cmd_kind {
  CMD_START = 1,
  CMD_STOP,
  CMD_JOIN,
  CMD_LEAVE,
  CMD_SET_TAGS,
  CMD_SET_FAULT,
  CMD_SEND_EVENT,
  CMD_QUERY,
  CMD_QUERY_RESPOND,
  CMD_SET_KEYS,
  CMD_SHUTDOWN,
};

struct cmd {
  enum cmd_kind kind;
  cm_enode_t *node;
  int sync;
  int done;
  int result;
  uint64_t token;
  /* CMD_JOIN */
  cm_addr_t seeds[ENGINE_MAX_SEEDS];
  size_t nseeds;
  cm_time_t timeout; /* also CMD_LEAVE's (0: the node's leave_grace) */
  /* CMD_SET_TAGS */
  uint8_t *blob;
  size_t blob_len;
  /* CMD_SET_FAULT */
  cm_net_fault_t fault;
  int fault_off;
  /* CMD_SEND_EVENT, CMD_QUERY, CMD_QUERY_RESPOND (the caller waits: no
   * copies). ev_name is the origin for a response; ev_flag the coalesce,
   * want-ack or ack flag. */
  const char *ev_name;
  size_t ev_name_len;
  const uint8_t *ev_payload;
  size_t ev_payload_len;
  const uint8_t *ev_filter;
  size_t ev_filter_len;
  int ev_flag;
  uint8_t ev_relay;
  cm_time_t ev_timeout;
  uint64_t ev_ltime;
  uint32_t ev_qid;
  /* CMD_SET_KEYS (the caller waits: no copy) */
  const cm_net_key_t *keys;
  size_t nkeys, primary;
  struct cmd *next;
};

struct join_state {
  int active;
  uint64_t token;
  cm_addr_t seeds[ENGINE_MAX_SEEDS];
  size_t nseeds;
  cm_time_t deadline;
  cm_time_t backoff;
  uint64_t reqs[ENGINE_MAX_SEEDS];
  size_t nreqs;
  int retry_pending;
  /* Why attempts failed: requests of this attempt sent and refused for
   * our credentials (CM_EAUTH); attempts in a row that every seed refused;
   * over the whole join, whether a seed ever refused us and whether one
   * ever answered. */
  size_t attempt_sent, attempt_refused;
  unsigned refused_in_a_row;
  int refused, answered;
  /* A seed's answer merged, but it showed a live member with our id
   * elsewhere: the core asks that address (cm_node_id_check) before the
   * join is reported. refuted: what the answer made us refute. */
  int await_idcheck;
  uint64_t refuted;
};

struct cm_enode {
  cm_engine_t *e;
  cm_enode_config_t cfg;
  char id[CM_ID_MAX + 1];
  uint8_t *tags;
  cm_net_key_t *keys;
  char *ca_file, *cert_file, *key_file;
  cm_addr_t addr;

  /* Loop thread only. */
  cm_node_t *node;
  cm_net_t *net;
  uv_timer_t timer;
  uv_timer_t join_timer;
  uv_idle_t idle;   /* keeps the poll phase from blocking while a tick waits */
  uv_check_t check; /* runs the tick after this iteration's I/O */
  int handles_open;
  int closing;
  int finalized;
  int want_stop;
  struct cmd *stop_cmd; /* completed when closed */
  /* On the engine's list of live nodes from start until finalized. */
  struct cm_enode *live_prev, *live_next;
  int start_result;
  struct join_state join;
  int leaving;
  uint64_t leave_token;
  cm_time_t leave_deadline;
  /* Registry snapshots: the next may not be built before snap_next, so
   * that building them takes at most a tenth of this thread's time (an
   * O(members) copy; at 10,000 members a burst of events would otherwise
   * rebuild it once per input). Events wait in the core meanwhile, so
   * they are still published together with the snapshot that shows them;
   * snap_held says some do. */
  cm_time_t snap_next;
  int snap_held;
  /* When the last snapshot was built: coordinates, which move with every
   * probe, are republished at most every CM_ENGINE_COORD_REFRESH. */
  cm_time_t snap_built;
  /* What moves with every probe (flush_soft) at that build. */
  uint64_t snap_soft;

  /* Shared, under lock. */
  pthread_mutex_t lock;
  cm_snapshot_t *snap;
  cm_enode_stats_t stats;
  cm_eevent_t *q; /* ring of q_cap entries */
  size_t q_head, q_len, q_cap;
  size_t q_max;      /* member events stop here (event_queue_max) */
  size_t q_reserved; /* slots promised to results not yet queued */
  uint64_t q_dropped;
  int running;
  int efd;

  /* Written under the engine's cmd_lock, read without it after fork(). */
  _Atomic(struct cm_enode *) next_all; /* engine's list of handles */
  _Atomic int fds[ENGINE_NODE_FDS];    /* -1: none */
};

struct cm_engine {
  uv_loop_t loop;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t cmd_lock;
  pthread_cond_t cmd_cond;
  struct cmd *cmds, *cmds_tail;
  int shutting_down;      /* under cmd_lock: refuse new commands */
  int shut_down;          /* under cmd_lock: the thread has ended */
  int loop_shutting_down; /* loop thread's own view */
  struct cmd *shutdown_cmd;
  /* Loop thread: nodes started and not yet finalized. Not e->all, which
   * other threads change: a node on this list cannot be freed, for its
   * stop has not completed. */
  cm_enode_t *live;
  atomic_uint_fast64_t next_token;

  /* Written under cmd_lock, read without it after fork(). */
  _Atomic(cm_enode_t *) all;
  _Atomic int loop_fds[ENGINE_LOOP_FDS]; /* -1: none */
};

static inline cm_time_t cm_engine__now(void) { return uv_hrtime() / 1000u; }

/* cm_engine.c: close a node's handles; it is finalized once all are. */
void cm_engine__begin_stop(cm_enode_t *n);

/* cm_engine_events.c. The _locked variant wants n->lock held. A member
 * event is dropped (and counted) when the queue is full. */
void cm_engine__q_push_locked(cm_enode_t *n, const cm_eevent_t *ev);
/* The same without the wake-up: 1 if queued, 0 if dropped. The caller
 * wakes the consumer (cm_engine__q_wake) once, after unlocking. */
int cm_engine__q_put_locked(cm_enode_t *n, const cm_eevent_t *ev);
int cm_engine__q_app_locked(cm_enode_t *n);
void cm_engine__q_wake(cm_enode_t *n);
/* Room for one result, taken on the caller's thread when join or leave is
 * called, so the result can never be dropped: 0 or CM_ENOMEM. Every
 * reservation ends in exactly one cm_engine__q_result, or is given back
 * with cm_engine__q_unreserve when no result will follow. */
int cm_engine__q_reserve(cm_enode_t *n);
void cm_engine__q_unreserve(cm_enode_t *n);
void cm_engine__q_result(cm_enode_t *n, uint8_t kind, uint64_t token,
                         int status);
/* A snapshot of node's registry; NULL when out of memory. */
/* net (may be NULL): to say which members it holds a connection to. */
cm_snapshot_t *cm_engine__snapshot_build(cm_node_t *node, const cm_net_t *net,
                                         uint64_t version);

/* cm_engine_node.c */
extern const cm_net_callbacks_t cm_engine__net_callbacks;
int cm_engine__peer_hint(void *ud, const cm_addr_t *addr);
/* Publish what the last input changed and hand the node's output to the
 * transport. Called after every input to the node. */
void cm_engine__flush(cm_enode_t *n, int force_snapshot);

/* cm_engine_join.c */
void cm_engine__join_start(cm_enode_t *n, const struct cmd *c);
void cm_engine__join_finish(cm_enode_t *n, int status);
/* A join push-pull request went out: the join waits for its answer. */
void cm_engine__join_track(cm_enode_t *n, uint64_t req_id);
/* A request ended with status: 1 if it was one of the join's (it no
 * longer is, and how it ended is noted), else 0. */
int cm_engine__join_response(cm_enode_t *n, uint64_t req_id, int status);
/* After a flush: when no request of the join is left, retry or give up. */
void cm_engine__join_check(cm_enode_t *n);
/* A seed's answer merged: report success. refuted: the merge made us
 * refute a record of ourselves. */
void cm_engine__join_succeeded(cm_enode_t *n, uint64_t refuted);
void cm_engine__join_answered(cm_enode_t *n, uint64_t refuted);

#endif
