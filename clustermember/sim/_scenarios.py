"""The simulator's scenarios: each builds a cluster, does one thing to it and
measures, in virtual time, how the protocol answers.

Every scenario but ``converge`` first forms the cluster on a clean network
and lets it settle until the gossip formation caused has drained; ``loss``
then applies from the scenario's trigger on. Formation is ``bootstrap`` by
default (every node gets the full table at once as a join reply, see
``Simulator.bootstrap``) or ``join`` (all nodes join through n0 and run until
every node sees every node alive, which is what ``converge`` measures). In
``converge`` formation is what is measured, so ``loss`` applies throughout.

>>> from clustermember import sim
>>> r = sim.run("detect", nodes=20, seed=1)
>>> r.ok, r.metrics["all_failed_s"] < 10
(True, True)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustermember._core import Simulator, retransmit_limit
from clustermember.sim._models import (
    epidemic_continuous,
    epidemic_core_times,
    epidemic_curve,
    epidemic_rounds_to,
    idle_gossip_immediate_fraction,
    swim_first_detection_periods,
)

#: How long formation may take before a scenario gives up, in virtual seconds.
FORM_TIMEOUT = 300.0
#: After formation, run until every broadcast queue is empty (the alive
#: records formation queued have been gossiped their retransmit limit), so
#: the measured event meets a cluster in steady state; at least SETTLE_MIN,
#: at most SETTLE_MAX virtual seconds, checked every SETTLE_STEP.
SETTLE_MIN, SETTLE_MAX, SETTLE_STEP = 1.0, 120.0, 0.5
#: How the cluster is formed before every scenario but ``converge``.
FORMATIONS = ("bootstrap", "join")
#: One-way network latency of every scenario, uniform in (min, max) seconds.
LATENCY = (0.0002, 0.001)
#: Tag the ``tag`` scenario sets.
TAG_KEY, TAG_VALUE = "role", "tagged"

Number = float | int | None


@dataclass
class ScenarioResult:
    """What one scenario run measured.

    ``metrics`` holds times in virtual seconds (``*_s``) next to the same
    times in protocol periods (``*_periods``), and counts. ``timelines`` maps
    a name to one entry per node: virtual seconds after the scenario's
    trigger, or None if that node never got there (or is the subject).

    >>> r = run("tag", nodes=10, seed=2)
    >>> seen = r.timelines["tag_seen"]
    >>> r.ok, sum(t is not None for t in seen), seen[r.metrics["node"]]
    (True, 9, None)
    """

    scenario: str
    nodes: int
    seed: int
    loss: float
    profile: str
    probe_interval: float
    ok: bool
    metrics: dict[str, Number] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    timelines: dict[str, list[float | None]] = field(default_factory=dict)
    network: dict[str, int] = field(default_factory=dict)
    formation: str = "join"
    #: The profile's settings changed for this run (``run(config=...)``).
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    wall_formation_seconds: float = 0.0

    def to_dict(self, timelines: bool = False, wall: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; deterministic unless ``wall`` is set.

        >>> sorted(run("converge", nodes=5, seed=1).to_dict())[:3]
        ['formation', 'loss', 'metrics']
        """
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "nodes": self.nodes,
            "seed": self.seed,
            "loss": self.loss,
            "profile": self.profile,
            "probe_interval_s": self.probe_interval,
            "formation": self.formation,
            "ok": self.ok,
            "metrics": self.metrics,
            "model": self.model,
            "network": self.network,
        }
        if self.settings:
            out["settings"] = dict(self.settings)
        if timelines:
            out["timelines"] = self.timelines
        if wall:
            out["wall_seconds"] = round(self.wall_seconds, 3)
            out["wall_formation_seconds"] = round(self.wall_formation_seconds, 3)
        return out


