"""Tiny hostile HTTP servers on loopback, for the failures the emulator cannot produce on demand.

A :class:`HostileServer` answers each request with the next behaviour of its script (the last one
repeats), or with what a callable picks for the request: a canned :class:`Reply` (any status, headers
and body: HTML, truncated JSON, 429 with or without ``Retry-After``), :class:`Hang` (never answers),
:class:`Drop` (closes the connection without a byte) or :class:`Truncated` (announces a body, sends
part of it, closes). It records every request it saw, with its arrival time.

Example::

    with HostileServer([Reply(503, {"Retry-After": "1"}), Reply(200, JSON, b"{}")]) as server:
        httpx.post(server.url + "/score")  # 503
        httpx.post(server.url + "/score")  # 200
        assert len(server.requests) == 2
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["HTML", "JSON", "Drop", "Hang", "HostileServer", "Reply", "Seen", "Truncated", "image_files"]

JSON = {"Content-Type": "application/json; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
#: Longest a hanging handler holds its connection if the test never stops the server.
_HANG_CAP_S = 60.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Access Denied",
    404: "Not Found",
    408: "Request Timeout",
    424: "Failed Dependency",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Reply:
    """A complete answer."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Hang:
    """Read the request, then never answer (until the server stops)."""


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without answering."""


@dataclass(frozen=True)
class Truncated:
    """Announce ``len(body)`` bytes, send the first ``keep`` of them, close."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    keep: int


Behaviour = Reply | Hang | Drop | Truncated


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float


def image_files(files: Mapping[str, bytes]) -> Callable[[Seen], Behaviour]:
    """A script serving ``files`` by path (``/a.png``) and 404 for anything else.

    Example::

        with HostileServer(image_files({"/a.png": png})) as server:
            url = server.url + "/a.png"
    """

    def serve(seen: Seen) -> Behaviour:
        body = files.get(seen.path.split("?", 1)[0])
        if body is None:
            return Reply(404, HTML, b"<html><body><h1>404 Not Found</h1></body></html>")
        return Reply(200, {"Content-Type": "application/octet-stream"}, body)

    return serve


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HostileServer


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        owner = self.server.owner
        seen = self._read_request()
        if seen is None:
            return
        behaviour = owner._record(seen)
        if isinstance(behaviour, Hang):
            owner._stopping.wait(_HANG_CAP_S)
        elif isinstance(behaviour, Drop):
            self._abort()
        elif isinstance(behaviour, Truncated):
            self._send(
                behaviour.status, behaviour.headers, behaviour.body, len(behaviour.body), behaviour.keep
            )
            self._abort()
        else:
            self._send(behaviour.status, behaviour.headers, behaviour.body, len(behaviour.body))

    def _read_request(self) -> Seen | None:
        line = self.rfile.readline(65537).decode("latin-1").strip()
        if not line:
            return None
        method, path = [*line.split(" "), "", ""][:2]
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(65537).decode("latin-1")
            if raw in ("\r\n", "\n", ""):
                break
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(headers.get("content-length", "0") or 0))
        return Seen(method, path, headers, body, time.monotonic())

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(
        self, status: int, headers: Mapping[str, str], body: bytes, length: int, keep: int | None = None
    ) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head += [f"Content-Length: {length}", "Connection: close", "", ""]
        self.wfile.write("\r\n".join(head).encode("latin-1") + body[:keep])
        self.wfile.flush()

    def _abort(self) -> None:
        # SO_LINGER 0: the peer sees the connection reset, as when a gateway or a process dies.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()


class HostileServer:
    """A loopback HTTP server that misbehaves on cue; see the module docstring."""

    def __init__(self, script: Sequence[Behaviour] | Callable[[Seen], Behaviour]) -> None:
        if not callable(script) and not script:
            raise ValueError("the script needs at least one behaviour")
        self._script = script
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[Seen] = []
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="hostile-server",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, seen: Seen) -> Behaviour:
        with self._lock:
            index = len(self.requests)
            self.requests.append(seen)
        if callable(self._script):
            return self._script(seen)
        return self._script[min(index, len(self._script) - 1)]

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
