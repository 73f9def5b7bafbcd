"""Membership events and subscriptions.

Each event is a frozen dataclass carrying the member it is about (``node``),
the wall-clock ``time`` at which the engine saw it, and the same instant on
the ``time.monotonic()`` clock. Every subscriber gets every event, through
its own bounded queue: a subscriber that stops reading loses its oldest
events and, when it reads again, first gets :class:`EventsDropped` with the
count; it never slows the engine or other subscribers::

    async with cluster.subscribe() as events:
        async for event in events:
            if isinstance(event, NodeFailed):
                print(event.node.id, "failed at", event.time)
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from clustermember._errors import ClusterClosed
from clustermember._models import Member


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """Base of every event: the member, wall-clock time, monotonic time."""

    node: Member
    time: float
    monotonic: float


@dataclass(frozen=True, slots=True)
class NodeJoined(ClusterEvent):
    """A member was seen alive for the first time (or again after leaving)."""


@dataclass(frozen=True, slots=True)
class NodeSuspect(ClusterEvent):
    """A member stopped answering probes and is suspected."""


@dataclass(frozen=True, slots=True)
class NodeFailed(ClusterEvent):
    """A suspicion ran out: the member is declared failed."""


@dataclass(frozen=True, slots=True)
class NodeRecovered(ClusterEvent):
    """A suspect or failed member is alive again (it refuted, or restarted)."""


@dataclass(frozen=True, slots=True)
class NodeLeft(ClusterEvent):
    """A member left gracefully."""


@dataclass(frozen=True, slots=True)
class NodeTagsUpdated(ClusterEvent):
    """A member changed its tags; ``node.tags`` holds the new set."""


@dataclass(frozen=True, slots=True)
class NodeConflict(ClusterEvent):
    """Another node claims this member's id from ``other_addr``."""

    other_addr: str | None = None


@dataclass(frozen=True, slots=True)
class NodeReaped(ClusterEvent):
    """A left or failed member was forgotten after its retention time."""


@dataclass(frozen=True, slots=True)
class NodeAddressChanged(ClusterEvent):
    """A failed or left member came back at another address."""


@dataclass(frozen=True, slots=True)
class EventsDropped(ClusterEvent):
    """``count`` events were lost before the next one; ``node`` is the local node."""

    count: int = 0


@dataclass(frozen=True, slots=True)
class UserEvent(ClusterEvent):
    """An application's event, sent with :meth:`ClusterMembership.send_event`.

    Every member, its sender included, gets each event once. ``origin`` is
    the sender's id and ``ltime`` its Lamport time: an event sent by a node
    that had seen another carries a later ``ltime``. ``node`` is this node
    (the receiver). ``coalesce``: the sender allows receivers that coalesce
    (``user_event_coalesce`` > 0) to deliver only the latest of a name.

    >>> async for event in cluster.subscribe():
    ...     if isinstance(event, UserEvent) and event.name == "deploy":
    ...         print(event.origin, event.payload)
    """

    name: str = ""
    payload: bytes = b""
    ltime: int = 0
    origin: str = ""
    coalesce: bool = False


EVENT_TYPES: dict[str, type[ClusterEvent]] = {
    "joined": NodeJoined,
    "suspect": NodeSuspect,
    "failed": NodeFailed,
    "recovered": NodeRecovered,
    "left": NodeLeft,
    "tags": NodeTagsUpdated,
    "conflict": NodeConflict,
    "reaped": NodeReaped,
    "addr_changed": NodeAddressChanged,
}


def wall_time(monotonic: float) -> float:
    """Wall-clock time of an instant on the monotonic clock."""
    return time.time() - (time.monotonic() - monotonic)


