"""Helpers that build real clusters of ClusterMembership nodes on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from clustermember import ClusterConfig, ClusterMembership, MemberState, _core


def config(key: bytes, node_id: str, **kw: Any) -> ClusterConfig:
    """The fast local profile with the test's key."""
    return ClusterConfig.local(cluster_key=key, node_id=node_id, **kw)


def issue_certs(tmp: Path, ids: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """A fresh CA in tmp and, for each id, a certificate (common name: the
    id) and its key it signed: the CA's path and (cert, key) paths."""
    ca, ca_key = str(tmp / "ca.pem"), str(tmp / "ca.key")
    _core.gen_ca(ca, ca_key)
    out = []
    for node_id in ids:
        cert, key = str(tmp / f"{node_id}.pem"), str(tmp / f"{node_id}.key")
        _core.gen_cert(ca, ca_key, cert, key, common_name=node_id)
        out.append((cert, key))
    return ca, out


def state_of(view: ClusterMembership, node_id: str) -> MemberState | None:
    """How `view` sees `node_id` (None if unknown)."""
    m = view.member(node_id)
    return m.state if m is not None else None


@contextlib.asynccontextmanager
async def cluster(key: bytes, n: int = 3, **kw: Any) -> AsyncIterator[list[ClusterMembership]]:
    """n nodes n0..n{n-1}; every node joins through n0 only, so what one
    learns about another (except n0) it learned through gossip."""
    nodes = [ClusterMembership("127.0.0.1:0", config(key, f"n{i}", **kw)) for i in range(n)]
    try:
        await nodes[0].start()
        await nodes[0].join([])
        for node in nodes[1:]:
            await node.join([nodes[0].addr])
        yield nodes
    finally:
        for node in nodes:
            await node.close()
