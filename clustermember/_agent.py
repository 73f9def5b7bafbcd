"""The agent: one node run from the command line, with a control endpoint.

``clustermember agent --bind 127.0.0.1:7946 --key-file cluster.key
--join 127.0.0.1:7947 --tag role=worker`` runs a node until SIGINT or
SIGTERM, which make it leave gracefully (a second signal exits at once). The
``members``, ``rtt``, ``explain``, ``tags``, ``leave``, ``stats`` and ``events``
commands talk to it through its control endpoint (see
:mod:`clustermember._control`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from clustermember._cli import (
    TagFilters,
    UsageError,
    check_states,
    parse_tag,
    tag_patterns,
    tags_match,
)
from clustermember._config import _U32_MAX, TIME_RANGES, seconds_text
from clustermember._control import ControlError, ControlServer, send_line
from clustermember._errors import ClusterError, UnknownMember
from clustermember._membership import JOIN_GRACE
from clustermember._metrics_server import DEFAULT_METRICS, MetricsServer, parse_metrics_addr
from clustermember._models import rtt_between

log = logging.getLogger("clustermember.agent")

# How long a stopping agent waits for a pending leave to be answered.
LEAVE_ANSWER_GRACE = 5.0
# Seconds an --event-handler command may run before it is killed.
HANDLER_TIMEOUT = 60


def event_dict(event: Any) -> dict[str, Any]:
    """An event as plain JSON-able data: its kind plus its fields. Bytes (a
    user event's payload) come as text where they are UTF-8, else None, and
    always in base64 beside (``payload_base64``)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, bytes):
            out[f.name + "_base64"] = base64.b64encode(value).decode("ascii")
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                value = None
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def matches(node: dict[str, Any], patterns: TagFilters, states: list[str] | None) -> bool:
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


def _tag_filters(value: object) -> list[tuple[str, str]]:
    """The (key, regex) filters of a members request: an object, or a list
    of [key, regex] pairs, where a key may come several times."""
    if isinstance(value, dict):
        return list(_mapping_of_str(value, "tags").items())
    if isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        return [(k, v) for k, v in value]
    raise ValueError(
        "'tags' must be an object of string keys and string values, or a list of [key, regex] pairs"
    )


