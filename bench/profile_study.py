"""Timing profiles in the simulator: detection against bytes and false alarms.

Which probe interval and suspicion multiplier could detect a failure in half
Serf LAN's time without sending more than Serf LAN? Each profile runs the
deterministic simulator's ``detect`` scenario over several seeds (the time
until every survivor lists a killed node failed) and ``falsepos`` with
uniform loss (suspicions and false failures over a watch window, no fault
but the loss), and reports the protocol's own bytes per node per second
in the healthy run (QUIC's overhead is not simulated: bench/engine_bench.py
measures it)::

    python bench/profile_study.py --nodes 20 50 --seeds 8 --out bench/results/profiles-COMMIT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit  # noqa: E402
from clustermember.sim import run  # noqa: E402

# Serf LAN's probing: memberlist's DefaultLANConfig.
_ONE_S = {"probe_interval": 1.0, "probe_timeout": 0.5}
#: name -> ClusterConfig overrides on the LAN profile.
PROFILES: dict[str, dict[str, float]] = {
    "lan (default)": {},
    "1 s probes, suspicion_mult 4 (Serf LAN's)": _ONE_S,
    **{f"1 s probes, suspicion_mult {k}": {**_ONE_S, "suspicion_mult": k} for k in (3, 2, 1)},
}
LOSSES = (0.05, 0.10)


def study(name: str, cfg: dict[str, float], n: int, seeds: int, watch: float) -> dict[str, Any]:
    """One profile at one size: detection over seeds, false alarms under loss."""
    detect = [run("detect", nodes=n, seed=s, config=cfg or None) for s in range(1, seeds + 1)]
    healthy = run("falsepos", nodes=n, seed=1, config=cfg or None, duration=watch)
    lossy = {
        str(loss): run("falsepos", nodes=n, seed=1, loss=loss, config=cfg or None, duration=watch)
        for loss in LOSSES
    }
    times = [r.metrics["all_failed_s"] for r in detect]
    return {
        "profile": name,
        "config": cfg,
        "nodes": n,
        "detect_all_s": times,
        "detect_all_median_s": statistics.median(t for t in times if t is not None),
        "false_failures_in_detect": sum(r.metrics["false_failures"] for r in detect),
        "bytes_per_node_s": healthy.network["bytes_sent"] / n / watch,
        "falsepos": {
            loss: {
                "suspicions": r.metrics["alive_to_suspect"],
                "failures": r.metrics["to_failed"],
                "refutations": r.metrics["refutations"],
            }
            for loss, r in lossy.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--watch", type=float, default=300.0, help="falsepos window, simulated s")
    ap.add_argument("--out")
    args = ap.parse_args()
    measured = commit()
    t0 = time.perf_counter()
    rows = []
    for name, cfg in PROFILES.items():
        for n in args.nodes:
            r = study(name, cfg, n, args.seeds, args.watch)
            rows.append(r)
            fp = ", ".join(
                f"{loss}: {v['suspicions']} / {v['failures']}" for loss, v in r["falsepos"].items()
            )
            print(
                f"{name:45} N={n:3} detect {r['detect_all_median_s']:.2f} s "
                f"bytes {r['bytes_per_node_s']:.0f}/s  loss susp/fail {fp}",
                flush=True,
            )
    doc = {
        "commit": measured,
        "command": " ".join(["python bench/profile_study.py", *sys.argv[1:]]),
        "watch_s": args.watch,
        "wall_s": round(time.perf_counter() - t0, 1),
        "results": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
