"""One Custom Vision project trained in an emulator ``data_dir``, its ONNX export, and held-out images.

Each test starts its own emulator on the same ``data_dir`` (the same keys, project and published
iteration), with its own faults: a failing primary and a healthy secondary are two emulators.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from azvision import CustomVisionBackend, CustomVisionTrainer, OnnxBackend, RetryPolicy
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset

CLASSES = ("circle", "square", "triangle")
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02, deadline=10)


@dataclass(frozen=True)
class Trained:
    data_dir: Path
    project_id: str
    export_dir: Path
    test: Dataset

    @property
    def paths(self) -> list[str]:
        """The held-out images' paths, class by class."""
        return [str(item.path) for item in self.test]


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("routing")
    train = make_dataset(root / "train", classes=CLASSES, per_class=12, seed=0, size=(96, 128))
    test = make_dataset(root / "test", classes=CLASSES, per_class=6, seed=1, size=(96, 128))
    data_dir = root / "emulator"
    with (
        Emulator(data_dir=data_dir, training_seconds=0.1) as emu,
        CustomVisionTrainer(
            emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id
        ) as trainer,
    ):
        result = trainer.train_from_folder(
            train, project="routing", publish_name="prod", export_dir=root / "export", timeout=120
        )
    assert result.export_dir is not None
    return Trained(data_dir, str(result.project.id), result.export_dir, test)


@pytest.fixture
def service(trained: Trained) -> Iterator[Emulator]:
    """A healthy emulator serving the trained project."""
    with Emulator(data_dir=trained.data_dir) as emu:
        yield emu


def custom_vision(emu: Emulator, trained: Trained, **options: Any) -> CustomVisionBackend:
    """The trained iteration on ``emu``; ``options`` override any argument (``key=``, ``project_id=``)."""
    arguments: dict[str, Any] = {
        "endpoint": emu.endpoint,
        "key": emu.prediction_key,
        "project_id": trained.project_id,
        "iteration": "prod",
        "retry": FAST_RETRY,
        "labels": CLASSES,
    }
    return CustomVisionBackend(**{**arguments, **options})


def onnx(trained: Trained, **options: Any) -> OnnxBackend:
    """The trained iteration's ONNX export, run locally."""
    return OnnxBackend(trained.export_dir, **options)


def prediction_calls(emu: Emulator) -> int:
    """Prediction requests the emulator has served (every status)."""
    return sum(sum(c.values()) for route, c in emu.stats().items() if "/prediction/" in route)
