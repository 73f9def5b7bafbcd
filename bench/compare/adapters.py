"""One adapter per membership system, all with the same small interface.

An adapter starts node i on 127.0.0.1:PORT with a name, tags and a seed to
join (in a cgroup of its own, when given one, so its traffic is counted),
waits until its process is up (its control endpoint answers), reads the
members one node sees (state and tags, with states mapped to alive / suspect
/ failed / left / leaving), starts a tag change without waiting for it,
collects the node's own suspicion and failure reports, leaves gracefully,
kills hard (SIGKILL, by PID), shares the node's core with a CPU hog (every
system) or runs a busy Python thread in it (Python systems), and stops
everything it started::

    sys_ = make("serf-lan", workdir)
    n0 = sys_.start(0, "n0", 23000, {"role": "web"}, seed=None)
    sys_.view(n0)          # {"n0": ("alive", {"role": "web"}), ...}
    sys_.stop_all()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compare.accounting import Report, parse_cm_event, parse_serf_line, parse_swim_line

View = dict[str, tuple[str, dict[str, str]]]
HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 60.0
UP_POLL = 0.01  # pause between tries of a starting agent's control endpoint


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the benchmark process dies, so an
    interrupted run leaves no agents behind (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _child_setup(cgroup: Path | None) -> Any:
    """preexec_fn: die with the parent, and enter cgroup (if any) before exec."""

    def setup() -> None:
        _die_with_parent()
        if cgroup is not None:
            with open(cgroup / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    return setup


HOG = "while True:\n    pass"


def hog_core() -> int:
    """The core a starved agent shares with the hog: the last one."""
    return max(os.sched_getaffinity(0))


def _pin_all_threads(pid: int, cpus: set[int]) -> set[int]:
    """Set the affinity of every thread of pid; returns the old one."""
    old = os.sched_getaffinity(pid)
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)
    return old


class TagCall:
    """A tag change prepared on an open connection: start() sends it and
    returns at once; a thread reads the reply and notes when it came."""

    def __init__(self, send: Any, wait_reply: Any) -> None:
        self._send = send
        self._wait_reply = wait_reply
        self.returned: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._reply, daemon=True)

    def start(self) -> None:
        self._send()
        self._thread.start()

    def _reply(self) -> None:
        try:
            self._wait_reply()
            self.returned = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            self.error = repr(exc)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class AdapterError(RuntimeError):
    """A node could not be started or did not answer."""


@dataclass
class Node:
    """A started node: its name, ports and process."""

    index: int
    name: str
    port: int
    proc: subprocess.Popen
    extra: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def _wait_line(proc: subprocess.Popen, want: str, what: str) -> str:
    """Read stdout lines until one starts with want (bounded by READY_TIMEOUT)."""
    deadline = time.monotonic() + READY_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise AdapterError(f"{what} exited before it was ready (code {proc.returncode})")
        if line.startswith(want):
            return line
    raise AdapterError(f"{what} not ready after {READY_TIMEOUT} s")


# The interpreter the Python agents run (clustermember's, and swim-protocol's
# wrapper): this one, unless `run` sets a clean one (clean_interpreter).
AGENT_PYTHON = sys.executable


def clean_interpreter(where: Path) -> str:
    """A venv at `where` (made once) running this interpreter, with this
    environment's packages importable (clustermember from this checkout,
    swim-protocol and the rest from site-packages, as plain path entries)
    but none of its start-up hooks: `.pth` files that import modules run
    in every Python process started from site-packages itself (on this
    machine one imports certifi: 35 ms of CPU for a bare interpreter, about
    10 ms for an agent, which imports much of the same anyway), and
    neither package is to be charged for them. A service deploys into a
    venv of its own, which has none. Returns the venv's python."""
    import site
    import venv

    py = where / "bin" / "python"
    if not py.exists():
        venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    pkg = Path(__file__).resolve().parent.parent.parent
    (purelib,) = (where / "lib").glob("python3*/site-packages")
    paths = [str(pkg), *site.getsitepackages()]
    (purelib / "_bench_paths.pth").write_text("".join(p + "\n" for p in paths))
    return str(py)


