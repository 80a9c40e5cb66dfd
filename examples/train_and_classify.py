"""Train a Custom Vision classifier from a folder, publish it, export it to ONNX and classify with both.

Runs offline against the embedded emulator (``pip install 'azvision[all]'``); the same code runs on Azure
when you give it your training resource instead (see the bottom of this file).

    python examples/train_and_classify.py            # generates a small three-class data set first
    python examples/train_and_classify.py my_images  # or uses your folder: one sub-folder per label
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from azvision import CustomVisionTrainer
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset
from azvision.training.models import TrainProgress


class StepPrinter:
    """A ``progress=`` callback: prints the upload once complete and each training status once."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, event: TrainProgress) -> None:
        step = (event.stage, event.message)
        if (event.stage == "upload" and event.done != event.total) or step in self.seen:
            return
        self.seen.add(step)
        count = f" {event.done}/{event.total}" if event.total else ""
        print(f"  [{event.stage}]{count} {event.message}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="azvision-train-") as scratch:  # removed when done
        train_and_classify(Path(scratch))


def train_and_classify(work: Path) -> None:
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
    else:
        folder = work / "shapes"
        make_dataset(folder, per_class=20)  # circles, squares and triangles
    train, test = Dataset.from_folder(folder).split(0.2, seed=0)
    print(f"{len(train)} training and {len(test)} held-out images from {folder}")

    with Emulator() as emulator:
        trainer = CustomVisionTrainer(
            emulator.endpoint,
            emulator.training_key,
            prediction_resource_id=emulator.prediction_resource_id,
            prediction_endpoint=emulator.endpoint,
            prediction_key=emulator.prediction_key,
        )
        with trainer:
            result = trainer.train_from_folder(
                train, project="shapes", publish_name="prod", export_dir=work / "onnx", progress=StepPrinter()
            )
            print(result.summary())
            assert result.performance is not None
            for tag in result.performance.tags:
                print(f"  {tag.name:10} precision {tag.precision:.0%}  recall {tag.recall:.0%}")

            paths = [item.path for item in test]
            with trainer.classifier() as service, trainer.classifier(kind="onnx") as local:
                for item, remote, offline in zip(
                    test, service.classify_many(paths), local.classify_many(paths), strict=True
                ):
                    answers = [getattr(o, "label", None) or type(o).__name__ for o in (remote, offline)]
                    print(
                        f"  {item.path.name:18} truth {item.label:9} service {answers[0]:9} onnx {answers[1]}"
                    )

    # On Azure: CustomVisionTrainer() reads CUSTOM_VISION_TRAINING_ENDPOINT, CUSTOM_VISION_TRAINING_KEY and
    # CUSTOM_VISION_PREDICTION_RESOURCE_ID; trainer.classifier() reads CUSTOM_VISION_PREDICTION_ENDPOINT/_KEY.


if __name__ == "__main__":
    main()
