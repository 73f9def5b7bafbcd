/*
 * clustermember._core.Simulator: the deterministic simulator (csrc/sim) and
 * its scenario watch as a Python heap type. Argument conversion only: times
 * cross the boundary as float seconds of virtual time since the simulator
 * was created, nodes as indices 0..N-1.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cm_py.h"
#include "cm_sim.h"
#include "cm_watch.h"

/* Long runs go in slices of virtual time so Ctrl-C is noticed. */
#define SIM_SLICE CM_SEC(1)

typedef struct sim_object {
  PyObject_HEAD PyObject *module; /* for the module's Error type */
  cm_sim_t *sim;
  cm_watch_t *watch;
  cm_time_t origin; /* virtual time at creation: Python's 0.0 */
  cm_config_t cfg;
  uint32_t n;
} sim_object;

/* ------------------------------------------------------------ conversions */

static int seconds_to_time(double sec, cm_time_t *out, const char *what) {
  if (!isfinite(sec) || sec < 0 || sec > 1e9) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%g", sec);
    PyErr_Format(PyExc_ValueError,
                 "%s must be a finite number of seconds in [0, 1e9], got %s",
                 what, buf);
    return -1;
  }
  *out = (cm_time_t)llround(sec * 1e6);
  return 0;
}

static PyObject *time_to_seconds(cm_time_t t) {
  return PyFloat_FromDouble((double)t / 1e6);
}

static PyObject *rel_seconds(const sim_object *self, cm_time_t t) {
  if (t == 0)
    Py_RETURN_NONE;
  return PyFloat_FromDouble((double)(t - self->origin) / 1e6);
}

static int check_node(const sim_object *self, Py_ssize_t i, const char *what) {
  if (i < 0 || (size_t)i >= self->n) {
    PyErr_Format(PyExc_IndexError, "%s %zd out of range: nodes are 0..%u", what,
                 i, (unsigned)self->n - 1);
    return -1;
  }
  return 0;
}

static int check_live(sim_object *self) {
  if (self->sim == NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Simulator is closed");
    return -1;
  }
  return 0;
}

/* Errors read "crash: operation not allowed in this state"; the code and
 * its text also travel on the exception (cm_py_raise). */
static PyObject *sim_result(sim_object *self, int rc, const char *doing) {
  char msg[160];
  if (rc == 0)
    Py_RETURN_NONE;
  snprintf(msg, sizeof(msg), "%s: %s", doing, cm_strerror(rc));
  return cm_py_raise(self->module, rc, msg);
}

static const char *state_name(uint8_t state) {
  static const char *const names[] = {"alive", "suspect", "failed", "left"};
  return state < 4 ? names[state] : "unknown";
}

static int parse_state(PyObject *obj, uint8_t *out) {
  static const char *const names[] = {"alive", "suspect", "failed", "left"};
  const char *s = PyUnicode_AsUTF8(obj);
  uint8_t i;
  if (s == NULL)
    return -1;
  for (i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return 0;
    }
  PyErr_Format(PyExc_ValueError,
               "unknown state %R: expected alive, suspect, failed or left",
               obj);
  return -1;
}

/* ------------------------------------------------------ config overrides */

/* -------------------------------------------------------------- lifecycle */

