"""What reads return: members, their states, and a node's statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from clustermember import _display


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


# Bit per state in the mask the C query takes (1 << state index).
STATE_BITS = {
    MemberState.ALIVE: 1,
    MemberState.SUSPECT: 2,
    MemberState.FAILED: 4,
    MemberState.LEFT: 8,
}


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster as seen by the local node.

    ``state_change`` is the ``time.monotonic()`` of its last state change
    seen here; ``phi`` the suspicion level of arrivals from it (0 when there
    are too few samples).
    """

    id: str
    addr: str
    state: MemberState
    incarnation: int
    tags: Mapping[str, str] = field(hash=False)
    state_change: float = field(default=0.0, compare=False)
    phi: float = field(default=0.0, compare=False)
    is_self: bool = field(default=False, compare=False)

    @classmethod
    def _from_tuple(cls, t: tuple[Any, ...]) -> Member:
        return cls(t[0], t[1], MemberState(t[2]), t[3], MappingProxyType(t[4]), t[5], t[6], t[7])

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        return {
            "id": self.id,
            "addr": self.addr,
            "state": self.state.value,
            "incarnation": self.incarnation,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """A node's view and traffic, from one consistent read of the engine.

    ``total == alive + suspect + failed + left`` (this node included).
    ``drops`` counts input dropped, by reason; ``health`` is the Lifeguard
    local health score (0 is healthy; higher means this node is slow to
    answer and stretches its own timeouts). ``counters`` holds every raw
    counter of the core (plain names) and the transport (``net_*``).
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
        """Everything dropped, all reasons together."""
        return sum(self.drops.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["drops"] = dict(self.drops)
        d["counters"] = dict(self.counters)
        return d

    def to_dataframe(self) -> Any:
        """One row per figure (pandas; ``pip install 'clustermember[pandas]'``)."""
        return _display.dataframe([{"figure": k, "value": v} for k, v in _display.stats_rows(self)])

    def _repr_html_(self) -> str:
        return _display.stats_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else _display.stats_text(self))
