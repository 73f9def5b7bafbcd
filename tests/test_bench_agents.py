"""bench.agents.eventually, which the agent-level tests wait with: an error
from the condition fails the wait at once unless the caller listed it, so a
dead agent or a misspelt field is not reported as a bare timeout."""

from __future__ import annotations

import pytest

from bench.agents import eventually


def test_an_error_not_listed_fails_the_wait_at_once() -> None:
    polls: list[int] = []

    def misspelt() -> bool:
        polls.append(1)
        return bool({"state": "alive"}["sate"])

    with pytest.raises(KeyError, match="sate"):
        eventually(misspelt, "a field", deadline=30)
    assert len(polls) == 1

    def dead() -> bool:
        raise ConnectionRefusedError("no agent at its control socket")

    with pytest.raises(ConnectionRefusedError):
        eventually(dead, "an agent", deadline=30)


def test_a_listed_error_is_polled_through_and_chained_to_the_timeout() -> None:
    polls: list[int] = []

    def starting() -> bool:
        polls.append(1)
        if len(polls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    eventually(starting, "an agent", deadline=30, retry=(ConnectionError,))
    assert len(polls) == 3

    def never() -> bool:
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(AssertionError, match="timed out after 0.3 s waiting for an agent") as info:
        eventually(never, "an agent", deadline=0.3, retry=(ConnectionError,))
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
