/*
 * One address floods a node of a running cluster with handshake attempts
 * (real client Initials, each a fresh connection, and forged ones) and
 * garbage (random bytes, short headers under unknown connection IDs) for
 * several seconds. Admission control must absorb it: no member is
 * suspected or failed (the engine's probes are not starved), the refusals
 * are counted, the victim keeps no more half-open connections than
 * max_half_open and answers the rest with stateless Retries, and the
 * cluster still spreads news afterwards. The flood is paced, so
 * the kernel's socket buffer, which no endpoint can defend, is not what is
 * measured. Outcomes are asserted, never timings.
 */
#include <stdlib.h>
#include <unistd.h>

#include "cm_engine.h"
#include "cm_test.h"
#include "cm_test_engine.h"
#include "cm_test_net.h"

#define F_NODES 3
#define F_SECONDS 6
#define F_INITIALS 64 /* distinct real Initials replayed round robin */
#define F_BATCH 16    /* datagrams per 4 ms: 4,000 a second */

static int f_converged(cm_enode_t **n) {
  int i;
  for (i = 0; i < F_NODES; i++)
    if (cm_te_alive_count(n[i]) != F_NODES)
      return 0;
  return 1;
}

static int f_wait_converged(cm_enode_t **n, int seconds) {
  uint64_t end = cm_te_now_ms() + (uint64_t)seconds * 1000u;
  while (!f_converged(n)) {
    if (cm_te_now_ms() > end)
      return f_converged(n);
    cm_te_nap_ms(20);
  }
  return 1;
}

static int f_tag_everywhere(cm_enode_t **n) {
  int i, ok = 1;
  for (i = 0; i < F_NODES && ok; i++) {
    cm_snapshot_t *s = cm_enode_snapshot(n[i]);
    uint32_t k;
    ok = 0;
    for (k = 0; s != NULL && k < s->count; k++) {
      cm_tag_t t;
      if (strcmp(s->members[k].id, "node-2") == 0 &&
          cm_tags_get(s->members[k].tags, s->members[k].tags_len, "after", 5,
                      &t))
        ok = 1;
    }
    if (s != NULL)
      cm_snapshot_release(s);
  }
  return ok;
}

/* No member was ever suspected or declared failed, by anyone. */
static void f_check_quiet(cm_enode_t **n) {
  int i;
  for (i = 0; i < F_NODES; i++) {
    cm_enode_stats_t st;
    cm_enode_stats(n[i], &st);
    CM_CHECK_EQ(st.node.suspicions, 0);
    CM_CHECK_EQ(st.node.failures_declared, 0);
    CM_CHECK_EQ(st.node.failed, 0);
    CM_CHECK_EQ(st.node.alive, F_NODES);
  }
}

