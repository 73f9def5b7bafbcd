"""Fault benchmarks with real agent processes on loopback.

    python bench/fault_bench.py loss  [--nodes 20] [--drop 0.1] [--duration 600]
    python bench/fault_bench.py scale [--nodes 100] [--duration 300]

``loss``: N agents, each dropping the given fraction of the datagrams it
sends (``--fault-drop``). Once every agent sees all N alive, the cluster runs
for ``--duration`` seconds while every agent's event stream is recorded; a
*false failure* is any NodeFailed event, at any agent, about a node that is
still running. Then one agent is killed (SIGKILL) and the time until each
survivor declares it failed is measured from the engines' own event stamps
(CLOCK_MONOTONIC, shared by every process on the machine).

``scale``: N agents without injected loss. Measures the time for the
cluster to converge (every agent sees N alive), kills one and times its
detection, then holds the cluster steady for ``--duration`` seconds counting
false failures, and reports CPU (percent of one core) and RSS per agent over
that window.

Output is one JSON object on stdout (and in ``--out`` if given). Progress
goes to stderr. Every process the benchmark starts is killed by PID when it
ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit

CLI = [sys.executable, "-m", "clustermember"]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def control(path: str, req: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """One request to an agent's control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"agent at {path} closed the connection")
            buf += chunk
    return json.loads(buf)


