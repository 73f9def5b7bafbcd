"""Command line: ``clustermember <command>`` (also ``python -m clustermember``).

Commands: ``agent`` runs a node; ``members``, ``rtt``, ``explain``, ``tags``,
``leave``, ``stats`` and ``events`` talk to a running agent; ``keygen`` prints a new cluster key;
``demo`` starts a local cluster of agents and shows it at work; ``simdemo``
prints the timeline of a simulated cluster::

    clustermember keygen > cluster.key
    clustermember agent --bind 127.0.0.1:7946 --key-file cluster.key --tag role=db
    clustermember members --tag role=db --format json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clustermember import _cli
from clustermember._agent import LOG_LEVELS, PROFILES
from clustermember._control import ControlError, default_endpoint
from clustermember._metrics_server import DEFAULT_METRICS

if TYPE_CHECKING:
    from clustermember import ClusterConfig


def agent_config(settings: dict[str, Any]) -> ClusterConfig:
    """The node's ClusterConfig for the agent's resolved settings: the
    profile, changed by ``--set``; a UsageError for a setting out of range.

    >>> from clustermember._agent import agent_settings
    >>> s = agent_settings({"insecure": True, "set": ["probe_interval=1.5"]}, {})
    >>> agent_config(s).probe_interval
    1.5
    """
    import dataclasses

    from clustermember import ClusterConfig
    from clustermember._agent import auth_settings

    config: ClusterConfig = getattr(ClusterConfig, settings["profile"])(
        node_id=settings["node-id"],
        tags=settings["tag"],
        user_event_coalesce=settings["event-coalesce"],
        **auth_settings(settings),
    )
    if not settings["set"]:
        return config
    # Refused only once the settings are applied: then it is theirs to name.
    try:
        return dataclasses.replace(config, **settings["set"])
    except ValueError as exc:
        raise _cli.UsageError(f"setting refused (--set): {exc}") from exc


def _agent(args: argparse.Namespace) -> int:
    from clustermember import ClusterMembership
    from clustermember._agent import Agent, agent_settings, configure_logging

    settings = agent_settings(vars(args), os.environ)
    # Every usage error before logging is set up: a refused command line
    # changes nothing in the process (a test's logging included).
    config = agent_config(settings)
    configure_logging(settings["log-level"])
    cluster = ClusterMembership(settings["bind"], config)
    if settings["fault-drop"]:
        log = logging.getLogger("clustermember")
        log.warning(
            "fault injection: dropping %.1f%% of outgoing datagrams", 100 * settings["fault-drop"]
        )
        cluster.inject_faults(drop_out=settings["fault-drop"])
    control = settings["control"] or default_endpoint()
    agent = Agent(
        cluster,
        control,
        settings["join"],
        settings["join-timeout"],
        event_handler=settings["event-handler"],
        key_source=key_source(settings),
        query_handlers=settings["query-handler"],
        metrics=settings["metrics"],
    )
    return asyncio.run(agent.run())


def key_source(settings: dict[str, object]) -> tuple[str, str] | None:
    """Which file the agent's keys came from, if one: a live rotation keeps
    a keyring file up to date and warns about a single key file."""
    for kind in ("keyring-file", "key-file"):
        path = settings.get(kind)
        if isinstance(path, str) and path:
            return (kind, path)
    return None


def version_text() -> str:
    """This package's version, and ngtcp2's, GnuTLS's and libuv's: the ones
    loaded and, where they differ, the ones it was built against.

    >>> version_text().splitlines()[0].startswith("clustermember ")
    True
    """
    from clustermember import __version__, _core

    lines = [f"clustermember {__version__}"]
    for name, label in (("ngtcp2", "ngtcp2"), ("gnutls", "GnuTLS"), ("libuv", "libuv")):
        v = _core.versions()[name]
        built = "" if v["built"] == v["running"] else f" (built against {v['built']})"
        lines.append(f"{label} {v['running']}{built}")
    return "\n".join(lines)


class _Version(argparse.Action):
    """``--version``: print version_text() as it is, one line each, and exit."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def _add_control(p: argparse.ArgumentParser, client: bool = True) -> None:
    p.add_argument(
        "--control",
        help="the agent's control endpoint: a Unix socket path or 127.0.0.1:PORT "
        "(default $CLUSTERMEMBER_CONTROL or a socket in the per-user runtime dir)",
    )
    if client:
        p.add_argument(
            "--wait",
            type=_cli.seconds,
            default=0.0,
            metavar="SECONDS",
            help="wait up to SECONDS for the agent to answer and to have joined its "
            "cluster (one just started in the background); default 0: ask once",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="clustermember", description="Cluster membership: SWIM + Lifeguard over QUIC."
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="the package's version and its libraries' (loaded, and built against)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser(
        "agent",
        help="run a node",
        description="Run one cluster node. Every option may also come from a "
        "CLUSTERMEMBER_* environment variable or a --config file (docs/cli.md); "
        "flags win over the environment, which wins over the file.",
        argument_default=argparse.SUPPRESS,  # unset flags leave room for the other layers
    )
    a.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of agent options, by flag name (default $CLUSTERMEMBER_CONFIG)",
    )
    a.add_argument("--bind", help="address to listen on (host:port; default 127.0.0.1:7946)")
    a.add_argument(
        "--join", action="append", metavar="HOST:PORT", help="a seed to join through (repeatable)"
    )
    a.add_argument(
        "--join-timeout", type=float, help="seconds to keep retrying the join (default 30)"
    )
    a.add_argument("--node-id", help="this node's id (default: host-port)")
    a.add_argument("--tag", action="append", metavar="K=V", help="a tag (repeatable)")
    a.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="change one setting of the profile, e.g. probe_interval=2.0 (repeatable; "
        "the settings: docs/configuration.md)",
    )
    a.add_argument("--key-file", help="file with the base64 cluster key")
    a.add_argument("--keyring-file", help="file with several keys, one per line, primary first")
    a.add_argument("--tls-ca", help="mutual TLS: CA certificate (PEM)")
    a.add_argument("--tls-cert", help="mutual TLS: this node's certificate (PEM)")
    a.add_argument("--tls-key", help="mutual TLS: this node's private key (PEM)")
    a.add_argument("--insecure", action="store_true", help="no authentication (logs a warning)")
    a.add_argument("--profile", choices=PROFILES, help="timing profile (default lan)")
    a.add_argument(
        "--log-level", choices=LOG_LEVELS, type=str.lower, help="what to log (default info)"
    )
    a.add_argument(
        "--fault-drop",
        type=_cli.fraction,
        metavar="P",
        help="testing: drop this fraction of outgoing datagrams (0-1)",
    )
    a.add_argument(
        "--event-handler",
        metavar="CMD",
        help="shell command run once per user event: the payload on stdin, the event "
        "in CLUSTERMEMBER_* variables (docs/cli.md)",
    )
    a.add_argument(
        "--event-coalesce",
        type=float,
        metavar="SECONDS",
        help="hold user events sent with coalescing this long and deliver only the "
        "latest of each name (default 0: off)",
    )
    a.add_argument(
        "--query-handler",
        action="append",
        metavar="NAME=CMD",
        help="answer queries NAME with what shell command CMD prints, the payload on "
        "its stdin (repeatable; docs/cli.md)",
    )
    a.add_argument(
        "--metrics",
        nargs="?",
        const=DEFAULT_METRICS,
        metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP at /metrics on HOST:PORT (or PORT, on "
        f"127.0.0.1; alone: {DEFAULT_METRICS}); default off (docs/operations.md)",
    )
    _add_control(a, client=False)

    m = sub.add_parser("members", help="list members", description="List the members.")
    m.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="K=REGEX",
        help="only members whose tag K fully matches REGEX, e.g. role=w.* "
        "(repeatable; all must match)",
    )
    m.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATE",
        help="only members in this state: alive, suspect, failed or left (repeatable)",
    )
    m.add_argument("--format", choices=("table", "json"), default="table")
    m.add_argument(
        "--sort",
        choices=("id", "rtt"),
        default="id",
        help="order: by id (the default), or nearest first by the estimated RTT from "
        "the agent's node (unknown last), shown in an RTT column",
    )
    m.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="with each member's health as the agent's node sees it: direct probes "
        "answered, their round trips (median, 90th percentile, largest), phi, when "
        "last heard from, and whether a connection is open",
    )
    _add_control(m)

    r = sub.add_parser(
        "rtt",
        help="estimated round-trip time between members",
        description="Print the estimated RTT between members A and B, or from the "
        "agent's node to A, from their network coordinates (no message is sent).",
    )
    r.add_argument("a", metavar="A", help="a member's id")
    r.add_argument("b", metavar="B", nargs="?", help="another member's id (default: the agent's)")
    _add_control(r)

    x = sub.add_parser(
        "explain",
        help="why a member was suspected, failed or came back",
        description="Explain NODE's recent state changes as the agent's node saw them, "
        "one line each: when, the event, and its cause (its own probe, an accuser's "
        "gossip, a timeout, the member's refutation); docs/operations.md.",
    )
    x.add_argument("node", metavar="NODE", help="a member's id")
    x.add_argument("--format", choices=("text", "json"), default="text")
    x.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the recorded entries as JSON (the same as --format json)",
    )
    _add_control(x)

    t = sub.add_parser(
        "tags",
        help="show or change this agent's tags",
        description="Set or delete tags of the agent's node, all at once or none; "
        "with no option, show them.",
    )
    t.add_argument("--set", action="append", default=[], metavar="K=V", dest="set_")
    t.add_argument("--delete", action="append", default=[], metavar="K")
    _add_control(t)

    lv = sub.add_parser("leave", help="leave gracefully and stop the agent")
    _add_control(lv)
    st = sub.add_parser("stats", help="print the agent's counters")
    st.add_argument("--format", choices=("table", "json"), default="table")
    _add_control(st)
    ev = sub.add_parser("events", help="stream membership events as JSON lines")
    _add_control(ev)
    ue = sub.add_parser(
        "event",
        help="send a user event to every member",
        description="Send a user event through the agent to every member (docs/events.md).",
    )
    ue.add_argument("name", help="the event's name: 1-128 printable ASCII, no spaces")
    ue.add_argument(
        "payload", nargs="?", default="", help="its payload (text; '-' reads bytes from stdin)"
    )
    ue.add_argument(
        "--no-coalesce",
        action="store_true",
        help="receivers that coalesce must deliver this one even if a later one of its name comes",
    )
    _add_control(ue, client=True)
    qu = sub.add_parser(
        "query",
        help="ask every member and print the answers",
        description="Ask every member a query through the agent; members whose tags "
        "match answer (docs/events.md).",
    )
    qu.add_argument("name", help="the query's name: 1-128 printable ASCII, no spaces")
    qu.add_argument(
        "payload", nargs="?", default="", help="its payload (text; '-' reads bytes from stdin)"
    )
    qu.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="K=REGEX",
        help="only members whose tag K fully matches REGEX (repeatable: all must match)",
    )
    qu.add_argument(
        "--node", action="append", default=[], metavar="ID", help="only this member (repeatable)"
    )
    qu.add_argument("--timeout", type=_cli.seconds, help="seconds to listen (default: Serf's)")
    qu.add_argument("--ack", action="store_true", help="ask selected members to ack at once")
    qu.add_argument(
        "--relay", type=int, default=0, choices=range(6), help="relay each answer through N others"
    )
    qu.add_argument("--format", choices=("text", "json"), default="text")
    _add_control(qu, client=True)
    ks = sub.add_parser(
        "keys",
        help="change or list the cluster keys on every member",
        description="Live key rotation (docs/security.md): install a new key, use it, "
        "remove the old one; each step reports every member.",
    )
    action = ks.add_mutually_exclusive_group(required=True)
    action.add_argument("--install", metavar="KEY", help="every member accepts KEY (base64)")
    action.add_argument("--use", metavar="KEY", help="every member offers KEY first")
    action.add_argument("--remove", metavar="KEY", help="every member forgets KEY")
    action.add_argument("--list", action="store_true", help="which keys the members hold")
    ks.add_argument("--format", choices=("text", "json"), default="text")
    _add_control(ks, client=True)
    sub.add_parser("keygen", help="print a new base64 cluster key")

    d = sub.add_parser("demo", help="start a local cluster of agents and show it at work")
    d.add_argument("--nodes", type=int, default=5, help="number of agents (default 5)")
    d.add_argument(
        "--port",
        type=int,
        default=0,
        help="agents listen on 127.0.0.1 at PORT, PORT+1, ... (default 0: ports the system picks)",
    )
    s = sub.add_parser("simdemo", help="timeline of a simulated cluster (no network)")
    s.add_argument("--nodes", type=int, default=6)
    s.add_argument("--seed", type=int, default=1)
    return parser


