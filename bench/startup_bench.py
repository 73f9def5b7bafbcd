"""How long a clustermember agent takes to start, and what it spends it on.

    python bench/startup_bench.py [--runs 10] [--out bench/results/startup-COMMIT.json]

One agent at a time, alone on the machine (no join): the wall time from
``Popen`` until its control socket answers ``status``, and the CPU time the
process used by then (``/proc/PID/stat``), the two things a join storm of N
agents on 2 cores is made of. Twice, alternating run by run:

- ``compiled``: the package's modules compiled to bytecode beforehand, as
  pip leaves an installed wheel;
- ``source``: no bytecode, and none written (``PYTHONDONTWRITEBYTECODE``),
  as an agent launched from a checkout on a machine that sets it compiles
  every module at every start.

Then ``python -X importtime -c "import clustermember.__main__"`` (compiled),
median per module over the runs: the modules that cost most to import.
Beside them, the interpreter with nothing imported (``python -c pass``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from bench.agents import control, free_port  # noqa: E402
from bench.compare.runner import cpu_seconds  # noqa: E402
from bench.raw import commit  # noqa: E402

PKG = ROOT / "clustermember"
UP_DEADLINE = 60.0


def clear_bytecode() -> None:
    for d in PKG.rglob("__pycache__"):
        shutil.rmtree(d)


def compile_bytecode() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PKG)], check=True)


def one_agent(workdir: Path, key: Path, i: int) -> dict[str, float]:
    """Launch one agent; wall and CPU seconds until its control socket
    answers. The agent is then stopped (by its PID)."""
    sock = workdir / f"a{i}.sock"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clustermember",
            "agent",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--key-file",
            str(key),
            "--control",
            str(sock),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the agent exited with {proc.returncode}")
            if time.monotonic() - t0 > UP_DEADLINE:
                raise SystemExit("the agent's control socket did not answer")
            try:
                control(str(sock), {"op": "status"}, timeout=5.0)
                break
            except (OSError, ValueError):
                time.sleep(0.002)
        up = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return {"up_s": up, "cpu_s": cpu}


def import_times(runs: int) -> dict[str, Any]:
    """-X importtime of the agent's entry point: the total and the modules
    with the largest own time, medians over the runs (bytecode compiled)."""
    own: dict[str, list[int]] = {}
    total: list[int] = []
    bare: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import clustermember.__main__"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        for line in done.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if m is None:
                continue
            own.setdefault(m.group(4), []).append(int(m.group(1)))
            if m.group(4) == "clustermember.__main__":
                total.append(int(m.group(2)))
    med = {k: statistics.median(v) / 1000 for k, v in own.items() if len(v) == runs}
    top = sorted(med.items(), key=lambda kv: -kv[1])[:15]
    ours = sum(v for k, v in med.items() if k.startswith("clustermember"))
    return {
        "python_c_pass_s": statistics.median(bare),
        "import_main_ms": statistics.median(total) / 1000,
        "clustermember_own_ms": ours,
        "top_own_ms": dict(top),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    measured = commit()
    workdir = Path(tempfile.mkdtemp(prefix="cm-startup-"))
    key = workdir / "cluster.key"
    key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    runs: dict[str, list[dict[str, float]]] = {"compiled": [], "source": []}
    try:
        for i in range(args.runs):
            for mode in ("compiled", "source"):
                clear_bytecode()
                if mode == "compiled":
                    compile_bytecode()
                runs[mode].append(one_agent(workdir, key, i))
        compile_bytecode()
        imports = import_times(args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res: dict[str, Any] = {
        mode: {
            "up_s_median": statistics.median(r["up_s"] for r in rs),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in rs),
            "runs": rs,
        }
        for mode, rs in runs.items()
    }
    res["imports"] = imports
    doc = {
        "commit": measured,
        "command": " ".join(["python bench/startup_bench.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "results": res,
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for mode in ("compiled", "source"):
        r = res[mode]
        up, cpu = r["up_s_median"] * 1000, r["cpu_s_median"] * 1000
        print(f"{mode:9s} up {up:6.1f} ms, CPU {cpu:6.1f} ms")
    print(json.dumps(imports, indent=1))


if __name__ == "__main__":
    main()
