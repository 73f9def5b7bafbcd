"""One adapter per membership system, all with the same small interface.

An adapter starts node i on 127.0.0.1:PORT with a name, tags and a seed to
join, reads the members one node sees (state and tags, with states mapped to
alive / suspect / failed / left / leaving), changes a tag, leaves gracefully,
kills hard (SIGKILL, by PID), makes a node's process CPU-starved and back,
and stops everything it started::

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

View = dict[str, tuple[str, dict[str, str]]]
HERE = Path(__file__).resolve().parent
READY_TIMEOUT = 60.0


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the benchmark process dies, so an
    interrupted run leaves no agents behind (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


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


class System:
    """Base: process bookkeeping shared by every adapter."""

    name = "system"
    supports_leave = True
    supports_loss = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes: list[Node] = []
        self.hogs: list[subprocess.Popen] = []

    # -- interface ----------------------------------------------------
    def start(self, i: int, name: str, port: int, tags: dict[str, str], seed: int | None) -> Node:
        raise NotImplementedError

    def view(self, node: Node) -> View:
        raise NotImplementedError

    def set_tag(self, node: Node, key: str, value: str) -> None:
        raise NotImplementedError

    def leave(self, node: Node) -> None:
        raise NotImplementedError

    def starve(self, node: Node, on: bool) -> None:
        raise NotImplementedError

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

    def ports(self, node: Node) -> list[tuple[str, int]]:
        """(protocol, port) pairs whose outgoing traffic is the node's."""
        return [("udp", node.port)]

    def _spawn(self, cmd: list[str], log: Path, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),  # noqa: SIM115 - closed with the process
            text=True,
            preexec_fn=_die_with_parent,
            **kw,
        )


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


