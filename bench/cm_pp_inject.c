/*
 * Fill a running node's registry with synthetic members, for benchmarks
 * that need a node holding thousands (bench/event_bench.py): one push-pull
 * request over the real transport, merged by the node as any peer's.
 *
 * Usage: cm_pp_inject HOST:PORT KEY_HEX COUNT
 *   HOST:PORT  the node (cluster-key mode)
 *   KEY_HEX    its cluster key, 64 hex digits (key id 1)
 *   COUNT      synthetic members: ids synthetic-N, alive, at loopback
 *              addresses 127.77.x.y port 9, where nothing answers
 *
 * Sends the request (with this process's own record first), waits for the
 * node's answer and exits 0 once it came; 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_net.h"
#include "cm_wire.h"

/* Long enough for a loaded machine to merge tens of thousands. */
#define INJECT_TIMEOUT_MS 60000
/* An entry takes at most this many bytes on the wire (id, address,
 * incarnation, state, empty tags, framing). */
#define INJECT_ENTRY_MAX 128
/* Synthetic addresses: 250 per third octet of 127.77.0.0/16. */
#define INJECT_PER_OCTET 250
#define INJECT_PORT 9

struct inject {
  int done;
  int status;
  int closed;
};

static void on_datagram(void *ud, const cm_addr_t *from, const uint8_t *d,
                        size_t len) {}

static void on_request(void *ud, const cm_addr_t *from, uint64_t token,
                       const uint8_t *d, size_t len) {}

static void on_response(void *ud, uint64_t req_id, int status,
                        const uint8_t *d, size_t len) {
  struct inject *in = ud;
  in->done = 1;
  in->status = status;
}

static void on_closed(void *arg) { ((struct inject *)arg)->closed = 1; }

static void on_deadline(uv_timer_t *t) {
  struct inject *in = t->data;
  in->done = 1;
  in->status = CM_ETIMEDOUT;
}

static int parse_key(const char *hex, cm_net_key_t *key) {
  size_t i;
  if (strlen(hex) != 2 * CM_KEY_LEN)
    return -1;
  key->id = 1;
  for (i = 0; i < CM_KEY_LEN; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1)
      return -1;
    key->key[i] = (uint8_t)v;
  }
  return 0;
}

/* The request: our own record, then count synthetic members. */
static int build_request(cm_wbuf_t *w, const cm_addr_t *self, uint32_t count) {
  cm_pp_entry_t e;
  char id[32];
  uint32_t i;
  int rc = cm_wire_pp_begin(w, CM_PP_REQUEST, 0);
  memset(&e, 0, sizeof(e));
  e.state = CM_STATE_ALIVE;
  e.addr = *self;
  if (rc == 0)
    rc = cm_wire_id_set(&e.node, "injector", strlen("injector"));
  if (rc == 0)
    rc = cm_wire_pp_add(w, &e);
  for (i = 0; rc == 0 && i < count; i++) {
    snprintf(id, sizeof(id), "synthetic-%u", i);
    rc = cm_wire_id_set(&e.node, id, strlen(id));
    if (rc != 0)
      break;
    rc = cm_addr_parse("127.77.0.1:9", &e.addr);
    e.addr.ip[2] = (uint8_t)(i / INJECT_PER_OCTET);
    e.addr.ip[3] = (uint8_t)(1 + i % INJECT_PER_OCTET);
    e.addr.port = INJECT_PORT;
    if (rc == 0)
      rc = cm_wire_pp_add(w, &e);
  }
  return rc == 0 ? cm_wire_pp_finish(w) : rc;
}

int main(int argc, char **argv) {
  static const cm_net_callbacks_t cb = {.on_datagram = on_datagram,
                                        .on_stream_request = on_request,
                                        .on_stream_response = on_response};
  struct inject in = {0, 0, 0};
  cm_net_config_t cfg;
  cm_net_key_t key;
  cm_net_t *net = NULL;
  cm_addr_t node, local;
  cm_wbuf_t w;
  uv_loop_t loop;
  uv_timer_t deadline;
  long count;
  int rc;

  if (argc != 4 || cm_addr_parse(argv[1], &node) != 0 ||
      parse_key(argv[2], &key) != 0 || (count = atol(argv[3])) < 0 ||
      count > CM_WIRE_PP_MAX_ENTRIES - 1) {
    fprintf(stderr, "usage: cm_pp_inject HOST:PORT KEY_HEX COUNT\n");
    return 1;
  }
  memset(&w, 0, sizeof(w));
  w.cap = ((size_t)count + 1) * INJECT_ENTRY_MAX + 64;
  w.p = malloc(w.cap);
  if (w.p == NULL || uv_loop_init(&loop) != 0) {
    fprintf(stderr, "cm_pp_inject: out of memory\n");
    free(w.p);
    return 1;
  }
  cm_net_config_default(&cfg);
  cfg.keys = &key;
  cfg.nkeys = 1;
  (void)cm_addr_parse("127.0.0.1:1", &local);
  local.port = 0;
  rc = cm_net_new(&net, &loop, &local, &cfg, &cb, &in);
  if (rc == 0)
    rc = cm_net_local_addr(net, &local);
  if (rc == 0)
    rc = build_request(&w, &local, (uint32_t)count);
  if (rc == 0)
    rc = cm_net_stream_request(net, &node, w.p, w.len, 1);
  if (rc == 0) {
    uv_timer_init(&loop, &deadline);
    deadline.data = &in;
    uv_timer_start(&deadline, on_deadline, INJECT_TIMEOUT_MS, 0);
    while (!in.done)
      uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    rc = in.status;
  }
  if (net != NULL) {
    cm_net_close(net, on_closed, &in);
    while (!in.closed)
      uv_run(&loop, UV_RUN_ONCE);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(&loop);
  free(w.p);
  if (rc != 0) {
    fprintf(stderr, "cm_pp_inject: %s\n", cm_strerror(rc));
    return 1;
  }
  printf("injected %ld members into %s\n", count, argv[1]);
  return 0;
}