def error_message(exc: BaseException) -> str:
    """What the command prints for an error: its message, or, for one that
    has none (a bare TimeoutError), its kind and what to do, never nothing.

    >>> error_message(TimeoutError())
    'TimeoutError (no details); run the command again, and report it if it recurs'
    """
    text = str(exc).strip()
    if text:
        return text
    return f"{type(exc).__name__} (no details); run the command again, and report it if it recurs"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clustermember`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "agent":
            return _agent(args)
        if args.command == "members":
            return _cli.members(
                args.control,
                args.tag,
                args.status,
                args.format,
                args.wait,
                args.sort,
                args.verbose,
            )
        if args.command == "rtt":
            return _cli.rtt(args.control, args.a, args.b, args.wait)
        if args.command == "explain":
            return _cli.explain(args.control, args.node, args.format, args.wait)
        if args.command == "tags":
            return _cli.tags(args.control, args.set_, args.delete, args.wait)
        if args.command == "leave":
            return _cli.leave(args.control, args.wait)
        if args.command == "stats":
            return _cli.stats(args.control, args.format, args.wait)
        if args.command == "events":
            return _cli.events(args.control, args.wait)
        if args.command == "keys":
            return _cli.keys(
                args.control, args.install, args.use, args.remove, args.format, args.wait
            )
        if args.command == "query":
            return _cli.query(
                args.control,
                args.name,
                args.payload,
                args.tag,
                args.node,
                args.timeout,
                args.ack,
                args.relay,
                args.format,
                args.wait,
            )
        if args.command == "event":
            return _cli.event(
                args.control, args.name, args.payload, not args.no_coalesce, args.wait
            )
        if args.command == "keygen":
            print(_cli.keygen())
            return 0
        if args.command == "demo":
            from clustermember._demo import run_demo

            return run_demo(args.nodes, args.port)
        if args.command == "simdemo":
            from clustermember._simdemo import demo

            return demo(args.nodes, args.seed)
    except (_cli.UsageError, ControlError) as exc:
        return _cli.fail(error_message(exc))
    except Exception as exc:  # a library error: one line, no traceback
        from clustermember import ClusterError

        # OSError: a port in use or refused names its address (errno kept).
        if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
            return _cli.fail(exc.strerror)  # its message names the address, without "[Errno N]"
        if isinstance(exc, (ClusterError, ValueError, TypeError, OSError)):
            return _cli.fail(error_message(exc))
        raise
    return 2


if __name__ == "__main__":
    sys.exit(main())
