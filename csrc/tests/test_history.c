/*
 * History: why a member was suspected, as each node saw it
 * (cm_node_history). A crash in a simulated cluster, read back from the
 * node whose probe failed and from the nodes that heard it by gossip; the
 * bound per member; nothing kept for a healthy cluster; an accuser
 * forgotten rather than misnamed.
 */
#include <stdlib.h>

#include "cm_sim.h"
#include "cm_test.h"
#include "cm_test_node.h"

static cm_sim_t *hist_cluster(uint32_t n, uint64_t seed, uint32_t history) {
  cm_sim_config_t c;
  cm_sim_t *s = NULL;
  cm_sim_config_default(&c);
  cm_tconfig_pinned(&c.node);
  c.nodes = n;
  c.seed = seed;
  c.node.history = history;
  CM_CHECK_OK(cm_sim_new(&s, &c));
  CM_CHECK_OK(cm_sim_bootstrap(s));
  return s;
}

static int hist_all_failed(cm_sim_t *s, void *ud) {
  uint32_t victim = *(const uint32_t *)ud;
  return cm_sim_count_seeing(s, victim, CM_STATE_FAILED) == cm_sim_size(s) - 1;
}

CM_TEST(history_names_the_accuser_and_the_probe_that_failed) {
  cm_sim_t *s = hist_cluster(8, 3, 8);
  uint32_t victim = 5, i, probers = 0, told = 0;
  char vid[32];
  cm_sim_id(victim, vid, sizeof(vid));
  cm_sim_run_until(s, cm_sim_now(s) + CM_SEC(5));
  /* Healthy so far: nothing kept. */
  for (i = 0; i < 8; i++) {
    cm_hist_read_t h[8];
    CM_CHECK_EQ(cm_node_history(cm_sim_node(s, i), vid, h, 8), 0);
  }
  CM_CHECK_OK(cm_sim_crash(s, victim));
  CM_CHECK(
      cm_sim_run_cond(s, cm_sim_now(s) + CM_SEC(60), hist_all_failed, &victim));
  for (i = 0; i < 8; i++) {
    cm_node_t *node;
    cm_hist_read_t h[8];
    size_t k, j;
    int failed = 0;
    uint32_t confirmed = 0;
    if (i == victim)
      continue;
    node = cm_sim_node(s, i);
    k = cm_node_history(node, vid, h, 8);
    CM_CHECK(k >= 2);
    /* It starts with the suspicion, and ends failed. */
    CM_CHECK_EQ(h[0].e.event, CM_EV_SUSPECT);
    CM_CHECK_EQ(h[0].e.state, CM_STATE_SUSPECT);
    CM_CHECK(h[0].by[0] != '\0');
    if (h[0].e.source == CM_HIST_PROBE) {
      /* This node's own probe failed: it names itself, the helpers it
       * asked, and that none of them reached the victim either. */
      probers++;
      CM_CHECK_STR(h[0].by, cm_node_id(node));
      CM_CHECK(h[0].e.helpers >= 1);
      CM_CHECK(h[0].e.rtt_us > 0);
    } else {
      told++;
      CM_CHECK(h[0].e.source == CM_HIST_GOSSIP ||
               h[0].e.source == CM_HIST_PUSHPULL);
      CM_CHECK(strcmp(h[0].by, cm_node_id(node)) != 0);
      CM_CHECK(strcmp(h[0].by, vid) != 0);
    }
    for (j = 0; j < k; j++) {
      CM_CHECK(j == 0 || h[j].e.time >= h[j - 1].e.time);
      if (h[j].e.event == CM_EV_FAILED) {
        failed = 1;
        CM_CHECK_EQ(h[j].e.state, CM_STATE_FAILED);
        CM_CHECK(h[j].e.source == CM_HIST_TIMEOUT ||
                 h[j].e.source == CM_HIST_GOSSIP ||
                 h[j].e.source == CM_HIST_PUSHPULL);
      }
      /* Only this node's own failed probe is a probe: it asked helpers. */
      if (h[j].e.source == CM_HIST_PROBE) {
        CM_CHECK_STR(h[j].by, cm_node_id(node));
        CM_CHECK(h[j].e.helpers >= 1);
      }
      if (h[j].e.event == CM_EV_CONFIRMED) {
        CM_CHECK(h[j].by[0] != '\0');
        confirmed = h[j].e.confirmations;
      }
      /* What ended the suspicion says how many had confirmed it. */
      if (h[j].e.event == CM_EV_FAILED)
        CM_CHECK_EQ(h[j].e.confirmations, confirmed);
    }
    CM_CHECK(failed);
  }
  CM_CHECK(probers >= 1);
  CM_CHECK(told >= 1);
  cm_sim_free(s);
}

