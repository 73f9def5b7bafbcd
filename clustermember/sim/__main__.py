"""Command line: run one simulator scenario and print its result.

python -m clustermember.sim --nodes 1000 --scenario detect --seed 1 --json
python -m clustermember.sim --nodes 1000 --scenario converge --set coordinates=false
"""

from __future__ import annotations

import argparse
import json
import sys

from clustermember._agent import FALSE, TRUE
from clustermember.sim import Simulator
from clustermember.sim._scenarios import SCENARIOS, ScenarioResult, run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clustermember.sim",
        description="Run one scenario on the deterministic cluster simulator.",
    )
    p.add_argument("--nodes", "-n", type=int, required=True, help="cluster size")
    p.add_argument("--scenario", "-s", required=True, choices=list(SCENARIOS))
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss probability")
    p.add_argument("--seed", type=int, default=1, help="reproduces the run exactly")
    p.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    p.add_argument(
        "--formation",
        default="bootstrap",
        choices=["bootstrap", "join"],
        help="how scenarios other than converge form the cluster first",
    )
    p.add_argument("--timeout", type=float, help="virtual seconds to wait for the outcome")
    p.add_argument("--duration", type=float, help="falsepos/leave watch time, partition length")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set_",
        help="change one protocol setting of the profile (repeatable), e.g. coordinates=false",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timelines", action="store_true", help="include per-node timelines")
    p.add_argument("--wall", action="store_true", help="include wall time (not reproducible)")
    return p


def _text(r: ScenarioResult) -> str:
    lines = [
        f"{r.scenario}: nodes={r.nodes} seed={r.seed} loss={r.loss} profile={r.profile} "
        f"formation={r.formation} period={r.probe_interval}s"
        + "".join(f" {k}={v}" for k, v in r.settings.items())
        + " -> "
        f"{'ok' if r.ok else 'NOT REACHED'}"
    ]
    lines += [f"  {k} = {v}" for k, v in r.metrics.items()]
    lines += [f"  model.{k} = {v}" for k, v in r.model.items()]
    lines.append(f"  wall = {r.wall_seconds:.2f}s (formation {r.wall_formation_seconds:.2f}s)")
    return "\n".join(lines)


def settings(profile: str, pairs: list[str]) -> dict[str, float | int | bool]:
    """The ``--set KEY=VALUE`` pairs as the simulator's config overrides, each
    of its setting's type, and only those that change the profile; a
    ValueError naming the pair otherwise.

    >>> settings("lan", ["coordinates=off", "probe_interval=2", "history=0"])
    {'coordinates': False, 'probe_interval': 2.0}
    """
    profile_values = Simulator(1, profile=profile).config()
    kinds = {k: type(v) for k, v in profile_values.items()}
    out: dict[str, float | int | bool] = {}
    seen: set[str] = set()
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key, text = key.strip(), text.strip().lower()
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: give KEY=VALUE, e.g. coordinates=false")
        if key not in kinds:
            raise ValueError(
                f"--set {pair!r}: {key!r} is not a protocol setting (one of {', '.join(kinds)})"
            )
        if key in seen:
            raise ValueError(f"--set {key} given twice; give each setting once")
        seen.add(key)
        kind = kinds[key]
        value: float | int | bool
        try:
            if kind is bool:
                if text not in TRUE + FALSE:
                    raise ValueError
                value = text in TRUE
            elif "_" in text:  # int() and float() would read 1_0 as 10
                raise ValueError
            else:
                value = kind(text)
        except ValueError:
            words = {bool: "true or false", int: "a whole number"}.get(kind, "a number")
            raise ValueError(f"--set {pair!r}: {key} must be {words}") from None
        if value != profile_values[key]:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the scenario, print; 0 if the outcome was reached."""
    args = _parser().parse_args(argv)
    if args.nodes < 1:
        _parser().error(f"--nodes must be at least 1, got {args.nodes}")
    if not 0.0 <= args.loss <= 1.0:
        _parser().error(f"--loss must be in [0, 1], got {args.loss}")
    try:
        config = settings(args.profile, args.set_)
        result = run(
            args.scenario,
            nodes=args.nodes,
            seed=args.seed,
            loss=args.loss,
            profile=args.profile,
            timeout=args.timeout,
            duration=args.duration,
            formation=args.formation,
            config=config or None,
        )
    except (ValueError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(timelines=args.timelines, wall=args.wall)))
    else:
        print(_text(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
