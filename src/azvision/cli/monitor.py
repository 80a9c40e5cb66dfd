"""``azvision monitor``: watch ``azvision classify`` results for drift; exit 1 when a limit is crossed.

Writes ``DIR/monitor.json`` (every measure, the limits and the alarms) and ``DIR/monitor.png``; the
measures are described in `azvision.monitoring`. Exit status: 0 no drift, 1 a limit crossed,
2 usage or configuration errors.

Example (shell)::

    azvision classify photos/ --output today.jsonl
    azvision monitor today.jsonl --baseline train/ --report monitor/ || notify "the model drifted"
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer

from .._errors import ConfigurationError
from ._output import error_line, usage_errors

__all__ = ["monitor_command", "register"]


def register(app: typer.Typer) -> None:
    """Add ``azvision monitor`` to the command line."""
    app.command("monitor")(monitor_command)


def monitor_command(
    results: Annotated[
        list[Path], typer.Argument(metavar="RESULTS.jsonl...", help="azvision classify JSONL.")
    ],
    report: Annotated[Path, typer.Option(help="Folder for monitor.json and monitor.png.")],
    baseline: Annotated[
        Path | None, typer.Option(help="The training data set (one sub-folder per label) to compare with.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Confidence below which an answer counts as unsure.")
    ] = 0.6,
    max_psi: Annotated[
        float, typer.Option(min=0.0, help="Alarm when the label mix PSI against --baseline is above this.")
    ] = 0.2,
    max_low_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Alarm when more answers than this are below --threshold.")
    ] = 0.2,
    max_error_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Alarm when more inputs than this failed.")
    ] = 0.05,
    plot: Annotated[
        bool, typer.Option("--plot/--no-plot", help="Draw monitor.png (needs matplotlib).")
    ] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print monitor.json's contents as one line.")
    ] = False,
) -> None:
    """Label mix against the training set, confidence histogram, share below a threshold, errors by type and
    a daily trend (lines with "time"); exit 1 when a limit is crossed."""
    from ..monitoring import monitor, plot_monitor

    with usage_errors(str):
        if plot and importlib.util.find_spec("matplotlib") is None:
            raise ConfigurationError(
                "monitor.png needs matplotlib: pip install 'azvision[eval]' (or --no-plot)"
            )
        if baseline is not None and not baseline.is_dir():
            raise ConfigurationError(f"--baseline {baseline} is not a folder")
        found = monitor(
            results,
            baseline=baseline,
            threshold=threshold,
            max_psi=max_psi,
            max_low_share=max_low_share,
            max_error_share=max_error_share,
        )
    report.mkdir(parents=True, exist_ok=True)
    summary = found.to_dict()
    (report / "monitor.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if plot:
        plot_monitor(found, report / "monitor.png")
    lines = [f"{found.total} results, {found.answered} answered, {found.error_share:.1%} failed"]
    if found.psi is not None:
        lines.append(f"label mix PSI against the baseline: {found.psi:.3f} (limit {max_psi})")
    if found.below_threshold is not None:
        lines.append(f"below confidence {threshold}: {found.below_threshold:.1%} (limit {max_low_share:.0%})")
    if found.days:
        lines.append(f"{len(found.days)} day(s): {found.days[0].day} … {found.days[-1].day}")
    for line in lines:
        typer.echo(line, err=json_out)
    for alarm in found.alarms:
        error_line(f"drift: {alarm}")
    if json_out:
        typer.echo(json.dumps(summary))
    raise typer.Exit(1 if found.drift else 0)
