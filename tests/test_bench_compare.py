"""Smoke test of the comparison benchmark (bench/compare): each adapter runs
every scenario once at N = 3, so the harness does not rot; and the counting
code on known input: Serf's real log lines, the episode rule, and the
per-process byte counters on a known transfer. The benchmark itself
(N = 5-50, repeats) is run by hand; see docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare.accounting import (  # noqa: E402
    CgroupTraffic,
    Report,
    count,
    episodes,
    parse_cm_event,
    parse_serf_line,
    parse_swim_line,
)
from bench.compare.adapters import _child_setup  # noqa: E402
from bench.compare.runner import Windows, run_one  # noqa: E402

# Every window short, the warm-up too: the benchmark's 32 s keeps start-up
# costs out of its steady-state figures, which this test does not judge (it
# asserts only that each is measured).
WINDOWS = Windows(falsepos=2.0, busy=2.0, grace=1.0, warmup=5.0)
SERF_SAMPLE = ROOT / "tests" / "data" / "serf_0.8.2_log_sample.txt"


def _missing(system: str) -> str | None:
    if system.startswith("serf") and shutil.which("serf") is None:
        return "serf is not installed (scripts/setup.sh installs it)"
    if system.startswith("serf") and importlib.util.find_spec("msgpack") is None:
        return "msgpack is not installed (pip install -e '.[test]')"
    if system == "swim-protocol" and importlib.util.find_spec("swimprotocol") is None:
        return "swim-protocol is not installed (pip install -e '.[test]')"
    return None


@pytest.mark.parametrize(
    ("system", "offset"), [("clustermember-local", 0), ("serf-local", 10), ("swim-protocol", 20)]
)
def test_adapter_runs_every_scenario(system: str, offset: int) -> None:
    reason = _missing(system)
    if reason:
        pytest.skip(reason)
    base = 25000 + (os.getpid() % 12) * 30 + offset
    r = run_one(system, 3, 0, base, WINDOWS)
    assert "error" not in r, r
    for key in ("converge_s", "tag_s", "detect_first_s", "detect_all_s"):
        assert r[key] is not None and r[key] >= 0, (key, r)
    assert r["detect_first_s"] <= r["detect_all_s"]
    if system == "swim-protocol":
        assert r["leave_s"] is None and r["leave_note"] == "no graceful leave"
    else:
        assert r["leave_s"] is not None and r["leave_s"] >= 0, r
    # ready in two parts, observed alike: process up, then listed by the seed
    assert 0 <= r["up_s"] and r["joined_s"] is not None and r["joined_s"] >= 0, r
    # the tag clock starts before a call that does not wait for its reply
    assert r["tag_call_returned_s"] is not None and r["tag_call_returned_s"] >= 0, r
    keys = {"suspect_episodes", "failed_episodes", "suspect_reports", "failed_reports"}
    assert set(r["falsepos"]) >= keys and set(r["busy_hog"]) >= keys
    if system == "serf-local":
        assert "busy_thread" not in r
    else:
        assert set(r["busy_thread"]) >= keys
    assert r["cost"]["rss_mib"] > 1 and r["cost"]["cpu_s_per_min"] >= 0
    if CgroupTraffic.usable():
        assert r["cost"]["bytes_per_s"] > 0, r
    for step in ("join", "converge", "tag", "detect"):
        assert r["sweep"][step]["sweeps"] > 0 and r["sweep"][step]["max_s"] > 0, r
    assert r["observer_errors"] == 0, r


def test_serf_log_lines_give_its_suspicions_and_failures() -> None:
    """Lines logged by the installed Serf (0.8.2-dev, -log-level=info) while
    one agent was stopped and another killed: every failed probe is a
    suspect report by the prober; EventMemberFailed is a failed report."""
    lines = SERF_SAMPLE.read_text().splitlines()
    reports = [r for r in map(parse_serf_line, lines) if r is not None]
    assert [(r.kind, r.subject) for r in reports] == [
        ("suspect", "c"),
        ("suspect", "c"),
        ("failed", "c"),
        ("suspect", "b"),
        ("suspect", "b"),
    ]
    assert reports[1].t - reports[0].t == 2.0
    # join, refute and "Marking ... as failed" lines are not reports
    assert parse_serf_line(lines[0]) is None
    assert parse_serf_line(lines[-1]) is None
    assert count(reports) == {
        "suspect_episodes": 2,
        "failed_episodes": 1,
        "suspect_reports": 4,
        "failed_reports": 1,
    }


def test_episodes_merge_reports_about_one_subject_close_in_time() -> None:
    rs = [Report(t, "suspect", s) for t, s in ((0, "a"), (1, "a"), (4.9, "a"), (10, "a"), (1, "b"))]
    assert episodes(rs, "suspect") == 3  # a: 0-4.9 and 10; b: 1
    assert episodes(rs, "failed") == 0


def test_cm_and_swim_report_lines() -> None:
    ev = {"event": {"type": "NodeSuspect", "node": {"id": "n2"}, "time": 5.5, "monotonic": 1}}
    assert parse_cm_event(json.dumps(ev)) == Report(5.5, "suspect", "n2")
    ev["event"]["type"] = "NodeTagsUpdated"
    assert parse_cm_event(json.dumps(ev)) is None
    assert parse_swim_line("status 12.5 127.0.0.1:9 failed") == Report(
        12.5, "failed", "127.0.0.1:9"
    )
    assert parse_swim_line("status 12.5 127.0.0.1:9 alive") is None


SENDER = """
import socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(10):
    u.sendto(b"x" * 1000, ("127.0.0.1", 9))
