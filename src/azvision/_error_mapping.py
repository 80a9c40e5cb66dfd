"""The one choke point per vendor where foreign exceptions become `AzVisionError`.

Every HTTP failure, whatever client saw it, goes through `error_from_http`, which reads the three
error envelopes these services use (flat Custom Vision ``{"code","message"}``, the gateway/Azure.Core
``{"error":{"code","message","innererror"}}`` and the inference server's ``{"message"}``) and picks the
subclass from the status code.

Example:
    >>> err = error_from_http(429, {"Retry-After": "2"}, b'{"error":{"code":"429","message":"slow"}}')
    >>> type(err).__name__, err.retry_after
    ('RateLimitError', 2.0)
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from ._errors import (
    AuthenticationError,
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    InvalidImageError,
    NotFoundError,
    RateLimitError,
    ServiceError,
)

__all__ = [
    "connection_reason",
    "error_from_azure_core",
    "error_from_http",
    "error_from_httpx",
    "error_from_msrest",
    "parse_retry_after",
]

_REQUEST_ID_HEADERS = ("apim-request-id", "x-ms-request-id", "x-request-id", "request-id")
_IMAGE_CODES = {
    "BadRequestImageFormat",
    "BadRequestImageSizeBytes",
    "BadRequestImageDimensions",
    "BadRequestImageStream",
    "BadRequestImageUrl",
    "InvalidImageFormat",
    "InvalidImageSize",
    "InvalidImageUrl",
    "InvalidImageDimension",
    "NotSupportedImage",
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (secs or date).

    Unreadable values are ignored (``None``: back off on our own); absurd ones are capped at an hour.

    Example:
        >>> parse_retry_after({"retry-after-ms": "1500"})
        1.5
    """
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        seconds = _seconds(_header(headers, name), scale=1000.0)
        if seconds is not None:
            return seconds
    value = _header(headers, "retry-after")
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(parsed.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER)


#: A server asking for longer than this is treated as asking for this (the deadline then decides).
MAX_RETRY_AFTER = 3600.0


def _seconds(value: str | None, scale: float = 1.0) -> float | None:
    if not value:
        return None
    try:
        number = float(value) / scale
    except ValueError:
        return None
    if math.isnan(number):
        return None
    return min(max(number, 0.0), MAX_RETRY_AFTER)


def _parse_body(body: bytes | str | None) -> tuple[str | None, str | None]:
    """(code, message) from any of the three envelopes; (None, None) when unreadable."""
    if not body:
        return None, None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    inner = data.get("error")
    if isinstance(inner, dict):
        code, message = inner.get("code"), inner.get("message")
        nested = inner.get("innererror")
        if isinstance(nested, dict) and nested.get("code"):
            # The inner code says what was wrong (e.g. InvalidImageSize); the outer is InvalidRequest.
            code = nested.get("code")
            message = nested.get("message") or message
        return (str(code) if code is not None else None), (str(message) if message else None)
    code, message = data.get("code"), data.get("message")
    return (str(code) if code is not None else None), (str(message) if message else None)


