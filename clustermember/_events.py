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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    """

    def __init__(
        self,
        maxsize: int,
        local: Callable[[], Member | None],
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.maxsize = maxsize
        self._queue: collections.deque[ClusterEvent] = collections.deque()
        self._dropped = 0
        self._dropped_total = 0
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._local = local
        self._on_close = on_close

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
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self._dropped += 1
            self._dropped_total += 1
        self._queue.append(event)
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
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def get_nowait(self) -> ClusterEvent | None:
        """The next event if one is waiting, else None (no loop needed)."""
        if self._dropped:
            return self._take_dropped()
        return self._queue.popleft() if self._queue else None

    def _take_dropped(self) -> ClusterEvent:
        count, self._dropped = self._dropped, 0
        now = time.monotonic()
        local = self._local()
        assert local is not None
        return EventsDropped(local, time.time(), now, count)

    def close(self) -> None:
        """Stop receiving; iteration ends after the events already queued."""
        if not self._closed:
            self._end()
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ClusterEvent:
        while True:
            if self._dropped and self._local() is not None:
                return self._take_dropped()
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> ClusterEvent:
        """The next event; TimeoutError after timeout seconds, StopAsyncIteration at the end."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
