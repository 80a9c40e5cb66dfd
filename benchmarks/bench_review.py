"""Benchmark 7 — accepting reviewed predictions against uploading the same images again.

N photo-sized images (640 × 480 JPEG shapes, ~40 KB) are classified with stored predictions; then ``review_queue`` lists them (pages of 256) and
``accept`` turns all of them into training images through ``images/predictions`` (batches of 64, no image
bytes). The reference is what a user without it would do: ``upload`` the same files into a project
(``images/files``, base64 in JSON). Both in one emulator, in this process, one after the other. Ratio:
accept time / upload time (target ≤ 1: it must not cost more than sending the images), and the image bytes
each path sends (accept: none).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from azvision import CustomVisionTrainer
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset

from ._common import Lab, Result

KNOWN = ("circle", "square", "triangle", "star")
SEED_PER_CLASS = 6  # trained on; the rest of each class is the stream

NAME = "review"


def run(lab: Lab) -> list[Result]:
    """Classify N images (stored), list them, accept them; upload the same N elsewhere; compare."""
    count = lab.settings.scale(512, 64)
    data = make_dataset(
        lab.root / "review-images", classes=KNOWN, per_class=count // len(KNOWN), size=(480, 640), seed=3
    )
    seeds = tuple(item for item in data.items if int(item.path.stem.rsplit("_", 1)[1]) < SEED_PER_CLASS)
    stream = tuple(item for item in data.items if item not in seeds)
    paths = [str(item.path) for item in stream]
    with (
        Emulator(training_seconds=0.1) as emu,
        CustomVisionTrainer(
            emu.endpoint,
            emu.training_key,
            prediction_resource_id=emu.prediction_resource_id,
            prediction_endpoint=emu.endpoint,
            prediction_key=emu.prediction_key,
            max_rps=None,
        ) as trainer,
    ):
        trainer.train_from_folder(
            Dataset(items=seeds, root=data.root), project="reviewed", publish_name="prod", timeout=60
        )
        with trainer.classifier() as classifier:
            failed = sum(not hasattr(p, "label") for p in classifier.classify_many(paths))

        started = time.perf_counter()
        queue = trainer.review_queue("reviewed", max_confidence=1.0)
        listed = time.perf_counter() - started
        decisions = {item.prediction_id: item.label or KNOWN[0] for item in queue}
        started = time.perf_counter()
        accepted = trainer.accept("reviewed", decisions)
        accept_s = time.perf_counter() - started

        other = trainer.project("uploaded")
        started = time.perf_counter()
        uploaded = trainer.upload(other, Dataset(items=stream, root=data.root))
        upload_s = time.perf_counter() - started
    image_bytes = sum(len(base64.b64encode(Path(p).read_bytes())) for p in paths)
    n = len(paths)
    details = {
        "images": n,
        "classify_failed": failed,
        "queue_listed": len(queue),
        "queue_seconds": round(listed, 3),
        "accept_seconds": round(accept_s, 3),
        "accept_counts": accepted.counts(),
        "upload_seconds": round(upload_s, 3),
        "uploaded": len(uploaded.uploaded),
        "upload_image_bytes": image_bytes,
    }
    return [
        Result(
            "review: accept / re-upload time",
            accept_s / upload_s,
            "x",
            target=1.0,
            better="lower",
            ratio=accept_s / upload_s,
            note=f"{n} images: accept {n / accept_s:.0f} img/s sending 0 image bytes; "
            f"upload {n / upload_s:.0f} img/s sending {image_bytes / 1e6:.1f} MB of base64",
            details=details,
        ),
        Result(
            "review: queue listing",
            len(queue) / listed,
            "img/s",
            note=f"{len(queue)} stored predictions in {listed:.2f} s (pages of 256)",
            details=details,
        ),
    ]
