"""Shared helpers for the tests: a cluster key, condition polling, agent
processes (``agents``, from bench/agents.py) killed by PID after each test,
an agent served in this process (``agent``) and the CLI run as a child
(``cli``)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bench.agents import Agents
    from clustermember._agent import Agent

# Deadline for any condition that depends on gossip or failure detection:
# generous, so a loaded 2-core machine still passes; polls end early.
DEADLINE = 30.0
POLL = 0.05


@pytest.fixture
def key() -> bytes:
    """A fresh 32-byte cluster key."""
    return secrets.token_bytes(32)


async def eventually(
    cond: Callable[[], object],
    what: str,
    timeout: float = DEADLINE,
    retry: tuple[type[Exception], ...] = (),
) -> None:
    """Poll cond until it is true; fail naming what was awaited.

    An exception from cond fails the wait at once: a real error must not
    turn into a timeout. Only the exception types in ``retry`` are polled
    through, for a condition that the caller knows may raise while the
    awaited state forms."""
    end = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except retry:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(POLL)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Agent processes started by one test, every one killed by PID at its end."""
    # Imported here: the ASan run (python -P) has no repository root on sys.path.
    from bench.agents import Agents

    a = Agents(tmp_path)
    try:
        yield a
        # Every running agent's event stream was read whole: a reader that
        # died, or events the agent dropped, would have hidden what a test
        # checks for (tests that judge by events also check at once).
        for agent in a.all:
            if agent.alive() and agent.reader is not None:
                agent.assert_stream_intact()
    finally:
        a.stop()


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    """An agent serving a started node (a cluster of one) on a Unix socket."""
    from clustermember import ClusterConfig, ClusterMembership
    from clustermember._agent import Agent

    cluster = ClusterMembership(
        "127.0.0.1:0", ClusterConfig.local(insecure=True, node_id="solo", tags={"role": "db"})
    )
    a = Agent(cluster, str(tmp_path / "agent.sock"), [], 1.0)
    await a.server.start()
    await cluster.start()
    try:
        yield a
    finally:
        await a.server.close()
        await cluster.close()


async def cli(*argv: str) -> tuple[int, str, str]:
    """Run a CLI command in a child process; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clustermember",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
