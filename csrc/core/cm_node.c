/*
 * A node's lifecycle and public API: creation, join and leave, tags, the
 * tick that runs every timer, the next deadline, and reads of the member
 * table. The work is done in cm_node_state.c, cm_node_probe.c,
 * cm_node_out.c, cm_node_pp.c and cm_node_reap.c (cm_node_int.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cm_node_int.h"

/* --------------------------------------------------------------- timers */

void cm_node_tick(cm_node_t *n, cm_time_t now) {
  cm_time_t due;
  if (n == NULL)
    return;
  /* A tick later than its deadline by more than a probe timeout means the
   * node itself stalled; any less is ordinary scheduling noise. */
  due = cm_node_next_deadline(n);
  if (due != CM_TIME_NEVER && now > due + n->cfg.probe_timeout)
    cm_node__stalled(n, now - due);
  cm_node__expire_forwards(n, now);
  cm_node__id_check_expire(n, now);
  cm_node__queries_expire(n, now);
  if (n->probe.active) {
    if (!n->probe.acked && !n->probe.indirect && now >= n->probe.timeout_at)
      cm_node__probe_indirect(n, now);
    if (now >= n->probe.end_at)
      cm_node__probe_end(n, now);
  }
  cm_node__check_suspects(n, now);
  if (!n->leaving && now >= n->next_probe) {
    cm_node__start_probe(n, now);
    n->next_probe = now + cm_node__scaled(n, n->cfg.probe_interval);
  }
  if (now >= n->next_gossip) {
    cm_node__gossip(n, now);
    n->next_gossip = now + n->cfg.gossip_interval;
  }
  if (!n->leaving && now >= n->next_pushpull) {
    uint32_t peer;
    int followup = n->pushpull_after_followup > now;
    n->followup_req = 0;
    if (cm_node__pick(n, 1, cm_node__filter_alive, CM_NO_SLOT, now, &peer) ==
            1 &&
        cm_node__pp_request(n, &cm_node__m(n, peer)->addr, 0) == 0 && followup)
      n->followup_req = n->next_req_id;
    if (followup) {
      /* A follow-up: the periodic one stays where it was (and a follow-up
       * that brings news may be followed up again before it). */
      n->next_pushpull = n->pushpull_after_followup;
    } else {
      n->next_pushpull =
          now + cm_pushpull_scaled(&n->cfg, cm_node__live_count(n));
      n->pushpull_after_followup = 0;
    }
  }
  if (!n->leaving && now >= n->next_reconnect) {
    cm_node__reconnect(n, now);
    n->next_reconnect = now + n->cfg.reconnect_interval;
  }
  if (now >= n->next_reap) {
    cm_node__reap(n, now);
    n->next_reap = now + CM_REAP_PERIOD;
  }
}

static cm_time_t min_t(cm_time_t a, cm_time_t b) { return a < b ? a : b; }

cm_time_t cm_node_next_deadline(const cm_node_t *n) {
  cm_time_t d = CM_TIME_NEVER;
  uint32_t i;
  if (n == NULL)
    return d;
  if (!n->leaving) {
    d = min_t(d, n->next_probe);
    d = min_t(d, n->next_pushpull);
    d = min_t(d, n->next_reconnect);
  }
  if (n->probe.active) {
    if (!n->probe.acked && !n->probe.indirect)
      d = min_t(d, n->probe.timeout_at);
    d = min_t(d, n->probe.end_at);
  }
  if (cm_node__news_pending(n))
    d = min_t(d, n->next_gossip);
  d = min_t(d, n->next_reap);
  if (n->idcheck.state == CM_IDCHECK_PENDING)
    d = min_t(d, n->idcheck.deadline);
  for (i = 0; i < CM_FWD_MAX; i++)
    if (n->fwd[i].active) {
      d = min_t(d, n->fwd[i].deadline);
      if (n->fwd[i].want_nack && !n->fwd[i].nacked)
        d = min_t(d, n->fwd[i].nack_at);
    }
  d = min_t(d, cm_theap_min(&n->suspects));
  d = min_t(d, cm_node__queries_deadline(n));
  return d;
}

/* ------------------------------------------------------------ public API */

