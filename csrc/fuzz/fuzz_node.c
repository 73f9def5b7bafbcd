/*
 * Fuzz a protocol node the way the transport drives it once a peer has
 * authenticated: datagrams (cm_node_recv), push-pull requests and replies,
 * failed requests, local commands and the passing of time, so timers run on
 * whatever state the input built. Each input is a script of records:
 *
 *   0 DGRAM      u8 from | u16 len | bytes
 *   1 PP_REQ     u8 from | u16 len | bytes
 *   2 PP_REPLY   u8 req  | u16 len | bytes
 *   3 TICK       u32 microseconds to advance (at most FZ_MAX_STEP)
 *   4 TICK_DUE   advance to the node's next deadline
 *   5 PP_FAILED  u8 req
 *   6 SET_TAG    u8 value length
 *   7 LEAVE
 *
 * (the op is the record's first byte modulo 8; integers big-endian; `from`
 * picks one of the known peers or a stranger, `req` one of the push-pull
 * requests the node made). The node starts knowing FZ_PEERS members. After
 * every record the target drains the node's outputs and checks invariants:
 * state counts add up, self is present and alive (left after LEAVE), the
 * look-up of members by address agrees with a scan, every datagram and
 * push-pull message the node produces decodes, every timer due has run,
 * the node's own consistency check (cm_node_check_invariants) holds, and
 * the protocol's: incarnations never go backwards, a failed or left member
 * never comes back at the incarnation it went with, the node never accuses
 * itself (fz_check_history, fz_drain). A violation aborts.
 *
 * Built with -DFUZZ_NODE_WRITE_SEEDS (no libFuzzer) it writes the seed
 * corpus instead: traces of real traffic towards this node, recorded from
 * an in-memory cluster of it and its peers:
 *   cc -std=c11 -D_GNU_SOURCE -DFUZZ_NODE_WRITE_SEEDS -Icsrc/core \
 *     csrc/fuzz/fuzz_node.c csrc/core/\*.c -lm -o /tmp/fuzz_node_seeds &&
 *   /tmp/fuzz_node_seeds csrc/fuzz/seeds/fuzz_node
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_node.h"

#define FZ_PEERS 4
#define FZ_START CM_SEC(1000)
/* A TICK moves time forward at most this far: an hour covers every timer
 * of every profile. */
#define FZ_MAX_STEP CM_SEC(3600)
#define FZ_MAX_REQS 256
#define FZ_SEED 0x5eed

enum {
  FZ_DGRAM,
  FZ_PP_REQ,
  FZ_PP_REPLY,
  FZ_TICK,
  FZ_TICK_DUE,
  FZ_PP_FAILED,
  FZ_SET_TAG,
  FZ_LEAVE,
  FZ_NOPS
};

static const char *const fz_ids[FZ_PEERS + 1] = {"fz-self", "m1", "m2", "m3",
                                                 "m4"};

static cm_addr_t fz_addr(unsigned i) { return cm_addr_from_index(i + 1, 7946); }

static void fz_config(cm_config_t *c) {
  cm_config_local(c);
  /* Small enough that a fuzzed push-pull can hit the bound. */
  c->max_pushpull_size = 64 * 1024;
  c->max_members = 64;
}

/* A push-pull message from `sender` listing every node but `receiver`,
 * sender first, all alive at incarnation 0: what a join would teach. */
static int fz_intro(unsigned receiver, unsigned sender, uint8_t kind,
                    uint8_t *buf, size_t cap, size_t *len) {
  cm_wbuf_t w = {buf, 0, cap};
  unsigned k, i;
  if (cm_wire_pp_begin(&w, kind, 0) != 0)
    return -1;
  for (k = 0; k <= FZ_PEERS; k++) {
    cm_pp_entry_t e;
    i = k == 0 ? sender : (k == sender ? 0 : k);
    if (i == receiver)
      continue;
    memset(&e, 0, sizeof(e));
    cm_wire_id_set(&e.node, fz_ids[i], strlen(fz_ids[i]));
    e.addr = fz_addr(i);
    e.state = CM_STATE_ALIVE;
    if (cm_wire_pp_add(&w, &e) != 0)
      return -1;
  }
  if (cm_wire_pp_finish(&w) != 0)
    return -1;
  *len = w.len;
  return 0;
}

