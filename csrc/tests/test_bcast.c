#include <stdlib.h>

#include "cm_bcast.h"
#include "cm_test.h"

/* Every item costs 100 bytes except those whose aux asks for another size. */
static size_t item_size(void *ud, const cm_bcast_item_t *it) {
  (void)ud;
  return it->aux ? it->aux : 100;
}

static size_t take_keys(cm_bcast_t *q, size_t room, uint32_t limit,
                        uint32_t *keys, size_t max) {
  cm_bcast_item_t out[64];
  size_t n = cm_bcast_take(q, room, limit, item_size, NULL, out, max), i;
  for (i = 0; i < n; i++)
    keys[i] = out[i].key;
  return n;
}

CM_TEST(bcast_priority_then_transmits_then_newest) {
  cm_bcast_t q;
  uint32_t keys[8];
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_OK(cm_bcast_push(&q, 2, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_OK(cm_bcast_push(&q, 3, 8, CM_PRIO_CRITICAL, 0, 0));
  CM_CHECK_OK(cm_bcast_push(&q, 4, 5, CM_PRIO_HIGH, 0, 0));
  /* Room for two: critical, then high, whatever their send counts, until
   * they reach the limit (2 here). */
  CM_CHECK_EQ(take_keys(&q, 200, 2, keys, 8), 2);
  CM_CHECK_EQ(keys[0], 3);
  CM_CHECK_EQ(keys[1], 4);
  CM_CHECK_EQ(take_keys(&q, 200, 2, keys, 8), 2);
  CM_CHECK_EQ(keys[0], 3);
  CM_CHECK_EQ(keys[1], 4);
  CM_CHECK_EQ(cm_bcast_len(&q), 2);
  /* Then the normals, newest first. */
  CM_CHECK_EQ(take_keys(&q, 200, 2, keys, 8), 2);
  CM_CHECK_EQ(keys[0], 2);
  CM_CHECK_EQ(keys[1], 1);
  cm_bcast_free(&q);
}

CM_TEST(bcast_least_transmitted_first) {
  cm_bcast_t q;
  uint32_t keys[8];
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_EQ(take_keys(&q, 100, 10, keys, 8), 1); /* key 1: 1 send */
  CM_CHECK_OK(cm_bcast_push(&q, 2, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_EQ(take_keys(&q, 100, 10, keys, 8), 1);
  CM_CHECK_EQ(keys[0], 2); /* 0 sends beats 1 */
  CM_CHECK_OK(cm_bcast_push(&q, 3, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_EQ(take_keys(&q, 300, 10, keys, 8), 3);
  CM_CHECK_EQ(keys[0], 3);
  CM_CHECK_EQ(keys[1], 2); /* 1 send each: newer first */
  CM_CHECK_EQ(keys[2], 1);
  cm_bcast_free(&q);
}

CM_TEST(bcast_newer_update_supersedes) {
  cm_bcast_t q;
  cm_bcast_item_t out[4];
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 7, 5, CM_PRIO_NORMAL, 1, 0));
  CM_CHECK_EQ(cm_bcast_take(&q, 100, 10, item_size, NULL, out, 4), 1);
  CM_CHECK_OK(cm_bcast_push(&q, 7, 6, CM_PRIO_NORMAL, 2, 0));
  CM_CHECK_EQ(cm_bcast_len(&q), 1);
  CM_CHECK_EQ(cm_bcast_take(&q, 1000, 10, item_size, NULL, out, 4), 1);
  CM_CHECK_EQ(out[0].kind, 6);
  CM_CHECK_EQ(out[0].incarnation, 2);
  CM_CHECK_EQ(out[0].transmits, 1); /* the count restarts */
  cm_bcast_free(&q);
}

CM_TEST(bcast_retransmit_limit) {
  cm_bcast_t q;
  cm_bcast_item_t out[4];
  int sends = 0;
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 0));
  while (cm_bcast_take(&q, 1000, 6, item_size, NULL, out, 4) == 1)
    sends++;
  CM_CHECK_EQ(sends, 6);
  CM_CHECK_EQ(cm_bcast_len(&q), 0);
  cm_bcast_free(&q);
}

/* A vital update is sent twice the limit, never past CM_BCAST_MAX_TX; a
 * newer update about its key supersedes it unmarked; marking a key with
 * nothing queued does nothing. */
static int sends_until_gone(cm_bcast_t *q, uint32_t limit) {
  cm_bcast_item_t out[4];
  int sends = 0;
  while (cm_bcast_take(q, 1000, limit, item_size, NULL, out, 4) == 1)
    sends++;
  return sends;
}

CM_TEST(bcast_vital_update_is_sent_twice_the_limit) {
  cm_bcast_t q;
  cm_bcast_item_t out[4];
  cm_bcast_init(&q, 64);
  cm_bcast_mark_vital(&q, 7,
                      CM_BCAST_VITAL_OWN); /* nothing queued: no effect */
  cm_bcast_mark_vital(&q, 100000, CM_BCAST_VITAL_OWN);
  CM_CHECK_EQ(cm_bcast_len(&q), 0);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 0));
  cm_bcast_mark_vital(&q, 1, CM_BCAST_VITAL_OWN);
  CM_CHECK_EQ(sends_until_gone(&q, 6), 12);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 0));
  cm_bcast_mark_vital(&q, 1, CM_BCAST_VITAL_OWN);
  CM_CHECK_EQ(cm_bcast_take(&q, 1000, 6, item_size, NULL, out, 4), 1);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 1, 0)); /* newer */
  CM_CHECK_EQ(sends_until_gone(&q, 6), 6);
  CM_CHECK_OK(cm_bcast_push(&q, 2, 5, CM_PRIO_NORMAL, 0, 0));
  cm_bcast_mark_vital(&q, 2, CM_BCAST_VITAL_OWN);
  CM_CHECK_EQ(sends_until_gone(&q, 200), CM_BCAST_MAX_TX);
  cm_bcast_free(&q);
}

