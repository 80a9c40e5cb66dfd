"""What an emulated Azure ML online endpoint runs: `AmlEndpointSpec`, and its CLI form.

Light on purpose (no web framework), so that ``azvision.emulator`` exports it without the
emulator extra and the CLI can check ``--aml-endpoint`` before starting anything.

Example:
    >>> AmlEndpointSpec("score.py").deployments
    ('blue',)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENDPOINT_NAME", "AmlEndpointSpec", "parse_aml_endpoint_option"]

#: Endpoint and deployment names: 3-32 characters, letters, digits and inner hyphens.
ENDPOINT_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){2,31}$")
_NAME = ENDPOINT_NAME

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class AmlEndpointSpec:
    """One emulated online endpoint: the scoring script and its deployments' request settings.

    ``traffic`` maps deployment → weight (default: all traffic to the first deployment);
    ``requirements`` are extra pip packages for the inference-server environment.

    Example:
        >>> spec = AmlEndpointSpec("score.py", deployments=("blue", "green"), traffic={"green": 100})
        >>> spec.deployments, spec.request_timeout_ms
        (('blue', 'green'), 5000)
    """

    score_script: PathLike
    model_dir: PathLike | None = None
    deployments: tuple[str, ...] = ("blue",)
    traffic: Mapping[str, int] = field(default_factory=dict)
    request_timeout_ms: int = 5000
    max_concurrent_requests: int = 1
    instance_count: int = 1
    requirements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [d for d in self.deployments if not _NAME.match(d)]
        if not self.deployments or bad or len(set(self.deployments)) != len(self.deployments):
            raise ValueError(f"invalid deployment names {list(self.deployments)!r}")
        if set(self.traffic) - set(self.deployments) or any(w < 0 for w in self.traffic.values()):
            raise ValueError(f"traffic {dict(self.traffic)!r} does not fit {self.deployments!r}")
        if min(self.request_timeout_ms, self.max_concurrent_requests, self.instance_count) < 1:
            raise ValueError("request_timeout_ms, max_concurrent_requests, instance_count must be ≥ 1")

    @property
    def script(self) -> Path:
        """The scoring script as an absolute path."""
        return Path(self.score_script).resolve()

    @property
    def model_path(self) -> Path:
        """``AZUREML_MODEL_DIR`` for the servers: ``model_dir``, else the script's folder."""
        return Path(self.model_dir).resolve() if self.model_dir else self.script.parent


def parse_aml_endpoint_option(text: str) -> tuple[str, AmlEndpointSpec]:
    """Parse and check the CLI form ``NAME=SCORE_PY[:MODEL_DIR]``.

    The model folder (``AZUREML_MODEL_DIR``) defaults to the folder holding the script. The
    script must be a file and the model folder a folder.

    Raises:
        ValueError: a one-line message naming what is wrong.

    Example:
        >>> parse_aml_endpoint_option("cats")
        Traceback (most recent call last):
        ...
        ValueError: --aml-endpoint takes NAME=SCORE_PY[:MODEL_DIR], got 'cats'
    """
    name, sep, rest = text.partition("=")
    script, model_dir = rest, ""
    cut = rest.find(".py:")
    if cut >= 0:
        script, model_dir = rest[: cut + 3], rest[cut + 4 :]
    if not sep or not script:
        raise ValueError(f"--aml-endpoint takes NAME=SCORE_PY[:MODEL_DIR], got {text!r}")
    if not _NAME.match(name):
        raise ValueError(
            f"--aml-endpoint: {name!r} is not an endpoint name (3-32 letters, digits or inner hyphens)"
        )
    if not Path(script).is_file():
        raise ValueError(f"--aml-endpoint {name}: no such scoring script {script}")
    if model_dir and not Path(model_dir).is_dir():
        raise ValueError(f"--aml-endpoint {name}: no such model folder {model_dir}")
    return name, AmlEndpointSpec(script, model_dir=model_dir or None)