class System:
    """Base: process bookkeeping shared by every adapter."""

    name = "system"
    supports_leave = True
    supports_loss = False
    supports_busy_thread = False  # a busy Python thread inside the agent

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes: list[Node] = []
        self.hogs: list[subprocess.Popen] = []

    # -- interface ----------------------------------------------------
    def start(
        self,
        i: int,
        name: str,
        port: int,
        tags: dict[str, str],
        seed: int | None,
        cgroup: Path | None = None,
    ) -> Node:
        raise NotImplementedError

    def wait_up(self, node: Node) -> None:
        """Return once the node's process is up: its control endpoint answers."""
        raise NotImplementedError

    def view(self, node: Node) -> View:
        raise NotImplementedError

    def tag_call(self, node: Node, key: str, value: str) -> TagCall:
        """A tag change ready to send (its connection already open)."""
        raise NotImplementedError

    def leave(self, node: Node) -> None:
        raise NotImplementedError

    def busy_thread(self, node: Node, on: bool) -> None:
        raise AdapterError(f"{self.name} runs no Python in its agent")

    def counters(self, node: Node) -> dict[str, float]:
        """The agent's own counters (cumulative), where it exposes them: the
        cost window records their growth beside the bytes it measures."""
        return {}

    def report_mark(self, node: Node) -> int:
        """A position in the node's suspicion/failure reports (a log offset)."""
        assert node.log is not None
        return node.log.stat().st_size

    def reports(self, node: Node, start: int, end: int) -> list[Report]:
        """The node's suspicion and failure reports between two marks."""
        assert node.log is not None
        with node.log.open("rb") as f:
            f.seek(start)
            text = f.read(end - start).decode("utf-8", "replace")
        return [r for r in map(self._parse, text.splitlines()) if r is not None]

    def _parse(self, line: str) -> Report | None:
        raise NotImplementedError

    def hog(self, node: Node, on: bool) -> None:
        """Share the node's core with a CPU hog: every thread of the agent
        and a spinning process pinned to the same core (the agent gets
        about half of it), the same stress for every system."""
        if on:
            cpu = {hog_core()}
            hog = subprocess.Popen(
                [sys.executable, "-c", HOG],
                preexec_fn=lambda: (_die_with_parent(), os.sched_setaffinity(0, cpu)),
            )
            self.hogs.append(hog)
            node.extra["hog"] = hog
            node.extra["affinity"] = _pin_all_threads(node.pid, cpu)
        else:
            hog = node.extra.pop("hog", None)
            if hog is not None:
                hog.kill()
                hog.wait(timeout=10)
            aff = node.extra.pop("affinity", None)
            if aff:
                _pin_all_threads(node.pid, aff)

    def kill(self, node: Node) -> None:
        """SIGKILL, by PID."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Kill every process this adapter started, by PID, and reap it."""
        for p in [n.proc for n in self.nodes] + self.hogs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for p in [n.proc for n in self.nodes] + self.hogs:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        for n in self.nodes:
            for f in ("stdout", "stdin", "stderr"):
                s = getattr(n.proc, f)
                if s is not None:
                    with contextlib.suppress(Exception):
                        s.close()
        self.hogs.clear()

    def rpc_port(self, port: int) -> int | None:
        """The TCP port on which the agent of gossip port port answers the
        benchmark's own reads, if any (its replies are not gossip traffic)."""
        return None

    def _spawn(
        self, cmd: list[str], log: Path, cgroup: Path | None, both: bool = False, **kw: Any
    ) -> subprocess.Popen:
        """Start cmd in cgroup with stderr (both: stdout too) to log."""
        f = open(log, "w")  # noqa: SIM115 - the child holds it
        try:
            if both:
                kw.update(stdout=f, stderr=subprocess.STDOUT)
            else:
                kw.setdefault("stdout", subprocess.PIPE)
                kw["stderr"] = f
            return subprocess.Popen(cmd, text=True, preexec_fn=_child_setup(cgroup), **kw)
        finally:
            f.close()


