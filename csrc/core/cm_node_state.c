/*
 * The member table: per-state counters, the suspect list, and the
 * application of merge decisions (cm_merge) to news about a member,
 * whichever path brought it.
 */
#include <stdlib.h>
#include <string.h>

#include "cm_merge.h"
#include "cm_node_int.h"

void cm_node__count_state(cm_node_t *n, uint8_t state, int delta) {
  uint32_t *c = NULL;
  switch (state) {
  case CM_STATE_ALIVE:
    c = &n->st.alive;
    break;
  case CM_STATE_SUSPECT:
    c = &n->st.suspect;
    break;
  case CM_STATE_FAILED:
    c = &n->st.failed;
    break;
  case CM_STATE_LEFT:
    c = &n->st.left;
    break;
  }
  if (c != NULL)
    *c = (uint32_t)((int64_t)*c + delta);
}

void cm_node__suspect_moved(void *ud, uint32_t slot, uint32_t pos) {
  cm_node__m((cm_node_t *)ud, slot)->ext->susp_pos = pos;
}

/* Move a member to a state, keeping counters and the suspicion bookkeeping
 * consistent. */
void cm_node__set_state(cm_node_t *n, uint32_t slot, uint8_t state,
                        cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  if (m->state == CM_STATE_SUSPECT && state != CM_STATE_SUSPECT &&
      m->ext != NULL && m->ext->susp != NULL) {
    m->ext->susp_last_n = m->ext->susp->n;
    m->ext->susp_ended = now;
    cm_theap_remove(&n->suspects, m->ext->susp_pos);
    free(m->ext->susp);
    m->ext->susp = NULL;
  }
  cm_node__count_state(n, m->state, -1);
  m->state = state;
  cm_node__count_state(n, state, +1);
  m->state_change = now;
}

/* The versions m advertises, relayed as known. */
void cm_node__ext_of(const cm_member_t *m, cm_wire_ext_t *x) {
  memset(x, 0, sizeof(*x));
  x->vmin = m->vmin;
  x->vmax = m->vmax;
}

/* Versions belong to an incarnation: taken with it, kept when a relay did
 * not carry them. */
static void node_keep_ext(cm_member_t *m, const cm_wire_ext_t *x) {
  if (x->vmin == 0)
    return;
  m->vmin = x->vmin;
  m->vmax = x->vmax;
}

/* ------------------------------------------------------------ membership */

/* Incarnations saturate: UINT32_MAX is the last one, and nothing adds to it.
 * Wrapping to 0 would make a refutation or tag change older than what every
 * peer holds, so they would ignore it and keep this node failed until they
 * reaped it. cm_merge drops (and this node counts) an accusation that would
 * put a member there and a refutation that would pass it
 * (docs/protocol.md, "Incarnations saturate"). */
static void node_refute(cm_node_t *n, uint32_t accused_inc, cm_time_t now) {
  cm_member_t *self = cm_node__self(n);
  /* Not 0: cm_merge checked that one is left. */
  self->incarnation =
      cm_merge_refute_incarnation(accused_inc, self->incarnation);
  n->st.refutations++;
  /* Being accused means our messages are not getting through in time: the
   * local-health score rises so we probe less aggressively (Lifeguard). */
  cm_node__awareness(n, +1);
  cm_node__broadcast(n, n->self, CM_MSG_ALIVE, CM_PRIO_HIGH, self->incarnation,
                     n->self, now);
  cm_bcast_mark_vital(&n->bq, n->self, CM_BCAST_VITAL_OWN);
}

