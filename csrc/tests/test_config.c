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

/* Each bound, broken alone in a valid configuration, is refused with a
 * message that starts with the field's name. */
CM_TEST(config_refuses_each_bound_by_name) {
  static const char *const fields[] = {
      "probe_interval",     "indirect_checks",     "awareness_max",
      "suspicion_mult",     "suspicion_max_mult",  "phi_threshold",
      "phi_window",         "phi_min_std",         "gossip_interval",
      "retransmit_mult",    "max_broadcast_queue", "pushpull_interval",
      "reconnect_interval", "max_packet_size",     "max_tag_key",
      "max_tag_value",      "max_tags_size",       "suspicion_confirmations",
      "nack_confirms",      "max_pushpull_size"};
  size_t i;
  for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    cm_config_t c;
    const char *why = NULL;
    cm_config_lan(&c);
    switch (i) {
    case 0:
      c.probe_interval = CM_MSEC(9);
      break;
    case 1:
      c.indirect_checks = 17;
      break;
    case 2:
      c.awareness_max = 65;
      break;
    case 3:
      c.suspicion_mult = 0;
      break;
    case 4:
      c.suspicion_max_mult = 101;
      break;
    case 5:
      c.phi_threshold = 0.0;
      break;
    case 6:
      c.phi_window = 10001;
      break;
    case 7:
      c.phi_min_std = 0;
      break;
    case 8:
      c.gossip_interval = 0;
      break;
    case 9:
      c.retransmit_mult = 65;
      break;
    case 10:
      c.max_broadcast_queue = 15;
      break;
    case 11:
      c.pushpull_interval = 0;
      break;
    case 12:
      c.reconnect_interval = 0;
      break;
    case 13:
      c.max_packet_size = 65508;
      break;
    case 14:
      c.max_tag_key = 0;
      break;
    case 15:
      c.max_tag_value = 1025;
      break;
    case 16:
      c.max_tags_size = 4097;
      break;
    case 17:
      c.suspicion_confirmations = 17;
      break;
    case 18:
      c.nack_confirms = 2;
      break;
    default:
      c.max_pushpull_size = 4095;
      break;
    }
    CM_CHECK_EQ(cm_config_validate(&c, &why), CM_ECONFIG);
    CM_CHECK(why != NULL);
    CM_CHECK(strncmp(why, fields[i], strlen(fields[i])) == 0 &&
             why[strlen(fields[i])] == ' ');
  }
}

/* memberlist's formula, limit = mult * ceil(log10(n + 1)), raised to
 * ceil(ln(n - 1) + ln 100) where it falls short. */
CM_TEST(config_retransmit_limit_table) {
  cm_config_t c;
  cm_config_lan(&c);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 1), 4);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 2), 4);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 3), 6);    /* ln 2 + 4.6 = 5.3 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 9), 7);    /* ln 8 + 4.6 = 6.7 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 10), 8);   /* 4 x 2 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 30), 8);   /* ln 29 + 4.6 = 7.97 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 31), 9);   /* ln 30 + 4.6 = 8.001 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 99), 10);  /* ln 98 + 4.6 = 9.2 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 100), 12); /* 4 x 3 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 1000), 16);
  CM_CHECK_EQ(cm_retransmit_limit(&c, 10000), 20);
  cm_config_local(&c); /* mult 2: the floor, up to 10^6 members */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 6), 7);      /* ln 5 + 4.6 = 6.2 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 1000), 12);  /* ln 999 + 4.6 = 11.5 */
  CM_CHECK_EQ(cm_retransmit_limit(&c, 10000), 14); /* 13.8 */
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
