/*
 * Input limits, each checked at its edge: the largest allowed input is
 * accepted, one more is refused with a counted drop or a clear error, and
 * nothing changes. Limits of the wire format itself are in test_wire.c,
 * those of the transport in test_net.c; docs/configuration.md lists them
 * all with the test of each.
 */
#include <stdlib.h>

#include "cm_net_int.h"
#include "cm_node.h"
#include "cm_test.h"

/* ---- connection attempts per source per second ----------------------------
 */

static cm_addr_t l_src(uint32_t i) {
  cm_addr_t a = cm_addr_from_index(i, 4000);
  return a;
}

/* The per-source bucket with explicit clock readings: `rate` attempts at
 * once are allowed, the next is refused, one more is allowed each 1/rate s,
 * other sources are unaffected, and the table never grows. */
CM_TEST(limit_accepts_per_source_at_its_edge) {
  cm_net_srclimit_t *l = malloc(sizeof(*l));
  cm_addr_t a = l_src(1), b = l_src(2);
  const uint64_t t0 = 1000 * NGTCP2_SECONDS, tick = NGTCP2_SECONDS / 10;
  uint32_t i;
  CM_CHECK(l != NULL);
  cm_net__srclimit_init(l, 99, 10);
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 0); /* the 11th */
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick - 1), 0);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick), 1); /* refilled one */
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + tick), 0);
  /* Another source has its own budget. */
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &b, t0 + tick), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &b, t0 + tick), 0);
  /* After a quiet second a source has its whole burst again, no more. */
  for (i = 0; i < 10; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + 20 * tick), 1);
  CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0 + 20 * tick), 0);
  /* A spray of 100,000 addresses, each once: all get their first attempt
   * (slots of quiet sources are reused) in a table of fixed size. */
  {
    uint32_t ok = 0;
    for (i = 0; i < 100000; i++) {
      cm_addr_t s = l_src(1000 + i);
      ok += (uint32_t)cm_net__srclimit_take(l, &s, t0 + 40 * tick + i * tick);
    }
    CM_CHECK_EQ(ok, 100000);
  }
  /* Rate 0: no limit. */
  cm_net__srclimit_init(l, 99, 0);
  for (i = 0; i < 1000; i++)
    CM_CHECK_EQ(cm_net__srclimit_take(l, &a, t0), 1);
  free(l);
}