/* Node `i` of the cluster, knowing the others. */
static cm_node_t *fz_node(unsigned i, uint64_t seed) {
  cm_config_t cfg;
  cm_node_t *n;
  cm_addr_t a = fz_addr(i), from = fz_addr(i == 1 ? 2 : 1);
  uint8_t intro[1024], *reply = NULL;
  size_t len, rlen;
  fz_config(&cfg);
  if (cm_node_new(&n, &cfg, fz_ids[i], &a, NULL, 0, seed, FZ_START) != 0)
    abort();
  if (fz_intro(i, i == 1 ? 2 : 1, CM_PP_REQUEST, intro, sizeof(intro), &len) !=
          0 ||
      cm_node_handle_pushpull(n, &from, intro, len, FZ_START, &reply, &rlen) !=
          0)
    abort();
  free(reply);
  return n;
}

/* ---- the node under test and its invariants ------------------------------ */

/* Where the node's outputs go: nowhere when fuzzing; to the other nodes
 * when writing seeds. */
typedef struct fz_sink {
  void (*datagram)(void *ud, const cm_addr_t *to, const uint8_t *d, size_t len);
  void (*request)(void *ud, const cm_addr_t *to, uint64_t rid, const uint8_t *d,
                  size_t len);
  void (*reply)(void *ud, const cm_addr_t *to, const uint8_t *d, size_t len);
  void *ud;
} fz_sink_t;

/* What the node held of one member after the last record: the protocol's
 * invariants compare each record's outcome with it. */
typedef struct fz_seen {
  char id[CM_ID_MAX + 1];
  uint32_t incarnation;
  uint8_t state;
  uint8_t mark;
} fz_seen_t;

#define FZ_SEEN_MAX 128

typedef struct fz_state {
  cm_node_t *n;
  cm_time_t now;
  int left;
  fz_seen_t seen[FZ_SEEN_MAX];
  size_t nseen;
  uint64_t reqs[FZ_MAX_REQS];
  size_t nreqs;
  fz_sink_t sink;
} fz_state_t;

static uint64_t fz_req(const fz_state_t *s, uint8_t sel) {
  return s->nreqs > 0 ? s->reqs[sel % s->nreqs] : sel;
}

/* The node's answer to "a member other than itself, not left, at a?" (from
 * its address index) agrees with a scan of its registry. */
static void fz_check_member_at(fz_state_t *s, const cm_addr_t *a) {
  cm_member_info_t info;
  uint32_t slot;
  int want = 0;
  for (slot = 0; slot < cm_node_member_slots(s->n); slot++)
    if (cm_node_member_get(s->n, slot, &info, s->now) && !info.is_self &&
        info.state != CM_STATE_LEFT && cm_addr_eq(&info.addr, a))
      want = 1;
  if (cm_node_has_member_at(s->n, a) != want)
    abort();
}

static fz_seen_t *fz_seen_find(fz_state_t *s, const char *id) {
  size_t i;
  for (i = 0; i < s->nseen; i++)
    if (strcmp(s->seen[i].id, id) == 0)
      return &s->seen[i];
  return NULL;
}

/* The protocol's invariants across one record, member by member:
 * - an incarnation never goes backwards while the member is held (only
 *   reaping forgets it, and then it may come back at any incarnation);
 * - a failed or left member comes back (alive or suspect) only at a higher
 *   incarnation than it went with: never at the same one;
 * - this node never suspects or fails itself (checked on every message it
 *   sends, in fz_drain) and its own record stays alive (fz_check_node). */
