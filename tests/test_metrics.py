"""Prometheus metrics: the text renderer, the prometheus_client collector,
and live agents' ``/metrics`` scraped over HTTP and parsed with the official
client's parser; every documented metric there, moving when it should, and
an endpoint that bad clients cannot hang."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# The test extra installs it; the package and the agent do without it.
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.agents import Agents, eventually
from clustermember import ClusterCollector, ClusterConfig, ClusterMembership, ClusterStats
from clustermember._errors import MissingDependency
from clustermember._metrics import (
    DROP_REASONS,
    METRICS,
    NOT_EXPORTED,
    Reading,
    docs_table,
    drops_table,
    escape_label,
    render,
    samples,
)
from clustermember._metrics_server import (
    MAX_CLIENTS,
    MAX_HEAD,
    MAX_PER_SOURCE,
    READ_TIMEOUT,
    MetricsAddressError,
    MetricsServer,
    is_loopback,
    parse_metrics_addr,
)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "clustermember"]
EXPECTED = {m.family: m.kind for m in METRICS}

Families = dict[str, Any]


def families(text: str) -> Families:
    """Metric families by name, as the official parser reads them."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: Families, sample: str, **labels: str) -> float:
    """The value of one sample (by its full name and labels)."""
    family = sample.removesuffix("_total")
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and sample.removesuffix(suffix) in fams:
            family = sample.removesuffix(suffix)
    found = [s.value for s in fams[family].samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, fams[family].samples)
    return float(found[0])


def reading(**counters: int) -> Reading:
    """A made-up reading: every counter a metric reads at 0 unless given."""
    c = {s: 0 for m in METRICS for s in m.sources}
    c.update(counters)
    rtts = {"buckets": [(0.001, 2), (0.01, 3), (float("inf"), 1)], "sum": 0.05, "count": 6}
    return Reading('we"ird\\id\nx', "9.9", c, rtts, 4, 2)


# ------------------------------------------------------------- the definition


def test_names_follow_the_prometheus_conventions() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names)), "a metric is defined twice"
    for m in METRICS:
        assert re.fullmatch(r"clustermember_[a-z0-9_]+", m.name), m.name
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.help.endswith(".") and "\n" not in m.help, m.name
        assert "le" not in m.labels and all(re.fullmatch(r"[a-z_]+", x) for x in m.labels)
    assert EXPECTED["clustermember_probe_rtt_seconds"] == "histogram"


async def test_every_raw_counter_is_exported_or_named_as_left_out(key: bytes) -> None:
    config = ClusterConfig.local(cluster_key=key, node_id="solo")
    async with ClusterMembership("127.0.0.1:0", config) as c:
        raw = set(c.stats().counters)
    read = {s for m in METRICS for s in m.sources}
    assert read <= raw, f"metrics read counters that do not exist: {read - raw}"
    assert not read & NOT_EXPORTED, read & NOT_EXPORTED
    assert raw == read | NOT_EXPORTED, f"neither exported nor left out: {raw - read - NOT_EXPORTED}"
    drops = {k for k in raw if k.startswith(("drop_", "net_drop_"))}
    assert drops <= {d.counter for d in DROP_REASONS}, "a drop counter has no reason label"


# ---------------------------------------------------------------- the renderer


def test_label_values_are_escaped_and_read_back_whole() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render(samples(reading()))
    assert 'clustermember_info{node_id="we\\"ird\\\\id\\nx",version="9.9"} 1\n' in text
    info = families(text)["clustermember_info"].samples[0]
    assert info.labels == {"node_id": 'we"ird\\id\nx', "version": "9.9"} and info.value == 1


def test_the_histogram_is_cumulative_with_inf_sum_and_count() -> None:
    text = render(samples(reading()))
    lines = [x for x in text.splitlines() if x.startswith("clustermember_probe_rtt_seconds")]
    assert lines == [
        'clustermember_probe_rtt_seconds_bucket{le="0.001"} 2',
        'clustermember_probe_rtt_seconds_bucket{le="0.01"} 5',
        'clustermember_probe_rtt_seconds_bucket{le="+Inf"} 6',
        "clustermember_probe_rtt_seconds_sum 0.05",
        "clustermember_probe_rtt_seconds_count 6",
    ]
    fam = families(text)["clustermember_probe_rtt_seconds"]
    assert fam.type == "histogram"


