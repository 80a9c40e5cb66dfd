"""Computer Vision v3.2 ``analyze`` over httpx: the 86-category taxonomy Image Analysis 4.0 does not have.

`ImageAnalysisBackend` uses it for ``mode="categories"``. Requests carry the resource key
(``Ocp-Apim-Subscription-Key``) or a Microsoft Entra bearer token, fetched from the credential and cached
until five minutes before it expires; every failure becomes an `AzVisionError`.

Example:
    >>> from azvision._config import Secret
    >>> client = Vision32Client(
    ...     "https://x.cognitiveservices.azure.com", key=Secret("k"), timeout=30, backend="image_analysis")
    >>> client.analyze(image, caption=False, language="en")["categories"]  # doctest: +SKIP
    [{'name': 'animal_dog', 'score': 0.93}]
    >>> client.close()
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from azure.core.credentials import AccessToken, AzureKeyCredential, TokenCredential

from .._config import Secret
from .._error_mapping import error_from_azure_core, error_from_http, error_from_httpx
from .._errors import ServiceError
from .._images import COMMON_FORMATS, ImageLimits, LoadedImage

__all__ = ["V32_LIMITS", "Vision32Client"]

_MB = 1024 * 1024
_SCOPE = "https://cognitiveservices.azure.com/.default"
#: What v3.2 ``analyze`` accepts.
V32_LIMITS = ImageLimits(
    service="Computer Vision v3.2", max_bytes=4 * _MB, max_side=16000, min_side=50, formats=COMMON_FORMATS
)


class Vision32Client:
    """``POST {endpoint}/vision/v3.2/analyze`` for ``Categories`` (and ``Description`` for a caption).

    Give ``key`` or ``credential`` (a ``TokenCredential`` or an ``AzureKeyCredential``); ``backend`` is the
    name errors carry.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        key: Secret | None = None,
        credential: TokenCredential | AzureKeyCredential | None = None,
        timeout: float,
        backend: str,
    ) -> None:
        self.endpoint = endpoint
        self.backend = backend
        self._key = key
        self._credential = credential
        self._token: AccessToken | None = None
        self._token_lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout)

    def analyze(self, image: LoadedImage, *, caption: bool, language: str) -> Any:
        """The decoded JSON answer for ``image`` (by URL or bytes)."""
        wanted = ["Categories", *(["Description"] if caption else [])]
        params = {"visualFeatures": ",".join(wanted), "language": language}
        headers = self._auth_headers()
        request: dict[str, Any] = (
            {"json": {"url": image.url}} if image.url is not None else {"content": image.data}
        )
        if image.url is None:
            headers["Content-Type"] = "application/octet-stream"
        try:
            resp = self._http.post(
                f"{self.endpoint}/vision/v3.2/analyze", params=params, headers=headers, **request
            )
        except httpx.HTTPError as exc:
            raise error_from_httpx(exc, backend=self.backend, source=image.source) from exc
        if resp.status_code != 200:
            raise error_from_http(
                resp.status_code,
                resp.headers,
                resp.content,
                backend=self.backend,
                service="Computer Vision v3.2",
                source=image.source,
            )
        try:
            return resp.json()
        except ValueError as exc:
            raise ServiceError(
                "Computer Vision v3.2 answered HTTP 200 with a body that is not JSON",
                status_code=200,
                backend=self.backend,
                source=image.source,
            ) from exc

    def _auth_headers(self) -> dict[str, str]:
        if self._credential is None:
            assert self._key is not None
            return {"Ocp-Apim-Subscription-Key": self._key.get()}
        if isinstance(self._credential, AzureKeyCredential):
            return {"Ocp-Apim-Subscription-Key": self._credential.key}
        with self._token_lock:
            # Refresh five minutes early so a token never expires in flight.
            if self._token is None or self._token.expires_on - time.time() < 300:
                try:
                    self._token = self._credential.get_token(_SCOPE)
                except Exception as exc:
                    raise error_from_azure_core(exc, backend=self.backend) from exc
            return {"Authorization": f"Bearer {self._token.token}"}

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