@dataclass
class Agent:
    """One agent process and the events it streamed."""

    node_id: str
    ctl: str
    proc: subprocess.Popen[str]
    addr: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    reader: threading.Thread | None = None
    reader_error: BaseException | None = None

    def watch(self) -> None:
        """Record this agent's event stream in a thread; check_stream() says
        whether it is still whole."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.ctl)
        sock.sendall(b'{"op": "events"}\n')

        def run() -> None:
            try:
                with sock, sock.makefile("r") as lines:
                    for line in lines:
                        ev = json.loads(line).get("event")
                        if ev:
                            self.events.append(ev)
            except Exception as exc:  # noqa: BLE001 - check_stream reports it
                # Expected once the agent is killed (its socket resets);
                # anything else fails the run at the next check_stream().
                self.reader_error = exc

        self.reader = threading.Thread(target=run, name=f"events-{self.node_id}", daemon=True)
        self.reader.start()

    def check_stream(self) -> None:
        """Raise unless every event of this running agent since watch() was
        seen: no events dropped, and its reader still reading while the
        agent runs (a stream ends with its agent). Counting false failures on
        a dead or lossy stream would report zero, wrongly."""
        dropped = [e for e in list(self.events) if e["type"] == "EventsDropped"]
        if dropped:
            raise RuntimeError(f"agent {self.node_id} dropped events: {dropped}")
        if self.proc.poll() is None and (self.reader is None or not self.reader.is_alive()):
            raise RuntimeError(
                f"the event stream of running agent {self.node_id} ended: {self.reader_error!r}"
            )

    def alive_count(self) -> int:
        members = control(self.ctl, {"op": "members"})["members"]
        return sum(1 for m in members if m["state"] == "alive")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / TICK

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20


class Cluster:
    """N agents on loopback, started in parallel; all killed by PID on close."""

    def __init__(self, n: int, profile: str, drop: float) -> None:
        self.n = n
        self.profile = profile
        self.drop = drop
        self.tmp = Path(tempfile.mkdtemp(prefix="cm-faultbench-"))
        self.key = self.tmp / "cluster.key"
        self.key.write_text(
            subprocess.run([*CLI, "keygen"], capture_output=True, text=True, check=True).stdout
        )
        self.agents: list[Agent] = []

    def spawn(self, i: int, seed: str | None) -> Agent:
        ctl = str(self.tmp / f"a{i}.sock")
        cmd = [
            *CLI,
            "agent",
            "--bind",
            "127.0.0.1:0",
            "--node-id",
            f"b{i}",
            "--key-file",
            str(self.key),
            "--control",
            ctl,
            "--profile",
            self.profile,
            "--log-level",
            "warning",
            "--join-timeout",
            "600",
        ]
        if self.drop:
            cmd += ["--fault-drop", str(self.drop)]
        if seed:
            cmd += ["--join", seed]
        log = (self.tmp / f"a{i}.log").open("w")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        agent = Agent(f"b{i}", ctl, proc)
        self.agents.append(agent)
        return agent

    @staticmethod
    def ready(agent: Agent) -> None:
        assert agent.proc.stdout is not None
        line = agent.proc.stdout.readline()
        if not line.startswith("agent ready"):
            raise RuntimeError(f"agent {agent.node_id} did not start: {line!r}")
        agent.addr = line.split(" at ")[1].split(",")[0]

    def start(self) -> float:
        """Start every agent; returns when all have joined (seconds taken)."""
        t0 = time.monotonic()
        first = self.spawn(0, None)
        self.ready(first)
        rest = [self.spawn(i, first.addr) for i in range(1, self.n)]
        for a in rest:
            self.ready(a)
        for a in self.agents:
            a.watch()
        return time.monotonic() - t0

    def converge(self, expect: int, timeout: float) -> float:
        """Seconds until every running agent sees `expect` members alive."""
        t0 = time.monotonic()
        pending = [a for a in self.agents if a.proc.poll() is None]
        while pending:
            pending = [a for a in pending if a.alive_count() != expect]
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{len(pending)} agents not converged after {timeout:.0f} s")
            if pending:
                time.sleep(0.2)
        return time.monotonic() - t0

    def kill(self, agent: Agent) -> float:
        """SIGKILL one agent; returns the monotonic time of the kill."""
        t = time.monotonic()
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(timeout=30)
        return t

    def check_streams(self) -> None:
        """Raise unless every running agent's event stream is whole."""
        for a in self.agents:
            a.check_stream()

    def detection(self, victim: Agent, t_kill: float, timeout: float) -> dict[str, float]:
        """Per-survivor detection delays (engine stamps), waiting for all."""
        survivors = [a for a in self.agents if a is not victim]
        end = time.monotonic() + timeout
        while True:
            self.check_streams()
            delays = []
            for a in survivors:
                stamps = [
                    e["monotonic"]
                    for e in list(a.events)
                    if e["type"] == "NodeFailed"
                    and e["node"]["id"] == victim.node_id
                    and e["monotonic"] >= t_kill
                ]
                if stamps:
                    delays.append(min(stamps) - t_kill)
            if len(delays) == len(survivors):
                break
            if time.monotonic() > end:
                raise RuntimeError(
                    f"only {len(delays)} of {len(survivors)} survivors detected the kill "
                    f"within {timeout:.0f} s"
                )
            time.sleep(0.1)
        return {
            "first_s": round(min(delays), 3),
            "median_s": round(statistics.median(delays), 3),
            "all_s": round(max(delays), 3),
        }

    def false_failures(self, t0: float, t1: float, exclude: set[str]) -> list[dict[str, Any]]:
        """NodeFailed events in [t0, t1) about nodes that were running."""
        self.check_streams()
        out = []
        for a in self.agents:
            for e in list(a.events):
                nid = e["node"]["id"]
                if e["type"] == "NodeFailed" and nid not in exclude and t0 <= e["monotonic"] < t1:
                    out.append({"at": a.node_id, "node": nid, "t": round(e["monotonic"] - t0, 2)})
        return out

    def count(self, kind: str, t0: float, t1: float) -> int:
        self.check_streams()
        return sum(
            1
            for a in self.agents
            for e in list(a.events)
            if e["type"] == kind and t0 <= e["monotonic"] < t1
        )

    def close(self) -> None:
        for a in self.agents:
            if a.proc.poll() is None:
                a.proc.kill()
        for a in self.agents:
            with contextlib.suppress(subprocess.TimeoutExpired):
                a.proc.wait(timeout=30)