def test_help_and_type_precede_each_family_and_drop_reasons_are_disjoint() -> None:
    text = render(samples(reading(net_drop_rate_limit=5, net_drop_source_limit=2, drop_stale=7)))
    for m in METRICS:
        assert f"# HELP {m.name} {m.help}\n# TYPE {m.name} {m.kind}\n" in text
    fams = families(text)
    assert set(fams) == set(EXPECTED) and all(fams[n].type == k for n, k in EXPECTED.items())
    drops = "clustermember_drops_total"
    # The transport counts a per-source limit in its rate limit too: shown apart.
    assert value(fams, drops, layer="transport", reason="rate_limit") == 3
    assert value(fams, drops, layer="transport", reason="source_limit") == 2
    assert value(fams, drops, layer="protocol", reason="stale") == 7
    assert value(fams, "clustermember_event_queue_depth") == 4


def test_stats_dropped_counts_a_per_source_drop_once() -> None:
    """ClusterStats.dropped does not add the per-source handshake limit on
    top of the rate limit it is part of (the metrics show the two apart)."""
    c = collections.defaultdict(
        int, net_drop_rate_limit=5, net_drop_source_limit=2, drop_stale=7, events_dropped=1
    )
    s = ClusterStats._from_counters("n0", c)
    assert s.drops["net_drop_source_limit"] == 2
    assert s.dropped == 5 + 7 + 1


# ---------------------------------------------------------------- the docs


def test_the_operations_page_lists_exactly_the_defined_metrics() -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    hint = "regenerate it with: python -c 'from clustermember import _metrics as m; print(m.{}())'"
    assert docs_table() in page, (
        "docs/operations.md's metrics table is out of date; " + hint.format("docs_table")
    )
    assert drops_table() in page, (
        "docs/operations.md's drop reasons are out of date; " + hint.format("drops_table")
    )
    # Every metric the page names elsewhere (the alerts) exists.
    known = {m.name for m in METRICS}
    known |= {
        f"{m.name}{s}"
        for m in METRICS
        if m.kind == "histogram"
        for s in ("_bucket", "_sum", "_count")
    }
    named = set(re.findall(r"clustermember_[a-z0-9_]+", page))
    assert named <= known, f"the page names metrics that do not exist: {named - known}"


# ---------------------------------------------------------------- the collector


async def test_the_collector_yields_what_the_text_shows(key: bytes) -> None:
    config = ClusterConfig.local(cluster_key=key, node_id="solo")
    cluster = ClusterMembership("127.0.0.1:0", config)
    registry = CollectorRegistry()
    registry.register(ClusterCollector(cluster))  # before the node starts: names only
    assert generate_latest(registry) == b""  # nothing to read yet
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(ClusterCollector(cluster))
    async with cluster:
        await cluster.join([])
        ours = families(cluster.metrics_text())
        theirs = families(generate_latest(registry).decode())
    assert (
        {n: f.type for n, f in theirs.items()} == {n: f.type for n, f in ours.items()} == EXPECTED
    )
    for name in ours:
        assert {tuple(sorted(s.labels)) for s in theirs[name].samples} == {
            tuple(sorted(s.labels)) for s in ours[name].samples
        }, name
    assert value(theirs, "clustermember_members", state="alive") == 1
    assert value(theirs, "clustermember_info", node_id="solo", version=_version()) == 1


def test_without_prometheus_client_the_text_works_and_the_collector_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with pytest.raises(MissingDependency, match=r"clustermember\[prometheus\]"):
        ClusterCollector(object())  # type: ignore[arg-type]
    assert "clustermember_members" in render(samples(reading()))


