"""One member's states as one node saw them, drawn as an SVG timeline for
Jupyter: a coloured band per state between the recorded changes (from the
first one to now), a diamond per confirmation by another accuser, and
under the bar each change's event with who or what caused it. Pure Python:
no plotting library needed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from clustermember._coordmap import nice_length, svg_open
from clustermember._display import STATE_COLOURS
from clustermember._explain import SOURCE_NAMES, ago_text, cause_text

if TYPE_CHECKING:
    from clustermember._models import HistoryEntry

WIDTH, HEIGHT, MARGIN = 640, 198, 48
BAR_TOP, BAR_HEIGHT = 52, 24
AXIS_Y = BAR_TOP + BAR_HEIGHT + 8
LABEL_TOP, LABEL_ROWS, LABEL_STEP = AXIS_Y + 30, 4, 14
# Width of a character of the labels' 11 px sans-serif, roughly, and the
# room kept between two labels of a row.
CHAR_WIDTH, LABEL_GAP = 6.2, 8.0


class Band(NamedTuple):
    """One stretch of a state: from ``start`` to ``end`` (``time.monotonic()``)."""

    state: str
    start: float
    end: float


def bands(entries: Iterable[HistoryEntry], now: float) -> list[Band]:
    """The member's states between its recorded changes, the last up to
    ``now``: entries that leave the state as it was (a confirmation) start
    no band.

    >>> from clustermember._models import HistoryEntry, MemberState
    >>> hist = [HistoryEntry(1.0, "suspect", MemberState.SUSPECT, "probe", "n0", 3, 0,
    ...                      None, 3, 3, 0),
    ...         HistoryEntry(1.5, "confirmed", MemberState.SUSPECT, "gossip", "n2", 3, 0,
    ...                      None, 0, 0, 1),
    ...         HistoryEntry(4.0, "recovered", MemberState.ALIVE, "alive", None, 4, 0,
    ...                      None, 0, 0, 0)]
    >>> [(b.state, b.start, b.end) for b in bands(hist, 10.0)]
    [('suspect', 1.0, 4.0), ('alive', 4.0, 10.0)]
    """
    out: list[Band] = []
    for e in entries:
        if out and out[-1].state == e.state.value:
            continue
        if out:
            out[-1] = out[-1]._replace(end=e.monotonic)
        out.append(Band(e.state.value, e.monotonic, now))
    return out


def label_rows(spans: Iterable[tuple[float, float]], rows: int = LABEL_ROWS) -> list[int]:
    """A row for each label, given its (left, right) extent in order: the
    first row where it clears the label before it, else the row whose last
    label ends first (overlap is then least).

    >>> label_rows([(0, 50), (40, 90), (60, 100), (95, 120)], 3)
    [0, 1, 0, 2]
    """
    ends = [float("-inf")] * rows
    out = []
    for left, right in spans:
        free = [r for r in range(rows) if ends[r] + LABEL_GAP <= left]
        row = free[0] if free else min(range(rows), key=lambda r: ends[r])
        ends[row] = right
        out.append(row)
    return out


def _label(e: HistoryEntry) -> str:
    """A short label: the event, the accuser, the source."""
    who = f" by {e.by}" if e.by is not None else ""
    source = SOURCE_NAMES.get(e.source, e.source)
    return f"{e.event}{who}" + (f" ({source})" if source else "")


class HistoryTimeline:
    """A member's states as one node saw them, shown as SVG in Jupyter
    (``_repr_svg_``; ``to_svg()`` gives the text). ``bands`` are its
    states between the recorded changes up to ``now``; ``entries`` the
    history drawn (:meth:`ClusterMembership.history`).

    >>> cluster.history_timeline("worker-3")      # in a notebook cell
    <HistoryTimeline of worker-3: 4 changes, 3 states>
    """

    def __init__(
        self,
        member_id: str,
        entries: Iterable[HistoryEntry],
        now: float,
        observer: str = "this node",
    ) -> None:
        self.member_id = member_id
        self.observer = observer
        self.entries = list(entries)
        self.now = now
        self.bands = bands(self.entries, now)
        self.title = f"{member_id} as seen by {observer}"

    def __repr__(self) -> str:
        return (
            f"<HistoryTimeline of {self.member_id}: {len(self.entries)} changes, "
            f"{len(self.bands)} states>"
        )

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def to_svg(self) -> str:
        """The timeline as an SVG document (text)."""
        if self.entries:
            first = ago_text(self.now - self.entries[0].monotonic)
            note = f"{len(self.entries)} changes recorded, the first {first}; now at the right"
        else:
            note = f"no suspicion, failure or leave of {self.member_id} recorded"
        body = [f'<text x="8" y="30" fill="#57606a">{html.escape(note)}</text>']
        if self.entries:
            body += self._drawing()
        return svg_open(WIDTH, HEIGHT, self.title) + "".join(body) + "</svg>"

    def _drawing(self) -> list[str]:
        start = self.entries[0].monotonic
        span = max(self.now - start, 1e-3)
        room = WIDTH - 2 * MARGIN

        def x_of(t: float) -> float:
            return MARGIN + (t - start) / span * room

        out = []
        for b in self.bands:
            x0, x1 = x_of(b.start), x_of(b.end)
            tip = f"{b.state} from {ago_text(self.now - b.start)} to " + (
                "now" if b.end >= self.now else ago_text(self.now - b.end)
            )
            out.append(
                f'<rect class="band" data-state="{b.state}" x="{x0:.1f}" y="{BAR_TOP}" '
                f'width="{max(x1 - x0, 1.0):.1f}" height="{BAR_HEIGHT}" '
                f'fill="{STATE_COLOURS.get(b.state, "#000000")}">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
        out += self._axis(start, span, x_of)
        xs = [x_of(e.monotonic) for e in self.entries]
        texts = [_label(e) for e in self.entries]
        # Labels on the right half read leftwards, so they stay in the picture.
        spans = [
            (x, x + CHAR_WIDTH * len(t)) if x <= WIDTH / 2 else (x - CHAR_WIDTH * len(t), x)
            for x, t in zip(xs, texts, strict=True)
        ]
        rows = label_rows(spans)
        before: str | None = None
        for e, x, text, row in zip(self.entries, xs, texts, rows, strict=True):
            tip = html.escape(
                f"{e.event} {ago_text(self.now - e.monotonic)}: {cause_text(e, before)}"
            )
            before = e.state.value
            if e.event == "confirmed":
                out.append(
                    f'<path class="confirmation" d="M{x:.1f},{BAR_TOP - 12} l5,5 l-5,5 '
                    f'l-5,-5 z" fill="black"><title>{tip}</title></path>'
                )
            y = LABEL_TOP + row * LABEL_STEP
            out.append(
                f'<line class="change" x1="{x:.1f}" y1="{BAR_TOP}" x2="{x:.1f}" y2="{y - 10}" '
                f'stroke="#57606a" stroke-dasharray="2,2"/>'
            )
            anchor = "" if x <= WIDTH / 2 else ' text-anchor="end"'
            out.append(
                f'<text class="label" x="{x:.1f}" y="{y}"{anchor}>'
                f"<title>{tip}</title>{html.escape(text)}</text>"
            )
        out += self._legend()
        return out

    def _axis(self, start: float, span: float, x_of: Callable[[float], float]) -> list[str]:
        step = nice_length(span / 4)
        out = [
            f'<line class="axis" x1="{MARGIN}" y1="{AXIS_Y}" x2="{WIDTH - MARGIN}" '
            f'y2="{AXIS_Y}" stroke="black"/>'
        ]
        k = 0
        while self.now - k * step >= start - 1e-9:
            x = x_of(self.now - k * step)
            text = "now" if k == 0 else f"-{k * step:g} s"
            out.append(
                f'<line x1="{x:.1f}" y1="{AXIS_Y}" x2="{x:.1f}" y2="{AXIS_Y + 4}" '
                f'stroke="black"/><text x="{x:.1f}" y="{AXIS_Y + 16}" '
                f'text-anchor="middle" fill="#57606a">{text}</text>'
            )
            k += 1
        return out

    def _legend(self) -> list[str]:
        out = []
        x = MARGIN
        y = HEIGHT - 12
        for state in dict.fromkeys(b.state for b in self.bands):
            out.append(
                f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                f'fill="{STATE_COLOURS.get(state, "#000000")}"/>'
                f'<text x="{x + 14}" y="{y}">{state}</text>'
            )
            x += 24 + 7 * len(state)
        return out
