/*
 * The merge rule (cm_merge) over every combination of what is held and what
 * is heard, against the table in docs/protocol.md ("Conflict rules").
 */
#include "cm_merge.h"
#include "cm_test.h"

enum {
  I = CM_MERGE_IGNORE,
  DU = CM_MERGE_DROP_UNKNOWN,
  DI = CM_MERGE_DROP_INCARNATION,
  AD = CM_MERGE_ADD,
  CF = CM_MERGE_CONFLICT,
  AL = CM_MERGE_ALIVE,
  SU = CM_MERGE_SUSPECT,
  CO = CM_MERGE_CONFIRM,
  FA = CM_MERGE_FAIL,
  LE = CM_MERGE_LEAVE,
  RA = CM_MERGE_RAISE,
  RE = CM_MERGE_REFUTE
};

/* Incarnation of the news against the one held. AT_STEP and PAST_STEP are
 * as far above as one record may carry a member (CM_INC_STEP_MAX) and one
 * more; the last two are at the top of the range: the news reaches the
 * last incarnation, or both are there. */
enum { OLDER, EQUAL, NEWER, AT_STEP, PAST_STEP, TO_LAST, AT_LAST, NREL };
static const uint32_t held_inc[NREL] = {5,         5, 5, 5, 5, UINT32_MAX - 1,
                                        UINT32_MAX};
static const uint32_t news_inc[NREL] = {
    4,          5,         6, 5 + CM_INC_STEP_MAX, 5 + CM_INC_STEP_MAX + 1,
    UINT32_MAX, UINT32_MAX};

/* News about another member, by kind (alive from the held address, alive
 * from another, suspect, dead, leave, push-pull failed, push-pull suspect),
 * held state and older / equal / newer. A push-pull record never confirms a
 * suspicion held: it names no accuser. */
#define NKIND 7
static const uint8_t others[NKIND][4][3] = {
    /* alive */ {{I, I, AL}, {I, I, AL}, {I, I, AL}, {I, I, AL}},
    /* alive, other address */
    {{I, CF, CF}, {I, CF, CF}, {I, I, AL}, {I, I, AL}},
    /* suspect */ {{I, SU, SU}, {I, CO, CO}, {I, I, I}, {I, I, I}},
    /* dead */ {{I, FA, FA}, {I, FA, FA}, {I, I, RA}, {I, I, RA}},
    /* leave */ {{I, LE, LE}, {I, LE, LE}, {I, LE, LE}, {I, I, RA}},
    /* push-pull failed */ {{I, SU, SU}, {I, I, I}, {I, I, RA}, {I, I, RA}},
    /* push-pull suspect */ {{I, SU, SU}, {I, I, I}, {I, I, I}, {I, I, I}},
};

static const char *const kind_names[NKIND] = {
    "alive", "alive-elsewhere", "suspect",   "dead",
    "leave", "pp-failed",       "pp-suspect"};
static const uint8_t kind_news[NKIND] = {
    CM_NEWS_ALIVE, CM_NEWS_ALIVE,     CM_NEWS_SUSPECT,        CM_NEWS_DEAD,
    CM_NEWS_LEAVE, CM_NEWS_PP_FAILED, CM_NEWS_UNNAMED_SUSPECT};

/* The documented action. */
static int expected(int known, int self, int leaving, uint8_t state, int rel,
                    int kind, int other_tags) {
  int accusation = kind >= 2, rel3 = rel == AT_LAST ? EQUAL
                                     : rel >= NEWER ? NEWER
                                                    : rel;
  if (!known)
    return accusation ? DU : AD;
  if (accusation && rel == TO_LAST)
    return DI; /* implausible, whoever it is about */
  if (!self && rel == PAST_STEP)
    return DI; /* too far above what is held, whatever it says */
  if (self) {
    int act;
    if (kind == 1) /* our id claimed elsewhere: reported, never refuted */
      return rel3 == OLDER ? I : CF;
    if (leaving || rel3 == OLDER)
      return I;
    if (kind == 0 && rel3 == EQUAL && !other_tags)
      return I;
    act = RE;
    /* No later incarnation to refute with. */
    if (rel == TO_LAST || rel == AT_LAST)
      act = DI;
    return act;
  }
  return others[kind][state][rel3];
}

