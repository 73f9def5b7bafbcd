/*
 * One membership node as a sans-I/O state machine.
 *
 * Inputs: a datagram from a peer (cm_node_recv), a push-pull request or reply
 * (cm_node_handle_pushpull, cm_node_pushpull_reply/failed), "time is now T"
 * (cm_node_tick), and local commands (join, leave, tags). Outputs, drained by
 * the caller after every input: datagrams (cm_node_poll_datagram), push-pull
 * requests (cm_node_poll_stream), events (cm_node_poll_event), and the next
 * deadline (cm_node_next_deadline). The node never reads a clock, opens a
 * socket or starts a thread, and its randomness comes from the seed.
 *
 * Not thread-safe: one thread drives a node at a time.
 */
#ifndef CM_NODE_H
#define CM_NODE_H

#include "cm_common.h"
#include "cm_config.h"
#include "cm_wire.h"

typedef struct cm_node cm_node_t;

enum cm_event_type {
  CM_EV_JOINED = 1,       /* first seen alive, or back after leaving */
  CM_EV_SUSPECT = 2,      /* alive -> suspect */
  CM_EV_FAILED = 3,       /* declared failed */
  CM_EV_RECOVERED = 4,    /* suspect or failed -> alive */
  CM_EV_LEFT = 5,         /* left gracefully */
  CM_EV_TAGS_UPDATED = 6, /* alive with a new tag set */
  CM_EV_CONFLICT = 7,     /* another node claims this id from another addr */
  CM_EV_REAPED = 8,       /* a left or failed member was forgotten */
  CM_EV_ADDR_CHANGED = 9, /* a failed or left member came back elsewhere */
};

typedef struct cm_event {
  uint8_t type;
  uint8_t state; /* member state after the event */
  char id[CM_ID_MAX + 1];
  cm_addr_t addr;       /* the member's address */
  cm_addr_t other_addr; /* CM_EV_CONFLICT: the conflicting claim's address */
  uint32_t incarnation;
  cm_time_t time;
} cm_event_t;

/* What the application gets (cm_node_poll_app): user events and queries,
 * each once, and the replies to and end of its own queries. Strings and
 * bytes stay valid until the next call into the node; name is
 * NUL-terminated. */
enum cm_app_kind {
  CM_APP_EVENT = 1,      /* a user event: node is its origin */
  CM_APP_QUERY = 2,      /* a query to answer (or not): node is its origin */
  CM_APP_REPLY = 3,      /* an ack or response to our query qid: node sent it */
  CM_APP_QUERY_DONE = 4, /* our query qid's time is up: no more replies */
};
#define CM_APP_COALESCE 0x01 /* EVENT: only the latest of a name need count */
#define CM_APP_WANT_ACK 0x01 /* QUERY: the origin asks for acks */
#define CM_APP_ACK 0x01      /* REPLY: an ack, not a response */
typedef struct cm_app_msg {
  uint8_t kind;  /* enum cm_app_kind */
  uint8_t flags; /* CM_APP_* of its kind */
  uint64_t ltime;
  uint32_t qid;
  char node[CM_ID_MAX + 1];
  cm_addr_t origin_addr; /* QUERY */
  const char *name;      /* EVENT, QUERY */
  size_t name_len;
  const uint8_t *filter; /* QUERY: opaque to the core */
  size_t filter_len;
  const uint8_t *payload;
  size_t payload_len;
  cm_time_t deadline; /* QUERY: when the origin stops listening, on our clock */
  cm_time_t time;     /* when this node learnt of it */
} cm_app_msg_t;

/* Counters of one kind of application message (events, queries). */
typedef struct cm_app_counts {
  uint64_t sent;       /* originated here */
  uint64_t delivered;  /* new ones, own included */
  uint64_t duplicate;  /* copies of one already delivered */
  uint64_t drop_old;   /* older than the buffer remembers */
  uint64_t drop_rate;  /* its origin over twice the send rate */
  uint64_t drop_ltime; /* a Lamport time at or past 2^47 */
  uint64_t drop_size;  /* over the size limit */
} cm_app_counts_t;

/* Buckets of the probe round-trip histogram (cm_node_stats_t): upper
 * bounds in seconds, the last one +inf; the buckets are not cumulative. */
#define CM_RTT_BUCKETS 14
extern const double cm_rtt_bucket_bounds[CM_RTT_BUCKETS];

