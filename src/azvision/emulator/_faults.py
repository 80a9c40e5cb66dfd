"""Fault injection and request accounting for the emulator: latency, throttling, 5xx, dropped connections.

`FaultInjector` holds the seeded decisions (pure, no I/O); `FaultMiddleware` is the
outermost ASGI layer of the emulator: it records every request in `Stats` under its
route template, then applies the configured faults before the request reaches a service.

Decisions are reproducible: every faultable request draws exactly two numbers from one
``random.Random(seed)``, in arrival order, whether or not it ends up faulted. Throttling is a token
bucket per (service, key) and depends on timing, like the real gateway. Control routes under
``/_emulator`` are never faulted and not counted.

Example::

    injector = FaultInjector(fail_rate=0.5, seed=7)
    service = service_of("/customvision/v3.1/prediction/p/classify/iterations/prod/image")
    faults = [injector.decide(service, "key") for _ in range(4)]  # None or Fault("fail", 500 | 503)
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from azvision.emulator._context import Stats

#: Key of the per-connection callable the emulator's HTTP protocol puts in ``scope["state"]``;
#: calling it closes the connection without a response.
DROP_CONNECTION = "azvision.emulator.drop_connection"

CONTROL_PREFIX = "/_emulator"

_KEY_HEADERS = (b"training-key", b"prediction-key", b"ocp-apim-subscription-key", b"authorization")


class ConnectionDroppedError(ConnectionError):
    """Raised into the server when a drop is injected but the server cannot close the socket itself."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` and, for responses, the status and ``Retry-After`` seconds."""

    kind: Literal["throttle", "fail", "drop"]
    status: int | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class ServiceId:
    """Which rate-limited API a request belongs to, for the bucket and the 429 message."""

    bucket: str  # e.g. "Custom_Vision.Prediction"
    api: str  # e.g. "Custom_Vision_Prediction_3.1"


