#include "cm_rand.h"
#include "cm_test.h"
#include "cm_theap.h"

#define IDS 200

struct model {
  uint32_t pos[IDS];
  int in[IDS];
  cm_time_t key[IDS];
};

static void moved(void *ud, uint32_t id, uint32_t pos) {
  ((struct model *)ud)->pos[id] = pos;
}

/* Heap order holds, every id's reported position is where it is, and the
 * minimum is the model's. */
static void check(const cm_theap_t *h, const struct model *m) {
  uint32_t i, n = 0;
  cm_time_t min = CM_TIME_NEVER;
  for (i = 1; i < h->len; i++)
    CM_CHECK(h->e[(i - 1) / 2].key <= h->e[i].key);
  for (i = 0; i < IDS; i++) {
    if (!m->in[i])
      continue;
    n++;
    CM_CHECK(m->pos[i] < h->len);
    CM_CHECK_EQ(h->e[m->pos[i]].id, i);
    CM_CHECK_EQ(h->e[m->pos[i]].key, m->key[i]);
    if (m->key[i] < min)
      min = m->key[i];
  }
  CM_CHECK_EQ(n, h->len);
  CM_CHECK(cm_theap_min(h) == min);
}

/* Random pushes, updates (earlier and later), removals anywhere and bulk
 * re-keying against a plain array: the heap agrees after every step. */
CM_TEST(theap_agrees_with_a_plain_list) {
  cm_theap_t h;
  struct model m;
  cm_rand_t r;
  int step;
  memset(&m, 0, sizeof(m));
  cm_rand_seed(&r, 7);
  cm_theap_init(&h, moved, &m);
  CM_CHECK(cm_theap_min(&h) == CM_TIME_NEVER);
  for (step = 0; step < 20000; step++) {
    uint32_t id = (uint32_t)cm_rand_below(&r, IDS);
    uint32_t op = (uint32_t)cm_rand_below(&r, 10);
    cm_time_t key = cm_rand_below(&r, 1000); /* many equal keys */
    if (!m.in[id]) {
      CM_CHECK_OK(cm_theap_push(&h, key, id));
      m.in[id] = 1;
      m.key[id] = key;
    } else if (op < 4) {
      cm_theap_remove(&h, m.pos[id]);
      m.in[id] = 0;
    } else if (op < 9) {
      cm_theap_update(&h, m.pos[id], key);
      m.key[id] = key;
    } else {
      uint32_t i;
      for (i = 0; i < h.len; i++) {
        h.e[i].key = cm_rand_below(&r, 1000);
        m.key[h.e[i].id] = h.e[i].key;
      }
      cm_theap_heapify(&h);
    }
    check(&h, &m);
  }
  /* Draining by the minimum yields keys in order. */
  {
    cm_time_t last = 0;
    while (h.len > 0) {
      uint32_t id = h.e[0].id;
      CM_CHECK(h.e[0].key >= last);
      last = h.e[0].key;
      cm_theap_remove(&h, 0);
      m.in[id] = 0;
      check(&h, &m);
    }
  }
  cm_theap_free(&h);
}
