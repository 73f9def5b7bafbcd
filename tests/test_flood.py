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


def test_keyless_initial_flood_costs_members_nothing(agents: Agents) -> None:
    nodes = agents.cluster(3, profile="lan")
    r = run_flood(nodes, rate=RATE, seconds=SECONDS, ports=PORTS, source="127.0.0.2")
    detail = f"per agent: {r.per_agent}"

    assert r.sent >= RATE * SECONDS * 0.9, f"the flood sent only {r.sent} Initials"
    assert not r.suspicions, f"members suspected during the flood: {r.suspicions}; {detail}"
    assert not r.failures, f"members declared failed: {r.failures}; {detail}"
    assert r.evicted == 0, f"established connections evicted: {r.evicted}; {detail}"
    assert r.handshakes_ok == 0, f"members had to reconnect {r.handshakes_ok} times; {detail}"

    cap = _core.net_defaults()["max_half_open"]
    assert r.half_open_max <= cap, f"half-open connections reached {r.half_open_max} > {cap}"
    # Random payloads never decrypt: counted as garbage, never as accepted
    # connections or failed handshakes.
    assert r.drops["net_drop_garbage"] > 0, detail
    # One address's share: most of the flood is refused by the per-address
    # limit before it costs a connection.
    refused = r.drops["net_drop_source_limit"]
    assert refused > r.sent // 2, f"only {refused} of {r.sent} refused per source; {detail}"
    assert r.drops["net_conns_accepted"] < r.sent // 10, detail
