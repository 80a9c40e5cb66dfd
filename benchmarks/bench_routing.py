"""Benchmark 7 — routing for cost and resilience, side by side in one run, on the demo's held-out images.

The demo's data (4 classes of shapes, 20 training and 10 held-out images per class; 3, 12 and 6 with
``--quick``) trains a Custom Vision project in an emulator ``data_dir``; the "cloud" is that project served
by an emulator in its own process with ``CLOUD_LATENCY_MS`` per request (a prediction call's order of
magnitude; the local model pays none), the primary in an outage is a second one with ``--fail-rate 1.0``.

* Cascade ONNX → Custom Vision at the documented threshold (0.8): share of images that reach the cloud
  (target ≤ 40 %) and accuracy against Custom Vision alone (target: at most 1 point below).
* Cache: a second run of a `CachedClassifier` over the same images makes 0 backend calls (the cloud's own
  request count) and is ≥ 20× faster than the first, which asked the cloud for every image (median of
  ``REPEATS`` second runs, each a fresh client on the same file).
* Fallback: the primary failing every request, every image is answered through the secondary, in at most
  1.2× the time the secondary takes alone (median of ``REPEATS`` interleaved pairs). Both are default
  `CustomVisionBackend` clients and a default `Fallback`, whose primary makes one attempt per image (its
  outage answers 500, or 503 with ``Retry-After: 1``, which a retry would sit out).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from azvision import (
    CachedClassifier,
    Cascade,
    CustomVisionBackend,
    CustomVisionTrainer,
    Fallback,
    OnnxBackend,
    Prediction,
)
from azvision.routing._cascade import DEFAULT_THRESHOLD
from azvision.synthetic import make_dataset

from ._common import Lab, RemoteEmulator, Result, request_total, wall_clock

NAME = "routing"
CLOUD_LATENCY_MS = 150
CONCURRENCY = 8
REPEATS = 5
_FULL = (("circle", "square", "triangle", "star"), 20, 10)
_QUICK = (("circle", "square", "triangle"), 12, 6)


def _accuracy(outcomes: list[Prediction | Exception], truth: list[str]) -> float:
    right = sum(isinstance(o, Prediction) and o.label == t for o, t in zip(outcomes, truth, strict=True))
    return right / len(truth)


def _calls(emu: RemoteEmulator) -> int:
    return sum(request_total(emu.stats()).values())


def run(lab: Lab) -> list[Result]:
    """Train the demo's project, then measure cascade, cache and fallback against emulated services."""
    classes, n_train, n_test = _QUICK if lab.settings.quick else _FULL
    root = Path(tempfile.mkdtemp(prefix="routing-", dir=lab.root))
    train = make_dataset(root / "train", classes=classes, per_class=n_train, seed=0)
    test = make_dataset(root / "test", classes=classes, per_class=n_test, seed=1)
    paths, truth = [str(item.path) for item in test], [item.label for item in test]
    harder = make_dataset(root / "hard", classes=classes, per_class=n_test, seed=2, colours="random")
    hard = [str(item.path) for item in harder]
    project_id, export_dir = _train(root, train)
    options = [f"--data-dir={root / 'emulator'}", f"--seed={lab.settings.seed}"]

    with (
        RemoteEmulator([*options, f"--latency-ms={CLOUD_LATENCY_MS}"]) as cloud,
        RemoteEmulator([*options, "--fail-rate=1.0"]) as outage,
    ):

        def custom_vision(emu: RemoteEmulator, **extra: object) -> CustomVisionBackend:
            return CustomVisionBackend(
                emu.endpoint,
                emu.prediction_key,
                project_id,
                "bench",
                labels=classes,
                **extra,  # type: ignore[arg-type]
            )

        # -- cascade against cloud only -------------------------------------------------------------
        with custom_vision(cloud) as alone:
            cloud_only = list(alone.classify_many(paths, concurrency=CONCURRENCY))
        with Cascade([OnnxBackend(export_dir), custom_vision(cloud)], threshold=DEFAULT_THRESHOLD) as cascade:
            routed = list(cascade.classify_many(paths, concurrency=CONCURRENCY))
            stages = cascade.stats().stages
        share = stages[1].calls / len(paths)
        cloud_accuracy, cascade_accuracy = _accuracy(cloud_only, truth), _accuracy(routed, truth)
        # informational: images the export is less sure of (shapes in any colour, not their class's)
        with Cascade([OnnxBackend(export_dir), custom_vision(cloud)], threshold=DEFAULT_THRESHOLD) as cascade:
            list(cascade.classify_many(hard, concurrency=CONCURRENCY))
            hard_share = cascade.stats().stages[1].calls / len(hard)

        # -- cache: first run asks the cloud for every image, the second none -------------------------
        cache_path = root / "cache.sqlite"
        with CachedClassifier(custom_vision(cloud), cache_path) as cached, wall_clock() as first:
            list(cached.classify_many(paths, concurrency=CONCURRENCY))
        before, seconds, second_calls = _calls(cloud), [], 0
        for _ in range(REPEATS):  # a fresh client on the same file each time, as a second run would be
            with CachedClassifier(custom_vision(cloud), cache_path) as cached:
                with wall_clock() as again:
                    hits = list(cached.classify_many(paths, concurrency=CONCURRENCY))
                usage = cached.stats().usage
            seconds.append(again[0])
            second_calls += usage.backend_calls
        second_calls += _calls(cloud) - before
        second = [statistics.median(seconds)]

        # -- fallback: primary in an outage, against the secondary alone ----------------------------
        ratios, answered, alone_s, fallback_s = [], 0, [], []
        for _ in range(REPEATS):
            with custom_vision(cloud) as secondary, wall_clock() as own:
                list(secondary.classify_many(paths, concurrency=CONCURRENCY))
            primary = custom_vision(outage)
            with (
                Fallback([primary, custom_vision(cloud)], cooldown_after=3) as fallback,
                wall_clock() as fell,
            ):
                outcomes = list(fallback.classify_many(paths, concurrency=CONCURRENCY))
            answered = sum(isinstance(o, Prediction) for o in outcomes)
            alone_s.append(own[0])
            fallback_s.append(fell[0])
            ratios.append(fell[0] / own[0])
    ratio = statistics.median(ratios)
    n = len(paths)
    return [
        Result(
            "routing: cascade share to cloud",
            round(share * 100, 1),
            "%",
            target=40.0,
            better="lower",
            note=f"ONNX → Custom Vision at threshold {DEFAULT_THRESHOLD}, {n} held-out images",
            details={"cloud_calls": stages[1].calls, "images": n},
        ),
        Result(
            "routing: cascade share to cloud, harder images",
            round(hard_share * 100, 1),
            "%",
            note="informational: the same model on shapes in random colours (the training set's colours "
            "told the classes apart): the export is unsure of more of them",
        ),
        Result(
            "routing: cascade accuracy − cloud",
            round((cascade_accuracy - cloud_accuracy) * 100, 2),
            "points",
            target=-1.0,
            note=f"cascade {cascade_accuracy:.1%}, Custom Vision alone {cloud_accuracy:.1%}",
            details={"cascade": cascade_accuracy, "cloud_only": cloud_accuracy},
        ),
        Result(
            "routing: cache 2nd run backend calls",
            second_calls,
            "calls",
            target=0,
            better="lower",
            details={"hits": usage.cache_hits, "answered": sum(isinstance(o, Prediction) for o in hits)},
        ),
        Result(
            "routing: cache 2nd run speed-up",
            round(first[0] / second[0], 1),
            "x",
            target=20.0,
            ratio=round(first[0] / second[0], 1),
            note=f"first {first[0]:.3f} s (cloud, {CLOUD_LATENCY_MS} ms/request), second {second[0]:.4f} s "
            f"(median of {REPEATS})",
        ),
        Result("routing: fallback answered", answered, "images", target=n, details={"images": n}),
        Result(
            "routing: fallback time / secondary alone",
            round(ratio, 3),
            "x",
            target=1.2,
            better="lower",
            ratio=round(ratio, 3),
            note=f"median of {REPEATS}: fallback {statistics.median(fallback_s):.3f} s, "
            f"secondary alone {statistics.median(alone_s):.3f} s",
            details={"ratios": [round(r, 3) for r in ratios]},
        ),
    ]


def _train(root: Path, train: object) -> tuple[str, Path]:
    from azvision.emulator import Emulator

    with (
        Emulator(data_dir=root / "emulator", training_seconds=0.1) as emu,
        CustomVisionTrainer(
            emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id
        ) as trainer,
    ):
        result = trainer.train_from_folder(
            train,  # type: ignore[arg-type]
            project="routing",
            publish_name="bench",
            export_dir=root / "export",
            timeout=120,
        )
    assert result.export_dir is not None
    return str(result.project.id), result.export_dir