class _Run:
    """One scenario's simulator and the bookkeeping every scenario shares."""

    def __init__(
        self,
        scenario: str,
        nodes: int,
        seed: int,
        loss: float,
        profile: str,
        config: dict[str, Any] | None,
        formation: str = "bootstrap",
    ) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {loss}")
        self.sim = Simulator(
            nodes,
            seed=seed,
            loss=loss if scenario == "converge" else 0.0,
            latency=LATENCY,
            profile=profile,
            config=config,
        )
        self.rng = random.Random(seed)
        self.period = self.sim.probe_interval
        self.result = ScenarioResult(
            scenario=scenario,
            nodes=nodes,
            seed=seed,
            loss=loss,
            profile=profile,
            probe_interval=self.period,
            ok=False,
            formation="join" if scenario == "converge" else formation,
            settings=dict(config or {}),
        )
        self.loss = loss
        self.wall0 = time.perf_counter()

    def put(self, name: str, seconds: float | None) -> None:
        """Record a time as ``name_s`` and ``name_periods``."""
        m = self.result.metrics
        m[name + "_s"] = None if seconds is None else round(seconds, 6)
        m[name + "_periods"] = None if seconds is None else round(seconds / self.period, 3)

    def form(self) -> bool:
        """Form one cluster (bootstrap or join through n0), then let it settle.

        Records ``formed``, ``formed_at_s`` (virtual time formation took: 0
        for bootstrap), ``settle_s`` (virtual time until every broadcast
        queue was empty) and ``queued_at_trigger`` (broadcasts still queued
        when the scenario starts: 0 unless SETTLE_MAX ran out).
        """
        m = self.result.metrics
        t0 = self.sim.now()
        if self.result.formation == "bootstrap":
            self.sim.bootstrap()
            ok = self.sim.run_until_condition("converged", 0.0)
        else:
            self.sim.join_all(0)
            ok = self.sim.run_until_condition("converged", FORM_TIMEOUT)
        m["formed"] = ok
        m["formed_at_s"] = round(self.sim.now() - t0, 6)
        if ok:
            t1 = self.sim.now()
            self.sim.run_for(SETTLE_MIN)
            while self.sim.queued() and self.sim.now() - t1 < SETTLE_MAX:
                self.sim.run_for(SETTLE_STEP)
            m["settle_s"] = round(self.sim.now() - t1, 6)
            m["queued_at_trigger"] = self.sim.queued()
        self.result.wall_formation_seconds = time.perf_counter() - self.wall0
        return ok

    def victim(self) -> int:
        """A node other than the seed node, chosen by the run's seed."""
        n = self.sim.size
        return self.rng.randrange(1, n) if n > 1 else 0

    def relative(self, times: list[float | None], t0: float) -> list[float | None]:
        return [None if t is None else round(t - t0, 6) for t in times]

    def finish(self) -> ScenarioResult:
        st = self.sim.stats()
        self.result.network = {
            k: st[k]
            for k in (
                "datagrams_sent",
                "datagrams_lost",
                "datagrams_blocked",
                "bytes_sent",
                "streams_sent",
            )
        }
        self.sim.close()
        return self.result


def _quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of values (nearest rank), None if empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _converge(r: _Run, timeout: float, **_: Any) -> None:
    r.sim.join_all(0)
    ok = r.sim.run_until_condition("converged", timeout)
    times = r.sim.converged_times()
    r.result.ok = ok
    r.result.timelines["converged"] = times
    done = [t for t in times if t is not None]
    r.put("converge", max(done) if ok else None)
    r.put("median_node", _quantile(done, 0.5))
    r.result.metrics["nodes_converged"] = len(done)


def _detect(r: _Run, timeout: float, **_: Any) -> None:
    if not r.form():
        return
    victim = r.victim()
    r.sim.watch(victim)
    r.sim.reset_event_counts()
    r.sim.set_loss(r.loss)
    t0 = r.sim.now()
    r.sim.crash(victim)
    ok = r.sim.run_until_condition("all_see", timeout, state="failed")
    suspect = r.relative(r.sim.first_seen("suspect"), t0)
    failed = r.relative(r.sim.first_seen("failed"), t0)
    seen_failed = [t for t in failed if t is not None]
    seen_suspect = [t for t in suspect if t is not None]
    r.result.ok = ok
    r.result.metrics["victim"] = victim
    r.put("first_suspect", min(seen_suspect, default=None))
    r.put("first_failed", min(seen_failed, default=None))
    r.put("all_failed", max(seen_failed) if ok else None)
    r.result.metrics["nodes_marked_failed"] = len(seen_failed)
    r.result.metrics["false_failures"] = r.sim.event_counts()["failed"] - len(seen_failed)
    r.result.model = {
        "swim_first_detection_periods": round(swim_first_detection_periods(r.sim.size), 3),
        "note": "SWIM counts periods until some member's probe of the crashed node "
        "fails; here a failed probe turns into a suspicion at the end of that "
        "probe's period, so first_suspect is about one period more than the "
        "wait for the first prober.",
    }
    r.result.timelines["suspect"] = suspect
    r.result.timelines["failed"] = failed


