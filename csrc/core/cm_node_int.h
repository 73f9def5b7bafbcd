/*
 * Private structures of cm_node, shared by its files: lifecycle, timers and
 * the public API (cm_node.c); the member table and the application of merge
 * decisions (cm_node_state.c); probe scheduling and the failure detector's
 * inputs, local health included (cm_node_probe.c); broadcasts, packets,
 * dispatch of what arrives and the output queues (cm_node_out.c);
 * push-pull (cm_node_pp.c); reaping and reconnecting (cm_node_reap.c).
 */
#ifndef CM_NODE_INT_H
#define CM_NODE_INT_H

#include "cm_bcast.h"
#include "cm_node.h"
#include "cm_rand.h"
#include "cm_registry.h"
#include "cm_theap.h"

/* Indirect probes this node runs for others at once; more are dropped
 * (counted) so a flood of ping-reqs cannot grow memory. */
#define CM_FWD_MAX 64
/* Events kept for a driver that does not drain them; older ones win. */
#define CM_EVENT_QUEUE_MAX 65536
/* Broadcasts piggybacked per packet at most (the wire allows 64). */
#define CM_PIGGYBACK_MAX 60
/* How often left and long-failed members are looked at for reaping. */
#define CM_REAP_PERIOD CM_SEC(1)
/* A random pick tries this many slots per wanted member before giving up,
 * so a sparse registry cannot make it spin. */
#define CM_PICK_TRIES 8
#define CM_NO_SLOT UINT32_MAX
/* Messages for the application not yet polled, at most. */
#define CM_APP_QUEUE_MAX 4096
/* This node's own queries in flight, at most. */
#define CM_QUERIES_MAX 64
/* A node sends until its Lamport clock reaches CM_UEV_LTIME_MAX (2^48),
 * and accepts times only below CM_UEV_LTIME_ACCEPT (2^47): a message at the
 * highest time accepted still leaves every clock 2^47 messages of room, more
 * than any cluster sends, so no message can pin the clocks at their end. */
#define CM_UEV_LTIME_MAX (UINT64_C(1) << 48)
#define CM_UEV_LTIME_ACCEPT (UINT64_C(1) << 47)

/* A recent user event or query (cm_node_user.c): what copies are checked
 * against, what a relay is encoded from, and, for a query, what its answers
 * need. */
struct cm_urec {
  uint64_t ltime;
  uint64_t digest; /* of name, payload (or its reference) and filter */
  uint8_t in_use, flags, name_len, origin_len;
  uint8_t synced; /* learnt by anti-entropy: relayed with CM_UEV_SYNCED */
  /* A payload on streams (USER_EVENT_REF): its digest and reference; it
   * is pending until fetched, and forgotten (data NULL) when the store
   * needs its room. */
  uint8_t big, pending;
  uint8_t ref[CM_UEV_REF_LEN];
  uint64_t pdigest;
  uint32_t payload_len;
  uint16_t filter_len;
  char origin[CM_ID_MAX + 1];
  char name[CM_WIRE_MAX_EVENT_NAME + 1];
  uint8_t *data;  /* owned: payload, then filter; NULL when both are empty */
  cm_time_t seen; /* when this node learnt of it */
  /* Queries. */
  uint32_t qid;
  cm_addr_t origin_addr;
  uint8_t relay;
  uint8_t answered; /* CM_QRESP_ACK, and 0x02 once responded */
  uint32_t timeout_ms;
  cm_time_t deadline; /* when its origin stops listening, on our clock */
};

/* One kind of application message (user events, queries): its Lamport
 * clock, the recent ones, their relays, the sending budgets. */
struct cm_ustore {
  uint8_t type;         /* CM_MSG_USER_EVENT or CM_MSG_QUERY */
  struct cm_urec *recs; /* cfg.user_event_buffer, on first use */
  uint32_t n;           /* records in use */
  uint64_t clock;       /* the time of our next one */
  cm_bcast_t relay;     /* keyed by record index */
  double tokens;        /* our own sending budget, as of ts */
  cm_time_t ts;
  double stranger_tokens; /* shared by origins we do not know */
  cm_time_t stranger_ts;
  double sync_tokens; /* re-sent messages (anti-entropy) taken, as of sync_ts */
  uint64_t big_bytes; /* of the payloads on streams held */
  cm_time_t sync_ts;
  cm_app_counts_t *count; /* in the node's stats */
};

