"""ClusterMembership: one node of a cluster, driven from asyncio.

Lifecycle: ``start()`` binds the socket (``__aenter__`` and ``join()`` call
it when needed); ``join(seeds)`` joins; ``leave()`` leaves gracefully and
stops the node; ``close()`` stops it at once without leaving (peers will see
it fail). ``async with`` joins nothing by itself but guarantees a leave (if
joined) and a close on exit.

Events travel from the engine thread through an eventfd that the event loop
watches (``loop.add_reader``); they are drained and fanned out on the loop
thread. Reads (``nodes``, ``nodes_with_tag``, ``stats``...) copy from an
immutable snapshot the engine publishes: they never wait for the protocol and
need no running loop (REPL, Jupyter).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import ipaddress
import logging
import re
import socket
import time
import warnings
import weakref
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from clustermember import _core, _display, _engine
from clustermember._config import ClusterConfig, check_duration, check_tag, check_tags
from clustermember._errors import (
    AlreadyJoined,
    ClusterClosed,
    ClusterError,
    DuplicateNodeId,
    JoinRefused,
    JoinTimeout,
    NotJoined,
    NotStarted,
    RateLimited,
    TagError,
    UnknownMember,
)
from clustermember._events import (
    EVENT_TYPES,
    ClusterEvent,
    NodeConflict,
    NodeFailed,
    NodeJoined,
    NodeLeft,
    NodeSuspect,
    Subscription,
    UserEvent,
    wall_time,
)
from clustermember._keys import KEYS_QUERY, RESERVED_PREFIX, Keyring
from clustermember._log import RateLimitedLog, log
from clustermember._models import (
    STATE_BITS,
    ClusterStats,
    HistoryEntry,
    Member,
    MemberState,
    PeerHealth,
    rtt_between,
)

if TYPE_CHECKING:
    # Queries, explanations and pictures are imported when first used: a
    # node (an agent) that never meets one does not pay for them at start.
    from clustermember._coordmap import CoordinateMap
    from clustermember._queries import Handler, QueryResults
    from clustermember._timeline import HistoryTimeline

EDUPLICATE = -27
ETIMEDOUT = -25
ECLOSED = -23
EAUTH = -19
# Time the engine gets beyond the join timeout to report its own verdict
# before the API gives up waiting for it.
JOIN_GRACE = 5.0
HOST_ID_MAX = 48
# How often a node reads its own counters for what no event reports
# (refused handshakes, suspicions of itself it refuted) to log them.
LOG_TICK = 1.0
# Counters whose rise is logged (no event reports it): counter, kind, line.
COUNTER_LINES = (
    (
        "net_auth_refused",
        "refused",
        "refused %d handshake(s) that failed authentication (a peer with another "
        "cluster key or CA, or a stranger)",
    ),
    (
        "refutations",
        "refuted",
        "peers suspected this node and it refuted %d suspicion(s): "
        "it may be answering probes too slowly",
    ),
)
# A snapshot read and a drain of the event queue agree when no snapshot was
# published in between; a busy engine may need a few tries.
REPLAY_TRIES = 1000
# Replayed members: the event that brings a reader to each member's state.
REPLAY_EVENTS: dict[MemberState, type[ClusterEvent]] = {
    MemberState.ALIVE: NodeJoined,
    MemberState.SUSPECT: NodeSuspect,
    MemberState.FAILED: NodeFailed,
    MemberState.LEFT: NodeLeft,
}

StatesArg = str | MemberState | Iterable[str | MemberState] | None


def _states_mask(states: StatesArg) -> int:
    if states is None:
        return 15
    if isinstance(states, (str, MemberState)):
        states = [states]
    mask = 0
    for s in states:
        try:
            mask |= STATE_BITS[MemberState(s)]
        except ValueError:
            raise ValueError(
                f"unknown state {s!r}: expected alive, suspect, failed or left"
            ) from None
    return mask


def _split_hostport(addr: object, what: str) -> tuple[str, int]:
    if not isinstance(addr, str):
        raise TypeError(f"{what} must be a 'host:port' str, not {type(addr).__name__}")
    host, sep, port_s = addr.rpartition(":")
    if not sep or not host or not port_s.isdigit() or int(port_s) > 65535:
        raise ValueError(f"{what} {addr!r} is not 'host:port' (e.g. '127.0.0.1:7946')")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host, int(port_s)


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _numeric(host: str) -> str | None:
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def resolve_bind(addr: object) -> str:
    """A bind address as 'ip:port' (port 0 picks one). Names resolve at once."""
    host, port = _split_hostport(addr, "bind address")
    ip = _numeric(host)
    if ip is None:
        try:
            ip = str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
        except OSError as exc:
            raise ValueError(f"bind address {addr!r}: cannot resolve {host!r}: {exc}") from None
    if port == 0:
        return _format(ip, 0)
    return _core.parse_addr(_format(ip, port))


async def resolve_seed(addr: object) -> str:
    """A seed as 'ip:port'; names resolve without blocking the loop."""
    host, port = _split_hostport(addr, "seed")
    ip = _numeric(host)
    if ip is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ValueError(f"seed {addr!r}: cannot resolve {host!r}: {exc}") from None
        ip = str(infos[0][4][0])
    return _core.parse_addr(_format(ip, port))


def default_node_id(bind: str) -> str:
    """hostname-port, or hostname-random when the port is picked by the kernel."""
    host = "".join(c for c in socket.gethostname() if 0x20 < ord(c) < 0x7F)[:HOST_ID_MAX]
    port = bind.rpartition(":")[2]
    if port != "0":
        return f"{host or 'node'}-{port}"
    import secrets  # imported where used: the package's import stays cheap

    return f"{host or 'node'}-{secrets.token_hex(3)}"


class ClusterMembership:
    """One cluster node.

    >>> config = ClusterConfig.local(cluster_key=key, tags={"role": "worker"})
    >>> async with ClusterMembership("127.0.0.1:0", config) as cluster:
    ...     await cluster.join(["127.0.0.1:7946"])
    ...     workers = cluster.nodes_with_tag("role", "worker")
    """

    def __init__(self, bind_addr: str = "127.0.0.1:7946", config: ClusterConfig | None = None):
        if config is None:
            config = ClusterConfig()
        if not isinstance(config, ClusterConfig):
            raise TypeError(f"config must be a ClusterConfig, not {type(config).__name__}")
        config.validate()
        # A copy, not dataclasses.replace: that would build the config
        # again and repeat its warnings (phi_threshold) against this line.
        self._config = copy.copy(config)
        self._config.tags = dict(config.tags)
        self._bind = resolve_bind(bind_addr)
        self._id = config.node_id or default_node_id(self._bind)
        self._tags: dict[str, str] = dict(config.tags)
        self._node: _core.Node | None = None
        self._state = "new"  # new started joining joined leaving left closed
        # drop_out, drop_in, seed, the addresses blocked
        self._fault: tuple[float, float, int, list[str]] | None = None
        self._left = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # User events held for coalescing: the latest of each name, and the
        # timer that delivers them.
        self._coalesce: dict[str, UserEvent] = {}
        self._coalesce_timer: asyncio.TimerHandle | None = None
        self._coalesced = 0
        self._subscriber_drops = 0  # events subscribers lost, all of them ever
        # Queries: ours waiting for answers, by id; handlers by name; the
        # answers handlers are still computing.
        self._queries: dict[int, QueryResults] = {}
        self._query_handlers: dict[str, Handler] = {}
        self._keyring = Keyring(self, self._config.keys() if self._config.auth == "key" else [])
        self._query_handlers[KEYS_QUERY] = self._keyring.handle
        self._answering: set[asyncio.Task[None]] = set()
        self._reader_fd: int | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._leave_future: asyncio.Future[int] | None = None
        # Weak: a subscription nobody reads any more is forgotten.
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        # Subscriptions a reader is waiting on: held strongly (see
        # Subscription._hold).
        self._reading: set[Subscription] = set()
        self._bound = ""
        self._lines = RateLimitedLog(self._id)
        # Where a member with this node's id was last reported (NodeConflict
        # about ourselves): the address a DuplicateNodeId names.
        self._id_claimed_at: str | None = None
        # Addresses whose claim of this node's id was logged (once each).
        self._claims_logged: set[str | None] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._seen_counters: dict[str, int] = {}
        _engine.register(self)

    # --------------------------------------------------------- properties

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._id

    @property
    def config(self) -> ClusterConfig:
        """The configuration this node was made with (a copy)."""
        return self._config

    @property
    def keys(self) -> Keyring:
        """The cluster key ring: this node's keys, and live rotation on every member.

        >>> await cluster.keys.install(new_key)
        KeyReport(answered=5, errors={}, missing=[], ...)
        """
        return self._keyring

    @property
    def state(self) -> str:
        """'new', 'started', 'joining', 'joined', 'leaving', 'left' or 'closed'."""
        return self._state

    @property
    def addr(self) -> str:
        """The address peers reach this node at (the bound port once started)."""
        return self._bound or self._bind

    @property
    def tags(self) -> dict[str, str]:
        """This node's own tags (a copy)."""
        return dict(self._tags)

    # ---------------------------------------------------------- lifecycle

    async def start(self) -> ClusterMembership:
        """Bind the socket and start answering probes. Idempotent.

        Raises OSError with errno EADDRINUSE, naming the address, if another
        socket holds it.

        >>> await cluster.start(); cluster.addr
        '127.0.0.1:40123'
        """
        self._check_open()
        if self._node is None:
            self._start_node()
        self._attach(asyncio.get_running_loop())
        return self

    def _start_node(self) -> None:
        import secrets  # imported where used: the package's import stays cheap

        c = self._config
        if c.auth == "none":
            text = (
                f"clustermember node {self._id} runs WITHOUT authentication "
                f"(insecure=True): anyone who can reach {self._bind} can join and "
                "inject membership"
            )
            log.warning("%s", text)
            # Also a Python warning: the library's logger is silent unless
            # the application configures logging, and this one must be seen.
            warnings.warn(text, UserWarning, stacklevel=3)
        self._node = _engine.engine().start_node(
            self._id,
            self._bind,
            tags=self._tags,
            proto=c.protocol_settings(),
            net=c.transport_settings(self._id, self._bind),
            seed=c.seed if c.seed is not None else secrets.randbits(63),
            event_queue=c.event_queue_size,
            leave_grace=c.leave_timeout,
        )
        self._bound = self._node.addr
        self._state = "started"
        if self._fault is not None:
            self._set_fault(self._node, self._fault)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._node is None or (self._loop is loop and self._reader_fd is not None):
            return
        self._detach()
        fd = self._node.fileno()
        loop.add_reader(fd, self._on_readable)
        self._loop, self._reader_fd = loop, fd
        # Anything queued before the reader existed.
        loop.call_soon(self._on_readable)
        self._tick = loop.call_later(LOG_TICK, self._log_counters)

    def _detach(self) -> None:
        loop, fd = self._loop, self._reader_fd
        self._loop = self._reader_fd = None
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if loop is not None and fd is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)

    async def join(self, seeds: Iterable[str], timeout: float | None = None) -> None:
        """Join the cluster through any of the seeds ('host:port' strings).

        An empty list starts a cluster of one. Raises AlreadyJoined if joined
        (or joining), JoinTimeout naming the seeds if none answered within
        ``timeout`` (default ``config.join_timeout``), and its subclass
        JoinRefused if the seeds refused this node's key or certificate.
        If the seed knows a live member with this node's id at another
        address, this node asks that address (one ping, up to one probe
        interval): DuplicateNodeId if a process there answers to the id,
        and both processes log a WARNING; if none answers, the claim was
        this node's own crashed predecessor and the join succeeds.

        >>> await cluster.join(["10.0.0.1:7946", "10.0.0.2:7946"], timeout=5.0)
        """
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
            raise TypeError("seeds must be a list of 'host:port' strings, e.g. ['10.0.0.1:7946']")
        self._check_open()
        if self._state in ("joining", "joined"):
            raise AlreadyJoined(f"node {self._id} has already joined; leave() first")
        if self._state in ("leaving", "left"):
            raise ClusterClosed(
                f"node {self._id} has left; make a new ClusterMembership to join again"
            )
        seeds = list(seeds)
        if timeout is None:
            timeout = self._config.join_timeout
        timeout = check_duration("join_timeout", timeout, "timeout")
        resolved = [await resolve_seed(s) for s in seeds]
        await self.start()
        assert self._node is not None and self._loop is not None
        before = self._node.stats()
        token = self._node.join(resolved, float(timeout))
        fut: asyncio.Future[int] = self._loop.create_future()
        self._pending[token] = fut
        self._state = "joining"
        tried = [s if s == r else f"{s} ({r})" for s, r in zip(seeds, resolved, strict=True)]
        try:
            status = await asyncio.wait_for(asyncio.shield(fut), timeout + JOIN_GRACE)
        except asyncio.TimeoutError:
            status = ETIMEDOUT
        finally:
            self._pending.pop(token, None)
        if status == 0:
            # The engine publishes the merged table before it reports the
            # join, so reads right after this return see the cluster.
            self._state = "joined"
            log.info(
                "node %s: joined through %s (%d members known)",
                self._id,
                ", ".join(tried) if tried else "no seed (a cluster of one)",
                len(self.nodes(None)),
            )
            return
        if self._state == "joining":
            self._state = "started"
        if status == ETIMEDOUT:
            raise JoinTimeout(tried, timeout, **self._handshake_failures(before))
        if status == EAUTH:
            raise JoinRefused(tried, timeout, **self._handshake_failures(before))
        if status == EDUPLICATE:
            raise DuplicateNodeId(self._id, self._id_claimed_at)
        if status == ECLOSED or self._state in ("closed", "leaving", "left"):
            raise ClusterClosed(f"node {self._id} closed while joining")
        raise ClusterError(f"join failed: {_core.strerror(status)}")

    def _handshake_failures(self, before: Mapping[str, int]) -> dict[str, int]:
        """Handshakes that failed since ``before``: what a silent join hides."""
        node = self._node
        if node is None:
            return {}
        try:
            after = node.stats()
        except _core.Error:
            return {}
        return {
            name: after[key] - before.get(key, 0)
            for name, key in (
                ("handshakes_failed", "net_handshakes_failed"),
                ("auth_refused", "net_auth_refused"),
                ("handshakes_ok", "net_handshakes_ok"),
            )
        }

    async def leave(self, timeout: float | None = None) -> None:
        """Leave gracefully, then stop: peers mark this node left, not failed.

        Waits until the leave has spread, at most ``timeout`` seconds (default
        ``config.leave_timeout``), then stops the node either way. NotJoined
        before a successful join. After a successful leave, calling it again
        is a safe no-op.

        >>> await cluster.leave()
        """
        if timeout is not None:
            timeout = check_duration("leave_timeout", timeout, "timeout")
        if self._left:
            return
        if self._state == "leaving" and self._leave_future is not None:
            await asyncio.shield(self._leave_future)
            return
        self._check_open()
        if self._state != "joined":
            raise NotJoined(f"node {self._id} has not joined a cluster (state {self._state})")
        assert self._node is not None
        loop = asyncio.get_running_loop()
        self._attach(loop)
        token = self._node.leave(timeout)
        fut: asyncio.Future[int] = loop.create_future()
        self._pending[token] = fut
        self._leave_future = fut
        self._state = "leaving"
        limit = (timeout if timeout is not None else self._config.leave_timeout) + JOIN_GRACE
        try:
            await asyncio.wait_for(asyncio.shield(fut), limit)
        except asyncio.TimeoutError:
            log.warning("node %s: leave not confirmed after %.1f s; stopping", self._id, limit)
        else:
            log.info("node %s: left the cluster", self._id)
        finally:
            self._pending.pop(token, None)
        self._on_left()

    def _on_left(self) -> None:
        if self._left:
            return
        self._left = True
        self._state = "left"
        self._drain_all()
        for sub in list(self._subs):
            sub._end()

    async def close(self) -> None:
        """Stop at once without leaving (peers will see a failure). Idempotent.

        Ends subscriptions and fails a pending join or leave with ClusterClosed.
        """
        self._close()

    def _close(self) -> None:
        if self._state == "closed":
            return
        if self._node is not None and self._reader_fd is not None:
            self._drain_all()
        self._detach()
        node, self._node = self._node, None
        if node is not None:
            node.stop()
        self._state = "closed"
        self._fail_pending()

    def _fail_pending(self) -> None:
        # Coalesced events still held go out before the subscriptions end;
        # queries in flight end now.
        if self._coalesce_timer is not None:
            self._coalesce_timer.cancel()
        self._flush_coalesced()
        for results in self._queries.values():
            results._finish()
        self._queries.clear()
        for task in self._answering:
            task.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(ECLOSED)
        self._pending.clear()
        for sub in list(self._subs):
            sub._end()
        self._subs.clear()
        self._reading.clear()

    def _engine_gone(self, forked: bool) -> None:
        """The engine stops (atexit) or is lost to fork(): this node is closed."""
        if not forked:
            self._detach()
        else:
            # The child shares the parent's epoll instance: removing the
            # reader here would remove it in the parent too.
            self._loop = self._reader_fd = None
        self._node = None
        if self._state != "closed":
            self._state = "closed"
            with contextlib.suppress(Exception):
                self._fail_pending()

    async def __aenter__(self) -> ClusterMembership:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self._state in ("joined", "leaving"):
                await self.leave()
        except Exception:  # noqa: BLE001 - the close below must still happen
            log.exception("node %s: leave on exit failed", self._id)
        finally:
            self._close()

    def _check_open(self) -> None:
        if self._state == "closed":
            raise ClusterClosed(f"node {self._id} is closed")

    # -------------------------------------------------------------- events

    def _on_readable(self) -> None:
        node = self._node
        if node is None:
            return
        try:
            batch = node.next_events()
        except _core.Error:
            self._detach()
            return
        for ev in batch:
            self._dispatch(ev)

    def _drain_all(self) -> None:
        node = self._node
        while node is not None:
            try:
                batch = node.next_events()
            except _core.Error:
                return
            if not batch:
                return
            for ev in batch:
                self._dispatch(ev)

    def _dispatch(self, ev: tuple[Any, ...]) -> None:
        """One engine event to the subscribers and waiters; a failure in one
        (a handler's, a filter's) is logged and costs only that event."""
        try:
            self._dispatch_one(ev)
        except Exception:  # noqa: BLE001 - the rest of the batch must go on
            log.exception("node %s: handling a %s event failed", self._id, ev[0])

    def _dispatch_one(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "member":
            _, etype, mid, addr, state, inc, mono, tags, other = ev
            member = Member(
                mid,
                addr,
                MemberState(state),
                inc,
                MappingProxyType(tags),
                mono,
                None,
                mid == self._id,
            )
            cls = EVENT_TYPES.get(etype)
            if cls is None:
                return
            wall = wall_time(mono)
            event = (
                NodeConflict(member, wall, mono, other)
                if cls is NodeConflict
                else cls(member, wall, mono)
            )
            if cls is NodeConflict and member.is_self:
                self._id_claimed_at = other
            self._log_event(etype, member, other)
            for sub in list(self._subs):
                sub._push(event)
        elif kind in ("joined", "left"):
            fut = self._pending.get(ev[1])
            if fut is not None and not fut.done():
                fut.set_result(ev[2])
            if kind == "joined" and ev[2] == 0 and self._state == "joining":
                self._state = "joined"
        elif kind == "dropped":
            for sub in list(self._subs):
                sub._push_dropped(ev[1])
        elif kind == "user":
            self._user_event(ev)
        elif kind == "reply":
            _, qid, sender, ack, payload, mono = ev
            results = self._queries.get(qid)
            if results is not None:
                results._answer(sender, bool(ack), payload, mono)
        elif kind == "query_done":
            results = self._queries.pop(ev[1], None)
            if results is not None:
                results._finish()
        elif kind == "query":
            self._asked(ev)

    def _user_event(self, ev: tuple[Any, ...]) -> None:
        _, name, payload, ltime, origin, coalesce, mono = ev
        local = self._local_or_none()
        assert local is not None
        event = UserEvent(
            local, wall_time(mono), mono, name, payload, ltime, origin, bool(coalesce)
        )
        window = self._config.user_event_coalesce
        if not coalesce or window <= 0 or self._loop is None:
            self._push_all(event)
            return
        held = self._coalesce.get(name)
        if held is not None:
            self._coalesced += 1
            if held.ltime > ltime:
                return
        self._coalesce[name] = event
        if self._coalesce_timer is None:
            self._coalesce_timer = self._loop.call_later(window, self._flush_coalesced)

    def _flush_coalesced(self) -> None:
        """The coalescing window ended: deliver the latest event of each name."""
        self._coalesce_timer = None
        held = sorted(self._coalesce.values(), key=lambda e: e.ltime)
        self._coalesce.clear()
        for event in held:
            self._push_all(event)

    def _push_all(self, event: ClusterEvent) -> None:
        for sub in list(self._subs):
            sub._push(event)

    def _log_event(self, etype: str, m: Member, other: str | None) -> None:
        lines = self._lines
        if etype == "conflict":
            if m.is_self:
                # Gossip repeats the other claim: one line per claiming address.
                if other in self._claims_logged:
                    return
                self._claims_logged.add(other)
                lines.emit(
                    "conflict",
                    logging.WARNING,
                    "id conflict: a member at %s already has this node's id %s; "
                    "give each node its own node_id",
                    other,
                    m.id,
                )
            else:
                lines.emit(
                    "conflict",
                    logging.WARNING,
                    "id conflict: member %s at %s is also claimed from %s (ignored); "
                    "give each node its own node_id",
                    m.id,
                    m.addr,
                    other,
                )
        elif m.is_self:
            return
        elif etype == "joined":
            lines.emit("joined", logging.INFO, "member %s joined (%s)", m.id, m.addr)
        elif etype == "left":
            lines.emit("left", logging.INFO, "member %s left", m.id)
        elif etype == "failed":
            lines.emit(
                "failed",
                logging.WARNING,
                "member %s (%s) failed: no answer to probes",
                m.id,
                m.addr,
            )
        elif etype == "recovered":
            lines.emit(
                "recovered",
                logging.INFO,
                "member %s is alive again (incarnation %d)",
                m.id,
                m.incarnation,
            )
        elif etype == "addr_changed":
            lines.emit(
                "moved", logging.INFO, "member %s is back at a new address, %s", m.id, m.addr
            )

    def _log_counters(self) -> None:
        """Log what the counters show and no event does; runs every LOG_TICK."""
        self._tick = None
        node, loop = self._node, self._loop
        if node is None or loop is None:
            return
        self._tick = loop.call_later(LOG_TICK, self._log_counters)
        self._lines.flush()
        if not log.isEnabledFor(logging.WARNING):
            return
        try:
            c = node.stats()
        except _core.Error:
            return
        # Counters start at 0 with the node: what rose before the first
        # tick (a misconfigured peer at deploy time) is logged too.
        seen, self._seen_counters = self._seen_counters, c
        for counter, kind, msg in COUNTER_LINES:
            delta = c[counter] - seen.get(counter, 0)
            if delta > 0:
                self._lines.emit(kind, logging.WARNING, msg, delta)

    @property
    def _subscriber_count(self) -> int:
        """Subscriptions still registered (for tests)."""
        return len(self._subs)

    def subscribe(self, maxsize: int | None = None, *, replay: bool = False) -> Subscription:
        """A new async iterator of events; every subscriber gets every event.

        ``maxsize`` (default ``config.subscriber_queue_size``) bounds its queue;
        past it the oldest events are dropped and counted (EventsDropped).

        With ``replay=True`` it first yields one event per member known now,
        the one that brings a reader to that member's state (``NodeJoined``
        for alive, ``NodeSuspect``, ``NodeFailed``, ``NodeLeft``; this node
        included), then every change after that: no change is missed and
        none is shown twice. Call it on the event loop's thread.

        The subscription ends when the ``async for`` reading it ends (also
        by cancellation), when closed, or when nothing references it.

        >>> async for event in cluster.subscribe(replay=True):
        ...     print(type(event).__name__, event.node.id)
        """
        self._check_open()
        size = maxsize if maxsize is not None else self._config.subscriber_queue_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"maxsize must be a positive int, got {size!r}")
        sub = Subscription(
            size, self._local_or_none, self._unsubscribe, self._hold_reader, self._sub_dropped
        )
        if self._left:
            sub._end()
            return sub
        if replay and self._node is not None:
            sub._replay(self._replay_events())
        self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        self._reading.discard(sub)

    def _hold_reader(self, sub: Subscription, waiting: bool) -> None:
        if waiting and not sub.closed:
            self._reading.add(sub)
        else:
            self._reading.discard(sub)

    def _replay_events(self) -> Iterator[ClusterEvent]:
        """The members as events, from a snapshot that shows exactly the
        events handed out so far.

        The engine queues events and publishes the snapshot that shows them
        under one lock, and every publish that queues events raises the
        snapshot's version. So if the version is the same before and after
        a drain of the queue, every event queued up to the second read was
        drained (and handed to the other subscribers), the snapshot shows
        them all, and anything queued later is newer than it: the new
        subscriber, registered before the loop runs again, gets exactly that.
        """
        assert self._node is not None
        snap = self._node.snapshot()
        for _ in range(REPLAY_TRIES):
            self._drain_all()
            if self._node is None:
                return iter(())
            after = self._node.snapshot()
            if after.version == snap.version:
                break
            snap = after
        members = [Member._from_tuple(t) for t in snap.query(15)]
        return (
            REPLAY_EVENTS[m.state](m, wall_time(m.state_change), m.state_change) for m in members
        )

    # ---------------------------------------------------------------- tags

    async def update_tag(self, key: str, value: str) -> None:
        """Set one tag of this node; gossiped to every member at high priority.

        >>> await cluster.update_tag("zone", "eu-1")
        """
        c = self._config
        check_tag(key, value, c.max_tag_key, c.max_tag_value)
        tags = dict(self._tags)
        tags[key] = value
        self._apply_tags(tags)

    async def remove_tag(self, key: str) -> bool:
        """Remove one tag; True if it was set, False (and nothing sent) if not.

        >>> await cluster.remove_tag("zone")
        True
        """
        if not isinstance(key, str):
            raise TypeError(f"tag key must be a str, not {type(key).__name__}")
        if key not in self._tags:
            self._check_open()
            return False
        tags = dict(self._tags)
        del tags[key]
        self._apply_tags(tags)
        return True

    async def set_tags(self, tags: Mapping[str, str]) -> None:
        """Replace the whole tag set at once (one incarnation bump)."""
        self._apply_tags(dict(tags))

    # --------------------------------------------------------- user events

    async def send_event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> int:
        """Send a user event to every member, this node included; returns its Lamport time.

        ``name``: 1 to 128 printable ASCII characters without spaces. Up
        to ``max_user_event_size`` bytes of name and payload together (1024
        by default) the event rides the gossip; a larger payload, up to
        ``max_user_event_stream`` bytes (1 MiB), is fetched by each member
        on a stream from one that has it. Every member gets it once, as a
        :class:`UserEvent`, through :meth:`subscribe`. Raises
        :class:`RateLimited` past ``user_event_rate`` events a second.

        >>> await cluster.send_event("deploy", b"v1.2")
        7
        """
        raw = self._check_event_name(name, "event")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"event payload must be bytes, not {type(payload).__name__}")
        size = len(raw) + len(payload)
        limit = self._config.max_user_event_stream
        if size > self._config.max_user_event_size and len(payload) > limit:
            raise ValueError(
                f"event {name!r} has a {len(payload)}-byte payload and the limit is "
                f"max_user_event_stream={limit}: send a smaller payload, or raise "
                "max_user_event_stream on every node"
            )
        node = self._sender("events")
        try:
            ltime: int = node.send_event(name, bytes(payload), bool(coalesce))
        except _core.Error as exc:
            raise self._send_error(exc, "events") from None
        self._drain_all()
        return ltime

    # -------------------------------------------------------------- queries

    def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        tags: Mapping[str, str] | None = None,
        node_ids: Iterable[str] | None = None,
        timeout: float | None = None,
        want_ack: bool = False,
        relay: int = 0,
    ) -> QueryResults:
        """Ask every member; iterate the answers of those selected as they come.

        ``tags`` selects members whose every named tag fully matches its
        regular expression; ``node_ids``, members by id; both: members that
        match both. ``want_ack`` asks each selected member to ack at once (it
        got the query) before its handler's response. ``relay`` (0-5): each
        answer also travels through that many other members, in case the
        way back is what fails. ``timeout``: seconds to listen (default
        Serf's: 16 gossip rounds per ceil(log10(N+1)), 3.2 s at 10-99 members
        on the LAN profile). Raises :class:`RateLimited` past
        ``user_event_rate`` queries a second.

        >>> async for r in cluster.query("load", tags={"role": r"db.*"}, timeout=2):
        ...     print(r.node_id, r.payload, r.rtt)
        """
        raw = self._check_event_name(name, "query")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"query payload must be bytes, not {type(payload).__name__}")
        if isinstance(relay, bool) or not isinstance(relay, int) or not 0 <= relay <= 5:
            raise ValueError(f"relay must be an int from 0 to 5, not {relay!r}")
        if timeout is not None:
            timeout = check_duration("request_timeout", timeout, "timeout")
        from clustermember._queries import QueryResults, encode_filter

        filt = encode_filter(tags, node_ids)
        size = len(raw) + len(payload) + len(filt)
        limit = self._config.max_user_event_size
        if size > limit:
            raise ValueError(
                f"query {name!r} is {size} bytes (name, payload and filter) and the limit is "
                f"max_user_event_size={limit}: send a smaller payload or filter, or raise "
                "max_user_event_size on every node"
            )
        node = self._sender("query")
        started = time.monotonic()
        try:
            qid: int = node.query(name, bytes(payload), filt, bool(want_ack), relay, timeout)
        except _core.Error as exc:
            raise self._send_error(exc, "queries") from None
        results = QueryResults(qid, started, self._query_closed)
        self._queries[qid] = results
        self._drain_all()
        return results

    def _query_closed(self, qid: int) -> None:
        self._queries.pop(qid, None)

    def on_query(self, name: str, handler: Handler | None) -> None:
        """Answer queries of ``name`` with ``handler`` (None: stop answering).

        The handler gets a :class:`Query` and returns the response (bytes:
        up to ``max_user_event_size`` in a datagram, larger ones up to
        ``max_user_event_stream`` on a stream to the asker), None for no
        response, or an
        awaitable of either; it runs only for queries whose filter selects
        this node. A handler that raises is logged; the asker gets no
        response from this node.

        >>> cluster.on_query("load", lambda q: b"0.42")
        """
        self._check_event_name(name, "query")
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"query names starting with {RESERVED_PREFIX!r} are reserved for the "
                "library's own (key rotation); choose another name"
            )
        if handler is None:
            self._query_handlers.pop(name, None)
        elif not callable(handler):
            raise TypeError(f"query handler must be callable, not {type(handler).__name__}")
        else:
            self._query_handlers[name] = handler

    def _asked(self, ev: tuple[Any, ...]) -> None:
        """A query reached this node: ack and answer it if it selects us."""
        from clustermember._queries import Query, filter_matches

        _, qid, name, payload, filt, ltime, origin, _addr, want_ack, deadline, _mono = ev
        if self._node is None or not filter_matches(filt, self._id, self._tags):
            return
        if want_ack:
            self._answer(origin, qid, name, True, b"")
        handler = self._query_handlers.get(name)
        if handler is None:
            return
        try:
            result = handler(Query(name, payload, origin, ltime, deadline))
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the node
            log.exception("node %s: query handler for %s raised", self._id, name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._answer_later(origin, qid, name, result))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        else:
            self._answer(origin, qid, name, False, result)

    async def _answer_later(
        self, origin: str, qid: int, name: str, pending: Awaitable[bytes | None]
    ) -> None:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the node
            log.exception("node %s: query handler for %s raised", self._id, name)
            return
        self._answer(origin, qid, name, False, result)

    def _answer(self, origin: str, qid: int, name: str, ack: bool, result: object) -> None:
        if result is None or self._node is None:
            return
        if not isinstance(result, (bytes, bytearray, memoryview)):
            log.warning(
                "node %s: query handler for %s returned %s, not bytes: no response sent",
                self._id,
                name,
                type(result).__name__,
            )
            return
        try:
            self._node.query_respond(origin, qid, ack, bytes(result))
        except _core.Error as exc:
            log.warning(
                "node %s: answer to query %s from %s not sent: %s", self._id, name, origin, exc
            )
        self._drain_all()

    def _check_event_name(self, name: object, what: str) -> bytes:
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a str, not {type(name).__name__}")
        raw = name.encode("ascii", "replace")
        if not 1 <= len(raw) <= 128 or any(not 0x21 <= b <= 0x7E for b in raw):
            raise ValueError(
                f"{what} name {name!r} must be 1 to 128 printable ASCII characters without spaces"
            )
        return raw

    def _sender(self, what: str) -> Any:
        """The engine node, for a call that sends: clear errors when there is none."""
        self._check_open()
        if self._state in ("leaving", "left"):
            raise ClusterClosed(f"node {self._id} has left; it can no longer send {what}")
        if self._node is None:
            raise NotStarted(f"node {self._id} is not started: await start() or join() first")
        return self._node

    def _send_error(self, exc: Exception, what: str) -> ClusterError:
        if getattr(exc, "reason", "") == "limit exceeded":
            return RateLimited(
                f"node {self._id} sent user_event_rate={self._config.user_event_rate} "
                f"{what} in the last second (or has 64 queries in flight, or its large "
                "events still being passed on fill user_event_store): wait and send "
                "again, or raise user_event_rate"
            )
        return ClusterClosed(f"node {self._id}: {exc}")

    def _apply_tags(self, tags: dict[str, str]) -> None:
        self._check_open()
        if self._state in ("leaving", "left"):
            raise ClusterClosed(f"node {self._id} has left; its tags can no longer change")
        c = self._config
        tags = check_tags(tags, c.max_tag_key, c.max_tag_value, c.max_tags_size)
        if self._node is not None:
            try:
                self._node.set_tags(tags)
            except ValueError as exc:
                raise TagError(str(exc)) from None
            except _core.Error as exc:
                raise ClusterClosed(f"node {self._id}: {exc}") from None
        self._tags = tags

    # --------------------------------------------------------------- reads

    def _snapshot(self) -> _core.Snapshot:
        if self._state == "closed":
            raise ClusterClosed(f"node {self._id} is closed")
        if self._node is None:
            raise NotStarted(f"node {self._id} is not started: await start() or join() first")
        try:
            return self._node.snapshot()
        except _core.Error as exc:
            raise ClusterClosed(f"node {self._id}: {exc}") from None

    def nodes(self, states: StatesArg = MemberState.ALIVE) -> list[Member]:
        """Members in the given states (default alive; None for every state).

        This node is included. Works with or without a running loop.

        >>> [m.id for m in cluster.nodes()]
        ['node-a', 'node-b']
        >>> cluster.nodes(states=["suspect", "failed"])
        []
        """
        mask = _states_mask(states)
        return [Member._from_tuple(t) for t in self._snapshot().query(mask)]

    def nodes_with_tag(
        self, key: str, value: str, states: StatesArg = MemberState.ALIVE
    ) -> list[Member]:
        """Members carrying tag key=value (alive ones unless states says otherwise).

        >>> cluster.nodes_with_tag("role", "worker")
        [Member(id='w1', ...)]
        """
        return self.nodes_with_all_tags({key: value}, states)

    def nodes_with_all_tags(
        self, tags: Mapping[str, str], states: StatesArg = MemberState.ALIVE
    ) -> list[Member]:
        """Members carrying every tag of the mapping.

        >>> cluster.nodes_with_all_tags({"role": "worker", "zone": "eu-1"})
        [Member(id='w1', ...)]
        """
        return self._tagged(self._snapshot(), tags, states)

    @staticmethod
    def _tagged(snap: _core.Snapshot, tags: Mapping[str, str], states: StatesArg) -> list[Member]:
        if not isinstance(tags, Mapping):
            raise TypeError(f"tags must be a mapping of str to str, not {type(tags).__name__}")
        mask = _states_mask(states)
        return [Member._from_tuple(t) for t in snap.query(mask, dict(tags))]

    def nodes_matching(
        self, patterns: Mapping[str, str], states: StatesArg = MemberState.ALIVE
    ) -> list[Member]:
        """Members whose tags match every regular expression of the mapping.

        As ``serf members -tag key=regex``: each pattern must match the
        whole value (``re.fullmatch``), and a member without the key does
        not match. ``{"role": "w.*"}`` finds ``worker`` and ``web``, not
        ``db`` or ``new-worker``; use ``".*w.*"`` to search inside values.
        A pattern that does not compile raises ValueError naming it.

        >>> cluster.nodes_matching({"role": r"w.*", "zone": r"eu-[0-9]+"})
        [Member(id='w1', ...)]
        """
        if not isinstance(patterns, Mapping):
            raise TypeError(
                f"patterns must be a mapping of str to str, not {type(patterns).__name__}"
            )
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for key, pattern in patterns.items():
            if not isinstance(key, str) or not isinstance(pattern, str):
                raise TypeError("patterns must map tag keys (str) to regular expressions (str)")
            try:
                compiled.append((key, re.compile(pattern)))
            except re.error as exc:
                raise ValueError(
                    f"tag pattern {key}={pattern!r} is not a regular expression: {exc}"
                ) from None
        return [
            m
            for m in self.nodes(states)
            if all(k in m.tags and rx.fullmatch(m.tags[k]) for k, rx in compiled)
        ]

    def member(self, node_id: str) -> Member | None:
        """One member by id, in any state, or None if unknown."""
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a str, not {type(node_id).__name__}")
        t = self._snapshot().find(node_id)
        return Member._from_tuple(t) if t is not None else None

    @property
    def local_node(self) -> Member:
        """This node's own record (its state, incarnation, tags, address)."""
        return self._self_in(self._snapshot())

    def _self_in(self, snap: _core.Snapshot) -> Member:
        t = snap.self_member()
        if t is None:
            raise NotStarted(f"node {self._id} has no record yet")
        return Member._from_tuple(t)

    def history(self, member_id: str) -> list[HistoryEntry]:
        """Why ``member_id`` was suspected, failed or came back, as this
        node saw it: its recent state changes, oldest first, each with its
        cause (this node's failed probe, an accuser's gossip, a timeout, the
        member's own refutation) and this node's local health then.

        A member's record starts with its first suspicion, failure or leave,
        so a member never in trouble has none ([]); at most
        ``config.history`` entries are kept per member (the most recent).
        Raises :class:`UnknownMember` for an id this node does not know.

        >>> for h in cluster.history("worker-3"):
        ...     print(h.event, h.source, h.by, h.helpers, h.nacks)
        suspect probe api-1 3 3
        failed timeout None 0 0
        """
        return self._history_of(member_id)[1]

    def _history_of(self, member_id: str) -> tuple[Member, list[HistoryEntry]]:
        """The member's record and its history, from one snapshot."""
        snap = self._snapshot()
        member = self._find(snap, member_id)
        rows = snap.history(member_id)
        return member, [HistoryEntry._from_tuple(t) for t in rows or ()]

    def explain(self, member_id: str) -> str:
        """:meth:`history` as text to read: a first line with the member's
        state now and since when, then one line per change, oldest first,
        with when it was (relative to now) and what caused it
        (docs/operations.md, "Reading an explanation"); for a member with
        no history, a line that says so. The same text as ``clustermember
        explain``. Raises :class:`UnknownMember` for an unknown id.

        >>> print(cluster.explain("worker-3"))
        worker-3 is alive (incarnation 4) since 2.1 s ago, as api-1 sees it
        12.0 s ago  suspect    by api-1 (its own probe: no ack; 3 helpers asked: ...
        11.6 s ago  confirmed  by web-2 (gossip; 2 accusers so far)
         9.0 s ago  failed     suspicion timed out here, 2 accusers
         2.1 s ago  recovered  it came back at incarnation 4
        """
        from clustermember._explain import explain_text

        member, entries = self._history_of(member_id)
        return explain_text(
            member.id,
            member.state.value,
            member.incarnation,
            member.state_change,
            entries,
            time.monotonic(),
            self._id,
        )

    def history_timeline(self, member_id: str) -> HistoryTimeline:
        """:meth:`history` as a picture for Jupyter: a ``HistoryTimeline``
        that shows as an SVG (``_repr_svg_``; ``to_svg()`` gives the text),
        the member's states as this node saw them in coloured bands between
        the recorded changes up to now, confirmations marked, each change
        labelled with its accuser or source. Raises :class:`UnknownMember`
        for an unknown id.

        >>> cluster.history_timeline("worker-3")      # in a notebook cell
        <HistoryTimeline of worker-3: 4 changes, 3 states>
        """
        from clustermember._timeline import HistoryTimeline

        member, entries = self._history_of(member_id)
        return HistoryTimeline(member.id, entries, time.monotonic(), self._id)

    def peer_health(self) -> list[PeerHealth]:
        """Every other member as this node sees its health, by id: the
        round trips of this node's direct probes of it (median, 90th
        percentile, largest of the last 16), its phi, when it was last
        heard from and whether a connection to it is open
        (:class:`PeerHealth`). The CLI's ``members --verbose`` shows it.

        >>> [(h.id, h.rtt_median, h.connected) for h in cluster.peer_health()]
        [('worker-1', 0.00021, True), ('worker-2', 0.00034, True)]
        """
        rows = [PeerHealth._from_tuple(t) for t in self._snapshot().health()]
        return sorted(rows, key=lambda h: h.id)

    def rtt(self, a: str, b: str | None = None) -> float | None:
        """Estimated round-trip time in seconds between members ``a`` and
        ``b``, or from this node to ``a`` when ``b`` is None.

        It comes from the two members' network coordinates as this node
        holds them (:attr:`Member.coordinate`), so it costs no message and
        reaches members this node never probed. None if either coordinate
        is unknown (coordinates off, or none heard yet); 0.0 for a member
        with itself. Raises :class:`UnknownMember` (a ``KeyError``) for an
        id this node does not know, in any state.

        >>> cluster.rtt("db-1")               # from this node
        0.00041
        >>> cluster.rtt("web-1", "db-1")      # between two others
        0.00187
        """
        snap = self._snapshot()
        first = self._find(snap, a)
        return rtt_between(first, self._self_in(snap) if b is None else self._find(snap, b))

    @staticmethod
    def _find(snap: _core.Snapshot, node_id: str) -> Member:
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a str, not {type(node_id).__name__}")
        t = snap.find(node_id)
        if t is None:
            raise UnknownMember(node_id)
        return Member._from_tuple(t)

    def nearest(
        self,
        k: int = 1,
        *,
        tags: Mapping[str, str] | None = None,
        states: StatesArg = MemberState.ALIVE,
    ) -> list[Member]:
        """The ``k`` members nearest to this node by estimated RTT, nearest
        first: members other than this node carrying every tag of ``tags``
        and in one of ``states`` (alive by default).

        Members whose coordinate is unknown come after every member with
        one, by id (all of them, by id, when this node's own is unknown:
        coordinates off), so the list holds ``min(k, matches)`` members;
        check ``m.coordinate is None`` to tell. Ties go by id. ``k`` must
        be an int of at least 1 (ValueError otherwise).

        >>> [m.id for m in cluster.nearest(2, tags={"role": "db"})]
        ['db-eu-1', 'db-eu-2']
        """
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an int, not {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        snap = self._snapshot()
        me = self._self_in(snap)
        found = []
        for m in self._tagged(snap, tags or {}, states):
            if m.id != me.id:
                rtt = rtt_between(me, m)
                found.append((rtt is None, rtt or 0.0, m.id, m))
        found.sort(key=lambda x: x[:3])
        return [x[3] for x in found[:k]]

    def coordinate_map(self, states: StatesArg = None) -> CoordinateMap:
        """A map of the members' network coordinates, for Jupyter: it shows
        as an SVG (``_repr_svg_``; ``to_svg()`` gives the text), points
        coloured by state, this node ringed, members without a coordinate
        left out. Every state by default.

        >>> cluster.coordinate_map()          # in a notebook cell
        <CoordinateMap of 5 members>
        """
        from clustermember._coordmap import CoordinateMap

        return CoordinateMap(self.nodes(states), self._title())

    def _local_or_none(self) -> Member | None:
        try:
            return self.local_node
        except ClusterError:
            return Member(
                self._id, self._bind, MemberState.ALIVE, 0, MappingProxyType(dict(self._tags))
            )

    def _sub_dropped(self) -> None:
        self._subscriber_drops += 1

    def stats(self) -> ClusterStats:
        """Counters of this node: members by state, connections, traffic, drops.

        >>> s = cluster.stats(); s.alive, s.connections_open
        (3, 2)
        """
        self._snapshot()
        node = self._node  # once: close() may clear it meanwhile (a scrape's thread)
        if node is None:
            raise ClusterClosed(f"node {self._id} is closed")
        try:
            counters = node.stats()
            counters["user_events_coalesced"] = self._coalesced
            counters["subscriber_events_dropped"] = self._subscriber_drops
            return ClusterStats._from_counters(self._id, counters)
        except _core.Error as exc:
            raise ClusterClosed(f"node {self._id}: {exc}") from None

    def _probe_rtts(self) -> dict[str, Any]:
        """The core's histogram of direct-probe round trips (for metrics)."""
        self._snapshot()
        assert self._node is not None
        try:
            return self._node.probe_rtts()
        except _core.Error as exc:
            raise ClusterClosed(f"node {self._id}: {exc}") from None

    def _event_backlog(self) -> tuple[int, int]:
        """Events waiting in the fullest subscriber queue, and the number of
        subscriptions. Safe from another thread (a metrics scrape): it
        copies the set of references in one step before reading them."""
        # WeakSet.data: its set of references, copied whole under the GIL;
        # iterating the WeakSet itself fails if the loop's thread adds to it.
        refs: set[weakref.ref[Subscription]] = self._subs.data  # type: ignore[attr-defined]
        subs = [ref() for ref in list(refs)]
        pending = [s.pending for s in subs if s is not None]
        return max(pending, default=0), len(pending)

    def metrics_text(self) -> str:
        """Every metric of this node in the Prometheus text format 0.0.4, as
        the agent's ``/metrics`` serves it (docs/operations.md). For
        ``prometheus_client``, register a ``ClusterCollector`` instead.

        >>> print(cluster.metrics_text())  # doctest: +ELLIPSIS
        # HELP clustermember_info This node's id and the package version; always 1.
        ...
        """
        from clustermember._metrics import metrics_text

        return metrics_text(self)

    def inject_faults(
        self,
        drop_out: float = 0.0,
        drop_in: float = 0.0,
        seed: int = 1,
        *,
        block: Iterable[str] = (),
    ) -> None:
        """Lose this node's membership messages, or cut it off, for tests and benchmarks.

        ``drop_out`` and ``drop_in``: the transport discards each outgoing or
        incoming membership message sent as a QUIC datagram (probes, acks,
        nacks, gossip) with that probability, so the protocol sees the loss a
        bad network would cause (user events and queries travel so too).
        Stream exchanges (join, push-pull, a query answer too large for a
        datagram) are not dropped: on a lossy network QUIC retransmits them.
        So even at 1.0 a node still pushes and pulls state, and can refute
        from behind its loss: to cut a node off, block its peers.

        ``block``: addresses (``'ip:port'``, at most 1,024) with which this
        node exchanges no UDP packet at all, either way: a partition, streams
        and handshakes included.

        Each call replaces the whole fault state: ``inject_faults(drop_out=
        0.1)`` after a block lifts the block. ``inject_faults()`` with no
        arguments turns everything off. It may be called before ``start()``.

        >>> cluster.inject_faults(drop_out=0.1)   # 10% of membership messages lost
        >>> cluster.inject_faults(block=[peer.addr for peer in others])   # cut off
        """
        for name, v in (("drop_out", drop_out), ("drop_in", drop_in)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {v!r}")
        if isinstance(block, str) or not isinstance(block, Iterable):
            raise TypeError(
                f"block must be a list of 'ip:port' addresses, not {type(block).__name__}"
                + (f" {block!r}" if isinstance(block, str) else "")
            )
        blocked = list(block)
        if len(blocked) > 1024:
            raise ValueError(f"block names {len(blocked)} addresses; at most 1024 may be blocked")
        for a in blocked:
            if not isinstance(a, str):
                raise TypeError(f"block must hold 'ip:port' str addresses, not {type(a).__name__}")
            try:
                _core.parse_addr(a)
            except ValueError:
                raise ValueError(
                    f"block address {a!r} is not 'ip:port' with a numeric IP"
                    " (e.g. '127.0.0.1:7946')"
                ) from None
        self._check_open()
        off = drop_out == 0.0 and drop_in == 0.0 and not blocked
        fault = None if off else (float(drop_out), float(drop_in), int(seed), blocked)
        if self._node is not None:
            try:
                self._set_fault(self._node, fault)
            except _core.Error as exc:
                raise ClusterClosed(f"node {self._id}: {exc}") from None
        self._fault = fault

    @staticmethod
    def _set_fault(node: _core.Node, fault: tuple[float, float, int, list[str]] | None) -> None:
        """Hand the fault state kept in ``_fault`` to the engine (None: off)."""
        if fault is None:
            node.set_fault(enabled=False)
        else:
            drop_out, drop_in, seed, block = fault
            node.set_fault(drop_out=drop_out, drop_in=drop_in, seed=seed, blocked=block)

    # -------------------------------------------------------------- display

    def to_dataframe(self, states: StatesArg = None) -> Any:
        """Members as a pandas DataFrame (``pip install 'clustermember[pandas]'``).

        Columns: ``id``, ``addr``, ``state``, ``incarnation``, ``phi``, then
        one ``tag.<key>`` column per tag key any member has (missing values
        are NaN), in key order.

        >>> cluster.to_dataframe()[["id", "tag.role"]]
        """
        rows = [m.to_row() for m in self.nodes(states)]
        tag_cols = sorted({k for r in rows for k in r if k.startswith("tag.")})
        return _display.dataframe(rows, ["id", "addr", "state", "incarnation", "phi", *tag_cols])

    def _title(self) -> str:
        return f"{self._id} ({self.addr}, {self._state})"

    def _members_for_display(self) -> list[Member]:
        try:
            return self.nodes(None)
        except ClusterError:
            return []

    def _repr_html_(self) -> str:
        return _display.members_html(self._title(), self._members_for_display())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(
            repr(self)
            if cycle
            else _display.members_text(self._title(), self._members_for_display())
        )

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=self._title())
        members = self._members_for_display()
        rtts = _display.rtt_texts(members)
        for h in _display.headers(rtts):
            table.add_column(h)
        for m in members:
            colour = _display.STATE_COLOURS.get(m.state.value, "")
            table.add_row(
                m.id,
                m.addr,
                f"[{colour}]{m.state.value}[/]",
                str(m.incarnation),
                _display.tags_text(m.tags),
                *([] if rtts is None else [rtts[m.id]]),
            )
        return table

    def __repr__(self) -> str:
        return f"<ClusterMembership {self._id} {self.addr} {self._state}>"
