"""``clustermember simdemo``: a small cluster in the deterministic simulator,
printed as a timeline: formation, a tag change, a crash and its detection, a
graceful leave. Every node runs the real protocol core; the clock is
virtual::

    python -m clustermember simdemo --nodes 6
"""

from __future__ import annotations

import sys

from clustermember import sim


def _print_events(s: sim.Simulator, t0: float, subject: int | None = None) -> None:
    """Print the events recorded since the last call, first sighting only."""
    seen: set[tuple[int, str]] = set()
    for time, _observer, subj, kind, _state, inc in s.events():
        if subject is not None and subj != subject:
            continue
        if (subj, kind) in seen:
            continue
        seen.add((subj, kind))
        print(f"  {time - t0:8.3f} s  n{subj:<3} {kind:<10} (incarnation {inc}, first seen)")


def demo(nodes: int, seed: int) -> int:
    """Run the in-memory demo; returns the process exit code."""
    if nodes < 3:
        print("error: the demo needs at least 3 nodes (--nodes 3 or more)", file=sys.stderr)
        return 2
    s = sim.Simulator(nodes, seed=seed, record_events=True)
    period = s.probe_interval
    print(f"{nodes} nodes, LAN profile (probe period {period:.1f} s), virtual time\n")

    t0 = s.now()
    s.join_all()
    if not s.run_until_condition("converged", timeout=30.0):
        print("error: the cluster did not form", file=sys.stderr)
        return 1
    print(f"formed: every node sees {nodes} alive after {s.now() - t0:.3f} s")
    s.events()

    t0 = s.now()
    s.watch(1, key="role", value="worker")
    s.set_tag(1, "role", "worker")
    s.run_until_condition("tag_fraction", timeout=10.0)
    print(f"tag role=worker on n1 seen by every node after {s.now() - t0:.3f} s")
    s.events()

    victim = nodes - 1
    t0 = s.now()
    s.watch(victim)
    s.crash(victim)
    print(f"\ncrash n{victim} (no goodbye):")
    s.run_until_condition("all_see", timeout=60.0, state="failed")
    _print_events(s, t0, victim)
    took = s.now() - t0
    print(f"every survivor marks n{victim} failed after {took:.3f} s ({took / period:.1f} periods)")

    leaver = nodes - 2
    t0 = s.now()
    s.watch(leaver)
    s.leave(leaver)
    print(f"\nn{leaver} leaves gracefully:")
    s.run_until_condition("all_see", timeout=30.0, state="left")
    _print_events(s, t0, leaver)
    print(f"every remaining node marks n{leaver} left (not failed) after {s.now() - t0:.3f} s")
    s.close()
    return 0