/* The fetch of a pending event's payload: the record (and its time, which
 * tells it from one that replaced it), the request in flight (0: none),
 * and the members that told us of it, tried in turn. */
#define CM_FETCH_MAX 16
#define CM_FETCH_SOURCES 4
struct cm_fetch {
  uint8_t active, nsrc, next;
  uint32_t rec;
  uint64_t ltime, digest;
  uint64_t req_id;
  cm_addr_t src[CM_FETCH_SOURCES];
};

#define CM_SREPLY_MAX 16

/* One of this node's queries, waiting for replies. */
struct cm_qout {
  uint8_t active;
  uint32_t qid;
  uint64_t ltime;
  cm_time_t deadline;
  /* Who answered: id hashes, open addressing (0 is free), acks and
   * responses apart. */
  uint64_t *seen;
  uint32_t seen_cap, seen_n;
};

/* A message for the application waiting to be polled, with its bytes. */
struct cm_app_out {
  struct cm_app_out *next;
  cm_app_msg_t m;
  uint8_t data[]; /* name, NUL, filter, payload */
};

/* A member's recent state changes (cm_node_history): a ring of cap. */
struct cm_hist {
  uint8_t head, len, cap;
  cm_hist_entry_t e[];
};

/* The cause of the state change about to be reported (cm_node_hist.c):
 * set by whoever makes it, read when its event is recorded. */
struct cm_hist_cause {
  uint8_t source; /* enum cm_hist_source; 0: none set */
  const char *by;
  size_t by_len;
};
#define CM_PROBE_HELPERS_MAX 16
struct cm_probe {
  uint8_t active;
  uint8_t acked;
  uint8_t indirect;
  uint32_t slot;
  uint64_t target_hash;
  uint32_t target_inc; /* the incarnation probed: what a failure accuses */
  uint32_t seq;
  cm_time_t start, timeout_at, end_at;
  uint32_t expected_nacks, nacks;
  /* The helpers asked (cm_node__probe_indirect), and which of them nacked:
   * each nack is a second member's failure to reach the target. */
  uint32_t helper[CM_PROBE_HELPERS_MAX];
  uint64_t helper_hash[CM_PROBE_HELPERS_MAX];
  uint8_t helper_nacked[CM_PROBE_HELPERS_MAX];
};

struct cm_fwd {
  uint8_t active;
  uint8_t want_nack;
  uint32_t seq;      /* of our ping to the target */
  uint32_t orig_seq; /* of the requester's probe */
  cm_addr_t requester;
  cm_time_t nack_at;  /* want_nack: when the nack goes, unless an ack came */
  uint8_t nacked;     /* the nack went; an ack is still relayed till deadline */
  cm_time_t deadline; /* the relay ends: probe_timeout after the request */
};

/* Is another live process using our id? One ping, to the address a
 * conflicting claim came from, asks it (cm_node_id_check). */
struct cm_idcheck {
  uint8_t state; /* enum cm_idcheck_state */
  uint32_t seq;
  cm_addr_t addr;
  cm_time_t deadline;
  cm_time_t next_allowed; /* after an unanswered check, the next one */
};

struct cm_dg {
  cm_addr_t to;
  size_t off, len;
};

struct cm_stream_out {
  cm_addr_t to;
  uint64_t req_id;
  uint8_t *data;
  size_t len;
  int is_join;
};

struct cm_node {
  cm_config_t cfg;
  cm_registry_t reg;
  uint32_t self;
  cm_rand_t rng;
  cm_bcast_t bq;
  uint8_t leaving;
  uint32_t awareness;

