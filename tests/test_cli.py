"""The command line as a user drives it: real agent processes on loopback,
queried and changed through their control endpoints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "clustermember"]
DEADLINE = 60.0


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one CLI command and return its result."""
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"{args} failed: {out.stderr}")
    return out


def eventually(check: object, what: str) -> None:
    """Poll check() until true, or fail after a generous deadline."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Agents:
    """Agent processes started by a test, stopped by PID at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = tmp / "cluster.key"
        self.key.write_text(cli("keygen").stdout)
        self.procs: list[subprocess.Popen[str]] = []
        self.addrs: list[str] = []

    def control(self, i: int) -> str:
        return str(self.tmp / f"a{i}.sock")

    def start(self, i: int, *extra: str) -> subprocess.Popen[str]:
        cmd = [
            *CLI,
            "agent",
            "--bind",
            "127.0.0.1:0",
            "--node-id",
            f"n{i}",
            "--key-file",
            str(self.key),
            "--control",
            self.control(i),
            "--log-level",
            "warning",
            *extra,
        ]
        if self.addrs and "--join" not in extra:
            cmd += ["--join", self.addrs[0]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("agent ready"), f"agent {i} did not start: {line!r}"
        self.addrs.append(line.split(" at ")[1].split(",")[0])
        return proc

    def members(self, i: int, *args: str) -> list[dict[str, object]]:
        out = cli("members", "--control", self.control(i), "--format", "json", *args)
        return json.loads(out.stdout)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    a = Agents(tmp_path)
    yield a
    a.stop()


def test_keygen_prints_a_32_byte_key() -> None:
    import base64

    key = cli("keygen").stdout.strip()
    assert len(base64.b64decode(key)) == 32
    assert cli("keygen").stdout.strip() != key


def test_members_tags_leave_through_the_cli(agents: Agents) -> None:
    for i in range(3):
        agents.start(i, *(["--tag", "zone=eu"] if i == 2 else []))
    eventually(
        lambda: all(len(agents.members(i, "--status", "alive")) == 3 for i in range(3)),
        "three alive agents",
    )
    # A tag set on n1 is found from n0, with filters that must all match.
    out = cli("tags", "--control", agents.control(1), "--set", "role=worker", "--set", "zone=eu")
    assert "role=worker" in out.stdout
    eventually(
        lambda: [m["id"] for m in agents.members(0, "--tag", "role=worker")] == ["n1"],
        "n1 found by its tag from n0",
    )
    both = agents.members(0, "--tag", "zone=eu")
    assert sorted(m["id"] for m in both) == ["n1", "n2"]
    assert [m["id"] for m in agents.members(0, "--tag", "zone=eu", "--tag", "role=worker")] == [
        "n1"
    ]
    table = cli("members", "--control", agents.control(0)).stdout
    assert "NODE" in table and "role=worker" in table
    # Removing the tag is seen elsewhere too.
    cli("tags", "--control", agents.control(1), "--delete", "role")
    eventually(lambda: agents.members(2, "--tag", "role=worker") == [], "tag removal seen by n2")
    stats = json.loads(cli("stats", "--control", agents.control(0), "--format", "json").stdout)
    assert stats["members_alive"] == 3
    # A graceful leave: left at the others, and the agent process ends.
    cli("leave", "--control", agents.control(2))
    agents.procs[2].wait(timeout=30)
    eventually(
        lambda: (
            {m["id"]: m["state"] for m in agents.members(0, "--status", "left")} == {"n2": "left"}
        ),
        "n2 left",
    )


def test_rtt_and_members_sorted_by_rtt(agents: Agents) -> None:
    for i in range(3):
        agents.start(i)

    def learnt() -> bool:
        found = agents.members(0, "--status", "alive", "--sort", "rtt")
        # Every member's RTT known, from coordinates samples have moved.
        return len(found) == 3 and all(
            m["rtt"] is not None and m["coordinate"]["error"] < 1.5 for m in found
        )

    eventually(learnt, "three alive agents with coordinates learnt")
    rtt_line = re.compile(r"estimated rtt (\S+) <-> (\S+): (\d+\.\d+) ms\n")
    # From the agent's node, and between two others as it holds them.
    for args, pair in (
        (["n1"], ("n1", "n0")),
        (["n2"], ("n2", "n0")),
        (["n1", "n2"], ("n1", "n2")),
    ):
        out = cli("rtt", "--control", agents.control(0), *args)
        match = rtt_line.fullmatch(out.stdout)
        assert match is not None, out.stdout
        assert match.groups()[:2] == pair and 0 < float(match.group(3)) < 1000, out.stdout
    # Nearest first, the agent's node first of all (0 from itself).
    found = agents.members(0, "--sort", "rtt")
    assert found[0]["id"] == "n0" and found[0]["rtt"] == 0.0
    rtts = [m["rtt"] for m in found]
    assert rtts == sorted(rtts) and all(isinstance(r, float) and r < 1 for r in rtts)
    table = cli("members", "--control", agents.control(0), "--sort", "rtt").stdout.splitlines()
    assert table[0].split()[-2:] == ["RTT", "(ms)"]
    # Its own order (coordinates may have moved since the JSON above).
    shown = [float(row.split()[-1]) for row in table[1:]]
    assert len(shown) == 3 and shown == sorted(shown) and shown[0] == 0.0
    assert table[1].split()[0] == "n0"
    assert "RTT" not in cli("members", "--control", agents.control(0)).stdout

    # --verbose: each other member's health as n0 sees it.
    def healthy() -> bool:
        found = {m["id"]: m for m in agents.members(0, "--verbose")}
        return found["n0"]["health"] is None and all(
            found[i]["health"] is not None and found[i]["health"]["samples"] > 0
            for i in ("n1", "n2")
        )

    eventually(healthy, "n0 holds round trips to both others")
    found = {m["id"]: m for m in agents.members(0, "--verbose")}
    for i in ("n1", "n2"):
        h = found[i]["health"]
        assert 0 < h["rtt_median"] <= h["rtt_p90"] <= h["rtt_max"] < 1.0, h
        assert h["connected"] is True and 0 <= h["last_heard"] < 60, h
    table = cli("members", "--control", agents.control(0), "--verbose").stdout.splitlines()
    assert table[0].split()[-1] == "CONN" and "PROBES" in table[0].split()
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert rows["n0"][-7:] == ["-"] * 7
    assert rows["n1"][-1] == "yes" and int(rows["n1"][-7]) > 0
    # An unknown member: one line naming it, exit code 1.
    for args in (["nope"], ["n1", "nope"]):
        out = cli("rtt", "--control", agents.control(0), *args, check=False)
        assert out.returncode == 1 and out.stdout == "", out
        assert "'nope'" in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_explain_names_the_accuser_and_the_failed_probe(agents: Agents) -> None:
    """An agent paused (SIGSTOP) until every other suspects it, then let go:
    each one's explanation of it names who accused it first, and the one
    whose own probe failed says so, with the helpers it asked."""
    for i in range(4):
        agents.start(i)
    observers = range(3)

    def states(i: int) -> dict[str, object]:
        return {m["id"]: m["state"] for m in agents.members(i)}

    eventually(
        lambda: all(
            states(i) == dict.fromkeys(["n0", "n1", "n2", "n3"], "alive") for i in observers
        ),
        "four alive agents everywhere",
    )
    victim = agents.procs[3]
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        eventually(
            lambda: all(states(i)["n3"] != "alive" for i in observers), "n3 suspected everywhere"
        )
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    eventually(lambda: all(states(i)["n3"] == "alive" for i in observers), "n3 back everywhere")
    probers = 0
    for i in observers:
        entries = json.loads(cli("explain", "n3", "--json", "--control", agents.control(i)).stdout)
        head, *lines = cli("explain", "n3", "--control", agents.control(i)).stdout.splitlines()
        assert head.startswith("n3 is alive (incarnation ") and head.endswith(f"as n{i} sees it")
        first = entries[0]
        assert first["event"] == "suspect" and first["by"] not in (None, "n3"), entries
        assert re.fullmatch(r"\d+\.\d s ago  suspect    .*", lines[0]), lines
        if first["source"] == "probe":
            # This agent's own probe failed: it is the accuser, and says
            # what its helpers found.
            probers += 1
            assert first["by"] == f"n{i}"
            assert f"suspect    by n{i} (its own probe: no ack; " in lines[0], lines
            helpers = f"{first['helpers']} helper{'s' if first['helpers'] != 1 else ''} asked: "
            assert helpers in lines[0] and f"our health {first['health']})" in lines[0], lines
        else:
            kind = {"gossip": "gossip", "pushpull": "push-pull"}[first["source"]]
            assert f"suspect    by {first['by']} ({kind}" in lines[0], lines
        assert entries[-1]["event"] in ("recovered", "joined"), entries
        assert re.search(r"  recovered  it (refuted|came back) at incarnation \d+$", lines[-1])
    assert probers >= 1
    out = cli("explain", "nobody", "--control", agents.control(0), check=False)
    assert out.returncode == 1 and out.stdout == "" and "no member 'nobody'" in out.stderr


def test_sigterm_leaves_gracefully_and_sigkill_is_a_failure(agents: Agents) -> None:
    for i in range(3):
        agents.start(i)
    eventually(lambda: len(agents.members(0, "--status", "alive")) == 3, "cluster formed")
    agents.procs[1].send_signal(signal.SIGTERM)
    assert agents.procs[1].wait(timeout=30) == 0
    eventually(
        lambda: [m["id"] for m in agents.members(0, "--status", "left")] == ["n1"],
        "n1 left after SIGTERM",
    )
    agents.procs[2].kill()
    eventually(
        lambda: [m["id"] for m in agents.members(0, "--status", "failed")] == ["n2"],
        "n2 failed after SIGKILL",
    )


def test_events_stream_as_json_lines(agents: Agents) -> None:
    import queue
    import threading

    agents.start(0)
    agents.start(1)
    eventually(lambda: len(agents.members(0, "--status", "alive")) == 2, "cluster formed")
    watcher = subprocess.Popen(
        [*CLI, "events", "--control", agents.control(0)], stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert watcher.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in watcher.stdout], daemon=True)
    reader.start()
    try:
        # Change n1's tag until the stream reports it: the stream may attach a
        # moment after the command starts, so one change could go unseen.
        end = time.monotonic() + DEADLINE
        seen = None
        round_ = 0
        while seen is None and time.monotonic() < end:
            round_ += 1
            cli("tags", "--control", agents.control(1), "--set", f"round={round_}")
            try:
                while seen is None:
                    event = json.loads(lines.get(timeout=1.0))
                    if event["type"] == "NodeTagsUpdated" and event["node"]["id"] == "n1":
                        seen = event
            except queue.Empty:
                continue
        assert seen is not None, "no NodeTagsUpdated event streamed"
        assert seen["node"]["tags"]["round"].isdigit()
    finally:
        watcher.kill()
        watcher.wait(timeout=10)