def _leave(r: _Run, timeout: float, duration: float, **_: Any) -> None:
    if not r.form():
        return
    leaver = r.victim()
    r.sim.watch(leaver)
    r.sim.set_loss(r.loss)
    t0 = r.sim.now()
    r.sim.leave(leaver)
    ok = r.sim.run_until_condition("all_see", timeout, state="left")
    left = r.relative(r.sim.first_seen("left"), t0)
    seen = [t for t in left if t is not None]
    r.put("first_left", min(seen, default=None))
    r.put("all_left", max(seen) if ok else None)
    # Long after, the failure detector must not relabel a left node failed.
    r.sim.run_for(duration)
    counts = r.sim.watch_counts()
    ever_failed = sum(t is not None for t in r.sim.first_seen("failed"))
    r.result.metrics["leaver"] = leaver
    r.result.metrics["left_at_end"] = counts["seeing"]["left"]
    r.result.metrics["ever_failed"] = ever_failed
    r.result.ok = ok and ever_failed == 0 and counts["seeing"]["left"] == r.sim.size - 1
    r.result.timelines["left"] = left


def _tag(r: _Run, timeout: float, **_: Any) -> None:
    if not r.form():
        return
    node = r.victim()
    r.sim.watch(node, TAG_KEY, TAG_VALUE)
    r.sim.set_loss(r.loss)
    t0 = r.sim.now()
    r.sim.set_tag(node, TAG_KEY, TAG_VALUE)
    ok = r.sim.run_until_condition("tag_fraction", timeout, fraction=1.0)
    seen = r.relative(r.sim.tag_times(), t0)
    times = [t for i, t in enumerate(seen) if i != node and t is not None]
    observers = r.sim.size - 1
    r.result.ok = ok
    r.result.metrics["node"] = node
    r.result.metrics["nodes_seen"] = len(times)
    for q, name in ((0.5, "t50"), (0.9, "t90"), (0.99, "t99"), (0.999, "t999")):
        need = math.ceil(q * observers - 1e-9)
        r.put(name, sorted(times)[need - 1] if 0 < need <= len(times) else None)
    r.put("t100", max(times) if ok and times else None)
    r.result.timelines["tag_seen"] = seen
    _epidemic(r, times, observers)


