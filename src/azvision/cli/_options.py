"""Backend options on the command line → keyword arguments of the backend class.

Three sources, most specific last (it wins):

1. ``--config FILE`` (TOML or JSON). Top-level keys are shared: each applies to every backend that takes it.
   A table named after a backend (``[onnx]``, ``[custom_vision]``) applies to that backend only. A
   top-level ``backend = "NAME"`` (``backends = [...]`` for ``compare``) picks the backend when
   ``--backend`` is not given. Relative paths in the file are relative to the file.
2. Flags: ``--endpoint``, ``--key``, ``--model-path``, … (the backend's keyword arguments in kebab-case), and
   ``--opt KEY=VALUE`` for any other keyword argument (``KEY:=JSON`` for a typed value, e.g.
   ``--opt timeout:=10``). ``--opt BACKEND.KEY=VALUE`` targets one backend (``compare``).
3. What no source gives is left out, so the backend falls back to its environment variable.

Example (shell)::

    azvision classify photos/ --backend onnx --model-path export.zip
    azvision compare test/ --backend custom_vision --backend onnx --opt onnx.model_path=export.zip
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from .._config import ENV, Secret, redact
from .._errors import ConfigurationError
from .._protocol import Classifier
from .._registry import available_backends, canonical_name, create_classifier, known_backends

__all__ = [
    "BackendName",
    "BackendOptions",
    "BackendSpec",
    "Concurrency",
    "MaxRps",
    "Redactor",
    "with_backend_options",
]

#: The run options every classifying command shares.
BackendName = Annotated[
    str | None, typer.Option("--backend", "-b", help="Backend name (default: AZVISION_BACKEND).")
]
Concurrency = Annotated[int | None, typer.Option(min=1, help="Requests in flight.")]
MaxRps = Annotated[float | None, typer.Option(min=0.001, help="Client-side requests/second cap.")]

_PANEL = "Backend options (each falls back to its environment variable)"


def _flag(decl: str, help_text: str, kind: Any = str) -> Any:
    return Annotated[kind | None, typer.Option(decl, help=help_text, rich_help_panel=_PANEL)]


#: The backend keyword arguments offered as flags, by keyword name.
FLAGS: dict[str, Any] = {
    "endpoint": _flag("--endpoint", "Service endpoint URL (custom_vision, image_analysis)."),
    "key": _flag("--key", "API key; prefer its environment variable. Never echoed."),
    "project_id": _flag("--project-id", "Custom Vision project id."),
    "iteration": _flag("--iteration", "Custom Vision published iteration name."),
    "task": _flag("--task", "Custom Vision task: classification | detection."),
    "store": _flag("--store/--no-store", "Let Custom Vision store the images sent.", bool),
    "features": _flag("--features", "Image Analysis features, comma-separated (tags,caption,objects…)."),
    "mode": _flag("--mode", "Image Analysis mode: tags | objects | categories."),
    "label_map": _flag("--label-map", "JSON file folding Image Analysis tags into your labels.", Path),
    "credential": _flag("--credential", "'azure': sign in with DefaultAzureCredential instead of a key."),
    "scoring_uri": _flag("--scoring-uri", "Azure ML online endpoint scoring URI."),
    "deployment": _flag("--deployment", "Azure ML deployment (azureml-model-deployment header)."),
    "request_format": _flag("--request-format", "Azure ML request format: raw | automl | json."),
    "model_path": _flag("--model-path", "ONNX export: model.onnx, its folder or the export zip.", Path),
    "labels_path": _flag("--labels-path", "ONNX export: labels.txt (when not next to the model).", Path),
    "labels": _flag(
        "--labels",
        "Labels, comma-separated (azure_openai; azure_ml bare probabilities; custom_vision: its tags).",
    ),
    "examples": _flag(
        "--examples", "Azure OpenAI few-shot examples: a folder, one sub-folder per label.", Path
    ),
    "instructions": _flag("--instructions", "Azure OpenAI: extra instructions for the model."),
    "detail": _flag("--detail", "Azure OpenAI image detail: low | high | auto."),
    "api_version": _flag("--api-version", "Azure OpenAI API version (default: the v1 API)."),
    "config": _flag("--config", "TOML/JSON file of backend options; flags win over it.", Path),
    "opt": Annotated[
        list[str] | None,
        typer.Option(
            "--opt",
            help="Any backend keyword: KEY=VALUE, KEY:=JSON, or BACKEND.KEY=VALUE for one backend.",
            rich_help_panel=_PANEL,
        ),
    ],
}
_NOT_BACKEND_KWARGS = {"config", "opt"}
_PATH_KEYS = {"model_path", "labels_path", "label_map", "examples"}
_SECRET_WORDS = ("key", "secret", "token", "password")


def canonical_backend(name: str) -> str:
    """The registry name for ``name`` (aliases, case and ``-``/``_`` folded)."""
    return canonical_name(name)


def _backend_class(name: str) -> type[Any]:
    known = known_backends()
    if name not in known:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(known))}")
    return known[name].load()


def _accepted(cls: type[Any]) -> set[str] | None:
    """Keyword names the class takes; ``None`` when it takes any (``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _is_secret(key: str) -> bool:
    return any(word in key for word in _SECRET_WORDS)


class Redactor:
    """Replaces every known secret value in a text with ``***`` (last line of defence for messages).

    Example:
        >>> Redactor(["s3cr3t-key"])("auth failed for s3cr3t-key")
        'auth failed for ***'
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = list(secrets)

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)  # every form (raw, escaped, URL-encoded): the SDK's one function


@dataclass(frozen=True)
class BackendSpec:
    """One backend to build: registry ``name``, its class and the keyword arguments the user gave."""

    name: str
    cls: type[Any]
    kwargs: Mapping[str, Any]

    def create(self) -> Classifier:
        """Build the classifier (lazily importing what a value needs, e.g. azure-identity)."""
        kwargs = {key: _convert(key, value) for key, value in self.kwargs.items()}
        try:
            return create_classifier(self.name, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"backend {self.name!r} rejected its options: {exc}") from exc

    def __repr__(self) -> str:
        shown = {k: "***" if _is_secret(k) else v for k, v in self.kwargs.items()}
        return f"BackendSpec({self.name!r}, {shown!r})"


def _convert(key: str, value: Any) -> Any:
    if key == "credential" and isinstance(value, str):
        if value.strip().lower() != "azure":
            raise ConfigurationError(f"--credential takes 'azure' (DefaultAzureCredential), got {value!r}")
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()
    if _is_secret(key) and isinstance(value, str):
        return Secret(value)
    if key == "features" and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if key == "label_map" and isinstance(value, (str, Path)):
        return _read_json(Path(value), what="label map")
    if isinstance(value, Path):
        return str(value)
    return value


def _read_json(path: Path, *, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"the {what} {path} is not valid JSON: {exc}") from exc


def _load_config(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".json":
        data = _read_json(path, what="config file")
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise ConfigurationError(
                    "TOML config files need Python 3.11+ or 'pip install tomli'; or use a .json config"
                ) from exc
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read the config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"the config file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"the config file {path} must hold a table/object of options")
    return data


def _parse_opt(text: str) -> tuple[str | None, str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        # Not echoed: a malformed --opt may well be a key typed in the wrong place.
        raise ConfigurationError("--opt takes KEY=VALUE, KEY:=JSON or BACKEND.KEY=VALUE (an '=' is missing)")
    value: Any = raw
    if name.endswith(":"):
        name = name[:-1]
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"--opt {name}:= needs a JSON value: {exc}") from exc
    backend, _, key = name.strip().rpartition(".")
    return (canonical_backend(backend) if backend else None), key.replace("-", "_"), value


@dataclass
class _Layers:
    """Option values by source, least specific first; ``meta`` holds the config's backend choice."""

    config_shared: dict[str, Any] = field(default_factory=dict)
    config_sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    cli_shared: dict[str, Any] = field(default_factory=dict)
    cli_sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def all(self) -> list[dict[str, Any]]:
        return [
            self.config_shared,
            *self.config_sections.values(),
            self.cli_shared,
            *self.cli_sections.values(),
        ]


@dataclass(frozen=True)
class BackendOptions:
    """The backend options of one command line, resolved per backend with `resolve`.

    Example:
        >>> opts = BackendOptions(flags={"model_path": "export.zip"})
        >>> opts.resolve(["onnx"])[0].kwargs  # doctest: +SKIP
        {'model_path': 'export.zip'}
    """

    flags: Mapping[str, Any] = field(default_factory=dict)
    opts: Sequence[str] = ()
    config: Path | None = None

    @functools.cached_property
    def _layers(self) -> _Layers:
        layers = _Layers()
        if self.config is not None:
            base = self.config.parent
            for raw_key, value in _load_config(self.config).items():
                key = raw_key.replace("-", "_")
                if key in ("backend", "backends"):
                    layers.meta[key] = value
                elif isinstance(value, dict) and key != "label_map":
                    section = layers.config_sections.setdefault(canonical_backend(raw_key), {})
                    for k, v in value.items():
                        section[k.replace("-", "_")] = _rebase(k.replace("-", "_"), v, base)
                else:
                    layers.config_shared[key] = _rebase(key, value, base)
        layers.cli_shared.update(self.flags)
        for text in self.opts:
            backend, key, value = _parse_opt(text)
            if backend is None:
                layers.cli_shared[key] = value
            else:
                layers.cli_sections.setdefault(backend, {})[key] = value
        return layers

    def redactor(self) -> Redactor:
        """Masks every secret given anywhere (and the key environment variables). Never raises, so it is
        ready before the options are validated."""
        values = [v for k, v in self.flags.items() if _is_secret(k) and isinstance(v, str)]
        values += [text.partition("=")[2] for text in self.opts if _is_secret(text.partition("=")[0])]
        with contextlib.suppress(ConfigurationError):
            values += [
                v
                for layer in self._layers.all()
                for k, v in layer.items()
                if _is_secret(k) and isinstance(v, str)
            ]
        env_keys = (name for table in ENV.values() for arg, name in table.items() if _is_secret(arg))
        return Redactor(values + [os.environ[name] for name in env_keys if os.environ.get(name)])

    def backend_names(self, given: Sequence[str]) -> list[str]:
        """``--backend`` values, else the config's ``backend``/``backends``, else ``AZVISION_BACKEND``."""
        names: list[str] = list(given)
        if not names:
            meta = self._layers.meta
            from_config = meta.get("backends", meta.get("backend"))
            if isinstance(from_config, str):
                names = [from_config]
            elif isinstance(from_config, list):
                names = [str(n) for n in from_config]
        if not names and os.environ.get("AZVISION_BACKEND", "").strip():
            names = [os.environ["AZVISION_BACKEND"]]
        if not names:
            choices = ", ".join(sorted(available_backends()))
            raise ConfigurationError(
                f"missing backend: pass --backend NAME ({choices}) or set the environment variable "
                "AZVISION_BACKEND"
            )
        return [canonical_backend(n) for n in names]

    def resolve(self, given_backends: Sequence[str]) -> list[BackendSpec]:
        """The keyword arguments of each backend; errors for options that apply to none of them.

        A shared command-line option must be taken by at least one of the backends (by the only one, for
        ``classify``/``evaluate``); a per-backend option by its backend; shared config keys apply where
        they fit.
        """
        layers = self._layers
        names = self.backend_names(given_backends)
        classes = {name: _backend_class(name) for name in names}
        if len(set(names)) != len(names):
            raise ConfigurationError(f"each backend can be given once, got {', '.join(names)}")
        for target in [*layers.config_sections, *layers.cli_sections]:
            if target not in available_backends():
                raise ConfigurationError(f"options given for unknown backend {target!r}")
        specs: list[BackendSpec] = []
        used: set[str] = set()
        for name, cls in classes.items():
            accepted = _accepted(cls)

            def takes(key: str, accepted: set[str] | None = accepted) -> bool:
                return accepted is None or key in accepted

            kwargs: dict[str, Any] = {}
            for shared, section in (
                (layers.config_shared, layers.config_sections.get(name, {})),
                (layers.cli_shared, layers.cli_sections.get(name, {})),
            ):
                kwargs.update((k, v) for k, v in shared.items() if takes(k))
                for key, value in section.items():
                    if not takes(key):
                        raise ConfigurationError(f"backend {name!r} has no option {_as_flag(key)}")
                    kwargs[key] = value
            used.update(kwargs)
            specs.append(BackendSpec(name, cls, kwargs))
        for key in layers.cli_shared:
            if key not in used:
                where = f"backend {names[0]!r}" if len(names) == 1 else f"any of {', '.join(names)}"
                raise ConfigurationError(f"{_as_flag(key)} is not an option of {where}")
        return specs


def _as_flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _rebase(key: str, value: Any, base: Path) -> Any:
    if key in _PATH_KEYS and isinstance(value, str) and not os.path.isabs(os.path.expanduser(value)):
        return str(base / value)
    return value


def with_backend_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the backend flags to a typer command; they reach it as one ``options: BackendOptions``.

    Example:
        >>> @with_backend_options
        ... def classify(inputs: list[str], options: BackendOptions) -> None: ...
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in FLAGS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in FLAGS}
        options = BackendOptions(
            flags={k: v for k, v in given.items() if v is not None and k not in _NOT_BACKEND_KWARGS},
            opts=tuple(given["opt"] or ()),
            config=given["config"],
        )
        return command(**kwargs, options=options)

    params = own + extra
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
