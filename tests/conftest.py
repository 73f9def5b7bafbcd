"""Shared helpers for the tests: a cluster key, condition polling, and agent
processes (``agents``, from bench/agents.py) killed by PID after each test."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bench.agents import Agents

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
