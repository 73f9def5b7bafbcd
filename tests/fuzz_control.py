#!/usr/bin/env python3
"""Fuzz the agent's control endpoint: what a client sends on the control
socket, byte for byte, through ControlServer's request loop into the
agent's request handler, against a real node (a cluster of one).

The first byte picks the endpoint kind (bit 0: TCP, where the first line
must carry the control token ``fuzz-token``; else a Unix socket, where the
client is trusted); the rest is what the client sends before it closes.
Whatever it is, every line written back is one JSON object, either an
answer (``"ok"`` true, or false with an ``"error"`` string) or an event;
something is answered unless the input is empty or starts an event stream;
no exception leaves the server; the exchange ends within HANG_SECONDS; and
the node's tags change only as a successful ``tags`` answer says, so a
request that fails changes nothing. A ``leave`` is answered without
leaving, so every input meets the same node.

Run it with atheris (``make fuzz`` does, FUZZ_SECONDS long, from
csrc/fuzz/corpus/fuzz_control and csrc/fuzz/seeds/fuzz_control)::

    python3 tests/fuzz_control.py -max_total_time=60 csrc/fuzz/corpus/fuzz_control

tests/test_control_fuzz_corpus.py replays the committed corpus through
:func:`one_input` in the ordinary test run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

HANG_SECONDS = 10.0
TOKEN = "fuzz-token"


class Writer:
    """The server's side of a connection, in memory."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Harness:
    """One node and an agent for it, on a loop of their own, for every input."""

    def __init__(self) -> None:
        from clustermember import ClusterConfig, ClusterMembership
        from clustermember._agent import Agent
        from clustermember._control import ControlServer

        self.loop = asyncio.new_event_loop()
        self.cluster = ClusterMembership(
            "127.0.0.1:0",
            ClusterConfig.local(cluster_key=bytes(range(32)), node_id="fuzz", tags={"role": "db"}),
        )
        self.agent = Agent(self.cluster, "/nonexistent/fuzz.sock", [], 1.0)
        self.tags = {"role": "db"}

        async def handle(req: dict[str, Any], writer: Any) -> dict[str, Any] | None:
            if req.get("op") == "leave":
                return {"ok": True}  # answered, not carried out
            return await self.agent.handle(req, writer)

        self.unix = ControlServer("/nonexistent/fuzz.sock", handle)
        self.tcp = ControlServer("127.0.0.1:1", handle)
        self.tcp._token = TOKEN  # what start() would have made
        self.agent.server = self.unix  # the events stream watches it
        self.loop.run_until_complete(self.cluster.start())

    def run(self, data: bytes) -> None:
        if not data:
            return
        tcp, sent = data[0] & 1, data[1:]
        server = self.tcp if tcp else self.unix
        self.agent.server = server

        async def exchange() -> Writer:
            from clustermember._control import MAX_LINE

            reader = asyncio.StreamReader(limit=MAX_LINE)
            reader.feed_data(sent)
            reader.feed_eof()
            writer = Writer()
            await asyncio.wait_for(server._serve(reader, writer), HANG_SECONDS)  # type: ignore[arg-type]
            return writer

        writer = self.loop.run_until_complete(exchange())
        assert writer.closed, "the connection was left open"
        self.check(sent, bytes(writer.out), tcp=bool(tcp))

    def check(self, sent: bytes, out: bytes, tcp: bool) -> None:
        assert out == b"" or out.endswith(b"\n"), out[-80:]
        answers = [json.loads(line) for line in out.splitlines()]
        ok_tags = None
        for a in answers:
            assert isinstance(a, dict), a
            if "event" in a:
                assert set(a) == {"event"} and isinstance(a["event"], dict), a
                continue
            assert isinstance(a.get("ok"), bool), a
            if not a["ok"]:
                assert isinstance(a.get("error"), str) and a["error"], a
            elif "tags" in a and isinstance(a["tags"], dict):
                ok_tags = a["tags"]
        if sent and not answers:
            assert not tcp and _first_op(sent) == "events", (sent[:200], out[:200])
        now = dict(self.cluster.tags)
        if ok_tags is None:
            assert now == self.tags, (now, self.tags, sent[:200])
        else:
            assert now == ok_tags, (now, ok_tags)
        if now != self.tags:  # the next input meets the node as it was
            self.loop.run_until_complete(self.cluster.set_tags(self.tags))


def _first_op(sent: bytes) -> object:
    try:
        req = json.loads(sent.split(b"\n", 1)[0])
    except (ValueError, RecursionError):
        return None
    return req.get("op") if isinstance(req, dict) else None


_harness: Harness | None = None


def one_input(data: bytes) -> None:
    """Send data to the control endpoint and check the answers."""
    global _harness
    if _harness is None:
        _harness = Harness()
    _harness.run(data)


def close_harness() -> None:
    """Close the node and the loop of :func:`one_input`."""
    global _harness
    if _harness is not None:
        _harness.loop.run_until_complete(_harness.cluster.close())
        _harness.loop.close()
        _harness = None


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["clustermember"]):
        import clustermember._agent
        import clustermember._control  # noqa: F401

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
