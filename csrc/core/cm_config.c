#include "cm_config.h"

#include <math.h>
#include <string.h>

#include "cm_suspicion.h"
#include "cm_wire.h"

/* Values and reasons: docs/configuration.md. */
void cm_config_lan(cm_config_t *c) {
  memset(c, 0, sizeof(*c));
  /* memberlist's LAN probing (1 s, 0.5 s) with a suspicion that ends at
   * log10(n) probe intervals once a second accuser confirms it, and at
   * six times that without one. */
  c->probe_interval = CM_SEC(1);
  c->probe_timeout = CM_MSEC(500);
  c->indirect_checks = 3;
  c->awareness_max = 8;
  c->suspicion_mult = 1;
  c->suspicion_max_mult = 6;
  c->suspicion_confirmations = 1;
  /* Off: on, a brief isolation (a period and a quarter of the suspicion's
   * minimum) was taken for a failure (docs/configuration.md). */
  c->nack_confirms = 0;
  c->phi_threshold = 8.0;
  c->phi_window = 32;
  c->phi_min_std = CM_MSEC(100);
  c->phi_acceptable_pause = CM_MSEC(1000);
  c->phi_min_samples = 8;
  c->gossip_interval = CM_MSEC(100);
  c->gossip_nodes = 3;
  c->gossip_to_dead = CM_SEC(30);
  c->retransmit_mult = 4;
  c->max_broadcast_queue = 4096;
  c->pushpull_interval = CM_SEC(30);
  c->reconnect_interval = CM_SEC(2);
  /* Tombstones: Serf's ReconnectTimeout and TombstoneTimeout, 24 h each. */
  c->reconnect_timeout = CM_SEC(24 * 3600);
  c->reap_left_after = CM_SEC(24 * 3600);
  c->max_packet_size = 1400;
  c->max_tag_key = 64;
  c->max_tag_value = 256;
  c->max_tags_size = 1024;
  c->max_members = 65536;
  c->max_pushpull_size = 16u << 20;
  /* Serf's EventBuffer; twice Serf's UserEventSizeLimit, which still
   * leaves a packet room for a probe and membership news. */
  c->user_event_buffer = 512;
  c->max_user_event_size = 1024;
  /* 2,000 times Serf's limit of 512 bytes; 64 of them kept at most. */
  c->max_user_event_stream = 1u << 20;
  c->user_event_store = 64u << 20;
  c->user_event_rate = 50;
  /* Serf's QueryTimeoutMult. */
  c->query_timeout_mult = 16;
  /* On, as in Serf: 47 bytes per ack and 44 per push-pull entry. */
  c->coordinates = 1;
  /* 8 x 40 bytes for each member that ever had trouble: 320 KiB for 1,000
   * of them, enough to read a flap. */
  c->history = 8;
}

void cm_config_wan(cm_config_t *c) {
  cm_config_lan(c);
  c->probe_interval = CM_SEC(5);
  c->probe_timeout = CM_SEC(3);
  c->suspicion_mult = 6;
  c->suspicion_confirmations = 4;
  c->gossip_interval = CM_MSEC(500);
  c->gossip_nodes = 4;
  c->gossip_to_dead = CM_SEC(60);
  c->pushpull_interval = CM_SEC(60);
  c->reconnect_interval = CM_SEC(10);
  c->phi_min_std = CM_MSEC(500);
  c->phi_acceptable_pause = CM_SEC(5);
}

void cm_config_local(cm_config_t *c) {
  cm_config_lan(c);
  c->probe_interval = CM_MSEC(200);
  c->probe_timeout = CM_MSEC(100);
  c->indirect_checks = 1;
  c->suspicion_mult = 3;
  c->suspicion_confirmations = 1;
  c->retransmit_mult = 2;
  c->gossip_interval = CM_MSEC(50);
  c->gossip_to_dead = CM_SEC(15);
  c->pushpull_interval = CM_SEC(15);
  c->reconnect_interval = CM_SEC(1);
  c->phi_acceptable_pause = CM_MSEC(500);
}

#define CM_FAIL(msg)                                                           \
  do {                                                                         \
    if (why != NULL)                                                           \
      *why = (msg);                                                            \
    return CM_ECONFIG;                                                         \
  } while (0)

