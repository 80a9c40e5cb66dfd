"""Label spaces: which labels a classifier answers in, and a per-member map into one shared space.

A classifier states its label space with a ``labels`` attribute (a tuple of names): `OnnxBackend` reads
it from the export, `AzureOpenAIBackend` is given it, `CustomVisionBackend` takes ``labels=...`` (the
project's tags; `CustomVisionTrainer.classifier()` fills it in), routers derive theirs from their members.
Where a member does not say, its answers are checked as they come.

Example:
    >>> fold = LabelFold({"kitty": "cat", "blur": None})
    >>> sorted(fold.space(("kitty", "dog", "blur")))
    ['cat', 'dog']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .._errors import ConfigurationError
from .._models import Label, Prediction

__all__ = ["LabelFold", "folds_for", "label_space", "mismatch"]


def label_space(member: object) -> frozenset[str] | None:
    """The labels ``member`` answers in, when it says (a ``labels`` tuple of names); else ``None``.

    Example:
        >>> class Fake:
        ...     labels = ("cat", "dog")
        >>> sorted(label_space(Fake()))
        ['cat', 'dog']
    """
    labels = getattr(member, "labels", None)
    if (
        isinstance(labels, tuple | list | frozenset | set)
        and labels
        and all(isinstance(x, str) for x in labels)
    ):
        return frozenset(labels)
    return None


class LabelFold:
    """One member's map into the shared labels: ``{its_label: shared_label}``; ``None`` drops a label.

    Labels not in the map pass unchanged. Two labels folded into one keep the higher confidence.
    """

    def __init__(self, mapping: Mapping[str, str | None] | None = None) -> None:
        self.mapping: dict[str, str | None] = dict(mapping or {})

    def name(self, label: str) -> str | None:
        """The shared name of ``label`` (``None``: dropped)."""
        return self.mapping.get(label, label)

    def space(self, labels: Iterable[str]) -> frozenset[str]:
        """The shared labels that ``labels`` fold into."""
        return frozenset(n for n in (self.name(label) for label in labels) if n is not None)

    def apply(self, prediction: Prediction) -> Prediction:
        """``prediction`` in the shared labels (unchanged without a map)."""
        if not self.mapping:
            return prediction
        best: dict[str, Label] = {}
        for lab in prediction.labels:
            name = self.name(lab.name)
            if name is not None and (name not in best or lab.confidence > best[name].confidence):
                best[name] = lab.model_copy(update={"name": name})
        return prediction.model_copy(update={"labels": tuple(best.values())})

    def __repr__(self) -> str:
        return f"LabelFold({self.mapping!r})"


def folds_for(
    names: Sequence[str], label_map: Mapping[int | str, Mapping[str, str | None]] | None
) -> tuple[LabelFold, ...]:
    """One `LabelFold` per member, from a ``label_map`` keyed by member index or name."""
    label_map = dict(label_map or {})
    folds = []
    for index, name in enumerate(names):
        mapping = label_map.pop(index, None) or label_map.pop(name, None)
        folds.append(LabelFold(mapping))
    if label_map:
        raise ConfigurationError(
            f"label_map names {sorted(map(str, label_map))}, which are not members; use a member's index "
            f"or one of {list(names)}"
        )
    return tuple(folds)


def mismatch(name: str, space: frozenset[str], expected: frozenset[str], reference: str) -> str:
    """Why ``name``'s labels ``space`` are not ``expected`` (those of ``reference``)."""
    extra, missing = sorted(space - expected), sorted(expected - space)
    parts = []
    if extra:
        parts.append(f"answers {extra}, which {reference} does not")
    if missing:
        parts.append(f"never answers {missing}")
    return f"{name} {' and '.join(parts)}"
