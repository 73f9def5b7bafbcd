"""What a partition costs the protocol core at scale, in the simulator.

A cluster of N nodes is formed (bootstrap), runs healthy for a while, then
half of it is cut off from the other half. Both halves keep running: every
node suspects, then fails, then keeps trying to reconnect to the members on
the other side. The wall time per simulated second is measured in chunks
through both windows; the figure of merit is the ratio of the partitioned
window's cost to the healthy one's, overall and in the worst chunk (the
suspicion storm right after the cut).

    python bench/scale_bench.py --nodes 10000 --out bench/results/scale-<commit>.json
    python bench/scale_bench.py --report bench/results/scale-<commit>.json

A 10,000-node run holds about 12 GB; run it alone, under a memory cap
(``prlimit --as=17000000000 -- python bench/scale_bench.py ...``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clustermember._core import Simulator
from clustermember.sim._scenarios import LATENCY

ROOT = Path(__file__).resolve().parent.parent
#: Node 0's member counts worth a column.
STATES = ("alive", "suspect", "failed")


def say(msg: str) -> None:
    """Progress on stderr, so stdout stays one JSON document."""
    print(msg, file=sys.stderr, flush=True)


def msgs_in(sim: Simulator, nodes: int) -> int:
    """Messages (gossip items, probes, acks) every node's core has taken in."""
    return sum((sim.node_stats(i) or {}).get("msgs_in", 0) for i in range(nodes))


def window(
    sim: Simulator, nodes: int, name: str, seconds: float, chunk: float
) -> list[dict[str, Any]]:
    """Run seconds of simulated time in chunks; one record per chunk."""
    rows: list[dict[str, Any]] = []
    done = 0.0
    while done < seconds - 1e-9:
        step = min(chunk, seconds - done)
        before = sim.stats()
        msgs_before = msgs_in(sim, nodes)
        t0 = time.perf_counter()
        sim.run_for(step)
        wall = time.perf_counter() - t0
        after = sim.stats()
        done += step
        st = sim.node_stats(0) or {}
        row = {
            "window": name,
            "sim_end_s": round(sim.now(), 3),
            "sim_s": step,
            "wall_s": round(wall, 4),
            "wall_per_sim_s": round(wall / step, 4),
            "datagrams": after["datagrams_sent"] - before["datagrams_sent"],
            "streams": after["streams_sent"] - before["streams_sent"],
            # Every message taken in against the membership events (state
            # changes) they caused: the redundancy of the gossip.
            "msgs_in": msgs_in(sim, nodes) - msgs_before,
            "events": after["events"] - before["events"],
            **{f"node0_{k}": st.get(k) for k in STATES},
        }
        say(
            f"{name:8} t={row['sim_end_s']:8.1f} wall/s {row['wall_per_sim_s']:8.3f} "
            + " ".join(f"{k} {row['node0_' + k]}" for k in STATES)
        )
        rows.append(row)
    return rows


