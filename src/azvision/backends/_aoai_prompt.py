"""The chat request of the Azure OpenAI backend: instructions, in-context examples, schema, image.

Built once per backend (everything but the image), checked before any call: examples must name known
labels and be readable images. A request holds at most 10 images, the query image included: of more than
9 examples, 9 are chosen, the labels taking turns, and ``Prompt.note`` says so.

Example:
    >>> prompt = Prompt(("cat", "dog"), multilabel=False, instructions=None, detail="low", examples=None)
    >>> prompt.response_format["json_schema"]["schema"]["properties"]["label"]["enum"]
    ['cat', 'dog']
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from ._aoai_tokens import prompt_tokens, text_tokens

__all__ = ["MAX_EXAMPLES", "MAX_IMAGES", "Examples", "Prompt", "image_limits"]

#: Images Azure OpenAI takes in one chat request (the query image included).
MAX_IMAGES = 10
#: In-context examples that fit beside the image to classify.
MAX_EXAMPLES = MAX_IMAGES - 1
_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_MAX_BYTES = 20 * 1024 * 1024
# The service shrinks low-detail images to 512x512 and high-detail ones into 2048x2048 anyway; sending
# them smaller first keeps uploads small and the token count known in advance.
_SIDE = {"low": 512, "high": 2048, "auto": 2048}

Examples = Mapping[str, Sequence[ImageLike]] | Any  # {label: [images]}, a Dataset or a folder of them


def image_limits(detail: str) -> ImageLimits:
    """What this backend sends for ``detail``: downscaled to what the service would look at."""
    return ImageLimits(
        service="Azure OpenAI",
        max_bytes=_MAX_BYTES,
        max_side=_SIDE[detail],
        formats=_FORMATS,
        accepts_url=False,
    )


def data_url(image: LoadedImage) -> str:
    """The ``data:`` URL of a loaded image."""
    assert image.data is not None
    mime = _MIME.get(image.format or "", "image/png")
    return f"data:{mime};base64," + base64.b64encode(image.data).decode("ascii")


def _example_items(examples: Examples) -> list[tuple[str, ImageLike]]:
    if isinstance(examples, (str, os.PathLike)):  # a folder, one sub-folder per label (the CLI's --examples)
        from ..training.datasets import Dataset

        if not os.path.isdir(examples):
            raise ConfigurationError(
                f"examples {os.fspath(examples)!r} is not a folder of one sub-folder per label"
            )
        examples = Dataset.from_folder(examples)
    if isinstance(examples, Mapping):
        items: list[tuple[str, ImageLike]] = []
        for label, images in examples.items():
            if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
                raise ConfigurationError(f"examples[{label!r}] must be a list of images")
            items += [(str(label), image) for image in images]
        return items
    dataset_items = getattr(examples, "items", None)
    if dataset_items is None:
        raise ConfigurationError("examples must be a {label: [images]} mapping or an azvision Dataset")
    return [(label, item.path) for item in dataset_items for label in item.labels[:1]]


def _balanced(
    items: Sequence[tuple[str, ImageLike]], labels: Sequence[str], limit: int
) -> tuple[list[tuple[str, ImageLike]], str]:
    """``limit`` of ``items``, the labels taking turns (in ``labels`` order, each its first ones first).

    Example:
        >>> picked, note = _balanced([("a", 1), ("a", 2), ("a", 3), ("b", 4)], ("a", "b"), 3)
        >>> [image for _, image in picked]
        [1, 2, 4]
    """
    queues = {label: [image for lab, image in items if lab == label] for label in labels}
    chosen: dict[str, list[ImageLike]] = {label: [] for label in labels}
    taken = 0
    while taken < limit and any(queues.values()):
        for label in labels:
            if queues[label] and taken < limit:
                chosen[label].append(queues[label].pop(0))
                taken += 1
    counts = ", ".join(f"{label} {len(chosen[label])}" for label in labels)
    note = (
        f"few-shot: {taken} of {len(items)} examples sent ({counts}): a request holds at most "
        f"{MAX_IMAGES} images, the one to classify included; the labels take turns, first examples first"
    )
    return [(label, image) for label in labels for image in chosen[label]], note


class Prompt:
    """Everything of a request that does not depend on the image; `messages` adds the image."""

    def __init__(
        self,
        labels: Sequence[str],
        *,
        multilabel: bool,
        instructions: str | None,
        detail: str,
        examples: Examples | None,
    ) -> None:
        self.labels = tuple(labels)
        self.multilabel = multilabel
        self.detail = detail
        self.key = "labels" if multilabel else "label"
        #: Says which examples were sent when more were given than fit in a request (else ``None``).
        self.note: str | None = None
        self._examples: list[tuple[str, LoadedImage]] = []
        if examples is not None:
            items = _example_items(examples)
            unknown = sorted({label for label, _ in items} - set(self.labels))
            if unknown:
                raise ConfigurationError(
                    f"examples name labels that are not in labels: {', '.join(map(repr, unknown))}"
                )
            if len(items) > MAX_EXAMPLES:
                items, self.note = _balanced(items, self.labels, MAX_EXAMPLES)
            limits = image_limits(detail)
            self._examples = [(label, load_image(image, limits)) for label, image in items]
        choice: dict[str, Any] = {"type": "string", "enum": list(self.labels)}
        if multilabel:
            choice = {"type": "array", "items": choice}
        self.response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {
                "name": "image_classification",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {self.key: choice},
                    "required": [self.key],
                    "additionalProperties": False,
                },
            },
        }
        task = (
            "List every label that applies to the image"
            if multilabel
            else "Answer with the one label that fits the image best"
        )
        system = f"You classify images. {task}, choosing only from: {', '.join(self.labels)}."
        if instructions:
            system += "\n" + instructions
        self.system = system
        self._example_parts: list[dict[str, Any]] = []
        for label, image in self._examples:
            self._example_parts.append({"type": "text", "text": f"Example of {json.dumps(label)}:"})
            self._example_parts.append(self._image_part(image))
        self._sizes = {data_url(image): image.size or (0, 0) for _, image in self._examples}
        longest = json.dumps({self.key: list(self.labels) if multilabel else max(self.labels, key=len)})
        #: Completion budget: twice the longest answer, so a verbose tokenizer still fits.
        self.max_tokens = max(16, 2 * text_tokens(longest) + 8)

    @property
    def example_count(self) -> int:
        """How many in-context example images each request carries."""
        return len(self._examples)

    def _image_part(self, image: LoadedImage) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": data_url(image), "detail": self.detail}}

    def messages(self, image: LoadedImage) -> list[dict[str, Any]]:
        """The chat messages that classify ``image``."""
        ask = "Classify this image." if not self._examples else "Now classify this image."
        content = [*self._example_parts, {"type": "text", "text": ask}, self._image_part(image)]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def prompt_tokens(self, image: LoadedImage, messages: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Prompt tokens of the request for ``image``, by the documented rules."""
        messages = messages if messages is not None else self.messages(image)
        query = str(messages[-1]["content"][-1]["image_url"]["url"])
        sizes = {**self._sizes, query: image.size or (2048, 2048)}
        return prompt_tokens(messages, response_format=self.response_format, image_size=sizes.__getitem__)