# An agent in an interpreter where prometheus_client cannot be imported.
WITHOUT_CLIENT = """
import sys
sys.modules["prometheus_client"] = None
from clustermember.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_agent_without_prometheus_client_serves_metrics(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", WITHOUT_CLIENT, "agent", "--insecure", "--bind", "127.0.0.1:0"]
    cmd += ["--control", str(tmp_path / "a.sock"), "--metrics", "127.0.0.1:0"]
    cmd += ["--log-level", "error"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        fams = scrape(url_in(proc.stdout.readline()))
        assert {n: f.type for n, f in fams.items()} == EXPECTED
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _version() -> str:
    from clustermember import __version__

    return __version__


# ---------------------------------------------------------------- live agents


def metrics_url(agent: Any) -> str:
    """The metrics URL an agent printed in its ready line."""
    return url_in(agent.ready)


def url_in(ready: str) -> str:
    match = re.search(r", metrics (http://\S+)$", ready.strip())
    assert match, ready
    return match.group(1)


def scrape(url: str) -> Families:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return families(resp.read().decode("utf-8"))


def raw_request(url: str, data: bytes, timeout: float = READ_TIMEOUT + 15) -> tuple[bytes, float]:
    """Send bytes to the metrics port; what came back before the agent closed
    (empty if it reset the connection) and how long that took."""
    port = int(url.split(":")[2].split("/")[0])
    t0 = time.monotonic()
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            if data:
                s.sendall(data)
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got, time.monotonic() - t0


def test_a_live_agent_serves_every_metric_and_they_move(agents: Agents) -> None:
    a = agents.start("m0", args=("--metrics", "127.0.0.1:0"))
    url = metrics_url(a)
    first = scrape(url)
    assert {n: f.type for n, f in first.items()} == EXPECTED
    assert value(first, "clustermember_members", state="alive") == 1
    assert value(first, "clustermember_info", node_id="m0", version=_version()) == 1
    assert value(first, "clustermember_probe_rtt_seconds_count") == 0
    sent = value(first, "clustermember_bytes_total", direction="out")

    b = agents.start("m1", join=a.addr, args=("--metrics", "127.0.0.1:0"))
    second = metrics_url(b)
    assert second != url

    def now(sample: str, **labels: str) -> float:
        return value(scrape(url), sample, **labels)

    eventually(lambda: now("clustermember_members", state="alive") == 2, "2 alive on m0")
    eventually(lambda: now("clustermember_probe_rtt_seconds_count") > 0, "probe RTTs on m0")
    eventually(lambda: now("clustermember_bytes_total", direction="out") > sent, "bytes sent")
    fams = scrape(url)
    assert value(fams, "clustermember_probe_rtt_seconds_bucket", le="+Inf") == value(
        fams, "clustermember_probe_rtt_seconds_count"
    )
    assert value(fams, "clustermember_protocol_bytes_total", direction="in") > 0
    assert value(fams, "clustermember_probes_total") > 0
    assert scrape(second)["clustermember_info"].samples[0].labels["node_id"] == "m1"

    # A crash: m0 suspects m1, then declares it failed.
    suspected = value(fams, "clustermember_suspicions_total")
    agents.kill(b)
    eventually(lambda: now("clustermember_suspicions_total") > suspected, "a suspicion on m0")
    eventually(lambda: now("clustermember_members", state="failed") == 1, "m1 failed on m0")
    assert now("clustermember_failures_declared_total") >= 1


def test_bad_clients_get_an_error_or_a_close_and_the_agent_stays_healthy(
    agents: Agents,
) -> None:
    a = agents.start("m0", args=("--metrics", "127.0.0.1:0"))
    url = metrics_url(a)
    base = url.removesuffix("/metrics")
    got, _ = raw_request(url, b"garbage\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 "), got
    for path, method, status in (("/", "GET", 404), ("/metrics", "POST", 405)):
        req = urllib.request.Request(base + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == status
    # Headers over the limit: 431, or a reset if the agent closed while the
    # rest was still arriving; within the time limit either way.
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD + 100) + b"\r\n\r\n"
    got, took = raw_request(url, big)
    assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:100]
    assert took < READ_TIMEOUT + 10
    # Clients that send nothing, or half a request line, are let go with a
    # 408 once the time limit is up; meanwhile scrapes are answered.
    port = int(url.split(":")[2].split("/")[0])
    idle = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 15)
    half = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 15)
    try:
        half.sendall(b"GET /metr")
        t0 = time.monotonic()
        assert value(scrape(url), "clustermember_members", state="alive") == 1
        for s in (idle, half):
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            assert got.startswith(b"HTTP/1.1 408 "), got
        assert time.monotonic() - t0 < READ_TIMEOUT + 10
    finally:
        idle.close()
        half.close()
    # More idle connections than are served at once cannot lock a scraper
    # out: each newcomer past the limit closes the one idle longest.
    crowd = [
        socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 15)
        for _ in range(MAX_CLIENTS + 8)
    ]
    try:
        assert value(scrape(url), "clustermember_members", state="alive") == 1
    finally:
        for s in crowd:
            s.close()
    assert a.alive()
    assert value(scrape(url), "clustermember_members", state="alive") == 1
    assert raw_request(url, b"HEAD /metrics HTTP/1.0\r\n\r\n")[0].endswith(b"\r\n\r\n")


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
GET = b"GET /metrics HTTP/1.0\r\n\r\n"
#: Long enough that no connection of the test below times out on a loaded
#: machine: what closes one there is the bound alone.
PATIENT = 120.0


async def answer(conn: Conn, rest: bytes = GET) -> bytes:
    """Send (the rest of) a request on conn; what comes back before the
    server closes it, empty if it had closed it already."""
    reader, writer = conn
    try:
        writer.write(rest)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), PATIENT)
    except (ConnectionResetError, BrokenPipeError):
        return b""


@contextlib.asynccontextmanager
async def patient_server() -> AsyncIterator[Callable[[str], Awaitable[Conn]]]:
    """A metrics server whose clients never time out, and a function that
    opens a connection to it from a given local address; every connection
    and the server are closed at the end."""
    server = MetricsServer("127.0.0.1:0", lambda: "up 1\n", read_timeout=PATIENT)
    await server.start()
    conns: list[Conn] = []

    async def connect(source: str) -> Conn:
        conn = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
        conns.append(conn)
        return conn

    try:
        yield connect
    finally:
        for _, writer in conns:
            writer.close()
        await server.close()


async def test_one_address_keeps_at_most_its_share_waiting() -> None:
    """Below the bound on all connections, one address still keeps at most
    MAX_PER_SOURCE waiting: each newer one closes its oldest."""
    async with patient_server() as connect:
        mine = [await connect("127.0.0.1") for _ in range(MAX_PER_SOURCE + 2)]
        # Answered, so every connection before it was taken in (in order).
        assert (await answer(await connect("127.0.0.2"))).startswith(b"HTTP/1.1 200 ")
        got = await asyncio.gather(*map(answer, mine))
        assert [g.startswith(b"HTTP/1.1 200 ") for g in got] == [False] * 2 + [
            True
        ] * MAX_PER_SOURCE


async def test_one_address_cannot_close_a_scrape_from_another() -> None:
    """A scraper sends half its request; then five addresses each open more
    connections than one address may keep waiting, and forty more addresses
    one each, more than the server keeps waiting in all. The scraper is
    still answered; each of the five keeps at most MAX_PER_SOURCE, its
    newest, and all of them together at most MAX_CLIENTS."""
    async with patient_server() as connect:
        scraper = await connect("127.0.0.1")
        scraper[1].write(b"GET /metr")
        await scraper[1].drain()
        flooders = [f"127.0.0.{i}" for i in range(2, 7)]
        crowd = {a: [await connect(a) for _ in range(MAX_PER_SOURCE + 2)] for a in flooders}
        singles = [await connect(f"127.0.1.{i}") for i in range(1, 41)]
        # Answered, so every connection before it was taken in (in order).
        assert (await answer(await connect("127.0.0.7"))).startswith(b"HTTP/1.1 200 ")
        assert (await answer(scraper, b"ics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        got = await asyncio.gather(
            *(answer(c) for a in flooders for c in crowd[a]), *map(answer, singles)
        )
        ok = [g.startswith(b"HTTP/1.1 200 ") for g in got]
        per = MAX_PER_SOURCE + 2
        for i, a in enumerate(flooders):
            kept = ok[i * per : (i + 1) * per]
            assert sum(kept) <= MAX_PER_SOURCE, (a, kept)
            assert kept == sorted(kept), f"{a} lost a newer connection before an older one: {kept}"
        assert sum(ok) <= MAX_CLIENTS - 1, ok


def test_a_metrics_port_in_use_is_one_line_and_a_nonzero_exit(agents: Agents) -> None:
    a = agents.start("m0", args=("--metrics", "127.0.0.1:0"))
    taken = metrics_url(a).split("//")[1].split("/")[0]
    out = subprocess.run(
        [
            *CLI,
            "agent",
            "--bind",
            "127.0.0.1:0",
            "--key-file",
            str(agents.key),
            "--control",
            str(agents.tmp / "other.sock"),
            "--metrics",
            taken,
            "--log-level",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out
    assert "address already in use" in out.stderr and taken in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert a.alive()


def test_the_metrics_option_from_flags_environment_and_file(tmp_path: Path) -> None:
    from clustermember.__main__ import build_parser
    from clustermember._agent import agent_settings
    from clustermember._cli import UsageError

    def settings(argv: list[str], env: dict[str, str] | None = None) -> Any:
        return agent_settings(vars(build_parser().parse_args(["agent", *argv])), env or {})[
            "metrics"
        ]

    assert settings([]) is None  # off unless asked for
    assert settings(["--metrics"]) == "127.0.0.1:9946"  # alone: loopback
    assert settings(["--metrics", "9100"]) == "9100"
    assert settings([], {"CLUSTERMEMBER_METRICS": "127.0.0.1:9101"}) == "127.0.0.1:9101"
    toml = tmp_path / "a.toml"
    toml.write_text('metrics = "[::1]:9102"\n')
    assert settings(["--config", str(toml)]) == "[::1]:9102"
    toml.write_text("metrics = 9103\n")  # a bare port, as a TOML integer
    assert settings(["--config", str(toml)]) == "9103"
    toml.write_text("metrics = true\n")
    with pytest.raises(UsageError, match="metrics must be HOST:PORT or PORT"):
        settings(["--config", str(toml)])
    for bad in ("nope", "127.0.0.1:70000", "host:"):
        with pytest.raises(UsageError, match="--metrics must be HOST:PORT or PORT"):
            settings(["--metrics", bad])
    with pytest.raises(UsageError, match="CLUSTERMEMBER_METRICS: metrics must be"):
        settings([], {"CLUSTERMEMBER_METRICS": "x"})
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_the_cli_refuses_a_bad_metrics_address_in_one_line() -> None:
    out = subprocess.run(
        [*CLI, "agent", "--insecure", "--metrics", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "--metrics must be HOST:PORT" in out.stderr
    # An IPv6 host goes in brackets: "::1" is refused, not read as ":" port 1.
    for bad in ("::1", "fe80::1"):
        with pytest.raises(MetricsAddressError):
            parse_metrics_addr(bad)
    assert parse_metrics_addr("[::1]:9100") == ("::1", 9100)


@pytest.mark.asyncio
async def test_events_a_slow_subscriber_loses_are_counted(key: bytes) -> None:
    """A subscriber that never reads loses events past its queue: counted in
    drops_total{reason="subscriber_queue_full"}, and never counted down when
    the subscription goes."""
    node = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="s0"))
    await node.start()
    await node.join([])
    try:
        sub = node.subscribe(maxsize=2)
        for i in range(20):
            await node.update_tag("n", str(i))
        deadline = time.monotonic() + 60
        while sub.dropped == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # a poll on a condition, bounded above
        lost = sub.dropped
        assert lost > 0
        fams = families(node.metrics_text())
        assert (
            value(fams, "clustermember_drops_total", layer="engine", reason="subscriber_queue_full")
            == lost
        )
        sub.close()
        fams = families(node.metrics_text())
        assert (
            value(fams, "clustermember_drops_total", layer="engine", reason="subscriber_queue_full")
            == lost
        )
    finally:
        await node.close()


def test_the_collector_is_imported_only_when_asked_for() -> None:
    """An agent or service that exports no metrics does not import them at
    start; ``clustermember.ClusterCollector`` still resolves, and a name the
    package does not have is still an AttributeError."""
    code = (
        "import sys, clustermember, clustermember.__main__\n"
        "assert 'clustermember._metrics' not in sys.modules, 'imported at start'\n"
        "from clustermember import ClusterCollector\n"
        "assert ClusterCollector.__module__ == 'clustermember._metrics'\n"
        "try:\n"
        "    clustermember.NoSuchName\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchName' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
