#include "cm_watch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_UNKNOWN 0xff /* observer does not know the subject */

struct cm_watch {
  cm_sim_t *sim;
  uint32_t n;
  int log_on;
  cm_watch_event_t *log;
  size_t log_len, log_cap;
  uint64_t counts[CM_WATCH_NTYPES];

  uint8_t *up;   /* node i is up (as of the last refresh) */
  uint8_t *conv; /* node i sees all n alive */
  cm_time_t *conv_at;
  uint32_t nup, nconv;

  uint32_t subject;
  char subject_id[16];
  char *key, *value;
  size_t key_len, value_len;
  uint8_t *sstate; /* observer's view of the subject */
  cm_time_t *first[CM_WATCH_NSTATES];
  cm_time_t *tag_at;
  uint32_t nseeing[CM_WATCH_NSTATES];
  uint32_t ntagged;
};

static int watch_has_tag(cm_watch_t *w, cm_node_t *node) {
  cm_member_info_t info;
  cm_tag_t t;
  if (w->key == NULL ||
      !cm_node_member_find(node, w->subject_id, &info, cm_sim_now(w->sim)))
    return 0;
  return cm_tags_get(info.tags, info.tags_len, w->key, w->key_len, &t) &&
         t.value_len == w->value_len &&
         memcmp(t.value, w->value, w->value_len) == 0;
}

static void watch_conv_update(cm_watch_t *w, uint32_t i, cm_node_t *node) {
  cm_node_stats_t st;
  uint8_t now_conv;
  cm_node_stats(node, &st);
  now_conv = st.alive == w->n;
  if (now_conv == w->conv[i])
    return;
  w->conv[i] = now_conv;
  if (now_conv) {
    w->nconv++;
    if (w->conv_at[i] == 0)
      w->conv_at[i] = cm_sim_now(w->sim);
  } else {
    w->nconv--;
  }
}

static void watch_subject_update(cm_watch_t *w, uint32_t i, uint8_t state,
                                 cm_node_t *node) {
  uint8_t old = w->sstate[i];
  cm_time_t now = cm_sim_now(w->sim);
  if (old != state) {
    if (old < CM_WATCH_NSTATES)
      w->nseeing[old]--;
    if (state < CM_WATCH_NSTATES) {
      w->nseeing[state]++;
      if (w->first[state][i] == 0)
        w->first[state][i] = now;
    }
    w->sstate[i] = state;
  }
  if (w->tag_at[i] == 0 && state == CM_STATE_ALIVE && watch_has_tag(w, node)) {
    w->tag_at[i] = now;
    w->ntagged++;
  }
}

static void watch_on_event(void *ud, uint32_t node, const cm_event_t *ev) {
  cm_watch_t *w = ud;
  cm_node_t *obs = cm_sim_node(w->sim, node);
  uint32_t subject = CM_WATCH_NO_SUBJECT;
  if (ev->type < CM_WATCH_NTYPES)
    w->counts[ev->type]++;
  if (!cm_sim_index_of(w->sim, &ev->addr, &subject))
    subject = CM_WATCH_NO_SUBJECT;
  if (w->log_on) {
    if (w->log_len == w->log_cap) {
      size_t ncap = w->log_cap ? w->log_cap * 2 : 1024;
      cm_watch_event_t *nl = realloc(w->log, ncap * sizeof(*nl));
      if (nl != NULL) {
        w->log = nl;
        w->log_cap = ncap;
      }
    }
    if (w->log_len < w->log_cap) {
      cm_watch_event_t *e = &w->log[w->log_len++];
      e->time = ev->time;
      e->observer = node;
      e->subject = subject;
      e->incarnation = ev->incarnation;
      e->type = ev->type;
      e->state = ev->state;
    }
  }
  if (obs == NULL || node >= w->n || !w->up[node])
    return;
  watch_conv_update(w, node, obs);
  if (w->subject != CM_WATCH_NO_SUBJECT && subject == w->subject &&
      node != w->subject && strcmp(ev->id, w->subject_id) == 0)
    watch_subject_update(
        w, node, ev->type == CM_EV_REAPED ? WATCH_UNKNOWN : ev->state, obs);
}

