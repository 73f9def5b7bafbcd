"""Build the C extension clustermember._core from csrc/.

Compiler and linker flags for ngtcp2, GnuTLS and libuv come from pkg-config,
so the build follows whatever the system's -dev packages provide.
"""

import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

PKG_MODULES = ["libngtcp2", "libngtcp2_crypto_gnutls", "gnutls", "libuv"]
# Layers compiled into the extension, in dependency order.
LAYERS = ["core", "sim", "net", "engine", "binding"]


def pkg_config(flag: str) -> list[str]:
    """Return pkg-config's output for flag as a list of arguments."""
    try:
        out = subprocess.check_output(["pkg-config", flag, *PKG_MODULES], text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            "pkg-config could not find libngtcp2, libngtcp2_crypto_gnutls, gnutls "
            "and libuv; run scripts/setup.sh first"
        ) from exc
    return shlex.split(out)


def sources() -> list[str]:
    """Every .c file of the layers the extension is made of."""
    found: list[str] = []
    for layer in LAYERS:
        found += sorted(glob.glob(os.path.join("csrc", layer, "*.c")))
    return found


cflags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-parameter"]
if os.environ.get("CM_SANITIZE"):
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_link = ["-fsanitize=address,undefined"]
else:
    cflags += ["-O2", "-g"]
    extra_link = []

ext = Extension(
    "clustermember._core",
    sources=sources(),
    include_dirs=[os.path.join("csrc", layer) for layer in LAYERS],
    extra_compile_args=cflags + [f for f in pkg_config("--cflags") if f.startswith("-")],
    extra_link_args=extra_link + pkg_config("--libs") + ["-lm", "-lpthread"],
)

setup(ext_modules=[ext])
