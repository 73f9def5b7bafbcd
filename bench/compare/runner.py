"""The scenarios, run in one cluster lifetime per (system, N, repeat).

Order: converge → tag → busy → (warm-up) → falsepos, with cost measured in
the same window → leave → detect. Each step waits on a condition with a deadline; every
process is killed by PID at the end, and the traffic counters removed.

    run_one("serf-lan", 5, repeat=0, base_port=23000, windows=Windows())
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare.adapters import AdapterError, Node, System, View, make

DEADLINE = 120.0  # seconds any one step may take before it is recorded as not reached
ALIVE = "alive"


@dataclass
class Windows:
    """Lengths of the timed windows, in seconds."""

    falsepos: float = 30.0
    busy: float = 20.0
    grace: float = 5.0  # after busy ends, keep counting suspicions it caused
    warmup: float = 32.0  # falsepos/cost start no earlier than this after launch
    fast_poll: float = 0.0  # pause between sweeps while timing (0: back to back)
    slow_poll: float = 1.0  # pause between sweeps in falsepos (cost is measured then)


class Traffic:
    """Per-port byte counters in an nftables table of our own (root only)."""

    made = 0

    def __init__(self) -> None:
        Traffic.made += 1
        self.table = f"cmbench{os.getpid()}x{Traffic.made}"
        self.ok = False
        self.reason = ""
        if shutil.which("nft") is None:
            self.reason = "nft not installed"
            return
        r = subprocess.run(
            ["nft", "add", "table", "inet", self.table], capture_output=True, text=True
        )
        if r.returncode != 0:
            self.reason = f"nft refused: {r.stderr.strip()}"
            return
        r = subprocess.run(
            [
                "nft",
                f"add chain inet {self.table} out "
                "{ type filter hook output priority 0; policy accept; }",
            ],
            capture_output=True,
            text=True,
        )
        self.ok = r.returncode == 0
        if not self.ok:
            self.reason = f"nft chain: {r.stderr.strip()}"

    def watch(self, ports: list[tuple[str, int]]) -> None:
        for proto, port in ports:
            subprocess.run(
                [
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    self.table,
                    "out",
                    proto,
                    "sport",
                    str(port),
                    "counter",
                ],
                check=True,
            )

    def read(self) -> dict[tuple[str, int], int]:
        """Bytes sent so far by (proto, port)."""
        r = subprocess.run(
            ["nft", "-j", "list", "table", "inet", self.table],
            capture_output=True,
            text=True,
            check=True,
        )
        out: dict[tuple[str, int], int] = {}
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            proto = port = nbytes = None
            for e in rule["expr"]:
                if "match" in e:
                    left = e["match"]["left"].get("payload", {})
                    proto, port = left.get("protocol"), e["match"]["right"]
                if "counter" in e:
                    nbytes = e["counter"]["bytes"]
            if proto and port is not None and nbytes is not None:
                out[(proto, int(port))] = nbytes
        return out

    def close(self) -> None:
        if self.ok:
            subprocess.run(
                ["nft", "delete", "table", "inet", self.table], capture_output=True, check=False
            )
            self.ok = False


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
    """Sweeps every live node's view, timestamping each one."""

    def __init__(self, system: System, nodes: list[Node]) -> None:
        self.system = system
        self.live = list(nodes)
        self.sweeps = 0
        self.sweep_time = 0.0
        self.errors = 0

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
        self.sweeps += 1
        self.sweep_time += time.monotonic() - t0
        return out

    @property
    def resolution(self) -> float:
        return self.sweep_time / self.sweeps if self.sweeps else 0.0


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


def _transitions(obs: Observer, seconds: float, pause: float, subjects: set[str]) -> dict[str, int]:
    """Count, over a window, every change away from alive that any observer
    sees of any subject: to suspect (or any non-alive state) and to failed."""
    last: dict[tuple[str, str], str] = {}
    away = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, (_, v) in obs.sweep().items():
            for subj, (state, _tags) in v.items():
                if subj not in subjects:
                    continue
                prev = last.get((name, subj), ALIVE)
                if prev == ALIVE and state != ALIVE:
                    away += 1
                if state == "failed" and prev != "failed":
                    failed += 1
                last[(name, subj)] = state
        if pause:
            time.sleep(pause)
    return {"away_from_alive": away, "to_failed": failed}


