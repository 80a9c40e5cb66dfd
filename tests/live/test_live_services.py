"""Against the real Azure services — skipped unless their settings are in the environment.

Set the variables a backend reads (the names the Azure samples use) and ``AZVISION_LIVE_IMAGE`` (a local
image path; ``AZVISION_LIVE_LABEL`` optionally its expected label), then run ``pytest tests/live -m live``.
The autouse fixture that hides Azure settings from the rest of the suite is bypassed here on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import azvision

pytestmark = pytest.mark.live

REQUIRED = {
    "custom_vision": (
        "CUSTOM_VISION_PREDICTION_ENDPOINT",
        "CUSTOM_VISION_PREDICTION_KEY",
        "CUSTOM_VISION_PROJECT_ID",
        "CUSTOM_VISION_ITERATION_NAME",
    ),
    "image_analysis": ("VISION_ENDPOINT", "VISION_KEY"),
    "azure_ml": ("AZUREML_SCORING_URI", "AZUREML_ENDPOINT_KEY"),
}
_REAL_ENV = dict(os.environ)  # read at import, before the autouse fixture clears the Azure variables


@pytest.fixture(params=sorted(REQUIRED))
def live_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[azvision.Classifier]:
    name = request.param
    missing = [var for var in (*REQUIRED[name], "AZVISION_LIVE_IMAGE") if not _REAL_ENV.get(var)]
    if missing:
        pytest.skip(f"live {name}: set {', '.join(missing)}")
    for var in (*REQUIRED[name], "AZUREML_DEPLOYMENT"):
        if _REAL_ENV.get(var):
            monkeypatch.setenv(var, _REAL_ENV[var])
    with azvision.create_classifier(name) as clf:
        yield clf


def test_a_real_image_gets_a_prediction(live_backend: azvision.Classifier) -> None:
    prediction = live_backend.classify(_REAL_ENV["AZVISION_LIVE_IMAGE"])
    assert prediction.labels
    expected = _REAL_ENV.get("AZVISION_LIVE_LABEL")
    if expected and prediction.backend != "image_analysis":
        assert prediction.label == expected


def test_a_batch_keeps_order_and_reports_a_bad_input(live_backend: azvision.Classifier) -> None:
    image = _REAL_ENV["AZVISION_LIVE_IMAGE"]
    outcomes = list(live_backend.classify_many([image, b"", image], max_rps=2))
    assert [type(o).__name__ for o in outcomes] == ["Prediction", "InvalidImageError", "Prediction"]
