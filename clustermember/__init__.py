"""clustermember: cluster membership for Python services.

SWIM gossip with the Lifeguard refinements and a phi-accrual failure detector,
implemented in C on its own thread (it never takes the GIL), over QUIC::

    import asyncio, secrets
    from clustermember import ClusterConfig, ClusterMembership

    async def main():
        config = ClusterConfig.local(cluster_key=secrets.token_bytes(32))
        async with ClusterMembership("127.0.0.1:0", config) as cluster:
            await cluster.join([])          # a cluster of one
            print(cluster.nodes())

    asyncio.run(main())

``clustermember.sim`` runs thousands of protocol nodes on a virtual clock::

    from clustermember import sim
    result = sim.run("detect", nodes=100, seed=1)
"""

from typing import TYPE_CHECKING, Any

from clustermember import _core
from clustermember._config import ClusterConfig
from clustermember._errors import (
    AlreadyJoined,
    ClusterClosed,
    ClusterError,
    ConfigError,
    DuplicateNodeId,
    JoinRefused,
    JoinTimeout,
    MissingDependency,
    NotJoined,
    NotStarted,
    RateLimited,
    TagError,
    UnknownMember,
)
from clustermember._events import (
    ClusterEvent,
    EventsDropped,
    NodeAddressChanged,
    NodeConflict,
    NodeFailed,
    NodeJoined,
    NodeLeft,
    NodeReaped,
    NodeRecovered,
    NodeSuspect,
    NodeTagsUpdated,
    Subscription,
    UserEvent,
)
from clustermember._keys import KeyReport, Keyring
from clustermember._membership import ClusterMembership
from clustermember._models import (
    ClusterStats,
    Coordinate,
    HistoryEntry,
    Member,
    MemberState,
    PeerHealth,
)

if TYPE_CHECKING:
    from clustermember._metrics import ClusterCollector
    from clustermember._queries import Query, QueryResponse, QueryResults


def __getattr__(name: str) -> Any:
    # The Prometheus collector and the query types are imported when first
    # asked for: an agent or a service that never exports metrics or meets
    # a query does not pay for them at start.
    if name == "ClusterCollector":
        from clustermember._metrics import ClusterCollector

        return ClusterCollector
    if name in ("Query", "QueryResponse", "QueryResults"):
        from clustermember import _queries

        return getattr(_queries, name)
    raise AttributeError(f"module 'clustermember' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazily imported names too, for completion and introspection.
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"
WIRE_VERSION: int = _core.WIRE_VERSION

__all__ = [
    "WIRE_VERSION",
    "AlreadyJoined",
    "ClusterClosed",
    "ClusterCollector",
    "ClusterConfig",
    "ClusterError",
    "ClusterEvent",
    "ClusterMembership",
    "ClusterStats",
    "ConfigError",
    "Coordinate",
    "HistoryEntry",
    "PeerHealth",
    "EventsDropped",
    "DuplicateNodeId",
    "JoinRefused",
    "JoinTimeout",
    "KeyReport",
    "Keyring",
    "Member",
    "MemberState",
    "MissingDependency",
    "NodeAddressChanged",
    "NodeConflict",
    "NodeFailed",
    "NodeJoined",
    "NodeLeft",
    "NodeReaped",
    "NodeRecovered",
    "NodeSuspect",
    "NodeTagsUpdated",
    "NotJoined",
    "NotStarted",
    "Query",
    "QueryResponse",
    "QueryResults",
    "RateLimited",
    "Subscription",
    "TagError",
    "UnknownMember",
    "UserEvent",
    "__version__",
]