int cm_node_check_tags(const cm_node_t *n, const uint8_t *blob, size_t len) {
  size_t off = 0;
  cm_tag_t t;
  if (len > 0 && blob == NULL)
    return CM_EINVAL;
  if (len > n->cfg.max_tags_size)
    return CM_ETAGSET;
  if (cm_tags_validate(blob, len) != 0)
    return CM_ETAGSET;
  while (cm_tags_next(blob, len, &off, &t)) {
    if (t.key_len > n->cfg.max_tag_key)
      return CM_ETAGKEY;
    if (t.value_len > n->cfg.max_tag_value)
      return CM_ETAGVAL;
  }
  return 0;
}

/* From a LAN's fraction of a millisecond to a probe timeout's seconds,
 * about three to a decade (Prometheus's default buckets, shifted down). */
const double cm_rtt_bucket_bounds[CM_RTT_BUCKETS] = {
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,  0.5,    1.0,   2.5,  INFINITY};

/* A first deadline for a periodic timer: between half a period and one,
 * uniformly (periods up to days do not fit cm_rand_below's 32 bits). */
static cm_time_t node_phase(cm_node_t *n, cm_time_t period) {
  cm_time_t half = period / 2;
  return half + cm_rand_next(&n->rng) % (half + 1);
}

int cm_node_new(cm_node_t **out, const cm_config_t *cfg, const char *id,
                const cm_addr_t *addr, const uint8_t *tags, size_t tags_len,
                uint64_t seed, cm_time_t now) {
  cm_node_t *n;
  cm_member_t *self;
  int32_t slot;
  int rc;
  size_t idlen;
  if (out == NULL || cfg == NULL)
    return CM_EINVAL;
  *out = NULL;
  if (cm_config_validate(cfg, NULL) != 0)
    return CM_ECONFIG;
  idlen = id ? strnlen(id, CM_ID_MAX + 1) : 0;
  if (!cm_id_valid(id, idlen))
    return CM_ENODEID;
  if (!cm_addr_valid(addr))
    return CM_EADDR;
  n = calloc(1, sizeof(*n));
  if (n == NULL)
    return CM_ENOMEM;
  n->cfg = *cfg;
  rc = cm_node_check_tags(n, tags, tags_len);
  if (rc != 0) {
    free(n);
    return rc;
  }
  cm_rand_seed(&n->rng, seed);
  /* Its own stream: coordinates never change the protocol's draws. */
  cm_coord_client_init(&n->coord, seed ^ 0x9e3779b97f4a7c15ULL);
  n->coord_rtt_slot = CM_NO_SLOT;
  cm_registry_init(&n->reg);
  cm_bcast_init(&n->bq, cfg->max_broadcast_queue);
  cm_node__uev_init(n, now);
  cm_theap_init(&n->suspects, cm_node__suspect_moved, n);
  n->pkt = malloc(cfg->max_packet_size);
  slot = cm_registry_add(&n->reg, id, idlen);
  if (n->pkt == NULL || slot < 0) {
    cm_node_free(n);
    return CM_ENOMEM;
  }
  n->self = (uint32_t)slot;
  n->reg.m[slot].vmin = CM_WIRE_VERSION_MIN;
  /* Version 2 is the coordinates: a node without them speaks 1, so that
   * no one sends it a COORD it would only skip. */
  n->reg.m[slot].vmax = cfg->coordinates ? CM_WIRE_VERSION_MAX : 1;
  cm_registry_set_addr(&n->reg, n->self, addr);
  self = cm_node__self(n);
  self->state = CM_STATE_ALIVE;
  self->state_change = now;
  if (cm_member_set_tags(self, tags, tags_len) != 0) {
    cm_node_free(n);
    return CM_ENOMEM;
  }
  cm_node__count_state(n, CM_STATE_ALIVE, +1);
  /* Timers start at a random phase so nodes started together do not probe,
   * gossip, reconnect or reap in lockstep, nor on whole seconds of the
   * clock that started them. */
  n->next_probe = now + cm_rand_below(&n->rng, (uint32_t)cfg->probe_interval);
  n->next_gossip = now + cm_rand_below(&n->rng, (uint32_t)cfg->gossip_interval);
  n->next_pushpull = now + node_phase(n, cfg->pushpull_interval);
  n->next_reconnect = now + node_phase(n, cfg->reconnect_interval);
  n->next_reap = now + node_phase(n, CM_REAP_PERIOD);
  cm_node__broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, 0, n->self, now);
  *out = n;
  return 0;
}

