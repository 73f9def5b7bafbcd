"""The API as a new user meets it: subscriptions that end with their reader,
replay of the current members, a duplicate id refused, log lines, errors
that name what went wrong, flat stats, regex tag filters, typed profiles."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import re
import socket
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from _cluster import cluster, config
from conftest import eventually

import clustermember
from clustermember import (
    ClusterClosed,
    ClusterConfig,
    ClusterEvent,
    ClusterMembership,
    ConfigError,
    DuplicateNodeId,
    JoinRefused,
    JoinTimeout,
    MemberState,
    NodeJoined,
    NodeLeft,
    NodeTagsUpdated,
    Subscription,
    _core,
)
from clustermember._config import TIME_RANGES, seconds_text
from clustermember._log import RateLimitedLog
from clustermember._overrides import ConfigOverrides

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------ 1. subscriptions


async def test_a_subscription_ends_with_its_reader(key: bytes) -> None:
    """Cancelled watchers, a broken loop and a forgotten subscription leave
    no subscriber behind; a cancelled get() or a timeout does not close."""
    node = ClusterMembership("127.0.0.1:0", config(key, "watched"))
    try:
        await node.join([])
        got: list[ClusterEvent] = []

        async def watch() -> None:
            async for event in node.subscribe():
                got.append(event)

        tasks = [asyncio.create_task(watch()) for _ in range(100)]
        await eventually(lambda: node._subscriber_count == 100, "100 watchers subscribed")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        del tasks
        gc.collect()
        assert node._subscriber_count == 0

        node.subscribe()  # never read, never referenced
        gc.collect()
        assert node._subscriber_count == 0

        sub = node.subscribe()
        await node.update_tag("k", "1")
        async for _ in sub:
            break
        # The abandoned generator is closed by asyncio at the loop's next turn.
        await eventually(lambda: sub.closed and node._subscriber_count == 0, "break closes")

        kept = node.subscribe()
        with pytest.raises(asyncio.TimeoutError):
            await kept.get(timeout=0.01)
        reader = asyncio.create_task(kept.get())
        await asyncio.sleep(0)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        assert not kept.closed and node._subscriber_count == 1
        await node.update_tag("k", "2")
        assert isinstance(await kept.get(timeout=10), NodeTagsUpdated)
    finally:
        await node.close()


async def test_an_unreferenced_watcher_keeps_watching(key: bytes) -> None:
    """A watcher task nobody keeps a reference to (create_task's result
    dropped) is not collected while it waits: it still gets the next event.
    The node holds subscriptions weakly only while no reader waits."""
    node = ClusterMembership("127.0.0.1:0", config(key, "watched"))
    got: list[ClusterEvent] = []

    async def watch() -> None:
        async for event in node.subscribe():
            got.append(event)

    try:
        await node.join([])
        asyncio.create_task(watch())  # noqa: RUF006 - the point of the test
        await eventually(lambda: node._subscriber_count == 1, "the watcher subscribed")
        gc.collect()
        assert node._subscriber_count == 1
        await node.update_tag("k", "1")
        await eventually(
            lambda: any(isinstance(e, NodeTagsUpdated) for e in got), "the watcher sees it"
        )
    finally:
        await node.close()


async def test_an_insecure_node_warns_even_without_logging_configured() -> None:
    """insecure=True is a Python warning as well as a log line: the library
    logs nothing unless the application configures logging."""
    node = ClusterMembership("127.0.0.1:0", ClusterConfig.local(insecure=True, node_id="open"))
    try:
        with pytest.warns(UserWarning, match="WITHOUT authentication"):
            await node.start()
    finally:
        await node.close()


async def test_two_readers_of_one_subscription_are_both_woken(key: bytes) -> None:
    """Two get() calls waiting on one subscription: each returns when news
    comes, neither hangs (one event each, or one event and a timeout-free
    wait for the next)."""
    node = ClusterMembership("127.0.0.1:0", config(key, "shared"))
    try:
        await node.join([])
        sub = node.subscribe()
        first = asyncio.create_task(sub.get())
        second = asyncio.create_task(sub.get())
        await asyncio.sleep(0)
        await node.update_tag("k", "1")
        await node.update_tag("k", "2")
        got = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert [type(e).__name__ for e in got] == ["NodeTagsUpdated"] * 2
    finally:
        await node.close()


async def test_a_break_inside_async_with_keeps_the_subscription(key: bytes) -> None:
    """``async with`` owns the subscription: a loop that breaks leaves it
    open, and the next loop goes on with the next event. Without ``async
    with``, the loop's end closes it (test_a_subscription_ends_with_its_reader)."""
    node = ClusterMembership("127.0.0.1:0", config(key, "looped"))
    try:
        await node.join([])
        async with node.subscribe(replay=True) as events:
            async for ev in events:
                assert isinstance(ev, NodeJoined)
                break
            gc.collect()  # the abandoned loop's generator is finalized
            assert not events.closed
            await node.update_tag("x", "1")
            async for ev in events:
                assert isinstance(ev, NodeTagsUpdated) and ev.node.tags["x"] == "1"
                break
            assert not events.closed and node._subscriber_count == 1
        assert events.closed and node._subscriber_count == 0
    finally:
        await node.close()


