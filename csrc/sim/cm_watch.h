/*
 * Scenario instrumentation for the simulator: an observer on the event hook
 * that keeps, in C, what scenarios ask about thousands of nodes after every
 * step (who sees everyone alive, when each node first saw a subject suspect,
 * failed, left or carrying a tag, how many events of each type), so a
 * condition check costs O(1) instead of a scan of every registry.
 *
 * A watch owns the simulator's event hook. Times are virtual microseconds
 * (cm_sim_now); 0 means "not yet".
 */
#ifndef CM_WATCH_H
#define CM_WATCH_H

#include "cm_sim.h"

typedef struct cm_watch cm_watch_t;

/* What cm_watch_run waits for. */
enum cm_watch_cond {
  CM_WATCH_CONVERGED = 1, /* every up node sees every node alive */
  CM_WATCH_ALL_SEE,       /* every up node but the subject sees it in state */
  CM_WATCH_ANY_SEES,      /* at least one up node sees the subject in state */
  CM_WATCH_TAG_FRACTION,  /* this fraction of up observers see the tag */
  CM_WATCH_NONE,          /* nothing: run to the deadline */
};

typedef struct cm_watch_event {
  cm_time_t time;
  uint32_t observer;
  uint32_t subject; /* UINT32_MAX if the member is not a simulated node */
  uint32_t incarnation;
  uint8_t type;  /* enum cm_event_type */
  uint8_t state; /* member state after the event */
} cm_watch_event_t;

#define CM_WATCH_NSTATES 4 /* alive, suspect, failed, left */
#define CM_WATCH_NTYPES 10 /* event types 0..9 */
#define CM_WATCH_NO_SUBJECT UINT32_MAX

/* Attach a watch to s (replacing its event hook). Errors: CM_EINVAL,
 * CM_ENOMEM. */
int cm_watch_new(cm_watch_t **out, cm_sim_t *s);
/* Detach from the simulator and free. */
void cm_watch_free(cm_watch_t *w);

/* Keep every event in a log (off by default: a 10,000-node formation
 * reports about 10^8 of them). */
void cm_watch_set_log(cm_watch_t *w, int on);
size_t cm_watch_log_len(const cm_watch_t *w);
const cm_watch_event_t *cm_watch_log(const cm_watch_t *w);
void cm_watch_log_clear(cm_watch_t *w);

/* Follow one node: from now on, record when each observer first sees it in
 * each state, and (if key is not NULL) first sees its tag key=value.
 * Resets earlier subject records. Errors: CM_EINVAL, CM_ETAGKEY (key too
 * long), CM_ENOMEM. */
int cm_watch_subject(cm_watch_t *w, uint32_t subject, const char *key,
                     const char *value);
/* Recompute the up set and every count from the registries: call after a
 * command that changes which nodes are up (crash, restart, leave). */
void cm_watch_refresh(cm_watch_t *w);

/* Run until the condition holds or the deadline passes; 1 if it holds.
 * state: enum cm_state for ALL_SEE / ANY_SEES; fraction for TAG_FRACTION. */
int cm_watch_run(cm_watch_t *w, cm_time_t deadline, int cond, uint8_t state,
                 double fraction);
/* Whether the condition holds now. */
int cm_watch_holds(cm_watch_t *w, int cond, uint8_t state, double fraction);

/* Per-node records (arrays of cm_sim_size entries, 0 = not yet):
 * when the node first saw all nodes alive since the last reset; when it
 * first saw the subject in state; when it first saw the subject's tag. */
const cm_time_t *cm_watch_converged_at(const cm_watch_t *w);
void cm_watch_reset_converged(cm_watch_t *w);
const cm_time_t *cm_watch_first_seen(const cm_watch_t *w, uint8_t state);
const cm_time_t *cm_watch_tag_seen(const cm_watch_t *w);
/* Live counts: up nodes, up nodes seeing all alive, up observers seeing
 * the subject in state, up observers seeing the tag. */
uint32_t cm_watch_up(const cm_watch_t *w);
uint32_t cm_watch_converged(const cm_watch_t *w);
uint32_t cm_watch_seeing(const cm_watch_t *w, uint8_t state);
uint32_t cm_watch_tagged(const cm_watch_t *w);
/* Events of each type seen since the watch started or the last reset. */
const uint64_t *cm_watch_event_counts(const cm_watch_t *w);
void cm_watch_reset_counts(cm_watch_t *w);

#endif
