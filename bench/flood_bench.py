"""A keyless outsider floods a cluster with QUIC Initials: what does it cost?

    python bench/flood_bench.py [--rates 6000,18000,72000,288000] [--seconds 15]
                                [--scenarios one,one-retry,self,many,spoof]
                                [--mix all] [--out FILE]
    python bench/flood_bench.py --report FILE      # the Markdown table of a run

Three agents (the LAN profile) on 127.0.0.1 form a cluster; then, for each
scenario and total rate, ``build/bench/cm_flood`` sends QUIC Initials spread
evenly over the agents for ``--seconds``, in turn: correctly protected
Initials carrying only the first bytes of a ClientHello (a server that admits
one waits for the rest), random bytes under a valid header, and protected
Initials carrying a whole ClientHello TLS refuses. The flood holds no key.
The scenarios (``SCENARIOS``): ``one``, 60 ports of 127.0.0.2 ignoring the
nodes' Retries (as a sender forging its address must); ``one-retry``, the
same answering every Retry (as a sender owning its address can, which gets it
past address validation to the per-address limits); ``self``, the same from
127.0.0.1, the members' own address; ``many``, 400 addresses answering
Retries; ``spoof``, packets forging the third member's address and port (a
raw socket; root only), flooding the other two. For each the benchmark
reports:

- ``suspicions`` / ``failures``: NodeSuspect / NodeFailed events about any
  member, at any agent, from the start of the flood until a settle period
  after it (every agent's event stream is recorded and checked intact);
- ``evicted`` and ``handshakes_ok``: established connections between members
  closed to make room, and new member handshakes (each is a connection that
  had to be remade);
- the transport's counters, summed over the agents, by name;
- ``cpu_pct``: the mean CPU of one agent over the flood, percent of one core;
  ``flood_cpu_pct`` that of the sender;
- ``bytes_in`` / ``bytes_out`` per agent over the flood.

The summary names the largest rate sent that gave 0 suspicions and 0
failures. Output is one JSON object on stdout (and in ``--out``); progress on
stderr. Every process is killed by PID at the end. The test suite floods
through :func:`run_flood` (tests/test_flood.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agents import Agent, Agents

ROOT = Path(__file__).resolve().parent.parent
FLOOD = ROOT / "build" / "bench" / "cm_flood"
# After the flood stops: longer than the LAN profile's probe interval plus
# its timeouts, so a probe the flood delayed has been answered or suspected.
SETTLE = 5.0
# Transport counters reported, summed over the agents.
DROPS = (
    "net_retries_sent",
    "net_drop_retry_rate_limit",
    "net_drop_bad_token",
    "net_drop_source_limit",
    "net_drop_rate_limit",
    "net_drop_half_open",
    "net_half_open_displaced",
    "net_drop_pool_full",
    "net_drop_garbage",
    "net_conns_accepted",
    "net_handshakes_failed",
    "net_handshakes_refused",
    "net_packets_in",
)


def flood_binary() -> Path:
    """The flood sender, built with make if it is missing or stale."""
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), "build/bench/cm_flood"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return FLOOD


@dataclass
class FloodResult:
    """What one flood did to the cluster (see the module docstring)."""

    rate: float
    ports: int
    seconds: float
    source: str
    spread: int
    follow_retry: bool
    sent: int
    spoof_port: int = 0
    mix: str = "all"
    scenario: str = ""
    retries_followed: int = 0
    suspicions: list[tuple[str, str, int]] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)
    evicted: int = 0
    handshakes_ok: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    cpu_pct: float = 0.0
    flood_cpu_pct: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    half_open_max: int = 0
    per_agent: list[dict[str, int]] = field(default_factory=list)
    # Counter changes per agent from the flood's start until `during` ran.
    before_during: list[dict[str, int]] = field(default_factory=list)


def counters(agent: Agent) -> dict[str, int]:
    """The agent's raw counters."""
    return {k: v for k, v in agent.stats()["counters"].items() if isinstance(v, int)}