void cm_node_free(cm_node_t *n) {
  size_t i;
  if (n == NULL)
    return;
  for (i = 0; i < n->nstreams; i++)
    free(n->streams[i].data);
  free(n->streams);
  cm_registry_free(&n->reg);
  cm_bcast_free(&n->bq);
  cm_node__uev_free(n);
  free(n->order);
  cm_theap_free(&n->suspects);
  free(n->pkt);
  free(n->arena);
  free(n->dgs);
  free(n->events);
  free(n);
}

const cm_config_t *cm_node_config(const cm_node_t *n) { return &n->cfg; }

int cm_node_join(cm_node_t *n, const cm_addr_t *seeds, size_t nseeds,
                 cm_time_t now) {
  size_t i;
  int rc;
  (void)now;
  if (n == NULL || (seeds == NULL && nseeds > 0))
    return CM_EINVAL;
  if (n->leaving)
    return CM_ESTATE;
  for (i = 0; i < nseeds; i++)
    if (!cm_addr_valid(&seeds[i]))
      return CM_EADDR;
  for (i = 0; i < nseeds; i++) {
    if (cm_addr_eq(&seeds[i], &cm_node__self(n)->addr))
      continue;
    rc = cm_node__pp_request(n, &seeds[i], 1);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int cm_node_leave(cm_node_t *n, cm_time_t now) {
  cm_member_t *self;
  if (n == NULL)
    return CM_EINVAL;
  if (n->leaving)
    return 0;
  n->leaving = 1;
  self = cm_node__self(n);
  cm_node__set_state(n, n->self, CM_STATE_LEFT, now);
  n->probe.active = 0;
  cm_node__broadcast(n, n->self, CM_MSG_LEAVE, CM_PRIO_CRITICAL,
                     self->incarnation, 0, now);
  return 0;
}

int cm_node_leave_done(const cm_node_t *n) {
  const cm_bcast_item_t *it;
  if (!n->leaving)
    return 0;
  if (cm_node__live_count(n) == 0)
    return 1;
  it = cm_bcast_peek_key(&n->bq, n->self);
  return it == NULL || it->kind != CM_MSG_LEAVE;
}

int cm_node_set_tags(cm_node_t *n, const uint8_t *blob, size_t len,
                     cm_time_t now) {
  cm_member_t *self;
  int rc;
  if (n == NULL)
    return CM_EINVAL;
  if (n->leaving)
    return CM_ESTATE;
  rc = cm_node_check_tags(n, blob, len);
  if (rc != 0)
    return rc;
  self = cm_node__self(n);
  if (self->incarnation == UINT32_MAX)
    return CM_ELIMIT; /* no later incarnation to announce it with */
  rc = cm_member_set_tags(self, blob, len);
  if (rc != 0)
    return rc;
  self->incarnation++;
  cm_node__broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, self->incarnation,
                     n->self, now);
  cm_node__event(n, CM_EV_TAGS_UPDATED, self, NULL, now);
  return 0;
}

int cm_node_set_tag(cm_node_t *n, const char *key, const char *value,
                    cm_time_t now) {
  uint8_t buf[CM_WIRE_MAX_TAGS_LEN];
  size_t klen, vlen, len;
  cm_member_t *self;
  int rc;
  if (n == NULL || key == NULL || value == NULL)
    return CM_EINVAL;
  klen = strlen(key);
  vlen = strlen(value);
  if (klen == 0 || klen > n->cfg.max_tag_key || !cm_tag_key_valid(key, klen))
    return CM_ETAGKEY;
  if (vlen > n->cfg.max_tag_value)
    return CM_ETAGVAL;
  self = cm_node__self(n);
  rc = cm_tags_set(self->tags, self->tags_len, key, klen, value, vlen, buf,
                   sizeof(buf), &len);
  if (rc == CM_ENOSPC)
    return CM_ETAGSET;
  if (rc != 0)
    return rc;
  return cm_node_set_tags(n, buf, len, now);
}

int cm_node_remove_tag(cm_node_t *n, const char *key, cm_time_t now) {
  uint8_t buf[CM_WIRE_MAX_TAGS_LEN];
  size_t len;
  cm_member_t *self;
  int rc;
  if (n == NULL || key == NULL)
    return CM_EINVAL;
  self = cm_node__self(n);
  rc = cm_tags_remove(self->tags, self->tags_len, key, strlen(key), buf,
                      sizeof(buf), &len);
  if (rc != 0)
    return rc;
  return cm_node_set_tags(n, buf, len, now);
}

uint32_t cm_node_member_slots(const cm_node_t *n) { return n->reg.high; }

static int node_u32_cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Percentiles of the direct round trips held, and when it was last heard
 * from (phi's last arrival). */
static void node_rtt_info(const cm_member_t *m, cm_member_info_t *info) {
  uint32_t s[16];
  size_t k;
  info->rtt_samples = info->rtt_median_us = info->rtt_p90_us =
      info->rtt_max_us = 0;
  info->last_heard = 0;
  if (m->ext == NULL)
    return;
  if (m->ext->phi != NULL)
    info->last_heard = m->ext->phi->last;
  k = m->ext->rtt != NULL ? m->ext->rtt->n : 0;
  if (k == 0)
    return;
  memcpy(s, m->ext->rtt->ring, k * sizeof(s[0]));
  qsort(s, k, sizeof(s[0]), node_u32_cmp);
  info->rtt_samples = (uint32_t)k;
  info->rtt_median_us = s[(k - 1) / 2];
  info->rtt_p90_us = s[(9 * k + 9) / 10 - 1];
  info->rtt_max_us = s[k - 1];
}

int cm_node_member_get(const cm_node_t *n, uint32_t slot,
                       cm_member_info_t *info, cm_time_t now) {
  const cm_member_t *m;
  if (slot >= n->reg.high || !n->reg.m[slot].in_use)
    return 0;
  m = &n->reg.m[slot];
  info->id = cm_member_id(m);
  info->addr = m->addr;
  info->incarnation = m->incarnation;
  info->state = m->state;
  info->tags = m->tags;
  info->tags_len = m->tags_len;
  info->state_change = m->state_change;
  info->phi = cm_node__phi(n, m, now);
  info->is_self = slot == n->self;
  info->proto_min = m->vmin;
  info->proto_max = m->vmax;
  info->has_coord = cm_node__coord_of(n, slot, &info->coord);
  info->history =
      m->ext != NULL && m->ext->hist != NULL ? m->ext->hist->len : 0;
  node_rtt_info(m, info);
  return 1;
}

int cm_node_member_find(const cm_node_t *n, const char *id,
                        cm_member_info_t *info, cm_time_t now) {
  int32_t s = cm_registry_find(&n->reg, id, strnlen(id, CM_ID_MAX + 1));
  if (s < 0)
    return 0;
  return cm_node_member_get(n, (uint32_t)s, info, now);
}

int cm_node_has_member_at(cm_node_t *n, const cm_addr_t *addr) {
  uint32_t cursor = 0;
  int32_t s;
  if (addr == NULL || cm_registry_index_addrs(&n->reg) != 0)
    return 0;
  while ((s = cm_registry_find_addr(&n->reg, addr, &cursor)) >= 0)
    if ((uint32_t)s != n->self &&
        cm_node__m(n, (uint32_t)s)->state != CM_STATE_LEFT)
      return 1;
  return 0;
}

void cm_node_stats(const cm_node_t *n, cm_node_stats_t *out) {
  *out = n->st;
  out->members = n->reg.count;
  out->incarnation = n->reg.m[n->self].incarnation;
  out->health = n->awareness;
  out->bcast_queue = cm_bcast_len(&n->bq);
  out->updates_dropped +=
      n->bq.dropped + n->ue.relay.dropped + n->qs.relay.dropped;
  out->user_event_queue = cm_bcast_len(&n->ue.relay);
  out->query_queue = cm_bcast_len(&n->qs.relay);
  out->coord_updates = n->coord.updates;
  out->coord_rejected = n->coord.rejected;
  out->coord_resets = n->coord.resets;
}

const char *cm_node_id(const cm_node_t *n) {
  return cm_member_id(&n->reg.m[n->self]);
}

const cm_addr_t *cm_node_addr(const cm_node_t *n) {
  return &n->reg.m[n->self].addr;
}

const char *cm_state_name(uint8_t state) {
  static const char *const names[] = {"alive", "suspect", "failed", "left"};
  return state < 4 ? names[state] : "unknown";
}

const char *cm_event_name(uint8_t type) {
  static const char *const names[] = {
      "?",    "joined", "suspect",  "failed", "recovered",
      "left", "tags",   "conflict", "reaped", "addr_changed"};
  return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}
