"""Azure Machine Learning online endpoints: POST an image to a scoring URI, read the labels back.

The scoring script decides the wire format, so requests are built by an encoder (``request_format``) and
answers read by a parser (``parser``), each with presets for the common shapes (see
`azvision.backends._aml_formats`). Auth is the endpoint key or a Microsoft Entra token.

Example:
    >>> from azvision import AzureMLEndpointBackend
    >>> clf = AzureMLEndpointBackend(  # doctest: +SKIP
    ...     "https://dogs.westeurope.inference.ml.azure.com/score", key="...", request_format="automl")
    >>> clf.classify("rex.jpg").label  # doctest: +SKIP
    'beagle'
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any, ClassVar

import httpx
from azure.core.credentials import TokenCredential

from .._config import ENV, Secret, endpoint_setting, secret_setting, setting
from .._error_mapping import error_from_http, error_from_httpx
from .._errors import AuthenticationError, AzVisionError, ConfigurationError, NotFoundError
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._models import Prediction
from .._retry import RetryPolicy
from .._version import __version__
from ._aml_formats import ENCODERS, Encoder, Parser, check_parser, parse_answer
from ._base import BaseBackend
from ._loop_client import LoopClient

__all__ = ["AzureMLEndpointBackend"]

#: Entra ID scope of the AML data plane (token audience ``https://ml.azure.com``).
TOKEN_SCOPE = "https://ml.azure.com/.default"
_REFRESH_MARGIN_S = 300.0
_DEPLOYMENT_HEADER = "azureml-model-deployment"
# The managed endpoint front door has refused request bodies over 1.5 MB; base64 inflates by 4/3 and the
# JSON envelope adds a little, so JSON-wrapped images must stay under ~1.1 MB before encoding.
_MAX_BODY_BYTES = 1_500_000
_MAX_BASE64_IMAGE_BYTES = 1_100_000
_SERVICE = "an Azure ML online endpoint"


def _limits(max_bytes: int) -> ImageLimits:
    return ImageLimits(service=_SERVICE, max_bytes=max_bytes, accepts_url=False)


class _KeyAuth(httpx.Auth):
    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.get()}"
        yield request


class _EntraAuth(httpx.Auth):
    """Bearer tokens from an azure-core ``TokenCredential``, cached until 5 minutes before they expire."""

    def __init__(self, credential: TokenCredential) -> None:
        self._credential = credential
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None

    def _fresh(self) -> str | None:
        cached = self._cached
        if cached is not None and time.time() < cached[1] - _REFRESH_MARGIN_S:
            return cached[0]
        return None

    def _token(self) -> str:
        with self._lock:  # one refresh for all threads, not one per waiting request
            token = self._fresh()
            if token is None:
                try:
                    access = self._credential.get_token(TOKEN_SCOPE)
                except Exception as exc:  # azure-identity raises many types; all mean "no token"
                    raise AuthenticationError(
                        f"could not get a Microsoft Entra token for {TOKEN_SCOPE}: {type(exc).__name__} "
                        "(see the chained exception)",
                        backend=AzureMLEndpointBackend.name,
                    ) from exc
                self._cached = (access.token, float(access.expires_on))
                token = access.token
            return token

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 401:  # revoked or rotated: the next request asks for a new token
            self._cached = None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        self._check((yield request))

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._fresh() or await asyncio.to_thread(self._token)
        request.headers["Authorization"] = f"Bearer {token}"
        self._check((yield request))


def _auth(key: str | Secret | None, credential: TokenCredential | None) -> httpx.Auth:
    key_env = ENV["azure_ml"]["key"]
    if credential is not None:
        if key not in (None, ""):
            raise ConfigurationError(
                f"pass either key=... (or {key_env}) or credential=... (an azure-identity TokenCredential), "
                "not both"
            )
        if not callable(getattr(credential, "get_token", None)):
            raise ConfigurationError("credential must be an azure-core TokenCredential with get_token()")
        if inspect.iscoroutinefunction(credential.get_token):
            raise ConfigurationError(
                "credential is an async credential: pass a sync one (azure.identity, not azure.identity.aio)"
            )
        return _EntraAuth(credential)
    secret = secret_setting(key, arg="key", env=key_env, required=False)
    if secret is None:
        raise ConfigurationError(
            f"missing key: pass key=... or set the environment variable {key_env}, "
            "or pass credential=... (an azure-identity TokenCredential) for Microsoft Entra ID auth"
        )
    return _KeyAuth(secret)


class AzureMLEndpointBackend(BaseBackend):
    """Classify images with your own model behind an Azure ML managed online endpoint.

    ``request_format`` picks how the image is sent: ``"raw"`` (the bytes, for a ``@rawhttp`` scoring
    script), ``"automl"`` (AutoML for Images' ``input_data`` JSON), ``"json"`` (``{"image": base64}``) or a
    callable ``(LoadedImage) -> (content_type, body)``. ``parser`` reads the answer: ``None`` tries every
    preset (AutoML ``[{"probs", "labels"}]`` and boxes, ``{"label", "confidence"}``, ``{"labels", ...}``,
    Custom Vision ``{"predictions"}``, bare probabilities, ``{name: probability}``), a preset name picks
    one, a callable returns a ``Prediction``, a sequence of ``Label`` or ``{name: probability}``.
    ``labels`` names the classes when the model answers bare probabilities.

    Example:
        >>> clf = AzureMLEndpointBackend(  # doctest: +SKIP
        ...     "https://dogs.westeurope.inference.ml.azure.com/score", key="...",
        ...     deployment="blue", request_format="json", labels=["beagle", "poodle"])
        >>> clf.classify("rex.jpg").model  # doctest: +SKIP
        'blue'
    """

    name: ClassVar[str] = "azure_ml"
    image_limits: ClassVar[ImageLimits] = _limits(_MAX_BODY_BYTES)
    # A deployment's defaults (1 instance, max_concurrent_requests_per_instance=1) answer 429 to more than
    # 2 pending requests; users who scaled out pass concurrency=.
    default_concurrency: ClassVar[int] = 2

    def __init__(
        self,
        scoring_uri: str | None = None,
        key: str | Secret | None = None,
        *,
        credential: TokenCredential | None = None,
        deployment: str | None = None,
        request_format: str | Encoder = "raw",
        parser: str | Parser | None = None,
        labels: Sequence[str] | str | None = None,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        concurrency: int | None = None,
    ) -> None:
        env = ENV["azure_ml"]
        self.scoring_uri = endpoint_setting(scoring_uri, arg="scoring_uri", env=env["scoring_uri"])
        self.deployment = setting(deployment, arg="deployment", env=env["deployment"], required=False)
        self._auth = _auth(key, credential)
        if callable(request_format):
            self._encode, self.request_format = request_format, getattr(request_format, "__name__", "custom")
            self._limits = _limits(_MAX_BASE64_IMAGE_BYTES)
        elif request_format in ENCODERS:
            self._encode, self.request_format = ENCODERS[request_format], request_format
            self._limits = _limits(_MAX_BODY_BYTES if request_format == "raw" else _MAX_BASE64_IMAGE_BYTES)
        else:
            raise ConfigurationError(
                f"unknown request_format {request_format!r}: use one of {', '.join(ENCODERS)} or a callable"
            )
        self.parser = check_parser(parser)
        if isinstance(labels, str):  # "cat,dog" from the command line or an environment variable
            labels = [part.strip() for part in labels.split(",") if part.strip()]
        self.labels = tuple(labels) if labels is not None else None
        super().__init__(max_rps=max_rps, retry=retry, timeout=timeout, concurrency=concurrency)
        self._client = httpx.Client(**self._client_options())
        self._aclient: LoopClient[httpx.AsyncClient] = LoopClient(
            lambda: httpx.AsyncClient(**self._client_options()), close=lambda client: client.aclose()
        )

    @classmethod
    def from_workspace(
        cls,
        endpoint_name: str,
        *,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace: str | None = None,
        credential: TokenCredential | None = None,
        deployment: str | None = None,
        ml_client: Any = None,
        **options: Any,
    ) -> AzureMLEndpointBackend:
        """Look the endpoint up in its workspace (the ``ml`` extra: ``pip install 'azvision[ml]'``).

        The workspace is ``subscription_id``/``resource_group``/``workspace`` (else ``AZURE_SUBSCRIPTION_ID``,
        ``AZURE_RESOURCE_GROUP``, ``AZUREML_WORKSPACE``), reached with ``credential`` (default
        ``DefaultAzureCredential()``), or an existing ``azure.ai.ml.MLClient`` as ``ml_client``. The
        endpoint's auth mode decides the data-plane auth: ``key`` uses its primary key, ``aad_token`` the
        credential (Entra tokens, refreshed as needed), ``aml_token`` a token from the workspace. AML tokens
        expire and this backend does not renew them: when requests start failing with
        `AuthenticationError`, call ``from_workspace`` again for a fresh one. ``options`` go to the
        constructor (``request_format``, ``parser``, ``labels``, ``timeout``, ...).

        Example:
            >>> clf = AzureMLEndpointBackend.from_workspace(  # doctest: +SKIP
            ...     "dogs", subscription_id="...", resource_group="vision-rg", workspace="vision-ws",
            ...     request_format="automl")
            >>> clf.classify("rex.jpg").label  # doctest: +SKIP
            'beagle'
        """
        from ._aml_workspace import find_endpoint

        access = find_endpoint(
            endpoint_name,
            subscription_id=subscription_id,
            resource_group=resource_group,
            workspace=workspace,
            credential=credential,
            deployment=deployment,
            ml_client=ml_client,
        )
        return cls(
            access.scoring_uri, access.key, credential=access.credential, deployment=deployment, **options
        )

    def __repr__(self) -> str:
        auth = "entra" if isinstance(self._auth, _EntraAuth) else "key"
        return (
            f"{type(self).__name__}(scoring_uri={self.scoring_uri!r}, deployment={self.deployment!r}, "
            f"request_format={self.request_format!r}, auth={auth!r})"
        )

    def _client_options(self) -> dict[str, Any]:
        return {
            "auth": self._auth,
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            "headers": {"User-Agent": f"azvision/{__version__} httpx/{httpx.__version__}"},
        }

    def _load(self, image: ImageLike) -> LoadedImage:
        # A URL is downloaded within the request timeout, and never past the input's retry deadline.
        budget = min(self.timeout, self.retry.deadline or self.timeout)
        return load_image(image, self._limits, timeout=budget)

    # -- one request ----------------------------------------------------------------------------
    def _request_parts(self, image: LoadedImage) -> tuple[bytes, dict[str, str]]:
        content_type, body = self._encode(image)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.deployment:
            headers[_DEPLOYMENT_HEADER] = self.deployment
        return body, headers

    def _predict(self, image: LoadedImage) -> Prediction:
        body, headers = self._request_parts(image)
        try:
            response = self._client.post(self.scoring_uri, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise error_from_httpx(exc, backend=self.name, source=image.source) from exc
        return self._answer(response, image)

    async def _apredict(self, image: LoadedImage) -> Prediction:
        body, headers = self._request_parts(image)
        try:
            response = await self._aclient.get().post(self.scoring_uri, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise error_from_httpx(exc, backend=self.name, source=image.source) from exc
        return self._answer(response, image)

    def _answer(self, response: httpx.Response, image: LoadedImage) -> Prediction:
        if not response.is_success:
            raise self._http_error(response, image)
        model = response.headers.get(_DEPLOYMENT_HEADER) or self.deployment
        return parse_answer(response.content, parser=self.parser, labels=self.labels, model=model)

    def _http_error(self, response: httpx.Response, image: LoadedImage) -> AzVisionError:
        error = error_from_http(
            response.status_code,
            response.headers,
            response.content,
            backend=self.name,
            service="the Azure ML endpoint",
            source=image.source,
        )
        if isinstance(error, AuthenticationError):
            error.message = (
                f"access denied: the key or token is wrong, expired or not for this endpoint; {error.message}"
            )
        elif isinstance(error, NotFoundError):
            target = f"deployment {self.deployment!r} of " if self.deployment else ""
            error.message = (
                f"no {target}endpoint at {self.scoring_uri} can score (check the name): {error.message}"
            )
        return error

    # -- the async client: connections belong to the event loop that opened them ----------------
    def _close_clients(self) -> None:
        self._client.close()
        self._aclient.close()

    async def aclose(self) -> None:
        """Close the async connections inside their event loop, then everything else (see `close`)."""
        await self._aclient.aclose()
        self.close()
