"""Benchmark 1 — throughput at the service quota.

An emulator with 200 ms latency and a 20 TPS quota (Custom Vision S0 prediction without storage). In one
run: the seed's sequential loop with the official ``CustomVisionPredictionClient``, then
``CustomVisionBackend(store=False).classify_many`` told the quota (``max_rps=20``) and left to find it
(auto mode: no ``max_rps``). Targets: ≥ 0.95 × 20 images/s, no failed item, no 429 reaching the caller,
and ≥ 3.8 × the sequential loop. Then object detection: a detector trained on the generated detection set,
``CustomVisionBackend(task="detection")`` at a 10 TPS quota (S0 prediction with storage): ≥ 0.9 × the quota,
no failed item.
"""

from __future__ import annotations

import time
from typing import Any

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from msrest.authentication import ApiKeyCredentials

from azvision import AzVisionError, CustomVisionBackend, Prediction, RateLimitError

from ._common import Lab, RemoteEmulator, Result, counts_since, request_total, wall_clock

NAME = "quota"
LATENCY_MS = 200
QUOTA_TPS = 20.0


def _sequential_official(emu: Any, project_id: str, publish_name: str, images: list[str]) -> float:
    """The seed's snippet, one image after the other; returns images per second."""
    predictor = CustomVisionPredictionClient(  # type: ignore[no-untyped-call]
        emu.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": emu.prediction_key})
    )
    with wall_clock() as elapsed:
        for path in images:
            with open(path, "rb") as image_contents:
                predictor.classify_image(project_id, publish_name, image_contents.read())  # type: ignore[no-untyped-call]
    predictor.close()
    return len(images) / elapsed[0]


def _batch(
    emu: Any, lab: Lab, images: list[str], max_rps: float | None, concurrency: int | None = None
) -> dict[str, Any]:
    project = lab.project
    before = request_total(emu.stats())
    outcomes: list[Prediction | AzVisionError] = []
    with (
        CustomVisionBackend(
            emu.endpoint, emu.prediction_key, project.project_id, project.publish_name, store=False
        ) as clf,
        wall_clock() as elapsed,
    ):
        outcomes.extend(clf.classify_many(images, max_rps=max_rps, concurrency=concurrency))
    errors = [o for o in outcomes if isinstance(o, AzVisionError)]
    misplaced = sum(1 for path, o in zip(images, outcomes, strict=False) if path != o.source)
    return {
        "images_per_s": len(images) / elapsed[0],
        "seconds": elapsed[0],
        "outcomes": len(outcomes),
        "failed": len(errors),
        "surfaced_429": sum(isinstance(e, RateLimitError) for e in errors),
        "out_of_order": misplaced,
        "server_counts": counts_since(before, request_total(emu.stats())),
    }


def run(lab: Lab) -> list[Result]:
    """Sequential official loop vs ``classify_many`` with and without ``max_rps``, in one emulator."""
    settings = lab.settings
    images = lab.image_files(settings.scale(400, 120))
    sequential_n = settings.scale(50, 25)
    results: list[Result] = []
    with lab.emulator(latency_ms=LATENCY_MS, rate_limit_tps=QUOTA_TPS) as emu:
        project = lab.project
        seq_rate = _sequential_official(emu, project.project_id, project.publish_name, images[:sequential_n])
        for label, max_rps in (("max_rps=20", QUOTA_TPS), ("auto", None)):
            time.sleep(1.5)  # let the quota's token bucket refill, so every mode starts alike
            run_ = _batch(emu, lab, images, max_rps)
            rate = run_["images_per_s"]
            details = {**run_, "sequential_images_per_s": seq_rate, "sequential_images": sequential_n}
            results += [
                Result(
                    f"quota {label}: throughput",
                    rate,
                    "img/s",
                    target=0.95 * QUOTA_TPS,
                    ratio=rate / QUOTA_TPS,
                    note=f"{len(images)} images, quota {QUOTA_TPS:g} TPS, {LATENCY_MS} ms latency",
                    details=details,
                ),
                Result(
                    f"quota {label}: vs sequential official client",
                    rate / seq_rate,
                    "x",
                    target=3.8,
                    ratio=rate / seq_rate,
                    note=f"sequential: {seq_rate:.2f} img/s over {sequential_n} images",
                ),
                Result(
                    f"quota {label}: failed items (429s surfaced)",
                    run_["failed"],
                    "items",
                    target=0,
                    better="lower",
                    note=f"{run_['surfaced_429']} surfaced 429s; server saw {run_['server_counts']}",
                ),
            ]
    results += _burst(lab)
    results += _detection(lab)
    return results


