/*
 * clustermember._core.Engine, Node and Snapshot: the engine (csrc/engine) as
 * Python heap types. Argument conversion only: times cross the boundary as
 * float seconds (CLOCK_MONOTONIC, the clock of time.monotonic()), addresses
 * as "host:port" strings, tags as dict[str, str], events and members as
 * tuples that clustermember/_membership.py turns into dataclasses.
 *
 * The engine thread never sees a Python object. Every call here holds the
 * GIL while it waits for the engine (a few microseconds when the loop is
 * idle): the engine never takes the GIL, so this cannot deadlock, and it
 * means no other Python thread can free a node while a call is using it.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cm_engine.h"
#include "cm_py.h"
#include "cm_wire.h"

/* Events taken from the engine per next_events() call unless told: enough
 * to drain a burst in one loop callback, small enough to keep the loop
 * responsive during a flood. */
#define NODE_EVENTS_BATCH 256

static const char *const state_names[] = {"alive", "suspect", "failed", "left"};
#define NSTATES 4

typedef struct engine_object {
  PyObject_HEAD PyObject *module;
  cm_engine_t *engine; /* NULL once closed or forgotten */
  int forgotten;       /* dropped after fork(): never freed here */
} engine_object;

typedef struct node_object {
  PyObject_HEAD PyObject *module;
  engine_object *owner;
  cm_enode_t *node; /* NULL once stopped */
  char id[CM_ID_MAX + 1];
} node_object;

typedef struct snapshot_object {
  PyObject_HEAD PyObject *module;
  cm_snapshot_t *snap;
} snapshot_object;

/* ------------------------------------------------------------ conversions */

static int seconds_to_time(PyObject *obj, cm_time_t *out, const char *what) {
  double sec = PyFloat_AsDouble(obj);
  if (sec == -1.0 && PyErr_Occurred())
    return -1;
  if (!isfinite(sec) || sec < 0 || sec > 1e9) {
    PyErr_Format(PyExc_ValueError,
                 "%s must be a finite number of seconds in [0, 1e9], got %R",
                 what, obj);
    return -1;
  }
  *out = (cm_time_t)llround(sec * 1e6);
  return 0;
}

static PyObject *time_to_seconds(cm_time_t t) {
  return PyFloat_FromDouble((double)t / 1e6);
}

static PyObject *addr_to_str(const cm_addr_t *a) {
  char buf[CM_ADDR_STRLEN];
  if (a->family == 0)
    Py_RETURN_NONE;
  if (cm_addr_format(a, buf, sizeof(buf)) != 0)
    return PyUnicode_FromString("?");
  return PyUnicode_FromString(buf);
}

static int str_to_addr_port0(PyObject *obj, cm_addr_t *out, const char *what,
                             int allow_port0) {
  const char *s;
  char buf[CM_ADDR_STRLEN + 8];
  size_t len;
  if (!PyUnicode_Check(obj)) {
    PyErr_Format(PyExc_TypeError,
                 "%s must be a str like '127.0.0.1:7946', "
                 "not %.100s",
                 what, Py_TYPE(obj)->tp_name);
    return -1;
  }
  s = PyUnicode_AsUTF8(obj);
  if (s == NULL)
    return -1;
  len = strlen(s);
  /* The parser wants a port peers can reach; a bind address may ask the
   * kernel for one with port 0. */
  if (allow_port0 && len >= 2 && len < sizeof(buf) &&
      strcmp(s + len - 2, ":0") == 0) {
    memcpy(buf, s, len - 1);
    memcpy(buf + len - 1, "1", 2);
    if (cm_addr_parse(buf, out) == 0) {
      out->port = 0;
      return 0;
    }
  }
  if (cm_addr_parse(s, out) != 0) {
    PyErr_Format(PyExc_ValueError,
                 "%s %R is not an address: expected 'a.b.c.d:port' or "
                 "'[v6]:port' with a numeric IP",
                 what, obj);
    return -1;
  }
  return 0;
}

static int str_to_addr(PyObject *obj, cm_addr_t *out, const char *what) {
  return str_to_addr_port0(obj, out, what, 0);
}

/* dict[str, str] -> canonical blob in out (CM_WIRE_MAX_TAGS_LEN bytes). */
static int dict_to_tags(PyObject *module, PyObject *dict, uint8_t *out,
                        size_t *out_len) {
  uint8_t tmp[CM_WIRE_MAX_TAGS_LEN];
  size_t len = 0;
  Py_ssize_t pos = 0;
  PyObject *k, *v;
  if (!PyDict_Check(dict)) {
    PyErr_Format(PyExc_TypeError, "tags must be a dict[str, str], not %.100s",
                 Py_TYPE(dict)->tp_name);
    return -1;
  }
  while (PyDict_Next(dict, &pos, &k, &v)) {
    const char *ks, *vs;
    Py_ssize_t kl, vl;
    int rc;
    if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
      PyErr_Format(PyExc_TypeError,
                   "tags must map str to str; got %.100s: %.100s",
                   Py_TYPE(k)->tp_name, Py_TYPE(v)->tp_name);
      return -1;
    }
    ks = PyUnicode_AsUTF8AndSize(k, &kl);
    vs = PyUnicode_AsUTF8AndSize(v, &vl);
    if (ks == NULL || vs == NULL)
      return -1;
    memcpy(tmp, out, len);
    rc = cm_tags_set(tmp, len, ks, (size_t)kl, vs, (size_t)vl, out,
                     CM_WIRE_MAX_TAGS_LEN, &len);
    if (rc != 0) {
      char msg[200];
      snprintf(msg, sizeof(msg), "tag %.80s: %s", ks, cm_strerror(rc));
      cm_py_raise(module, rc == CM_ENOSPC ? CM_ETAGSET : rc, msg);
      return -1;
    }
  }
  *out_len = len;
  return 0;
}

/* A member as (id, addr, state, incarnation, tags, state_change, phi,
 * is_self, coordinate or None). */
static PyObject *member_tuple(const cm_emember_t *m) {
  PyObject *tags = cm_py_tags_dict(m->tags, m->tags_len);
  PyObject *addr = addr_to_str(&m->addr);
  PyObject *coord = m->has_coord ? cm_py_coord_tuple(&m->coord) : Py_None;
  PyObject *t;
  if (tags == NULL || addr == NULL || coord == NULL) {
    Py_XDECREF(tags);
    Py_XDECREF(addr);
    if (coord != Py_None)
      Py_XDECREF(coord);
    return NULL;
  }
  if (coord == Py_None)
    Py_INCREF(coord);
  t = Py_BuildValue("(sNskNddON)", m->id, addr,
                    m->state < NSTATES ? state_names[m->state] : "unknown",
                    (unsigned long)m->incarnation, tags,
                    (double)m->state_change / 1e6, m->phi,
                    m->is_self ? Py_True : Py_False, coord);
  return t;
}

/* Through the snapshot's id index: a burst of member events costs
 * O(events) to convert on the event loop's thread, not O(events x
 * members). */
static const cm_emember_t *snapshot_find(cm_snapshot_t *s, const char *id) {
  return s != NULL ? cm_snapshot_find(s, id) : NULL;
}

/* --------------------------------------------------- protocol config dict */

/* Fill c from a dict holding every protocol field (missing ones keep the
 * LAN default; unknown keys are refused). */
static int proto_from_dict(PyObject *d, cm_config_t *c) {
  PyObject *key, *val;
  Py_ssize_t pos = 0;
  cm_config_lan(c);
  if (d == Py_None)
    return 0;
  if (!PyDict_Check(d)) {
    PyErr_SetString(PyExc_TypeError, "protocol config must be a dict");
    return -1;
  }
  while (PyDict_Next(d, &pos, &key, &val)) {
    if (cm_py_config_set(c, key, val) < 0)
      return -1;
  }
  return 0;
}

/* ------------------------------------------------------ module functions */

static PyObject *py_config_profile(PyObject *module, PyObject *arg) {
  cm_config_t c;
  const char *name = PyUnicode_AsUTF8(arg);
  if (name == NULL)
    return NULL;
  if (strcmp(name, "lan") == 0)
    cm_config_lan(&c);
  else if (strcmp(name, "wan") == 0)
    cm_config_wan(&c);
  else if (strcmp(name, "local") == 0)
    cm_config_local(&c);
  else
    return PyErr_Format(PyExc_ValueError,
                        "unknown profile %R: expected lan, wan or local", arg);
  return cm_py_config_dict(&c);
}

