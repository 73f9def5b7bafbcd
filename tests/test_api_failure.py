"""Failure detection against a node in a child process: SIGKILL is seen as
failed and a restart with the same id rejoins; a CPU-bound Python main
thread is not mistaken for a failure, while a stopped process is."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import cluster, config, state_of
from conftest import DEADLINE, eventually

from clustermember import (
    ClusterMembership,
    JoinTimeout,
    MemberState,
    NodeFailed,
    NodeRecovered,
    NodeSuspect,
)

HERE = Path(__file__).parent
CHILD = HERE / "_child_node.py"
# Long enough to outlast suspicion and failure timeouts several times over.
SPIN_SECONDS = 15.0


class Child:
    """One child node process, killed by PID on cleanup."""

    def __init__(self, node_id: str, key: bytes, bind: str, seed: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), node_id, base64.b64encode(key).decode(), bind, seed],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.addr = ""

    async def expect(self, word: str, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(
            loop.run_in_executor(None, self.proc.stdout.readline), timeout
        )
        assert line.startswith(word), f"child said {line!r}, expected {word!r}"
        return line

    async def ready(self) -> str:
        self.addr = (await self.expect("ready")).split()[1]
        return self.addr

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.cleanup()


async def test_sigkill_is_failed_then_restart_rejoins(key: bytes, children: list[Child]) -> None:
    async with cluster(key, 2) as (a, b):
        events = a.subscribe()
        child = Child("victim", key, "127.0.0.1:0", a.addr)
        children.append(child)
        addr = await child.ready()
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "victim") == "alive", f"{view.node_id} sees victim"
            )
        child.signal(signal.SIGKILL)
        child.proc.wait(timeout=30)
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "victim") == "failed", f"{view.node_id}: failed"
            )
        ev = await asyncio.wait_for(_next_of(events, NodeFailed, "victim"), 30)
        assert ev.node.state == "failed"
        # Same id, same address: the restarted node must win over its old record.
        again = Child("victim", key, addr, b.addr)
        children.append(again)
        await again.ready()
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "victim") == "alive", f"{view.node_id}: alive again"
            )
        assert a.member("victim").incarnation > ev.node.incarnation


async def _next_of(events, cls: type, node_id: str):  # noqa: ANN001, ANN202 - test helper
    async for ev in events:
        if isinstance(ev, cls) and ev.node.id == node_id:
            return ev
    raise AssertionError("subscription ended")


async def test_busy_python_is_not_suspected_but_a_stopped_process_is(
    key: bytes, children: list[Child]
) -> None:
    async with cluster(key, 2) as (a, b):
        events = a.subscribe()
        child = Child("busy", key, "127.0.0.1:0", a.addr)
        children.append(child)
        await child.ready()
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "busy") == "alive", f"{view.node_id} sees busy"
            )
        before = a.stats().counters["probes"]
        child.send(f"spin {SPIN_SECONDS}")
        end = time.monotonic() + SPIN_SECONDS
        while time.monotonic() < end:
            assert state_of(a, "busy") == "alive" and state_of(b, "busy") == "alive"
            await asyncio.sleep(0.05)
        await child.expect("spun")
        bad = []
        while (ev := events.get_nowait()) is not None:
            if ev.node.id == "busy" and isinstance(ev, (NodeSuspect, NodeFailed)):
                bad.append(ev)
        assert bad == []
        assert a.stats().counters["probes"] > before  # a kept probing during the spin
        # Control: the same node with its engine frozen too is suspected.
        t0 = time.monotonic()
        child.signal(signal.SIGSTOP)
        try:
            await eventually(
                lambda: state_of(a, "busy") in ("suspect", "failed"), "suspicion", SPIN_SECONDS
            )
        finally:
            child.signal(signal.SIGCONT)
        assert time.monotonic() - t0 < SPIN_SECONDS
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "busy") == "alive", f"{view.node_id}: recovered"
            )
        # The view is read straight from the engine's snapshot, while events
        # reach the subscriber when the loop next runs its reader: wait for it.
        await asyncio.wait_for(_next_of(events, NodeRecovered, "busy"), DEADLINE)


async def test_injected_loss_isolates_a_node_and_lifting_it_heals(key: bytes) -> None:
    """inject_faults(block=) cuts real packets: a node cut off from the
    others is failed by them and stays failed (it cannot refute from behind
    the cut, at incarnation 0), and once the cut is lifted it refutes and is
    alive."""
    async with cluster(key, 3) as nodes:
        for n in nodes:
            await eventually(lambda n=n: len(n.nodes(MemberState.ALIVE)) == 3, "formed")
        victim = nodes[2]
        victim.inject_faults(block=[n.addr for n in nodes[:2]])
        await eventually(
            lambda: all(state_of(n, "n2") == MemberState.FAILED for n in nodes[:2]), "n2 failed"
        )
        assert victim.stats().drops.get("net_drop_fault", 0) > 0
        assert victim.local_node.incarnation == 0
        assert all(n.member("n2").incarnation == 0 for n in nodes[:2])  # type: ignore[union-attr]
        victim.inject_faults()
        await eventually(
            lambda: all(state_of(n, "n2") == MemberState.ALIVE for n in nodes[:2]), "n2 back"
        )
        assert victim.local_node.incarnation > 0


async def test_injected_loss_spares_streams_and_a_block_cuts_them(key: bytes) -> None:
    """drop_out and drop_in lose membership messages only: a join, which is a
    stream, completes through a seed that loses every one of them. A block
    loses every packet: a join through a seed that blocks the joiner times
    out, and goes through once the block is lifted."""
    seed = ClusterMembership("127.0.0.1:0", config(key, "seed"))
    a = ClusterMembership("127.0.0.1:0", config(key, "a"))
    b = ClusterMembership("127.0.0.1:0", config(key, "b"))
    try:
        await seed.join([])
        seed.inject_faults(drop_out=1.0, drop_in=1.0)
        await a.join([seed.addr], timeout=DEADLINE)
        assert a.member("seed") is not None
        await b.start()
        seed.inject_faults(block=[b.addr])
        with pytest.raises(JoinTimeout):
            await b.join([seed.addr], timeout=2.0)
        assert seed.stats().drops.get("net_drop_fault", 0) > 0
        assert b.member("seed") is None
        seed.inject_faults()
        await b.join([seed.addr], timeout=DEADLINE)
        assert b.member("seed") is not None
    finally:
        for node in (seed, a, b):
            await node.close()


def test_inject_faults_refuses_a_bad_fraction(key: bytes) -> None:
    node = ClusterMembership("127.0.0.1:0", config(key, "f"))
    with pytest.raises(ValueError, match="drop_out must be a fraction"):
        node.inject_faults(drop_out=1.5)
    with pytest.raises(ValueError, match="drop_in"):
        node.inject_faults(drop_in=-0.1)
    with pytest.raises(TypeError, match="list of 'ip:port' addresses"):
        node.inject_faults(block="127.0.0.1:7946")
    with pytest.raises(TypeError, match="list of 'ip:port' addresses, not NoneType"):
        node.inject_faults(block=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        node.inject_faults(block=[7946])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'localhost:7946' is not 'ip:port' with a numeric IP"):
        node.inject_faults(block=["localhost:7946"])
    with pytest.raises(ValueError, match="at most 1024"):
        node.inject_faults(block=[f"127.0.0.{i // 1000 + 1}:{i % 1000 + 1}" for i in range(1025)])