def _snippet(body: bytes | str | None, limit: int = 120) -> str:
    if not body:
        return "an empty body"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def error_from_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    backend: str | None = None,
    service: str = "the service",
    source: str | None = None,
) -> AzVisionError:
    """Map an HTTP error answer to the right `AzVisionError` subclass, keeping code and message."""
    code, message = _parse_body(body)
    request_id = next((v for h in _REQUEST_ID_HEADERS if (v := _header(headers, h))), None)
    retry_after = parse_retry_after(headers)
    if message is None:
        message = f"{service} answered HTTP {status} with {_snippet(body)}"
    model_status = _header(headers, "ms-azureml-model-error-statuscode")
    if status == 424 and model_status:
        message = f"the scoring script failed (its status {model_status}): {message}"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "request_id": request_id,
        "backend": backend,
        "source": source,
        "retry_after": retry_after,
    }
    cls: type[AzVisionError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404 or (code or "").startswith("NotFound") or "invalid iteration" in message.lower():
        cls = NotFoundError
    elif status == 408:
        cls = BackendTimeoutError
    elif status == 429:
        cls = RateLimitError
    elif status in (400, 413, 415) and (code in _IMAGE_CODES or status == 413):
        cls = InvalidImageError
    else:
        cls = ServiceError
    return cls(message, **kwargs)


def error_from_httpx(
    exc: Exception, *, backend: str | None = None, source: str | None = None
) -> AzVisionError:
    """Map an ``httpx`` transport exception (no HTTP answer) to a typed error."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeoutError(f"no answer in time: {type(exc).__name__}", backend=backend, source=source)
    if isinstance(exc, httpx.TransportError):
        reason = connection_reason(exc)
        return BackendConnectionError(
            f"the connection failed{_REASONS.get(reason or '', ' or was dropped')}: "
            f"{type(exc).__name__}: {exc}",
            backend=backend,
            source=source,
            reason=reason,
        )
    return AzVisionError(f"HTTP client error: {type(exc).__name__}: {exc}", backend=backend, source=source)


def error_from_msrest(
    exc: Exception, *, backend: str | None = None, source: str | None = None
) -> AzVisionError:
    """Map an exception from msrest (the Custom Vision SDK) to a typed error."""
    from msrest.exceptions import ClientRequestError, HttpOperationError

    if isinstance(exc, HttpOperationError) and getattr(exc, "response", None) is not None:
        resp = exc.response
        status = int(getattr(resp, "status_code", 0) or 0)
        body = getattr(resp, "content", None)
        headers = dict(getattr(resp, "headers", {}) or {})
        mapped = error_from_http(
            status, headers, body, backend=backend, service="Custom Vision", source=source
        )
        if mapped.message.startswith("Custom Vision answered") and status == 401:
            mapped.message = "access denied: the key is wrong or is not for this endpoint"
        return mapped
    if isinstance(exc, ClientRequestError):
        import requests

        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if isinstance(inner, requests.Timeout):
            return BackendTimeoutError("no answer in time from Custom Vision", backend=backend, source=source)
        reason = connection_reason(exc)
        return BackendConnectionError(
            f"the connection to Custom Vision failed{_REASONS.get(reason or '', ' or was dropped')}: "
            f"{type(inner or exc).__name__}",
            backend=backend,
            source=source,
            reason=reason,
        )
    if isinstance(exc, ValueError):  # msrest's DeserializationError, or a 200 whose body is not JSON
        return ServiceError(
            f"Custom Vision answered with a body that cannot be read: {type(exc).__name__}",
            backend=backend,
            source=source,
        )
    return AzVisionError(
        f"Custom Vision client error: {type(exc).__name__}: {exc}", backend=backend, source=source
    )


def error_from_azure_core(
    exc: Exception,
    *,
    backend: str | None = None,
    source: str | None = None,
    service: str = "Image Analysis",
) -> AzVisionError:
    """Map an ``azure-core`` exception (Image Analysis, the Azure ML control plane) to a typed error."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceRequestTimeoutError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )

    if isinstance(exc, HttpResponseError) and exc.response is not None:
        resp: Any = exc.response
        try:
            body: bytes | None = resp.body()
        except Exception:  # the stream may be consumed or closed; the status still tells a lot
            body = None
        return error_from_http(
            int(resp.status_code or 0),
            dict(resp.headers),
            body,
            backend=backend,
            service=service,
            source=source,
        )
    if isinstance(exc, ClientAuthenticationError):  # a credential failed to get a token: no HTTP answer
        return AuthenticationError(
            f"the credential could not get a token: {type(exc).__name__}", backend=backend, source=source
        )
    if isinstance(exc, HttpResponseError):  # no response object: the answer broke off mid-body
        return BackendConnectionError(
            f"the answer from {service} was cut off: {type(exc).__name__}",
            backend=backend,
            source=source,
        )
    if isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
        return BackendTimeoutError(f"no answer in time from {service}", backend=backend, source=source)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        reason = connection_reason(exc)
        return BackendConnectionError(
            f"the connection to {service} failed{_REASONS.get(reason or '', ' or was dropped')}: "
            f"{type(exc).__name__}",
            backend=backend,
            source=source,
            reason=reason,
        )
    if isinstance(exc, ValueError):  # a 200 whose body is not JSON (json.JSONDecodeError is a ValueError)
        return ServiceError(
            f"{service} answered with a body that is not valid JSON: {type(exc).__name__}",
            backend=backend,
            source=source,
        )
    return AzVisionError(
        f"{service} client error: {type(exc).__name__}: {exc}", backend=backend, source=source
    )


_REASONS = {
    "refused": ": connection refused (nothing listens at that address: check the endpoint)",
    "dns": ": the host name does not resolve (check the endpoint)",
    "tls": ": the TLS handshake failed (check the endpoint's scheme and certificate)",
}
_REASON_TEXT = (
    ("refused", ("connection refused", "errno 111", "winerror 10061")),
    ("dns", ("name or service not known", "nodename nor servname", "getaddrinfo failed", "name resolution")),
    ("tls", ("certificate verify failed", "ssl:", "wrong version number", "tlsv1 alert")),
)


def connection_reason(exc: BaseException) -> str | None:
    """Why a connection failed — ``"refused"``, ``"dns"``, ``"tls"`` — from the chain of causes, if it says.

    Example:
        >>> connection_reason(OSError(111, "Connection refused"))
        'refused'
    """
    import socket
    import ssl

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    texts: list[str] = []
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "refused"
        if isinstance(current, socket.gaierror):
            return "dns"
        if isinstance(current, ssl.SSLError):
            return "tls"
        texts.append(str(current).lower())
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [getattr(current, "inner_exception", None), *current.args]
        todo.extend(e for e in linked if isinstance(e, BaseException))
    text = " ".join(texts)
    for reason, needles in _REASON_TEXT:
        if any(needle in text for needle in needles):
            return reason
    return None