def run_one(
    system_name: str, n: int, repeat: int, base_port: int, windows: Windows
) -> dict[str, Any]:
    """One cluster lifetime: every scenario once. Returns the measurements."""
    if n < 3:
        raise ValueError("need at least 3 nodes (one killed, one leaving, one observing)")
    workdir = Path(tempfile.mkdtemp(prefix=f"cmcmp-{system_name}-"))
    system = make(system_name, workdir)
    traffic = Traffic()
    res: dict[str, Any] = {"system": system.name, "n": n, "repeat": repeat}
    try:
        names = [f"n{i}" for i in range(n)]
        ports = [base_port + i for i in range(n)]
        nodes = [system.start(0, names[0], ports[0], {"role": "seed"}, None)]
        system.wait_ready(nodes[0])
        t_spawn0 = time.monotonic()
        for i in range(1, n):
            nodes.append(system.start(i, names[i], ports[i], {"role": "worker"}, ports[0]))
        for node in nodes[1:]:
            system.wait_ready(node)
        t_ready = time.monotonic()
        if traffic.ok:
            for node in nodes:
                traffic.watch(system.ports(node))
        else:
            res["traffic_note"] = traffic.reason
        obs = Observer(system, nodes)
        everyone = set(names)

        # converge: every node sees all n alive
        def all_alive(_o: str, v: View) -> bool:
            return everyone <= {k for k, (s, _) in v.items() if s == ALIVE}

        got = _until(obs, all_alive, windows.fast_poll)
        res["converge_s"] = None if got is None else max(got.values()) - t_spawn0
        res["converge_after_ready_s"] = None if got is None else max(got.values()) - t_ready
        res["start_s"] = t_ready - t_spawn0
        if got is None:
            return res

        # tag: node 1 changes a tag; time until every node sees it
        system.set_tag(nodes[1], "bench", "v2")
        t0 = time.monotonic()
        got = _until(
            obs,
            lambda _o, v: v.get(names[1], ("", {}))[1].get("bench") == "v2",
            windows.fast_poll,
        )
        res["tag_s"] = None if got is None else max(got.values()) - t0

        # busy: node n-1's process is CPU-starved for a window
        busy = nodes[n - 1]
        system.starve(busy, True)
        try:
            b = _transitions(obs, windows.busy, windows.fast_poll, everyone)
        finally:
            system.starve(busy, False)
        g = _transitions(obs, windows.grace, windows.fast_poll, everyone)
        res["busy"] = {
            "away_from_alive": b["away_from_alive"] + g["away_from_alive"],
            "to_failed": b["to_failed"] + g["to_failed"],
            "window_s": windows.busy,
            "grace_s": windows.grace,
        }

        # falsepos (+ cost): no faults, count changes away from alive
        # Startup costs (handshakes, the first push-pull round) are not
        # steady state: the window opens no earlier than warmup after launch.
        wait = t_spawn0 + windows.warmup - time.monotonic()
        if wait > 0:
            _transitions(obs, wait, windows.slow_poll, set())
        pids = [node.pid for node in nodes]
        cpu0 = {p: cpu_seconds(p) for p in pids}
        bytes0 = traffic.read() if traffic.ok else {}
        t0 = time.monotonic()
        res["falsepos"] = _transitions(obs, windows.falsepos, windows.slow_poll, everyone)
        dt = time.monotonic() - t0
        res["falsepos"]["window_s"] = round(dt, 2)
        res["cost"] = {
            "rss_mib": sum(rss_mib(p) for p in pids) / n,
            "cpu_s_per_min": sum(cpu_seconds(p) - cpu0[p] for p in pids) / n / dt * 60,
            "poll_s": windows.slow_poll,
        }
        if traffic.ok:
            b1 = traffic.read()
            sent = sum(b1.get(k, 0) - bytes0.get(k, 0) for k in b1)
            res["cost"]["bytes_per_s"] = sent / n / dt

        # leave: node n-1 leaves gracefully
        survivors = [x for x in nodes if x is not busy]
        if system.supports_leave:
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
        res["poll_resolution_s"] = obs.resolution
        res["observer_errors"] = obs.errors
        return res
    finally:
        system.stop_all()
        traffic.close()
        shutil.rmtree(workdir, ignore_errors=True)