typedef struct cm_node_stats {
  /* Registry, by state. */
  uint32_t members, alive, suspect, failed, left;
  uint32_t incarnation; /* this node's own */
  uint32_t health;      /* Lifeguard awareness score, 0 is healthy */
  uint32_t bcast_queue;
  /* Traffic the core produced or consumed. */
  uint64_t packets_in, packets_out, bytes_in, bytes_out;
  uint64_t msgs_in, msgs_out;
  uint64_t pushpull_in, pushpull_out, pushpull_failed;
  /* Protocol activity. */
  uint64_t probes, probe_acks, probe_failures, indirect_probes, nacks_in;
  uint64_t pings_in, ping_reqs_in;
  uint64_t stalls; /* this node ran late: its own clocks were paused */
  uint64_t stale_corrections; /* newer news sent to a peer behind */
  uint64_t suspicions, refutations, failures_declared, conflicts;
  uint64_t duplicates;      /* a process elsewhere answered to our id */
  uint64_t updates_dropped; /* broadcast queue overflowed */
  uint64_t events_dropped;  /* event queue overflowed */
  /* Drops by reason: never crash, never change state. */
  uint64_t drop_malformed;     /* failed to decode */
  uint64_t drop_wrong_target;  /* ping meant for another id */
  uint64_t drop_stale;         /* ack or nack for no pending probe */
  uint64_t drop_unknown;       /* about a node we do not know */
  uint64_t drop_forward_full;  /* too many indirect probes in flight */
  uint64_t drop_limit;         /* registry at max_members, no tombstone */
  uint64_t tombstones_evicted; /* forgotten early to make room for a newcomer */
  uint64_t drop_pushpull;      /* bad or oversized push-pull */
  uint64_t drop_left;          /* input after this node left */
  uint64_t drop_incarnation;   /* accusation at the last incarnation */
  /* A newer version's message type, skipped; the rest of its packet is
   * processed. */
  uint64_t skipped_unknown;
  /* User events and queries. */
  cm_app_counts_t user_events, queries;
  uint64_t app_dropped;         /* application queue full: not delivered */
  uint64_t replies_sent;        /* acks and responses to others' queries */
  uint64_t replies_streamed;    /* of them, too large for a datagram */
  uint64_t reply_stream_failed; /* of those, whose stream failed */
  uint64_t replies_in;          /* acks and responses to ours, delivered */
  uint64_t drop_reply;          /* for no query of ours in flight, late, from no
                                   member, or past twice the members */
  uint64_t reply_duplicate;     /* a second ack or response from one member */
  uint64_t replies_relayed;     /* passed on for another member's query */
  uint64_t drop_relay;          /* a relay to an address of no live member */
  uint64_t events_synced;       /* user events sent to a push-pull's asker */
  uint64_t events_before_join;  /* synced events that may predate our join */
  uint64_t drop_sync_rate; /* re-sent events over the anti-entropy budget */
  /* Payloads on streams (USER_EVENT_REF). */
  uint64_t events_fetched;     /* payloads fetched, checked and delivered */
  uint64_t fetch_failed;       /* fetches refused, lost or with a bad payload */
  uint64_t events_served;      /* payloads sent to a member that fetched */
  uint64_t fetch_busy;         /* references dropped: every fetch in use */
  uint64_t payloads_forgotten; /* held payloads dropped for room */
  uint64_t drop_query_origin;  /* queries whose answers would go to an
                                  address not their origin's */
  /* Round trips of direct probes acked by their target, in seconds. */
  uint64_t probe_rtt_count;
  double probe_rtt_sum;
  uint64_t probe_rtt_buckets[CM_RTT_BUCKETS]; /* by cm_rtt_bucket_bounds */
  /* Network coordinates. */
  uint64_t coord_updates;    /* RTT samples that moved our coordinate */
  uint64_t coord_rejected;   /* coordinates out of bounds, outlier samples */
  uint64_t coord_resets;     /* our coordinate diverged and began again */
  uint64_t coord_ignored;    /* a COORD not after the ACK of our probe */
  uint64_t coord_heard;      /* members' coordinates taken and held */
  uint32_t user_event_queue; /* event relays waiting to be piggybacked */
  uint32_t query_queue;      /* query relays waiting to be piggybacked */
} cm_node_stats_t;

/* Why a member's state changed, as this node saw it (cm_node_history). */
enum cm_hist_source {
  CM_HIST_PROBE = 1,    /* this node's probe of it failed */
  CM_HIST_GOSSIP = 2,   /* news by gossip: an accusation (by: the accuser) */
  CM_HIST_PUSHPULL = 3, /* a push-pull's record (by: whose table it was in,
                           which names no accuser) */
  CM_HIST_TIMEOUT = 4,  /* its suspicion ran out here */
  CM_HIST_ALIVE = 5,    /* an alive record: a refutation, a return */
  CM_HIST_LEAVE = 6,    /* it said it was leaving */
  CM_HIST_NACK = 7,     /* two or more helpers our probe asked could not
                           reach it either (by: the first of them) */
};
/* History only: another member confirmed a suspicion held here. */
#define CM_EV_CONFIRMED 100

