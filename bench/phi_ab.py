"""Does phi make detection faster? An A/B study of phi's role in probe scheduling.

Three builds of the core are compared in the simulator, chosen at compile time
with CM_PHI_AB (csrc/core/cm_node_probe.c):

  a (0)  early probes from a first-come watch list of at most 32 peers,
         fed by acks and pings only (the behaviour before this study)
  b (1)  phi fed by every datagram from the peer, a watch list that drops
         members no longer live and prefers the peers heard most often, at
         most one early probe per member per round
  c (2)  no early probes: plain SWIM round-robin with Lifeguard

For each: ``detect`` (one node crashes; first_suspect and all_failed) over
several seeds at several cluster sizes, and ``falsepos`` (a healthy cluster
under datagram loss; suspicions and failures) at N = 100. Runs go one at a
time, each as ``python -m clustermember.sim ... --json`` against its build.

``falsepos`` runs through the scenario's own function (``--falsepos-run``,
the same run as ``python -m clustermember.sim --scenario falsepos``) so that
the probes and early probes all nodes sent can be counted too.

``detect`` crashes its victim as soon as the cluster has settled, a few
seconds after it formed: too early for phi to hold ``phi_min_samples``
arrivals from anyone. So the study also runs ``warm`` detection: the same
scenario with ``--warm`` seconds of healthy running before the crash (at the
sizes in ``--warm-sizes``), and counts the probes and early probes (phi
probes) all nodes sent between the crash and the last verdict.

    python bench/phi_ab.py --out bench/results/phi-ab-<commit>.json
    python bench/phi_ab.py --report bench/results/phi-ab-<commit>.json

The builds go to build/phi-ab/<variant>/ (a copy of the package with its own
extension), so the tree's own extension is left alone.

The study decided for c, and the switch went with the other two: run it at
commit 4e63105, the one its results (bench/results/phi-ab-4e63105.json, and
docs/benchmarks.md) come from. ``--report`` works at any commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import dump_runs

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"a": 0, "b": 1, "c": 2}
LABELS = {
    "a": "a: early probes, first-come watch list, acks and pings",
    "b": "b: early probes, every datagram, once per round",
    "c": "c: no early probes (SWIM + Lifeguard)",
}


def say(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


def commit() -> str:
    """The tree's short commit, with -dirty if it has changes."""
    rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True)
    dirty = subprocess.call(["git", "diff", "--quiet", "HEAD"], cwd=ROOT) != 0
    return rev.strip() + ("-dirty" if dirty else "")


