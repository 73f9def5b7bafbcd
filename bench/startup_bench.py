"""How long a clustermember agent takes to start, and what it spends it on.

    python bench/startup_bench.py [--runs 10] [--out bench/results/startup-COMMIT.json]
    python bench/startup_bench.py --storm 100 [--runs 3] [--out ...]

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

``--storm N``: a join storm as ``bench/compare`` launches one (compiled):
n0 alone until it answers, then N-1 agents launched back to back joining
it (without bench/compare's event streams, tags and cgroups), every
control socket tried every 10 ms; alternately with this
interpreter as it is (``site_hooks``: its site-packages' ``.pth`` files run
at every start) and from a venv without them (``clean``, as bench/compare
runs agents). Per agent, when it answered
(from the joiners' launch) and the CPU it had used by then; once the last
answered, every agent's CPU, this script's, and the machine's idle time
over the storm (``/proc/stat``): whether the storm is CPU-bound, and whose
CPU it is.
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
from bench.compare.adapters import clean_interpreter  # noqa: E402
from bench.compare.runner import cpu_seconds  # noqa: E402
from bench.raw import commit  # noqa: E402

PKG = ROOT / "clustermember"
UP_DEADLINE = 60.0
STORM_BASE_PORT = 31000


def clear_bytecode() -> None:
    for d in PKG.rglob("__pycache__"):
        shutil.rmtree(d)


def compile_bytecode() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PKG)], check=True)


def agent_cmd(
    python: str, key: Path, sock: Path, port: int, name: str | None = None, seed: int | None = None
) -> list[str]:
    """The agent's command line: named `name` (else the default id), joining
    the agent at port `seed` (else none)."""
    cmd = [python, "-m", "clustermember", "agent", "--bind", f"127.0.0.1:{port}"]
    cmd += ["--node-id", name] if name is not None else []
    cmd += ["--key-file", str(key), "--control", str(sock), "--log-level", "warning"]
    return cmd + (["--join", f"127.0.0.1:{seed}"] if seed is not None else [])


def one_agent(workdir: Path, key: Path, i: int) -> dict[str, float]:
    """Launch one agent; wall and CPU seconds until its control socket
    answers. The agent is then stopped (by its PID)."""
    sock = workdir / f"a{i}.sock"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        agent_cmd(sys.executable, key, sock, free_port()),
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


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) seconds of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v) - idle) / tick, idle / tick


def one_storm(python: str, workdir: Path, key: Path, n: int) -> dict[str, Any]:
    """n agents, as bench/compare launches a cluster; see the module's doc.
    Every agent is stopped (by its PID) at the end."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    socks = [workdir / f"s{i}.sock" for i in range(n)]
    for sk in socks:
        sk.unlink(missing_ok=True)
    # Fixed ports, as bench/compare's --base-port: ports picked free one by
    # one may be taken by an ephemeral port of an agent started meanwhile.
    ports = [STORM_BASE_PORT + i for i in range(n)]
    up: list[float | None] = [None] * n
    cpu_up: list[float | None] = [None] * n

    def spawn(i: int) -> None:
        cmd = agent_cmd(python, key, socks[i], ports[i], f"n{i}", ports[0] if i else None)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env, cwd=ROOT))

    def poll(i: int, t0: float) -> None:
        if procs[i].poll() is not None:
            raise SystemExit(f"agent n{i} exited with {procs[i].returncode}")
        try:
            control(str(socks[i]), {"op": "status"}, timeout=5.0)
        except (OSError, ValueError):
            return
        up[i] = time.monotonic() - t0
        cpu_up[i] = cpu_seconds(procs[i].pid)

    def wait_up(which: range, t0: float, deadline: float) -> None:
        while any(up[i] is None for i in which):
            if time.monotonic() - t0 > deadline:
                raise SystemExit(f"agents n{which[0]}..n{which[-1]} did not all answer")
            for i in which:
                if up[i] is None:
                    poll(i, t0)
            time.sleep(0.01)

    try:
        spawn(0)
        wait_up(range(1), time.monotonic(), UP_DEADLINE)
        busy0, idle0 = machine_cpu()
        me0 = os.times()
        t0 = time.monotonic()
        for i in range(1, n):
            spawn(i)
        launched = time.monotonic() - t0
        wait_up(range(1, n), t0, UP_DEADLINE * 4)
        wall = time.monotonic() - t0
        busy1, idle1 = machine_cpu()
        me1 = os.times()
        cpu_end = [cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    joiners_up = [u for u in up[1:] if u is not None]
    at_up = [c for c in cpu_up[1:] if c is not None]
    return {
        "nodes": n,
        "launched_s": launched,
        "all_up_s": wall,
        "up_s_median": statistics.median(joiners_up),
        "agent_cpu_at_up_s_median": statistics.median(at_up),
        "agent_cpu_at_up_s_sum": sum(at_up),
        "agents_cpu_at_end_s_sum": sum(cpu_end),
        "seed_cpu_at_end_s": cpu_end[0],
        "harness_cpu_s": (me1.user + me1.system) - (me0.user + me0.system),
        "machine_busy_s": busy1 - busy0,
        "machine_idle_s": idle1 - idle0,
        "up_s": joiners_up,
        "cpu_at_up_s": at_up,
    }


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


def save(out: Path | None, measured: str, what: str, results: Any) -> None:
    """The raw results, with the commit measured and the command, to out."""
    if out is None:
        return
    doc = {
        "commit": measured,
        "command": " ".join(["python bench/startup_bench.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        what: results,
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")


def storm(args: argparse.Namespace, workdir: Path, key: Path, measured: str) -> None:
    if not 2 <= args.storm <= 200:
        raise SystemExit("--storm takes 2 to 200 agents")
    try:
        clear_bytecode()
        compile_bytecode()
        pythons = {"site_hooks": sys.executable, "clean": clean_interpreter(workdir / "venv")}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in pythons}
        for k in range(args.runs):
            # Alternately first in a round, so that neither is always second.
            for how, python in list(pythons.items())[:: 1 if k % 2 == 0 else -1]:
                runs[how].append(one_storm(python, workdir, key, args.storm))
                r = runs[how][-1]
                brief = {k: round(v, 3) for k, v in r.items() if isinstance(v, float)}
                print(how, json.dumps(brief), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    save(args.out, measured, "storm", runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--storm", type=int, metavar="N", help="a join storm of N agents instead")
    args = ap.parse_args()
    measured = commit()
    workdir = Path(tempfile.mkdtemp(prefix="cm-startup-"))
    key = workdir / "cluster.key"
    key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    if args.storm is not None:
        storm(args, workdir, key, measured)
        return
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
    save(args.out, measured, "results", res)
    for mode in ("compiled", "source"):
        r = res[mode]
        up, cpu = r["up_s_median"] * 1000, r["cpu_s_median"] * 1000
        print(f"{mode:9s} up {up:6.1f} ms, CPU {cpu:6.1f} ms")
    print(json.dumps(imports, indent=1))


if __name__ == "__main__":
    main()
