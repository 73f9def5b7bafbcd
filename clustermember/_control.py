"""The agent's local control endpoint: newline-delimited JSON over a socket.

A Unix socket (default) lives in a directory only the user can enter, and the
server also checks the peer's uid (SO_PEERCRED). A TCP endpoint is bound to
loopback only and requires a token that the agent writes to a file readable
only by the user. Each request is one JSON object on one line::

    {"op": "members", "tags": {"role": "worker"}, "status": ["alive"]}

and each response is one JSON object, ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. The ``events`` operation streams one
``{"event": {...}}`` line per membership event until the client disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any], asyncio.StreamWriter], Awaitable[dict[str, Any] | None]]

log = logging.getLogger("clustermember.control")

# One request line at most: a members filter with many tags still fits easily,
# and a client cannot make the agent buffer without bound.
MAX_LINE = 64 * 1024
# On the Unix socket, which only its owner can open, a request may carry a
# user event of max_user_event_stream (1 MiB) in base64.
MAX_LINE_UNIX = 2 * 1024 * 1024
# What a client reads: an event stream line may carry such an event.
MAX_LINE_CLIENT = 4 * 1024 * 1024


class ControlError(Exception):
    """A control request failed; the message says what to do."""


def runtime_dir() -> Path:
    """The per-user directory for control sockets and tokens (mode 0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        import tempfile  # only where XDG_RUNTIME_DIR is unset

        base = tempfile.gettempdir()
    path = Path(base) / f"clustermember-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise ControlError(
            f"{path} must be owned by you with mode 0700; remove it or fix its permissions"
        )
    return path


def default_endpoint() -> str:
    """The control endpoint used when none is given: $CLUSTERMEMBER_CONTROL or
    a Unix socket in :func:`runtime_dir`."""
    env = os.environ.get("CLUSTERMEMBER_CONTROL")
    if env:
        return env
    return str(runtime_dir() / "agent.sock")


def _host_port(where: str | tuple[str, int]) -> tuple[str, int]:
    """The (host, port) of a TCP endpoint as parse_endpoint gives it."""
    if not isinstance(where, tuple):
        raise ControlError(f"{where!r} is not a TCP endpoint")
    return where


def parse_endpoint(endpoint: str) -> tuple[str, str | tuple[str, int]]:
    """Split an endpoint into ("unix", path) or ("tcp", (host, port)).

    >>> parse_endpoint("127.0.0.1:7373")
    ('tcp', ('127.0.0.1', 7373))
    >>> parse_endpoint("/tmp/x.sock")
    ('unix', '/tmp/x.sock')
    """
    if "/" in endpoint or endpoint.endswith(".sock"):
        return "unix", endpoint
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ControlError(f"control endpoint {endpoint!r} is neither a socket path nor host:port")
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
        raise ControlError(f"control endpoint {endpoint!r} must be on loopback (127.0.0.1)")
    return "tcp", ("127.0.0.1" if host == "localhost" else host.strip("[]"), int(port))


def token_path(port: int) -> Path:
    """Where the agent with a TCP control endpoint on ``port`` keeps its token."""
    return runtime_dir() / f"control-{port}.token"


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


