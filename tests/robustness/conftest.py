"""The robustness suite's world: every backend, for real, against the emulator.

One Custom Vision project, shared by the whole suite, learns to tell horizontal from vertical stripes (an
answer that depends on orientation, colour handling and bit depth, so a wrongly converted image gets the
wrong label). It is published for :class:`CustomVisionBackend`, exported to ONNX for :class:`OnnxBackend` and
deployed behind an emulated Azure ML endpoint (``examples/aml/score.py``) for
:class:`AzureMLEndpointBackend`; :class:`ImageAnalysisBackend` talks to the same emulator, whose answers
carry the pixel size it received. A second emulator serves the Azure ML endpoints, with scoring scripts
that fail on purpose.
"""

from __future__ import annotations

import io
import random
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from azvision import (
    AzureMLEndpointBackend,
    CustomVisionBackend,
    CustomVisionTrainer,
    ImageAnalysisBackend,
    OnnxBackend,
    RetryPolicy,
)
from azvision.backends._base import BaseBackend
from azvision.emulator import AmlEndpointSpec, Emulator

BACKENDS = ("custom_vision", "image_analysis", "azure_ml", "onnx")
LABELS = ("horizontal", "vertical")
PUBLISH_NAME = "production"
NO_RETRY = RetryPolicy(max_attempts=1)
EXAMPLE_SCORE = Path(__file__).parents[2] / "examples" / "aml" / "score.py"

#: ``run`` raises: the endpoint answers 424 with the inference server's 500 behind it.
RAISING_SCRIPT = """
def init():
    pass

def run(data):
    raise ValueError("the model cannot score this input")
"""
#: Answers a JSON shape no preset parser knows.
SHAPELESS_SCRIPT = """
def init():
    pass

def run(data):
    return {"verdict": "probably a cat", "certainty": "high", "took_ms": 12}
"""
#: What a route prefix of ``Emulator.stats()`` must contain to count as a request to the backend's service.
_SERVICE_ROUTES = {
    "custom_vision": "/prediction/",
    "image_analysis": "analyze",
    "azure_ml": "/aml/",
}


def stripes(kind: str, seed: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """High-contrast ``"horizontal"`` or ``"vertical"`` stripes, grey levels and pitch varying by seed."""
    rng = random.Random(f"{kind}-{seed}")
    width, height = size
    image = Image.new("RGB", size, (rng.randint(0, 60),) * 3)
    draw = ImageDraw.Draw(image)
    ink = tuple(rng.randint(190, 255) for _ in range(3))
    step = max(2, min(size) // rng.randint(6, 10))
    offset = rng.randint(0, step)
    for start in range(offset - 2 * step, height if kind == "horizontal" else width, 2 * step):
        if kind == "horizontal":
            draw.rectangle([0, start, width, start + step - 1], fill=ink)
        else:
            draw.rectangle([start, 0, start + step - 1, height], fill=ink)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    """``image`` encoded as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_dataset(root: Path, per_label: int = 10) -> Path:
    """``root/<label>/<i>.png`` training images."""
    for label in LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            stripes(label, i).save(root / label / f"{i}.png")
    return root


@dataclass(frozen=True)
class World:
    """The emulators, the published project and its ONNX export."""

    emulator: Emulator
    aml: Emulator
    project_id: str
    export_dir: Path

    def backend(self, name: str, **options: Any) -> BaseBackend:
        """A backend on the stripes model (Image Analysis: the emulator's tags); no retries by default."""
        options.setdefault("retry", NO_RETRY)
        if name == "custom_vision":
            emu = self.emulator
            return CustomVisionBackend(
                emu.endpoint, emu.prediction_key, self.project_id, PUBLISH_NAME, **options
            )
        if name == "image_analysis":
            return ImageAnalysisBackend(self.emulator.endpoint, self.emulator.vision_key, **options)
        if name == "azure_ml":
            endpoint = options.pop("endpoint", "classifier")
            return AzureMLEndpointBackend(self.aml.aml_scoring_uri(endpoint), self.aml.aml_key, **options)
        if name == "onnx":
            return OnnxBackend(self.export_dir, **options)
        raise ValueError(name)

    def requests(self, name: str) -> int:
        """Requests the backend's service has received so far (0 for the local ONNX backend)."""
        if name == "onnx":
            return 0
        emu = self.aml if name == "azure_ml" else self.emulator
        fragment = _SERVICE_ROUTES[name]
        return sum(sum(counts.values()) for route, counts in emu.stats().items() if fragment in route)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, inference_python: Path) -> Iterator[World]:
    root = tmp_path_factory.mktemp("world")
    dataset = write_dataset(root / "dataset")
    with Emulator(training_seconds=0.1) as emulator:
        with CustomVisionTrainer(
            emulator.endpoint,
            emulator.training_key,
            prediction_resource_id=emulator.prediction_resource_id,
            max_rps=None,
        ) as trainer:
            result = trainer.train_from_folder(
                dataset, project="stripes", publish_name=PUBLISH_NAME, export_dir=root / "export"
            )
        assert result.export_dir is not None
        scripts = root / "scripts"
        scripts.mkdir()
        (scripts / "raising.py").write_text(textwrap.dedent(RAISING_SCRIPT), encoding="utf-8")
        (scripts / "shapeless.py").write_text(textwrap.dedent(SHAPELESS_SCRIPT), encoding="utf-8")
        endpoints = {
            "classifier": AmlEndpointSpec(EXAMPLE_SCORE, model_dir=result.export_dir),
            "raising": AmlEndpointSpec(scripts / "raising.py"),
            "shapeless": AmlEndpointSpec(scripts / "shapeless.py"),
        }
        with Emulator(aml_endpoints=endpoints) as aml:
            yield World(emulator, aml, result.project.id, result.export_dir)
