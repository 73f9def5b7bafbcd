"""One swim-protocol (PyPI ``swim-protocol``) member, driven over stdin/stdout.

The package's own demo draws a curses screen and changes metadata on a
timer, so the benchmark runs this small wrapper around its public API
(``UdpConfig``, ``Members``, ``Worker``, ``UdpTransport``) instead::

    python bench/compare/swim_node.py --port 23001 --name n1 --peer 127.0.0.1:23000 \\
        --secret S --tag role=web

It prints ``ready`` once the transport is bound, then answers one line per
command on stdin: ``view`` (a JSON object: member name -> [state, tags]),
``tag K V``, ``busy`` / ``idle`` (start / stop a Python thread that spins
without yielding, to starve the event loop the way a busy application does),
``quit``. States are mapped to the benchmark's names: online -> alive,
suspect -> suspect, offline -> failed. swim-protocol has no graceful leave.

Every status change this node records (from the package's member listener,
so none is missed between reads) is written to stderr as
``status WALLTIME MEMBER STATE``, the node's report stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from contextlib import AsyncExitStack

from swimprotocol.members import Members
from swimprotocol.status import Status
from swimprotocol.udp import UdpTransport
from swimprotocol.udp.config import UdpConfig
from swimprotocol.worker import Worker

STATES = {Status.ONLINE: "alive", Status.SUSPECT: "suspect", Status.OFFLINE: "failed"}


class Spinner:
    """A thread that spins in pure Python until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.stop.clear()
            self.thread = threading.Thread(target=self._spin, daemon=True)
            self.thread.start()

    def halt(self) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
            self.thread = None

    def _spin(self) -> None:
        x = 0
        while not self.stop.is_set():
            for _ in range(10_000):
                x += 1


def view(members: Members, names: dict[str, str]) -> dict[str, list]:
    """Every member this node knows, by its benchmark name."""
    out: dict[str, list] = {}
    for m in members:
        md = {k: v.decode("utf-8", "replace") for k, v in (m.metadata or {}).items()}
        name = md.get("name") or names.get(m.name, m.name)
        out[name] = [STATES.get(m.status, m.status.name.lower()), md]
    return out


async def serve(args: argparse.Namespace) -> None:
    meta = {"name": args.name.encode()}
    for t in args.tag:
        k, _, v = t.partition("=")
        meta[k] = v.encode()
    config = UdpConfig(
        bind_host="127.0.0.1",
        bind_port=args.port,
        local_name=f"127.0.0.1:{args.port}",
        peers=args.peer,
        secret=args.secret,
        local_metadata=meta,
    )
    members = Members(config)
    worker = Worker(config, members)
    transport = UdpTransport(config, worker)
    spinner = Spinner()
    seen: dict[str, str] = {}

    async def on_change(member: object) -> None:
        name = getattr(member, "name", "")
        state = STATES.get(getattr(member, "status", None), "other")  # type: ignore[arg-type]
        if seen.get(name) != state:
            seen[name] = state
            print(f"status {time.time():.3f} {name} {state}", file=sys.stderr, flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(transport)
        await stack.enter_async_context(worker)
        await stack.enter_async_context(members.listener.on_notify(on_change))
        print("ready", flush=True)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "quit":
                break
            cmd, _, rest = line.partition(" ")
            if cmd == "view":
                print(json.dumps(view(members, {})), flush=True)
            elif cmd == "tag":
                k, _, v = rest.partition(" ")
                local = members.local
                members.update(local, new_metadata=dict(local.metadata) | {k: v.encode()})
                print("ok", flush=True)
            elif cmd == "busy":
                spinner.start()
                print("ok", flush=True)
            elif cmd == "idle":
                spinner.halt()
                print("ok", flush=True)
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    spinner.halt()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--secret", required=True)
    p.add_argument("--tag", action="append", default=[])
    args = p.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