async def send_line(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    """Write one object as one JSON line and wait until it may be sent.

    >>> await send_line(writer, {"ok": True})  # doctest: +SKIP
    """
    writer.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


#: How long a TCP client may take to present the control token before the
#: agent lets it go: a connection nobody has authenticated holds nothing.
AUTH_TIMEOUT = 10.0


class ControlServer:
    """Serve control requests on a Unix socket or loopback TCP port.

    >>> async def handle(req, writer): return {"pong": True}   # doctest: +SKIP
    >>> server = ControlServer("/tmp/x.sock", handle)            # doctest: +SKIP
    >>> await server.start()                                     # doctest: +SKIP
    """

    def __init__(self, endpoint: str, handler: Handler) -> None:
        self.kind, self.where = parse_endpoint(endpoint)
        self.endpoint = endpoint
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._token: str | None = None
        self._readers: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}

    async def start(self) -> None:
        """Bind and start accepting. Raises ControlError if the endpoint is taken."""
        if self.kind == "unix":
            path = Path(str(self.where))
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    # Never delete a file that is not a stale socket: a
                    # mistyped --control must not cost the user a file.
                    raise ControlError(
                        f"control endpoint {path} exists and is not a socket; "
                        "pass another --control"
                    )
                if await _endpoint_alive(str(path)):
                    raise ControlError(
                        f"an agent is already serving {path}; stop it or pass --control"
                    )
                path.unlink()
            old = os.umask(0o077)
            try:
                self._server = await asyncio.start_unix_server(
                    self._serve, path=str(path), limit=MAX_LINE_UNIX
                )
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        else:
            import secrets  # a token only guards a TCP endpoint

            host, port = _host_port(self.where)
            self._token = secrets.token_hex(16)
            try:
                self._server = await asyncio.start_server(
                    self._serve, host=host, port=port, limit=MAX_LINE
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ControlError(
                        f"control endpoint {self.endpoint}: address already in use; stop what "
                        "holds it, or pass another --control"
                    ) from exc
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise ControlError(f"cannot listen on {self.endpoint}: {reason}") from exc
            tp = token_path(port)
            fd = os.open(tp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self._token + "\n")

    async def close(self) -> None:
        """Stop accepting and remove the socket or token file."""
        server, self._server = self._server, None
        await close_server(server)
        with contextlib.suppress(OSError):
            if self.kind == "unix":
                os.unlink(str(self.where))
            else:
                os.unlink(token_path(_host_port(self.where)[1]))

    async def _answer(
        self, req: dict[str, Any], writer: asyncio.StreamWriter
    ) -> dict[str, Any] | None:
        """The handler's response, or an error response for whatever it raised.

        Every failure is answered on the connection it came from, so a client
        always learns what went wrong and may send its next request.
        """
        try:
            return await self._handler(req, writer)
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the client, never dropped
            return {"ok": False, "error": error_text(exc)}

    async def client_gone(self, writer: asyncio.StreamWriter) -> None:
        """Return once the client of a connection has closed it (or it
        broke). A streaming handler runs this beside its stream, so a client
        that goes away is let go at once, not at the next line written; what
        the client sends meanwhile is read and dropped.

        >>> await server.client_gone(writer)  # doctest: +SKIP
        """
        reader = self._readers.get(writer)
        if reader is None:
            return
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(MAX_LINE):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._readers[writer] = reader
        try:
            uid = _peer_uid(writer)
            if self.kind == "unix" and uid not in (None, os.getuid()):
                await send_line(writer, {"ok": False, "error": "permission denied"})
                return
            authed = self.kind == "unix"
            while True:
                try:
                    if authed:
                        line = await reader.readline()
                    else:
                        line = await asyncio.wait_for(reader.readline(), AUTH_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):
                    limit = MAX_LINE_UNIX if self.kind == "unix" else MAX_LINE
                    await send_line(
                        writer,
                        {
                            "ok": False,
                            "error": f"request line too long (over {limit} bytes here; "
                            "a Unix socket endpoint takes up to "
                            f"{MAX_LINE_UNIX} for a large event)",
                        },
                    )
                    return
                except asyncio.TimeoutError:
                    await send_line(
                        writer,
                        {"ok": False, "error": f"no control token within {AUTH_TIMEOUT:g} s"},
                    )
                    return
                if not line:
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except (ValueError, RecursionError):
                    await send_line(writer, {"ok": False, "error": "request is not a JSON object"})
                    if not authed:
                        return  # a stranger gets one answer, not a session
                    continue
                if not authed:
                    import hmac  # only a TCP client presents a token

                    got = req.get("token")
                    if not isinstance(got, str) or not hmac.compare_digest(
                        got.encode(), (self._token or "").encode()
                    ):
                        await send_line(
                            writer, {"ok": False, "error": "bad or missing control token"}
                        )
                        return
                    authed = True
                    if "op" not in req:
                        await send_line(writer, {"ok": True})
                        continue
                resp = await self._answer(req, writer)
                if resp is None:  # a streaming operation that has finished
                    return
                await send_line(writer, resp)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # The agent is shutting down with this client still connected.
            return
        finally:
            self._readers.pop(writer, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def close_server(server: asyncio.AbstractServer | None) -> None:
    """Stop a server accepting, waiting up to 2 s for it to close.

    >>> await close_server(server)  # doctest: +SKIP
    """
    if server is not None:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)


def error_text(exc: BaseException) -> str:
    """How a failed request is described to the client: a library error (or a
    ValueError or TypeError from bad input) by its class and message; anything
    else is also logged with its traceback, as it is a bug.

    >>> error_text(ValueError("bad value"))
    'ValueError: bad value'
    """
    from clustermember._errors import ClusterError

    if not isinstance(exc, (ClusterError, ValueError, TypeError, LookupError)):
        log.error("control request failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


async def _endpoint_alive(path: str) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    return True


class ControlClient:
    """Talk to a running agent.

    >>> async with ControlClient("/tmp/agent.sock") as c:  # doctest: +SKIP
    ...     members = (await c.request({"op": "members"}))["members"]
    """

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0) -> None:
        self.endpoint = endpoint or default_endpoint()
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> ControlClient:
        kind, where = parse_endpoint(self.endpoint)
        try:
            if kind == "unix":
                conn = asyncio.open_unix_connection(str(where), limit=MAX_LINE_CLIENT)
            else:
                host, port = _host_port(where)
                conn = asyncio.open_connection(host, port, limit=MAX_LINE_CLIENT)
            self._reader, self._writer = await asyncio.wait_for(conn, self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ControlError(
                f"no agent is running at {self.endpoint}; start one with "
                "'clustermember agent' or pass --control"
            ) from exc
        if kind == "tcp":
            port = _host_port(where)[1]
            try:
                token = token_path(port).read_text().strip()
            except OSError as exc:
                raise ControlError(
                    f"cannot read the control token {token_path(port)}: {exc.strerror}"
                ) from exc
            resp = await self.request({"token": token})
            if not resp.get("ok"):
                raise ControlError(resp.get("error", "control token refused"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def request(self, req: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one request and return its response object; a ControlError
        naming the agent and the operation if no answer comes within
        ``timeout`` seconds (default: the client's).

        >>> await client.request({"op": "leave"}, timeout=60.0)  # doctest: +SKIP
        {'ok': True}
        """
        assert self._writer is not None and self._reader is not None
        wait = self.timeout if timeout is None else timeout
        await send_line(self._writer, req)
        try:
            line = await asyncio.wait_for(self._reader.readline(), wait)
        except asyncio.TimeoutError:
            raise ControlError(
                f"the agent at {self.endpoint} did not answer the {req.get('op', 'token')} "
                f"request within {wait:g} s; it may be stuck: see its log, and stop it "
                "(SIGTERM) if it does not recover"
            ) from None
        if not line:
            raise ControlError(f"the agent at {self.endpoint} closed the connection")
        resp = json.loads(line)
        if not isinstance(resp, dict):
            raise ControlError(f"the agent at {self.endpoint} answered {line[:80]!r}")
        return resp

    async def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send a streaming request and yield each line until the agent stops."""
        assert self._writer is not None and self._reader is not None
        await send_line(self._writer, req)
        while True:
            line = await self._reader.readline()
            if not line:
                return
            yield json.loads(line)
