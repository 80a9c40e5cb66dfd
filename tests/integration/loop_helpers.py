"""The improvement loop's test data: a biased training set (no hexagons) and streams to classify.

The model is trained on circles, squares and triangles only; a stream that holds hexagons leaves it
unsure of many of them (measured: about half of the hexagons get a best confidence ≤ 0.6, none of the
known shapes do), which is what the review queue is for.
"""

from __future__ import annotations

from pathlib import Path

from azvision import CustomVisionTrainer, Prediction, RetryPolicy
from azvision.datasets import Dataset, DatasetItem
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset, shape_image
from azvision.training.models import TrainResult

KNOWN = ("circle", "square", "triangle")
NEW = "hexagon"
FAST_RETRY = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.1, deadline=30)
SIZE = (96, 160)


def make_trainer(emulator: Emulator) -> CustomVisionTrainer:
    return CustomVisionTrainer(
        emulator.endpoint,
        emulator.training_key,
        prediction_resource_id=emulator.prediction_resource_id,
        prediction_endpoint=emulator.endpoint,
        prediction_key=emulator.prediction_key,
        retry=FAST_RETRY,
        max_rps=None,
    )


def shapes(root: Path, classes: tuple[str, ...], per_class: int, seed: int) -> Dataset:
    """PNG shapes, one folder per class; colours follow the class (hexagons keep their own hue)."""
    return make_dataset(root, classes=classes, per_class=per_class, size=SIZE, seed=seed, image_format="png")


def train_biased(trainer: CustomVisionTrainer, root: Path, project: str, per_class: int = 15) -> TrainResult:
    """A project trained on the known shapes only, published as ``prod``."""
    data = shapes(root / "train", KNOWN, per_class, seed=0)
    return trainer.train_from_folder(data, project=project, publish_name="prod")


def stream(root: Path, per_class: int, *, seed: int, with_new: bool = True) -> Dataset:
    """Images to classify (or a holdout), one folder per class: the known shapes drawn as in training,
    plus hexagons when ``with_new`` (in their own hue: they are not one of the training classes)."""
    classes = (*KNOWN, NEW) if with_new else KNOWN
    items = []
    for kind in classes:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = root / kind / f"{kind}_{index:03d}.png"
            shape_image(kind, seed=f"{seed}/{index}", size=SIZE, classes=KNOWN).save(path, "PNG")
            items.append(DatasetItem(path, (kind,)))
    return Dataset(items=tuple(items), root=root)


def classify_stream(trainer: CustomVisionTrainer, data: Dataset) -> dict[str, str]:
    """Classify with the published model (the service stores the predictions); prediction id -> true shape."""
    truth = {}
    with trainer.classifier() as classifier:
        outcomes = classifier.classify_many([item.path for item in data.items])
        for item, outcome in zip(data.items, outcomes, strict=True):
            assert isinstance(outcome, Prediction)
            truth[outcome.raw["id"]] = item.label
    return truth