static void fz_check_history(fz_state_t *s) {
  cm_member_info_t info;
  uint32_t slot;
  size_t i, k;
  for (i = 0; i < s->nseen; i++)
    s->seen[i].mark = 0;
  for (slot = 0; slot < cm_node_member_slots(s->n); slot++) {
    fz_seen_t *old;
    if (!cm_node_member_get(s->n, slot, &info, s->now))
      continue;
    old = fz_seen_find(s, info.id);
    if (old != NULL) {
      int was_gone =
          old->state == CM_STATE_FAILED || old->state == CM_STATE_LEFT;
      int is_live =
          info.state == CM_STATE_ALIVE || info.state == CM_STATE_SUSPECT;
      if (info.incarnation < old->incarnation)
        abort();
      if (was_gone && is_live && info.incarnation <= old->incarnation)
        abort();
    } else {
      if (s->nseen == FZ_SEEN_MAX)
        abort(); /* max_members is 64: never more held at once */
      old = &s->seen[s->nseen++];
      snprintf(old->id, sizeof(old->id), "%s", info.id);
    }
    old->incarnation = info.incarnation;
    old->state = info.state;
    old->mark = 1;
  }
  /* Members no longer held were reaped: forget them. */
  for (i = k = 0; i < s->nseen; i++)
    if (s->seen[i].mark)
      s->seen[k++] = s->seen[i];
  s->nseen = k;
}

static void fz_check_node(fz_state_t *s) {
  cm_node_stats_t st;
  cm_member_info_t me, info;
  uint32_t slot, used = 0;
  const cm_config_t *cfg = cm_node_config(s->n);
  cm_node_stats(s->n, &st);
  if (st.alive + st.suspect + st.failed + st.left != st.members)
    abort();
  if (st.members == 0 || st.members > cfg->max_members)
    abort();
  for (slot = 0; slot < cm_node_member_slots(s->n); slot++) {
    if (!cm_node_member_get(s->n, slot, &info, s->now))
      continue;
    used++;
    if (!cm_id_valid(info.id, strlen(info.id)) || info.state > CM_STATE_LEFT ||
        cm_tags_validate(info.tags, info.tags_len) != 0)
      abort();
    fz_check_member_at(s, &info.addr);
  }
  if (used != st.members)
    abort();
  for (slot = 0; slot <= FZ_PEERS + 1; slot++) {
    cm_addr_t a = fz_addr(slot);
    fz_check_member_at(s, &a);
  }
  if (!cm_node_member_find(s->n, fz_ids[0], &me, s->now) || !me.is_self ||
      me.incarnation != st.incarnation)
    abort();
  if (me.state != (s->left ? CM_STATE_LEFT : CM_STATE_ALIVE))
    abort();
  if (cm_node_check_invariants(s->n, NULL) != 0)
    abort();
  fz_check_history(s);
}

/* Drain every output, checking that what the node sends decodes. */
static void fz_drain(fz_state_t *s) {
  const cm_config_t *cfg = cm_node_config(s->n);
  cm_msg_t msgs[CM_WIRE_MAX_MSGS];
  cm_pp_header_t h;
  cm_addr_t to;
  cm_event_t ev;
  const uint8_t *d;
  uint8_t *sd;
  size_t len, count, i;
  uint64_t rid;
  int join;
  while (cm_node_poll_datagram(s->n, &to, &d, &len)) {
    if (!cm_addr_valid(&to) || len > cfg->max_packet_size ||
        cm_wire_packet_decode(d, len, msgs, CM_WIRE_MAX_MSGS, &count) != 0)
      abort();
    for (i = 0; i < count; i++)
      if ((msgs[i].type == CM_MSG_SUSPECT || msgs[i].type == CM_MSG_DEAD) &&
          msgs[i].u.suspect.node.len == strlen(fz_ids[0]) &&
          memcmp(msgs[i].u.suspect.node.s, fz_ids[0],
                 msgs[i].u.suspect.node.len) == 0 &&
          msgs[i].u.suspect.from.len == strlen(fz_ids[0]) &&
          memcmp(msgs[i].u.suspect.from.s, fz_ids[0],
                 msgs[i].u.suspect.from.len) == 0)
        abort(); /* this node accusing itself */
    if (s->sink.datagram != NULL)
      s->sink.datagram(s->sink.ud, &to, d, len);
  }
  while (cm_node_poll_stream(s->n, &to, &rid, &sd, &len, &join)) {
    if (!cm_addr_valid(&to) || len > cfg->max_pushpull_size ||
        cm_wire_pp_decode(sd, len, &h) != 0 || h.kind != CM_PP_REQUEST)
      abort();
    if (s->nreqs < FZ_MAX_REQS)
      s->reqs[s->nreqs++] = rid;
    if (s->sink.request != NULL)
      s->sink.request(s->sink.ud, &to, rid, sd, len);
    free(sd);
  }
  while (cm_node_poll_event(s->n, &ev))
    if (ev.type < CM_EV_JOINED || ev.type > CM_EV_ADDR_CHANGED)
      abort();
}

