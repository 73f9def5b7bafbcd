"""Timing profiles in the simulator: detection against bytes and false alarms.

Which probe interval and suspicion multiplier could detect a failure in half
Serf LAN's time without sending more than Serf LAN? Each profile runs the
deterministic simulator's ``detect`` scenario over several seeds (the time
until every survivor lists a killed node failed) and ``falsepos`` with
uniform loss (suspicions and false failures over a watch window, no fault
but the loss), and reports the protocol's own bytes per node per second
in the healthy run (QUIC's overhead is not simulated: bench/engine_bench.py
measures it), and the longest pause of one node that no member takes for
a failure (seeds 1-3, in steps of a quarter second)::

    python bench/profile_study.py --nodes 20 50 --seeds 8 --out bench/results/profiles-COMMIT.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit, write_results  # noqa: E402
from clustermember import ClusterConfig  # noqa: E402
from clustermember._core import Simulator  # noqa: E402
from clustermember.sim import run  # noqa: E402
from clustermember.sim._scenarios import LATENCY  # noqa: E402

# Serf LAN's probing: memberlist's DefaultLANConfig.
_ONE_S = {"probe_interval": 1.0, "probe_timeout": 0.5}
#: name -> ClusterConfig overrides on the LAN profile. A multiplier alone
#: awaits memberlist's mult - 2 confirmations (none under 3) and, as in
#: memberlist, counts no helper's nack among them. Every profile names all
#: five settings, so a change of the default moves no row; the one named the
#: default is checked against it (default_row_is_the_default).
DEFAULT = "lan (default): 1 s probes, suspicion_mult 1, 1 confirmation"
PROFILES: dict[str, dict[str, float]] = {
    DEFAULT: {
        **_ONE_S,
        "suspicion_mult": 1,
        "suspicion_confirmations": 1,
        "nack_confirms": False,
    },
    "lan with nack_confirms on (two helpers' nacks are a confirmation)": {
        **_ONE_S,
        "suspicion_mult": 1,
        "suspicion_confirmations": 1,
        "nack_confirms": True,
    },
    "former lan: 0.5 s probes, suspicion_mult 4, 2 confirmations": {
        "probe_interval": 0.5,
        "probe_timeout": 0.2,
        "suspicion_mult": 4,
        "suspicion_confirmations": 2,
        "nack_confirms": False,
    },
    **{
        f"1 s probes, suspicion_mult {m}" + (" (Serf LAN's)" if m == 4 else ""): {
            **_ONE_S,
            "suspicion_mult": m,
            "suspicion_confirmations": max(0, m - 2),
            "nack_confirms": False,
        }
        for m in (4, 3, 2, 1)
    },
}
LOSSES = (0.05, 0.10)
#: Pauses tried, shortest first, and the seeds each is tried with.
PAUSES = [0.25 * i for i in range(1, 81)]
PAUSE_SEEDS = (1, 2, 3)


def pause_survived(cfg: dict[str, float], n: int, seed: int) -> float:
    """The longest pause in PAUSES, below the first that some member took for
    a failure, of one node (chosen by the seed) in a settled cluster.

    >>> pause_survived({}, 20, 1)  # doctest: +SKIP
    3.0
    """
    victim = random.Random(seed).randrange(1, n)
    survived = 0.0
    for p in PAUSES:
        sim = Simulator(n, seed=seed, latency=LATENCY, config=cfg or None)
        try:
            sim.bootstrap()
            sim.run_for(5.0)
            sim.reset_event_counts()
            sim.pause(victim, p)
            sim.run_for(p + 20.0)
            if sim.event_counts()["failed"]:
                return survived
        finally:
            sim.close()
        survived = p
    return survived


def study(name: str, cfg: dict[str, float], n: int, seeds: int, watch: float) -> dict[str, Any]:
    """One profile at one size: detection over seeds, false alarms under loss."""
    detect = [run("detect", nodes=n, seed=s, config=cfg or None) for s in range(1, seeds + 1)]
    healthy = run("falsepos", nodes=n, seed=1, config=cfg or None, duration=watch)
    lossy = {
        str(loss): run("falsepos", nodes=n, seed=1, loss=loss, config=cfg or None, duration=watch)
        for loss in LOSSES
    }
    times = [r.metrics["all_failed_s"] for r in detect]
    pauses = [pause_survived(cfg, n, s) for s in PAUSE_SEEDS]
    return {
        "profile": name,
        "config": cfg,
        "nodes": n,
        "detect_all_s": times,
        "detect_all_median_s": statistics.median(t for t in times if t is not None),
        "false_failures_in_detect": sum(r.metrics["false_failures"] for r in detect),
        "bytes_per_node_s": healthy.network["bytes_sent"] / n / watch,
        "pause_survived_s": pauses,
        "falsepos": {
            loss: {
                "suspicions": r.metrics["alive_to_suspect"],
                "failures": r.metrics["to_failed"],
                "refutations": r.metrics["refutations"],
            }
            for loss, r in lossy.items()
        },
    }


def default_row_is_the_default() -> None:
    """Refuse to run when the row named the default no longer is it.

    >>> default_row_is_the_default()
    """
    lan = ClusterConfig.lan(insecure=True)
    differ = {k: v for k, v in PROFILES[DEFAULT].items() if getattr(lan, k) != v}
    if differ:
        raise SystemExit(
            f"the row {DEFAULT!r} sets {differ}, which the LAN profile no longer has: "
            "rename it and give the default a row of its own"
        )


def main() -> None:
    default_row_is_the_default()
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
                f"bytes {r['bytes_per_node_s']:.0f}/s  loss susp/fail {fp}  "
                f"pause survived {r['pause_survived_s']}",
                flush=True,
            )
    write_results(
        args.out,
        "bench/profile_study.py",
        sys.argv[1:],
        measured,
        t0,
        rows,
        watch_s=args.watch,
    )


if __name__ == "__main__":
    main()
