#include "cm_config.h"
#include "cm_test.h"

CM_TEST(config_profiles_validate) {
  cm_config_t c;
  cm_config_lan(&c);
  CM_CHECK_OK(cm_config_validate(&c, NULL));
  cm_config_wan(&c);
  CM_CHECK_OK(cm_config_validate(&c, NULL));
  cm_config_local(&c);
  CM_CHECK_OK(cm_config_validate(&c, NULL));
}

CM_TEST(config_rejects_bad_values) {
  cm_config_t c;
  const char *why = NULL;
  cm_config_lan(&c);
  c.probe_timeout = c.probe_interval;
  CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
  CM_CHECK(why != NULL && strstr(why, "probe_timeout") != NULL);
  cm_config_lan(&c);
  c.gossip_nodes = 0;
  CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
  cm_config_lan(&c);
  c.max_tags_size = 1400;
  CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
  CM_CHECK(strstr(why, "max_packet_size") != NULL);
  cm_config_lan(&c);
  c.phi_min_samples = c.phi_window + 1;
  CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
  CM_CHECK_EQ(cm_config_validate(NULL, &why), CM_ECONFIG);
}

/* memberlist's formulas: limit = mult * ceil(log10(n + 1)). */
CM_TEST(config_retransmit_limit_table) {
  cm_config_t c;
  cm_config_lan(&c);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 1), 4);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 9), 4);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 10), 8);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 100), 12);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 1000), 16);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 10000), 20);
}

CM_TEST(config_suspicion_min_and_pushpull_scale) {
  cm_config_t c;
  cm_config_lan(&c);
  c.probe_interval = CM_SEC(1);
  c.suspicion_mult = 4;
  /* 4 * max(1, log10 n) * 1 s: 4 s up to 10 nodes, 8 s at 100. */
  CM_CHECK_EQ(cm_suspicion_min(&c, 5), CM_SEC(4));
  CM_CHECK_EQ(cm_suspicion_min(&c, 100), CM_SEC(8));
  CM_CHECK_NEAR((double)cm_suspicion_min(&c, 1000), 12e6, 1);
  c.pushpull_interval = CM_SEC(30);
  CM_CHECK_EQ(cm_pushpull_scaled(&c, 32), CM_SEC(30));
  /* 64 nodes: ceil(6 - 5) + 1 = 2x; 1000 nodes: ceil(9.97-5)+1 = 6x. */
  CM_CHECK_EQ(cm_pushpull_scaled(&c, 64), CM_SEC(60));
  CM_CHECK_EQ(cm_pushpull_scaled(&c, 1000), CM_SEC(180));
}