static void fz_tick(fz_state_t *s, cm_time_t now) {
  s->now = now;
  cm_node_tick(s->n, now);
  /* Whatever was due ran: a deadline in the past would make a driver
   * spin. */
  if (cm_node_next_deadline(s->n) <= now)
    abort();
}

/* ---- script reader ---------------------------------------------------------
 */

typedef struct fz_in {
  const uint8_t *p;
  size_t left;
} fz_in_t;

static uint32_t fz_take(fz_in_t *in, size_t n) {
  uint32_t v = 0;
  while (n-- > 0 && in->left > 0) {
    v = v << 8 | *in->p++;
    in->left--;
  }
  return v;
}

static const uint8_t *fz_bytes(fz_in_t *in, size_t *len) {
  const uint8_t *p = in->p;
  size_t want = fz_take(in, 2);
  if (want > in->left)
    want = in->left;
  p = in->p;
  in->p += want;
  in->left -= want;
  *len = want;
  return p;
}

static cm_addr_t fz_from(uint8_t sel) {
  /* 1..FZ_PEERS are members; FZ_PEERS + 1 is a stranger. */
  return fz_addr(1 + sel % (FZ_PEERS + 1));
}

static void fz_step(fz_state_t *s, fz_in_t *in) {
  uint8_t op = (uint8_t)(fz_take(in, 1) % FZ_NOPS), sel;
  const uint8_t *d;
  size_t len;
  switch (op) {
  case FZ_DGRAM: {
    cm_addr_t from = fz_from((uint8_t)fz_take(in, 1));
    d = fz_bytes(in, &len);
    cm_node_recv(s->n, &from, d, len, s->now);
    break;
  }
  case FZ_PP_REQ: {
    cm_addr_t from = fz_from((uint8_t)fz_take(in, 1));
    uint8_t *reply = NULL;
    size_t rlen = 0;
    cm_pp_header_t h;
    d = fz_bytes(in, &len);
    if (cm_node_handle_pushpull(s->n, &from, d, len, s->now, &reply, &rlen) ==
        0) {
      if (cm_wire_pp_decode(reply, rlen, &h) != 0 || h.kind != CM_PP_RESPONSE ||
          rlen > cm_node_config(s->n)->max_pushpull_size)
        abort();
      if (s->sink.reply != NULL)
        s->sink.reply(s->sink.ud, &from, reply, rlen);
      free(reply);
    } else if (reply != NULL) {
      abort(); /* an error must leave nothing to free */
    }
    break;
  }
  case FZ_PP_REPLY:
    sel = (uint8_t)fz_take(in, 1);
    d = fz_bytes(in, &len);
    cm_node_pushpull_reply(s->n, fz_req(s, sel), d, len, s->now);
    break;
  case FZ_TICK: {
    cm_time_t step = fz_take(in, 4);
    fz_tick(s, s->now + (step > FZ_MAX_STEP ? FZ_MAX_STEP : step));
    break;
  }
  case FZ_TICK_DUE: {
    cm_time_t due = cm_node_next_deadline(s->n);
    if (due != CM_TIME_NEVER && due > s->now && due - s->now <= FZ_MAX_STEP)
      fz_tick(s, due);
    break;
  }
  case FZ_PP_FAILED:
    cm_node_pushpull_failed(s->n, fz_req(s, (uint8_t)fz_take(in, 1)), s->now);
    break;
  case FZ_SET_TAG: {
    char value[64];
    size_t vlen = fz_take(in, 1) % sizeof(value);
    memset(value, 'v', vlen);
    value[vlen] = '\0';
    cm_node_set_tag(s->n, "k", value, s->now);
    break;
  }
  case FZ_LEAVE:
    if (cm_node_leave(s->n, s->now) == 0)
      s->left = 1;
    break;
  }
  fz_drain(s);
  fz_check_node(s);
}

