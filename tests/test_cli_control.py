"""The CLI against one agent run in this process (no gossip needed): control
operations apply whole or not at all, every error is answered on the same
connection, ``tags`` alone shows the tags, tag filters are regular
expressions, ``stats`` is flat; and the parts that need no agent: status
checks, logging, the demo's ports."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
from pathlib import Path

import pytest
from conftest import cli, eventually

from clustermember import ClusterConfig, ClusterMembership, JoinTimeout
from clustermember import _control as control_mod
from clustermember.__main__ import build_parser, main
from clustermember._agent import Agent, agent_settings, configure_logging
from clustermember._cli import agent_client, filter_members, leave_answer
from clustermember._control import ControlClient, ControlError, ControlServer
from clustermember._demo import Demo

BIG = "x" * 300  # over max_tag_value


async def test_a_tag_change_applies_whole_or_not_at_all(agent: Agent) -> None:
    async with ControlClient(agent.server.endpoint) as c:
        bad = await c.request({"op": "tags", "set": {"ok": "1", "big": BIG}, "delete": ["role"]})
        assert bad["ok"] is False and "TagError" in bad["error"] and "big" in bad["error"]
        # Nothing changed, and the same connection still answers.
        now = await c.request({"op": "tags"})
        assert now == {"ok": True, "tags": {"role": "db"}}
        good = await c.request({"op": "tags", "set": {"ok": "1"}, "delete": ["role"]})
        assert good == {"ok": True, "tags": {"ok": "1"}}
        assert agent.cluster.local_node.tags == {"ok": "1"}


async def test_every_bad_request_is_answered_on_the_same_connection(agent: Agent) -> None:
    bad_requests = [
        {"op": "tags", "set": {"n": 1}},
        {"op": "tags", "set": ["a=b"]},
        {"op": "tags", "delete": "role"},
        {"op": "tags", "set": {"role": "x"}, "delete": ["role"]},
        {"op": "tags", "set": {"bad key": "v"}},
        {"op": "members", "tags": "role=db"},
        {"op": "members", "tags": {"role": "("}},
        {"op": "members", "status": ["dead"]},
        {"op": "nonsense"},
    ]
    async with ControlClient(agent.server.endpoint) as c:
        for req in bad_requests:
            resp = await c.request(req)
            assert resp["ok"] is False and resp["error"], (req, resp)
        assert (await c.request({"op": "members"}))["ok"] is True
    assert agent.cluster.tags == {"role": "db"}


async def test_the_cli_reports_a_half_bad_change_and_tags_alone_shows_them(
    agent: Agent,
) -> None:
    ep = agent.server.endpoint
    rc, out, err = await cli("tags", "--control", ep, "--set", "ok=1", "--set", f"big={BIG}")
    assert rc == 1 and "TagError" in err and err.count("\n") == 1, err
    rc, out, err = await cli("tags", "--control", ep)
    assert rc == 0 and out == "role=db\n", (out, err)


async def test_tag_filters_are_full_match_regexes_and_stats_are_flat(agent: Agent) -> None:
    ep = agent.server.endpoint
    rc, out, _ = await cli("members", "--control", ep, "--tag", "role=d.*", "--format", "json")
    assert rc == 0 and [m["id"] for m in json.loads(out)] == ["solo"]
    async with ControlClient(ep) as c:
        stats = (await c.request({"op": "stats"}))["stats"]
        found = await c.request({"op": "members", "tags": {"role": "d"}})
    assert found["members"] == []  # the agent's filter matches in full, too
    rc, out, _ = await cli("stats", "--control", ep, "--format", "json")
    flat = json.loads(out)
    # The CLI shows the names a Python service reads from stats().flat().
    assert rc == 0 and list(flat) == ["node_id", *agent.cluster.stats().flat()]
    assert not [k for k, v in flat.items() if isinstance(v, (dict, list))]
    assert "bytes_in" not in flat
    assert flat["transport_bytes_in"] >= stats["bytes_in"]
    assert flat["members_alive"] == 1 and flat["node_id"] == "solo"
    rc, out, _ = await cli("stats", "--control", ep)
    rows = [line.split() for line in out.splitlines()]
    assert rc == 0 and all(len(r) == 2 for r in rows) and ["members_alive", "1"] in rows, out


async def test_rtt_requests_answer_errors_on_the_same_connection(agent: Agent) -> None:
    async with ControlClient(agent.server.endpoint) as c:
        for req, words in (
            ({"op": "rtt"}, "'a' must be a member id"),
            ({"op": "rtt", "a": 1}, "'a' must be a member id"),
            ({"op": "rtt", "a": "solo", "b": ["x"]}, "'b' one or null"),
            ({"op": "rtt", "a": "nope"}, "no member 'nope'"),
            ({"op": "rtt", "a": "solo", "b": "nope"}, "no member 'nope'"),
            ({"op": "members", "rtt": "yes"}, "'rtt' must be true or false"),
            ({"op": "members", "verbose": 1}, "'verbose' must be true or false"),
        ):
            resp = await c.request(req)
            assert resp["ok"] is False and words in resp["error"], (req, resp)
        assert await c.request({"op": "rtt", "a": "solo"}) == {
            "ok": True,
            "rtt": 0.0,
            "a": "solo",
            "b": "solo",
            "missing": [],
        }
        (me,) = (await c.request({"op": "members", "rtt": True}))["members"]
        assert me["id"] == "solo" and me["rtt"] == 0.0
        (me,) = (await c.request({"op": "members"}))["members"]
        assert "rtt" not in me


async def test_history_requests_answer_errors_on_the_same_connection(agent: Agent) -> None:
    async with ControlClient(agent.server.endpoint) as c:
        for req, words in (
            ({"op": "history"}, "'node' must be a member id"),
            ({"op": "history", "node": 1}, "'node' must be a member id"),
            ({"op": "history", "node": ["solo"]}, "'node' must be a member id"),
            ({"op": "history", "node": "nope"}, "no member 'nope'"),
        ):
            resp = await c.request(req)
            assert resp["ok"] is False and words in resp["error"], (req, resp)
        resp = await c.request({"op": "history", "node": "solo"})
        now = time.monotonic()
        assert resp["ok"] is True and resp["history"] == []
        assert (resp["node"], resp["observer"], resp["state"]) == ("solo", "solo", "alive")
        assert resp["since"] <= resp["now"] <= now
    # Through the CLI: no history is said in words, an unknown id is an error.
    ep = agent.server.endpoint
    rc, out, err = await cli("explain", "solo", "--control", ep)
    assert rc == 0 and err == "", err
    assert out.splitlines()[1:] == ["no suspicion, failure or leave of solo seen by solo"]
    assert out.startswith("solo is alive (incarnation 0) since "), out
    rc, out, err = await cli("explain", "solo", "--json", "--control", ep)
    assert rc == 0 and json.loads(out) == [], (out, err)
    rc, out, err = await cli("explain", "nope", "--control", ep)
    assert rc == 1 and out == "" and "no member 'nope'" in err and err.count("\n") == 1, err


async def test_rtt_without_coordinates_is_an_error_that_names_the_member(
    tmp_path: Path, key: bytes
) -> None:
    def node(node_id: str) -> ClusterMembership:
        return ClusterMembership(
            "127.0.0.1:0", ClusterConfig.local(cluster_key=key, node_id=node_id, coordinates=False)
        )

    a, b = node("a"), node("b")
    served = Agent(a, str(tmp_path / "a.sock"), [], 1.0)
    await served.server.start()
    try:
        await a.join([])
        await b.join([a.addr])
        await eventually(lambda: len(a.nodes()) == 2, "b known to a")
        ep = served.server.endpoint
        rc, out, err = await cli("rtt", "--control", ep, "b")
        assert rc == 1 and out == "" and err.count("\n") == 1, (out, err)
        assert "no network coordinate is known for b" in err
        rc, out, err = await cli("members", "--control", ep, "--sort", "rtt", "--format", "json")
        assert rc == 0, err
        # This node first (0 from itself), then the member of unknown RTT.
        assert [(m["id"], m["rtt"], m["coordinate"]) for m in json.loads(out)] == [
            ("a", 0.0, None),
            ("b", None, None),
        ]
        rc, out, _ = await cli("members", "--control", ep, "--sort", "rtt")
        assert rc == 0 and out.splitlines()[2].split()[0] == "b"
        assert out.splitlines()[2].split()[-1] == "-"
    finally:
        await served.server.close()
        await b.close()
        await a.close()


async def test_a_control_port_in_use_is_named() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        endpoint = f"127.0.0.1:{held.getsockname()[1]}"

        async def handle(req: dict[str, object], writer: object) -> None:
            return None

        with pytest.raises(ControlError, match=f"{endpoint}: address already in use"):
            await ControlServer(endpoint, handle).start()


def test_filters_match_whole_values() -> None:
    ms = [
        {"id": "w1", "state": "alive", "tags": {"role": "worker"}},
        {"id": "w2", "state": "failed", "tags": {"role": "web"}},
        {"id": "d1", "state": "alive", "tags": {"role": "db", "zone": "eu"}},
        {"id": "x", "state": "alive", "tags": {}},
    ]
    assert [m["id"] for m in filter_members(ms, ["role=w.*"], [])] == ["w1", "w2"]
    assert [m["id"] for m in filter_members(ms, ["role=w.*"], ["alive"])] == ["w1"]
    assert filter_members(ms, ["role=work"], []) == []  # a full match, not a search
    assert [m["id"] for m in filter_members(ms, ["role=db|web", "zone=eu"], [])] == ["d1"]
    # Several filters of one key: all must match, none replaces another.
    assert filter_members(ms, ["role=db", "role=w.*"], []) == []
    assert [m["id"] for m in filter_members(ms, ["role=w.*", "role=wo.*"], [])] == ["w1"]


def test_a_bad_status_or_regex_is_one_line_and_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = str(tmp_path / "nobody.sock")
    assert main(["members", "--status", "dead", "--control", nobody]) == 1
    err = capsys.readouterr().err
    assert "unknown status 'dead'" in err and "alive, suspect, failed, left" in err
    assert err.count("\n") == 1
    assert main(["members", "--tag", "role=(", "--control", nobody]) == 1
    assert "bad regular expression" in capsys.readouterr().err


def test_the_agent_logs_the_library_at_info_by_default() -> None:
    logger = logging.getLogger("clustermember")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.setLevel(logging.WARNING)  # the library's own default
    stream = io.StringIO()
    try:
        flags = build_parser().parse_args(["agent"])
        assert not hasattr(flags, "log_level")  # unset: the other layers decide
        # The level an agent started with no option and no environment gets.
        settings = agent_settings(vars(flags), {})
        configure_logging(settings["log-level"], stream)
        logging.getLogger("clustermember.membership").info("joined via %s", "seed")
        logging.getLogger("clustermember.membership").debug("not shown")
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "INFO clustermember.membership: joined via seed" in lines[0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["agent", "--log-level", "chatty"])


def test_the_demo_takes_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["demo", "--port", "7950"])
    assert args.port == 7950
    demo = Demo(3, Path("/tmp"), port=args.port)
    binds = [cmd[cmd.index("--bind") + 1] for cmd in (demo.command(i, None) for i in range(3))]
    assert binds == ["127.0.0.1:7950", "127.0.0.1:7951", "127.0.0.1:7952"]
    assert Demo(3, Path("/tmp")).command(0, None)[5] == "127.0.0.1:0"
    assert main(["demo", "--nodes", "3", "--port", "65535"]) == 1
    assert "--port 65535 leaves no room" in capsys.readouterr().err


def test_a_leave_during_the_join_waits_for_it_and_says_what_happened(tmp_path: Path) -> None:
    """A leave asked for while the agent is still joining (its seed never
    answers) is answered once the join has ended, and says nobody was told,
    instead of {"ok": true} for a leave that left nothing.

    The agent runs as ``clustermember agent`` runs it: in the main thread,
    in its own asyncio.run, which cancels whatever is left once the agent
    returns (here: its join failed), so the answer must be sent before."""
    import threading
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        silent = f"127.0.0.1:{s.getsockname()[1]}"  # closed again below: nobody there
    cluster = ClusterMembership("127.0.0.1:0", ClusterConfig.local(insecure=True, node_id="x"))
    sock = str(tmp_path / "a.sock")
    ag = Agent(cluster, sock, [silent], 2.0)
    heard: list[object] = []

    def ask_to_leave() -> None:
        end = time.monotonic() + 30
        while cluster.state != "joining" and time.monotonic() < end:
            time.sleep(0.01)
        heard.append(cluster.state)
        try:
            # The CLI's leave waits as long as the agent says the leave may
            # take (here the rest of the join), not its usual, shorter, timeout.
            heard.append(asyncio.run(leave_answer(sock, timeout=0.5)))
            heard.append(cluster.state)
        except BaseException as exc:  # noqa: BLE001 - checked below
            heard.append(exc)

    client = threading.Thread(target=ask_to_leave, daemon=True)
    client.start()
    with pytest.raises(JoinTimeout):
        asyncio.run(ag.run())
    client.join(60)
    assert not client.is_alive()
    assert heard[0] == "joining", heard
    assert heard[1] == {
        "ok": False,
        "error": "the node had not joined, so no member was told it left; the agent "
        "stops now: start it again to join",
    }, heard
    assert heard[2] != "joining"  # answered after the join ended


async def test_the_control_endpoint_never_deletes_a_file_that_is_not_a_socket(
    tmp_path: Path,
) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    server = ControlServer(str(precious), lambda req, writer: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ControlError, match="exists and is not a socket"):
        await server.start()
    assert precious.read_text() == "keep me"


async def test_a_request_left_unanswered_is_one_line_naming_the_agent_and_operation(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()

    async def stuck(req: dict[str, object], writer: object) -> dict[str, object]:
        await release.wait()
        return {"ok": True}

    server = ControlServer(str(tmp_path / "stuck.sock"), stuck)  # type: ignore[arg-type]
    await server.start()
    try:
        async with ControlClient(server.endpoint, timeout=0.2) as c:
            with pytest.raises(ControlError) as err:
                await c.request({"op": "leave"})
        text = str(err.value)
        assert text.startswith(f"the agent at {server.endpoint} did not answer the leave request")
        assert "within 0.2 s" in text and "\n" not in text
    finally:
        release.set()
        await server.close()


def test_an_error_without_a_message_is_never_printed_empty(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def times_out(*args: object) -> int:
        raise TimeoutError

    monkeypatch.setattr("clustermember._cli.stats", times_out)
    assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: TimeoutError") and err.count("\n") == 1, err


async def test_events_clients_that_go_away_are_let_go_at_once(agent: Agent) -> None:
    """No membership event happens here: each stream must end because its
    client closed the connection, not because an event was written."""
    baseline = len(asyncio.all_tasks())
    writers = []
    for _ in range(10):
        _, w = await asyncio.open_unix_connection(agent.server.endpoint)
        w.write(b'{"op":"events"}\n')
        await w.drain()
        writers.append(w)
    await eventually(lambda: agent.cluster._subscriber_count == 10, "ten event streams")
    for w in writers:
        w.close()
        await w.wait_closed()
    await eventually(
        lambda: agent.cluster._subscriber_count == 0 and len(asyncio.all_tasks()) == baseline,
        "every stream, and its task, gone",
        timeout=10,
    )


async def test_several_filters_of_one_tag_must_all_match(agent: Agent) -> None:
    ep = agent.server.endpoint
    rc, out, err = await cli(
        "members", "--control", ep, "--tag", "role=db", "--tag", "role=w.*", "--format", "json"
    )
    assert rc == 0 and json.loads(out) == [], (out, err)
    async with ControlClient(ep) as c:
        both = await c.request({"op": "members", "tags": [["role", "db"], ["role", "d.*"]]})
        clash = await c.request({"op": "members", "tags": [["role", "db"], ["role", "w.*"]]})
        bad = await c.request({"op": "members", "tags": [["role"]]})
    assert [m["id"] for m in both["members"]] == ["solo"] and clash["members"] == []
    assert bad["ok"] is False and "[key, regex] pairs" in bad["error"]


def test_one_tag_set_twice_is_refused_before_the_agent_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = str(tmp_path / "nobody.sock")
    assert main(["tags", "--set", "a=1", "--set", "a=2", "--control", nobody]) == 1
    assert capsys.readouterr().err == "error: --set a given twice; give each tag once\n"


async def test_wait_retries_until_the_agent_answers_and_has_joined(
    agent: Agent, tmp_path: Path
) -> None:
    with pytest.raises(ControlError, match=r"no agent is running at .*\(waited 0.2 s\)$"):
        async with agent_client(str(tmp_path / "nobody.sock"), wait=0.2):
            pass
    ep = agent.server.endpoint
    with pytest.raises(ControlError, match=r"has not joined its cluster after 0.2 s \(it is"):
        async with agent_client(ep, wait=0.2):
            pass
    # An agent that starts, and joins, while the client waits.
    later = ControlServer(str(tmp_path / "later.sock"), agent.handle)
    ready = asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(start()))

    async def start() -> None:
        await later.start()
        await asyncio.sleep(0.2)
        await agent.cluster.join([])

    try:
        async with agent_client(later.endpoint, wait=30) as c:
            assert agent.cluster.state == "joined"
            assert (await c.request({"op": "members"}))["ok"] is True
    finally:
        ready.cancel()
        await later.close()
    assert build_parser().parse_args(["members", "--wait", "5"]).wait == 5.0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["leave", "--wait", bad])


async def test_a_tcp_client_without_the_token_gets_one_answer_and_is_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the token, invalid JSON closes the connection (after saying
    why) instead of leaving a stranger a session to send more; a client
    that sends nothing is let go after AUTH_TIMEOUT."""
    monkeypatch.setattr(control_mod, "AUTH_TIMEOUT", 0.5)

    async def handle(req: dict[str, object], writer: asyncio.StreamWriter) -> dict[str, object]:
        return {"ok": True}

    server = ControlServer("127.0.0.1:0", handle)
    await server.start()
    try:
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        for send, error in ((b"garbage\n", "not a JSON object"), (b"", "no control token")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(send)
                await writer.drain()
                answer = json.loads(await asyncio.wait_for(reader.readline(), 30))
                assert answer["ok"] is False and error in answer["error"]
                assert await asyncio.wait_for(reader.read(), 30) == b""  # closed
            finally:
                writer.close()
    finally:
        await server.close()


async def test_a_tcp_client_with_the_token_gets_a_session_and_a_wrong_token_none() -> None:
    """Over TCP a client has a session only once it has sent the token the
    agent keeps in token_path(port), which ControlClient reads and sends by
    itself; a wrong token is refused once, the connection closed, and its
    request never reaches the handler."""
    seen: list[object] = []

    async def handle(req: dict[str, object], writer: asyncio.StreamWriter) -> dict[str, object]:
        seen.append(req["op"])
        return {"ok": True, "op": req["op"]}

    # A port given, not 0: the token file is named by the port configured.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ControlServer(f"127.0.0.1:{port}", handle)
    await server.start()
    try:
        async with ControlClient(f"127.0.0.1:{port}") as client:
            assert await client.request({"op": "stats"}) == {"ok": True, "op": "stats"}
            assert await client.request({"op": "members"}) == {"ok": True, "op": "members"}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b'{"token": "not-the-token", "op": "leave"}\n')
            await writer.drain()
            answer = json.loads(await asyncio.wait_for(reader.readline(), 30))
            assert answer == {"ok": False, "error": "bad or missing control token"}
            assert await asyncio.wait_for(reader.read(), 30) == b""  # closed
        finally:
            writer.close()
        assert seen == ["stats", "members"]
    finally:
        await server.close()
