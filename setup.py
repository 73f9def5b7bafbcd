"""Build the C extension clustermember._core from csrc/.

Compiler and linker flags for ngtcp2, GnuTLS and libuv come from pkg-config,
so the build follows whatever the system's -dev packages provide. pkg-config
runs only when the extension is compiled (build_ext), so that the sdist, the
metadata and `--version` need neither it nor the libraries.
"""

import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PKG_MODULES = ["libngtcp2", "libngtcp2_crypto_gnutls", "gnutls", "libuv"]
# Layers compiled into the extension, in dependency order.
LAYERS = ["core", "sim", "net", "engine", "binding"]


def pkg_config(flag: str) -> list[str]:
    """Return pkg-config's output for flag as a list of arguments; stop with
    a message naming the modules it could not find."""
    try:
        out = subprocess.check_output(["pkg-config", flag, *PKG_MODULES], text=True)
    except OSError as exc:
        raise SystemExit(
            "clustermember: building from source needs pkg-config (apt install pkg-config), "
            "or install a binary wheel instead"
        ) from exc
    except subprocess.CalledProcessError as exc:
        missing = [m for m in PKG_MODULES if subprocess.call(["pkg-config", "--exists", m]) != 0]
        raise SystemExit(
            f"clustermember: pkg-config could not find {', '.join(missing or PKG_MODULES)}: "
            "building from source needs the development files of ngtcp2 1.11+ with its "
            "GnuTLS crypto backend, GnuTLS 3.7+ and libuv 1.44+ (Debian bookworm: "
            "libngtcp2-dev libngtcp2-crypto-gnutls-dev from bookworm-backports, "
            "libgnutls28-dev libuv1-dev; scripts/setup.sh in the repository installs them), "
            "or install a binary wheel instead"
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
elif os.environ.get("CM_COVERAGE"):
    # Clang's source-based coverage (scripts/cov_pytest.sh): each process
    # that loads the extension writes its counts to build/cov/profiles in
    # this tree, unless LLVM_PROFILE_FILE says otherwise.
    profiles = os.path.abspath(os.path.join("build", "cov", "profiles", "%p.profraw"))
    cflags += [f"-fprofile-instr-generate={profiles}", "-fcoverage-mapping", "-O2", "-g"]
    extra_link = ["-fprofile-instr-generate"]
else:
    # The tree's path mapped to ".": the debug information, and with it the
    # build ID, is then the same wherever the tree is built.
    cflags += ["-O2", "-g", f"-ffile-prefix-map={os.path.abspath('.')}=."]
    extra_link = []


class BuildExt(build_ext):
    """build_ext that asks pkg-config for the libraries' flags just before
    compiling: not when setup.py is loaded, nor when build_ext is merely
    finalized (sdist does that to list the sources)."""

    def build_extensions(self) -> None:
        cflags = [f for f in pkg_config("--cflags") if f.startswith("-")]
        libs = pkg_config("--libs")
        for e in self.extensions:
            e.extra_compile_args = [*e.extra_compile_args, *cflags]
            e.extra_link_args = [*e.extra_link_args, *libs, "-lm", "-lpthread"]
        super().build_extensions()


ext = Extension(
    "clustermember._core",
    sources=sources(),
    # Headers too: a change to one rebuilds what includes it.
    depends=sorted(glob.glob(os.path.join("csrc", "*", "*.h"))),
    include_dirs=[os.path.join("csrc", layer) for layer in LAYERS],
    extra_compile_args=cflags,
    extra_link_args=extra_link,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
