"""User events and queries beside Serf: delivery time, reach under loss, bytes.

    python bench/userevent_bench.py --systems clustermember-lan serf-lan \\
        --n 20 50 --out bench/results/userevents-COMMIT.json

For each system and N, one cluster of N agents on loopback, each started by
bench/compare/adapters.py in a cgroup of its own (its bytes counted by an
nftables counter, bench/compare/accounting.py), all joined through the
first and waited for until every agent sees N alive members. Then, in that
one cluster lifetime:

After SETTLE_S for the joins' traffic to die down:

1. **Events**: agent 0 sends EVENTS user events, one every SPACING_S
   seconds. The clock starts just before the request is written to agent 0's
   control endpoint (clustermember: its control socket, the request
   ``clustermember event`` sends; Serf: its RPC port, the request ``serf
   event`` sends), on a connection already open, so neither CLI's start-up
   is timed. Every agent is observed the same way: a stream its agent pushes
   each user event on as it delivers it (clustermember: the control
   socket's ``events`` stream, as ``clustermember events``; Serf: the RPC
   ``stream`` command of type ``user``, Serf's push of each user event to
   an RPC client), read by one
   thread per agent here, the arrival stamped with time.monotonic(). The
   figure per event: the time to the last member's arrival, and the members
   that had it. Bytes per event: what all agents sent in the SPACING_S
   window that starts with the send, less what they would have sent anyway:
   the mean rate of the quiet SPACING_S windows just before and just after
   it (nothing sent in them), times the window's length. Bytes are IP
   packets with headers, every agent's, counted on output by its cgroup
   (Serf's RPC replies to this script excluded; clustermember's control
   socket is a Unix socket, never counted).
2. **Queries**: agent 0 asks QUERIES queries, every member asked to ack
   (clustermember ``--ack``; Serf acks by default), with the same timeout
   for both; the time to the last ack as it arrives on the asker's stream,
   the acks, and the bytes as for an event.
3. **Loss**: an nftables rule drops 10% of the UDP datagrams addressed to
   any agent's gossip port (``numgen random mod 100 < 10 drop`` on the
   input hook: silent loss at the receiver, for both systems alike); then
   EVENTS more events, one every SPACING_S, and the observation goes on
   until every member has every event or LOSS_TAIL_S after the last send.
   Per event: the members that had it within SPACING_S (gossip) and by the
   end, and the time the last one got it. Serf's push-pull is TCP, so only
   its gossip is lost; every clustermember datagram (push-pull included,
   over QUIC) is subject to the rule.

Every process is started and killed by PID (adapters.stop_all), the
counters, cgroups and loss table removed, each step bounded by a deadline.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import raw
from bench.compare.accounting import CgroupTraffic
from bench.compare.adapters import ClusterMember, Node, SerfRPC, System, make

CONVERGE_DEADLINE = 240.0  # every agent sees N alive members, or the run is recorded as failed
SETTLE_S = 30.0  # after convergence, before the first window: the joins' traffic dies down
SPACING_S = 10.0  # between two events or queries; also each one's byte window
QUERY_TIMEOUT_S = 5.0  # both systems' query time (Serf's default at N < 100 is 6.4 s)
LOSS_PERCENT = 10
LOSS_TAIL_S = 75.0  # under loss: observe this long after the last send at most
PAYLOAD = b"x" * 32
POLL = 0.02


class Watch:
    """Every agent's user-event stream: the first arrival of each event name
    at each agent, stamped on arrival here."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []

    def note(self, event: str, node: str) -> None:
        t = time.monotonic()
        with self.lock:
            self.arrivals.setdefault(event, {}).setdefault(node, t)

    def got(self, event: str) -> dict[str, float]:
        with self.lock:
            return dict(self.arrivals.get(event, {}))

    def attach(self, system: System, node: Node) -> None:
        """Open node's user-event stream and read it on a thread of its own."""
        if isinstance(system, ClusterMember):
            system._close(node)  # the adapter's own stream: one stream per agent
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(node.extra["sock"])
            s.sendall(b'{"op": "events"}\n')
            self.socks.append(s)
            threading.Thread(target=self._cm_pump, args=(s, node.name), daemon=True).start()
            return
        rpc = SerfRPC(node.extra["rpc_port"])
        rpc.send("stream", {"Type": "user"})
        rpc.answer("stream", reply=False)
        rpc.sock.settimeout(None)
        self.socks.append(rpc.sock)
        threading.Thread(target=self._serf_pump, args=(rpc, node.name), daemon=True).start()

    def _cm_pump(self, s: socket.socket, name: str) -> None:
        with contextlib.suppress(OSError, ValueError), s.makefile("r") as f:
            for line in f:
                ev = json.loads(line).get("event") or {}
                if ev.get("type") == "UserEvent":
                    self.note(ev["name"], name)

    def _serf_pump(self, rpc: SerfRPC, name: str) -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            while True:
                obj = rpc._next()
                if isinstance(obj, dict) and obj.get("Event") == "user":
                    self.note(obj["Name"], name)

    def close(self) -> None:
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def cm_request(node: Node, req: dict[str, Any]) -> tuple[float, socket.socket]:
    """Open agent node's control socket, then write req; the time just before."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30.0)
    s.connect(node.extra["sock"])
    data = json.dumps(req).encode() + b"\n"
    t0 = time.monotonic()
    s.sendall(data)
    return t0, s


def send_event(system: System, node: Node, name: str) -> float:
    """Have node send user event name; the time just before the request went."""
    if isinstance(system, ClusterMember):
        req = {
            "op": "event",
            "name": name,
            "payload_base64": base64.b64encode(PAYLOAD).decode(),
            "coalesce": False,
        }
        t0, s = cm_request(node, req)
        with s, s.makefile("r") as f:
            resp = json.loads(f.readline())
        if not resp.get("ok"):
            raise RuntimeError(f"event refused: {resp}")
        return t0
    rpc = SerfRPC(node.extra["rpc_port"])
    try:
        t0 = time.monotonic()
        rpc.request("event", {"Name": name, "Payload": PAYLOAD, "Coalesce": False})
    finally:
        rpc.close()
    return t0


def ask(system: System, node: Node, name: str) -> tuple[float, dict[str, float]]:
    """Have node ask query name of every member, acks wanted; the time just
    before the request went, and each member's ack arrival."""
    acks: dict[str, float] = {}
    if isinstance(system, ClusterMember):
        req = {
            "op": "query",
            "name": name,
            "payload_base64": "",
            "tags": [],
            "want_ack": True,
            "relay": 0,
            "timeout": QUERY_TIMEOUT_S,
        }
        t0, s = cm_request(node, req)
        with s, s.makefile("r") as f:
            for line in f:
                msg = json.loads(line)
                r = msg.get("response")
                if r is not None:
                    if r["ack"]:
                        acks.setdefault(r["node_id"], time.monotonic())
                elif msg.get("done") or not msg.get("ok", True):
                    if not msg.get("ok", True):
                        raise RuntimeError(f"query refused: {msg}")
                    break
        return t0, acks
    rpc = SerfRPC(node.extra["rpc_port"])
    rpc.sock.settimeout(QUERY_TIMEOUT_S + 30.0)
    try:
        body = {
            "FilterNodes": [],
            "FilterTags": {},
            "RequestAck": True,
            "Timeout": int(QUERY_TIMEOUT_S * 1e9),
            "Name": name,
            "Payload": b"",
        }
        t0 = time.monotonic()
        rpc.send("query", body)
        while True:
            obj = rpc._next()
            if not isinstance(obj, dict):
                continue
            if obj.get("Error"):
                raise RuntimeError(f"serf query: {obj['Error']}")
            kind = obj.get("Type")
            if kind == "ack":
                acks.setdefault(obj["From"], time.monotonic())
            elif kind == "done":
                break
    finally:
        rpc.close()
    return t0, acks


