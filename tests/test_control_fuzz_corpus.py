"""The control endpoint's fuzzer, replayed: every input of its committed
corpus and seeds (csrc/fuzz/corpus/fuzz_control, csrc/fuzz/seeds/fuzz_control)
through the same checks (tests/fuzz_control.py), without atheris, so the
plain test run holds the endpoint to what the fuzzer found."""

from __future__ import annotations

from pathlib import Path

from fuzz_control import close_harness, one_input

ROOT = Path(__file__).resolve().parent.parent


def test_control_corpus_replays() -> None:
    inputs = sorted(
        p
        for d in ("corpus", "seeds")
        for p in (ROOT / "csrc" / "fuzz" / d / "fuzz_control").glob("*")
        if p.is_file()
    )
    assert inputs, "no corpus for fuzz_control"
    try:
        for p in inputs:
            one_input(p.read_bytes())
    finally:
        close_harness()
