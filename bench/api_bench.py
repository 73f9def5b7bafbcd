"""Benchmarks of the Python API over real QUIC on loopback.

    python bench/api_bench.py [--samples 600] [--json] [--out bench/results/api-<commit>.json]

1. Event latency: from the engine creating an event (its monotonic stamp,
   taken when the protocol core processed the input) to a coroutine that
   iterates ``subscribe()`` receiving it. Events are NodeTagsUpdated on
   node A caused by node B's tag changes, one at a time.
   Beside it, in six blocks each whose order turns round by round (each
   kind first, second and last twice), two wake-up floors after a like idle
   gap, both written by a C process (``build/bench/cm_wake``), as the
   engine's C thread writes its eventfd: the asyncio floor, where the pipe
   is watched by the event loop and its callback resolves a future a
   coroutine awaits (no asyncio program on the machine is woken faster:
   what the events take beyond it is the library's), and the C floor, where
   a C process blocked in ``epoll_wait`` reads it (the kernel's and the
   virtual machine's part, with no interpreter in it).
2. ``nodes_with_tag`` on a 10,000-member registry (a synthetic snapshot laid
   out exactly like the engine's, read through the same code path), for
   1% / 10% / 0% matches.
3. ``update_tag`` beside the bare C call (``Node.set_tags``) that it wraps,
   both waiting for the engine thread to apply the change, in six blocks
   each, alternating which goes first; and its Python layer alone (the
   engine call stubbed out): the difference of the two calls is the engine
   thread's wake-up as much as the layer, and has come out below zero.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import secrets
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import commit
from clustermember import ClusterConfig, ClusterMembership, NodeTagsUpdated, _core

REGISTRY = 10_000
WAKE = Path(__file__).resolve().parent.parent / "build" / "bench" / "cm_wake"


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank: the smallest value with at least
    p % of the values at or below it).

    >>> pct(list(range(1, 151)), 99), pct([2.0, 1.0], 99), pct([5.0], 50)
    (149, 2.0, 5.0)
    """
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def summary(lat: list[float], **extra: float) -> dict[str, float]:
    """Median, p99 and max of latencies in seconds, in microseconds."""
    return {
        "samples": len(lat),
        **extra,
        "median_us": statistics.median(lat) * 1e6,
        "p99_us": pct(lat, 99) * 1e6,
        "max_us": max(lat) * 1e6,
    }


async def event_latency(samples: int, blocks: int = 6) -> dict[str, dict[str, float]]:
    """The events' latency and the machine's wake-up floors, taken in
    blocks whose order turns round by round (events, asyncio floor, C
    floor; then asyncio, C, events; ...), so that all see the same load on
    the machine."""
    key = secrets.token_bytes(32)
    a = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="a"))
    b = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="b"))
    gap = a.config.gossip_interval
    per = samples // blocks
    lat: list[float] = []
    floor: list[float] = []
    floor_c: list[float] = []
    try:
        await a.join([])
        await b.join([a.addr])
        # get(), not "async for ... break": leaving an async for closes the
        # subscription, and every sample after the first would be lost.
        async with a.subscribe() as events:

            async def event_block(first: int) -> None:
                for i in range(first, first + per):
                    await b.update_tag("n", str(i))
                    while True:
                        ev = await events.get(timeout=30)
                        now = time.monotonic()
                        if isinstance(ev, NodeTagsUpdated) and ev.node.tags.get("n") == str(i):
                            lat.append(now - ev.monotonic)
                            break

            kinds = ("events", "asyncio", "c")
            for block in range(blocks):
                turn = block % len(kinds)
                for which in kinds[turn:] + kinds[:turn]:
                    if which == "events":
                        await event_block(block * per)
                    elif which == "asyncio":
                        floor += await wake_floor(per, gap, seed=block + 1)
                    else:
                        floor_c += wake_floor_c(per, gap, seed=block + 1)
        if len(lat) != samples:
            raise SystemExit(f"{len(lat)} event samples of {samples}")
    finally:
        await a.close()
        await b.close()
    return {
        "event_latency": summary(lat),
        "wake_floor": summary(floor, gap_s=gap),
        "wake_floor_c": summary(floor_c, gap_s=gap),
    }