def run_flood(
    nodes: list[Agent],
    *,
    rate: float,
    seconds: float,
    ports: int = 60,
    source: str = "127.0.0.2",
    spread: int = 1,
    mix: str = "all",
    follow_retry: bool = False,
    spoof_port: int = 0,
    seed: int = 1,
    during: Callable[[], None] | None = None,
    during_at: float = 5.0,
    targets: list[str] | None = None,
) -> FloodResult:
    """Flood the running agents at ``rate`` Initials per second in total and
    report what it did, once a settle period after the flood has passed.

    ``spread`` sends from that many consecutive addresses from ``source``
    on; ``spoof_port`` forges ``source``:``spoof_port`` as the source of
    every packet (a raw socket: root only). ``mix`` picks the kinds of
    Initial (bench/cm_flood.c). ``during``, if given, runs once ``during_at`` seconds into the flood
    (a join or a restart that must succeed under it); the counters are read
    just before it, so a caller can tell what the flood alone did.
    ``targets`` (default: the agents' addresses) are the addresses flooded;
    ``nodes`` are the agents observed."""
    binary = flood_binary()
    before = [counters(a) for a in nodes]
    cpu0 = [a.cpu_seconds() for a in nodes]
    t0 = time.monotonic()
    cmd = [str(binary), "--source", source, "--ports", str(ports), "--spread", str(spread)]
    for addr in targets if targets is not None else [a.addr for a in nodes]:
        cmd += ["--target", addr]
    cmd += ["--rate", f"{rate / ports:.3f}", "--seconds", str(seconds), "--mix", mix]
    cmd += ["--seed", str(seed)] + (["--follow-retry"] if follow_retry else [])
    if spoof_port:
        cmd += ["--spoof-port", str(spoof_port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    half_open_max = 0
    flood_cpu = 0.0
    mid: list[dict[str, int]] = []
    try:
        # Sample the half-open count while the flood runs: the cap must hold
        # at every moment, not only at the end. WNOWAIT leaves the child
        # unreaped, so wait4 below can read its CPU time.
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            for a in nodes:
                half_open_max = max(half_open_max, counters(a).get("net_conns_half_open", 0))
            if during is not None and not mid and time.monotonic() - t0 >= during_at:
                mid = [counters(a) for a in nodes]
                during()
            time.sleep(0.5)
        if during is not None and not mid:
            raise RuntimeError(f"the flood ended before {during_at:g} s: nothing ran during it")
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        flood_cpu = usage.ru_utime + usage.ru_stime
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"cm_flood failed ({proc.returncode}): {err}")
    report = json.loads(out)
    t1 = time.monotonic()
    cpu1 = [a.cpu_seconds() for a in nodes]
    time.sleep(SETTLE)
    after = [counters(a) for a in nodes]
    res = FloodResult(
        rate=rate,
        ports=ports,
        seconds=seconds,
        source=source,
        spread=spread,
        follow_retry=follow_retry,
        sent=report["sent"],
        spoof_port=spoof_port,
        mix=mix,
        retries_followed=report["retries_followed"],
    )
    for a in nodes:
        a.assert_stream_intact()
        for e in a.since(t0, "NodeSuspect", "NodeFailed"):
            item = (a.node_id, e.node, e.incarnation)
            (res.suspicions if e.kind == "NodeSuspect" else res.failures).append(item)
    if mid:
        for b, m in zip(before, mid, strict=True):
            res.before_during.append({k: m.get(k, 0) - b.get(k, 0) for k in set(b) | set(m)})
    for b, c in zip(before, after, strict=True):
        d = {k: c.get(k, 0) - b.get(k, 0) for k in set(b) | set(c)}
        res.per_agent.append({k: v for k, v in sorted(d.items()) if v})
        res.evicted += d.get("net_conns_evicted", 0)
        res.handshakes_ok += d.get("net_handshakes_ok", 0)
        res.bytes_in += d.get("net_bytes_in", 0)
        res.bytes_out += d.get("net_bytes_out", 0)
        for k in DROPS:
            res.drops[k] = res.drops.get(k, 0) + d.get(k, 0)
    res.bytes_in //= len(nodes)
    res.bytes_out //= len(nodes)
    span = max(t1 - t0, 1e-3)
    res.cpu_pct = round(
        sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1, strict=True)) / len(nodes) / span * 100, 1
    )
    res.flood_cpu_pct = round(flood_cpu / span * 100, 1)
    res.half_open_max = half_open_max
    return res


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# The outsiders the benchmark runs, by name: where the flood comes from, and
# whether the sender answers the nodes' Retries.
SCENARIOS: dict[str, dict[str, Any]] = {
    "one": {"source": "127.0.0.2", "ports": 60, "spread": 1, "follow_retry": False},
    "one-retry": {"source": "127.0.0.2", "ports": 60, "spread": 1, "follow_retry": True},
    "self": {"source": "127.0.0.1", "ports": 60, "spread": 1, "follow_retry": True},
    "many": {"source": "127.0.1.1", "ports": 400, "spread": 400, "follow_retry": True},
    "spoof": {"source": "127.0.0.1", "ports": 1, "spread": 1, "follow_retry": False},
}
SCENARIO_TEXT = {
    "one": "one address, 60 ports, ignores Retries",
    "one-retry": "one address, 60 ports, answers Retries",
    "self": "the members' address, 60 ports, answers Retries",
    "many": "400 addresses, answers Retries",
    "spoof": "forges a member's address and port",
}


