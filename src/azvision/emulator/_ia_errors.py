"""Error answers of the emulated Image Analysis, in the service's envelope and wording.

Example:
    >>> invalid("Image format is not valid.", "InvalidImageFormat").response().status_code
    400
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

__all__ = [
    "ACCESS_DENIED",
    "BAD_FORMAT",
    "BAD_URL",
    "MAX_SIDE",
    "MIN_SIDE",
    "ServiceError",
    "bad_dimensions",
    "invalid",
]

#: The service's documented sides: greater than 50 × 50 and less than 16,000 × 16,000 pixels.
MIN_SIDE, MAX_SIDE = 50, 16_000

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your resource."
)
BAD_URL = "Image URL is badly formatted or not accessible."
BAD_FORMAT = "Image format is not valid."
_BAD_DIMENSIONS = (
    f"The image dimension is not allowed to be smaller than {MIN_SIDE} and larger than {MAX_SIDE}."
)


class ServiceError(Exception):
    """An error answer; ``gateway`` ones come from the API gateway (APIM) and carry no inner code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        inner_message: str | None = None,
        *,
        gateway: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.inner_message = inner_message or message
        self.gateway = gateway

    def response(self, request_id: str | None = None) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner, "message": self.inner_message}
        if request_id:
            error["requestId"] = request_id
        headers = {"apim-request-id": str(uuid.uuid4())}
        if not self.gateway:
            headers["x-ms-error-code"] = self.code
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def invalid(message: str, inner: str, inner_message: str | None = None) -> ServiceError:
    return ServiceError(400, "InvalidRequest", message, inner, inner_message)


def bad_dimensions() -> ServiceError:
    """The service's answer to an image whose sides are out of range."""
    return invalid(_BAD_DIMENSIONS, "InvalidImageSize")
