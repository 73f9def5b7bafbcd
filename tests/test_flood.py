"""A keyless outsider floods a running cluster with QUIC Initials.

Three agents (the LAN profile) on 127.0.0.1; the flood comes from 60 source
ports of another loopback address, 300 Initials per second from each (18,000
a second in all) for 15 s: half correctly protected Initials carrying only
the first bytes of a ClientHello, half random payload under a valid header
(bench/cm_flood.c). Nothing in it holds the key. What must hold
(docs/security.md, "What an outsider can and cannot do"):

- no member is suspected or declared failed, by anyone, during the flood or
  a settle period after it (every agent's event stream is checked intact);
- every established connection survives: none is evicted, and no member
  has to open a new one;
- half-open connections never exceed their cap, and the flood's packets are
  counted under the names that say why they were refused.

The figures (CPU, bytes, the largest rate survived) are the benchmark's,
bench/flood_bench.py; this test asserts outcomes only.
"""

from __future__ import annotations

import sys

import pytest

from bench.agents import Agents
from bench.flood_bench import run_flood
from clustermember import _core

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux loopback")

RATE = 18000.0  # 60 ports x 300 Initials/s
SECONDS = 15.0
PORTS = 60
# Counted per agent beside the flood: the members' own packets over the
# flood and the settle period (a few hundred at the LAN profile's rates).
MEMBER_PACKETS = 2000
# Every way the transport answers or refuses an Initial, each under its name.
OUTCOMES = (
    "net_retries_sent",
    "net_drop_retry_rate_limit",
    "net_drop_bad_token",
    "net_drop_rate_limit",  # includes net_drop_source_limit
    "net_drop_half_open",
    "net_drop_pool_full",
    "net_drop_garbage",
    "net_conns_accepted",
)


@pytest.mark.parametrize("follow_retry", [False, True], ids=["ignores-retry", "answers-retry"])
def test_keyless_initial_flood_costs_members_nothing(agents: Agents, follow_retry: bool) -> None:
    """The sender ignores the Retries it gets (a spoofer must), or answers
    them as a sender that owns its address can; either way, nothing."""
    nodes = agents.cluster(3, profile="lan")
    r = run_flood(
        nodes,
        rate=RATE,
        seconds=SECONDS,
        ports=PORTS,
        source="127.0.0.2",
        follow_retry=follow_retry,
    )
    detail = f"per agent: {r.per_agent}"

    assert r.sent >= RATE * SECONDS * 0.9, f"the flood sent only {r.sent} Initials"
    assert not r.suspicions, f"members suspected during the flood: {r.suspicions}; {detail}"
    assert not r.failures, f"members declared failed: {r.failures}; {detail}"
    assert r.evicted == 0, f"established connections evicted: {r.evicted}; {detail}"
    assert r.handshakes_ok == 0, f"members had to reconnect {r.handshakes_ok} times; {detail}"

    cap = _core.net_defaults()["max_half_open"]
    assert 0 < r.half_open_max <= cap, f"half-open peak {r.half_open_max}, cap {cap}"
    for d in r.per_agent:
        # Every Initial that reached the node is counted under exactly one
        # name saying what became of it; what is left over is member traffic.
        counted = sum(d.get(k, 0) for k in OUTCOMES)
        assert 0 <= d["net_packets_in"] - counted < MEMBER_PACKETS, (OUTCOMES, d)
        # Address validation engaged; random payloads that got past it never
        # decrypted and are garbage, not accepted connections.
        assert d.get("net_retries_sent", 0) > 0, d
        assert d.get("net_drop_garbage", 0) > 0, d
        assert d.get("net_conns_accepted", 0) == d.get("net_handshakes_failed", 0), d
        assert d.get("net_conns_accepted", 0) < d["net_packets_in"] // 100, d
    if follow_retry:
        # Validated addresses meet the per-address limit and half-open share.
        assert r.drops["net_drop_source_limit"] > 0, detail
        assert r.retries_followed > 0, r
