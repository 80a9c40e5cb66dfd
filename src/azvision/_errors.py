"""The error tree every backend raises. Vendor exceptions never reach users unwrapped.

Example:
    >>> from azvision import RateLimitError
    >>> err = RateLimitError("slow down", status_code=429, retry_after=2.0)
    >>> err.retry_after, err.status_code
    (2.0, 429)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AnnotationError",
    "AuthenticationError",
    "AzVisionError",
    "BackendConnectionError",
    "BackendTimeoutError",
    "ConfigurationError",
    "InvalidImageError",
    "NotFoundError",
    "RateLimitError",
    "ServiceError",
    "TrainingError",
]


class AzVisionError(Exception):
    """Base class of every error azvision raises.

    Carries what the service said, when there was a service: the HTTP ``status_code``, the service's own
    error ``code`` and the ``request_id`` it sent back.

    Example:
        >>> try:
        ...     raise AzVisionError("boom", code="InternalServerError", status_code=500)
        ... except AzVisionError as e:
        ...     print(e)
        boom (HTTP 500, code InternalServerError)
    """

    _retryable = False
    #: True on the inputs a batch answered without sending, after its breaker tripped (see
    #: ``Breaker``): a wrong key or endpoint fails every input the same way.
    stopped_batch: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        backend: str | None = None,
        source: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.backend = backend
        self.source = source
        #: Seconds the service asked us to wait before retrying (``Retry-After``), when it said.
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether a retry of the same request may succeed."""
        return self._retryable

    def __str__(self) -> str:
        details = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.code and self.code != str(self.status_code):
            details.append(f"code {self.code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, code={self.code!r})"
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON shape written by ``azvision classify`` for a failed input.

        Example:
            >>> InvalidImageError("empty file").to_dict()["type"]
            'InvalidImageError'
        """
        out: dict[str, object] = {"type": type(self).__name__, "message": str(self)}
        if self.status_code is not None:
            out["status_code"] = self.status_code
        if self.code is not None:
            out["code"] = self.code
        return out


class ConfigurationError(AzVisionError):
    """A missing or invalid setting (argument, environment variable, optional extra), found before a call."""


class AnnotationError(ConfigurationError):
    """Object-detection annotations that cannot be used; ``problems`` names every offender, one per entry.

    Example:
        >>> err = AnnotationError(["a.xml: object 1 (fork): the box has no area"])
        >>> err.problems
        ('a.xml: object 1 (fork): the box has no area',)
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        shown = "\n  ".join(self.problems[:50])
        more = f"\n  … and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        count = len(self.problems)
        super().__init__(f"{count} annotation problem{'s' if count != 1 else ''}:\n  {shown}{more}")


def missing_extra(exc: ImportError, *, what: str, extra: str) -> ConfigurationError:
    """The error for an optional part that is not installed (re-raises import errors of azvision itself).

    Example:
        >>> gone = ModuleNotFoundError("no", name="onnxruntime")
        >>> print(missing_extra(gone, what="the onnx backend", extra="onnx"))
        the onnx backend needs the 'onnx' extra (onnxruntime is missing): pip install 'azvision[onnx]'
    """
    if exc.name and exc.name.split(".")[0] == "azvision":
        raise exc  # a bug of ours, not a missing extra
    return ConfigurationError(
        f"{what} needs the '{extra}' extra ({exc.name} is missing): pip install 'azvision[{extra}]'"
    )


class InvalidImageError(AzVisionError):
    """The image cannot be read or the service would reject it (missing, corrupt, unsupported, too big)."""


class AuthenticationError(AzVisionError):
    """The service refused the key or token (HTTP 401/403)."""


class NotFoundError(AzVisionError):
    """The project, iteration, endpoint or deployment does not exist (or is not published)."""


class RateLimitError(AzVisionError):
    """The service throttled the request (HTTP 429) and retries ran out.

    ``retry_after`` is the delay in seconds the service asked for, when it said.
    """

    _retryable = True


class ServiceError(AzVisionError):
    """The service failed or answered something we cannot use (5xx, 424, malformed body)."""

    @property
    def retryable(self) -> bool:
        """5xx answers are worth another try; 424 (the model failed) and malformed bodies are not."""
        code = self.status_code
        return code is not None and (code in {500, 502, 503, 504} or code >= 506)


class TrainingError(AzVisionError):
    """Training, publishing or exporting a Custom Vision iteration failed or was rejected."""


class BackendTimeoutError(AzVisionError):
    """No answer in time (client timeout, HTTP 408, or the batch deadline passed)."""

    _retryable = True


class BackendConnectionError(AzVisionError):
    """The connection failed or was dropped before an answer arrived.

    ``reason`` says why when it is known: ``"refused"`` (nothing listens there), ``"dns"`` (the host name
    does not resolve), ``"tls"`` (the TLS handshake failed) or ``"dropped"``.

    Example:
        >>> BackendConnectionError("could not connect", reason="refused").reason
        'refused'
    """

    _retryable = True

    def __init__(self, message: str, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason
