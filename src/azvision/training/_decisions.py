"""Review decisions, checked before anything is sent: what each reviewed prediction is to become.

A decision is a label (``"rose"``), several labels (multi-label projects), labels with boxes (object
detection: the `Label` suggestions a reviewer confirms, or new ones), ``()`` for "none of
these" (a ``Negative`` image) or ``None`` to skip.

Example:
    >>> checked({"p1": "rose", "p2": None})["p1"]
    Choice(labels=('rose',), regions=())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._errors import ConfigurationError
from .._models import BoundingBox, Label

__all__ = ["NONE_OF_THESE", "Choice", "Decision", "checked"]

#: A decision that the image shows none of the project's tags: it becomes a ``Negative`` image.
NONE_OF_THESE: tuple[str, ...] = ()
#: A label, several labels, labels with boxes (detection), `NONE_OF_THESE`, or ``None`` to skip.
Decision = str | Sequence[str] | Sequence[Label] | None


@dataclass(frozen=True)
class Choice:
    """What one image becomes: image tags (classification) and regions (detection)."""

    labels: tuple[str, ...] = ()
    regions: tuple[tuple[str, BoundingBox], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every tag name the choice needs, once each."""
        return tuple(dict.fromkeys([*self.labels, *(name for name, _ in self.regions)]))

    def problem(self, *, detection: bool, multiclass: bool) -> str | None:
        """Why the project cannot take this choice (``None``: it can)."""
        if detection:
            if self.labels or not self.regions:
                return "a detection project needs boxes: pass the Labels (with boxes) the image shows"
            return None
        if self.regions:
            return "boxes are for object detection projects; this one classifies whole images"
        if multiclass and len(self.labels) > 1:
            return f"a multiclass project takes one label per image, not {len(self.labels)}"
        return None


def checked(decisions: Mapping[str, Decision]) -> dict[str, Choice | None]:
    """Decisions as `Choice` objects (``None``: skip), or `ConfigurationError` naming every
    malformed one."""
    if not isinstance(decisions, Mapping):
        kind = type(decisions).__name__
        raise ConfigurationError(f"decisions must map prediction ids to labels, got {kind}")
    result: dict[str, Choice | None] = {}
    bad: list[str] = []
    for pid, decision in decisions.items():
        if not isinstance(pid, str) or not pid.strip():
            bad.append(f"{pid!r}: a prediction id must be a non-empty string")
            continue
        if decision is None:
            result[pid.strip()] = None
            continue
        choice = _choice(decision)
        if choice is None:
            bad.append(f"{pid}: {decision!r} is not a label, a list of labels or Labels, () or None")
            continue
        result[pid.strip()] = choice
    if bad:
        raise ConfigurationError("bad decisions: " + "; ".join(bad))
    return result


def _choice(decision: object) -> Choice | None:
    parts = (decision,) if isinstance(decision, str | Label) else decision
    if not isinstance(parts, Sequence):
        return None
    labels: list[str] = []
    regions: list[tuple[str, BoundingBox]] = []
    for part in parts:
        name = part.name if isinstance(part, Label) else part
        if not isinstance(name, str) or not name.strip():
            return None
        if isinstance(part, Label) and part.box is not None:
            regions.append((name.strip(), part.box))
        else:
            labels.append(name.strip())
    return Choice(tuple(dict.fromkeys(labels)), tuple(regions))
