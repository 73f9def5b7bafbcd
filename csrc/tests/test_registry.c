#include <stdio.h>

#include "cm_rand.h"
#include "cm_registry.h"
#include "cm_test.h"

CM_TEST(registry_add_find_remove_reuse) {
  cm_registry_t r;
  char id[16];
  int32_t slot;
  int i;
  cm_registry_init(&r);
  for (i = 0; i < 1000; i++) {
    snprintf(id, sizeof(id), "node-%d", i);
    CM_CHECK_EQ(cm_registry_add(&r, id, strlen(id)), i);
  }
  CM_CHECK_EQ(cm_registry_find(&r, "node-777", 8), 777);
  CM_CHECK_EQ(cm_registry_find(&r, "node-1000", 9), -1);
  for (i = 0; i < 1000; i += 2)
    cm_registry_remove(&r, (uint32_t)i);
  CM_CHECK_EQ(r.count, 500);
  CM_CHECK_EQ(cm_registry_find(&r, "node-2", 6), -1);
  CM_CHECK_EQ(cm_registry_find(&r, "node-3", 6), 3);
  /* Freed slots are reused; ids stay findable through deleted marks. */
  slot = cm_registry_add(&r, "again", 5);
  CM_CHECK(slot >= 0 && slot < 1000 && slot % 2 == 0);
  CM_CHECK_EQ(cm_registry_find(&r, "again", 5), slot);
  CM_CHECK_EQ(cm_registry_find(&r, "node-999", 8), 999);
  cm_registry_free(&r);
}

CM_TEST(rand_is_deterministic_and_bounded) {
  cm_rand_t a, b;
  int i, hist[10] = {0};
  cm_rand_seed(&a, 42);
  cm_rand_seed(&b, 42);
  for (i = 0; i < 1000; i++)
    CM_CHECK(cm_rand_next(&a) == cm_rand_next(&b));
  for (i = 0; i < 100000; i++) {
    uint32_t v = cm_rand_below(&a, 10);
    CM_CHECK(v < 10);
    hist[v]++;
  }
  for (i = 0; i < 10; i++)
    CM_CHECK(hist[i] > 9500 && hist[i] < 10500);
  CM_CHECK_EQ(cm_rand_below(&a, 0), 0);
}