#ifndef FUZZ_NODE_WRITE_SEEDS

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_state_t s;
  fz_in_t in = {data, size};
  memset(&s, 0, sizeof(s));
  s.n = fz_node(0, FZ_SEED);
  s.now = FZ_START;
  fz_drain(&s);
  fz_check_node(&s);
  while (in.left > 0)
    fz_step(&s, &in);
  cm_node_free(s.n);
  return 0;
}

#else /* FUZZ_NODE_WRITE_SEEDS */

/* ---- seed writer: an in-memory cluster, recording what node 0 receives -- */

#define SG_NODES (FZ_PEERS + 1)
#define SG_MAX_SCRIPT (1 << 20)
#define SG_MAX_PENDING 4096

typedef struct sg_msg {
  int from, to;
  int is_request;
  uint64_t rid;
  uint8_t *data;
  size_t len;
} sg_msg_t;

typedef struct sg {
  cm_node_t *n[SG_NODES]; /* n[0] is self.n */
  int down[SG_NODES];     /* silenced: nothing in or out */
  fz_state_t self;        /* node 0, driven exactly as the target does */
  uint8_t *script;
  size_t len;
  sg_msg_t q[SG_MAX_PENDING];
  size_t qhead, qlen;
  int reply_to; /* node whose request node 0 is answering */
  uint64_t reply_rid;
} sg_t;

static void sg_put(sg_t *g, const void *p, size_t n) {
  if (g->len + n > SG_MAX_SCRIPT)
    abort();
  memcpy(g->script + g->len, p, n);
  g->len += n;
}

static void sg_u(sg_t *g, uint32_t v, size_t n) {
  uint8_t b[4];
  size_t i;
  for (i = 0; i < n; i++)
    b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  sg_put(g, b, n);
}

/* Append a record and apply it to node 0 through fz_step, so the script
 * replays to exactly this run. */
static void sg_step(sg_t *g, uint8_t op, int sel, const uint8_t *d,
                    size_t len) {
  size_t at = g->len;
  fz_in_t in;
  sg_u(g, op, 1);
  if (sel >= 0)
    sg_u(g, (uint32_t)sel, 1);
  if (d != NULL) {
    if (len > 0xffff)
      abort();
    sg_u(g, (uint32_t)len, 2);
    sg_put(g, d, len);
  }
  in.p = g->script + at;
  in.left = g->len - at;
  fz_step(&g->self, &in);
  if (in.left != 0)
    abort();
}

static int sg_index(const cm_addr_t *a) {
  int i;
  for (i = 0; i < SG_NODES; i++) {
    cm_addr_t x = fz_addr((unsigned)i);
    if (cm_addr_eq(&x, a))
      return i;
  }
  return -1;
}

static void sg_push(sg_t *g, int from, const cm_addr_t *to, int is_request,
                    uint64_t rid, const uint8_t *d, size_t len) {
  sg_msg_t *m;
  if (g->qlen == SG_MAX_PENDING)
    abort();
  m = &g->q[(g->qhead + g->qlen++) % SG_MAX_PENDING];
  m->from = from;
  m->to = sg_index(to);
  m->is_request = is_request;
  m->rid = rid;
  m->data = malloc(len ? len : 1);
  if (m->data == NULL)
    abort();
  memcpy(m->data, d, len);
  m->len = len;
}

static void sg_self_datagram(void *ud, const cm_addr_t *to, const uint8_t *d,
                             size_t len) {
  sg_push(ud, 0, to, 0, 0, d, len);
}

static void sg_self_request(void *ud, const cm_addr_t *to, uint64_t rid,
                            const uint8_t *d, size_t len) {
  sg_push(ud, 0, to, 1, rid, d, len);
}

static void sg_self_reply(void *ud, const cm_addr_t *to, const uint8_t *d,
                          size_t len) {
  sg_t *g = ud;
  (void)to;
  cm_node_pushpull_reply(g->n[g->reply_to], g->reply_rid, d, len, g->self.now);
}

