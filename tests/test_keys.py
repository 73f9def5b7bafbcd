"""Live key rotation on a running five-node cluster: install, use, remove,
while tags change, with no suspicion and no member locked out; a node that
still holds only the old key is refused and told what to do."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _cluster import cluster, config
from conftest import eventually

from bench.agents import control
from bench.agents import eventually as agents_eventually
from clustermember import (
    ClusterEvent,
    ClusterMembership,
    JoinRefused,
    NodeFailed,
    NodeSuspect,
)

if TYPE_CHECKING:
    from bench.agents import Agents


async def test_rotating_the_key_of_a_live_cluster(key: bytes) -> None:
    new = secrets.token_bytes(32)
    async with cluster(key, 5) as nodes:
        await eventually(lambda: all(len(n.nodes()) == 5 for n in nodes), "formed")
        subs = [n.subscribe(replay=False) for n in nodes]
        seen: list[ClusterEvent] = []

        def bad() -> list[ClusterEvent]:
            for s in subs:
                while (e := s.get_nowait()) is not None:
                    seen.append(e)
            return [e for e in seen if isinstance(e, (NodeSuspect, NodeFailed))]

        listed = await nodes[2].keys.list()
        assert listed.ok and listed.answered == 5
        assert listed.keys == {key_b64(key): 5} and listed.primary == {key_b64(key): 5}

        await nodes[0].update_tag("step", "install")
        report = await nodes[0].keys.install(new)
        assert report.ok, report
        assert report.keys == {key_b64(key): 5, key_b64(new): 5}
        assert report.primary == {key_b64(key): 5}

        await nodes[1].update_tag("step", "use")
        report = await nodes[3].keys.use(new)
        assert report.ok, report
        assert report.primary == {key_b64(new): 5}

        await nodes[2].update_tag("step", "remove")
        report = await nodes[4].keys.remove(key)
        assert report.ok, report
        assert report.keys == {key_b64(new): 5}
        assert all(n.keys.local() == [new] for n in nodes)

        # Still one cluster: a tag change made now reaches everyone.
        await nodes[3].update_tag("step", "done")
        await eventually(
            lambda: all(len(n.nodes_with_tag("step", "done")) == 1 for n in nodes),
            "a tag after the rotation",
        )
        assert bad() == []

        # A member that slept through it, with the old key: refused, and
        # told what to do. One with the new key joins.
        late = ClusterMembership("127.0.0.1:0", config(key, "late"))
        await late.start()
        try:
            with pytest.raises(JoinRefused, match="cluster_key or keyring"):
                await late.join([nodes[0].addr], timeout=3.0)
        finally:
            await late.close()
        fresh = ClusterMembership("127.0.0.1:0", config(new, "fresh"))
        async with fresh:
            await fresh.join([nodes[1].addr], timeout=10.0)
            await eventually(lambda: len(nodes[0].nodes()) == 6, "the newcomer seen")
        assert bad() == []


async def test_refusals_say_why_and_change_nothing(key: bytes) -> None:
    other = secrets.token_bytes(32)
    async with cluster(key, 2) as (a, b):
        await eventually(lambda: len(a.nodes()) == 2, "formed")
        report = await a.keys.use(other)
        assert not report.ok
        assert set(report.errors) == {"n0", "n1"}
        assert all("install it first" in e for e in report.errors.values())
        report = await b.keys.remove(key)
        assert not report.ok and "use another key first" in report.errors["n0"]
        assert a.keys.local() == [key] and b.keys.local() == [key]
        with pytest.raises(ValueError, match="32 bytes"):
            await a.keys.install(b"short")
        with pytest.raises(ValueError, match="reserved"):
            a.on_query("_cm-keys", lambda q: b"")


def key_b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_five_agents_rotate_their_key_from_the_command_line(agents: Agents) -> None:
    """The whole rotation through the CLI, tags changing meanwhile: every
    step reports five members, nobody is suspected, and an agent that slept
    through it, restarted with the old key, is refused with what to do."""
    nodes = agents.cluster(5)
    t0 = time.monotonic()
    old = agents.key.read_text().strip()
    new = base64.b64encode(secrets.token_bytes(32)).decode()
    ctl = nodes[0].ctl
    for i, step in enumerate((["--install", new], ["--use", new], ["--remove", old])):
        control(nodes[i + 1].ctl, {"op": "tags", "set": {"step": step[0]}})
        out = cli_run("keys", *step, "--control", ctl)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("5 members answered"), out.stdout
    out = cli_run("keys", "--list", "--format", "json", "--control", nodes[3].ctl)
    report = json.loads(out.stdout)
    assert report["keys"] == {new: 5} and report["primary"] == {new: 5} and report["ok"]
    # Each agent was told that its --key-file still holds the old key.
    for n in nodes:
        assert "still holds the old key" in n.stderr.read_text(), n.name
    # One cluster still: a tag change reaches everyone, and no one was
    # suspected or failed along the way.
    control(nodes[4].ctl, {"op": "tags", "set": {"step": "done"}})
    agents_eventually(
        lambda: all(v.members()["n4"]["tags"].get("step") == "done" for v in nodes),
        "a tag after the rotation",
    )
    assert [(v.name, e) for v in nodes for e in v.since(t0, "NodeSuspect", "NodeFailed")] == []
    late = agents.run_to_exit("late", join=nodes[2].addr, timeout=120)
    assert late.returncode != 0
    assert "refused this node's credentials" in late.stderr


def cli_run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustermember", *argv], capture_output=True, text=True, timeout=120
    )


async def test_an_agent_keeps_its_keyring_file_and_says_when_it_cannot(
    key: bytes, tmp_path: Path
) -> None:
    """--keyring-file is rewritten after each change (mode 0600 whatever was
    there before); a member that cannot keep its new keys answers so."""
    from clustermember._agent import Agent

    new = secrets.token_bytes(32)
    ring = tmp_path / "ring"
    ring.write_text(key_b64(key) + "\n")
    ring.chmod(0o644)
    async with cluster(key, 1) as (a,):
        agent = Agent(a, str(tmp_path / "a.sock"), [], 1.0, key_source=("keyring-file", str(ring)))
        report = await a.keys.install(new)
        assert report.ok, report
        assert ring.read_text().split() == [key_b64(key), key_b64(new)]
        assert ring.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keyring.")] == []
        agent.key_source = ("keyring-file", str(tmp_path / "gone" / "ring"))
        report = await a.keys.use(new)
        assert not report.ok
        assert "keeping them failed" in report.errors["n0"]
