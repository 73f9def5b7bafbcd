"""Exceptions of the clustermember API.

Every error the API raises on purpose derives from :class:`ClusterError`;
invalid settings and tags are also :class:`ValueError`, so ``except
ValueError`` keeps working for callers that validate input generically::

    try:
        await cluster.join(["10.0.0.5:7946"], timeout=5.0)
    except JoinRefused as exc:
        print("the seeds refused our key or certificate:", exc.seeds)
    except JoinTimeout as exc:
        print("no seed answered:", exc.seeds)
"""

from __future__ import annotations

from collections.abc import Sequence


class ClusterError(Exception):
    """Base class of every clustermember API error."""


class ConfigError(ClusterError, ValueError):
    """A setting of :class:`ClusterConfig` is invalid; the message names it."""


class TagError(ClusterError, ValueError):
    """A tag key, value or the whole tag set breaks the configured limits."""


class NotStarted(ClusterError):  # noqa: N818 - names fixed by the API
    """The node is not started yet: ``await cluster.start()`` or ``join()`` first."""


class AlreadyJoined(ClusterError):  # noqa: N818 - names fixed by the API
    """``join()`` was called on a node that has joined (or is joining)."""


class NotJoined(ClusterError):  # noqa: N818 - names fixed by the API
    """``leave()`` was called before a successful ``join()``."""


class RateLimited(ClusterError):  # noqa: N818 - names fixed by the API
    """This node reached ``user_event_rate``: wait a moment and send again."""


class ClusterClosed(ClusterError):  # noqa: N818 - names fixed by the API
    """The node was closed (or has left, or lost its engine to fork())."""


class JoinTimeout(ClusterError, TimeoutError):  # noqa: N818 - names fixed by the API
    """No seed answered before the join timeout.

    ``seeds`` holds the addresses that were tried, as given and as resolved.
    ``handshakes_failed`` and ``auth_refused`` count this node's QUIC
    handshakes that failed during the join (refused or unanswered), and
    those of them that failed authentication; ``handshakes_ok`` those that
    succeeded. When some failed and none succeeded, the message says so:
    refused ones mean the seeds answered, but not with this node's key;
    unanswered ones, that nothing answered.

    >>> str(JoinTimeout(["10.0.0.1:7946"], 5.0))
    'join timed out after 5 s: no answer from seeds 10.0.0.1:7946; check ...'
    """

    def __init__(
        self,
        seeds: Sequence[str],
        timeout: float,
        *,
        handshakes_failed: int = 0,
        auth_refused: int = 0,
        handshakes_ok: int = 0,
    ) -> None:
        self.seeds = list(seeds)
        self.timeout = timeout
        self.handshakes_failed = handshakes_failed
        self.auth_refused = auth_refused
        self.handshakes_ok = handshakes_ok
        msg = self._message(", ".join(self.seeds) if self.seeds else "(none)")
        # A handshake that timed out counts as failed too: only a refusal
        # says the seed is there, with other credentials.
        if auth_refused > 0 and handshakes_ok == 0:
            msg += (
                f" ({handshakes_failed} handshake(s) with the seeds failed, {auth_refused} "
                "of them refused authentication: they are reachable, but most likely use "
                "another cluster key or CA)"
            )
        elif handshakes_failed > 0 and handshakes_ok == 0:
            msg += (
                f" ({handshakes_failed} handshake(s) with the seeds got no answer: nothing "
                "listens there, or a firewall drops UDP, or they use another cluster key)"
            )
        super().__init__(msg)

    def _message(self, tried: str) -> str:
        return (
            f"join timed out after {self.timeout:g} s: no answer from seeds {tried}; check "
            "that they run, are reachable over UDP, and share this node's cluster key or CA"
        )


class JoinRefused(JoinTimeout):  # noqa: N818 - named like JoinTimeout, which it extends
    """The seeds refused this node's credentials, and none accepted them.

    A wrong cluster key, or a certificate not issued by the cluster CA. It
    derives from :class:`JoinTimeout` (what such a join raised before its
    cause could be told), so ``except JoinTimeout`` still catches it.
    """

    def _message(self, tried: str) -> str:
        return (
            f"join failed: seeds {tried} refused this node's credentials (wrong cluster "
            "key, or a certificate not issued by the cluster CA); give this node the "
            "cluster's key (cluster_key or keyring) or a certificate from its CA (tls_cert)"
        )


class DuplicateNodeId(ClusterError):  # noqa: N818 - names fixed by the API
    """Another live process answers to this node's id: ``join()`` refused.

    ``node_id`` is the id, ``other_addr`` the address (``"host:port"``) where
    a process answered to it, if known. A crashed predecessor of this node
    does not answer, so a restart on a new port is not refused.

    >>> str(DuplicateNodeId("web-1", "10.0.0.7:7946"))
    "join failed: another live process answers to node id 'web-1' at ..."
    """

    def __init__(self, node_id: str, other_addr: str | None) -> None:
        self.node_id = node_id
        self.other_addr = other_addr
        where = f" at {other_addr}" if other_addr else ""
        super().__init__(
            f"join failed: another live process answers to node id {node_id!r}{where}; "
            "give this node its own node_id, or stop the other process and join again"
        )


class UnknownMember(ClusterError, KeyError):  # noqa: N818 - names fixed by the API
    """No member of that id is known to this node (in any state).

    Also a :class:`KeyError`, as a lookup by key that missed; ``node_id``
    is the id asked for, and the message is plain text.

    >>> str(UnknownMember("web-9"))
    "no member 'web-9' is known to this node: a misspelt id, one not joined yet, or one reaped"
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        super().__init__(
            f"no member {node_id!r} is known to this node: a misspelt id, one not "
            "joined yet, or one reaped"
        )

    def __str__(self) -> str:
        # KeyError's own str() is the repr of its argument, quotes included.
        return str(self.args[0])


class MissingDependency(ClusterError, ImportError):  # noqa: N818 - names fixed by the API
    """An optional dependency is not installed; the message names the extra."""