static int sim_init(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"nodes",          "seed",        "loss",
                           "latency",        "profile",     "config",
                           "stream_timeout", "leave_grace", "record_events",
                           "sites",          NULL};
  Py_ssize_t nodes;
  unsigned long long seed = 1;
  double loss = 0.0, lat_min = 0.0002, lat_max = 0.001;
  double stream_timeout = 5.0, leave_grace = 5.0;
  const char *profile = "lan";
  PyObject *config = Py_None, *sites = Py_None;
  int record = 0;
  cm_sim_config_t c;
  const char *why = NULL;
  int rc;

  if (self->sim != NULL) {
    PyErr_SetString(PyExc_RuntimeError, "Simulator is already initialised");
    return -1;
  }
  if (!PyArg_ParseTupleAndKeywords(args, kw, "n|$Kd(dd)sOddpO", kwlist, &nodes,
                                   &seed, &loss, &lat_min, &lat_max, &profile,
                                   &config, &stream_timeout, &leave_grace,
                                   &record, &sites))
    return -1;
  if (nodes < 1 || nodes > (1 << 24)) {
    PyErr_Format(PyExc_ValueError, "nodes must be between 1 and %d, got %zd",
                 1 << 24, nodes);
    return -1;
  }
  if (!(loss >= 0.0 && loss <= 1.0)) {
    PyErr_Format(PyExc_ValueError, "loss must be a probability in [0, 1]");
    return -1;
  }
  cm_sim_config_default(&c);
  c.nodes = (uint32_t)nodes;
  c.seed = seed;
  c.loss = loss;
  if (strcmp(profile, "lan") == 0)
    cm_config_lan(&c.node);
  else if (strcmp(profile, "wan") == 0)
    cm_config_wan(&c.node);
  else if (strcmp(profile, "local") == 0)
    cm_config_local(&c.node);
  else {
    PyErr_Format(PyExc_ValueError,
                 "unknown profile %s: expected lan, wan or local", profile);
    return -1;
  }
  c.node.history = 0; /* as cm_sim_config_default: asked for, or none */
  if (config != Py_None) {
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(config)) {
      PyErr_SetString(PyExc_TypeError, "config must be a dict of overrides");
      return -1;
    }
    while (PyDict_Next(config, &pos, &key, &val))
      if (cm_py_config_set(&c.node, key, val) < 0)
        return -1;
  }
  if (cm_config_validate(&c.node, &why) != 0) {
    PyErr_Format(PyExc_ValueError, "invalid config: %s", why);
    return -1;
  }
  if (seconds_to_time(lat_min, &c.latency_min, "latency min") < 0 ||
      seconds_to_time(lat_max, &c.latency_max, "latency max") < 0 ||
      seconds_to_time(stream_timeout, &c.stream_timeout, "stream_timeout") <
          0 ||
      seconds_to_time(leave_grace, &c.leave_grace, "leave_grace") < 0)
    return -1;
  if (c.latency_max < c.latency_min ||
      c.latency_max - c.latency_min >= (cm_time_t)UINT32_MAX) {
    PyErr_SetString(PyExc_ValueError,
                    "latency must be (min, max) with min <= max");
    return -1;
  }
  if (sites != Py_None) {
    unsigned long k;
    double local, lo, hi;
    static const char shape[] = "sites is (count, rtt inside a site, least "
                                "and most RTT between two, jitter)";
    if (!PyTuple_Check(sites)) {
      PyErr_SetString(PyExc_TypeError, shape);
      return -1;
    }
    if (!PyArg_ParseTuple(sites, "kdddd", &k, &local, &lo, &hi, &c.jitter)) {
      PyErr_SetString(PyExc_TypeError, shape);
      return -1;
    }
    if (k < 1 || k > CM_SIM_MAX_SITES || !(c.jitter >= 0 && c.jitter <= 1) ||
        !(lo <= hi)) {
      PyErr_Format(PyExc_ValueError,
                   "sites: count must be 1..%d, jitter in [0, 1] and the "
                   "least RTT at most the most",
                   CM_SIM_MAX_SITES);
      return -1;
    }
    c.sites = (uint32_t)k;
    if (seconds_to_time(local, &c.site_rtt, "sites' rtt") < 0 ||
        seconds_to_time(lo, &c.site_rtt_min, "sites' least rtt") < 0 ||
        seconds_to_time(hi, &c.site_rtt_max, "sites' most rtt") < 0)
      return -1;
  }
  rc = cm_sim_new(&self->sim, &c);
  if (rc != 0) {
    self->sim = NULL;
    cm_py_raise(self->module, rc, "creating the simulator");
    return -1;
  }
  rc = cm_watch_new(&self->watch, self->sim);
  if (rc != 0) {
    cm_sim_free(self->sim);
    self->sim = NULL;
    cm_py_raise(self->module, rc, "creating the simulator's watch");
    return -1;
  }
  cm_watch_set_log(self->watch, record);
  self->origin = cm_sim_now(self->sim);
  self->cfg = c.node;
  self->n = c.nodes;
  return 0;
}

static PyObject *sim_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
  sim_object *self = (sim_object *)type->tp_alloc(type, 0);
  PyObject *module;
  if (self == NULL)
    return NULL;
  /* A Python subclass has no module: find it through its bases. */
  while ((module = PyType_GetModule(type)) == NULL && type->tp_base != NULL) {
    PyErr_Clear();
    type = type->tp_base;
  }
  if (module == NULL) {
    Py_DECREF(self);
    return NULL;
  }
  self->module = Py_NewRef(module);
  return (PyObject *)self;
}

static void sim_release(sim_object *self) {
  cm_watch_free(self->watch);
  self->watch = NULL;
  cm_sim_free(self->sim);
  self->sim = NULL;
}

static int sim_traverse(sim_object *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->module);
  return 0;
}

static int sim_clear(sim_object *self) {
  Py_CLEAR(self->module);
  return 0;
}

static void sim_dealloc(sim_object *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  sim_release(self);
  sim_clear(self);
  tp->tp_free((PyObject *)self);
  Py_DECREF(tp);
}

static PyObject *sim_close(sim_object *self, PyObject *unused) {
  sim_release(self);
  Py_RETURN_NONE;
}

/* --------------------------------------------------------------- commands */

static PyObject *sim_join(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"node", "seed", NULL};
  Py_ssize_t i, seed = 0;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "n|n", kwlist, &i, &seed) ||
      check_node(self, i, "node") < 0 || check_node(self, seed, "seed") < 0)
    return NULL;
  return sim_result(self, cm_sim_join(self->sim, (uint32_t)i, (uint32_t)seed),
                    "join");
}