/* At most cfg.history entries, the most recent; none with history 0; a
 * member's return is kept once its record has begun. */
CM_TEST(history_is_bounded_and_can_be_off) {
  cm_config_t cfg;
  cm_time_t now = CM_SEC(1);
  cm_addr_t b = cm_addr_from_index(2, 7946), c = cm_addr_from_index(3, 7946);
  cm_node_t *n;
  cm_hist_read_t h[16];
  uint32_t inc;
  size_t k;
  cm_tconfig_pinned(&cfg);
  cfg.history = 3;
  n = cm_tnode_new(&cfg, now);
  cm_tnode_alive(n, "b", 0, &b, now);
  cm_tnode_alive(n, "c", 0, &c, now);
  CM_CHECK_EQ(cm_node_history(n, "b", h, 16), 0);
  /* b flaps: suspected by c, refutes; five times. */
  for (inc = 0; inc < 10; inc += 2) {
    cm_tnode_accuse(n, &c, CM_MSG_SUSPECT, "b", inc, "c", now);
    now += CM_MSEC(10);
    cm_tnode_alive(n, "b", inc + 1, &b, now);
    now += CM_MSEC(10);
  }
  k = cm_node_history(n, "b", h, 16);
  CM_CHECK_EQ(k, 3);
  /* The last three: recovered, suspect, recovered. */
  CM_CHECK_EQ(h[0].e.event, CM_EV_RECOVERED);
  CM_CHECK_EQ(h[1].e.event, CM_EV_SUSPECT);
  CM_CHECK_EQ(h[1].e.source, CM_HIST_GOSSIP);
  CM_CHECK_STR(h[1].by, "c");
  CM_CHECK_EQ(h[1].e.incarnation, 8);
  CM_CHECK_EQ(h[2].e.event, CM_EV_RECOVERED);
  CM_CHECK_EQ(h[2].e.source, CM_HIST_ALIVE);
  CM_CHECK_EQ(h[2].e.incarnation, 9);
  CM_CHECK(h[2].by[0] == '\0');
  /* A smaller buffer gets the most recent. */
  CM_CHECK_EQ(cm_node_history(n, "b", h, 1), 1);
  CM_CHECK_EQ(h[0].e.incarnation, 9);
  CM_CHECK_EQ(cm_node_history(n, "nobody", h, 16), 0);
  CM_CHECK_EQ(cm_node_history(n, "b", NULL, 0), 0);
  /* A leave, by its own word. */
  cm_tnode_accuse(n, &b, CM_MSG_LEAVE, "b", 10, NULL, now);
  CM_CHECK_EQ(cm_node_history(n, "b", h, 16), 3);
  CM_CHECK_EQ(h[2].e.event, CM_EV_LEFT);
  CM_CHECK_EQ(h[2].e.source, CM_HIST_LEAVE);
  cm_node_free(n);

  /* News naming this node as the accuser, come back over the wire (a
   * push-pull of ours, relayed): gossip, not a probe of ours. */
  cfg.history = 8;
  n = cm_tnode_new(&cfg, now);
  cm_tnode_alive(n, "b", 0, &b, now);
  cm_tnode_accuse(n, &c, CM_MSG_SUSPECT, "b", 0, "self", now);
  CM_CHECK_EQ(cm_node_history(n, "b", h, 16), 1);
  CM_CHECK_EQ(h[0].e.source, CM_HIST_GOSSIP);
  CM_CHECK_STR(h[0].by, "self");
  CM_CHECK_EQ(h[0].e.helpers, 0);
  cm_node_free(n);

  cfg.history = 0;
  n = cm_tnode_new(&cfg, now);
  cm_tnode_alive(n, "b", 0, &b, now);
  cm_tnode_accuse(n, &c, CM_MSG_SUSPECT, "b", 0, "c", now);
  CM_CHECK_EQ(cm_node_history(n, "b", h, 16), 0);
  CM_CHECK_EQ(cm_tnode_stats(n).suspect, 1);
  cm_node_free(n);

  cfg.history = CM_HIST_LIMIT + 1;
  CM_CHECK_EQ(cm_config_validate(&cfg, NULL), CM_ECONFIG);
}