CM_TEST(engine_flood_from_one_address_starves_no_probe) {
  cm_engine_t *e = NULL;
  cm_enode_t *n[F_NODES];
  cm_net_key_t key;
  cm_net_config_t net;
  cm_addr_t seed_addr, victim;
  cm_enode_stats_t before, after;
  uint8_t(*initials)[CM_TN_PKT_MAX];
  size_t *lens, ninit, next = 0;
  uint8_t buf[CM_TN_PKT_MAX];
  uint64_t rnd = 42, end, sent_initials = 0, sent_forged = 0, sent = 0;
  uint64_t max_open = 0;
  uint8_t blob[32];
  size_t blen;
  int i, fd;

  key.id = 1;
  for (i = 0; i < CM_KEY_LEN; i++)
    key.key[i] = (uint8_t)(i * 5 + 1);
  initials = malloc(F_INITIALS * sizeof(*initials));
  lens = malloc(F_INITIALS * sizeof(*lens));
  CM_CHECK(initials != NULL && lens != NULL);
  /* With the cluster's key: the victim does the whole server side of each
   * handshake it accepts, the most expensive input an outsider can send. */
  ninit = cm_tn_capture_initials(&key, F_INITIALS, initials, lens);
  CM_CHECK(ninit >= F_INITIALS / 2);

  CM_CHECK_OK(cm_engine_new(&e));
  cm_net_config_default(&net);
  net.keys = &key;
  net.nkeys = 1;
  for (i = 0; i < F_NODES; i++) {
    char id[16];
    snprintf(id, sizeof(id), "node-%d", i);
    n[i] = cm_te_start(e, id, &net, (uint64_t)i + 1, 0);
  }
  seed_addr = cm_enode_addr(n[0]);
  for (i = 1; i < F_NODES; i++)
    CM_CHECK(cm_enode_join(n[i], &seed_addr, 1, CM_SEC(10)) > 0);
  CM_CHECK(f_wait_converged(n, 30));
  f_check_quiet(n);

  victim = cm_enode_addr(n[1]);
  cm_enode_stats(n[1], &before);
  fd = cm_tn_udp_socket();
  end = cm_te_now_ms() + F_SECONDS * 1000u;
  while (cm_te_now_ms() < end) {
    for (i = 0; i < F_BATCH; i++) {
      size_t len;
      switch (i % 4) {
      case 0: /* a real Initial: a fresh handshake unless already routed */
        memcpy(buf, initials[next], lens[next]);
        len = lens[next];
        next = (next + 1) % ninit;
        sent_initials++;
        break;
      case 1: /* a forged Initial under a new connection ID */
        cm_tn_forged_initial(&rnd, buf);
        len = CM_TN_INITIAL_LEN;
        sent_forged++;
        break;
      case 2: /* a short header under an unknown connection ID */
        len = 40 + cm_tn_rand(&rnd) % 1200;
        cm_tn_random_bytes(&rnd, buf, len);
        buf[0] = (uint8_t)(0x40 | (buf[0] & 0x3f));
        break;
      default: /* anything */
        len = 1 + cm_tn_rand(&rnd) % 1400;
        cm_tn_random_bytes(&rnd, buf, len);
        break;
      }
      sent += cm_tn_udp_send(fd, &victim, buf, len, 0) == 0;
    }
    {
      cm_enode_stats_t st;
      cm_enode_stats(n[1], &st);
      if (st.net.conns_open > max_open)
        max_open = st.net.conns_open;
    }
    cm_te_nap_ms(4);
  }
  close(fd);
  fprintf(stderr, "    sent %llu datagrams (%llu real Initials, %llu forged)\n",
          (unsigned long long)sent, (unsigned long long)sent_initials,
          (unsigned long long)sent_forged);

  cm_enode_stats(n[1], &after);
  fprintf(
      stderr,
      "    victim: source-limited %llu, Retries %llu, half-open refused "
      "%llu, garbage %llu, handshakes failed %llu, most connections open "
      "%llu\n",
      (unsigned long long)(after.net.drop_source_limit -
                           before.net.drop_source_limit),
      (unsigned long long)(after.net.retries_sent - before.net.retries_sent),
      (unsigned long long)(after.net.drop_half_open -
                           before.net.drop_half_open),
      (unsigned long long)(after.net.drop_garbage - before.net.drop_garbage),
      (unsigned long long)(after.net.handshakes_failed -
                           before.net.handshakes_failed),
      (unsigned long long)max_open);
  /* The flood arrived. Forged Initials fail the stateless check, as
   * garbage, before they can cost anything; most real ones cost no state
   * either: they were answered with a Retry, held to the per-source rate,
   * or refused a half-open place. */
  CM_CHECK(after.net.packets_in - before.net.packets_in > sent / 2);
  CM_CHECK(after.net.drop_garbage - before.net.drop_garbage >= sent_forged / 2);
  CM_CHECK(after.net.retries_sent - before.net.retries_sent +
               after.net.drop_retry_rate_limit -
               before.net.drop_retry_rate_limit + after.net.drop_source_limit -
               before.net.drop_source_limit + after.net.drop_half_open -
               before.net.drop_half_open >
           sent_initials / 4);
  CM_CHECK(after.net.drop_rate_limit - before.net.drop_rate_limit >=
           after.net.drop_source_limit - before.net.drop_source_limit);
  CM_CHECK_EQ(after.net.conns_evicted, before.net.conns_evicted);
  /* Memory: the flood never held more connections than max_half_open,
   * plus the cluster's own. */
  cm_net_config_derive(&net);
  CM_CHECK(max_open <= net.max_half_open + 2 * F_NODES);
  /* Probes were never starved. */
  f_check_quiet(n);

  /* The cluster still works: a tag change reaches everyone. */
  CM_CHECK_OK(
      cm_tags_set(NULL, 0, "after", 5, "flood", 5, blob, sizeof(blob), &blen));
  CM_CHECK_OK(cm_enode_set_tags(n[2], blob, blen));
  end = cm_te_now_ms() + 20000;
  while (!f_tag_everywhere(n) && cm_te_now_ms() < end)
    cm_te_nap_ms(20);
  CM_CHECK(f_tag_everywhere(n));
  f_check_quiet(n);
  cm_engine_free(e);
  free(initials);
  free(lens);
}