  struct cm_probe probe;
  /* This node's network coordinate, and the RTT of the probe acked in the
   * packet being read, for the COORD that follows its ACK (valid while
   * coord_rtt_slot is not CM_NO_SLOT). */
  cm_coord_client_t coord;
  struct cm_hist_cause hcause; /* of the change being made (cm_node_hist.c) */
  uint8_t in_pushpull;         /* merging a push-pull's table */
  uint32_t pp_tells;           /* subjects told directly in this merge */
  uint8_t in_probe_end;        /* accusing for our own failed probe: 1; for a
                                  helper of it that nacked: 2 */
  uint32_t coord_rtt_slot;
  cm_time_t coord_rtt;
  uint32_t coord_acks; /* ACKs to version-2 members: every
                          CM_COORD_ACK_EVERY-th carries a COORD */
  uint32_t seq;
  uint32_t *order;
  uint32_t order_len, order_pos, order_cap;
  cm_time_t next_probe, next_gossip, next_pushpull, next_reconnect, next_reap;
  /* After a join's follow-up push-pull (cm_node_pp.c), the periodic one
   * at its own phase; 0 if none is pending. */
  cm_time_t pushpull_after_followup;
  uint8_t join_followup;    /* a join was asked: follow its first answer up */
  uint64_t followup_req;    /* the follow-up push-pull in flight, 0: none */
  cm_time_t followup_delay; /* the last follow-up's wait */
  uint64_t join_req_lo, join_req_hi; /* that join's request ids */
  cm_time_t joined_at; /* when a join was first answered; 0: never joined */

  struct cm_fwd fwd[CM_FWD_MAX];
  struct cm_idcheck idcheck;
  /* The suspects, keyed by when each is due to be declared failed. */
  cm_theap_t suspects;

  /* Outputs. */
  uint8_t *pkt; /* packet being built, cfg.max_packet_size */
  uint8_t *arena;
  size_t arena_len, arena_cap;
  struct cm_dg *dgs;
  size_t ndg, dg_read, dg_cap;
  struct cm_stream_out *streams;
  size_t nstreams, streams_cap;
  cm_event_t *events;
  size_t ev_head, ev_len, ev_cap;
  uint64_t next_req_id;
  cm_peer_hint_fn hint;
  void *hint_ud;

  /* User events and queries (cm_node_user.c). */
  struct cm_ustore ue, qs;
  struct cm_qout qout[CM_QUERIES_MAX];
  struct cm_fetch fetch[CM_FETCH_MAX];
  /* Our answers to queries sent on streams, by request id (0: free). */
  uint64_t sreply_req[CM_SREPLY_MAX];
  uint32_t sreply_next;
  struct cm_app_out *aout_head, *aout_tail, *aout_last;
  size_t naout;

  cm_node_stats_t st;
};

/* ---------------------------------------------------------------- helpers */

static inline cm_member_t *cm_node__m(cm_node_t *n, uint32_t slot) {
  return &n->reg.m[slot];
}

static inline cm_member_t *cm_node__self(cm_node_t *n) {
  return &n->reg.m[n->self];
}

static inline int cm_node__live(const cm_member_t *m) {
  return m->in_use &&
         (m->state == CM_STATE_ALIVE || m->state == CM_STATE_SUSPECT);
}

static inline uint32_t cm_node__live_count(const cm_node_t *n) {
  return n->st.alive + n->st.suspect;
}

/* Something waits to be piggybacked: membership news or user events. */
static inline int cm_node__news_pending(const cm_node_t *n) {
  return cm_bcast_len(&n->bq) > 0 || cm_bcast_len(&n->ue.relay) > 0 ||
         cm_bcast_len(&n->qs.relay) > 0;
}

static inline cm_time_t cm_node__scaled(const cm_node_t *n, cm_time_t t) {
  return t * (cm_time_t)(n->awareness + 1);
}

/* ------------------------------------------------- member table (state) */

void cm_node__count_state(cm_node_t *n, uint8_t state, int delta);
/* Move a member to a state, keeping counters and the suspicion bookkeeping
 * consistent. */
/* The heap's report that the suspicion of slot moved to pos. */
void cm_node__suspect_moved(void *ud, uint32_t slot, uint32_t pos);
void cm_node__set_state(cm_node_t *n, uint32_t slot, uint8_t state,
                        cm_time_t now);
/* The versions m advertises, relayed as known. */
void cm_node__ext_of(const cm_member_t *m, cm_wire_ext_t *x);
/* News about a member, through the merge rule: an alive record (quiet: a
 * member new to us is not queued for gossip), or an accusation or leave. */
void cm_node__alive(cm_node_t *n, const cm_msg_alive_t *a, cm_time_t now,
                    int quiet);
