"""False failures under uniform loss, over many seeds: the simulator's
``falsepos`` scenario (no fault but the loss) for each profile, counting
the members declared failed (observer events) per seed::

    python bench/falsepos_seeds.py --nodes 20 50 --seeds 40 --out bench/results/falsepos-COMMIT.json

The profile study (bench/profile_study.py) runs one seed per size; this
says how often a profile convicts a live member at all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit, write_results  # noqa: E402
from clustermember.sim import run  # noqa: E402

#: name -> ClusterConfig overrides on the LAN profile.
PROFILES: dict[str, dict[str, Any] | None] = {
    "lan (default)": None,
    "lan, nack_confirms on": {"nack_confirms": True},
    "lan, no confirmation awaited": {"suspicion_confirmations": 0},
    "lan with Serf LAN's suspicion (mult 4, 2 confirmations)": {
        "suspicion_mult": 4,
        "suspicion_confirmations": 2,
    },
    "former lan: 0.5 s probes, mult 4, 2 confirmations": {
        "probe_interval": 0.5,
        "probe_timeout": 0.2,
        "suspicion_mult": 4,
        "suspicion_confirmations": 2,
    },
}


def count(
    cfg: dict[str, Any] | None, n: int, seeds: int, loss: float, watch: float
) -> dict[int, int]:
    """Members declared failed (observer events) per seed, where any were.

    >>> count(None, 20, 2, 0.1, 300.0)  # doctest: +SKIP
    {}
    """
    per = {}
    for s in range(1, seeds + 1):
        r = run("falsepos", nodes=n, seed=s, loss=loss, duration=watch, config=cfg)
        if r.metrics["to_failed"]:
            per[s] = int(r.metrics["to_failed"])
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--watch", type=float, default=300.0, help="simulated s per run")
    ap.add_argument("--out")
    args = ap.parse_args()
    measured = commit()
    t0 = time.perf_counter()
    rows = []
    for name, cfg in PROFILES.items():
        for n in args.nodes:
            per = count(cfg, n, args.seeds, args.loss, args.watch)
            rows.append({"profile": name, "config": cfg, "nodes": n, "failed_by_seed": per})
            print(
                f"{name:58} N={n:3} seeds with a false failure: {sorted(per.items())}", flush=True
            )
    write_results(
        args.out,
        "bench/falsepos_seeds.py",
        sys.argv[1:],
        measured,
        t0,
        rows,
        seeds=args.seeds,
        loss=args.loss,
        watch_s=args.watch,
    )


if __name__ == "__main__":
    main()
