"""Command line of the comparison benchmark.

    python -m bench.compare run [--systems ...] [--nodes 5 20 50] [--repeats 3]
        [--falsepos 30] [--warmup 32] [--busy 20] [--out bench/compare/results.jsonl]
    python -m bench.compare report bench/compare/results.jsonl [--md docs/...] [--img docs/img]

`run` appends one JSON line per (system, N, repeat) to --out, so an
interrupted run keeps what it measured; `report` prints Markdown tables
(median, min and max over repeats, and the clustermember / Serf ratio) and
writes the plots.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import adapters
from bench.compare.adapters import SYSTEMS
from bench.compare.runner import Windows, run_one

DEFAULT_SYSTEMS = [s for s in SYSTEMS]


def versions() -> dict[str, str]:
    """Versions of everything compared, for the results file."""
    import importlib.metadata as md

    serf = subprocess.run(["serf", "version"], capture_output=True, text=True).stdout.split("\n")[0]
    deb = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "serf"], capture_output=True, text=True
    ).stdout
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "clustermember": f"{md.version('clustermember')} ({rev})",
        "serf": f"{serf} (Debian {deb})",
        "swim-protocol": md.version("swim-protocol"),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def precompile() -> None:
    """Compile the package's modules to bytecode once, as pip does when it
    installs a wheel: run from a source checkout with PYTHONDONTWRITEBYTECODE
    set (this machine sets it), every agent would compile all of them again
    at start, about 0.1 s of CPU each, which no installed agent pays. The
    agents import the same copy: they run this interpreter, from this
    environment."""
    spec = importlib.util.find_spec("clustermember")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("clustermember is not importable here: install it (pip install -e .)")
    if not compileall.compile_dir(spec.submodule_search_locations[0], quiet=1):
        raise SystemExit("compiling clustermember to bytecode failed (see above)")


def cmd_run(args: argparse.Namespace) -> int:
    precompile()
    if not args.site_hooks:
        # A venv of this run's own (made in 2 s), removed at exit.
        venv_dir = Path(tempfile.mkdtemp(prefix="cm-compare-venv-"))
        atexit.register(shutil.rmtree, venv_dir, True)
        adapters.AGENT_PYTHON = adapters.clean_interpreter(venv_dir / "venv")
    windows = Windows(falsepos=args.falsepos, busy=args.busy, warmup=args.warmup)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "meta": versions(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "argv": sys.argv,
        "label": args.label,
        "loadavg": os.getloadavg(),
        "agent_python": "this interpreter, with its site hooks"
        if args.site_hooks
        else "a venv of this interpreter without its site hooks",
    }
    with out.open("a") as f:
        f.write(json.dumps(meta) + "\n")
    k = 0
    for repeat in range(args.repeats):
        for n in args.nodes:
            for system in args.systems:
                base = args.base_port + (k % 5) * 100
                k += 1
                t0 = time.monotonic()
                try:
                    res = run_one(system, n, repeat, base, windows)
                except Exception as exc:  # noqa: BLE001 - record and go on
                    res = {"system": system, "n": n, "repeat": repeat, "error": repr(exc)}
                res["wall_s"] = round(time.monotonic() - t0, 1)
                with out.open("a") as f:
                    f.write(json.dumps(res) + "\n")
                brief = {
                    k2: (round(v, 3) if isinstance(v, float) else v)
                    for k2, v in res.items()
                    if k2
                    in (
                        "up_s",
                        "joined_s",
                        "converge_s",
                        "tag_s",
                        "leave_s",
                        "detect_all_s",
                        "wall_s",
                        "error",
                    )
                }
                print(system, n, repeat, brief, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the scenarios")
    r.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, choices=SYSTEMS)
    r.add_argument("--nodes", nargs="+", type=int, default=[5, 20, 50])
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--falsepos", type=float, default=30.0, help="seconds (cost measured then)")
    r.add_argument(
        "--warmup",
        type=float,
        default=Windows.warmup,
        help="seconds after launch before the falsepos/cost window may open: formation's "
        "handshakes, push-pulls and first connections are not steady state",
    )
    r.add_argument("--label", default="", help="a note kept in the results file's meta line")
    r.add_argument(
        "--busy", type=float, default=20.0, help="seconds of each busy stress (hog, thread)"
    )
    r.add_argument("--base-port", type=int, default=23000)
    r.add_argument("--out", default="bench/compare/results.jsonl")
    r.add_argument(
        "--site-hooks",
        action="store_true",
        help="run the Python agents with this interpreter as it is, its site-packages' "
        ".pth start-up hooks included (as every run before this option); default: a venv "
        "without them, as a deployed service has",
    )
    rep = sub.add_parser("report", help="tables and plots from a results file")
    rep.add_argument("results", nargs="+", help="results files (their runs pooled)")
    rep.add_argument("--img", default="docs/img")
    rep.add_argument("--prefix", default="compare", help="the plots' file names start so")
    args = p.parse_args(argv)
    if args.cmd == "run":
        if min(args.nodes) < 3:
            p.error("--nodes: at least 3 (one node is killed, one leaves, one observes)")
        return cmd_run(args)
    from bench.compare.report import report

    print(report([Path(r) for r in args.results], Path(args.img), args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
