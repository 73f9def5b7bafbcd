"""clustermember: cluster membership for Python services.

SWIM gossip with the Lifeguard refinements and a phi-accrual failure detector,
implemented in C. ``clustermember.sim`` runs thousands of protocol nodes on a
virtual clock::

    from clustermember import sim
    result = sim.run("detect", nodes=100, seed=1)
"""

from clustermember import _core

__version__ = "0.1.0"
WIRE_VERSION: int = _core.WIRE_VERSION

__all__ = ["WIRE_VERSION", "__version__"]
