"""Queries over a real cluster on loopback: each selected member acks and
answers once, filters select by tag regex and by id, handlers may be async,
a slow or failing handler costs only its own answer, and bad queries are
refused with a message that says what to do."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _cluster import cluster
from conftest import eventually

from clustermember import ClusterClosed, Query, QueryResponse, RateLimited


async def formed(nodes: list) -> None:
    await eventually(lambda: all(len(n.nodes()) == len(nodes) for n in nodes), "formed")


async def test_every_selected_member_acks_and_answers_once(key: bytes) -> None:
    async with cluster(key, 4) as nodes:
        await formed(nodes)
        await nodes[1].update_tag("role", "db-main")
        await nodes[2].update_tag("role", "db-replica")
        await nodes[3].update_tag("role", "cache")
        await eventually(lambda: len(nodes[0].nodes_with_tag("role", "db-main")) == 1, "tags seen")
        await eventually(lambda: len(nodes[0].nodes_with_tag("role", "cache")) == 1, "tags seen")

        async def slow(q: Query) -> bytes:
            await asyncio.sleep(0.05)
            return q.payload + b" from " + q.origin.encode()

        for n in nodes:
            n.on_query("whoami", lambda q, n=n: n.node_id.encode())
            n.on_query("echo", slow)
        got = (
            await nodes[0]
            .query("whoami", b"?", tags={"role": r"db-.*"}, want_ack=True, timeout=1.0)
            .collect()
        )
        acks = sorted(r.node_id for r in got if r.ack)
        answers = sorted((r.node_id, r.payload) for r in got if not r.ack)
        assert acks == ["n1", "n2"]
        assert answers == [("n1", b"n1"), ("n2", b"n2")]
        assert all(isinstance(r, QueryResponse) and 0 <= r.rtt < 1.0 for r in got)
        assert all(r.payload == b"" for r in got if r.ack)
        # By id, async handlers, and the asker itself.
        got = await nodes[3].query("echo", b"hi", node_ids=["n0", "n3"], timeout=1.0).collect()
        assert sorted((r.node_id, r.payload) for r in got) == [
            ("n0", b"hi from n3"),
            ("n3", b"hi from n3"),
        ]
        c = nodes[3].stats().counters
        assert c["queries_sent"] == 1 and c["drop_reply"] == 0


async def test_a_failing_or_silent_handler_costs_only_its_answer(
    key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(key, 3) as (a, b, c):
        await formed([a, b, c])

        def broken(q: Query) -> bytes:
            raise RuntimeError("handler bug")

        a.on_query("q", lambda q: b"a")
        b.on_query("q", broken)
        c.on_query("q", lambda q: None)  # answers nothing
        caplog.set_level(logging.WARNING, logger="clustermember")
        got = await a.query("q", want_ack=True, timeout=1.0).collect()
        assert sorted((r.node_id, r.ack) for r in got) == [
            ("n0", False),
            ("n0", True),
            ("n1", True),
            ("n2", True),
        ]
        assert any("query handler for q raised" in r.getMessage() for r in caplog.records)
        # Unregistered: no answer, only the ack.
        a.on_query("q", None)
        got = await a.query("q", node_ids=["n0"], want_ack=True, timeout=0.5).collect()
        assert [(r.node_id, r.ack) for r in got] == [("n0", True)]


async def test_breaking_out_early_drops_the_rest(key: bytes) -> None:
    async with cluster(key, 2) as (a, b):
        await formed([a, b])
        b.on_query("q", lambda q: b"b")
        a.on_query("q", lambda q: b"a")
        results = a.query("q", timeout=1.0)
        async for r in results:
            assert r.payload in (b"a", b"b")
            break
        results.close()
        assert a._queries == {}  # nothing kept for the answers still to come
        await asyncio.sleep(0.3)
        assert a.stats().counters["replies_in"] >= 1


async def test_bad_queries_refused_with_what_to_do(key: bytes) -> None:
    async with cluster(key, 1, user_event_rate=3) as (a,):
        with pytest.raises(ValueError, match="printable ASCII"):
            a.query("two words")
        with pytest.raises(ValueError, match="not a regular expression"):
            a.query("q", tags={"role": "db("})
        with pytest.raises(ValueError, match="relay must be"):
            a.query("q", relay=6)
        with pytest.raises(ValueError, match="max_user_event_size"):
            a.query("q", bytes(1000), node_ids=["x" * 30] * 3)
        with pytest.raises(TypeError, match="payload must be bytes"):
            a.query("q", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="out of range"):
            a.query("q", timeout=0)
        with pytest.raises(TypeError, match="handler must be callable"):
            a.on_query("q", 5)  # type: ignore[arg-type]
        assert a.stats().counters["queries_sent"] == 0
        for _ in range(3):
            a.query("q", timeout=0.5).close()
        with pytest.raises(RateLimited, match="user_event_rate=3"):
            a.query("q")
        await a.leave()
        with pytest.raises(ClusterClosed, match="has left"):
            a.query("q")


def test_hostile_filters_select_nobody_and_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member runs the asker's filter on its event loop: expressions
    that could backtrack for seconds are never run, unreadable or deeply
    nested filters select nobody, and the asker is told before sending."""
    import re

    from clustermember import _queries
    from clustermember._queries import encode_filter, filter_matches, safe_pattern

    ran: list[str] = []
    real = re.fullmatch

    def spy(pattern: str, value: str) -> re.Match[str] | None:
        ran.append(pattern)
        return real(pattern, value)

    monkeypatch.setattr(_queries.re, "fullmatch", spy)
    tags = {"role": "database-primary"}
    assert filter_matches(b'{"tags":[["role","(?:.*){14}Z"]]}', "n1", tags) is False
    assert ran == []  # refused before it could run
    assert filter_matches(b"[" * 1000, "n1", tags) is False  # RecursionError inside
    assert filter_matches(b'{"tags":[["role",7]]}', "n1", tags) is False
    assert filter_matches(b"x" * 2000, "n1", tags) is False
    assert filter_matches(encode_filter({"role": "data.*-primary"}, None), "n1", tags)
    assert not filter_matches(encode_filter({"role": "db-.*"}, None), "n1", tags)
    assert ran == ["data.*-primary", "db-.*"]
    for bad in ("(a+)+b", "(?:.*){14}Z", "(a|aa)*", ".*.*.*.*Z", r"(a)\1", "a" * 257):
        assert not safe_pattern(bad), bad
        with pytest.raises(ValueError, match="too costly"):
            encode_filter({"role": bad}, None)
    for good in ("db-.*", "db-(main|replica)", "[a-z]+-[0-9]{1,3}", "x.*y.*z"):
        assert safe_pattern(good), good


async def test_a_large_answer_comes_on_a_stream(key: bytes) -> None:
    """An answer over max_user_event_size goes to the asker on a stream:
    every member's 200 kB answer arrives once, intact."""
    async with cluster(key, 3) as nodes:
        await formed(nodes)
        for n in nodes:
            n.on_query("dump", lambda q, n=n: n.node_id.encode() * 50_000)
        got = await nodes[0].query("dump", timeout=1.0).collect()
        assert sorted((r.node_id, r.payload) for r in got) == [
            (f"n{i}", f"n{i}".encode() * 50_000) for i in range(3)
        ]
        assert sum(n.stats().counters["replies_streamed"] for n in nodes) == 2
