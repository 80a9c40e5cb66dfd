"""Benchmark 4 — flat memory: ``classify_many`` over a generator of 2,000 vs 20,000 inputs.

Each size runs in its own child process (``python -m benchmarks.bench_memory N MODEL_DIR``): it warms up
with a short batch, then streams a generator of ``N`` fresh ``bytearray`` images (so keeping them would
cost memory) through ``OnnxBackend.classify_many`` and samples its RSS every 10 ms. The model is a tiny
Custom-Vision-shaped export (``data`` BGR 0–255, 32×32 → ``model_output``), so 20,000 images take seconds
and the figure is about the batch machinery, not the network. Target: the peak RSS growth over the
pre-batch RSS at 20,000 inputs within 1.2 × the growth at 2,000 (with a 2 MB floor, below which growth
is allocator noise), i.e. memory does not grow with the length of the input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import Lab, Result

NAME = "memory"
_MB = 1024 * 1024
NOISE_FLOOR_MB = 2.0
_CHILD_TIMEOUT_S = 240


def write_tiny_export(folder: Path, labels: tuple[str, ...] = ("red", "blue")) -> Path:
    """A minimal export folder: ``model.onnx`` (mean colour → linear → softmax) and ``labels.txt``.

    It has the compact family's interface (input ``data`` ``[N, 3, 32, 32]`` BGR 0–255 with the
    ``Image.*`` metadata, output ``model_output``), so :class:`~azvision.OnnxBackend` treats it as one.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)[:, : len(labels)] / 255.0
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["data"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Gemm", ["mean", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
        ],
        "tiny_compact_classifier",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 32, 32])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, ["None", len(labels)])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.zeros(len(labels), np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(
        model, {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"}
    )
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "labels.txt").write_text("\n".join(labels), "utf-8")
    return folder


def _noisy_jpeg(side: int = 128) -> bytes:
    """A JPEG of about 13 KB: big enough that holding 20,000 of them would show (~270 MB)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((side, side), 80).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _inputs(template: bytes, count: int) -> Iterator[bytearray]:
    for _ in range(count):
        yield bytearray(template)


class _PeakRss:
    """Samples this process's RSS every 10 ms until stopped; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        import psutil  # type: ignore[import-untyped]

        self._process = psutil.Process()
        #: RSS when the sampler was made (before the measured work).
        self.start: int = self._process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._process.memory_info().rss)


def child(count: int, model: Path) -> dict[str, Any]:
    """Run in the child process: warm up, then measure one batch of ``count`` generated inputs."""
    import gc

    from azvision import OnnxBackend, Prediction

    template = _noisy_jpeg()
    with OnnxBackend(model) as clf:
        for _ in clf.classify_many(_inputs(template, 500)):
            pass
        gc.collect()
        ok = 0
        with _PeakRss() as sampler:
            for outcome in clf.classify_many(_inputs(template, count)):
                ok += isinstance(outcome, Prediction)
    return {
        "count": count,
        "ok": ok,
        "input_bytes": len(template),
        "rss_before_mb": sampler.start / _MB,
        "peak_rss_mb": sampler.peak / _MB,
        "growth_mb": (sampler.peak - sampler.start) / _MB,
    }


def _measure(count: int, model: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", str(count), str(model)],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def run(lab: Lab) -> list[Result]:
    """Two child processes, small and large; the ratio of their peak RSS growth."""
    small_n, large_n = lab.settings.scale(2000, 1000), lab.settings.scale(20000, 10000)
    model = write_tiny_export(lab.root / "tiny-export")
    small, large = _measure(small_n, model), _measure(large_n, model)
    ratio = max(large["growth_mb"], NOISE_FLOOR_MB) / max(small["growth_mb"], NOISE_FLOOR_MB)
    materialised = large_n * large["input_bytes"] / _MB
    return [
        Result(
            f"memory: peak RSS growth {large_n} / {small_n} inputs",
            ratio,
            "x",
            target=1.2,
            better="lower",
            ratio=ratio,
            note=(
                f"growth {small['growth_mb']:.1f} MB vs {large['growth_mb']:.1f} MB over "
                f"{small['rss_before_mb']:.0f} MB; peak {small['peak_rss_mb']:.0f} vs {large['peak_rss_mb']:.0f} MB; "
                f"keeping the inputs would take {materialised:.0f} MB"
            ),
            details={"small": small, "large": large, "noise_floor_mb": NOISE_FLOOR_MB},
        ),
        Result(
            "memory: inputs classified",
            large["ok"] + small["ok"],
            "items",
            target=large_n + small_n,
            ratio=(large["ok"] + small["ok"]) / (large_n + small_n),
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), Path(sys.argv[2]))))
