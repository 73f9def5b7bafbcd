"""Live key rotation: change the cluster key on every member without a restart.

Like ``serf keys``: an internal query carries each operation to every
member, and each reports how it went. To replace key A by key B::

    await cluster.keys.install(B)   # every member accepts A and B
    await cluster.keys.use(B)       # every member offers B first
    await cluster.keys.remove(A)    # every member forgets A

Each step returns a :class:`KeyReport`; go on to the next only once it says
every member succeeded (``report.ok``). A member that was down during the
rotation still holds only A: its peers refuse it, and its join fails with
``JoinRefused``, whose message says to give it the cluster's key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clustermember._log import log

if TYPE_CHECKING:
    from clustermember._membership import ClusterMembership
    from clustermember._queries import Query

#: Queries a key operation sends at most, the later ones to the members
#: that have not answered.
ASK_ROUNDS = 3
#: The internal query's name; ``on_query`` refuses names with this prefix.
KEYS_QUERY = "_cm-keys"
RESERVED_PREFIX = "_cm-"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


@dataclass(frozen=True, slots=True)
class KeyReport:
    """How a key operation went on each member.

    ``errors`` maps the members that refused to their reason, ``missing``
    lists the members alive when it was asked that did not answer in time;
    ``ok`` is True when neither has anything. ``keys`` counts, for each key
    (base64), the members holding it, and ``primary`` those using it first.

    >>> report = await cluster.keys.install(new_key)
    >>> report.ok, report.answered, report.missing
    (True, 5, [])
    """

    answered: int
    errors: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    primary: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every member asked did it."""
        return not self.errors and not self.missing


class Keyring:
    """The cluster's keys, as ``cluster.keys``: this node's, and operations
    on every member's.

    >>> cluster.keys.local()[0] == cluster.config.keys()[0]
    True
    """

    def __init__(self, cluster: ClusterMembership, keys: list[bytes]) -> None:
        self._cluster = cluster
        self._keys = list(keys)  # primary first
        # Called with the new keys (primary first) after each local change:
        # where an agent keeps its keyring file up to date.
        self.on_change: list[Callable[[list[bytes]], None]] = []

    def local(self) -> list[bytes]:
        """This node's keys, the primary (offered first) first."""
        return list(self._keys)

    async def install(self, key: bytes) -> KeyReport:
        """Make every member accept ``key`` too (it does not offer it yet)."""
        return await self._ask("install", key)

    async def use(self, key: bytes) -> KeyReport:
        """Make every member offer ``key`` first; it must be installed."""
        return await self._ask("use", key)

    async def remove(self, key: bytes) -> KeyReport:
        """Make every member forget ``key``; it must not be in use first."""
        return await self._ask("remove", key)

    async def list(self) -> KeyReport:
        """Which keys the members hold (``report.keys``) and use first."""
        return await self._ask("list", None)

    async def _ask(self, op: str, key: bytes | None, timeout: float | None = None) -> KeyReport:
        cluster = self._cluster
        if key is not None:
            key = _check_key(key)
        if cluster.config.auth != "key":
            raise ValueError(
                f"node {cluster.node_id} authenticates with {cluster.config.auth}, not a "
                "cluster key: there is no keyring to change"
            )
        alive = {m.id for m in cluster.nodes()}
        payload = json.dumps({"op": op, "key": _b64(key) if key is not None else None}).encode()
        answers: dict[str, dict[str, Any]] = {}
        # Gossip may miss a member; nothing repairs that for a query, so the
        # members that did not answer are asked again, by id (every
        # operation can be done twice).
        for _ in range(ASK_ROUNDS):
            missing = sorted(alive - set(answers))
            if not missing:
                break
            ids = None if len(answers) == 0 else missing
            results = cluster.query(KEYS_QUERY, payload, node_ids=ids, timeout=timeout)
            try:
                async for r in results:
                    try:
                        answers[r.node_id] = json.loads(r.payload)
                    except ValueError:
                        answers[r.node_id] = {"ok": False, "error": "unreadable answer"}
                    if alive <= set(answers):
                        break
            finally:
                results.close()
        report = KeyReport(answered=len(answers), missing=sorted(alive - set(answers)))
        for node_id, a in answers.items():
            if not a.get("ok"):
                report.errors[node_id] = str(a.get("error", "refused"))
            for k in a.get("keys", []):
                report.keys[k] = report.keys.get(k, 0) + 1
            if a.get("primary"):
                report.primary[a["primary"]] = report.primary.get(a["primary"], 0) + 1
        return report

    def _apply(self, op: str, key: bytes | None) -> dict[str, Any]:
        """This node's part of an operation; the answer it sends."""
        keys = list(self._keys)
        if op == "install" and key is not None:
            if key not in keys:
                keys.append(key)
        elif op == "use" and key is not None:
            if key not in keys:
                return self._answer(False, "key not installed here: install it first")
            keys.remove(key)
            keys.insert(0, key)
        elif op == "remove" and key is not None:
            if keys and keys[0] == key:
                return self._answer(False, "key in use here: use another key first")
            if key in keys:
                keys.remove(key)
        elif op != "list":
            return self._answer(False, f"unknown key operation {op!r}")
        if keys != self._keys:
            node = self._cluster._node
            if node is None:
                return self._answer(False, "node is not running")
            node.set_keys(keys, 0)
            self._keys = keys
            for callback in self.on_change:
                try:
                    callback(list(keys))
                except Exception as exc:  # noqa: BLE001 - reported to the asker
                    log.exception("node %s: keeping the new keys failed", self._cluster.node_id)
                    return self._answer(
                        False, f"the keys changed here, but keeping them failed: {exc}"
                    )
        return self._answer(True, None)

    def _answer(self, ok: bool, error: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": ok, "keys": [_b64(k) for k in self._keys]}
        out["primary"] = _b64(self._keys[0]) if self._keys else None
        if error is not None:
            out["error"] = error
        return out

    def handle(self, q: Query) -> bytes:
        """The internal query's handler on every member."""
        try:
            req = json.loads(q.payload)
            op = req["op"]
            key = base64.b64decode(req["key"], validate=True) if req.get("key") else None
            if key is not None and len(key) != 32:
                raise ValueError("a key is 32 bytes")
        except (ValueError, KeyError, TypeError) as exc:
            return json.dumps({"ok": False, "error": f"bad request: {exc}"}).encode()
        try:
            answer = self._apply(op, key)
        except Exception as exc:  # noqa: BLE001 - reported to the asker
            answer = self._answer(False, str(exc))
        return json.dumps(answer, separators=(",", ":")).encode()


def _check_key(key: object) -> bytes:
    if isinstance(key, str):
        try:
            key = base64.b64decode(key, validate=True)
        except ValueError:
            raise ValueError("a key given as text must be base64") from None
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise ValueError("a cluster key is 32 bytes (or their base64)")
    return bytes(key)
