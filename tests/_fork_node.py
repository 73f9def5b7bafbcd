"""A node that forks a long-lived child, run in its own process by
tests/test_api_engine.py so the descriptors its engine opens are exactly
those that appear when the node starts.

argv: base64_key. Starts a node on a kernel-picked port P, notes the
descriptors that appeared, then forks a child that reports which of them
it still holds and stays alive (until this process closes a pipe, or at
most CHILD_LIFETIME). Meanwhile this process closes its node and starts a
new one on port P. Prints one JSON line: {"engine_fds": {fd: link},
"still_open": {fd: link}, "rebind": "ok" or the error}; the child is
killed by PID before it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sys

from clustermember import ClusterConfig, ClusterMembership

# The child never outlives this by much, even if this process is killed.
CHILD_LIFETIME = 120.0
REPORT_TIMEOUT = 60.0


def open_fds() -> dict[int, str]:
    """Every open descriptor of this process and what it points to."""
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the descriptor listdir itself used
    return out


def child(engine_fds: dict[int, str], report: int, hold: int) -> None:
    """Report which engine descriptors are still open, then wait."""
    now = open_fds()
    still = {fd: link for fd, link in engine_fds.items() if now.get(fd) == link}
    os.write(report, json.dumps({str(k): v for k, v in still.items()}).encode() + b"\n")
    os.close(report)
    select.select([hold], [], [], CHILD_LIFETIME)


def read_line(fd: int) -> str:
    """One line from a pipe, within REPORT_TIMEOUT."""
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], REPORT_TIMEOUT)
        if not ready:
            raise TimeoutError("the child did not report")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


async def main() -> None:
    config = ClusterConfig.local(cluster_key=sys.argv[1], node_id="forker")
    before = open_fds()
    node = ClusterMembership("127.0.0.1:0", config)
    await node.start()
    port = int(node.addr.rpartition(":")[2])
    engine_fds = {fd: link for fd, link in open_fds().items() if before.get(fd) != link}
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            os.close(hold_w)
            child(engine_fds, report_w, hold_r)
        finally:
            os._exit(0)
    try:
        os.close(report_w)
        os.close(hold_r)
        still_open = json.loads(read_line(report_r))
        await node.close()
        again = ClusterMembership(f"127.0.0.1:{port}", config)
        try:
            await again.start()
            rebind = "ok"
        except Exception as exc:  # noqa: BLE001 - reported to the test
            rebind = f"{type(exc).__name__}: {exc}"
        finally:
            await again.close()
        print(
            json.dumps({"engine_fds": engine_fds, "still_open": still_open, "rebind": rebind}),
            flush=True,
        )
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    asyncio.run(main())