def hold(cluster: Cluster, seconds: float) -> None:
    """Let the cluster run, saying where it is now and then."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 30.0))
        dead = [a.node_id for a in cluster.agents if a.proc.poll() is not None]
        cluster.check_streams()
        say(f"{max(0.0, end - time.monotonic()):.0f} s to go; exited agents: {dead or 'none'}")


def run_loss(args: argparse.Namespace) -> dict[str, Any]:
    c = Cluster(args.nodes, args.profile, args.drop)
    try:
        say(f"starting {args.nodes} agents, dropping {args.drop:.0%} of outgoing datagrams")
        start_s = c.start()
        converge_s = c.converge(args.nodes, args.timeout)
        say(f"converged {converge_s:.1f} s after the last agent joined; holding {args.duration} s")
        t0 = time.monotonic()
        hold(c, args.duration)
        t1 = time.monotonic()
        false = c.false_failures(t0, t1, set())
        drops = sum(
            control(a.ctl, {"op": "stats"})["stats"]["drops"].get("net_drop_fault", 0)
            for a in c.agents
        )
        victim = c.agents[-1]
        say(f"killing {victim.node_id}")
        t_kill = c.kill(victim)
        detect = c.detection(victim, t_kill, args.timeout)
        false_after = c.false_failures(t1, time.monotonic(), {victim.node_id})
        return {
            "benchmark": "loss",
            "nodes": args.nodes,
            "profile": args.profile,
            "drop": args.drop,
            "duration_s": args.duration,
            "start_s": round(start_s, 2),
            "converge_s": round(converge_s, 2),
            "false_failures": len(false) + len(false_after),
            "false_failure_events": false + false_after,
            "suspicions": c.count("NodeSuspect", t0, t1),
            "recoveries": c.count("NodeRecovered", t0, t1),
            "datagrams_dropped": drops,
            "detection": detect,
        }
    finally:
        c.close()


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    c = Cluster(args.nodes, args.profile, args.drop)
    try:
        say(f"starting {args.nodes} agents")
        start_s = c.start()
        converge_s = c.converge(args.nodes, args.timeout)
        say(f"converged {converge_s:.1f} s after the last agent joined")
        victim = c.agents[-1]
        t_kill = c.kill(victim)
        detect = c.detection(victim, t_kill, args.timeout)
        say(f"kill detected by all in {detect['all_s']:.2f} s; holding {args.duration} s")
        live = [a for a in c.agents if a is not victim]
        cpu0 = {a.node_id: a.cpu_seconds() for a in live}
        t0 = time.monotonic()
        hold(c, args.duration)
        t1 = time.monotonic()
        cpu = [100 * (a.cpu_seconds() - cpu0[a.node_id]) / (t1 - t0) for a in live]
        rss = [a.rss_mib() for a in live]
        false = c.false_failures(t0, t1, {victim.node_id})
        return {
            "benchmark": "scale",
            "nodes": args.nodes,
            "profile": args.profile,
            "duration_s": args.duration,
            "start_s": round(start_s, 2),
            "converge_s": round(converge_s, 2),
            "detection": detect,
            "false_failures": len(false),
            "false_failure_events": false,
            "suspicions": c.count("NodeSuspect", t0, t1),
            "cpu_percent_per_agent": {
                "mean": round(statistics.mean(cpu), 2),
                "max": round(max(cpu), 2),
            },
            "rss_mib_per_agent": {
                "mean": round(statistics.mean(rss), 1),
                "max": round(max(rss), 1),
            },
        }
    finally:
        c.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="bench", required=True)
    lo = sub.add_parser("loss", help="false failures under injected loss, then detection")
    lo.add_argument("--nodes", type=int, default=20)
    lo.add_argument("--drop", type=float, default=0.1, help="fraction of datagrams dropped")
    lo.add_argument("--duration", type=float, default=600.0, help="seconds under loss")
    sc = sub.add_parser("scale", help="convergence, detection, steady state, CPU and RSS")
    sc.add_argument("--nodes", type=int, default=100)
    sc.add_argument("--duration", type=float, default=300.0, help="seconds held steady")
    sc.add_argument("--drop", type=float, default=0.0, help="fraction of datagrams dropped")
    for s in (lo, sc):
        s.add_argument("--profile", choices=("lan", "wan", "local"), default="lan")
        s.add_argument(
            "--timeout", type=float, default=300.0, help="limit for convergence and detection"
        )
        s.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args()
    if args.nodes < 2:
        p.error("--nodes must be at least 2")
    if not 0.0 <= args.drop < 1.0:
        p.error("--drop must be a fraction in [0, 1)")
    # Ctrl-C or SIGTERM: unwind through the finally blocks that kill the agents.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    measured = commit()  # before the run: the tree may change while it runs
    result = run_loss(args) if args.bench == "loss" else run_scale(args)
    result = {
        "commit": measured,
        "command": " ".join(["python bench/fault_bench.py", *sys.argv[1:]]),
        **result,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if result["false_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
