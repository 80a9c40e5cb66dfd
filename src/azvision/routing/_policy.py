"""Which errors send an input on to the next member, and which are the user's to fix.

Moves on: the service failed (`ServiceError`), the connection did (`BackendConnectionError`), no answer
in time (`BackendTimeoutError`), or the quota is spent (`RateLimitError`), each after the member's own
retries. Never moves on: a bad image (`InvalidImageError`), a refused key (`AuthenticationError`), a
missing project, iteration or deployment (`NotFoundError`), a wrong setting (`ConfigurationError`): the
next member would hide a mistake that stays, and bill for it.

Example:
    >>> from azvision import ServiceError, AuthenticationError
    >>> moves_on(ServiceError("boom", status_code=500)), moves_on(AuthenticationError("bad key"))
    (True, False)
"""

from __future__ import annotations

from .._errors import (
    AzVisionError,
    BackendConnectionError,
    BackendTimeoutError,
    RateLimitError,
    ServiceError,
)

__all__ = ["MOVES_ON", "describe", "moves_on"]

#: The error types after which the next member is asked.
MOVES_ON: tuple[type[AzVisionError], ...] = (
    ServiceError,
    BackendConnectionError,
    BackendTimeoutError,
    RateLimitError,
)


def moves_on(error: AzVisionError) -> bool:
    """Whether another backend may answer where this one failed with ``error``."""
    return isinstance(error, MOVES_ON)


def describe(error: AzVisionError) -> str:
    """A short account of ``error`` for ``Prediction.notes``: its type, HTTP status and Retry-After.

    Example:
        >>> describe(RateLimitError("slow down", status_code=429, retry_after=2.0))
        'RateLimitError, HTTP 429, Retry-After 2 s'
    """
    parts = [type(error).__name__]
    if error.status_code is not None:
        parts.append(f"HTTP {error.status_code}")
    if error.retry_after is not None:
        parts.append(f"Retry-After {error.retry_after:g} s")
    return ", ".join(parts)
