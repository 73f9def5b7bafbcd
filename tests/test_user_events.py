"""User events over a real cluster on loopback: every member, the sender
included, gets each event once; coalescing keeps the latest of a name; bad
input is refused with a message that says what to do, and changes nothing."""

from __future__ import annotations

import asyncio

import pytest
from _cluster import cluster
from conftest import eventually

from clustermember import (
    ClusterClosed,
    ClusterMembership,
    RateLimited,
    Subscription,
    UserEvent,
)


def user_events(sub: Subscription) -> list[UserEvent]:
    """Every user event waiting in sub (other events skipped)."""
    got = []
    while (event := sub.get_nowait()) is not None:
        if isinstance(event, UserEvent):
            got.append(event)
    return got


async def collect(subs: list[Subscription], want: int, what: str) -> list[list[UserEvent]]:
    """Read each subscription until it has `want` user events."""
    got: list[list[UserEvent]] = [[] for _ in subs]

    def done() -> bool:
        for i, sub in enumerate(subs):
            got[i].extend(user_events(sub))
        return all(len(g) >= want for g in got)

    await eventually(done, what)
    return got


async def test_every_member_gets_each_event_once(key: bytes) -> None:
    async with cluster(key, 3) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 3 for n in nodes), "formed")
        subs = [n.subscribe(replay=False) for n in nodes]
        t1 = await nodes[1].send_event("deploy", b"v1.2")
        t2 = await nodes[2].send_event("restart", b"\x00\xff", coalesce=False)
        got = await collect(subs, 2, "both events everywhere")
        for n, events in zip(nodes, got, strict=True):
            by_name = {e.name: e for e in events}
            assert len(events) == 2, (n.node_id, events)
            assert by_name["deploy"].payload == b"v1.2"
            assert by_name["deploy"].origin == "n1" and by_name["deploy"].ltime == t1
            assert by_name["deploy"].coalesce is True
            assert by_name["restart"].payload == b"\x00\xff"
            assert by_name["restart"].origin == "n2" and by_name["restart"].ltime == t2
            assert by_name["restart"].coalesce is False
            assert all(e.node.id == n.node_id for e in events)  # the receiver
        # Nothing more arrives: each was delivered once.
        await asyncio.sleep(0.5)
        assert [user_events(s) for s in subs] == [[], [], []]
        for n in nodes:
            c = n.stats().counters
            assert c["user_events_delivered"] == 2
            assert c["drop_user_event_old"] == 0 and c["drop_user_event_rate"] == 0


async def test_an_event_after_another_seen_comes_later(key: bytes) -> None:
    async with cluster(key, 2) as (a, b):
        await eventually(lambda: len(b.nodes()) == 2, "formed")
        sub = b.subscribe(replay=False)
        for _ in range(3):
            await a.send_event("warm")
        t1 = await a.send_event("first")
        got = await collect([sub], 4, "b has a's events")
        assert "first" in {e.name for e in got[0]}
        t2 = await b.send_event("second")
        assert t2 > t1


async def test_coalescing_keeps_the_latest_of_a_name(key: bytes) -> None:
    async with cluster(key, 2, user_event_coalesce=0.3) as (a, b):
        await eventually(lambda: len(b.nodes()) == 2, "formed")
        sub = b.subscribe(replay=False)
        for i in range(5):
            await a.send_event("config", str(i).encode())
        await a.send_event("once", b"x", coalesce=False)
        got = await collect([sub], 2, "b has the coalesced event and the other")
        await asyncio.sleep(0.6)
        got[0].extend(user_events(sub))
        names = sorted((e.name, e.payload) for e in got[0])
        assert names == [("config", b"4"), ("once", b"x")]
        assert b.stats().flat()["engine_user_events_coalesced"] == 4


async def test_bad_events_refused_with_what_to_do(key: bytes) -> None:
    async with cluster(key, 1, user_event_rate=5, max_user_event_stream=4096) as (a,):
        sub = a.subscribe(replay=False)
        with pytest.raises(ValueError, match="printable ASCII"):
            await a.send_event("has space")
        with pytest.raises(ValueError, match="printable ASCII"):
            await a.send_event("")
        with pytest.raises(ValueError, match="max_user_event_stream=4096"):
            await a.send_event("big", bytes(4097))
        with pytest.raises(TypeError, match="payload must be bytes"):
            await a.send_event("e", "text")  # type: ignore[arg-type]
        assert a.stats().counters["user_events_sent"] == 0
        await a.send_event("big", bytes(1021))  # exactly what a datagram takes
        for _ in range(4):
            await a.send_event("e")
        with pytest.raises(RateLimited, match="user_event_rate=5"):
            await a.send_event("e")
        assert a.stats().counters["user_events_sent"] == 5
        got = await collect([sub], 5, "its own events")
        assert len(got[0]) == 5
        assert [e.payload for e in got[0]][1:] == [b""] * 4  # bytes, never None


async def test_no_events_after_leaving(key: bytes) -> None:
    async with cluster(key, 2) as (a, b):
        await eventually(lambda: len(b.nodes()) == 2, "formed")
        await a.leave()
        with pytest.raises(ClusterClosed, match="has left"):
            await a.send_event("late")


async def test_send_before_start_says_so(key: bytes) -> None:
    from _cluster import config

    node = ClusterMembership("127.0.0.1:0", config(key, "lonely"))
    with pytest.raises(Exception, match="not started"):
        await node.send_event("e")


async def test_a_large_payload_reaches_every_member_once_on_streams(key: bytes) -> None:
    """A 1 MiB payload (the default max_user_event_stream): its reference
    rides the gossip and each member fetches the payload from one that has
    it; every member gets it once, byte for byte."""
    payload = bytes((i * 31 + (i >> 11)) & 0xFF for i in range(1 << 20))
    async with cluster(key, 4) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 4 for n in nodes), "formed")
        subs = [n.subscribe(replay=False) for n in nodes]
        ltime = await nodes[1].send_event("image", payload)
        got = await collect(subs, 1, "the large event everywhere")
        for events in got:
            assert [(e.name, e.ltime, e.origin) for e in events] == [("image", ltime, "n1")]
            assert events[0].payload == payload
        fetched = sum(n.stats().counters["events_fetched"] for n in nodes)
        served = sum(n.stats().counters["events_served"] for n in nodes)
        assert fetched == 3 and served >= 3  # each member fetched it once


async def test_large_events_still_being_passed_on_hold_the_sender_back(key: bytes) -> None:
    """A node keeps its own large payloads until they have had their turn
    (here 4 gossip rounds of 5 s): a send that would push one out of
    user_event_store raises RateLimited."""
    async with cluster(
        key, 1, max_user_event_stream=40_000, user_event_store=80_000, gossip_interval=5.0
    ) as (a,):
        await a.send_event("big", bytes(40_000))
        await a.send_event("big", bytes(40_000))
        with pytest.raises(RateLimited, match="user_event_store"):
            await a.send_event("big", bytes(40_000))
        assert a.stats().counters["user_events_sent"] == 2
        await a.send_event("small", b"x")  # what rides the gossip is not held back
