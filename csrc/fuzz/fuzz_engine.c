/*
 * Fuzz the engine's command path: what the binding asks of an engine
 * (start a node, set its tags, join, leave, fault settings, reads, event
 * draining, stop), with arguments good and bad: ids of any bytes, tag blobs
 * of any bytes and sizes, seeds that are the node itself, another node,
 * closed ports, unset or IPv6 addresses, timeouts of any length, fault
 * fractions outside [0, 1]. One engine serves every input (its thread
 * starts once); each input starts its own nodes, on loopback only, and
 * stops them all at its end. The input is a script of records:
 *
 *   0 START    u8 flags | u8 idlen | id | u16 tagslen | tags
 *   1 SET_TAGS u8 node | u16 len | blob
 *   2 JOIN     u8 node | u8 nseeds | u8 seed... | u16 timeout ms
 *   3 LEAVE    u8 node | u16 timeout ms
 *   4 FAULT    u8 node | u8 drop_out | u8 drop_in | u8 nblocked
 *   5 EVENTS   u8 node: drain its events
 *   6 READ     u8 node | u8 idlen | id: snapshot, find, stats
 *   7 STOP     u8 node
 *
 * (op: the record's first byte modulo 8; integers big-endian; `node` picks
 * one of FZ_NODES slots). Checks: a start either fails with no node or
 * gives a running node whose snapshot holds itself, once, with its tags; a
 * tag blob that does not validate is refused, and a refused one leaves the
 * published tags as they were (an accepted one shows at once); fractions
 * outside [0, 1] are refused; every join and leave token gets exactly one
 * result, and no result comes for a token never handed out; nothing the
 * nodes opened (descriptors) outlives them. A violation aborts.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_engine.h"
#include "cm_wire.h"
#include "fz_input.h"

#define FZ_NODES 3
#define FZ_TOKENS 64
#define FZ_MAX_TIMEOUT_MS 300
#define FZ_MAX_TAGS 4096

typedef struct fz_node {
  cm_enode_t *n;
  char id[CM_ID_MAX + 1];
  uint8_t tags[FZ_MAX_TAGS];
  size_t tags_len;
  int left; /* a leave was accepted: the node stops by itself */
  int64_t tokens[FZ_TOKENS];
  int results[FZ_TOKENS]; /* results seen per token */
  size_t ntokens;
} fz_node_t;

static cm_engine_t *fz_engine;
static fz_node_t fz_nodes[FZ_NODES];
static int fz_fds_base;

static const cm_net_key_t fz_key = {1, "fuzz-engine-cluster-key-0123456"};

/* Descriptors of the kinds a node opens (sockets, eventfds, timerfds);
 * lazily opened library files are not counted. print: list them. */
static int fz_count_fds(int print) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  char path[64], target[128];
  int n = 0;
  ssize_t len;
  if (d == NULL)
    return -1;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
    len = readlink(path, target, sizeof(target) - 1);
    if (len <= 0)
      continue;
    target[len] = 0;
    if (strncmp(target, "socket:", 7) == 0 || strstr(target, "eventfd") ||
        strstr(target, "timerfd")) {
      n++;
      if (print)
        fprintf(stderr, "fd %s: %s\n", de->d_name, target);
    }
  }
  closedir(d);
  return n;
}

static void fz_loopback(cm_addr_t *a, uint16_t port) {
  memset(a, 0, sizeof(*a));
  a->family = 4;
  a->ip[0] = 127;
  a->ip[3] = 1;
  a->port = port;
}

/* A seed: a node of this input (or itself), a closed port, an unset
 * address, port 0, IPv6 loopback, or the IPv4 broadcast address. */
static cm_addr_t fz_seed(uint8_t k) {
  cm_addr_t a;
  fz_loopback(&a, 9); /* discard: nothing listens */
  switch (k % 6) {
  case 0:
  case 1:
    if (fz_nodes[k % FZ_NODES].n != NULL)
      a = cm_enode_addr(fz_nodes[k % FZ_NODES].n);
    break;
  case 2:
    memset(&a, 0, sizeof(a));
    break;
  case 3:
    a.port = 0;
    break;
  case 4:
    memset(&a, 0, sizeof(a));
    a.family = 6;
    a.ip[15] = 1;
    a.port = 9;
    break;
  case 5:
    memset(a.ip, 255, 4);
    break;
  }
  return a;
}

