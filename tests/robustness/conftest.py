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

import contextlib
import io
import random
import re
import textwrap
from collections.abc import Callable, Iterator
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


@dataclass
class World:
    """The emulators, the published project and its ONNX export.

    The Azure ML emulator starts on first use of `aml`: it runs the inference server, whose environment
    may have to be built, so only the tests that use it are `slow` (`needs_aml` marks them, and `aml`
    refuses a test that is not marked).
    """

    emulator: Emulator
    project_id: str
    export_dir: Path
    start_aml: Callable[[], Emulator]
    current: pytest.Item | None = None
    _aml: Emulator | None = None

    @property
    def aml(self) -> Emulator:
        """The Azure ML emulator (started now if it is not yet)."""
        if self.current is not None and self.current.get_closest_marker("slow") is None:
            raise RuntimeError(
                f"{self.current.nodeid} uses the Azure ML emulator: it must be marked slow (see needs_aml)"
            )
        if self._aml is None:
            self._aml = self.start_aml()
        return self._aml

    def secret_keys(self) -> list[str]:
        """Every key of the emulators started so far (an AML key that was never handed out cannot leak)."""
        emu = self.emulator
        started = [self._aml.aml_key] if self._aml is not None else []
        return [emu.prediction_key, emu.vision_key, emu.training_key, *started]

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
        if name == "onnx" or (name == "azure_ml" and self._aml is None):
            return 0
        emu = self.aml if name == "azure_ml" else self.emulator
        fragment = _SERVICE_ROUTES[name]
        return sum(sum(counts.values()) for route, counts in emu.stats().items() if fragment in route)


def needs_aml(item: pytest.Item) -> bool:
    """Whether a robustness test uses the Azure ML emulator: its parameters name it, or it is marked."""
    callspec = getattr(item, "callspec", None)
    return bool(callspec is not None and re.search(r"azure[_-]ml|aml", callspec.id))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_aml(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _current_test(request: pytest.FixtureRequest) -> None:
    """Tell the world which test is running (`World.aml` checks that it is marked slow)."""
    if "world" in request.fixturenames:
        request.getfixturevalue("world").current = request.node


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
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
        with contextlib.ExitStack() as later:
            yield World(
                emulator,
                result.project.id,
                result.export_dir,
                lambda: later.enter_context(Emulator(aml_endpoints=endpoints)),
            )
