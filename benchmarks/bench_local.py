"""Benchmark 5 — local inference: ``OnnxBackend.classify_many`` vs raw onnxruntime.

The Custom Vision ONNX export of the trained project (the compact backbone, 224×224 BGR input), the
same JPEG images on both sides. The raw side is what a user writes by hand: an ``InferenceSession`` with
onnxruntime's defaults, and for each chunk of 16 images, decode with PIL, resize, flip to BGR, stack,
``session.run``. Both include decoding, since both start from the same image files' bytes. The sides
alternate over rounds. Target: azvision ≥ 0.9 × raw onnxruntime's images per second.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from azvision import OnnxBackend, Prediction

from ._common import Lab, Result, bench_image

NAME = "local"
BATCH = 16
ROUNDS = 2
_SIDE = 224


def _raw_tensor(data: bytes) -> np.ndarray:
    """Decode, resize the shorter side to 224 and centre-crop, HWC RGB → CHW BGR float32 0–255."""
    with Image.open(io.BytesIO(data)) as opened:
        rgb = opened.convert("RGB")
    scale = _SIDE / min(rgb.size)
    resized = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    left, top = (resized.width - _SIDE) // 2, (resized.height - _SIDE) // 2
    pixels = np.asarray(resized.crop((left, top, left + _SIDE, top + _SIDE)), dtype=np.float32)
    return np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1))


def _raw(session: ort.InferenceSession, images: list[bytes]) -> int:
    done = 0
    for start in range(0, len(images), BATCH):
        batch = np.stack([_raw_tensor(data) for data in images[start : start + BATCH]])
        (scores,) = session.run(["model_output"], {"data": batch})
        done += len(scores)
    return done


def _ours(clf: OnnxBackend, images: list[bytes]) -> int:
    return sum(isinstance(outcome, Prediction) for outcome in clf.classify_many(images))


def run(lab: Lab) -> list[Result]:
    """Images per second of both sides on the project's real ONNX export."""
    images = [bench_image(i, size=256) for i in range(lab.settings.scale(320, 64))]
    export: Path = lab.project.export_dir
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    seconds = {"raw": 0.0, "azvision": 0.0}
    with OnnxBackend(export, batch_size=BATCH) as clf:
        _raw(session, images[:BATCH])
        _ours(clf, images[:BATCH])
        for r in range(ROUNDS):
            for side in ("raw", "azvision") if r % 2 == 0 else ("azvision", "raw"):
                started = time.perf_counter()
                done = _raw(session, images) if side == "raw" else _ours(clf, images)
                seconds[side] += time.perf_counter() - started
                if done != len(images):
                    raise RuntimeError(f"{side} classified {done} of {len(images)} images")
    rate = {side: ROUNDS * len(images) / s for side, s in seconds.items()}
    ratio = rate["azvision"] / rate["raw"]
    return [
        Result(
            "local: OnnxBackend / raw onnxruntime",
            ratio,
            "x",
            target=0.9,
            ratio=ratio,
            note=(
                f"{len(images)} images × {ROUNDS} rounds, batch {BATCH}: azvision {rate['azvision']:.1f} img/s, "
                f"raw {rate['raw']:.1f} img/s"
            ),
            details={"images_per_s": rate, "images": len(images), "rounds": ROUNDS},
        )
    ]
