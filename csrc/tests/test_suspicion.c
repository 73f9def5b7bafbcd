#include <stdlib.h>

#include "cm_suspicion.h"
#include "cm_test.h"

/* A suspicion accused by `from`. */
static cm_suspicion_t *named(cm_time_t now, uint32_t k, cm_time_t min,
                             cm_time_t max, uint64_t from) {
  return cm_suspicion_new(now, k, min, max, &from);
}

/* memberlist's TestMemberList_ProbeNode_Suspect_Dogpile: suspicion mult 5,
 * max mult 2, interval 100 ms, k = 3 -> 1000, 750, 604, 500 ms. */
CM_TEST(suspicion_timeout_table) {
  cm_time_t min = CM_MSEC(500), max = CM_MSEC(1000);
  CM_CHECK_EQ(cm_suspicion_timeout(min, max, 3, 0), CM_MSEC(1000));
  CM_CHECK_EQ(cm_suspicion_timeout(min, max, 3, 1), CM_MSEC(750));
  CM_CHECK_NEAR((double)cm_suspicion_timeout(min, max, 3, 2), 604e3, 500);
  CM_CHECK_EQ(cm_suspicion_timeout(min, max, 3, 3), CM_MSEC(500));
  /* Never below the minimum, whatever the count. */
  CM_CHECK_EQ(cm_suspicion_timeout(min, max, 3, 10), CM_MSEC(500));
  /* k = 0: nobody to confirm, so the minimum applies at once. */
  CM_CHECK_EQ(cm_suspicion_timeout(min, max, 0, 0), CM_MSEC(500));
}

CM_TEST(suspicion_counts_only_independent_confirmations) {
  cm_suspicion_t *s = named(CM_SEC(10), 3, CM_MSEC(500), CM_MSEC(1000), 111);
  CM_CHECK(s != NULL);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(1000));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 111, CM_SEC(10), 0),
              0); /* the first accuser */
  CM_CHECK_EQ(cm_suspicion_confirm(s, 222, CM_SEC(10), 0), 1);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 222, CM_SEC(10), 0), 0); /* repeated */
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(750));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 333, CM_SEC(10), 0), 1);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 444, CM_SEC(10), 0), 1);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(500));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 555, CM_SEC(10), 0), 0); /* k reached */
  CM_CHECK_EQ(s->n, 3);
  free(s);
}

/* A suspicion learnt from a push-pull table names no accuser: the first one
 * heard of becomes its origin and shortens nothing (it is likely the one
 * whose accusation the table passed on); the next distinct one counts. */
CM_TEST(suspicion_from_a_table_counts_its_first_accuser_as_origin) {
  cm_suspicion_t *s =
      cm_suspicion_new(CM_SEC(10), 1, CM_MSEC(500), CM_MSEC(1000), NULL);
  CM_CHECK(s != NULL);
  CM_CHECK_EQ(s->nfrom, 0);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(1000));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 111, CM_SEC(10), 0), CM_SUSPICION_ORIGIN);
  CM_CHECK_EQ(s->n, 0);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(1000));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 111, CM_SEC(10), 0), 0);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 222, CM_SEC(10), 0),
              CM_SUSPICION_COUNTED);
  free(s);
  /* This node's own probe is independent: it counts, and the origin stays
   * to be named by the next accuser heard. */
  s = cm_suspicion_new(CM_SEC(10), 1, CM_MSEC(500), CM_MSEC(1000), NULL);
  CM_CHECK(s != NULL);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 999, CM_SEC(10), 1),
              CM_SUSPICION_COUNTED);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(500));
  CM_CHECK_EQ(cm_suspicion_confirm(s, 999, CM_SEC(10), 0), 0);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 111, CM_SEC(10), 0), CM_SUSPICION_ORIGIN);
  CM_CHECK_EQ(s->nfrom, 2); /* k + 1 */
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(500));
  free(s);
}

/* A confirmation that arrives after the timeout it shortens to has run out
 * makes the suspicion due when it arrived, never earlier. */
CM_TEST(suspicion_late_confirmation_is_due_when_it_arrives) {
  cm_suspicion_t *s = named(CM_SEC(10), 1, CM_MSEC(500), CM_MSEC(1000), 111);
  CM_CHECK(s != NULL);
  CM_CHECK_EQ(cm_suspicion_confirm(s, 222, CM_SEC(10) + CM_MSEC(800), 0), 1);
  CM_CHECK_EQ(cm_suspicion_deadline(s), CM_SEC(10) + CM_MSEC(800));
  free(s);
}

/* A suspicion has room for k + 1 accusers and k is clamped to MAX_K: more
 * accusers than that are not counted (nor written past the end, which the
 * sanitizer build would report). */
CM_TEST(suspicion_room_is_k_plus_one_and_k_is_clamped) {
  uint32_t k, i, counted;
  for (k = 0; k <= CM_SUSPICION_MAX_K + 4; k += 4) {
    cm_suspicion_t *s = named(0, k, CM_MSEC(500), CM_SEC(1), 1000);
    uint32_t want = k > CM_SUSPICION_MAX_K ? CM_SUSPICION_MAX_K : k;
    CM_CHECK(s != NULL);
    CM_CHECK_EQ(s->k, want);
    for (i = 0, counted = 0; i < 3 * CM_SUSPICION_MAX_K; i++)
      counted += (uint32_t)cm_suspicion_confirm(s, 2000 + i, 0, 0);
    CM_CHECK_EQ(counted, want);
    CM_CHECK_EQ(s->nfrom, want + 1);
    free(s);
  }
}
