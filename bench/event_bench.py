"""Handing a join's burst of member events to Python, on the event loop's thread.

    make build/bench/cm_pp_inject
    python bench/event_bench.py [--members 10000] [--repeat 5] [--json]

A seed node's registry is filled with ``--members`` synthetic members, pushed
into it over QUIC by ``build/bench/cm_pp_inject`` in one push-pull, as a peer
would. Then a fresh node joins through the seed: the merge of the seed's
table queues one member event per member. Once the whole burst is queued
(the snapshot is published after its events), the figure is the time
``Node.next_events()`` takes to hand all of it to Python, in batches of 256:
the calls ``ClusterMembership`` makes on its event loop, holding the GIL.
Each repeat joins a new node; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clustermember import ClusterConfig, _core

ROOT = Path(__file__).resolve().parent.parent
INJECT = ROOT / "build" / "bench" / "cm_pp_inject"
# Polls of a node's registry while it merges; ends as soon as it has.
POLL = 0.01
DEADLINE = 120.0
# Events taken per next_events() call: what ClusterMembership takes.
BATCH = 256
JOIN_TIMEOUT = 60.0
SEED_PROBE_INTERVAL = 60.0


def wait_members(node: _core.Node, want: int) -> None:
    """Wait until node's registry holds at least want members."""
    end = time.monotonic() + DEADLINE
    while len(node.snapshot()) < want:
        if time.monotonic() > end:
            raise SystemExit(f"{node.id} holds {len(node.snapshot())} members, not {want}")
        time.sleep(POLL)


def start(eng: _core.Engine, cfg: ClusterConfig, node_id: str, queue: int) -> _core.Node:
    """A node of the LAN profile on a kernel-picked loopback port."""
    return eng.start_node(
        node_id,
        "127.0.0.1:0",
        proto=cfg.protocol_settings(),
        net=cfg.transport_settings(node_id, "127.0.0.1:0"),
        event_queue=queue,
    )


def drain(node: _core.Node, token: int) -> tuple[float, int]:
    """Seconds next_events() takes to hand over everything queued, and the
    member events among it; the join's result must be there too."""
    members = 0
    result = None
    t0 = time.perf_counter()
    while batch := node.next_events(BATCH):
        for ev in batch:
            if ev[0] == "member":
                members += 1
            elif ev[0] == "joined" and ev[1] == token:
                result = ev[2]
    elapsed = time.perf_counter() - t0
    if result != 0:
        raise SystemExit(f"join result {result!r}")
    return elapsed, members


def run(members: int, repeat: int) -> dict[str, Any]:
    key = secrets.token_bytes(32)
    # Probes are what would fail the synthetic members, which nothing
    # answers; a minute apart, the seed's table stays as injected while the
    # benchmark runs.
    cfg = ClusterConfig.lan(cluster_key=key, probe_interval=SEED_PROBE_INTERVAL)
    eng = _core.Engine()
    try:
        # Nobody reads the seed's events: a small queue drops them.
        seed = start(eng, cfg, "seed", 16)
        subprocess.run([str(INJECT), seed.addr, key.hex(), str(members)], check=True)
        wait_members(seed, members + 2)
        times: list[float] = []
        events = 0
        for k in range(repeat):
            size = len(seed.snapshot())
            joiner = start(eng, cfg, f"joiner-{k}", size + BATCH)
            token = joiner.join([seed.addr], JOIN_TIMEOUT)
            # The merge publishes the seed's table at once, after queuing
            # its events: past half of it, the whole burst is queued.
            wait_members(joiner, size // 2 + 1)
            elapsed, events = drain(joiner, token)
            times.append(elapsed)
            joiner.stop()
        seconds = statistics.median(times)
        return {
            "members": members,
            "events": events,
            "repeats": repeat,
            "median_s": seconds,
            "min_s": min(times),
            "max_s": max(times),
            "us_per_event": seconds / events * 1e6,
        }
    finally:
        eng.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not INJECT.exists():
        sys.exit(f"{INJECT} is missing: make build/bench/cm_pp_inject")
    res = run(args.members, args.repeat)
    if args.json:
        print(json.dumps(res))
        return
    print(
        f"{res['events']} member events from a {res['members']}-member table: "
        f"{res['median_s'] * 1e3:.1f} ms to hand to Python (median of {res['repeats']}; "
        f"{res['min_s'] * 1e3:.1f}-{res['max_s'] * 1e3:.1f} ms), "
        f"{res['us_per_event']:.2f} us per event"
    )


if __name__ == "__main__":
    main()