async def test_reading_a_closed_subscription_raises_cluster_closed(key: bytes) -> None:
    node = ClusterMembership("127.0.0.1:0", config(key, "closing"))
    try:
        await node.join([])
        sub = node.subscribe()
        assert sub.get_nowait() is None  # open and empty
        await node.update_tag("k", "v")
        await eventually(lambda: sub.pending == 1, "the tag event queued")
        sub.close()
        assert isinstance(sub.get_nowait(), NodeTagsUpdated)  # queued before the close
        with pytest.raises(ClusterClosed):
            sub.get_nowait()
        with pytest.raises(ClusterClosed):
            await sub.get()
        with pytest.raises(ClusterClosed):
            await sub.get(timeout=1)
        assert [e async for e in sub] == []
    finally:
        await node.close()


# ----------------------------------------------------------- 2. replay


def _table(events: list[ClusterEvent]) -> dict[str, tuple[str, int]]:
    return {e.node.id: (e.node.state.value, e.node.incarnation) for e in events}


async def test_replay_is_never_dropped_by_a_small_maxsize(key: bytes) -> None:
    """maxsize bounds the changes, not the replay: with room for 2 and three
    changes before the first read, every member is replayed, then one
    EventsDropped for the oldest change, then the two newest (each event's
    member is read from the snapshot it was delivered with)."""
    async with cluster(key, 4) as nodes:
        a = nodes[0]
        for n in nodes:
            await eventually(lambda n=n: len(n.nodes()) == 4, "formed")
        sub = a.subscribe(replay=True, maxsize=2)
        for i in range(3):
            await a.update_tag("step", str(i))
        await eventually(lambda: sub.dropped == 1, "one change dropped")
        got = [sub.get_nowait() for _ in range(sub.pending + 1)]
        assert [type(e).__name__ for e in got[:4]] == ["NodeJoined"] * 4
        assert sorted(e.node.id for e in got[:4] if e is not None) == ["n0", "n1", "n2", "n3"]
        assert isinstance(got[4], clustermember.EventsDropped) and got[4].count == 1
        assert [type(e).__name__ for e in got[5:]] == ["NodeTagsUpdated"] * 2
        assert got[-1] is not None and got[-1].node.tags["step"] == "2"
        sub.close()


