"""Reading an Azure OpenAI chat-completions request: its images, the in-context examples, the errors.

Errors use the Azure OpenAI envelope ``{"error": {"message", "type", "param", "code"}}`` (the gateway's
own 401/404 use ``{"error": {"code", "message"}}``), with the service's codes: ``content_filter`` (with
``innererror.content_filter_result``), ``context_length_exceeded``, ``DeploymentNotFound``, ...

Example::

    images = image_parts(body["messages"])      # every image_url part, in order
    query, examples = split_examples(images, body["messages"], ("cat", "dog"))
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.responses import JSONResponse

__all__ = [
    "CONTENT_FILTER_TRIGGER",
    "ChatError",
    "ImagePart",
    "content_filter_error",
    "decode_data_url",
    "image_parts",
    "image_size",
    "split_examples",
]

#: Text that makes the emulated prompt filter block a request, to test content-filter handling.
CONTENT_FILTER_TRIGGER = "[emulator:content_filter]"
_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read "
    "our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}


class ChatError(Exception):
    """An error answer in the Azure OpenAI envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None,
        param: str | None = None,
        kind: str | None = "invalid_request_error",
        gateway: bool = False,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.gateway = gateway
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self, headers: Mapping[str, str]) -> JSONResponse:
        error: dict[str, Any]
        if self.gateway:
            error = {"code": self.code, "message": self.message}
        else:
            error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        error.update(self.extra)
        return JSONResponse({"error": error}, status_code=self.status, headers={**headers, **self.headers})


def content_filter_error() -> ChatError:
    """The 400 a blocked prompt gets, with the per-category filter results."""
    categories = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual")}
    categories["violence"] = {"filtered": True, "severity": "medium"}
    result = {**categories, "jailbreak": {"filtered": False, "detected": False}}
    return ChatError(
        400,
        _FILTER_MESSAGE,
        code="content_filter",
        param="prompt",
        kind=None,
        extra={
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
        },
    )


@dataclass(frozen=True)
class ImagePart:
    """One ``image_url`` content part and where it sits in the conversation."""

    message: int
    part: int
    url: str
    detail: str


def image_parts(messages: Sequence[Mapping[str, Any]]) -> list[ImagePart]:
    """Every image part of ``messages``, in order; a 400 for malformed ones."""
    found: list[ImagePart] = []
    for m, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else None
            if not isinstance(url, str) or not url:
                raise ChatError(
                    400,
                    "Missing required parameter: 'image_url.url'.",
                    code="missing_required_parameter",
                    param=f"messages[{m}].content[{p}].image_url.url",
                )
            detail = image.get("detail", "auto") if isinstance(image, Mapping) else "auto"
            if detail not in ("low", "high", "auto"):
                raise ChatError(
                    400,
                    f"Invalid value: '{detail}'. Supported values are: 'low', 'high', and 'auto'.",
                    code="invalid_value",
                    param=f"messages[{m}].content[{p}].image_url.detail",
                )
            found.append(ImagePart(m, p, url, str(detail)))
    return found


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL; a 400 when it is not one or not an image."""
    match = _DATA_URL.match(url)
    if match is None:
        raise ChatError(
            400,
            "Invalid image URL. The image URL must be a valid HTTP(S) or data URL.",
            code="invalid_image_url",
            param="image_url",
        )
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ChatError(
            400,
            "Invalid image data: the base64 payload cannot be decoded.",
            code="invalid_image_format",
            param="image_url",
        ) from None
    image_size(data)  # rejects what is not a supported image
    return data


def image_size(data: bytes) -> tuple[int, int]:
    """Pixel size of an encoded image in a format the service takes; a 400 otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _FORMATS:
                raise ChatError(
                    400,
                    f"Invalid image format {image.format}. Supported formats: jpeg, png, gif, webp.",
                    code="invalid_image_format",
                    param="image_url",
                )
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise ChatError(400, "Invalid image data.", code="invalid_image_format", param="image_url") from None


def _texts(content: object) -> list[tuple[int, str]]:
    if isinstance(content, str):
        return [(0, content)]
    if isinstance(content, list):
        return [
            (index, str(part.get("text", "")))
            for index, part in enumerate(content)
            if isinstance(part, Mapping) and part.get("type") == "text"
        ]
    return []


def _mentioned(text: str, labels: Sequence[str]) -> str | None:
    """The label named last in ``text`` (the longest one when two end at the same place)."""
    best: tuple[int, int, str] | None = None
    lowered = text.lower()
    for label in labels:
        pattern = r"(?<![\w])" + re.escape(label.lower()) + r"(?![\w])"
        for match in re.finditer(pattern, lowered):
            candidate = (match.end(), len(label), label)
            if best is None or candidate > best:
                best = candidate
    return best[2] if best else None


def split_examples(
    images: Sequence[ImagePart], messages: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> tuple[ImagePart | None, list[tuple[str, ImagePart]]]:
    """The query image (the last one in a user message) and the labelled in-context examples before it.

    An example's label is the one named in the text just before it in its message, else in the
    assistant message that answers it; unlabelled images are not examples.
    """
    user_images = [img for img in images if messages[img.message].get("role") == "user"]
    if not user_images:
        return None, []
    query = user_images[-1]
    examples: list[tuple[str, ImagePart]] = []
    for img in user_images[:-1]:
        floor = max((i.part for i in images if i.message == img.message and i.part < img.part), default=-1)
        nearby = [
            text for index, text in _texts(messages[img.message].get("content")) if floor < index < img.part
        ]
        label = _mentioned(" ".join(nearby), labels) or _answer_label(messages, img.message, labels)
        if label is not None:
            examples.append((label, img))
    return query, examples


def _answer_label(messages: Sequence[Mapping[str, Any]], index: int, labels: Sequence[str]) -> str | None:
    if index + 1 < len(messages) and messages[index + 1].get("role") == "assistant":
        texts = [text for _, text in _texts(messages[index + 1].get("content"))]
        return _mentioned(" ".join(texts), labels)
    return None
