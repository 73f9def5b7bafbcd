"""Queries: ask every member, collect the answers of those a filter selects.

The core spreads a query by gossip and carries each member's ack and
response back to the asker (directly and through relays); this module holds
the Python side: the filter's encoding and matching, the answers as an
async iterator, and the handlers a node registers with ``on_query``::

    cluster.on_query("load", lambda q: str(os.getloadavg()[0]).encode())

    async for r in cluster.query("load", tags={"role": r"db.*"}):
        print(r.node_id, r.payload, r.rtt)
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The filter's encoding: JSON, {"ids": [...], "tags": [[key, regex], ...]},
# either part absent when not given. Opaque to the core.
FILTER_MAX = 1024
# Python's re backtracks: every member runs the asker's expressions on its
# event loop, so they are held to a shape that cannot blow up (no repetition
# of something that repeats or alternates, at most this many repetitions).
MAX_REPEATS = 3
PATTERN_MAX = 256

if sys.version_info >= (3, 11):
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_p  # type: ignore[attr-defined]
else:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_c
    import sre_parse as _sre_p

_REPEATS = {_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT} | (
    {_sre_c.POSSESSIVE_REPEAT} if hasattr(_sre_c, "POSSESSIVE_REPEAT") else set()
)


def _shape(items: Any, inside_repeat: bool, count: list[int]) -> bool:
    """Walk a parsed expression: False at a repetition of something that
    repeats or alternates; counts the repetitions in count[0]."""
    for op, av in items:
        if op in _REPEATS:
            _low, high, sub = av
            if high > 1:
                count[0] += 1
                if inside_repeat or not _shape(sub, True, count):
                    return False
            elif not _shape(sub, inside_repeat, count):
                return False
        elif op is _sre_c.BRANCH:
            if inside_repeat:
                return False
            if not all(_shape(alt, inside_repeat, count) for alt in av[1]):
                return False
        elif op is _sre_c.SUBPATTERN:
            if not _shape(av[-1], inside_repeat, count):
                return False
        elif op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT):
            if not _shape(av[1], inside_repeat, count):
                return False
        elif op in (_sre_c.GROUPREF, _sre_c.GROUPREF_EXISTS):
            return False
    return True


def safe_pattern(pattern: str) -> bool:
    """True if a tag filter's expression is one members will run: at most
    256 characters, no repetition of a repetition or an alternation, no
    back-reference, at most three repetitions in all.

    >>> safe_pattern("db-.*"), safe_pattern("(a+)+b"), safe_pattern("(?:.*){14}Z")
    (True, False, False)
    """
    if len(pattern) > PATTERN_MAX:
        return False
    try:
        parsed = _sre_p.parse(pattern)
    except Exception:  # noqa: BLE001 - any unreadable pattern is unsafe
        return False
    count = [0]
    return _shape(parsed, False, count) and count[0] <= MAX_REPEATS


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """One member's answer to a query: an ack (``ack`` True, no payload:
    the member got the query and matches it) or its response.
    ``rtt`` is the seconds from asking to this answer's arrival.

    >>> async for r in cluster.query("load"):
    ...     print(r.node_id, r.ack, r.payload, round(r.rtt, 3))
    """

    node_id: str
    payload: bytes
    ack: bool
    rtt: float


@dataclass(frozen=True, slots=True)
class Query:
    """A query this node was asked, as its handler gets it.

    ``deadline`` is when the asker stops listening, on ``time.monotonic()``;
    an answer after it is not sent.

    >>> def handler(q: Query) -> bytes:
    ...     return q.payload.upper()
    """

    name: str
    payload: bytes
    origin: str
    ltime: int
    deadline: float


Handler = Callable[[Query], bytes | None | Awaitable[bytes | None]]


def encode_filter(tags: Mapping[str, str] | None, node_ids: Iterable[str] | None) -> bytes:
    """The filter of a query as bytes; every regex is checked first.

    >>> encode_filter({"role": "db.*"}, None)
    b'{"tags":[["role","db.*"]]}'
    """
    doc: dict[str, Any] = {}
    if node_ids is not None:
        ids = list(node_ids)
        if not all(isinstance(i, str) for i in ids):
            raise TypeError("node_ids must be strings")
        doc["ids"] = ids
    if tags:
        pairs = []
        for key, pattern in tags.items():
            if not isinstance(key, str) or not isinstance(pattern, str):
                raise TypeError("tags must map str keys to str regular expressions")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"tag filter {key}={pattern!r} is not a regular expression: {exc}"
                ) from None
            if not safe_pattern(pattern):
                raise ValueError(
                    f"tag filter {key}={pattern!r} is too costly for members to run: at most "
                    f"{PATTERN_MAX} characters and {MAX_REPEATS} repetitions, and no repetition "
                    "of a repetition, an alternation or a back-reference (write db-.* rather "
                    "than (db|db-main)+)"
                )
            pairs.append([key, pattern])
        doc["tags"] = pairs
    if not doc:
        return b""
    raw = json.dumps(doc, separators=(",", ":")).encode()
    if len(raw) > FILTER_MAX:
        raise ValueError(
            f"the query's filter is {len(raw)} bytes encoded and the limit is {FILTER_MAX}: "
            "name fewer nodes, or select them by a tag"
        )
    return raw


def filter_matches(raw: bytes, node_id: str, tags: Mapping[str, str]) -> bool:
    """True if this node (id and tags) is one the filter selects. A filter
    this version cannot read selects nobody: answering a query meant for
    others would be the worse mistake.

    >>> filter_matches(b'{"tags":[["role","db.*"]]}', "n1", {"role": "db-main"})
    True
    """
    if not raw:
        return True
    if len(raw) > FILTER_MAX:
        return False
    try:
        doc = json.loads(raw)
        ids = doc.get("ids")
        pairs = doc.get("tags", [])
        if ids is not None and node_id not in ids:
            return False
        for key, pattern in pairs:
            value = tags.get(key)
            if value is None or not safe_pattern(pattern):
                return False
            if re.fullmatch(pattern, value) is None:
                return False
    except Exception:  # noqa: BLE001 - a filter no member can read selects nobody
        return False
    return True


class QueryResults:
    """The answers to one query as they arrive; ends when the query's time
    is up. Made by :meth:`ClusterMembership.query`. Breaking out of the loop
    early is fine: later answers are dropped.

    >>> async for r in cluster.query("load", timeout=2.0):
    ...     print(r.node_id, r.payload)
    """

    def __init__(self, qid: int, started: float, on_close: Callable[[int], None]) -> None:
        self.qid = qid
        self._started = started
        self._queue: asyncio.Queue[QueryResponse | None] = asyncio.Queue()
        self._on_close = on_close
        self._done = False

    def _answer(self, node_id: str, ack: bool, payload: bytes, mono: float) -> None:
        self._queue.put_nowait(QueryResponse(node_id, payload, ack, max(0.0, mono - self._started)))

    def _finish(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[QueryResponse]:
        return self

    async def __anext__(self) -> QueryResponse:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._done = True
            self._on_close(self.qid)
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop listening: answers still to come are dropped."""
        if not self._done:
            self._done = True
            self._on_close(self.qid)

    async def collect(self) -> list[QueryResponse]:
        """Every answer until the query's time is up.

        >>> answers = await cluster.query("load").collect()
        """
        return [r async for r in self]
