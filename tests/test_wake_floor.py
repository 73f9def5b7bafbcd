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
import statistics
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
    # The summary is computed from the unrounded latencies, the list printed
    # to 0.1 µs: each figure is within that rounding of Python's own.
    assert abs(out["median_us"] - statistics.median(lat)) <= 0.1
    assert abs(out["p99_us"] - api_bench.pct(lat, 99)) <= 0.1  # nearest rank: the 40th of 40
    assert out["max_us"] == ordered[-1] and out["p99_us"] >= out["median_us"]
    assert len(api_bench.wake_floor_c(7, 0.0, 1)) == 7


@pytest.mark.parametrize("n", [1, 2, 3, 101])
def test_the_c_summary_is_pythons_for_any_count(n: int) -> None:
    cmd = [*api_bench.wake_cmd(n, 0.0, seed=5), "--raw"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    lat = out["latencies_us"]
    assert abs(out["median_us"] - statistics.median(lat)) <= 0.1
    assert abs(out["p99_us"] - api_bench.pct(lat, 99)) <= 0.1
    assert out["p99_us"] >= out["median_us"]


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
        ["--samples", "4294967297"],
        ["--samples", "10x"],
        ["--gap-ms", "-1"],
        ["--gap-ms", "nan"],
        ["--seed", "abc"],
        ["--seed", "-1"],
        ["--writer", "3"],
        ["--writer", "-1", "4"],
        ["--writer", "abc", "def"],
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


def test_a_writer_refuses_a_wrong_acknowledgement() -> None:
    import os

    r, w = os.pipe()
    ack_r, ack_w = os.pipe()
    cmd = [*api_bench.wake_cmd(3, 0.0, seed=1), "--writer", str(w), str(ack_r)]
    proc = subprocess.Popen(cmd, pass_fds=(w, ack_r), stderr=subprocess.PIPE, text=True)
    os.close(w)
    os.close(ack_r)
    assert len(os.read(r, 8)) == 8
    os.write(ack_w, b"x")
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None and "no acknowledgement of stamp 1" in proc.stderr.read()
    proc.stderr.close()
    os.close(r)
    os.close(ack_w)


def _no_build(samples: int, gap: float, seed: int) -> list[str]:
    raise subprocess.CalledProcessError(2, "make")


def _no_binary(samples: int, gap: float, seed: int) -> list[str]:
    return ["/nonexistent/cm_wake", "--samples", str(samples)]


@pytest.mark.parametrize(
    ("cmd", "error"),
    [(_no_build, subprocess.CalledProcessError), (_no_binary, FileNotFoundError)],
)
def test_a_floor_that_cannot_start_leaks_no_descriptor(
    cmd: object, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(api_bench, "wake_cmd", cmd)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(error):
            asyncio.run(api_bench.wake_floor(5, 0.0, seed=1))
    # asyncio.run's own loop comes and goes; the pipes must not stay.
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_writer_whose_reader_closed_its_end_says_so() -> None:
    import os

    r, w = os.pipe()
    ack_r, ack_w = os.pipe()
    os.close(r)  # nobody will ever read a stamp
    cmd = [*api_bench.wake_cmd(3, 0.0, seed=1), "--writer", str(w), str(ack_r)]
    done = subprocess.run(cmd, pass_fds=(w, ack_r), capture_output=True, text=True, timeout=30)
    os.close(w)
    os.close(ack_r)
    os.close(ack_w)
    assert done.returncode == 1  # not killed by SIGPIPE (-13)
    assert "the reader is gone" in done.stderr


def test_the_c_floor_says_when_its_writer_dies() -> None:
    import os
    import signal

    cmd = api_bench.wake_cmd(100000, 0.01, seed=1)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"
    deadline = time.monotonic() + 30
    kids: list[str] = []
    while time.monotonic() < deadline and not kids:
        with open(children) as f:
            kids = f.read().split()
        time.sleep(0.01)
    assert kids, "cm_wake forked no writer"
    os.kill(int(kids[0]), signal.SIGKILL)  # its own child, by PID
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == ""
    assert "the writer is gone" in err