/* The node's own record in its snapshot: exactly one, with `tags`. */
static void fz_check_self(fz_node_t *f) {
  cm_snapshot_t *s = cm_enode_snapshot(f->n);
  uint32_t i, self = 0;
  FZ_CHECK(s != NULL);
  for (i = 0; i < s->count; i++) {
    const cm_emember_t *m = &s->members[i];
    if (!m->is_self)
      continue;
    self++;
    FZ_CHECK(strcmp(m->id, f->id) == 0);
    /* a node that left may show its leave; its tags stay */
    FZ_CHECK(m->tags_len == f->tags_len);
    FZ_CHECK(f->tags_len == 0 || memcmp(m->tags, f->tags, f->tags_len) == 0);
  }
  FZ_CHECK(self == 1);
  cm_snapshot_release(s);
}

static void fz_drain(fz_node_t *f) {
  cm_eevent_t ev;
  size_t i;
  while (cm_enode_next_event(f->n, &ev)) {
    FZ_CHECK(ev.kind >= CM_EEV_MEMBER && ev.kind <= CM_EEV_DROPPED);
    if (ev.kind != CM_EEV_JOINED && ev.kind != CM_EEV_LEFT)
      continue;
    for (i = 0; i < f->ntokens; i++)
      if (f->tokens[i] == (int64_t)ev.token)
        break;
    FZ_CHECK(i < f->ntokens); /* a token handed out */
    f->results[i]++;
    FZ_CHECK(f->results[i] == 1); /* exactly one result */
  }
}

static void fz_stop(fz_node_t *f) {
  if (f->n == NULL)
    return;
  fz_drain(f);
  cm_enode_stop(f->n);
  f->n = NULL;
}

static void fz_start(fz_in_t *in) {
  uint8_t flags, idlen;
  uint16_t tlen;
  const uint8_t *p;
  size_t got;
  fz_node_t *f = NULL;
  cm_enode_config_t c;
  char id[CM_ID_MAX + 2];
  int i, rc, valid_tags;

  if (fz_u8(in, &flags) || fz_u8(in, &idlen))
    return;
  fz_str(in, idlen, CM_ID_MAX + 1, id);
  if (fz_u16(in, &tlen))
    return;
  p = fz_bytes(in, tlen % (FZ_MAX_TAGS + 1), &got);
  for (i = 0; i < FZ_NODES && f == NULL; i++)
    if (fz_nodes[i].n == NULL)
      f = &fz_nodes[i];
  if (f == NULL)
    return;
  memset(&c, 0, sizeof(c));
  cm_config_lan(&c.proto);
  cm_net_config_default(&c.net);
  c.net.keys = &fz_key;
  c.net.nkeys = (flags & 1) ? 0 : 1; /* no key: refused */
  c.net.static_secret[0] = flags;
  if (flags & 2)
    c.proto.max_tags_size = 64; /* small enough for tags to hit */
  c.id = id;
  fz_loopback(&c.bind, 0);
  if (flags & 4)
    c.bind.family = 0; /* no address: refused */
  c.tags = p;
  c.tags_len = got;
  c.seed = flags;
  c.event_queue_max = (flags & 8) ? 4 : 0;
  c.leave_grace = CM_MSEC(50);
  valid_tags = cm_tags_validate(p, got) == 0;
  f->n = NULL;
  rc = cm_enode_start(fz_engine, &c, &f->n);
  if (rc != 0) {
    FZ_CHECK(f->n == NULL);
    return;
  }
  FZ_CHECK(f->n != NULL);
  FZ_CHECK(valid_tags);
  FZ_CHECK(!(flags & 1) && !(flags & 4));
  FZ_CHECK(cm_enode_running(f->n));
  snprintf(f->id, sizeof(f->id), "%s", id);
  memcpy(f->tags, p, got);
  f->tags_len = got;
  f->left = 0;
  f->ntokens = 0;
  fz_check_self(f);
}

static fz_node_t *fz_pick(fz_in_t *in) {
  uint8_t k;
  if (fz_u8(in, &k))
    return NULL;
  return fz_nodes[k % FZ_NODES].n != NULL ? &fz_nodes[k % FZ_NODES] : NULL;
}

