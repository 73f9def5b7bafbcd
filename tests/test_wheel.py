"""The wheel as a user meets it: built by scripts/build_wheels.sh for this
Python, repaired by auditwheel, installed into a fresh venv with pip, and run
where the system's ngtcp2, GnuTLS and libuv cannot be loaded.

The install and the check (tests/wheel_check.py, in a mount namespace where
the system's libraries are hidden) are tests/_wheel.py's, which
scripts/test_wheels.sh runs for every CPython.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _wheel import LIBDIR, install, missing, run_hidden, wheelhouse

ROOT = Path(__file__).resolve().parent.parent
# The libraries the wheel carries (their names before auditwheel's hash).
BUNDLED = (
    "libngtcp2",
    "libngtcp2_crypto_gnutls",
    "libgnutls",
    "libuv",
    "libnettle",
    "libhogweed",
    "libgmp",
    "libp11",
    "libidn2",
    "libunistring",
    "libtasn1",
    "libffi",
)
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
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
    libs = [n for n in names if n.startswith("clustermember.libs/") and not n.endswith("/")]
    # Exactly these: the transport's libraries and GnuTLS's chain.
    so = [n for n in libs if "/LICENSES/" not in n]
    bundled = sorted(Path(n).name.split("-")[0] for n in so)
    assert bundled == sorted(BUNDLED), libs
    # Their licences travel with them, and the project's own.
    with zipfile.ZipFile(wheel) as z:
        notice = z.read("clustermember.libs/LICENSES/NOTICE").decode()
        for n in so:
            line = next(x for x in notice.splitlines() if x.startswith(Path(n).name + ":"))
            pkg = line.split("Debian package ", 1)[1].split()[0]
            assert z.getinfo(f"clustermember.libs/LICENSES/{pkg}.copyright").file_size > 0
    assert any(n.endswith(".dist-info/LICENSE") for n in names), names
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


def built_sdist() -> Path:
    (found,) = glob.glob(str(ROOT / "dist" / "clustermember-*.tar.gz"))
    return Path(found)


def test_wheel_is_reproducible(wheel: Path) -> None:
    """A second run of the build script gives the same wheel and the same
    sdist, byte for byte."""
    first_names = zipfile.ZipFile(wheel).namelist()
    first_so = extension(wheel).file_size
    first_wheel, first_sdist = wheel.read_bytes(), built_sdist().read_bytes()
    again = build()
    assert again.name == wheel.name
    assert zipfile.ZipFile(again).namelist() == first_names
    assert extension(again).file_size == first_so
    assert again.read_bytes() == first_wheel
    assert built_sdist().read_bytes() == first_sdist


@pytest.fixture(scope="module")
def venv_py(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a fresh venv of this Python; its interpreter."""
    return install(sys.executable, wheel, tmp_path_factory.mktemp("wheel") / "venv")


