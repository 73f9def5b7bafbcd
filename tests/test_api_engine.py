"""The engine's promises as the API shows them: a full event queue never
loses the result of join(); and what goes wrong is said plainly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from _cluster import cluster, config
from conftest import DEADLINE, POLL

from clustermember import ClusterMembership, EventsDropped, NodeJoined


def hold_loop_until(cond: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Block the event loop's thread, as a busy application would, until cond
    holds: nothing drains the engine's event queue meanwhile."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


async def test_full_event_queue_keeps_the_join_result(key: bytes) -> None:
    async with cluster(key, 3, event_queue_size=2) as nodes:
        assert [n.state for n in nodes] == ["joined"] * 3
        joiner = ClusterMembership("127.0.0.1:0", config(key, "n3", event_queue_size=2))
        try:
            events = joiner.subscribe()
            task = asyncio.create_task(joiner.join([nodes[0].addr]))
            while joiner.state != "joining":
                await asyncio.sleep(0)
            # The merge of the seed's table queues three member events into
            # room for two while nobody reads: one is dropped, the result
            # must still arrive.
            hold_loop_until(lambda: len(joiner.nodes()) == 4, "the joiner to merge the table")
            await task
            assert joiner.state == "joined"
            engine_dropped = joiner.stats().drops["events_dropped"]
            assert engine_dropped >= 1
            got = []
            while (ev := events.get_nowait()) is not None:
                got.append(ev)
            reported = sum(ev.count for ev in got if isinstance(ev, EventsDropped))
            joined = {ev.node.id for ev in got if isinstance(ev, NodeJoined)}
            assert reported == engine_dropped
            assert len(joined) + reported == 3
        finally:
            await joiner.close()
