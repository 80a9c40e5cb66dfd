"""Emulated Azure OpenAI chat completions with image input (vision classification).

**An emulation, not a language model** (see `azvision.emulator._aoai_model` for how it decides).
It speaks the real wire format, so the official ``openai`` client (``AzureOpenAI``, ``AsyncAzureOpenAI``,
``OpenAI(base_url=f"{endpoint}/openai/v1/")``) works against it unchanged:

* ``POST /openai/deployments/{deployment}/chat/completions?api-version=2024-10-21`` (classic) and
  ``POST /openai/v1/chat/completions`` (``model`` = deployment name), with ``api-key: <openai_key>`` or
  ``Authorization: Bearer <openai_key>`` (the emulator takes its key as the Entra token too);
* replies valid against the requested ``response_format`` JSON schema, ``logprobs``/``top_logprobs``
  when asked, ``usage`` by the documented image-token rules plus text (`azvision.backends._aoai_tokens`);
* per-deployment RPM/TPM quotas (``openai_rpm``, ``openai_tpm``): 429 with ``retry-after``,
  ``retry-after-ms`` and ``x-ratelimit-remaining-requests/-tokens`` on every answer;
* the service's errors: ``DeploymentNotFound``, images sent to a text-only model, ``json_schema`` on a
  model without structured outputs, more than 10 images, ``context_length_exceeded``, and the
  ``content_filter`` 400 for a prompt containing ``[emulator:content_filter]``.

Deployments are known by model name: ``gpt-4o``, ``gpt-4.1``, ``gpt-5`` (vision, structured outputs),
``gpt-4-turbo`` (vision, no structured outputs) and ``gpt-35-turbo`` (no vision), or any name starting
with one of those and a dash (``gpt-4o-prod``); every other name is not deployed.

Example::

    from openai import AzureOpenAI

    client = AzureOpenAI(azure_endpoint=emu.endpoint, api_key=emu.openai_key, api_version="2024-10-21")
    reply = client.chat.completions.create(model="gpt-4o", messages=[...], response_format={...})
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._aoai_answer import compose, find_choice
from ._aoai_billing import prompt_tokens, text_tokens
from ._aoai_model import Example, VisionModel, caption
from ._aoai_quota import DeploymentQuota
from ._aoai_request import (
    CONTENT_FILTER_TRIGGER,
    ChatError,
    ImagePart,
    content_filter_error,
    decode_data_url,
    image_parts,
    image_size,
    split_examples,
)
from ._context import EmulatorContext
from ._ia_input import _fetch as fetch_image_url

__all__ = ["AzureOpenAIService", "routes"]

MAX_IMAGES = 10
_MAX_IMAGE_BYTES = 20 * 1024 * 1024
_DEFAULT_MAX_TOKENS = 4096
_SCHEMA_API_VERSION = "2024-08-01"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
_NOT_DEPLOYED = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)


@dataclass(frozen=True)
class _Model:
    name: str
    version: str
    vision: bool
    structured: bool
    context: int


_CATALOGUE = (
    _Model("gpt-4o", "2024-11-20", vision=True, structured=True, context=128_000),
    _Model("gpt-4.1", "2025-04-14", vision=True, structured=True, context=1_047_576),
    _Model("gpt-5", "2025-08-07", vision=True, structured=True, context=400_000),
    _Model("gpt-4-turbo", "2024-04-09", vision=True, structured=False, context=128_000),
    _Model("gpt-35-turbo", "0125", vision=False, structured=False, context=16_385),
)


def _model_of(deployment: str) -> _Model:
    name = deployment.lower()
    for model in sorted(_CATALOGUE, key=lambda m: -len(m.name)):
        if name == model.name or name.startswith(model.name + "-"):
            return model
    raise ChatError(404, _NOT_DEPLOYED, code="DeploymentNotFound", gateway=True)


class AzureOpenAIService:
    """State of the emulated Azure OpenAI resource: its quotas and its model (one per emulator)."""

    def __init__(self, ctx: EmulatorContext) -> None:
        config = ctx.config
        self.ctx = ctx
        self.quota = DeploymentQuota(rpm=config.openai_rpm, tpm=config.openai_tpm)
        if config.openai_knowledge is not None and not config.openai_knowledge.is_dir():
            raise ValueError(f"openai_knowledge {config.openai_knowledge} is not a folder")
        self.model = VisionModel(config.openai_knowledge)

    @classmethod
    def of(cls, ctx: EmulatorContext) -> AzureOpenAIService:
        """The service kept in ``ctx.services`` (created on first use)."""
        service = ctx.services.get("azure_openai")
        if not isinstance(service, cls):
            service = ctx.services["azure_openai"] = cls(ctx)
        return service

    def reset(self) -> None:
        """Every deployment's quota starts full again."""
        self.quota.reset()

    # -- one request ------------------------------------------------------------------------
    async def handle(self, request: Request, deployment: str | None) -> Response:
        headers = {
            "x-request-id": str(uuid.uuid4()),
            "apim-request-id": str(uuid.uuid4()),
            "x-ms-region": "emulator",
        }
        try:
            if deployment is not None:
                version = request.query_params.get("api-version", "")
                if not _API_VERSION.match(version):
                    raise ChatError(404, "Resource not found", code="404", gateway=True)
            else:
                version = None
            self._check_key(request)
            body = await self._body(request)
            if deployment is None:
                deployment = body.get("model")
                if not isinstance(deployment, str) or not deployment:
                    raise ChatError(
                        400,
                        "Missing required parameter: 'model'.",
                        code="missing_required_parameter",
                        param="model",
                    )
            model = _model_of(deployment)
            messages, schema, images = self._validate(body, model, version)
            sizes = await self._images(images)
            usage_prompt = prompt_tokens(
                messages, response_format=body.get("response_format"), image_size=lambda url: sizes[url][1]
            )
            if usage_prompt > model.context:
                raise ChatError(
                    400,
                    f"This model's maximum context length is {model.context} tokens. However, your messages "
                    f"resulted in {usage_prompt} tokens. Please reduce the length of the messages.",
                    code="context_length_exceeded",
                    param="messages",
                )
            max_tokens = _max_tokens(body)
            self._admit(deployment, usage_prompt + max_tokens, headers)
            result = await run_in_threadpool(
                self._answer, messages, schema, images, sizes, model, body, max_tokens, usage_prompt
            )
        except ChatError as error:
            return error.response(headers)
        return JSONResponse(result, headers=headers)

    def _check_key(self, request: Request) -> None:
        bearer = request.headers.get("authorization", "")
        given = bearer[7:] if bearer.lower().startswith("bearer ") else request.headers.get("api-key", "")
        if not hmac.compare_digest(given.encode(), self.ctx.openai_key.encode()):
            raise ChatError(401, _ACCESS_DENIED, code="401", gateway=True)

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ChatError(400, "We could not parse the JSON body of your request.", code=None) from None
        if not isinstance(body, dict):
            raise ChatError(400, "The request body must be a JSON object.", code=None)
        return body

    @staticmethod
    def _validate(
        body: Mapping[str, Any], model: _Model, version: str | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[ImagePart]]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ChatError(
                400,
                "Missing required parameter: 'messages'.",
                code="missing_required_parameter",
                param="messages",
            )
        images = image_parts(messages)
        if images and not model.vision:
            raise ChatError(
                400,
                "Invalid content type. image_url is only supported by certain models.",
                code="BadRequest",
                param="messages",
            )
        if len(images) > MAX_IMAGES:
            raise ChatError(
                400, f"Too many images in request. Max is {MAX_IMAGES}.", code="BadRequest", param="messages"
            )
        for message in messages:
            for part in (
                message.get("content")
                if isinstance(message.get("content"), list)
                else [message.get("content")]
            ):
                text = part.get("text") if isinstance(part, dict) else part
                if isinstance(text, str) and CONTENT_FILTER_TRIGGER in text:
                    raise content_filter_error()
        fmt = body.get("response_format")
        schema: dict[str, Any] | None = None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            if not model.structured:
                raise ChatError(
                    400,
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
                    "this model.",
                    code=None,
                    param="response_format",
                )
            if version is not None and version < _SCHEMA_API_VERSION:
                raise ChatError(
                    400,
                    "response_format value as json_schema is enabled only for api versions "
                    "2024-08-01-preview and later",
                    code="BadRequest",
                    param="response_format",
                )
            spec = fmt.get("json_schema")
            schema_value = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema_value, dict):
                raise ChatError(
                    400,
                    "Missing required parameter: 'response_format.json_schema.schema'.",
                    code="missing_required_parameter",
                    param="response_format.json_schema.schema",
                )
            schema = schema_value
        top = body.get("top_logprobs")
        if top is not None and (not isinstance(top, int) or not 0 <= top <= 20):
            raise ChatError(
                400,
                f"Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
                f"but got {top} instead.",
                code="integer_above_max_value",
                param="top_logprobs",
            )
        return messages, schema, images

    async def _images(self, images: Sequence[ImagePart]) -> dict[str, tuple[bytes, tuple[int, int]]]:
        sizes: dict[str, tuple[bytes, tuple[int, int]]] = {}
        for part in images:
            if part.url in sizes:
                continue
            if part.url.startswith("data:"):
                data = decode_data_url(part.url)
            else:
                try:
                    data = await fetch_image_url(part.url, _MAX_IMAGE_BYTES)
                except Exception:  # the Image Analysis error type; here it means "cannot fetch"
                    raise ChatError(
                        400,
                        f"Invalid image URL: {part.url!r} cannot be downloaded.",
                        code="invalid_image_url",
                        param="image_url",
                    ) from None
            sizes[part.url] = (data, image_size(data))
        return sizes

    def _admit(self, deployment: str, cost: float, headers: dict[str, str]) -> None:
        if not self.quota.enabled:
            return
        admission = self.quota.admit(deployment, cost=cost)
        if admission.remaining_requests is not None:
            headers["x-ratelimit-remaining-requests"] = str(admission.remaining_requests)
        if admission.remaining_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = str(admission.remaining_tokens)
        if admission.wait > 0:
            wait_ms = max(1, math.ceil(admission.wait * 1000))
            seconds = max(1, math.ceil(admission.wait))
            kind = "token rate limit" if admission.limited_by == "tokens" else "call rate limit"
            raise ChatError(
                429,
                f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded "
                f"{kind} of your current AIServices S0 pricing tier. Please retry after {seconds} second"
                f"{'s' if seconds != 1 else ''}. Please go here: https://aka.ms/oai/quotaincrease if you "
                "would like to further increase the default rate limit.",
                code="429",
                gateway=True,
                headers={"retry-after": str(seconds), "retry-after-ms": str(wait_ms)},
            )

    def _answer(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any] | None,
        images: Sequence[ImagePart],
        sizes: Mapping[str, tuple[bytes, tuple[int, int]]],
        model: _Model,
        body: Mapping[str, Any],
        max_tokens: int,
        usage_prompt: int,
    ) -> dict[str, Any]:
        choice = find_choice(schema) if schema is not None else None
        labels = choice.labels if choice is not None else ()
        query, examples = split_examples(images, messages, labels)
        probabilities: dict[str, float] = {}
        if labels and query is not None:
            taught = [Example(label, sizes[part.url][0]) for label, part in examples]
            probabilities = self.model.label_probabilities(labels, query=sizes[query.url][0], examples=taught)
        elif labels:
            probabilities = {label: 1.0 / len(labels) for label in labels}
        text = caption(sizes[query.url][0]) if query is not None else "There is no image to describe."
        reply = compose(schema, probabilities, text=text)
        content, finish = reply.content, "stop"
        completion = text_tokens(content)
        if completion > max_tokens:
            content, completion, finish = content[: 4 * max_tokens], max_tokens, "length"
        logprobs = None
        if body.get("logprobs"):
            tokens = reply.logprobs(int(body.get("top_logprobs") or 0))
            logprobs = {"content": tokens if finish == "stop" else tokens[:max_tokens], "refusal": None}
        filters = {
            name: {"filtered": False, "severity": "safe"}
            for name in ("hate", "self_harm", "sexual", "violence")
        }
        return {
            "id": "chatcmpl-" + secrets.token_hex(14),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{model.name}-{model.version}",
            "system_fingerprint": "fp_emulator",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": finish,
                    "logprobs": logprobs,
                    "content_filter_results": filters,
                }
            ],
            "usage": {
                "prompt_tokens": usage_prompt,
                "completion_tokens": completion,
                "total_tokens": usage_prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }


def _max_tokens(body: Mapping[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int) or value < 1:
                raise ChatError(
                    400,
                    f"Invalid '{name}': integer below minimum value.",
                    code="integer_below_min_value",
                    param=name,
                )
            return value
    return _DEFAULT_MAX_TOKENS


def routes(ctx: EmulatorContext) -> list[BaseRoute]:
    """The two chat-completions routes, checking ``ctx.openai_key``.

    Example:
        >>> from azvision.emulator._context import EmulatorConfig, EmulatorContext
        >>> [r.path for r in routes(EmulatorContext(EmulatorConfig()))]
        ['/openai/deployments/{deployment}/chat/completions', '/openai/v1/chat/completions']
    """
    service = AzureOpenAIService.of(ctx)

    async def classic(request: Request) -> Response:
        return await service.handle(request, request.path_params["deployment"])

    async def v1(request: Request) -> Response:
        return await service.handle(request, None)

    return [
        Route("/openai/deployments/{deployment}/chat/completions", classic, methods=["POST"]),
        Route("/openai/v1/chat/completions", v1, methods=["POST"]),
    ]
