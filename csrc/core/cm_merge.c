#include "cm_merge.h"

#include <string.h>

static int merge_gone(uint8_t state) {
  return state == CM_STATE_FAILED || state == CM_STATE_LEFT;
}

uint32_t cm_merge_refute_incarnation(uint32_t news_inc, uint32_t own) {
  uint64_t inc = news_inc > own ? news_inc : own;
  uint64_t cap = (uint64_t)own + CM_INC_STEP_MAX / 2;
  if (inc > cap)
    inc = cap;
  return inc >= UINT32_MAX ? 0 : (uint32_t)inc + 1;
}

/* About this node: answer with a later incarnation, if there is one. */
static int merge_refute(uint32_t news_inc, uint32_t own) {
  return cm_merge_refute_incarnation(news_inc, own) == 0
             ? CM_MERGE_DROP_INCARNATION
             : CM_MERGE_REFUTE;
}

/* News about another member far above the incarnation held. */
static int merge_too_far(const cm_merge_held_t *h, uint32_t i) {
  return !h->is_self &&
         (uint64_t)i > (uint64_t)h->incarnation + CM_INC_STEP_MAX;
}

static int merge_alive(const cm_merge_held_t *h, const cm_merge_news_t *x) {
  uint32_t i = x->incarnation, j = h->incarnation;
  if (!h->known)
    return CM_MERGE_ADD;
  if (merge_too_far(h, i))
    return CM_MERGE_DROP_INCARNATION;
  if (h->is_self) {
    /* Someone else uses our id. Refuting would start a duel of
     * incarnations; it is reported, and peers keep the address they know. */
    if (x->other_addr)
      return i >= j ? CM_MERGE_CONFLICT : CM_MERGE_IGNORE;
    if (h->leaving || i < j || (i == j && !x->other_tags))
      return CM_MERGE_IGNORE;
    return merge_refute(i, j);
  }
  /* A live member cannot move: two processes claim one id. */
  if (x->other_addr && !merge_gone(h->state))
    return i >= j ? CM_MERGE_CONFLICT : CM_MERGE_IGNORE;
  return i > j ? CM_MERGE_ALIVE : CM_MERGE_IGNORE;
}

int cm_merge(const cm_merge_held_t *h, const cm_merge_news_t *x) {
  uint32_t i = x->incarnation, j = h->incarnation;
  uint8_t kind = x->kind;
  if (kind == CM_NEWS_ALIVE)
    return merge_alive(h, x);
  if (!h->known)
    return CM_MERGE_DROP_UNKNOWN;
  if (i < j)
    return CM_MERGE_IGNORE;
  /* Honest peers accuse at the incarnation they hold, and the subject could
   * not refute an accusation at the last one: implausible. */
  if ((i == UINT32_MAX && j < UINT32_MAX) || merge_too_far(h, i))
    return CM_MERGE_DROP_INCARNATION;
  if (h->is_self)
    return h->leaving ? CM_MERGE_IGNORE : merge_refute(i, j);
  if (kind == CM_NEWS_PP_FAILED)
    kind = merge_gone(h->state) ? CM_NEWS_DEAD : CM_NEWS_UNNAMED_SUSPECT;
  switch (kind) {
  case CM_NEWS_UNNAMED_SUSPECT:
    return h->state == CM_STATE_ALIVE ? CM_MERGE_SUSPECT : CM_MERGE_IGNORE;
  case CM_NEWS_SUSPECT:
    if (h->state == CM_STATE_SUSPECT)
      return CM_MERGE_CONFIRM;
    return h->state == CM_STATE_ALIVE ? CM_MERGE_SUSPECT : CM_MERGE_IGNORE;
  case CM_NEWS_DEAD:
    if (merge_gone(h->state))
      return i > j ? CM_MERGE_RAISE : CM_MERGE_IGNORE;
    return CM_MERGE_FAIL;
  case CM_NEWS_LEAVE:
    /* Left is final for its incarnation and overrides failed. */
    if (h->state == CM_STATE_LEFT)
      return i > j ? CM_MERGE_RAISE : CM_MERGE_IGNORE;
    return CM_MERGE_LEAVE;
  }
  return CM_MERGE_IGNORE;
}

static int merge_cmp_u(uint64_t a, uint64_t b) { return (a > b) - (a < b); }

/* The rank of a state at equal incarnation: the one a node keeps when it
 * hears both. */
static int merge_state_rank(uint8_t state) {
  switch (state) {
  case CM_STATE_SUSPECT:
    return 1;
  case CM_STATE_FAILED:
    return 2;
  case CM_STATE_LEFT:
    return 3;
  default:
    return 0;
  }
}

static int merge_cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b,
                           size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n > 0 ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c > 0 ? 1 : -1;
  return merge_cmp_u(alen, blen);
}

int cm_merge_entry_cmp(const cm_pp_entry_t *a, const cm_pp_entry_t *b) {
  int c = merge_cmp_u(a->incarnation, b->incarnation);
  if (c == 0)
    c = merge_cmp_u((uint64_t)merge_state_rank(a->state),
                    (uint64_t)merge_state_rank(b->state));
  if (c == 0)
    c = merge_cmp_u(a->addr.family, b->addr.family);
  if (c == 0)
    c = merge_cmp_bytes(a->addr.ip, sizeof(a->addr.ip), b->addr.ip,
                        sizeof(b->addr.ip));
  if (c == 0)
    c = merge_cmp_u(a->addr.port, b->addr.port);
  if (c == 0)
    c = merge_cmp_bytes(a->tags, a->tags_len, b->tags, b->tags_len);
  return c;
}
