"""Client commands of the ``clustermember`` CLI: they talk to a running agent
through its control endpoint and print tables or JSON."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from clustermember._control import ControlClient, ControlError
from clustermember._display import ms_text
from clustermember._models import HistoryEntry

STATES = ("alive", "suspect", "failed", "left")


class UsageError(Exception):
    """Bad command-line input; the message says how to fix it."""


def parse_tag(text: str) -> tuple[str, str]:
    """Split "key=value" (the value may contain '=').

    >>> parse_tag("role=worker")
    ('role', 'worker')
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"bad tag {text!r}: write it as key=value, e.g. --tag role=worker")
    return key, value


def check_states(states: list[str]) -> list[str]:
    """The states, each checked to be a member state.

    >>> check_states(["alive", "left"])
    ['alive', 'left']
    """
    for state in states:
        if state not in STATES:
            raise ValueError(f"unknown status {state!r}: use {', '.join(STATES)}")
    return states


TagFilters = list[tuple[str, re.Pattern[str]]]


def tag_patterns(tags: Mapping[str, str] | Sequence[tuple[str, str]]) -> TagFilters:
    """Compile tag filters, each (key, value): the key is exact, the value a
    regular expression that must match the whole tag value (as ``serf
    members -tag`` does). A key may come several times: all must match.

    >>> [(k, p.pattern) for k, p in tag_patterns([("role", "w.*"), ("role", "wo.*")])]
    [('role', 'w.*'), ('role', 'wo.*')]
    """
    out = []
    for key, value in tags.items() if isinstance(tags, Mapping) else tags:
        try:
            out.append((key, re.compile(value)))
        except re.error as exc:
            raise ValueError(
                f"tag filter {key}={value}: bad regular expression ({exc}); "
                "escape special characters with a backslash"
            ) from None
    return out


def tags_match(tags: Mapping[str, str], patterns: TagFilters) -> bool:
    """True if every pattern fully matches the tag of its key (absent: no match).

    >>> tags_match({"role": "worker"}, tag_patterns({"role": "work"}))
    False
    """
    return all(k in tags and p.fullmatch(tags[k]) is not None for k, p in patterns)


def filter_members(
    members: list[dict[str, Any]], tags: list[str], status: list[str]
) -> list[dict[str, Any]]:
    """The members in one of the states (any, if none) whose tags match every
    ``key=regex`` filter in full (several filters of one key: all of them).

    >>> ms = [{"id": "a", "state": "alive", "tags": {"role": "worker"}},
    ...       {"id": "b", "state": "alive", "tags": {"role": "db"}}]
    >>> [m["id"] for m in filter_members(ms, ["role=w.*"], ["alive"])]
    ['a']
    >>> filter_members(ms, ["role=db", "role=w.*"], [])
    []
    """
    try:
        patterns = tag_patterns([parse_tag(t) for t in tags])
        states = check_states(status)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return [
        m
        for m in members
        if (not states or m["state"] in states) and tags_match(m["tags"], patterns)
    ]


def _number_in(text: str, lo: float, hi: float, what: str, example: str) -> float:
    """An argparse value: a number from lo to hi, else an error that says
    what to give."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; give {what} such as {example}"
        ) from None
    if not lo <= v <= hi:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"{text} is outside {lo:g}-{hi:g}; give {what} such as {example}"
        )
    return v


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1.

    >>> fraction("0.1")
    0.1
    """
    return _number_in(text, 0.0, 1.0, "a fraction", "0.1")


def seconds(text: str) -> float:
    """An argparse type: a number of seconds from 0 to 3,600.

    >>> seconds("30")
    30.0
    """
    return _number_in(text, 0.0, 3600.0, "a number of seconds", "30")


