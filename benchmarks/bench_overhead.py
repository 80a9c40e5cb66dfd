"""Benchmark 3 — what azvision costs per call on top of the official client.

A zero-latency emulator; 500 sequential calls each way on the same images, for Custom Vision
(``CustomVisionPredictionClient.classify_image_with_no_store`` vs ``CustomVisionBackend.classify``) and
Image Analysis (``ImageAnalysisClient.analyze`` with tags vs ``ImageAnalysisBackend.classify``). The two
sides alternate in rounds (and which goes first alternates too), so drift on a busy machine hits both
alike; the figure is the median of the rounds' ratios. Target: azvision ≤ 1.05 × the raw client's wall
time per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.core.credentials import AzureKeyCredential
from msrest.authentication import ApiKeyCredentials

from azvision import CustomVisionBackend, ImageAnalysisBackend

from ._common import Lab, Result, alternate, bench_image

NAME = "overhead"
ROUNDS = 25
WARM_UP = 5


def run(lab: Lab) -> list[Result]:
    """Raw client vs azvision, per call, for both services."""
    n = lab.settings.scale(500, 100)
    images = [bench_image(i) for i in range(n)]
    project = lab.project
    results: list[Result] = []
    with lab.emulator() as emu:
        predictor = CustomVisionPredictionClient(  # type: ignore[no-untyped-call]
            emu.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": emu.prediction_key})
        )
        analyzer = ImageAnalysisClient(emu.endpoint, AzureKeyCredential(emu.vision_key))
        with (
            CustomVisionBackend(
                emu.endpoint, emu.prediction_key, project.project_id, project.publish_name, store=False
            ) as cv,
            ImageAnalysisBackend(emu.endpoint, emu.vision_key, features=("tags",)) as ia,
        ):
            comparisons: dict[str, dict[str, Callable[[bytes], Any]]] = {
                "Custom Vision": {
                    "official": lambda data: predictor.classify_image_with_no_store(  # type: ignore[no-untyped-call]
                        project.project_id, project.publish_name, data
                    ),
                    "azvision": cv.classify,
                },
                "Image Analysis": {
                    "official": lambda data: analyzer.analyze(data, [VisualFeatures.TAGS]),
                    "azvision": ia.classify,
                },
            }
            for service, sides in comparisons.items():
                per_call, ratio = alternate(sides, images, ROUNDS, warm_up=WARM_UP)
                results.append(
                    Result(
                        f"overhead {service}: azvision / official per call",
                        ratio,
                        "x",
                        target=1.05,
                        better="lower",
                        ratio=ratio,
                        note=(
                            f"median of {ROUNDS} alternating rounds; {n} sequential calls each, zero latency: official "
                            f"{per_call['official'] * 1000:.2f} ms, azvision {per_call['azvision'] * 1000:.2f} ms"
                        ),
                        details={f"{side}_ms_per_call": s * 1000 for side, s in per_call.items()},
                    )
                )
        predictor.close()
        analyzer.close()
    return results
