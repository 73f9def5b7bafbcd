"""Real agent processes on loopback for tests and benchmarks.

:class:`Agents` starts ``clustermember agent`` processes, talks to their
control sockets and records every agent's event stream in a thread, so a
caller can say not only where a cluster ends up but what happened on the
way. Every wait polls a condition under a generous deadline; every process
is killed by PID by :meth:`Agents.stop`.

    agents = Agents(tmp_path)
    try:
        a, b, c = agents.cluster(3)
        print(a.stats()["counters"]["net_conns_open"])
    finally:
        agents.stop()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "clustermember"]
# Deadline for anything that depends on gossip or failure detection: long
# enough for a loaded 2-core machine; polls end as soon as the condition holds.
DEADLINE = 60.0
POLL = 0.1


def free_port() -> int:
    """A UDP port on loopback that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(path: str, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request to an agent's control socket; the agent's JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"agent at {path} closed the connection")
            buf += chunk
    resp = json.loads(buf)
    if not resp.get("ok"):
        raise AssertionError(f"control request {req} failed: {resp}")
    return resp


def eventually(
    cond: Callable[[], object],
    what: str,
    deadline: float = DEADLINE,
    retry: tuple[type[Exception], ...] = (),
) -> None:
    """Poll cond until true; fail naming what was awaited.

    An exception from cond fails the wait at once: a dead agent (its control
    socket refuses) or a misspelt field (a KeyError) must not turn into a
    timeout. Only the exception types in ``retry`` are polled through, for
    a condition the caller knows may raise while the awaited state forms
    (an agent still starting, say); the last of them is chained to the
    timeout's error, which then shows why the condition never held."""
    end = time.monotonic() + deadline
    last: Exception | None = None
    while True:
        try:
            if cond():
                return
        except retry as exc:
            last = exc
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}") from last
        time.sleep(POLL)


@dataclass
class Seen:
    """One event as an agent streamed it: ``at`` when the test read it,
    ``mono`` when the engine made it (both CLOCK_MONOTONIC, shared by every
    process on the machine)."""

    at: float
    mono: float
    kind: str
    node: str
    state: str
    incarnation: int
    addr: str
    other_addr: str | None


ARMED = """
import json, sys
from clustermember.__main__ import main
import clustermember._agent, clustermember._membership
print("armed", flush=True)
sys.exit(main(json.loads(sys.stdin.readline())))
"""


@dataclass
class Armed:
    """A waiting interpreter made by :meth:`Agents.arm`."""

    proc: subprocess.Popen[str]
    stderr: Path


