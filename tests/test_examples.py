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