class ClusterMember(System):
    """clustermember CLI agents (`python -m clustermember agent`)."""

    supports_loss = True

    def __init__(self, workdir: Path, profile: str = "lan", loss: float = 0.0) -> None:
        super().__init__(workdir)
        self.profile = profile
        self.loss = loss
        self.name = f"clustermember-{profile}" + (f"-loss{int(loss * 100)}" if loss else "")
        self.key = workdir / "cluster.key"
        self.key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")

    def start(self, i: int, name: str, port: int, tags: dict[str, str], seed: int | None) -> Node:
        sock = self.workdir / f"{name}.sock"
        cmd = [
            sys.executable,
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
        proc = self._spawn(cmd, self.workdir / f"{name}.log")
        node = Node(i, name, port, proc, {"sock": str(sock)})
        self.nodes.append(node)
        return node

    def wait_ready(self, node: Node) -> None:
        _wait_line(node.proc, "agent ready", f"clustermember agent {node.name}")

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

    def view(self, node: Node) -> View:
        members = self._call(node, {"op": "members"})["members"]
        return {m["id"]: (m["state"], dict(m["tags"])) for m in members}

    def set_tag(self, node: Node, key: str, value: str) -> None:
        self._call(node, {"op": "tags", "set": {key: value}})

    def leave(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGTERM)  # the agent leaves gracefully, then exits

    def starve(self, node: Node, on: bool) -> None:
        os.kill(node.pid, signal.SIGUSR1 if on else signal.SIGUSR2)


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

    def request(self, command: str, body: dict[str, Any] | None, reply: bool = False) -> Any:
        self.seq += 1
        msg = self.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            msg += self.packb(body)
        self.sock.sendall(msg)
        header = self._next()
        if header.get("Error"):
            raise AdapterError(f"serf {command}: {header['Error']}")
        return self._next() if reply else None

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

    def start(self, i: int, name: str, port: int, tags: dict[str, str], seed: int | None) -> Node:
        rpc = port + self.RPC_OFFSET
        cmd = [
            "serf",
            "agent",
            f"-node={name}",
            f"-bind=127.0.0.1:{port}",
            f"-rpc-addr=127.0.0.1:{rpc}",
            f"-profile={self.profile}",
            f"-encrypt={self.key}",
            "-log-level=warn",
        ]
        for k, v in tags.items():
            cmd.append(f"-tag={k}={v}")
        if seed is not None:
            cmd.append(f"-join=127.0.0.1:{seed}")
        proc = self._spawn(cmd, self.workdir / f"{name}.log")
        node = Node(i, name, port, proc, {"rpc_port": rpc})
        self.nodes.append(node)
        return node

    def wait_ready(self, node: Node) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise AdapterError(f"serf agent {node.name} exited (code {node.proc.returncode})")
            try:
                node.extra["rpc"] = SerfRPC(node.extra["rpc_port"])
                return
            except OSError:
                time.sleep(0.05)
        raise AdapterError(f"serf agent {node.name}: RPC not up after {READY_TIMEOUT} s")

    def _rpc(self, node: Node) -> SerfRPC:
        if "rpc" not in node.extra:
            node.extra["rpc"] = SerfRPC(node.extra["rpc_port"])
        return node.extra["rpc"]

    def view(self, node: Node) -> View:
        body = self._rpc(node).request("members", None, reply=True)
        return {m["Name"]: (m["Status"], dict(m.get("Tags") or {})) for m in body["Members"]}

    def set_tag(self, node: Node, key: str, value: str) -> None:
        self._rpc(node).request("tags", {"Tags": {key: value}, "DeleteTags": []})

    def leave(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGINT)  # Serf leaves gracefully on SIGINT

    def starve(self, node: Node, on: bool) -> None:
        """Pin the agent and a CPU hog to the same core (about half a core
        for the agent, as a spinning Python thread leaves an event loop)."""
        cpu = {os.cpu_count() - 1 if os.cpu_count() else 0}
        if on:
            hog = subprocess.Popen(
                [sys.executable, "-c", "while True:\n    pass"], preexec_fn=_die_with_parent
            )
            self.hogs.append(hog)
            node.extra["hog"] = hog
            node.extra["affinity"] = os.sched_getaffinity(node.pid)
            for pid in (node.pid, hog.pid):
                os.sched_setaffinity(pid, cpu)
            # the Go runtime's threads: pin every thread of the agent
            for tid in os.listdir(f"/proc/{node.pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpu)
        else:
            hog = node.extra.pop("hog", None)
            if hog is not None:
                hog.kill()
                hog.wait(timeout=10)
            aff = node.extra.pop("affinity", None)
            if aff:
                for tid in os.listdir(f"/proc/{node.pid}/task"):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(int(tid), aff)

    def ports(self, node: Node) -> list[tuple[str, int]]:
        return [("udp", node.port), ("tcp", node.port)]

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

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.secret = secrets.token_hex(16)
        self.by_addr: dict[str, str] = {}

    def start(self, i: int, name: str, port: int, tags: dict[str, str], seed: int | None) -> Node:
        cmd = [
            sys.executable,
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
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / f"{name}.log", "w"),  # noqa: SIM115
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.by_addr[f"127.0.0.1:{port}"] = name
        node = Node(i, name, port, proc)
        self.nodes.append(node)
        return node

    def wait_ready(self, node: Node) -> None:
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

    def set_tag(self, node: Node, key: str, value: str) -> None:
        self._cmd(node, f"tag {key} {value}")

    def leave(self, node: Node) -> None:
        raise AdapterError("swim-protocol has no graceful leave")

    def starve(self, node: Node, on: bool) -> None:
        self._cmd(node, "busy" if on else "idle")


SYSTEMS = (
    "clustermember-lan",
    "clustermember-local",
    "serf-lan",
    "serf-local",
    "swim-protocol",
    "clustermember-lan-loss10",
)


def make(name: str, workdir: Path) -> System:
    """The adapter called name (one of SYSTEMS)."""
    if name == "clustermember-lan":
        return ClusterMember(workdir, "lan")
    if name == "clustermember-local":
        return ClusterMember(workdir, "local")
    if name == "clustermember-lan-loss10":
        return ClusterMember(workdir, "lan", loss=0.1)
    if name == "serf-lan":
        return Serf(workdir, "lan")
    if name == "serf-local":
        return Serf(workdir, "local")
    if name == "swim-protocol":
        return Swim(workdir)
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
