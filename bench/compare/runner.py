"""The scenarios, run in one cluster lifetime per (system, N, repeat).

Order: up and join → converge → tag → busy (a CPU hog on the agent's core)
→ busy-thread (Python systems: a busy thread in the agent) → (warm-up) →
falsepos, with cost measured in the same window → leave → detect. Each
timed step waits on a condition with a deadline and records the time one
polling sweep took beside its figure; the counted windows read each agent's
own reports instead of polling. Every process is killed by PID at the end,
and the cgroups and traffic counters removed.

    run_one("serf-lan", 5, repeat=0, base_port=23000, windows=Windows())
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare.accounting import CgroupTraffic, Report, count
from bench.compare.adapters import AdapterError, Node, System, View, make

DEADLINE = 120.0  # seconds any one step may take before it is recorded as not reached
ALIVE = "alive"
JOIN_POLL = 0.01  # pause between reads of the seed's list while the processes start


@dataclass
class Windows:
    """Lengths of the timed windows, in seconds."""

    falsepos: float = 30.0
    busy: float = 20.0
    grace: float = 5.0  # after busy ends, keep counting suspicions it caused
    warmup: float = 32.0  # falsepos/cost start no earlier than this after launch
    fast_poll: float = 0.0  # pause between sweeps while timing (0: back to back)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Observer:
    """Sweeps every live node's view, timestamping each read, and keeps how
    long each sweep took, per timed step."""

    def __init__(self, system: System, nodes: list[Node]) -> None:
        self.system = system
        self.live = list(nodes)
        self.errors = 0
        self.steps: dict[str, list[float]] = {}
        self.current: list[float] = []

    def step(self, name: str) -> None:
        """Sweeps from now on belong to step name."""
        self.current = self.steps.setdefault(name, [])

    def sweep(self) -> dict[str, tuple[float, View]]:
        t0 = time.monotonic()
        out: dict[str, tuple[float, View]] = {}
        for n in self.live:
            try:
                v = self.system.view(n)
            except (OSError, AdapterError, ValueError):
                self.errors += 1
                continue
            out[n.name] = (time.monotonic(), v)
        self.current.append(time.monotonic() - t0)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """Per step: sweeps, and the median and longest sweep, in seconds."""
        return {
            k: {"sweeps": len(v), "median_s": statistics.median(v), "max_s": max(v)}
            for k, v in self.steps.items()
            if v
        }


def _until(
    obs: Observer, cond: Any, pause: float, deadline: float = DEADLINE
) -> dict[str, float] | None:
    """Sweep until cond(observer_name, view) holds for every live observer;
    returns the time each first held it, or None past the deadline."""
    first: dict[str, float] = {}
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for name, (t, v) in obs.sweep().items():
            if name not in first and cond(name, v):
                first[name] = t
        if all(n.name in first for n in obs.live):
            return first
        if pause:
            time.sleep(pause)
    return None


class Reports:
    """Every live node's own suspicion and failure reports over a window."""

    def __init__(self, system: System, nodes: list[Node]) -> None:
        self.system = system
        self.nodes = list(nodes)
        self.marks = {n.name: system.report_mark(n) for n in self.nodes}

    def collect(self) -> list[Report]:
        out: list[Report] = []
        for n in self.nodes:
            end = self.system.report_mark(n)
            out += self.system.reports(n, self.marks[n.name], end)
        return out


def _wait_all_up(system: System, nodes: list[Node]) -> dict[str, float]:
    """Wait for every node's process to be up, all at once (a thread each);
    the time each was first seen up."""
    up: dict[str, float] = {}
    errors: list[str] = []

    def one(node: Node) -> None:
        try:
            system.wait_up(node)
            up[node.name] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{node.name}: {exc!r}")

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    if errors or len(up) < len(nodes):
        raise AdapterError("not up: " + "; ".join(errors or ["timeout"]))
    return up


