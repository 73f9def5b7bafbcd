"""What a user of the installed wheel meets, checked from inside its venv.

    <venv>/bin/python tests/wheel_check.py REPO WORKDIR

Run by tests/test_wheel.py with that venv's interpreter, from WORKDIR (never
the source tree, whose clustermember/ would shadow the installed one), in a
mount namespace where the system's libngtcp2, libngtcp2_crypto_gnutls,
libgnutls and libuv are hidden. It checks that the package comes from the
venv and its C libraries from the wheel, then: a three-node cluster forms
over QUIC with a cluster key, a tag spreads, a SIGKILLed node is declared
failed, mutual TLS works, the versions agree, and ``clustermember demo``
runs to its end. Prints one line per check; exits non-zero on the first that
fails.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

# What the manylinux policy leaves to the system.
GLIBC = re.compile(r"(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so")


def load(path: Path, name: str) -> ModuleType:
    """A module of the source tree by its path, without putting the tree on
    sys.path (which would shadow the installed package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def say(what: str) -> None:
    print(f"ok: {what}", flush=True)


def mapped() -> set[str]:
    """The shared objects mapped into this process."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {p for p in (line.split()[-1] for line in lines) if ".so" in Path(p).name}


def check_libraries() -> None:
    """Load the extension alone (its module init imports nothing) and look
    at what that mapped: the extension, the libraries inside the wheel, all
    of them, and glibc's; nothing else from the system."""
    import importlib.machinery
    import importlib.util
    import site

    before = mapped()
    (so,) = [p for d in site.getsitepackages() for p in Path(d).glob("clustermember/_core.*.so")]
    libs_dir = so.parent.parent / "clustermember.libs"
    loader = importlib.machinery.ExtensionFileLoader("clustermember._core", str(so))
    spec = importlib.util.spec_from_file_location("clustermember._core", so, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules["clustermember._core"] = module  # the package's import reuses it
    new = {Path(p).resolve() for p in mapped() - before}
    bundled = {p.resolve() for p in libs_dir.glob("*.so*")}
    foreign = {p for p in new if p != so.resolve() and p not in bundled and not GLIBC.match(p.name)}
    assert not foreign, f"loaded from outside the wheel: {sorted(map(str, foreign))}"
    unused = bundled - new
    assert not unused, f"bundled but not loaded: {sorted(map(str, unused))}"
    say(f"the extension loaded {len(bundled)} libraries, all from the wheel")


def check_origin() -> None:
    import clustermember
    from clustermember import _core

    pkg = Path(clustermember.__file__).resolve()
    assert Path(sys.prefix).resolve() in pkg.parents, f"clustermember from {pkg}"
    say(f"clustermember {clustermember.__version__} from {pkg.parent}, libraries from the wheel")
    say(f"libraries: {_core.versions()}")


def check_cluster(repo: Path, work: Path) -> None:
    agents = load(repo / "bench" / "agents.py", "cm_wheel_agents")
    tmp = work / "agents"
    tmp.mkdir(exist_ok=True)
    pool = agents.Agents(tmp)
    try:
        nodes = pool.cluster(3, profile="lan")
        say("three nodes formed a cluster over QUIC")
        n0, n1, n2 = nodes
        agents.control(n0.ctl, {"op": "tags", "set": {"role": "db"}})
        agents.eventually(lambda: n2.members()["n0"]["tags"].get("role") == "db", "the tag at n2")
        say("a tag spread")
        pool.kill(n1)
        agents.eventually(
            lambda: (
                agents.states(n0, ["n1"])["n1"] == "failed"
                and agents.states(n2, ["n1"])["n1"] == "failed"
            ),
            "n1 failed at n0 and n2",
        )
        say("a SIGKILLed node was declared failed")
    finally:
        pool.stop()


def check_mtls(work: Path) -> None:
    """Two nodes authenticated by certificates of one CA, made and read by
    the wheel's GnuTLS."""
    from clustermember import ClusterConfig, ClusterMembership, _core

    ca, ca_key = str(work / "ca.pem"), str(work / "ca.key")
    _core.gen_ca(ca, ca_key)

    async def pair() -> None:
        nodes = []
        for i in range(2):
            cert, key = str(work / f"n{i}.pem"), str(work / f"n{i}.key")
            _core.gen_cert(ca, ca_key, cert, key, common_name=f"t{i}")
            cfg = ClusterConfig.local(node_id=f"t{i}", tls_ca=ca, tls_cert=cert, tls_key=key)
            nodes.append(ClusterMembership("127.0.0.1:0", cfg))
        a, b = nodes
        try:
            await a.join([])
            await b.join([a.addr])
            for _ in range(600):
                if {n.id for n in a.nodes()} == {"t0", "t1"}:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("t1 never appeared alive at t0 over mutual TLS")
        finally:
            await a.close()
            await b.close()

    asyncio.run(pair())
    say("mutual TLS: two nodes with CA-issued certificates joined")


def check_cli(work: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clustermember", "--version"],
        capture_output=True, text=True, timeout=60, check=True, cwd=work,
    )  # fmt: skip
    import clustermember

    assert clustermember.__version__ in out.stdout, out.stdout
    say(f"clustermember --version: {out.stdout.strip()}")
    demo = subprocess.run(
        [sys.executable, "-m", "clustermember", "demo", "--nodes", "3"],
        capture_output=True, text=True, timeout=240, cwd=work,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    say("clustermember demo ran to its end")


def main() -> None:
    repo, work = Path(sys.argv[1]), Path(sys.argv[2])
    check_libraries()
    check_origin()
    check_cluster(repo, work)
    check_mtls(work)
    check_cli(work)


if __name__ == "__main__":
    main()
