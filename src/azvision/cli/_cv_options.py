"""The Custom Vision training-resource flags that ``retrain`` and ``review`` share, and the trainer they make.

Example:
    >>> trainer = make_trainer("https://x.cognitiveservices.azure.com", "k", None)
    >>> trainer.endpoint
    'https://x.cognitiveservices.azure.com'
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from .._errors import AuthenticationError, AzVisionError
from ._output import error_line, usage_errors

if TYPE_CHECKING:
    from ..training.custom_vision import CustomVisionTrainer

__all__ = ["Endpoint", "PredictionResourceId", "Project", "TrainingKey", "make_trainer", "service_errors"]

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


@contextlib.contextmanager
def service_errors(redact: Callable[[str], str]) -> Iterator[None]:
    """One redacted line on stderr, then exit 2 for configuration and authentication errors, 1 for the
    others (the service failed, training failed)."""
    try:
        with usage_errors(redact):
            yield
    except AuthenticationError as exc:
        error_line(redact(str(exc)))
        raise typer.Exit(2) from None
    except AzVisionError as exc:
        error_line(redact(f"{type(exc).__name__}: {exc}"))
        raise typer.Exit(1) from None
