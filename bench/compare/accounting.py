"""What the comparison counts, the same way for every system.

Suspicions and failures are read from each agent's own report stream over
the whole window (no polling): Serf's log lines, clustermember's event
stream, swim-protocol's status listener. Each becomes a ``Report``; a run
of reports about one subject is one *episode*::

    parse_serf_line("2026/12/05 07:45:47 [INFO] memberlist: Suspect c has failed, no acks")
    # Report(t=..., kind='suspect', subject='c')
    episodes(reports, "suspect")  # how many times some node came under suspicion

Bytes are counted per process: every agent runs in a cgroup v2 of its own,
and an nftables counter on the output hook matches every packet whose
socket belongs to that cgroup, whatever its port (UDP, TCP push-pull and
fallback pings from ephemeral ports alike)::

    t = CgroupTraffic()
    path = t.add("n0")        # the child writes its pid into path/cgroup.procs
    t.read()                  # {"n0": bytes sent so far}
    t.close()
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# An episode ends when its subject has not been reported for this long: the
# probers of one suspicion report it within a few protocol periods of each
# other (Serf logs every failed probe; clustermember raises one event per
# observer), and this is shorter than the gaps the busy window can make.
EPISODE_GAP_S = 5.0


@dataclass(frozen=True)
class Report:
    """One node's report that subject became suspect or failed, at wall time t."""

    t: float
    kind: str  # "suspect" or "failed"
    subject: str


# memberlist's lines as Serf 0.8.2 logs them at -log-level=info (checked on
# the installed binary; tests/data/serf_0.8.2_log_sample.txt):
#   [INFO] memberlist: Suspect c has failed, no acks received     (the prober)
#   [INFO] serf: EventMemberFailed: c 127.0.0.1                   (every node)
# Serf has no "suspect" member state; these lines are the only place its
# suspicions show. "Marking c as failed, suspect timeout reached" is logged
# only by nodes whose own suspicion timer ran out, so failures are counted
# from EventMemberFailed, which every node that marks it failed logs.
_SERF_TIME = r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)"
_SERF_SUSPECT = re.compile(_SERF_TIME + r" \[INFO\] memberlist: Suspect (\S+) has failed, no acks")
_SERF_FAILED = re.compile(_SERF_TIME + r" \[INFO\] serf: EventMemberFailed: (\S+) ")


def parse_serf_line(line: str) -> Report | None:
    """The report in one line of a Serf agent's log, or None."""
    for kind, rx in (("suspect", _SERF_SUSPECT), ("failed", _SERF_FAILED)):
        m = rx.search(line)
        if m:
            when = dt.datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S")
            return Report(when.timestamp(), kind, m.group(2))
    return None


def parse_cm_event(line: str) -> Report | None:
    """The report in one line of clustermember's ``events`` stream, or None."""
    ev = json.loads(line).get("event") or {}
    kind = {"NodeSuspect": "suspect", "NodeFailed": "failed"}.get(ev.get("type", ""))
    if kind is None:
        return None
    return Report(float(ev["time"]), kind, ev["node"]["id"])


def parse_swim_line(line: str) -> Report | None:
    """The report in a ``status WALLTIME NAME STATE`` line of swim_node.py."""
    parts = line.split()
    if len(parts) != 4 or parts[0] != "status":
        return None
    kind = {"suspect": "suspect", "failed": "failed"}.get(parts[3])
    return None if kind is None else Report(float(parts[1]), kind, parts[2])


def episodes(reports: list[Report], kind: str, gap: float = EPISODE_GAP_S) -> int:
    """How many times some node reported a subject in this state: reports
    about one subject less than gap seconds apart are one episode."""
    by: dict[str, list[float]] = {}
    for r in reports:
        if r.kind == kind:
            by.setdefault(r.subject, []).append(r.t)
    n = 0
    for times in by.values():
        times.sort()
        n += 1 + sum(1 for a, b in zip(times, times[1:], strict=False) if b - a >= gap)
    return n


