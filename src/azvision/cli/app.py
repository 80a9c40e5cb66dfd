"""The ``azvision`` command line (typer). Each command lives in its own module and registers itself here.

A command module exposes ``register(app: typer.Typer) -> None``; adding one is one line in the list below.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from .._errors import ConfigurationError, missing_extra
from .._registry import known_backends
from .._version import __version__
from . import check, classify, compare, evaluate
from ._output import error_line, usage_errors

__all__ = ["app", "main"]

app = typer.Typer(
    name="azvision",
    help="One CLI over Azure Custom Vision, Image Analysis, Azure ML endpoints and local ONNX models.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    # Locals in a traceback could show a key given on the command line.
    pretty_exceptions_show_locals=False,
)


def _register_if_present(module_name: str) -> None:
    """Register a command module that may not be written yet (other engineers' commands)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return
    module.register(app)


classify.register(app)  # azvision classify
evaluate.register(app)  # azvision evaluate
compare.register(app)  # azvision compare
check.register(app)  # azvision check
# ---- commands owned by other modules: register each with one line here -------------------------------
_register_if_present("azvision.cli.train")  # azvision train  (src/azvision/cli/train.py)
_register_if_present("azvision.cli.demo")  # azvision demo   (src/azvision/cli/demo.py)
_register_if_present("azvision.cli.export_dataset")  # azvision export-dataset (cli/export_dataset.py)
_register_if_present("azvision.cli.retrain")  # azvision retrain (src/azvision/cli/retrain.py)
_register_if_present("azvision.cli.monitor")  # azvision monitor (src/azvision/cli/monitor.py)
_register_if_present("azvision.cli.review")  # azvision review (src/azvision/cli/review.py)
# ---------------------------------------------------------------------------------------------------------


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"azvision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """azvision: classify images with Azure vision services or a local ONNX export, the same way."""


@app.command("backends")
def backends_command(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per backend.")] = False,
) -> None:
    """List the backends the factory knows and whether each can be loaded here."""
    rows = []
    for name, info in sorted(known_backends().items()):
        where = info.import_path
        status = "ok"
        try:
            info.load()
        except ConfigurationError as exc:
            status = f"not installed ({exc})"
        rows.append({"name": name, "target": where, "status": status})
    if json_out:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    widths = [max(len(row[key]) for row in rows) for key in ("name", "status")]
    for row in rows:
        typer.echo(f"{row['name']:<{widths[0]}}  {row['status']:<{widths[1]}}  {row['target']}")


def _aml_endpoints(specs: list[str]) -> dict[str, Any]:
    from ..emulator import AmlEndpointSpec  # light: no web framework
    from ..emulator._aml_spec import parse_aml_endpoint_option

    endpoints: dict[str, AmlEndpointSpec] = {}
    for spec in specs:
        try:
            name, parsed = parse_aml_endpoint_option(spec.strip())
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        endpoints[name] = parsed
    return endpoints


def emulator_env_lines(info: dict[str, Any]) -> str:
    """Shell ``export`` lines for every setting the SDK and CLI read, from ``serve``'s JSON line.

    Example:
        >>> info = {"endpoint": "http://127.0.0.1:5055", "training_key": "t", "prediction_key": "p",
        ...         "vision_key": "v", "prediction_resource_id": "/subscriptions/x", "aml_key": "a",
        ...         "aml_scoring_uris": {}}
        >>> print(emulator_env_lines(info).splitlines()[0])
        export CUSTOM_VISION_PREDICTION_ENDPOINT=http://127.0.0.1:5055
    """
    from .._config import ENV

    values = {
        ENV["custom_vision"]["endpoint"]: info["endpoint"],
        ENV["custom_vision"]["key"]: info["prediction_key"],
        ENV["custom_vision_training"]["endpoint"]: info["endpoint"],
        ENV["custom_vision_training"]["key"]: info["training_key"],
        ENV["custom_vision_training"]["prediction_resource_id"]: info["prediction_resource_id"],
        ENV["image_analysis"]["endpoint"]: info["endpoint"],
        ENV["image_analysis"]["key"]: info["vision_key"],
        ENV["azure_ml"]["key"]: info["aml_key"],
    }
    uris: dict[str, str] = info.get("aml_scoring_uris") or {}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    scoring = ENV["azure_ml"]["scoring_uri"]
    if len(uris) == 1:
        lines.append(f"export {scoring}={shlex.quote(next(iter(uris.values())))}")
    else:
        lines += [f"# {name}: export {scoring}={shlex.quote(uri)}" for name, uri in uris.items()]
    return "\n".join(lines)


@app.command("emulator")
def emulator_command(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 0,
    latency_ms: Annotated[float, typer.Option(min=0.0, help="Added latency per request.")] = 0.0,
    rate_limit_tps: Annotated[
        float | None, typer.Option(min=0.001, help="Answer 429 with Retry-After above this rate.")
    ] = None,
    fail_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of 5xx answers.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of dropped connections.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the fault decisions.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Keep keys, projects and models here.")] = None,
    aml_endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--aml-endpoint",
            help="NAME=SCORE_PY[:MODEL_DIR]: an Azure ML endpoint running that score.py "
            "(model folder: MODEL_DIR, else the script's folder).",
        ),
    ] = None,
    env: Annotated[
        bool,
        typer.Option("--env", help="Print shell export lines for every setting instead of the JSON line."),
    ] = False,
    openai_rpm: Annotated[
        float | None, typer.Option(min=0.001, help="Azure OpenAI requests per minute, per deployment.")
    ] = None,
    openai_tpm: Annotated[
        float | None, typer.Option(min=0.001, help="Azure OpenAI tokens per minute, per deployment.")
    ] = None,
    openai_knowledge: Annotated[
        Path | None,
        typer.Option(help="Labelled folder (one sub-folder per label) for zero-shot Azure OpenAI answers."),
    ] = None,
) -> None:
    """Run the offline emulator of the Azure services until Ctrl-C.

    Prints one JSON line first: endpoint, keys, prediction resource id and AML scoring URIs
    (with `--env`: `export NAME=VALUE` lines for the SDK's environment variables).
    """
    options = dict(locals())  # the options named like the emulator's settings are those settings
    with usage_errors(str):
        endpoints = _aml_endpoints(aml_endpoint or [])
        if openai_knowledge is not None and not openai_knowledge.is_dir():
            raise ConfigurationError(f"--openai-knowledge {openai_knowledge}: not a folder")
        serve, config_type = _emulator_parts()
        settings = {f.name: options[f.name] for f in dataclasses.fields(config_type) if f.name in options}
        config: Any = config_type(**settings, aml_endpoints=endpoints)
    try:
        serve(config, announce=emulator_env_lines if env else None)
    except OSError as exc:
        error_line(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(2) from None


def _emulator_parts() -> tuple[Any, Any]:
    try:
        from ..emulator._context import EmulatorConfig
        from ..emulator._server import serve
    except ImportError as exc:
        raise missing_extra(exc, what="the emulator", extra="emulator") from exc
    return serve, EmulatorConfig


def main(argv: list[str] | None = None) -> None:
    """Run the command line (the ``azvision`` console script and ``python -m azvision``).

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        azvision 0.1.0
    """
    app(args=argv, prog_name="azvision")
