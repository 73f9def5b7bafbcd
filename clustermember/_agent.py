"""The agent: one node run from the command line, with a control endpoint.

``clustermember agent --bind 127.0.0.1:7946 --key-file cluster.key
--join 127.0.0.1:7947 --tag role=worker`` runs a node until SIGINT or
SIGTERM, which make it leave gracefully (a second signal exits at once). The
``members``, ``tags``, ``leave``, ``stats`` and ``events`` commands talk to
it through its control endpoint (see :mod:`clustermember._control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import time
from typing import Any

from clustermember._cli import check_states, tag_patterns, tags_match
from clustermember._control import ControlError, ControlServer
from clustermember._events import NodeConflict

log = logging.getLogger("clustermember.agent")

# Distinct (id, address) conflicts logged; past this, further ones are only
# counted in stats (conflicts), so a flood of claims cannot grow memory.
MAX_CONFLICTS_LOGGED = 256


def event_dict(event: Any) -> dict[str, Any]:
    """An event as plain JSON-able data: its kind plus its fields."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def matches(
    node: dict[str, Any], patterns: dict[str, re.Pattern[str]], states: list[str] | None
) -> bool:
    """True if the member is in one of the states (any, if none are given)
    and every pattern fully matches the value of its tag.

    >>> node = {"state": "alive", "tags": {"role": "worker"}}
    >>> matches(node, tag_patterns({"role": "w.*"}), ["alive"])
    True
    """
    if states and node["state"] not in states:
        return False
    return tags_match(node["tags"], patterns)


def _mapping_of_str(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what!r} must be an object of string keys and string values")
    return value


def _list_of_str(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{what!r} must be a list of strings")
    return value


class Agent:
    """Glue between a ClusterMembership and the control endpoint."""

    def __init__(self, cluster: Any, control: str, seeds: list[str], join_timeout: float) -> None:
        self.cluster = cluster
        self.seeds = seeds
        self.join_timeout = join_timeout
        self.server = ControlServer(control, self.handle)
        self.done = asyncio.Event()
        self._signals = 0
        self._leaving: asyncio.Task[None] | None = None

    async def handle(
        self, req: dict[str, Any], writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        """Answer one control request."""
        op = req.get("op")
        if op == "members":
            return {"ok": True, "members": self.members(req.get("tags"), req.get("status"))}
        if op == "tags":
            return {"ok": True, "tags": await self.change_tags(req.get("set"), req.get("delete"))}
        if op == "stats":
            return {"ok": True, "stats": self.cluster.stats().to_dict()}
        if op == "leave":
            self.begin_leave()
            assert self._leaving is not None
            await self._leaving
            return {"ok": True}
        if op == "events":
            await self.stream_events(writer)
            return None
        raise ControlError(f"unknown operation {op!r}")

    def members(self, tags: object, status: object) -> list[dict[str, Any]]:
        """Every member whose tags match the patterns (full-match regular
        expressions, as ``serf members -tag``) and whose state is listed.

        >>> agent.members({"role": "w.*"}, ["alive"])  # doctest: +SKIP
        [{'id': 'w1', 'addr': '127.0.0.1:7947', 'state': 'alive', ...}]
        """
        try:
            patterns = tag_patterns(_mapping_of_str(tags or {}, "tags"))
            states = check_states(_list_of_str(status or [], "status"))
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        nodes = [n.to_dict() for n in self.cluster.nodes(states=None)]
        return [n for n in nodes if matches(n, patterns, states)]

    async def change_tags(self, set_: object, delete: object) -> dict[str, str]:
        """Apply a whole tag change at once, or nothing; the resulting tags.

        The new tag set is validated and applied in one ``set_tags`` call, so
        a limit broken by any tag leaves every tag as it was. With nothing to
        set or delete, the tags are only read.

        >>> await agent.change_tags({"zone": "eu-1"}, ["role"])  # doctest: +SKIP
        {'zone': 'eu-1'}
        """
        try:
            new = _mapping_of_str(set_ or {}, "set")
            gone = _list_of_str(delete or [], "delete")
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        both = sorted(set(new) & set(gone))
        if both:
            raise ControlError(f"tag {both[0]!r} is both set and deleted; choose one")
        current = dict(self.cluster.tags)
        tags = {k: v for k, v in current.items() if k not in gone}
        tags.update(new)
        if tags != current:
            await self.cluster.set_tags(tags)
        return dict(self.cluster.tags)

    async def stream_events(self, writer: asyncio.StreamWriter) -> None:
        """Write one JSON line per event until the client goes away."""
        import json

        # ``async with`` closes the subscription when the client goes away.
        async with self.cluster.subscribe() as events:
            async for event in events:
                writer.write(json.dumps({"event": event_dict(event)}).encode() + b"\n")
                await writer.drain()

    async def report_conflicts(self) -> None:
        """Log each id conflict once per (id, claiming address).

        The core keeps the address it knew and only reports the other claim
        (protocol.md, "Two nodes, one id"); without this line an operator
        would see nothing wrong while one of the two processes is ignored.
        """
        seen: set[tuple[str, str | None]] = set()
        local = self.cluster.local_node.id
        async with self.cluster.subscribe() as events:
            async for event in events:
                if not isinstance(event, NodeConflict):
                    continue
                key = (event.node.id, event.other_addr)
                if key in seen or len(seen) >= MAX_CONFLICTS_LOGGED:
                    continue
                seen.add(key)
                if event.node.id == local:
                    log.warning(
                        "id conflict: another node at %s claims this node's id %s; "
                        "stop it or give it another --node-id",
                        event.other_addr,
                        local,
                    )
                else:
                    log.warning(
                        "id conflict: node %s at %s is also claimed from %s (ignored); "
                        "give every node its own --node-id",
                        event.node.id,
                        event.node.addr,
                        event.other_addr,
                    )

    def begin_leave(self) -> None:
        """Start a graceful leave (once), then stop."""
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._leave())

    async def _leave(self) -> None:
        log.info("leaving the cluster")
        with contextlib.suppress(Exception):
            await self.cluster.leave()
        self.done.set()

    def on_signal(self) -> None:
        """First signal: leave gracefully. Second: exit at once."""
        self._signals += 1
        if self._signals == 1:
            log.info("signal received: leaving gracefully (send again to exit at once)")
            self.begin_leave()
        else:
            log.warning("second signal: exiting without finishing the leave")
            os._exit(1)

    async def run(self) -> int:
        """Start the node, join, serve until asked to stop; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal)
        await self.server.start()
        try:
            await self.cluster.start()
            conflicts = asyncio.ensure_future(self.report_conflicts())
            log.info(
                "node %s listening on %s", self.cluster.local_node.id, self.cluster.local_node.addr
            )
            t0 = time.monotonic()
            await self.cluster.join(self.seeds, timeout=self.join_timeout)
            if self.seeds:
                log.info("joined via %s in %.2f s", ", ".join(self.seeds), time.monotonic() - t0)
            print(
                f"agent ready: node {self.cluster.local_node.id} at "
                f"{self.cluster.local_node.addr}, control {self.server.endpoint}",
                flush=True,
            )
            await self.done.wait()
            conflicts.cancel()
            return 0
        finally:
            await self.server.close()
            with contextlib.suppress(Exception):
                await self.cluster.close()


def configure_logging(level: str) -> None:
    """Log to stderr at the given level name."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