static PyObject *sim_join_all(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"seed", NULL};
  Py_ssize_t seed = 0;
  uint32_t i;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "|n", kwlist, &seed) ||
      check_node(self, seed, "seed") < 0)
    return NULL;
  for (i = 0; i < self->n; i++) {
    int rc;
    if (i == (uint32_t)seed || !cm_sim_is_up(self->sim, i))
      continue;
    rc = cm_sim_join(self->sim, i, (uint32_t)seed);
    if (rc != 0)
      return sim_result(self, rc, "join_all");
  }
  Py_RETURN_NONE;
}

static PyObject *sim_bootstrap(sim_object *self, PyObject *unused) {
  int rc;
  if (check_live(self) < 0)
    return NULL;
  rc = cm_sim_bootstrap(self->sim);
  cm_watch_refresh(self->watch);
  return sim_result(self, rc, "bootstrap");
}

static PyObject *sim_queued(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  return PyLong_FromUnsignedLongLong(
      (unsigned long long)cm_sim_queued(self->sim));
}

static PyObject *sim_node_cmd(sim_object *self, PyObject *arg,
                              int (*fn)(cm_sim_t *, uint32_t),
                              const char *doing) {
  Py_ssize_t i = PyLong_AsSsize_t(arg);
  int rc;
  if (check_live(self) < 0 || (i == -1 && PyErr_Occurred()) ||
      check_node(self, i, "node") < 0)
    return NULL;
  rc = fn(self->sim, (uint32_t)i);
  if (rc == 0)
    cm_watch_refresh(self->watch);
  return sim_result(self, rc, doing);
}

static PyObject *sim_crash(sim_object *self, PyObject *arg) {
  return sim_node_cmd(self, arg, cm_sim_crash, "crash");
}

static PyObject *sim_leave(sim_object *self, PyObject *arg) {
  return sim_node_cmd(self, arg, cm_sim_leave, "leave");
}

static PyObject *sim_restart(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"node", "seed", NULL};
  Py_ssize_t i, seed = 0;
  int rc;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "n|n", kwlist, &i, &seed) ||
      check_node(self, i, "node") < 0 || check_node(self, seed, "seed") < 0)
    return NULL;
  rc = cm_sim_restart(self->sim, (uint32_t)i, (uint32_t)seed);
  cm_watch_refresh(self->watch);
  return sim_result(self, rc, "restart");
}

static PyObject *sim_pause(sim_object *self, PyObject *args) {
  Py_ssize_t i;
  double sec;
  cm_time_t d;
  if (check_live(self) < 0 || !PyArg_ParseTuple(args, "nd", &i, &sec) ||
      check_node(self, i, "node") < 0 ||
      seconds_to_time(sec, &d, "pause duration") < 0)
    return NULL;
  return sim_result(self, cm_sim_pause(self->sim, (uint32_t)i, d), "pause");
}

static PyObject *sim_set_tag(sim_object *self, PyObject *args) {
  Py_ssize_t i;
  const char *key, *value;
  if (check_live(self) < 0 ||
      !PyArg_ParseTuple(args, "nss", &i, &key, &value) ||
      check_node(self, i, "node") < 0)
    return NULL;
  return sim_result(self, cm_sim_set_tag(self->sim, (uint32_t)i, key, value),
                    "set_tag");
}

static PyObject *sim_partition(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"sides", "start", "end", "oneway", NULL};
  PyObject *sides, *seq;
  double start, end;
  cm_time_t ts, te;
  int oneway = 0, rc;
  uint8_t *side;
  Py_ssize_t i;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "Odd|p", kwlist, &sides, &start,
                                   &end, &oneway) ||
      seconds_to_time(start, &ts, "start") < 0 ||
      seconds_to_time(end, &te, "end") < 0)
    return NULL;
  if (te <= ts) {
    PyErr_SetString(PyExc_ValueError, "partition end must be after start");
    return NULL;
  }
  seq = PySequence_Fast(sides, "sides must be a sequence of 0/1 per node");
  if (seq == NULL)
    return NULL;
  if ((size_t)PySequence_Fast_GET_SIZE(seq) != self->n) {
    PyErr_Format(PyExc_ValueError, "sides must have one entry per node (%u)",
                 (unsigned)self->n);
    Py_DECREF(seq);
    return NULL;
  }
  side = PyMem_Malloc(self->n);
  if (side == NULL) {
    Py_DECREF(seq);
    return PyErr_NoMemory();
  }
  for (i = 0; i < (Py_ssize_t)self->n; i++) {
    long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    if ((v == -1 && PyErr_Occurred()) || v < 0 || v > 1) {
      if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "sides[%zd] must be 0 or 1", i);
      PyMem_Free(side);
      Py_DECREF(seq);
      return NULL;
    }
    side[i] = (uint8_t)v;
  }
  Py_DECREF(seq);
  rc = cm_sim_partition(self->sim, side, self->origin + ts, self->origin + te,
                        oneway);
  PyMem_Free(side);
  return sim_result(self, rc, "partition");
}

