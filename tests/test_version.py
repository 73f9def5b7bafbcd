"""One version: the literal ``__version__ = "..."`` in
clustermember/__init__.py is the source; pyproject.toml takes it from there
(setuptools' dynamic ``attr:``, which reads the file's syntax tree and imports
nothing, so the sdist and the wheel's metadata are made without the C
extension); the installed package's metadata and ``clustermember --version``
give the same. The built wheel's and sdist's metadata are checked against it
in tests/test_wheel.py.

Nothing here imports clustermember in the test process: the version is read
as the build reads it, and what the package says is asked of a fresh
interpreter.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ATTR = "clustermember.__version__"

# setuptools' read_attr, where importing the package would fail (its C
# extension blocked): it can only answer by reading the source statically.
READ_ATTR_STATICALLY = """
import sys
sys.modules["clustermember._core"] = None  # `import` of it raises ImportError
from setuptools.config.expand import read_attr
print(read_attr(sys.argv[1], root_dir=sys.argv[2]))
"""


def source_version() -> str:
    """The version as written in clustermember/__init__.py: the value of its
    one top-level ``__version__ = "<literal>"``."""
    tree = ast.parse((ROOT / "clustermember" / "__init__.py").read_text())
    found = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
    ]
    assert len(found) == 1, "one top-level `__version__ = ...` in clustermember/__init__.py"
    (value,) = found
    assert isinstance(value, ast.Constant) and isinstance(value.value, str), (
        "__version__ must be a string literal, or setuptools imports the package "
        "(and its C extension) to read it"
    )
    return value.value


def run_package(*args: str) -> str:
    """What this tree's package prints for args, run by a fresh interpreter."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run(
        list(args), capture_output=True, text=True, check=True, timeout=60, cwd=ROOT, env=env
    ).stdout


def test_pyproject_takes_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"], "a second, literal version in pyproject.toml"
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"]["attr"] == ATTR


def test_setuptools_reads_the_version_without_importing() -> None:
    out = subprocess.run(
        [sys.executable, "-c", READ_ATTR_STATICALLY, ATTR, str(ROOT)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == source_version()


def test_installed_metadata_has_the_version() -> None:
    try:
        installed = importlib.metadata.version("clustermember")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("clustermember is not installed (scripts/setup.sh installs it)")
    assert installed == source_version(), "the installed metadata is stale: reinstall"


def test_cli_prints_the_version() -> None:
    expected = f"clustermember {source_version()}"
    out = run_package(sys.executable, "-m", "clustermember", "--version")
    assert out.splitlines()[0] == expected, out
    # The console script pip installs, next to this interpreter.
    script = shutil.which("clustermember", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no clustermember console script beside this Python")
    assert run_package(script, "--version").splitlines()[0] == expected