def build(variant: str) -> Path:
    """The package with an extension compiled for variant; its directory."""
    where = ROOT / "build" / "phi-ab" / variant
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(
        ROOT / "clustermember",
        where / "clustermember",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    env = dict(os.environ, CFLAGS=f"-DCM_PHI_AB={VARIANTS[variant]}")
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--force"]
    cmd += ["--build-lib", str(where), "--build-temp", str(where / "obj")]
    say(f"building {variant}: CFLAGS={env['CFLAGS']}")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return where


def simulate(where: Path, kind: str, args: list[str]) -> dict[str, Any]:
    """One scenario run against a build: its JSON result and wall time."""
    if kind in ("warm", "falsepos"):
        cmd = [sys.executable, str(Path(__file__).resolve()), f"--{kind}-run", *args]
    else:
        cmd = [sys.executable, "-m", "clustermember.sim", *args, "--json"]
    t0 = time.perf_counter()
    # From the build's directory: -m puts the working directory first on
    # the path, ahead of PYTHONPATH.
    out = subprocess.run(
        cmd, cwd=where, env=dict(os.environ, PYTHONPATH=str(where)), capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    result = json.loads(out.stdout)
    result["command"] = " ".join(["python", *cmd[1:]]).replace(str(ROOT) + "/", "")
    result["wall_s"] = round(wall, 2)
    return result


def warm_detect(nodes: int, seed: int, warm: float) -> dict[str, Any]:
    """The detect scenario after warm seconds of healthy running; run in a
    build's directory (``--warm-run``). Adds the probes and phi probes all
    nodes sent from the crash to the end."""
    from clustermember.sim import _scenarios as sc

    counts: dict[str, list[int | None]] = {}

    def probes(r: sc._Run) -> dict[str, list[int | None]]:
        """Per node, or None for a node that is down."""
        out: dict[str, list[int | None]] = {"probes": [], "phi_probes": []}
        for i in range(r.sim.size):
            st = r.sim.node_stats(i) if r.sim.is_up(i) else None
            for k, v in out.items():
                v.append(None if st is None else st.get(k, 0))
        return out

    class Warm(sc._Run):
        def form(self) -> bool:
            ok = super().form()
            if ok:
                self.sim.run_for(warm)
                counts.update(probes(self))
            return ok

    r = Warm("detect", nodes, seed, 0.0, "lan", None)
    sc._detect(r, timeout=sc.DEFAULTS["detect"]["timeout"])
    after = probes(r)
    res = r.finish().to_dict()
    res["metrics"]["warm_s"] = warm
    for k, v in after.items():
        pairs = zip(v, counts[k], strict=True) if counts else []
        res["metrics"][k + "_after_crash"] = sum(
            a - b for a, b in pairs if a is not None and b is not None
        )
    return res


def counted_falsepos(nodes: int, seed: int, loss: float, duration: float) -> dict[str, Any]:
    """The falsepos scenario, as ``python -m clustermember.sim --scenario
    falsepos`` runs it, plus the probes and phi probes all nodes sent
    (formation and settling included); run in a build's directory
    (``--falsepos-run``)."""
    from clustermember.sim import _scenarios as sc

    r = sc._Run("falsepos", nodes, seed, loss, "lan", None)
    sc._falsepos(r, duration=duration)
    tot = {"probes": 0, "phi_probes": 0}
    for i in range(r.sim.size):
        st = r.sim.node_stats(i) or {}
        for k in tot:
            tot[k] += st.get(k, 0)
    res = r.finish().to_dict()
    res["metrics"].update(tot)
    return res


def matrix(opts: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """Every run of the study, as (kind, simulator arguments)."""
    runs: list[tuple[str, list[str]]] = []
    for n in opts.sizes:
        for seed in range(1, opts.seeds + 1):
            runs.append(
                ("detect", ["--scenario", "detect", "--nodes", str(n), "--seed", str(seed)])
            )
    for n in opts.warm_sizes:
        for seed in range(1, opts.seeds + 1):
            runs.append(("warm", [str(n), str(seed), str(opts.warm)]))
    for loss in opts.losses:
        for seed in range(1, opts.fp_seeds + 1):
            runs.append(
                ("falsepos", [str(opts.fp_nodes), str(seed), str(loss), str(opts.fp_duration)])
            )
    return runs


def study(opts: argparse.Namespace) -> dict[str, Any]:
    """Build each variant and run the matrix against it."""
    doc: dict[str, Any] = {
        "commit": commit(),
        "command": " ".join(["python bench/phi_ab.py", *sys.argv[1:]]),
        "variants": {v: LABELS[v] for v in opts.variants},
        "sizes": opts.sizes,
        "seeds": opts.seeds,
        "warm": {"sizes": opts.warm_sizes, "seconds": opts.warm},
        "falsepos": {
            "nodes": opts.fp_nodes,
            "losses": opts.losses,
            "seeds": opts.fp_seeds,
            "duration_s": opts.fp_duration,
        },
        "runs": [],
    }
    if "CM_PHI_AB" not in (ROOT / "csrc" / "core" / "cm_node_probe.c").read_text():
        raise SystemExit("no CM_PHI_AB switch in this tree: run the study at commit 4e63105")
    t0 = time.perf_counter()
    # All builds first: once they are done the tree may change under the runs.
    builds = {v: build(v) for v in opts.variants}
    for v, where in builds.items():
        for kind, args in matrix(opts):
            r = simulate(where, kind, args)
            r["variant"] = v
            r["kind"] = kind
            doc["runs"].append(r)
            m = r["metrics"]
            brief = (
                f"first_suspect {m.get('first_suspect_s')} all_failed {m.get('all_failed_s')}"
                if kind != "falsepos"
                else f"suspect {m.get('alive_to_suspect')} failed {m.get('to_failed')}"
            )
            say(f"{v} {' '.join(args)}: {brief} ({r['wall_s']} s)")
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    return doc


def dump(doc: dict[str, Any]) -> str:
    """The study as JSON, one run a line. The runs' ``model`` (the
    simulator's analytic expectation, the same for every variant) is left
    out: it is no measurement, and would double the file."""
    runs = [{k: v for k, v in r.items() if k != "model"} for r in doc["runs"]]
    return dump_runs({**doc, "runs": runs})


def _stat(values: list[float], q: float) -> float | None:
    """Nearest-rank q-quantile, None if empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def report(doc: dict[str, Any]) -> str:
    """Markdown tables of the study, for docs/benchmarks.md."""
    runs = doc["runs"]
    variants = list(doc["variants"])
    lines = [
        f"Commit {doc['commit']}, {doc['seeds']} seeds per row; times in seconds "
        "after the crash, median (p90) over seeds; datagrams: mean sent per run; "
        f"warm: {doc['warm']['seconds']:g} s of healthy running before the crash, "
        "and the early (phi) probes of all probes sent after it, summed over seeds.",
        "",
        "| run | variant | N | first_suspect | all_failed | not reached | datagrams "
        "| early probes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("detect", n) for n in doc["sizes"]]
    rows += [("warm", n) for n in doc["warm"]["sizes"]]
    for kind, n in rows:
        for v in variants:
            rs = [r for r in runs if r["variant"] == v and r["kind"] == kind]
            rs = [r for r in rs if r["nodes"] == n]
            fs = [r["metrics"]["first_suspect_s"] for r in rs]
            af = [r["metrics"]["all_failed_s"] for r in rs]
            fs = [x for x in fs if x is not None]
            af = [x for x in af if x is not None]
            dg = statistics.mean(r["network"]["datagrams_sent"] for r in rs) if rs else 0
            early = ""
            if kind == "warm":
                pr = sum(r["metrics"]["probes_after_crash"] for r in rs)
                ph = sum(r["metrics"]["phi_probes_after_crash"] for r in rs)
                early = f" {ph:,} of {pr:,}"
            lines.append(
                f"| {kind} | {v} | {n} | {_fmt(statistics.median(fs) if fs else None)} "
                f"({_fmt(_stat(fs, 0.9))}) | {_fmt(statistics.median(af) if af else None)} "
                f"({_fmt(_stat(af, 0.9))}) | {len(rs) - len(af)} | {dg:,.0f} |{early} |"
            )
    fp = doc["falsepos"]
    lines += [
        "",
        f"False suspicions: N = {fp['nodes']}, {fp['duration_s']:g} s, {fp['seeds']} seeds, "
        "totals over seeds.",
        "",
        "| variant | loss | suspicions | failures | refutations | datagrams | early probes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for loss in fp["losses"]:
        for v in variants:
            rs = [r for r in runs if r["variant"] == v and r["kind"] == "falsepos"]
            rs = [r for r in rs if r["loss"] == loss]
            tot = {
                k: sum(r["metrics"][k] for r in rs)
                for k in ("alive_to_suspect", "to_failed", "refutations")
            }
            dg = sum(r["network"]["datagrams_sent"] for r in rs)
            pr = sum(r["metrics"]["probes"] for r in rs)
            ph = sum(r["metrics"]["phi_probes"] for r in rs)
            lines.append(
                f"| {v} | {loss:g} | {tot['alive_to_suspect']:,} | {tot['to_failed']} | "
                f"{tot['refutations']:,} | {dg:,} | {ph:,} of {pr:,} |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="run the study and write its raw JSON here")
    p.add_argument("--report", type=Path, help="print the tables of a saved study")
    p.add_argument("--variants", default="abc", help="which of a, b, c (default all)")
    p.add_argument("--sizes", default="20,100,1000", help="detect's cluster sizes")
    p.add_argument("--seeds", type=int, default=20, help="detect's seeds per size")
    p.add_argument("--warm-sizes", default="20,100,1000", help="warm detect's cluster sizes")
    p.add_argument("--warm", type=float, default=300.0, help="healthy seconds before the crash")
    p.add_argument("--warm-run", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--falsepos-run", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--losses", default="0,0.05,0.1", help="falsepos's loss rates")
    p.add_argument("--fp-seeds", type=int, default=20, help="falsepos's seeds per loss")
    p.add_argument("--fp-nodes", type=int, default=100, help="falsepos's cluster size")
    p.add_argument("--fp-duration", type=float, default=300.0, help="falsepos's watch time")
    opts = p.parse_args()
    if opts.warm_run is not None:
        n, seed, warm = opts.warm_run
        print(json.dumps(warm_detect(int(n), int(seed), float(warm))))
        return 0
    if opts.falsepos_run is not None:
        n, seed, loss, duration = opts.falsepos_run
        print(json.dumps(counted_falsepos(int(n), int(seed), float(loss), float(duration))))
        return 0
    if opts.report is not None:
        print(report(json.loads(opts.report.read_text())))
        return 0
    if opts.out is None:
        p.error("give --out (run the study) or --report (print a saved one)")
    opts.variants = [v for v in opts.variants if v in VARIANTS]
    opts.sizes = [int(x) for x in opts.sizes.split(",")]
    opts.warm_sizes = [int(x) for x in opts.warm_sizes.split(",") if x]
    opts.losses = [float(x) for x in opts.losses.split(",")]
    doc = study(opts)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(dump(doc))
    print(report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
