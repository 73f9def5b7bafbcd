"""Put the licences of the libraries a repaired wheel carries inside it.

    python scripts/wheel_licenses.py dist/clustermember-...-manylinux_2_34_x86_64.whl

auditwheel copies ngtcp2, GnuTLS and its chain, and libuv into
``clustermember.libs/``; their licences (LGPL, GPL, MIT, BSD) require their
terms to travel with them. For each bundled library this finds the Debian
package its original came from (``dpkg -S``) and adds that package's
copyright file as ``clustermember.libs/LICENSES/<package>.copyright``, and a
``NOTICE`` naming, for each library, its package, version and where the
corresponding source is. The wheel is rewritten in place (``wheel pack``
regenerates its RECORD; SOURCE_DATE_EPOCH keeps it reproducible).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
# auditwheel's rename: libgnutls.so.30.34.3 -> libgnutls-779b25d2.so.30.34.3
HASHED = re.compile(r"^(?P<stem>.+)-[0-9a-f]{8}(?P<so>\.so.*)$")


def query(fmt: str, package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f", fmt, package], capture_output=True, text=True, check=True
    ).stdout.strip()


def package_of(lib: str) -> str:
    """The Debian package that installed the library the bundled one copies."""
    m = HASHED.match(lib)
    if m is None:
        raise SystemExit(f"{lib}: not a library auditwheel renamed")
    original = LIBDIR / (m["stem"] + m["so"])
    out = subprocess.run(["dpkg", "-S", str(original.resolve())], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{lib}: no Debian package owns {original}: {out.stderr.strip()}")
    return out.stdout.split(":", 1)[0]


def add_licenses(wheel: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "wheel", "unpack", "-d", tmp, str(wheel)],
            check=True, capture_output=True,
        )  # fmt: skip
        (root,) = Path(tmp).iterdir()
        libs = sorted(p.name for p in (root / "clustermember.libs").glob("*.so*"))
        out = root / "clustermember.libs" / "LICENSES"
        out.mkdir(exist_ok=True)
        notice = [
            "Libraries bundled in clustermember.libs/, copied from Debian packages",
            "by auditwheel. Each package's copyright file, with its licence terms,",
            "is beside this file as <package>.copyright. The corresponding source",
            "of each is at https://sources.debian.org/src/<source>/<version>/ and",
            "at https://snapshot.debian.org/package/<source>/<version>/.",
            "",
        ]
        for lib in libs:
            pkg = package_of(lib)
            version = query("${Version}", pkg)
            source = query("${source:Package} ${source:Version}", pkg)
            shutil.copyfile(f"/usr/share/doc/{pkg}/copyright", out / f"{pkg}.copyright")
            notice.append(f"{lib}: Debian package {pkg} {version} (source {source})")
        (out / "NOTICE").write_text("\n".join(notice) + "\n")
        dest = Path(tmp) / "packed"
        dest.mkdir()
        subprocess.run(
            [sys.executable, "-m", "wheel", "pack", "-d", str(dest), str(root)],
            check=True, capture_output=True,
        )  # fmt: skip
        (packed,) = dest.iterdir()
        if packed.name != wheel.name:
            raise SystemExit(f"wheel pack renamed {wheel.name} to {packed.name}")
        shutil.move(str(packed), str(wheel))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        add_licenses(Path(arg))
