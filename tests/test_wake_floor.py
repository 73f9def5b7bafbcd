"""The wake-up floors bench/api_bench.py sets beside the events' latency.

``build/bench/cm_wake`` times a C process blocked in ``epoll_wait`` woken
through a pipe by another, after idle gaps; as a writer alone it feeds the
asyncio floor, whose reader is an event loop. These tests check what the
figures rest on: one stamp per sample, in order, on the clock Python's
``time.monotonic`` reads, and bad arguments refused. They assert no time
bound: the figures are the benchmark's (docs/benchmarks.md, "Python API").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from bench import api_bench

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux's")


def test_the_c_floor_takes_one_latency_per_sample() -> None:
    cmd = [*api_bench.wake_cmd(40, 0.002, seed=3), "--raw"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    lat = out["latencies_us"]
    assert out["samples"] == len(lat) == 40 and out["gap_ms"] == 2
    assert all(0 < x < 30e6 for x in lat)  # a latency, not a clock reading
    ordered = sorted(lat)
    assert out["median_us"] == ordered[20] and out["max_us"] == ordered[-1]
    assert ordered[0] <= out["p99_us"] <= out["max_us"]
    assert api_bench.wake_floor_c(7, 0.001, seed=1) and len(api_bench.wake_floor_c(7, 0.0, 1)) == 7


def test_the_asyncio_floor_reads_the_c_writers_stamps_on_pythons_clock() -> None:
    t0 = time.monotonic()
    lat = asyncio.run(api_bench.wake_floor(25, 0.002, seed=2))
    took = time.monotonic() - t0
    assert len(lat) == 25
    # Each is the time from the writer's stamp to the coroutine's resumption:
    # positive, and each shorter than the whole run (the clocks agree).
    assert all(0 < x < took for x in lat)


@pytest.mark.parametrize(
    "args",
    [
        ["--samples", "0"],
        ["--gap-ms", "-1"],
        ["--writer", "3"],
        ["--writer", "-1", "4"],
        ["--bogus"],
    ],
)
def test_cm_wake_refuses_bad_arguments(args: list[str]) -> None:
    binary = api_bench.wake_cmd(1, 0.0, seed=1)[0]
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert "cm_wake" in done.stderr


def test_a_writer_whose_reader_is_gone_exits_instead_of_waiting() -> None:
    import os

    r, w = os.pipe()
    ack_r, ack_w = os.pipe()
    cmd = [*api_bench.wake_cmd(5, 0.0, seed=1), "--writer", str(w), str(ack_r)]
    proc = subprocess.Popen(cmd, pass_fds=(w, ack_r))
    os.close(w)
    os.close(ack_r)
    os.close(ack_w)  # no acknowledgement will ever come
    assert proc.wait(timeout=30) == 1
    os.close(r)