CM_TEST(merge_rule_every_combination) {
  int known, self, leaving, rel, kind, other_tags, checked = 0;
  uint8_t state;
  for (known = 0; known < 2; known++)
    for (self = 0; self < 2; self++)
      for (leaving = 0; leaving < 2; leaving++)
        for (state = 0; state < 4; state++)
          for (rel = 0; rel < NREL; rel++)
            for (kind = 0; kind < NKIND; kind++)
              for (other_tags = 0; other_tags < 2; other_tags++) {
                cm_merge_held_t h;
                cm_merge_news_t x;
                int want, got;
                memset(&h, 0, sizeof(h));
                memset(&x, 0, sizeof(x));
                h.known = (uint8_t)known;
                h.is_self = (uint8_t)self;
                h.leaving = (uint8_t)leaving;
                h.state = state;
                h.incarnation = held_inc[rel];
                x.kind = kind_news[kind];
                x.incarnation = news_inc[rel];
                x.other_addr = kind == 1;
                x.other_tags = (uint8_t)other_tags;
                want = expected(known, self, leaving, state, rel, kind,
                                other_tags);
                got = cm_merge(&h, &x);
                if (got != want)
                  cm_test_fail(__FILE__, __LINE__,
                               "known %d self %d leaving %d state %u "
                               "held %u news %s %u other_tags %d: "
                               "action %d, want %d",
                               known, self, leaving, state, h.incarnation,
                               kind_names[kind], x.incarnation, other_tags, got,
                               want);
                checked++;
              }
  CM_CHECK_EQ(checked, 2 * 2 * 2 * 4 * NREL * NKIND * 2);
}

static cm_pp_entry_t entry(uint32_t inc, uint8_t state, uint8_t last,
                           const uint8_t *tags, uint16_t tags_len) {
  cm_pp_entry_t e;
  memset(&e, 0, sizeof(e));
  cm_wire_id_set(&e.node, "x", 1);
  e.incarnation = inc;
  e.state = state;
  e.addr = cm_addr_from_index(last, 7946);
  e.tags = tags;
  e.tags_len = tags_len;
  return e;
}

/* Entries about one id, in ascending rank: incarnation first, then left >
 * failed > suspect > alive, then address and tags. Every pair is ordered,
 * both ways round, and only a record equals itself. */
CM_TEST(merge_entries_of_one_id_are_totally_ordered) {
  static const uint8_t t1[] = {1, 'k', 0, 1, 'a'}, t2[] = {1, 'k', 0, 1, 'b'};
  cm_pp_entry_t e[] = {
      entry(4, CM_STATE_LEFT, 9, NULL, 0),
      entry(5, CM_STATE_ALIVE, 1, NULL, 0),
      entry(5, CM_STATE_ALIVE, 1, t1, sizeof(t1)),
      entry(5, CM_STATE_ALIVE, 1, t2, sizeof(t2)),
      entry(5, CM_STATE_ALIVE, 2, NULL, 0),
      entry(5, CM_STATE_SUSPECT, 1, NULL, 0),
      entry(5, CM_STATE_FAILED, 1, NULL, 0),
      entry(5, CM_STATE_LEFT, 1, NULL, 0),
      entry(6, CM_STATE_ALIVE, 1, NULL, 0),
      entry(UINT32_MAX, CM_STATE_ALIVE, 1, NULL, 0),
  };
  size_t n = sizeof(e) / sizeof(e[0]), i, j;
  for (i = 0; i < n; i++)
    for (j = 0; j < n; j++) {
      int c = cm_merge_entry_cmp(&e[i], &e[j]);
      int want = (i > j) - (i < j);
      if (c != want)
        cm_test_fail(__FILE__, __LINE__, "cmp(e[%zu], e[%zu]) = %d, want %d", i,
                     j, c, want);
    }
}
