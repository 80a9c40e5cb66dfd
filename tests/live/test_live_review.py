"""The review queue against a real Custom Vision resource — skipped unless its settings are set.

Needs the prediction variables (``CUSTOM_VISION_PREDICTION_ENDPOINT``, ``…_KEY``, ``…_PROJECT_ID``,
``…_ITERATION_NAME``), the training ones (``CUSTOM_VISION_TRAINING_ENDPOINT``, ``…_KEY``) and
``AZVISION_LIVE_IMAGE``. Nothing is added to the project: the stored prediction this test makes is found in
the queue, a skip decision is accounted for, and the prediction is deleted again.
"""

from __future__ import annotations

import os
import time

import pytest

import azvision
from azvision.training._quicktest import QuickTestClassifier

pytestmark = pytest.mark.live

NEEDED = (
    "CUSTOM_VISION_PREDICTION_ENDPOINT",
    "CUSTOM_VISION_PREDICTION_KEY",
    "CUSTOM_VISION_PROJECT_ID",
    "CUSTOM_VISION_ITERATION_NAME",
    "CUSTOM_VISION_TRAINING_ENDPOINT",
    "CUSTOM_VISION_TRAINING_KEY",
    "AZVISION_LIVE_IMAGE",
)
_REAL_ENV = dict(os.environ)  # read at import, before the autouse fixture clears the Azure variables


def test_a_stored_prediction_reaches_the_review_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [var for var in NEEDED if not _REAL_ENV.get(var)]
    if missing:
        pytest.skip(f"live review: set {', '.join(missing)}")
    for var in NEEDED:
        monkeypatch.setenv(var, _REAL_ENV[var])
    project_id = _REAL_ENV["CUSTOM_VISION_PROJECT_ID"]
    with azvision.create_classifier("custom_vision", store=True) as clf:
        made = clf.classify(_REAL_ENV["AZVISION_LIVE_IMAGE"])
    prediction_id = made.raw["id"]
    with azvision.CustomVisionTrainer() as trainer:
        try:
            deadline = time.monotonic() + 120
            while True:  # stored predictions show up after a short while
                queue = trainer.review_queue(project_id, max_confidence=1.0)
                if any(item.prediction_id == prediction_id for item in queue) or time.monotonic() > deadline:
                    break
                time.sleep(5)
            item = next(item for item in queue if item.prediction_id == prediction_id)
            assert item.suggestions and item.image_uri.startswith("https://")
            assert trainer.accept(project_id, {prediction_id: None}).counts()["skipped"] == 1
            iteration = next(it for it in trainer.iterations(project_id) if it.publish_name)
            with QuickTestClassifier(trainer, project_id, iteration.id) as quick:
                assert quick.classify(_REAL_ENV["AZVISION_LIVE_IMAGE"]).label == made.label
        finally:
            trainer._client().delete_prediction(project_id, ids=[prediction_id])