def run(nodes: int, healthy: float, split: float, chunk: float, seed: int) -> dict[str, Any]:
    """Form, run healthy, partition in halves; the per-chunk costs and ratios."""
    sim = Simulator(nodes, seed=seed, loss=0.0, latency=LATENCY, profile="lan")
    t0 = time.perf_counter()
    sim.bootstrap()
    if not sim.run_until_condition("converged", 0.0):
        raise SystemExit("the cluster did not form")
    sim.run_for(5.0)  # let the formation's broadcasts drain
    formation = time.perf_counter() - t0
    rows = window(sim, nodes, "healthy", healthy, chunk)
    sides = [0] * (nodes // 2) + [1] * (nodes - nodes // 2)
    cut = sim.now()
    # The partition outlasts the window: only its cost is measured here.
    sim.partition(sides, cut, cut + split + 3600.0)
    rows += window(sim, nodes, "split", split, chunk)
    h = [r["wall_per_sim_s"] for r in rows if r["window"] == "healthy"]
    s = [r for r in rows if r["window"] == "split"]
    healthy_cost = sum(r["wall_s"] for r in rows if r["window"] == "healthy") / healthy
    split_cost = sum(r["wall_s"] for r in s) / split
    worst = max(s, key=lambda r: r["wall_per_sim_s"])
    return {
        "nodes": nodes,
        "seed": seed,
        "profile": "lan",
        "healthy_s": healthy,
        "split_s": split,
        "chunk_s": chunk,
        "formation_wall_s": round(formation, 2),
        "healthy_wall_per_sim_s": round(healthy_cost, 4),
        "healthy_chunk_median": round(statistics.median(h), 4),
        "split_wall_per_sim_s": round(split_cost, 4),
        "split_worst_chunk": worst["wall_per_sim_s"],
        "split_worst_chunk_end_s": round(worst["sim_end_s"] - cut, 3),
        "ratio": round(split_cost / healthy_cost, 3),
        "ratio_worst_chunk": round(worst["wall_per_sim_s"] / healthy_cost, 3),
        "node0_at_end": {k: s[-1]["node0_" + k] for k in STATES},
        "chunks": rows,
    }


def cost_table(doc: dict[str, Any]) -> str:
    """The Markdown table of a saved run's wall-time costs, one row per
    cluster size."""
    out = [
        "| nodes | healthy: wall s per simulated s | split: wall s per simulated s "
        "(ratio) | worst 5-s chunk (ratio, when) | last half of the split (ratio) "
        "| node 0 at the end |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        end = r["node0_at_end"]
        late = [c for c in r["chunks"] if c["window"] == "split"]
        late = late[len(late) // 2 :]
        late_cost = sum(c["wall_s"] for c in late) / sum(c["sim_s"] for c in late)
        out.append(
            f"| {r['nodes']:,} | {r['healthy_wall_per_sim_s']:.3f} | "
            f"{r['split_wall_per_sim_s']:.3f} ({r['ratio']:.2f}×) | "
            f"{r['split_worst_chunk']:.3f} ({r['ratio_worst_chunk']:.2f}×, "
            f"{r['split_worst_chunk_end_s']:.0f} s after the cut) | "
            f"{late_cost:.3f} ({late_cost / r['healthy_wall_per_sim_s']:.2f}×) | "
            f"{end['alive']:,} alive, {end['suspect']:,} suspect, {end['failed']:,} failed |"
        )
    return "\n".join(out)


def table(doc: dict[str, Any]) -> str:
    """The Markdown tables of a saved run: its costs, what the wall time
    bought (when the run counted messages), the commit and command."""
    out = [cost_table(doc), "", "\n".join(receipts(doc)), ""]
    out.append(f"Commit {doc['commit']}; `{doc['command']}`.")
    return "\n".join(out)


def receipts(doc: dict[str, Any]) -> list[str]:
    """What the wall time buys: messages taken in, per node and simulated
    second, and the membership events (state changes) among them, healthy
    and in the first 30 s of the split; and the wall time per message."""
    out = [
        "| nodes | window | messages in per node per simulated s | events per node "
        "| messages per event | wall µs per message |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        if "msgs_in" not in r["chunks"][0]:
            continue
        n = r["nodes"]
        split = [c for c in r["chunks"] if c["window"] == "split"]
        first = [c for c in split if c["sim_end_s"] - split[0]["sim_end_s"] < 30 - 1e-9]
        for name, rows in (
            ("healthy", [c for c in r["chunks"] if c["window"] == "healthy"]),
            ("first 30 s of the split", first),
        ):
            sim_s = sum(c["sim_s"] for c in rows)
            msgs = sum(c["msgs_in"] for c in rows)
            events = sum(c["events"] for c in rows)
            wall = sum(c["wall_s"] for c in rows)
            per_event = f"{msgs / events:,.0f}" if events else "–"
            out.append(
                f"| {n:,} | {name} | {msgs / n / sim_s:,.0f} | {events / n:,.0f} | "
                f"{per_event} | {wall / msgs * 1e6:.2f} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="10000", help="comma-separated cluster sizes")
    p.add_argument("--healthy", type=float, default=30.0, help="simulated seconds healthy")
    p.add_argument("--split", type=float, default=90.0, help="simulated seconds partitioned")
    p.add_argument("--chunk", type=float, default=5.0, help="simulated seconds per measurement")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="write the JSON result here too")
    p.add_argument("--report", metavar="FILE", help="print the Markdown table of a saved run")
    args = p.parse_args(argv)
    if args.report:
        print(table(json.loads(Path(args.report).read_text())))
        return 0
    sizes = [int(x) for x in args.nodes.split(",")]
    if any(n < 2 for n in sizes) or min(args.healthy, args.split, args.chunk) <= 0:
        p.error("sizes must be at least 2 and every duration positive")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    runs = []
    for n in sizes:
        say(f"== {n} nodes")
        runs.append(run(n, args.healthy, args.split, args.chunk, args.seed))
    doc = {
        "commit": commit,
        "command": " ".join(["python bench/scale_bench.py", *(argv or sys.argv[1:])]),
        "runs": runs,
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    say(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