def _list_of_str(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{what!r} must be a list of strings")
    return value


class Agent:
    """Glue between a ClusterMembership and the control endpoint."""

    def __init__(
        self,
        cluster: Any,
        control: str,
        seeds: list[str],
        join_timeout: float,
        event_handler: str | None = None,
        key_source: tuple[str, str] | None = None,
        query_handlers: Mapping[str, str] | None = None,
        metrics: str | None = None,
    ) -> None:
        self.cluster = cluster
        # --metrics: /metrics over HTTP, bound in run() before the node starts.
        self.metrics = None if metrics is None else MetricsServer(metrics, cluster.metrics_text)
        for name, command in (query_handlers or {}).items():
            cluster.on_query(name, self._query_runner(name, command))
        # Where the keys came from ("keyring-file" or "key-file", and the
        # file), kept true when a live rotation changes them.
        self.key_source = key_source
        if key_source is not None:
            cluster.keys.on_change.append(self.keys_changed)
        self.seeds = seeds
        self.join_timeout = join_timeout
        self.event_handler = event_handler
        self._handler_task: asyncio.Task[None] | None = None
        self.server = ControlServer(control, self.handle)
        self.done = asyncio.Event()
        self._signals = 0
        self._leaving: asyncio.Future[bool] | None = None
        self._join_ends: float | None = None  # loop time by which the join has ended
        self._answers: set[asyncio.Future[None]] = set()  # leave answers not yet sent

    async def handle(
        self, req: dict[str, Any], writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        """Answer one control request."""
        op = req.get("op")
        if op == "members":
            rtt = req.get("rtt", False)
            verbose = req.get("verbose", False)
            if not isinstance(rtt, bool):
                raise ControlError("'rtt' must be true or false")
            if not isinstance(verbose, bool):
                raise ControlError("'verbose' must be true or false")
            members = self.members(req.get("tags"), req.get("status"), rtt, verbose)
            return {"ok": True, "members": members}
        if op == "rtt":
            return {"ok": True, **self.rtt(req.get("a"), req.get("b"))}
        if op == "history":
            return {"ok": True, **self.history(req.get("node"))}
        if op == "tags":
            return {"ok": True, "tags": await self.change_tags(req.get("set"), req.get("delete"))}
        if op == "stats":
            st = self.cluster.stats()
            flat = {"node_id": self.cluster.node_id, **st.flat()}
            return {"ok": True, "stats": st.to_dict(), "flat": flat}
        if op == "status":
            return {
                "ok": True,
                "node_id": self.cluster.node_id,
                "state": self.cluster.state,
                "leave_within": self.leave_within(),
            }
        if op == "leave":
            await self.answer_leave(writer)
            return None
        if op == "events":
            await self.stream_events(writer)
            return None
        if op == "event":
            return {"ok": True, "ltime": await self.send_event(req)}
        if op == "query":
            return await self.run_query(req, writer)
        if op == "keys":
            return await self.change_keys(req)
        raise ControlError(f"unknown operation {op!r}")

    async def send_event(self, req: dict[str, Any]) -> int:
        """Send the user event a client asked for; its Lamport time.

        >>> await agent.send_event({"name": "deploy", "payload_base64": "djE="})  # doctest: +SKIP
        3
        """
        name, coalesce = req.get("name"), req.get("coalesce", True)
        encoded = req.get("payload_base64", "")
        if not isinstance(name, str):
            raise ControlError("'name' must be a string")
        if not isinstance(coalesce, bool):
            raise ControlError("'coalesce' must be true or false")
        if not isinstance(encoded, str):
            raise ControlError("'payload_base64' must be a base64 string")
        try:
            payload = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ControlError("'payload_base64' is not valid base64") from None
        try:
            ltime: int = await self.cluster.send_event(name, payload, coalesce)
        except (ValueError, ClusterError) as exc:
            raise ControlError(str(exc)) from None
        return ltime

    def keys_changed(self, keys: list[bytes]) -> None:
        """A live rotation changed this node's keys: rewrite the keyring
        file (one base64 key a line, primary first, mode 0600), so a restart
        keeps them; a single key file cannot hold them, so say what to do.

        >>> agent.keys_changed([new_key, old_key])  # doctest: +SKIP
        """
        assert self.key_source is not None
        kind, path = self.key_source
        if kind != "keyring-file":
            log.warning(
                "the cluster's keys changed, but %s still holds the old key: before this "
                "agent restarts, put the new primary key in it, or run it with "
                "--keyring-file, which the agent keeps up to date",
                path,
            )
            return
        import tempfile  # only a live rotation writes the file

        # A new file of our own (mode 0600 whatever was there), synced, then
        # renamed over the old one: a crash leaves the old ring or the new.
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".keyring.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                for k in keys:
                    f.write(base64.b64encode(k).decode("ascii") + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        log.info("keyring file %s updated: %d keys", path, len(keys))

    async def change_keys(self, req: dict[str, Any]) -> dict[str, Any]:
        """A key operation on every member, for a client: its report.

        >>> await agent.change_keys({"action": "list"})  # doctest: +SKIP
        {'ok': True, 'answered': 3, ...}
        """
        action, key = req.get("action"), req.get("key")
        keys = self.cluster.keys
        calls = {"install": keys.install, "use": keys.use, "remove": keys.remove}
        try:
            if action == "list":
                report = await keys.list()
            elif action in calls and isinstance(key, str):
                report = await calls[action](key)
            else:
                raise ControlError(
                    "'action' must be install, use or remove with a 'key' (base64), or list"
                )
        except (ValueError, ClusterError) as exc:
            raise ControlError(str(exc)) from None
        return {"ok": True, "report": {**dataclasses.asdict(report), "ok": report.ok}}

    async def run_query(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> dict[str, Any]:
        """Ask a query for a client: one line per answer as it comes, then
        the tally once the query's time is up.

        >>> await agent.run_query({"name": "load", "tags": {"role": "db"}}, w)  # doctest: +SKIP
        {'ok': True, 'done': True, 'acks': 0, 'responses': 2}
        """
        name, encoded = req.get("name"), req.get("payload_base64", "")
        timeout, want_ack, relay = (
            req.get("timeout"),
            req.get("want_ack", False),
            req.get("relay", 0),
        )
        if not isinstance(name, str):
            raise ControlError("'name' must be a string")
        if not isinstance(encoded, str):
            raise ControlError("'payload_base64' must be a base64 string")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        ):
            raise ControlError("'timeout' must be a number of seconds")
        if not isinstance(want_ack, bool) or isinstance(relay, bool) or not isinstance(relay, int):
            raise ControlError("'want_ack' must be true or false and 'relay' an int")
        try:
            payload = base64.b64decode(encoded, validate=True)
            tags = dict(_tag_filters(req.get("tags") or {}))
            ids = req.get("node_ids")
            node_ids = None if ids is None else _list_of_str(ids, "node_ids")
            results = self.cluster.query(
                name,
                payload,
                tags=tags or None,
                node_ids=node_ids,
                timeout=timeout,
                want_ack=want_ack,
                relay=relay,
            )
        except (ValueError, TypeError, ClusterError) as exc:
            raise ControlError(str(exc)) from None
        acks = responses = 0
        try:
            async for r in results:
                acks += r.ack
                responses += not r.ack
                await send_line(writer, {"response": event_dict(r)})
        finally:
            results.close()
        return {"ok": True, "done": True, "acks": acks, "responses": responses}

    def _query_runner(self, name: str, command: str) -> Any:
        """The on_query handler that runs `command` for queries of `name`."""

        async def run(q: Any) -> bytes | None:
            return await self.run_query_handler(command, q)

        return run

    async def run_query_handler(self, command: str, q: Any) -> bytes | None:
        """Run a ``--query-handler`` command for one query, as Serf runs a
        query's handler: the payload on stdin, the query in
        ``CLUSTERMEMBER_EVENT=query``, ``CLUSTERMEMBER_QUERY_NAME``,
        ``CLUSTERMEMBER_QUERY_LTIME``, ``CLUSTERMEMBER_ORIGIN`` and
        ``CLUSTERMEMBER_SELF_NAME``; what it prints is the response. One
        that fails, or is still running when the asker stops listening, sends
        nothing (logged).

        >>> await agent.run_query_handler("uptime", query)  # doctest: +SKIP
        b' 10:02:01 up 3 days, ...'
        """
        env = {
            **os.environ,
            "CLUSTERMEMBER_EVENT": "query",
            "CLUSTERMEMBER_QUERY_NAME": q.name,
            "CLUSTERMEMBER_QUERY_LTIME": str(q.ltime),
            "CLUSTERMEMBER_ORIGIN": q.origin,
            "CLUSTERMEMBER_SELF_NAME": self.cluster.node_id,
        }
        left = min(float(HANDLER_TIMEOUT), q.deadline - time.monotonic())
        if left <= 0:
            return None
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(q.payload), left)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("query handler for %s ran past the query's time: no response", q.name)
            return None
        if proc.returncode != 0:
            text = err.decode("utf-8", "replace").strip()
            log.warning(
                "query handler for %s exited with %s: no response%s",
                q.name,
                proc.returncode,
                f": {text[-500:]}" if text else "",
            )
            return None
        limit = max(
            self.cluster.config.max_user_event_size, self.cluster.config.max_user_event_stream
        )
        if len(out) > limit:
            log.warning(
                "query handler for %s printed %d bytes, over max_user_event_stream=%d: no response",
                q.name,
                len(out),
                limit,
            )
            return None
        return out

    async def run_event_handler(self) -> None:
        """Run the ``--event-handler`` command once per user event, one at a
        time, in the order they arrive: the payload on its stdin, the event
        in its environment (``CLUSTERMEMBER_EVENT=user``,
        ``CLUSTERMEMBER_USER_EVENT``, ``CLUSTERMEMBER_USER_LTIME``,
        ``CLUSTERMEMBER_ORIGIN``, ``CLUSTERMEMBER_SELF_NAME``), as Serf's
        handlers get theirs. One that runs past HANDLER_TIMEOUT is killed;
        a failure is logged, and the next event still runs.

        >>> await agent.run_event_handler()  # doctest: +SKIP
        """
        from clustermember._events import EventsDropped, UserEvent

        assert self.event_handler is not None
        async with self.cluster.subscribe(replay=False) as events:
            async for event in events:
                if isinstance(event, UserEvent):
                    await self._run_handler(event)
                elif isinstance(event, EventsDropped):
                    log.warning(
                        "the event handler fell behind: %d events were lost before it "
                        "saw them (raise subscriber_queue_size, or make the handler faster)",
                        event.count,
                    )

    async def _run_handler(self, event: Any) -> None:
        env = {
            **os.environ,
            "CLUSTERMEMBER_EVENT": "user",
            "CLUSTERMEMBER_USER_EVENT": event.name,
            "CLUSTERMEMBER_USER_LTIME": str(event.ltime),
            "CLUSTERMEMBER_ORIGIN": event.origin,
            "CLUSTERMEMBER_SELF_NAME": self.cluster.node_id,
        }
        assert self.event_handler is not None
        try:
            proc = await asyncio.create_subprocess_shell(
                self.event_handler,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            log.warning("event handler for %s could not start: %s", event.name, exc)
            return
        try:
            out, _ = await asyncio.wait_for(proc.communicate(event.payload), HANDLER_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning(
                "event handler for %s (ltime %d) ran past %d s and was killed",
                event.name,
                event.ltime,
                HANDLER_TIMEOUT,
            )
            return
        text = out.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            log.warning(
                "event handler for %s (ltime %d) exited with %s%s",
                event.name,
                event.ltime,
                proc.returncode,
                f": {text[-500:]}" if text else "",
            )
        elif text:
            log.info("event handler for %s (ltime %d): %s", event.name, event.ltime, text[-500:])

    def members(
        self, tags: object, status: object, rtt: bool = False, verbose: bool = False
    ) -> list[dict[str, Any]]:
        """Every member whose tags match the patterns (full-match regular
        expressions, as ``serf members -tag``) and whose state is listed;
        with ``rtt``, each with its estimated RTT from this node in seconds
        (``rtt``: None where a coordinate is unknown, 0.0 for this node);
        with ``verbose``, each other member with its ``health``
        (:class:`PeerHealth` as a dict, ``last_heard`` as seconds ago).

        >>> agent.members({"role": "w.*"}, ["alive"])  # doctest: +SKIP
        [{'id': 'w1', 'addr': '127.0.0.1:7947', 'state': 'alive', ...}]
        """
        try:
            patterns = tag_patterns(_tag_filters(tags or {}))
            states = check_states(_list_of_str(status or [], "status"))
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        members = self.cluster.nodes(states=None)
        me = next((m for m in members if m.is_self), None)
        health = {}
        if verbose:
            now = time.monotonic()
            for h in self.cluster.peer_health():
                d = h.to_dict()
                d["last_heard"] = None if h.last_heard is None else now - h.last_heard
                health[h.id] = d
        out = []
        for m in members:
            n = m.to_dict()
            if matches(n, patterns, states):
                if rtt:
                    n["rtt"] = None if me is None else rtt_between(me, m)
                if verbose:
                    n["health"] = health.get(m.id)
                out.append(n)
        return out

    def rtt(self, a: object, b: object) -> dict[str, Any]:
        """The estimated RTT in seconds between members ``a`` and ``b``, or
        from this node to ``a`` when ``b`` is None: ``rtt`` (None when a
        coordinate is unknown), the two ids, and ``missing``, the ids of
        the two whose coordinate is unknown.

        >>> agent.rtt("n1", None)  # doctest: +SKIP
        {'rtt': 0.00019, 'a': 'n1', 'b': 'n0', 'missing': []}
        """
        if not isinstance(a, str) or not (b is None or isinstance(b, str)):
            raise ControlError("'a' must be a member id (a string), and 'b' one or null")
        try:
            value = self.cluster.rtt(a, b)
        except UnknownMember as exc:
            raise ControlError(str(exc)) from None
        pair = [a, self.cluster.node_id if b is None else b]
        missing = []
        for node_id in dict.fromkeys(pair):
            m = self.cluster.member(node_id)
            if m is None or m.coordinate is None:
                missing.append(node_id)
        return {"rtt": value, "a": pair[0], "b": pair[1], "missing": missing}

    def history(self, node: object) -> dict[str, Any]:
        """Member ``node``'s history as this node saw it, for ``explain``:
        ``history`` (each entry's ``to_dict()``, oldest first), its
        ``state`` and ``incarnation`` now and ``since`` (the
        ``time.monotonic()`` of its last state change), this node's id
        (``observer``), and ``now``, this node's ``time.monotonic()``, from
        which the entries' times are read.

        >>> agent.history("n3")  # doctest: +SKIP
        {'node': 'n3', 'observer': 'n0', 'state': 'alive', 'incarnation': 4, ...}
        """
        if not isinstance(node, str):
            raise ControlError("'node' must be a member id (a string)")
        try:
            entries = self.cluster.history(node)
        except UnknownMember as exc:
            raise ControlError(str(exc)) from None
        member = self.cluster.member(node)
        if member is None:  # reaped in between
            raise ControlError(str(UnknownMember(node)))
        return {
            "node": member.id,
            "observer": self.cluster.node_id,
            "state": member.state.value,
            "incarnation": member.incarnation,
            "since": member.state_change,
            "now": time.monotonic(),
            "history": [e.to_dict() for e in entries],
        }

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
        """Write one JSON line per event until the client goes away (noticed
        at once, not at the next event) or the events end.

        >>> await agent.stream_events(writer)  # doctest: +SKIP
        """
        # ``async with`` closes the subscription when the stream ends.
        async with self.cluster.subscribe() as events:

            async def pump() -> None:
                async for event in events:
                    await send_line(writer, {"event": event_dict(event)})

            streaming = asyncio.ensure_future(pump())
            gone = asyncio.ensure_future(self.server.client_gone(writer))
            try:
                await asyncio.wait([streaming, gone], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (streaming, gone):
                    task.cancel()
                await asyncio.gather(streaming, gone, return_exceptions=True)
            failed = None if streaming.cancelled() else streaming.exception()
            if failed is not None:  # the client broke the connection mid-line
                raise failed

    def leave_within(self) -> float:
        """The longest, in seconds, a leave asked for now may take before it
        is answered: the rest of a join still to come or in progress (a
        leave waits for it), then the leave itself. Clients wait this long.

        >>> agent.leave_within()  # doctest: +SKIP
        10.0
        """
        leave = float(self.cluster.config.leave_timeout) + JOIN_GRACE
        if self._join_ends is None:  # the join has not begun: all of it is to come
            return leave + self.join_timeout + JOIN_GRACE
        if self.cluster.state == "joining":
            return leave + max(0.0, self._join_ends - asyncio.get_running_loop().time())
        return leave

    async def answer_leave(self, writer: asyncio.StreamWriter) -> None:
        """Leave (once), and answer this client when the leave has ended,
        even if the agent is stopping then (its join failed): ``run`` waits
        for every leave answer before it returns.

        >>> await agent.answer_leave(writer)  # doctest: +SKIP
        """
        self.begin_leave()
        assert self._leaving is not None
        answered = asyncio.get_running_loop().create_future()
        self._answers.add(answered)
        try:
            left = await asyncio.shield(self._leaving)
            answer = {
                "ok": False,
                "error": (
                    "the node had not joined, so no member was told it left; the agent "
                    "stops now: start it again to join"
                ),
            }
            await send_line(writer, {"ok": True} if left else answer)
        finally:
            answered.set_result(None)
            self._answers.discard(answered)

    def begin_leave(self) -> None:
        """Start a graceful leave (once), then stop."""
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._leave())

    async def _leave(self) -> bool:
        """Leave, once any join in progress has ended; True if peers were
        told (they mark this node left, not failed)."""
        log.info("leaving the cluster")
        # Leaving before the join ends would leave nothing: peers would
        # record a failure. The join ends by itself within its timeout.
        while self.cluster.state == "joining":
            await asyncio.sleep(0.05)
        left = False
        try:
            await self.cluster.leave()
            left = True
        except ClusterError as exc:
            log.warning("leave: %s; stopping without telling peers", exc)
        self.done.set()
        return left

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
            if self.metrics is not None:
                await self.metrics.start()
                log.info("serving metrics at %s", self.metrics.url)
            await self.cluster.start()
            log.info(
                "node %s listening on %s", self.cluster.local_node.id, self.cluster.local_node.addr
            )
            if self.event_handler:
                self._handler_task = asyncio.ensure_future(self.run_event_handler())
            # The library logs the join, failures and id conflicts itself.
            self._join_ends = loop.time() + self.join_timeout + JOIN_GRACE
            await self.cluster.join(self.seeds, timeout=self.join_timeout)
            print(
                f"agent ready: node {self.cluster.local_node.id} at "
                f"{self.cluster.local_node.addr}, control {self.server.endpoint}"
                + (f", metrics {self.metrics.url}" if self.metrics is not None else ""),
                flush=True,
            )
            await self.done.wait()
            return 0
        finally:
            if self._leaving is not None:
                # A leave asked for during a join that failed: the client
                # hears how it ended before the agent stops.
                await asyncio.wait([self._leaving], timeout=LEAVE_ANSWER_GRACE)
                if self._answers:
                    await asyncio.wait(list(self._answers), timeout=LEAVE_ANSWER_GRACE)
            await self.server.close()
            if self.metrics is not None:
                await self.metrics.close()
            if self._handler_task is not None:
                self._handler_task.cancel()
                await asyncio.gather(self._handler_task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.cluster.close()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, stream: TextIO | None = None) -> logging.Handler:
    """Show the library's log records (logger ``clustermember``, the agent's
    own included) at ``level`` and above, one line each on stderr.

    The library leaves its logger silent below WARNING; an agent is the place
    an operator reads joins, failures and conflicts, so it shows INFO unless
    told otherwise (``--log-level``).

    >>> configure_logging("info")  # doctest: +SKIP
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("clustermember")
    logger.setLevel(getattr(logging, level.upper()))
    logger.addHandler(handler)
    logger.propagate = False  # one line per record, whatever the root logger does
    return handler


# ------------------------------------------------------------ configuration
#
# Every option of ``agent`` comes from (highest first) its flag, its
# CLUSTERMEMBER_* environment variable, the TOML file given with --config (or
# $CLUSTERMEMBER_CONFIG), or its default. See docs/cli.md, "Configuration".

PROFILES = ("lan", "wan", "local")
LOG_LEVELS = ("debug", "info", "warning", "error")
ENV_PREFIX = "CLUSTERMEMBER_"

# Option name (the flag without its dashes) -> its default.
DEFAULTS: dict[str, Any] = {
    "bind": "127.0.0.1:7946",
    "join": [],
    "join-timeout": 30.0,
    "node-id": None,
    "tag": {},
    "key-file": None,
    "keyring-file": None,
    "tls-ca": None,
    "tls-cert": None,
    "tls-key": None,
    "insecure": False,
    "profile": "lan",
    "log-level": "info",
    "fault-drop": 0.0,
    "event-handler": None,
    "event-coalesce": 0.0,
    "query-handler": {},
    "control": None,
    "metrics": None,
    "set": {},
}
# Secrets the environment may hold by value (CLUSTERMEMBER_KEY) instead of in
# a file (CLUSTERMEMBER_KEY_FILE, the --key-file option), as swim-protocol's
# PREFIX_NAME / PREFIX_NAME_FILE. Neither is a flag: a key on a command line
# shows in every process listing.
SECRETS = {"key": "key-file", "keyring": "keyring-file"}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def env_name(option: str) -> str:
    """The environment variable of an option.

    >>> env_name("join-timeout")
    'CLUSTERMEMBER_JOIN_TIMEOUT'
    """
    return ENV_PREFIX + option.upper().replace("-", "_")


def _number(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"{what} must be a finite number >= 0, not {value!r}")
    return number


def _seconds(what: str, value: object, lo: float, hi: float) -> float:
    """A number of seconds from lo to hi; a UsageError naming ``what``."""
    number = _number(what, value) if isinstance(value, str) else value
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        if math.isfinite(number) and lo <= number <= hi:
            return float(number)
    raise UsageError(
        f"{what} must be a number of seconds from {seconds_text(lo)} to {seconds_text(hi)}, "
        f"not {value!r}"
    )


# ClusterConfig fields --set refuses, and why: most have options of their own.
_NOT_SETTABLE = {
    "node_id": ": use --node-id",
    "tags": ": use --tag",
    "cluster_key": ": use --key-file",
    "keyring": ": use --keyring-file",
    "tls_ca": ": use --tls-ca",
    "tls_cert": ": use --tls-cert",
    "tls_key": ": use --tls-key",
    "insecure": ": use --insecure",
    "join_timeout": ": use --join-timeout",
    "user_event_coalesce": ": use --event-coalesce",
    "seed": " (the agent seeds its randomness itself)",
    "phi_threshold": " (it has no effect: phi is only reported)",
}


def settable() -> dict[str, type]:
    """The ClusterConfig settings ``--set NAME=VALUE`` may change, with the
    type of each: every tunable of the protocol, transport and engine.

    >>> settable()["probe_interval"], settable()["coordinates"]
    (<class 'float'>, <class 'bool'>)
    """
    import dataclasses

    from clustermember._config import ClusterConfig

    out: dict[str, type] = {}
    for f in dataclasses.fields(ClusterConfig):
        if f.name not in _NOT_SETTABLE:
            out[f.name] = int if f.default is None else type(f.default)
    return out


def _setting(what: str, name: str, value: object) -> float | int | bool:
    """One ``--set`` value, of its setting's type; a UsageError otherwise."""
    kinds = settable()
    if name in _NOT_SETTABLE:
        raise UsageError(f"{what}: {name} is not set this way{_NOT_SETTABLE[name]}")
    if name not in kinds:
        import difflib  # only to suggest a name for one that is wrong

        close = difflib.get_close_matches(name, kinds, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "see docs/configuration.md"
        raise UsageError(f"{what}: {name!r} is not a setting ({hint})")
    kind = kinds[name]
    text = value.strip().lower() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text in TRUE + FALSE:
            return text in TRUE
        raise UsageError(f"{what}: {name} must be true or false, not {value!r}")
    if kind is int:
        whole: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            whole = value
        elif text is not None:
            try:
                whole = int(text)
            except ValueError:
                whole = None
        if whole is None:
            raise UsageError(f"{what}: {name} must be a whole number, not {value!r}")
        # The engine takes whole numbers as C uint32_t.
        if not 0 <= whole <= _U32_MAX:
            raise UsageError(f"{what}: {name} must be from 0 to {_U32_MAX:,}, not {value!r}")
        return whole
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise UsageError(f"{what}: {name} must be a number, not {value!r}")
    return number


def convert(option: str, value: object, where: str, name: str | None = None) -> Any:
    """An option's value, from a string (environment), a TOML value (file)
    or a parsed flag, as the agent uses it; a UsageError naming ``where``
    (a flag, a variable, a file) and the option as given there (``name``,
    default the option) if it is wrong.

    >>> convert("join", "10.0.0.1:7946, 10.0.0.2:7946", "CLUSTERMEMBER_JOIN")
    ['10.0.0.1:7946', '10.0.0.2:7946']
    >>> convert("tag", {"role": "db"}, "cm.toml")
    {'role': 'db'}
    >>> convert("join-timeout", "45", "CLUSTERMEMBER_JOIN_TIMEOUT")
    45.0
    >>> convert("set", ["probe_interval=1", "coordinates=off"], "--set")
    {'probe_interval': 1.0, 'coordinates': False}
    """
    what = where if where.startswith("--") else f"{where}: {name or option}"
    if option == "join":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise UsageError(f"{what} must be a list of HOST:PORT strings, not {value!r}")
        return [x.strip() for x in items if x.strip()]
    if option == "tag":
        if isinstance(value, dict):
            if not all(isinstance(v, str) for v in value.values()):
                raise UsageError(f"{where}: every tag value must be a string: {value!r}")
            return dict(value)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise UsageError(f"{what} must be a table or a list of K=V, not {value!r}")
        return dict(parse_tag(x.strip()) for x in items if x.strip())
    if option == "set":
        if isinstance(value, dict):
            pairs = [(str(k), v) for k, v in value.items()]
        else:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise UsageError(f"{what} must be a table or a list of NAME=VALUE, not {value!r}")
            pairs = []
            for item in (x.strip() for x in items if x.strip()):
                key, sep, val = item.partition("=")
                if not sep:
                    raise UsageError(f"{what}: {item!r} is not NAME=VALUE")
                pairs.append((key.strip(), val))
        return {key: _setting(what, key, val) for key, val in pairs}
    if option == "query-handler":
        if isinstance(value, dict):
            pairs = list(value.items())
        else:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise UsageError(f"{what} must be NAME=COMMAND (or a table of them)")
            pairs = []
            for item in items:
                name, sep, command = item.partition("=")
                if not sep:
                    raise UsageError(f"{what}: {item!r} is not NAME=COMMAND")
                pairs.append((name.strip(), command))
        for name, command in pairs:
            if not isinstance(command, str) or not command.strip() or not name:
                raise UsageError(f"{what}: {name!r} needs a non-empty command")
        return dict(pairs)
    if option == "insecure":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE + FALSE:
            return value.lower() in TRUE
        raise UsageError(f"{what} must be true or false, not {value!r}")
    if option == "join-timeout":
        # The range the library checks, but named as the user gave it, and
        # checked before the agent binds anything.
        return _seconds(what, value, *TIME_RANGES["join_timeout"])
    if option == "event-coalesce":
        return _seconds(what, value, *TIME_RANGES["user_event_coalesce"])
    if option == "metrics":
        # A config file's bare port may be a TOML integer.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        try:
            if isinstance(value, str):
                parse_metrics_addr(value)
                return value.strip()
        except ValueError:
            pass
        raise UsageError(
            f"{what} must be HOST:PORT or PORT (e.g. {DEFAULT_METRICS}), not {value!r}"
        )
    if option == "fault-drop":
        number = _number(what, value)
        if number > 1:
            raise UsageError(f"{what} must be a fraction from 0 to 1, not {value!r}")
        return number
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a non-empty string, not {value!r}")
    choices = {"profile": PROFILES, "log-level": LOG_LEVELS}.get(option)
    if choices and value.lower() not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value.lower() if choices else value


def env_names() -> list[str]:
    """Every CLUSTERMEMBER_* variable the agent reads: one per option, the
    secrets by value, and the config file's.

    >>> env_names()[:2]
    ['CLUSTERMEMBER_BIND', 'CLUSTERMEMBER_JOIN']
    """
    return [env_name(option) for option in (*DEFAULTS, *SECRETS, "config")]


def check_env_names(environ: Mapping[str, str]) -> None:
    """A UsageError for a set CLUSTERMEMBER_* variable the agent does not
    read (a misspelt one would otherwise be ignored without a word), naming
    the closest known one or all of them. An empty one counts as unset.

    >>> check_env_names({"CLUSTERMEMBER_BIND": "127.0.0.1:7946"})
    """
    known = env_names()
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or not environ[name]:
            continue
        import difflib  # only a wrong name needs it, not every agent's start

        # Compared without the prefix, which every name shares.
        tails = {k[len(ENV_PREFIX) :]: k for k in known}
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :], tails, n=2, cutoff=0.7)
        hint = (
            f"did you mean {' or '.join(tails[c] for c in close)}?"
            if close
            else f"the variables are {', '.join(known)}"
        )
        raise UsageError(f"unknown environment variable {name}: unset it ({hint})")


def env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The options set in the environment (an empty variable counts as unset).

    >>> env_settings({"CLUSTERMEMBER_BIND": "0.0.0.0:7946", "CLUSTERMEMBER_KEY": "k"})
    {'bind': '0.0.0.0:7946', 'key': 'k'}
    """
    check_env_names(environ)
    out = {
        option: convert(option, environ[env_name(option)], env_name(option))
        for option in DEFAULTS
        if environ.get(env_name(option))
    }
    for secret, file_option in SECRETS.items():
        if environ.get(env_name(secret)):
            if file_option in out:
                raise UsageError(f"set {env_name(secret)} or {env_name(file_option)}, not both")
            out[secret] = environ[env_name(secret)]
    return out


def file_settings(path: str) -> dict[str, Any]:
    """The options a TOML file sets, by flag name (``node-id`` or ``node_id``).

    >>> file_settings("agent.toml")  # doctest: +SKIP
    {'bind': '0.0.0.0:7946', 'tag': {'role': 'db'}}
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(
                "--config needs Python 3.11 or the tomli package (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        option = key.replace("_", "-")
        if option not in DEFAULTS:
            raise UsageError(
                f"config file {path}: unknown option {key!r}; the options are "
                + ", ".join(DEFAULTS)
            )
        if option in out:
            raise UsageError(f"config file {path}: {option} is given twice")
        out[option] = convert(option, value, f"config file {path}", key)
    return out


def resolve_settings(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Every option, from the layers given lowest first (file, environment,
    flags) over the defaults. A higher layer replaces an option's value,
    except tags and settings (``set``), which merge key by key (the higher
    layer's value wins). A
    key given in a layer (by value or as a file) replaces both forms below.

    >>> s = resolve_settings({"bind": "a:1", "tag": {"x": "1"}}, {"tag": {"y": "2"}})
    >>> s["bind"], s["tag"], s["log-level"]
    ('a:1', {'x': '1', 'y': '2'}, 'info')
    """
    out = dict(DEFAULTS, tag={}, key=None, keyring=None, set={})
    for layer in layers:
        for secret, file_option in SECRETS.items():
            if secret in layer or file_option in layer:
                out[secret] = out[file_option] = None
        for option, value in layer.items():
            out[option] = {**out[option], **value} if option in ("tag", "set") else value
    return out


def agent_settings(flags: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The agent's options from its parsed flags (only those given, by dest
    name), the environment and the config file (``config`` flag, else
    $CLUSTERMEMBER_CONFIG).

    >>> agent_settings({"bind": "127.0.0.1:0"}, {})["bind"]
    '127.0.0.1:0'
    """
    given = {k.replace("_", "-"): v for k, v in flags.items() if k.replace("_", "-") in DEFAULTS}
    # argparse checked the rest
    for option in ("tag", "join-timeout", "event-coalesce", "query-handler", "metrics", "set"):
        if option in given:
            given[option] = convert(option, given[option], f"--{option}")
    path = flags.get("config") or environ.get(env_name("config"))
    from_file = file_settings(path) if path else {}
    return resolve_settings(from_file, env_settings(environ), given)


def read_keys(path: str) -> list[str]:
    """The keys in a key file: one base64 key a line; blank and # lines skipped."""
    try:
        with open(path) as f:
            keys = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError as exc:
        raise UsageError(
            f"cannot read key file {path}: {exc.strerror} (make one with 'clustermember keygen')"
        ) from exc
    if not keys:
        raise UsageError(f"key file {path} holds no key (make one with 'clustermember keygen')")
    return keys


NO_AUTH = (
    "no cluster key: pass --key-file FILE (make one with 'clustermember keygen'), "
    "--keyring-file FILE, mutual TLS (--tls-ca, --tls-cert, --tls-key), or --insecure "
    "to run without authentication"
)


def auth_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ClusterConfig authentication arguments for resolved settings, or a
    UsageError that names the agent's options (not the library's).

    >>> auth_settings(resolve_settings({"insecure": True}))
    {'insecure': True}
    """
    from clustermember._config import decode_key

    auth: dict[str, Any] = {}
    if settings["key-file"]:
        auth["cluster_key"] = read_keys(settings["key-file"])[0]
        where = f"the key in {settings['key-file']}"
    elif settings["key"]:
        auth["cluster_key"] = settings["key"].strip()
        where = env_name("key")
    if "cluster_key" in auth:
        decode_key(auth["cluster_key"], where)
    if settings["keyring-file"]:
        auth["keyring"] = read_keys(settings["keyring-file"])
    elif settings["keyring"]:
        auth["keyring"] = settings["keyring"].replace(",", " ").split()
    tls = [settings["tls-ca"], settings["tls-cert"], settings["tls-key"]]
    if any(tls):
        if not all(tls):
            raise UsageError("mutual TLS needs all of --tls-ca, --tls-cert and --tls-key")
        if auth:
            raise UsageError(
                "choose one: a cluster key (--key-file, --keyring-file) or mutual TLS "
                "(--tls-ca, --tls-cert, --tls-key), not both"
            )
        auth.update(tls_ca=tls[0], tls_cert=tls[1], tls_key=tls[2])
    if settings["insecure"]:
        auth["insecure"] = True
    if not auth:
        raise UsageError(NO_AUTH)
    return auth
