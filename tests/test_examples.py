"""The examples run as they are documented, so they never rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_director_keeps_going_when_a_worker_is_killed() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "director_worker.py"), "demo"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "killed worker-0 with SIGKILL" in out.stdout
    assert "worker-0 is failed, no more jobs to it" in out.stdout
    assert "all 300 jobs done" in out.stdout


def test_notebook_runs_headless() -> None:
    nbformat = __import__("pytest").importorskip("nbformat")
    nbclient = __import__("pytest").importorskip("nbclient")
    nb = nbformat.read(EXAMPLES / "inspect_cluster.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert html, "the cluster did not display as an HTML table"
    plots = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(plots) == 1, f"the figure shows {len(plots)} times, not once"
