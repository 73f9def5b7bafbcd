"""Markdown tables and PNG plots from a results file of `python -m bench.compare run`.

print(report(Path("bench/compare/results.jsonl"), Path("docs/img")))
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.compare.adapters import UP_POLL

Row = dict[str, Any]

# (title, unit, getter, lower is better, polling step whose sweep time is shown beside it)
Metric = tuple[str, str, Callable[[Row], float | None], bool, str | None]
METRICS: list[Metric] = [
    (
        "up: every joiner's control endpoint answers, from the joiners' launch",
        "s",
        lambda r: r.get("up_s"),
        True,
        "up",
    ),
    (
        "join complete: the seed lists every joiner alive, from the joiners' launch",
        "s",
        lambda r: r.get("joined_s"),
        True,
        "join",
    ),
    (
        "converge: every node sees all N alive, from the joiners' launch",
        "s",
        lambda r: r.get("converge_s"),
        True,
        "converge",
    ),
    (
        "converge, from the moment every process was up",
        "s",
        lambda r: r.get("converge_after_up_s"),
        True,
        "converge",
    ),
    (
        "detect: first survivor marks the killed node failed",
        "s",
        lambda r: r.get("detect_first_s"),
        True,
        "detect",
    ),
    (
        "detect: every survivor marks it failed",
        "s",
        lambda r: r.get("detect_all_s"),
        True,
        "detect",
    ),
    ("leave: every node sees it left", "s", lambda r: r.get("leave_s"), True, "leave"),
    (
        "tag: every node sees the new tag, clock started before the call",
        "s",
        lambda r: r.get("tag_s"),
        True,
        "tag",
    ),
    (
        "tag: the call returned (Serf answers once the update is broadcast)",
        "s",
        lambda r: r.get("tag_call_returned_s"),
        True,
        None,
    ),
    (
        "falsepos: suspicion episodes, no faults",
        "count",
        lambda r: (r.get("falsepos") or {}).get("suspect_episodes"),
        True,
        None,
    ),
    (
        "falsepos: failure episodes, no faults",
        "count",
        lambda r: (r.get("falsepos") or {}).get("failed_episodes"),
        True,
        None,
    ),
    (
        "busy (CPU hog on the agent's core): suspicion episodes",
        "count",
        lambda r: (r.get("busy_hog") or {}).get("suspect_episodes"),
        True,
        None,
    ),
    (
        "busy (CPU hog on the agent's core): failure episodes",
        "count",
        lambda r: (r.get("busy_hog") or {}).get("failed_episodes"),
        True,
        None,
    ),
    (
        "busy thread (Python systems: a spinning thread in the agent): suspicion episodes",
        "count",
        lambda r: (r.get("busy_thread") or {}).get("suspect_episodes"),
        True,
        None,
    ),
    (
        "busy thread: failure episodes",
        "count",
        lambda r: (r.get("busy_thread") or {}).get("failed_episodes"),
        True,
        None,
    ),
    ("cost: RSS per node", "MiB", lambda r: (r.get("cost") or {}).get("rss_mib"), True, None),
    (
        "cost: CPU per node",
        "CPU s/min",
        lambda r: (r.get("cost") or {}).get("cpu_s_per_min"),
        True,
        None,
    ),
    (
        "cost: bytes sent per node, every port of the process",
        "B/s",
        lambda r: (r.get("cost") or {}).get("bytes_per_s"),
        True,
        None,
    ),
]


def _earlier(title: str, unit: str, *path: str) -> Metric:
    """A metric of the earlier method: the value at path (keys into nested
    dicts) of a row, no polling sweep beside it."""

    def get(r: Row) -> float | None:
        for k in path[:-1]:
            r = r.get(k) or {}
        return r.get(path[-1])

    return (title, unit, get, True, None)


# The metrics of rows measured by the earlier method (before issue 17, no
# "method" field), as docs/benchmarks.md keeps them: "Superseded".
EARLIER_METRICS: list[Metric] = [
    _earlier("converge: every node sees all N alive, from the joiners' launch", "s", "converge_s"),
    _earlier("converge, from the moment every process was up", "s", "converge_after_ready_s"),
    _earlier("detect: first survivor marks the killed node failed", "s", "detect_first_s"),
    _earlier("detect: every survivor marks it failed", "s", "detect_all_s"),
    _earlier("leave: every node sees it left", "s", "leave_s"),
    _earlier("tag: every node sees the new tag", "s", "tag_s"),
    _earlier(
        "falsepos: changes away from alive, no faults", "count", "falsepos", "away_from_alive"
    ),
    _earlier("falsepos: false failures, no faults", "count", "falsepos", "to_failed"),
    _earlier(
        "busy: changes away from alive while one process is CPU-starved",
        "count",
        "busy",
        "away_from_alive",
    ),
    _earlier("busy: false failures", "count", "busy", "to_failed"),
    _earlier("cost: RSS per node", "MiB", "cost", "rss_mib"),
    _earlier("cost: CPU per node", "CPU s/min", "cost", "cpu_s_per_min"),
    _earlier("cost: bytes sent per node", "B/s", "cost", "bytes_per_s"),
]

ORDER = [
    "clustermember-lan",
    "clustermember-lan-1s",
    "clustermember-lan-1s-m2",
    "clustermember-lan-1s-m1",
    "clustermember-lan-1s-m1k1",
    "clustermember-lan-500ms",
    "clustermember-local",
    "clustermember-lan-loss10",
    "serf-lan",
    "serf-local",
    "swim-protocol",
]
RATIO = {
    "clustermember-lan": "serf-lan",
    "clustermember-lan-1s": "serf-lan",
    "clustermember-lan-1s-m2": "serf-lan",
    "clustermember-lan-1s-m1": "serf-lan",
    "clustermember-lan-1s-m1k1": "serf-lan",
    "clustermember-lan-500ms": "serf-lan",
    "clustermember-local": "serf-local",
}


def detect_per_byte(rows: list[Row]) -> list[tuple[str, int, float, float, int]]:
    """(system, N, detect-all s, bytes/s per node, runs): medians over the
    runs of each system and N that measured both."""
    out = []
    for (s, n), runs in sorted(
        collect(rows).items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1])
    ):
        pairs = [
            (r["detect_all_s"], r["cost"]["bytes_per_s"])
            for r in runs
            if r.get("detect_all_s") is not None and (r.get("cost") or {}).get("bytes_per_s")
        ]
        if pairs:
            out.append(
                (
                    s,
                    n,
                    statistics.median(p[0] for p in pairs),
                    statistics.median(p[1] for p in pairs),
                    len(pairs),
                )
            )
    return out


def load(path: Path) -> tuple[list[dict[str, Any]], list[Row]]:
    """The meta lines and the result rows of a results file."""
    metas, rows = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        (metas if "meta" in obj else rows).append(obj)
    return metas, rows


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "count":
        return f"{v:g}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"


def _cell(vals: list[float], unit: str) -> str:
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return _fmt(med, unit)
    return f"{_fmt(med, unit)} ({_fmt(min(vals), unit)}–{_fmt(max(vals), unit)})"


def _sweep(rows: list[Row], step: str) -> str:
    """The polling sweep time of a step over runs: median of the runs'
    medians, and the longest sweep, in ms."""
    if step == "up":  # each agent's endpoint is tried on its own, not swept
        return f" [tried every {UP_POLL * 1000:.0f} ms]"
    meds = [r["sweep"][step]["median_s"] for r in rows if step in (r.get("sweep") or {})]
    tops = [r["sweep"][step]["max_s"] for r in rows if step in (r.get("sweep") or {})]
    if not meds:
        return ""
    med, top = statistics.median(meds) * 1000, max(tops) * 1000
    return f" [sweep {med:.1f}, max {top:.{1 if top < 10 else 0}f} ms]"


def collect(rows: list[Row]) -> dict[tuple[str, int], list[Row]]:
    by: dict[tuple[str, int], list[Row]] = defaultdict(list)
    for r in rows:
        by[(r["system"], r["n"])].append(r)
    return by


def tables(
    rows: list[Row],
    metrics: list[Metric] = METRICS,
) -> str:
    """One Markdown table per metric: median (min–max) per system and N."""
    by = collect(rows)
    systems = [s for s in ORDER if any(k[0] == s for k in by)]
    ns = sorted({k[1] for k in by})
    out = []
    for title, unit, get, _, step in metrics:
        head = ["system"] + [f"N = {n}" for n in ns]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in systems:
            cells = []
            for n in ns:
                runs = by.get((s, n), [])
                vals = [v for v in (get(r) for r in runs) if v is not None]
                cells.append(_cell(vals, unit) + (_sweep(runs, step) if step and vals else ""))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        for cm, serf in RATIO.items():
            if cm in systems and serf in systems:
                cells = []
                for n in ns:
                    a = [v for v in (get(r) for r in by.get((cm, n), [])) if v is not None]
                    b = [v for v in (get(r) for r in by.get((serf, n), [])) if v is not None]
                    if a and b and statistics.median(b) > 0:
                        cells.append(f"{statistics.median(a) / statistics.median(b):.2f}")
                    elif a and b:
                        cells.append("0 vs 0" if statistics.median(a) == 0 else "–")
                    else:
                        cells.append("–")
                lines.append(f"| ratio {cm} / {serf} | " + " | ".join(cells) + " |")
        runs = {len(by.get((s, n), [])) for s in systems for n in ns}
        note = "; [the polling sweep: median, longest]" if step else ""
        out.append(
            f"**{title}** ({unit}; median (min–max) over "
            f"{'/'.join(map(str, sorted(runs)))} runs{note})\n"
        )
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def plots(rows: list[Row], img: Path, prefix: str = "compare") -> list[Path]:
    """detect (all survivors) and converge against N, every system, and
    detection against bytes: PREFIX_detect_vs_n.png, PREFIX_converge_vs_n.png
    and PREFIX_detect_vs_bytes.png in img."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = collect(rows)
    systems = [s for s in ORDER if any(k[0] == s for k in by)]
    ns = sorted({k[1] for k in by})
    made = []
    for key, title, fname in (
        ("detect_all_s", "Killed node marked failed by every survivor", "detect_vs_n"),
        ("converge_s", "Every node sees all N alive (from launch)", "converge_vs_n"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for s in systems:
            xs, med, lo, hi = [], [], [], []
            for n in ns:
                vals = [r[key] for r in by.get((s, n), []) if r.get(key) is not None]
                if vals:
                    xs.append(n)
                    m = statistics.median(vals)
                    med.append(m)
                    lo.append(m - min(vals))
                    hi.append(max(vals) - m)
            if xs:
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=s)
        ax.set_xlabel("nodes (N)")
        ax.set_ylabel("seconds (median, min–max bars)")
        ax.set_title(title)
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        img.mkdir(parents=True, exist_ok=True)
        path = img / f"{prefix}_{fname}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    points = detect_per_byte(rows)
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.6))
        marks = {n: m for n, m in zip(ns, "os^Dv", strict=False)}
        colours = {s: f"C{i}" for i, s in enumerate(ORDER)}
        for s, n, detect, bps, _ in points:
            ax.scatter(bps, detect, marker=marks.get(n, "o"), color=colours[s])
            ax.annotate(
                f"{n}", (bps, detect), textcoords="offset points", xytext=(4, 3), fontsize=7
            )
        for s in dict.fromkeys(p[0] for p in points):
            ax.scatter([], [], color=colours[s], label=s)
        ax.set_xlabel("bytes sent per node per second (every port, IP headers included)")
        ax.set_ylabel("detect: every survivor (s)")
        ax.set_title("Detection against bytes (label: N; lower left is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = img / f"{prefix}_detect_vs_bytes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def earlier_report(results: Path) -> str:
    """The tables of the rows measured by the earlier method (no plots):
    the versions, one table per metric, and how long a polling sweep took."""
    metas, rows = load(results)
    ok = [r for r in rows if r.get("method") != 2 and "error" not in r]
    parts = []
    if metas:
        parts.append("Versions: " + json.dumps(metas[-1]["meta"]) + "\n")
    parts.append(tables(ok, EARLIER_METRICS))
    res = [r["poll_resolution_s"] for r in ok if r.get("poll_resolution_s") is not None]
    if res:
        parts.append(
            f"\nPolling: one sweep of every node's view took {statistics.median(res) * 1000:.1f}"
            f" ms median (max {max(res) * 1000:.1f} ms) while timing."
        )
    return "\n".join(parts)


def report(results: Path | list[Path], img: Path, prefix: str = "compare") -> str:
    """Tables of every metric and the plots (see plots) of one or more
    results files, their runs pooled."""
    metas: list[dict[str, Any]] = []
    rows: list[Row] = []
    for path in [results] if isinstance(results, Path) else results:
        m, r = load(path)
        metas += m
        rows += r
    old = [r for r in rows if r.get("method") != 2]
    rows = [r for r in rows if r.get("method") == 2]
    errors = [r for r in rows if "error" in r]
    ok = [r for r in rows if "error" not in r]
    parts = []
    if metas:
        parts.append("Versions: " + json.dumps(metas[-1]["meta"]) + "\n")
        if metas[-1].get("label"):
            parts.append(f"Label: {metas[-1]['label']}\n")
    if old:
        parts.append(
            f"({len(old)} rows measured by the earlier method, before the two systems "
            "were measured alike, are left out: see docs/benchmarks.md.)\n"
        )
    parts.append(tables(ok))
    if errors:
        parts.append("Runs that failed:\n")
        parts += [f"- {r['system']} N={r['n']} repeat {r['repeat']}: {r['error']}" for r in errors]
    for p in plots(ok, img, prefix):
        parts.append(f"\nwrote {p}")
    return "\n".join(parts)
