"""What the papers predict, to compare the simulator's measurements with.

>>> round(swim_first_detection_periods(), 3)
1.582
>>> [round(x, 3) for x in epidemic_curve(nodes=1000, fanout=3, rounds=3)]
[0.001, 0.004, 0.016, 0.062]
"""

from __future__ import annotations

import math


def swim_first_detection_periods(nodes: int | None = None) -> float:
    """Expected protocol periods until some member first probes a crashed one.

    SWIM (Das et al. 2002): each of the N-1 survivors picks the crashed
    member with probability 1/(N-1) per period, so a period finds it with
    probability q = 1 - (1 - 1/(N-1))^(N-1), which tends to 1 - 1/e, and the
    expected number of periods is 1/q -> e/(e-1) ~= 1.582.

    >>> round(swim_first_detection_periods(100), 3)
    1.577
    """
    if nodes is None or nodes <= 2:
        return math.e / (math.e - 1.0)
    q = 1.0 - (1.0 - 1.0 / (nodes - 1)) ** (nodes - 1)
    return 1.0 / q


def epidemic_curve(nodes: int, fanout: int, rounds: int) -> list[float]:
    """Fraction of nodes that know an update after each gossip round.

    Push epidemic where every informed node sends to ``fanout`` random
    members per round: a node stays uninformed through a round with
    probability exp(-fanout * x) where x is the informed fraction, so
    x[k+1] = 1 - (1 - x[k]) * exp(-fanout * x[k]), starting from one node.

    >>> epidemic_curve(nodes=10, fanout=1, rounds=0)
    [0.1]
    """
    if nodes < 1 or fanout < 1 or rounds < 0:
        raise ValueError("nodes and fanout must be positive, rounds non-negative")
    x = 1.0 / nodes
    out = [x]
    for _ in range(rounds):
        x = 1.0 - (1.0 - x) * math.exp(-fanout * x)
        out.append(x)
    return out


def epidemic_rounds_to(fraction: float, nodes: int, fanout: int) -> int:
    """Rounds the push epidemic needs to inform ``fraction`` of the nodes.

    >>> epidemic_rounds_to(0.999, nodes=10000, fanout=3)
    10
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    target = math.ceil(fraction * nodes - 1e-9) / nodes
    x, k = 1.0 / nodes, 0
    while x < target - 1e-12:
        x = 1.0 - (1.0 - x) * math.exp(-fanout * x)
        k += 1
        if k > 10000:
            break
    return k


def epidemic_continuous(nodes: int, fanout: int, interval: float, t: float) -> float:
    """Informed fraction at time t when gossip rounds are not synchronised.

    Each node gossips every ``interval`` at its own phase, and a node that
    learns an update passes it on at its next round, which on average comes
    sooner than a global round boundary: the spread is the logistic (SI)
    curve dx/dt = (fanout / interval) * x * (1 - x) from x(0) = 1/N.

    >>> round(epidemic_continuous(10000, 3, 0.1, 0.3), 3)
    0.448
    """
    if nodes < 1 or fanout < 1 or interval <= 0:
        raise ValueError("nodes and fanout must be positive, interval > 0")
    return 1.0 / (1.0 + (nodes - 1) * math.exp(-fanout * t / interval))


def idle_gossip_immediate_fraction(probe_interval: float, gossip_interval: float) -> float:
    """Chance that a node with an empty broadcast queue passes a new update on at once.

    The core arms its gossip timer only while its broadcast queue holds
    something. An idle node still runs the gossip step (sending nothing) at
    each of its timer wake-ups, in steady state once per probe period, and
    that step sets the next gossip time one ``gossip_interval`` later. An
    update arriving more than ``gossip_interval`` after that wake-up finds
    the gossip time already past and goes out at once; one arriving inside
    the window waits for the window's end. So the fraction sent at once is
    1 - gossip_interval / probe_interval (0.8 on LAN).

    >>> idle_gossip_immediate_fraction(0.5, 0.1)
    0.8
    """
    if probe_interval <= 0 or gossip_interval <= 0:
        raise ValueError("intervals must be positive")
    return max(0.0, 1.0 - gossip_interval / probe_interval)


def epidemic_core_times(
    nodes: int,
    fanout: int,
    interval: float,
    transmits: int,
    immediate: float,
    latency: tuple[float, float] = (0.0002, 0.001),
    seed: int = 1,
) -> list[float]:
    """When each node learns an update under the core's gossip cadence (Monte Carlo).

    A push epidemic with the timing rules of csrc/core rather than global
    rounds: a node that learns the update sends it to ``fanout`` random
    peers after a delay that is 0 with probability ``immediate`` (its gossip
    time had already passed) and otherwise uniform in (0, interval) (it
    waits for its pending gossip time), then again every ``interval``,
    ``transmits`` sends in all (the retransmit limit), each ``fanout`` at a
    time. Each message takes a latency uniform in ``latency``. Piggybacking
    on probes is left out. Returns the sorted times (seconds after the
    update, the source at 0) of the nodes reached.

    >>> t = epidemic_core_times(1000, 3, 0.1, 16, 0.8, seed=1)
    >>> len(t) > 990, t[0]
    (True, 0.0)
    """
    import heapq
    import random

    if nodes < 1 or fanout < 1 or interval <= 0 or transmits < 1:
        raise ValueError("nodes, fanout, interval and transmits must be positive")
    rng = random.Random(seed)
    rounds = -(-transmits // fanout)
    learned: dict[int, float] = {}
    heap: list[tuple[float, int]] = [(0.0, 0)]
    lo, hi = latency
    while heap:
        t, node = heapq.heappop(heap)
        if node in learned:
            continue
        learned[node] = t
        first = t if rng.random() < immediate else t + rng.uniform(0.0, interval)
        for k in range(rounds):
            send = first + k * interval
            for _ in range(fanout if nodes > 1 else 0):
                peer = rng.randrange(nodes - 1)
                peer += peer >= node
                if peer not in learned:
                    heapq.heappush(heap, (send + rng.uniform(lo, hi), peer))
    return sorted(learned.values())
