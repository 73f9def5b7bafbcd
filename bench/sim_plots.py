"""Plots of the simulator's measurements against the models, as PNGs in docs/img/.

    python bench/sim_plots.py                       # runs N <= 1,000 itself (~2 min)
    python bench/sim_plots.py --extra detect10k.json tag10k.json

``--extra`` adds results saved from the command line
(``python -m clustermember.sim ... --json --timelines > file.json``), such as
the 10,000-node runs that need a memory cap and minutes each.

- ``sim_detect_vs_n.png``: detection time against N (first suspicion and
  "every live node marks it failed"), with SWIM's expected first detection
  and Lifeguard's minimum suspicion timeout.
- ``sim_dissemination.png``: the share of nodes that saw a tag change over
  time, against the synchronous push model, its logistic form, and the same
  push epidemic with the core's gossip cadence (``epidemic_core_times``).

Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from clustermember import ClusterConfig, _core, sim  # noqa: E402
from clustermember.sim._scenarios import LATENCY  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def seeds_for(n: int, seeds: int) -> range:
    """Fewer seeds for the larger sizes, to keep the run short."""
    return range(1, (seeds if n <= 500 else max(1, seeds // 2)) + 1)


def detect_points(sizes: list[int], seeds: int, extra: list[dict[str, Any]]) -> dict[int, dict]:
    """Per N: lists of first-suspicion and all-failed times (seconds)."""
    pts: dict[int, dict[str, list[float]]] = {}
    for n in sizes:
        for seed in seeds_for(n, seeds):
            r = sim.run("detect", nodes=n, seed=seed).to_dict()
            extra.append(r)
    for r in extra:
        if r["scenario"] != "detect" or not r["ok"]:
            continue
        p = pts.setdefault(r["nodes"], {"first": [], "all": []})
        p["first"].append(r["metrics"]["first_suspect_s"])
        p["all"].append(r["metrics"]["all_failed_s"])
    return dict(sorted(pts.items()))


def plot_detect(pts: dict[int, dict], path: Path) -> None:
    lan = ClusterConfig.lan(insecure=True)
    period, mult = lan.probe_interval, lan.suspicion_mult
    ns = list(pts)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for key, label, marker in (
        ("first", "first suspicion (mean, min–max)", "o"),
        ("all", "every live node marks it failed (mean, min–max)", "s"),
    ):
        mean = [statistics.mean(pts[n][key]) for n in ns]
        lo = [mean[i] - min(pts[n][key]) for i, n in enumerate(ns)]
        hi = [max(pts[n][key]) - mean[i] for i, n in enumerate(ns)]
        ax.errorbar(ns, mean, yerr=[lo, hi], fmt=marker + "-", capsize=3, label=label)
    grid = [10 ** (k / 20) for k in range(int(20 * math.log10(min(ns))), 81)]
    grid = [g for g in grid if min(ns) <= g <= max(ns)]
    ax.plot(
        grid,
        [sim.swim_first_detection_periods(round(g)) * period for g in grid],
        ":",
        color="C0",
        label="SWIM expected first detection, e/(e−1) periods",
    )
    ax.plot(
        grid,
        [(sim.swim_first_detection_periods(round(g)) + 1) * period for g in grid],
        "--",
        color="C0",
        alpha=0.6,
        label="… + 1 period (suspicion raised when the probe's period ends)",
    )
    ax.plot(
        grid,
        [(2 + mult * max(1.0, math.log10(g))) * period for g in grid],
        "--",
        color="C1",
        alpha=0.6,
        label=f"≈2 periods + Lifeguard minimum suspicion {mult}·log10(N) periods",
    )
    ax.axhline(10.0, color="red", lw=0.8, alpha=0.5)
    ax.text(min(ns), 10.15, "target at N = 1,000: 10 s", color="red", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("nodes (N)")
    ax.set_ylabel("virtual seconds after the crash")
    ax.set_title(f"Detection time against N (simulator, LAN profile, {period:g} s period)")
    ax.set_ylim(0, 14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tag_run(n: int, extra: list[dict[str, Any]]) -> dict[str, Any]:
    for r in extra:
        if r["scenario"] == "tag" and r["nodes"] == n and "timelines" in r:
            return r
    return sim.run("tag", nodes=n, seed=1).to_dict(timelines=True)


def plot_dissemination(runs: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, logx in zip(axes, (False, True), strict=True):
        for c, r in enumerate(runs):
            n = r["nodes"]
            node = r["metrics"]["node"]
            times = sorted(
                t for i, t in enumerate(r["timelines"]["tag_seen"]) if i != node and t is not None
            )
            mo = r["model"]
            gossip, fanout = mo["gossip_interval_s"], mo["fanout"]
            lan = _core.config_profile("lan")
            limit = _core.retransmit_limit(lan, n)
            # The run's own share if it recorded one (its profile's); else the
            # LAN profile's.
            immediate = mo.get("core_cadence_immediate_fraction")
            if immediate is None:
                immediate = sim.idle_gossip_immediate_fraction(lan["probe_interval"], gossip)
            seed = r["seed"]
            core = sim.epidemic_core_times(n, fanout, gossip, limit, immediate, LATENCY, seed)[1:]
            color = f"C{c}"
            ys = [(k + 1) / n + 1 / n for k in range(len(times))]
            ax.step(times, ys, where="post", color=color, lw=2, label=f"measured, N={n:,}")
            ax.step(
                core,
                [(k + 2) / n for k in range(len(core))],
                where="post",
                color=color,
                ls="--",
                label=f"push epidemic, core cadence, N={n:,}",
            )
            tmax = 1.0 if logx else 1.2
            grid = [tmax * k / 600 for k in range(601)]
            ax.plot(
                grid,
                [sim.epidemic_continuous(n, fanout, gossip, t) for t in grid],
                ":",
                color=color,
                label=f"logistic, rate fanout/interval, N={n:,}",
            )
            rounds = int(tmax / gossip)
            curve = sim.epidemic_curve(n, fanout, rounds)
            ax.step(
                [k * gossip for k in range(rounds + 1)],
                curve,
                where="post",
                color=color,
                alpha=0.45,
                label=f"synchronous rounds (100 ms), N={n:,}",
            )
        if logx:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1.0)
        else:
            ax.set_xlim(0, 1.2)
        ax.axhline(0.999, color="grey", lw=0.6)
        ax.set_xlabel("virtual seconds after the tag change" + (" (log)" if logx else ""))
        ax.set_ylabel("share of nodes that have the tag")
        ax.grid(alpha=0.3)
    axes[0].set_title("Tag dissemination against epidemic models")
    axes[1].set_title("same, log time (hops cost ~0.6 ms latency)")
    axes[1].legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 500, 1000])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tag-nodes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--extra", type=Path, nargs="*", default=[])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    extra = [json.loads(f.read_text()) for f in args.extra]
    args.out.mkdir(parents=True, exist_ok=True)
    pts = detect_points(args.sizes, args.seeds, extra)
    plot_detect(pts, args.out / "sim_detect_vs_n.png")
    for n, v in pts.items():
        print(
            f"detect N={n}: {len(v['first'])} runs, first suspicion mean "
            f"{statistics.mean(v['first']):.3f} s, "
            f"all failed mean {statistics.mean(v['all']):.3f} s"
        )
    runs = [
        tag_run(n, extra)
        for n in args.tag_nodes
        if n <= 1000 or any(r["scenario"] == "tag" and r["nodes"] == n for r in extra)
    ]
    plot_dissemination(runs, args.out / "sim_dissemination.png")
    print(f"wrote {args.out / 'sim_detect_vs_n.png'} and {args.out / 'sim_dissemination.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
