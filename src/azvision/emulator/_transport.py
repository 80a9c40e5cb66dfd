"""The emulator's socket and HTTP/1.1 layer: a loopback listening socket, and uvicorn's h11 protocol with
the two gateway behaviours ASGI cannot express (the ``401 Access Denied`` reason phrase, and a connection
closed without any response).

Example::

    sock = bind("127.0.0.1", 0)
    print(endpoint_url("127.0.0.1", sock.getsockname()[1]))
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from typing import Any, overload

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from azvision.emulator._faults import DROP_CONNECTION

__all__ = ["GatewayProtocol", "bind", "endpoint_url"]


class _GatewayConnection(h11.Connection):
    """Azure's gateways answer a bad key with ``401 Access Denied``; msrest puts that phrase in
    its error message, and ASGI has no way to choose a reason phrase."""

    @overload
    def send(self, event: h11.ConnectionClosed) -> None: ...
    @overload
    def send(
        self,
        event: h11.Request | h11.InformationalResponse | h11.Response | h11.Data | h11.EndOfMessage,
    ) -> bytes: ...
    @overload
    def send(self, event: h11.Event) -> bytes | None: ...
    def send(self, event: h11.Event) -> bytes | None:
        if isinstance(event, h11.Response) and event.status_code == 401:
            event = dataclasses.replace(event, reason=b"Access Denied")
        return super().send(event)


class GatewayProtocol(H11Protocol):
    """uvicorn's h11 protocol plus the two gateway behaviours ASGI cannot express: the 401 reason
    phrase, and closing a connection without any response (``scope["state"][DROP_CONNECTION]``)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: Any = None,
    ) -> None:
        super().__init__(config, server_state, {**app_state, DROP_CONNECTION: self._drop}, _loop)
        self.conn = _GatewayConnection(h11.SERVER, config.h11_max_incomplete_event_size or 65536)

    def _drop(self) -> None:
        self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP (not 0) lets asyncio turn Nagle off on accepted connections: without it every
    # response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def endpoint_url(host: str, port: int) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"