static int sg_req_sel(const sg_t *g, uint64_t rid) {
  size_t i;
  for (i = 0; i < g->self.nreqs; i++)
    if (g->self.reqs[i] == rid)
      return (int)i;
  abort();
}

static void sg_collect(sg_t *g) {
  int i;
  for (i = 1; i < SG_NODES; i++) {
    cm_addr_t to;
    const uint8_t *d;
    uint8_t *sd;
    size_t len;
    uint64_t rid;
    int join;
    cm_event_t ev;
    while (cm_node_poll_event(g->n[i], &ev))
      ;
    while (cm_node_poll_datagram(g->n[i], &to, &d, &len))
      sg_push(g, i, &to, 0, 0, d, len);
    while (cm_node_poll_stream(g->n[i], &to, &rid, &sd, &len, &join)) {
      sg_push(g, i, &to, 1, rid, sd, len);
      free(sd);
    }
  }
}

static void sg_deliver(sg_t *g, sg_msg_t *m) {
  cm_time_t now = g->self.now;
  cm_addr_t from = fz_addr((unsigned)m->from);
  uint8_t *reply = NULL;
  size_t rlen;
  int lost = m->to < 0 || g->down[m->from] || g->down[m->to];
  if (!m->is_request) {
    if (lost)
      return;
    if (m->to == 0)
      sg_step(g, FZ_DGRAM, m->from - 1, m->data, m->len);
    else
      cm_node_recv(g->n[m->to], &from, m->data, m->len, now);
    return;
  }
  if (lost) {
    if (m->from == 0)
      sg_step(g, FZ_PP_FAILED, sg_req_sel(g, m->rid), NULL, 0);
    else
      cm_node_pushpull_failed(g->n[m->from], m->rid, now);
    return;
  }
  if (m->to == 0) {
    g->reply_to = m->from;
    g->reply_rid = m->rid;
    sg_step(g, FZ_PP_REQ, m->from - 1, m->data, m->len);
    return;
  }
  if (cm_node_handle_pushpull(g->n[m->to], &from, m->data, m->len, now, &reply,
                              &rlen) != 0)
    return;
  if (m->from == 0)
    sg_step(g, FZ_PP_REPLY, sg_req_sel(g, m->rid), reply, rlen);
  else
    cm_node_pushpull_reply(g->n[m->from], m->rid, reply, rlen, now);
  free(reply);
}

static void sg_route(sg_t *g) {
  sg_collect(g);
  while (g->qlen > 0) {
    sg_msg_t m = g->q[g->qhead];
    g->qhead = (g->qhead + 1) % SG_MAX_PENDING;
    g->qlen--;
    sg_deliver(g, &m);
    free(m.data);
    sg_collect(g);
  }
}

/* Record and apply a TICK of node 0 to `to`. */
static void sg_tick(sg_t *g, cm_time_t to) {
  size_t at = g->len;
  fz_in_t in;
  sg_u(g, FZ_TICK, 1);
  sg_u(g, (uint32_t)(to - g->self.now), 4);
  in.p = g->script + at;
  in.left = g->len - at;
  fz_step(&g->self, &in);
}

/* Advance every node from deadline to deadline until `until`. */
static void sg_run(sg_t *g, cm_time_t until) {
  while (g->self.now < until) {
    cm_time_t next = until;
    int i;
    for (i = 0; i < SG_NODES; i++) {
      cm_time_t d = cm_node_next_deadline(g->n[i]);
      if (d > g->self.now && d < next)
        next = d;
    }
    sg_tick(g, next);
    for (i = 1; i < SG_NODES; i++)
      cm_node_tick(g->n[i], g->self.now);
    sg_route(g);
  }
}

static void sg_init(sg_t *g) {
  int i;
  memset(g, 0, sizeof(*g));
  g->script = malloc(SG_MAX_SCRIPT);
  if (g->script == NULL)
    abort();
  g->self.n = fz_node(0, FZ_SEED);
  g->self.now = FZ_START;
  g->self.sink.datagram = sg_self_datagram;
  g->self.sink.request = sg_self_request;
  g->self.sink.reply = sg_self_reply;
  g->self.sink.ud = g;
  g->n[0] = g->self.n;
  for (i = 1; i < SG_NODES; i++)
    g->n[i] = fz_node((unsigned)i, FZ_SEED + (uint64_t)i);
  /* What the target does before reading the script. */
  fz_drain(&g->self);
  sg_route(g);
}

