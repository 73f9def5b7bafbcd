"""Deterministic simulation of thousands of clustermember nodes.

Every simulated node runs the real protocol core (csrc/core) on a virtual
clock over an in-memory network with loss, latency, partitions, crashes,
pauses and restarts. A seed reproduces a run bit for bit.

Run a whole scenario::

    >>> from clustermember import sim
    >>> r = sim.run("converge", nodes=50, seed=7)
    >>> r.ok, r.metrics["converge_periods"] < 20
    (True, True)

or drive a :class:`Simulator` directly::

    >>> s = sim.Simulator(20, seed=1)
    >>> s.join_all()
    >>> s.run_until_condition("converged", timeout=30.0)
    True
    >>> s.watch(5); s.crash(5)
    >>> s.run_until_condition("all_see", timeout=60.0, state="failed")
    True

From the shell: ``python -m clustermember.sim --nodes 1000 --scenario detect --json``.
"""

from clustermember._core import Simulator
from clustermember.sim._models import (
    epidemic_continuous,
    epidemic_core_times,
    epidemic_curve,
    epidemic_rounds_to,
    idle_gossip_immediate_fraction,
    swim_first_detection_periods,
)
from clustermember.sim._scenarios import (
    DEFAULTS,
    FORMATIONS,
    SCENARIOS,
    ScenarioResult,
    run,
)

__all__ = [
    "DEFAULTS",
    "FORMATIONS",
    "SCENARIOS",
    "ScenarioResult",
    "Simulator",
    "epidemic_continuous",
    "epidemic_core_times",
    "epidemic_curve",
    "epidemic_rounds_to",
    "idle_gossip_immediate_fraction",
    "run",
    "swim_first_detection_periods",
]