/* Smallest packet that still holds a ping with two maximal ids and one
 * alive record with a full tag set is checked below; this is the floor. */
#define CM_MIN_PACKET 512

/* The max_members message names the format's limit. */
_Static_assert(CM_SUSPICION_MAX_K == 16,
               "update suspicion_confirmations' message");
_Static_assert(CM_WIRE_PP_MAX_ENTRIES == 65536, "update max_members' message");

int cm_config_validate(const cm_config_t *c, const char **why) {
  if (c == NULL)
    CM_FAIL("config is NULL");
  if (c->probe_interval < CM_MSEC(10))
    CM_FAIL("probe_interval must be at least 10 ms");
  if (c->probe_timeout == 0 || c->probe_timeout >= c->probe_interval)
    CM_FAIL("probe_timeout must be positive and less than probe_interval");
  if (c->indirect_checks > 16)
    CM_FAIL("indirect_checks must be at most 16");
  if (c->awareness_max < 1 || c->awareness_max > 64)
    CM_FAIL("awareness_max must be between 1 and 64");
  if (c->suspicion_mult < 1 || c->suspicion_mult > 100)
    CM_FAIL("suspicion_mult must be between 1 and 100");
  if (c->suspicion_max_mult < 1 || c->suspicion_max_mult > 100)
    CM_FAIL("suspicion_max_mult must be between 1 and 100");
  if (c->suspicion_confirmations > CM_SUSPICION_MAX_K)
    CM_FAIL("suspicion_confirmations must be at most 16");
  if (!(c->phi_threshold > 0.0) || c->phi_threshold > 1000.0)
    CM_FAIL("phi_threshold must be in (0, 1000]");
  if (c->phi_window < 2 || c->phi_window > 10000)
    CM_FAIL("phi_window must be between 2 and 10000");
  if (c->phi_min_samples < 2 || c->phi_min_samples > c->phi_window)
    CM_FAIL("phi_min_samples must be between 2 and phi_window");
  if (c->phi_min_std == 0)
    CM_FAIL("phi_min_std must be positive");
  if (c->gossip_interval == 0)
    CM_FAIL("gossip_interval must be positive");
  if (c->gossip_nodes < 1 || c->gossip_nodes > 64)
    CM_FAIL("gossip_nodes must be between 1 and 64");
  if (c->retransmit_mult < 1 || c->retransmit_mult > 64)
    CM_FAIL("retransmit_mult must be between 1 and 64");
  if (c->max_broadcast_queue < 16)
    CM_FAIL("max_broadcast_queue must be at least 16");
  if (c->pushpull_interval == 0)
    CM_FAIL("pushpull_interval must be positive");
  if (c->reconnect_interval == 0)
    CM_FAIL("reconnect_interval must be positive");
  if (c->max_packet_size < CM_MIN_PACKET || c->max_packet_size > 65507)
    CM_FAIL("max_packet_size must be between 512 and 65507");
  if (c->max_tag_key < 1 || c->max_tag_key > CM_WIRE_MAX_TAG_KEY)
    CM_FAIL("max_tag_key must be between 1 and 128");
  if (c->max_tag_value > CM_WIRE_MAX_TAG_VALUE)
    CM_FAIL("max_tag_value must be at most 1024");
  if (c->max_tags_size > CM_WIRE_MAX_TAGS_LEN)
    CM_FAIL("max_tags_size must be at most 4096");
  /* An alive record (header, id, incarnation, address, tags) must always
   * fit in one packet, or a node could never announce itself. */
  if (c->max_tags_size + 2 + 3 + 1 + CM_ID_MAX + 4 + 19 + 2 >
      c->max_packet_size)
    CM_FAIL("max_tags_size does not fit in max_packet_size");
  /* A push-pull carries the whole registry (this node, live members and
   * tombstones), and the format holds at most CM_WIRE_PP_MAX_ENTRIES: past
   * that a full node could neither send nor answer one. */
  if (c->max_members < 2 || c->max_members > CM_WIRE_PP_MAX_ENTRIES)
    CM_FAIL("max_members must be between 2 and 65536, the entries one "
            "push-pull message carries (this node, its members and its "
            "tombstones): lower max_members");
  if (c->max_pushpull_size < 4096)
    CM_FAIL("max_pushpull_size must be at least 4096");
  if (c->user_event_buffer < 16 || c->user_event_buffer > 65536)
    CM_FAIL("user_event_buffer must be between 16 and 65536");
  /* One event, with its header and origin, beside a probe in one packet. */
  if (c->max_user_event_size < 1 ||
      c->max_user_event_size + CM_UEV_OVERHEAD > c->max_packet_size)
    CM_FAIL("max_user_event_size must be at least 1 and leave "
            "max_packet_size room for a probe (256 bytes)");
  if (c->max_user_event_stream > CM_UEV_STREAM_MAX)
    CM_FAIL("max_user_event_stream must be at most 64 MiB");
  if (c->user_event_store < c->max_user_event_stream ||
      c->user_event_store > CM_UEV_STORE_MAX)
    CM_FAIL("user_event_store must be at least max_user_event_stream and "
            "at most 1 GiB");
  if (c->user_event_rate < 1 || c->user_event_rate > 100000)
    CM_FAIL("user_event_rate must be between 1 and 100000");
  if (c->query_timeout_mult < 1 || c->query_timeout_mult > 1000)
    CM_FAIL("query_timeout_mult must be between 1 and 1000");
  if (c->coordinates > 1)
    CM_FAIL("coordinates must be 0 (off) or 1 (on)");
  if (c->nack_confirms > 1)
    CM_FAIL("nack_confirms must be 0 (off) or 1 (on)");
  if (c->history > CM_HIST_LIMIT)
    CM_FAIL("history must be between 0 and 64");
  return 0;
}