CM_TEST(addr_parse_and_format) {
  cm_addr_t a, b;
  char buf[CM_ADDR_STRLEN];
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:7946", &a));
  CM_CHECK_EQ(a.family, 4);
  CM_CHECK_EQ(a.port, 7946);
  CM_CHECK_OK(cm_addr_format(&a, buf, sizeof(buf)));
  CM_CHECK_STR(buf, "127.0.0.1:7946");
  CM_CHECK_OK(cm_addr_parse("[::1]:80", &b));
  CM_CHECK_EQ(b.family, 6);
  CM_CHECK_OK(cm_addr_format(&b, buf, sizeof(buf)));
  CM_CHECK_STR(buf, "[::1]:80");
  CM_CHECK(!cm_addr_eq(&a, &b));
  CM_CHECK_EQ(cm_addr_parse("127.0.0.1", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("127.0.0.1:0", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("127.0.0.1:65536", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("300.0.0.1:5", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("[::1:5", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse(":5", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("1.2.3.4:5x", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse(NULL, &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("1.2.3.4:+5", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("[]:5", &a), CM_EADDR);
  CM_CHECK_EQ(cm_addr_parse("[1.2.3.4]:5", &a), CM_EADDR);
  /* An address never set prints as such; a buffer too small is refused. */
  memset(&a, 0, sizeof(a));
  CM_CHECK_OK(cm_addr_format(&a, buf, sizeof(buf)));
  CM_CHECK_STR(buf, "(unset)");
  CM_CHECK_EQ(cm_addr_format(&a, buf, 0), CM_EINVAL);
  CM_CHECK_EQ(cm_addr_format(&b, buf, 4), CM_ENOSPC);
}

CM_TEST(errors_have_names_and_text) {
  CM_CHECK_STR(cm_err_name(CM_ETAGKEY), "ETAGKEY");
  CM_CHECK_STR(cm_strerror(CM_OK), "success");
  CM_CHECK_STR(cm_strerror(-9999), "unknown error");
  CM_CHECK_STR(cm_err_name(CM_OK), "OK");
  CM_CHECK_STR(cm_err_name(-9999), "EUNKNOWN");
  /* Every code has its own name and its own text: none falls through to
   * the unknown ones. */
#define CHECK_CODE(name, val, msg)                                             \
  CM_CHECK_STR(cm_err_name(CM_##name), #name);                                 \
  CM_CHECK_STR(cm_strerror(CM_##name), msg);                                   \
  CM_CHECK(strcmp(msg, "unknown error") != 0);
  CM_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
}

/* Ids too long to store inline go to the heap; both kinds behave alike. */
CM_TEST(registry_long_and_short_ids) {
  cm_registry_t r;
  const char *lng = "a-rather-long-node-identifier.example.internal";
  int32_t a, b;
  cm_registry_init(&r);
  a = cm_registry_add(&r, lng, strlen(lng));
  b = cm_registry_add(&r, "short", 5);
  CM_CHECK(a >= 0 && b >= 0);
  CM_CHECK_STR(cm_member_id(&r.m[a]), lng);
  CM_CHECK_STR(cm_member_id(&r.m[b]), "short");
  CM_CHECK_EQ(cm_registry_find(&r, lng, strlen(lng)), a);
  cm_registry_remove(&r, (uint32_t)a);
  CM_CHECK_EQ(cm_registry_find(&r, lng, strlen(lng)), -1);
  CM_CHECK_EQ(cm_registry_find(&r, "short", 5), b);
  a = cm_registry_add(&r, lng, 23); /* exactly one below the heap size */
  CM_CHECK_EQ(strlen(cm_member_id(&r.m[a])), 23);
  cm_registry_free(&r);
}

/* Addresses the address-index test draws from: IPv4 and IPv6, some equal
 * but for the port, so members share addresses and hashes collide. */
#define ADDR_POOL 240

static cm_addr_t pool_addr(uint32_t i) {
  cm_addr_t a = cm_addr_from_index(i / 3, (uint16_t)(7946 + i % 3));
  if (i % 2 == 1) {
    a.family = 6;
    a.ip[0] = 0xfd;
    a.ip[15] = (uint8_t)(i / 3);
  }
  return a;
}

/* The members find_addr reports at a equal those a scan of every slot
 * finds, each once. */
static void check_addr_index(const cm_registry_t *r, const cm_addr_t *a) {
  static uint8_t seen[1u << 16];
  uint32_t cursor = 0, found = 0, want = 0, s;
  int32_t slot;
  memset(seen, 0, r->high);
  while ((slot = cm_registry_find_addr(r, a, &cursor)) >= 0) {
    CM_CHECK((uint32_t)slot < r->high && r->m[slot].in_use);
    CM_CHECK(cm_addr_eq(&r->m[slot].addr, a));
    CM_CHECK(!seen[slot]);
    seen[slot] = 1;
    found++;
  }
  for (s = 0; s < r->high; s++)
    want += r->m[s].in_use && cm_addr_eq(&r->m[s].addr, a);
  CM_CHECK_EQ(found, want);
}

static void address_index_run(uint32_t build_after) {
  cm_registry_t r;
  cm_rand_t rng;
  uint32_t op, next_id = 0, i;
  cm_registry_init(&r);
  cm_rand_seed(&rng, 7 + build_after);
  for (op = 0; op < 20000; op++) {
    uint32_t what = cm_rand_below(&rng, 10);
    cm_addr_t a = pool_addr(cm_rand_below(&rng, ADDR_POOL));
    if (op == build_after)
      CM_CHECK_OK(cm_registry_index_addrs(&r));
    if (what < 4 || r.count == 0) {
      char id[24];
      int32_t slot;
      snprintf(id, sizeof(id), "m-%u", next_id++);
      slot = cm_registry_add(&r, id, strlen(id));
      CM_CHECK(slot >= 0);
      cm_registry_set_addr(&r, (uint32_t)slot, &a);
    } else {
      uint32_t slot = cm_rand_below(&rng, r.high);
      if (!r.m[slot].in_use)
        continue;
      if (what < 6)
        cm_registry_remove(&r, slot);
      else
        cm_registry_set_addr(&r, slot, &a);
    }
    if (op >= build_after && op % 500 == 499) {
      cm_addr_t never = cm_addr_from_index(99999, 1);
      check_addr_index(&r, &never);
      for (i = 0; i < ADDR_POOL; i++) {
        cm_addr_t p = pool_addr(i);
        check_addr_index(&r, &p);
      }
    }
  }
  CM_CHECK(r.count > 1000);
  cm_registry_free(&r);
}

/* The address index agrees with a scan of the table through thousands of
 * adds, removals and address changes, whether it was built before the
 * members came or after. */
CM_TEST(registry_address_index_stays_exact) {
  address_index_run(0);
  address_index_run(5000);
}
