"""The namespace rig itself: hosts reach each other, splits and isolation cut
links, heal restores them, and close removes everything it made."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.netns.rig import Rig, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def _reaches(rig: Rig, src: int, dst: int) -> bool:
    """True if host src can ping host dst (one packet, 1 s)."""
    cmd = ["ip", "netns", "exec", rig.ns(src), "ping", "-c", "1", "-W", "1", rig.addr(dst)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _eventually_reaches(rig: Rig, src: int, dst: int, deadline: float = 20.0) -> bool:
    """Poll until src reaches dst: after a link change, neighbour entries and
    bridge ports take a moment to settle."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if _reaches(rig, src, dst):
            return True
    return False


def test_rig_partitions_and_heals() -> None:
    with Rig(hosts=3) as rig:
        assert _eventually_reaches(rig, 0, 1) and _eventually_reaches(rig, 1, 2)
        rig.split([0, 1], [2])
        assert _eventually_reaches(rig, 0, 1)
        assert not _reaches(rig, 0, 2) and not _reaches(rig, 2, 1)
        rig.heal()
        assert _eventually_reaches(rig, 0, 2)
        rig.isolate(1)
        assert not _reaches(rig, 0, 1) and _eventually_reaches(rig, 0, 2)
        rig.heal()
        assert _eventually_reaches(rig, 2, 1)
        names = [rig.ns(i) for i in range(3)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert rig.prefix + "b0" not in links


def test_rig_kills_its_processes_on_close() -> None:
    rig = Rig(hosts=1)
    proc = rig.spawn(0, ["sleep", "600"])
    rig.close()
    assert proc.poll() is not None