static PyObject *py_validate_config(PyObject *module, PyObject *arg) {
  cm_config_t c;
  const char *why = NULL;
  if (proto_from_dict(arg, &c) < 0)
    return NULL;
  if (cm_config_validate(&c, &why) != 0)
    return PyUnicode_FromString(why != NULL ? why : "invalid configuration");
  Py_RETURN_NONE;
}

/* How many times the core sends each update in a cluster of n members, so
 * models and plots use the core's own rule, not a copy of it. */
static PyObject *py_retransmit_limit(PyObject *module, PyObject *args) {
  cm_config_t c;
  const char *why = NULL;
  PyObject *settings;
  unsigned long n;
  if (!PyArg_ParseTuple(args, "Ok:retransmit_limit", &settings, &n))
    return NULL;
  if (n > UINT32_MAX)
    return PyErr_Format(PyExc_ValueError, "n must be at most %lu",
                        (unsigned long)UINT32_MAX);
  if (proto_from_dict(settings, &c) < 0)
    return NULL;
  if (cm_config_validate(&c, &why) != 0)
    return PyErr_Format(PyExc_ValueError, "invalid settings: %s",
                        why != NULL ? why : "refused");
  return PyLong_FromUnsignedLong(cm_retransmit_limit(&c, (uint32_t)n));
}

/* The transport's defaults, with the settings derived from the pool as
 * the default pool derives them. */
static PyObject *py_net_defaults(PyObject *module, PyObject *unused) {
  cm_net_config_t n;
  cm_net_config_default(&n);
  cm_net_config_derive(&n);
  return Py_BuildValue("{sksNsNsNsnsksksksksk}", "max_connections",
                       (unsigned long)n.max_connections, "idle_timeout",
                       time_to_seconds(n.idle_timeout), "handshake_timeout",
                       time_to_seconds(n.handshake_timeout), "request_timeout",
                       time_to_seconds(n.request_timeout), "max_stream_message",
                       (Py_ssize_t)n.max_stream_message, "max_queued_datagrams",
                       (unsigned long)n.max_queued_datagrams, "accept_rate",
                       (unsigned long)n.accept_rate, "accept_rate_per_source",
                       (unsigned long)n.accept_rate_per_source, "max_half_open",
                       (unsigned long)n.max_half_open, "retry_threshold",
                       (unsigned long)n.retry_threshold);
}

static PyObject *py_parse_addr(PyObject *module, PyObject *arg) {
  cm_addr_t a;
  if (str_to_addr(arg, &a, "address") < 0)
    return NULL;
  return addr_to_str(&a);
}

static PyObject *py_gen_ca(PyObject *module, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"cert_file", "key_file", "common_name", "days",
                           NULL};
  const char *cert, *key, *cn = "clustermember CA";
  unsigned int days = 3650;
  int rc;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|$sI", kwlist, &cert, &key, &cn,
                                   &days))
    return NULL;
  rc = cm_net_gen_ca(cert, key, cn, days);
  if (rc != 0)
    return cm_py_raise(module, rc, "generating the CA certificate");
  Py_RETURN_NONE;
}

static PyObject *py_gen_cert(PyObject *module, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"ca_cert",     "ca_key", "cert_file", "key_file",
                           "common_name", "days",   NULL};
  const char *ca_cert, *ca_key, *cert, *key, *cn = "clustermember node";
  unsigned int days = 825;
  int rc;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "zzss|$sI", kwlist, &ca_cert,
                                   &ca_key, &cert, &key, &cn, &days))
    return NULL;
  rc = cm_net_gen_cert(ca_cert, ca_key, cert, key, cn, days);
  if (rc != 0)
    return cm_py_raise(module, rc, "generating the node certificate");
  Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- Snapshot */

static PyObject *snapshot_wrap(PyObject *module, cm_snapshot_t *s) {
  cm_py_state_t *st = cm_py_state(module);
  PyTypeObject *tp = (PyTypeObject *)st->snapshot_type;
  snapshot_object *o = (snapshot_object *)tp->tp_alloc(tp, 0);
  if (o == NULL) {
    cm_snapshot_release(s);
    return NULL;
  }
  o->module = Py_NewRef(module);
  o->snap = s;
  return (PyObject *)o;
}

static void snapshot_dealloc(snapshot_object *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  cm_snapshot_release(self->snap);
  self->snap = NULL;
  Py_CLEAR(self->module);
  tp->tp_free((PyObject *)self);
  Py_DECREF(tp);
}

static int snapshot_traverse(snapshot_object *self, visitproc visit,
                             void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->module);
  return 0;
}

static int snapshot_clear(snapshot_object *self) {
  Py_CLEAR(self->module);
  return 0;
}

struct tag_filter {
  const char *key, *value;
  Py_ssize_t key_len, value_len;
};

/* Members whose state bit is in mask and that carry every tag of `tags`,
 * as member tuples. The scan is C: a query on a 10,000-member registry
 * costs Python objects only for the members it returns. */
static PyObject *snapshot_query(snapshot_object *self, PyObject *args,
                                PyObject *kw) {
  static char *kwlist[] = {"states", "tags", NULL};
  unsigned int mask = 1u << CM_STATE_ALIVE;
  PyObject *tags = Py_None, *out;
  struct tag_filter *f = NULL;
  Py_ssize_t nf = 0, pos = 0, i;
  uint32_t m;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|IO", kwlist, &mask, &tags))
    return NULL;
  if (tags != Py_None) {
    PyObject *k, *v;
    if (!PyDict_Check(tags))
      return PyErr_Format(PyExc_TypeError, "tags must be a dict, not %.100s",
                          Py_TYPE(tags)->tp_name);
    nf = PyDict_Size(tags);
    f = PyMem_Calloc(nf > 0 ? (size_t)nf : 1, sizeof(*f));
    if (f == NULL)
      return PyErr_NoMemory();
    for (i = 0; PyDict_Next(tags, &pos, &k, &v); i++) {
      if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
        PyMem_Free(f);
        return PyErr_Format(PyExc_TypeError,
                            "tag filters must map str to str; got %.100s: "
                            "%.100s",
                            Py_TYPE(k)->tp_name, Py_TYPE(v)->tp_name);
      }
      f[i].key = PyUnicode_AsUTF8AndSize(k, &f[i].key_len);
      f[i].value = PyUnicode_AsUTF8AndSize(v, &f[i].value_len);
      if (f[i].key == NULL || f[i].value == NULL) {
        PyMem_Free(f);
        return NULL;
      }
    }
  }
  out = PyList_New(0);
  if (out == NULL) {
    PyMem_Free(f);
    return NULL;
  }
  for (m = 0; self->snap != NULL && m < self->snap->count; m++) {
    const cm_emember_t *e = &self->snap->members[m];
    PyObject *t;
    if (e->state >= NSTATES || !(mask & (1u << e->state)))
      continue;
    for (i = 0; i < nf; i++) {
      cm_tag_t tag;
      if (!cm_tags_get(e->tags, e->tags_len, f[i].key, (size_t)f[i].key_len,
                       &tag) ||
          tag.value_len != (size_t)f[i].value_len ||
          memcmp(tag.value, f[i].value, tag.value_len) != 0)
        break;
    }
    if (i < nf)
      continue;
    t = member_tuple(e);
    if (t == NULL || PyList_Append(out, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(out);
      PyMem_Free(f);
      return NULL;
    }
    Py_DECREF(t);
  }
  PyMem_Free(f);
  return out;
}

/* The member an id names, or NULL (none, or no id could be that string:
 * one with a NUL in it is no member's, not the member before the NUL). */
static const cm_emember_t *snapshot_find_arg(snapshot_object *self,
                                             PyObject *arg, int *err) {
  Py_ssize_t len;
  const char *id = PyUnicode_AsUTF8AndSize(arg, &len);
  *err = id == NULL;
  if (id == NULL || strlen(id) != (size_t)len)
    return NULL;
  return snapshot_find(self->snap, id);
}

static PyObject *snapshot_find_py(snapshot_object *self, PyObject *arg) {
  int err;
  const cm_emember_t *m = snapshot_find_arg(self, arg, &err);
  if (err)
    return NULL;
  if (m == NULL)
    Py_RETURN_NONE;
  return member_tuple(m);
}

