/*
 * The merge rule: what a node does with news about a member, given what it
 * holds. One pure function decides for every path that brings news (a
 * datagram's ALIVE, SUSPECT, DEAD and LEAVE, a push-pull entry, the table a
 * join is answered with); cm_node_state.c only carries the action out.
 * docs/protocol.md ("Conflict rules") states the rules and names their tests.
 */
#ifndef CM_MERGE_H
#define CM_MERGE_H

#include "cm_wire.h"

/* What this node holds about the news' subject. */
typedef struct cm_merge_held {
  uint8_t known;   /* 0: not in the table; the fields below are ignored */
  uint8_t is_self; /* the subject is this node */
  uint8_t leaving; /* is_self only: this node is leaving */
  uint8_t state;   /* enum cm_state */
  uint32_t incarnation;
} cm_merge_held_t;

enum cm_news_kind {
  CM_NEWS_ALIVE = 1,
  CM_NEWS_SUSPECT = 2,
  CM_NEWS_DEAD = 3,
  CM_NEWS_LEAVE = 4,
  /* A push-pull entry in state failed: we have not seen the failure
   * ourselves, so about a member held alive it is a suspicion
   * (CM_NEWS_UNNAMED_SUSPECT); about one held failed or left it is a dead
   * record. */
  CM_NEWS_PP_FAILED = 5,
  /* A suspicion naming no accuser: a push-pull entry in state suspect (a
   * table says what its sender holds, not who accused: the sender may only
   * be passing on the accusation we hold already), or a SUSPECT whose
   * accuser is its subject, which is how such a suspicion is told to its
   * subject and passed on. It starts a suspicion of a member held alive,
   * with no accuser named, and confirms none (Lifeguard counts independent
   * accusers only). */
  CM_NEWS_UNNAMED_SUSPECT = 6,
};

typedef struct cm_merge_news {
  uint8_t kind;       /* enum cm_news_kind */
  uint8_t other_addr; /* alive: at another address than the one held */
  uint8_t other_tags; /* alive: with other tags than those held */
  uint32_t incarnation;
} cm_merge_news_t;

enum cm_merge_action {
  CM_MERGE_IGNORE = 0,       /* older or no news */
  CM_MERGE_DROP_UNKNOWN,     /* accusation of a member not held: counted */
  CM_MERGE_DROP_INCARNATION, /* implausible or unanswerable at the last
                                incarnation: counted */
  CM_MERGE_ADD,              /* a new member, alive */
  CM_MERGE_CONFLICT,         /* another process claims the id: report it */
  CM_MERGE_ALIVE,            /* alive at the news' incarnation, address, tags */
  CM_MERGE_SUSPECT,          /* alive -> suspect: a suspicion starts */
  CM_MERGE_CONFIRM,          /* already suspect: a confirmation; the
                                incarnation held stays */
  CM_MERGE_FAIL,             /* alive or suspect -> failed */
  CM_MERGE_LEAVE,            /* -> left */
  CM_MERGE_RAISE,            /* gone member: the incarnation rises to the
                                news', the state stays, the record is passed
                                on */
  CM_MERGE_REFUTE,           /* about this node: alive at max(i, own) + 1 */
};

/* The largest step by which one piece of news may raise a member's
 * incarnation. Honest members raise theirs by one per tag change or
 * refutation; a record more than this above the one held (2^24, about
 * 16.7 million changes since the two last met) can only come from a forger
 * or a fault, and taking it would carry the member most of the way to the
 * last incarnation, where it could no longer refute. Such news about
 * another member is dropped and counted (CM_MERGE_DROP_INCARNATION); about
 * this node, the refutation climbs at most half this step at a time
 * (cm_merge_refute_incarnation), so peers still holding the incarnation we
 * had accept it. docs/protocol.md, "Incarnations saturate". */
#define CM_INC_STEP_MAX (UINT32_C(1) << 24)

/* The action for news about a member held as held. Pure. */
int cm_merge(const cm_merge_held_t *held, const cm_merge_news_t *news);

/* The incarnation a refutation announces, given the news' incarnation and
 * our own: one above the higher of the two, but at most
 * CM_INC_STEP_MAX / 2 + 1 above our own; 0 if none is left (cm_merge
 * then says CM_MERGE_DROP_INCARNATION). Pure. */
uint32_t cm_merge_refute_incarnation(uint32_t news_inc, uint32_t own);

/* Order two push-pull entries about one id: > 0 if a ranks above b, < 0 if
 * below, 0 if they are the same record. Higher incarnation first, then left >
 * failed > suspect > alive (the order in which the rules let one state
 * override another at equal incarnation), then address and tags bytes, so
 * any two different records are ordered. A push-pull naming an id more than
 * once is merged as if it held only the highest of them. Pure. */
int cm_merge_entry_cmp(const cm_pp_entry_t *a, const cm_pp_entry_t *b);

#endif