# ---------------------------------------------------------------- clustermember


# Started as the real CLI agent, with a Python thread that spins on SIGUSR1
# and stops on SIGUSR2 (the `busy` scenario), from inside the agent process.
CM_LAUNCH = """
import signal, sys, threading
stop = threading.Event()
def spin():
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x += 1
def on(*_):
    stop.clear(); threading.Thread(target=spin, daemon=True).start()
def off(*_):
    stop.set()
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGUSR2, off)
from clustermember.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


# What the cost window records of a clustermember agent's own counters: the
# transport's bytes and how many of them carried no payload, new connections
# (each costs a handshake of about 3.8 kB both ways) and idle closes, and the
# protocol's own bytes and push-pulls.
COUNTERS = (
    "transport_bytes_out",
    "transport_control_bytes_out",
    "transport_handshakes_ok",
    "transport_conns_timed_out",
    "protocol_bytes_out",
    "protocol_pushpull_out",
    "protocol_probes",
)


class ClusterMember(System):
    """clustermember CLI agents (`python -m clustermember agent`)."""

    supports_loss = True

    def __init__(
        self,
        workdir: Path,
        profile: str = "lan",
        loss: float = 0.0,
        settings: dict[str, float] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.profile = profile
        self.loss = loss
        self.settings = dict(settings or {})
        self.name = name or f"clustermember-{profile}" + (f"-loss{int(loss * 100)}" if loss else "")
        self.key = workdir / "cluster.key"
        self.key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")

    supports_busy_thread = True

    def start(
        self,
        i: int,
        name: str,
        port: int,
        tags: dict[str, str],
        seed: int | None,
        cgroup: Path | None = None,
    ) -> Node:
        sock = self.workdir / f"{name}.sock"
        cmd = [
            AGENT_PYTHON,
            "-c",
            CM_LAUNCH,
            "agent",
            "--bind",
            f"127.0.0.1:{port}",
            "--node-id",
            name,
            "--key-file",
            str(self.key),
            "--profile",
            self.profile,
            "--control",
            str(sock),
            "--log-level",
            "warning",
        ]
        for k, v in tags.items():
            cmd += ["--tag", f"{k}={v}"]
        if seed is not None:
            cmd += ["--join", f"127.0.0.1:{seed}"]
        if self.loss:
            cmd += ["--fault-drop", str(self.loss)]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        log = self.workdir / f"{name}.log"
        proc = self._spawn(cmd, log, cgroup, stdout=subprocess.DEVNULL)
        node = Node(i, name, port, proc, {"sock": str(sock), "reports": []}, log)
        self.nodes.append(node)
        return node

    def wait_up(self, node: Node) -> None:
        """Up: the control socket answers (the agent opens it just before it
        binds its node socket). Then its event stream is opened, so every
        suspicion it raises or learns from now on is kept."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise AdapterError(f"clustermember agent {node.name} exited")
            try:
                self._call(node, {"op": "status"}, timeout=1.0)
                break
            except (OSError, ValueError, AdapterError):
                time.sleep(UP_POLL)
        else:
            raise AdapterError(f"clustermember agent {node.name}: control not up")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(node.extra["sock"])
        s.sendall(b'{"op": "events"}\n')
        node.extra["events"] = s
        t = threading.Thread(target=self._pump, args=(s, node.extra["reports"]), daemon=True)
        t.start()

    @staticmethod
    def _pump(s: socket.socket, out: list[Report]) -> None:
        with contextlib.suppress(OSError, ValueError), s.makefile("r") as f:
            for line in f:
                r = parse_cm_event(line)
                if r is not None:
                    out.append(r)

    def report_mark(self, node: Node) -> int:
        return len(node.extra["reports"])

    def reports(self, node: Node, start: int, end: int) -> list[Report]:
        return list(node.extra["reports"][start:end])

    def _call(self, node: Node, req: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(node.extra["sock"])
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        resp = json.loads(buf)
        if not resp.get("ok"):
            raise AdapterError(f"{node.name}: {resp.get('error')}")
        return resp

    def counters(self, node: Node) -> dict[str, float]:
        flat = self._call(node, {"op": "stats"})["flat"]
        return {k: float(flat[k]) for k in COUNTERS}

    def view(self, node: Node) -> View:
        members = self._call(node, {"op": "members"})["members"]
        return {m["id"]: (m["state"], dict(m["tags"])) for m in members}

    def tag_call(self, node: Node, key: str, value: str) -> TagCall:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30.0)
        s.connect(node.extra["sock"])
        req = json.dumps({"op": "tags", "set": {key: value}}).encode() + b"\n"

        def reply() -> None:
            with s, s.makefile("r") as f:
                resp = json.loads(f.readline())
            if not resp.get("ok"):
                raise AdapterError(f"{node.name}: {resp.get('error')}")

        return TagCall(lambda: s.sendall(req), reply)

    def leave(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGTERM)  # the agent leaves gracefully, then exits

    def busy_thread(self, node: Node, on: bool) -> None:
        os.kill(node.pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    def _close(self, node: Node) -> None:
        s = node.extra.pop("events", None)
        if s is not None:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def kill(self, node: Node) -> None:
        self._close(node)
        super().kill(node)

    def stop_all(self) -> None:
        for n in self.nodes:
            self._close(n)
        super().stop_all()


# ------------------------------------------------------------------------- Serf


class SerfRPC:
    """A minimal client of Serf's msgpack RPC (handshake, members, tags)."""

    def __init__(self, port: int) -> None:
        import msgpack

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.packb = msgpack.packb
        self.seq = 0
        self.request("handshake", {"Version": 1})

    def _next(self) -> Any:
        while True:
            for obj in self.unpacker:
                return obj
            data = self.sock.recv(65536)
            if not data:
                raise AdapterError("serf RPC connection closed")
            self.unpacker.feed(data)

    def send(self, command: str, body: dict[str, Any] | None) -> None:
        self.seq += 1
        msg = self.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            msg += self.packb(body)
        self.sock.sendall(msg)

    def answer(self, command: str, reply: bool) -> Any:
        header = self._next()
        if header.get("Error"):
            raise AdapterError(f"serf {command}: {header['Error']}")
        return self._next() if reply else None

    def request(self, command: str, body: dict[str, Any] | None, reply: bool = False) -> Any:
        self.send(command, body)
        return self.answer(command, reply)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Serf(System):
    """HashiCorp Serf agents (`serf agent`), with encryption on."""

    RPC_OFFSET = 1000  # RPC port = gossip port + this

    def __init__(self, workdir: Path, profile: str = "lan") -> None:
        super().__init__(workdir)
        self.profile = profile
        self.name = f"serf-{profile}"
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()

    def start(
        self,
        i: int,
        name: str,
        port: int,
        tags: dict[str, str],
        seed: int | None,
        cgroup: Path | None = None,
    ) -> Node:
        rpc = port + self.RPC_OFFSET
        cmd = [
            "serf",
            "agent",
            f"-node={name}",
            f"-bind=127.0.0.1:{port}",
            f"-rpc-addr=127.0.0.1:{rpc}",
            f"-profile={self.profile}",
            f"-encrypt={self.key}",
            # info: memberlist logs its suspicions at this level, and nowhere else
            "-log-level=info",
        ]
        for k, v in tags.items():
            cmd.append(f"-tag={k}={v}")
        if seed is not None:
            cmd.append(f"-join=127.0.0.1:{seed}")
        log = self.workdir / f"{name}.log"
        proc = self._spawn(cmd, log, cgroup, both=True)
        node = Node(i, name, port, proc, {"rpc_port": rpc}, log)
        self.nodes.append(node)
        return node

    def wait_up(self, node: Node) -> None:
        """Up: the RPC port answers a handshake."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise AdapterError(f"serf agent {node.name} exited (code {node.proc.returncode})")
            try:
                node.extra["rpc"] = SerfRPC(node.extra["rpc_port"])
                return
            except OSError:
                time.sleep(UP_POLL)
        raise AdapterError(f"serf agent {node.name}: RPC not up after {READY_TIMEOUT} s")

    def _rpc(self, node: Node) -> SerfRPC:
        if "rpc" not in node.extra:
            node.extra["rpc"] = SerfRPC(node.extra["rpc_port"])
        return node.extra["rpc"]

    def view(self, node: Node) -> View:
        body = self._rpc(node).request("members", None, reply=True)
        return {m["Name"]: (m["Status"], dict(m.get("Tags") or {})) for m in body["Members"]}

    def tag_call(self, node: Node, key: str, value: str) -> TagCall:
        """On a connection of its own: Serf answers a tags request only once
        the update has been broadcast, so its reply is read by a thread."""
        rpc = SerfRPC(node.extra["rpc_port"])
        rpc.sock.settimeout(30.0)

        def reply() -> None:
            try:
                rpc.answer("tags", reply=False)
            finally:
                rpc.close()

        return TagCall(lambda: rpc.send("tags", {"Tags": {key: value}, "DeleteTags": []}), reply)

    def leave(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGINT)  # Serf leaves gracefully on SIGINT

    def _parse(self, line: str) -> Report | None:
        return parse_serf_line(line)

    def rpc_port(self, port: int) -> int | None:
        return port + self.RPC_OFFSET

    def kill(self, node: Node) -> None:
        rpc = node.extra.pop("rpc", None)
        if rpc is not None:
            rpc.close()
        super().kill(node)

    def stop_all(self) -> None:
        for n in self.nodes:
            rpc = n.extra.pop("rpc", None)
            if rpc is not None:
                rpc.close()
        super().stop_all()


# ---------------------------------------------------------------- swim-protocol


class Swim(System):
    """The pure-Python swim-protocol, through bench/compare/swim_node.py."""

    name = "swim-protocol"
    supports_leave = False
    supports_busy_thread = True

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.secret = secrets.token_hex(16)
        self.by_addr: dict[str, str] = {}

    def start(
        self,
        i: int,
        name: str,
        port: int,
        tags: dict[str, str],
        seed: int | None,
        cgroup: Path | None = None,
    ) -> Node:
        cmd = [
            AGENT_PYTHON,
            str(HERE / "swim_node.py"),
            "--port",
            str(port),
            "--name",
            name,
            "--secret",
            self.secret,
        ]
        # swim-protocol needs a peer even on the first node; the seed names
        # the next port, which joins it back.
        cmd += ["--peer", f"127.0.0.1:{seed if seed is not None else port + 1}"]
        for k, v in tags.items():
            cmd += ["--tag", f"{k}={v}"]
        log = self.workdir / f"{name}.log"
        proc = self._spawn(cmd, log, cgroup, stdin=subprocess.PIPE)
        self.by_addr[f"127.0.0.1:{port}"] = name
        node = Node(i, name, port, proc, {}, log)
        self.nodes.append(node)
        return node

    def wait_up(self, node: Node) -> None:
        """Up: the wrapper has bound its socket and says so (it has no
        other endpoint to ask)."""
        _wait_line(node.proc, "ready", f"swim-protocol node {node.name}")

    def _cmd(self, node: Node, line: str) -> str:
        assert node.proc.stdin is not None and node.proc.stdout is not None
        node.proc.stdin.write(line + "\n")
        node.proc.stdin.flush()
        out = node.proc.stdout.readline()
        if not out:
            raise AdapterError(f"swim node {node.name} exited")
        return out

    def view(self, node: Node) -> View:
        raw = json.loads(self._cmd(node, "view"))
        out: View = {}
        for key, (state, tags) in raw.items():
            tags = {k: v for k, v in tags.items() if k != "name"}
            out[self.by_addr.get(key, key)] = (state, tags)
        return out

    def tag_call(self, node: Node, key: str, value: str) -> TagCall:
        """The wrapper applies a tag in its own process at once; its one
        pipe is shared with the views, so the reply is read in start()."""
        return TagCall(lambda: self._cmd(node, f"tag {key} {value}"), lambda: None)

    def leave(self, node: Node) -> None:
        raise AdapterError("swim-protocol has no graceful leave")

    def busy_thread(self, node: Node, on: bool) -> None:
        self._cmd(node, "busy" if on else "idle")

    def _parse(self, line: str) -> Report | None:
        r = parse_swim_line(line)
        if r is None:
            return None
        return Report(r.t, r.kind, self.by_addr.get(r.subject, r.subject))


SYSTEMS = (
    "clustermember-lan",
    "clustermember-local",
    "serf-lan",
    "serf-local",
    "swim-protocol",
    "clustermember-lan-loss10",
    "clustermember-lan-1s",
    "clustermember-lan-1s-m2",
    "clustermember-lan-1s-m1",
    "clustermember-lan-1s-m1k1",
    "clustermember-lan-500ms",
)

# Serf's LAN timing (memberlist DefaultLANConfig: ProbeInterval 1 s,
# ProbeTimeout 500 ms), for a comparison at equal probing: with memberlist's
# suspicion (multiplier 4, mult - 2 = 2 confirmations), then shorter ones
# (bench/profile_study.py): m2 and m1 await memberlist's mult - 2
# confirmations (none), m1k1 one (the LAN profile's values since it became
# the default). 500ms is the LAN profile before that, so that the figures
# measured with it can be made again. Each names every setting, so that a
# change of the LAN profile changes none of them, nack_confirms (off in
# every profile, as in memberlist) included.
SERF_LAN_PROBING = {"probe_interval": 1.0, "probe_timeout": 0.5}
LAN_WITH_SETTINGS: dict[str, dict[str, float]] = {
    "clustermember-lan-1s": {
        **SERF_LAN_PROBING,
        "suspicion_mult": 4,
        "suspicion_confirmations": 2,
        "nack_confirms": False,
    },
    "clustermember-lan-1s-m2": {
        **SERF_LAN_PROBING,
        "suspicion_mult": 2,
        "suspicion_confirmations": 0,
        "nack_confirms": False,
    },
    "clustermember-lan-1s-m1": {
        **SERF_LAN_PROBING,
        "suspicion_mult": 1,
        "suspicion_confirmations": 0,
        "nack_confirms": False,
    },
    "clustermember-lan-1s-m1k1": {
        **SERF_LAN_PROBING,
        "suspicion_mult": 1,
        "suspicion_confirmations": 1,
        "nack_confirms": False,
    },
    "clustermember-lan-500ms": {
        "probe_interval": 0.5,
        "probe_timeout": 0.2,
        "suspicion_mult": 4,
        "suspicion_confirmations": 2,
        "nack_confirms": False,
    },
}


def make(name: str, workdir: Path) -> System:
    """The adapter called name (one of SYSTEMS)."""
    if name == "clustermember-lan":
        return ClusterMember(workdir, "lan")
    if name == "clustermember-local":
        return ClusterMember(workdir, "local")
    if name == "clustermember-lan-loss10":
        return ClusterMember(workdir, "lan", loss=0.1)
    if name in LAN_WITH_SETTINGS:
        return ClusterMember(workdir, "lan", settings=LAN_WITH_SETTINGS[name], name=name)
    if name == "serf-lan":
        return Serf(workdir, "lan")
    if name == "serf-local":
        return Serf(workdir, "local")
    if name == "swim-protocol":
        return Swim(workdir)
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