/* A member's history as tuples (time, event, state, source, health,
 * incarnation, rtt or None, helpers, nacks, confirmations, by or None);
 * None for an unknown member. */
static PyObject *snapshot_history(snapshot_object *self, PyObject *arg) {
  static const char *const sources[] = {
      "", "probe", "gossip", "pushpull", "timeout", "alive", "leave", "nack"};
  int err;
  const cm_emember_t *m = snapshot_find_arg(self, arg, &err);
  PyObject *list;
  uint32_t i;
  if (err)
    return NULL;
  if (m == NULL)
    Py_RETURN_NONE;
  list = PyList_New((Py_ssize_t)m->nhist);
  if (list == NULL)
    return NULL;
  for (i = 0; i < m->nhist; i++) {
    const cm_hist_read_t *h = &m->hist[i];
    PyObject *rtt = h->e.rtt_us ? PyFloat_FromDouble(h->e.rtt_us / 1e6)
                                : Py_NewRef(Py_None);
    PyObject *by = h->by[0] ? PyUnicode_FromString(h->by) : Py_NewRef(Py_None);
    PyObject *t;
    if (rtt == NULL || by == NULL) {
      Py_XDECREF(rtt);
      Py_XDECREF(by);
      Py_DECREF(list);
      return NULL;
    }
    t = Py_BuildValue("(dsssIkNIIIN)", (double)h->e.time / 1e6,
                      h->e.event == CM_EV_CONFIRMED ? "confirmed"
                                                    : cm_event_name(h->e.event),
                      cm_state_name(h->e.state),
                      h->e.source < sizeof(sources) / sizeof(sources[0])
                          ? sources[h->e.source]
                          : "",
                      (unsigned)h->e.health, (unsigned long)h->e.incarnation,
                      rtt, (unsigned)h->e.helpers, (unsigned)h->e.nacks,
                      (unsigned)h->e.confirmations, by);
    if (t == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, t);
  }
  return list;
}

/* Every member but this node as (id, state, samples, rtt median, p90, max
 * (seconds, None without samples), phi, last heard (monotonic seconds or
 * None), connected). */
static PyObject *snapshot_health(snapshot_object *self, PyObject *unused) {
  PyObject *list = PyList_New(0);
  uint32_t i;
  if (list == NULL)
    return NULL;
  for (i = 0; self->snap != NULL && i < self->snap->count; i++) {
    const cm_emember_t *m = &self->snap->members[i];
    PyObject *t;
    if (m->is_self)
      continue;
    if (m->rtt_samples > 0)
      t = Py_BuildValue("(ssIdddddO)", m->id, cm_state_name(m->state),
                        (unsigned)m->rtt_samples, m->rtt_median_us / 1e6,
                        m->rtt_p90_us / 1e6, m->rtt_max_us / 1e6, m->phi,
                        m->last_heard ? (double)m->last_heard / 1e6 : -1.0,
                        m->connected ? Py_True : Py_False);
    else
      t = Py_BuildValue("(ssIOOOddO)", m->id, cm_state_name(m->state), 0u,
                        Py_None, Py_None, Py_None, m->phi,
                        m->last_heard ? (double)m->last_heard / 1e6 : -1.0,
                        m->connected ? Py_True : Py_False);
    if (t == NULL || PyList_Append(list, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(list);
      return NULL;
    }
    Py_DECREF(t);
  }
  return list;
}

static PyObject *snapshot_self(snapshot_object *self, PyObject *unused) {
  uint32_t i;
  for (i = 0; self->snap != NULL && i < self->snap->count; i++)
    if (self->snap->members[i].is_self)
      return member_tuple(&self->snap->members[i]);
  Py_RETURN_NONE;
}

static PyObject *snapshot_counts(snapshot_object *self, PyObject *unused) {
  unsigned long c[NSTATES] = {0, 0, 0, 0};
  uint32_t i;
  for (i = 0; self->snap != NULL && i < self->snap->count; i++)
    if (self->snap->members[i].state < NSTATES)
      c[self->snap->members[i].state]++;
  return Py_BuildValue("{sksksksk}", "alive", c[0], "suspect", c[1], "failed",
                       c[2], "left", c[3]);
}

static Py_ssize_t snapshot_len(snapshot_object *self) {
  return self->snap != NULL ? (Py_ssize_t)self->snap->count : 0;
}

static PyObject *snapshot_get_version(snapshot_object *self, void *unused) {
  return PyLong_FromUnsignedLongLong(self->snap != NULL ? self->snap->version
                                                        : 0);
}

static int parse_state_name(PyObject *obj, uint8_t *out) {
  const char *s = PyUnicode_AsUTF8(obj);
  uint8_t i;
  if (s == NULL)
    return -1;
  for (i = 0; i < NSTATES; i++)
    if (strcmp(s, state_names[i]) == 0) {
      *out = i;
      return 0;
    }
  PyErr_Format(PyExc_ValueError,
               "unknown state %R: expected alive, suspect, failed or left",
               obj);
  return -1;
}

/* Snapshot.synthetic(members): a registry built from Python data, laid out
 * exactly as the engine lays out its own, for benchmarks and tests of the
 * read path at sizes a loopback cluster cannot reach. members: iterable of
 * (id, addr, state, incarnation, tags). */
static PyObject *snapshot_synthetic(PyObject *cls, PyObject *arg) {
  PyObject *module = PyType_GetModule((PyTypeObject *)cls);
  PyObject *seq, *res = NULL;
  uint8_t blob[CM_WIRE_MAX_TAGS_LEN];
  size_t len, total = 0;
  cm_snapshot_t *s = NULL;
  Py_ssize_t n, i;
  uint8_t *tp;
  if (module == NULL)
    return NULL;
  seq = PySequence_Fast(arg, "members must be a sequence of tuples");
  if (seq == NULL)
    return NULL;
  n = PySequence_Fast_GET_SIZE(seq);
  if (n > (Py_ssize_t)(UINT32_MAX / 2)) {
    PyErr_SetString(PyExc_ValueError, "too many members");
    goto out;
  }
  /* First pass: check every item and size the tag area. */
  for (i = 0; i < n; i++) {
    PyObject *id, *addr, *state, *tags;
    unsigned long inc;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOOkO!", &id,
                          &addr, &state, &inc, &PyDict_Type, &tags) ||
        dict_to_tags(module, tags, blob, &len) < 0)
      goto out;
    total += len;
  }
  s = cm_snapshot_alloc((uint32_t)n, total);
  if (s == NULL) {
    PyErr_NoMemory();
    goto out;
  }
  tp = (uint8_t *)(s->members + n);
  for (i = 0; i < n; i++) {
    PyObject *id, *addr, *state, *tags;
    unsigned long inc;
    cm_emember_t *m = &s->members[i];
    const char *ids = NULL;
    Py_ssize_t idl = 0;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOOkO!", &id,
                          &addr, &state, &inc, &PyDict_Type, &tags))
      goto out;
    if (PyUnicode_Check(id))
      ids = PyUnicode_AsUTF8AndSize(id, &idl);
    if (ids == NULL || !cm_id_valid(ids, (size_t)idl)) {
      if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "invalid node id %R", id);
      goto out;
    }
    memcpy(m->id, ids, (size_t)idl);
    if (str_to_addr(addr, &m->addr, "addr") < 0 ||
        parse_state_name(state, &m->state) < 0 ||
        dict_to_tags(module, tags, blob, &len) < 0)
      goto out;
    m->incarnation = (uint32_t)inc;
    m->tags = tp;
    m->tags_len = (uint16_t)len;
    memcpy(tp, blob, len);
    tp += len;
  }
  res = snapshot_wrap(module, s);
  s = NULL;
out:
  cm_snapshot_release(s);
  Py_DECREF(seq);
  return res;
}

