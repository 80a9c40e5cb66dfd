"""``--cascade``, ``--threshold`` and ``--cache`` for ``classify``, ``evaluate`` and ``compare``.

``--cascade onnx,custom_vision`` builds a `Cascade` of those backends in that order (each from the usual
backend flags: shared ones go to every stage that takes them, ``--opt BACKEND.KEY=VALUE`` to one);
``--threshold 0.8`` (or one value per stage but the last: ``0.7,0.9``) sets its thresholds; ``--cache
PATH`` wraps what is classified in a `CachedClassifier` on that SQLite file. Reports then add calls per
backend, cache hits and list-price cost (`usage_report`, `usage_line`).

Example (shell)::

    azvision classify photos/ --cascade onnx,custom_vision --threshold 0.8 --model-path export.zip \\
        --cache answers.sqlite --json
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from .._errors import ConfigurationError
from .._protocol import Classifier
from ._options import BackendOptions, BackendSpec, canonical_backend

__all__ = ["CacheOpt", "CascadeOpt", "Routing", "ThresholdOpt", "usage_line", "usage_report"]

_PANEL = "Routing (cost and resilience)"

CascadeOpt = Annotated[
    str | None,
    typer.Option(
        "--cascade",
        help="Backends to ask in order, comma-separated (e.g. onnx,custom_vision): the next one only "
        "for images the previous one is unsure of.",
        rich_help_panel=_PANEL,
    ),
]
ThresholdOpt = Annotated[
    str | None,
    typer.Option(
        "--threshold",
        help="Cascade: confidence at which a stage's answer is final (default 0.8), or one per stage but "
        "the last, comma-separated.",
        rich_help_panel=_PANEL,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="SQLite file of answers keyed by image content, backend, model and options: a repeated "
        "image makes no backend call. Shared safely by parallel runs.",
        rich_help_panel=_PANEL,
    ),
]


def _thresholds(text: str) -> float | list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigurationError(
            f"--threshold takes numbers in [0, 1], comma-separated; got {text!r}"
        ) from None
    if not values:
        raise ConfigurationError("--threshold needs a value")
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class Routing:
    """What the routing flags of one command line ask for.

    Example:
        >>> Routing.of("onnx,custom_vision", "0.8", None).stages
        ('onnx', 'custom_vision')
    """

    stages: tuple[str, ...] = ()
    threshold: float | list[float] | None = None
    cache: Path | None = None

    @classmethod
    def of(cls, cascade: str | None, threshold: str | None, cache: Path | None) -> Routing:
        """Parse the flags; a ``--threshold`` without ``--cascade`` is a usage error."""
        stages = tuple(part.strip() for part in (cascade or "").split(",") if part.strip())
        if cascade is not None and len(stages) < 2:
            raise ConfigurationError(
                "--cascade takes two or more backends, comma-separated: onnx,custom_vision"
            )
        if threshold is not None and not stages:
            raise ConfigurationError("--threshold applies to a cascade: add --cascade onnx,custom_vision")
        return cls(stages, _thresholds(threshold) if threshold is not None else None, cache)

    @property
    def name(self) -> str:
        """The name a cascade goes by in reports (``"cascade"``)."""
        return "cascade"

    def resolve(
        self, options: BackendOptions, backends: Sequence[str]
    ) -> tuple[list[BackendSpec], list[BackendSpec]]:
        """The specs of ``backends`` and of the cascade's stages, resolved together: a shared flag must
        be taken by one of them all (``compare --backend onnx --cascade onnx,custom_vision --endpoint``)."""
        if not self.stages:
            return options.resolve(list(backends)), []
        names = [canonical_backend(name) for name in backends]
        specs = {spec.name: spec for spec in options.resolve(list(dict.fromkeys([*names, *self.stages])))}
        return [specs[name] for name in names], [specs[canonical_backend(name)] for name in self.stages]

    def cascade(
        self, options: BackendOptions, specs: Sequence[BackendSpec] | None = None
    ) -> tuple[BackendSpec, Classifier]:
        """The cascade of ``--cascade`` as (its report spec, the classifier), cached with ``--cache``."""
        from ..routing import Cascade

        specs = options.resolve(list(self.stages)) if specs is None else specs
        stages: list[Classifier] = []
        try:
            for spec in specs:
                stages.append(spec.create())
            kwargs: dict[str, Any] = {} if self.threshold is None else {"threshold": self.threshold}
            cascade: Classifier = Cascade(stages, **kwargs)
        except BaseException:
            for stage in stages:
                stage.close()
            raise
        return BackendSpec(self.name, Cascade, {}), self.cached(cascade)

    def cached(self, classifier: Classifier) -> Classifier:
        """``classifier`` behind the ``--cache`` file (unchanged without ``--cache``)."""
        if self.cache is None:
            return classifier
        from ..routing import CachedClassifier

        try:
            return CachedClassifier(classifier, self.cache)
        except BaseException:
            classifier.close()
            raise

    @property
    def active(self) -> bool:
        """Whether any routing flag was given."""
        return bool(self.stages) or self.cache is not None

    def build(self, options: BackendOptions, backend: str | None) -> tuple[BackendSpec, Classifier]:
        """The one classifier of ``classify``/``evaluate``: ``--backend`` or ``--cascade``, maybe cached."""
        if self.stages:
            if backend:
                raise ConfigurationError("give --backend NAME or --cascade A,B, not both")
            return self.cascade(options)
        spec = options.resolve([backend] if backend else [])[0]
        return spec, self.cached(spec.create())


def usage_report(classifier: object) -> dict[str, Any] | None:
    """``stats().to_dict()`` of a router (calls per backend, cache hits, cost); ``None`` for a backend."""
    from ..routing._base import Router

    return classifier.stats().to_dict() if isinstance(classifier, Router) else None


def usage_line(classifier: object) -> str | None:
    """One line for the console: calls per backend, cache hits, list-price cost (``None`` for a backend).

    Example:
        >>> usage_line(object()) is None
        True
    """
    report = usage_report(classifier)
    if report is None:
        return None
    usage = report["usage"]
    calls = ", ".join(f"{name} {count}" for name, count in usage["calls"].items())
    text = f"calls: {calls or 'none'}"
    if usage["cache_hits"] or usage["cache_misses"]:
        text += f"; cache hits {usage['cache_hits']} of {usage['cache_hits'] + usage['cache_misses']}"
    text += f"; cost ${usage['cost_usd']:.4f} (list prices)"
    if usage["unpriced"]:
        text += f", without {', '.join(usage['unpriced'])} (no list price)"
    return text
