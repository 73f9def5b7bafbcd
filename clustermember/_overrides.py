"""The keyword arguments of :class:`ClusterConfig`'s profile constructors,
for type checkers (``Unpack[ConfigOverrides]``).

Apart from them, only the test that keeps it in step with the fields
imports this module: the package needs none of it at run time, so no
process pays for building the TypedDict.
"""

from __future__ import annotations

import os
from typing import TypedDict


class ConfigOverrides(TypedDict, total=False):
    """The keyword arguments a profile constructor takes: every field of
    :class:`ClusterConfig`, each optional (a test keeps the two in step).

    >>> ClusterConfig.local(cluster_key=key, probe_interval=0.1)
    """

    node_id: str | None
    tags: dict[str, str]
    cluster_key: bytes | str | None
    keyring: list[bytes | str]
    tls_ca: str | os.PathLike[str] | None
    tls_cert: str | os.PathLike[str] | None
    tls_key: str | os.PathLike[str] | None
    insecure: bool
    probe_interval: float
    probe_timeout: float
    indirect_checks: int
    awareness_max: int
    suspicion_mult: int
    suspicion_max_mult: int
    suspicion_confirmations: int
    nack_confirms: bool
    phi_threshold: float
    phi_window: int
    phi_min_std: float
    phi_acceptable_pause: float
    phi_min_samples: int
    gossip_interval: float
    gossip_nodes: int
    gossip_to_dead: float
    retransmit_mult: int
    max_broadcast_queue: int
    pushpull_interval: float
    reconnect_interval: float
    reconnect_timeout: float
    reap_left_after: float
    max_packet_size: int
    max_tag_key: int
    max_tag_value: int
    max_tags_size: int
    max_members: int
    max_pushpull_size: int
    user_event_buffer: int
    max_user_event_size: int
    max_user_event_stream: int
    user_event_store: int
    user_event_rate: int
    query_timeout_mult: int
    coordinates: bool
    history: int
    max_connections: int
    idle_timeout: float
    handshake_timeout: float
    request_timeout: float
    max_stream_message: int
    max_queued_datagrams: int
    accept_rate: int
    accept_rate_per_source: int
    max_half_open: int | None
    retry_threshold: int | None
    join_timeout: float
    leave_timeout: float
    event_queue_size: int
    subscriber_queue_size: int
    user_event_coalesce: float
    seed: int | None