def _sup_distance(a: list[float], b: list[float]) -> float:
    """Largest gap between the empirical distribution functions of a and b."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(a) or j < len(b):
        t = min(a[i] if i < len(a) else math.inf, b[j] if j < len(b) else math.inf)
        while i < len(a) and a[i] <= t:
            i += 1
        while j < len(b) and b[j] <= t:
            j += 1
        gap = max(gap, abs(i / max(1, len(a)) - j / max(1, len(b))))
    return gap


def _epidemic(r: _Run, times: list[float], observers: int) -> None:
    """Measured spread against the push model (synchronous rounds and
    logistic) and against the same push epidemic with the core's gossip
    cadence (epidemic_core_times: an idle node forwards at once with
    probability 1 - gossip_interval/probe_interval)."""
    cfg = r.sim.config()
    gossip, fanout = cfg["gossip_interval"], int(cfg["gossip_nodes"])
    n = r.sim.size
    rounds = max(1, math.ceil((max(times, default=0.0)) / gossip))
    measured = [(1 + sum(t <= k * gossip + 1e-9 for t in times)) / n for k in range(rounds + 1)]
    model = epidemic_curve(n, fanout, rounds)
    rounds_999 = next(
        (k for k, x in enumerate(measured) if x >= math.ceil(0.999 * n - 1e-9) / n), None
    )
    r.result.model = {
        "gossip_interval_s": gossip,
        "fanout": fanout,
        "measured_fraction_per_round": [round(x, 4) for x in measured],
        "epidemic_fraction_per_round": [round(x, 4) for x in model],
        "continuous_fraction_per_round": [
            round(epidemic_continuous(n, fanout, gossip, k * gossip), 4) for k in range(rounds + 1)
        ],
        "max_abs_difference": round(
            max(abs(a - b) for a, b in zip(measured, model, strict=True)), 4
        ),
        "rounds_to_99.9_measured": rounds_999,
        "rounds_to_99.9_epidemic": epidemic_rounds_to(0.999, n, fanout),
    }
    if n < 2:
        return
    limit = retransmit_limit(cfg, n)
    immediate = idle_gossip_immediate_fraction(cfg["probe_interval"], gossip)
    core = epidemic_core_times(n, fanout, gossip, limit, immediate, LATENCY, r.result.seed)[1:]

    def quantiles(ts: list[float]) -> dict[str, float | None]:
        s = sorted(ts)
        out: dict[str, float | None] = {}
        for q, name in ((0.5, "t50"), (0.9, "t90"), (0.99, "t99"), (0.999, "t999")):
            need = math.ceil(q * observers - 1e-9)
            out[name] = round(s[need - 1], 6) if 0 < need <= len(s) else None
        return out

    r.result.model.update(
        {
            "core_cadence_immediate_fraction": round(immediate, 4),
            "core_cadence_retransmit_limit": limit,
            "core_cadence_fraction_per_round": [
                round((1 + sum(t <= k * gossip + 1e-9 for t in core)) / n, 4)
                for k in range(rounds + 1)
            ],
            "core_cadence_quantiles_s": quantiles(core),
            "measured_quantiles_s": quantiles(times),
            "core_cadence_max_cdf_difference": round(_sup_distance(times, core), 4),
        }
    )


def _falsepos(r: _Run, duration: float, **_: Any) -> None:
    if not r.form():
        return
    r.sim.reset_event_counts()
    before = [r.sim.node_stats(i) for i in range(r.sim.size)]
    r.sim.set_loss(r.loss)
    r.sim.run_for(duration)
    counts = r.sim.event_counts()
    after = [r.sim.node_stats(i) for i in range(r.sim.size)]
    refutations = sum(
        a["refutations"] - b["refutations"]
        for a, b in zip(after, before, strict=True)
        if a is not None and b is not None  # None: a node that is down
    )
    m = r.result.metrics
    m["duration_s"] = duration
    m["duration_periods"] = round(duration / r.period, 3)
    m["alive_to_suspect"] = counts["suspect"]
    m["to_failed"] = counts["failed"]
    m["recovered"] = counts["recovered"]
    m["refutations"] = refutations
    m["alive_at_end"] = sum(c == r.sim.size for c in r.sim.alive_counts())
    r.result.ok = counts["failed"] == 0


def _partition(r: _Run, timeout: float, duration: float, **_: Any) -> None:
    if not r.form():
        return
    n = r.sim.size
    half = n // 2
    sides = [0] * half + [1] * (n - half)
    r.sim.set_loss(r.loss)
    start = r.sim.now()
    r.sim.partition(sides, start, start + duration)
    r.sim.run_until(start + duration)
    own = [half if s == 0 else n - half for s in sides]
    alive = r.sim.alive_counts()
    m = r.result.metrics
    m["partition_s"] = duration
    m["nodes_split_at_heal"] = sum(a == o for a, o in zip(alive, own, strict=True))
    heal = r.sim.now()
    r.sim.reset_converged()
    ok = r.sim.run_until_condition("converged", timeout)
    times = r.relative(r.sim.converged_times(), heal)
    r.result.ok = ok
    r.put("heal", max(t for t in times if t is not None) if ok else None)
    r.result.timelines["converged_after_heal"] = times


ScenarioFn = Callable[..., None]
SCENARIOS: dict[str, ScenarioFn] = {
    "converge": _converge,
    "detect": _detect,
    "leave": _leave,
    "tag": _tag,
    "falsepos": _falsepos,
    "partition": _partition,
}

#: Per-scenario defaults for ``timeout`` (how long to wait for the outcome)
#: and ``duration`` (how long the scenario's condition lasts), in seconds.
DEFAULTS: dict[str, dict[str, float]] = {
    "converge": {"timeout": 300.0, "duration": 0.0},
    "detect": {"timeout": 120.0, "duration": 0.0},
    "leave": {"timeout": 60.0, "duration": 30.0},
    "tag": {"timeout": 60.0, "duration": 0.0},
    "falsepos": {"timeout": 0.0, "duration": 600.0},
    "partition": {"timeout": 120.0, "duration": 30.0},
}


def run(
    scenario: str,
    nodes: int,
    seed: int = 1,
    loss: float = 0.0,
    profile: str = "lan",
    config: dict[str, Any] | None = None,
    timeout: float | None = None,
    duration: float | None = None,
    formation: str = "bootstrap",
) -> ScenarioResult:
    """Run one scenario and return what it measured.

    scenario: converge, detect, leave, tag, falsepos or partition.
    formation: how every scenario but converge forms its cluster first:
    ``bootstrap`` (every node gets the full table as a join reply) or
    ``join`` (all join through n0, as converge measures).
    timeout: virtual seconds to wait for the outcome (scenario default).
    duration: falsepos's observation time, partition's split length, or how
    long leave keeps watching after everyone saw the leave.

    >>> r = run("leave", nodes=10, seed=3, duration=5.0)
    >>> r.ok, r.metrics["ever_failed"]
    (True, 0)
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be a positive integer, got {nodes!r}")
    d = DEFAULTS[scenario]
    timeout = d["timeout"] if timeout is None else timeout
    duration = d["duration"] if duration is None else duration
    if timeout < 0 or duration < 0:
        raise ValueError("timeout and duration must not be negative")
    if formation not in FORMATIONS:
        raise ValueError(f"unknown formation {formation!r}: expected bootstrap or join")
    r = _Run(scenario, nodes, seed, loss, profile, config, formation)
    try:
        SCENARIOS[scenario](r, timeout=timeout, duration=duration)
    finally:
        r.result.wall_seconds = time.perf_counter() - r.wall0
    return r.finish()