void cm_node__accuse(cm_node_t *n, uint8_t kind, const char *id, size_t id_len,
                     uint32_t inc, const char *from, size_t from_len,
                     cm_time_t now);
void cm_node__check_suspects(cm_node_t *n, cm_time_t now);

/* ------------------------------------------------------ probes (probe) */

typedef int (*cm_node__filter_fn)(const cm_node_t *n, uint32_t slot,
                                  cm_time_t now);
void cm_node__awareness(cm_node_t *n, int delta);
void cm_node__tell_suspects(cm_node_t *n);
size_t cm_node__pick(cm_node_t *n, size_t want, cm_node__filter_fn filter,
                     uint32_t exclude, cm_time_t now, uint32_t *out);
int cm_node__filter_alive(const cm_node_t *n, uint32_t s, cm_time_t now);
double cm_node__phi(const cm_node_t *n, const cm_member_t *m, cm_time_t now);
void cm_node__start_probe(cm_node_t *n, cm_time_t now);
void cm_node__probe_indirect(cm_node_t *n, cm_time_t now);
void cm_node__probe_end(cm_node_t *n, cm_time_t now);
void cm_node__on_ping(cm_node_t *n, const cm_addr_t *from,
                      const cm_msg_ping_t *p, cm_time_t now);
void cm_node__on_ping_req(cm_node_t *n, const cm_addr_t *from,
                          const cm_msg_ping_req_t *r, cm_time_t now);
void cm_node__on_ack(cm_node_t *n, const cm_addr_t *from, uint32_t seq,
                     cm_time_t now);
void cm_node__on_nack(cm_node_t *n, const cm_addr_t *from, uint32_t seq);
void cm_node__expire_forwards(cm_node_t *n, cm_time_t now);
void cm_node__stalled(cm_node_t *n, cm_time_t lag);

/* ------------------------------------------------------------ output (out) */

void cm_node__event(cm_node_t *n, uint8_t type, const cm_member_t *m,
                    const cm_addr_t *other, cm_time_t now);
void cm_node__broadcast(cm_node_t *n, uint32_t slot, uint8_t kind, uint8_t prio,
                        uint32_t inc, uint32_t aux, cm_time_t now);
void cm_node__send(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                   size_t nmsgs);
/* One packet of exactly msgs, with no queued update riding along. */
void cm_node__send_bare(cm_node_t *n, const cm_addr_t *to, const cm_msg_t *msgs,
                        size_t nmsgs);
void cm_node__gossip(cm_node_t *n, cm_time_t now);

/* ------------------------------------------------------ user events */

void cm_node__uev_init(cm_node_t *n, cm_time_t now);
void cm_node__uev_free(cm_node_t *n);
void cm_node__on_user_event(cm_node_t *n, const cm_addr_t *from,
                            const cm_msg_t *msg, cm_time_t now);
/* Stream messages of the fetch of an event's payload: serve a FETCH (the
 * reply is the caller's to free), take a FETCHED or a failure. The last two
 * return CM_ENOENT if req_id is not a fetch's. */
int cm_node__on_fetch(cm_node_t *n, const uint8_t *req, size_t len,
                      uint8_t **reply, size_t *reply_len);
int cm_node__fetch_reply(cm_node_t *n, uint64_t req_id, const uint8_t *buf,
                         size_t len, cm_time_t now);
int cm_node__fetch_failed(cm_node_t *n, uint64_t req_id, cm_time_t now);
/* A query's answer on a stream (CM_PP_REPLY): taken as from a datagram,
 * with payloads up to max_user_event_stream; the reply (REPLIED) is the
 * caller's to free. */
int cm_node__on_sreply(cm_node_t *n, const uint8_t *req, size_t len,
                       uint8_t **reply, size_t *reply_len, cm_time_t now);
/* The end of one of our answers on a stream; CM_ENOENT if req_id is not
 * one. */
int cm_node__sreply_done(cm_node_t *n, uint64_t req_id, int failed);
void cm_node__on_query(cm_node_t *n, const cm_msg_query_t *q, cm_time_t now);
void cm_node__on_reply(cm_node_t *n, const cm_msg_qresp_t *r, cm_time_t now);
void cm_node__on_relay(cm_node_t *n, const cm_msg_qrelay_t *r);
/* A periodic push-pull came from `from`: send it the user events this
 * node learnt of within the last two push-pull intervals (marked
 * CM_UEV_SYNCED), which gossip may have failed to bring it. */
