"""Smoke test of the comparison benchmark (bench/compare): each adapter runs
every scenario once at N = 3, so the harness does not rot. The benchmark
itself (N = 5-50, repeats) is run by hand; see docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare.runner import Windows, run_one  # noqa: E402

# Every window short, the warm-up too: the benchmark's 32 s keeps start-up
# costs out of its steady-state figures, which this test does not judge (it
# asserts only that each is measured). 5 s still outlasts convergence, tag,
# busy and grace together, so the warm-up wait itself runs.
WINDOWS = Windows(falsepos=2.0, busy=2.0, grace=1.0, warmup=5.0, slow_poll=0.5)


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
    assert set(r["falsepos"]) >= {"away_from_alive", "to_failed"}
    assert set(r["busy"]) >= {"away_from_alive", "to_failed"}
    assert r["cost"]["rss_mib"] > 1 and r["cost"]["cpu_s_per_min"] >= 0
    if os.geteuid() == 0 and shutil.which("nft"):
        assert r["cost"]["bytes_per_s"] > 0, r
    assert r["poll_resolution_s"] > 0