CM_TEST(bcast_skips_what_does_not_fit) {
  cm_bcast_t q;
  uint32_t keys[8];
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 60));
  CM_CHECK_OK(cm_bcast_push(&q, 2, 5, CM_PRIO_NORMAL, 0, 500));
  CM_CHECK_OK(cm_bcast_push(&q, 3, 5, CM_PRIO_NORMAL, 0, 50));
  CM_CHECK_EQ(take_keys(&q, 120, 10, keys, 8), 2);
  CM_CHECK_EQ(keys[0], 3);
  CM_CHECK_EQ(keys[1], 1);
  CM_CHECK_EQ(cm_bcast_len(&q), 3);
  cm_bcast_free(&q);
}

CM_TEST(bcast_bounded_evicts_least_valuable) {
  cm_bcast_t q;
  cm_bcast_item_t out[4];
  uint32_t k;
  cm_bcast_init(&q, 16);
  CM_CHECK_OK(cm_bcast_push(&q, 100, 5, CM_PRIO_HIGH, 0, 0));
  for (k = 0; k < 15; k++)
    CM_CHECK_OK(cm_bcast_push(&q, k, 5, CM_PRIO_NORMAL, 0, 0));
  /* Send key 14 (the newest normal) once: the high one goes first, so take
   * two and key 14 is the normal with the most sends. */
  CM_CHECK_EQ(cm_bcast_take(&q, 200, 10, item_size, NULL, out, 4), 2);
  CM_CHECK_EQ(out[1].key, 14);
  CM_CHECK_OK(cm_bcast_push(&q, 50, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK_EQ(cm_bcast_len(&q), 16);
  CM_CHECK_EQ(q.dropped, 1);
  CM_CHECK(cm_bcast_peek_key(&q, 14) == NULL);
  CM_CHECK(cm_bcast_peek_key(&q, 100) != NULL);
  CM_CHECK(cm_bcast_peek_key(&q, 50) != NULL);
  cm_bcast_free(&q);
}

/* A vital update is evicted last: a full queue of normal updates, one of
 * them vital and the most sent, drops an unmarked one instead; when every
 * update is vital, the least valuable of them goes. */
CM_TEST(bcast_eviction_spares_vital_updates) {
  cm_bcast_t q;
  cm_bcast_item_t out[4];
  uint32_t k;
  cm_bcast_init(&q, 4);
  for (k = 0; k < 4; k++)
    CM_CHECK_OK(cm_bcast_push(&q, k, 5, CM_PRIO_NORMAL, 0, 0));
  cm_bcast_mark_vital(&q, 3, CM_BCAST_VITAL_OWN);
  CM_CHECK_EQ(cm_bcast_take(&q, 100, 10, item_size, NULL, out, 1), 1);
  CM_CHECK_EQ(out[0].key, 3); /* the newest: now the most sent */
  CM_CHECK_OK(cm_bcast_push(&q, 9, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK(cm_bcast_peek_key(&q, 3) != NULL);
  CM_CHECK_EQ(cm_bcast_len(&q), 4);
  CM_CHECK_EQ(q.dropped, 1);
  for (k = 0; k < 10; k++)
    cm_bcast_mark_vital(&q, k, CM_BCAST_VITAL_OWN);
  CM_CHECK_OK(cm_bcast_push(&q, 10, 5, CM_PRIO_NORMAL, 0, 0));
  CM_CHECK(cm_bcast_peek_key(&q, 3) == NULL); /* all vital: the most sent */
  CM_CHECK_EQ(q.dropped, 2);
  cm_bcast_free(&q);
}

CM_TEST(bcast_forget) {
  cm_bcast_t q;
  cm_bcast_init(&q, 64);
  CM_CHECK_OK(cm_bcast_push(&q, 1, 5, CM_PRIO_NORMAL, 0, 9));
  CM_CHECK_OK(cm_bcast_push(&q, 2, 5, CM_PRIO_NORMAL, 0, 9));
  CM_CHECK_OK(cm_bcast_push(&q, 3, 5, CM_PRIO_NORMAL, 0, 4));
  cm_bcast_forget(&q, 3);
  CM_CHECK_EQ(cm_bcast_len(&q), 2);
  cm_bcast_forget_aux(&q, 9);
  CM_CHECK_EQ(cm_bcast_len(&q), 0);
  cm_bcast_free(&q);
}

/* Forgetting by aux looks at every slot the queue holds, including those a
 * growth added that nothing has used yet: they must read as free, or a
 * reaped member's updates are "forgotten" through whatever bytes the
 * allocator left there. The heap is first seeded with bytes that would pass
 * for items in use with the aux forgotten below, so that slots the growth
 * left unset hold those (AddressSanitizer fills new memory with 0xbe, and
 * valgrind reports the read itself). Keys start at 100 so that the key index
 * is sized once, by the first push, and does not take the seeded memory. The
 * fill goes through a volatile pointer: a memset just before free is
 * otherwise removed as a dead store. */
CM_TEST(bcast_forget_aux_after_growth) {
  void *(*volatile fill)(void *, int, size_t) = memset;
  cm_bcast_t q;
  cm_bcast_item_t out[64];
  const uint32_t aux = 0xa5a5a5a5u;
  size_t bait_len = 128 * sizeof(cm_bcast_item_t), n;
  uint8_t *bait;
  uint32_t k, i;
  cm_bcast_init(&q, 1024);
  for (k = 100; k < 164; k++) /* exactly the first allocation */
    CM_CHECK_OK(cm_bcast_push(&q, k, 5, CM_PRIO_NORMAL, 0, 20));
  CM_CHECK_EQ(q.cap, 64);
  bait = malloc(bait_len);
  CM_CHECK(bait != NULL);
  fill(bait, 0xa5, bait_len);
  free(bait);
  CM_CHECK_OK(cm_bcast_push(&q, 164, 5, CM_PRIO_NORMAL, 0, aux));
  CM_CHECK_EQ(q.cap, 128);
  for (i = q.used; i < q.cap; i++)
    CM_CHECK_EQ(q.items[i].in_use, 0);
  cm_bcast_forget_aux(&q, aux);
  CM_CHECK_EQ(cm_bcast_len(&q), 64);
  CM_CHECK(cm_bcast_peek_key(&q, 164) == NULL);
  /* The others are intact and all sent. */
  n = cm_bcast_take(&q, 64 * 20, 10, item_size, NULL, out, 64);
  CM_CHECK_EQ(n, 64);
  for (i = 0; i < n; i++)
    CM_CHECK(out[i].key >= 100 && out[i].key < 164);
  /* Freed and never-used slots are taken again without harm. */
  for (k = 0; k < 100; k++)
    CM_CHECK_OK(cm_bcast_push(&q, k, 5, CM_PRIO_HIGH, 0, 20));
  CM_CHECK_EQ(cm_bcast_len(&q), 164);
  cm_bcast_free(&q);
}
