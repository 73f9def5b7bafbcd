"""A multi-host rig on one machine: network namespaces on a bridge.

Each test host is a namespace ``<prefix>h<i>`` with a veth pair whose outer
end is on the bridge ``<prefix>br`` and whose inner end has the address
10.<net>.0.<i+1>/24. Everything the rig creates is removed by :meth:`close`,
which also runs from ``atexit`` and on SIGINT/SIGTERM, so a failed or
interrupted test leaves nothing behind. Needs root (CAP_NET_ADMIN).

Partitions cut links: :meth:`isolate` takes a host's outer veth off the
bridge; :meth:`split` puts groups of hosts on separate bridges. Loss and delay
come from the transport's fault hook (this kernel has no netem).

    >>> with Rig(hosts=3) as rig:                                # doctest: +SKIP
    ...     proc = rig.spawn(0, ["python3", "-m", "http.server"])
    ...     rig.split([0, 1], [2])
    ...     rig.heal()
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType, TracebackType


class RigUnavailableError(Exception):
    """Namespaces cannot be made here (not root, or no iproute2)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available() -> str | None:
    """None if the rig can run here, else the reason it cannot."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"cmprobe{os.getpid()}"
    if _ip("netns", "add", name, check=False).returncode != 0:
        return "cannot create a network namespace here"
    _ip("netns", "del", name, check=False)
    return None


class Rig:
    """N test hosts in namespaces on one bridge; see the module docstring."""

    def __init__(self, hosts: int, prefix: str | None = None, net: int = 77) -> None:
        reason = available()
        if reason is not None:
            raise RigUnavailableError(reason)
        if not 1 <= hosts <= 250:
            raise ValueError("hosts must be between 1 and 250")
        # Interface names are limited to 15 bytes: keep the prefix short.
        self.prefix = prefix or f"cm{os.getpid() % 100000}"
        self.n = hosts
        self.net = net
        self.procs: list[subprocess.Popen[bytes]] = []
        self._bridges: list[str] = []
        self._closed = False
        self._old_handlers: dict[int, object] = {}
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._build()
        except Exception:
            self.close()
            raise

    # -- names -----------------------------------------------------------
    def ns(self, i: int) -> str:
        """Namespace name of host i."""
        return f"{self.prefix}h{i}"

    def addr(self, i: int) -> str:
        """IPv4 address of host i."""
        return f"10.{self.net}.0.{i + 1}"

    def _outer(self, i: int) -> str:
        return f"{self.prefix}v{i}"

    def _bridge(self, k: int) -> str:
        return f"{self.prefix}b{k}"

    # -- construction ----------------------------------------------------
    def _add_bridge(self, k: int) -> str:
        br = self._bridge(k)
        if br not in self._bridges:
            _ip("link", "add", br, "type", "bridge")
            self._bridges.append(br)
            _ip("link", "set", br, "up")
        return br

    def _build(self) -> None:
        br = self._add_bridge(0)
        for i in range(self.n):
            ns, outer = self.ns(i), self._outer(i)
            _ip("netns", "add", ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", outer, "master", br)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    # -- processes -------------------------------------------------------
    def spawn(self, i: int, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start argv inside host i's namespace; the rig kills it on close."""
        proc = subprocess.Popen(  # noqa: S603 - argv comes from the test itself
            ["ip", "netns", "exec", self.ns(i), *argv],
            **kwargs,  # type: ignore[arg-type]
        )
        self.procs.append(proc)
        return proc

    def run(self, i: int, argv: Sequence[str], timeout: float = 30.0) -> str:
        """Run argv in host i and return its stdout (raises on failure)."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns(i), *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout

    # -- faults ----------------------------------------------------------
    def split(self, *groups: Sequence[int]) -> None:
        """Partition: each group of hosts gets its own bridge."""
        for k, group in enumerate(groups):
            br = self._add_bridge(k)
            for i in group:
                _ip("link", "set", self._outer(i), "master", br)

    def isolate(self, i: int) -> None:
        """Cut host i off from everyone (its link goes down)."""
        _ip("link", "set", self._outer(i), "down")

    def heal(self) -> None:
        """Every host back on bridge 0 with its link up."""
        br = self._bridge(0)
        for i in range(self.n):
            _ip("link", "set", self._outer(i), "master", br)
            _ip("link", "set", self._outer(i), "up")

    # -- teardown --------------------------------------------------------
    def close(self) -> None:
        """Kill the processes this rig started and remove everything it made."""
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for i in range(self.n):
            _ip("link", "del", self._outer(i), check=False)
            _ip("netns", "del", self.ns(i), check=False)
        for br in self._bridges:
            _ip("link", "del", br, check=False)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        atexit.unregister(self.close)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.close()
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> Rig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
