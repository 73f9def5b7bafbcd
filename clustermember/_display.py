"""Tables for Jupyter (HTML), IPython's terminal (pretty) and pandas."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from clustermember._errors import MissingDependency

if TYPE_CHECKING:
    from clustermember._models import ClusterStats, Member

STATE_COLOURS = {
    "alive": "#1a7f37",
    "suspect": "#bf8700",
    "failed": "#cf222e",
    "left": "#6e7781",
}
HEADERS = ("member", "address", "state", "incarnation", "tags")


def tags_text(tags: Any) -> str:
    """Tags as ``k=v, k=v`` in key order."""
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def members_html(title: str, members: Sequence[Member]) -> str:
    """A table of members, states in colour."""
    rows = []
    for m in members:
        colour = STATE_COLOURS.get(m.state.value, "inherit")
        name = html.escape(m.id) + (" <i>(self)</i>" if m.is_self else "")
        rows.append(
            "<tr>"
            f"<td>{name}</td><td><code>{html.escape(m.addr)}</code></td>"
            f'<td style="color:{colour};font-weight:bold">{m.state.value}</td>'
            f"<td>{m.incarnation}</td><td>{html.escape(tags_text(m.tags))}</td>"
            "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    return (
        f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def members_text(title: str, members: Sequence[Member]) -> str:
    """The same table as plain text."""
    rows = [
        [
            m.id + (" *" if m.is_self else ""),
            m.addr,
            m.state.value,
            str(m.incarnation),
            tags_text(m.tags),
        ]
        for m in members
    ]
    widths = [max(len(r[i]) for r in [list(HEADERS), *rows]) for i in range(len(HEADERS))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def stats_rows(s: ClusterStats) -> list[tuple[str, int]]:
    """The figures shown for a ClusterStats, in display order."""
    rows = [
        ("members", s.total),
        ("alive", s.alive),
        ("suspect", s.suspect),
        ("failed", s.failed),
        ("left", s.left),
        ("connections open", s.connections_open),
        ("connections idle", s.connections_idle),
        ("protocol messages in", s.messages_in),
        ("protocol messages out", s.messages_out),
        ("transport bytes in", s.bytes_in),
        ("transport bytes out", s.bytes_out),
        ("health score", s.health),
        ("incarnation", s.incarnation),
    ]
    rows += [(f"dropped: {k}", v) for k, v in sorted(s.drops.items()) if v]
    return rows


def stats_html(s: ClusterStats) -> str:
    """Stats as a two-column HTML table."""
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
        for k, v in stats_rows(s)
    )
    return f"<div><b>{html.escape(s.node_id)}: stats</b><table><tbody>{body}</tbody></table></div>"


def stats_text(s: ClusterStats) -> str:
    """Stats as aligned text."""
    rows = stats_rows(s)
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"{s.node_id}: stats"] + [f"{k.ljust(width)}  {v:,}" for k, v in rows])


def dataframe(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """A pandas DataFrame, or a clear error naming the extra to install."""
    try:
        import pandas
    except ImportError:
        raise MissingDependency(
            "to_dataframe() needs pandas, which is not installed: "
            "pip install 'clustermember[pandas]'"
        ) from None
    return pandas.DataFrame(list(rows), columns=columns)
