/*
 * The engine: a libuv loop on its own thread that hosts one or more nodes,
 * each a protocol core (csrc/core) driven over a QUIC endpoint (csrc/net).
 *
 * Threading contract. cm_engine_new starts the thread; every other function
 * may be called from any thread, concurrently, except cm_engine_free (no
 * other thread may still be using the engine; cm_engine_shutdown may run
 * alongside them) and cm_engine_forget_after_fork (the child of a fork
 * only). Commands reach the loop through a locked queue and a uv_async_t.
 * Start, tag changes and stop wait for the loop to apply them (a few
 * microseconds when the loop is idle); join and leave return at once and
 * report their outcome later as a result event. Events leave through a
 * bounded per-node queue and an eventfd that becomes readable when the
 * queue is not empty; the engine never blocks on a slow consumer (it counts
 * the member events it drops and reports the count before the next event
 * it queues). Results of join and leave are
 * never dropped: each call reserves room for its result when it is made.
 * Reads (members, stats) copy from a snapshot the loop publishes under a
 * short lock, so they never stall the protocol. The engine never calls
 * into Python and never takes the GIL.
 */
#ifndef CM_ENGINE_H
#define CM_ENGINE_H

#include "cm_config.h"
#include "cm_net.h"
#include "cm_node.h"

typedef struct cm_engine cm_engine_t;
typedef struct cm_enode cm_enode_t;

typedef struct cm_enode_config {
  cm_config_t proto;
  cm_net_config_t net; /* keys and file names are copied */
  const char *id;
  cm_addr_t bind; /* port 0 picks one; the node advertises the bound port */
  const uint8_t *tags;
  size_t tags_len;
  uint64_t seed;
  uint32_t event_queue_max; /* member events queued at most; 0: 4096 */
  cm_time_t leave_grace;    /* 0: 5 s */
} cm_enode_config_t;

enum cm_eevent_kind {
  CM_EEV_MEMBER = 1,  /* a membership event (ev) */
  CM_EEV_JOINED = 2,  /* result of cm_enode_join: status 0 or error */
  CM_EEV_LEFT = 3,    /* result of cm_enode_leave: the node has stopped */
  CM_EEV_DROPPED = 4, /* dropped events because the queue was full */
  CM_EEV_APP = 5,     /* for the application (app): user events, queries,
                         replies to ours, their end */
};

typedef struct cm_eevent {
  uint8_t kind;
  int status;       /* JOINED / LEFT */
  uint64_t token;   /* JOINED / LEFT: the command's token */
  uint64_t dropped; /* DROPPED */
  cm_event_t ev;    /* MEMBER */
  /* APP: its name, filter and payload point into data, which the event
   * owns: whoever takes it from cm_enode_next_event frees it with
   * cm_eevent_release. */
  cm_app_msg_t app;
  uint8_t *data;
} cm_eevent_t;

/* Free what an event taken from cm_enode_next_event owns (an APP event's
 * bytes); any event, any number of times. */
void cm_eevent_release(cm_eevent_t *ev);

typedef struct cm_emember {
  char id[CM_ID_MAX + 1];
  cm_addr_t addr;
  uint32_t incarnation;
  uint8_t state;
  uint8_t is_self;
  uint16_t tags_len;
  const uint8_t *tags; /* points into the snapshot */
  cm_time_t state_change;
  double phi;
  uint8_t has_coord;
  cm_coord_t coord; /* network coordinate, if has_coord */
  uint32_t nhist;
  const cm_hist_read_t *hist; /* its history (cm_node_history), oldest first;
                                 points into the snapshot */
  /* Health: direct round trips (cm_member_info_t), when last heard from,
   * and whether the transport holds a connection to it now. */
  uint32_t rtt_samples, rtt_median_us, rtt_p90_us, rtt_max_us;
  cm_time_t last_heard;
  uint8_t connected;
} cm_emember_t;

struct cm_snapshot_index;

/* An immutable, reference-counted copy of a node's registry. */
typedef struct cm_snapshot {
  uint32_t count;
  uint64_t version;
  cm_emember_t *members;
  _Atomic unsigned refs; /* private: use cm_snapshot_release */
  /* private: members by id, built by cm_snapshot_find once a snapshot
   * has been searched often enough to pay for it; the searches so far */
  _Atomic(struct cm_snapshot_index *) index;
  _Atomic unsigned lookups;
} cm_snapshot_t;

typedef struct cm_enode_stats {
  cm_node_stats_t node;
  cm_net_stats_t net;
  uint64_t events_dropped; /* engine event queue overflow */
  uint64_t send_errors;    /* transport refused a datagram or request */
} cm_enode_stats_t;

/* Start the engine thread. Returns 0, CM_EIO or CM_ENOMEM. */
int cm_engine_new(cm_engine_t **out);
/* Stop every node (without leaving), close every handle and join the
 * thread. Any thread, concurrently with calls on the engine and its nodes
 * from others, and more than once: every call returns once the engine has
 * stopped. Calls made from then on return CM_ECLOSED (cm_enode_stop just
 * returns); node handles stay valid until cm_engine_free. */
void cm_engine_shutdown(cm_engine_t *e);
/* Shut down (as cm_engine_shutdown) and free everything; handles of its
 * nodes become invalid. No other thread may be using the engine or its
 * nodes by the time the shutdown has finished. */
void cm_engine_free(cm_engine_t *e);

