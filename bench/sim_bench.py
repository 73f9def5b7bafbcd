"""Run the simulator's acceptance matrix and print a Markdown table.

Each row is one ``python -m clustermember.sim ... --json`` command, run as a
subprocess so its wall time is measured the same way a user would see it.

    python bench/sim_bench.py                 # the whole matrix
    python bench/sim_bench.py --max-nodes 1000 --wall-limit 600
    python bench/sim_bench.py --max-nodes 0 --detect-seeds 20   # first-detection average
    python bench/sim_bench.py --max-nodes 1000 --timelines --out bench/results/sim-<commit>.json

With ``--out`` every row's whole JSON result is kept, with the command that
made it, its wall time and peak memory, under the commit measured and this
script's own command line: bench/figures.py makes the documented tables from
these files, and tests/test_figures.py re-runs the cheap rows.

Runs of 10,000 nodes hold about 15 GB: they run under ``prlimit --as``
(``--mem-cap``, 17 GB by default) so that running out fails the run instead
of the machine, one at a time. Every scenario but converge forms its cluster
with ``--formation bootstrap`` (the CLI default), see docs/simulator.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit, dump_runs
from clustermember.sim import swim_first_detection_periods

#: (scenario, nodes, loss, extra CLI arguments) of the acceptance matrix.
MATRIX: list[tuple[str, int, float, list[str]]] = [
    *[(s, n, 0.0, []) for s in ("converge", "detect", "tag") for n in (100, 1000, 10000)],
    *[("falsepos", 100, p, ["--duration", "600"]) for p in (0.0, 0.05, 0.10)],
    ("partition", 1000, 0.0, ["--timeout", "600"]),
    ("falsepos", 10000, 0.0, ["--duration", "100"]),
]
#: Extra converge sizes for the trend when 10,000 does not finish (--converge-trend).
CONVERGE_TREND = [3000, 5000]

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
        "--wall",
        *extra,
    ]


def run_one(
    cmd: list[str], wall_limit: float, mem_cap: int = 0
) -> tuple[dict[str, Any] | None, float, str]:
    """Run cmd (under an address-space cap if mem_cap); its JSON result (or
    None), wall seconds, and a note (``peak X GB``, the peak RSS, when
    /usr/bin/time exists; why it failed if it did)."""
    prefix: list[str] = []
    if mem_cap and shutil.which("prlimit"):
        prefix = ["prlimit", f"--as={mem_cap}", "--"]
    timefile = None
    if os.path.exists("/usr/bin/time"):
        fd, timefile = tempfile.mkstemp()
        os.close(fd)
        prefix = ["/usr/bin/time", "-f", "%M", "-o", timefile, *prefix]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(prefix + cmd, capture_output=True, text=True, timeout=wall_limit)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, f"stopped after {wall_limit:.0f} s wall"
    wall = time.perf_counter() - t0
    note = ""
    if timefile:
        with open(timefile) as f:
            lines = f.read().split()
        os.unlink(timefile)
        if lines and lines[-1].isdigit():
            note = f"peak {int(lines[-1]) / 1e6:.2f} GB"
    if out.returncode not in (0, 1):
        why = out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
        return None, wall, f"{why} ({note})" if note else why
    return json.loads(out.stdout), wall, note


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
        if "core_cadence_quantiles_s" in mo:
            q = mo["core_cadence_quantiles_s"]
            parts.append(
                "core-cadence model t50/t99/t99.9 "
                + "/".join("—" if q[k] is None else f"{q[k]:.3f}" for k in ("t50", "t99", "t999"))
                + f" s, max CDF gap {mo['core_cadence_max_cdf_difference']:.3f}"
            )
    if r["scenario"] != "converge" and "settle_s" in m:
        parts.append(f"[{r.get('formation', 'join')}, settled {m['settle_s']:.1f} s]")
    return "; ".join(parts)


def detect_average(nodes: int, seeds: int, wall_limit: float, formation: str) -> str:
    """Mean first-suspect time over seeds, against SWIM's e/(e-1)."""
    vals = []
    for seed in range(1, seeds + 1):
        cmd = command("detect", nodes, 0.0, ["--formation", formation], seed)
        r, _, _ = run_one(cmd, wall_limit)
        if r and r["metrics"].get("first_suspect_periods") is not None:
            vals.append(r["metrics"]["first_suspect_periods"])
    if not vals:
        return f"detect N={nodes}: no result"
    se = statistics.stdev(vals) / len(vals) ** 0.5 if len(vals) > 1 else 0.0
    return (
        f"detect N={nodes} ({formation}), seeds 1..{seeds}: first suspicion after "
        f"{statistics.mean(vals):.2f} ± {se:.2f} (s.e.) "
        f"periods on average (median "
        f"{statistics.median(vals):.2f}, min {min(vals):.2f}, max {max(vals):.2f}); "
        f"SWIM's expected first detection {swim_first_detection_periods(nodes):.2f} periods"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the matrix and print the table; 0 when every row reached its outcome."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-nodes", type=int, default=10000)
    p.add_argument("--min-nodes", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wall-limit", type=float, default=3600.0, help="per command, seconds")
    p.add_argument("--detect-seeds", type=int, default=0, help="seeds for the average")
    p.add_argument("--detect-nodes", type=int, nargs="+", default=[100])
    p.add_argument("--formation", default="bootstrap", choices=["bootstrap", "join"])
    p.add_argument("--mem-cap", type=int, default=17_000_000_000, help="bytes, N >= 5000")
    p.add_argument("--converge-trend", action="store_true", help="also converge at 3k, 5k")
    p.add_argument("--only", nargs="*", help="run only these scenarios")
    p.add_argument("--timelines", action="store_true", help="keep the tag rows' timelines")
    p.add_argument("--out", type=Path, help="write every row's raw JSON result here")
    args = p.parse_args(argv)
    raw: dict[str, Any] = {
        "commit": commit(),
        "command": " ".join(["python bench/sim_bench.py", *(argv or sys.argv[1:])]),
        "runs": [],
    }

    matrix = list(MATRIX)
    if args.converge_trend:
        matrix += [("converge", n, 0.0, []) for n in CONVERGE_TREND]
    print(
        "| scenario | N | loss | outcome | measured (virtual time) | wall (formation) | command |"
    )
    print("|---|---|---|---|---|---|---|")
    all_ok = True
    for scenario, nodes, loss, extra in matrix:
        if not args.min_nodes <= nodes <= args.max_nodes:
            continue
        if args.only and scenario not in args.only:
            continue
        if scenario != "converge":
            extra = [*extra, "--formation", args.formation]
        if args.timelines and scenario == "tag":
            extra = [*extra, "--timelines"]
        cmd = command(scenario, nodes, loss, extra, args.seed)
        cap = args.mem_cap if nodes >= 5000 else 0
        r, wall, note = run_one(cmd, args.wall_limit, cap)
        shown = " ".join(["python", *cmd[1:]])
        if cap:
            shown = f"prlimit --as={cap} -- {shown}"
        raw["runs"].append({"cli": shown, "wall_s": round(wall, 1), "note": note, "result": r})
        if r is None:
            all_ok = False
            print(f"| {scenario} | {nodes} | {loss:g} | — | {note} | {wall:.1f} s | `{shown}` |")
        else:
            all_ok &= r["ok"]
            outcome = "reached" if r["ok"] else "NOT reached"
            form = r.get("wall_formation_seconds")
            walls = f"{wall:.1f} s"
            if form and scenario != "converge":
                walls += f" ({form:.1f} s)"
            print(
                f"| {scenario} | {nodes} | {loss:g} | {outcome} | {summary(r)} | "
                f"{walls}{', ' + note if note else ''} | `{shown}` |"
            )
        sys.stdout.flush()
    if args.out:
        args.out.write_text(dump_runs(raw))
    if args.detect_seeds:
        print()
        for n in args.detect_nodes:
            print(detect_average(n, args.detect_seeds, args.wall_limit, args.formation))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
