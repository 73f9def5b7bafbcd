"""A director hands jobs to workers it discovers by tag, and keeps going when
a worker dies.

Workers join the cluster with ``role=worker`` and a ``jobs`` tag naming the
TCP port where they take jobs (one number per line, answered with its
square). The director finds them with ``nodes_with_tag``, sends each job to
the next worker, stops using a worker the moment its ``NodeFailed`` (or
``NodeLeft``) event arrives, and retries a job whose worker vanished
mid-flight on another one.

Run the whole story (three worker processes, one killed with SIGKILL while
jobs run)::

    python examples/director_worker.py demo

or the parts by hand::

    python examples/director_worker.py worker --key-file cluster.key --join 127.0.0.1:7946
    python examples/director_worker.py director --key-file cluster.key --bind 127.0.0.1:7946
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

from clustermember import ClusterConfig, ClusterMembership, NodeFailed, NodeLeft

JOB_DELAY = 0.02  # seconds a worker takes per job: long enough to kill one mid-run


async def serve_jobs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each number with its square."""
    while line := await reader.readline():
        await asyncio.sleep(JOB_DELAY)
        writer.write(f"{int(line) ** 2}\n".encode())
        await writer.drain()
    writer.close()


async def worker(key: str, join: str, node_id: str) -> None:
    """Serve jobs on a TCP port and announce it with tags."""
    server = await asyncio.start_server(serve_jobs, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = ClusterConfig.local(
        cluster_key=key, node_id=node_id, tags={"role": "worker", "jobs": str(port)}
    )
    async with ClusterMembership("127.0.0.1:0", config) as cluster:
        await cluster.join([join])
        print(f"worker {node_id} ready on {port}", flush=True)
        await asyncio.Event().wait()  # until killed


class Director:
    """Round-robin jobs over the live workers."""

    def __init__(self, cluster: ClusterMembership) -> None:
        self.cluster = cluster
        self.gone: set[str] = set()
        self.next = 0

    def workers(self) -> list[tuple[str, int]]:
        nodes = [n for n in self.cluster.nodes_with_tag("role", "worker") if n.id not in self.gone]
        return sorted((n.id, int(n.tags["jobs"])) for n in nodes)

    async def watch(self) -> None:
        """Drop a worker as soon as the cluster says it failed or left."""
        async for event in self.cluster.subscribe():
            if isinstance(event, (NodeFailed, NodeLeft)):
                self.gone.add(event.node.id)
                print(
                    f"director: {event.node.id} is {event.node.state}, no more jobs to it",
                    flush=True,
                )

    async def run_job(self, n: int) -> tuple[int, str]:
        """Run one job, trying another worker if the chosen one vanishes."""
        for _ in range(50):
            workers = self.workers()
            if not workers:
                await asyncio.sleep(0.1)
                continue
            wid, port = workers[self.next % len(workers)]
            self.next += 1
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 2.0
                )
                writer.write(f"{n}\n".encode())
                answer = await asyncio.wait_for(reader.readline(), 2.0)
                writer.close()
                if answer:
                    return int(answer), wid
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"job {n}: no worker could run it")


async def director(
    key: str,
    bind: str,
    jobs: int,
    want: int,
    done: dict[str, int] | None = None,
    ready: asyncio.Future[str] | None = None,
) -> dict[str, int]:
    """Wait for `want` workers, run `jobs` jobs, return jobs done per worker.

    ``done`` (filled as jobs complete) and ``ready`` (set to the director's
    address once it listens) let a caller follow along."""
    config = ClusterConfig.local(cluster_key=key, node_id="director")
    done = {} if done is None else done
    async with ClusterMembership(bind, config) as cluster:
        await cluster.join([])
        print(f"director listening on {cluster.addr}", flush=True)
        if ready is not None:
            ready.set_result(cluster.addr)
        d = Director(cluster)
        watcher = asyncio.ensure_future(d.watch())
        deadline = time.monotonic() + 60
        while len(d.workers()) < want:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not show up within 60 s")
            await asyncio.sleep(0.05)
        for n in range(jobs):
            result, wid = await d.run_job(n)
            assert result == n * n
            done[wid] = done.get(wid, 0) + 1
        watcher.cancel()
        return done


def demo() -> int:
    """Three workers; one is killed while the director's jobs run."""
    key = base64_key()
    procs: list[subprocess.Popen[str]] = []
    script = os.path.abspath(__file__)
    done: dict[str, int] = {}

    async def run() -> dict[str, int]:
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(
            director(key, "127.0.0.1:0", jobs=300, want=3, done=done, ready=ready)
        )
        addr = await asyncio.wait_for(ready, 30)
        for i in range(3):
            cmd = [
                sys.executable,
                script,
                "worker",
                "--key",
                key,
                "--join",
                addr,
                "--node-id",
                f"worker-{i}",
            ]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        # Kill worker-0 once it has taken some jobs, while the rest still run.
        deadline = time.monotonic() + 60
        while done.get("worker-0", 0) < 10 and not task.done():
            if time.monotonic() > deadline:
                raise RuntimeError("worker-0 never got a job")
            await asyncio.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        print("demo: killed worker-0 with SIGKILL", flush=True)
        return await task

    try:
        done = asyncio.run(run())
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout=10)
    print(f"demo: all 300 jobs done; per worker: {done}", flush=True)
    return 0 if sum(done.values()) == 300 else 1


def base64_key() -> str:
    """A fresh cluster key."""
    import base64
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def main() -> int:
    """Command line of the example."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--key", help="base64 cluster key")
    w.add_argument("--key-file")
    w.add_argument("--join", required=True)
    w.add_argument("--node-id", default=f"worker-{os.getpid()}")
    d = sub.add_parser("director")
    d.add_argument("--key")
    d.add_argument("--key-file")
    d.add_argument("--bind", default="127.0.0.1:7946")
    d.add_argument("--jobs", type=int, default=100)
    d.add_argument("--workers", type=int, default=1)
    sub.add_parser("demo")
    args = p.parse_args()
    if args.cmd == "demo":
        return demo()
    key = args.key or open(args.key_file).read().strip()
    if args.cmd == "worker":
        asyncio.run(worker(key, args.join, args.node_id))
        return 0
    print(asyncio.run(director(key, args.bind, args.jobs, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
