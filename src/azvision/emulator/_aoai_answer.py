"""The emulated model's reply: JSON valid against the requested schema, written token by token.

The reply is built from the schema itself (every property present, in order, as strict mode requires),
with the classification — the first ``enum`` of strings, or an array of such — filled from the model's
label probabilities. Tokens are cut as a tokenizer might (structure in one piece, words in runs of up to
four characters) and each label token carries the log-probability of the model choosing it among the
labels still possible, so ``exp(sum of a label's token logprobs)`` is the model's probability for it.

Example::

    choice = find_choice(schema)            # ("label", ("cat", "dog"), False)
    reply = compose(schema, {"cat": 0.8, "dog": 0.2}, text="A cat.", top_logprobs=2)
    reply.content                           # '{"label":"cat"}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Choice", "Reply", "compose", "find_choice"]

_CHUNK = 4
_FLOOR = 1e-9
#: Multilabel answers include every label at least this likely (and always the most likely one).
MULTILABEL_THRESHOLD = 0.25


@dataclass(frozen=True)
class Choice:
    """Where the schema asks for a label: the enum values and whether an array of them is wanted."""

    labels: tuple[str, ...]
    multilabel: bool


@dataclass
class Reply:
    """The reply's text and, token by token, what the ``logprobs.content`` list reports."""

    content: str = ""
    tokens: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str, logprob: float = 0.0, alternatives: Sequence[tuple[str, float]] = ()) -> None:
        self.content += text
        self.tokens.append({"text": text, "logprob": logprob, "top": list(alternatives) or [(text, logprob)]})

    def logprobs(self, top: int) -> list[dict[str, Any]]:
        """The ``choices[0].logprobs.content`` list, with ``top`` alternatives a token."""
        return [
            {
                "token": token["text"],
                "logprob": token["logprob"],
                "bytes": list(token["text"].encode("utf-8")),
                "top_logprobs": [
                    {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}
                    for text, lp in token["top"][:top]
                ],
            }
            for token in self.tokens
        ]


def _string_enum(schema: Mapping[str, Any]) -> tuple[str, ...] | None:
    values = schema.get("enum")
    if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        return tuple(values)
    return None


def find_choice(schema: Mapping[str, Any]) -> Choice | None:
    """The first string enum (or array of one) in ``schema``, depth first; ``None`` when there is none."""
    labels = _string_enum(schema)
    if labels is not None:
        return Choice(labels, multilabel=False)
    if schema.get("type") == "array" and isinstance(schema.get("items"), Mapping):
        labels = _string_enum(schema["items"])
        if labels is not None:
            return Choice(labels, multilabel=True)
    for sub in _children(schema):
        found = find_choice(sub)
        if found is not None:
            return found
    return None


def _children(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        out += [value for value in properties.values() if isinstance(value, Mapping)]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            out += [value for value in schema[key] if isinstance(value, Mapping)]
    if isinstance(schema.get("items"), Mapping):
        out.append(schema["items"])
    return out


def _chunks(text: str) -> list[str]:
    return [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]


class _Writer:
    def __init__(self, choice: Choice | None, probabilities: Mapping[str, float], text: str) -> None:
        self.choice = choice
        self.p = (
            {label: max(float(probabilities.get(label, 0.0)), _FLOOR) for label in choice.labels}
            if choice
            else {}
        )
        self.text = text
        self.reply = Reply()
        self.pending = ""  # structural text waiting to be emitted as one token
        self.used = False

    def structure(self, text: str) -> None:
        self.pending += text

    def flush(self) -> None:
        if self.pending:
            self.reply.add(self.pending)
            self.pending = ""

    def plain_string(self, value: str) -> None:
        self.structure('"')
        self.flush()
        for piece in _chunks(json.dumps(value)[1:-1]):
            if piece:
                self.reply.add(piece)
        self.structure('"')

    def label(self, chosen: str, candidates: Mapping[str, float]) -> None:
        """Write ``chosen`` chunk by chunk; each chunk's logprob is conditional on the chunks before it."""
        self.structure('"')
        self.flush()
        encoded = {label: _chunks(json.dumps(label)[1:-1]) for label in candidates}
        mine = encoded[chosen]
        for position, piece in enumerate(mine):
            alive = {lab: p for lab, p in candidates.items() if encoded[lab][:position] == mine[:position]}
            groups: dict[str, float] = {}
            for lab, p in alive.items():
                nxt = encoded[lab][position] if position < len(encoded[lab]) else '"'
                groups[nxt] = groups.get(nxt, 0.0) + p
            total = sum(groups.values())
            ranked = sorted(groups.items(), key=lambda item: -item[1])
            alternatives = [(text, math.log(p / total)) for text, p in ranked]
            self.reply.add(piece, math.log(groups[piece] / total), alternatives)
        self.structure('"')

    def value(self, schema: Mapping[str, Any]) -> None:
        choice = self.choice
        if choice is not None and not self.used:
            if not choice.multilabel and _string_enum(schema) == choice.labels:
                self.used = True
                best = max(choice.labels, key=lambda lab: self.p[lab])
                self.label(best, self.p)
                return
            items = schema.get("items")
            if choice.multilabel and isinstance(items, Mapping) and _string_enum(items) == choice.labels:
                self.used = True
                self._labels()
                return
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if "anyOf" in schema and isinstance(schema["anyOf"], list) and schema["anyOf"]:
            self.value(schema["anyOf"][0])
        elif _string_enum(schema) is not None:
            self.plain_string(_string_enum(schema)[0])  # type: ignore[index]
        elif "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
            self.structure(json.dumps(schema["enum"][0]))
        elif "const" in schema:
            self.structure(json.dumps(schema["const"]))
        elif kind == "object":
            self._object(schema)
        elif kind == "array":
            self.structure("[]")
        elif kind == "string":
            self.plain_string(self.text)
        elif kind in ("number", "integer"):
            top = max(self.p.values(), default=1.0)
            self.structure(json.dumps(round(top, 2) if kind == "number" else 0))
        elif kind == "boolean":
            self.structure("false")
        else:
            self.structure("null")

    def _object(self, schema: Mapping[str, Any]) -> None:
        properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        assert isinstance(properties, Mapping)
        self.structure("{")
        for index, (name, sub) in enumerate(properties.items()):
            self.structure(("," if index else "") + json.dumps(name) + ":")
            self.value(sub if isinstance(sub, Mapping) else {})
        self.structure("}")

    def _labels(self) -> None:
        assert self.choice is not None
        ranked = sorted(self.choice.labels, key=lambda lab: -self.p[lab])
        picked = [lab for lab in ranked if self.p[lab] >= MULTILABEL_THRESHOLD] or ranked[:1]
        self.structure("[")
        remaining = dict(self.p)
        for index, lab in enumerate(picked):
            if index:
                self.structure(",")
            self.label(lab, remaining)
            del remaining[lab]
        self.structure("]")


def compose(schema: Mapping[str, Any] | None, probabilities: Mapping[str, float], *, text: str) -> Reply:
    """The reply to a request with ``schema`` (``None``: plain text ``text``), token by token."""
    if schema is None:
        reply = Reply()
        for piece in _chunks(text):
            reply.add(piece)
        return reply
    writer = _Writer(find_choice(schema), probabilities, text)
    writer.value(schema)
    writer.flush()
    return writer.reply
