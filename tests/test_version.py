"""One version: clustermember.__version__ is the source, pyproject.toml takes
it from there (setuptools' dynamic attr), and ``clustermember --version``
prints it. The built wheel's and sdist's metadata are checked against it in
tests/test_wheel.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import clustermember
from clustermember.__main__ import version_text

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_takes_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"], "a second, literal version in pyproject.toml"
    assert "version" in meta["project"]["dynamic"]
    attr = meta["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "clustermember.__version__"
    # What setuptools reads there, the way it reads it when building.
    from setuptools.config.expand import read_attr

    assert read_attr(attr, root_dir=ROOT) == clustermember.__version__


def test_version_text_names_the_package_version() -> None:
    assert version_text().splitlines()[0] == f"clustermember {clustermember.__version__}"