def _counters(system: System, nodes: list[Node]) -> tuple[dict[str, float], float]:
    """Every node's counters summed, and the midpoint of the time taken to
    read them; {} if the system has none (or one node did not answer: a
    partial sum would read as a low rate)."""
    total: dict[str, float] = {}
    start = time.monotonic()
    try:
        for node in nodes:
            for k, v in system.counters(node).items():
                total[k] = total.get(k, 0.0) + v
    except (OSError, ValueError, KeyError, AdapterError):
        return {}, start
    return total, (start + time.monotonic()) / 2


def _stressed(system: System, nodes: list[Node], windows: Windows, stress: Any) -> dict[str, Any]:
    """Count every node's reports while stress(True) ... stress(False) is on,
    and for the grace time after."""
    rep = Reports(system, nodes)
    stress(True)
    try:
        time.sleep(windows.busy)
    finally:
        stress(False)
    time.sleep(windows.grace)
    return {**count(rep.collect()), "window_s": windows.busy, "grace_s": windows.grace}


def run_one(
    system_name: str, n: int, repeat: int, base_port: int, windows: Windows
) -> dict[str, Any]:
    """One cluster lifetime: every scenario once. Returns the measurements."""
    if n < 3:
        raise ValueError("need at least 3 nodes (one killed, one leaving, one observing)")
    workdir = Path(tempfile.mkdtemp(prefix=f"cmcmp-{system_name}-"))
    system = make(system_name, workdir)
    traffic = CgroupTraffic()
    res: dict[str, Any] = {"system": system.name, "n": n, "repeat": repeat, "method": 2}
    if not traffic.ok:
        res["traffic_note"] = traffic.reason
    obs: Observer | None = None
    try:
        names = [f"n{i}" for i in range(n)]
        ports = [base_port + i for i in range(n)]

        def launch(i: int, tags: dict[str, str], seed: int | None) -> Node:
            cg = traffic.add(names[i], system.rpc_port(ports[i]))
            return system.start(i, names[i], ports[i], tags, seed, cg)

        nodes = [launch(0, {"role": "seed"}, None)]
        system.wait_up(nodes[0])
        t_spawn0 = time.monotonic()
        for i in range(1, n):
            nodes.append(launch(i, {"role": "worker"}, ports[0]))
        obs = Observer(system, nodes)
        everyone = set(names)

        # up: every joiner's control endpoint answers; join complete: the
        # seed lists it alive. Both observed the same way for every system,
        # the seed's list read while the processes come up.
        up: dict[str, float] = {}
        upper = threading.Thread(
            target=lambda: up.update(_wait_all_up(system, nodes[1:])), daemon=True
        )
        upper.start()
        obs.step("join")
        seed_obs_live, obs.live = obs.live, nodes[:1]
        joined: dict[str, float] = {}
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and len(joined) < n - 1:
            for _o, (t, v) in obs.sweep().items():
                for name, (state, _tags) in v.items():
                    if state == ALIVE and name != names[0]:
                        joined.setdefault(name, t)
            time.sleep(JOIN_POLL)
        obs.live = seed_obs_live
        upper.join(DEADLINE)
        if len(up) < n - 1:
            raise AdapterError("not every process came up")
        t_up = max(up.values())
        res["up_s"] = t_up - t_spawn0
        res["joined_s"] = max(joined.values()) - t_spawn0 if len(joined) == n - 1 else None

        # converge: every node sees all n alive
        def all_alive(_o: str, v: View) -> bool:
            return everyone <= {k for k, (s, _) in v.items() if s == ALIVE}

        obs.step("converge")
        got = _until(obs, all_alive, windows.fast_poll)
        res["converge_s"] = None if got is None else max(got.values()) - t_spawn0
        res["converge_after_up_s"] = None if got is None else max(got.values()) - t_up
        if got is None:
            return res

        # tag: node 1 changes a tag; the clock starts before the call, which
        # is sent without waiting for its reply (read by a thread)
        call = system.tag_call(nodes[1], "bench", "v2")
        obs.step("tag")
        t0 = time.monotonic()
        call.start()
        got = _until(
            obs,
            lambda _o, v: v.get(names[1], ("", {}))[1].get("bench") == "v2",
            windows.fast_poll,
        )
        res["tag_s"] = None if got is None else max(got.values()) - t0
        call.join(30.0)
        res["tag_call_returned_s"] = None if call.returned is None else call.returned - t0
        if call.error:
            res["tag_call_error"] = call.error

        # busy: node n-1 shares its core with a CPU hog (every system); then,
        # separately, a busy Python thread inside it (Python systems only)
        busy = nodes[n - 1]
        res["busy_hog"] = _stressed(system, nodes, windows, lambda on: system.hog(busy, on))
        if system.supports_busy_thread:
            res["busy_thread"] = _stressed(
                system, nodes, windows, lambda on: system.busy_thread(busy, on)
            )

        # falsepos (+ cost): no faults, no polling; the agents' own reports.
        # Startup costs (handshakes, the first push-pull round) are not
        # steady state: the window opens no earlier than warmup after launch.
        wait = t_spawn0 + windows.warmup - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        pids = [node.pid for node in nodes]
        # The agents' counters are read around the window, not in it: their
        # reads cost the agents work the CPU and byte figures should not hold.
        counters0, tc0 = _counters(system, nodes)
        cpu0 = {p: cpu_seconds(p) for p in pids}
        rep = Reports(system, nodes)
        bytes0 = traffic.read() if traffic.ok else {}
        t0 = time.monotonic()
        time.sleep(windows.falsepos)
        bytes1 = traffic.read() if traffic.ok else {}
        dt = time.monotonic() - t0
        cpu1 = {p: cpu_seconds(p) for p in pids}
        counters1, tc1 = _counters(system, nodes)
        res["falsepos"] = {**count(rep.collect()), "window_s": round(dt, 2)}
        res["cost"] = {
            "rss_mib": sum(rss_mib(p) for p in pids) / n,
            "cpu_s_per_min": sum(cpu1[p] - cpu0[p] for p in pids) / n / dt * 60,
        }
        if traffic.ok:
            sent = sum(bytes1.get(k, 0) - bytes0.get(k, 0) for k in bytes1)
            res["cost"]["bytes_per_s"] = sent / n / dt
        if counters0 and counters1:
            # per node per second, over the time between the two readings
            # (their midpoints), which brackets the bytes' window
            res["cost"]["counters_per_s"] = {
                k: (counters1[k] - counters0[k]) / n / (tc1 - tc0) for k in counters1
            }
            res["cost"]["counters_window_s"] = round(tc1 - tc0, 2)

        # leave: node n-1 leaves gracefully
        survivors = [x for x in nodes if x is not busy]
        if system.supports_leave:
            obs.step("leave")
            system.leave(busy)
            t0 = time.monotonic()
            obs.live = survivors
            seen_failed = set()

            def left(o: str, v: View) -> bool:
                st = v.get(busy.name, ("", {}))[0]
                if st == "failed":
                    seen_failed.add(o)
                return st == "left"

            got = _until(obs, left, windows.fast_poll)
            res["leave_s"] = None if got is None else max(got.values()) - t0
            res["leave_seen_failed"] = len(seen_failed)
            with contextlib.suppress(Exception):
                busy.proc.wait(timeout=30)
        else:
            system.kill(busy)
            obs.live = survivors
            res["leave_s"] = None
            res["leave_note"] = "no graceful leave"

        # detect: SIGKILL node 1; first and all survivors mark it failed
        victim = nodes[1]
        obs.step("detect")
        system.kill(victim)
        t0 = time.monotonic()
        obs.live = [x for x in survivors if x is not victim]
        got = _until(
            obs, lambda _o, v: v.get(victim.name, ("", {}))[0] == "failed", windows.fast_poll
        )
        if got is None:
            res["detect_first_s"] = res["detect_all_s"] = None
        else:
            res["detect_first_s"] = min(got.values()) - t0
            res["detect_all_s"] = max(got.values()) - t0
        return res
    finally:
        if obs is not None:
            res["sweep"] = obs.summary()
            res["observer_errors"] = obs.errors
        system.stop_all()
        traffic.close()
        shutil.rmtree(workdir, ignore_errors=True)
