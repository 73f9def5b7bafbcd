#include "cm_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_rand.h"
#include "cm_wire.h"

#define SIM_PORT 7946
#define SIM_MAX_NODES (1u << 24) /* 10.x.y.z holds 24 bits of index */

enum sim_kind {
  SIM_DGRAM = 1,
  SIM_WAKE,
  SIM_PP_REQ,
  SIM_PP_REPLY,
  SIM_PP_FAIL,
};

struct sim_ev {
  cm_time_t at;
  uint64_t seq; /* ties break in scheduling order: determinism */
  uint8_t kind;
  uint32_t dst, src;
  uint32_t gen;     /* SIM_WAKE: wake generation; else dst instance or 0 */
  uint32_t src_gen; /* requester's instance, for replies */
  uint64_t req_id;
  uint8_t *data;
  size_t len;
};

struct sim_node {
  cm_node_t *node;
  uint8_t up;
  uint8_t leaving;
  cm_time_t leave_deadline;
  cm_time_t paused_until;
  uint32_t inst;
  uint32_t wake_gen;
  cm_time_t wake_at;
  uint32_t held; /* datagrams held while paused */
};

struct sim_part {
  cm_time_t start, end;
  int oneway;
  uint8_t *side;
};

struct cm_sim {
  cm_sim_config_t cfg;
  cm_time_t now;
  cm_rand_t rng;
  cm_time_t *site_rtt; /* sites x sites, with cfg.sites */
  struct sim_node *nodes;
  uint32_t n;
  struct sim_ev *heap;
  size_t nheap, heap_cap;
  uint64_t next_seq;
  struct sim_part *parts;
  size_t nparts;
  cm_sim_event_fn on_event;
  void *on_event_ud;
  cm_sim_rewrite_fn on_send;
  void *on_send_ud;
  cm_sim_stats_t st;
};

/* ------------------------------------------------------------------ heap */

static int ev_less(const struct sim_ev *a, const struct sim_ev *b) {
  return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int sim_push(cm_sim_t *s, struct sim_ev *ev) {
  size_t i;
  if (s->nheap == s->heap_cap) {
    size_t ncap = s->heap_cap ? s->heap_cap * 2 : 1024;
    struct sim_ev *nh = realloc(s->heap, ncap * sizeof(*nh));
    if (nh == NULL) {
      free(ev->data);
      return CM_ENOMEM;
    }
    s->heap = nh;
    s->heap_cap = ncap;
  }
  ev->seq = s->next_seq++;
  i = s->nheap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!ev_less(ev, &s->heap[p]))
      break;
    s->heap[i] = s->heap[p];
    i = p;
  }
  s->heap[i] = *ev;
  return 0;
}

static void sim_pop(cm_sim_t *s, struct sim_ev *out) {
  struct sim_ev last;
  size_t i = 0;
  *out = s->heap[0];
  last = s->heap[--s->nheap];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const struct sim_ev *best = &last;
    if (l < s->nheap && ev_less(&s->heap[l], best)) {
      m = l;
      best = &s->heap[l];
    }
    if (r < s->nheap && ev_less(&s->heap[r], best))
      m = r;
    if (m == i)
      break;
    s->heap[i] = s->heap[m];
    i = m;
  }
  if (s->nheap > 0)
    s->heap[i] = last;
}

/* ------------------------------------------------------------- addresses */

cm_addr_t cm_sim_addr(uint32_t i) { return cm_addr_from_index(i, SIM_PORT); }

void cm_sim_id(uint32_t i, char *buf, size_t len) {
  snprintf(buf, len, "n%u", (unsigned)i);
}

static int sim_index(const cm_sim_t *s, const cm_addr_t *a, uint32_t *out) {
  uint32_t i;
  if (a->family != 4 || a->ip[0] != 10 || a->port != SIM_PORT)
    return 0;
  i = ((uint32_t)a->ip[1] << 16) | ((uint32_t)a->ip[2] << 8) | a->ip[3];
  if (i >= s->n)
    return 0;
  *out = i;
  return 1;
}

int cm_sim_index_of(const cm_sim_t *s, const cm_addr_t *addr, uint32_t *out) {
  return addr != NULL && out != NULL && sim_index(s, addr, out);
}

/* ---------------------------------------------------------------- config */

