"""How well network coordinates estimate RTTs, and what they cost.

A simulated cluster in three sites (0.2 ms RTT inside a site, 20-80 ms
between two, each message's delay varying by +-10%), formed at once
(bootstrap) at t = 0. At each sample time, from the view of each observer
(its own coordinate and those it holds of the others):

- the relative error |estimate - truth| / truth of every pair it holds,
  summarised as the median (all pairs, pairs between sites, pairs inside
  one site) and the 90th percentile;
- whether its nearest(1) is right: a member whose true RTT is within 10%
  of the truly nearest one's.

Then the cost: the bytes every node sends per second in a healthy cluster
(datagrams and push-pull streams, from 60 s to 360 s after formation), with
coordinates on and off, on the three sites and on one LAN (the simulator's
default network, 0.2-1 ms one way).

    python bench/coord_bench.py --nodes 100,1000 \\
        --out bench/results/coords-<commit>.json
    python bench/coord_bench.py --plot bench/results/coords-<commit>.json \\
        docs/img/sim_coords.png      # the accuracy plot, from the raw file

The commit recorded is that of the ``clustermember`` package imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.gossip_reach import package_commit
from bench.raw import dump_runs
from clustermember import _core

SITES = (3, 0.0002, 0.020, 0.080, 0.1)
TIMES = (5, 10, 20, 30, 45, 60, 120, 300)
OBSERVERS = 100  # nodes whose view is measured (all of them up to 100)
COST_SECONDS = 300.0


def vectors(coords: dict[str, Any], ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows of vec + [height, adjustment], mask of ids with a coordinate)."""
    out = np.zeros((len(ids), 10))
    have = np.zeros(len(ids), dtype=bool)
    for k, mid in enumerate(ids):
        c = coords.get(mid)
        if c is not None:
            out[k, :8] = c[0]
            out[k, 8] = c[1]
            out[k, 9] = c[2]
            have[k] = True
    return out, have


def estimate(me: np.ndarray, others: np.ndarray) -> np.ndarray:
    """cm_coord_rtt, vectorised: distance plus heights, plus adjustments when
    that stays positive (sample() checks it against the C one)."""
    raw = np.linalg.norm(others[:, :8] - me[:8], axis=1) + others[:, 8] + me[8]
    adj = raw + others[:, 9] + me[9]
    return np.where(adj > 0, adj, raw)


def sample(s: _core.Simulator, n: int, truth: np.ndarray, site: np.ndarray) -> dict[str, Any]:
    ids = [f"n{i}" for i in range(n)]
    errs_between: list[np.ndarray] = []
    errs_inside: list[np.ndarray] = []
    right = 0
    held = 0
    for i in range(min(n, OBSERVERS)):
        coords = s.coordinates(i)
        vec, have = vectors(coords, ids)
        have[i] = False
        est = estimate(vec[i], vec[have])
        if i == 0 and have.any():
            j = int(np.flatnonzero(have)[0])
            c = _core.coord_rtt(coords[ids[0]], coords[ids[j]])
            if abs(est[0] - c) > 1e-9 * max(1.0, c):
                raise SystemExit(f"the vectorised estimate {est[0]} is not the core's {c}")
        t = truth[i, have]
        err = np.abs(est - t) / t
        same = site[have] == site[i]
        errs_between.append(err[~same])
        errs_inside.append(err[same])
        held += int(have.sum())
        others = np.arange(n) != i
        best = truth[i, others].min()
        if have.any() and truth[i, have][int(np.argmin(est))] <= 1.1 * best:
            right += 1
    between = np.concatenate(errs_between)
    inside = np.concatenate(errs_inside)
    every = np.concatenate([between, inside])
    observers = min(n, OBSERVERS)
    return {
        "median_rel_error": float(np.median(every)),
        "p90_rel_error": float(np.percentile(every, 90)),
        "median_rel_error_between_sites": float(np.median(between)),
        "median_rel_error_inside_sites": float(np.median(inside)),
        "nearest_right": right / observers,
        "held_fraction": held / (observers * (n - 1)),
    }


