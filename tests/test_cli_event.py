"""User events from the command line and the agent: ``clustermember event``
sends one through the agent's control endpoint, the agent's event stream
carries them as JSON, and ``--event-handler`` runs a command per event with
the payload on stdin and the event in its environment."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shlex
import sys
from pathlib import Path

import pytest
from conftest import cli, eventually

from clustermember import UserEvent
from clustermember._agent import Agent, event_dict
from clustermember._control import ControlClient


async def request(a: Agent, req: dict[str, object]) -> dict[str, object]:
    async with ControlClient(a.server.endpoint) as client:
        resp: dict[str, object] = await client.request(req)
    return resp


async def test_the_event_operation_sends_and_refuses_what_it_cannot(agent: Agent) -> None:
    sub = agent.cluster.subscribe(replay=False)
    ok = await request(
        agent, {"op": "event", "name": "deploy", "payload_base64": base64.b64encode(b"v9").decode()}
    )
    assert ok["ok"] is True and isinstance(ok["ltime"], int)
    await eventually(lambda: sub.pending > 0, "the node gets its own event")
    event = sub.get_nowait()
    assert isinstance(event, UserEvent)
    assert (event.name, event.payload, event.ltime, event.coalesce) == (
        "deploy",
        b"v9",
        ok["ltime"],
        True,
    )
    for bad, says in (
        ({"op": "event", "name": "two words"}, "printable ASCII"),
        ({"op": "event", "name": 7}, "'name' must be a string"),
        ({"op": "event", "name": "e", "payload_base64": "***"}, "not valid base64"),
        ({"op": "event", "name": "e", "coalesce": "yes"}, "'coalesce' must be true or false"),
    ):
        resp = await request(agent, bad)
        assert resp["ok"] is False and says in str(resp["error"]), (bad, resp)
    assert agent.cluster.stats().counters["user_events_sent"] == 1
    # Past what a datagram carries: the payload goes on streams.
    large = bytes(range(256)) * 80
    resp = await request(
        agent, {"op": "event", "name": "large", "payload_base64": base64.b64encode(large).decode()}
    )
    assert resp["ok"] is True
    await eventually(lambda: sub.pending > 0, "the node gets its large event")
    event = sub.get_nowait()
    assert isinstance(event, UserEvent) and event.name == "large" and event.payload == large


async def test_the_cli_sends_an_event_from_stdin_or_its_argument(
    agent: Agent, tmp_path: Path
) -> None:
    sub = agent.cluster.subscribe(replay=False)
    code, out, err = await cli("event", "hello", "world", "--control", agent.server.endpoint)
    assert code == 0, err
    assert out.startswith("event hello sent (ltime ") and "5 bytes" in out
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x00\x01\xfe")
    proc = await asyncio.create_subprocess_shell(
        f"{shlex.quote(sys.executable)} -m clustermember event raw - --no-coalesce "
        f"--control {shlex.quote(agent.server.endpoint)} < {shlex.quote(str(payload))}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err_b.decode()
    got: list[UserEvent] = []

    def both() -> bool:
        while (e := sub.get_nowait()) is not None:
            if isinstance(e, UserEvent):
                got.append(e)
        return len(got) == 2

    await eventually(both, "both events")
    assert [(e.name, e.payload, e.coalesce) for e in got] == [
        ("hello", b"world", True),
        ("raw", b"\x00\x01\xfe", False),
    ]
    code, _, err = await cli("event", "bad name", "--control", agent.server.endpoint)
    assert code == 1 and "printable ASCII" in err and err.count("\n") == 1


async def test_the_cli_sends_a_large_event_through_the_unix_socket(
    agent: Agent, tmp_path: Path
) -> None:
    """A 1 MiB payload (max_user_event_stream) from stdin: the Unix socket
    takes its 1.4 MB request line; a line past that is refused."""
    sub = agent.cluster.subscribe(replay=False)
    data = bytes((i * 7) & 0xFF for i in range(1 << 20))
    payload = tmp_path / "large.bin"
    payload.write_bytes(data)
    proc = await asyncio.create_subprocess_shell(
        f"{shlex.quote(sys.executable)} -m clustermember event large - "
        f"--control {shlex.quote(agent.server.endpoint)} < {shlex.quote(str(payload))}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err_b = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err_b.decode()
    got: list[UserEvent] = []

    def arrived() -> bool:
        while (e := sub.get_nowait()) is not None:
            if isinstance(e, UserEvent):
                got.append(e)
        return len(got) == 1

    await eventually(arrived, "the large event")
    assert got[0].name == "large" and got[0].payload == data
    # Past the limit: refused (the agent answers and closes, and may reset
    # a client still writing), nothing sent, and the agent still serves.
    sent = agent.cluster.stats().counters["user_events_sent"]
    try:
        resp = await request(agent, {"op": "event", "name": "e", "payload_base64": "A" * (3 << 20)})
        assert resp["ok"] is False and "request line too long" in str(resp["error"])
    except ConnectionError:
        pass
    assert agent.cluster.stats().counters["user_events_sent"] == sent
    ok = await request(agent, {"op": "event", "name": "after"})
    assert ok["ok"] is True


def test_a_user_event_is_json_with_its_payload_as_text_and_base64() -> None:
    from clustermember import Member, MemberState

    me = Member("n0", "127.0.0.1:1", MemberState.ALIVE, 0, {})
    text = UserEvent(me, 1.0, 2.0, "deploy", b"v1", 3, "n1", True)
    binary = UserEvent(me, 1.0, 2.0, "raw", b"\xff\x00", 4, "n1", False)
    t = json.loads(json.dumps(event_dict(text)))
    b = json.loads(json.dumps(event_dict(binary)))
    assert (t["type"], t["name"], t["payload"], t["payload_base64"]) == (
        "UserEvent",
        "deploy",
        "v1",
        "djE=",
    )
    assert b["payload"] is None and base64.b64decode(b["payload_base64"]) == b"\xff\x00"
    assert (b["ltime"], b["origin"], b["coalesce"]) == (4, "n1", False)


async def test_the_event_handler_runs_once_per_event_in_order(
    agent: Agent,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "handled"
    out.mkdir()
    # Writes the payload and the event's variables to files named by its
    # Lamport time; the event named "fail" exits 3.
    agent.event_handler = (
        f'd={shlex.quote(str(out))}; cat > "$d/$CLUSTERMEMBER_USER_LTIME.payload"; '
        'env | grep "^CLUSTERMEMBER_" | sort > "$d/$CLUSTERMEMBER_USER_LTIME.env"; '
        '[ "$CLUSTERMEMBER_USER_EVENT" != fail ] || { echo broken; exit 3; }'
    )
    task = asyncio.ensure_future(agent.run_event_handler())
    try:
        await asyncio.sleep(0)  # subscribed before the events are sent
        caplog.set_level(logging.INFO, logger="clustermember")
        t1 = await agent.cluster.send_event("deploy", b"v1.2")
        t2 = await agent.cluster.send_event("fail", b"")
        t3 = await agent.cluster.send_event("after", b"\x00bytes")
        await eventually(lambda: len(list(out.glob("*.env"))) == 3, "three handler runs", timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (out / f"{t1}.payload").read_bytes() == b"v1.2"
    assert (out / f"{t3}.payload").read_bytes() == b"\x00bytes"
    env = dict(
        line.split("=", 1) for line in (out / f"{t1}.env").read_text().splitlines() if "=" in line
    )
    assert env["CLUSTERMEMBER_EVENT"] == "user"
    assert env["CLUSTERMEMBER_USER_EVENT"] == "deploy"
    assert env["CLUSTERMEMBER_USER_LTIME"] == str(t1)
    assert env["CLUSTERMEMBER_ORIGIN"] == "solo" and env["CLUSTERMEMBER_SELF_NAME"] == "solo"
    failed = [r.getMessage() for r in caplog.records if "exited with 3" in r.getMessage()]
    assert failed == [f"event handler for fail (ltime {t2}) exited with 3: broken"]


async def test_the_cli_asks_a_query_and_prints_each_answer(agent: Agent) -> None:
    agent.cluster.on_query("whoami", lambda q: agent.cluster.node_id.encode())
    ep = agent.server.endpoint
    code, out, err = await cli(
        "query", "whoami", "--tag", "role=d.*", "--ack", "--timeout", "1", "--control", ep
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert sorted(line.split("  ")[:2] for line in lines) == [["solo", "'solo'"], ["solo", "ack"]]
    assert err.strip() == "1 responses, 1 acks"
    # Not selected: nothing comes back, and the tally says so.
    code, out, err = await cli(
        "query",
        "whoami",
        "--tag",
        "role=cache",
        "--timeout",
        "0.5",
        "--format",
        "json",
        "--control",
        ep,
    )
    assert code == 0 and out == "" and err.strip() == "0 responses, 0 acks"
    code, out, _ = await cli(
        "query",
        "whoami",
        "--node",
        "solo",
        "--timeout",
        "0.5",
        "--format",
        "json",
        "--control",
        ep,
    )
    answer = json.loads(out)
    assert (answer["node_id"], answer["payload"], answer["ack"]) == ("solo", "solo", False)
    code, _, err = await cli("query", "whoami", "--tag", "role=(", "--control", ep)
    assert code == 1 and "not a regular expression" in err


async def test_query_handlers_answer_with_what_their_command_prints(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    c = agent.cluster
    c.on_query(
        "whoami",
        agent._query_runner("whoami", 'printf "%s:" "$CLUSTERMEMBER_SELF_NAME"; cat'),
    )
    c.on_query("broken", agent._query_runner("broken", "echo oops >&2; exit 2"))
    got = await c.query("whoami", b"payload", timeout=2.0).collect()
    assert [(r.node_id, r.payload) for r in got] == [("solo", b"solo:payload")]
    caplog.set_level(logging.WARNING, logger="clustermember")
    assert await c.query("broken", timeout=1.0).collect() == []
    assert any(
        "query handler for broken exited with 2: no response: oops" in r.getMessage()
        for r in caplog.records
    )


def test_query_handler_settings_from_flags_environment_and_file(tmp_path: Path) -> None:
    from clustermember._agent import agent_settings
    from clustermember._cli import UsageError

    flags = agent_settings({"query_handler": ["load=uptime", "x=a=b"]}, {})
    assert flags["query-handler"] == {"load": "uptime", "x": "a=b"}
    env = agent_settings({}, {"CLUSTERMEMBER_QUERY_HANDLER": "load=cat /proc/loadavg"})
    assert env["query-handler"] == {"load": "cat /proc/loadavg"}
    conf = tmp_path / "a.toml"
    conf.write_text('[query-handler]\nload = "uptime"\n')
    assert agent_settings({"config": str(conf)}, {})["query-handler"] == {"load": "uptime"}
    with pytest.raises(UsageError, match="NAME=COMMAND"):
        agent_settings({"query_handler": ["nocommand"]}, {})
