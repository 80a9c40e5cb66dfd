"""Label vocabularies: the 86 Computer Vision v3.2 categories, and `LabelMap` to fold any into yours.

The categories are one copy for the whole package, read from ``azvision/data/category_taxonomy_86.txt``
(taxonomy page order); a category's parent is its prefix up to and including ``_`` (``animal_`` is the
parent of ``animal_dog``).

Example:
    >>> len(CATEGORIES), CATEGORIES[:2]
    (86, ('abstract_', 'abstract_net'))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from importlib.resources import files
from typing import TypeAlias

from .._errors import ConfigurationError
from .._models import Label

__all__ = ["CATEGORIES", "LabelMap", "LabelMapLike"]

CATEGORIES: tuple[str, ...] = tuple(
    line.strip()
    for line in files("azvision").joinpath("data", "category_taxonomy_86.txt").read_text("utf-8").splitlines()
    if line.strip()
)

LabelMapLike: TypeAlias = "Mapping[str, str | Iterable[str]] | Callable[[str], str | None] | LabelMap"


def _norm(name: str) -> str:
    return " ".join(name.casefold().split())


class LabelMap:
    """Folds a service's open-vocabulary labels into your own label set.

    Give a mapping ``{your_label: [service labels...]}`` (one string is one service label) or a callable
    ``service_label -> your_label | None``. Matching ignores case and extra whitespace; a service label
    with ``*``, ``?`` or ``[...]`` is a glob (``"animal_*"`` matches every animal category). A service
    label may feed several of yours. Service labels that match nothing are dropped, so the prediction only
    ever names your labels (and is empty when nothing matched).

    Your label's confidence is the **maximum** confidence of the service labels that matched it (max, not
    sum: "dog" 0.9 and "puppy" 0.8 say one thing twice, they are not independent evidence). In objects
    mode each detected object is folded on its own and keeps its box.

    Example:
        >>> lm = LabelMap({"pet": ["dog", "cat"], "plant": "plant_*"})
        >>> [(lab.name, lab.confidence) for lab in lm.fold([
        ...     Label(name="Dog", confidence=0.9), Label(name="cat", confidence=0.4),
        ...     Label(name="plant_tree", confidence=0.3), Label(name="sky", confidence=0.99)])]
        [('pet', 0.9), ('plant', 0.3)]
    """

    def __init__(self, mapping: Mapping[str, str | Iterable[str]] | Callable[[str], str | None]) -> None:
        self._fn: Callable[[str], str | None] | None = None
        self._exact: dict[str, list[str]] = {}
        self._globs: list[tuple[str, str]] = []
        if callable(mapping) and not isinstance(mapping, Mapping):
            self._fn = mapping
            return
        if not isinstance(mapping, Mapping):
            raise ConfigurationError("label_map must be a mapping {label: [service labels]} or a callable")
        for target, sources in mapping.items():
            for source in [sources] if isinstance(sources, str) else list(sources):
                if not isinstance(source, str) or not source.strip():
                    raise ConfigurationError(f"label_map[{target!r}] must list non-empty strings")
                pattern = _norm(source)
                if any(ch in pattern for ch in "*?["):
                    self._globs.append((pattern, target))
                else:
                    self._exact.setdefault(pattern, []).append(target)

    @property
    def patterns(self) -> list[str]:
        """Every service label or glob this map listens for (empty for a callable)."""
        return [*self._exact, *(pattern for pattern, _ in self._globs)]

    def targets(self, service_label: str) -> list[str]:
        """Your labels that ``service_label`` counts for (possibly none).

        Example:
            >>> LabelMap({"pet": ["dog"]}).targets("  DOG ")
            ['pet']
        """
        if self._fn is not None:
            mapped = self._fn(service_label)
            return [mapped] if mapped else []
        name = _norm(service_label)
        found = list(self._exact.get(name, []))
        found += [target for pattern, target in self._globs if fnmatchcase(name, pattern)]
        return list(dict.fromkeys(found))

    def fold(self, labels: Iterable[Label]) -> list[Label]:
        """Your labels for the service labels of one thing (an image, or one object), best first.

        Each of your labels gets the maximum confidence of the service labels that matched it; boxes are
        not carried over (fold each object's tags separately and box the result, as the backend does).
        """
        best: dict[str, float] = {}
        for lab in labels:
            for target in self.targets(lab.name):
                best[target] = max(best.get(target, 0.0), lab.confidence)
        folded = [Label(name=name, confidence=conf) for name, conf in best.items()]
        return sorted(folded, key=lambda lab: lab.confidence, reverse=True)

    @classmethod
    def of(cls, value: LabelMapLike) -> LabelMap:
        """``value`` itself if it is a `LabelMap`, else a new one built from it."""
        return value if isinstance(value, LabelMap) else cls(value)

    def check_names(self, names: Iterable[str], vocabulary: str) -> None:
        """Raise `ConfigurationError` for a pattern that can match none of ``names`` (a typo).

        Example:
            >>> try:  # doctest: +ELLIPSIS
            ...     LabelMap({"pet": "animal_dgo"}).check_names(CATEGORIES, "the categories")
            ... except ConfigurationError as exc:
            ...     print(exc)
            label_map pattern 'animal_dgo' matches none of the categories; did you mean animal_dog, ...?
        """
        known = list(names)
        for pattern in self.patterns:
            if not any(fnmatchcase(_norm(name), pattern) for name in known):
                bare = pattern.strip("*?")
                close = [n for n in known if bare and bare in n][:3] or difflib.get_close_matches(
                    pattern, known
                )
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigurationError(f"label_map pattern {pattern!r} matches none of {vocabulary}{hint}")
