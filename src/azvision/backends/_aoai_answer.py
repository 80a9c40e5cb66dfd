"""Reading a chat completion into a `Prediction`: the label(s), their confidence, the usage.

Confidence, where the deployment returned ``logprobs``, is the probability of the label's tokens:
``exp`` of the sum of the log-probabilities of the tokens that spell the label. Other labels get a
confidence from the alternatives (``top_logprobs``) offered for the label's first token, when an
alternative starts only that label (one shared by several labels is split evenly among them).
Without logprobs the chosen label gets 1.0 — "chosen", not a probability — and ``notes`` says so.

Example:
    >>> body = {"model": "gpt-4o", "choices": [{"finish_reason": "stop", "logprobs": None,
    ...         "message": {"content": '{"label":"cat"}'}}], "usage": {"prompt_tokens": 100,
    ...         "completion_tokens": 5, "total_tokens": 105}}
    >>> p = parse_completion(body, labels=("cat", "dog"), multilabel=False, backend="azure_openai")
    >>> p.label, p.confidence, p.usage["prompt_tokens"]
    ('cat', 1.0, 100)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ServiceError
from .._models import Label, Prediction

__all__ = ["CONFIDENCE_FROM_LOGPROBS", "CONFIDENCE_WITHOUT_LOGPROBS", "parse_completion"]

CONFIDENCE_FROM_LOGPROBS = "confidence: probability of the label's tokens (logprobs)"
CONFIDENCE_WITHOUT_LOGPROBS = (
    "confidence: the deployment returned no logprobs, so 1.0 marks the chosen label, not a probability"
)


def _fail(message: str, code: str, backend: str) -> ServiceError:
    return ServiceError(message, code=code, backend=backend)


def _escaped(label: str) -> str:
    return json.dumps(label)[1:-1]


def _spans(content: str, key: str, chosen: Sequence[str]) -> list[tuple[int, int]] | None:
    """Character spans of each chosen label's text inside ``content`` (``None`` if not found)."""
    found = re.search(r'"' + re.escape(key) + r'"\s*:\s*', content)
    if found is None:
        return None
    cursor, spans = found.end(), []
    for label in chosen:
        start = content.find(json.dumps(label), cursor)
        if start < 0:
            return None
        spans.append((start + 1, start + 1 + len(_escaped(label))))
        cursor = start + len(json.dumps(label))
    return spans


def _confidences(
    tokens: Sequence[Mapping[str, Any]], content: str, key: str, chosen: Sequence[str], labels: Sequence[str]
) -> dict[str, float] | None:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(str(token.get("token", "")))
    spans = _spans(content, key, chosen)
    if spans is None or position != len(content):
        return None
    result: dict[str, float] = {}
    first = 0
    for label, (start, end) in zip(chosen, spans, strict=True):
        inside = [
            i
            for i, token in enumerate(tokens)
            if offsets[i] < end and offsets[i] + len(str(token["token"])) > start
        ]
        if not inside:
            return None
        first = inside[0] if label == chosen[0] else first
        result[label] = min(1.0, math.exp(sum(float(tokens[i]["logprob"]) for i in inside)))
    if len(chosen) == 1:
        prefix = spans[0][0] - offsets[first]
        mine = str(tokens[first]["token"])
        for alternative in tokens[first].get("top_logprobs") or ():
            text = str(alternative.get("token", ""))
            if text == mine or text[:prefix] != mine[:prefix] or not text[prefix:]:
                continue
            tail = text[prefix:]
            starts = [
                lab
                for lab in labels
                if lab not in result
                and (_escaped(lab).startswith(tail) or tail.startswith(_escaped(lab) + '"'))
            ]
            for lab in starts:
                share = math.exp(float(alternative["logprob"])) / len(starts)
                result[lab] = min(1.0, result.get(lab, 0.0) + share)
    return result


def parse_completion(
    body: Mapping[str, Any],
    *,
    labels: Sequence[str],
    multilabel: bool,
    backend: str,
    model: str | None = None,
    notes: Sequence[str] = (),
) -> Prediction:
    """Map one chat-completions answer (its JSON) to a `Prediction`, or raise `ServiceError`.

    ``notes`` go after the one saying what the confidence is.
    """
    choices = body.get("choices") or []
    if not choices:
        raise _fail("Azure OpenAI answered with no choices", "no_choices", backend)
    choice = choices[0]
    finish = choice.get("finish_reason")
    message = choice.get("message") or {}
    if finish == "content_filter":
        raise _fail("Azure OpenAI's content filter withheld the answer", "content_filter", backend)
    if message.get("refusal"):
        raise _fail(f"the model refused: {message['refusal']}", "refusal", backend)
    if finish == "length":
        raise _fail("the answer was cut off at the completion token limit", "length", backend)
    content = message.get("content")
    try:
        answer = json.loads(content) if isinstance(content, str) else None
    except ValueError:
        answer = None
    key = "labels" if multilabel else "label"
    if not isinstance(answer, dict) or key not in answer:
        raise _fail(
            f"the answer is not the requested JSON: {str(content)[:120]!r}", "invalid_answer", backend
        )
    value = answer[key]
    chosen = list(dict.fromkeys(value)) if multilabel and isinstance(value, list) else [value]
    outside = [item for item in chosen if not isinstance(item, str) or item not in labels]
    if outside or (not chosen and not multilabel):
        raise _fail(
            f"the model answered {outside!r}, which is not among the labels {list(labels)!r}",
            "label_not_in_labels",
            backend,
        )
    logprobs = (choice.get("logprobs") or {}).get("content")
    scores = _confidences(logprobs, str(content), key, chosen, labels) if logprobs else None
    note = CONFIDENCE_FROM_LOGPROBS if scores is not None else CONFIDENCE_WITHOUT_LOGPROBS
    if scores is None:
        scores = dict.fromkeys(chosen, 1.0)
    usage = body.get("usage") or {}
    counts = {
        name: int(usage[name])
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(usage.get(name), int)
    }
    return Prediction(
        labels=tuple(Label(name=name, confidence=max(0.0, score)) for name, score in scores.items()),
        backend=backend,
        model=model or body.get("model"),
        notes=(note, *notes),
        usage=counts or None,
        raw=dict(body),
    )