int cm_watch_new(cm_watch_t **out, cm_sim_t *s) {
  cm_watch_t *w;
  uint32_t n;
  int st;
  if (out == NULL || s == NULL)
    return CM_EINVAL;
  n = cm_sim_size(s);
  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return CM_ENOMEM;
  w->sim = s;
  w->n = n;
  w->subject = CM_WATCH_NO_SUBJECT;
  w->up = calloc(n, 1);
  w->conv = calloc(n, 1);
  w->sstate = malloc(n);
  w->conv_at = calloc(n, sizeof(cm_time_t));
  w->tag_at = calloc(n, sizeof(cm_time_t));
  if (w->up == NULL || w->conv == NULL || w->sstate == NULL ||
      w->conv_at == NULL || w->tag_at == NULL) {
    cm_watch_free(w);
    return CM_ENOMEM;
  }
  for (st = 0; st < CM_WATCH_NSTATES; st++) {
    w->first[st] = calloc(n, sizeof(cm_time_t));
    if (w->first[st] == NULL) {
      cm_watch_free(w);
      return CM_ENOMEM;
    }
  }
  memset(w->sstate, WATCH_UNKNOWN, n);
  cm_watch_refresh(w);
  cm_sim_on_event(s, watch_on_event, w);
  *out = w;
  return 0;
}

void cm_watch_free(cm_watch_t *w) {
  int st;
  if (w == NULL)
    return;
  if (w->sim != NULL)
    cm_sim_on_event(w->sim, NULL, NULL);
  for (st = 0; st < CM_WATCH_NSTATES; st++)
    free(w->first[st]);
  free(w->up);
  free(w->conv);
  free(w->sstate);
  free(w->conv_at);
  free(w->tag_at);
  free(w->key);
  free(w->value);
  free(w->log);
  free(w);
}

void cm_watch_set_log(cm_watch_t *w, int on) { w->log_on = on != 0; }
size_t cm_watch_log_len(const cm_watch_t *w) { return w->log_len; }
const cm_watch_event_t *cm_watch_log(const cm_watch_t *w) { return w->log; }
void cm_watch_log_clear(cm_watch_t *w) { w->log_len = 0; }

static char *watch_strdup(const char *s, size_t *len) {
  char *c;
  *len = strlen(s);
  c = malloc(*len + 1);
  if (c != NULL)
    memcpy(c, s, *len + 1);
  return c;
}

int cm_watch_subject(cm_watch_t *w, uint32_t subject, const char *key,
                     const char *value) {
  char *k = NULL, *v = NULL;
  size_t klen = 0, vlen = 0;
  int st;
  if (subject >= w->n || (key == NULL) != (value == NULL))
    return CM_EINVAL;
  if (key != NULL) {
    if (!cm_tag_key_valid(key, strlen(key)))
      return CM_ETAGKEY;
    k = watch_strdup(key, &klen);
    v = watch_strdup(value, &vlen);
    if (k == NULL || v == NULL) {
      free(k);
      free(v);
      return CM_ENOMEM;
    }
  }
  free(w->key);
  free(w->value);
  w->key = k;
  w->value = v;
  w->key_len = klen;
  w->value_len = vlen;
  w->subject = subject;
  cm_sim_id(subject, w->subject_id, sizeof(w->subject_id));
  memset(w->sstate, WATCH_UNKNOWN, w->n);
  for (st = 0; st < CM_WATCH_NSTATES; st++)
    memset(w->first[st], 0, w->n * sizeof(cm_time_t));
  memset(w->tag_at, 0, w->n * sizeof(cm_time_t));
  cm_watch_refresh(w);
  return 0;
}

