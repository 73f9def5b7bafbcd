"""A small program using the public API, checked with ``mypy --strict`` in the
lint step (scripts/test.sh): the package's types must serve its users."""

from __future__ import annotations

import asyncio
import secrets

from clustermember import (
    ClusterConfig,
    ClusterEvent,
    ClusterMembership,
    Member,
    NodeFailed,
    NodeJoined,
)


def workers(cluster: ClusterMembership) -> list[str]:
    """Ids of the alive workers whose zone starts with eu-."""
    found: list[Member] = cluster.nodes_matching({"role": "worker", "zone": r"eu-.*"})
    return [m.id for m in found]


async def main() -> None:
    config = ClusterConfig.local(cluster_key=secrets.token_bytes(32), probe_interval=0.1)
    async with ClusterMembership("127.0.0.1:0", config) as cluster:
        await cluster.join([], timeout=5.0)
        stats: dict[str, int] = cluster.stats().flat()
        print(stats["members_alive"], workers(cluster))
        async for event in cluster.subscribe(replay=True):
            handle(event)
            break


def handle(event: ClusterEvent) -> None:
    """Print what happened to whom."""
    if isinstance(event, (NodeJoined, NodeFailed)):
        phi: float | None = event.node.phi
        print(type(event).__name__, event.node.id, event.node.state.value, phi)


if __name__ == "__main__":
    asyncio.run(main())