t = socket.create_connection(("127.0.0.1", port))  # from an ephemeral port
t.sendall(b"y" * 50000)
t.close()
"""


def test_cgroup_counters_count_every_port_of_one_process() -> None:
    """A process in its cgroup sends 10 UDP datagrams of 1000 bytes and
    50,000 bytes over TCP from an ephemeral port: all of it is counted to
    it, and nothing that the receiving process sends back."""
    if not CgroupTraffic.usable():
        pytest.skip("needs root, nft and a cgroup v2 hierarchy")
    t = CgroupTraffic()
    assert t.ok, t.reason
    srv = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def serve() -> None:
        c, _ = srv.accept()
        with c:
            while chunk := c.recv(65536):
                got.extend(chunk)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        cg = t.add("sender")
        subprocess.run(
            [sys.executable, "-c", SENDER, str(srv.getsockname()[1])],
            preexec_fn=_child_setup(cg),
            check=True,
            timeout=30,
        )
        th.join(10)
        assert len(got) == 50000
        sent = t.read()["sender"]
        udp = 10 * (1000 + 8 + 20)
        # TCP: the payload plus 40-60 bytes of headers per segment
        assert udp + 50000 < sent < udp + 50000 + 4000, sent
    finally:
        srv.close()
        t.close()


def test_the_clean_interpreter_imports_the_checkout_but_runs_no_site_hooks(tmp_path: Path) -> None:
    """The venv bench/compare runs Python agents in sees this environment's
    packages as plain path entries and runs none of its start-up hooks: the
    venv does not include the system site-packages (whose .pth files would
    run), and the one .pth file it holds names directories only (a line
    starting with 'import' would run as code)."""
    import site

    from bench.compare.adapters import clean_interpreter

    py = clean_interpreter(tmp_path / "venv")
    cfg = (tmp_path / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg
    (purelib,) = (tmp_path / "venv" / "lib").glob("python3*/site-packages")
    pths = list(purelib.glob("*.pth"))
    assert [p.name for p in pths] == ["_bench_paths.pth"]
    entries = pths[0].read_text().splitlines()
    assert entries and all(Path(e).is_dir() and not e.startswith("import") for e in entries)
    mods = ["clustermember"]
    if importlib.util.find_spec("swimprotocol") is not None:
        mods.append("swimprotocol")
    probe = (
        f"import json, sys, {', '.join(mods)};"
        "print(json.dumps([clustermember.__file__, sys.path, sorted(sys.modules)]))"
    )
    out = subprocess.run(
        [py, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    cm_file, path, modules = json.loads(out.stdout)
    assert Path(cm_file).resolve() == ROOT / "clustermember" / "__init__.py"
    base = site.getsitepackages()
    assert all(d in path for d in base), (base, path)
    # What this environment's hooks import at start, where it has them.
    hooked = {"_distutils_hack", "coverage", "certifi"} & set(sys.modules)
    assert not hooked & set(modules), hooked & set(modules)
