"""The emulator's own billing: Azure OpenAI's documented token rules for images and text, kept apart from
the SDK's estimate so the emulator checks it rather than agreeing with it by construction.

Token counts of an Azure OpenAI chat request, by the documented rules, for cost and TPM budgets.

Images (GPT-4o family, ``overview.md`` of Azure OpenAI): ``detail="low"`` is 85 tokens flat; ``"high"``
fits the image into 2048x2048, scales its shortest side down to 768 px, then costs 170 tokens per 512-px
tile plus 85. ``"auto"`` lets the service choose; we count it as ``"low"`` for images that fit in 512x512
and as ``"high"`` otherwise. Text has no tokenizer here (nothing is downloaded at run time): a token is
counted per 4 UTF-8 bytes, rounded up, plus 3 tokens of framing per message and 3 to prime the reply —
the same approximation the emulator bills with, so estimates and its ``usage`` agree.

Example:
    >>> image_tokens(1024, 1024, "high"), image_tokens(4000, 3000, "low")
    (765, 85)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["image_tokens", "prompt_tokens", "text_tokens"]

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
_TILE = 512
_FIT = 2048
_SHORT_SIDE = 768
_MESSAGE_FRAMING = 3
_REPLY_PRIMING = 3


def image_tokens(width: int, height: int, detail: str = "low") -> int:
    """Prompt tokens one image costs at ``detail`` (``"low"``, ``"high"`` or ``"auto"``).

    Example:
        >>> image_tokens(2048, 4096, "high")  # 1024x2048 -> 768x1536 -> 2x3 tiles
        1105
    """
    if detail == "auto":
        detail = "low" if max(width, height) <= _TILE else "high"
    if detail != "high":
        return LOW_DETAIL_TOKENS
    w, h = float(max(width, 1)), float(max(height, 1))
    if max(w, h) > _FIT:
        scale = _FIT / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > _SHORT_SIDE:
        scale = _SHORT_SIDE / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / _TILE) * math.ceil(round(h, 6) / _TILE)
    return TILE_TOKENS * tiles + LOW_DETAIL_TOKENS


def text_tokens(text: str) -> int:
    """Approximate tokens of ``text``: one per 4 UTF-8 bytes, rounded up.

    Example:
        >>> text_tokens("cat"), text_tokens("a longer sentence")
        (1, 5)
    """
    return math.ceil(len(text.encode("utf-8")) / 4)


def prompt_tokens(
    messages: Sequence[Mapping[str, Any]],
    *,
    response_format: Mapping[str, Any] | None = None,
    image_size: Callable[[str], tuple[int, int]] | None = None,
) -> int:
    """Prompt tokens of a chat-completions request: its messages, images and structured-output schema.

    ``image_size(url)`` gives the pixel size of an ``image_url`` part; it is asked only for images whose
    cost depends on it (``detail`` other than ``"low"``).

    Example:
        >>> msgs = [{"role": "user", "content": [{"type": "text", "text": "cat?"},
        ...          {"type": "image_url", "image_url": {"url": "data:...", "detail": "low"}}]}]
        >>> prompt_tokens(msgs)
        92
    """
    total = _REPLY_PRIMING
    for message in messages:
        total += _MESSAGE_FRAMING
        content = message.get("content")
        if isinstance(content, str):
            total += text_tokens(content)
            continue
        for part in content or ():
            kind = part.get("type")
            if kind == "text":
                total += text_tokens(str(part.get("text", "")))
            elif kind == "image_url":
                image = part.get("image_url") or {}
                detail = str(image.get("detail") or "auto")
                if detail == "low" or image_size is None:
                    total += LOW_DETAIL_TOKENS if detail == "low" else image_tokens(_FIT, _FIT, "high")
                else:
                    width, height = image_size(str(image.get("url", "")))
                    total += image_tokens(width, height, detail)
    if response_format is not None and response_format.get("type") == "json_schema":
        schema = json.dumps(response_format.get("json_schema", {}), sort_keys=True, separators=(",", ":"))
        total += text_tokens(schema)
    return total
