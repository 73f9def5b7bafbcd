"""Run the transport benchmark (build/bench/net_bench, ``make bench``) and keep
its output as raw results, with the commit measured and the command.

    python bench/transport_bench.py --out bench/results/transport-<commit>.json

net_bench prints one line per figure; :func:`parse` reads them into numbers
(bench/figures.py makes the page's table from those).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.raw import ROOT, commit

BINARY = ROOT / "build" / "bench" / "net_bench"
HANDSHAKE = re.compile(
    r"handshake (\w+)\s*: first datagram delivered median (\d+) us "
    r"\(p10 (\d+), p90 (\d+)\); UDP bytes both ways median (\d+)"
)
RTT = re.compile(
    r"probe round trip \((\d+)-byte ping, (\d+)-byte pong, (\d+) pings\): "
    r"median ([\d.]+) us, p99 ([\d.]+) us, max ([\d.]+) us"
)
MEMORY = re.compile(
    r"memory: (\d+) connections .*: heap ([\d.]+) KiB per connection end, "
    r"RSS ([\d.]+) KiB per connection end"
)


def parse(text: str) -> dict[str, Any]:
    """net_bench's output as numbers: handshakes by mode, the probe round
    trip and the memory per connection end."""
    rtt, mem = RTT.search(text), MEMORY.search(text)
    handshakes = {
        m.group(1): {
            "median_us": int(m.group(2)),
            "p10_us": int(m.group(3)),
            "p90_us": int(m.group(4)),
            "bytes": int(m.group(5)),
        }
        for m in HANDSHAKE.finditer(text)
    }
    if not (rtt and mem and handshakes):
        raise ValueError("net_bench's output lacks a handshake, round-trip or memory line")
    return {
        "handshake": handshakes,
        "rtt": {
            "ping_bytes": int(rtt.group(1)),
            "pong_bytes": int(rtt.group(2)),
            "pings": int(rtt.group(3)),
            "median_us": float(rtt.group(4)),
            "p99_us": float(rtt.group(5)),
            "max_us": float(rtt.group(6)),
        },
        "memory": {
            "connections": int(mem.group(1)),
            "heap_kib": float(mem.group(2)),
            "rss_kib": float(mem.group(3)),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run net_bench once; print its output, and keep it with --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the raw results here")
    args = p.parse_args(argv)
    if not BINARY.exists():
        p.error(f"{BINARY} is missing: make bench")
    measured = commit()
    text = subprocess.run([str(BINARY)], capture_output=True, text=True, check=True).stdout
    print(text, end="")
    if args.out:
        doc = {
            "commit": measured,
            "command": " ".join(["python bench/transport_bench.py", *(argv or sys.argv[1:])]),
            "output": text,
            "results": parse(text),
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
