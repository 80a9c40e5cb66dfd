"""The emulator's outer guard: only loopback Host names, and quiet about clients that go away.

A web page the developer opens can reach a loopback port, and through DNS rebinding it can make
its own host name resolve to 127.0.0.1. Its requests then carry that name in ``Host``, so the
emulator answers only requests whose ``Host`` names a loopback address (``127.0.0.0/8``,
``[::1]``, ``localhost``) or the host it was bound to; others get ``421 Misdirected Request``.
When bound to an unspecified address (``0.0.0.0``), any IP literal is accepted: a rebinding
attack always uses a name.

A client that disconnects mid-request is not an error of the emulator: no traceback is logged.

Example::

    app = HostGuard(app, bound_host="127.0.0.1")
"""

from __future__ import annotations

import ipaddress
import json
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HostGuard", "host_allowed"]

logger = logging.getLogger("azvision.emulator")


def host_allowed(host_header: str, bound_host: str) -> bool:
    """Whether a ``Host`` header value names this emulator.

    Example:
        >>> host_allowed("127.0.0.1:5055", "127.0.0.1"), host_allowed("evil.example:5055", "127.0.0.1")
        (True, False)
    """
    name = _hostname(host_header)
    if not name:
        return False
    if name == "localhost" or name == bound_host.strip("[]").lower():
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    try:
        return ipaddress.ip_address(bound_host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    value = host_header.strip().lower()
    if value.startswith("["):  # [::1]:port
        return value[1 : value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    """ASGI middleware: refuse foreign ``Host`` names, and swallow client disconnects."""

    def __init__(self, app: ASGIApp, *, bound_host: str) -> None:
        self.app = app
        self.bound_host = bound_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if not host_allowed(host, self.bound_host):
            await _misdirected(send, host)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            logger.debug("client went away during %s %s", scope.get("method"), scope.get("path"))


async def _misdirected(send: Send, host: str) -> None:
    message = (
        f"The emulator answers only loopback host names, not {host[:100]!r}: "
        "use http://127.0.0.1:PORT or http://localhost:PORT."
    )
    body = json.dumps({"error": {"code": "421", "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 421, "headers": headers})
    await send({"type": "http.response.body", "body": body})