static void fz_token(fz_node_t *f, int64_t t) {
  size_t i;
  if (t < 0)
    return;
  for (i = 0; i < f->ntokens; i++)
    FZ_CHECK(f->tokens[i] != t); /* tokens are never reused */
  if (f->ntokens < FZ_TOKENS) {
    f->results[f->ntokens] = 0;
    f->tokens[f->ntokens++] = t;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FZ_CHECK(cm_engine_new(&fz_engine) == 0);
  fz_fds_base = fz_count_fds(0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  uint8_t op, v8, k;
  uint16_t v16;
  const uint8_t *p;
  size_t got, i;
  int steps = 0, rc;
  fz_node_t *f;

  while (in.n > 0 && steps++ < 64) {
    (void)fz_u8(&in, &op);
    switch (op % 8) {
    case 0:
      fz_start(&in);
      break;
    case 1:
      f = fz_pick(&in);
      if (fz_u16(&in, &v16))
        break;
      p = fz_bytes(&in, v16 % (FZ_MAX_TAGS + 1), &got);
      if (f == NULL)
        break;
      rc = cm_enode_set_tags(f->n, p, got);
      if (cm_tags_validate(p, got) != 0)
        FZ_CHECK(rc != 0);
      if (rc == 0) {
        FZ_CHECK(!f->left);
        memcpy(f->tags, p, got);
        f->tags_len = got;
      }
      if (!f->left)
        fz_check_self(f);
      break;
    case 2: {
      cm_addr_t seeds[8];
      uint8_t ns;
      f = fz_pick(&in);
      if (fz_u8(&in, &ns))
        break;
      ns %= 9;
      for (i = 0; i < ns && fz_u8(&in, &k) == 0; i++)
        seeds[i] = fz_seed(k);
      ns = (uint8_t)i;
      if (fz_u16(&in, &v16) || f == NULL)
        break;
      fz_token(f, cm_enode_join(f->n, ns ? seeds : NULL, ns,
                                CM_MSEC(v16 % FZ_MAX_TIMEOUT_MS)));
      break;
    }
    case 3:
      f = fz_pick(&in);
      if (fz_u16(&in, &v16) || f == NULL)
        break;
      {
        int64_t t = cm_enode_leave(f->n, CM_MSEC(v16 % FZ_MAX_TIMEOUT_MS));
        fz_token(f, t);
        if (t >= 0)
          f->left = 1;
      }
      break;
    case 4: {
      uint8_t out, inn, nb;
      cm_net_fault_t fl;
      cm_addr_t blocked[4];
      f = fz_pick(&in);
      if (fz_u8(&in, &out) || fz_u8(&in, &inn) || fz_u8(&in, &nb) || f == NULL)
        break;
      memset(&fl, 0, sizeof(fl));
      /* 0..200 in hundredths, then NaN and -1 */
      fl.drop_out = out == 255 ? NAN : out == 254 ? -1.0 : out / 100.0;
      fl.drop_in = inn / 100.0;
      nb %= 5;
      for (i = 0; i < nb; i++)
        blocked[i] = fz_seed((uint8_t)(nb + i));
      fl.blocked = nb ? blocked : NULL;
      fl.nblocked = nb;
      fl.seed = out;
      rc = cm_enode_set_fault(f->n, (out & inn) == 7 ? NULL : &fl);
      if ((out & inn) != 7 && !(fl.drop_out >= 0 && fl.drop_out <= 1 &&
                                fl.drop_in >= 0 && fl.drop_in <= 1))
        FZ_CHECK(rc != 0);
      break;
    }
    case 5:
      f = fz_pick(&in);
      if (f != NULL)
        fz_drain(f);
      break;
    case 6: {
      char id[CM_ID_MAX + 2];
      cm_snapshot_t *s;
      cm_enode_stats_t st;
      f = fz_pick(&in);
      if (fz_u8(&in, &v8))
        break;
      fz_str(&in, v8, CM_ID_MAX + 1, id);
      if (f == NULL)
        break;
      s = cm_enode_snapshot(f->n);
      if (s != NULL) {
        const cm_emember_t *m = cm_snapshot_find(s, id);
        FZ_CHECK(m == NULL || strcmp(m->id, id) == 0);
        m = cm_snapshot_find(s, f->id);
        FZ_CHECK(m != NULL && m->is_self);
        cm_snapshot_release(s);
      }
      cm_enode_stats(f->n, &st);
      FZ_CHECK(st.net.conns_half_open <= st.net.conns_open);
      break;
    }
    case 7:
      f = fz_pick(&in);
      if (f != NULL)
        fz_stop(f);
      break;
    }
  }
  for (i = 0; i < FZ_NODES; i++)
    fz_stop(&fz_nodes[i]);
  /* nothing the nodes opened outlives them */
  if (fz_count_fds(0) != fz_fds_base) {
    fprintf(stderr, "%d descriptors at the start, now:\n", fz_fds_base);
    fz_count_fds(1);
    FZ_CHECK(fz_count_fds(0) == fz_fds_base);
  }
  return 0;
}