/* One entry of a member's history. by names a member by its slot and id
 * hash, kept small; cm_node_history resolves it. */
typedef struct cm_hist_entry {
  cm_time_t time;
  uint8_t event;  /* CM_EV_SUSPECT, FAILED, RECOVERED, LEFT, JOINED, or
                     CM_EV_CONFIRMED */
  uint8_t state;  /* its state after */
  uint8_t source; /* enum cm_hist_source */
  uint8_t health; /* this node's local health score then */
  uint32_t incarnation;
  uint32_t rtt_us; /* last round trip of a direct probe of it; 0: none */
  uint8_t helpers; /* CM_HIST_PROBE, _NACK: members asked to probe it for us */
  uint8_t nacks; /* CM_HIST_PROBE, _NACK: nacks, those that could not either */
  uint8_t confirmations; /* accusers of the suspicion besides the first */
  uint32_t by_slot;      /* the accuser; CM_HIST_NOBODY if none */
  uint64_t by_hash;
} cm_hist_entry_t;
#define CM_HIST_NOBODY UINT32_MAX

/* A history entry as read: the accuser's id, "" if none or forgotten. */
typedef struct cm_hist_read {
  cm_hist_entry_t e;
  char by[CM_ID_MAX + 1];
} cm_hist_read_t;

typedef struct cm_member_info {
  const char *id;
  cm_addr_t addr;
  uint32_t incarnation;
  uint8_t state; /* enum cm_state */
  const uint8_t *tags;
  size_t tags_len;
  cm_time_t state_change;
  double phi; /* suspicion level of arrivals from it; 0 if too few */
  int is_self;
  /* Protocol versions it advertised; 0, 0 if none (it speaks 1 only). */
  uint8_t proto_min, proto_max;
  /* Its network coordinate (this node's own for is_self), if known. */
  int has_coord;
  cm_coord_t coord;
  uint32_t history; /* entries cm_node_history holds for it */
  /* Round trips of this node's direct probes of it, over the last
   * rtt_samples (at most 16), in microseconds: median, 90th percentile
   * (nearest rank) and largest; 0 with no sample. */
  uint32_t rtt_samples, rtt_median_us, rtt_p90_us, rtt_max_us;
  cm_time_t last_heard; /* when a ping or an ack last came from it; 0: never */
} cm_member_info_t;

/* Create a node. id: 1..64 printable bytes; addr: where peers reach it;
 * tags: a canonical blob (cm_tags_set) within the configured limits.
 * Errors: CM_ECONFIG, CM_ENODEID, CM_EADDR, CM_ETAGKEY/ETAGVAL/ETAGSET,
 * CM_ENOMEM. */
int cm_node_new(cm_node_t **out, const cm_config_t *cfg, const char *id,
                const cm_addr_t *addr, const uint8_t *tags, size_t tags_len,
                uint64_t seed, cm_time_t now);
void cm_node_free(cm_node_t *n);
const cm_config_t *cm_node_config(const cm_node_t *n);

/* Optional hint from the driver: nonzero if the transport already holds a
 * connection to addr. Gossip rounds then prefer such peers, since opening a
 * connection costs far more than the message it carries. Called only from
 * within calls into the node. */
typedef int (*cm_peer_hint_fn)(void *ud, const cm_addr_t *addr);
void cm_node_set_peer_hint(cm_node_t *n, cm_peer_hint_fn fn, void *ud);

/* Ask seeds for their state (push-pull with the join flag). The caller
 * learns the outcome from cm_node_pushpull_reply / _failed for the request
 * ids it polls. Errors: CM_EINVAL, CM_ESTATE (left). */
int cm_node_join(cm_node_t *n, const cm_addr_t *seeds, size_t nseeds,
                 cm_time_t now);
/* Leave gracefully: broadcast at critical priority, stop probing. Calling it
 * again is a no-op. cm_node_leave_done() tells when the leave has been
 * transmitted enough times for the driver to stop. */
int cm_node_leave(cm_node_t *n, cm_time_t now);
int cm_node_leave_done(const cm_node_t *n);

