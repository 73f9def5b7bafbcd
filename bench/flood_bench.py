"""A keyless outsider floods a cluster with QUIC Initials: what does it cost?

    python bench/flood_bench.py [--rates 6000,18000,36000,72000] [--seconds 15]
                                [--ports 60] [--sources 127.0.0.2] [--retry no,yes]
                                [--out FILE]
    python bench/flood_bench.py --report FILE      # the Markdown table of a run

Three agents (the LAN profile) on 127.0.0.1 form a cluster; then, for each
total rate, ``build/bench/cm_flood`` sends QUIC Initials from ``--ports``
source ports of ``--source`` (a loopback address the agents do not use),
spread evenly over the three agents, for ``--seconds``: half are correctly
protected Initials carrying only the first bytes of a ClientHello (a server
that admits one waits for the rest), half are random bytes under a valid
header. The flood holds no key. With ``--retry yes`` the sender also answers
each QUIC Retry the nodes send (as a sender that owns its address can), so
address validation admits it and only the per-address limits hold it. For
each source, Retry behaviour and rate the benchmark reports:

- ``suspicions`` / ``failures``: NodeSuspect / NodeFailed events about any
  member, at any agent, from the start of the flood until a settle period
  after it (every agent's event stream is recorded and checked intact);
- ``evicted`` and ``handshakes_ok``: established connections between members
  closed to make room, and new member handshakes (each is a connection that
  had to be remade);
- the transport's drop counters, summed over the agents, by name;
- ``cpu_pct``: the mean CPU of one agent over the flood, percent of one core;
  ``flood_cpu_pct`` that of the sender;
- ``bytes_in`` / ``bytes_out`` per agent over the flood.

The summary names the largest rate that gave 0 suspicions and 0 failures.
Output is one JSON object on stdout (and in ``--out``); progress on stderr.
Every process is killed by PID at the end. The test suite runs one rate of
this through :func:`run_flood` (tests/test_flood.py).
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
    mix: str = "both",
    follow_retry: bool = False,
    seed: int = 1,
    during: Callable[[], None] | None = None,
    during_at: float = 5.0,
    targets: list[str] | None = None,
) -> FloodResult:
    """Flood the running agents at ``rate`` Initials per second in total and
    report what it did, once a settle period after the flood has passed.

    ``spread`` sends from that many consecutive addresses from ``source``
    on. ``during``, if given, runs once ``during_at`` seconds into the flood
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


def table(doc: dict[str, Any]) -> str:
    """The Markdown table docs/benchmarks.md shows for one benchmark run."""
    rows = [
        "| source | answers Retries | Initials/s | suspicions / failures | evicted | "
        "member reconnects | Retries sent | refused per address | half-open refused "
        "| accepted (all failed) | garbage | half-open peak | agent CPU | "
        "bytes in / out per agent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        d = r["drops"]
        rows.append(
            f"| {r['source']} | {'yes' if r['follow_retry'] else 'no'} | {r['rate']:,.0f} "
            f"| {len(r['suspicions'])} / {len(r['failures'])} | {r['evicted']} "
            f"| {r['handshakes_ok']} | {d['net_retries_sent']:,} "
            f"| {d['net_drop_source_limit']:,} | {d['net_drop_half_open']:,} "
            f"| {d['net_conns_accepted']:,} | {d['net_drop_garbage']:,} | {r['half_open_max']} "
            f"| {r['cpu_pct']}% | {r['bytes_in'] / 2**20:.1f} MiB / "
            f"{r['bytes_out'] / 2**20:.2f} MiB |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rates", default="6000,18000,36000,72000")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--ports", type=int, default=60)
    p.add_argument("--sources", default="127.0.0.2", help="comma-separated source addresses")
    p.add_argument(
        "--retry", default="no,yes", help="no: ignore Retries; yes: answer them (comma-separated)"
    )
    p.add_argument("--out")
    p.add_argument("--report", metavar="FILE", help="print the Markdown table of a saved run")
    args = p.parse_args()
    if args.report:
        print(table(json.loads(Path(args.report).read_text())))
        return 0
    rates = [float(r) for r in args.rates.split(",")]
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
        for source in args.sources.split(","):
            for follow in (k == "yes" for k in args.retry.split(",")):
                for rate in rates:
                    say(
                        f"flood from {source} at {rate:.0f} Initials/s for {args.seconds:g} s"
                        f"{', answering Retries' if follow else ''}"
                    )
                    r = run_flood(
                        nodes,
                        rate=rate,
                        seconds=args.seconds,
                        ports=args.ports,
                        source=source,
                        follow_retry=follow,
                    )
                    say(
                        f"  suspicions {len(r.suspicions)}, failures {len(r.failures)}, "
                        f"evicted {r.evicted}, agent CPU {r.cpu_pct}%"
                    )
                    results.append(asdict(r))
    finally:
        agents.stop()
    clean = [r["rate"] for r in results if not r["suspicions"] and not r["failures"]]
    out = {
        "commit": commit,
        "command": " ".join(["python bench/flood_bench.py", *sys.argv[1:]]),
        "nodes": 3,
        "profile": "lan",
        "results": results,
        "largest_rate_without_suspicion": max(clean) if clean else None,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
