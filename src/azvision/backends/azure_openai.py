"""Azure OpenAI vision: classify images into your labels with a vision chat model (GPT-4o, GPT-4.1, ...).

Zero-shot (labels only, optional ``instructions``) or few-shot (``examples`` sent as in-context images).
Structured outputs force the answer into ``labels``; confidence comes from the label tokens'
log-probabilities when the deployment returns them (see `azvision.backends._aoai_answer`);
``Prediction.usage`` holds the tokens billed. Requests go through the official ``openai`` package with its
own retries off: azvision's retry layer is the only one.

Example:
    >>> from azvision import AzureOpenAIBackend
    >>> clf = AzureOpenAIBackend("https://my-aoai.openai.azure.com", key="...",  # doctest: +SKIP
    ...                          deployment="gpt-4o", labels=["cat", "dog"])
    >>> clf.classify("rex.jpg").label  # doctest: +SKIP
    'dog'
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from .._config import ENV, Secret, endpoint_setting, secret_setting, setting
from .._errors import ConfigurationError, ServiceError, missing_extra
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._models import Prediction
from .._pacing import Headroom
from .._retry import Pacer, RetryPolicy
from ._aoai_answer import parse_completion
from ._aoai_errors import error_from_openai
from ._aoai_prompt import Examples, Prompt, image_limits
from ._base import BaseBackend
from ._loop_client import LoopClient

__all__ = ["AzureOpenAIBackend"]

#: Entra ID scope of Azure OpenAI (Cognitive Services).
TOKEN_SCOPE = "https://cognitiveservices.azure.com/.default"
_V1 = {"v1", "latest", "preview"}
_HEADROOM_HEADERS = (
    ("x-ratelimit-remaining-requests", "requests"),
    ("x-ratelimit-remaining-tokens", "tokens"),
)
# max_completion_tokens replaced max_tokens in this API version; older versions reject it.
_COMPLETION_TOKENS_VERSION = "2024-09-01"


def _labels(labels: Sequence[str] | str | None) -> tuple[str, ...]:
    if isinstance(labels, str):  # "cat,dog" from the command line
        labels = [part.strip() for part in labels.split(",") if part.strip()]
    if not labels:
        raise ConfigurationError("missing labels: pass labels=['cat', 'dog', ...] (at least two)")
    unique = tuple(dict.fromkeys(str(label) for label in labels))
    if len(unique) < 2:
        raise ConfigurationError("labels needs at least two distinct labels to choose from")
    return unique


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _awaitable(provider: Callable[[], str]) -> Callable[[], Awaitable[str]]:
    async def token() -> str:
        # azure-identity's provider may block on a token request: keep it off the event loop.
        return await asyncio.to_thread(provider)

    return token


class AzureOpenAIBackend(BaseBackend):
    """Classify images with a vision chat model deployed in Azure OpenAI (or Microsoft Foundry).

    ``api_version=None`` (and no ``OPENAI_API_VERSION``) uses the GA ``/openai/v1/`` API; a dated version
    (``"2024-10-21"``) uses the classic ``/openai/deployments/{deployment}`` path. Auth is ``key`` or
    ``credential`` (an azure-identity ``TokenCredential``, for Microsoft Entra ID). ``detail="low"``
    (the default) sends images downscaled to 512 px at 85 tokens each. ``max_rpm``/``max_tpm`` are the
    deployment's quotas; ``logprobs=False`` for deployments that refuse ``logprobs`` (reasoning models).

    Example:
        >>> clf = AzureOpenAIBackend(  # doctest: +SKIP
        ...     "https://my-aoai.openai.azure.com", key="...", deployment="gpt-4o",
        ...     labels=["cat", "dog"], examples={"cat": ["c1.jpg"], "dog": ["d1.jpg"]}, max_rpm=600)
        >>> clf.classify("rex.jpg").usage  # doctest: +SKIP
        {'prompt_tokens': 362, 'completion_tokens': 5, 'total_tokens': 367}
    """

    name: ClassVar[str] = "azure_openai"
    image_limits: ClassVar[ImageLimits] = image_limits("low")

    def __init__(
        self,
        endpoint: str | None = None,
        key: str | Secret | None = None,
        *,
        credential: Any = None,
        deployment: str | None = None,
        labels: Sequence[str] | str | None = None,
        examples: Examples | None = None,
        instructions: str | None = None,
        detail: str = "low",
        multilabel: bool = False,
        api_version: str | None = None,
        logprobs: bool = True,
        max_rpm: float | None = None,
        max_tpm: float | None = None,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        concurrency: int | None = None,
    ) -> None:
        env = ENV["azure_openai"]
        self.endpoint = endpoint_setting(endpoint, arg="endpoint", env=env["endpoint"])
        deployment_name = setting(deployment, arg="deployment", env=env["deployment"])
        assert deployment_name is not None
        self.deployment = deployment_name
        self.api_version = setting(api_version, arg="api_version", env=env["api_version"], required=False)
        if detail not in ("low", "high", "auto"):
            raise ConfigurationError(f"detail must be 'low', 'high' or 'auto', got {detail!r}")
        self.labels = _labels(labels)
        self.multilabel = multilabel
        self.logprobs = logprobs
        self._limits = image_limits(detail)
        self.prompt = Prompt(
            self.labels, multilabel=multilabel, instructions=instructions, detail=detail, examples=examples
        )
        self._key, self._token_provider = self._auth(key, credential)
        for arg, value in (("max_rpm", max_rpm), ("max_tpm", max_tpm)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{arg} must be positive, got {value}")
        self.max_rpm, self.max_tpm = max_rpm, max_tpm
        if max_rps is None and max_rpm is not None:
            max_rps = max_rpm / 60.0
        super().__init__(max_rps=max_rps, retry=retry, timeout=timeout, concurrency=concurrency)
        if max_tpm is not None:  # each request spends its estimated tokens of the per-minute budget
            self._cost_pacers.append(Pacer(max_tpm / 60.0, clock=self._clock))
        self._notes = (self.prompt.note,) if self.prompt.note else ()
        self._headroom = {"requests": Headroom(max_rpm), "tokens": Headroom(max_tpm)}
        self._client = self._new_client(asynchronous=False)
        self._aclient: LoopClient[Any] = LoopClient(
            lambda: self._new_client(asynchronous=True), close=lambda client: client.close()
        )

    # -- configuration --------------------------------------------------------------------------
    @property
    def style(self) -> str:
        """``"v1"`` (``/openai/v1/``) or ``"classic"`` (``/openai/deployments/...?api-version=``)."""
        return "v1" if self.api_version is None or self.api_version.lower() in _V1 else "classic"

    @staticmethod
    def _auth(key: str | Secret | None, credential: Any) -> tuple[Secret | None, Callable[[], str] | None]:
        key_env = ENV["azure_openai"]["key"]
        if credential is not None:
            if key not in (None, ""):
                raise ConfigurationError(f"pass either key=... (or {key_env}) or credential=..., not both")
            if not callable(getattr(credential, "get_token", None)):
                raise ConfigurationError("credential must be an azure-core TokenCredential with get_token()")
            try:
                from azure.identity import get_bearer_token_provider
            except ImportError as exc:
                raise missing_extra(exc, what="Entra ID auth for Azure OpenAI", extra="openai") from exc
            return None, get_bearer_token_provider(credential, TOKEN_SCOPE)
        secret = secret_setting(key, arg="key", env=key_env, required=False)
        if secret is None:
            raise ConfigurationError(
                f"missing key: pass key=... or set the environment variable {key_env}, "
                "or pass credential=... (an azure-identity TokenCredential) for Microsoft Entra ID auth"
            )
        return secret, None

    def _new_client(self, *, asynchronous: bool) -> Any:
        try:
            import openai
        except ImportError as exc:
            raise missing_extra(exc, what="the azure_openai backend", extra="openai") from exc
        auth: Any = self._key.get() if self._key is not None else self._token_provider
        common: dict[str, Any] = {"max_retries": 0, "timeout": self.timeout}
        if self.style == "v1":
            base_url = f"{self.endpoint}/openai/v1/"
            if not asynchronous:
                return openai.OpenAI(base_url=base_url, api_key=auth, **common)
            if self._token_provider is not None:  # the async client awaits its key provider
                auth = _awaitable(self._token_provider)
            return openai.AsyncOpenAI(base_url=base_url, api_key=auth, **common)
        azure_cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        credentials = {"api_key": auth} if self._key is not None else {"azure_ad_token_provider": auth}
        return azure_cls(azure_endpoint=self.endpoint, api_version=self.api_version, **credentials, **common)

    def __repr__(self) -> str:
        auth = "entra" if self._token_provider is not None else "key"
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, deployment={self.deployment!r}, "
            f"labels={list(self.labels)!r}, examples={self.prompt.example_count}, style={self.style!r}, "
            f"auth={auth!r})"
        )

    def _load(self, image: ImageLike) -> LoadedImage:
        return load_image(image, self._limits)

    # -- the request ----------------------------------------------------------------------------
    def _request(self, image: LoadedImage) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.deployment,
            "messages": self.prompt.messages(image),
            "response_format": self.prompt.response_format,
        }
        if self.style == "v1" or (self.api_version or "") >= _COMPLETION_TOKENS_VERSION:
            request["max_completion_tokens"] = self.prompt.max_tokens
        else:
            request["max_tokens"] = self.prompt.max_tokens
        if self.logprobs:
            request["logprobs"] = True
            request["top_logprobs"] = min(len(self.labels), 20)
        return request

    def _request_cost(self, image: LoadedImage) -> float:
        """Estimated tokens one request costs against the TPM quota: its prompt plus the completion budget.

        Example:
            >>> clf._request_cost(clf._load("cat.jpg"))  # doctest: +SKIP
            145.0
        """
        return self._cost(image, None)

    def _cost(self, image: LoadedImage, messages: list[dict[str, Any]] | None) -> float:
        return float(self.prompt.prompt_tokens(image, messages) + self.prompt.max_tokens)

    def _predict(self, image: LoadedImage) -> Prediction:
        request, sent_at = self._request(image), self._clock()
        try:
            raw = self._client.chat.completions.with_raw_response.create(**request)
        except Exception as exc:  # the openai package's errors, mapped at one place
            raise error_from_openai(exc, backend=self.name, source=image.source) from exc
        return self._read(raw, image, request, sent_at)

    async def _apredict(self, image: LoadedImage) -> Prediction:
        request, sent_at = self._request(image), self._clock()
        try:
            raw = await self._aclient.get().chat.completions.with_raw_response.create(**request)
        except Exception as exc:
            raise error_from_openai(exc, backend=self.name, source=image.source) from exc
        return self._read(raw, image, request, sent_at)

    def _read(self, raw: Any, image: LoadedImage, request: dict[str, Any], sent_at: float) -> Prediction:
        """Read the body as JSON (no model objects: it becomes a `Prediction` at once) and the headers."""
        try:
            body = raw.http_response.json()
        except ValueError as exc:
            raise ServiceError(
                f"Azure OpenAI answered {raw.http_response.status_code} with a body that is not JSON",
                code="invalid_answer",
                backend=self.name,
                source=image.source,
            ) from exc
        self._observe(raw.headers, lambda: self._cost(image, request["messages"]), sent_at)
        return parse_completion(
            body, labels=self.labels, multilabel=self.multilabel, backend=self.name, notes=self._notes
        )

    def _observe(self, headers: Any, need_tokens: Callable[[], float], sent_at: float) -> None:
        """Slow down before the 429 when the deployment says a quota is nearly spent (``x-ratelimit-*``)."""
        hold = 0.0
        for name, headroom in _HEADROOM_HEADERS:
            value = _number(headers.get(name))
            if value is not None:
                need = 1.0 if headroom == "requests" else need_tokens()
                hold = max(hold, self._headroom[headroom].hold(value, need=need))
        if hold > 0:
            # What a 429 would do, one request early: a known limit waits, a learned rate is cut.
            unknown = self.max_rpm is None and self.max_tpm is None
            self._throttle.throttled(hold, sent_at=sent_at, learn=unknown)

    # -- the async client: connections belong to the event loop that opened them ----------------
    def _close_clients(self) -> None:
        self._client.close()
        self._aclient.close()

    async def aclose(self) -> None:
        """Close the async connections inside their event loop, then everything else (see `close`)."""
        await self._aclient.aclose()
        self.close()
