#include "cm_registry.h"

#include <stdlib.h>
#include <string.h>

#define REG_EMPTY (-1)
#define REG_DELETED (-2)

/* FNV-1a: ids are short and trusted to be printable; good enough spread. */
uint64_t cm_id_hash(const char *id, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= (unsigned char)id[i];
    h *= 0x100000001b3ull;
  }
  return h;
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
    free(m->ext);
  }
}

cm_member_ext_t *cm_member_ext(cm_member_t *m) {
  if (m->ext == NULL)
    m->ext = calloc(1, sizeof(*m->ext));
  return m->ext;
}

void cm_registry_free(cm_registry_t *r) {
  uint32_t i;
  for (i = 0; i < r->high; i++)
    if (r->m[i].in_use)
      reg_member_release(&r->m[i]);
  free(r->m);
  free(r->free_slots);
  free(r->index);
  memset(r, 0, sizeof(*r));
}

static int reg_rehash(cm_registry_t *r, uint32_t ncap) {
  int32_t *ni = malloc((size_t)ncap * sizeof(*ni));
  uint32_t i;
  if (ni == NULL)
    return CM_ENOMEM;
  for (i = 0; i < ncap; i++)
    ni[i] = REG_EMPTY;
  for (i = 0; i < r->high; i++) {
    uint32_t pos;
    if (!r->m[i].in_use)
      continue;
    pos = (uint32_t)r->m[i].id_hash & (ncap - 1);
    while (ni[pos] != REG_EMPTY)
      pos = (pos + 1) & (ncap - 1);
    ni[pos] = (int32_t)i;
  }
  free(r->index);
  r->index = ni;
  r->index_cap = ncap;
  r->index_used = r->count;
  return 0;
}

int32_t cm_registry_find(const cm_registry_t *r, const char *id, size_t len) {
  uint64_t h;
  uint32_t pos;
  if (r->index_cap == 0)
    return -1;
  h = cm_id_hash(id, len);
  pos = (uint32_t)h & (r->index_cap - 1);
  while (r->index[pos] != REG_EMPTY) {
    int32_t s = r->index[pos];
    if (s >= 0) {
      const cm_member_t *m = &r->m[s];
      if (m->id_hash == h && m->id_len == len &&
          memcmp(cm_member_id(m), id, len) == 0)
        return s;
    }
    pos = (pos + 1) & (r->index_cap - 1);
  }
  return -1;
}

int32_t cm_registry_add(cm_registry_t *r, const char *id, size_t len) {
  uint32_t slot, pos;
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
  /* Keep the index at most half full, counting deleted marks. */
  if ((r->index_used + 1) * 2 > r->index_cap) {
    uint32_t ncap = r->index_cap ? r->index_cap : 16;
    while ((r->count + 1) * 2 > ncap)
      ncap *= 2;
    if (reg_rehash(r, ncap) != 0) {
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
  pos = (uint32_t)m->id_hash & (r->index_cap - 1);
  while (r->index[pos] >= 0)
    pos = (pos + 1) & (r->index_cap - 1);
  if (r->index[pos] == REG_EMPTY)
    r->index_used++;
  r->index[pos] = (int32_t)slot;
  r->count++;
  return (int32_t)slot;
}

void cm_registry_remove(cm_registry_t *r, uint32_t slot) {
  cm_member_t *m = &r->m[slot];
  uint32_t pos;
  if (slot >= r->high || !m->in_use)
    return;
  pos = (uint32_t)m->id_hash & (r->index_cap - 1);
  while (r->index[pos] != (int32_t)slot)
    pos = (pos + 1) & (r->index_cap - 1);
  r->index[pos] = REG_DELETED;
  reg_member_release(m);
  memset(m, 0, sizeof(*m));
  r->free_slots[r->nfree++] = slot;
  r->count--;
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
