"""AzureMLEndpointBackend against the emulator's AML gateway and real ``azmlinfsrv`` processes.

The classifier endpoint runs ``examples/aml/score.py`` on a Custom Vision-style compact export that the
emulator's learner trains on coloured images; the other endpoints run small scripts written here. The
first run builds the inference server's virtual environment (see ``azvision.emulator._inference_server``).
"""

from __future__ import annotations

import asyncio
import io
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from PIL import Image

from azvision import (
    AuthenticationError,
    AzVisionError,
    BackendTimeoutError,
    NotFoundError,
    Prediction,
    RateLimitError,
    RetryPolicy,
    ServiceError,
)
from azvision.backends.azure_ml import TOKEN_SCOPE, AzureMLEndpointBackend
from azvision.emulator import AmlEndpointSpec, EmulatorConfig
from azvision.emulator._features import get_feature_extractor
from azvision.emulator._head import train_head
from azvision.emulator._onnx_export import export_model_bytes
from azvision.emulator._server import Emulator

EXAMPLE_SCORE = Path(__file__).parents[2] / "examples" / "aml" / "score.py"
COLOURS = {"red": (220, 30, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}
NO_RETRY = RetryPolicy(max_attempts=1)

# Undecorated run(data) gets the body as a str; returning a str makes the server JSON-encode it again.
COLOUR_JSON_SCRIPT = """
import base64, io, json
from PIL import Image

def init():
    pass

def run(data):
    image = Image.open(io.BytesIO(base64.b64decode(json.loads(data)["image"]))).convert("RGB")
    r, g, b = image.resize((1, 1)).getpixel((0, 0))
    if r + g + b == 0:
        raise ValueError("black images break this model")
    name, value = max(zip(("red", "green", "blue"), (r, g, b)), key=lambda item: item[1])
    return json.dumps({"label": name, "confidence": round(value / (r + g + b), 4)})
"""
SLEEPY_SCRIPT = """
import time

def init():
    pass

def run(data):
    time.sleep(0.3)
    return {"done": 1.0}
"""


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 72)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, inference_python: Path) -> Iterator[Emulator]:
    folder = tmp_path_factory.mktemp("aml")
    export = folder / "export"
    export.mkdir()
    names = list(COLOURS)
    shades = [
        _png(tuple(min(255, c + 12 * i) for c in rgb))  # type: ignore[arg-type]
        for rgb in COLOURS.values()
        for i in range(5)
    ]
    head = train_head(
        get_feature_extractor().features(shades), [[k] for k in range(3) for _ in range(5)], names
    )
    (export / "model.onnx").write_bytes(export_model_bytes(head))
    (export / "labels.txt").write_text("\n".join(names), encoding="utf-8")
    (folder / "colour_json.py").write_text(textwrap.dedent(COLOUR_JSON_SCRIPT), encoding="utf-8")
    (folder / "sleepy.py").write_text(textwrap.dedent(SLEEPY_SCRIPT), encoding="utf-8")
    config = EmulatorConfig(
        aml_endpoints={  # type: ignore[dict-item]
            "classifier": AmlEndpointSpec(EXAMPLE_SCORE, model_dir=export, deployments=("blue", "green")),
            "colours": AmlEndpointSpec(folder / "colour_json.py"),
            "sluggish": AmlEndpointSpec(folder / "sleepy.py", request_timeout_ms=150),
            "busy": AmlEndpointSpec(folder / "sleepy.py", max_concurrent_requests=1),
        }
    )
    with Emulator.from_config(config) as emu:
        yield emu


def _backend(emu: Emulator, name: str, **options: Any) -> AzureMLEndpointBackend:
    options.setdefault("key", emu.aml_key)
    options.setdefault("retry", NO_RETRY)
    return AzureMLEndpointBackend(emu.aml_scoring_uri(name), **options)


@pytest.mark.parametrize("request_format", ["raw", "automl"])
def test_example_score_script_classifies_each_colour(emulator: Emulator, request_format: str) -> None:
    with _backend(emulator, "classifier", request_format=request_format) as clf:
        for name, rgb in COLOURS.items():
            prediction = clf.classify(_png(rgb, size=(320, 240)))
            assert prediction.label == name
            assert {lab.name for lab in prediction.labels} == set(COLOURS)
            assert sum(lab.confidence for lab in prediction.labels) == pytest.approx(1.0, abs=1e-3)
            assert prediction.model == "blue"  # the endpoint's traffic went to its first deployment


