"""Raw benchmark results as the bench scripts write them: the commit measured
and the JSON layout of a results file (bench/results/, read by bench/figures.py)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """The tree's short commit, with -dirty if it has changes."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def write_results(
    out: str | None,
    script: str,
    argv: list[str],
    measured: str,
    t0: float,
    rows: list[Any],
    **fields: Any,
) -> None:
    """Write a study's results file, if ``out``: the commit measured, the
    command, ``fields``, the wall time since ``t0`` and the rows.

    >>> write_results(None, "bench/x.py", [], "abc1234", 0.0, [])  # no file
    """
    doc = {
        "commit": measured,
        "command": " ".join(["python " + script, *argv]),
        **fields,
        "wall_s": round(time.perf_counter() - t0, 1),
        "results": rows,
    }
    if out:
        Path(out).write_text(json.dumps(doc, indent=1) + "\n")


def dump_runs(doc: dict[str, Any]) -> str:
    """A results file as JSON: the header indented, then ``runs`` one a line,
    so that a diff of two files shows which runs changed."""
    head = json.dumps({**doc, "runs": []}, indent=1)
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in doc["runs"])
    return head.replace('"runs": []', '"runs": [\n' + body + "\n ]") + "\n"
