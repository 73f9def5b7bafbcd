"""``clustermember demo``: a real local cluster, watched from the outside.

It starts N agent processes on loopback with a fresh key, waits for them to
see each other, tags one node and finds it from another, kills one with
SIGKILL and times its detection by every survivor, makes one leave and shows
it as left, then stops every process it started (by PID) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from clustermember._cli import format_members, keygen
from clustermember._control import ControlClient, ControlError

READY = "agent ready: node "
STEP_DEADLINE = 60.0  # seconds any one step may take before the demo gives up


class DemoError(Exception):
    """A demo step did not complete in time."""


class Demo:
    """The processes and control sockets of one demo run."""

    def __init__(self, nodes: int, workdir: Path, port: int = 0) -> None:
        self.n = nodes
        self.dir = workdir
        self.port = port
        self.procs: list[subprocess.Popen[str] | None] = []
        self.addrs: list[str] = []
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {text}", flush=True)

    def control(self, i: int) -> str:
        return str(self.dir / f"agent{i}.sock")

    def command(self, i: int, seed: str | None) -> list[str]:
        """The command line of agent ``i``: at ``port + i`` if a port was given.

        >>> Demo(3, Path("/tmp"), port=7946).command(1, None)[5]
        '127.0.0.1:7947'
        """
        cmd = [
            sys.executable,
            "-m",
            "clustermember",
            "agent",
            "--bind",
            f"127.0.0.1:{self.port + i if self.port else 0}",
            "--node-id",
            f"node-{i}",
            "--key-file",
            str(self.dir / "cluster.key"),
            "--control",
            self.control(i),
            "--log-level",
            "warning",
        ]
        if seed:
            cmd += ["--join", seed]
        return cmd

    def start(self, i: int, seed: str | None) -> None:
        cmd = self.command(i, seed)
        # The demo's agents are configured by their flags alone: the user's
        # own CLUSTERMEMBER_* settings (a key, a CA, seeds) are not theirs.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERMEMBER_")}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(READY):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            code = proc.returncode
            raise DemoError(
                f"agent {i} did not start (exit code {code})"
                if code is not None
                else f"agent {i} did not start (it closed its output and still runs)"
            )
        self.addrs.append(line[len(READY) :].split(" at ")[1].split(",")[0])

    async def members(self, i: int) -> list[dict[str, Any]]:
        async with ControlClient(self.control(i), timeout=5.0) as c:
            resp = await c.request({"op": "members", "status": []})
        members: list[dict[str, Any]] = resp["members"]
        return members

    async def wait(self, what: str, check: Any) -> float:
        start = time.monotonic()
        with self.live_table(what) as refresh:
            while time.monotonic() - start < STEP_DEADLINE:
                with contextlib.suppress(ControlError, OSError, asyncio.TimeoutError):
                    await refresh()
                    if await check():
                        return time.monotonic() - start
                await asyncio.sleep(0.05)
        raise DemoError(f"gave up waiting for {what} after {STEP_DEADLINE:.0f} s")

    @contextlib.contextmanager
    def live_table(self, what: str) -> Iterator[Callable[[], Awaitable[None]]]:
        """On a terminal, show node-0's view updating live while waiting."""

        async def nothing() -> None:
            return None

        if not sys.stdout.isatty():
            yield nothing
            return
        from rich.live import Live
        from rich.table import Table

        colours = {"alive": "green", "suspect": "yellow", "failed": "red", "left": "blue"}
        with Live(refresh_per_second=10, transient=True) as live:

            async def refresh() -> None:
                view = self.live()[0]
                table = Table(title=f"node-{view}'s view, waiting for {what}")
                for col in ("node", "address", "state", "inc", "tags"):
                    table.add_column(col)
                for m in sorted(await self.members(view), key=lambda m: m["id"]):
                    c = colours.get(m["state"], "white")
                    tags = ",".join(f"{k}={v}" for k, v in sorted(m["tags"].items()))
                    table.add_row(
                        m["id"], m["addr"], f"[{c}]{m['state']}[/{c}]", str(m["incarnation"]), tags
                    )
                live.update(table)

            yield refresh

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    async def all_see(self, subject: str, state: str) -> bool:
        for i in self.live():
            views = {m["id"]: m["state"] for m in await self.members(i)}
            if views.get(subject) != state:
                return False
        return True

    def stop_all(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    async def run(self) -> None:
        (self.dir / "cluster.key").write_text(keygen() + "\n")
        os.chmod(self.dir / "cluster.key", 0o600)
        self.say(f"starting {self.n} agents on 127.0.0.1 with a fresh cluster key")
        for i in range(self.n):
            self.start(i, self.addrs[0] if i else None)
        took = await self.wait(
            "the cluster to form",
            lambda: self._all_alive(),
        )
        self.say(f"every agent sees {self.n} alive ({took:.2f} s after the last start)")
        print(format_members(await self.members(0)), flush=True)

        async with ControlClient(self.control(1)) as c:
            await c.request({"op": "tags", "set": {"role": "worker"}, "delete": []})
        self.say("node-1 tagged role=worker; asking node-2 for members with role=worker")

        async def found() -> bool:
            async with ControlClient(self.control(2)) as c:
                resp = await c.request({"op": "members", "tags": {"role": "worker"}})
            return [m["id"] for m in resp["members"]] == ["node-1"]

        took = await self.wait("tag discovery", found)
        self.say(f"node-2 finds node-1 by its tag after {took:.2f} s")

        victim = self.n - 1
        proc = self.procs[victim]
        assert proc is not None
        proc.kill()
        proc.wait()
        self.procs[victim] = None
        self.say(f"killed node-{victim} with SIGKILL (pid {proc.pid}): no goodbye")
        took = await self.wait(
            "failure detection", lambda: self.all_see(f"node-{victim}", "failed")
        )
        self.say(f"every survivor marks node-{victim} failed after {took:.2f} s")

        leaver = self.n - 2
        async with ControlClient(self.control(leaver)) as c:
            await c.request({"op": "leave"})
        self.say(f"node-{leaver} left gracefully")
        took = await self.wait("the leave", lambda: self.all_see(f"node-{leaver}", "left"))
        self.say(f"every remaining agent marks node-{leaver} left (not failed) after {took:.2f} s")
        print(format_members(await self.members(0)), flush=True)

    async def _all_alive(self) -> bool:
        for i in self.live():
            ms = await self.members(i)
            if sum(m["state"] == "alive" for m in ms) != self.n:
                return False
        return True


def run_demo(nodes: int, port: int = 0) -> int:
    """Run the demo with ``nodes`` agents, at ``port`` and the ports after it
    (0: ports the system picks); returns the exit code.

    >>> run_demo(5, port=7946)  # doctest: +SKIP
    """
    if nodes < 3:
        print("error: the demo needs at least 3 nodes (--nodes 3 or more)", file=sys.stderr)
        return 1
    if not 0 <= port <= 65536 - nodes:
        print(
            f"error: --port {port} leaves no room for {nodes} agents; give 1-{65536 - nodes}, "
            "or 0 for ports the system picks",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="clustermember-demo-") as tmp:
        demo = Demo(nodes, Path(tmp), port)
        try:
            asyncio.run(demo.run())
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            demo.stop_all()
            demo.say("stopped every agent the demo started")
    return 0