void cm_sim_config_default(cm_sim_config_t *c) {
  memset(c, 0, sizeof(*c));
  c->nodes = 10;
  cm_config_lan(&c->node);
  c->seed = 1;
  /* History per member per node multiplies as N^2 in one process: off
   * unless a run asks for it. */
  c->node.history = 0;
  c->latency_min = CM_USEC(200);
  c->latency_max = CM_USEC(1000);
  c->stream_timeout = CM_SEC(5);
  c->pause_buffer = 4096;
  c->leave_grace = CM_SEC(5);
}

static int sim_blocked(const cm_sim_t *s, uint32_t src, uint32_t dst) {
  size_t i;
  for (i = 0; i < s->nparts; i++) {
    const struct sim_part *p = &s->parts[i];
    if (s->now < p->start || s->now >= p->end)
      continue;
    if (p->side[src] != p->side[dst] && (!p->oneway || p->side[src] == 0))
      return 1;
  }
  return 0;
}

/* Pass an owned message through the on_send hook. Returns 0 if the hook
 * dropped it (or memory ran out), the message then freed. */
static int sim_rewrite(cm_sim_t *s, uint32_t node, int stream, uint8_t **data,
                       size_t *len) {
  size_t cap =
      stream ? s->cfg.node.max_pushpull_size : s->cfg.node.max_packet_size;
  uint8_t *out;
  if (s->on_send == NULL)
    return 1;
  out = malloc(cap);
  if (out != NULL)
    cap = s->on_send(s->on_send_ud, node, stream, *data, *len, out, cap);
  free(*data);
  *data = out;
  *len = cap;
  if (out != NULL && cap > 0)
    return 1;
  free(out);
  *data = NULL;
  return 0;
}

cm_time_t cm_sim_true_rtt(const cm_sim_t *s, uint32_t i, uint32_t j) {
  uint32_t a, b;
  if (s->cfg.sites == 0)
    return s->cfg.latency_min + s->cfg.latency_max;
  a = i % s->cfg.sites;
  b = j % s->cfg.sites;
  return s->site_rtt[a * s->cfg.sites + b];
}

static cm_time_t sim_latency(cm_sim_t *s, uint32_t src, uint32_t dst) {
  cm_time_t span = s->cfg.latency_max - s->cfg.latency_min;
  if (s->cfg.sites > 0) {
    double half = (double)cm_sim_true_rtt(s, src, dst) / 2;
    double j = s->cfg.jitter * (2 * cm_rand_unit(&s->rng) - 1);
    return (cm_time_t)(half * (1 + j) + 0.5);
  }
  if (span == 0)
    return s->cfg.latency_min;
  return s->cfg.latency_min + cm_rand_below(&s->rng, (uint32_t)span + 1);
}

/* ------------------------------------------------------------ node steps */

static void sim_stop(cm_sim_t *s, uint32_t i) {
  struct sim_node *sn = &s->nodes[i];
  cm_node_free(sn->node);
  sn->node = NULL;
  sn->up = 0;
  sn->leaving = 0;
  sn->inst++;
  sn->wake_gen++;
}

