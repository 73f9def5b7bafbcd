"""Why a node was suspected: ClusterMembership.history() against a live
cluster whose member is cut off by the transport's fault hook (every packet
between it and the others blocked, streams too)."""

from __future__ import annotations

import json
import secrets
import time

import pytest
from _cluster import cluster, state_of
from conftest import eventually

from clustermember import ClusterConfig, HistoryEntry, MemberState, UnknownMember


@pytest.mark.asyncio
async def test_history_names_the_accuser_and_the_probe_that_failed() -> None:
    key = secrets.token_bytes(32)
    async with cluster(key, 4) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 4 for n in nodes), "everyone sees everyone")
        observers, victim = nodes[:3], nodes[3]
        # Three probe rounds (three peers each): every observer has had an
        # answer from n3 itself, whose round trip its history then shows.
        await eventually(
            lambda: all(o.stats().flat()["protocol_probe_acks"] >= 9 for o in observers),
            "three probe rounds",
        )
        assert all(o.history("n3") == [] for o in observers)
        # The health table, as n0 sees the others after those rounds (it is
        # republished with the round trips at most every 2 s).
        await eventually(
            lambda: all(h.samples > 0 for h in observers[0].peer_health()),
            "n0 holds round trips to everyone",
        )
        now = time.monotonic()
        health = observers[0].peer_health()
        assert [h.id for h in health] == ["n1", "n2", "n3"]
        for h in health:
            assert h.state is MemberState.ALIVE and h.connected
            assert 1 <= h.samples <= 16
            assert h.rtt_median is not None and h.rtt_p90 is not None
            assert h.rtt_max is not None
            assert 0 < h.rtt_median <= h.rtt_p90 <= h.rtt_max < 1.0
            assert h.last_heard is not None and now - 60 < h.last_heard <= now
            json.dumps(h.to_dict())
        assert observers[0].explain("n3").splitlines()[1] == (
            "no suspicion, failure or leave of n3 seen by n0"
        )
        victim.inject_faults(block=[o.addr for o in observers])
        await eventually(
            lambda: all(state_of(o, "n3") is not MemberState.ALIVE for o in observers),
            "every observer suspects n3",
        )
        victim.inject_faults()
        await eventually(
            lambda: all(state_of(o, "n3") is MemberState.ALIVE for o in observers),
            "n3 refutes and is alive again everywhere",
            timeout=60,
        )
        # The history reaches the snapshot with the recovery's event.
        probers = 0
        for o in observers:
            hist = o.history("n3")
            assert all(isinstance(h, HistoryEntry) for h in hist)
            first = hist[0]
            assert first.event == "suspect" and first.state is MemberState.SUSPECT
            assert first.by is not None and first.by != "n3"
            if first.source == "probe":
                # This node's own probe failed: it names itself, and the
                # helpers it asked, none of which could reach n3 either.
                probers += 1
                assert first.by == o.local_node.id
                assert first.helpers >= 1
                assert first.rtt is not None and 0 < first.rtt < 1.0
            else:
                assert first.source in ("gossip", "pushpull")
                assert first.by != o.local_node.id
            last = hist[-1]
            assert last.event == "recovered" and last.source == "alive"
            assert last.incarnation > first.incarnation
            assert [h.monotonic for h in hist] == sorted(h.monotonic for h in hist)
            json.dumps([h.to_dict() for h in hist])
            # The same history read aloud and drawn.
            me = o.local_node.id
            head, *lines = o.explain("n3").splitlines()
            assert head.startswith("n3 is alive (incarnation ") and f"as {me} sees it" in head
            assert len(lines) >= len(hist)  # entries may have come since
            assert lines[0].split()[3:5] == ["suspect", "by"]
            assert f"by {first.by} (" in lines[0]
            if first.source == "probe":
                assert f"its own probe: no ack; {first.helpers} helper" in lines[0]
            timeline = o.history_timeline("n3")
            assert timeline.member_id == "n3" and timeline.observer == me
            assert [b.state for b in timeline.bands][0] == "suspect"
            assert timeline.bands[-1].state == "alive"
            assert "<svg" in timeline._repr_svg_()
        assert probers >= 1
        with pytest.raises(UnknownMember):
            observers[0].history("nobody")
        with pytest.raises(UnknownMember):
            observers[0].explain("nobody")
        with pytest.raises(UnknownMember):
            observers[0].history_timeline("nobody")
        with pytest.raises(TypeError):
            observers[0].history(3)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_history_names_the_helpers_whose_nacks_confirmed() -> None:
    """With nack_confirms on, a prober whose helpers both nacked (n3 cut
    off, four nodes: two helpers each) has its suspicion confirmed at once
    by the first of them, recorded as a nack and read aloud so. Probes every
    2 s with a 0.5-s timeout: a helper nacks 0.5 s after it is asked, a
    second before the asker's verdict, so a loaded machine still has it.
    Only the records from the cut on are read: on a loaded machine a probe
    may time out before it, and that suspicion, refuted, is history too."""
    key = secrets.token_bytes(32)
    timing = {"probe_interval": 2.0, "probe_timeout": 0.5, "indirect_checks": 2}
    async with cluster(key, 4, nack_confirms=True, **timing) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 4 for n in nodes), "everyone sees everyone")
        observers, victim = nodes[:3], nodes[3]
        cut = time.monotonic()
        victim.inject_faults(block=[o.addr for o in observers])
        await eventually(
            lambda: all(state_of(o, "n3") is MemberState.FAILED for o in observers),
            "every observer has n3 failed",
            timeout=60,
        )
        victim.inject_faults()
        await eventually(
            lambda: all(state_of(o, "n3") is MemberState.ALIVE for o in observers),
            "n3 is alive again everywhere",
            timeout=60,
        )
        checked = 0
        for o in observers:
            hist = [h for h in o.history("n3") if h.monotonic >= cut]
            first = hist[0]
            if first.source != "probe" or first.nacks < 2:
                # Its probe did not raise the suspicion, or a helper's nack
                # came late: no nack may confirm it.
                assert all(h.source != "nack" for h in hist)
                continue
            checked += 1
            me = o.local_node.id
            conf = hist[1]
            assert (conf.event, conf.source) == ("confirmed", "nack")
            assert conf.by not in (None, me, "n3")
            assert (conf.helpers, conf.nacks, conf.confirmations) == (2, 2, 1)
            assert conf.monotonic == first.monotonic
            # explain reads the whole history aloud, oldest first, after
            # its head line: the confirmation's line is at its place in it.
            line = o.explain("n3").splitlines()[1 + o.history("n3").index(conf)]
            assert f"confirmed  by {conf.by} among the helpers of this node's probe" in line
            assert "(2 of 2 helpers asked could not reach it either; 2 accusers so far)" in line
        # Every observer probes n3 within a few rounds of four nodes; the
        # first to fail raises the suspicion with both helpers live.
        assert checked >= 1


def test_history_setting_is_checked() -> None:
    from clustermember import ConfigError

    assert ClusterConfig(insecure=True).history == 8
    with pytest.raises(ConfigError, match="history"):
        ClusterConfig(insecure=True, history=65)
    with pytest.raises(ConfigError, match="history"):
        ClusterConfig(insecure=True, history=-1)
