#!/usr/bin/env python3
"""Cluster figures from real processes: N nodes, one per process, on 127.0.0.1.

Starts N copies of build/bench/cm_node_run (make bench), node 0 first and the
others joining through it, waits until every node sees N alive members, then
measures a steady-state window from the nodes' own cumulative stats (printed
each second) and from /proc/PID/stat (CPU) and /proc/PID/status (VmRSS).
Kills only the processes it started. Every wait is bounded.

Usage: python3 bench/engine_bench.py [--nodes 20 50] [--pool 0 8]
                                     [--window 30] [--settle 30] [--json out.json]
Pool 0 means the transport's default (512 connections). --json writes the
results with the commit measured and the command (bench/figures.py reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit

RUNNER = os.path.join(os.path.dirname(__file__), "..", "build", "bench", "cm_node_run")
CONVERGE_TIMEOUT = 120.0  # seconds for all nodes to see all alive
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n: int) -> list[int]:
    """n UDP ports free right now on 127.0.0.1 (bound, read, released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, idx: int, port: int, seed: str, pool: int, seconds: float) -> None:
        self.idx = idx
        self.port = port
        self.last = None
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [RUNNER, f"n{idx}", str(port), seed, str(pool), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.last = rec
                self.lines.append(rec)

    def latest(self) -> dict | None:
        with self.lock:
            return self.last

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def run(n: int, pool: int, window: float, settle: float) -> dict:
    ports = free_ports(n)
    seconds = CONVERGE_TIMEOUT + settle + window + 30
    nodes = []
    try:
        nodes.append(Node(0, ports[0], "-", pool, seconds))
        time.sleep(0.2)  # let the seed bind before others dial it
        for i in range(1, n):
            nodes.append(Node(i, ports[i], f"127.0.0.1:{ports[0]}", pool, seconds))
        t0 = time.monotonic()
        while True:
            recs = [x.latest() for x in nodes]
            if all(r and r["alive"] == n for r in recs):
                break
            if time.monotonic() - t0 > CONVERGE_TIMEOUT:
                seen = sorted(r["alive"] if r else 0 for r in recs)
                raise RuntimeError(f"N={n} pool={pool}: no convergence, alive={seen}")
            time.sleep(0.2)
        converge = time.monotonic() - t0
        time.sleep(settle)
        start = [(x.latest(), x.cpu_seconds()) for x in nodes]
        ts = time.monotonic()
        time.sleep(window)
        end = [(x.latest(), x.cpu_seconds()) for x in nodes]
        dt = time.monotonic() - ts
        rss = [x.rss_kib() for x in nodes]
    finally:
        for x in nodes:
            x.kill()

    def rate(key: str) -> list[float]:
        return [
            (e[0][key] - s[0][key]) / (e[0]["t"] - s[0]["t"])
            for s, e in zip(start, end, strict=True)
        ]

    out_bps = rate("bytes_out")
    in_bps = rate("bytes_in")
    hs = rate("handshakes_ok")
    pkts = rate("packets_out")
    ctl_pkts = rate("control_packets_out")
    ctl_bps = rate("control_bytes_out")
    core_bps = rate("core_bytes_out")
    cpu = [(e[1] - s[1]) / dt * 100.0 for s, e in zip(start, end, strict=True)]
    last = [e[0] for e in end]
    return {
        "nodes": n,
        "pool": pool if pool else 512,
        "converge_s": round(converge, 1),
        "bytes_out_per_s": round(statistics.median(out_bps)),
        "bytes_out_per_s_max": round(max(out_bps)),
        "bytes_in_per_s": round(statistics.median(in_bps)),
        "packets_out_per_s": round(statistics.median(pkts), 1),
        "control_packets_out_per_s": round(statistics.median(ctl_pkts), 1),
        "control_bytes_out_per_s": round(statistics.median(ctl_bps)),
        "core_bytes_out_per_s": round(statistics.median(core_bps)),
        "handshakes_per_s": round(statistics.mean(hs), 3),
        "cpu_pct": round(statistics.median(cpu), 2),
        "cpu_pct_max": round(max(cpu), 2),
        "rss_mib": round(statistics.median(rss) / 1024.0, 1),
        "conns_open": statistics.median(r["conns_open"] for r in last),
        "suspicions": sum(
            e[0]["suspicions"] - s[0]["suspicions"] for s, e in zip(start, end, strict=True)
        ),
        "failures": sum(r["failures_declared"] for r in last),
        "window_s": round(dt, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--pool", type=int, nargs="+", default=[0, 8])
    ap.add_argument("--window", type=float, default=30.0)
    # Probes visit peers round-robin at one per second, so each node has
    # dialled every peer about N seconds after joining: settle past that.
    ap.add_argument("--settle", type=float, default=30.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not os.access(RUNNER, os.X_OK):
        sys.exit(f"{RUNNER} missing: run `make bench` first")
    measured = commit()  # before the run: the tree may change while it runs
    results = []
    print(
        "| N | pool | converge s | bytes/s out per node (max) | bytes/s in | packets/s out"
        " | handshakes/s per node | CPU % of a core (max) | RSS MiB | conns open"
        " | suspicions in window | failures |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.nodes:
        for pool in args.pool:
            r = run(n, pool, args.window, args.settle)
            results.append(r)
            print(
                f"| {r['nodes']} | {r['pool']} | {r['converge_s']} | {r['bytes_out_per_s']}"
                f" ({r['bytes_out_per_s_max']}) | {r['bytes_in_per_s']} | {r['packets_out_per_s']}"
                f" | {r['handshakes_per_s']} | {r['cpu_pct']} ({r['cpu_pct_max']}) | {r['rss_mib']}"
                f" | {r['conns_open']} | {r['suspicions']} | {r['failures']} |",
                flush=True,
            )
    if args.json:
        doc = {
            "commit": measured,
            "command": " ".join(["python bench/engine_bench.py", *sys.argv[1:]]),
            "results": results,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