static void sim_after_step(cm_sim_t *s, uint32_t i) {
  struct sim_node *sn = &s->nodes[i];
  cm_node_t *node = sn->node;
  cm_addr_t to;
  const uint8_t *data;
  uint8_t *sdata;
  size_t len;
  uint64_t req_id;
  int is_join;
  cm_event_t ev;
  cm_time_t d;
  uint32_t dst;

  s->st.steps++;
  while (cm_node_poll_datagram(node, &to, &data, &len)) {
    struct sim_ev e;
    s->st.datagrams_sent++;
    s->st.bytes_sent += len;
    if (!sim_index(s, &to, &dst))
      continue;
    if (sim_blocked(s, i, dst)) {
      s->st.datagrams_blocked++;
      continue;
    }
    if (s->cfg.loss > 0 && cm_rand_unit(&s->rng) < s->cfg.loss) {
      s->st.datagrams_lost++;
      continue;
    }
    memset(&e, 0, sizeof(e));
    e.data = malloc(len);
    if (e.data == NULL)
      continue;
    memcpy(e.data, data, len);
    e.len = len;
    if (!sim_rewrite(s, i, 0, &e.data, &e.len))
      continue;
    e.kind = SIM_DGRAM;
    e.at = s->now + sim_latency(s, i, dst);
    e.src = i;
    e.dst = dst;
    sim_push(s, &e);
  }
  while (cm_node_poll_stream(node, &to, &req_id, &sdata, &len, &is_join)) {
    struct sim_ev e;
    memset(&e, 0, sizeof(e));
    s->st.streams_sent++;
    s->st.stream_bytes += len;
    e.src = i;
    e.src_gen = sn->inst;
    e.req_id = req_id;
    if (!sim_index(s, &to, &dst) || sim_blocked(s, i, dst)) {
      free(sdata);
      e.kind = SIM_PP_FAIL;
      e.dst = i;
      e.gen = sn->inst;
      e.at = s->now + s->cfg.stream_timeout;
    } else {
      e.kind = SIM_PP_REQ;
      e.dst = dst;
      e.data = sdata;
      e.len = len;
      if (!sim_rewrite(s, i, 1, &e.data, &e.len)) {
        e.kind = SIM_PP_FAIL;
        e.dst = i;
        e.gen = sn->inst;
        e.at = s->now + s->cfg.stream_timeout;
      }
      e.at = s->now + sim_latency(s, i, dst);
    }
    sim_push(s, &e);
  }
  while (cm_node_poll_event(node, &ev)) {
    s->st.events++;
    if (s->on_event != NULL)
      s->on_event(s->on_event_ud, i, &ev);
  }
  if (sn->leaving &&
      (cm_node_leave_done(node) || s->now >= sn->leave_deadline)) {
    sim_stop(s, i);
    return;
  }
  d = cm_node_next_deadline(node);
  if (sn->leaving && d > sn->leave_deadline)
    d = sn->leave_deadline;
  if (d != sn->wake_at && d != CM_TIME_NEVER) {
    struct sim_ev e;
    memset(&e, 0, sizeof(e));
    sn->wake_at = d;
    sn->wake_gen++;
    e.kind = SIM_WAKE;
    e.dst = i;
    e.gen = sn->wake_gen;
    e.at = d > s->now ? d : s->now;
    sim_push(s, &e);
  }
}

/* A paused node sees nothing until it resumes: defer the input. */
static int sim_defer_if_paused(cm_sim_t *s, struct sim_ev *e) {
  struct sim_node *sn = &s->nodes[e->dst];
  if (sn->paused_until <= s->now)
    return 0;
  if (e->kind == SIM_DGRAM) {
    if (sn->held >= s->cfg.pause_buffer) {
      free(e->data);
      s->st.datagrams_lost++;
      return 1;
    }
    sn->held++;
  }
  e->at = sn->paused_until;
  sim_push(s, e);
  return 1;
}

static void sim_process(cm_sim_t *s, struct sim_ev *e) {
  struct sim_node *sn = &s->nodes[e->dst];
  switch (e->kind) {
  case SIM_WAKE:
    if (e->gen != sn->wake_gen || !sn->up)
      return;
    if (sim_defer_if_paused(s, e))
      return;
    sn->held = 0;
    sn->wake_at = CM_TIME_NEVER;
    cm_node_tick(sn->node, s->now);
    sim_after_step(s, e->dst);
    return;
  case SIM_DGRAM:
    if (!sn->up) {
      s->st.datagrams_to_down++;
      free(e->data);
      return;
    }
    if (sim_defer_if_paused(s, e))
      return;
    {
      cm_addr_t from = cm_sim_addr(e->src);
      s->st.datagrams_delivered++;
      cm_node_recv(sn->node, &from, e->data, e->len, s->now);
      free(e->data);
      sim_after_step(s, e->dst);
    }
    return;
  case SIM_PP_REQ: {
    struct sim_ev r;
    uint8_t *reply = NULL;
    size_t rlen = 0;
    int rc = CM_ECLOSED;
    cm_addr_t from = cm_sim_addr(e->src);
    if (sn->up && sim_defer_if_paused(s, e))
      return;
    if (sn->up) {
      rc = cm_node_handle_pushpull(sn->node, &from, e->data, e->len, s->now,
                                   &reply, &rlen);
      sim_after_step(s, e->dst);
    }
    free(e->data);
    memset(&r, 0, sizeof(r));
    r.dst = e->src;
    r.gen = e->src_gen;
    r.req_id = e->req_id;
    if (rc == 0 && !sim_rewrite(s, e->dst, 1, &reply, &rlen))
      rc = CM_ECLOSED;
    if (rc == 0 && !sim_blocked(s, e->dst, e->src)) {
      r.kind = SIM_PP_REPLY;
      r.data = reply;
      r.len = rlen;
      r.at = s->now + sim_latency(s, e->dst, e->src);
      s->st.stream_bytes += rlen;
    } else {
      free(reply);
      r.kind = SIM_PP_FAIL;
      r.at = s->now + s->cfg.stream_timeout;
    }
    sim_push(s, &r);
    return;
  }
  case SIM_PP_REPLY:
  case SIM_PP_FAIL:
    if (!sn->up || sn->inst != e->gen) {
      free(e->data);
      return;
    }
    if (sim_defer_if_paused(s, e))
      return;
    if (e->kind == SIM_PP_REPLY) {
      cm_node_pushpull_reply(sn->node, e->req_id, e->data, e->len, s->now);
    } else {
      s->st.streams_failed++;
      cm_node_pushpull_failed(sn->node, e->req_id, s->now);
    }
    free(e->data);
    sim_after_step(s, e->dst);
    return;
  }
}

/* ------------------------------------------------------------ public API */

static int sim_start_node(cm_sim_t *s, uint32_t i) {
  struct sim_node *sn = &s->nodes[i];
  char id[16];
  cm_addr_t addr = cm_sim_addr(i);
  uint64_t seed = s->cfg.seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)i << 20) ^
                  ((uint64_t)sn->inst << 48);
  int rc;
  cm_sim_id(i, id, sizeof(id));
  rc = cm_node_new(&sn->node, &s->cfg.node, id, &addr, NULL, 0, seed, s->now);
  if (rc != 0)
    return rc;
  sn->up = 1;
  sn->leaving = 0;
  sn->paused_until = 0;
  sn->wake_at = CM_TIME_NEVER;
  sim_after_step(s, i);
  return 0;
}

int cm_sim_new(cm_sim_t **out, const cm_sim_config_t *c) {
  cm_sim_t *s;
  uint32_t i;
  int rc;
  if (out == NULL || c == NULL || c->nodes == 0 || c->nodes > SIM_MAX_NODES ||
      c->loss < 0 || c->loss > 1 || c->latency_max < c->latency_min ||
      c->sites > CM_SIM_MAX_SITES || !(c->jitter >= 0 && c->jitter <= 1) ||
      (c->sites > 0 && c->site_rtt_max < c->site_rtt_min))
    return CM_EINVAL;
  if (cm_config_validate(&c->node, NULL) != 0)
    return CM_ECONFIG;
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return CM_ENOMEM;
  s->cfg = *c;
  s->n = c->nodes;
  s->now = CM_SEC(1); /* 0 is "never" for some timestamps */
  cm_rand_seed(&s->rng, c->seed);
  if (c->sites > 0) {
    /* Drawn from their own stream: the run's draws stay as without. */
    cm_rand_t r;
    uint32_t a, b, k = c->sites;
    cm_time_t span = c->site_rtt_max - c->site_rtt_min;
    cm_rand_seed(&r, c->seed ^ 0x5173u);
    s->site_rtt = calloc((size_t)k * k, sizeof(*s->site_rtt));
    if (s->site_rtt == NULL) {
      free(s);
      return CM_ENOMEM;
    }
    for (a = 0; a < k; a++) {
      s->site_rtt[a * k + a] = c->site_rtt;
      for (b = a + 1; b < k; b++)
        s->site_rtt[a * k + b] = s->site_rtt[b * k + a] =
            c->site_rtt_min + (span > 0 ? cm_rand_next(&r) % (span + 1) : 0);
    }
  }
  s->nodes = calloc(s->n, sizeof(*s->nodes));
  if (s->nodes == NULL) {
    free(s->site_rtt);
    free(s);
    return CM_ENOMEM;
  }
  for (i = 0; i < s->n; i++) {
    rc = sim_start_node(s, i);
    if (rc != 0) {
      cm_sim_free(s);
      return rc;
    }
  }
  *out = s;
  return 0;
}

void cm_sim_free(cm_sim_t *s) {
  size_t i;
  if (s == NULL)
    return;
  for (i = 0; i < s->n; i++)
    cm_node_free(s->nodes[i].node);
  for (i = 0; i < s->nheap; i++)
    free(s->heap[i].data);
  for (i = 0; i < s->nparts; i++)
    free(s->parts[i].side);
  free(s->parts);
  free(s->heap);
  free(s->nodes);
  free(s->site_rtt);
  free(s);
}