async def floors_by_gap(gap: float, samples: int = 200) -> list[dict[str, float]]:
    """Both floors' medians back to back, after gaps of up to 5 ms, and
    after gaps of up to `gap` (the events'): what idling does to each. Taken
    once the cluster is closed; which floor goes first alternates by gap."""
    out = []
    for k, g in enumerate((0.0, 0.005, gap)):
        med: dict[str, float] = {}
        for which in ("asyncio", "c") if k % 2 == 0 else ("c", "asyncio"):
            lat = (
                await wake_floor(samples, g, seed=7 + k)
                if which == "asyncio"
                else wake_floor_c(samples, g, seed=7 + k)
            )
            med[f"{which}_median_us"] = statistics.median(lat) * 1e6
        out.append({"gap_s": g, "samples": samples, **med})
    return out


@functools.cache
def wake_binary() -> Path:
    """cm_wake, built with make if it is missing or stale (once a run)."""
    subprocess.run(
        ["make", "-s", "-C", str(WAKE.parents[2]), "build/bench/cm_wake"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return WAKE


def wake_cmd(samples: int, gap: float, seed: int) -> list[str]:
    """cm_wake's command line: `samples` stamps, each after an idle gap drawn
    uniformly from [0, gap) seconds (an event waits for the sender's next
    gossip tick, 0 to one interval away)."""
    binary = wake_binary()
    return [
        str(binary),
        "--samples",
        str(samples),
        "--gap-ms",
        f"{gap * 1e3:g}",
        "--seed",
        str(seed),
    ]


def wake_floor_c(samples: int, gap: float, seed: int) -> list[float]:
    """The C floor: cm_wake's writer and its reader, blocked in epoll_wait,
    both C processes. Latencies in seconds."""
    out = subprocess.run(
        [*wake_cmd(samples, gap, seed), "--raw"], capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        raise SystemExit(f"cm_wake failed ({out.returncode}): {out.stderr.strip()}")
    return [us / 1e6 for us in json.loads(out.stdout)["latencies_us"]]


async def wake_floor(samples: int, gap: float, seed: int) -> list[float]:
    """What any asyncio code pays on this machine for what the event path
    does first: an idle event loop woken by a descriptor a C process wrote
    (cm_wake's writer, no GIL or engine shared with the loop), its reader
    callback, and a coroutine awaiting a future that the callback resolves;
    after an idle gap like the events'. Latencies in seconds."""
    loop = asyncio.get_running_loop()
    cmd = wake_cmd(samples, gap, seed)
    r, w = os.pipe()
    ack_r, ack_w = os.pipe()
    os.set_blocking(r, False)
    waiter: asyncio.Future[float] | None = None

    def readable() -> None:
        data = os.read(r, 8)
        if waiter is not None and not waiter.done() and len(data) == 8:
            waiter.set_result(struct.unpack("d", data)[0])

    try:
        writer = subprocess.Popen([*cmd, "--writer", str(w), str(ack_r)], pass_fds=(w, ack_r))
    except BaseException:
        for fd in (r, w, ack_r, ack_w):
            os.close(fd)
        raise
    os.close(w)
    os.close(ack_r)
    loop.add_reader(r, readable)
    lat: list[float] = []
    try:
        for _ in range(samples):
            waiter = loop.create_future()
            stamp = await asyncio.wait_for(waiter, timeout=30)
            lat.append(time.monotonic() - stamp)
            os.write(ack_w, b"k")  # one stamp in flight at a time, as one event
        for _ in range(3000):  # it exits once it has had its last ack
            if writer.poll() is not None:
                break
            await asyncio.sleep(0.01)
        if writer.poll() != 0:
            raise SystemExit(f"cm_wake's writer failed ({writer.returncode})")
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.close(ack_w)
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    return lat


def per_call(fn: Any, min_time: float = 1.0) -> float:
    """Seconds per call, repeated for at least min_time, best of 3."""
    best = float("inf")
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (el := time.perf_counter() - t0) < min_time / 3:
            fn()
            n += 1
        best = min(best, el / n)
    return best


async def tag_query(cluster: ClusterMembership) -> dict[str, float]:
    members = [
        (
            f"node-{i:05d}",
            f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:7946",
            "alive",
            1,
            {"role": "worker" if i % 10 == 0 else "db", "shard": str(i % 100), "zone": "eu-1"},
        )
        for i in range(REGISTRY)
    ]
    snap = _core.Snapshot.synthetic(members)
    cluster._snapshot = lambda: snap  # type: ignore[method-assign]
    out = {}
    for label, k, v, expect in (
        ("1pct", "shard", "7", 100),
        ("10pct", "role", "worker", 1000),
        ("none", "role", "absent", 0),
    ):
        assert len(cluster.nodes_with_tag(k, v)) == expect
        out[f"nodes_with_tag_{label}_us"] = (
            per_call(lambda k=k, v=v: cluster.nodes_with_tag(k, v)) * 1e6
        )
    out["raw_c_query_1pct_us"] = per_call(lambda: snap.query(1, {"shard": "7"})) * 1e6
    return out


class _NoEngine:
    """Stands in for the engine under ``update_tag``: the call returns at
    once, so what is left is the Python layer alone."""

    def set_tags(self, tags: dict[str, str]) -> None:
        pass


async def update_tag_overhead(rounds: int = 3000, blocks: int = 6) -> dict[str, Any]:
    """``await update_tag`` and the bare C call it wraps, in six blocks each,
    alternating which goes first (each waits for the engine thread, whose
    wake-up varies with the spacing of the calls: the median of each's
    blocks), and the Python layer alone: ``update_tag`` with the engine
    call stubbed out."""
    key = secrets.token_bytes(32)
    c = ClusterMembership("127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id="t"))
    await c.join([])
    node = c._node
    assert node is not None
    per = rounds // blocks
    api: list[float] = []
    raw: list[float] = []
    try:
        for b in range(blocks):
            for which in ("api", "raw") if b % 2 == 0 else ("raw", "api"):
                t0 = time.perf_counter()
                if which == "api":
                    for i in range(per):
                        await c.update_tag("k", str(i))
                    api.append((time.perf_counter() - t0) / per)
                else:
                    for i in range(per):
                        node.set_tags({"k": str(i)})
                    raw.append((time.perf_counter() - t0) / per)
        c._node = _NoEngine()  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            for i in range(rounds):
                await c.update_tag("k", str(i))
            layer = (time.perf_counter() - t0) / rounds
        finally:
            c._node = node
        res = await tag_query(c)
    finally:
        await c.close()
    return {
        "update_tag_us": statistics.median(api) * 1e6,
        "set_tags_c_us": statistics.median(raw) * 1e6,
        "python_layer_us": layer * 1e6,
        **res,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the results, commit and command here")
    args = ap.parse_args()
    if args.samples < 6 or args.samples % 6:
        ap.error("--samples must be a multiple of 6 (six blocks of each kind)")
    measured = commit()  # before the run: the tree may change while it runs
    lat = await event_latency(args.samples)
    gaps = await floors_by_gap(lat["wake_floor"]["gap_s"])
    res = {**lat, "floors_by_gap": gaps, **await update_tag_overhead()}
    if args.out:
        doc = {
            "commit": measured,
            "command": " ".join(["python bench/api_bench.py", *sys.argv[1:]]),
            "python": sys.version.split()[0],
            "results": res,
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        if isinstance(v, dict):
            print(k, ", ".join(f"{a}={b:.1f}" for a, b in v.items()))
        elif isinstance(v, list):
            for row in v:
                print(k, ", ".join(f"{a}={b:g}" for a, b in row.items()))
        else:
            print(f"{k} = {v:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
