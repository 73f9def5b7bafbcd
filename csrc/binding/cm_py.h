/*
 * Private interface between the binding's files. Only csrc/binding includes
 * Python.h: argument conversion lives here, protocol logic never does.
 */
#ifndef CM_PY_H
#define CM_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Per-module state (PEP 489/630): no global mutable state. */
typedef struct cm_py_state {
  PyObject *error;         /* clustermember._core.Error */
  PyObject *sim_type;      /* clustermember._core.Simulator */
  PyObject *engine_type;   /* clustermember._core.Engine */
  PyObject *node_type;     /* clustermember._core.Node */
  PyObject *snapshot_type; /* clustermember._core.Snapshot */
} cm_py_state_t;

cm_py_state_t *cm_py_state(PyObject *module);
/* Raise Error (or MemoryError/ValueError where those fit, OSError with
 * errno EADDRINUSE for CM_EADDRINUSE) for a CM_E* code, with the message
 * `doing`. Returns NULL for convenience. */
PyObject *cm_py_raise(PyObject *module, int err, const char *doing);

/* cm_config_t <-> dict of seconds and counts (cm_py_convert.c). Setting an
 * unknown name or a bad value raises and returns -1. */
struct cm_config;
int cm_py_config_set(struct cm_config *c, PyObject *key, PyObject *val);
PyObject *cm_py_config_dict(const struct cm_config *c);
/* A canonical tags blob as dict[str, str] (undecodable bytes replaced). */
PyObject *cm_py_tags_dict(const uint8_t *blob, size_t len);
/* A network coordinate as (vec: tuple of CM_COORD_DIMS floats, height,
 * adjustment, error), seconds; and back, raising ValueError (-1) for
 * anything that is not a valid one. */
struct cm_coord;
PyObject *cm_py_coord_tuple(const struct cm_coord *c);
int cm_py_coord_parse(PyObject *o, struct cm_coord *out);

/* Each feature file adds its types and functions to the module. */
int cm_py_sim_exec(PyObject *module);
int cm_py_engine_exec(PyObject *module);

#endif