async def test_replay_gives_current_members_then_every_change_once(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        await eventually(lambda: len(c.nodes()) == 3, "c sees three")
        # Subscribed after join, as the docs order it: the members are there.
        first = c.subscribe(replay=True)
        replayed = [first.get_nowait() for _ in range(3)]
        assert all(isinstance(e, NodeJoined) for e in replayed)
        assert {e.node.id for e in replayed if e is not None} == {"n0", "n1", "n2"}
        assert first.get_nowait() is None

        # Subscribe while b changes its tags as fast as it can: each change
        # is either in the replay or among the events after it, never both,
        # none missing, and replaying the events rebuilds exactly the table
        # c holds. A reference subscription, made before the churn, sees
        # every event c hands out: each later subscription's events after
        # its replay are exactly the reference's from the moment it was made.
        ref = c.subscribe(maxsize=100_000)
        ref_events: list[ClusterEvent] = []

        def drain_ref() -> None:
            while (e := ref.get_nowait()) is not None:
                ref_events.append(e)

        busy = True

        async def churn() -> None:
            for i in range(400):
                if not busy:
                    return
                await b.update_tag("n", str(i))
                await asyncio.sleep(0.002)

        task = asyncio.create_task(churn())
        subs: list[tuple[Subscription, int]] = []
        try:
            await eventually(lambda: "n" in c.member("n1").tags, "churn seen")  # type: ignore[union-attr]
            for _ in range(20):
                # subscribe() first hands out what the engine has queued
                # (to ref too): those changes are in the new replay, so
                # ref's events after them are the new subscription's.
                sub = c.subscribe(replay=True)
                drain_ref()
                subs.append((sub, len(ref_events)))
                await asyncio.sleep(0.01)
        finally:
            busy = False
            await task
        await eventually(
            lambda: (
                c.member("n1") is not None
                and c.member("n1").incarnation == b.local_node.incarnation
            ),  # type: ignore[union-attr]
            "c has b's last tags",
        )
        await asyncio.sleep(0)  # let the reader hand out what it has
        c._drain_all()
        drain_ref()
        assert ref.dropped == 0
        want = {m.id: (m.state.value, m.incarnation) for m in c.nodes(None)}
        kinds = [(type(e).__name__, e.node.id) for e in ref_events]
        changes_seen = 0
        for sub, start in subs:
            events: list[ClusterEvent] = []
            while (e := sub.get_nowait()) is not None:
                events.append(e)
            assert sub.dropped == 0
            assert all(isinstance(e, NodeJoined) for e in events[:3])
            after = [(type(e).__name__, e.node.id) for e in events[3:]]
            assert after == kinds[start:], "a change missing or shown twice"
            changes_seen += len(after)
            assert _table(events) == want
        assert changes_seen > 0  # the churn did overlap the subscriptions


async def test_replay_does_not_repeat_a_change_still_queued_in_the_engine(key: bytes) -> None:
    """A change the engine has queued but the blocked loop has not handed
    out yet is already in the snapshot a replay reads: it must come in the
    replay or after it, not in both. Every event after the replay is newer
    than what the replay showed of its member."""
    async with cluster(key, 3) as (a, b, c):
        await eventually(lambda: len(c.nodes()) == 3, "c sees three")
        for i in range(5):
            await b.update_tag("k", str(i))
            # Block c's loop until c's engine has the change (its snapshot
            # shows it), so the event waits, undelivered, in the queue.
            deadline = time.monotonic() + 30
            while (m := c.member("n1")) is None or m.tags.get("k") != str(i):
                assert time.monotonic() < deadline, "c's engine never saw the change"
                time.sleep(0.005)
            sub = c.subscribe(replay=True)
            try:
                replayed: dict[str, int] = {}
                events: list[ClusterEvent] = []
                while (e := sub.get_nowait()) is not None:
                    events.append(e)
                await asyncio.sleep(0)
                while (e := sub.get_nowait()) is not None:
                    events.append(e)
                for e in events[:3]:
                    replayed[e.node.id] = e.node.incarnation
                assert sorted(replayed) == ["n0", "n1", "n2"]
                assert replayed["n1"] == b.local_node.incarnation
                later = [(type(e).__name__, e.node.id, e.node.incarnation) for e in events[3:]]
                assert all(inc > replayed[i] for _, i, inc in later), later
            finally:
                sub.close()


# ---------------------------------------------------- 3. duplicate id


async def test_a_duplicate_id_is_refused_and_logged_on_both_sides_and_a_restart_joins(
    key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A second process with a live member's id: its join raises
    DuplicateNodeId naming the id and the original's address, and the
    newcomer, the original and the seed each log a WARNING. A crashed node
    restarted with its id on a new port joins: its predecessor's address no
    longer answers to the id."""
    caplog.set_level(logging.INFO, logger="clustermember")
    async with cluster(key, 2) as (a, b):
        dup = ClusterMembership("127.0.0.1:0", config(key, "n1"))
        try:
            with pytest.raises(DuplicateNodeId) as exc:
                await dup.join([a.addr])
            assert (exc.value.node_id, exc.value.other_addr) == ("n1", b.addr)
            assert f"node id 'n1' at {b.addr}" in str(exc.value)
            assert dup.state == "started"
            dup_addr = dup.addr
        finally:
            await dup.close()

        def warned(prefix: str, *words: str) -> bool:
            return any(
                r.levelno == logging.WARNING
                and r.getMessage().startswith(prefix)
                and "id conflict" in r.getMessage()
                and all(w in r.getMessage() for w in words)
                for r in caplog.records
            )

        # n1's lines name the other process's address: b's is the newcomer's.
        await eventually(lambda: warned("node n1: ", b.addr), "the newcomer logs the conflict")
        await eventually(lambda: warned("node n1: ", dup_addr), "the original logs it")
        await eventually(lambda: warned("node n0: "), "the seed logs the conflict")
        # One line per claim on each side, however often gossip repeats it.
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "id conflict" in r.getMessage()
        ]
        assert len(lines) == len(set(lines)), lines

        # n1 crashes (closed without a leave) and comes back on a new port.
        b_addr = b.addr
        await b.close()
        again = ClusterMembership("127.0.0.1:0", config(key, "n1"))
        try:
            await again.join([a.addr])
            assert again.state == "joined" and again.addr != b_addr
            await eventually(
                lambda: (
                    (m := a.member("n1")) is not None
                    and m.addr == again.addr
                    and m.state == MemberState.ALIVE
                ),
                "the seed knows n1 at its new address, alive",
            )
            moved = f"node n0: member n1 is back at a new address, {again.addr}"
            await eventually(
                lambda: any(r.getMessage() == moved for r in caplog.records), "the move logged"
            )
        finally:
            await again.close()


# -------------------------------------------------------------- 4. logs


async def test_the_logger_records_joins_leaves_failures_and_refusals(
    key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    lib = logging.getLogger("clustermember")
    assert any(isinstance(h, logging.NullHandler) for h in lib.handlers)
    assert lib.level == logging.NOTSET  # the application decides what shows
    caplog.set_level(logging.INFO, logger="clustermember")
    import secrets

    async with cluster(key, 3) as (a, b, c):

        def said(level: int, *words: str) -> bool:
            return any(
                r.levelno == level and all(w in r.getMessage() for w in words)
                for r in caplog.records
            )

        assert said(logging.INFO, "node n1: joined through")
        await eventually(lambda: said(logging.INFO, "node n0: member n2 joined"), "join logged")
        # a is cut off: the others suspect it; once back it hears of it and
        # refutes. (A cut, not loss: a node that only loses its datagrams
        # still pushes and pulls state, and refutes from behind the loss.)
        a.inject_faults(block=[b.addr, c.addr])

        def others_doubt_a() -> bool:
            return all(
                (m := v.member("n0")) is not None and m.state is not MemberState.ALIVE
                for v in (b, c)
            )

        await eventually(others_doubt_a, "b and c suspect n0")
        assert not said(logging.WARNING, "node n0: peers suspected this node")
        a.inject_faults()
        await eventually(
            lambda: said(logging.WARNING, "node n0: peers suspected this node"), "refutation logged"
        )
        await eventually(
            lambda: said(logging.INFO, "member n0 is alive again (incarnation"), "recovery logged"
        )
        await c.leave()
        await eventually(lambda: said(logging.INFO, "node n0: member n2 left"), "leave logged")
        await b.close()
        await eventually(
            lambda: said(logging.WARNING, "node n0: member n1", "failed"), "failure logged"
        )
        stranger = ClusterMembership("127.0.0.1:0", config(secrets.token_bytes(32), "x"))
        try:
            with pytest.raises(JoinTimeout):
                await stranger.join([a.addr], timeout=10)
        finally:
            await stranger.close()
        await eventually(
            lambda: said(logging.WARNING, "node n0: refused", "authentication"),
            "refused handshakes logged",
        )


async def test_refusals_in_a_nodes_first_second_are_logged(
    key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer with the wrong key at deploy time is refused before the node's
    first log tick: the refusals are logged all the same (the counters start
    at 0 with the node, and the first tick compares with that)."""
    import secrets

    caplog.set_level(logging.INFO, logger="clustermember")
    seed = ClusterMembership("127.0.0.1:0", config(key, "s0"))
    stranger = ClusterMembership("127.0.0.1:0", config(secrets.token_bytes(32), "x"))
    try:
        await seed.join([])
        with pytest.raises(JoinTimeout):
            await stranger.join([seed.addr], timeout=10)
        refused = seed.stats().counters["net_auth_refused"]
        assert refused >= 1
        await eventually(
            lambda: any(
                r.levelno == logging.WARNING
                and r.getMessage().startswith("node s0: refused")
                and "authentication" in r.getMessage()
                for r in caplog.records
            ),
            "the seed logs the refusals",
        )
    finally:
        await stranger.close()
        await seed.close()


def test_log_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clustermember")
    now = [0.0]
    lines = RateLimitedLog("n0", window=10.0, burst=2, clock=lambda: now[0])
    for i in range(5):
        lines.emit("joined", logging.INFO, "member %s joined", f"m{i}")
    lines.emit("left", logging.INFO, "member %s left", "m0")  # its own budget
    now[0] = 10.0
    lines.emit("joined", logging.INFO, "member %s joined", "m9")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        "node n0: member m0 joined",
        "node n0: member m1 joined",
        "node n0: member m0 left",
        "node n0: member m9 joined (3 similar lines held back)",
    ]
    # A burst followed by quiet: what was held back is reported once its
    # window has ended, not only when a later line of its kind comes.
    caplog.clear()
    for i in range(4):
        lines.emit("failed", logging.WARNING, "member %s failed", f"f{i}")
    lines.flush()  # the window is still open: nothing yet
    now[0] = 20.0
    lines.flush()
    lines.flush()  # reported once
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "node n0: member f0 failed"),
        (logging.WARNING, "node n0: member f1 failed"),
        (logging.WARNING, "node n0: 2 more failed lines held back (at most 2 per 10 s)"),
    ]


