"""The process-wide engine: one libuv thread hosting every node of the process.

Created on first use and shared by all ClusterMembership objects. Stopped by
an atexit hook before the interpreter finalises (nodes stop without leaving,
so peers see them fail; call ``leave()`` first for a graceful exit). After
``fork()`` the child closes the descriptors its copy of the engine holds
(the sockets bound to the parent's ports among them, so the parent can bind
them again while the child lives on) and drops the copy without taking any
of its locks: the parent's nodes do not survive into the child, and a
ClusterMembership inherited by the child raises ClusterClosed. The child
may start new nodes; they get an engine of their own.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import TYPE_CHECKING

from clustermember import _core

if TYPE_CHECKING:
    from clustermember._membership import ClusterMembership

_lock = threading.Lock()
_engine: _core.Engine | None = None
_members: weakref.WeakSet[ClusterMembership] = weakref.WeakSet()
_atexit_registered = False


def engine() -> _core.Engine:
    """The shared engine, started on first call."""
    global _engine, _atexit_registered
    with _lock:
        if _engine is None or _engine.closed:
            _engine = _core.Engine()
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
        return _engine


def register(member: ClusterMembership) -> None:
    """Track a membership so shutdown and fork can detach it first."""
    _members.add(member)


def shutdown() -> None:
    """Detach every membership from its event loop, then stop the engine."""
    global _engine
    for member in list(_members):
        member._engine_gone(forked=False)
    with _lock:
        eng, _engine = _engine, None
    if eng is not None:
        eng.close()


def _after_fork_in_child() -> None:
    global _engine, _lock
    # The parent's lock may have been held by another thread at fork time.
    _lock = threading.Lock()
    # Forget first (closing the engine's descriptors in this process): a
    # node released below must not reach the engine.
    if _engine is not None:
        _engine.forget()
    _engine = None
    for member in list(_members):
        member._engine_gone(forked=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