def count(reports: list[Report]) -> dict[str, int]:
    """The figures of one window: episodes, and the raw report counts."""
    return {
        "suspect_episodes": episodes(reports, "suspect"),
        "failed_episodes": episodes(reports, "failed"),
        "suspect_reports": sum(r.kind == "suspect" for r in reports),
        "failed_reports": sum(r.kind == "failed" for r in reports),
    }


def _cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (pure or hybrid layout)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    return None


class CgroupTraffic:
    """Bytes sent per process: a cgroup per agent, an nftables counter per cgroup."""

    made = 0
    NFT_BASE = Path("/sys/fs/cgroup")  # nft resolves cgroupv2 paths under this

    @staticmethod
    def usable() -> bool:
        """Whether counters can be made here (root, nft, cgroup v2)."""
        return os.geteuid() == 0 and shutil.which("nft") is not None and bool(_cgroup2_root())

    def __init__(self) -> None:
        CgroupTraffic.made += 1
        tag = f"cmbench{os.getpid()}x{CgroupTraffic.made}"
        self.table = tag
        self.ok = False
        self.reason = ""
        self.names: list[str] = []
        self.root = _cgroup2_root()
        self.dir: Path | None = None
        if os.geteuid() != 0:
            self.reason = "not root (cgroups and nftables need it)"
            return
        if shutil.which("nft") is None:
            self.reason = "nft not installed"
            return
        if self.root is None:
            self.reason = "no cgroup v2 hierarchy mounted"
            return
        with open("/proc/self/cgroup") as f:
            mine = next((ln.split("::", 1)[1].strip() for ln in f if ln.startswith("0::")), "/")
        self.dir = self.root / mine.lstrip("/") / tag
        self.level = len([p for p in mine.split("/") if p]) + 2
        try:
            self.dir.mkdir()
        except OSError as exc:
            self.reason = f"cannot make a cgroup: {exc}"
            return
        r = subprocess.run(
            ["nft", "add", "table", "inet", self.table], capture_output=True, text=True
        )
        if r.returncode == 0:
            r = subprocess.run(
                [
                    "nft",
                    f"add chain inet {self.table} out "
                    "{ type filter hook output priority 0; policy accept; }",
                ],
                capture_output=True,
                text=True,
            )
        if r.returncode != 0:
            self.reason = f"nft refused: {r.stderr.strip()}"
            self.close()
            return
        self.ok = True

    def add(self, name: str, exclude_tcp_sport: int | None = None) -> Path | None:
        """A cgroup for node name, counted from now; exclude_tcp_sport: a
        port of the agent's whose replies are the benchmark's own reads
        (Serf's RPC), counted apart and subtracted."""
        if not self.ok or self.dir is None:
            return None
        path = self.dir / name
        path.mkdir()
        rel = os.path.relpath(path, self.NFT_BASE)
        match = ["socket", "cgroupv2", "level", str(self.level), f'"{rel}"']
        base = ["nft", "add", "rule", "inet", self.table, "out"]
        subprocess.run(base + match + ["counter", "comment", f'"all {name}"'], check=True)
        if exclude_tcp_sport is not None:
            subprocess.run(
                base
                + match
                + ["tcp", "sport", str(exclude_tcp_sport), "counter", "comment", f'"rpc {name}"'],
                check=True,
            )
        self.names.append(name)
        return path

    def read(self) -> dict[str, int]:
        """Bytes sent so far per node (IP packets with headers)."""
        r = subprocess.run(
            ["nft", "-j", "list", "table", "inet", self.table],
            capture_output=True,
            text=True,
            check=True,
        )
        out: dict[str, int] = {}
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            what, name = rule["comment"].split(" ", 1)
            nbytes = next(e["counter"]["bytes"] for e in rule["expr"] if "counter" in e)
            out[name] = out.get(name, 0) + (nbytes if what == "all" else -nbytes)
        return out

    def close(self) -> None:
        """Remove the counters and the cgroups (their processes must be gone)."""
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)
        if self.dir is not None:
            for name in self.names:
                with contextlib.suppress(OSError):
                    (self.dir / name).rmdir()
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        self.ok = False
