"""Per-layer C coverage from `llvm-cov export -summary-only` output.

    python3 scripts/coverage_summary.py build/cov/summary.json [--files] [--check]

Sums the per-file line and branch counts of each layer (csrc/core,
csrc/net, ...; headers count with their layer, the tests themselves do not)
and prints one row per layer. --check exits 1 if a layer's lines are below
its floor in FLOORS; --files also lists each file. The floors hold for the
C unit tests and pytest together (scripts/test.sh); docs/testing.md says
why each is where it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import PurePosixPath

# Line coverage, in percent, that each layer must keep (docs/testing.md):
# the figures, and where a layer is short of its figure, the level
# it had when the floors were set. A layer with no floor is reported only.
FLOORS = {"core": 95, "net": 90, "engine": 90, "sim": 80, "binding": 76}
LAYERS = ["core", "net", "engine", "sim", "binding"]


def layer_of(filename: str) -> str | None:
    """The layer a source file belongs to: the folder under csrc/."""
    parts = PurePosixPath(filename).parts
    for i, part in enumerate(parts[:-2]):
        if part == "csrc" and parts[i + 1] in LAYERS:
            return parts[i + 1]
    return None


def percent(covered: int, count: int) -> str:
    return f"{100 * covered / count:5.1f}%" if count else "    -"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="llvm-cov export -summary-only output (JSON)")
    ap.add_argument("--files", action="store_true", help="list each file too")
    ap.add_argument("--check", action="store_true", help="exit 1 if a layer is below its floor")
    args = ap.parse_args()
    with open(args.summary) as f:
        files = json.load(f)["data"][0]["files"]

    totals = {layer: [0, 0, 0, 0] for layer in LAYERS}  # lines, of, branches, of
    rows: dict[str, list[tuple[str, dict[str, dict[str, int]]]]] = {x: [] for x in LAYERS}
    for entry in files:
        layer = layer_of(entry["filename"])
        if layer is None:
            continue
        s = entry["summary"]
        t = totals[layer]
        t[0] += s["lines"]["covered"]
        t[1] += s["lines"]["count"]
        t[2] += s["branches"]["covered"]
        t[3] += s["branches"]["count"]
        rows[layer].append((entry["filename"], s))

    print(f"{'layer':<10}{'lines':>20}{'branches':>20}  floor (lines)")
    failed = []
    for layer in LAYERS:
        lines, nlines, branches, nbranches = totals[layer]
        floor = FLOORS.get(layer)
        if floor is None:
            verdict = "none"
        elif not nlines:
            verdict = f"{floor}%, not measured"
            failed.append(layer)
        elif lines * 100 >= floor * nlines:
            verdict = f"{floor}%, ok"
        else:
            verdict = f"{floor}%, BELOW"
            failed.append(layer)
        print(
            f"{layer:<10}{f'{lines}/{nlines}':>13} {percent(lines, nlines)}"
            f"{f'{branches}/{nbranches}':>13} {percent(branches, nbranches)}  {verdict}"
        )
        if args.files:
            for name, s in sorted(rows[layer]):
                if not s["lines"]["count"]:
                    continue
                short = name[name.find("csrc/") :]
                ln, br = s["lines"], s["branches"]
                print(
                    f"  {short:<34}{percent(ln['covered'], ln['count'])}"
                    f"{percent(br['covered'], br['count']):>13}"
                )
    if failed and args.check:
        print(f"C coverage below its floor: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
