"""The one choke point where ``openai`` exceptions become `AzVisionError`.

The service's own ``code`` and ``message`` are kept (``content_filter``, ``context_length_exceeded``,
``DeploymentNotFound``, ``429``, ...); ``retry_after`` comes from ``retry-after-ms`` when the answer has
it, else ``retry-after``.

Example:
    >>> import httpx2, openai
    >>> response = httpx2.Response(429, headers={"retry-after-ms": "1500", "retry-after": "2"},
    ...                            request=httpx2.Request("POST", "http://localhost/"))
    >>> err = error_from_openai(openai.RateLimitError("slow", response=response,
    ...                         body={"code": "429", "message": "slow down"}), backend="azure_openai")
    >>> type(err).__name__, err.retry_after, err.code
    ('RateLimitError', 1.5, '429')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._error_mapping import parse_retry_after
from .._errors import (
    AuthenticationError,
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    InvalidImageError,
    NotFoundError,
    RateLimitError,
    ServiceError,
)

__all__ = ["error_from_openai"]

_IMAGE_CODES = {"invalid_image_url", "invalid_image_format", "image_parse_error", "invalid_image"}
_HINTS = {
    "content_filter": "Azure OpenAI's content filter blocked the request",
    "context_length_exceeded": "the request is too long for the model (send fewer examples or detail='low')",
    "DeploymentNotFound": "no such deployment on this resource (check the deployment name)",
}


def _filtered(body: Mapping[str, Any]) -> str:
    inner = body.get("innererror")
    result = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
    if not isinstance(result, Mapping):
        return ""
    hits = [name for name, value in result.items() if isinstance(value, Mapping) and value.get("filtered")]
    return f" (filtered: {', '.join(hits)})" if hits else ""


def error_from_openai(exc: Exception, *, backend: str, source: str | None = None) -> AzVisionError:
    """Map an exception raised by the ``openai`` client to the matching `AzVisionError`."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return BackendTimeoutError("no answer in time from Azure OpenAI", backend=backend, source=source)
    if isinstance(exc, openai.APIConnectionError):
        return BackendConnectionError(
            f"the connection to Azure OpenAI failed or was dropped: {type(exc.__cause__ or exc).__name__}",
            backend=backend,
            source=source,
        )
    if not isinstance(exc, openai.APIStatusError):
        return AzVisionError(
            f"Azure OpenAI client error: {type(exc).__name__}", backend=backend, source=source
        )
    status = exc.status_code
    body: Mapping[str, Any] = exc.body if isinstance(exc.body, Mapping) else {}
    code = str(body["code"]) if body.get("code") is not None else None
    message = str(body.get("message") or f"Azure OpenAI answered HTTP {status}")
    headers = exc.response.headers
    hint = _HINTS.get(code or "")
    if hint:
        message = f"{hint}{_filtered(body)}: {message}"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "request_id": exc.request_id or headers.get("apim-request-id"),
        "backend": backend,
        "source": source,
        "retry_after": parse_retry_after(dict(headers.items())),
    }
    cls: type[AzVisionError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 408:
        cls = BackendTimeoutError
    elif status == 429:
        cls = RateLimitError
    elif status == 400 and code in _IMAGE_CODES:
        cls = InvalidImageError
    else:
        cls = ServiceError
    return cls(message, **kwargs)
