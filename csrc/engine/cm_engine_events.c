/*
 * What leaves the engine thread: the bounded per-node event queue and its
 * eventfd, the registry snapshots readers copy from, and the stats. Every
 * function here may run on any thread; shared state is under the node's
 * lock.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_engine_int.h"
#include "cm_registry.h"

/* --------------------------------------------------------- event queue */

void cm_engine__q_wake(cm_enode_t *n) {
  uint64_t one = 1;
  ssize_t r = write(n->efd, &one, sizeof(one));
  (void)r; /* EAGAIN means the counter is already non-zero: still awake */
}

/* Under the lock, with the queue empty: reset the eventfd. A producer
 * queues under the lock and writes the eventfd after that (under the lock
 * or after releasing it), so an event queued after this read still wakes
 * the consumer. */
static void q_clear_locked(cm_enode_t *n) {
  uint64_t v;
  ssize_t r = read(n->efd, &v, sizeof(v));
  (void)r; /* EAGAIN: already clear */
}

/* Append to the ring; the caller has checked there is room. */
static void q_put_locked(cm_enode_t *n, const cm_eevent_t *ev) {
  n->q[(n->q_head + n->q_len++) % n->q_cap] = *ev;
}

/* The report of dropped events goes before the next event queued, so the
 * consumer learns of the gap where it happened. */
static void q_put_dropped_locked(cm_enode_t *n) {
  cm_eevent_t d;
  memset(&d, 0, sizeof(d));
  d.kind = CM_EEV_DROPPED;
  d.dropped = n->q_dropped;
  n->q_dropped = 0;
  q_put_locked(n, &d);
}

int cm_engine__q_put_locked(cm_enode_t *n, const cm_eevent_t *ev) {
  size_t need = n->q_dropped > 0 ? 2 : 1;
  if (n->q_len + need > n->q_max) {
    n->q_dropped++;
    n->stats.events_dropped++;
    return 0;
  }
  if (n->q_dropped > 0)
    q_put_dropped_locked(n);
  q_put_locked(n, ev);
  return 1;
}

void cm_engine__q_push_locked(cm_enode_t *n, const cm_eevent_t *ev) {
  if (cm_engine__q_put_locked(n, ev))
    cm_engine__q_wake(n);
}

/* The ring holds q_max events, plus what reserved results may add beyond
 * that: q_cap >= max(q_max, q_len) + q_reserved at all times. Member events
 * stop at q_max; a result uses its own reservation, so it always fits. */
static size_t q_needed_locked(const cm_enode_t *n, size_t reserved) {
  return (n->q_len > n->q_max ? n->q_len : n->q_max) + reserved;
}

int cm_engine__q_reserve(cm_enode_t *n) {
  int rc = 0;
  pthread_mutex_lock(&n->lock);
  if (q_needed_locked(n, n->q_reserved + ENGINE_RESULT_SLOTS) > n->q_cap) {
    size_t cap = q_needed_locked(n, n->q_reserved + ENGINE_RESULT_SLOTS), i;
    cm_eevent_t *q = malloc(cap * sizeof(*q));
    if (q == NULL) {
      rc = CM_ENOMEM;
    } else {
      for (i = 0; i < n->q_len; i++)
        q[i] = n->q[(n->q_head + i) % n->q_cap];
      free(n->q);
      n->q = q;
      n->q_head = 0;
      n->q_cap = cap;
    }
  }
  if (rc == 0)
    n->q_reserved += ENGINE_RESULT_SLOTS;
  pthread_mutex_unlock(&n->lock);
  return rc;
}

void cm_engine__q_unreserve(cm_enode_t *n) {
  pthread_mutex_lock(&n->lock);
  n->q_reserved -= ENGINE_RESULT_SLOTS;
  pthread_mutex_unlock(&n->lock);
}

void cm_engine__q_result(cm_enode_t *n, uint8_t kind, uint64_t token,
                         int status) {
  cm_eevent_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = kind;
  ev.token = token;
  ev.status = status;
  pthread_mutex_lock(&n->lock);
  n->q_reserved -= ENGINE_RESULT_SLOTS;
  if (n->q_dropped > 0)
    q_put_dropped_locked(n);
  q_put_locked(n, &ev);
  cm_engine__q_wake(n);
  pthread_mutex_unlock(&n->lock);
}

void cm_eevent_release(cm_eevent_t *ev) {
  if (ev == NULL)
    return;
  free(ev->data);
  ev->data = NULL;
  ev->app.name = NULL;
  ev->app.filter = NULL;
  ev->app.payload = NULL;
}

/* Queue what the core has for the application, each with a copy of its
 * bytes; past the queue's bound they are dropped and counted as member
 * events are. Returns 1 if any was queued. */
int cm_engine__q_app_locked(cm_enode_t *n) {
  cm_app_msg_t m;
  int pushed = 0;
  while (cm_node_poll_app(n->node, &m)) {
    size_t name = m.name != NULL ? m.name_len + 1u : 0;
    cm_eevent_t e;
    uint8_t *p;
    memset(&e, 0, sizeof(e));
    e.kind = CM_EEV_APP;
    e.app = m;
    e.data = malloc(name + m.filter_len + m.payload_len + 1u);
    if (e.data == NULL) {
      n->q_dropped++;
      n->stats.events_dropped++;
      continue;
    }
    p = e.data;
    if (m.name != NULL) {
      memcpy(p, m.name, name);
      e.app.name = (const char *)p;
      p += name;
    }
    if (m.filter_len > 0)
      memcpy(p, m.filter, m.filter_len);
    e.app.filter = m.filter_len > 0 ? p : NULL;
    p += m.filter_len;
    if (m.payload_len > 0)
      memcpy(p, m.payload, m.payload_len);
    e.app.payload = m.payload_len > 0 ? p : NULL;
    if (cm_engine__q_put_locked(n, &e))
      pushed = 1;
    else
      free(e.data);
  }
  return pushed;
}

int cm_enode_next_event(cm_enode_t *n, cm_eevent_t *out) {
  int got = 0;
  pthread_mutex_lock(&n->lock);
  if (n->q_len > 0) {
    *out = n->q[n->q_head];
    n->q_head = (n->q_head + 1) % n->q_cap;
    n->q_len--;
    got = 1;
    /* The last one: clear the eventfd now, so that a consumer draining
     * until it gets no event is not woken once more just to read it. */
    if (n->q_len == 0 && n->q_dropped == 0)
      q_clear_locked(n);
  } else if (n->q_dropped > 0) {
    memset(out, 0, sizeof(*out));
    out->kind = CM_EEV_DROPPED;
    out->dropped = n->q_dropped;
    n->q_dropped = 0;
    got = 1;
  } else {
    q_clear_locked(n);
  }
  pthread_mutex_unlock(&n->lock);
  return got;
}

int cm_enode_event_fd(const cm_enode_t *n) { return n->efd; }

/* ------------------------------------------------------------ snapshots */

/* Searches of a snapshot answered by a scan before it is indexed: building
 * the index costs about as much as this many scans (hashing and placing
 * every id against comparing the ids until a match), so a burst of events
 * pays at most twice the cheaper of the two, and a lone event one scan. */
#define SNAPSHOT_SCANS_BEFORE_INDEX 8

/* Open addressing over the members' positions, at most half full. */
struct cm_snapshot_index {
  uint32_t mask;   /* capacity - 1; the capacity is a power of two */
  uint32_t slot[]; /* member position + 1; 0: empty */
};

void cm_snapshot_release(cm_snapshot_t *s) {
  if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
    free(atomic_load(&s->index));
    free(s);
  }
}

static struct cm_snapshot_index *snapshot_index_build(const cm_snapshot_t *s) {
  struct cm_snapshot_index *x;
  uint32_t cap = 2, i;
  while (cap < 2 * (uint64_t)s->count)
    cap *= 2;
  x = calloc(1, sizeof(*x) + (size_t)cap * sizeof(x->slot[0]));
  if (x == NULL)
    return NULL;
  x->mask = cap - 1;
  /* In order, so of two members with one id (possible only in a snapshot
   * filled by hand) the first is found, as a scan would find it. */
  for (i = 0; i < s->count; i++) {
    const char *id = s->members[i].id;
    uint32_t pos = (uint32_t)cm_id_hash(id, strlen(id)) & x->mask;
    while (x->slot[pos] != 0)
      pos = (pos + 1) & x->mask;
    x->slot[pos] = i + 1;
  }
  return x;
}

static const cm_emember_t *snapshot_scan(const cm_snapshot_t *s,
                                         const char *id) {
  uint32_t i;
  for (i = 0; i < s->count; i++)
    if (strcmp(s->members[i].id, id) == 0)
      return &s->members[i];
  return NULL;
}

