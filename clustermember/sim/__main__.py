"""Command line: run one simulator scenario and print its result.

python -m clustermember.sim --nodes 1000 --scenario detect --seed 1 --json
"""

from __future__ import annotations

import argparse
import json
import sys

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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timelines", action="store_true", help="include per-node timelines")
    p.add_argument("--wall", action="store_true", help="include wall time (not reproducible)")
    return p


def _text(r: ScenarioResult) -> str:
    lines = [
        f"{r.scenario}: nodes={r.nodes} seed={r.seed} loss={r.loss} profile={r.profile} "
        f"formation={r.formation} period={r.probe_interval}s -> "
        f"{'ok' if r.ok else 'NOT REACHED'}"
    ]
    lines += [f"  {k} = {v}" for k, v in r.metrics.items()]
    lines += [f"  model.{k} = {v}" for k, v in r.model.items()]
    lines.append(f"  wall = {r.wall_seconds:.2f}s (formation {r.wall_formation_seconds:.2f}s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the scenario, print; 0 if the outcome was reached."""
    args = _parser().parse_args(argv)
    if args.nodes < 1:
        _parser().error(f"--nodes must be at least 1, got {args.nodes}")
    if not 0.0 <= args.loss <= 1.0:
        _parser().error(f"--loss must be in [0, 1], got {args.loss}")
    try:
        result = run(
            args.scenario,
            nodes=args.nodes,
            seed=args.seed,
            loss=args.loss,
            profile=args.profile,
            timeout=args.timeout,
            duration=args.duration,
            formation=args.formation,
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