async def test_a_join_timeout_says_when_handshakes_failed(key: bytes) -> None:
    plain = JoinTimeout(["10.0.0.1:7946"], 5.0)
    assert "handshake" not in str(plain)
    hint = JoinTimeout(["10.0.0.1:7946"], 5.0, handshakes_failed=3, auth_refused=3)
    assert "3 handshake(s) with the seeds failed, 3 of them refused authentication" in str(hint)
    assert "they are reachable" in str(hint) and hint.auth_refused == 3
    assert "handshake" not in str(JoinTimeout(["x:1"], 5.0, handshakes_failed=2, handshakes_ok=1))
    assert isinstance(JoinRefused(["x:1"], 1.0, handshakes_failed=1), JoinTimeout)
    # A seed address where nothing answers (a socket nobody reads): its
    # handshakes time out, which must not be blamed on the key.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        seed = f"127.0.0.1:{silent.getsockname()[1]}"
        node = ClusterMembership("127.0.0.1:0", config(key, "lonely", handshake_timeout=0.3))
        try:
            with pytest.raises(JoinTimeout) as exc:
                await node.join([seed], timeout=3.0)
        finally:
            await node.close()
        assert type(exc.value) is JoinTimeout
        assert exc.value.handshakes_failed >= 1 and exc.value.auth_refused == 0
        assert "got no answer" in str(exc.value) and "they are reachable" not in str(exc.value)

        # The join ends at its own timeout, not when a longer handshake
        # timeout would end the request it has out.
        slow = ClusterMembership("127.0.0.1:0", config(key, "patient", handshake_timeout=60.0))
        try:
            start = time.monotonic()
            with pytest.raises(JoinTimeout, match="after 0.5 s"):
                await slow.join([seed], timeout=0.5)
            # Not the 60 s handshake, nor the API's own give-up, 5 s later.
            assert time.monotonic() - start < 5.0
        finally:
            await slow.close()


