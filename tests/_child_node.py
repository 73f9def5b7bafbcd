"""A node in its own process, driven by the failure tests through stdin.

argv: node_id base64_key bind seed. Prints "ready <addr>" once joined, then
obeys lines on stdin: "spin <seconds>" (a pure-Python CPU loop that never
awaits; prints "spun"), "leave" (leaves and exits).
"""

from __future__ import annotations

import asyncio
import sys
import time

from clustermember import ClusterConfig, ClusterMembership


def spin(seconds: float) -> int:
    """Burn CPU in Python bytecode, holding the GIL, never yielding to asyncio."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(200))
    return n


async def main() -> None:
    node_id, key, bind, seed = sys.argv[1:5]
    config = ClusterConfig.local(cluster_key=key, node_id=node_id)
    cluster = ClusterMembership(bind, config)
    await cluster.join([seed])
    print("ready", cluster.addr, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.split()
        if not cmd or cmd[0] == "leave":
            await cluster.leave()
            return
        if cmd[0] == "spin":
            spin(float(cmd[1]))
            print("spun", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