def accuracy(n: int, seed: int) -> dict[str, Any]:
    s = _core.Simulator(n, seed=seed, sites=SITES)
    truth = np.array([[s.true_rtt(i, j) for j in range(n)] for i in range(n)])
    site = np.arange(n) % SITES[0]
    s.bootstrap()
    t0 = time.perf_counter()
    samples = []
    now = 0.0
    for t in TIMES:
        s.run_for(t - now)
        now = t
        row = sample(s, n, truth, site)
        row["t_s"] = t
        samples.append(row)
        print(f"  N={n} t={t:>4}s {json.dumps(row)}", file=sys.stderr)
    resets = sum(s.node_stats(i).get("coord_resets", 0) for i in range(n))
    return {
        "nodes": n,
        "seed": seed,
        "sites": list(SITES),
        "observers": min(n, OBSERVERS),
        "samples": samples,
        "wall_s": round(time.perf_counter() - t0, 1),
        "coord_resets": resets,
    }


def cost(n: int, seed: int, on: bool, sites: bool) -> dict[str, Any]:
    s = _core.Simulator(n, seed=seed, sites=SITES if sites else None, config={"coordinates": on})
    s.bootstrap()
    s.run_for(60.0)  # past formation's gossip
    a = s.stats()
    s.run_for(COST_SECONDS)
    b = s.stats()
    per = n * COST_SECONDS
    return {
        "nodes": n,
        "network": "three sites" if sites else "one LAN (0.2-1 ms one way)",
        "coordinates": on,
        "seconds": COST_SECONDS,
        "datagram_bytes_per_node_s": (b["bytes_sent"] - a["bytes_sent"]) / per,
        "stream_bytes_per_node_s": (b["stream_bytes"] - a["stream_bytes"]) / per,
    }


def plot(raw: Path, png: Path) -> None:
    """Median relative error against time, per size: all pairs, pairs
    between sites, and the share of right nearest(1) answers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(raw.read_text())
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for r in (x for x in doc["runs"] if x["kind"] == "accuracy"):
        t = [s["t_s"] for s in r["samples"]]
        n = f"N = {r['nodes']:,}"
        ax.plot(t, [s["median_rel_error"] for s in r["samples"]], "o-", label=f"{n}, all pairs")
        ax.plot(
            t,
            [s["median_rel_error_between_sites"] for s in r["samples"]],
            "s--",
            label=f"{n}, between sites",
        )
        bx.plot(t, [s["nearest_right"] for s in r["samples"]], "o-", label=n)
    ax.axhline(0.15, color="grey", lw=0.8, ls=":", label="15%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated seconds after formation")
    ax.set_ylabel("median |estimate - truth| / truth")
    ax.legend(fontsize=8)
    bx.axhline(0.95, color="grey", lw=0.8, ls=":", label="95%")
    bx.set_xscale("log")
    bx.set_ylim(0, 1.05)
    bx.set_xlabel("simulated seconds after formation")
    bx.set_ylabel("nearest(1) within 10% of the truly nearest")
    bx.legend(fontsize=8)
    fig.suptitle(f"Network coordinates, three sites (commit {doc['commit']})")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="100,1000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--plot", type=Path, nargs=2, metavar=("RAW", "PNG"))
    args = ap.parse_args()
    if args.plot:
        plot(*args.plot)
        return
    sizes = [int(x) for x in args.nodes.split(",")]
    runs: list[dict[str, Any]] = []
    for n in sizes:
        runs.append({"kind": "accuracy", **accuracy(n, args.seed)})
        for sites in (True, False):
            for on in (True, False):
                runs.append({"kind": "cost", **cost(n, args.seed, on, sites)})
    doc = {
        "commit": package_commit(),
        "command": "python bench/coord_bench.py " + " ".join(sys.argv[1:]),
        "runs": runs,
    }
    text = dump_runs(doc)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
