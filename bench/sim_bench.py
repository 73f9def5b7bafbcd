"""Run the simulator's acceptance matrix and print a Markdown table.

Each row is one ``python -m clustermember.sim ... --json`` command, run as a
subprocess so its wall time is measured the same way a user would see it.

    python bench/sim_bench.py                 # the whole matrix
    python bench/sim_bench.py --max-nodes 1000 --wall-limit 600
    python bench/sim_bench.py --detect-seeds 20   # first-detection average
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from clustermember.sim import swim_first_detection_periods

#: (scenario, nodes, loss, extra CLI arguments) of the acceptance matrix.
MATRIX: list[tuple[str, int, float, list[str]]] = [
    *[(s, n, 0.0, []) for s in ("converge", "detect", "tag") for n in (100, 1000, 10000)],
    *[("falsepos", 100, p, ["--duration", "600"]) for p in (0.0, 0.05, 0.10)],
    ("partition", 1000, 0.0, []),
    ("falsepos", 10000, 0.0, ["--duration", "100"]),
]

#: The metrics worth a column, per scenario.
HEADLINE: dict[str, list[str]] = {
    "converge": ["converge"],
    "detect": ["first_suspect", "first_failed", "all_failed"],
    "tag": ["t50", "t99", "t999", "t100"],
    "falsepos": [],
    "partition": ["heal"],
}


def command(scenario: str, nodes: int, loss: float, extra: list[str], seed: int) -> list[str]:
    """The CLI command for one matrix row."""
    return [
        sys.executable,
        "-m",
        "clustermember.sim",
        "--nodes",
        str(nodes),
        "--scenario",
        scenario,
        "--loss",
        str(loss),
        "--seed",
        str(seed),
        "--json",
        *extra,
    ]


def run_one(cmd: list[str], wall_limit: float) -> tuple[dict[str, Any] | None, float, str]:
    """Run cmd; its JSON result (or None), wall seconds, and a note."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=wall_limit)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, f"stopped after {wall_limit:.0f} s wall"
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        return None, wall, out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
    return json.loads(out.stdout), wall, ""


def summary(r: dict[str, Any]) -> str:
    """The row's headline numbers as 'name s (periods)'."""
    m = r["metrics"]
    parts = []
    for k in HEADLINE[r["scenario"]]:
        if m.get(k + "_s") is not None:
            parts.append(f"{k} {m[k + '_s']:.3f} s ({m[k + '_periods']:.2f} p)")
    if r["scenario"] == "falsepos":
        parts.append(
            f"alive→suspect {m['alive_to_suspect']}, →failed {m['to_failed']}, "
            f"refutations {m['refutations']}"
        )
    if r["scenario"] == "partition":
        parts.append(f"split at heal {m['nodes_split_at_heal']}/{r['nodes']}")
    if r["scenario"] == "tag" and r["model"]:
        mo = r["model"]
        parts.append(
            f"rounds to 99.9%: {mo['rounds_to_99.9_measured']} measured, "
            f"{mo['rounds_to_99.9_epidemic']} epidemic model"
        )
    return "; ".join(parts)


def detect_average(nodes: int, seeds: int, wall_limit: float) -> str:
    """Mean first-suspect time over seeds, against SWIM's e/(e-1)."""
    vals = []
    for seed in range(1, seeds + 1):
        r, _, _ = run_one(command("detect", nodes, 0.0, [], seed), wall_limit)
        if r and r["metrics"].get("first_suspect_periods") is not None:
            vals.append(r["metrics"]["first_suspect_periods"])
    if not vals:
        return f"detect N={nodes}: no result"
    return (
        f"detect N={nodes}, seeds 1..{seeds}: first suspicion after "
        f"{statistics.mean(vals):.2f} periods on average (median "
        f"{statistics.median(vals):.2f}, min {min(vals):.2f}, max {max(vals):.2f}); "
        f"SWIM's expected first detection {swim_first_detection_periods(nodes):.2f} periods"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the matrix and print the table; 0 when every row reached its outcome."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-nodes", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wall-limit", type=float, default=3600.0, help="per command, seconds")
    p.add_argument("--detect-seeds", type=int, default=0, help="seeds for the average")
    p.add_argument("--detect-nodes", type=int, default=100)
    args = p.parse_args(argv)

    print("| scenario | N | loss | outcome | measured (virtual time) | wall | command |")
    print("|---|---|---|---|---|---|---|")
    all_ok = True
    for scenario, nodes, loss, extra in MATRIX:
        if nodes > args.max_nodes:
            continue
        cmd = command(scenario, nodes, loss, extra, args.seed)
        r, wall, note = run_one(cmd, args.wall_limit)
        shown = " ".join(["python", *cmd[1:]])
        if r is None:
            all_ok = False
            print(f"| {scenario} | {nodes} | {loss:g} | — | {note} | {wall:.1f} s | `{shown}` |")
        else:
            all_ok &= r["ok"]
            outcome = "reached" if r["ok"] else "NOT reached"
            print(
                f"| {scenario} | {nodes} | {loss:g} | {outcome} | {summary(r)} | "
                f"{wall:.1f} s | `{shown}` |"
            )
        sys.stdout.flush()
    if args.detect_seeds:
        print()
        print(detect_average(args.detect_nodes, args.detect_seeds, args.wall_limit))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
