"""The Custom Vision training-resource flags that ``retrain`` and ``review`` share, and the trainer they make.

Example:
    >>> trainer = make_trainer("https://x.cognitiveservices.azure.com", "k", None)
    >>> trainer.endpoint
    'https://x.cognitiveservices.azure.com'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..training.custom_vision import CustomVisionTrainer

__all__ = ["Endpoint", "PredictionResourceId", "Project", "TrainingKey", "make_trainer"]

_PANEL = "Custom Vision training resource (each falls back to its environment variable)"

Project = Annotated[str, typer.Option("--project", "-p", help="Project name or id.")]
Endpoint = Annotated[str | None, typer.Option(help="Training endpoint URL.", rich_help_panel=_PANEL)]
TrainingKey = Annotated[
    str | None, typer.Option(help="Training key; prefer its variable. Never echoed.", rich_help_panel=_PANEL)
]
PredictionResourceId = Annotated[
    str | None, typer.Option(help="ARM id of the prediction resource (to publish).", rich_help_panel=_PANEL)
]


def make_trainer(
    endpoint: str | None, training_key: str | None, prediction_resource_id: str | None
) -> CustomVisionTrainer:
    """A trainer from the flags (each falling back to its environment variable)."""
    from ..training.custom_vision import CustomVisionTrainer

    return CustomVisionTrainer(endpoint, training_key, prediction_resource_id=prediction_resource_id)
