/*
 * The engine used from several threads at once: nodes started and stopped
 * by some threads while others shut the engine down. Nothing here may
 * touch a node another thread freed; the sanitizer builds (ASan, TSan) see
 * to it that nothing does.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cm_engine.h"
#include "cm_test.h"
#include "cm_test_engine.h"

#define WORKERS 4
#define SHUTTERS 2
#define ROUNDS 20
/* Start/stop cycles every worker completes before the engine is shut. */
#define CYCLES_BEFORE_SHUTDOWN 3
#define WAIT_MS 60000

struct worker {
  cm_engine_t *e;
  const cm_net_key_t *key;
  int index;
  _Atomic int cycles;
  int bad_rc; /* a start error other than CM_ECLOSED */
};

static cm_enode_t *worker_start(struct worker *w, int i, int *rc) {
  cm_enode_config_t c;
  cm_enode_t *n = NULL;
  char id[32];
  memset(&c, 0, sizeof(c));
  cm_config_lan(&c.proto);
  cm_net_config_default(&c.net);
  c.net.keys = w->key;
  c.net.nkeys = 1;
  snprintf(id, sizeof(id), "w%d-%d", w->index, i);
  c.id = id;
  (void)cm_addr_parse("127.0.0.1:1", &c.bind);
  c.bind.port = 0;
  c.seed = (uint64_t)i + 1;
  *rc = cm_enode_start(w->e, &c, &n);
  return n;
}

/* Start nodes and stop them (every third one is left running for the
 * shutdown to stop) until the engine refuses. */
static void *work(void *arg) {
  struct worker *w = arg;
  int i, rc;
  for (i = 0;; i++) {
    cm_enode_t *n = worker_start(w, i, &rc);
    if (rc == CM_ECLOSED)
      break;
    if (rc != 0) {
      w->bad_rc = rc;
      break;
    }
    if (i % 3 != 2)
      cm_enode_stop(n);
    atomic_fetch_add(&w->cycles, 1);
  }
  return NULL;
}

static void *shut(void *arg) {
  cm_engine_shutdown(arg);
  return NULL;
}

static int all_cycled(struct worker *w) {
  int i;
  for (i = 0; i < WORKERS; i++)
    if (atomic_load(&w[i].cycles) < CYCLES_BEFORE_SHUTDOWN)
      return 0;
  return 1;
}

/* Workers start and stop nodes while two threads shut the engine down:
 * stops finishing (and freeing their nodes) while the loop stops every
 * node must not meet, and each thread's calls end with CM_ECLOSED. */
CM_TEST(engine_start_stop_race_shutdown) {
  cm_net_key_t key;
  int round, i;
  memset(&key, 7, sizeof(key));
  key.id = 1;
  for (round = 0; round < ROUNDS; round++) {
    struct worker w[WORKERS];
    pthread_t wt[WORKERS], st[SHUTTERS];
    cm_engine_t *e = NULL;
    int waited;
    CM_CHECK_OK(cm_engine_new(&e));
    for (i = 0; i < WORKERS; i++) {
      memset(&w[i], 0, sizeof(w[i]));
      w[i].e = e;
      w[i].key = &key;
      w[i].index = i;
      atomic_init(&w[i].cycles, 0);
      CM_CHECK_OK(pthread_create(&wt[i], NULL, work, &w[i]));
    }
    for (waited = 0; waited < WAIT_MS && !all_cycled(w); waited++)
      cm_te_nap_ms(1);
    for (i = 0; i < SHUTTERS; i++)
      CM_CHECK_OK(pthread_create(&st[i], NULL, shut, e));
    for (i = 0; i < SHUTTERS; i++)
      pthread_join(st[i], NULL);
    for (i = 0; i < WORKERS; i++) {
      pthread_join(wt[i], NULL);
      CM_CHECK_EQ(w[i].bad_rc, 0);
      CM_CHECK(atomic_load(&w[i].cycles) >= CYCLES_BEFORE_SHUTDOWN);
    }
    cm_engine_free(e);
  }
}
