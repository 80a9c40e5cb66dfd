"""``azvision review``: a local page to confirm, correct or skip what the model was unsure of.

Serves on 127.0.0.1 until Ctrl-C; the address it prints carries a token made for this run (requests
without it get 403). Every decision lands in the project at once, exactly once. Then
``azvision retrain`` trains on them behind the champion/challenger gate.

Example (shell)::

    azvision review --project flowers --max-confidence 0.6
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ._cv_options import Endpoint, Project, TrainingKey, make_trainer, service_errors
from ._options import Redactor
from ._output import usage_errors

__all__ = ["register", "review"]


def register(app: typer.Typer) -> None:
    """Add ``azvision review`` to the command line."""
    app.command("review")(review)


def review(
    project: Project,
    max_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Review stored predictions at most this sure.")
    ] = 0.6,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")] = 0,
    endpoint: Endpoint = None,
    training_key: TrainingKey = None,
) -> None:
    """Open a review page for the project's unsure predictions (loopback only; Ctrl-C to stop)."""
    redact = Redactor([training_key or ""])
    from ..review_app import ReviewServer

    with usage_errors(redact):
        trainer = make_trainer(endpoint, training_key, None)
        server = ReviewServer(trainer, project, max_confidence=max_confidence, port=port)
    with service_errors(redact), trainer, server:
        total = len(server.session.items)
        typer.echo(f"{total} image(s) to review in {project} (confidence ≤ {max_confidence})", err=True)
        typer.echo(server.url)
        typer.echo("open the address above in a browser; Ctrl-C stops", err=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            summary = server.session.summary()
            typer.echo(
                f"reviewed {summary['done']} of {summary['total']}: {summary['added']} added, "
                f"{summary['skipped']} skipped, {summary['failed']} failed",
                err=True,
            )
