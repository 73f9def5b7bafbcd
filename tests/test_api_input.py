"""Bad input, lifecycle edges, process exit and fork, display."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _cluster import cluster, config, issue_certs, state_of
from conftest import DEADLINE, eventually

from clustermember import (
    AlreadyJoined,
    ClusterClosed,
    ClusterConfig,
    ClusterMembership,
    ConfigError,
    JoinTimeout,
    MissingDependency,
    NotStarted,
    TagError,
    _core,
)

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"probe_interval": -1.0}, "probe_interval"),
        ({"gossip_interval": float("nan")}, "gossip_interval"),
        ({"probe_interval": "fast"}, "probe_interval"),
        ({"indirect_checks": -2}, "indirect_checks"),
        ({"probe_timeout": 5.0}, "probe_timeout"),
        ({"node_id": "has space"}, "node_id"),
        ({"node_id": "x" * 65}, "node_id"),
        ({"tags": {"k": "v" * 257}}, "max_tag_value"),
        ({"tags": {f"k{i}": "v" * 200 for i in range(6)}}, "max_tags_size"),
        ({"tags": {"a=b": "v"}}, "'='"),
        ({"tags": {"k": 1}}, "str"),
        ({"event_queue_size": 2**32}, "event_queue_size must be at most 4,294,967,295"),
        ({"accept_rate_per_source": 2**40}, "accept_rate_per_source"),
    ],
)
def test_config_errors_name_the_field(key: bytes, kwargs: dict, words: str) -> None:
    with pytest.raises((ConfigError, TagError, TypeError)) as info:
        ClusterConfig(cluster_key=key, **kwargs)
    assert words in str(info.value)


def test_max_members_is_what_one_pushpull_carries(key: bytes) -> None:
    # A node's push-pull is its whole registry, and the wire format holds
    # 65,536 entries: a larger max_members would leave a full node unable to
    # send or answer one, so it is refused with the limit and the remedy.
    assert ClusterConfig(cluster_key=key, max_members=65536).max_members == 65536
    with pytest.raises(
        ConfigError, match=r"max_members must be between 2 and 65536, .*lower max_members"
    ):
        ClusterConfig(cluster_key=key, max_members=65537)


def test_key_handling(key: bytes) -> None:
    with pytest.raises(ConfigError, match="32 bytes, got 16"):
        ClusterConfig(cluster_key=b"x" * 16)
    with pytest.raises(ConfigError, match="base64"):
        ClusterConfig(cluster_key="not base64!!")
    with pytest.raises(ConfigError, match="clustermember keygen"):
        ClusterConfig()
    assert ClusterConfig(cluster_key=base64.b64encode(key).decode()).keys() == [key]
    ring = ClusterConfig(keyring=[key, bytes(32)])
    assert ring.keys() == [key, bytes(32)] and ring.auth == "key"
    assert ClusterConfig(insecure=True).auth == "none"
    with pytest.raises(ConfigError, match="tls_cert"):
        ClusterConfig(tls_ca="/nonexistent")


def test_profiles_differ_and_accept_overrides(key: bytes) -> None:
    lan, wan, local = (
        ClusterConfig.lan(cluster_key=key),
        ClusterConfig.wan(cluster_key=key),
        ClusterConfig.local(cluster_key=key, probe_timeout=0.05),
    )
    assert lan == ClusterConfig(cluster_key=key)
    assert wan.probe_interval > lan.probe_interval > local.probe_interval
    assert local.probe_timeout == 0.05


async def source_limit_refusals(key: bytes, limit: int, joiners: int = 3) -> int:
    """Handshakes a node with accept_rate_per_source=limit refuses while
    `joiners` nodes, all on 127.0.0.1 (one source), join through it at
    once; every one of them must still get in."""
    # Retry off (retry_threshold at max_half_open): a handshake is charged
    # to its source at once. With Retry on, a stranger's Initial is charged
    # to the Retry budget per source (drop_retry_rate_limit) or, while the
    # node is calm, to the budget for unproven addresses instead.
    cfg = ClusterConfig.local(
        cluster_key=key,
        node_id="lim",
        accept_rate_per_source=limit,
        max_half_open=128,
        retry_threshold=128,
    )
    seed = ClusterMembership("127.0.0.1:0", cfg)
    others = [ClusterMembership("127.0.0.1:0", config(key, f"j{i}")) for i in range(joiners)]
    try:
        await seed.join([])
        assert seed.stats().drops["net_drop_source_limit"] == 0
        for o in others:
            await o.start()
        # A refused client sends its Initial again (QUIC loss recovery)
        # and is let in as the budget refills.
        await asyncio.gather(*(o.join([seed.addr], timeout=DEADLINE) for o in others))
        await eventually(lambda: len(seed.nodes()) == joiners + 1, "every joiner in")
        return seed.stats().drops["net_drop_source_limit"]
    finally:
        for o in others:
            await o.close()
        await seed.close()


async def test_per_source_accept_limit_is_configurable_and_counted(key: bytes) -> None:
    """The transport's per-address limit on new connections reaches the
    engine from ClusterConfig, and its refusals are a drop counter: three
    nodes on one address joining at once are refused a handshake by a
    limit of 2 a second (burst 2), and none by the default of 200."""
    assert ClusterConfig(cluster_key=key).accept_rate_per_source == 200
    assert await source_limit_refusals(key, 2) >= 1
    assert await source_limit_refusals(key, 200) == 0


async def test_half_open_and_retry_settings_reach_the_transport(key: bytes) -> None:
    """max_half_open and retry_threshold reach the transport: with a Retry
    answering every handshake a node still joins, and the Retries are
    counted. Left unset they are derived from the pool (128 and 32 for the
    default 512), so every pool starts; explicit values the transport
    cannot use are refused when the config is made, naming the fields."""
    default = ClusterConfig(cluster_key=key)
    assert default.max_half_open is None and default.retry_threshold is None
    assert _core.net_defaults()["max_half_open"] == 128
    assert _core.net_defaults()["retry_threshold"] == 32
    for pool in (1, 2, 8, 128, 129):
        node = ClusterMembership(
            "127.0.0.1:0", ClusterConfig.local(cluster_key=key, max_connections=pool)
        )
        await node.start()
        await node.close()
    same = ClusterConfig.local(cluster_key=key, max_connections=8, max_half_open=8)
    node = ClusterMembership("127.0.0.1:0", same)
    await node.start()
    await node.close()
    with pytest.raises(ConfigError, match=r"max_half_open=9 must be between 1 and max_conn"):
        ClusterConfig.local(cluster_key=key, max_connections=8, max_half_open=9)
    with pytest.raises(ConfigError, match=r"max_half_open=0 .*leave max_half_open unset"):
        ClusterConfig.local(cluster_key=key, max_half_open=0)
    with pytest.raises(ConfigError, match="retry_threshold"):
        ClusterConfig.local(cluster_key=key, retry_threshold=2**32 - 1)
    with pytest.raises(ConfigError, match="max_connections"):
        ClusterConfig.local(cluster_key=key, max_connections=0)
    seed = ClusterMembership(
        "127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="rs", retry_threshold=0)
    )
    other = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="ro"))
    try:
        await seed.start()
        await other.start()
        await other.join([seed.addr])
        assert seed.stats().counters["net_retries_sent"] >= 1
        assert other.stats().counters["net_retries_sent"] == 0
    finally:
        await other.close()
        await seed.close()


async def test_bad_calls_raise_clearly_and_change_nothing(key: bytes) -> None:
    with pytest.raises(ValueError, match="host:port"):
        ClusterMembership("nonsense", config(key, "x"))
    with pytest.raises(TypeError):
        ClusterMembership(7946, config(key, "x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ClusterMembership("127.0.0.1:0", {"node_id": "x"})  # type: ignore[arg-type]
    async with cluster(key, 2) as (a, b):
        await b.update_tag("role", "worker")
        await eventually(lambda: a.member("n1").tags == {"role": "worker"}, "tag seen")
        inc = b.local_node.incarnation
        with pytest.raises(AlreadyJoined):
            await b.join([a.addr])
        with pytest.raises(TypeError, match="list"):
            await b.join("127.0.0.1:1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await b.update_tag(1, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await b.update_tag("k", None)  # type: ignore[arg-type]
        with pytest.raises(TagError, match="max_tag_value"):
            await b.update_tag("role", "x" * 5000)
        with pytest.raises(TagError, match="printable"):
            await b.update_tag("", "x")
        with pytest.raises(TagError, match="max_tags_size"):
            await b.set_tags({f"k{i}": "v" * 250 for i in range(5)})
        with pytest.raises(ValueError, match="unknown state"):
            a.nodes(states="dead")
        with pytest.raises(TypeError):
            a.nodes_with_all_tags([("role", "worker")])  # type: ignore[arg-type]
        # Nothing changed, locally or as others see it.
        assert b.local_node.incarnation == inc and b.tags == {"role": "worker"}
        assert a.member("n1").tags == {"role": "worker"}
        assert state_of(a, "n1") == "alive"


async def test_join_timeout_names_the_seeds(key: bytes) -> None:
    c = ClusterMembership("127.0.0.1:0", config(key, "lonely"))
    try:
        with pytest.raises(JoinTimeout) as info:
            await c.join(["localhost:9", "127.0.0.1:10"], timeout=1.0)
        assert info.value.seeds == ["localhost:9 (127.0.0.1:9)", "127.0.0.1:10"]
        assert "127.0.0.1:10" in str(info.value)
        with pytest.raises(ValueError, match="seed"):
            await c.join(["127.0.0.1:99999"])
        await c.join([])  # a cluster of one
        assert c.state == "joined"
    finally:
        await c.close()


async def test_calls_after_close(key: bytes) -> None:
    c = ClusterMembership("127.0.0.1:0", config(key, "closing"))
    with pytest.raises(NotStarted):
        c.nodes()
    await c.join([])
    sub = c.subscribe()
    await c.close()
    await c.close()
    for call in (c.nodes, c.stats, c.subscribe, lambda: c.local_node):
        with pytest.raises(ClusterClosed):
            call()
    for coro in (c.join([]), c.update_tag("k", "v"), c.leave(), c.start()):
        with pytest.raises(ClusterClosed):
            await coro
    assert [e async for e in sub] == []


def test_reads_outside_a_running_loop(key: bytes) -> None:
    loop = asyncio.new_event_loop()
    try:
        a = ClusterMembership("127.0.0.1:0", config(key, "r0"))
        b = ClusterMembership("127.0.0.1:0", config(key, "r1"))
        loop.run_until_complete(a.join([]))
        loop.run_until_complete(b.join([a.addr]))
        # No loop runs now (as in a REPL between cells): reads still work.
        assert {m.id for m in b.nodes()} == {"r0", "r1"}
        assert b.stats().alive == 2
        html = b._repr_html_()
        assert "r0" in html and "#1a7f37" in html and "<table>" in html
        lines: list[str] = []

        class Printer:
            def text(self, s: str) -> None:
                lines.append(s)

        b._repr_pretty_(Printer(), False)
        assert "r0" in lines[0] and "alive" in lines[0]
        assert "<table>" in b.stats()._repr_html_()
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(MissingDependency, match=r"clustermember\[pandas\]"):
                b.to_dataframe()
            with pytest.raises(ImportError, match=r"clustermember\[pandas\]"):
                b.stats().to_dataframe()
        else:
            assert len(b.to_dataframe()) == 2
        loop.run_until_complete(a.close())
        loop.run_until_complete(b.close())
    finally:
        loop.close()


async def test_mutual_tls(tmp_path: Path) -> None:
    ca, certs = issue_certs(tmp_path, ["t0", "t1"])
    nodes = []
    for i, (cert, k) in enumerate(certs):
        cfg = ClusterConfig.local(node_id=f"t{i}", tls_ca=ca, tls_cert=cert, tls_key=k)
        nodes.append(ClusterMembership("127.0.0.1:0", cfg))
    a, b = nodes
    try:
        await a.join([])
        await b.join([a.addr])
        await eventually(lambda: state_of(a, "t1") == "alive", "mTLS peers see each other")
    finally:
        await a.close()
        await b.close()


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


EXIT_WITHOUT_LEAVE = """
    import asyncio, secrets
    from clustermember import ClusterConfig, ClusterMembership
    key = secrets.token_bytes(32)
    nodes = []
    async def main():
        for i in range(2):
            cfg = ClusterConfig.local(cluster_key=key, node_id=f"e{i}")
            nodes.append(ClusterMembership("127.0.0.1:0", cfg))
        await nodes[0].join([])
        await nodes[1].join([nodes[0].addr])
        nodes[1].subscribe()
        print("joined", len(nodes[1].nodes()), flush=True)
    {run}
    """


@pytest.mark.parametrize(
    "run", ["asyncio.run(main())", "asyncio.new_event_loop().run_until_complete(main())"]
)
def test_exit_without_leave_is_clean(run: str) -> None:
    r = _run(EXIT_WITHOUT_LEAVE.replace("{run}", run))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "joined 2"
    assert "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr


FORK = """
    import asyncio, os, secrets
    from clustermember import ClusterClosed, ClusterConfig, ClusterMembership
    key = secrets.token_bytes(32)
    loop = asyncio.new_event_loop()
    a = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="p"))
    loop.run_until_complete(a.join([]))
    pid = os.fork()
    if pid == 0:
        try:
            a.nodes()
            os._exit(3)
        except ClusterClosed:
            pass
        async def child():
            c = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="c"))
            await c.join([a.addr])
            await c.leave()
        asyncio.run(child())
        os._exit(0)
    async def wait_child():
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.05)
    print("child", loop.run_until_complete(wait_child()), flush=True)
    print("parent sees", sorted(m.id for m in a.nodes(None)), flush=True)
    """


def test_fork_child_does_not_touch_the_parent_engine() -> None:
    r = _run(FORK)
    assert r.returncode == 0, r.stderr
    assert "child 0" in r.stdout, r.stdout + r.stderr
    assert "parent sees ['c', 'p']" in r.stdout, r.stdout + r.stderr