static void sg_write(sg_t *g, const char *dir, const char *name) {
  char path[512];
  FILE *f;
  int i;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(g->script, 1, g->len, f) != g->len ||
      fclose(f) != 0) {
    perror(path);
    exit(1);
  }
  printf("%s: %zu bytes\n", path, g->len);
  for (i = 0; i < SG_NODES; i++)
    cm_node_free(g->n[i]);
  free(g->script);
}

/* One hand-made datagram from m1, as a one-record script. */
static void sg_single(const char *dir, const char *name, const cm_msg_t *m) {
  uint8_t pkt[1400], script[1500];
  cm_wbuf_t w = {pkt, 0, sizeof(pkt)};
  char path[512];
  FILE *f;
  size_t n = 0;
  if (cm_wire_packet_begin(&w) != 0 || cm_wire_packet_add(&w, m) != 0)
    abort();
  script[n++] = FZ_DGRAM;
  script[n++] = 0; /* from m1 */
  script[n++] = (uint8_t)(w.len >> 8);
  script[n++] = (uint8_t)w.len;
  memcpy(script + n, pkt, w.len);
  n += w.len;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(script, 1, n, f) != n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
  printf("%s: %zu bytes\n", path, n);
}

int main(int argc, char **argv) {
  static sg_t g;
  const char *dir = argc > 1 ? argv[1] : ".";
  cm_msg_t m;

  sg_init(&g); /* every node alive, a few probe periods */
  sg_run(&g, FZ_START + CM_SEC(4));
  sg_write(&g, dir, "steady");

  sg_init(&g); /* m2 dies: suspected, then failed */
  sg_run(&g, FZ_START + CM_SEC(1));
  g.down[2] = 1;
  sg_run(&g, FZ_START + CM_SEC(20));
  sg_write(&g, dir, "failure");

  sg_init(&g); /* m1 changes tags, m3 leaves */
  sg_run(&g, FZ_START + CM_SEC(1));
  cm_node_set_tag(g.n[1], "role", "db", g.self.now);
  sg_run(&g, FZ_START + CM_SEC(2));
  cm_node_leave(g.n[3], g.self.now);
  sg_run(&g, FZ_START + CM_SEC(5));
  sg_write(&g, dir, "tags_leave");

  sg_init(&g); /* long enough for periodic push-pull */
  sg_run(&g, FZ_START + CM_SEC(20));
  sg_write(&g, dir, "pushpull");

  sg_init(&g); /* this node is cut off, suspected, and refutes */
  sg_run(&g, FZ_START + CM_SEC(1));
  g.down[0] = 1;
  sg_run(&g, FZ_START + CM_SEC(5));
  g.down[0] = 0;
  sg_run(&g, FZ_START + CM_SEC(9));
  sg_write(&g, dir, "self_suspected");

  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&m.u.suspect.node, "fz-self", 7);
  cm_wire_id_set(&m.u.suspect.from, "m1", 2);
  sg_single(dir, "suspect_self", &m);
  m.type = CM_MSG_DEAD;
  m.u.suspect.incarnation = 5;
  sg_single(dir, "dead_self", &m);
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_ALIVE;
  cm_wire_id_set(&m.u.alive.node, "stranger", 8);
  m.u.alive.incarnation = 3;
  m.u.alive.addr = fz_addr(9);
  sg_single(dir, "alive_stranger", &m);
  memset(&m, 0, sizeof(m));
  m.type = CM_MSG_PING_REQ;
  m.u.ping_req.seq = 77;
  cm_wire_id_set(&m.u.ping_req.target, "m2", 2);
  m.u.ping_req.target_addr = fz_addr(2);
  m.u.ping_req.want_nack = 1;
  sg_single(dir, "ping_req", &m);
  return 0;
}

#endif /* FUZZ_NODE_WRITE_SEEDS */