DETECTION_TPS = 10.0


def _detection(lab: Lab) -> list[Result]:
    """Detection batch throughput at the quota: the detect route, boxes decoded and checked per image."""
    from azvision import CustomVisionTrainer
    from azvision.emulator import Emulator
    from azvision.synthetic import make_detection_dataset

    root = lab.root / "detection"
    train = make_detection_dataset(root / "train", images=45, seed=0)
    scenes = make_detection_dataset(root / "scenes", images=lab.settings.scale(150, 40), seed=1)
    with (
        Emulator(data_dir=root / "emulator", training_seconds=0.1) as emu,
        CustomVisionTrainer(
            emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id, max_rps=None
        ) as trainer,
    ):
        trained = trainer.train_from_folder(train, project="det", publish_name="det", task="detection")
    images = [str(item.path) for item in scenes]
    with RemoteEmulator([f"--data-dir={root / 'emulator'}", f"--rate-limit-tps={DETECTION_TPS}"]) as remote:
        before = request_total(remote.stats())
        outcomes: list[Prediction | AzVisionError] = []
        with (
            CustomVisionBackend(
                remote.endpoint, remote.prediction_key, trained.project.id, "det", task="detection"
            ) as clf,
            wall_clock() as elapsed,
        ):
            outcomes.extend(clf.classify_many(images, max_rps=DETECTION_TPS))
        server = counts_since(before, request_total(remote.stats()))
    failed = sum(isinstance(o, AzVisionError) for o in outcomes)
    boxes = sum(len(o.labels) for o in outcomes if isinstance(o, Prediction))
    rate = len(images) / elapsed[0]
    return [
        Result(
            f"detection at a {DETECTION_TPS:g} TPS quota: throughput",
            rate,
            "img/s",
            target=0.9 * DETECTION_TPS,
            ratio=rate / DETECTION_TPS,
            note=f"{len(images)} scenes, {boxes} boxes returned; server saw {server}",
        ),
        Result("detection: failed items", failed, "items", target=0, better="lower"),
    ]


BURST_TPS = 5.0
BURST_CONCURRENCY = 64


def _burst(lab: Lab) -> list[Result]:
    """Issue 17's collapse: an unknown 5 TPS quota, 64 workers, no ``max_rps``, zero latency.

    The first wave of 64 gets ~59 simultaneous 429s; counted as one congestion signal, the learned rate
    starts in slow start and settles just under the quota instead of collapsing.
    """
    images = lab.image_files(lab.settings.scale(320, 80))
    with lab.emulator(rate_limit_tps=BURST_TPS) as emu:
        run_ = _batch(emu, lab, images, None, concurrency=BURST_CONCURRENCY)
    rate = run_["images_per_s"]
    return [
        Result(
            f"burst: unknown {BURST_TPS:g} TPS quota, concurrency {BURST_CONCURRENCY}",
            rate,
            "img/s",
            target=0.8 * BURST_TPS,
            ratio=rate / BURST_TPS,
            note=f"{len(images)} images, no max_rps; {run_['failed']} failed; server saw {run_['server_counts']}",
            details=run_,
        ),
        Result(
            "burst: failed items",
            run_["failed"],
            "items",
            target=0,
            better="lower",
            note=f"{run_['surfaced_429']} surfaced 429s",
        ),
    ]
