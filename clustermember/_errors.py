"""Exceptions of the clustermember API.

Every error the API raises on purpose derives from :class:`ClusterError`;
invalid settings and tags are also :class:`ValueError`, so ``except
ValueError`` keeps working for callers that validate input generically::

    try:
        await cluster.join(["10.0.0.5:7946"], timeout=5.0)
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


class ClusterClosed(ClusterError):  # noqa: N818 - names fixed by the API
    """The node was closed (or has left, or lost its engine to fork())."""


class JoinTimeout(ClusterError, TimeoutError):  # noqa: N818 - names fixed by the API
    """No seed answered before the join timeout.

    ``seeds`` holds the addresses that were tried, as given and as resolved.
    """

    def __init__(self, seeds: Sequence[str], timeout: float) -> None:
        self.seeds = list(seeds)
        self.timeout = timeout
        tried = ", ".join(self.seeds) if self.seeds else "(none)"
        super().__init__(
            f"join timed out after {timeout:g} s: no answer from seeds {tried}; check that "
            "they run, are reachable over UDP, and share this node's cluster key or CA"
        )


class MissingDependency(ClusterError, ImportError):  # noqa: N818 - names fixed by the API
    """An optional dependency is not installed; the message names the extra."""
