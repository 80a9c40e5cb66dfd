"""The `Classifier` protocol every backend satisfies."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ._errors import AzVisionError
from ._images import ImageLike
from ._models import Prediction

__all__ = ["Classifier"]


@runtime_checkable
class Classifier(Protocol):
    """One interface over every backend: swap backends without rewriting code.

    Example:
        >>> import azvision
        >>> def label_of(clf: azvision.Classifier, path: str) -> str | None:
        ...     return clf.classify(path).label
    """

    def classify(self, image: ImageLike) -> Prediction:
        """Classify one image."""
        ...

    def classify_many(
        self,
        images: Iterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> Iterator[Prediction | AzVisionError]:
        """One outcome per input, in input order; failures yield their error in place."""
        ...

    async def aclassify(self, image: ImageLike) -> Prediction:
        """Async `classify`."""
        ...

    def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async `classify_many`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    async def aclose(self) -> None:
        """Async `close`."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