class TokenBucket:
    """``rate`` tokens per second, bursts up to ``max(1, rate)``; ``take`` returns seconds to wait.

    Example::

        bucket = TokenBucket(rate=2.0, now=0.0)
        assert bucket.take(0.0) == 0.0 and bucket.take(0.0) == 0.0
        assert bucket.take(0.0) == 0.5  # empty: the next token arrives in half a second
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class FaultInjector:
    """Seeded fault decisions; thread-safe.

    ``drop_rate`` and ``fail_rate`` are probabilities per request (checked in that order on the same
    draw, so their sum should stay ≤ 1); a failure is a 500 or, on the second draw, a 503 with
    ``Retry-After: 1``. Throttling is checked first, like a gateway in front of the service.

    Example::

        injector = FaultInjector(rate_limit_tps=1, seed=0)
        service = ServiceId("Custom_Vision.Training", "Custom_Vision_Training_3.3")
        assert injector.decide(service, "k", now=0.0) is None
        assert injector.decide(service, "k", now=0.0) == Fault("throttle", 429, 1)
    """

    def __init__(
        self,
        *,
        rate_limit_tps: float | None = None,
        fail_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_limit_tps is not None and rate_limit_tps <= 0:
            raise ValueError("rate_limit_tps must be positive (or None for no limit)")
        for name, rate in (("fail_rate", fail_rate), ("drop_rate", drop_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        self.rate_limit_tps = rate_limit_tps
        self.fail_rate = fail_rate
        self.drop_rate = drop_rate
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def reset(self) -> None:
        """Forget buckets and restart the random sequence from the seed."""
        with self._lock:
            self._rng = random.Random(self.seed)
            self._buckets.clear()

    def decide(self, service: ServiceId | None, key: str, now: float | None = None) -> Fault | None:
        """The fault for the next request of ``service`` made with ``key`` (``None``: let it through).

        ``service`` is ``None`` for routes outside any rate-limited API (e.g. blob downloads).
        """
        with self._lock:
            draw, second = self._rng.random(), self._rng.random()
            if service is not None and self.rate_limit_tps is not None:
                at = self._clock() if now is None else now
                bucket = self._buckets.get((service.bucket, key))
                if bucket is None:
                    bucket = self._buckets[(service.bucket, key)] = TokenBucket(self.rate_limit_tps, at)
                wait = bucket.take(at)
                if wait > 0:
                    return Fault("throttle", 429, max(1, math.ceil(wait)))
        if draw < self.drop_rate:
            return Fault("drop")
        if draw < self.drop_rate + self.fail_rate:
            return Fault("fail", 503, 1) if second < 0.5 else Fault("fail", 500)
        return None


def service_of(path: str) -> ServiceId | None:
    """The rate-limited API a path belongs to (``None`` for the emulator's blob downloads).

    Example::

        assert service_of("/customvision/v3.1/prediction/p/classify/iterations/x/image") == ServiceId(
            "Custom_Vision.Prediction", "Custom_Vision_Prediction_3.1")
    """
    parts = path.strip("/").split("/")
    head = parts[0].lower()
    if head == "customvision":
        if len(parts) < 3 or parts[1].startswith("_"):
            return None
        kind = parts[2].lower().title()
        return ServiceId(f"Custom_Vision.{kind}", f"Custom_Vision_{kind}_{parts[1].lstrip('vV')}")
    if head == "computervision":
        return ServiceId("ComputerVision", "Computer Vision APIs")
    if head == "vision" and len(parts) > 1:
        return ServiceId("ComputerVision", f"ComputerVision_{parts[1].lstrip('vV')}")
    return ServiceId(head, head)


def operation_name(route_name: str | None, method: str) -> str:
    """``create_images_from_data`` → ``CreateImagesFromData`` (the gateway's operation names)."""
    if not route_name:
        return method.title()
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", route_name) if part)


class RouteIndex:
    """Finds the route template (``/projects/{projectId}``) and route name a request will hit."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes

    def lookup(self, scope: Scope) -> tuple[str | None, str | None]:
        return self._search(self._routes, scope, "")

    def _search(
        self, routes: Sequence[BaseRoute], scope: Scope, prefix: str
    ) -> tuple[str | None, str | None]:
        partial: tuple[str | None, str | None] = (None, None)
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            found: tuple[str | None, str | None]
            if isinstance(route, Mount):
                template, name = self._search(route.routes, {**scope, **child}, prefix + route.path)
                found = (template or prefix + route.path + "/{path}", name)
            elif isinstance(route, Route):
                found = (prefix + route.path, route.name)
            else:
                found = (None, None)
            if match is Match.FULL:
                return found
            if partial == (None, None):
                partial = found
        return partial


class FaultMiddleware:
    """Outermost ASGI layer: counts every request, then injects latency, 429, 5xx and drops."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        injector: FaultInjector,
        stats: Stats,
        routes: Sequence[BaseRoute],
        latency_ms: float = 0.0,
    ) -> None:
        self.app = app
        self.injector = injector
        self.stats = stats
        self.latency = max(0.0, latency_ms) / 1000.0
        self._index = RouteIndex(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        template, name = self._index.lookup(scope)
        label = f"{scope['method']} {template or scope['path']}"
        if self.latency:
            await asyncio.sleep(self.latency)
        service = service_of(scope["path"])
        fault = self.injector.decide(service, _request_key(scope))
        if fault is None:
            await self._forward(scope, receive, send, label)
        elif fault.kind == "drop":
            self.stats.record(label, "dropped")
            await _drop(scope)
        elif fault.kind == "throttle":
            self.stats.record(label, 429)
            await _send_json(
                send,
                429,
                {"error": {"code": "429", "message": _throttle_message(service, name, scope, fault)}},
                retry_after=fault.retry_after,
            )
        else:
            status = fault.status or 500
            self.stats.record(label, status)
            code, text = (
                ("ServiceUnavailable", "The service is temporarily unavailable.")
                if status == 503
                else ("InternalServerError", "An internal server error occurred.")
            )
            message = f"{text} (injected by the emulator: fail_rate={self.injector.fail_rate})"
            await _send_json(
                send,
                status,
                {"error": {"code": code, "message": message}},
                retry_after=fault.retry_after,
            )

    async def _forward(self, scope: Scope, receive: Receive, send: Send, label: str) -> None:
        started = False

        async def counting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                self.stats.record(label, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not started:
                self.stats.record(label, 500)
            raise


def _request_key(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS:
            return str(value.decode("latin-1"))
    return ""


def _throttle_message(service: ServiceId | None, route_name: str | None, scope: Scope, fault: Fault) -> str:
    seconds = fault.retry_after or 1
    api = service.api if service else "the emulator"
    tier = service.bucket if service else "emulator"
    return (
        f"Requests to the {operation_name(route_name, scope['method'])} Operation under {api} "
        f"have exceeded rate limit of your current {tier} Emulator pricing tier. "
        f"Please retry after {seconds} second{'' if seconds == 1 else 's'}. "
        "To increase your rate limit raise the emulator's rate_limit_tps."
    )


async def _send_json(send: Send, status: int, body: object, *, retry_after: int | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _drop(scope: Scope) -> None:
    drop = scope.get("state", {}).get(DROP_CONNECTION)
    if drop is None:
        raise ConnectionDroppedError("connection dropped by the emulator (drop_rate)")
    drop()
    # Let the transport report the lost connection before the server looks at this request again,
    # so it does not try to answer it with a 500.
    await asyncio.sleep(0)
