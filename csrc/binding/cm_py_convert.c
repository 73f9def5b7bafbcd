/* Conversions shared by the simulator and engine types: cm_config_t to and
 * from dicts of seconds and counts, and tag blobs to dicts. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cm_config.h"
#include "cm_py.h"
#include "cm_wire.h"

PyObject *cm_py_tags_dict(const uint8_t *blob, size_t len) {
  PyObject *d = PyDict_New();
  size_t off = 0;
  cm_tag_t t;
  if (d == NULL)
    return NULL;
  while (cm_tags_next(blob, len, &off, &t)) {
    PyObject *k = PyUnicode_DecodeUTF8(t.key, (Py_ssize_t)t.key_len, "replace");
    PyObject *v =
        PyUnicode_DecodeUTF8(t.value, (Py_ssize_t)t.value_len, "replace");
    if (k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0) {
      Py_XDECREF(k);
      Py_XDECREF(v);
      Py_DECREF(d);
      return NULL;
    }
    Py_DECREF(k);
    Py_DECREF(v);
  }
  return d;
}

enum field_kind { F_TIME, F_U32, F_DOUBLE, F_BOOL };

struct config_field {
  const char *name;
  enum field_kind kind;
  size_t off;
};

#define TF(f)                                                                  \
  { #f, F_TIME, offsetof(cm_config_t, f) }
#define UF(f)                                                                  \
  { #f, F_U32, offsetof(cm_config_t, f) }
#define DF(f)                                                                  \
  { #f, F_DOUBLE, offsetof(cm_config_t, f) }
#define BF(f)                                                                  \
  { #f, F_BOOL, offsetof(cm_config_t, f) }
static const struct config_field fields[] = {
    TF(probe_interval),
    TF(probe_timeout),
    UF(indirect_checks),
    UF(awareness_max),
    UF(suspicion_mult),
    UF(suspicion_max_mult),
    UF(suspicion_confirmations),
    BF(nack_confirms),
    DF(phi_threshold),
    UF(phi_window),
    TF(phi_min_std),
    TF(phi_acceptable_pause),
    UF(phi_min_samples),
    TF(gossip_interval),
    UF(gossip_nodes),
    TF(gossip_to_dead),
    UF(retransmit_mult),
    UF(max_broadcast_queue),
    TF(pushpull_interval),
    TF(reconnect_interval),
    TF(reconnect_timeout),
    TF(reap_left_after),
    UF(max_packet_size),
    UF(max_tag_key),
    UF(max_tag_value),
    UF(max_tags_size),
    UF(max_members),
    UF(max_pushpull_size),
    UF(user_event_buffer),
    UF(max_user_event_size),
    UF(user_event_rate),
    UF(query_timeout_mult),
    UF(max_user_event_stream),
    UF(user_event_store),
    BF(coordinates),
    UF(history),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static int config_set_field(char *base, const struct config_field *f,
                            PyObject *val) {
  if (f->kind == F_TIME) {
    double sec = PyFloat_AsDouble(val);
    cm_time_t t;
    if (sec == -1.0 && PyErr_Occurred())
      return -1;
    if (!isfinite(sec) || sec < 0 || sec > 1e9) {
      PyErr_Format(PyExc_ValueError,
                   "%s must be a finite number of seconds in [0, 1e9], got %R",
                   f->name, val);
      return -1;
    }
    t = (cm_time_t)llround(sec * 1e6);
    memcpy(base + f->off, &t, sizeof(t));
  } else if (f->kind == F_U32) {
    unsigned long v;
    uint32_t u;
    if (!PyLong_Check(val)) {
      PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", f->name,
                   Py_TYPE(val)->tp_name);
      return -1;
    }
    v = PyLong_AsUnsignedLong(val);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
      PyErr_Format(PyExc_ValueError, "%s must be a non-negative int, got %R",
                   f->name, val);
      return -1;
    }
    if (v > UINT32_MAX) {
      PyErr_Format(PyExc_ValueError, "%s is too large: %R", f->name, val);
      return -1;
    }
    u = (uint32_t)v;
    memcpy(base + f->off, &u, sizeof(u));
  } else if (f->kind == F_BOOL) {
    uint32_t u;
    if (!PyBool_Check(val)) {
      PyErr_Format(PyExc_TypeError, "%s must be True or False, not %.100s",
                   f->name, Py_TYPE(val)->tp_name);
      return -1;
    }
    u = val == Py_True;
    memcpy(base + f->off, &u, sizeof(u));
  } else {
    double d = PyFloat_AsDouble(val);
    if (d == -1.0 && PyErr_Occurred())
      return -1;
    memcpy(base + f->off, &d, sizeof(d));
  }
  return 0;
}

int cm_py_config_set(cm_config_t *c, PyObject *key, PyObject *val) {
  const char *name = PyUnicode_AsUTF8(key);
  size_t i;
  if (name == NULL)
    return -1;
  for (i = 0; i < NFIELDS; i++)
    if (strcmp(name, fields[i].name) == 0)
      return config_set_field((char *)c, &fields[i], val);
  PyErr_Format(PyExc_ValueError, "unknown protocol setting %R", key);
  return -1;
}

PyObject *cm_py_config_dict(const cm_config_t *c) {
  PyObject *d = PyDict_New();
  size_t i;
  if (d == NULL)
    return NULL;
  for (i = 0; i < NFIELDS; i++) {
    const struct config_field *f = &fields[i];
    const char *p = (const char *)c + f->off;
    PyObject *v;
    if (f->kind == F_TIME) {
      cm_time_t t;
      memcpy(&t, p, sizeof(t));
      v = PyFloat_FromDouble((double)t / 1e6);
    } else if (f->kind == F_U32) {
      uint32_t u;
      memcpy(&u, p, sizeof(u));
      v = PyLong_FromUnsignedLong(u);
    } else if (f->kind == F_BOOL) {
      uint32_t u;
      memcpy(&u, p, sizeof(u));
      v = PyBool_FromLong(u != 0);
    } else {
      double x;
      memcpy(&x, p, sizeof(x));
      v = PyFloat_FromDouble(x);
    }
    if (v == NULL || PyDict_SetItemString(d, f->name, v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(d);
      return NULL;
    }
    Py_DECREF(v);
  }
  return d;
}

PyObject *cm_py_coord_tuple(const cm_coord_t *c) {
  PyObject *vec = PyTuple_New(CM_COORD_DIMS);
  int i;
  if (vec == NULL)
    return NULL;
  for (i = 0; i < CM_COORD_DIMS; i++) {
    PyObject *f = PyFloat_FromDouble(c->vec[i]);
    if (f == NULL) {
      Py_DECREF(vec);
      return NULL;
    }
    PyTuple_SET_ITEM(vec, i, f);
  }
  return Py_BuildValue("(Nddd)", vec, c->height, c->adjustment, c->error);
}

int cm_py_coord_parse(PyObject *o, cm_coord_t *out) {
  PyObject *vec, *seq;
  Py_ssize_t i;
  memset(out, 0, sizeof(*out));
  /* PyArg_ParseTuple takes only a tuple: anything else is a SystemError. */
  if (!PyTuple_Check(o)) {
    PyErr_Format(PyExc_TypeError,
                 "a coordinate is a tuple (vec, height, adjustment, error), "
                 "not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
  }
  if (!PyArg_ParseTuple(o,
                        "Oddd;a coordinate is (vec, height, adjustment, "
                        "error)",
                        &vec, &out->height, &out->adjustment, &out->error))
    return -1;
  seq = PySequence_Fast(vec, "a coordinate's vec must be a sequence");
  if (seq == NULL)
    return -1;
  if (PySequence_Fast_GET_SIZE(seq) != CM_COORD_DIMS) {
    Py_DECREF(seq);
    PyErr_Format(PyExc_ValueError, "a coordinate's vec has %d numbers",
                 CM_COORD_DIMS);
    return -1;
  }
  for (i = 0; i < CM_COORD_DIMS; i++) {
    out->vec[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
    if (out->vec[i] == -1.0 && PyErr_Occurred()) {
      Py_DECREF(seq);
      return -1;
    }
  }
  Py_DECREF(seq);
  if (!cm_coord_valid(out)) {
    char msg[160];
    PyOS_snprintf(msg, sizeof(msg),
                  "not a valid coordinate: every number must be finite and "
                  "within %g s, the height not negative and the error in "
                  "[0, %g]",
                  CM_COORD_LIMIT, CM_COORD_ERROR_MAX);
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
  }
  return 0;
}