/* memberlist's relay nacks after ProbeTimeout, while its asker, which sent
 * the request ProbeTimeout into its probe, judges at ProbeInterval: at its
 * LAN values (1 s, 0.5 s) every nack arrives just after the verdict and
 * counts against the asker's own health. */
cm_time_t cm_nack_wait(const cm_config_t *c) {
  cm_time_t left = c->probe_interval > c->probe_timeout
                       ? c->probe_interval - c->probe_timeout
                       : 0;
  cm_time_t w = left / 5 * 4;
  return w < c->probe_timeout ? w : c->probe_timeout;
}

cm_time_t cm_suspicion_min(const cm_config_t *c, uint32_t n) {
  double scale = n > 10 ? log10((double)n) : 1.0;
  return (cm_time_t)((double)c->suspicion_mult * scale *
                     (double)c->probe_interval);
}

/* memberlist's mult x ceil(log10(n + 1)), but never fewer sends than the
 * epidemic needs to reach every member: when each of the n nodes passes an
 * update to L random others, a given member is missed by all of them with
 * probability about e^-L, so some member misses it with probability about
 * (n - 1) e^-L. L >= ln(n - 1) + ln(100) keeps that under 1%; below it the
 * member that missed waits for a push-pull (15-30 s). memberlist's formula
 * falls short of it below 100 members (mult 4) or everywhere (mult 2): in
 * the simulator a tag change then missed someone in 1% of runs at 50
 * members (LAN) and in 37% at 6 (local profile). */
uint32_t cm_retransmit_limit(const cm_config_t *c, uint32_t n) {
  uint32_t limit = c->retransmit_mult * (uint32_t)ceil(log10((double)n + 1.0));
  uint32_t least =
      n > 2 ? (uint32_t)ceil(log((double)(n - 1)) + CM_RETRANSMIT_MISS_LN) : 0;
  return limit > least ? limit : least;
}

/* memberlist's rule: above 32 nodes, push-pull slows with log2(n) so the
 * cluster-wide full-state traffic grows like n log n, not n^2. */
cm_time_t cm_pushpull_scaled(const cm_config_t *c, uint32_t n) {
  double mult;
  if (n <= 32)
    return c->pushpull_interval;
  mult = ceil(log2((double)n) - 5.0) + 1.0;
  return (cm_time_t)((double)c->pushpull_interval * mult);
}

cm_time_t cm_query_timeout(const cm_config_t *c, uint32_t n) {
  cm_time_t rounds = (cm_time_t)ceil(log10((double)n + 1.0));
  if (rounds < 1)
    rounds = 1;
  return (cm_time_t)c->query_timeout_mult * c->gossip_interval * rounds;
}