static void node_order_insert(cm_node_t *n, uint32_t slot) {
  uint32_t pos;
  /* Already due in the rest of this round (it went and came back before
   * its turn): once is enough. Without this, a member that flaps would be
   * added once per return, growing the order without bound and taking
   * every probe period from the others. O(rest of the round), paid only
   * when a member comes back. */
  for (pos = n->order_pos; pos < n->order_len; pos++)
    if (n->order[pos] == slot)
      return;
  if (n->order_len == n->order_cap) {
    uint32_t ncap = n->order_cap ? n->order_cap * 2 : 16;
    uint32_t *no = realloc(n->order, ncap * sizeof(*no));
    if (no == NULL)
      return; /* the next round's rebuild includes it */
    n->order = no;
    n->order_cap = ncap;
  }
  /* A random position in the rest of this round, so a newcomer is probed
   * within one round without skewing the order (SWIM's round-robin). */
  pos = n->order_pos + cm_rand_below(&n->rng, n->order_len - n->order_pos + 1);
  n->order[n->order_len++] = n->order[pos];
  n->order[pos] = slot;
}

static int tags_equal(const uint8_t *a, size_t alen, const uint8_t *b,
                      size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* News about a member, whichever path brought it: a datagram, a push-pull
 * entry, the table a join is answered with. */
typedef struct node_news {
  uint8_t kind; /* enum cm_news_kind */
  uint32_t incarnation;
  const char *id;
  size_t id_len;
  const cm_msg_alive_t *alive; /* CM_NEWS_ALIVE: the record */
  const char *from;            /* suspicions and dead records: the accuser */
  size_t from_len;
  /* A conviction taken as an accusation (cm_node__accuse): its subject is
   * told directly; it is not gossiped, where it would be a suspicion that
   * others saw coming. */
  uint8_t from_verdict;
} node_news_t;

/* quiet: a member new to us is not queued for gossip (cm_node_adopt_table). */
static void node_add(cm_node_t *n, const cm_msg_alive_t *a, cm_time_t now,
                     int quiet) {
  int32_t slot;
  cm_member_t *m;
  /* A full registry makes room by forgetting its oldest tombstone: a live
   * newcomer matters more than the memory of one long gone. */
  if (n->reg.count >= n->cfg.max_members && !cm_node__evict_tombstone(n, now)) {
    n->st.drop_limit++;
    return;
  }
  slot = cm_registry_add(&n->reg, a->node.s, a->node.len);
  if (slot < 0)
    return;
  m = cm_node__m(n, (uint32_t)slot);
  if (cm_member_set_tags(m, a->tags, a->tags_len) != 0) {
    cm_registry_remove(&n->reg, (uint32_t)slot);
    return;
  }
  cm_registry_set_addr(&n->reg, (uint32_t)slot, &a->addr);
  node_keep_ext(m, &a->ext);
  m->incarnation = a->incarnation;
  m->state = CM_STATE_ALIVE;
  m->state_change = now;
  cm_node__count_state(n, CM_STATE_ALIVE, +1);
  node_order_insert(n, (uint32_t)slot);
  if (!quiet)
    cm_node__broadcast(n, (uint32_t)slot, CM_MSG_ALIVE, CM_PRIO_NORMAL,
                       a->incarnation, 0, now);
  cm_node__event(n, CM_EV_JOINED, m, NULL, now);
}

/* Two processes claim one id; reported once per member (every time about
 * ourselves), so a duel of incarnations never starts. About ourselves, the
 * other address is asked whether a live process there answers to our id. */
void cm_node__conflict(cm_node_t *n, uint32_t slot, const cm_addr_t *other,
                       cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  if (slot != n->self) {
    if (m->conflict_reported)
      return;
    m->conflict_reported = 1;
  }
  n->st.conflicts++;
  cm_node__event(n, CM_EV_CONFLICT, m, other, now);
  if (slot == n->self)
    cm_node__id_check_start(n, other, now);
}

static void node_take_alive(cm_node_t *n, uint32_t slot,
                            const cm_msg_alive_t *a, int addr_changed,
                            int tags_changed, cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  uint8_t old;
  if (tags_changed && cm_member_set_tags(m, a->tags, a->tags_len) != 0)
    return;
  old = m->state;
  m->incarnation = a->incarnation;
  node_keep_ext(m, &a->ext);
  cm_registry_set_addr(&n->reg, slot, &a->addr);
  m->conflict_reported = 0;
  if (old != CM_STATE_ALIVE)
    cm_node__set_state(n, slot, CM_STATE_ALIVE, now);
  if (old == CM_STATE_FAILED || old == CM_STATE_LEFT)
    node_order_insert(n, slot);
  if (old == CM_STATE_FAILED && cm_member_ext(m) != NULL)
    m->ext->recovered = now;
  cm_node__broadcast(n, slot, CM_MSG_ALIVE,
                     tags_changed ? CM_PRIO_HIGH : CM_PRIO_NORMAL,
                     a->incarnation, 0, now);
  /* It clears a suspicion: a member that misses it keeps a timer that will
   * declare a live member failed (docs/protocol.md, "Dissemination"). */
  if (old == CM_STATE_SUSPECT)
    cm_bcast_mark_vital(&n->bq, slot, CM_BCAST_VITAL_OWN);
  if (addr_changed)
    cm_node__event(n, CM_EV_ADDR_CHANGED, m, NULL, now);
  if (old == CM_STATE_LEFT)
    cm_node__event(n, CM_EV_JOINED, m, NULL, now);
  else if (old != CM_STATE_ALIVE)
    cm_node__event(n, CM_EV_RECOVERED, m, NULL, now);
  if (tags_changed && old != CM_STATE_LEFT)
    cm_node__event(n, CM_EV_TAGS_UPDATED, m, NULL, now);
}

/* A SUSPECT of m in its own name (no accuser), sent to m alone, in a packet
 * of its own: m refutes it if it lives. */
static void node_send_suspect_to_subject(cm_node_t *n, uint32_t slot) {
  const cm_member_t *m = cm_node__m(n, slot);
  cm_msg_t msg;
  memset(&msg, 0, sizeof(msg));
  msg.type = CM_MSG_SUSPECT;
  cm_wire_id_set(&msg.u.suspect.node, cm_member_id(m), m->id_len);
  msg.u.suspect.incarnation = m->incarnation;
  cm_wire_id_set(&msg.u.suspect.from, cm_member_id(m), m->id_len);
  cm_node__send_bare(n, &m->addr, &msg, 1);
}

/* An independent accuser of a suspect shortens the timeout; the news is
 * passed on so others count it too. The first accuser named for a
 * suspicion learnt from a table shortens nothing (it is likely the one whose
 * accusation the table passed on) but is passed on: this node never
 * gossiped the suspicion it holds. */
static void node_confirm(cm_node_t *n, uint32_t slot, const node_news_t *x,
                         cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  int32_t accuser = cm_registry_find(&n->reg, x->from, x->from_len);
  int rc;
  /* The incarnation held stays (as memberlist's does): a confirmation at a
   * higher one means its subject refuted and was accused again, and the
   * refutation, if it comes second, must still be taken (alive needs a
   * strictly higher incarnation). The news goes on as it came. */
  if (m->ext == NULL || m->ext->susp == NULL)
    return;
  /* A conviction at a higher one is not a refutation passed by: its
   * subject was convicted there, and an alive record of that incarnation
   * must not clear the suspicion (rule 3). */
  if (x->from_verdict && x->incarnation > m->incarnation)
    m->incarnation = x->incarnation;
  /* This node's own probe (or its helpers' nacks) cannot be what a table
   * passed on: it counts even against a suspicion with no accuser named. */
  rc = cm_suspicion_confirm(m->ext->susp, cm_id_hash(x->from, x->from_len), now,
                            n->in_probe_end != 0);
  if (rc == 0)
    return;
  if (rc == CM_SUSPICION_COUNTED) {
    cm_theap_update(&n->suspects, m->ext->susp_pos,
                    cm_suspicion_deadline(m->ext->susp));
    /* The cause cm_node__accuse set names this confirmer. */
    cm_node__hist_record(n, slot, CM_EV_CONFIRMED, now);
  }
  /* A helper's nack (in_probe_end 2) confirms here only: passed on, it
   * would be an accusation in the helper's name that the helper never
   * made, and would take the place of ours in the broadcast queue. The
   * failure this node declares at the minimum is the news. */
  if (x->from_verdict)
    node_send_suspect_to_subject(n, slot);
  else if (accuser >= 0 && n->in_probe_end != 2)
    cm_node__broadcast(n, slot, CM_MSG_SUSPECT, CM_PRIO_NORMAL, x->incarnation,
                       (uint32_t)accuser, now);
}

/* Subjects of a table's suspect records told directly per push-pull; the
 * others' suspicions are gossiped in their subjects' names. */
#define CM_PP_TELLS_MAX 16

/* Tell m that it is suspected, in its own name (no accuser): directly, in a
 * packet of its own (queued updates riding along would all go to the
 * suspects of one table, likely crashed), for the first CM_PP_TELLS_MAX of
 * a push-pull; otherwise by gossip, bounded by the broadcast queue. */
static void node_tell_subject(cm_node_t *n, uint32_t slot, cm_time_t now) {
  if (!n->in_pushpull || n->pp_tells >= CM_PP_TELLS_MAX) {
    cm_node__broadcast(n, slot, CM_MSG_SUSPECT, CM_PRIO_NORMAL,
                       cm_node__m(n, slot)->incarnation, slot, now);
    return;
  }
  n->pp_tells++;
  node_send_suspect_to_subject(n, slot);
}

/* This node, its local health score above 0 (a probe of its failed with a
 * nack missing, it was accused, it stalled), reached a member again: the
 * suspicions it holds may have been raised, or gossiped, where their
 * subjects could not hear (a node cut off suspects those it cannot reach,
 * and its gossip goes nowhere). Each subject is told directly, in its own name
 * (which counts as no accuser anywhere), so that a live one refutes before this
 * node's timer convicts it. At most CM_PP_TELLS_MAX per call: the first entries
 * of the deadline heap (the soonest first; the rest in no set order). */
void cm_node__tell_suspects(cm_node_t *n) {
  size_t i;
  for (i = 0; i < n->suspects.len && i < CM_PP_TELLS_MAX; i++)
    node_send_suspect_to_subject(n, n->suspects.e[i].id);
}

static void node_start_suspicion(cm_node_t *n, uint32_t slot,
                                 const node_news_t *x, cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  /* A table's record, or a SUSPECT in its subject's name, names no accuser
   * (CM_NEWS_UNNAMED_SUSPECT, CM_NEWS_PP_FAILED). */
  int named = x->kind == CM_NEWS_SUSPECT;
  int32_t accuser =
      named ? cm_registry_find(&n->reg, x->from, x->from_len) : -1;
  uint64_t from_hash = named ? cm_id_hash(x->from, x->from_len) : 0;
  uint32_t k, live;
  cm_time_t min;
  if (cm_member_ext(m) == NULL)
    return;
  live = cm_node__live_count(n);
  k = n->cfg.suspicion_confirmations;
  /* Too few others to confirm: do not wait for confirmations. Nor for a
   * conviction not seen coming: its suspicion ran its course where this
   * node could not see it; here it lasts the shortest timeout, the time for
   * its subject, told at once, to refute. */
  if (live < k + 2 || x->from_verdict)
    k = 0;
  min = cm_suspicion_min(&n->cfg, live);
  m->ext->susp =
      cm_suspicion_new(now, k, min, min * (cm_time_t)n->cfg.suspicion_max_mult,
                       named ? &from_hash : NULL);
  if (m->ext->susp == NULL)
    return;
  if (cm_theap_push(&n->suspects, cm_suspicion_deadline(m->ext->susp), slot) !=
      0) {
    free(m->ext->susp);
    m->ext->susp = NULL;
    return;
  }
  m->incarnation = x->incarnation;
  /* cm_node__set_state frees susp when leaving SUSPECT only: set it directly.
   */
  cm_node__count_state(n, m->state, -1);
  m->state = CM_STATE_SUSPECT;
  cm_node__count_state(n, CM_STATE_SUSPECT, +1);
  m->state_change = now;
  n->st.suspicions++;
  /* Gossiped in its accuser's name. A suspicion that names none (a table's
   * record, or one gossiped so) is passed on in its subject's name, which
   * names none: in the table's sender's it would count, wherever the
   * original accusation is held, as a second accuser who never accused. The
   * subject must hear it and refute: the original accusation's gossip is
   * often over, and whoever holds it (a node back from a partition,
   * typically) would otherwise convict a live member at its timeout. One
   * started by a conviction not seen coming is told to its subject only:
   * gossiped, it would be a suspicion others saw coming, and their
   * convictions would convict. */
  if (x->from_verdict) {
    m->ext->susp->from_verdict = 1;
    node_send_suspect_to_subject(n, slot);
  } else if (named && accuser >= 0) {
    cm_node__broadcast(n, slot, CM_MSG_SUSPECT, CM_PRIO_NORMAL, x->incarnation,
                       (uint32_t)accuser, now);
  } else if (!named) {
    node_tell_subject(n, slot, now);
  }
  cm_node__event(n, CM_EV_SUSPECT, m, NULL, now);
}

/* A member declared gone: failed by a dead record, left by a leave; or, if
 * already gone, its incarnation raised (CM_MERGE_RAISE), the state kept. */
static void node_gone(cm_node_t *n, uint32_t slot, const node_news_t *x,
                      int raise, cm_time_t now) {
  cm_member_t *m = cm_node__m(n, slot);
  int leave = x->kind == CM_NEWS_LEAVE;
  uint32_t aux = n->self;
  if (leave) {
    aux = 0;
  } else {
    int32_t accuser = cm_registry_find(&n->reg, x->from, x->from_len);
    if (accuser >= 0)
      aux = (uint32_t)accuser;
  }
  m->incarnation = x->incarnation;
  if (!raise)
    cm_node__set_state(n, slot, leave ? CM_STATE_LEFT : CM_STATE_FAILED, now);
  cm_node__broadcast(n, slot, leave ? CM_MSG_LEAVE : CM_MSG_DEAD,
                     leave ? CM_PRIO_CRITICAL : CM_PRIO_NORMAL, x->incarnation,
                     aux, now);
  if (!raise)
    cm_node__event(n, leave ? CM_EV_LEFT : CM_EV_FAILED, m, NULL, now);
}

/* An alive record at the incarnation we hold, from the address we hold:
 * nothing to merge, but if what we hold came through a relay that dropped
 * the versions, this one may carry them. Not news: no broadcast, no event. */
static void node_fill_versions(cm_node_t *n, uint32_t slot,
                               const cm_msg_alive_t *a) {
  cm_member_t *m;
  if (a == NULL || slot == CM_NO_SLOT || slot == n->self)
    return;
  m = cm_node__m(n, slot);
  if (m->vmin == 0 && a->incarnation == m->incarnation &&
      m->state == CM_STATE_ALIVE && cm_addr_eq(&a->addr, &m->addr))
    node_keep_ext(m, &a->ext);
}

/* Apply news about a member with the one merge rule (cm_merge). */
static void node_merge(cm_node_t *n, const node_news_t *x, cm_time_t now,
                       int quiet) {
  int32_t found = cm_registry_find(&n->reg, x->id, x->id_len);
  uint32_t slot = found >= 0 ? (uint32_t)found : CM_NO_SLOT;
  const cm_msg_alive_t *a = x->alive;
  cm_merge_held_t h;
  cm_merge_news_t nw;
  memset(&h, 0, sizeof(h));
  memset(&nw, 0, sizeof(nw));
  nw.kind = x->kind;
  nw.incarnation = x->incarnation;
  if (slot != CM_NO_SLOT) {
    const cm_member_t *m = cm_node__m(n, slot);
    h.known = 1;
    h.is_self = slot == n->self;
    h.leaving = n->leaving;
    h.state = m->state;
    h.incarnation = m->incarnation;
    if (a != NULL) {
      nw.other_addr = !cm_addr_eq(&a->addr, &m->addr);
      nw.other_tags = !tags_equal(a->tags, a->tags_len, m->tags, m->tags_len);
    }
  }
  switch (cm_merge(&h, &nw)) {
  case CM_MERGE_DROP_UNKNOWN:
    n->st.drop_unknown++;
    break;
  case CM_MERGE_DROP_INCARNATION:
    n->st.drop_incarnation++;
    break;
  case CM_MERGE_ADD:
    node_add(n, a, now, quiet);
    break;
  case CM_MERGE_CONFLICT:
    cm_node__conflict(n, slot, &a->addr, now);
    break;
  case CM_MERGE_ALIVE:
    node_take_alive(n, slot, a, nw.other_addr, nw.other_tags, now);
    break;
  case CM_MERGE_SUSPECT:
    node_start_suspicion(n, slot, x, now);
    break;
  case CM_MERGE_CONFIRM:
    node_confirm(n, slot, x, now);
    break;
  case CM_MERGE_FAIL:
  case CM_MERGE_LEAVE:
    node_gone(n, slot, x, 0, now);
    break;
  case CM_MERGE_RAISE:
    node_gone(n, slot, x, 1, now);
    break;
  case CM_MERGE_REFUTE:
    node_refute(n, x->incarnation, now);
    break;
  case CM_MERGE_IGNORE:
    node_fill_versions(n, slot, a);
    break;
  default:
    break;
  }
}

void cm_node__alive(cm_node_t *n, const cm_msg_alive_t *a, cm_time_t now,
                    int quiet) {
  node_news_t x;
  memset(&x, 0, sizeof(x));
  x.kind = CM_NEWS_ALIVE;
  x.incarnation = a->incarnation;
  x.id = a->node.s;
  x.id_len = a->node.len;
  x.alive = a;
  cm_node__hist_cause(n, CM_HIST_ALIVE, NULL, 0);
  node_merge(n, &x, now, quiet);
  cm_node__hist_cause(n, 0, NULL, 0);
}

/* Whether the accuser from/from_len was across a cut from this node: it
 * holds it failed, or took it back from failed less than a suspicion's
 * longest timeout ago. Such an accuser's suspicion ran where this node
 * could not see it, and its subject (whom this node may have heard from
 * all along) was never told. */
static int node_accuser_cut_off(cm_node_t *n, const char *from, size_t from_len,
                                cm_time_t now) {
  int32_t a = cm_registry_find(&n->reg, from, from_len);
  const cm_member_t *m;
  cm_time_t window;
  if (a < 0)
    return 0;
  m = cm_node__m(n, (uint32_t)a);
  if (m->state == CM_STATE_FAILED)
    return 1;
  if (m->ext == NULL || m->ext->recovered == 0)
    return 0;
  window = cm_suspicion_min(&n->cfg, cm_node__live_count(n)) *
           (cm_time_t)n->cfg.suspicion_max_mult;
  return now - m->ext->recovered < window;
}

/* Whether a conviction (a DEAD in the name from/from_len) of the member
 * id/id_len is only an accusation here. It is taken as the verdict it is
 * where this node saw it coming: it has held the subject suspect for at
 * least half the shortest timeout (time for the subject, told as this node
 * was, to have refuted), on a suspicion that was not itself started by
 * such a conviction, and the accuser was not across a cut from it
 * (node_accuser_cut_off). Otherwise the suspicion may have run, or been
 * held back, where its subject could not hear it: the subject is suspected
 * here in the accuser's name, or the accuser confirms the suspicion held,
 * and the subject is told directly, so that a live one refutes; a dead one
 * is convicted by this node's own timer, the shortest timeout after a
 * conviction of a member held alive. */
static int node_verdict_unseen(cm_node_t *n, const char *id, size_t id_len,
                               const char *from, size_t from_len,
                               cm_time_t now) {
  int32_t s = cm_registry_find(&n->reg, id, id_len);
  const cm_member_t *m;
  const cm_suspicion_t *susp;
  if (s < 0 || (uint32_t)s == n->self)
    return 0;
  m = cm_node__m(n, (uint32_t)s);
  if (m->state == CM_STATE_ALIVE)
    return 1;
  if (m->state != CM_STATE_SUSPECT)
    return 0;
  susp = m->ext != NULL ? m->ext->susp : NULL;
  return (susp != NULL &&
          (susp->from_verdict || now - susp->start < susp->min / 2)) ||
         node_accuser_cut_off(n, from, from_len, now);
}

/* An accusation (suspect, dead or push-pull failed record) or a leave. */
void cm_node__accuse(cm_node_t *n, uint8_t kind, const char *id, size_t id_len,
                     uint32_t inc, const char *from, size_t from_len,
                     cm_time_t now) {
  node_news_t x;
  memset(&x, 0, sizeof(x));
  x.kind = kind;
  x.incarnation = inc;
  x.id = id;
  x.id_len = id_len;
  x.from = from;
  x.from_len = from_len;
  /* A conviction this node did not see coming is an accusation here. */
  if (kind == CM_NEWS_DEAD && from != NULL &&
      node_verdict_unseen(n, id, id_len, from, from_len, now)) {
    x.kind = CM_NEWS_SUSPECT;
    x.from_verdict = 1;
  }
  /* A SUSPECT whose accuser is its subject names none (node_start_suspicion
   * gossips a table's record so), nor does such a conviction taken as one. */
  if (x.kind == CM_NEWS_SUSPECT && from != NULL && from_len == id_len &&
      memcmp(from, id, id_len) == 0) {
    x.kind = CM_NEWS_UNNAMED_SUSPECT;
    x.from = from = NULL;
    x.from_len = from_len = 0;
  }
  /* Our own probe's failure says so (n->in_probe_end), or a helper it asked
   * (n->in_probe_end == 2): news that names us as its accuser and came back
   * over the wire is gossip like any other. */
  if (kind == CM_NEWS_LEAVE)
    cm_node__hist_cause(n, CM_HIST_LEAVE, NULL, 0);
  else
    cm_node__hist_cause(n,
                        n->in_probe_end == 2 ? CM_HIST_NACK
                        : n->in_probe_end    ? CM_HIST_PROBE
                        : n->in_pushpull     ? CM_HIST_PUSHPULL
                                             : CM_HIST_GOSSIP,
                        from, from_len);
  node_merge(n, &x, now, 0);
  cm_node__hist_cause(n, 0, NULL, 0);
}

/* Declare failed the suspects whose time has come. */
void cm_node__check_suspects(cm_node_t *n, cm_time_t now) {
  while (cm_theap_min(&n->suspects) <= now) {
    uint32_t slot = n->suspects.e[0].id;
    cm_member_t *m = cm_node__m(n, slot);
    uint32_t inc = m->incarnation;
    n->st.failures_declared++;
    cm_node__hist_cause(n, CM_HIST_TIMEOUT, NULL, 0);
    cm_node__set_state(n, slot, CM_STATE_FAILED, now); /* leaves the heap */
    cm_node__broadcast(n, slot, CM_MSG_DEAD, CM_PRIO_NORMAL, inc, n->self, now);
    cm_node__event(n, CM_EV_FAILED, m, NULL, now);
  }
}
