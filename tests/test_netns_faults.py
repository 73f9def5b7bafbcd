"""Faults as a real network makes them: agents on separate test hosts
(network namespaces on a bridge), partitioned by cutting links."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustermember import ClusterConfig
from tests.netns.rig import Rig, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

CLI = [sys.executable, "-m", "clustermember"]
PORT = 7946
DEADLINE = 90.0


class Hosts:
    """One agent per namespace host; everything stopped and removed at the end."""

    def __init__(self, rig: Rig, tmp: Path) -> None:
        self.rig = rig
        self.tmp = tmp
        self.key = tmp / "cluster.key"
        self.key.write_text(
            subprocess.run([*CLI, "keygen"], capture_output=True, text=True, check=True).stdout
        )

    def control(self, i: int) -> str:
        return str(self.tmp / f"h{i}.sock")

    def start(self, i: int) -> None:
        cmd = [
            *CLI,
            "agent",
            "--bind",
            f"{self.rig.addr(i)}:{PORT}",
            "--node-id",
            f"h{i}",
            "--key-file",
            str(self.key),
            "--control",
            self.control(i),
            "--log-level",
            "warning",
        ]
        if i:
            cmd += ["--join", f"{self.rig.addr(0)}:{PORT}"]
        proc = self.rig.spawn(i, cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("agent ready"), f"agent on host {i} did not start: {line!r}"

    def view(self, i: int) -> dict[str, str]:
        """Member id -> state as host i sees it (the control socket is a file,
        reachable from outside the namespace)."""
        out = subprocess.run(
            [*CLI, "members", "--control", self.control(i), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return {m["id"]: m["state"] for m in json.loads(out.stdout)}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    with Rig(hosts=5) as rig:
        yield Hosts(rig, tmp_path)


def eventually(check: object, what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")


def all_alive(h: Hosts, who: range) -> bool:
    return all(list(h.view(i).values()).count("alive") == 5 for i in who)


def test_partition_three_two_splits_then_heals_without_rejoin(hosts: Hosts) -> None:
    for i in range(5):
        hosts.start(i)
    eventually(lambda: all_alive(hosts, range(5)), "five hosts alive everywhere")
    hosts.rig.split([0, 1, 2], [3, 4])
    # Longer than the suspicion timeout: each side marks the other failed.
    eventually(
        lambda: all(hosts.view(i)[f"h{j}"] == "failed" for i in range(3) for j in (3, 4)),
        "side A marks B failed",
    )
    eventually(
        lambda: all(hosts.view(i)[f"h{j}"] == "failed" for i in (3, 4) for j in range(3)),
        "side B marks A failed",
    )
    hosts.rig.heal()
    # Nobody rejoins by hand: reconnection to failed members merges the sides.
    eventually(lambda: all_alive(hosts, range(5)), "one cluster again after the heal")


def test_brief_isolation_is_not_a_failure(hosts: Hosts) -> None:
    for i in range(5):
        hosts.start(i)
    eventually(lambda: all_alive(hosts, range(5)), "five hosts alive everywhere")
    # A probe period and a quarter of the suspicion minimum (1 s and 1 s
    # for five nodes on the LAN profile): a probe sent in the first quarter
    # second fails, so suspicion may start, but no verdict can come before
    # a period and the whole minimum, and nobody may declare h4 failed. One
    # view at a time, so the isolation outlasts the cut by one view at most
    # (not by four): three quarters of the minimum leave room for a slow
    # CLI on a busy machine or under coverage.
    lan = ClusterConfig.lan(insecure=True)
    low = lan.suspicion_mult * max(1.0, math.log10(5)) * lan.probe_interval
    cut = lan.probe_interval + 0.25 * low
    hosts.rig.isolate(4)
    end = time.monotonic() + cut
    i = 0
    while time.monotonic() < end:
        assert hosts.view(i % 4)["h4"] != "failed"
        i += 1
    hosts.rig.heal()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for i in range(4):
            assert hosts.view(i)["h4"] != "failed"
        time.sleep(0.2)
    eventually(lambda: all_alive(hosts, range(5)), "h4 alive everywhere")