/* Set, remove or replace tags; each change bumps the incarnation and is
 * broadcast at high priority. Errors: CM_ETAGKEY, CM_ETAGVAL, CM_ETAGSET,
 * CM_ENOENT (remove of an absent key), CM_ESTATE (left), CM_ELIMIT (the
 * incarnation is at its last value, UINT32_MAX). On error nothing
 * changes. */
int cm_node_set_tag(cm_node_t *n, const char *key, const char *value,
                    cm_time_t now);
int cm_node_remove_tag(cm_node_t *n, const char *key, cm_time_t now);
int cm_node_set_tags(cm_node_t *n, const uint8_t *blob, size_t len,
                     cm_time_t now);
/* Check a blob against this node's limits without applying it. */
int cm_node_check_tags(const cm_node_t *n, const uint8_t *blob, size_t len);

/* A datagram arrived. Malformed input is dropped and counted; the return
 * value says why (0 when processed). */
int cm_node_recv(cm_node_t *n, const cm_addr_t *from, const uint8_t *buf,
                 size_t len, cm_time_t now);

/* A push-pull request arrived: merge it and produce the reply in *reply
 * (malloc'd; the caller frees it). Errors leave state unchanged:
 * CM_ETOOBIG, and the decoder's. */
int cm_node_handle_pushpull(cm_node_t *n, const cm_addr_t *from,
                            const uint8_t *req, size_t len, cm_time_t now,
                            uint8_t **reply, size_t *reply_len);
/* The reply to a request this node made arrived, or the request failed. */
int cm_node_pushpull_reply(cm_node_t *n, uint64_t req_id, const uint8_t *buf,
                           size_t len, cm_time_t now);
void cm_node_pushpull_failed(cm_node_t *n, uint64_t req_id, cm_time_t now);
/* Adopt a push-pull table (a response) that the whole cluster already
 * knows, as when starting from a cluster that has formed and settled: it is
 * merged with the usual rules, but members new to this node are not queued
 * for gossip, since no one needs to hear of them from us. The simulator's
 * bootstrap uses it; a node on a network learns through
 * cm_node_pushpull_reply. Errors as for cm_node_pushpull_reply. */
int cm_node_adopt_table(cm_node_t *n, const uint8_t *buf, size_t len,
                        cm_time_t now);

/* Advance to now: run every timer that is due. */
void cm_node_tick(cm_node_t *n, cm_time_t now);
/* When cm_node_tick must next be called (CM_TIME_NEVER if never). */
cm_time_t cm_node_next_deadline(const cm_node_t *n);

/* Send a user event to every member (this node included): name 1..128
 * bytes of 0x21..0x7e, name and payload together at most
 * max_user_event_size bytes. *ltime (if not NULL) gets its Lamport time.
 * Errors, nothing sent: CM_EINVAL (name), CM_ETOOBIG, CM_ELIMIT (over
 * user_event_rate; try again later), CM_ESTATE (left). */
int cm_node_send_user_event(cm_node_t *n, const char *name, size_t name_len,
                            const uint8_t *payload, size_t payload_len,
                            int coalesce, cm_time_t now, uint64_t *ltime);

/* Ask every member (this node included) a query; those the application
 * selects (by the opaque filter) answer with an ack, if want_ack, and a
 * response, each sent to this node and through `relay` (0..5) other
 * members. Replies come as CM_APP_REPLY until `timeout` (0: the default,
 * cm_query_timeout), then CM_APP_QUERY_DONE. *qid gets the query's id. The
 * limits of a user event apply to name and payload + filter; at most
 * CM_QUERIES_MAX of this node's queries are in flight. Errors, nothing
 * sent: those of cm_node_send_user_event, and CM_ELIMIT for too many in
 * flight. */
int cm_node_query(cm_node_t *n, const char *name, size_t name_len,
                  const uint8_t *filter, size_t filter_len,
                  const uint8_t *payload, size_t payload_len, int want_ack,
                  uint8_t relay, cm_time_t timeout, cm_time_t now,
                  uint32_t *qid);
/* Answer query qid from origin (as delivered in a CM_APP_QUERY): an ack
 * (ack nonzero, no payload) or a response, each at most once. Errors:
 * CM_ENOENT (no such query remembered), CM_ETIMEDOUT (its origin stopped
 * listening), CM_EEXIST (answered so already), CM_ETOOBIG (payload over
 * max_user_event_size), CM_EINVAL, CM_ESTATE (left). */
int cm_node_query_respond(cm_node_t *n, const char *origin, uint32_t qid,
                          int ack, const uint8_t *payload, size_t payload_len,
                          cm_time_t now);

