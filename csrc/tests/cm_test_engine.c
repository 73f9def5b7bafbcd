#include "cm_test_engine.h"

#include <string.h>
#include <time.h>

#include "cm_test.h"

cm_enode_t *cm_te_start(cm_engine_t *e, const char *id,
                        const cm_net_config_t *net, uint64_t seed,
                        uint32_t queue) {
  cm_enode_config_t c;
  cm_enode_t *n = NULL;
  memset(&c, 0, sizeof(c));
  cm_config_lan(&c.proto);
  c.net = *net;
  c.net.static_secret[0] = (uint8_t)seed;
  c.id = id;
  CM_CHECK_OK(cm_addr_parse("127.0.0.1:1", &c.bind));
  c.bind.port = 0;
  c.seed = seed;
  c.event_queue_max = queue;
  CM_CHECK_OK(cm_enode_start(e, &c, &n));
  return n;
}

int cm_te_alive_count(cm_enode_t *n) {
  cm_snapshot_t *s = cm_enode_snapshot(n);
  int c = 0;
  uint32_t i;
  if (s == NULL)
    return 0;
  for (i = 0; i < s->count; i++)
    c += s->members[i].state == CM_STATE_ALIVE;
  cm_snapshot_release(s);
  return c;
}

void cm_te_nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

uint64_t cm_te_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
