"""The wheel as a user meets it: built by scripts/build_wheels.sh for this
Python, repaired by auditwheel, installed into a fresh venv with pip, and run
where the system's ngtcp2, GnuTLS and libuv cannot be loaded.

The check itself (tests/wheel_check.py) runs with the venv's interpreter in a
mount namespace (``unshare -m``, root only) in which an empty file is
bind-mounted over each of the system's libngtcp2, libngtcp2_crypto_gnutls,
libgnutls and libuv: what works there works on a machine without them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
# The system's libraries the wheel must carry its own copies of.
SYSTEM_LIBS = ("libngtcp2.so.*", "libngtcp2_crypto_gnutls.so.*", "libgnutls.so.*", "libuv.so.*")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
# What the manylinux policy leaves to the system.
GLIBC = re.compile(r"(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so")

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="manylinux wheels are for Linux"),
    pytest.mark.skipif(os.geteuid() != 0, reason="hiding system libraries needs unshare -m"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
]


def build() -> Path:
    """Run the build script for this Python; the wheel it made."""
    env = dict(os.environ, CM_WHEEL_PYTHONS=sys.executable, PYTHON=sys.executable)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_wheels.sh")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = glob.glob(str(ROOT / "dist" / f"clustermember-*-{TAG}-{TAG}-manylinux_*.whl"))
    assert len(wheels) == 1, (wheels, out.stdout)
    return Path(wheels[0])


@pytest.fixture(scope="module")
def wheel() -> Path:
    return build()


def extension(whl: Path) -> zipfile.ZipInfo:
    with zipfile.ZipFile(whl) as z:
        (so,) = [
            i
            for i in z.infolist()
            if i.filename.startswith("clustermember/_core.") and i.filename.endswith(".so")
        ]
        return so


def test_wheel_carries_its_libraries(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    libs = [n for n in names if n.startswith("clustermember.libs/")]
    for want in ("libngtcp2-", "libngtcp2_crypto_gnutls-", "libgnutls-", "libuv-", "libnettle-"):
        assert any(Path(n).name.startswith(want) for n in libs), (want, libs)
    show = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    text = " ".join(show.split())
    assert "manylinux_2_" in text, text
    # Every library the extension needs is either glibc's (the manylinux
    # policy's own) or a copy inside the wheel (renamed with a hash).
    external = text.split("shared libraries:", 1)[-1].split("This constrains", 1)[0]
    needed = set(re.findall(r"(lib[\w+.-]*?\.so(?:\.\d+)*)\b", external))
    assert needed, text
    foreign = {n for n in needed if not re.search(r"-[0-9a-f]{8}\.so", n) and not GLIBC.match(n)}
    assert not foreign, (foreign, text)


def test_wheel_is_reproducible(wheel: Path) -> None:
    first_names = zipfile.ZipFile(wheel).namelist()
    first_so = extension(wheel).file_size
    again = build()
    assert again.name == wheel.name
    assert zipfile.ZipFile(again).namelist() == first_names
    assert extension(again).file_size == first_so


def wheelhouse() -> Path:
    """The wheel's dependencies from PyPI, kept in build/ between runs, so
    that the install itself can be --no-index."""
    house = ROOT / "build" / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "-d", str(house), "rich>=12"],
        check=True, timeout=300,
    )  # fmt: skip
    return house


def test_installed_wheel_works_without_system_libraries(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", str(wheelhouse()), str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    meta = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m, clustermember as c;"
         "print(m.version('clustermember'), c.__version__)"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    ).stdout.split()  # fmt: skip
    assert meta[0] == meta[1], meta
    hidden = sorted({os.path.realpath(p) for g in SYSTEM_LIBS for p in glob.glob(f"{LIBDIR}/{g}")})
    assert len(hidden) >= 4, hidden
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    work = tmp_path / "work"
    work.mkdir()
    mounts = "".join(f"mount --bind {empty} {lib} && " for lib in hidden)
    script = f"{mounts}exec {py} {ROOT / 'tests' / 'wheel_check.py'} {ROOT} {work}"
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=600, cwd=work,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    for what in ("from the wheel", "cluster over QUIC", "a tag spread", "declared failed",
                 "mutual TLS", "--version", "demo ran"):  # fmt: skip
        assert what in out.stdout, (what, out.stdout)
