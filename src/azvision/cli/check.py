"""``azvision check --backend NAME``: are the endpoint, the key and the model right? One cheap call says.

No backend has a call that checks all three for free, so ``check`` classifies one small generated image
(one transaction where the service bills them) and reports what happened in one line. Retries are cut to
two attempts, so a wrong endpoint is reported in seconds.

Example (shell)::

    azvision check --backend custom_vision --project-id 8f1c... --iteration prod
"""

from __future__ import annotations

import inspect
import io
import json
import time
from typing import Annotated, Any

import typer

from .. import RetryPolicy
from .._errors import AzVisionError, ConfigurationError
from ._diagnose import backend_endpoint, fix_for
from ._options import BackendName, BackendOptions, BackendSpec, with_backend_options
from ._output import error_line, usage_errors

__all__ = ["probe_image", "register"]

#: Few and quick: a check that hangs in backoff for a minute checks nothing.
_CHECK_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.2, backoff_max=1.0, deadline=30.0)


def probe_image(min_side: int | None = None) -> bytes:
    """A small PNG every service accepts (at least ``min_side`` pixels a side, 64 by default).

    Example:
        >>> probe_image()[:4]
        b'\\x89PNG'
    """
    from PIL import Image, ImageDraw

    side = max(64, min_side or 0)
    image = Image.new("RGB", (side, side), (90, 120, 160))
    ImageDraw.Draw(image).ellipse((side // 4, side // 4, 3 * side // 4, 3 * side // 4), fill=(230, 200, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _quick(spec: BackendSpec) -> BackendSpec:
    if "retry" in spec.kwargs or "retry" not in inspect.signature(spec.cls).parameters:
        return spec
    return BackendSpec(spec.name, spec.cls, {**spec.kwargs, "retry": _CHECK_RETRY})


@with_backend_options
def check(
    backend: BackendName = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON line.")] = False,
    *,
    options: BackendOptions,
) -> None:
    """Check a backend's endpoint, key and model with one call: exit 0 ok, 1 it failed, 2 usage error.

    Classifies one small generated image and prints one line: the endpoint and what answered, or what
    failed and which flag or environment variable to fix.
    """
    redact = options.redactor()
    with usage_errors(redact):
        spec = _quick(options.resolve([backend] if backend else [])[0])
        clf = spec.create()
    limits = getattr(clf, "image_limits", None)
    image = probe_image(getattr(limits, "min_side", None))
    where = backend_endpoint(clf)
    at = f" at {where}" if where else ""
    outcome: dict[str, Any] = {"backend": spec.name, "endpoint": where, "ok": False}
    started = time.perf_counter()
    with clf, usage_errors(redact):
        try:
            prediction = clf.classify(image)
        except ConfigurationError:
            raise
        except AzVisionError as exc:
            message = redact(f"{type(exc).__name__}: {exc}")
            fix = fix_for(spec.name, exc)
            outcome["error"] = {**exc.to_dict(), "message": redact(str(exc))}
            if json_out:
                typer.echo(json.dumps(outcome))
            else:
                error_line(f"{spec.name}{at}: {message}" + (f" ({redact(fix)})" if fix else ""))
            raise typer.Exit(1) from None
    seconds = time.perf_counter() - started
    outcome.update(ok=True, seconds=round(seconds, 3), label=prediction.label, model=prediction.model)
    if json_out:
        typer.echo(json.dumps(outcome))
        return
    model = f", model {prediction.model}" if prediction.model else ""
    typer.echo(f"ok: {spec.name}{at} answered in {seconds * 1000:.0f} ms{model}")


def register(app: typer.Typer) -> None:
    """Add ``azvision check`` to ``app``."""
    app.command("check")(check)