def keygen() -> str:
    """A new 32-byte cluster key, base64-encoded (what --key-file expects)."""
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def by_rtt(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members nearest first by their ``rtt`` (unknown last), then by id.

    >>> [m["id"] for m in by_rtt([{"id": "a", "rtt": None}, {"id": "b", "rtt": 0.002},
    ...                           {"id": "c", "rtt": 0.001}])]
    ['c', 'b', 'a']
    """
    return sorted(members, key=lambda m: (m["rtt"] is None, m["rtt"] or 0.0, m["id"]))


def health_cells(h: dict[str, Any] | None) -> list[str]:
    """A member's health as the verbose table's cells: probes answered,
    round trips in ms (median, 90th percentile, largest), phi, seconds
    since last heard from, and whether a connection is open; ``-`` where
    there is nothing (this node's own row).

    >>> health_cells({"samples": 16, "rtt_median": 0.0002, "rtt_p90": 0.0004,
    ...               "rtt_max": 0.0011, "phi": 0.31, "last_heard": 0.4, "connected": True})
    ['16', '0.200', '0.400', '1.10', '0.31', '0.4', 'yes']
    """
    if h is None:
        return ["-"] * 7

    def ms(v: float | None) -> str:
        return "-" if v is None else ms_text(v)

    return [
        str(h["samples"]),
        ms(h["rtt_median"]),
        ms(h["rtt_p90"]),
        ms(h["rtt_max"]),
        "-" if h["phi"] is None else f"{h['phi']:.2f}",
        "-" if h["last_heard"] is None else f"{h['last_heard']:.1f}",
        "yes" if h["connected"] else "no",
    ]


HEALTH_HEADERS = ["PROBES", "RTT50 (ms)", "RTT90", "RTTMAX", "PHI", "HEARD (s ago)", "CONN"]


def format_members(members: list[dict[str, Any]], rtt: bool = False, verbose: bool = False) -> str:
    """Members as a table like ``serf members``, by id; with ``rtt``, in
    the order given, with their RTT in ms (``-`` where unknown); with
    ``verbose``, each member's health as this node sees it (health_cells).

    >>> print(format_members([{"id": "n1", "addr": "127.0.0.1:7947", "state": "alive",
    ...                        "incarnation": 0, "tags": {}, "rtt": 0.000213}], rtt=True))
    NODE  ADDRESS         STATE  INC  TAGS  RTT (ms)
    n1    127.0.0.1:7947  alive  0          0.213
    """
    rows = [
        [
            m["id"],
            m["addr"],
            m["state"],
            str(m["incarnation"]),
            ",".join(f"{k}={v}" for k, v in sorted(m["tags"].items())),
            *([("-" if m["rtt"] is None else ms_text(m["rtt"]))] if rtt else []),
            *(health_cells(m.get("health")) if verbose else []),
        ]
        for m in (members if rtt else sorted(members, key=lambda m: m["id"]))
    ]
    return _table(
        rows,
        [
            "NODE",
            "ADDRESS",
            "STATE",
            "INC",
            "TAGS",
            *(["RTT (ms)"] if rtt else []),
            *(HEALTH_HEADERS if verbose else []),
        ],
    )


# An agent in these states has not joined yet: ``--wait`` waits on.
NOT_READY = ("new", "started", "joining")


@contextlib.asynccontextmanager
async def agent_client(
    endpoint: str | None, wait: float = 0.0, timeout: float = 10.0
) -> AsyncIterator[ControlClient]:
    """A connected client of the agent. With ``wait`` > 0, first retry for
    up to ``wait`` seconds until an agent answers there and has joined its
    cluster (as ``--wait`` does: for an agent just started in the background).

    >>> async with agent_client("/tmp/a.sock", wait=30) as client:  # doctest: +SKIP
    ...     print(await client.request({"op": "members"}))
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while True:
        client = ControlClient(endpoint, timeout)
        try:
            await client.__aenter__()
        except ControlError as exc:
            if loop.time() >= end:
                raise ControlError(f"{exc} (waited {wait:g} s)" if wait > 0 else str(exc)) from None
            await asyncio.sleep(0.1)
            continue
        try:
            state = (await client.request({"op": "status"})).get("state") if wait > 0 else None
        except BaseException:
            await client.__aexit__(None, None, None)
            raise
        if state not in NOT_READY:
            break
        await client.__aexit__(None, None, None)
        if loop.time() >= end:
            raise ControlError(
                f"the agent at {client.endpoint} has not joined its cluster after {wait:g} s "
                f"(it is {state}); wait longer (--wait) or see its log"
            )
        await asyncio.sleep(0.1)
    try:
        yield client
    finally:
        await client.__aexit__(None, None, None)


async def _request(endpoint: str | None, req: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
    async with agent_client(endpoint, wait) as client:
        resp = await client.request(req)
    if not resp.get("ok"):
        raise ControlError(resp.get("error", "the agent refused the request"))
    return resp


def members(
    endpoint: str | None,
    tags: list[str],
    status: list[str],
    fmt: str,
    wait: float = 0.0,
    sort: str = "id",
    verbose: bool = False,
) -> int:
    """``clustermember members``: print the members, filtered here by state
    and by tag regular expressions; with ``sort="rtt"``, nearest first by
    their estimated RTT from the agent's node (unknown last), with it; with
    ``verbose``, with each one's health as the agent's node sees it.

    >>> members(None, ["role=w.*"], ["alive"], "table", sort="rtt")  # doctest: +SKIP
    """
    filter_members([], tags, status)  # bad input fails before the agent is asked
    if sort not in ("id", "rtt"):
        raise UsageError(f"unknown sort {sort!r}: use id or rtt")
    rtt = sort == "rtt"
    # The agent applies the same filters (tag_patterns), so a large cluster's
    # answer stays small; they are applied here again so that this command
    # means the same whatever the agent does with them.
    # A list of [key, regex] pairs, not an object: a key may come twice.
    req = {
        "op": "members",
        "tags": [parse_tag(t) for t in tags],
        "status": status,
        "rtt": rtt,
        "verbose": verbose,
    }
    found = filter_members(asyncio.run(_request(endpoint, req, wait))["members"], tags, status)
    if rtt:
        found = by_rtt(found)
    if fmt == "json":
        print(json.dumps(found, indent=2, sort_keys=True))
    else:
        print(format_members(found, rtt, verbose))
    return 0


def rtt(endpoint: str | None, a: str, b: str | None, wait: float = 0.0) -> int:
    """``clustermember rtt A [B]``: print the estimated RTT between members
    A and B, or from the agent's node to A, from their network coordinates;
    an error (exit code 1) for an unknown member or coordinate.

    >>> rtt(None, "n1", None)  # doctest: +SKIP
    estimated rtt n0 <-> n1: 0.193 ms
    """
    resp = asyncio.run(_request(endpoint, {"op": "rtt", "a": a, "b": b}, wait))
    if resp["rtt"] is None:
        missing = " and ".join(resp["missing"]) or f"{resp['a']} or {resp['b']}"
        raise ControlError(
            f"no network coordinate is known for {missing} yet: coordinates are learnt "
            "from probes within seconds of a join (unless the agent's node turned them off); "
            "try again shortly"
        )
    print(f"estimated rtt {resp['a']} <-> {resp['b']}: {ms_text(resp['rtt'])} ms")
    return 0


def explain(endpoint: str | None, node: str, fmt: str = "text", wait: float = 0.0) -> int:
    """``clustermember explain NODE``: why NODE was suspected, failed or
    came back, as the agent's node saw it: a first line with its state now
    and since when, then one line per recorded change with when (relative
    to now) and what caused it, as ``ClusterMembership.explain()`` gives
    it; ``fmt="json"``: the entries as ``HistoryEntry.to_dict()`` gives
    them. An unknown NODE is an error (exit code 1).

    >>> explain(None, "n3")  # doctest: +SKIP
    n3 is alive (incarnation 4) since 2.1 s ago, as n0 sees it
    12.0 s ago  suspect    by n0 (its own probe: no ack; 3 helpers asked: ...
    """
    if fmt not in ("text", "json"):
        raise UsageError(f"unknown format {fmt!r}: use text or json")
    resp = asyncio.run(_request(endpoint, {"op": "history", "node": node}, wait))
    if fmt == "json":
        print(json.dumps(resp["history"], indent=2))
        return 0
    from clustermember._explain import explain_text

    entries = [HistoryEntry.from_dict(d) for d in resp["history"]]
    print(
        explain_text(
            resp["node"],
            resp["state"],
            resp["incarnation"],
            resp["since"],
            entries,
            resp["now"],
            resp["observer"],
        )
    )
    return 0


def tags(endpoint: str | None, set_: list[str], delete: list[str], wait: float = 0.0) -> int:
    """``clustermember tags``: change this agent's tags (all or none of the
    change applies) and print the resulting tags; with no option, only print.

    >>> tags(None, ["zone=eu-1"], ["role"])  # doctest: +SKIP
    """
    changes = [parse_tag(t) for t in set_]
    twice = sorted({k for k, _ in changes if [k2 for k2, _ in changes].count(k) > 1})
    if twice:
        raise UsageError(f"--set {twice[0]} given twice; give each tag once")
    req = {"op": "tags", "set": dict(changes), "delete": delete}
    resp = asyncio.run(_request(endpoint, req, wait))
    for k, v in sorted(resp["tags"].items()):
        print(f"{k}={v}")
    if not resp["tags"]:
        print("(no tags)", file=sys.stderr)
    return 0


# How long past the time the agent says a leave may take a client still waits.
LEAVE_MARGIN = 5.0


async def leave_answer(
    endpoint: str | None, timeout: float = 10.0, wait: float = 0.0
) -> dict[str, Any]:
    """Ask the agent to leave; its answer, waited for as long as the agent
    says the leave may take (a leave during a join waits for the join), and
    at least ``timeout`` seconds.

    >>> await leave_answer("/tmp/a.sock")  # doctest: +SKIP
    {'ok': True}
    """
    async with agent_client(endpoint, wait, timeout) as client:
        status = await client.request({"op": "status"})
        if not status.get("ok"):
            raise ControlError(status.get("error", "the agent refused the status request"))
        limit = max(timeout, float(status["leave_within"]) + LEAVE_MARGIN)
        return await client.request({"op": "leave"}, timeout=limit)


def leave(endpoint: str | None, wait: float = 0.0) -> int:
    """``clustermember leave``: make the agent leave gracefully and stop."""
    resp = asyncio.run(leave_answer(endpoint, wait=wait))
    if not resp.get("ok"):
        raise ControlError(resp.get("error", "the agent refused the request"))
    print("left the cluster")
    return 0


def stats(endpoint: str | None, fmt: str, wait: float = 0.0) -> int:
    """``clustermember stats``: print the agent's figures, one per line
    (or as one flat JSON object): ``node_id``, then
    :meth:`ClusterStats.flat`'s names, the same a Python service reads.

    >>> stats(None, "json")  # doctest: +SKIP
    """
    resp = asyncio.run(_request(endpoint, {"op": "stats"}, wait))
    flat: dict[str, Any] = resp["flat"]
    if fmt == "json":
        print(json.dumps(flat, indent=2))
    else:
        width = max(map(len, flat))
        for k, v in flat.items():
            print(f"{k:<{width}}  {v}")
    return 0


def events(endpoint: str | None, wait: float = 0.0) -> int:
    """``clustermember events``: stream events as JSON lines until interrupted."""

    async def run() -> None:
        async with agent_client(endpoint, wait) as client:
            async for line in client.stream({"op": "events"}):
                if "event" in line:
                    print(json.dumps(line["event"]), flush=True)
                elif not line.get("ok", True):
                    raise ControlError(line.get("error", "event stream refused"))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def event(endpoint: str | None, name: str, payload: str, coalesce: bool, wait: float = 0.0) -> int:
    """``clustermember event``: send a user event through the agent; prints
    its Lamport time. A payload of ``-`` is read from stdin, as bytes.

    >>> event(None, "deploy", "v1.2", True)  # doctest: +SKIP
    """
    data = sys.stdin.buffer.read() if payload == "-" else payload.encode("utf-8")
    req = {
        "op": "event",
        "name": name,
        "payload_base64": base64.b64encode(data).decode("ascii"),
        "coalesce": coalesce,
    }
    resp = asyncio.run(_request(endpoint, req, wait))
    print(f"event {name} sent (ltime {resp['ltime']}, {len(data)} bytes of payload)")
    return 0


def answer_text(r: dict[str, Any]) -> str:
    """One answer to a query as a line: who, what (its payload as text where
    it is UTF-8, else its bytes), and how long it took.

    >>> answer_text({"node_id": "n1", "ack": False, "payload": "0.4", "rtt": 0.0021})
    "n1  '0.4'  (2.1 ms)"
    """
    if r["ack"]:
        what = "ack"
    elif r["payload"] is not None:
        what = repr(r["payload"])
    else:
        what = repr(base64.b64decode(r["payload_base64"]))
    return f"{r['node_id']}  {what}  ({r['rtt'] * 1000:.1f} ms)"


def query(
    endpoint: str | None,
    name: str,
    payload: str,
    tags: list[str],
    node_ids: list[str],
    timeout: float | None,
    want_ack: bool,
    relay: int,
    fmt: str,
    wait: float = 0.0,
) -> int:
    """``clustermember query``: ask every member through the agent and print
    each answer as it comes (a line each, or JSON lines), then the tally.

    >>> query(None, "load", "", ["role=db.*"], [], None, False, 0, "text")  # doctest: +SKIP
    """
    data = sys.stdin.buffer.read() if payload == "-" else payload.encode("utf-8")
    req: dict[str, Any] = {
        "op": "query",
        "name": name,
        "payload_base64": base64.b64encode(data).decode("ascii"),
        "tags": [parse_tag(t) for t in tags],
        "want_ack": want_ack,
        "relay": relay,
    }
    if node_ids:
        req["node_ids"] = node_ids
    if timeout is not None:
        req["timeout"] = timeout

    async def run() -> dict[str, Any]:
        async with agent_client(endpoint, wait) as client:
            async for line in client.stream(req):
                if "response" in line:
                    r = line["response"]
                    if fmt == "json":
                        print(json.dumps(r), flush=True)
                    else:
                        print(answer_text(r), flush=True)
                elif line.get("done") or not line.get("ok", True):
                    return line
        raise ControlError("the agent closed the connection before the query ended")

    end = asyncio.run(run())
    if not end.get("ok"):
        raise ControlError(end.get("error", "the agent refused the query"))
    print(f"{end['responses']} responses, {end['acks']} acks", file=sys.stderr)
    return 0


def keys(
    endpoint: str | None,
    install: str | None,
    use: str | None,
    remove: str | None,
    fmt: str,
    wait: float = 0.0,
) -> int:
    """``clustermember keys``: a key operation on every member, through the
    agent; prints how it went on each (exit code 1 unless every member did
    it), or the keys the members hold.

    >>> keys(None, "Zm9v...", None, None, "text")  # doctest: +SKIP
    """
    if install is not None:
        req = {"op": "keys", "action": "install", "key": install}
    elif use is not None:
        req = {"op": "keys", "action": "use", "key": use}
    elif remove is not None:
        req = {"op": "keys", "action": "remove", "key": remove}
    else:
        req = {"op": "keys", "action": "list"}
    resp = asyncio.run(_request(endpoint, req, wait))
    report: dict[str, Any] = resp["report"]
    if fmt == "json":
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['answered']} members answered")
        for node_id, why in sorted(report["errors"].items()):
            print(f"  {node_id}: {why}")
        for node_id in report["missing"]:
            print(f"  {node_id}: no answer")
        for k, count in sorted(report["keys"].items()):
            first = report["primary"].get(k, 0)
            print(f"  {k}  held by {count}, primary on {first}")
    return 0 if report["ok"] else 1


def fail(message: str) -> int:
    """Print a one-line error and return the exit code for it."""
    print(f"error: {message}", file=sys.stderr)
    return 1
