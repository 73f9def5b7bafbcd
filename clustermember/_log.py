"""What a node tells the ``clustermember`` logger, one line per fact.

Joins and leaves are INFO; failures, id conflicts, refused handshakes and
suspicions of this node that it had to refute are WARNING. The library adds
only a ``NullHandler``: nothing is printed unless the application configures
logging (``logging.basicConfig(level=logging.INFO)`` shows everything).

Each kind of line is rate-limited: at most :data:`BURST` lines of one kind
per :data:`WINDOW` seconds per node; the first line after a quiet spell says
how many were held back, so a flapping cluster cannot flood a log::

    import logging
    logging.basicConfig(level=logging.INFO)
    # INFO clustermember: node n0: member n1 joined (127.0.0.1:40123)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("clustermember")
log.addHandler(logging.NullHandler())

WINDOW = 10.0
BURST = 10


class RateLimitedLog:
    """Lines of one node to the ``clustermember`` logger, limited per kind.

    >>> lines = RateLimitedLog("n0")
    >>> lines.emit("joined", logging.INFO, "member %s joined", "n1")
    """

    def __init__(
        self,
        node_id: str,
        window: float = WINDOW,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.window = window
        self.burst = burst
        self._clock = clock
        # kind -> [window start, lines in this window, lines held back, level]
        self._kinds: dict[str, list[float]] = {}

    def emit(self, kind: str, level: int, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ``level`` unless ``kind`` is over its budget."""
        if not log.isEnabledFor(level):
            return
        now = self._clock()
        k = self._kinds.setdefault(kind, [now, 0, 0, level])
        k[3] = max(k[3], level)
        if now - k[0] >= self.window:
            k[0], k[1] = now, 0
        if k[1] >= self.burst:
            k[2] += 1
            return
        k[1] += 1
        held, k[2] = int(k[2]), 0
        suffix = f" ({held} similar lines held back)" if held else ""
        log.log(level, "node %s: " + msg + suffix, self.node_id, *args)

    def flush(self) -> None:
        """Report lines held back in windows that have ended with no line of
        their kind after them; the node calls this every second, so a burst
        followed by quiet is still counted.

        >>> lines.flush()
        """
        now = self._clock()
        for kind, k in self._kinds.items():
            if k[2] and now - k[0] >= self.window:
                held, k[2] = int(k[2]), 0
                log.log(
                    int(k[3]),
                    "node %s: %d more %s lines held back (at most %d per %g s)",
                    self.node_id,
                    held,
                    kind,
                    self.burst,
                    self.window,
                )
