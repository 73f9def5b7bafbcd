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
}

CM_TEST(errors_have_names_and_text) {
  CM_CHECK_STR(cm_err_name(CM_ETAGKEY), "ETAGKEY");
  CM_CHECK_STR(cm_strerror(CM_OK), "success");
  CM_CHECK_STR(cm_strerror(-9999), "unknown error");
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
