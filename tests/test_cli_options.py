"""Agent flags whose effect no other test shows (issue 18): each way to
authenticate without --key-file forms a cluster (--insecure, --keyring-file,
--tls-*), --join-timeout ends a join nobody answers, and simdemo prints its
timeline. test_cli_config.py checks that the flags are parsed; these check
that they act."""

from __future__ import annotations

import base64
import secrets
import socket
import subprocess
import time
from pathlib import Path

from _cluster import issue_certs

from bench.agents import CLI, Agents, wait_alive_everywhere


class KeylessAgents(Agents):
    """Agents started without the shared --key-file: a test's args say how
    they authenticate."""

    def _command(
        self, node_id: str, bind: str, join: str | None, profile: str, args: tuple[str, ...]
    ) -> tuple[str, str, list[str]]:
        name, ctl, cmd = super()._command(node_id, bind, join, profile, args)
        i = cmd.index("--key-file")
        del cmd[i : i + 2]
        return name, ctl, cmd


def pair(tmp: Path, first: tuple[str, ...], second: tuple[str, ...]) -> None:
    """Two keyless agents, n1 joining n0, that must come to see each other alive."""
    agents = KeylessAgents(tmp)
    try:
        a = agents.start("n0", args=first, watch=False)
        b = agents.start("n1", join=a.addr, args=second, watch=False)
        wait_alive_everywhere([a, b], ["n0", "n1"])
    finally:
        agents.stop()


def test_insecure_agents_form_a_cluster(tmp_path: Path) -> None:
    pair(tmp_path, ("--insecure",), ("--insecure",))


def rings(tmp: Path, *orders: tuple[int, ...]) -> list[tuple[str, ...]]:
    """--keyring-file flags, one per order of indexes into fresh keys."""
    keys = [base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3)]
    flags: list[tuple[str, ...]] = []
    for i, order in enumerate(orders):
        path = tmp / f"ring{i}"
        path.write_text("# primary first\n" + "".join(f"{keys[k]}\n" for k in order))
        flags.append(("--keyring-file", str(path)))
    return flags


def test_keyring_file_second_keys_let_agents_meet(tmp_path: Path) -> None:
    """Their primaries differ and each refuses the other's: they meet
    through the second key of both rings, which each tries next."""
    first, second = rings(tmp_path, (0, 2), (1, 2))
    pair(tmp_path, first, second)


def test_keyring_file_rings_in_either_order_meet(tmp_path: Path) -> None:
    """Rotation step 3 of docs/security.md: [A, B] beside [B, A]."""
    first, second = rings(tmp_path, (0, 1), (1, 0))
    pair(tmp_path, first, second)


def test_tls_flags_form_a_cluster_by_certificate(tmp_path: Path) -> None:
    ca, certs = issue_certs(tmp_path, ["n0", "n1"])
    flags = [("--tls-ca", ca, "--tls-cert", cert, "--tls-key", k) for cert, k in certs]
    pair(tmp_path, flags[0], flags[1])


def test_join_timeout_ends_a_join_nobody_answers(tmp_path: Path) -> None:
    """A seed that reads nothing: the agent gives up after --join-timeout
    (0.5 s), not the default 30 s, and says why."""
    agents = Agents(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        seed = f"127.0.0.1:{silent.getsockname()[1]}"
        _, _, cmd = agents._command("n1", "127.0.0.1:0", seed, "local", ("--join-timeout", "0.5"))
        start = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=25)
        took = time.monotonic() - start
    assert done.returncode != 0 and "agent ready" not in done.stdout
    assert "join timed out after 0.5 s" in done.stderr, done.stderr[-2000:]
    # Bounded by the join timeout, not by the handshake to the silent seed
    # (handshake_timeout, 5 s), which the engine no longer waits for; the
    # exact bound is checked in-process by
    # test_api_usage.py::test_a_join_timeout_says_when_handshakes_failed.
    assert took < 15, took


def test_simdemo_prints_formation_failure_and_leave(tmp_path: Path) -> None:
    run = [*CLI, "simdemo", "--nodes", "4", "--seed", "3"]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.startswith("4 nodes, LAN profile")
    assert "formed: every node sees 4 alive" in out
    assert "every survivor marks n3 failed" in out
    assert "every remaining node marks n2 left (not failed)" in out
    again = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120).stdout
    assert again == out  # the clock is virtual: the same seed, the same timeline
    small = subprocess.run([*CLI, "simdemo", "--nodes", "2"], capture_output=True, text=True)
    assert small.returncode == 2 and "at least 3 nodes" in small.stderr
