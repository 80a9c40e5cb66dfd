"""``compare --baseline NAME --max-drop D``: the options, the verdict and its table (see ``azvision._gate``).

Example:
    >>> with_baseline(["onnx"], "Custom-Vision", 0.02)
    ['custom_vision', 'onnx']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import typer
from rich.table import Table

from .._errors import ConfigurationError
from .._gate import GateReport, gate
from .._pricing import cost_per_1000_images
from .._registry import canonical_name
from ..evaluation import Metrics
from ._demo_table import format_pct
from ._options import BackendSpec

__all__ = [
    "Baseline",
    "Bootstrap",
    "MaxDrop",
    "Seed",
    "gate_failure",
    "gate_report",
    "gate_table",
    "with_baseline",
]

_PANEL = "Migration gate"
Baseline = Annotated[
    str | None,
    typer.Option(
        help="Backend the others are measured against (added to --backend if missing).",
        rich_help_panel=_PANEL,
    ),
]
MaxDrop = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Exit 3 when a backend's accuracy is more than this below the baseline's (e.g. 0.02).",
        rich_help_panel=_PANEL,
    ),
]
Bootstrap = Annotated[
    int, typer.Option(min=100, help="Bootstrap resamples for the 95 % intervals.", rich_help_panel=_PANEL)
]
Seed = Annotated[int, typer.Option(help="Seed of the bootstrap.", rich_help_panel=_PANEL)]


def with_baseline(backends: Sequence[str], baseline: str | None, max_drop: float | None) -> list[str]:
    """The backends to evaluate: the baseline first when it was not among them.

    Example:
        >>> with_baseline(["onnx"], None, 0.1)
        Traceback (most recent call last):
        ...
        azvision._errors.ConfigurationError: --max-drop needs --baseline NAME: the backend to measure against
    """
    if baseline is None:
        if max_drop is not None:
            raise ConfigurationError("--max-drop needs --baseline NAME: the backend to measure against")
        return list(backends)
    wanted = canonical_name(baseline)
    others = [name for name in backends if canonical_name(name) != wanted]
    return [wanted, *others]


def _cost(spec: BackendSpec, metrics: Metrics, seconds: float | None) -> float | None:
    kwargs = spec.kwargs
    features = kwargs.get("features") or ()
    rate = metrics.scored / seconds if seconds and metrics.scored else None
    return cost_per_1000_images(
        spec.name,
        mode=str(kwargs.get("mode") or "tags"),
        features=[features] if isinstance(features, str) else list(features),
        images_per_second=rate,
    )


def gate_report(
    specs: Sequence[BackendSpec],
    results: Mapping[str, Metrics],
    outcomes: Mapping[str, Sequence[bool | None]],
    elapsed: Mapping[str, float],
    *,
    baseline: str,
    max_drop: float | None,
    resamples: int,
    seed: int,
) -> GateReport:
    """The verdict, from each backend's per-image outcomes, accuracy and list-price cost."""
    baseline = canonical_name(baseline)
    costs = {spec.name: _cost(spec, results[spec.name], elapsed.get(spec.name)) for spec in specs}
    accuracies = {name: m.accuracy for name, m in results.items()}
    return gate(
        outcomes,
        baseline=baseline,
        max_drop=max_drop,
        costs=costs,
        accuracies=accuracies,
        resamples=resamples,
        seed=seed,
    )


def gate_table(report: GateReport) -> Table:
    """Baseline first, then each challenger: accuracy, difference, 95 % interval, $ per 1,000, verdict.

    Example:
        >>> gate_table(gate({"a": [True, False], "b": [True, True]}, baseline="a", max_drop=0.0)).row_count
        2
    """
    limit = "" if report.max_drop is None else f", max drop {report.max_drop:.1%}"
    table = Table(
        title=f"against the baseline {report.baseline}{limit}",
        caption=f"95 % interval: paired bootstrap over images ({report.resamples} resamples, seed "
        f"{report.seed}); cost: list price per 1,000 images",
    )
    table.add_column("backend", no_wrap=True)
    for column in (report.metric, "difference", "95 % interval", "$ / 1,000", "gate"):
        table.add_column(column, justify="right")
    for row in report.rows:
        interval = "–" if row.ci95 is None else f"[{row.ci95[0]:+.1%}, {row.ci95[1]:+.1%}]"
        cost = "–" if row.cost_per_1000 is None else f"{row.cost_per_1000:.2f}"
        verdict = "baseline" if row.baseline else ("ok" if row.passed else "FAIL")
        table.add_row(
            row.backend,
            format_pct(row.accuracy),
            format_pct(row.difference, signed=True),
            interval,
            cost,
            verdict,
        )
    return table


def gate_failure(report: GateReport) -> str:
    """One line naming each backend over the limit.

    Example:
        >>> gate_failure(gate({"a": [True, True], "b": [True, False]}, baseline="a", max_drop=0.1))
        'gate failed: b is 50.0% below a (more than --max-drop 10.0%)'
    """
    rows = {row.backend: row for row in report.rows}
    drops = ", ".join(f"{name} is {-(rows[name].difference or 0.0):.1%} below" for name in report.failed)
    return f"gate failed: {drops} {report.baseline} (more than --max-drop {report.max_drop or 0.0:.1%})"
