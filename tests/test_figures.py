"""The documented figures stay true to the raw results and to the code.

Every generated table of docs/benchmarks.md and docs/reliability.md must be
what ``bench/figures.py`` makes from the committed raw results, and the
simulator's deterministic rows of at most 1,000 nodes, re-run at the current
code, must give exactly what their raw results record: a change to the
protocol core or the simulator that moves a documented figure fails here
until the raw results, and with them the page, are made anew
(``python bench/sim_bench.py --max-nodes 1000 --timelines --out ...``, then
``python bench/figures.py --write``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import figures
from clustermember.sim.__main__ import main as sim_main

#: Wall-clock fields of a simulator result: the only ones not reproducible.
WALL = {"wall_seconds", "wall_formation_seconds"}
#: Rows left to the raw results alone: the 1,000-node partition takes about
#: 23 s of wall by itself, more than this test may cost.
SLOW = {"partition"}
PREFIX = ["python", "-m", "clustermember.sim"]


def cheap_rows() -> list[figures.SimRow]:
    """The deterministic rows re-run here: N <= 1,000, not in SLOW."""
    return [
        r
        for r in figures.sim_runs(figures.SIM_SMALL)
        if r.result["nodes"] <= 1000 and r.result["scenario"] not in SLOW
    ]


def deterministic(result: dict[str, Any]) -> dict[str, Any]:
    """A simulator result without its wall-clock fields."""
    return {k: v for k, v in result.items() if k not in WALL}


def test_every_marked_figure_is_what_the_raw_results_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = figures.main(["--check"])
    assert code == 0, capsys.readouterr().out


def test_the_cheap_rows_cover_every_scenario_of_the_matrix() -> None:
    covered = {r.result["scenario"] for r in cheap_rows()}
    assert covered == set(figures.SCENARIO_ORDER) - SLOW


@pytest.mark.parametrize(
    "row",
    cheap_rows(),
    ids=lambda r: f"{r.result['scenario']}-{r.result['nodes']}-loss{r.result['loss']:g}",
)
def test_a_simulator_row_gives_its_documented_figures_at_this_code(
    row: figures.SimRow, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = row.cli.split()
    assert argv[:3] == PREFIX, row.cli
    code = sim_main(argv[3:])
    now = deterministic(json.loads(capsys.readouterr().out))
    then = deterministic(row.result)
    assert code == (0 if then["ok"] else 1)
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    assert now == then, (
        f"{row.cli} at this code differs from {row.source} (commit {row.commit}) in "
        f"{changed}: re-run bench/sim_bench.py and bench/figures.py --write"
    )


def test_the_profile_study_gives_its_documented_figures_at_this_code() -> None:
    """One row of bench/profile_study.py (the simulator, so exact): the
    profile the page weighs as a default, at the smaller size."""
    from bench import profile_study

    doc = figures.load(figures.PROFILES)
    row = next(
        r
        for r in doc["results"]
        if r["profile"] == "1 s probes, suspicion_mult 2" and r["nodes"] == 20
    )
    seeds = len(row["detect_all_s"])
    now = profile_study.study(row["profile"], row["config"], 20, seeds, doc["watch_s"])
    assert json.loads(json.dumps(now)) == row, (
        f"bench/profile_study.py at this code differs from {figures.PROFILES}: "
        "re-run it and bench/figures.py --write"
    )


def test_the_join_goals_count_a_run_that_never_converged_as_a_miss(tmp_path: Any) -> None:
    """A join storm that did not converge within the harness's deadline is a
    run over 10 s, not a run left out; a profile Serf has no counterpart for
    is held to the 10-s bound alone."""

    def row(system: str, after: float | None, launch: float | None) -> str:
        return json.dumps(
            {
                "system": system,
                "n": 100,
                "repeat": 0,
                "method": 2,
                "converge_after_up_s": after,
                "converge_s": launch,
            }
        )

    raw = tmp_path / "join.jsonl"
    meta = {"meta": {}, "argv": ["x", "run"], "label": "made up"}
    raw.write_text(
        "\n".join(
            [
                json.dumps(meta),
                row("clustermember-lan", 0.5, 4.0),
                row("clustermember-lan", 0.6, 4.2),
                row("clustermember-lan", None, None),
                row("clustermember-lan-loss10", 3.0, 9.0),
                row("clustermember-local", 0.5, 4.0),
                row("serf-lan", 1.0, 3.0),
            ]
        )
        + "\n"
    )
    table = figures.fig_compare_join_goals([str(raw)])()
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in table.splitlines() if ln.startswith("|")}
    assert "1 did not converge" in lines["clustermember-lan"]
    assert lines["clustermember-lan"].endswith("| missed: a run over 10 s |")
    assert "met (the 10-s bound only" in lines["clustermember-lan-loss10"]
    assert "no serf-local run to compare with" in lines["clustermember-local"]
    assert lines["serf-lan"].endswith("| – |")


def test_the_profile_study_row_named_the_default_is_the_default() -> None:
    """The study names each row by its settings; the one it calls the
    default must set what the LAN profile does."""
    from bench import profile_study

    profile_study.default_row_is_the_default()
    lan = figures.load(figures.PROFILES)
    assert any(r["profile"] == profile_study.DEFAULT for r in lan["results"])


def test_the_api_table_reads_both_kinds_of_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results from before the C floor (a Python writer, the update_tag
    difference) and from after it each get the rows that describe them."""
    monkeypatch.setattr(figures, "API", "bench/results/api-65e0fcd.json")
    old = figures.fig_api()
    assert "woken through a pipe by another process" in old
    assert "without Python" not in old and "idle gaps of up to" not in old
    assert "Python overhead of `update_tag`** (difference) | **6.2 µs**" in old
    monkeypatch.setattr(figures, "API", "bench/results/api-e7a3db5.json")
    new = figures.fig_api()
    assert "by a C process (as the engine's thread writes its eventfd)" in new
    assert "a C process blocked in `epoll_wait`" in new
    assert "the Python layer of `update_tag`" in new and "(difference)" not in new
    assert "| both floors back to back (no idle gap) (200 samples each) | asyncio median" in new
    assert "| both floors with idle gaps of up to 50 ms (200 samples each) |" in new