def test_errors_are_one_line_with_a_nonzero_exit(tmp_path: Path) -> None:
    out = cli("members", "--control", str(tmp_path / "nobody.sock"), check=False)
    assert out.returncode == 1
    assert "no agent is running" in out.stderr and out.stderr.count("\n") == 1
    out = cli("agent", "--key-file", str(tmp_path / "missing.key"), check=False)
    assert out.returncode == 1 and "cannot read key file" in out.stderr
    key = tmp_path / "k"
    key.write_text(cli("keygen").stdout)
    out = cli("agent", "--key-file", str(key), "--tag", "novalue", check=False)
    assert out.returncode == 1 and "key=value" in out.stderr
    out = cli("tags", "--control", str(tmp_path / "x.sock"), check=False)
    assert out.returncode == 1 and "no agent is running" in out.stderr
    out = cli("members", "--control", "10.1.2.3:7373", check=False)
    assert out.returncode == 1 and "loopback" in out.stderr


def test_agent_on_a_port_in_use_says_so_in_one_line(agents: Agents) -> None:
    agents.start(0)
    out = cli(
        "agent",
        "--bind",
        agents.addrs[0],
        "--key-file",
        str(agents.key),
        "--control",
        agents.control(1),
        "--log-level",
        "error",
        check=False,
    )
    assert out.returncode == 1, out
    assert "address already in use" in out.stderr and agents.addrs[0] in out.stderr
    assert "[Errno" not in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_demo_runs_to_completion() -> None:
    """The demo's agents take no settings from the user's environment: a CA
    file that does not exist there does not stop them."""
    env = dict(os.environ, CLUSTERMEMBER_TLS_CA="/nonexistent", CLUSTERMEMBER_JOIN="")
    out = subprocess.run(
        [*CLI, "demo", "--nodes", "4"], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "marks node-3 failed" in out.stdout
    assert "left (not failed)" in out.stdout
    assert "stopped every agent" in out.stdout