/* Outputs. Each returns 1 and fills its arguments, or 0 when empty.
 * Datagram data stays valid until the next call into the node other than a
 * poll; stream data is the caller's to free. */
int cm_node_poll_datagram(cm_node_t *n, cm_addr_t *to, const uint8_t **data,
                          size_t *len);
int cm_node_poll_stream(cm_node_t *n, cm_addr_t *to, uint64_t *req_id,
                        uint8_t **data, size_t *len, int *is_join);
int cm_node_poll_event(cm_node_t *n, cm_event_t *ev);
/* The next message for the application; pointers in m stay valid until
 * the next call into the node. At most CM_APP_QUEUE_MAX wait; past that,
 * new ones are dropped and counted (app_dropped), except QUERY_DONE,
 * which always comes. */
int cm_node_poll_app(cm_node_t *n, cm_app_msg_t *m);
/* Events waiting to be polled. */
size_t cm_node_events_pending(const cm_node_t *n);

/* Reads. Slots are stable indices in [0, cm_node_member_slots()); a slot
 * may be empty (returns 0). Pointers in info are valid until the next call
 * that changes the node. */
uint32_t cm_node_member_slots(const cm_node_t *n);
int cm_node_member_get(const cm_node_t *n, uint32_t slot,
                       cm_member_info_t *info, cm_time_t now);
int cm_node_member_find(const cm_node_t *n, const char *id,
                        cm_member_info_t *info, cm_time_t now);
/* Another process may hold this node's id. When news arrives of a live
 * member with our id at another address (a CM_EV_CONFLICT about ourselves),
 * the node pings that address, naming our id as the target: a process that
 * answers to our id there is a duplicate; silence until the deadline (one
 * probe interval, scaled by local health) means the claim is stale, most
 * likely our own crashed predecessor on another port. An unanswered check
 * is not repeated for ten probe intervals. A driver that joins waits for a
 * pending check before it reports the join (cm_engine does). */
enum cm_idcheck_state {
  CM_IDCHECK_NONE = 0,      /* no check, or the last went unanswered */
  CM_IDCHECK_PENDING = 1,   /* a ping is out, its deadline not reached */
  CM_IDCHECK_DUPLICATE = 2, /* a process at *other answered to our id */
};
/* The check's state; *other (if not NULL) gets the address asked. */
int cm_node_id_check(const cm_node_t *n, cm_addr_t *other);
/* Forget the last check's result and its back-off (a driver starting a new
 * join: the other process may have stopped since). */
void cm_node_id_check_reset(cm_node_t *n);

/* 1 if a member other than this node, not left, is known at addr. The
 * transport asks for every packet it cannot route, before it spends a
 * connection or a report on an address that only claimed to be a peer:
 * O(1) expected, through the registry's address index, which the first
 * call builds (O(members), once). 0 when that index cannot be built for
 * want of memory, as for a stranger. */
int cm_node_has_member_at(cm_node_t *n, const cm_addr_t *addr);
void cm_node_stats(const cm_node_t *n, cm_node_stats_t *out);
const char *cm_node_id(const cm_node_t *n);
const cm_addr_t *cm_node_addr(const cm_node_t *n);
const char *cm_state_name(uint8_t state);
const char *cm_event_name(uint8_t type);

/* Member id's recorded history, oldest first, at most cap entries (the
 * most recent ones) into out: its suspicions, confirmations, failures,
 * leaves and returns as this node saw them, with who accused it, what
 * this node's own probe found, and this node's local health then. At most
 * cfg.history entries are kept per member. Returns how many were written;
 * 0 for an unknown member or none recorded. */
size_t cm_node_history(const cm_node_t *n, const char *id, cm_hist_read_t *out,
                       size_t cap);

/* This node's network coordinate. Errors: CM_EINVAL, CM_ESTATE
 * (coordinates are off). Set one (restored from an earlier run, or a
 * test's): CM_EINVAL if not cm_coord_valid. */
int cm_node_coord(const cm_node_t *n, cm_coord_t *out);
int cm_node_coord_set(cm_node_t *n, const cm_coord_t *c);

/* A test and debugging aid, O(members): recomputes from the member table
 * every count and list the node keeps by hand beside it (members per
 * state, the suspect list, the probe order, the broadcast
 * queue and what its updates refer to, the output queues) and compares.
 * Returns 0, CM_ESTATE at the first mismatch with *what (if what is not
 * NULL) naming it, or CM_ENOMEM. Holds after any sequence of calls that
 * met no allocation failure; after one, the probe order may miss a live
 * peer until its next round. */
int cm_node_check_invariants(const cm_node_t *n, const char **what);

#endif