class Loss:
    """Drop LOSS_PERCENT of the UDP datagrams sent to the given ports, at the
    receiving end (input hook), with an nftables table of its own."""

    def __init__(self, ports: list[int]) -> None:
        self.table = f"cmloss{os.getpid()}"
        ports_s = ", ".join(map(str, ports))
        cmds = [
            f"add table inet {self.table}",
            f"add chain inet {self.table} in "
            "{ type filter hook input priority -10; policy accept; }",
            f"add rule inet {self.table} in ip daddr 127.0.0.1 udp dport {{ {ports_s} }} "
            f"numgen random mod 100 < {LOSS_PERCENT} counter drop",
            f"add rule inet {self.table} in ip daddr 127.0.0.1 udp dport {{ {ports_s} }} counter",
        ]
        for c in cmds:
            subprocess.run(["nft", *shlex.split(c)], check=True)

    def counts(self) -> dict[str, int]:
        """Datagrams dropped and let through so far."""
        r = subprocess.run(
            ["nft", "-j", "list", "table", "inet", self.table],
            capture_output=True,
            text=True,
            check=True,
        )
        vals = []
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if rule:
                vals.append(next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e))
        return {"dropped": vals[0], "passed": vals[1]}

    def close(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)


def total(traffic: CgroupTraffic) -> int:
    return sum(traffic.read().values()) if traffic.ok else 0


