"""``azvision retrain``: train a challenger and move the publish name to it only when it is not worse.

The champion (the iteration published under ``--publish-name``) and the challenger (a new training of the
project, e.g. after ``azvision review``) are scored on ``--holdout`` with the code behind ``azvision
evaluate``. Exit status: 0 the challenger is published, 3 the gate kept the champion (or nothing changed),
1 training or the service failed, 2 usage, configuration or authentication errors.

Example (shell)::

    azvision retrain --project flowers --holdout holdout/ --publish-name prod --max-drop 0.01 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .._errors import ConfigurationError
from ._cv_options import Endpoint, PredictionResourceId, Project, TrainingKey, make_trainer, service_errors
from ._options import Redactor
from ._output import usage_errors

__all__ = ["register", "retrain"]

#: Exit status when the gate keeps the champion (as ``azvision compare`` on a drop).
KEPT = 3


def register(app: typer.Typer) -> None:
    """Add ``azvision retrain`` to the command line."""
    app.command("retrain")(retrain)


def retrain(
    project: Project,
    holdout: Annotated[
        Path,
        typer.Option(
            help="Labelled images never trained on: one sub-folder per label (detection: COCO/VOC/YOLO)."
        ),
    ],
    publish_name: Annotated[
        str | None, typer.Option(help="The publish name to move (default: the project's only one).")
    ] = None,
    max_drop: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Accuracy the challenger may lose and still win (0.02 = 2 points)."
        ),
    ] = 0.0,
    endpoint: Endpoint = None,
    training_key: TrainingKey = None,
    prediction_resource_id: PredictionResourceId = None,
    train_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for training before giving up.")
    ] = 3600.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the decision as one JSON line (the last line of stdout).")
    ] = False,
) -> None:
    """Retrain behind a champion/challenger gate; the old iteration stays available.

    With --json the last line of stdout is {"champion": {"iteration_id", "metric"}, "challenger":
    {"iteration_id", "metric"}, "published": "challenger"|"champion", "reason", ...}.
    """
    redact = Redactor([training_key or ""])
    with usage_errors(redact):
        if not holdout.exists():
            raise ConfigurationError(f"--holdout {holdout} does not exist")
        trainer = make_trainer(endpoint, training_key, prediction_resource_id)
        trainer.validated_resource_id()
    with service_errors(redact), trainer:
        result = trainer.retrain(
            project, holdout, publish_name=publish_name, max_drop=max_drop, timeout=train_timeout
        )
    typer.echo(f"{result.published} keeps {result.publish_name!r}: {result.reason}", err=json_out)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    raise typer.Exit(0 if result.published == "challenger" else KEPT)
