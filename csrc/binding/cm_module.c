/* The clustermember._core extension module: multi-phase init, module state,
 * error mapping. Feature files register their types from the exec slot. */
#include "cm_py.h"

#include <errno.h>

#include "cm_common.h"
#include "cm_coord.h"

cm_py_state_t *cm_py_state(PyObject *module) {
  return (cm_py_state_t *)PyModule_GetState(module);
}

PyObject *cm_py_raise(PyObject *module, int err, const char *doing) {
  cm_py_state_t *st = cm_py_state(module);
  PyObject *exc_type = st->error;
  PyObject *exc, *code, *reason;
  if (err == CM_ENOMEM)
    return PyErr_NoMemory();
  if (err == CM_EINVAL || err == CM_ECONFIG || err == CM_EADDR ||
      err == CM_ENODEID || err == CM_ETAGKEY || err == CM_ETAGVAL ||
      err == CM_ETAGSET)
    exc_type = PyExc_ValueError;
  /* The socket's own error, as Python's socket module would raise it, so
   * callers can test exc.errno as for any bind. */
  if (err == CM_EADDRINUSE) {
    exc_type = PyExc_OSError;
    exc = PyObject_CallFunction(exc_type, "is", EADDRINUSE, doing);
  } else {
    exc = PyObject_CallFunction(exc_type, "s", doing);
  }
  if (exc == NULL)
    return NULL;
  /* The code and its name travel with the exception for callers that
   * map them to richer Python errors. */
  code = PyLong_FromLong(err);
  reason = PyUnicode_FromString(cm_strerror(err));
  if (code == NULL || reason == NULL ||
      PyObject_SetAttrString(exc, "code", code) < 0 ||
      PyObject_SetAttrString(exc, "reason", reason) < 0) {
    Py_XDECREF(code);
    Py_XDECREF(reason);
    Py_DECREF(exc);
    return NULL;
  }
  Py_DECREF(code);
  Py_DECREF(reason);
  PyErr_SetObject(exc_type, exc);
  Py_DECREF(exc);
  return NULL;
}

static PyObject *py_strerror(PyObject *module, PyObject *arg) {
  long code = PyLong_AsLong(arg);
  if (code == -1 && PyErr_Occurred())
    return NULL;
  return PyUnicode_FromString(cm_strerror((int)code));
}

static PyObject *py_coord_rtt(PyObject *module, PyObject *args) {
  PyObject *a, *b;
  cm_coord_t ca, cb;
  (void)module;
  if (!PyArg_ParseTuple(args, "OO:coord_rtt", &a, &b) ||
      cm_py_coord_parse(a, &ca) < 0 || cm_py_coord_parse(b, &cb) < 0)
    return NULL;
  return PyFloat_FromDouble(cm_coord_rtt(&ca, &cb));
}

static PyMethodDef module_methods[] = {
    {"strerror", py_strerror, METH_O,
     "strerror(code) -> str\n\nText of a clustermember error code."},
    {"coord_rtt", py_coord_rtt, METH_VARARGS,
     "coord_rtt(a, b) -> float\n\nEstimated round trip in seconds between "
     "two network coordinates, each (vec, height, adjustment, error)."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module) {
  cm_py_state_t *st = cm_py_state(module);
  st->error = PyErr_NewExceptionWithDoc(
      "clustermember._core.Error",
      "An error reported by the clustermember engine.", NULL, NULL);
  if (st->error == NULL ||
      PyModule_AddObjectRef(module, "Error", st->error) < 0)
    return -1;
  if (PyModule_AddIntConstant(module, "WIRE_VERSION", 1) < 0)
    return -1;
  if (cm_py_sim_exec(module) < 0)
    return -1;
  return cm_py_engine_exec(module);
}

static int module_traverse(PyObject *module, visitproc visit, void *arg) {
  cm_py_state_t *st = cm_py_state(module);
  Py_VISIT(st->error);
  Py_VISIT(st->sim_type);
  Py_VISIT(st->engine_type);
  Py_VISIT(st->node_type);
  Py_VISIT(st->snapshot_type);
  return 0;
}

static int module_clear(PyObject *module) {
  cm_py_state_t *st = cm_py_state(module);
  Py_CLEAR(st->error);
  Py_CLEAR(st->sim_type);
  Py_CLEAR(st->engine_type);
  Py_CLEAR(st->node_type);
  Py_CLEAR(st->snapshot_type);
  return 0;
}

static void module_free(void *module) { module_clear((PyObject *)module); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clustermember._core",
    .m_doc = "The clustermember engine: protocol core, simulator, transport.",
    .m_size = sizeof(cm_py_state_t),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&module_def); }
