"""Short cuts: some of 50 members cut off from the rest for a few seconds,
then back, on a clean network (the simulator, so every run is exact). Members
on one side never lose sight of one another, so none of them may declare
another on its side failed; the table counts those verdicts (observer
events) and the runs that had any::

    python bench/cut_sweep.py --out bench/results/cuts-COMMIT.json

Each run: bootstrap, 30 s settled, the first ``cut`` members cut off from
the rest for ``duration`` seconds, then two minutes more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit, write_results  # noqa: E402
from clustermember import _core  # noqa: E402

SETTLE_S = 30.0
AFTER_S = 120.0


def one(nodes: int, cut: int, duration: float, seed: int, loss: float) -> dict[str, Any]:
    """One run's verdicts: on the cut's own side, and across it.

    >>> one(10, 2, 1.0, 1, 0.0)["own_side_failed"]
    0
    """
    s = _core.Simulator(nodes, seed=seed, loss=loss)
    try:
        s.bootstrap()
        s.run_until(SETTLE_S)
        s.record_events(True)
        side = [1] * cut + [0] * (nodes - cut)
        s.partition(side, SETTLE_S, SETTLE_S + duration)
        s.run_until(SETTLE_S + duration + AFTER_S)
        failed = [e for e in s.events() if e[3] == "failed"]
        return {
            "cut": cut,
            "duration_s": duration,
            "seed": seed,
            "own_side_failed": sum(1 for e in failed if side[e[1]] == side[e[2]]),
            "other_side_failed": sum(1 for e in failed if side[e[1]] != side[e[2]]),
            "all_alive_at_end": s.alive_counts() == [nodes] * nodes,
        }
    finally:
        s.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--cuts", type=int, nargs="+", default=[1, 3, 10, 25])
    ap.add_argument("--durations", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 12.0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    measured = commit()
    t0 = time.perf_counter()
    rows = []
    for d in a.durations:
        for c in a.cuts:
            runs = [one(a.nodes, c, d, seed, a.loss) for seed in range(1, a.seeds + 1)]
            rows.extend(runs)
            bad = [r["own_side_failed"] for r in runs if r["own_side_failed"]]
            print(
                f"cut {c:>2} of {a.nodes} for {d:g} s: {len(bad)}/{len(runs)} runs "
                f"convict their own side ({sum(bad)} verdicts)",
                flush=True,
            )
    write_results(
        a.out,
        "bench/cut_sweep.py",
        argv,
        measured,
        t0,
        rows,
        nodes=a.nodes,
        loss=a.loss,
        settle_s=SETTLE_S,
        after_s=AFTER_S,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
