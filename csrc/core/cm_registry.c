#include "cm_registry.h"

#include <stdlib.h>
#include <string.h>

#define REG_EMPTY (-1)
#define REG_DELETED (-2)
/* A table's first size, when its first entry comes. */
#define REG_TABLE_MIN 16

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* FNV-1a: ids are short and trusted to be printable; good enough spread. */
uint64_t cm_id_hash(const char *id, size_t len) {
  return fnv1a(0xcbf29ce484222325ull, id, len);
}

/* Over what cm_addr_eq compares, so equal addresses hash alike. */
static uint64_t addr_hash(const cm_addr_t *a) {
  uint64_t h = fnv1a(0xcbf29ce484222325ull, &a->family, 1);
  h = fnv1a(h, &a->port, sizeof(a->port));
  return fnv1a(h, a->ip, a->family == 6 ? 16 : 4);
}

int cm_registry_init(cm_registry_t *r) {
  memset(r, 0, sizeof(*r));
  return 0;
}

static void reg_member_release(cm_member_t *m) {
  free(m->tags);
  if (m->id_len >= CM_MEMBER_ID_INLINE)
    free(m->idu.heap);
  if (m->ext != NULL) {
    free(m->ext->susp);
    cm_phi_free(m->ext->phi);
    free(m->ext->coord);
    free(m->ext->hist);
    free(m->ext->rtt);
    free(m->ext);
  }
}

cm_member_ext_t *cm_member_ext(cm_member_t *m) {
  if (m->ext == NULL)
    m->ext = calloc(1, sizeof(*m->ext));
  return m->ext;
}

static void table_free(cm_slot_table_t *t) {
  free(t->t);
  memset(t, 0, sizeof(*t));
}

void cm_registry_free(cm_registry_t *r) {
  uint32_t i;
  for (i = 0; i < r->high; i++)
    if (r->m[i].in_use)
      reg_member_release(&r->m[i]);
  free(r->m);
  free(r->free_slots);
  table_free(&r->ids);
  table_free(&r->addrs);
  memset(r, 0, sizeof(*r));
}

/* --------------------------------------------------------- slot tables */

/* What one table indexes: whether a slot belongs in it, and its hash. */
typedef struct table_kind {
  int (*indexed)(const cm_member_t *m);
  uint64_t (*hash)(const cm_member_t *m);
} table_kind_t;

static int id_indexed(const cm_member_t *m) { return m->in_use; }
static uint64_t id_key(const cm_member_t *m) { return m->id_hash; }
static int addr_indexed(const cm_member_t *m) {
  return m->in_use && (m->addr.family == 4 || m->addr.family == 6);
}
static uint64_t addr_key(const cm_member_t *m) { return addr_hash(&m->addr); }

static const table_kind_t by_id = {id_indexed, id_key};
static const table_kind_t by_addr = {addr_indexed, addr_key};

static void table_insert(cm_slot_table_t *t, uint64_t h, uint32_t slot) {
  uint32_t pos = (uint32_t)h & (t->cap - 1);
  while (t->t[pos] >= 0)
    pos = (pos + 1) & (t->cap - 1);
  if (t->t[pos] == REG_EMPTY)
    t->used++;
  t->t[pos] = (int32_t)slot;
  t->live++;
}

static void table_remove(cm_slot_table_t *t, uint64_t h, uint32_t slot) {
  uint32_t pos = (uint32_t)h & (t->cap - 1);
  while (t->t[pos] != (int32_t)slot)
    pos = (pos + 1) & (t->cap - 1);
  t->t[pos] = REG_DELETED;
  t->live--;
}

/* Rebuild t from the members, with room for one more entry and no deleted
 * marks. 0 or CM_ENOMEM (t unchanged). */
static int table_rebuild(const cm_registry_t *r, cm_slot_table_t *t,
                         const table_kind_t *k) {
  cm_slot_table_t nt;
  uint32_t i, live = 0;
  for (i = 0; i < r->high; i++)
    live += (uint32_t)k->indexed(&r->m[i]);
  memset(&nt, 0, sizeof(nt));
  nt.cap = REG_TABLE_MIN;
  while ((live + 1) * 2 > nt.cap)
    nt.cap *= 2;
  nt.t = malloc((size_t)nt.cap * sizeof(*nt.t));
  if (nt.t == NULL)
    return CM_ENOMEM;
  for (i = 0; i < nt.cap; i++)
    nt.t[i] = REG_EMPTY;
  for (i = 0; i < r->high; i++)
    if (k->indexed(&r->m[i]))
      table_insert(&nt, k->hash(&r->m[i]), i);
  free(t->t);
  *t = nt;
  return 0;
}

/* 1 if one more entry would fill t past half. */
static int table_full(const cm_slot_table_t *t) {
  return (t->used + 1) * 2 > t->cap;
}

/* ------------------------------------------------------------ registry */

