"""A map of the members' network coordinates, drawn as SVG for Jupyter.

The coordinates are points in 8 dimensions; the map shows them on their two
principal axes (PCA: the two directions along which they spread most, found
by power iteration on their 8x8 covariance), at one scale on both axes, so
two members far apart on the map are far apart in coordinates, and a scale
bar gives the distance in milliseconds. Heights (each member's own access
delay, added to every RTT from it) are not drawn. Pure Python: no plotting
library needed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from clustermember._display import STATE_COLOURS, ms_text

if TYPE_CHECKING:
    from clustermember._models import Member

WIDTH, HEIGHT, MARGIN = 560, 400, 48
# Power iteration: rounds at most, and the change below which it has converged.
ROUNDS, CONVERGED = 500, 1e-12
# A spread below this (seconds squared) is no spread: points that coincide.
NO_SPREAD = 1e-24

Vector = list[float]


def _matvec(m: Sequence[Vector], v: Vector) -> Vector:
    return [sum(a * b for a, b in zip(row, v, strict=True)) for row in m]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def principal_axes(points: Sequence[Sequence[float]], count: int = 2) -> list[Vector]:
    """The ``count`` directions along which the points spread most, largest
    first, each a unit vector (a zero vector where there is no spread left);
    the sign of each is fixed so its largest component is positive.

    >>> [[round(x, 3) for x in a] for a in principal_axes([(0, 0), (2, 1), (4, 2)], 1)]
    [[0.894, 0.447]]
    """
    n, dims = len(points), len(points[0])
    mean = [sum(p[i] for p in points) / n for i in range(dims)]
    centred = [[p[i] - mean[i] for i in range(dims)] for p in points]
    cov = [[sum(c[i] * c[j] for c in centred) / n for j in range(dims)] for i in range(dims)]
    axes = []
    for _ in range(count):
        # Start from the direction of most variance left: never orthogonal
        # to the main axis unless the data are degenerate there.
        start = max(range(dims), key=lambda i: cov[i][i])
        if cov[start][start] <= NO_SPREAD:
            axes.append([0.0] * dims)
            continue
        v = [row[start] for row in cov]
        norm = math.sqrt(_dot(v, v))
        v = [x / norm for x in v]
        for _ in range(ROUNDS):
            w = _matvec(cov, v)
            norm = math.sqrt(_dot(w, w))
            if norm <= NO_SPREAD:
                break
            w = [x / norm for x in w]
            moved = max(abs(a - b) for a, b in zip(w, v, strict=True))
            v = w
            if moved < CONVERGED:
                break
        if max(v, key=abs) < 0:
            v = [-x for x in v]
        spread = _dot(v, _matvec(cov, v))
        # Deflate: what is left once this axis is taken out.
        cov = [[cov[i][j] - spread * v[i] * v[j] for j in range(dims)] for i in range(dims)]
        axes.append(v)
    return axes


def project(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Each point on the two principal axes, about the points' mean (same
    unit as the points).

    >>> [(round(x, 3), round(y, 3)) for x, y in project([(0, 0), (2, 1), (4, 2)])]
    [(-2.236, 0.0), (0.0, 0.0), (2.236, 0.0)]
    """
    if not points:
        return []
    n, dims = len(points), len(points[0])
    mean = [sum(p[i] for p in points) / n for i in range(dims)]
    ax, ay = principal_axes(points, 2)
    out = []
    for p in points:
        c = [p[i] - mean[i] for i in range(dims)]
        out.append((_dot(c, ax), _dot(c, ay)))
    return out


def nice_length(seconds: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) at most ``seconds``.

    >>> nice_length(0.0042), nice_length(37.0)
    (0.002, 20.0)
    """
    exp = math.floor(math.log10(seconds))
    for step in (5.0, 2.0, 1.0):
        if step * 10.0**exp <= seconds:
            return step * 10.0**exp
    return 10.0**exp


def svg_open(width: int, height: int, title: str) -> str:
    """The start of an SVG picture: its size, a white ground and a bold
    title at the top left (the caller closes it with ``</svg>``)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f'<rect width="{width}" height="{height}" fill="white"/>'
        f'<text x="8" y="16" font-weight="bold">{html.escape(title)}</text>'
    )


