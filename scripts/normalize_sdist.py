"""Rewrite an sdist so that its bytes depend on its files' contents only.

setuptools writes the sdist's tar members with their files' own times (and
the generated PKG-INFO and setup.cfg with the build's), their owner, and a
gzip header stamped with the time of the build: SOURCE_DATE_EPOCH changes
none of it. This re-packs the archive with the same members, in name order,
each with the time given, owner root (uid and gid 0, no names), mode 0o755
for directories and executables and 0o644 for the rest, and a gzip header
with no time and no file name:

    python3 scripts/normalize_sdist.py --mtime "$SOURCE_DATE_EPOCH" dist/x.tar.gz

scripts/build_wheels.sh runs it on the sdist it builds.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import tarfile
from pathlib import Path


def normal_info(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    """A copy of info with everything but its name, type, size and link
    target set to fixed values."""
    out = tarfile.TarInfo(info.name)
    out.type = info.type
    out.size = info.size
    out.linkname = info.linkname
    out.mtime = mtime
    out.uid = out.gid = 0
    out.uname = out.gname = ""
    executable = info.isdir() or info.mode & 0o111
    out.mode = 0o755 if executable else 0o644
    return out


def normalize(sdist: Path, mtime: int) -> None:
    """Rewrite sdist (a .tar.gz) in place, deterministically."""
    raw = io.BytesIO()
    with tarfile.open(sdist, "r:gz") as src:
        members = sorted(src.getmembers(), key=lambda m: m.name)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as dst:
            for m in members:
                data = src.extractfile(m) if m.isfile() else None
                dst.addfile(normal_info(m, mtime), data)
    tmp = sdist.with_name(sdist.name + ".tmp")
    with tmp.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, sdist)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mtime", type=int, required=True, help="every member's time (seconds)")
    ap.add_argument("sdist", type=Path, nargs="+")
    args = ap.parse_args()
    for sdist in args.sdist:
        normalize(sdist, args.mtime)


if __name__ == "__main__":
    main()