# ------------------------------------------------------------ 5. durations


@pytest.mark.parametrize("value", [500, 1e9, 0, 0.0, float("nan"), float("inf"), -1, "1", True])
def test_durations_out_of_range_name_the_option_value_and_range(key: bytes, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        ClusterConfig(cluster_key=key, probe_interval=value)
    assert str(info.value) == (
        f"probe_interval={value!r} is out of range: it must be a number of seconds from 0.01 to 60"
    )


async def test_call_timeouts_are_checked_like_the_config(key: bytes) -> None:
    """leave(timeout=) has leave_timeout's range and a subscription's
    get(timeout=) takes 0 or more seconds: a negative, NaN or string
    timeout is refused with a message naming it, and changes nothing."""
    node = ClusterMembership("127.0.0.1:0", config(key, "timed"))
    try:
        await node.join([])
        for bad in (-10, math.nan, "5"):
            with pytest.raises(ConfigError, match=r"^timeout=.* is out of range"):
                await node.leave(timeout=bad)  # type: ignore[arg-type]
        assert node.state == "joined"
        sub = node.subscribe()
        for bad in (-1, math.nan, math.inf, "1"):
            with pytest.raises(ValueError, match=r"^timeout=.* is out of range"):
                await sub.get(timeout=bad)  # type: ignore[arg-type]
        assert not sub.closed
        with pytest.raises(asyncio.TimeoutError):
            await sub.get(timeout=0)
    finally:
        await node.close()


TRANSPORT_DURATIONS = ("idle_timeout", "handshake_timeout", "request_timeout")


async def _start_and_close(cfg: ClusterConfig) -> None:
    node = ClusterMembership("127.0.0.1:0", cfg)
    try:
        await node.start()
    finally:
        await node.close()


def test_every_duration_has_a_range_the_profiles_and_core_agree_with(key: bytes) -> None:
    fields = {f.name: f for f in dataclasses.fields(ClusterConfig)}
    floats = {n for n, f in fields.items() if f.type == "float" and n != "phi_threshold"}
    assert floats == set(TIME_RANGES)
    for profile in ("lan", "wan", "local"):
        cfg = getattr(ClusterConfig, profile)(cluster_key=key)
        for name, (lo, hi) in TIME_RANGES.items():
            assert lo <= getattr(cfg, name) <= hi, (profile, name)
    core = ClusterConfig(cluster_key=key).protocol_settings()
    for name, (lo, hi) in TIME_RANGES.items():
        # Both ends are accepted, by Python and by the core's validator.
        for end in (lo, hi):
            # probe_timeout stays below probe_interval, a relation the core checks.
            kw = {"probe_interval": 60.0, "probe_timeout": 0.001, name: end}
            ClusterConfig(cluster_key=key, **kw)
            if name in core:
                assert _core.validate_config({**core, **kw}) is None, (name, end)
            elif name in TRANSPORT_DURATIONS:
                # The transport's own validator, at node start.
                asyncio.run(_start_and_close(config(key, "ends", **{name: end})))
        span = f"from {seconds_text(lo)} to {seconds_text(hi)}"
        with pytest.raises(ConfigError, match=re.escape(name) + ".* " + re.escape(span)):
            ClusterConfig(cluster_key=key, **{name: hi * 2 + 1})
        assert not math.isnan(lo)
    node = ClusterMembership("127.0.0.1:0", config(key, "t"))
    with pytest.raises(ConfigError, match=r"timeout=0 is out of range"):
        asyncio.run(node.join([], timeout=0))


# ------------------------------------------- 6. stats, phi, data frames


class _FakeFrame:
    def __init__(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
        self.rows, self.columns = rows, columns


async def test_flat_stats_phi_and_one_column_per_tag(
    key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cluster(key, 3) as (a, b, c):
        await b.update_tag("role", "worker")
        await c.update_tag("zone", "eu-1")
        await eventually(lambda: len(a.nodes_with_tag("zone", "eu-1")) == 1, "tags seen")
        flat = a.stats().flat()
        assert all(isinstance(v, int) for v in flat.values())
        assert flat["members_alive"] == 3 and flat["dropped_total"] == a.stats().dropped
        assert "transport_bytes_in" in flat and "protocol_bytes_in" in flat
        assert not {"bytes_in", "net_bytes_in", "alive", "counters"} & set(flat)
        assert len(a.stats().counters) + 1 == len(flat)  # every counter once, plus the total
        prefixes = ("members_", "protocol_", "transport_", "engine_")
        others = {"health_score", "incarnation", "dropped_total"}
        assert all(k.startswith(prefixes) or k in others for k in flat)

        # phi: None for this node and for members that are not alive.
        assert a.local_node.phi is None
        await c.leave()
        await eventually(lambda: a.member("n2").state == "left", "c left")  # type: ignore[union-attr]
        assert a.member("n2").phi is None  # type: ignore[union-attr]
        # phi is read from the last published snapshot: a tag change
        # publishes one.
        for i in range(300):
            await a.update_tag("tick", str(i))
            phi = a.member("n1").phi  # type: ignore[union-attr]
            if phi is not None:
                break
            await asyncio.sleep(0.1)
        assert phi is not None and phi > 0, "no phi for b after 30 s"

        fake = types.ModuleType("pandas")
        fake.DataFrame = _FakeFrame  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "pandas", fake)
        frame = a.to_dataframe()
        base = ["id", "addr", "state", "incarnation", "phi"]
        assert frame.columns == [*base, "tag.role", "tag.tick", "tag.zone"]
        by_id = {r["id"]: r for r in frame.rows}
        assert by_id["n1"]["tag.role"] == "worker" and "tag.role" not in by_id["n0"]
        assert "tags" not in frame.columns
        rows = a.stats().to_dataframe().rows
        assert [r["figure"] for r in rows] == list(a.stats().flat())


# ------------------------------------------------------ 7. regex filters


async def test_nodes_matching_full_matches_regular_expressions(key: bytes) -> None:
    async with cluster(key, 3) as (a, b, c):
        await a.update_tag("role", "worker")
        await b.update_tag("role", "web")
        await c.update_tag("role", "new-worker")
        await eventually(lambda: len(a.nodes_matching({"role": ".*"})) == 3, "tags seen")
        assert {m.id for m in a.nodes_matching({"role": r"w.*"})} == {"n0", "n1"}
        assert {m.id for m in a.nodes_matching({"role": r".*worker"})} == {"n0", "n2"}
        assert a.nodes_matching({"role": "work"}) == []  # the whole value must match
        assert a.nodes_matching({"zone": ".*"}) == []  # no such key
        assert {m.id for m in a.nodes_matching({})} == {"n0", "n1", "n2"}
        with pytest.raises(ValueError, match=r"role='\(' is not a regular expression"):
            a.nodes_matching({"role": "("})


# ------------------------------------------------- 8. typing of the API


def test_profiles_take_exactly_the_config_fields_and_the_package_is_typed() -> None:
    fields = {f.name for f in dataclasses.fields(ClusterConfig)}
    assert set(ConfigOverrides.__annotations__) == fields
    assert (ROOT / "clustermember" / "py.typed").exists()
    assert isinstance(MemberState.ALIVE, str) and Subscription is clustermember.Subscription
    assert NodeLeft in clustermember.__dict__.values()
