"""Train a Custom Vision classifier from a folder, publish it, export it to ONNX and classify with both.

Runs offline against the embedded emulator (``pip install 'azvision[all]'``); the same code runs on Azure
when you give it your training resource instead (see the bottom of this file).

    python examples/train_and_classify.py            # generates a small three-class data set first
    python examples/train_and_classify.py my_images  # or uses your folder: one sub-folder per label
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from azvision import CustomVisionTrainer
from azvision.emulator import Emulator
from azvision.training.datasets import Dataset
from azvision.training.models import TrainProgress


def make_shapes(root: Path, per_class: int = 20) -> Path:
    """Three classes of coloured shapes, 20 images each, deterministic."""
    rng = random.Random(0)
    for name, colour in {"circle": (210, 40, 40), "square": (40, 170, 60), "triangle": (40, 60, 210)}.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            width, height = rng.randint(96, 160), rng.randint(96, 160)
            image = Image.new("RGB", (width, height), tuple(rng.randint(200, 255) for _ in range(3)))
            side = rng.randint(int(min(width, height) * 0.45), int(min(width, height) * 0.8))
            x, y = rng.randint(0, width - side), rng.randint(0, height - side)
            draw = ImageDraw.Draw(image)
            if name == "circle":
                draw.ellipse((x, y, x + side, y + side), fill=colour)
            elif name == "square":
                draw.rectangle((x, y, x + side, y + side), fill=colour)
            else:
                draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], fill=colour)
            image.save(root / name / f"{name}_{index:02d}.png")
    return root


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
    work = Path(tempfile.mkdtemp(prefix="azvision-train-"))
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else make_shapes(work / "shapes")
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
