"""Classify with asyncio: `aclassify_many` streams answers in input order while other work goes on.

Runs offline against the embedded emulator (``pip install 'azvision[all]'``): it generates a small labelled
data set, trains and publishes a Custom Vision model, then classifies the held-out images through the
prediction API and, at the same time on the same event loop, through the model's ONNX export. Each
answer is printed as it arrives; nothing waits for the whole batch.

    python examples/async_batch.py

In your own code the loop is the same with any backend: ``async with create_classifier(...) as clf:``
then ``async for outcome in clf.aclassify_many(paths, max_rps=10)``. An outcome is a `Prediction`, or the
typed error of that one image (the batch goes on).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import azvision
from azvision import AzVisionError, Classifier
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset


async def classify_all(name: str, clf: Classifier, paths: Sequence[Path], truth: Sequence[str]) -> int:
    """Print each answer as it arrives; return how many match the truth."""
    right = 0
    index = 0  # one outcome per input, in input order: the n-th outcome is the n-th path's
    async for outcome in clf.aclassify_many(paths, max_rps=50):
        path, label = paths[index], truth[index]
        index += 1
        if isinstance(outcome, AzVisionError):
            print(f"  {name:8} {path.name:16} failed: {outcome}")
            continue
        right += outcome.label == label
        top = outcome.label or "(none)"  # no label at or above the model's threshold
        print(f"  {name:8} {path.name:16} {top:9} {outcome.confidence:6.1%}  (truth {label})")
    return right


async def main(work: Path) -> None:
    train = make_dataset(work / "train", per_class=12, seed=0)
    test = make_dataset(work / "test", per_class=4, seed=1)
    paths, truth = [item.path for item in test], [item.label for item in test]

    with Emulator() as emulator:  # on Azure: leave this out and pass your own endpoints and keys
        trainer = azvision.CustomVisionTrainer(
            emulator.endpoint,
            emulator.training_key,
            prediction_resource_id=emulator.prediction_resource_id,
            prediction_endpoint=emulator.endpoint,
            prediction_key=emulator.prediction_key,
        )
        with trainer:
            # Training is sync (a few calls and a wait); run it in a thread so the loop stays free.
            await asyncio.to_thread(
                trainer.train_from_folder,
                train,
                project="shapes",
                publish_name="async",
                export_dir=work / "onnx",
            )
            started = time.perf_counter()
            async with trainer.classifier() as service, trainer.classifier(kind="onnx") as local:
                # Two batches at once on one event loop: the service and the local export.
                right = await asyncio.gather(
                    classify_all("service", service, paths, truth),
                    classify_all("onnx", local, paths, truth),
                )
            took = time.perf_counter() - started
    print(
        f"{len(paths)} images through both in {took:.1f} s: "
        f"service {right[0]}/{len(paths)} right, onnx {right[1]}/{len(paths)} right"
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="azvision-async-") as scratch:  # removed when done
        asyncio.run(main(Path(scratch)))
