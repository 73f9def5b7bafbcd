"""The engine's promises as the API shows them: a full event queue never
loses the result of join(); a fork() child keeps none of the engine's
descriptors; and what goes wrong is said plainly (a join refused for its
key, a port in use)."""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cluster import cluster, config
from conftest import DEADLINE, POLL

from clustermember import ClusterMembership, EventsDropped, JoinRefused, JoinTimeout, NodeJoined

HERE = Path(__file__).parent
# Bound on the helper process of the fork test; it finishes in about a second.
CHILD_PROCESS_TIMEOUT = 180.0


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


async def test_fork_child_keeps_none_of_the_engines_descriptors(key: bytes) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / "_fork_node.py"), base64.b64encode(key).decode()],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_PROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    kinds = set(result["engine_fds"].values())
    for kind in ("anon_inode:[eventpoll]", "anon_inode:[eventfd]", "anon_inode:[timerfd]"):
        assert kind in kinds, f"no {kind} among the engine's descriptors {kinds}"
    assert any(link.startswith("socket:") for link in kinds)
    assert result["still_open"] == {}, "the fork child kept the engine's descriptors"
    assert result["rebind"] == "ok"


async def test_join_with_a_wrong_key_says_the_seed_refused_it(key: bytes) -> None:
    seed = ClusterMembership("127.0.0.1:0", config(key, "seed"))
    stranger = ClusterMembership("127.0.0.1:0", config(secrets.token_bytes(32), "stranger"))
    try:
        await seed.join([])
        # Refused at once: the timeout is only the bound on waiting for it.
        with pytest.raises(JoinTimeout) as info:
            await stranger.join([seed.addr], timeout=DEADLINE)
        assert isinstance(info.value, JoinRefused)
        assert "refused this node's credentials" in str(info.value)
        assert "wrong cluster key" in str(info.value)
        assert info.value.seeds == [seed.addr]
        assert stranger.state == "started"
        assert [m.id for m in seed.nodes()] == ["seed"]
    finally:
        await stranger.close()
        await seed.close()


async def test_a_port_in_use_is_an_oserror_naming_the_address(key: bytes) -> None:
    first = ClusterMembership("127.0.0.1:0", config(key, "first"))
    second: ClusterMembership | None = None
    try:
        await first.start()
        second = ClusterMembership(first.addr, config(key, "second"))
        with pytest.raises(OSError) as info:
            await second.start()
        assert info.value.errno == errno.EADDRINUSE
        assert "address already in use" in str(info.value)
        assert first.addr in str(info.value)
        assert second.state == "new"
        # The first node is unaffected; the second starts once the port is free.
        assert first.local_node.addr == first.addr
        await first.close()
        await second.start()
        assert second.addr == first.addr
    finally:
        await first.close()
        if second is not None:
            await second.close()