def table(doc: dict[str, Any]) -> str:
    """The Markdown table docs/benchmarks.md shows for one benchmark run.
    Runs saved before scenarios existed were all ``one``; counters they did
    not have read as 0."""
    rows = [
        "| outsider | Initials/s sent | suspicions / failures | evicted | member reconnects "
        "| Retries sent | refused per address | half-open refused / displaced "
        "| accepted (all failed) | TLS refused | garbage | half-open peak | agent CPU "
        "| bytes in / out per agent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        d = r["drops"]
        scenario = r.get("scenario", "one")
        rows.append(
            f"| {SCENARIO_TEXT.get(scenario, scenario)} "
            f"| {r['sent'] / r['seconds']:,.0f} "
            f"| {len(r['suspicions'])} / {len(r['failures'])} | {r['evicted']} "
            f"| {r['handshakes_ok']} | {d.get('net_retries_sent', 0):,} "
            f"| {d.get('net_drop_source_limit', 0):,} "
            f"| {d.get('net_drop_half_open', 0):,} / {d.get('net_half_open_displaced', 0):,} "
            f"| {d.get('net_conns_accepted', 0):,} | {d.get('net_handshakes_refused', 0):,} "
            f"| {d.get('net_drop_garbage', 0):,} | {r['half_open_max']} "
            f"| {r['cpu_pct']}% | {r['bytes_in'] / 2**20:.1f} MiB / "
            f"{r['bytes_out'] / 2**20:.2f} MiB |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rates", default="6000,18000,72000,288000")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument(
        "--scenarios",
        default="one,one-retry,self,many,spoof",
        help=f"comma-separated, of: {', '.join(SCENARIOS)}",
    )
    p.add_argument("--mix", default="all", help="kinds of Initial (cm_flood --mix)")
    p.add_argument("--out")
    p.add_argument("--report", metavar="FILE", help="print the Markdown table of a saved run")
    args = p.parse_args()
    if args.report:
        print(table(json.loads(Path(args.report).read_text())))
        return 0
    rates = [float(r) for r in args.rates.split(",")]
    names = args.scenarios.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    if "spoof" in names and os.geteuid() != 0:
        p.error("the spoof scenario forges source addresses with a raw socket: run as root")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="cm-flood-"))
    agents = Agents(tmp)
    results: list[dict[str, Any]] = []
    try:
        nodes = agents.cluster(3, profile="lan")
        for name in names:
            sc = dict(SCENARIOS[name])
            if name == "spoof":
                # The address and port of the third member, sent to the others.
                sc["spoof_port"] = int(nodes[2].addr.rsplit(":", 1)[1])
            for rate in rates:
                say(f"{SCENARIO_TEXT[name]}: {rate:.0f} Initials/s for {args.seconds:g} s")
                r = run_flood(
                    nodes if name != "spoof" else nodes[:2],
                    rate=rate,
                    seconds=args.seconds,
                    mix=args.mix,
                    **sc,
                )
                r.scenario = name
                say(
                    f"  suspicions {len(r.suspicions)}, failures {len(r.failures)}, "
                    f"evicted {r.evicted}, agent CPU {r.cpu_pct}%"
                )
                results.append(asdict(r))
    finally:
        agents.stop()
    clean = [r["sent"] / r["seconds"] for r in results if not r["suspicions"] and not r["failures"]]
    out = {
        "commit": commit,
        "command": " ".join(["python bench/flood_bench.py", *sys.argv[1:]]),
        "nodes": 3,
        "profile": "lan",
        "results": results,
        "largest_rate_without_suspicion": round(max(clean)) if clean else None,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
