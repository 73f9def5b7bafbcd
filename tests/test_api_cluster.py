"""A real three-node cluster over QUIC on loopback: every claim is checked
from a node other than the one it is about, so it arrived through gossip."""

from __future__ import annotations

import asyncio

import pytest
from _cluster import cluster, config, state_of
from conftest import eventually

from clustermember import (
    ClusterMembership,
    EventsDropped,
    NodeFailed,
    NodeJoined,
    NodeLeft,
    NodeTagsUpdated,
    NotJoined,
)

AWARENESS_MAX = config(bytes(32), "x").awareness_max


def ids(members: list) -> set[str]:
    return {m.id for m in members}


async def test_three_nodes_form_and_each_sees_the_other_two(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        for view in (a, b, c):
            others = {"n0", "n1", "n2"} - {view.node_id}
            await eventually(
                lambda v=view, o=others: o <= ids(v.nodes()), f"{view.node_id} sees {others}"
            )
            assert {m.id for m in view.nodes() if m.is_self} == {view.node_id}
        # b and c joined through a only: they know each other through gossip.
        assert state_of(b, "n2") == "alive" and state_of(c, "n1") == "alive"


async def test_tag_discovery_from_another_node(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        await eventually(lambda: len(c.nodes()) == 3, "c sees three")
        await b.update_tag("role", "worker")
        await eventually(
            lambda: ids(c.nodes_with_tag("role", "worker")) == {"n1"}, "c finds b by tag"
        )
        await eventually(
            lambda: ids(a.nodes_with_tag("role", "worker")) == {"n1"}, "a finds b by tag"
        )
        assert c.nodes_with_tag("role", "db") == []
        assert b.local_node.tags == {"role": "worker"}


async def test_three_tag_query_across_nodes(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        want = {"role": "worker", "zone": "eu-1", "tier": "gold"}
        for k, v in want.items():
            await b.update_tag(k, v)
        await a.update_tag("role", "worker")
        await a.update_tag("zone", "eu-1")
        await eventually(lambda: ids(c.nodes_with_all_tags(want)) == {"n1"}, "c finds b by 3 tags")
        await eventually(
            lambda: ids(c.nodes_with_all_tags({"role": "worker", "zone": "eu-1"})) == {"n0", "n1"},
            "c finds a and b by 2 tags",
        )
        assert c.nodes_with_all_tags({**want, "tier": "silver"}) == []


async def test_tag_removal_is_seen_by_the_others(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        await b.update_tag("role", "worker")
        await eventually(lambda: ids(c.nodes_with_tag("role", "worker")) == {"n1"}, "tag seen")
        assert await b.remove_tag("role") is True
        assert await b.remove_tag("role") is False
        await eventually(lambda: c.nodes_with_tag("role", "worker") == [], "removal seen by c")
        await eventually(lambda: a.member("n1").tags == {}, "removal seen by a")


async def test_graceful_leave_is_left_not_failed(key: bytes) -> None:
    fresh = ClusterMembership("127.0.0.1:0", config(key, "fresh"))
    with pytest.raises(NotJoined):
        await fresh.leave()
    await fresh.close()
    async with cluster(key, 3) as (a, b, c):
        await eventually(lambda: len(a.nodes()) == 3 and len(b.nodes()) == 3, "formed")
        await c.leave()
        assert c.state == "left"
        await c.leave()  # a second leave is a safe no-op
        for view in (a, b):
            await eventually(
                lambda v=view: state_of(v, "n2") == "left", f"{view.node_id} sees n2 left"
            )
            assert ids(view.nodes(states="left")) == {"n2"}
            assert ids(view.nodes(states="failed")) == set()


async def test_stats_add_up(key: bytes) -> None:
    async with cluster(key, 3) as nodes:
        for view in nodes:
            await eventually(lambda v=view: v.stats().alive == 3, f"{view.node_id} counts 3 alive")
        await nodes[2].leave()
        await eventually(lambda: nodes[0].stats().left == 1, "a counts one left")
        for view in nodes[:2]:
            # A node that joined through a stream may not have sent its first
            # datagram yet: traffic counters are awaited, not raced.
            await eventually(
                lambda v=view: v.stats().messages_out > 0 and v.stats().bytes_out > 0,
                f"{view.node_id} has sent datagrams",
            )
            s = view.stats()
            assert s.total == s.alive + s.suspect + s.failed + s.left
            assert s.total == len(view.nodes(states=None))
            assert s.alive == len(view.nodes())
            assert s.connections_open >= 1 and s.connections_idle <= s.connections_open
            assert s.messages_in > 0 and s.messages_out > 0
            assert s.bytes_in > 0 and s.bytes_out > 0
            assert s.dropped == sum(s.drops.values()) - s.drops["net_drop_source_limit"]
            assert 0 <= s.health < AWARENESS_MAX
            assert s.to_dict()["alive"] == s.alive
        # health is Lifeguard's local health score: 0 while this node's probes
        # are answered (each answered probe lowers it), rising while they go
        # unanswered with no helper's nack to blame the target (as when the
        # node hears nothing at all), and back to 0 once it hears again.
        # Refuting a suspicion and a stall of this node raise it too, so the
        # rise awaited is beyond what those, counted since, could explain.
        b = nodes[1]
        await eventually(lambda: b.stats().health == 0, "n1 healthy")
        before = b.stats().counters
        b.inject_faults(drop_in=1.0)

        def for_unanswered_probes() -> int:
            s = b.stats()
            others = sum(s.counters[k] - before[k] for k in ("refutations", "stalls"))
            return s.health - others

        await eventually(
            lambda: for_unanswered_probes() >= 2,
            "n1's health score rises while deaf, beyond its refutations and stalls",
        )
        assert b.stats().health < AWARENESS_MAX
        b.inject_faults()
        await eventually(lambda: b.stats().health == 0, "n1 healthy again")


async def test_events_reach_a_subscriber_on_another_node(key: bytes) -> None:
    a = ClusterMembership("127.0.0.1:0", config(key, "n0"))
    await a.join([])
    events = a.subscribe()
    got: list = []

    async def collect() -> None:
        async for ev in events:
            got.append(ev)

    task = asyncio.create_task(collect())
    b = ClusterMembership("127.0.0.1:0", config(key, "n1"))
    c = ClusterMembership("127.0.0.1:0", config(key, "n2"))
    try:
        await b.join([a.addr])
        await c.join([a.addr])

        def seen(cls: type, node: str) -> bool:
            return any(isinstance(e, cls) and e.node.id == node for e in got)

        await eventually(lambda: seen(NodeJoined, "n1") and seen(NodeJoined, "n2"), "NodeJoined")
        await b.update_tag("role", "worker")
        await eventually(lambda: seen(NodeTagsUpdated, "n1"), "NodeTagsUpdated")
        tag_ev = next(e for e in got if isinstance(e, NodeTagsUpdated))
        assert tag_ev.node.tags == {"role": "worker"} and tag_ev.time > 0
        await b.leave()
        await eventually(lambda: seen(NodeLeft, "n1"), "NodeLeft")
        await c.close()  # no leave: a must detect the failure
        await eventually(lambda: seen(NodeFailed, "n2"), "NodeFailed")
        assert not seen(NodeFailed, "n1")
    finally:
        await a.close()
        await b.close()
        await c.close()
    await asyncio.wait_for(task, 5)  # iteration ends when the node closes


async def test_every_subscriber_gets_every_event_and_slow_ones_drop(key: bytes) -> None:
    async with cluster(key, 2) as (a, b):
        fast = a.subscribe()
        slow = a.subscribe(maxsize=2)
        got: list = []
        for i in range(6):
            await b.update_tag("step", str(i))
            # Wait for each update so gossip cannot merge them into one.
            await eventually(
                lambda i=i: (
                    (e := fast.get_nowait()) is not None
                    and got.append(e) is None
                    and isinstance(got[-1], NodeTagsUpdated)
                    and got[-1].node.incarnation >= i + 1
                ),
                f"fast sees update {i}",
            )
        while (e := fast.get_nowait()) is not None:
            got.append(e)
        assert len(got) >= 6 and slow.pending == 2
        first = await slow.get(1)
        assert isinstance(first, EventsDropped) and first.count == len(got) - 2
        assert first.node.id == "n0"
        assert [await slow.get(1), await slow.get(1)] == got[-2:]
        assert slow.dropped == len(got) - 2
