"""Every Python snippet of README.md and docs/quickstart.md runs as printed.

Each runs in a child interpreter, in a scratch directory holding the
``cluster.key`` the quick start makes, with its fixed ports swapped for free
ones; the seed the quick start joins runs here. A snippet that watches
events forever is stopped once it has shown its first one."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
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


def test_the_docs_have_the_snippets_this_test_runs() -> None:
    assert len(snippets("README.md")) == 1
    assert len(snippets("docs/quickstart.md")) == 1


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
