"""Raw benchmark results as the bench scripts write them: the commit measured
and the JSON layout of a results file (bench/results/, read by bench/figures.py)."""

from __future__ import annotations

import json
import subprocess
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


def dump_runs(doc: dict[str, Any]) -> str:
    """A results file as JSON: the header indented, then ``runs`` one a line,
    so that a diff of two files shows which runs changed."""
    head = json.dumps({**doc, "runs": []}, indent=1)
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in doc["runs"])
    return head.replace('"runs": []', '"runs": [\n' + body + "\n ]") + "\n"
