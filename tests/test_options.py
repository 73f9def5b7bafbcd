"""Options, events and calls whose effect no other test shows (issue 18).

Each test fails if what it names did nothing: ``subscriber_queue_size``,
``reap_left_after`` with ``NodeReaped``, ``NodeAddressChanged`` reaching a
subscriber, ``set_tags``, ``leave_timeout`` and ``leave(timeout=)``,
``inject_faults(drop_in=)``, and ``phi_threshold``, which has no effect and
says so. The tests that only watch share one cluster of three.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from _cluster import cluster, config, state_of
from conftest import eventually

from clustermember import (
    ClusterConfig,
    ClusterEvent,
    ClusterMembership,
    MemberState,
    NodeAddressChanged,
    NodeLeft,
    NodeReaped,
    Subscription,
)

# The tests of the shared cluster run on its event loop.
shared = pytest.mark.asyncio(loop_scope="module")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trio() -> AsyncIterator[list[ClusterMembership]]:
    """n0..n2 with a default subscriber queue of 2 and left members reaped
    after 0.2 s; every node sees all three alive."""
    async with cluster(
        secrets.token_bytes(32), 3, subscriber_queue_size=2, reap_left_after=0.2
    ) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 3 for n in nodes), "the cluster formed")
        yield nodes


async def next_of(sub: Subscription, kind: type[ClusterEvent], node_id: str) -> ClusterEvent:
    """The next event of kind about node_id, skipping others; fails after 30 s."""
    end = time.monotonic() + 30
    while True:
        ev = await sub.get(timeout=max(0.0, end - time.monotonic()))
        if isinstance(ev, kind) and ev.node.id == node_id:
            return ev


def test_phi_threshold_is_accepted_and_warns_it_has_no_effect() -> None:
    key = secrets.token_bytes(32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ClusterConfig.local(cluster_key=key).phi_threshold == 8.0  # the default: silent
    for make in (ClusterConfig, ClusterConfig.local):
        with pytest.warns(DeprecationWarning, match=r"phi_threshold=12\.0 has no effect") as got:
            cfg = make(cluster_key=key, phi_threshold=12.0)
        assert cfg.phi_threshold == 12.0
        assert [Path(w.filename).name for w in got] == ["test_options.py"]  # names the caller
    row = next(
        line for line in DOCS.read_text().splitlines() if line.startswith("| `phi_threshold`")
    )
    assert "**No effect.**" in row and "DeprecationWarning" in row


@shared
async def test_subscriber_queue_size_bounds_a_subscription_by_default(
    trio: list[ClusterMembership],
) -> None:
    a = trio[0]
    bounded, roomy = a.subscribe(), a.subscribe(maxsize=100)
    try:
        for i in range(4):
            await a.update_tag("step", str(i))
        await eventually(lambda: roomy.pending == 4, "four tag events queued")
        assert bounded.dropped == 2 and roomy.dropped == 0
    finally:
        bounded.close()
        roomy.close()
        await a.remove_tag("step")


@shared
async def test_set_tags_replaces_the_whole_set_in_one_change(
    trio: list[ClusterMembership],
) -> None:
    a, b = trio[0], trio[1]
    await b.update_tag("old", "1")
    await eventually(lambda: a.member("n1").tags == {"old": "1"}, "the first tag seen")  # type: ignore[union-attr]
    before = b.local_node.incarnation
    await b.set_tags({"role": "db", "zone": "eu-1"})
    want = {"role": "db", "zone": "eu-1"}
    assert b.local_node.tags == want and b.local_node.incarnation == before + 1
    await eventually(lambda: a.member("n1").tags == want, "the new set seen")  # type: ignore[union-attr]
    assert a.member("n1").incarnation == before + 1  # type: ignore[union-attr]


@shared
async def test_a_left_member_is_reaped_after_reap_left_after(
    trio: list[ClusterMembership],
) -> None:
    a, c = trio[0], trio[2]
    sub = a.subscribe(maxsize=100)
    await c.leave()
    left = await next_of(sub, NodeLeft, "n2")
    reaped = await next_of(sub, NodeReaped, "n2")
    assert reaped.node.state == MemberState.LEFT
    assert a.member("n2") is None
    sub.close()
    assert left.node.state == MemberState.LEFT


async def test_a_member_back_at_a_new_address_is_reported(key: bytes) -> None:
    """n1 leaves and comes back, with its id, on another port: the seed's
    subscriber hears NodeAddressChanged with the new address."""
    async with cluster(key, 2) as (a, b):
        old = b.addr
        sub = a.subscribe(maxsize=100)
        await b.leave()
        await next_of(sub, NodeLeft, "n1")
        again = ClusterMembership("127.0.0.1:0", config(key, "n1"))
        try:
            await again.join([a.addr])
            moved = await next_of(sub, NodeAddressChanged, "n1")
            assert moved.node.addr == again.addr != old
            assert moved.node.state == MemberState.ALIVE
        finally:
            sub.close()
            await again.close()


async def _pair(key: bytes, **second: Any) -> tuple[ClusterMembership, ClusterMembership]:
    a = ClusterMembership("127.0.0.1:0", config(key, "n0", **_QUIET))
    b = ClusterMembership("127.0.0.1:0", config(key, "n1", **_QUIET, **second))
    await a.join([])
    await b.join([a.addr])
    return a, b


# Gossip and probes 30 s apart: a leave, sent twice in all (retransmit_mult 2
# in a cluster of two), cannot have spread within the first 30 s.
_QUIET: dict[str, Any] = {"gossip_interval": 30.0, "probe_interval": 30.0, "probe_timeout": 1.0}


async def test_leave_timeout_bounds_a_leave_that_cannot_spread() -> None:
    a, b = await _pair(secrets.token_bytes(32), leave_timeout=0.3)
    try:
        start = time.monotonic()
        await b.leave()
        took = time.monotonic() - start
        assert b.state == "left" and 0.25 <= took < 3.0, took
    finally:
        await b.close()
        await a.close()


async def test_leave_timeout_argument_bounds_the_leave(caplog: pytest.LogCaptureFixture) -> None:
    """leave(timeout=) is the engine's limit, not only the call's: with
    leave_timeout 600 s, the engine ends the leave after 0.3 s and reports
    it, before the call's own give-up (timeout + 5 s) would log that the
    leave was not confirmed."""
    caplog.set_level(logging.INFO, logger="clustermember")
    a, b = await _pair(secrets.token_bytes(32), leave_timeout=600.0)
    try:
        start = time.monotonic()
        await asyncio.wait_for(b.leave(timeout=0.3), 30)
        took = time.monotonic() - start
        assert b.state == "left" and 0.25 <= took < 5.0, took
        assert not any("not confirmed" in r.getMessage() for r in caplog.records)
    finally:
        await b.close()
        await a.close()


async def test_inject_faults_drop_in_loses_what_arrives() -> None:
    async with cluster(secrets.token_bytes(32), 2) as (a, b):
        await eventually(lambda: state_of(b, "n0") == MemberState.ALIVE, "b sees a")
        b.inject_faults(drop_in=1.0)
        # Once b drops what arrives, it takes in no more messages, while what
        # it sends still reaches a: the loss is on b's way in, not out (with
        # drop_out, a would hear nothing and b would still hear a).
        await eventually(lambda: b.stats().drops["net_drop_fault"] > 0, "b drops datagrams")
        b_in, a_in = b.stats().messages_in, a.stats().messages_in
        await eventually(
            lambda: a.stats().messages_in >= a_in + 3, "a still hears b's probes", timeout=60
        )
        assert b.stats().messages_in == b_in
        # b hears nothing more: its probes of a go unanswered, a is suspected.
        await eventually(lambda: state_of(b, "n0") != MemberState.ALIVE, "b suspects a")
        assert b.stats().drops["net_drop_fault"] > 0
        assert a.stats().drops["net_drop_fault"] == 0