@dataclass
class Agent:
    """One agent process and the events it has streamed so far."""

    name: str
    node_id: str
    ctl: str
    proc: subprocess.Popen[str]
    addr: str
    stderr: Path
    events: list[Seen] = field(default_factory=list)
    reader: threading.Thread | None = None
    ready: str = ""  # the line it printed when ready (addresses it serves)

    def members(self) -> dict[str, dict[str, Any]]:
        """Member id -> record (state, incarnation, addr, tags) in this agent's view."""
        return {m["id"]: m for m in control(self.ctl, {"op": "members"})["members"]}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def watch(self) -> None:
        """Start recording this agent's event stream in a thread."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.ctl)
        sock.sendall(b'{"op": "events"}\n')

        def run() -> None:
            with sock, sock.makefile("r") as lines:
                for line in lines:
                    ev = json.loads(line).get("event")
                    if not ev:
                        continue
                    node = ev.get("node") or {}
                    self.events.append(
                        Seen(
                            time.monotonic(),
                            ev["monotonic"],
                            ev["type"],
                            node.get("id", ""),
                            node.get("state", ""),
                            node.get("incarnation", -1),
                            node.get("addr", ""),
                            ev.get("other_addr"),
                        )
                    )

        self.reader = threading.Thread(target=run, name=f"events-{self.name}", daemon=True)
        self.reader.start()

    def stats(self) -> dict[str, Any]:
        """This agent's ClusterStats as a dict (``counters`` holds every raw counter)."""
        return control(self.ctl, {"op": "stats"})["stats"]

    def cpu_seconds(self) -> float:
        """User plus system CPU time this agent's process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def assert_stream_intact(self) -> None:
        """Fail unless every event since watch() was seen: the reader is still
        running and the agent never reported events dropped. A check that no
        bad event happened means nothing on a dead or lossy stream."""
        assert self.reader is not None and self.reader.is_alive(), (
            f"the event stream of {self.name} ended: {self.stderr.read_text()[-2000:]}"
        )
        dropped = [e for e in list(self.events) if e.kind == "EventsDropped"]
        assert not dropped, f"{self.name} dropped events: {dropped}"

    def since(self, t0: float, *kinds: str, node: str | None = None) -> list[Seen]:
        """Events read at or after t0, of the given kinds, about node (if given)."""
        return [
            e
            for e in list(self.events)
            if e.at >= t0 and (not kinds or e.kind in kinds) and (node is None or e.node == node)
        ]


class Agents:
    """Agent processes started by one test; every one killed by PID at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = tmp / "cluster.key"
        self.key.write_text(
            subprocess.run(
                [*CLI, "keygen"], capture_output=True, text=True, check=True, timeout=60
            ).stdout
        )
        self.all: list[Agent] = []
        self.extra: list[subprocess.Popen[Any]] = []
        self._serial = 0

    def start(
        self,
        node_id: str,
        *,
        bind: str = "127.0.0.1:0",
        join: str | None = None,
        profile: str = "local",
        args: tuple[str, ...] = (),
        watch: bool = True,
        armed: Armed | None = None,
        launched: Callable[[Path], None] | None = None,
    ) -> Agent:
        """Start an agent, wait for 'agent ready', and record its events.

        With ``armed`` (from :meth:`arm`), the interpreter is already up and
        waiting: the agent starts the moment this is called. ``launched``, if
        given, is called with the agent's log file once the process has its
        arguments and before its readiness is awaited (to resume peers its
        join needs, say).
        """
        name, ctl, cmd = self._command(node_id, bind, join, profile, args)
        stderr = self.tmp / f"{name}.log"
        if armed is not None:
            proc = armed.proc
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(cmd[len(CLI) :]) + "\n")
            proc.stdin.flush()
            stderr = armed.stderr
        else:
            with stderr.open("w") as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        if launched is not None:
            launched(stderr)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("agent ready"):
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError(f"agent {name} did not start: {line!r}\n{stderr.read_text()}")
        addr = line.split(" at ")[1].split(",")[0]
        agent = Agent(name, node_id, ctl, proc, addr, stderr, ready=line.strip())
        self.all.append(agent)
        if watch:
            agent.watch()
        return agent

    def _command(
        self, node_id: str, bind: str, join: str | None, profile: str, args: tuple[str, ...]
    ) -> tuple[str, str, list[str]]:
        """An agent's name (unique), control socket and command line."""
        self._serial += 1
        name = f"{node_id}.{self._serial}"
        ctl = str(self.tmp / f"{name}.sock")
        cmd = [
            *CLI,
            "agent",
            "--bind",
            bind,
            "--node-id",
            node_id,
            "--key-file",
            str(self.key),
            "--control",
            ctl,
            "--profile",
            profile,
            "--log-level",
            "info",
            *args,
        ]
        if join:
            cmd += ["--join", join]
        return name, ctl, cmd

    def run_to_exit(
        self, node_id: str, *, join: str, profile: str = "local", timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run an agent that must stop by itself (a join refused to it), bounded
        by ``timeout``; returns its exit code and output.

        >>> r = agents.run_to_exit("n1", join=seed.addr)  # doctest: +SKIP
        """
        _, _, cmd = self._command(node_id, "127.0.0.1:0", join, profile, ())
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def arm(self) -> Armed:
        """An interpreter with clustermember imported, waiting on stdin for the
        agent's arguments: a restart then costs no interpreter start-up."""
        self._serial += 1
        stderr = self.tmp / f"armed.{self._serial}.log"
        with stderr.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", ARMED],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.extra.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "armed\n", stderr.read_text()
        return Armed(proc, stderr)

    def cluster(self, n: int, prefix: str = "n", **kw: Any) -> list[Agent]:
        """n agents, each joining through the first; returns once all are alive everywhere."""
        first = self.start(f"{prefix}0", **kw)
        rest = [self.start(f"{prefix}{i}", join=first.addr, **kw) for i in range(1, n)]
        nodes = [first, *rest]
        wait_alive_everywhere(nodes, [a.node_id for a in nodes])
        return nodes

    def kill(self, agent: Agent, sig: int = signal.SIGKILL) -> None:
        """Crash one agent (only ever a process this object started)."""
        if agent.alive():
            os.kill(agent.proc.pid, signal.SIGCONT)
            os.kill(agent.proc.pid, sig)
        agent.proc.wait(timeout=30)

    def stop(self) -> None:
        for a in self.all:
            if a.alive():
                os.kill(a.proc.pid, signal.SIGCONT)
                os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait(timeout=30)
        for p in self.extra:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def states(view: Agent, ids: list[str]) -> dict[str, str]:
    m = view.members()
    return {i: m[i]["state"] if i in m else "unknown" for i in ids}


def wait_alive_everywhere(
    views: list[Agent],
    ids: list[str],
    deadline: float = DEADLINE,
    retry: tuple[type[Exception], ...] = (),
) -> None:
    """Wait until every view sees every one of ids alive (see
    :func:`eventually` for ``retry``)."""
    eventually(
        lambda: all(set(states(v, ids).values()) == {"alive"} for v in views),
        f"{', '.join(ids)} alive at {', '.join(v.name for v in views)}",
        deadline,
        retry,
    )


def false_failures(views: list[Agent], live: set[str], t0: float) -> list[tuple[str, Seen]]:
    """Every failure of a live member that any view reported since t0."""
    return [(v.name, e) for v in views for e in v.since(t0, "NodeFailed") if e.node in live]
