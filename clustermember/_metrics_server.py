"""The agent's ``/metrics`` endpoint: a minimal HTTP/1.x server on asyncio.

It answers ``GET /metrics`` (and ``HEAD``) with :func:`metrics_text`, 404
for any other path, 405 for any other method, and closes each connection
after one answer. A client gets :data:`READ_TIMEOUT` seconds and
:data:`MAX_HEAD` bytes for its request line and headers; past either it
gets 408 or 431 and is let go. At most :data:`MAX_PER_SOURCE` connections
from one address (an IPv6 client's /64) wait for their request at once: a
new one past that closes the one from the same address that has waited
longest. At most :data:`MAX_CLIENTS` wait in all: past that, a newcomer
closes the oldest waiting connection of the address that holds the most
(of those, the one heard from last). So a slow or garbage
client costs the agent a few sockets for a bounded time, and one address,
however many connections it opens, cannot close a scraper's from another.

    >>> server = MetricsServer("127.0.0.1:9946", lambda: "up 1\\n")  # doctest: +SKIP
    >>> await server.start(); server.url                             # doctest: +SKIP
    'http://127.0.0.1:9946/metrics'
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable

from clustermember._control import close_server
from clustermember._errors import ClusterError

log = logging.getLogger("clustermember.agent")

#: Where ``--metrics`` with no address serves, and the host a bare port gets.
DEFAULT_METRICS = "127.0.0.1:9946"
#: Seconds a client has to send its request line and headers, and then to
#: take the answer.
READ_TIMEOUT = 5.0
#: Bytes of request line and headers at most (a scraper sends a few hundred).
MAX_HEAD = 8192
#: Connections waiting for their request at once, at most.
MAX_CLIENTS = 32
#: Of those, from one address at most.
MAX_PER_SOURCE = 8

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class MetricsAddressError(ValueError):
    """A ``--metrics`` address that is not HOST:PORT or a port."""


def parse_metrics_addr(text: str) -> tuple[str, int]:
    """The (host, port) of a ``--metrics`` value: ``HOST:PORT``, ``:PORT``
    or ``PORT`` (both on 127.0.0.1); an IPv6 host in brackets. Port 0 lets
    the system pick one.

    >>> parse_metrics_addr("9100"), parse_metrics_addr("[::1]:9100")
    (('127.0.0.1', 9100), ('::1', 9100))
    """
    s = text.strip()
    host, sep, port = s.rpartition(":")  # no colon: host and sep are empty
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if (
        not port.isdigit()
        or int(port) > 65535
        or (sep and not host and s != f":{port}")
        or (":" in host and not bracketed)  # an IPv6 host goes in brackets
    ):
        raise MetricsAddressError(f"{text!r} is not HOST:PORT or PORT (e.g. {DEFAULT_METRICS})")
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost``.

    >>> is_loopback("127.0.0.2"), is_loopback("0.0.0.0")
    (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def source_of(host: str) -> str:
    """What the per-address bound counts a client by: its IPv4 address, or
    the /64 of an IPv6 one (one host may hold a whole /64), as the transport
    does.

    >>> source_of("10.0.0.7"), source_of("2001:db8::1"), source_of("::ffff:10.0.0.7")
    ('10.0.0.7', '2001:db8::/64', '10.0.0.7')
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class MetricsServer:
    """Serve ``render()`` at ``/metrics`` on ``addr`` (see the module's doc)."""

    def __init__(
        self, addr: str, render: Callable[[], str], read_timeout: float = READ_TIMEOUT
    ) -> None:
        self.host, self.port = parse_metrics_addr(addr)
        self.addr = addr
        self._render = render
        self._read_timeout = read_timeout
        self._server: asyncio.AbstractServer | None = None
        # Connections still reading their request, oldest first, by address.
        self._reading: dict[str, dict[asyncio.StreamWriter, None]] = {}

    @property
    def url(self) -> str:
        """The URL scrapers use, with the port bound (port 0 resolved)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and start serving; OSError naming the address if it cannot."""
        if not is_loopback(self.host):
            log.warning(
                "metrics are served on %s, beyond loopback, to anyone who can reach it "
                "(no authentication): firewall it or use a loopback address",
                self.host,
            )
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_HEAD
            )
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else None
            if reason is None and isinstance(exc, socket.gaierror):
                reason = exc.strerror  # a resolver's code, not an errno
            reason = reason or (os.strerror(exc.errno) if exc.errno else str(exc))
            raise OSError(
                exc.errno,
                f"metrics endpoint {self.addr}: {reason}; pass another --metrics "
                "(port 0 lets the system pick one)",
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        server, self._server = self._server, None
        await close_server(server)

    def _admit(self, source: str, writer: asyncio.StreamWriter) -> None:
        """Count a new connection as waiting for its request, first closing
        one that waits already if a bound is reached (see the module's doc)."""
        if len(self._reading.get(source, ())) >= MAX_PER_SOURCE:
            self._drop(source)
        elif sum(map(len, self._reading.values())) >= MAX_CLIENTS:
            # The address holding the most; of those, the one heard from
            # last (dicts keep the order keys were added in, and an address
            # is added anew once it holds none), so that many addresses of
            # one connection each close their own newest, not a scraper's.
            most = max(map(len, self._reading.values()))
            self._drop([k for k, v in self._reading.items() if len(v) == most][-1])
        self._reading.setdefault(source, {})[writer] = None

    def _drop(self, source: str) -> None:
        """Close the connection from source that has waited longest."""
        oldest = next(iter(self._reading[source]))
        self._forget(source, oldest)
        oldest.close()

    def _forget(self, source: str, writer: asyncio.StreamWriter) -> None:
        """No longer count writer as waiting (if it still was)."""
        mine = self._reading.get(source)
        if mine is None or writer not in mine:
            return
        del mine[writer]
        if not mine:
            del self._reading[source]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = source_of(str(peer[0])) if isinstance(peer, tuple) and peer else ""
        self._admit(source, writer)
        try:
            try:
                status, body, head_only = await self._answer(reader)
            finally:
                self._forget(source, writer)
            if status:
                await asyncio.wait_for(
                    self._send(writer, status, body, head_only), self._read_timeout
                )
        except (OSError, asyncio.TimeoutError):
            pass  # the client went away or would not take the answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bool]:
        """The status, body and whether to send headers only; status 0 for a
        client that went away before asking anything."""
        try:
            head = await asyncio.wait_for(_read_head(reader), self._read_timeout)
        except asyncio.TimeoutError:
            return 408, "no request within the time limit\n", False
        except (ValueError, asyncio.LimitOverrunError, _HeadTooLargeError):
            return 431, f"request line and headers over {MAX_HEAD} bytes\n", False
        if head is None:
            return 0, "", False
        parts = head.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "not an HTTP/1.x request\n", False
        method, target = parts[0], parts[1]
        if target.split("?", 1)[0] != "/metrics":
            return 404, "not found: metrics are at /metrics\n", False
        if method not in ("GET", "HEAD"):
            return 405, "only GET and HEAD\n", False
        try:
            return 200, self._render(), method == "HEAD"
        except Exception as exc:  # noqa: BLE001 - the scraper hears of it, the agent goes on
            if isinstance(exc, ClusterError):
                return 503, f"{exc}\n", False
            log.exception("rendering the metrics failed")
            return 500, "rendering the metrics failed (logged)\n", False

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: str, head_only: bool) -> None:
        from clustermember._metrics import CONTENT_TYPE  # with the first answer, not at start

        data = body.encode("utf-8")
        ctype = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
        lines = [
            f"HTTP/1.1 {status} {_REASONS[status]}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(data)}",
            "Connection: close",
        ]
        if status == 405:
            lines.append("Allow: GET, HEAD")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        if not head_only:
            writer.write(data)
        await writer.drain()


class _HeadTooLargeError(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> str | None:
    """The request line, once the headers after it have been read whole
    (and dropped); None if the client closed before the request ended."""
    total = 0
    first: str | None = None
    while True:
        line = await reader.readline()  # ValueError past the reader's limit
        total += len(line)
        if total > MAX_HEAD:
            raise _HeadTooLargeError
        if not line.endswith(b"\n"):  # the client closed before the request ended
            return None
        if first is None:
            first = line.decode("latin-1").strip()
            continue
        if not line.strip():
            return first