def converge(system: System, nodes: list[Node], n: int) -> float:
    """Wait until every agent sees n alive members; seconds it took."""
    t0 = time.monotonic()
    pending = list(nodes)
    while pending and time.monotonic() - t0 < CONVERGE_DEADLINE:
        still = []
        for nd in pending:
            try:
                v = system.view(nd)
            except Exception:  # noqa: BLE001 - not up yet; asked again
                still.append(nd)
                continue
            if sum(1 for st, _ in v.values() if st == "alive") < n:
                still.append(nd)
        pending = still
        if pending:
            time.sleep(0.5)
    if pending:
        raise RuntimeError(f"{len(pending)} agents short of {n} alive members")
    return time.monotonic() - t0


def event_row(watch: Watch, name: str, t0: float, n: int, within: float) -> dict[str, Any]:
    got = watch.got(name)
    times = sorted(t - t0 for t in got.values())
    early = sum(1 for t in times if t <= within)
    return {
        "name": name,
        "members": len(got),
        "fraction": len(got) / n,
        "fraction_within_spacing": early / n,
        "last_s": times[-1] if times else None,
        "all_s": times[-1] if len(got) == n else None,
        "median_member_s": times[len(times) // 2] if times else None,
    }


def run_one(system_name: str, n: int, events: int, queries: int, base_port: int) -> dict[str, Any]:
    res: dict[str, Any] = {"system": system_name, "n": n}
    work = Path(tempfile.mkdtemp(prefix=f"uev-{system_name}-{n}-"))
    system = make(system_name, work)
    traffic = CgroupTraffic()
    watch = Watch()
    loss: Loss | None = None
    if not traffic.ok:
        res["traffic_note"] = traffic.reason
    try:
        ports = [base_port + i for i in range(n)]
        names = [f"n{i}" for i in range(n)]
        nodes = []
        t_launch = time.monotonic()
        for i in range(n):
            cg = traffic.add(names[i], system.rpc_port(ports[i]))
            nd = system.start(i, names[i], ports[i], {}, None if i == 0 else ports[0], cg)
            nodes.append(nd)
            if i == 0:
                system.wait_up(nd)
        for nd in nodes[1:]:
            system.wait_up(nd)
        for nd in nodes:
            watch.attach(system, nd)
        res["converge_s"] = converge(system, nodes, n)
        res["launch_to_converged_s"] = time.monotonic() - t_launch
        time.sleep(SETTLE_S)

        quiet: list[float] = []  # bytes per second of each quiet window

        def hold(action: Any = None) -> tuple[Any, int, float]:
            """Run action (if any) at the start of a SPACING_S window; its
            result, and the bytes sent and seconds taken in the window."""
            ba, ta = total(traffic), time.monotonic()
            out = action() if action is not None else None
            rest = SPACING_S - (time.monotonic() - ta)
            if rest > 0:
                time.sleep(rest)
            bb, tb = total(traffic), time.monotonic()
            return out, bb - ba, tb - ta

        def window(action: Any) -> tuple[Any, dict[str, int]]:
            """action's window between two quiet ones: its result, and its
            bytes beyond the mean rate of the quiet windows either side."""
            if not quiet:
                _, qb, qs = hold()
                quiet.append(qb / qs)
            out, b, secs = hold(action)
            _, qb, qs = hold()
            quiet.append(qb / qs)
            rate = (quiet[-2] + quiet[-1]) / 2
            return out, {
                "extra_bytes": int(b - rate * secs),
                "window_bytes": b,
                "quiet_bytes_per_s": [int(quiet[-2]), int(quiet[-1])],
            }

        rows = []
        for k in range(events):
            name = f"ev{k}"
            ts, extra = window(lambda name=name: send_event(system, nodes[0], name))
            row = event_row(watch, name, ts, n, SPACING_S)
            row.update(extra)
            rows.append(row)
        res["events"] = rows

        rows = []
        for k in range(queries):
            name = f"q{k}"
            (tq, acks), extra = window(lambda name=name: ask(system, nodes[0], name))
            times = sorted(t - tq for t in acks.values())
            rows.append(
                {
                    "name": name,
                    "acks": len(acks),
                    "last_ack_s": times[-1] if times else None,
                    "all_acked_s": times[-1] if len(acks) == n else None,
                    **extra,
                }
            )
        res["queries"] = rows
        res["quiet"] = {
            "windows": len(quiet),
            "bytes_per_s_median": statistics.median(quiet),
            "bytes_per_s_min": min(quiet),
            "bytes_per_s_max": max(quiet),
        }

        loss = Loss(ports)
        time.sleep(2.0)
        sent: list[tuple[str, float]] = []
        for k in range(events):
            name = f"loss{k}"
            sent.append((name, send_event(system, nodes[0], name)))
            time.sleep(SPACING_S)
        end = sent[-1][1] + LOSS_TAIL_S
        while time.monotonic() < end:
            if all(len(watch.got(nm)) == n for nm, _ in sent):
                break
            time.sleep(0.5)
        res["loss_observed_s"] = time.monotonic() - sent[-1][1]
        res["loss"] = [event_row(watch, nm, ts, n, SPACING_S) for nm, ts in sent]
        res["loss_datagrams"] = loss.counts()
    except Exception as exc:  # noqa: BLE001 - recorded; the run is kept
        res["error"] = repr(exc)
    finally:
        watch.close()
        if loss is not None:
            loss.close()
        system.stop_all()
        traffic.close()
    res["loadavg_after"] = os.getloadavg()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=["clustermember-lan", "serf-lan"])
    ap.add_argument("--n", nargs="+", type=int, default=[20, 50])
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--base-port", type=int, default=24000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    doc: dict[str, Any] = {
        "commit": raw.commit(),
        "command": "python bench/userevent_bench.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "serf": subprocess.run(["serf", "version"], capture_output=True, text=True).stdout.split(
            "\n"
        )[0],
        "cpus": os.cpu_count(),
        # What the machine was doing, measured rather than claimed.
        "note": "loopback",
        "loadavg_at_start": list(os.getloadavg()),
        "settings": {
            "settle_s": SETTLE_S,
            "spacing_s": SPACING_S,
            "query_timeout_s": QUERY_TIMEOUT_S,
            "loss_percent": LOSS_PERCENT,
            "loss_tail_s": LOSS_TAIL_S,
            "payload_bytes": len(PAYLOAD),
        },
        "runs": [],
    }
    for n in args.n:
        for s in args.systems:
            print(f"{s} N={n} ...", file=sys.stderr, flush=True)
            r = run_one(s, n, args.events, args.queries, args.base_port)
            doc["runs"].append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if args.out:
                args.out.write_text(raw.dump_runs(doc))
    if not args.out:
        print(raw.dump_runs(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