def test_deployment_header_pins_the_deployment(emulator: Emulator) -> None:
    with _backend(emulator, "classifier", deployment="green") as clf:
        prediction = clf.classify(_png(COLOURS["green"]))
    assert (prediction.label, prediction.model) == ("green", "green")


def test_double_encoded_json_string_answer_is_read(emulator: Emulator) -> None:
    with _backend(emulator, "colours", request_format="json") as clf:
        prediction = clf.classify(_png((30, 40, 200)))
    assert prediction.label == "blue" and prediction.confidence == pytest.approx(200 / 270, abs=1e-3)
    assert prediction.raw == {"label": "blue", "confidence": pytest.approx(200 / 270, abs=1e-3)}


def test_scoring_script_failure_is_a_424_service_error(emulator: Emulator) -> None:
    with _backend(emulator, "colours", request_format="json") as clf, pytest.raises(ServiceError) as info:
        clf.classify(_png((0, 0, 0)))
    assert info.value.status_code == 424 and "status 500" in str(info.value)
    assert not info.value.retryable


def test_raw_bytes_to_a_text_script_fail_as_a_model_error(emulator: Emulator) -> None:
    with _backend(emulator, "colours") as clf, pytest.raises(ServiceError) as info:
        clf.classify(_png((200, 10, 10)))  # PNG bytes are not UTF-8: the server's 400 becomes a 424
    assert info.value.status_code == 424 and "status 400" in str(info.value)


def test_wrong_key_is_an_authentication_error_without_the_key(emulator: Emulator) -> None:
    wrong = "not-the-key-" + emulator.aml_key[::-1]
    with _backend(emulator, "classifier", key=wrong) as clf, pytest.raises(AuthenticationError) as info:
        clf.classify(_png(COLOURS["red"]))
    text = str(info.value) + repr(info.value)
    assert wrong not in text and emulator.aml_key not in text
    assert info.value.status_code == 401


def test_unknown_deployment_is_not_found(emulator: Emulator) -> None:
    with _backend(emulator, "classifier", deployment="purple") as clf, pytest.raises(NotFoundError) as info:
        clf.classify(_png(COLOURS["red"]))
    assert "'purple'" in str(info.value) and "No valid deployments" in str(info.value)


def test_request_timeout_is_a_backend_timeout(emulator: Emulator) -> None:
    with (
        _backend(emulator, "sluggish", request_format="json") as clf,
        pytest.raises(BackendTimeoutError) as info,
    ):
        clf.classify(_png(COLOURS["red"]))
    assert info.value.status_code == 408


def test_too_many_pending_requests_are_429_and_retried(emulator: Emulator) -> None:
    images = [_png(COLOURS["red"])] * 4
    with _backend(emulator, "busy", request_format="json") as clf:
        # The deployment takes 2 requests in flight (1 instance, max_concurrent_requests_per_instance=1).
        flooded = list(clf.classify_many(images, concurrency=4))
        assert any(isinstance(o, RateLimitError) for o in flooded)
        assert sum(isinstance(o, Prediction) for o in flooded) >= 2
        assert all(isinstance(o, Prediction) for o in clf.classify_many(images))  # default concurrency fits
    patient = RetryPolicy(max_attempts=10, backoff_base=0.1, backoff_max=0.4, deadline=30)
    with _backend(emulator, "busy", request_format="json", retry=patient) as clf:
        outcomes = list(clf.classify_many(images, concurrency=4))
    assert [type(o) for o in outcomes] == [Prediction] * 4


class _KeyAsToken:
    """Entra ID cannot run offline: hand out the emulator's key as the bearer token instead."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        return AccessToken(self.token, 2**31 - 1)


def test_token_credential_and_native_async_path(emulator: Emulator) -> None:
    credential = _KeyAsToken(emulator.aml_key)
    clf = _backend(emulator, "classifier", key=None, credential=credential, request_format="automl")

    async def run() -> list[Prediction | AzVisionError]:
        try:
            single = await clf.aclassify(_png(COLOURS["blue"]))
            many = [o async for o in clf.aclassify_many([_png(rgb) for rgb in COLOURS.values()])]
            return [single, *many]
        finally:
            await clf.aclose()

    outcomes = asyncio.run(run())
    assert [o.label if isinstance(o, Prediction) else o for o in outcomes] == ["blue", "red", "green", "blue"]
    assert credential.calls == [(TOKEN_SCOPE,)]