static PyMethodDef snapshot_methods[] = {
    {"query", (PyCFunction)(void (*)(void))snapshot_query,
     METH_VARARGS | METH_KEYWORDS,
     "query(states=1, tags=None) -> list[tuple]\n\nMembers whose state bit "
     "(1 << state index: alive 0, suspect 1, failed 2, left 3) is in "
     "states and that carry every tag of tags, as (id, addr, state, "
     "incarnation, tags, state_change, phi, is_self, coordinate)."},
    {"health", (PyCFunction)snapshot_health, METH_NOARGS,
     "health() -> list[tuple]\n\nEvery member but this node: (id, state, "
     "samples, rtt median, p90, max (s or None), phi, last heard "
     "(monotonic s, -1 if never), connected)."},
    {"history", (PyCFunction)snapshot_history, METH_O,
     "history(id) -> list[tuple] | None\n\nThe member's recorded state "
     "changes, oldest first: (time, event, state, source, health, "
     "incarnation, rtt, helpers, nacks, confirmations, by); None for an "
     "unknown member."},
    {"find", (PyCFunction)snapshot_find_py, METH_O,
     "find(id) -> tuple | None\n\nOne member by id."},
    {"self_member", (PyCFunction)snapshot_self, METH_NOARGS,
     "self_member() -> tuple | None\n\nThe node's own record."},
    {"counts", (PyCFunction)snapshot_counts, METH_NOARGS,
     "counts() -> dict[str, int]\n\nMembers per state."},
    {"synthetic", (PyCFunction)snapshot_synthetic, METH_O | METH_CLASS,
     "synthetic(members) -> Snapshot\n\nA registry from (id, addr, state, "
     "incarnation, tags) tuples, for benchmarks of the read path."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef snapshot_getset[] = {
    {"version", (getter)snapshot_get_version, NULL,
     "Increases every time the engine publishes a new registry.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot snapshot_slots[] = {
    {Py_tp_doc, "An immutable copy of one node's member registry."},
    {Py_tp_dealloc, snapshot_dealloc},
    {Py_tp_traverse, snapshot_traverse},
    {Py_tp_clear, snapshot_clear},
    {Py_tp_methods, snapshot_methods},
    {Py_tp_getset, snapshot_getset},
    {Py_sq_length, snapshot_len},
    {Py_mp_length, snapshot_len},
    {0, NULL},
};

static PyType_Spec snapshot_spec = {
    .name = "clustermember._core.Snapshot",
    .basicsize = sizeof(snapshot_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = snapshot_slots,
};

/* ------------------------------------------------------------------ Node */

static int node_check(node_object *self) {
  if (self->node == NULL || self->owner == NULL ||
      self->owner->engine == NULL) {
    cm_py_raise(self->module, CM_ECLOSED, "node is stopped");
    return -1;
  }
  return 0;
}

static PyObject *node_result(node_object *self, int rc, const char *doing) {
  char msg[200];
  if (rc == 0)
    Py_RETURN_NONE;
  snprintf(msg, sizeof(msg), "%s: %s", doing, cm_strerror(rc));
  return cm_py_raise(self->module, rc, msg);
}

static void node_release(node_object *self) {
  /* A closed engine already freed every node; a forgotten one belongs to
   * the parent process. */
  if (self->node != NULL && self->owner != NULL && self->owner->engine != NULL)
    cm_enode_stop(self->node);
  self->node = NULL;
}

static void node_dealloc(node_object *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  node_release(self);
  Py_CLEAR(self->owner);
  Py_CLEAR(self->module);
  tp->tp_free((PyObject *)self);
  Py_DECREF(tp);
}

static int node_traverse(node_object *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->module);
  Py_VISIT(self->owner);
  return 0;
}

static int node_clear(node_object *self) {
  node_release(self);
  Py_CLEAR(self->owner);
  Py_CLEAR(self->module);
  return 0;
}

static PyObject *node_stop(node_object *self, PyObject *unused) {
  node_release(self);
  Py_RETURN_NONE;
}

static PyObject *node_fileno(node_object *self, PyObject *unused) {
  if (node_check(self) < 0)
    return NULL;
  return PyLong_FromLong(cm_enode_event_fd(self->node));
}

/* y# turns a NULL pointer into None: empty bytes are b"". */
static const char *bytes_or_empty(const uint8_t *p) {
  return p != NULL ? (const char *)p : "";
}

/* What the core has for the application, as a tuple (see event_tuple). */
static PyObject *app_tuple(const cm_app_msg_t *m) {
  double t = (double)m->time / 1e6;
  switch (m->kind) {
  case CM_APP_EVENT:
    return Py_BuildValue("(ss#y#Ksid)", "user", m->name,
                         (Py_ssize_t)m->name_len, bytes_or_empty(m->payload),
                         (Py_ssize_t)m->payload_len,
                         (unsigned long long)m->ltime, m->node,
                         (int)(m->flags & CM_APP_COALESCE), t);
  case CM_APP_QUERY: {
    PyObject *addr = addr_to_str(&m->origin_addr);
    if (addr == NULL)
      return NULL;
    return Py_BuildValue(
        "(sks#y#y#KsNidd)", "query", (unsigned long)m->qid, m->name,
        (Py_ssize_t)m->name_len, bytes_or_empty(m->payload),
        (Py_ssize_t)m->payload_len, bytes_or_empty(m->filter),
        (Py_ssize_t)m->filter_len, (unsigned long long)m->ltime, m->node, addr,
        (int)(m->flags & CM_APP_WANT_ACK), (double)m->deadline / 1e6, t);
  }
  case CM_APP_REPLY:
    return Py_BuildValue("(sksiy#d)", "reply", (unsigned long)m->qid, m->node,
                         (int)(m->flags & CM_APP_ACK),
                         bytes_or_empty(m->payload), (Py_ssize_t)m->payload_len,
                         t);
  case CM_APP_QUERY_DONE:
    return Py_BuildValue("(skd)", "query_done", (unsigned long)m->qid, t);
  default:
    return Py_BuildValue("(si)", "unknown", (int)m->kind);
  }
}

/* One engine event as a tuple:
 *   ("member", type, id, addr, state, incarnation, time, tags, other_addr)
 *   ("joined", token, status) / ("left", token, status)
 *   ("dropped", count)
 *   ("user", name, payload, ltime, origin, coalesce, time)
 *   ("query", qid, name, payload, filter, ltime, origin, origin_addr,
 *    want_ack, deadline, time)
 *   ("reply", qid, from, ack, payload, time) / ("query_done", qid, time)
 * Member tags come from the snapshot, published before the event under the
 * same lock, so it is at least as new as the event. */
static PyObject *event_tuple(const cm_eevent_t *ev, cm_snapshot_t **snap,
                             cm_enode_t *node) {
  switch (ev->kind) {
  case CM_EEV_MEMBER: {
    const cm_event_t *m = &ev->ev;
    const cm_emember_t *rec;
    PyObject *tags, *addr, *other;
    if (*snap == NULL)
      *snap = cm_enode_snapshot(node);
    rec = snapshot_find(*snap, m->id);
    tags =
        rec != NULL ? cm_py_tags_dict(rec->tags, rec->tags_len) : PyDict_New();
    addr = addr_to_str(&m->addr);
    other = addr_to_str(&m->other_addr);
    if (tags == NULL || addr == NULL || other == NULL) {
      Py_XDECREF(tags);
      Py_XDECREF(addr);
      Py_XDECREF(other);
      return NULL;
    }
    return Py_BuildValue(
        "(sssNskdNN)", "member", cm_event_name(m->type), m->id, addr,
        m->state < NSTATES ? state_names[m->state] : "unknown",
        (unsigned long)m->incarnation, (double)m->time / 1e6, tags, other);
  }
  case CM_EEV_JOINED:
    return Py_BuildValue("(sKi)", "joined", (unsigned long long)ev->token,
                         ev->status);
  case CM_EEV_LEFT:
    return Py_BuildValue("(sKi)", "left", (unsigned long long)ev->token,
                         ev->status);
  case CM_EEV_DROPPED:
    return Py_BuildValue("(sK)", "dropped", (unsigned long long)ev->dropped);
  case CM_EEV_APP:
    return app_tuple(&ev->app);
  default:
    return Py_BuildValue("(si)", "unknown", (int)ev->kind);
  }
}

static PyObject *node_next_events(node_object *self, PyObject *args) {
  Py_ssize_t max = NODE_EVENTS_BATCH, i;
  cm_snapshot_t *snap = NULL;
  PyObject *out;
  if (!PyArg_ParseTuple(args, "|n", &max))
    return NULL;
  if (node_check(self) < 0)
    return NULL;
  out = PyList_New(0);
  if (out == NULL)
    return NULL;
  for (i = 0; i < max; i++) {
    cm_eevent_t ev;
    PyObject *t;
    if (!cm_enode_next_event(self->node, &ev))
      break;
    t = event_tuple(&ev, &snap, self->node);
    cm_eevent_release(&ev);
    if (t == NULL || PyList_Append(out, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(out);
      cm_snapshot_release(snap);
      return NULL;
    }
    Py_DECREF(t);
  }
  cm_snapshot_release(snap);
  return out;
}

static int seeds_convert(PyObject *seq_in, cm_addr_t **out, size_t *n) {
  PyObject *seq = PySequence_Fast(seq_in, "seeds must be a list of str");
  Py_ssize_t i, len;
  if (seq == NULL)
    return -1;
  len = PySequence_Fast_GET_SIZE(seq);
  *out = PyMem_Calloc(len > 0 ? (size_t)len : 1, sizeof(cm_addr_t));
  if (*out == NULL) {
    Py_DECREF(seq);
    PyErr_NoMemory();
    return -1;
  }
  for (i = 0; i < len; i++)
    if (str_to_addr(PySequence_Fast_GET_ITEM(seq, i), &(*out)[i], "seed") < 0) {
      PyMem_Free(*out);
      Py_DECREF(seq);
      return -1;
    }
  *n = (size_t)len;
  Py_DECREF(seq);
  return 0;
}

static PyObject *node_join(node_object *self, PyObject *args) {
  PyObject *seeds, *timeout;
  cm_addr_t *addrs = NULL;
  size_t n = 0;
  cm_time_t t;
  int64_t tok;
  if (!PyArg_ParseTuple(args, "OO", &seeds, &timeout))
    return NULL;
  if (node_check(self) < 0 || seconds_to_time(timeout, &t, "timeout") < 0 ||
      seeds_convert(seeds, &addrs, &n) < 0)
    return NULL;
  tok = cm_enode_join(self->node, addrs, n, t);
  PyMem_Free(addrs);
  if (tok < 0)
    return node_result(self, (int)tok, "join");
  return PyLong_FromLongLong(tok);
}

static PyObject *node_leave(node_object *self, PyObject *args) {
  int64_t tok;
  PyObject *timeout = Py_None;
  cm_time_t t = 0;
  if (!PyArg_ParseTuple(args, "|O", &timeout))
    return NULL;
  if (node_check(self) < 0 ||
      (timeout != Py_None && seconds_to_time(timeout, &t, "timeout") < 0))
    return NULL;
  tok = cm_enode_leave(self->node, t);
  if (tok < 0)
    return node_result(self, (int)tok, "leave");
  return PyLong_FromLongLong(tok);
}

static PyObject *node_set_tags(node_object *self, PyObject *arg) {
  uint8_t blob[CM_WIRE_MAX_TAGS_LEN];
  size_t len = 0;
  if (node_check(self) < 0 || dict_to_tags(self->module, arg, blob, &len) < 0)
    return NULL;
  return node_result(self, cm_enode_set_tags(self->node, blob, len),
                     "setting tags");
}

static PyObject *node_send_event(node_object *self, PyObject *args) {
  const char *name;
  Py_ssize_t name_len;
  Py_buffer payload;
  int coalesce = 0, rc;
  uint64_t ltime = 0;
  if (!PyArg_ParseTuple(args, "s#y*p", &name, &name_len, &payload, &coalesce))
    return NULL;
  if (node_check(self) < 0) {
    PyBuffer_Release(&payload);
    return NULL;
  }
  rc = cm_enode_send_event(self->node, name, (size_t)name_len, payload.buf,
                           (size_t)payload.len, coalesce, &ltime);
  PyBuffer_Release(&payload);
  if (rc != 0)
    return node_result(self, rc, "sending a user event");
  return PyLong_FromUnsignedLongLong(ltime);
}

static PyObject *node_query(node_object *self, PyObject *args) {
  const char *name;
  Py_ssize_t name_len;
  Py_buffer payload, filter;
  int want_ack = 0, rc;
  unsigned char relay = 0;
  PyObject *timeout;
  cm_time_t t = 0;
  uint32_t qid = 0;
  if (!PyArg_ParseTuple(args, "s#y*y*pbO", &name, &name_len, &payload, &filter,
                        &want_ack, &relay, &timeout))
    return NULL;
  if (node_check(self) < 0 ||
      (timeout != Py_None && seconds_to_time(timeout, &t, "timeout") < 0)) {
    PyBuffer_Release(&payload);
    PyBuffer_Release(&filter);
    return NULL;
  }
  rc = cm_enode_query(self->node, name, (size_t)name_len, filter.buf,
                      (size_t)filter.len, payload.buf, (size_t)payload.len,
                      want_ack, relay, t, &qid);
  PyBuffer_Release(&payload);
  PyBuffer_Release(&filter);
  if (rc != 0)
    return node_result(self, rc, "sending a query");
  return PyLong_FromUnsignedLong(qid);
}

static PyObject *node_query_respond(node_object *self, PyObject *args) {
  const char *origin;
  unsigned long qid;
  int ack = 0, rc;
  Py_buffer payload;
  if (!PyArg_ParseTuple(args, "skpy*", &origin, &qid, &ack, &payload))
    return NULL;
  if (node_check(self) < 0) {
    PyBuffer_Release(&payload);
    return NULL;
  }
  rc = cm_enode_query_respond(self->node, origin, (uint32_t)qid, ack,
                              payload.buf, (size_t)payload.len);
  PyBuffer_Release(&payload);
  return node_result(self, rc, "answering a query");
}

static PyObject *node_set_keys(node_object *self, PyObject *args) {
  PyObject *list, *seq;
  Py_ssize_t primary, i, n;
  cm_net_key_t *keys;
  int rc;
  if (!PyArg_ParseTuple(args, "On", &list, &primary))
    return NULL;
  if (node_check(self) < 0)
    return NULL;
  seq = PySequence_Fast(list, "keys must be a list of 32-byte bytes");
  if (seq == NULL)
    return NULL;
  n = PySequence_Fast_GET_SIZE(seq);
  if (n < 1 || n > 255 || primary < 0 || primary >= n) {
    Py_DECREF(seq);
    PyErr_SetString(PyExc_ValueError,
                    "a keyring holds 1 to 255 keys and its primary is one "
                    "of them");
    return NULL;
  }
  keys = PyMem_Calloc((size_t)n, sizeof(*keys));
  if (keys == NULL) {
    Py_DECREF(seq);
    return PyErr_NoMemory();
  }
  for (i = 0; i < n; i++) {
    PyObject *k = PySequence_Fast_GET_ITEM(seq, i);
    if (!PyBytes_Check(k) || PyBytes_GET_SIZE(k) != CM_KEY_LEN) {
      PyMem_Free(keys);
      Py_DECREF(seq);
      PyErr_SetString(PyExc_ValueError, "every key must be 32 bytes");
      return NULL;
    }
    keys[i].id = (uint8_t)(i + 1);
    memcpy(keys[i].key, PyBytes_AS_STRING(k), CM_KEY_LEN);
  }
  Py_DECREF(seq);
  rc = cm_enode_set_keys(self->node, keys, (size_t)n, (size_t)primary);
  PyMem_Free(keys);
  return node_result(self, rc, "replacing the keyring");
}

static PyObject *node_set_fault(node_object *self, PyObject *args,
                                PyObject *kw) {
  static char *kwlist[] = {"drop_out", "drop_in", "peer",    "delay",
                           "blocked",  "seed",    "enabled", NULL};
  double drop_out = 0.0, drop_in = 0.0;
  PyObject *peer = Py_None, *delay = NULL, *blocked = Py_None;
  unsigned long long seed = 1;
  int enabled = 1, rc;
  cm_net_fault_t f;
  cm_addr_t *addrs = NULL;
  size_t nb = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|$ddOOOKp", kwlist, &drop_out,
                                   &drop_in, &peer, &delay, &blocked, &seed,
                                   &enabled))
    return NULL;
  if (node_check(self) < 0)
    return NULL;
  if (!enabled)
    return node_result(self, cm_enode_set_fault(self->node, NULL),
                       "clearing faults");
  memset(&f, 0, sizeof(f));
  f.drop_out = drop_out;
  f.drop_in = drop_in;
  f.seed = seed;
  if ((peer != Py_None && str_to_addr(peer, &f.peer, "peer") < 0) ||
      (delay != NULL && seconds_to_time(delay, &f.delay, "delay") < 0) ||
      (blocked != Py_None && seeds_convert(blocked, &addrs, &nb) < 0))
    return NULL;
  f.blocked = addrs;
  f.nblocked = nb;
  rc = cm_enode_set_fault(self->node, &f);
  PyMem_Free(addrs);
  return node_result(self, rc, "setting faults");
}

static PyObject *node_snapshot(node_object *self, PyObject *unused) {
  cm_snapshot_t *s;
  if (node_check(self) < 0)
    return NULL;
  s = cm_enode_snapshot(self->node);
  if (s == NULL)
    s = cm_snapshot_alloc(0, 0);
  if (s == NULL)
    return PyErr_NoMemory();
  return snapshot_wrap(self->module, s);
}

#define STAT(d, name, v)                                                       \
  do {                                                                         \
    PyObject *x_ = PyLong_FromUnsignedLongLong((unsigned long long)(v));       \
    if (x_ == NULL || PyDict_SetItemString((d), (name), x_) < 0) {             \
      Py_XDECREF(x_);                                                          \
      Py_DECREF(d);                                                            \
      return NULL;                                                             \
    }                                                                          \
    Py_DECREF(x_);                                                             \
  } while (0)

/* The probe round-trip histogram: {"buckets": [(upper bound, count), ...]
 * (not cumulative; the last bound is inf), "sum": seconds, "count"}. */
static PyObject *node_probe_rtts(node_object *self, PyObject *unused) {
  cm_enode_stats_t s;
  PyObject *buckets;
  size_t i;
  if (node_check(self) < 0)
    return NULL;
  cm_enode_stats(self->node, &s);
  buckets = PyList_New(CM_RTT_BUCKETS);
  if (buckets == NULL)
    return NULL;
  for (i = 0; i < CM_RTT_BUCKETS; i++) {
    PyObject *t =
        Py_BuildValue("(dK)", cm_rtt_bucket_bounds[i],
                      (unsigned long long)s.node.probe_rtt_buckets[i]);
    if (t == NULL) {
      Py_DECREF(buckets);
      return NULL;
    }
    PyList_SET_ITEM(buckets, (Py_ssize_t)i, t);
  }
  return Py_BuildValue("{s:N,s:d,s:K}", "buckets", buckets, "sum",
                       s.node.probe_rtt_sum, "count",
                       (unsigned long long)s.node.probe_rtt_count);
}

static PyObject *node_stats(node_object *self, PyObject *unused) {
  cm_enode_stats_t s;
  PyObject *d;
  if (node_check(self) < 0)
    return NULL;
  cm_enode_stats(self->node, &s);
  d = PyDict_New();
  if (d == NULL)
    return NULL;
#define N(f) STAT(d, #f, s.node.f)
  N(members);
  N(alive);
  N(suspect);
  N(failed);
  N(left);
  N(incarnation);
  N(health);
  N(bcast_queue);
  N(packets_in);
  N(packets_out);
  N(bytes_in);
  N(bytes_out);
  N(msgs_in);
  N(msgs_out);
  N(pushpull_in);
  N(pushpull_out);
  N(pushpull_failed);
  N(probes);
  N(probe_acks);
  N(probe_failures);
  N(indirect_probes);
  N(nacks_in);
  N(pings_in);
  N(ping_reqs_in);
  N(stalls);
  N(stale_corrections);
  N(suspicions);
  N(refutations);
  N(failures_declared);
  N(conflicts);
  N(duplicates);
  N(updates_dropped);
  N(drop_malformed);
  N(drop_wrong_target);
  N(drop_stale);
  N(drop_unknown);
  N(drop_forward_full);
  N(drop_limit);
  N(tombstones_evicted);
  N(drop_pushpull);
  N(drop_left);
  N(drop_incarnation);
  N(skipped_unknown);
#define A(kind, f, name) STAT(d, name, s.node.kind.f)
  A(user_events, sent, "user_events_sent");
  A(user_events, delivered, "user_events_delivered");
  A(user_events, duplicate, "user_events_duplicate");
  A(user_events, drop_old, "drop_user_event_old");
  A(user_events, drop_rate, "drop_user_event_rate");
  A(user_events, drop_ltime, "drop_user_event_ltime");
  A(user_events, drop_size, "drop_user_event_size");
  A(queries, sent, "queries_sent");
  A(queries, delivered, "queries_delivered");
  A(queries, duplicate, "queries_duplicate");
  A(queries, drop_old, "drop_query_old");
  A(queries, drop_rate, "drop_query_rate");
  A(queries, drop_ltime, "drop_query_ltime");
  A(queries, drop_size, "drop_query_size");
#undef A
  N(app_dropped);
  N(replies_sent);
  N(replies_in);
  N(drop_reply);
  N(reply_duplicate);
  N(replies_relayed);
  N(drop_relay);
  N(drop_query_origin);
  N(user_event_queue);
  N(query_queue);
  N(events_synced);
  N(events_before_join);
  N(drop_sync_rate);
  N(events_fetched);
  N(fetch_failed);
  N(events_served);
  N(fetch_busy);
  N(payloads_forgotten);
  N(replies_streamed);
  N(reply_stream_failed);
  N(coord_updates);
  N(coord_rejected);
  N(coord_resets);
  N(coord_ignored);
  N(coord_heard);
#undef N
#define T(f) STAT(d, "net_" #f, s.net.f)
  T(handshakes_ok);
  T(handshakes_failed);
  T(auth_refused);
  T(handshakes_refused);
  T(conns_open);
  T(conns_idle);
  T(conns_opened);
  T(conns_accepted);
  T(conns_evicted);
  T(conns_timed_out);
  T(bytes_in);
  T(bytes_out);
  T(packets_in);
  T(packets_out);
  T(control_packets_out);
  T(control_bytes_out);
  T(datagrams_in);
  T(datagrams_out);
  T(requests_out);
  T(requests_in);
  T(responses_out);
  T(stateless_resets_sent);
  T(stale_peers);
  T(drop_garbage);
  T(drop_queue_full);
  T(drop_oversized);
  T(drop_auth);
  T(drop_rate_limit);
  T(drop_source_limit);
  T(accepts_fresh);
  T(drop_pool_full);
  T(drop_closed);
  T(drop_fault);
  T(send_errors);
  T(sends_deferred);
  T(conns_half_open);
  T(drop_half_open);
  T(half_open_displaced);
  T(retries_sent);
  T(drop_retry_rate_limit);
  T(drop_bad_token);
  T(resets_rate_limited);
  T(stream_in_peak);
#undef T
  STAT(d, "events_dropped", s.events_dropped);
  STAT(d, "send_errors", s.send_errors);
  return d;
}

static PyObject *node_get_addr(node_object *self, void *unused) {
  cm_addr_t a;
  if (node_check(self) < 0)
    return NULL;
  a = cm_enode_addr(self->node);
  return addr_to_str(&a);
}

static PyObject *node_get_id(node_object *self, void *unused) {
  return PyUnicode_FromString(self->id);
}

static PyObject *node_get_running(node_object *self, void *unused) {
  if (self->node == NULL || self->owner == NULL || self->owner->engine == NULL)
    Py_RETURN_FALSE;
  return PyBool_FromLong(cm_enode_running(self->node));
}

static PyMethodDef node_methods[] = {
    {"fileno", (PyCFunction)node_fileno, METH_NOARGS,
     "fileno() -> int\n\nThe eventfd that is readable while events wait; "
     "watch it with loop.add_reader and drain with next_events()."},
    {"next_events", (PyCFunction)node_next_events, METH_VARARGS,
     "next_events(max=256) -> list[tuple]\n\nTake up to max events; the "
     "eventfd is reset once none is left."},
    {"join", (PyCFunction)node_join, METH_VARARGS,
     "join(seeds, timeout) -> int\n\nStart joining; returns the token of "
     "the ('joined', token, status) event that follows."},
    {"leave", (PyCFunction)node_leave, METH_VARARGS,
     "leave(timeout=None) -> int\n\nStart a graceful leave, given timeout "
     "seconds to spread (None: the node's leave_timeout); returns the token "
     "of the ('left', token, status) event that follows."},
    {"send_event", (PyCFunction)node_send_event, METH_VARARGS,
     "send_event(name, payload, coalesce)\n\nSend a user event to every "
     "member; returns its Lamport time."},
    {"query", (PyCFunction)node_query, METH_VARARGS,
     "query(name, payload, filter, want_ack, relay, timeout)\n\nAsk every "
     "member; returns the query's id."},
    {"query_respond", (PyCFunction)node_query_respond, METH_VARARGS,
     "query_respond(origin, qid, ack, payload)\n\nAnswer a query."},
    {"set_keys", (PyCFunction)node_set_keys, METH_VARARGS,
     "set_keys(keys, primary)\n\nReplace the keyring (cluster-key mode): "
     "new handshakes offer keys[primary] first and accept any of them."},
    {"set_tags", (PyCFunction)node_set_tags, METH_O,
     "set_tags(tags)\n\nReplace the tag set; returns once applied."},
    {"set_fault", (PyCFunction)(void (*)(void))node_set_fault,
     METH_VARARGS | METH_KEYWORDS,
     "set_fault(*, drop_out=0.0, drop_in=0.0, peer=None, delay=0.0, "
     "blocked=None, seed=1, enabled=True)\n\nTransport fault injection "
     "(tests); enabled=False turns it off."},
    {"snapshot", (PyCFunction)node_snapshot, METH_NOARGS,
     "snapshot() -> Snapshot\n\nThe registry as last published."},
    {"stats", (PyCFunction)node_stats, METH_NOARGS,
     "stats() -> dict[str, int]\n\nCore counters, transport counters "
     "(net_*), events_dropped, send_errors."},
    {"probe_rtts", (PyCFunction)node_probe_rtts, METH_NOARGS,
     "probe_rtts() -> dict\n\nThe round trips of direct probes acked by "
     "their target: buckets [(upper bound s, count)] (not cumulative, the "
     "last bound inf), sum (s), count."},
    {"stop", (PyCFunction)node_stop, METH_NOARGS,
     "stop()\n\nStop at once, without leaving; idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef node_getset[] = {
    {"addr", (getter)node_get_addr, NULL, "The bound address.", NULL},
    {"id", (getter)node_get_id, NULL, "The node id.", NULL},
    {"running", (getter)node_get_running, NULL,
     "False once stopped or after a leave finished.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot node_slots[] = {
    {Py_tp_doc, "A node hosted by an Engine; made by Engine.start_node()."},
    {Py_tp_dealloc, node_dealloc},
    {Py_tp_traverse, node_traverse},
    {Py_tp_clear, node_clear},
    {Py_tp_methods, node_methods},
    {Py_tp_getset, node_getset},
    {0, NULL},
};

static PyType_Spec node_spec = {
    .name = "clustermember._core.Node",
    .basicsize = sizeof(node_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = node_slots,
};

/* ---------------------------------------------------------------- Engine */

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
  engine_object *self;
  PyObject *module = PyType_GetModule(type);
  int rc;
  if (module == NULL)
    return NULL;
  if (!PyArg_ParseTuple(args, ":Engine") ||
      (kw != NULL && PyDict_Size(kw) > 0)) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_TypeError, "Engine() takes no arguments");
    return NULL;
  }
  self = (engine_object *)type->tp_alloc(type, 0);
  if (self == NULL)
    return NULL;
  self->module = Py_NewRef(module);
  rc = cm_engine_new(&self->engine);
  if (rc != 0) {
    self->engine = NULL;
    Py_DECREF(self);
    return cm_py_raise(module, rc, "starting the engine thread");
  }
  return (PyObject *)self;
}

static void engine_release(engine_object *self) {
  if (self->engine != NULL && !self->forgotten) {
    cm_engine_t *e = self->engine;
    /* Nodes see engine == NULL from here on: their handles die with it. */
    self->engine = NULL;
    Py_BEGIN_ALLOW_THREADS cm_engine_free(e);
    Py_END_ALLOW_THREADS
  }
  self->engine = NULL;
}

static void engine_dealloc(engine_object *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  engine_release(self);
  Py_CLEAR(self->module);
  tp->tp_free((PyObject *)self);
  Py_DECREF(tp);
}

static int engine_traverse(engine_object *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->module);
  return 0;
}

static int engine_clear(engine_object *self) {
  Py_CLEAR(self->module);
  return 0;
}

static PyObject *engine_close(engine_object *self, PyObject *unused) {
  engine_release(self);
  Py_RETURN_NONE;
}

/* After fork() the child holds a copy of the engine's memory but not its
 * thread; its locks may be held by a thread that no longer exists. Close
 * the descriptors the copy holds (the parent's sockets among them), which
 * takes no lock, and drop the pointer without freeing anything. */
static PyObject *engine_forget(engine_object *self, PyObject *unused) {
  if (self->engine != NULL && !self->forgotten)
    cm_engine_forget_after_fork(self->engine);
  self->forgotten = 1;
  self->engine = NULL;
  Py_RETURN_NONE;
}

static PyObject *engine_get_closed(engine_object *self, void *unused) {
  return PyBool_FromLong(self->engine == NULL);
}

static int net_from_dict(PyObject *d, cm_net_config_t *n, cm_net_key_t *keys,
                         size_t max_keys, PyObject **hold) {
  PyObject *v;
  cm_net_config_default(n);
  if (!PyDict_Check(d)) {
    PyErr_SetString(PyExc_TypeError, "net config must be a dict");
    return -1;
  }
#define GET(name) (v = PyDict_GetItemString(d, name)) != NULL &&v != Py_None
  if (GET("auth")) {
    const char *a = PyUnicode_AsUTF8(v);
    if (a == NULL)
      return -1;
    if (strcmp(a, "key") == 0)
      n->auth = CM_AUTH_KEY;
    else if (strcmp(a, "mtls") == 0)
      n->auth = CM_AUTH_MTLS;
    else if (strcmp(a, "none") == 0)
      n->auth = CM_AUTH_NONE;
    else {
      PyErr_Format(PyExc_ValueError, "auth must be key, mtls or none: %R", v);
      return -1;
    }
  }
  if (GET("keys")) {
    PyObject *seq = PySequence_Fast(v, "keys must be a list of bytes");
    Py_ssize_t i, len;
    if (seq == NULL)
      return -1;
    len = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)len > max_keys) {
      Py_DECREF(seq);
      PyErr_Format(PyExc_ValueError, "at most %zu keys in a keyring", max_keys);
      return -1;
    }
    for (i = 0; i < len; i++) {
      PyObject *k = PySequence_Fast_GET_ITEM(seq, i);
      if (!PyBytes_Check(k) || PyBytes_GET_SIZE(k) != CM_KEY_LEN) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "key %zd must be %d bytes", i,
                     CM_KEY_LEN);
        return -1;
      }
      keys[i].id = (uint8_t)(i + 1);
      memcpy(keys[i].key, PyBytes_AS_STRING(k), CM_KEY_LEN);
    }
    Py_DECREF(seq);
    n->keys = keys;
    n->nkeys = (size_t)len;
    n->primary = 0;
  }
  if (GET("static_secret")) {
    if (!PyBytes_Check(v) || PyBytes_GET_SIZE(v) != 32) {
      PyErr_SetString(PyExc_ValueError, "static_secret must be 32 bytes");
      return -1;
    }
    memcpy(n->static_secret, PyBytes_AS_STRING(v), 32);
  }
  {
    static const char *const files[] = {"ca_file", "cert_file", "key_file"};
    const char **dst[] = {&n->ca_file, &n->cert_file, &n->key_file};
    int i;
    for (i = 0; i < 3; i++)
      if (GET(files[i])) {
        if (!PyUnicode_FSConverter(v, &hold[i]))
          return -1;
        *dst[i] = PyBytes_AS_STRING(hold[i]);
      }
  }