int32_t cm_registry_find(const cm_registry_t *r, const char *id, size_t len) {
  uint64_t h;
  uint32_t pos;
  if (r->ids.t == NULL)
    return -1;
  h = cm_id_hash(id, len);
  pos = (uint32_t)h & (r->ids.cap - 1);
  while (r->ids.t[pos] != REG_EMPTY) {
    int32_t s = r->ids.t[pos];
    if (s >= 0) {
      const cm_member_t *m = &r->m[s];
      if (m->id_hash == h && m->id_len == len &&
          memcmp(cm_member_id(m), id, len) == 0)
        return s;
    }
    pos = (pos + 1) & (r->ids.cap - 1);
  }
  return -1;
}

int32_t cm_registry_add(cm_registry_t *r, const char *id, size_t len) {
  uint32_t slot;
  cm_member_t *m;
  char *heap_id = NULL;
  if (len > CM_ID_MAX)
    return CM_EINVAL;
  if (len >= CM_MEMBER_ID_INLINE) {
    heap_id = malloc(len + 1);
    if (heap_id == NULL)
      return CM_ENOMEM;
    memcpy(heap_id, id, len);
    heap_id[len] = '\0';
  }
  if (r->ids.t == NULL || table_full(&r->ids)) {
    if (table_rebuild(r, &r->ids, &by_id) != 0) {
      free(heap_id);
      return CM_ENOMEM;
    }
  }
  if (r->nfree > 0) {
    slot = r->free_slots[--r->nfree];
  } else {
    if (r->high == r->cap) {
      /* Grow by half: at 10,000 members per node and thousands of nodes in
       * a simulation, doubling would waste up to half of every table. */
      uint32_t ncap = r->cap ? r->cap + r->cap / 2 : 16;
      cm_member_t *nm = realloc(r->m, (size_t)ncap * sizeof(*nm));
      uint32_t *nf;
      if (nm == NULL) {
        free(heap_id);
        return CM_ENOMEM;
      }
      r->m = nm;
      nf = realloc(r->free_slots, (size_t)ncap * sizeof(*nf));
      if (nf == NULL) {
        free(heap_id);
        return CM_ENOMEM;
      }
      r->free_slots = nf;
      r->cap = ncap;
    }
    slot = r->high++;
  }
  m = &r->m[slot];
  memset(m, 0, sizeof(*m));
  if (heap_id != NULL) {
    m->idu.heap = heap_id;
  } else {
    memcpy(m->idu.inl, id, len);
    m->idu.inl[len] = '\0';
  }
  m->id_len = (uint8_t)len;
  m->id_hash = cm_id_hash(id, len);
  m->in_use = 1;
  table_insert(&r->ids, m->id_hash, slot);
  r->count++;
  return (int32_t)slot;
}

void cm_registry_remove(cm_registry_t *r, uint32_t slot) {
  cm_member_t *m = &r->m[slot];
  if (slot >= r->high || !m->in_use)
    return;
  table_remove(&r->ids, m->id_hash, slot);
  if (r->addrs.t != NULL && addr_indexed(m))
    table_remove(&r->addrs, addr_hash(&m->addr), slot);
  reg_member_release(m);
  memset(m, 0, sizeof(*m));
  r->free_slots[r->nfree++] = slot;
  r->count--;
}

void cm_registry_set_addr(cm_registry_t *r, uint32_t slot,
                          const cm_addr_t *addr) {
  cm_member_t *m = &r->m[slot];
  if (r->addrs.t != NULL && addr_indexed(m))
    table_remove(&r->addrs, addr_hash(&m->addr), slot);
  m->addr = *addr;
  if (r->addrs.t == NULL || !addr_indexed(m))
    return;
  if (!table_full(&r->addrs)) {
    table_insert(&r->addrs, addr_hash(&m->addr), slot);
    return;
  }
  /* The rebuild takes this member in. Without the memory to grow, drop the
   * index rather than let it go stale: the next look-up builds it again. */
  if (table_rebuild(r, &r->addrs, &by_addr) != 0)
    table_free(&r->addrs);
}

int cm_registry_index_addrs(cm_registry_t *r) {
  if (r->addrs.t != NULL)
    return 0;
  return table_rebuild(r, &r->addrs, &by_addr);
}

int32_t cm_registry_find_addr(const cm_registry_t *r, const cm_addr_t *addr,
                              uint32_t *cursor) {
  const cm_slot_table_t *t = &r->addrs;
  uint32_t pos;
  if (t->t == NULL)
    return -1;
  /* *cursor counts the entries of addr's probe sequence already seen; a
   * table at most half full always ends the sequence with an empty one. */
  pos = ((uint32_t)addr_hash(addr) + *cursor) & (t->cap - 1);
  while (t->t[pos] != REG_EMPTY) {
    int32_t s = t->t[pos];
    pos = (pos + 1) & (t->cap - 1);
    (*cursor)++;
    if (s >= 0 && cm_addr_eq(&r->m[s].addr, addr))
      return s;
  }
  return -1;
}

int cm_member_set_tags(cm_member_t *m, const uint8_t *tags, size_t len) {
  uint8_t *t = NULL;
  if (len > 0) {
    t = malloc(len);
    if (t == NULL)
      return CM_ENOMEM;
    memcpy(t, tags, len);
  }
  free(m->tags);
  m->tags = t;
  m->tags_len = (uint16_t)len;
  return 0;
}
