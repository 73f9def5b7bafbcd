"""Does gossip alone tell every member of an update? The simulator's ``tag``
scenario over many seeds: for each run, when the last member learned the
change (t100) and what the network carried. A member that gossip missed
waits for the next push-pull (15-30 s), so the runs whose t100 exceeds 1 s
are the ones gossip failed.

    python bench/gossip_reach.py --runs local:6,lan:50 --seeds 200 \\
        --out bench/results/gossip-reach-<commit>.json

The commit recorded is that of the ``clustermember`` package imported (run
another tree's with ``PYTHONPATH=<tree>``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # After PYTHONPATH, so that another tree's package can be measured.
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import clustermember
from bench.raw import dump_runs
from clustermember import sim


def package_commit() -> str:
    """The short commit of the tree the imported package comes from."""
    where = Path(clustermember.__file__).resolve().parent
    return subprocess.run(
        ["git", "-C", str(where), "describe", "--always", "--dirty", "--abbrev=7"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def measure(profile: str, nodes: int, seeds: int) -> dict[str, Any]:
    """One (profile, nodes) row: every seed's t100 and bytes, and a summary."""
    t100, sent = [], []
    for seed in range(1, seeds + 1):
        r = sim.run("tag", nodes=nodes, seed=seed, profile=profile)
        if r.metrics["nodes_seen"] != nodes - 1:
            raise SystemExit(f"{profile}:{nodes} seed {seed}: the tag never reached everyone")
        t100.append(r.metrics["t100_s"])
        sent.append(r.network["bytes_sent"])
    late = sorted(t for t in t100 if t > 1.0)
    return {
        "profile": profile,
        "nodes": nodes,
        "seeds": seeds,
        "t100_s": t100,
        "bytes_sent": sent,
        "late_runs": len(late),
        "late_t100_s": late,
        "max_t100_s": max(t100),
        "median_t100_s": statistics.median(t100),
        "mean_bytes": statistics.mean(sent),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="local:6,lan:50", help="profile:nodes,...")
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--out", type=Path, help="write the raw results here")
    a = p.parse_args(argv)
    rows = []
    for spec in a.runs.split(","):
        profile, nodes = spec.split(":")
        row = measure(profile, int(nodes), a.seeds)
        rows.append(row)
        print(
            f"{profile} N={row['nodes']}: {row['late_runs']} of {a.seeds} runs late (t100 > 1 s)"
            f" {[round(t, 2) for t in row['late_t100_s']]}; median t100"
            f" {row['median_t100_s']:.3f} s, max {row['max_t100_s']:.3f} s;"
            f" {row['mean_bytes']:.0f} bytes per run"
        )
    if a.out is not None:
        doc = {"commit": package_commit(), "command": "python " + " ".join(sys.argv), "runs": rows}
        a.out.write_text(dump_runs(doc))
        json.loads(a.out.read_text())  # what was written reads back
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