#define U32(name)                                                              \
  if (GET(#name)) {                                                            \
    unsigned long x_ = PyLong_AsUnsignedLong(v);                               \
    if (x_ == (unsigned long)-1 && PyErr_Occurred())                           \
      return -1;                                                               \
    if (x_ > UINT32_MAX) {                                                     \
      PyErr_SetString(PyExc_ValueError, #name " is too large");                \
      return -1;                                                               \
    }                                                                          \
    n->name = (uint32_t)x_;                                                    \
  }
#define TIME(name)                                                             \
  if (GET(#name) && seconds_to_time(v, &n->name, #name) < 0)                   \
    return -1;
  U32(max_connections)
  U32(max_queued_datagrams)
  U32(accept_rate)
  U32(accept_rate_per_source)
  U32(max_half_open)
  U32(retry_threshold)
  TIME(idle_timeout)
  TIME(handshake_timeout)
  TIME(request_timeout)
  if (GET("max_stream_message")) {
    size_t x = PyLong_AsSize_t(v);
    if (x == (size_t)-1 && PyErr_Occurred())
      return -1;
    n->max_stream_message = x;
  }
#undef U32
#undef TIME
#undef GET
  return 0;
}

/* Keys a keyring may hold: the PSK identity carries a one-byte key id. */
#define ENGINE_MAX_KEYS 255

static PyObject *engine_start_node(engine_object *self, PyObject *args,
                                   PyObject *kw) {
  static char *kwlist[] = {"id",   "bind",        "tags",        "proto", "net",
                           "seed", "event_queue", "leave_grace", NULL};
  const char *id;
  PyObject *bind, *tags = Py_None, *proto = Py_None, *net, *grace = NULL;
  PyObject *hold[3] = {NULL, NULL, NULL};
  unsigned long long seed = 1;
  unsigned int queue = 0;
  cm_enode_config_t c;
  cm_net_key_t keys[ENGINE_MAX_KEYS];
  uint8_t blob[CM_WIRE_MAX_TAGS_LEN];
  size_t blob_len = 0;
  const char *why = NULL;
  cm_py_state_t *st = cm_py_state(self->module);
  PyTypeObject *tp = (PyTypeObject *)st->node_type;
  node_object *node = NULL;
  int rc, i;

  if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|$OOO!KIO", kwlist, &id, &bind,
                                   &tags, &proto, &PyDict_Type, &net, &seed,
                                   &queue, &grace))
    return NULL;
  if (self->engine == NULL)
    return cm_py_raise(self->module, CM_ECLOSED, "the engine is closed");
  memset(&c, 0, sizeof(c));
  if (proto_from_dict(proto, &c.proto) < 0)
    return NULL;
  if (cm_config_validate(&c.proto, &why) != 0)
    return PyErr_Format(PyExc_ValueError, "invalid config: %s", why);
  if (str_to_addr_port0(bind, &c.bind, "bind address", 1) < 0 ||
      (tags != Py_None &&
       dict_to_tags(self->module, tags, blob, &blob_len) < 0) ||
      (grace != NULL &&
       seconds_to_time(grace, &c.leave_grace, "leave_grace") < 0))
    return NULL;
  if (net_from_dict(net, &c.net, keys, ENGINE_MAX_KEYS, hold) < 0)
    goto out;
  c.id = id;
  c.tags = blob;
  c.tags_len = blob_len;
  c.seed = seed;
  c.event_queue_max = queue;
  node = (node_object *)tp->tp_alloc(tp, 0);
  if (node == NULL)
    goto out;
  node->module = Py_NewRef(self->module);
  node->owner = (engine_object *)Py_NewRef(self);
  snprintf(node->id, sizeof(node->id), "%s", id);
  rc = cm_enode_start(self->engine, &c, &node->node);
  if (rc != 0) {
    char msg[300], where[CM_ADDR_STRLEN];
    node->node = NULL;
    Py_CLEAR(node);
    if (rc == CM_EADDRINUSE &&
        cm_addr_format(&c.bind, where, sizeof(where)) == 0)
      snprintf(msg, sizeof(msg),
               "address already in use: node %.64s cannot bind %s; stop "
               "what holds that port, or choose another",
               id, where);
    else
      snprintf(msg, sizeof(msg), "starting node %.64s: %s", id,
               cm_strerror(rc));
    cm_py_raise(self->module, rc, msg);
  }
out:
  for (i = 0; i < 3; i++)
    Py_XDECREF(hold[i]);
  return (PyObject *)node;
}

static PyMethodDef engine_methods[] = {
    {"start_node", (PyCFunction)(void (*)(void))engine_start_node,
     METH_VARARGS | METH_KEYWORDS,
     "start_node(id, bind, *, tags=None, proto=None, net, seed=1, "
     "event_queue=0, leave_grace=5.0) -> Node\n\nStart a node and bind "
     "its socket; proto holds protocol settings in seconds, net the "
     "transport's (auth, keys, static_secret, ca_file, ...)."},
    {"close", (PyCFunction)engine_close, METH_NOARGS,
     "close()\n\nStop every node (without leaving) and the engine thread; "
     "idempotent."},
    {"forget", (PyCFunction)engine_forget, METH_NOARGS,
     "forget()\n\nAfter fork(), in the child: close the descriptors the "
     "engine held in the parent and drop it, touching no lock."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef engine_getset[] = {
    {"closed", (getter)engine_get_closed, NULL,
     "True once closed or forgotten.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, "Engine()\n\nThe engine thread (libuv) hosting nodes."},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_traverse, engine_traverse},
    {Py_tp_clear, engine_clear},
    {Py_tp_methods, engine_methods},
    {Py_tp_getset, engine_getset},
    {0, NULL},
};

static PyType_Spec engine_spec = {
    .name = "clustermember._core.Engine",
    .basicsize = sizeof(engine_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = engine_slots,
};

/* The libraries under the transport: built against and running. */
static PyObject *py_versions(PyObject *module, PyObject *unused) {
  cm_net_versions_t v;
  cm_net_versions(&v);
  return Py_BuildValue("{s{ssss}s{ssss}s{ssss}}", "ngtcp2", "built",
                       v.ngtcp2_built, "running", v.ngtcp2_running, "gnutls",
                       "built", v.gnutls_built, "running", v.gnutls_running,
                       "libuv", "built", v.libuv_built, "running",
                       v.libuv_running);
}

static PyMethodDef engine_module_methods[] = {
    {"versions", (PyCFunction)py_versions, METH_NOARGS,
     "versions() -> dict\n\nngtcp2, GnuTLS and libuv: the versions "
     "compiled against ('built') and loaded ('running')."},
    {"config_profile", (PyCFunction)py_config_profile, METH_O,
     "config_profile(name) -> dict\n\nThe protocol settings of profile "
     "'lan', 'wan' or 'local' (times in seconds)."},
    {"validate_config", (PyCFunction)py_validate_config, METH_O,
     "validate_config(settings) -> str | None\n\nThe core's reason for "
     "refusing these protocol settings, or None."},
    {"retransmit_limit", (PyCFunction)py_retransmit_limit, METH_VARARGS,
     "retransmit_limit(settings, n) -> int\n\nHow many times each update "
     "is sent in a cluster of n members under these protocol settings."},
    {"net_defaults", (PyCFunction)py_net_defaults, METH_NOARGS,
     "net_defaults() -> dict\n\nThe transport's default bounds and "
     "timeouts."},
    {"parse_addr", (PyCFunction)py_parse_addr, METH_O,
     "parse_addr(addr) -> str\n\nValidate and normalise 'ip:port'."},
    {"gen_ca", (PyCFunction)(void (*)(void))py_gen_ca,
     METH_VARARGS | METH_KEYWORDS,
     "gen_ca(cert_file, key_file, *, common_name='clustermember CA', "
     "days=3650)\n\nWrite a self-signed cluster CA (PEM)."},
    {"gen_cert", (PyCFunction)(void (*)(void))py_gen_cert,
     METH_VARARGS | METH_KEYWORDS,
     "gen_cert(ca_cert, ca_key, cert_file, key_file, *, "
     "common_name='clustermember node', days=825)\n\nWrite a node "
     "certificate issued by the CA (self-signed when ca_cert is None)."},
    {NULL, NULL, 0, NULL},
};

int cm_py_engine_exec(PyObject *module) {
  cm_py_state_t *st = cm_py_state(module);
  st->engine_type = PyType_FromModuleAndSpec(module, &engine_spec, NULL);
  if (st->engine_type == NULL ||
      PyModule_AddObjectRef(module, "Engine", st->engine_type) < 0)
    return -1;
  st->node_type = PyType_FromModuleAndSpec(module, &node_spec, NULL);
  if (st->node_type == NULL ||
      PyModule_AddObjectRef(module, "Node", st->node_type) < 0)
    return -1;
  st->snapshot_type = PyType_FromModuleAndSpec(module, &snapshot_spec, NULL);
  if (st->snapshot_type == NULL ||
      PyModule_AddObjectRef(module, "Snapshot", st->snapshot_type) < 0)
    return -1;
  if (PyModule_AddFunctions(module, engine_module_methods) < 0)
    return -1;
  return PyModule_AddIntConstant(module, "MAX_TAGS_LEN", CM_WIRE_MAX_TAGS_LEN);
}
