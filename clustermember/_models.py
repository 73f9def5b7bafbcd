"""What reads return: members, their states, and a node's statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from clustermember import _core, _display


class MemberState(str, Enum):
    """A member's state as one node sees it. Compares equal to its name.

    >>> MemberState.ALIVE == "alive"
    True
    """

    ALIVE = "alive"
    SUSPECT = "suspect"
    FAILED = "failed"
    LEFT = "left"

    def __str__(self) -> str:
        return self.value


# flat() names of the counters that are not "protocol_" + their core name.
_FLAT_NAMES = {
    "members": "members_total",
    "alive": "members_alive",
    "suspect": "members_suspect",
    "failed": "members_failed",
    "left": "members_left",
    "health": "health_score",
    "incarnation": "incarnation",
    "events_dropped": "engine_events_dropped",
    "send_errors": "engine_send_errors",
    "user_events_coalesced": "engine_user_events_coalesced",
    "subscriber_events_dropped": "engine_subscriber_events_dropped",
}


# Counters shown first, before the ones grouped by source.
_SUMMARY = {k for k, v in _FLAT_NAMES.items() if not v.startswith("engine_")}


def flat_name(counter: str) -> str:
    """The name a raw counter has in :meth:`ClusterStats.flat`, by source.

    >>> flat_name("net_bytes_in"), flat_name("bytes_in"), flat_name("alive")
    ('transport_bytes_in', 'protocol_bytes_in', 'members_alive')
    """
    if counter in _FLAT_NAMES:
        return _FLAT_NAMES[counter]
    if counter.startswith("net_"):
        return "transport_" + counter[4:]
    return "protocol_" + counter


# Bit per state in the mask the C query takes (1 << state index).
STATE_BITS = {
    MemberState.ALIVE: 1,
    MemberState.SUSPECT: 2,
    MemberState.FAILED: 4,
    MemberState.LEFT: 8,
}


def _plain(obj: Any) -> dict[str, Any]:
    """A slotted dataclass with a ``state`` as JSON-able data."""
    d = {f: getattr(obj, f) for f in obj.__slots__}
    d["state"] = obj.state.value
    return d


@dataclass(frozen=True, slots=True)
class PeerHealth:
    """How one member looks from this node: the round trips of this node's
    direct probes of it (over the last ``samples``, at most 16: median,
    90th percentile and largest, in seconds; None with no sample), its phi
    (None when not alive or too few samples, as :attr:`Member.phi`), when
    it was last heard from (``last_heard``: ``time.monotonic()`` of its
    last ping or ack here, None if never) and whether the transport holds a
    connection to it now.

    >>> h = cluster.peer_health()[0]; h.id, h.rtt_median, h.connected
    ('worker-1', 0.00021, True)
    """

    id: str
    state: MemberState
    samples: int
    rtt_median: float | None
    rtt_p90: float | None
    rtt_max: float | None
    phi: float | None
    last_heard: float | None
    connected: bool

    @classmethod
    def _from_tuple(cls, t: tuple[Any, ...]) -> PeerHealth:
        mid, state, samples, med, p90, mx, phi, heard, connected = t
        st = MemberState(state)
        return cls(
            mid,
            st,
            samples,
            med,
            p90,
            mx,
            phi if st is MemberState.ALIVE and phi > 0 else None,
            None if heard < 0 else heard,
            bool(connected),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data.

        >>> cluster.peer_health()[0].to_dict()["samples"]
        16
        """
        return _plain(self)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One state change of a member, as this node saw it, and its cause.

    ``event`` is ``"suspect"``, ``"confirmed"`` (another member accused it
    too), ``"failed"``, ``"recovered"``, ``"left"`` or ``"joined"``; ``state``
    its state after. ``source`` says what caused it: ``"probe"`` (this
    node's own probe of it failed: ``helpers`` members were asked to probe
    it too and ``nacks`` of them could not reach it either), ``"gossip"``
    (an accusation by ``by``) or ``"pushpull"`` (a record in ``by``'s
    table, which names no accuser), ``"nack"`` (two or more of the
    helpers this node's probe asked, ``by`` the first, could not reach it
    either: ``nacks`` of ``helpers``; one confirmation), ``"timeout"``
    (its suspicion ran out here), ``"alive"`` (its own word: a refutation or
    a return), ``"leave"``.
    ``by`` is the accuser, None if none or forgotten since; ``health`` this
    node's local health score then (0 is healthy: a high one says the
    problem may have been here); ``rtt`` the last round trip of a direct
    probe of it before (seconds), None if none. ``monotonic`` is
    ``time.monotonic()`` at the change.

    >>> [(h.event, h.source, h.by) for h in cluster.history("worker-3")]
    [('suspect', 'probe', 'api-1'), ('failed', 'timeout', None)]
    """

    monotonic: float
    event: str
    state: MemberState
    source: str
    by: str | None
    incarnation: int
    health: int
    rtt: float | None
    helpers: int
    nacks: int
    confirmations: int

    @classmethod
    def _from_tuple(cls, t: tuple[Any, ...]) -> HistoryEntry:
        mono, event, state, source, health, inc, rtt, helpers, nacks, conf, by = t
        return cls(
            mono, event, MemberState(state), source, by, inc, health, rtt, helpers, nacks, conf
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data.

        >>> cluster.history("worker-3")[0].to_dict()["source"]
        'probe'
        """
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoryEntry:
        """The entry back from :meth:`to_dict`'s data (as the CLI gets it
        from an agent); a KeyError or ValueError if a field is missing or
        a state unknown.

        >>> h = cluster.history("worker-3")[0]
        >>> HistoryEntry.from_dict(h.to_dict()) == h
        True
        """
        values = {f: d[f] for f in cls.__slots__}
        values["state"] = MemberState(d["state"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Coordinate:
    """A member's network coordinate (Vivaldi), in seconds.

    ``vec`` is a point in 8 dimensions; ``height`` the member's own access
    delay, added to every distance from it; ``adjustment`` a per-node
    correction; ``error`` how unsure the member is of its place (from 1.5
    at the start, falling as its estimates come true). :meth:`rtt` is the
    estimated round-trip time between two members, as the core computes it.

    >>> a, b = cluster.member("n1").coordinate, cluster.member("n2").coordinate
    >>> round(a.rtt(b) * 1000, 2)
    0.31
    """

    vec: tuple[float, ...]
    height: float
    adjustment: float
    error: float

    @classmethod
    def _from_tuple(cls, t: _core.Coordinate) -> Coordinate:
        return cls(tuple(t[0]), t[1], t[2], t[3])

    def _tuple(self) -> _core.Coordinate:
        return (self.vec, self.height, self.adjustment, self.error)

    def rtt(self, other: Coordinate) -> float:
        """Estimated round-trip time to ``other``, in seconds (symmetric).

        Raises ValueError if either coordinate is out of bounds (a number
        not finite or beyond the core's limits, a vec not of 8 numbers).

        >>> me = cluster.local_node.coordinate
        >>> me.rtt(cluster.member("n2").coordinate)
        0.000312
        """
        if not isinstance(other, Coordinate):
            raise TypeError(f"other must be a Coordinate, not {type(other).__name__}")
        return _core.coord_rtt(self._tuple(), other._tuple())

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data.

        >>> sorted(cluster.local_node.coordinate.to_dict())
        ['adjustment', 'error', 'height', 'vec']
        """
        return {
            "vec": list(self.vec),
            "height": self.height,
            "adjustment": self.adjustment,
            "error": self.error,
        }


def rtt_between(a: Member, b: Member) -> float | None:
    """Estimated RTT in seconds between two members from their coordinates:
    0.0 for one member with itself, None if either coordinate is unknown."""
    if a.id == b.id:
        return 0.0
    if a.coordinate is None or b.coordinate is None:
        return None
    return a.coordinate.rtt(b.coordinate)


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster as seen by the local node.

    ``state_change`` is the ``time.monotonic()`` of its last state change
    seen here. ``phi`` is the phi-accrual suspicion level of the messages
    from it, as of the snapshot the read came from: ``-log10`` of the
    probability that a live member would have been silent this long, given
    the gaps seen so far (1 means a 10% chance, 8 a one in 10**8 chance).
    It is ``None`` for this node, for members not alive, and until enough
    gaps are measured (``phi_min_samples``). It is for display only: it
    never convicts and does not change which member is probed when.

    >>> m = cluster.member("worker-1"); m.state, m.tags.get("role"), m.phi
    ('alive', 'worker', 0.31)
    """

    id: str
    addr: str
    state: MemberState
    incarnation: int
    tags: Mapping[str, str] = field(hash=False)
    state_change: float = field(default=0.0, compare=False)
    phi: float | None = field(default=None, compare=False)
    is_self: bool = field(default=False, compare=False)
    coordinate: Coordinate | None = field(default=None, compare=False)

    @classmethod
    def _from_tuple(cls, t: tuple[Any, ...]) -> Member:
        state = MemberState(t[2])
        # The core reports 0 when it has too few samples, and keeps a value
        # for members whose state makes it meaningless: shown as None.
        phi = t[6] if state is MemberState.ALIVE and not t[7] and t[6] > 0 else None
        coord = Coordinate._from_tuple(t[8]) if t[8] is not None else None
        return cls(t[0], t[1], state, t[3], MappingProxyType(t[4]), t[5], phi, t[7], coord)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data; ``coordinate`` is nested (or None).

        >>> cluster.local_node.to_dict()["state"]
        'alive'
        """
        return {
            "id": self.id,
            "addr": self.addr,
            "state": self.state.value,
            "incarnation": self.incarnation,
            "tags": dict(self.tags),
            "coordinate": None if self.coordinate is None else self.coordinate.to_dict(),
        }

    def to_row(self) -> dict[str, Any]:
        """One flat table row: ``id``, ``addr``, ``state``, ``incarnation``,
        ``phi``, then one ``tag.<key>`` column per tag.

        >>> row = cluster.local_node.to_row(); row["tag.role"], row["phi"]
        ('db', None)
        """
        row: dict[str, Any] = {
            "id": self.id,
            "addr": self.addr,
            "state": self.state.value,
            "incarnation": self.incarnation,
            "phi": self.phi,
        }
        row.update((f"tag.{k}", v) for k, v in sorted(self.tags.items()))
        return row


#: Drop counters that count a part of another one (the transport's
#: per-source handshake limit is in its rate limit too).
_DROP_SUBSETS = frozenset({"net_drop_source_limit"})


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """A node's view and traffic, from one consistent read of the engine.

    ``total == alive + suspect + failed + left`` (this node included).
    ``drops`` counts input dropped, by reason; ``health`` is the Lifeguard
    local health score (0 is healthy; higher means this node is slow to
    answer and stretches its own timeouts). ``counters`` holds every raw
    counter of the core (plain names) and the transport (``net_*``).
    :meth:`flat` gives all of it as one flat mapping, each name saying its
    source: what a table or JSON should show.

    >>> s = cluster.stats(); s.alive, s.flat()["transport_bytes_in"]
    (3, 10943)
    """

    node_id: str
    total: int
    alive: int
    suspect: int
    failed: int
    left: int
    connections_open: int
    connections_idle: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    drops: Mapping[str, int]
    health: int
    incarnation: int
    counters: Mapping[str, int] = field(repr=False)

    @classmethod
    def _from_counters(cls, node_id: str, c: dict[str, int]) -> ClusterStats:
        drops = {k: v for k, v in c.items() if k.startswith(("drop_", "net_drop_"))}
        drops["events_dropped"] = c["events_dropped"]
        drops["updates_dropped"] = c["updates_dropped"]
        return cls(
            node_id=node_id,
            total=c["members"],
            alive=c["alive"],
            suspect=c["suspect"],
            failed=c["failed"],
            left=c["left"],
            connections_open=c["net_conns_open"],
            connections_idle=c["net_conns_idle"],
            messages_in=c["msgs_in"],
            messages_out=c["msgs_out"],
            bytes_in=c["net_bytes_in"],
            bytes_out=c["net_bytes_out"],
            drops=MappingProxyType(drops),
            health=c["health"],
            incarnation=c["incarnation"],
            counters=MappingProxyType(dict(c)),
        )

    @property
    def dropped(self) -> int:
        """Everything dropped, all reasons together, each drop once (a
        handshake over its per-source rate, ``net_drop_source_limit``, is
        also in ``net_drop_rate_limit`` and is not added again)."""
        return sum(v for k, v in self.drops.items() if k not in _DROP_SUBSETS)

    def flat(self) -> dict[str, int]:
        """Every figure once, flat, named by its source, in a stable order.

        ``members_*`` (this node's view by state), ``health_score``,
        ``incarnation``, ``dropped_total``; then ``protocol_*`` (the
        protocol core: its messages, probes, suspicions, drops),
        ``transport_*`` (QUIC and UDP: connections, handshakes, datagrams,
        bytes on the wire) and ``engine_*`` (the engine thread's event
        queue and socket). So ``protocol_bytes_in`` (membership payload the
        core decoded) and ``transport_bytes_in`` (UDP bytes received) are
        told apart. Values are ints; JSON-able as is.

        >>> stats = cluster.stats().flat(); stats["members_alive"], stats["transport_bytes_in"]
        (3, 10943)
        """
        c = self.counters
        head = {flat_name(k): c[k] for k in _FLAT_NAMES if k in c and k in _SUMMARY}
        head["dropped_total"] = self.dropped
        order = ("protocol_", "transport_", "engine_")
        rest = sorted(
            ((flat_name(k), v) for k, v in c.items() if k not in _SUMMARY),
            key=lambda kv: (next(i for i, p in enumerate(order) if kv[0].startswith(p)), kv[0]),
        )
        return {**head, **dict(rest)}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data, nested as the fields are (see :meth:`flat`).

        >>> cluster.stats().to_dict()["drops"]["net_drop_auth"]
        0
        """
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["drops"] = dict(self.drops)
        d["counters"] = dict(self.counters)
        return d

    def to_dataframe(self) -> Any:
        """One row per figure of :meth:`flat` (pandas; ``pip install 'clustermember[pandas]'``).

        >>> cluster.stats().to_dataframe().set_index("figure").loc["members_alive", "value"]
        3
        """
        return _display.dataframe([{"figure": k, "value": v} for k, v in self.flat().items()])

    def _repr_html_(self) -> str:
        return _display.stats_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else _display.stats_text(self))
