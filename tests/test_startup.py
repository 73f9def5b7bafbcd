"""What an agent imports at start-up. A join storm starts many agents at
once, each importing the package: the modules that only some features use
(queries, explanations, pictures, HTML, TCP control tokens, suggestions for
a misspelt name) are imported when first used, not by every agent."""

from __future__ import annotations

import ast
import subprocess
import sys

# Imported only when a feature needs them. A module the interpreter already
# imports without the package (by asyncio and argparse, or by this machine's
# site start-up) is left out of the check: the package cannot avoid it.
DEFERRED = (
    "clustermember._coordmap",
    "clustermember._explain",
    "clustermember._metrics",
    "clustermember._overrides",
    "clustermember._queries",
    "clustermember._timeline",
    "difflib",
    "hmac",
    "html",
    "secrets",
)
# Left out though imported lazily: hashlib, which every node needs once it
# starts (its transport settings), and tempfile, which an agent needs for
# its control socket when XDG_RUNTIME_DIR is unset. Deferring them keeps
# only the bare import cheaper. secrets (and hmac through it) is in the same
# case once a node starts (its seed), but stays listed: neither the import
# nor an agent's settings path needs it.


def _modules(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code``, which prints
    ``sorted(sys.modules)`` once it is done."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(ast.literal_eval(done.stdout))


def _checked() -> list[str]:
    baseline = _modules("import asyncio, argparse, sys; print(sorted(sys.modules))")
    checked = [m for m in DEFERRED if m not in baseline]
    # The package's own modules are never in the baseline: the check has teeth.
    assert {m for m in DEFERRED if m.startswith("clustermember.")} <= set(checked)
    return checked


def test_the_agent_entry_point_imports_no_deferred_module() -> None:
    loaded = _modules("import clustermember.__main__, sys; print(sorted(sys.modules))")
    assert "clustermember._membership" in loaded  # the import itself went as expected
    early = sorted(m for m in _checked() if m in loaded)
    assert early == [], f"imported at start-up, before any feature needs them: {early}"


def test_an_agent_reads_its_settings_without_a_deferred_module() -> None:
    """Past the import: the command line parsed, the environment checked for
    misspelt variables and the node's config built, as every agent does."""
    code = (
        "import sys\n"
        "from clustermember.__main__ import agent_config, build_parser\n"
        "from clustermember._agent import agent_settings\n"
        "args = build_parser().parse_args(['agent', '--insecure', '--bind', '127.0.0.1:0'])\n"
        "agent_config(agent_settings(vars(args), {'CLUSTERMEMBER_LOG_LEVEL': 'info'}))\n"
        "print(sorted(sys.modules))\n"
    )
    loaded = _modules(code)
    early = sorted(m for m in _checked() if m in loaded)
    assert early == [], f"imported while an agent reads its settings: {early}"