void cm_watch_refresh(cm_watch_t *w) {
  cm_time_t now = cm_sim_now(w->sim);
  uint32_t i;
  int st;
  w->nup = w->nconv = w->ntagged = 0;
  for (st = 0; st < CM_WATCH_NSTATES; st++)
    w->nseeing[st] = 0;
  for (i = 0; i < w->n; i++) {
    cm_node_t *node = cm_sim_node(w->sim, i);
    w->up[i] = node != NULL;
    w->conv[i] = 0;
    if (node == NULL)
      continue;
    w->nup++;
    watch_conv_update(w, i, node);
    if (w->subject == CM_WATCH_NO_SUBJECT || i == w->subject)
      continue;
    {
      cm_member_info_t info;
      uint8_t state = WATCH_UNKNOWN;
      if (cm_node_member_find(node, w->subject_id, &info, now))
        state = info.state;
      w->sstate[i] = WATCH_UNKNOWN;
      watch_subject_update(w, i, state, node);
    }
  }
  /* A first sighting stays recorded; the count is of up observers. */
  w->ntagged = 0;
  for (i = 0; i < w->n; i++)
    if (w->up[i] && i != w->subject && w->tag_at[i] != 0)
      w->ntagged++;
}

static uint32_t watch_observers(const cm_watch_t *w) {
  uint32_t obs = w->nup;
  if (w->subject != CM_WATCH_NO_SUBJECT && w->up[w->subject])
    obs--;
  return obs;
}

int cm_watch_holds(cm_watch_t *w, int cond, uint8_t state, double fraction) {
  switch (cond) {
  case CM_WATCH_CONVERGED:
    return w->nup > 0 && w->nconv == w->nup;
  case CM_WATCH_ALL_SEE:
    return state < CM_WATCH_NSTATES && w->subject != CM_WATCH_NO_SUBJECT &&
           watch_observers(w) > 0 && w->nseeing[state] >= watch_observers(w);
  case CM_WATCH_ANY_SEES:
    return state < CM_WATCH_NSTATES && w->nseeing[state] > 0;
  case CM_WATCH_TAG_FRACTION:
    return w->key != NULL && watch_observers(w) > 0 &&
           (double)w->ntagged >= ceil(fraction * watch_observers(w) - 1e-9);
  default:
    return 0;
  }
}

struct watch_run {
  cm_watch_t *w;
  int cond;
  uint8_t state;
  double fraction;
};

static int watch_cond(cm_sim_t *s, void *ud) {
  struct watch_run *r = ud;
  (void)s;
  return cm_watch_holds(r->w, r->cond, r->state, r->fraction);
}

int cm_watch_run(cm_watch_t *w, cm_time_t deadline, int cond, uint8_t state,
                 double fraction) {
  struct watch_run r = {w, cond, state, fraction};
  if (cond == CM_WATCH_NONE) {
    cm_sim_run_until(w->sim, deadline);
    return 1;
  }
  return cm_sim_run_cond(w->sim, deadline, watch_cond, &r);
}

const cm_time_t *cm_watch_converged_at(const cm_watch_t *w) {
  return w->conv_at;
}

void cm_watch_reset_converged(cm_watch_t *w) {
  uint32_t i;
  for (i = 0; i < w->n; i++)
    w->conv_at[i] = w->conv[i] ? cm_sim_now(w->sim) : 0;
}

const cm_time_t *cm_watch_first_seen(const cm_watch_t *w, uint8_t state) {
  return state < CM_WATCH_NSTATES ? w->first[state] : NULL;
}

const cm_time_t *cm_watch_tag_seen(const cm_watch_t *w) { return w->tag_at; }
uint32_t cm_watch_up(const cm_watch_t *w) { return w->nup; }
uint32_t cm_watch_converged(const cm_watch_t *w) { return w->nconv; }

uint32_t cm_watch_seeing(const cm_watch_t *w, uint8_t state) {
  return state < CM_WATCH_NSTATES ? w->nseeing[state] : 0;
}

uint32_t cm_watch_tagged(const cm_watch_t *w) { return w->ntagged; }
const uint64_t *cm_watch_event_counts(const cm_watch_t *w) { return w->counts; }

void cm_watch_reset_counts(cm_watch_t *w) {
  memset(w->counts, 0, sizeof(w->counts));
}
