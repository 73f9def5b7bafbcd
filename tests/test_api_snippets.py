"""Every Python snippet of README.md and docs/quickstart.md runs as printed,
and so does every shell block (```sh, ```bash, ```console) of them that is
not marked otherwise.

Each Python snippet runs in a child interpreter, in a scratch directory
holding the ``cluster.key`` the quick start makes, with its fixed ports
swapped for free ones; the seed the quick start joins runs here. A snippet
that watches events forever is stopped once it has shown its first one.

A shell block that must not run here (it installs packages, needs root, or
runs the whole suite) is marked by an HTML comment on the line just above
its fence, which the rendered page does not show::

    <!-- not run: installs system packages as root -->

Every other shell block runs with ``bash -e`` in a scratch directory, with
``clustermember`` meaning this tree's package, its loopback ports swapped
for free ones and its ``/tmp/`` paths moved into the scratch directory,
within a time limit; what it leaves running in the background is killed
by PID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _cluster import config

import clustermember
from clustermember import ClusterMembership

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# What each snippet prints once it is past its last call that could fail.
FIRST_WORDS = {"README.md": "NodeJoined", "docs/quickstart.md": "workers: ['worker-1']"}


def snippets(doc: str) -> list[str]:
    return FENCE.findall((ROOT / doc).read_text())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SHELL_FENCE = re.compile(
    r"^(<!-- not run: [^\n]*-->\n)?```(?:sh|bash|console)\n(.*?)^```", re.S | re.M
)
# What each document's runnable shell blocks print, together, when they work.
SHELL_WORDS = {
    "README.md": [],
    "docs/quickstart.md": ['"role": "worker"', "left the cluster"],
}


def shell_blocks(doc: str) -> list[str]:
    """The shell blocks of a document that are meant to be run, as printed
    (in a ```console block, only the ``$ `` lines and their continuations)."""
    out = []
    text = (ROOT / doc).read_text()
    for match in SHELL_FENCE.finditer(text):
        if match.group(1):
            continue
        code = match.group(2)
        if match.group(0).startswith("```console"):
            keep, more = [], False
            for line in code.splitlines():
                if line.startswith("$ ") or more:
                    keep.append(line.removeprefix("$ "))
                    more = line.endswith("\\")
            code = "\n".join(keep) + "\n"
        out.append(code)
    return out


def test_the_docs_have_the_snippets_this_test_runs() -> None:
    assert len(snippets("README.md")) == 1
    assert len(snippets("docs/quickstart.md")) == 1
    # Every shell block is run, or marked "not run" with a reason.
    assert len(shell_blocks("README.md")) == 0
    assert len(shell_blocks("docs/quickstart.md")) == 1
    for doc in SHELL_WORDS:
        text = (ROOT / doc).read_text()
        fences = re.findall(r"^```(?:sh|bash|console)$", text, re.M)
        marked = re.findall(r"^<!-- not run: \S[^\n]*-->\n```", text, re.M)
        assert len(fences) == len(marked) + len(shell_blocks(doc)), doc


@pytest.mark.parametrize("doc", [d for d in sorted(SHELL_WORDS) if shell_blocks(d)])
def test_shell_blocks_run(doc: str, tmp_path: Path) -> None:
    code = "".join(shell_blocks(doc))
    ports = {p: str(free_port()) for p in set(re.findall(r"127\.0\.0\.1:(\d+)", code))}
    code = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[m.group(1)]}", code)
    code = code.replace("/tmp/", f"{tmp_path}/")
    # ``clustermember`` is the package this test imported (the tree's, or an
    # ASan build's copy), run by this interpreter.
    here = str(Path(clustermember.__file__).resolve().parent.parent)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "clustermember"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m clustermember "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERMEMBER_")}
    env.update(
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join([here, env.get("PYTHONPATH", "")]),
        SNIPPET_PIDS=str(tmp_path / "pids"),
    )
    # What the block leaves in the background is listed on exit, to be killed.
    script = "trap 'jobs -p > \"$SNIPPET_PIDS\"' EXIT\n" + code
    (tmp_path / "block.sh").write_text(script)
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("w") as out, err_path.open("w") as err:
        # Output to files, not pipes: background agents would hold a pipe open.
        proc = subprocess.Popen(
            ["bash", "-e", "block.sh"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        pids_file = tmp_path / "pids"
        for pid in pids_file.read_text().split() if pids_file.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: only what it started
    printed, errors = out_path.read_text(), err_path.read_text()
    assert rc == 0, f"{doc}: exit {rc}; printed {printed!r}; stderr {errors[-2000:]}"
    for words in SHELL_WORDS[doc]:
        assert words in printed, f"{doc}: printed {printed!r}; stderr {errors[-2000:]}"


@pytest.mark.parametrize("doc", sorted(FIRST_WORDS))
async def test_snippet_runs(doc: str, key: bytes, tmp_path: Path) -> None:
    (code,) = snippets(doc)
    ports = {p: str(free_port()) for p in set(re.findall(r"127\.0\.0\.1:(\d+)", code))}
    code = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[m.group(1)]}", code)
    (tmp_path / "cluster.key").write_text(base64.b64encode(key).decode() + "\n")
    seed = None
    if "7946" in ports and 'join(["127.0.0.1:' in code:
        # The agent the quick start started before this step, as a worker.
        seed = ClusterMembership(
            f"127.0.0.1:{ports['7946']}", config(key, "worker-1", tags={"role": "worker"})
        )
        await seed.join([])
    # The package this test imported (the tree's, or an ASan build's copy).
    here = str(Path(clustermember.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        want = FIRST_WORDS[doc]
        while not any(want in line for line in out):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if not line:
                break
            out.append(line.decode())
        if seed is not None:
            # The watcher sees the worker go: the snippet's event branch runs.
            await seed.leave()
            await seed.close()
            seed = None
            while not any(line.startswith("lost worker-1") for line in out):
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                if not line:
                    break
                out.append(line.decode())
    finally:
        if proc.returncode is None:
            proc.kill()
        _, err = await proc.communicate()
        if seed is not None:
            await seed.close()
    text = "".join(out)
    assert want in text, f"{doc}: printed {text!r}; stderr {err.decode()}"
    if doc == "docs/quickstart.md":
        assert "lost worker-1" in text, f"printed {text!r}; stderr {err.decode()}"


def test_python_api_documents_every_public_name() -> None:
    from clustermember import ClusterConfig, ClusterMembership, ClusterStats, Member, Subscription

    text = (ROOT / "docs" / "python-api.md").read_text()
    names = set(clustermember.__all__)
    for cls in (ClusterMembership, Subscription, ClusterStats, Member, ClusterConfig):
        names |= {n for n in vars(cls) if not n.startswith("_")}
    # Documented means written as code (a `span` or a fenced block), not a
    # word of the prose: "get", "closed" or "total" would always be found.
    fences = re.findall(r"```.*?```", text, re.S)
    code = fences + re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))

    def documented(name: str) -> bool:
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        return any(pattern.search(c) for c in code)

    missing = sorted(n for n in names if not documented(n))
    assert missing == [], f"docs/python-api.md does not show {missing} as code"


def test_configuration_md_lists_the_duration_ranges() -> None:
    from clustermember._config import TIME_RANGES

    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"`(\w+)` \| ([\d.,]+) – ([\d.,]+)", text)
    listed = {
        name: (float(lo.replace(",", "")), float(hi.replace(",", ""))) for name, lo, hi in rows
    }
    assert listed == TIME_RANGES