static PyObject *sim_set_loss(sim_object *self, PyObject *arg) {
  double p = PyFloat_AsDouble(arg);
  if (check_live(self) < 0 || (p == -1.0 && PyErr_Occurred()))
    return NULL;
  if (!(p >= 0.0 && p <= 1.0)) {
    PyErr_SetString(PyExc_ValueError, "loss must be a probability in [0, 1]");
    return NULL;
  }
  cm_sim_set_loss(self->sim, p);
  Py_RETURN_NONE;
}

/* ------------------------------------------------------------------- runs */

static int run_to(sim_object *self, cm_time_t deadline, int cond, uint8_t state,
                  double fraction, int *held) {
  for (;;) {
    cm_time_t now = cm_sim_now(self->sim);
    cm_time_t slice = deadline - now > SIM_SLICE ? now + SIM_SLICE : deadline;
    if (now >= deadline) {
      *held = cond == CM_WATCH_NONE ||
              cm_watch_holds(self->watch, cond, state, fraction);
      return 0;
    }
    if (cond != CM_WATCH_NONE &&
        cm_watch_run(self->watch, slice, cond, state, fraction)) {
      *held = 1;
      return 0;
    }
    if (cond == CM_WATCH_NONE)
      cm_sim_run_until(self->sim, slice);
    if (PyErr_CheckSignals() < 0)
      return -1;
  }
}

static PyObject *sim_run_until(sim_object *self, PyObject *arg) {
  double t = PyFloat_AsDouble(arg);
  cm_time_t tt;
  int held;
  if (check_live(self) < 0 || (t == -1.0 && PyErr_Occurred()) ||
      seconds_to_time(t, &tt, "time") < 0)
    return NULL;
  if (run_to(self, self->origin + tt, CM_WATCH_NONE, 0, 0, &held) < 0)
    return NULL;
  Py_RETURN_NONE;
}

static PyObject *sim_run_for(sim_object *self, PyObject *arg) {
  double d = PyFloat_AsDouble(arg);
  cm_time_t dt;
  int held;
  if (check_live(self) < 0 || (d == -1.0 && PyErr_Occurred()) ||
      seconds_to_time(d, &dt, "duration") < 0)
    return NULL;
  if (run_to(self, cm_sim_now(self->sim) + dt, CM_WATCH_NONE, 0, 0, &held) < 0)
    return NULL;
  Py_RETURN_NONE;
}

static int parse_cond(const char *name, int *out) {
  static const struct {
    const char *name;
    int cond;
  } conds[] = {{"converged", CM_WATCH_CONVERGED},
               {"all_see", CM_WATCH_ALL_SEE},
               {"any_sees", CM_WATCH_ANY_SEES},
               {"tag_fraction", CM_WATCH_TAG_FRACTION}};
  size_t i;
  for (i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
    if (strcmp(name, conds[i].name) == 0) {
      *out = conds[i].cond;
      return 0;
    }
  PyErr_Format(PyExc_ValueError,
               "unknown condition %s: expected converged, all_see, any_sees "
               "or tag_fraction",
               name);
  return -1;
}

static PyObject *sim_run_until_cond(sim_object *self, PyObject *args,
                                    PyObject *kw) {
  static char *kwlist[] = {"cond", "timeout", "state", "fraction", NULL};
  const char *name;
  double timeout, fraction = 1.0;
  PyObject *state_obj = NULL;
  uint8_t state = 0;
  cm_time_t dt;
  int cond, held;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "sd|Od", kwlist, &name, &timeout,
                                   &state_obj, &fraction) ||
      parse_cond(name, &cond) < 0 ||
      seconds_to_time(timeout, &dt, "timeout") < 0)
    return NULL;
  if ((cond == CM_WATCH_ALL_SEE || cond == CM_WATCH_ANY_SEES)) {
    if (state_obj == NULL || state_obj == Py_None) {
      PyErr_Format(PyExc_ValueError, "condition %s needs a state", name);
      return NULL;
    }
    if (parse_state(state_obj, &state) < 0)
      return NULL;
  }
  if (!(fraction > 0.0 && fraction <= 1.0)) {
    PyErr_SetString(PyExc_ValueError, "fraction must be in (0, 1]");
    return NULL;
  }
  if (run_to(self, cm_sim_now(self->sim) + dt, cond, state, fraction, &held) <
      0)
    return NULL;
  return PyBool_FromLong(held);
}

static PyObject *sim_now(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  return PyFloat_FromDouble((double)(cm_sim_now(self->sim) - self->origin) /
                            1e6);
}

/* ------------------------------------------------------------------ reads */