class Subscription:
    """An async iterator of events with its own bounded queue.

    Made by :meth:`ClusterMembership.subscribe`. Iteration ends when the
    node closes or leaves, or after :meth:`close`. Also an async context
    manager that closes it on exit.

    A subscription ends with the iterator that reads it: ``async for``
    over it closes it when the loop stops, whether by ``break``, an
    exception or the task being cancelled, and one nobody references any
    more is forgotten by its node. So a watcher task can be cancelled
    without leaving a subscriber behind::

        async def watch() -> None:
            async for event in cluster.subscribe():
                print(type(event).__name__, event.node.id)

        task = asyncio.create_task(watch())
        ...
        task.cancel()       # the subscription is closed and unregistered
    """

    def __init__(
        self,
        maxsize: int,
        local: Callable[[], Member | None],
        on_close: Callable[[Subscription], None],
        hold: Callable[[Subscription, bool], None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.maxsize = maxsize
        self._queue: collections.deque[ClusterEvent] = collections.deque()
        self._dropped = 0
        self._dropped_total = 0
        self._replay_left = 0  # replayed members still at the queue's head
        self._closed = False
        # Inside ``async with``: its end closes, not the end of one loop.
        self._managed = False
        # Readers waiting in get() or async for: each is woken by news.
        self._waiters: list[asyncio.Future[None]] = []
        self._local = local
        self._on_close = on_close
        # The node holds subscriptions weakly, so one nobody references is
        # dropped; while a reader waits it must hold it strongly, or the
        # waiting task (referenced only through this subscription's waiters)
        # would be collected with it, still pending.
        self._hold = hold
        # The node's count of events its subscribers lost (for metrics).
        self._on_drop = on_drop

    @property
    def pending(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    @property
    def dropped(self) -> int:
        """Events this subscriber lost so far because it read too slowly."""
        return self._dropped_total

    @property
    def closed(self) -> bool:
        """True once closed (by close(), or the node closing or leaving)."""
        return self._closed

    def _push(self, event: ClusterEvent) -> None:
        if self._closed:
            return
        # The replay at the head does not count against maxsize and is never
        # dropped: the oldest change after it goes instead.
        if len(self._queue) - self._replay_left >= self.maxsize:
            del self._queue[self._replay_left]
            self._dropped += 1
            self._dropped_total += 1
            if self._on_drop is not None:
                self._on_drop()
        self._queue.append(event)
        self._wake()

    def _replay(self, events: Iterable[ClusterEvent]) -> None:
        """Queue the current members ahead of any change, beyond maxsize."""
        before = len(self._queue)
        self._queue.extend(events)
        self._replay_left += len(self._queue) - before
        self._wake()

    def _push_dropped(self, count: int) -> None:
        """The engine itself dropped events: tell this subscriber in order."""
        if self._closed:
            return
        local = self._local()
        if local is not None:
            now = time.monotonic()
            self._push(EventsDropped(local, time.time(), now, count))

    def _end(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    def _take(self) -> ClusterEvent | None:
        if self._replay_left > 0:
            # The replay first; a drop notice then stands where changes went.
            self._replay_left -= 1
            return self._queue.popleft()
        if self._dropped and self._local() is not None:
            return self._take_dropped()
        return self._queue.popleft() if self._queue else None

    def get_nowait(self) -> ClusterEvent | None:
        """The next event if one is waiting, else None (no loop needed).

        Raises :class:`ClusterClosed` once the subscription is closed and
        every event queued before that has been read, so "nothing yet" and
        "nothing ever again" differ.

        >>> while (event := sub.get_nowait()) is not None:
        ...     print(event)
        """
        event = self._take()
        if event is None and self._closed:
            raise ClusterClosed("the subscription is closed")
        return event

    def _take_dropped(self) -> ClusterEvent:
        count, self._dropped = self._dropped, 0
        now = time.monotonic()
        local = self._local()
        assert local is not None
        return EventsDropped(local, time.time(), now, count)

    def close(self) -> None:
        """Stop receiving; iteration ends after the events already queued.

        >>> sub.close(); sub.closed
        True
        """
        if not self._closed:
            self._end()
            self._on_close(self)

    def __aiter__(self) -> AsyncIterator[ClusterEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ClusterEvent]:
        # A generator, so that the end of the loop reading it (break, an
        # exception, the task's cancellation, or the generator being
        # collected) runs the finally below and unregisters the subscriber;
        # unless an ``async with`` holds the subscription: its end does.
        try:
            while True:
                try:
                    event = await self._next(None)
                except ClusterClosed:
                    return
                yield event
        finally:
            if not self._managed:
                self.close()

    async def __anext__(self) -> ClusterEvent:
        try:
            return await self._next(None)
        except ClusterClosed:
            raise StopAsyncIteration from None

    async def _next(self, timeout: float | None) -> ClusterEvent:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise ValueError(
                f"timeout={timeout!r} is out of range: it must be a number of seconds, "
                "0 or more, or None to wait without limit"
            )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = self._take()
            if event is not None:
                return event
            if self._closed:
                raise ClusterClosed("the subscription is closed")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            timer = None
            if deadline is not None:
                timer = loop.call_at(deadline, _expire, waiter)
            if self._hold is not None:
                self._hold(self, True)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
                if self._hold is not None:
                    self._hold(self, bool(self._waiters))
                if timer is not None:
                    timer.cancel()

    async def get(self, timeout: float | None = None) -> ClusterEvent:
        """The next event.

        Raises ``TimeoutError`` after ``timeout`` seconds without one, and
        :class:`ClusterClosed` once the subscription is closed (by
        :meth:`close`, or the node leaving or closing) and drained.
        Cancelling a ``get()`` does not close the subscription.

        >>> event = await sub.get(timeout=10)
        """
        return await self._next(timeout)

    async def __aenter__(self) -> Subscription:
        self._managed = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        # asyncio.TimeoutError: what wait_for raised here before (TimeoutError
        # itself from Python 3.11 on).
        waiter.set_exception(asyncio.TimeoutError("no event before the timeout"))