def test_installed_wheel_works_without_system_libraries(venv_py: Path, tmp_path: Path) -> None:
    meta = subprocess.run(
        [str(venv_py), "-c", "import importlib.metadata as m, clustermember as c;"
         "print(m.version('clustermember'), c.__version__)"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    ).stdout.split()  # fmt: skip
    assert meta[0] == meta[1], meta
    out = run_hidden(venv_py, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    assert not missing(out), (missing(out), out.stdout)


def test_sdist_builds_from_source_in_a_fresh_venv(
    wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sdist (built with the wheel) compiles and imports in a venv with
    nothing but pip: its build environment gets setuptools and wheel from a
    local wheelhouse, as from an index, in the versions the build script
    pins (PIP_CONSTRAINT reaches pip's isolated build environment)."""
    monkeypatch.setenv("PIP_CONSTRAINT", str(ROOT / "scripts" / "build-constraints.txt"))
    sdist = str(built_sdist())
    house = wheelhouse(sys.executable, "rich>=12", "setuptools>=61", "wheel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    out = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", str(house), sdist],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = subprocess.run(
        [py, "-c", "import importlib.metadata as m, clustermember as c, clustermember._core as k;"
         "print(m.version('clustermember'), c.__version__, k.versions()['gnutls']['running'])"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    ).stdout.split()  # fmt: skip
    assert got[0] == got[1] == Path(sdist).name.removesuffix(".tar.gz").split("-")[1], got


def test_source_build_names_what_pkg_config_could_not_find() -> None:
    env = dict(os.environ, PKG_CONFIG_LIBDIR="/nonexistent", PKG_CONFIG_PATH="")
    out = subprocess.run(
        [sys.executable, "setup.py", "build_ext"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert out.returncode != 0
    msg = out.stderr.strip().splitlines()[-1]
    assert msg.startswith("clustermember: pkg-config could not find "), out.stderr
    for module in ("libngtcp2", "libngtcp2_crypto_gnutls", "gnutls", "libuv"):
        assert module in msg.split(":")[1], (module, msg)
    assert "libgnutls28-dev" in msg and "binary wheel" in msg, msg


# Loads one libgnutls by path and prints what a program linked with it gets:
# gnutls_check_version, for each priority string gnutls_priority_init's
# result and the protocols it enables, and how many CAs the system store has.
GNUTLS_PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.gnutls_check_version.restype = ctypes.c_char_p
out = {"version": lib.gnutls_check_version(None).decode(), "priorities": []}
for prio in sys.argv[2:]:
    p, err = ctypes.c_void_p(), ctypes.c_char_p()
    rc = lib.gnutls_priority_init(ctypes.byref(p), prio.encode(), ctypes.byref(err))
    protocols = []
    if rc == 0:
        lst = ctypes.POINTER(ctypes.c_uint)()
        n = lib.gnutls_priority_protocol_list(p, ctypes.byref(lst))
        protocols = [lst[i] for i in range(max(n, 0))]
        lib.gnutls_priority_deinit(p)
    out["priorities"].append([rc, protocols])
cred = ctypes.c_void_p()
lib.gnutls_certificate_allocate_credentials(ctypes.byref(cred))
out["system_trust"] = lib.gnutls_certificate_set_x509_system_trust(cred)
print(json.dumps(out))
"""


def site_packages(venv_py: Path) -> Path:
    (site,) = venv_py.parent.parent.glob("lib/python3*/site-packages")
    return site


def our_priorities() -> list[str]:
    """The priority strings the extension uses (cluster key, certificates)."""
    src = (ROOT / "csrc" / "net" / "cm_net_tls.c").read_text()
    found = re.findall(r'static const char tls_prio_\w+\[\] =\s*((?:"[^"]*"\s*)+);', src)
    assert len(found) == 2, found
    return ["".join(re.findall(r'"([^"]*)"', f)) for f in found]


def test_bundled_gnutls_reads_the_system_configuration(venv_py: Path, tmp_path: Path) -> None:
    """The wheel's GnuTLS and the system's, each loaded alone, give the same
    answers, with no system configuration and with one (as
    /etc/gnutls/config, named by GNUTLS_SYSTEM_PRIORITY_FILE) that redefines
    @SYSTEM and disables TLS 1.3; and they find the same system CA store."""
    (bundled,) = site_packages(venv_py).glob("clustermember.libs/libgnutls-*")
    (system,) = glob.glob(f"{LIBDIR}/libgnutls.so.30")
    config = tmp_path / "gnutls.config"
    config.write_text(
        "[priorities]\nSYSTEM = NORMAL:-VERS-ALL:+VERS-TLS1.2\n\n"
        "[overrides]\ndisabled-version = tls1.3\n"
    )
    prios = [*our_priorities(), "@SYSTEM", "NORMAL"]
    env = {k: v for k, v in os.environ.items() if k != "GNUTLS_SYSTEM_PRIORITY_FILE"}
    seen = {}
    for conf in ({}, {"GNUTLS_SYSTEM_PRIORITY_FILE": str(config)}):
        for lib in (bundled, system):
            out = subprocess.run(
                [str(venv_py), "-c", GNUTLS_PROBE, str(lib), *prios],
                capture_output=True, text=True, check=True, timeout=60, env=env | conf,
            ).stdout  # fmt: skip
            seen[bool(conf), lib == system] = json.loads(out)
    for conf in (False, True):
        assert seen[conf, False] == seen[conf, True], (conf, seen)
    plain, configured = seen[False, False], seen[True, False]
    assert plain["version"] == configured["version"] == "3.7.9"
    tls13 = 5  # GNUTLS_TLS1_3
    # Without configuration: ours give TLS 1.3 only; @SYSTEM is undefined.
    assert plain["priorities"][:2] == [[0, [tls13]], [0, [tls13]]], plain
    assert plain["priorities"][2][0] != 0, plain
    # The configuration is read: @SYSTEM is its string, and TLS 1.3 disabled
    # system-wide leaves ours nothing (as it would with the system library).
    assert configured["priorities"][2] == [0, [4]], configured  # GNUTLS_TLS1_2
    assert all(rc != 0 for rc, _ in configured["priorities"][:2]), configured
    assert plain["system_trust"] == configured["system_trust"] > 0, plain


def test_extension_does_not_use_the_system_ca_store(venv_py: Path) -> None:
    """Mutual TLS trusts the CA file given (tls_ca), never the system store:
    the extension does not call gnutls_certificate_set_x509_system_trust."""
    (so,) = site_packages(venv_py).glob("clustermember/_core.*.so")
    undefined = subprocess.run(
        ["nm", "-D", "--undefined-only", str(so)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "gnutls_certificate_set_x509_trust_file" in undefined
    assert "gnutls_certificate_set_x509_system_trust" not in undefined