#define ADD_U64(d, st, f)                                                      \
  do {                                                                         \
    PyObject *v_ = PyLong_FromUnsignedLongLong((unsigned long long)(st).f);    \
    if (v_ == NULL || PyDict_SetItemString(d, #f, v_) < 0) {                   \
      Py_XDECREF(v_);                                                          \
      Py_DECREF(d);                                                            \
      return NULL;                                                             \
    }                                                                          \
    Py_DECREF(v_);                                                             \
  } while (0)

static PyObject *sim_stats(sim_object *self, PyObject *unused) {
  cm_sim_stats_t st;
  PyObject *d;
  if (check_live(self) < 0)
    return NULL;
  cm_sim_stats(self->sim, &st);
  d = PyDict_New();
  if (d == NULL)
    return NULL;
  ADD_U64(d, st, datagrams_sent);
  ADD_U64(d, st, datagrams_delivered);
  ADD_U64(d, st, datagrams_lost);
  ADD_U64(d, st, datagrams_blocked);
  ADD_U64(d, st, datagrams_to_down);
  ADD_U64(d, st, bytes_sent);
  ADD_U64(d, st, streams_sent);
  ADD_U64(d, st, streams_failed);
  ADD_U64(d, st, stream_bytes);
  ADD_U64(d, st, events);
  ADD_U64(d, st, steps);
  return d;
}

static PyObject *sim_node_stats(sim_object *self, PyObject *arg) {
  Py_ssize_t i = PyLong_AsSsize_t(arg);
  cm_node_t *node;
  cm_node_stats_t st;
  PyObject *d;
  if (check_live(self) < 0 || (i == -1 && PyErr_Occurred()) ||
      check_node(self, i, "node") < 0)
    return NULL;
  node = cm_sim_node(self->sim, (uint32_t)i);
  if (node == NULL)
    Py_RETURN_NONE;
  cm_node_stats(node, &st);
  d = PyDict_New();
  if (d == NULL)
    return NULL;
  ADD_U64(d, st, members);
  ADD_U64(d, st, alive);
  ADD_U64(d, st, suspect);
  ADD_U64(d, st, failed);
  ADD_U64(d, st, left);
  ADD_U64(d, st, incarnation);
  ADD_U64(d, st, health);
  ADD_U64(d, st, bcast_queue);
  ADD_U64(d, st, packets_in);
  ADD_U64(d, st, packets_out);
  ADD_U64(d, st, bytes_in);
  ADD_U64(d, st, bytes_out);
  ADD_U64(d, st, msgs_in);
  ADD_U64(d, st, msgs_out);
  ADD_U64(d, st, probes);
  ADD_U64(d, st, probe_failures);
  ADD_U64(d, st, indirect_probes);
  ADD_U64(d, st, stalls);
  ADD_U64(d, st, suspicions);
  ADD_U64(d, st, refutations);
  ADD_U64(d, st, failures_declared);
  ADD_U64(d, st, pushpull_in);
  ADD_U64(d, st, pushpull_out);
  ADD_U64(d, st, updates_dropped);
  ADD_U64(d, st, events_dropped);
  return d;
}

/* The up node an int argument names, or NULL with an exception set. */
static cm_node_t *sim_up_node(sim_object *self, PyObject *arg,
                              const char *doing) {
  Py_ssize_t i = PyLong_AsSsize_t(arg);
  cm_node_t *node;
  if (check_live(self) < 0 || (i == -1 && PyErr_Occurred()) ||
      check_node(self, i, "node") < 0)
    return NULL;
  node = cm_sim_node(self->sim, (uint32_t)i);
  if (node == NULL) {
    char msg[64];
    snprintf(msg, sizeof(msg), "%s: the node is down", doing);
    sim_result(self, CM_ESTATE, msg);
  }
  return node;
}

static PyObject *sim_members(sim_object *self, PyObject *arg) {
  cm_node_t *node = sim_up_node(self, arg, "members");
  PyObject *list;
  uint32_t slot, slots;
  if (node == NULL)
    return NULL;
  list = PyList_New(0);
  if (list == NULL)
    return NULL;
  slots = cm_node_member_slots(node);
  for (slot = 0; slot < slots; slot++) {
    cm_member_info_t info;
    char addr[CM_ADDR_STRLEN];
    PyObject *tags, *item;
    if (!cm_node_member_get(node, slot, &info, cm_sim_now(self->sim)))
      continue;
    if (cm_addr_format(&info.addr, addr, sizeof(addr)) != 0)
      addr[0] = '\0';
    tags = cm_py_tags_dict(info.tags, info.tags_len);
    if (tags == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    item = Py_BuildValue("(ssskN)", info.id, addr, state_name(info.state),
                         (unsigned long)info.incarnation, tags);
    if (item == NULL || PyList_Append(list, item) < 0) {
      Py_XDECREF(item);
      Py_DECREF(list);
      return NULL;
    }
    Py_DECREF(item);
  }
  return list;
}

static PyObject *sim_coordinates(sim_object *self, PyObject *arg) {
  cm_node_t *node = sim_up_node(self, arg, "coordinates");
  PyObject *out;
  uint32_t slot, slots;
  if (node == NULL)
    return NULL;
  out = PyDict_New();
  if (out == NULL)
    return NULL;
  slots = cm_node_member_slots(node);
  for (slot = 0; slot < slots; slot++) {
    cm_member_info_t info;
    PyObject *t;
    if (!cm_node_member_get(node, slot, &info, cm_sim_now(self->sim)) ||
        !info.has_coord)
      continue;
    t = cm_py_coord_tuple(&info.coord);
    if (t == NULL || PyDict_SetItemString(out, info.id, t) < 0) {
      Py_XDECREF(t);
      Py_DECREF(out);
      return NULL;
    }
    Py_DECREF(t);
  }
  return out;
}

static PyObject *sim_true_rtt(sim_object *self, PyObject *args) {
  Py_ssize_t a, b;
  if (check_live(self) < 0 || !PyArg_ParseTuple(args, "nn:true_rtt", &a, &b) ||
      check_node(self, a, "a") < 0 || check_node(self, b, "b") < 0)
    return NULL;
  return PyFloat_FromDouble(
      (double)cm_sim_true_rtt(self->sim, (uint32_t)a, (uint32_t)b) / 1e6);
}

static PyObject *sim_alive_counts(sim_object *self, PyObject *unused) {
  PyObject *list;
  uint32_t i;
  if (check_live(self) < 0)
    return NULL;
  list = PyList_New(self->n);
  if (list == NULL)
    return NULL;
  for (i = 0; i < self->n; i++) {
    cm_node_t *node = cm_sim_node(self->sim, i);
    PyObject *v;
    if (node == NULL) {
      v = Py_NewRef(Py_None);
    } else {
      cm_node_stats_t st;
      cm_node_stats(node, &st);
      v = PyLong_FromUnsignedLong(st.alive);
      if (v == NULL) {
        Py_DECREF(list);
        return NULL;
      }
    }
    PyList_SET_ITEM(list, i, v);
  }
  return list;
}

static PyObject *sim_is_up(sim_object *self, PyObject *arg) {
  Py_ssize_t i = PyLong_AsSsize_t(arg);
  if (check_live(self) < 0 || (i == -1 && PyErr_Occurred()) ||
      check_node(self, i, "node") < 0)
    return NULL;
  return PyBool_FromLong(cm_sim_is_up(self->sim, (uint32_t)i));
}

static PyObject *sim_events(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"clear", NULL};
  int clear = 1;
  const cm_watch_event_t *log;
  size_t n, i;
  PyObject *list;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &clear))
    return NULL;
  log = cm_watch_log(self->watch);
  n = cm_watch_log_len(self->watch);
  list = PyList_New((Py_ssize_t)n);
  if (list == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    const cm_watch_event_t *e = &log[i];
    PyObject *subject = e->subject == CM_WATCH_NO_SUBJECT
                            ? Py_NewRef(Py_None)
                            : PyLong_FromUnsignedLong(e->subject);
    PyObject *item;
    if (subject == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    item = Py_BuildValue("(NkNssk)", rel_seconds(self, e->time),
                         (unsigned long)e->observer, subject,
                         cm_event_name(e->type), state_name(e->state),
                         (unsigned long)e->incarnation);
    if (item == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  if (clear)
    cm_watch_log_clear(self->watch);
  return list;
}

static PyObject *sim_record_events(sim_object *self, PyObject *arg) {
  int on = PyObject_IsTrue(arg);
  if (check_live(self) < 0 || on < 0)
    return NULL;
  cm_watch_set_log(self->watch, on);
  Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ watch */

static PyObject *sim_watch(sim_object *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"subject", "key", "value", NULL};
  Py_ssize_t subject;
  const char *key = NULL, *value = NULL;
  if (check_live(self) < 0 ||
      !PyArg_ParseTupleAndKeywords(args, kw, "n|zz", kwlist, &subject, &key,
                                   &value) ||
      check_node(self, subject, "subject") < 0)
    return NULL;
  if ((key == NULL) != (value == NULL)) {
    PyErr_SetString(PyExc_ValueError, "key and value go together");
    return NULL;
  }
  return sim_result(
      self, cm_watch_subject(self->watch, (uint32_t)subject, key, value),
      "watch");
}

static PyObject *times_list(sim_object *self, const cm_time_t *t) {
  PyObject *list = PyList_New(self->n);
  uint32_t i;
  if (list == NULL)
    return NULL;
  for (i = 0; i < self->n; i++) {
    PyObject *v = rel_seconds(self, t[i]);
    if (v == NULL) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, v);
  }
  return list;
}

static PyObject *sim_converged_times(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  return times_list(self, cm_watch_converged_at(self->watch));
}

static PyObject *sim_reset_converged(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  cm_watch_reset_converged(self->watch);
  Py_RETURN_NONE;
}

static PyObject *sim_first_seen(sim_object *self, PyObject *arg) {
  uint8_t state;
  if (check_live(self) < 0 || parse_state(arg, &state) < 0)
    return NULL;
  return times_list(self, cm_watch_first_seen(self->watch, state));
}

static PyObject *sim_tag_times(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  return times_list(self, cm_watch_tag_seen(self->watch));
}

static PyObject *sim_watch_counts(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  return Py_BuildValue(
      "{sksks{sksksksk}sk}", "up", (unsigned long)cm_watch_up(self->watch),
      "converged", (unsigned long)cm_watch_converged(self->watch), "seeing",
      "alive", (unsigned long)cm_watch_seeing(self->watch, CM_STATE_ALIVE),
      "suspect", (unsigned long)cm_watch_seeing(self->watch, CM_STATE_SUSPECT),
      "failed", (unsigned long)cm_watch_seeing(self->watch, CM_STATE_FAILED),
      "left", (unsigned long)cm_watch_seeing(self->watch, CM_STATE_LEFT),
      "tagged", (unsigned long)cm_watch_tagged(self->watch));
}

static PyObject *sim_event_counts(sim_object *self, PyObject *unused) {
  const uint64_t *c;
  PyObject *d;
  uint8_t t;
  if (check_live(self) < 0)
    return NULL;
  c = cm_watch_event_counts(self->watch);
  d = PyDict_New();
  if (d == NULL)
    return NULL;
  for (t = 1; t < CM_WATCH_NTYPES; t++) {
    PyObject *v = PyLong_FromUnsignedLongLong(c[t]);
    if (v == NULL || PyDict_SetItemString(d, cm_event_name(t), v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(d);
      return NULL;
    }
    Py_DECREF(v);
  }
  return d;
}

static PyObject *sim_reset_event_counts(sim_object *self, PyObject *unused) {
  if (check_live(self) < 0)
    return NULL;
  cm_watch_reset_counts(self->watch);
  Py_RETURN_NONE;
}

static PyObject *sim_config(sim_object *self, PyObject *unused) {
  return cm_py_config_dict(&self->cfg);
}

static PyObject *sim_get_size(sim_object *self, void *closure) {
  return PyLong_FromUnsignedLong(self->n);
}

static PyObject *sim_get_probe_interval(sim_object *self, void *closure) {
  return time_to_seconds(self->cfg.probe_interval);
}

/* ------------------------------------------------------------------- type */

static PyMethodDef sim_methods[] = {
    {"close", (PyCFunction)sim_close, METH_NOARGS,
     "close()\n\nFree the simulated nodes now instead of at garbage "
     "collection."},
    {"join", (PyCFunction)(void (*)(void))sim_join,
     METH_VARARGS | METH_KEYWORDS,
     "join(node, seed=0)\n\nNode asks seed for the cluster state."},
    {"join_all", (PyCFunction)(void (*)(void))sim_join_all,
     METH_VARARGS | METH_KEYWORDS,
     "join_all(seed=0)\n\nEvery up node but seed joins through seed."},
    {"bootstrap", (PyCFunction)sim_bootstrap, METH_NOARGS,
     "bootstrap()\n\nFast formation: every up node receives, as a join "
     "reply (push-pull response), the table of all up nodes alive. No "
     "virtual time passes; the broadcasts it queues drain as the run goes "
     "on."},
    {"queued", (PyCFunction)sim_queued, METH_NOARGS,
     "queued() -> int\n\nBroadcasts waiting in all up nodes' queues."},
    {"crash", (PyCFunction)sim_crash, METH_O,
     "crash(node)\n\nStop the node at once, without a word to anyone."},
    {"restart", (PyCFunction)(void (*)(void))sim_restart,
     METH_VARARGS | METH_KEYWORDS,
     "restart(node, seed=0)\n\nStart a fresh instance of a down node and "
     "join through seed."},
    {"pause", (PyCFunction)sim_pause, METH_VARARGS,
     "pause(node, seconds)\n\nThe node processes nothing for this long, "
     "then resumes."},
    {"leave", (PyCFunction)sim_leave, METH_O,
     "leave(node)\n\nLeave gracefully; the node stops once its leave has "
     "been sent."},
    {"set_tag", (PyCFunction)sim_set_tag, METH_VARARGS,
     "set_tag(node, key, value)\n\nSet one of the node's tags."},
    {"partition", (PyCFunction)(void (*)(void))sim_partition,
     METH_VARARGS | METH_KEYWORDS,
     "partition(sides, start, end, oneway=False)\n\nFrom start to end "
     "(virtual seconds), nodes on different sides (0/1 per node) cannot "
     "reach each other; only side 0 -> 1 is blocked when oneway."},
    {"set_loss", (PyCFunction)sim_set_loss, METH_O,
     "set_loss(p)\n\nProbability that a datagram is lost, from now on."},
    {"run_until", (PyCFunction)sim_run_until, METH_O,
     "run_until(t)\n\nRun to virtual time t (seconds)."},
    {"run_for", (PyCFunction)sim_run_for, METH_O,
     "run_for(seconds)\n\nRun this much virtual time."},
    {"run_until_condition", (PyCFunction)(void (*)(void))sim_run_until_cond,
     METH_VARARGS | METH_KEYWORDS,
     "run_until_condition(cond, timeout, state=None, fraction=1.0) -> bool"
     "\n\nRun until cond holds or timeout seconds pass. cond: 'converged' "
     "(every up node sees all alive), 'all_see' / 'any_sees' (the watched "
     "subject in state), 'tag_fraction' (that fraction of observers see "
     "the watched tag)."},
    {"now", (PyCFunction)sim_now, METH_NOARGS,
     "now() -> float\n\nVirtual seconds since the simulator was created."},
    {"stats", (PyCFunction)sim_stats, METH_NOARGS,
     "stats() -> dict\n\nNetwork and scheduler counters."},
    {"node_stats", (PyCFunction)sim_node_stats, METH_O,
     "node_stats(node) -> dict | None\n\nThe node's own counters (None "
     "while it is down)."},
    {"members", (PyCFunction)sim_members, METH_O,
     "members(node) -> list[tuple[str, str, str, int, dict]]\n\nThe node's "
     "view: (id, addr, state, incarnation, tags) per member."},
    {"coordinates", (PyCFunction)sim_coordinates, METH_O,
     "coordinates(node) -> dict[str, tuple]\n\nThe network coordinates the "
     "node holds, its own included, by member id: (vec, height, adjustment, "
     "error) in seconds."},
    {"true_rtt", (PyCFunction)sim_true_rtt, METH_VARARGS,
     "true_rtt(a, b) -> float\n\nThe mean RTT in seconds the simulated "
     "network gives between nodes a and b."},
    {"alive_counts", (PyCFunction)sim_alive_counts, METH_NOARGS,
     "alive_counts() -> list[int | None]\n\nMembers each node sees alive "
     "(None for a down node)."},
    {"is_up", (PyCFunction)sim_is_up, METH_O, "is_up(node) -> bool"},
    {"events", (PyCFunction)(void (*)(void))sim_events,
     METH_VARARGS | METH_KEYWORDS,
     "events(clear=True) -> list[tuple]\n\nRecorded events (time, "
     "observer, subject, type, state, incarnation); needs "
     "record_events=True."},
    {"record_events", (PyCFunction)sim_record_events, METH_O,
     "record_events(on)\n\nStart or stop keeping every event for events()."},
    {"watch", (PyCFunction)(void (*)(void))sim_watch,
     METH_VARARGS | METH_KEYWORDS,
     "watch(subject, key=None, value=None)\n\nFrom now on, record when "
     "each node first sees subject in each state (and with tag key=value)."},
    {"converged_times", (PyCFunction)sim_converged_times, METH_NOARGS,
     "converged_times() -> list[float | None]\n\nWhen each node first saw "
     "every node alive."},
    {"reset_converged", (PyCFunction)sim_reset_converged, METH_NOARGS,
     "reset_converged()\n\nForget converged_times (nodes converged now "
     "keep now)."},
    {"first_seen", (PyCFunction)sim_first_seen, METH_O,
     "first_seen(state) -> list[float | None]\n\nWhen each node first saw "
     "the watched subject in state."},
    {"tag_times", (PyCFunction)sim_tag_times, METH_NOARGS,
     "tag_times() -> list[float | None]\n\nWhen each node first saw the "
     "watched tag."},
    {"watch_counts", (PyCFunction)sim_watch_counts, METH_NOARGS,
     "watch_counts() -> dict\n\nUp nodes, converged nodes, observers "
     "seeing the subject per state, observers that saw the tag."},
    {"event_counts", (PyCFunction)sim_event_counts, METH_NOARGS,
     "event_counts() -> dict[str, int]\n\nEvents of each type so far."},
    {"reset_event_counts", (PyCFunction)sim_reset_event_counts, METH_NOARGS,
     "reset_event_counts()"},
    {"config", (PyCFunction)sim_config, METH_NOARGS,
     "config() -> dict\n\nThe nodes' protocol configuration (times in "
     "seconds)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sim_getset[] = {
    {"size", (getter)sim_get_size, NULL, "Number of simulated nodes.", NULL},
    {"probe_interval", (getter)sim_get_probe_interval, NULL,
     "One protocol period, in seconds.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sim_slots[] = {
    {Py_tp_doc,
     "Simulator(nodes, *, seed=1, loss=0.0, latency=(0.0002, 0.001), "
     "profile='lan', config=None, stream_timeout=5.0, leave_grace=5.0, "
     "record_events=False)\n\nA deterministic cluster of core nodes "
     "n0..n{nodes-1} on a virtual clock."},
    {Py_tp_new, sim_new},
    {Py_tp_init, sim_init},
    {Py_tp_dealloc, sim_dealloc},
    {Py_tp_traverse, sim_traverse},
    {Py_tp_clear, sim_clear},
    {Py_tp_methods, sim_methods},
    {Py_tp_getset, sim_getset},
    {0, NULL},
};

static PyType_Spec sim_spec = {
    .name = "clustermember._core.Simulator",
    .basicsize = sizeof(sim_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sim_slots,
};

int cm_py_sim_exec(PyObject *module) {
  cm_py_state_t *st = cm_py_state(module);
  st->sim_type = PyType_FromModuleAndSpec(module, &sim_spec, NULL);
  if (st->sim_type == NULL)
    return -1;
  return PyModule_AddObjectRef(module, "Simulator", st->sim_type);
}