/* In the child of fork(), before anything else uses the engine: close
 * every descriptor the engine held in the parent (its loop's epoll,
 * wake-up and signal descriptors; each node's eventfd, UDP socket and
 * timerfd), so the child keeps no socket bound to the parent's ports.
 * Touches no lock and frees nothing, for the engine's thread does not
 * exist in the child and its locks may stay held forever; the parent is
 * unaffected. Afterwards e must not be used in the child (not even freed).
 * Not for an engine that cm_engine_free was freeing at the fork. */
void cm_engine_forget_after_fork(cm_engine_t *e);

/* Start a node and bind its socket. Blocks until the loop has done so.
 * Errors: CM_EINVAL, CM_ECONFIG, CM_ENODEID, CM_EADDR, CM_ETAG*, CM_ETLS,
 * CM_EIO (bind failed), CM_ECLOSED (engine stopping), CM_ENOMEM. */
int cm_enode_start(cm_engine_t *e, const cm_enode_config_t *cfg,
                   cm_enode_t **out);
/* Stop a node at once (no leave: peers will see it fail) and free the
 * handle. Blocks until done. */
void cm_enode_stop(cm_enode_t *n);

/* Join through seeds, retrying with backoff until timeout. Returns a token
 * (> 0) whose CM_EEV_JOINED result follows, or a negative error (CM_ENOMEM
 * when room for the result cannot be reserved). The result's status: 0;
 * CM_EAUTH when seeds refused this node's credentials and none answered
 * (before the deadline once every seed refused three attempts in a row: a
 * single refusal can be forged on the path); CM_ETIMEDOUT when no seed
 * answered;
 * CM_ESTATE (a join under way), CM_ECLOSED (stopped or leaving). */
int64_t cm_enode_join(cm_enode_t *n, const cm_addr_t *seeds, size_t nseeds,
                      cm_time_t timeout);
/* Leave gracefully; CM_EEV_LEFT follows once the leave has spread (or
 * `timeout` ran out; 0 for the node's leave_grace) and the node has
 * stopped. A call made while a leave is under way is answered with
 * CM_ESTATE at once. Returns a token or a negative error (as
 * cm_enode_join). */
int64_t cm_enode_leave(cm_enode_t *n, cm_time_t timeout);
/* Replace the tag set (canonical blob). Blocks until applied. Errors as
 * cm_node_set_tags, and CM_ECLOSED once stopped. */
int cm_enode_set_tags(cm_enode_t *n, const uint8_t *blob, size_t len);
/* Send a user event to every member (cm_node_send_user_event). Blocks
 * until the loop has taken it; *ltime gets its Lamport time. Errors as
 * cm_node_send_user_event, and CM_ECLOSED once stopped or leaving. */
int cm_enode_send_event(cm_enode_t *n, const char *name, size_t name_len,
                        const uint8_t *payload, size_t payload_len,
                        int coalesce, uint64_t *ltime);
/* Ask every member a query (cm_node_query; timeout 0: the default). Blocks
 * until the loop has taken it; *qid gets its id, and its replies and end
 * come as CM_EEV_APP events. Errors as cm_node_query, and CM_ECLOSED. */
int cm_enode_query(cm_enode_t *n, const char *name, size_t name_len,
                   const uint8_t *filter, size_t filter_len,
                   const uint8_t *payload, size_t payload_len, int want_ack,
                   uint8_t relay, cm_time_t timeout, uint32_t *qid);
/* Answer a query delivered here (cm_node_query_respond). Blocks until the
 * loop has sent it. Errors as cm_node_query_respond, and CM_ECLOSED. */
int cm_enode_query_respond(cm_enode_t *n, const char *origin, uint32_t qid,
                           int ack, const uint8_t *payload, size_t payload_len);
/* Replace the transport's keyring (cm_net_set_keys). Blocks until
 * applied. Errors as cm_net_set_keys. */
int cm_enode_set_keys(cm_enode_t *n, const cm_net_key_t *keys, size_t nkeys,
                      size_t primary);
/* Replace the transport's fault injection (NULL turns it off). */
int cm_enode_set_fault(cm_enode_t *n, const cm_net_fault_t *f);

/* The eventfd to watch for readability. */
int cm_enode_event_fd(const cm_enode_t *n);
/* Take the next event: 1 if one was taken, 0 if none. The eventfd is reset
 * with the last event taken, or by a call that finds none. Safe from any
 * thread, one consumer at a time. */
int cm_enode_next_event(cm_enode_t *n, cm_eevent_t *out);

/* Reads. The snapshot must be released; it stays valid until then. */
cm_snapshot_t *cm_enode_snapshot(cm_enode_t *n);
void cm_snapshot_release(cm_snapshot_t *s);
/* An empty snapshot to fill by hand (tests, benchmarks of the read path):
 * count zeroed members, then tags_len bytes of tag area starting at
 * (uint8_t *)(s->members + count), one reference. NULL when out of
 * memory. */
cm_snapshot_t *cm_snapshot_alloc(uint32_t count, size_t tags_len);
/* The member with this id, or NULL. The first few calls on a snapshot
 * scan it (most snapshots are published for one event and searched once);
 * the next indexes its members by id (O(count), once), and every call
 * after that costs O(1) expected. So finding the record of each of a burst
 * of events costs O(events + count), never O(events x count), and a
 * single event costs one scan. Any thread, concurrently, without a lock. A
 * snapshot filled by hand must be complete before the first call. Without
 * memory for the index, a scan answers. */
const cm_emember_t *cm_snapshot_find(cm_snapshot_t *s, const char *id);
void cm_enode_stats(cm_enode_t *n, cm_enode_stats_t *out);
/* The address peers reach this node at (bound port filled in). */
cm_addr_t cm_enode_addr(const cm_enode_t *n);
int cm_enode_running(cm_enode_t *n);

#endif