class CoordinateMap:
    """The members' network coordinates on a plane, shown as SVG in Jupyter
    (``_repr_svg_``). ``members`` are those drawn (with a coordinate),
    ``missing`` the ids of those left out (none known), ``points`` each
    drawn member's place on the two principal axes, by id, in seconds.

    >>> m = cluster.coordinate_map(); sorted(m.points)[:2], m.missing
    (['n0', 'n1'], [])
    """

    def __init__(self, members: Iterable[Member], title: str = "network coordinates") -> None:
        given = list(members)
        self.title = title
        self.members = [m for m in given if m.coordinate is not None]
        self.missing = [m.id for m in given if m.coordinate is None]
        vecs = [m.coordinate.vec for m in self.members if m.coordinate is not None]
        self.points = dict(zip((m.id for m in self.members), project(vecs), strict=True))

    def __repr__(self) -> str:
        return f"<CoordinateMap of {len(self.members)} members>"

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def to_svg(self) -> str:
        """The map as an SVG document (text)."""
        head = svg_open(WIDTH, HEIGHT, self.title)
        note = f"{len(self.members)} members"
        if self.missing:
            note += f"; {len(self.missing)} without a coordinate not shown"
        body = [f'<text x="8" y="30" fill="#57606a">{html.escape(note)}</text>']
        if self.points:
            body += self._drawing()
        return head + "".join(body) + "</svg>"

    def _drawing(self) -> list[str]:
        xs = [p[0] for p in self.points.values()]
        ys = [p[1] for p in self.points.values()]
        span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
        room_x, room_y = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN - 20
        # One scale for both axes, so distances on the map compare.
        spans = [room / span for room, span in ((room_x, span_x), (room_y, span_y)) if span > 0]
        scale = min(spans) if spans else 1.0
        mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        self_coord = next((m.coordinate for m in self.members if m.is_self), None)
        out = []
        for m in self.members:
            x, y = self.points[m.id]
            cx = WIDTH / 2 + (x - mid_x) * scale
            cy = MARGIN + 20 + room_y / 2 - (y - mid_y) * scale
            colour = STATE_COLOURS.get(m.state.value, "#000000")
            tip = f"{m.id}: {m.state.value}"
            if self_coord is not None and m.coordinate is not None and not m.is_self:
                tip += f", {ms_text(self_coord.rtt(m.coordinate))} ms from this node"
            ring = ' stroke="black" stroke-width="2"' if m.is_self else ""
            name = m.id + (" (self)" if m.is_self else "")
            # Labels on the right half read leftwards, so they stay on the map.
            label = (
                f'<text x="{cx + 9:.1f}" y="{cy + 4:.1f}"'
                if cx <= WIDTH / 2
                else f'<text x="{cx - 9:.1f}" y="{cy + 4:.1f}" text-anchor="end"'
            )
            out.append(
                f'<circle class="member" data-id="{html.escape(m.id)}" cx="{cx:.1f}" '
                f'cy="{cy:.1f}" r="{7 if m.is_self else 5}" fill="{colour}"{ring}>'
                f"<title>{html.escape(tip)}</title></circle>"
                f"{label}>{html.escape(name)}</text>"
            )
        if spans:
            bar = nice_length(room_x / scale / 4)
            length = bar * scale
            y = HEIGHT - 14
            out.append(
                f'<line class="scale" x1="{MARGIN}" y1="{y}" x2="{MARGIN + length:.1f}" '
                f'y2="{y}" stroke="black" stroke-width="2"/>'
                f'<text x="{MARGIN + length + 6:.1f}" y="{y + 4}">{ms_text(bar)} ms</text>'
            )
        return out
