"""A member's history read aloud: why it was suspected, failed or came
back, one line per recorded change, as ``clustermember explain`` prints it
and ``ClusterMembership.explain()`` returns it (docs/operations.md,
"Reading an explanation").

Each line is ``<when>  <event>  <cause>``: when relative to now, the
event, and what caused it: this node's own failed probe (with the helpers
it asked, their nacks, the last round trip and this node's health), an
accuser's gossip or push-pull, the helpers of this node's probe that could
not reach it either, the suspicion's timeout here, or the
member's own word (a refutation, a return, a leave).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from clustermember._display import ms_text

if TYPE_CHECKING:
    from clustermember._models import HistoryEntry

# Width of the event column: the longest event name.
EVENT_WIDTH = len("recovered") + 1
SOURCE_NAMES = {"gossip": "gossip", "pushpull": "push-pull"}


def ago_text(seconds: float) -> str:
    """How long ago, read at a glance: tenths of a second under a minute,
    then minutes and seconds, then hours and minutes.

    >>> ago_text(12.34), ago_text(0.0), ago_text(125), ago_text(7260)
    ('12.3 s ago', '0.0 s ago', '2 min 5 s ago', '2 h 1 min ago')
    """
    s = max(seconds, 0.0)
    if round(s, 1) < 60:
        return f"{s:.1f} s ago"
    whole = round(s)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s ago"
    minutes = round(s / 60)
    return f"{minutes // 60} h {minutes % 60} min ago"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _accuser(e: HistoryEntry) -> str:
    return f"by {e.by}" if e.by is not None else "by an accuser this node has forgotten since"


def probe_text(e: HistoryEntry) -> str:
    """What this node's own failed probe found: the helpers it asked to
    probe the member too and how many answered that they could not reach
    it either (nacks), the last direct round trip, and this node's health.

    >>> from clustermember._models import HistoryEntry, MemberState
    >>> e = HistoryEntry(0.0, "suspect", MemberState.SUSPECT, "probe", "n0", 3, 0,
    ...                  0.000412, 3, 1, 0)
    >>> probe_text(e).split("; ")
    ['its own probe: no ack', '3 helpers asked: 1 could not reach it either, 2 did not answer', 'last RTT 0.412 ms', 'our health 0']
    """  # noqa: E501
    parts = ["its own probe: no ack"]
    if e.helpers == 0:
        parts.append("no helper to ask")
    else:
        parts.append(
            f"{_plural(e.helpers, 'helper')} asked: {e.nacks} could not reach it either, "
            f"{e.helpers - e.nacks} did not answer"
        )
    parts.append("no RTT measured before" if e.rtt is None else f"last RTT {ms_text(e.rtt)} ms")
    parts.append(f"our health {e.health}")
    return "; ".join(parts)


def cause_text(e: HistoryEntry, before: str | None) -> str:
    """What caused one change, given the member's state before it (None
    if not recorded).

    >>> from clustermember._models import HistoryEntry, MemberState
    >>> e = HistoryEntry(0.0, "recovered", MemberState.ALIVE, "alive", None, 4, 0, None, 0, 0, 0)
    >>> cause_text(e, "suspect"), cause_text(e, "failed")
    ('it refuted at incarnation 4', 'it came back at incarnation 4')
    """
    source = SOURCE_NAMES.get(e.source, e.source or "cause not recorded")
    health = f"; our health {e.health}" if e.health > 0 else ""
    if e.source == "probe":
        return f"{_accuser(e)} ({probe_text(e)})"
    if e.source == "nack":
        return (
            f"{_accuser(e)} among the helpers of this node's probe "
            f"({e.nacks} of {_plural(e.helpers, 'helper')} asked could not reach it either; "
            f"{e.confirmations + 1} accusers so far)"
        )
    if e.event == "suspect":
        return f"{_accuser(e)} ({source}{health})"
    if e.event == "confirmed":
        return f"{_accuser(e)} ({source}; {e.confirmations + 1} accusers so far{health})"
    if e.event == "failed":
        more = f", {e.confirmations + 1} accusers" if e.confirmations else ""
        if e.source == "timeout":
            return f"suspicion timed out here{more}{health}"
        return f"{_accuser(e)} ({source}{more}{health})"
    if e.event in ("recovered", "joined"):
        if e.source == "alive":
            verb = "refuted" if before == "suspect" else "came back"
            return f"it {verb} at incarnation {e.incarnation}"
        return f"alive at incarnation {e.incarnation} ({source})"
    if e.event == "left":
        if e.source == "leave":
            return f"it left at incarnation {e.incarnation}"
        return f"{_accuser(e)} ({source})"
    return f"{source} at incarnation {e.incarnation}"


def explain_lines(entries: Sequence[HistoryEntry], now: float) -> list[str]:
    """One line per entry, oldest first: when (relative to ``now``, a
    ``time.monotonic()``), the event, and its cause.

    >>> from clustermember._models import HistoryEntry, MemberState
    >>> hist = [
    ...     HistoryEntry(88.0, "suspect", MemberState.SUSPECT, "probe", "n0", 3, 0,
    ...                  0.000412, 3, 3, 0),
    ...     HistoryEntry(88.4, "confirmed", MemberState.SUSPECT, "gossip", "n2", 3, 0,
    ...                  None, 0, 0, 1),
    ...     HistoryEntry(91.0, "failed", MemberState.FAILED, "timeout", None, 3, 0,
    ...                  None, 0, 0, 1),
    ...     HistoryEntry(97.9, "recovered", MemberState.ALIVE, "alive", None, 4, 0,
    ...                  None, 0, 0, 0)]
    >>> print("\\n".join(explain_lines(hist, 100.0)))
    12.0 s ago  suspect    by n0 (its own probe: no ack; 3 helpers asked: 3 could not reach it either, 0 did not answer; last RTT 0.412 ms; our health 0)
    11.6 s ago  confirmed  by n2 (gossip; 2 accusers so far)
     9.0 s ago  failed     suspicion timed out here, 2 accusers
     2.1 s ago  recovered  it came back at incarnation 4
    """  # noqa: E501
    whens = [ago_text(now - e.monotonic) for e in entries]
    width = max(map(len, whens), default=0)
    lines = []
    before: str | None = None
    for e, when in zip(entries, whens, strict=True):
        lines.append(f"{when:>{width}}  {e.event:<{EVENT_WIDTH}} {cause_text(e, before)}")
        before = e.state.value
    return lines


def summary_line(
    member_id: str,
    state: str,
    incarnation: int,
    since: float | None,
    now: float,
    observer: str,
) -> str:
    """The first line of an explanation: the member's state now and since
    when (``since`` a ``time.monotonic()``, None if not known), as
    ``observer`` sees it.

    >>> summary_line("n3", "alive", 4, 97.9, 100.0, "n0")
    'n3 is alive (incarnation 4) since 2.1 s ago, as n0 sees it'
    """
    when = "" if since is None else f" since {ago_text(now - since)}"
    return f"{member_id} is {state} (incarnation {incarnation}){when}, as {observer} sees it"


def no_history_text(member_id: str, observer: str) -> str:
    """What an explanation says of a member with no recorded history.

    >>> no_history_text("n1", "n0")
    'no suspicion, failure or leave of n1 seen by n0'
    """
    return f"no suspicion, failure or leave of {member_id} seen by {observer}"


def explain_text(
    member_id: str,
    state: str,
    incarnation: int,
    since: float | None,
    entries: Sequence[HistoryEntry],
    now: float,
    observer: str,
) -> str:
    """A whole explanation: :func:`summary_line`, then :func:`explain_lines`
    (or :func:`no_history_text` when there are none)."""
    head = summary_line(member_id, state, incarnation, since, now, observer)
    body = explain_lines(entries, now) if entries else [no_history_text(member_id, observer)]
    return "\n".join([head, *body])