void cm_sim_on_event(cm_sim_t *s, cm_sim_event_fn fn, void *ud) {
  s->on_event = fn;
  s->on_event_ud = ud;
}

void cm_sim_on_send(cm_sim_t *s, cm_sim_rewrite_fn fn, void *ud) {
  s->on_send = fn;
  s->on_send_ud = ud;
}

cm_time_t cm_sim_now(const cm_sim_t *s) { return s->now; }
uint32_t cm_sim_size(const cm_sim_t *s) { return s->n; }

cm_node_t *cm_sim_node(cm_sim_t *s, uint32_t i) {
  return i < s->n && s->nodes[i].up ? s->nodes[i].node : NULL;
}

int cm_sim_is_up(const cm_sim_t *s, uint32_t i) {
  return i < s->n && s->nodes[i].up;
}

int cm_sim_join(cm_sim_t *s, uint32_t i, uint32_t seed_node) {
  cm_addr_t a;
  int rc;
  if (i >= s->n || seed_node >= s->n)
    return CM_EINVAL;
  if (!s->nodes[i].up)
    return CM_ESTATE;
  a = cm_sim_addr(seed_node);
  rc = cm_node_join(s->nodes[i].node, &a, 1, s->now);
  sim_after_step(s, i);
  return rc;
}

int cm_sim_crash(cm_sim_t *s, uint32_t i) {
  if (i >= s->n)
    return CM_EINVAL;
  if (!s->nodes[i].up)
    return CM_ESTATE;
  sim_stop(s, i);
  return 0;
}

int cm_sim_restart(cm_sim_t *s, uint32_t i, uint32_t seed_node) {
  int rc;
  if (i >= s->n || seed_node >= s->n)
    return CM_EINVAL;
  if (s->nodes[i].up)
    return CM_ESTATE;
  rc = sim_start_node(s, i);
  if (rc != 0)
    return rc;
  return seed_node == i ? 0 : cm_sim_join(s, i, seed_node);
}

int cm_sim_pause(cm_sim_t *s, uint32_t i, cm_time_t duration) {
  if (i >= s->n)
    return CM_EINVAL;
  if (!s->nodes[i].up)
    return CM_ESTATE;
  s->nodes[i].paused_until = s->now + duration;
  return 0;
}

int cm_sim_leave(cm_sim_t *s, uint32_t i) {
  int rc;
  if (i >= s->n)
    return CM_EINVAL;
  if (!s->nodes[i].up)
    return CM_ESTATE;
  rc = cm_node_leave(s->nodes[i].node, s->now);
  if (rc != 0)
    return rc;
  s->nodes[i].leaving = 1;
  s->nodes[i].leave_deadline = s->now + s->cfg.leave_grace;
  sim_after_step(s, i);
  return 0;
}

int cm_sim_set_tag(cm_sim_t *s, uint32_t i, const char *key,
                   const char *value) {
  int rc;
  if (i >= s->n)
    return CM_EINVAL;
  if (!s->nodes[i].up)
    return CM_ESTATE;
  rc = cm_node_set_tag(s->nodes[i].node, key, value, s->now);
  sim_after_step(s, i);
  return rc;
}

int cm_sim_partition(cm_sim_t *s, const uint8_t *side, cm_time_t start,
                     cm_time_t end, int oneway) {
  struct sim_part *np;
  uint8_t *copy;
  if (side == NULL || end <= start)
    return CM_EINVAL;
  copy = malloc(s->n);
  if (copy == NULL)
    return CM_ENOMEM;
  memcpy(copy, side, s->n);
  np = realloc(s->parts, (s->nparts + 1) * sizeof(*np));
  if (np == NULL) {
    free(copy);
    return CM_ENOMEM;
  }
  s->parts = np;
  np[s->nparts].start = start;
  np[s->nparts].end = end;
  np[s->nparts].oneway = oneway;
  np[s->nparts].side = copy;
  s->nparts++;
  return 0;
}

void cm_sim_set_loss(cm_sim_t *s, double loss) {
  if (loss >= 0 && loss <= 1)
    s->cfg.loss = loss;
}

