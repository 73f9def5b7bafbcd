"""How the packages are made, checked without building a wheel (seconds):
the sdist needs neither pkg-config nor the libraries.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
