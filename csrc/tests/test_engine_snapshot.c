/*
 * Snapshot look-ups by id: a few are scans, then an index is built once,
 * kept and shared, answers like a scan, and is built safely by threads
 * that race to it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cm_engine.h"
#include "cm_test.h"

#define SNAP_MEMBERS 10000
#define SNAP_THREADS 4

static cm_snapshot_t *filled(uint32_t count) {
  cm_snapshot_t *s = cm_snapshot_alloc(count, 0);
  uint32_t i;
  CM_CHECK(s != NULL);
  for (i = 0; i < count; i++)
    snprintf(s->members[i].id, sizeof(s->members[i].id), "member-%u", i);
  return s;
}

/* A snapshot searched a few times is scanned (one event: one scan, no
 * index to build); searched more, it is indexed once and the index kept. */
CM_TEST(engine_snapshot_find_scans_then_indexes_once) {
  cm_snapshot_t *s = filled(SNAP_MEMBERS);
  const void *index;
  uint32_t i, scans = 0;
  while (atomic_load(&s->index) == NULL && scans < 100) {
    CM_CHECK(cm_snapshot_find(s, "member-9999") == &s->members[9999]);
    scans++;
  }
  CM_CHECK(scans > 1);   /* the first searches scanned */
  CM_CHECK(scans <= 16); /* a burst soon pays for an index */
  index = atomic_load(&s->index);
  CM_CHECK(index != NULL);
  for (i = 0; i < SNAP_MEMBERS; i++) {
    char id[32];
    snprintf(id, sizeof(id), "member-%u", i);
    CM_CHECK(cm_snapshot_find(s, id) == &s->members[i]);
  }
  CM_CHECK(cm_snapshot_find(s, "member-10000") == NULL);
  CM_CHECK(cm_snapshot_find(s, "") == NULL);
  CM_CHECK(atomic_load(&s->index) == index);
  cm_snapshot_release(s);
}

/* Filled by hand, a snapshot may hold one id twice: the first is found. */
CM_TEST(engine_snapshot_find_first_of_duplicates_and_empty) {
  cm_snapshot_t *s = filled(3), *empty = cm_snapshot_alloc(0, 0);
  snprintf(s->members[2].id, sizeof(s->members[2].id), "member-1");
  CM_CHECK(cm_snapshot_find(s, "member-1") == &s->members[1]);
  CM_CHECK(empty != NULL);
  CM_CHECK(cm_snapshot_find(empty, "member-1") == NULL);
  cm_snapshot_release(s);
  cm_snapshot_release(empty);
}

struct finder {
  cm_snapshot_t *s;
  pthread_barrier_t *go;
  int wrong;
};

static void *find_all(void *arg) {
  struct finder *f = arg;
  uint32_t i;
  pthread_barrier_wait(f->go);
  for (i = 0; i < f->s->count; i += 7) {
    char id[32];
    snprintf(id, sizeof(id), "member-%u", i);
    f->wrong += cm_snapshot_find(f->s, id) != &f->s->members[i];
  }
  return NULL;
}

/* Threads that find in a fresh snapshot at once all build an index; one
 * is kept, the others freed, and every answer is right. */
CM_TEST(engine_snapshot_find_from_racing_threads) {
  pthread_t t[SNAP_THREADS];
  struct finder f[SNAP_THREADS];
  pthread_barrier_t go;
  int round, i;
  for (round = 0; round < 20; round++) {
    cm_snapshot_t *s = filled(SNAP_MEMBERS / 10);
    pthread_barrier_init(&go, NULL, SNAP_THREADS);
    for (i = 0; i < SNAP_THREADS; i++) {
      f[i].s = s;
      f[i].go = &go;
      f[i].wrong = 0;
      CM_CHECK_OK(pthread_create(&t[i], NULL, find_all, &f[i]));
    }
    for (i = 0; i < SNAP_THREADS; i++) {
      pthread_join(t[i], NULL);
      CM_CHECK_EQ(f[i].wrong, 0);
    }
    pthread_barrier_destroy(&go);
    cm_snapshot_release(s);
  }
}