/* One push-pull RESPONSE describing every up node as it describes itself. */
static int sim_full_table(cm_sim_t *s, uint8_t **out, size_t *out_len) {
  cm_wbuf_t w;
  size_t cap = 64;
  uint32_t i, first = UINT32_MAX, k;
  int rc;
  for (i = 0; i < s->n; i++) {
    cm_member_info_t info;
    if (!s->nodes[i].up)
      continue;
    if (first == UINT32_MAX)
      first = i;
    cap += CM_ID_MAX + 32;
    if (cm_node_member_find(s->nodes[i].node, cm_node_id(s->nodes[i].node),
                            &info, s->now))
      cap += info.tags_len;
  }
  if (first == UINT32_MAX)
    return CM_ESTATE;
  w.p = malloc(cap);
  if (w.p == NULL)
    return CM_ENOMEM;
  w.cap = cap;
  w.len = 0;
  rc = cm_wire_pp_begin(&w, CM_PP_RESPONSE, CM_PP_FLAG_EXT);
  /* The first entry names the sender: the lowest-numbered up node. */
  for (k = 0; rc == 0 && k <= s->n; k++) {
    cm_member_info_t info;
    cm_pp_entry_t e;
    cm_node_t *node;
    i = k == 0 ? first : k - 1;
    if ((k > 0 && i == first) || i >= s->n || !s->nodes[i].up)
      continue;
    node = s->nodes[i].node;
    if (!cm_node_member_find(node, cm_node_id(node), &info, s->now))
      continue;
    memset(&e, 0, sizeof(e));
    rc = cm_wire_id_set(&e.node, info.id, strlen(info.id));
    if (rc != 0)
      break;
    e.incarnation = info.incarnation;
    e.addr = info.addr;
    e.state = CM_STATE_ALIVE;
    e.tags = info.tags;
    e.tags_len = (uint16_t)info.tags_len;
    e.ext.vmin = info.proto_min;
    e.ext.vmax = info.proto_max;
    rc = cm_wire_pp_add(&w, &e);
  }
  if (rc == 0)
    rc = cm_wire_pp_finish(&w);
  if (rc != 0) {
    free(w.p);
    return rc;
  }
  *out = w.p;
  *out_len = w.len;
  return 0;
}

int cm_sim_bootstrap(cm_sim_t *s) {
  uint8_t *table;
  size_t len;
  uint32_t i;
  int rc = sim_full_table(s, &table, &len);
  if (rc != 0)
    return rc;
  for (i = 0; i < s->n; i++) {
    struct sim_node *sn = &s->nodes[i];
    if (!sn->up)
      continue;
    /* Merged as a join reply would be, except that a formed cluster has
     * nothing left to gossip about its own membership: queueing every
     * member at every node would only replay the formation. */
    rc = cm_node_adopt_table(sn->node, table, len, s->now);
    sim_after_step(s, i);
    if (rc != 0)
      break;
  }
  free(table);
  return rc;
}

uint64_t cm_sim_queued(const cm_sim_t *s) {
  uint64_t total = 0;
  uint32_t i;
  for (i = 0; i < s->n; i++) {
    cm_node_stats_t st;
    if (!s->nodes[i].up)
      continue;
    cm_node_stats(s->nodes[i].node, &st);
    total += st.bcast_queue;
  }
  return total;
}

static int sim_step(cm_sim_t *s, cm_time_t until) {
  struct sim_ev e;
  if (s->nheap == 0 || s->heap[0].at > until)
    return 0;
  sim_pop(s, &e);
  s->now = e.at;
  sim_process(s, &e);
  return 1;
}

void cm_sim_run_until(cm_sim_t *s, cm_time_t t) {
  while (sim_step(s, t))
    ;
  if (t > s->now)
    s->now = t;
}

int cm_sim_run_cond(cm_sim_t *s, cm_time_t deadline,
                    int (*cond)(cm_sim_t *s, void *ud), void *ud) {
  if (cond(s, ud))
    return 1;
  while (sim_step(s, deadline))
    if (cond(s, ud))
      return 1;
  if (deadline > s->now)
    s->now = deadline;
  return cond(s, ud);
}

void cm_sim_stats(const cm_sim_t *s, cm_sim_stats_t *out) { *out = s->st; }

uint32_t cm_sim_count_seeing(cm_sim_t *s, uint32_t id_index, uint8_t state) {
  char id[16];
  uint32_t i, count = 0;
  cm_member_info_t info;
  cm_sim_id(id_index, id, sizeof(id));
  for (i = 0; i < s->n; i++) {
    if (!s->nodes[i].up)
      continue;
    if (cm_node_member_find(s->nodes[i].node, id, &info, s->now) &&
        info.state == state)
      count++;
  }
  return count;
}
