"""Tables for Jupyter (HTML), IPython's terminal (pretty) and pandas."""

from __future__ import annotations

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
RTT_HEADER = "rtt (ms)"


def tags_text(tags: Any) -> str:
    """Tags as ``k=v, k=v`` in key order."""
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def ms_text(seconds: float) -> str:
    """Seconds as milliseconds, to a precision that suits the size.

    >>> ms_text(0.000213), ms_text(0.00412), ms_text(0.0853), ms_text(1.2345)
    ('0.213', '4.12', '85.3', '1234')
    """
    ms = seconds * 1000.0
    digits = 3 if ms < 1 else 2 if ms < 10 else 1 if ms < 100 else 0
    return f"{ms:.{digits}f}"


def rtt_texts(members: Sequence[Member]) -> dict[str, str] | None:
    """Each member's estimated RTT from this node (the member with
    ``is_self``) in ms, ``-`` where unknown; None when no other member's is
    known (coordinates off or not heard yet): no column to show then."""
    from clustermember._models import rtt_between

    me = next((m for m in members if m.is_self), None)
    if me is None:
        return None
    rtts = {m.id: rtt_between(me, m) for m in members}
    if all(v is None for k, v in rtts.items() if k != me.id):
        return None
    return {k: "-" if v is None else ms_text(v) for k, v in rtts.items()}


def headers(rtts: dict[str, str] | None) -> tuple[str, ...]:
    """The members table's headers: an RTT column when RTTs are known."""
    return HEADERS if rtts is None else (*HEADERS, RTT_HEADER)


def members_html(title: str, members: Sequence[Member]) -> str:
    """A table of members, states in colour, and the RTT from this node
    where coordinates are known."""
    import html  # for notebooks only: a terminal or an agent never needs it

    rtts = rtt_texts(members)
    rows = []
    for m in members:
        colour = STATE_COLOURS.get(m.state.value, "inherit")
        name = html.escape(m.id) + (" <i>(self)</i>" if m.is_self else "")
        rtt = "" if rtts is None else f'<td style="text-align:right">{rtts[m.id]}</td>'
        rows.append(
            "<tr>"
            f"<td>{name}</td><td><code>{html.escape(m.addr)}</code></td>"
            f'<td style="color:{colour};font-weight:bold">{m.state.value}</td>'
            f"<td>{m.incarnation}</td><td>{html.escape(tags_text(m.tags))}</td>{rtt}"
            "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in headers(rtts))
    return (
        f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def members_text(title: str, members: Sequence[Member]) -> str:
    """The same table as plain text."""
    rtts = rtt_texts(members)
    heads = headers(rtts)
    rows = [
        [
            m.id + (" *" if m.is_self else ""),
            m.addr,
            m.state.value,
            str(m.incarnation),
            tags_text(m.tags),
            *([] if rtts is None else [rtts[m.id]]),
        ]
        for m in members
    ]
    widths = [max(len(r[i]) for r in [list(heads), *rows]) for i in range(len(heads))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
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
    import html

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