void cm_node__app_sync(cm_node_t *n, const cm_addr_t *from, cm_time_t now);
cm_time_t cm_node__sync_window(const cm_node_t *n);
/* The Lamport clocks of user events and queries as a push-pull self entry
 * carries them (in its ext's later bytes): u64 events, u64 queries. 1 if
 * there is any to send (either is not 0). */
/* The most a push-pull entry's later bytes hold here: clocks and a
 * coordinate (entry 0). */
/* Once our coordinate's error is at most CM_COORD_SETTLED, one ACK in
 * CM_COORD_ACK_EVERY carries it (cm_node_coord.c). */
#define CM_COORD_ACK_EVERY 4
#define CM_COORD_SETTLED 0.3
#define CM_PP_LATER_MAX (CM_PP_CLOCKS_LEN + CM_COORD_WIRE_LEN)
int cm_node__clocks(const cm_node_t *n, uint8_t out[CM_PP_CLOCKS_LEN]);
/* A push-pull's sender told us its clocks: move ours up to them (times
 * past 2^47 are refused, as in messages). */
void cm_node__witness_clocks(cm_node_t *n, const uint8_t *in);
/* Relays of each user event and query: twice the retransmit limit. */
uint32_t cm_node__app_limit(const cm_node_t *n);
/* Append to w the queued relays of user events and queries that fit. */
void cm_node__uev_piggyback(cm_node_t *n, cm_wbuf_t *w, size_t max_msgs);
/* End this node's queries whose time is up; the earliest still running. */
void cm_node__queries_expire(cm_node_t *n, cm_time_t now);
cm_time_t cm_node__queries_deadline(const cm_node_t *n);

/* ------------------------------------------------------- push-pull (pp) */

int cm_node__pp_request(cm_node_t *n, const cm_addr_t *to, int join);
/* Queue a stream request (data is taken over, freed on error); its id, or
 * 0 without memory. */
uint64_t cm_node__stream_out(cm_node_t *n, const cm_addr_t *to, uint8_t *data,
                             size_t len, int join);

/* ------------------------------------------------------- duplicate ids */

void cm_node__id_check_start(cm_node_t *n, const cm_addr_t *other,
                             cm_time_t now);
void cm_node__id_check_expire(cm_node_t *n, cm_time_t now);
/* Two processes claim one id (see cm_node_state.c). */
void cm_node__conflict(cm_node_t *n, uint32_t slot, const cm_addr_t *other,
                       cm_time_t now);

/* ---------------------------------------------------------------- reap */

void cm_node__reap(cm_node_t *n, cm_time_t now);
/* Forget the tombstone (a member that left or failed) that has been gone
 * longest, if at least gossip_to_dead (so its news has spread and it is no
 * longer gossiped to), to make room for a newcomer; 1 if there was one.
 * O(registry), paid only when the registry is full. */
int cm_node__evict_tombstone(cm_node_t *n, cm_time_t now);
void cm_node__reconnect(cm_node_t *n, cm_time_t now);

/* Network coordinates (cm_node_coord.c). */
void cm_node__coord_acked(cm_node_t *n, uint32_t slot, cm_time_t rtt);
void cm_node__on_coord(cm_node_t *n, const cm_addr_t *from,
                       const cm_msg_coord_t *msg, cm_time_t now);
int cm_node__coord_msg(cm_node_t *n, int32_t slot, cm_msg_t *msg);
void cm_node__coord_unpaired(cm_node_t *n);
int cm_node__coord_of(const cm_node_t *n, uint32_t slot, cm_coord_t *out);
int cm_node__coord_wire(const cm_node_t *n, uint32_t slot,
                        uint8_t out[CM_COORD_WIRE_LEN]);
void cm_node__coord_from_pp(cm_node_t *n, uint32_t slot, const cm_wire_ext_t *x,
                            int entry0, int first_hand, cm_time_t now);

/* History (cm_node_hist.c). */
void cm_node__hist_cause(cm_node_t *n, uint8_t source, const char *by,
                         size_t by_len);
void cm_node__hist_record(cm_node_t *n, uint32_t slot, uint8_t event,
                          cm_time_t now);

#endif