const cm_emember_t *cm_snapshot_find(cm_snapshot_t *s, const char *id) {
  struct cm_snapshot_index *x = atomic_load(&s->index), *none = NULL;
  uint32_t pos;
  if (x == NULL) {
    /* Building the index costs several scans; a snapshot searched once
     * or twice (one event) is cheaper to scan. */
    if (atomic_fetch_add(&s->lookups, 1) < SNAPSHOT_SCANS_BEFORE_INDEX)
      return snapshot_scan(s, id);
    x = snapshot_index_build(s);
    if (x == NULL)
      return snapshot_scan(s, id);
    /* Another thread may have indexed it meanwhile: keep the first. */
    if (!atomic_compare_exchange_strong(&s->index, &none, x)) {
      free(x);
      x = none;
    }
  }
  pos = (uint32_t)cm_id_hash(id, strlen(id)) & x->mask;
  for (; x->slot[pos] != 0; pos = (pos + 1) & x->mask)
    if (strcmp(s->members[x->slot[pos] - 1].id, id) == 0)
      return &s->members[x->slot[pos] - 1];
  return NULL;
}

cm_snapshot_t *cm_snapshot_alloc(uint32_t count, size_t tags_len) {
  cm_snapshot_t *s =
      calloc(1, sizeof(cm_snapshot_t) + (size_t)count * sizeof(cm_emember_t) +
                    tags_len);
  if (s == NULL)
    return NULL;
  atomic_init(&s->refs, 1);
  atomic_init(&s->index, NULL);
  atomic_init(&s->lookups, 0);
  s->members = (cm_emember_t *)(s + 1);
  s->count = count;
  return s;
}

/* Layout: header, members, histories, tag bytes; one allocation. */
_Static_assert(sizeof(cm_emember_t) % _Alignof(cm_hist_read_t) == 0,
               "histories follow the members, aligned");
cm_snapshot_t *cm_engine__snapshot_build(cm_node_t *node, const cm_net_t *net,
                                         uint64_t version) {
  uint32_t slots = cm_node_member_slots(node), i, k = 0;
  size_t tags = 0, hists = 0, size;
  cm_member_info_t info;
  cm_time_t now = cm_engine__now();
  cm_snapshot_t *s;
  cm_hist_read_t *hp;
  uint8_t *tp;
  for (i = 0; i < slots; i++)
    if (cm_node_member_get(node, i, &info, now)) {
      tags += info.tags_len;
      hists += info.history;
    }
  size = sizeof(cm_snapshot_t) + (size_t)slots * sizeof(cm_emember_t) +
         hists * sizeof(cm_hist_read_t) + tags;
  s = malloc(size);
  if (s == NULL)
    return NULL;
  atomic_init(&s->refs, 1);
  atomic_init(&s->index, NULL);
  atomic_init(&s->lookups, 0);
  s->members = (cm_emember_t *)(s + 1);
  hp = (cm_hist_read_t *)(s->members + slots);
  tp = (uint8_t *)(hp + hists);
  for (i = 0; i < slots; i++) {
    cm_emember_t *m;
    if (!cm_node_member_get(node, i, &info, now))
      continue;
    m = &s->members[k++];
    memset(m, 0, sizeof(*m));
    strcpy(m->id, info.id);
    m->addr = info.addr;
    m->incarnation = info.incarnation;
    m->state = info.state;
    m->is_self = (uint8_t)info.is_self;
    m->state_change = info.state_change;
    m->phi = info.phi;
    m->has_coord = (uint8_t)info.has_coord;
    m->coord = info.coord;
    m->rtt_samples = info.rtt_samples;
    m->rtt_median_us = info.rtt_median_us;
    m->rtt_p90_us = info.rtt_p90_us;
    m->rtt_max_us = info.rtt_max_us;
    m->last_heard = info.last_heard;
    m->connected = (uint8_t)(net != NULL && !info.is_self &&
                             cm_net_is_connected(net, &info.addr));
    if (info.history > 0) {
      m->hist = hp;
      m->nhist = (uint32_t)cm_node_history(node, info.id, hp, info.history);
      hp += m->nhist;
    }
    m->tags_len = (uint16_t)info.tags_len;
    m->tags = tp;
    if (info.tags_len > 0)
      memcpy(tp, info.tags, info.tags_len);
    tp += info.tags_len;
  }
  s->count = k;
  s->version = version;
  return s;
}

cm_snapshot_t *cm_enode_snapshot(cm_enode_t *n) {
  cm_snapshot_t *s;
  pthread_mutex_lock(&n->lock);
  s = n->snap;
  if (s != NULL)
    atomic_fetch_add(&s->refs, 1);
  pthread_mutex_unlock(&n->lock);
  return s;
}

void cm_enode_stats(cm_enode_t *n, cm_enode_stats_t *out) {
  pthread_mutex_lock(&n->lock);
  *out = n->stats;
  pthread_mutex_unlock(&n->lock);
}

cm_addr_t cm_enode_addr(const cm_enode_t *n) { return n->addr; }

int cm_enode_running(cm_enode_t *n) {
  int r;
  pthread_mutex_lock(&n->lock);
  r = n->running;
  pthread_mutex_unlock(&n->lock);
  return r;
}
