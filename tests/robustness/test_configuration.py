"""The configuration matrix: every wrong setting is refused up front, with the fix in the message.

A refused row must raise :class:`ConfigurationError` before any request is sent, and its message must
name what to change: the argument *and* the environment variable. A working row (trailing slash, values
from the environment, explicit argument over the environment) must classify for real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AzureKeyCredential
from typer.testing import CliRunner

from azvision import (
    AzureMLEndpointBackend,
    ConfigurationError,
    CustomVisionBackend,
    CustomVisionTrainer,
    ImageAnalysisBackend,
    OnnxBackend,
    Prediction,
    create_classifier,
)
from azvision.cli import app

from .conftest import NO_RETRY, PUBLISH_NAME, World, encode, stripes

FAKE_ENDPOINT = "https://myres.cognitiveservices.azure.com"
FAKE_SCORING_URI = "https://dogs.westeurope.inference.ml.azure.com/score"
A_UUID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
KEY = "fake-key-CONFIG-5e0b1d"


class _Token:
    """A stand-in azure-core TokenCredential (Entra ID cannot run offline)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token-CONFIG-9c4f", 2**31 - 1)


@dataclass(frozen=True)
class Refused:
    """``ConfigurationError`` whose message holds every fragment."""

    says: tuple[str, ...]


@dataclass(frozen=True)
class Works:
    """The built classifier classifies a stripes image."""

    label: str | None = "horizontal"


@dataclass(frozen=True)
class Row:
    id: str
    build: Callable[[World], Any]
    expect: Refused | Works
    env: Callable[[World], dict[str, str]] = field(default=lambda w: {})


def _cv(world: World, **changes: Any) -> CustomVisionBackend:
    emu = world.emulator
    args: dict[str, Any] = {
        "endpoint": emu.endpoint,
        "key": emu.prediction_key,
        "project_id": world.project_id,
    }
    args |= {"iteration": PUBLISH_NAME, "retry": NO_RETRY} | changes
    return CustomVisionBackend(**args)


def _cv_env(world: World) -> dict[str, str]:
    return {
        "CUSTOM_VISION_PREDICTION_ENDPOINT": world.emulator.endpoint + "/",
        "CUSTOM_VISION_PREDICTION_KEY": world.emulator.prediction_key,
        "CUSTOM_VISION_PROJECT_ID": world.project_id,
        "CUSTOM_VISION_ITERATION_NAME": PUBLISH_NAME,
    }


ROWS = [
    # -- missing settings: the argument and the environment variable are both named --------------------
    Row("cv-missing-endpoint", lambda w: CustomVisionBackend(None, KEY, A_UUID, "Iteration1"),
        Refused(("endpoint=", "CUSTOM_VISION_PREDICTION_ENDPOINT"))),
    Row("cv-missing-key", lambda w: CustomVisionBackend(FAKE_ENDPOINT, None, A_UUID, "Iteration1"),
        Refused(("key=", "CUSTOM_VISION_PREDICTION_KEY"))),
    Row("cv-missing-project", lambda w: CustomVisionBackend(FAKE_ENDPOINT, KEY, None, "Iteration1"),
        Refused(("project_id=", "CUSTOM_VISION_PROJECT_ID"))),
    Row("cv-missing-iteration", lambda w: CustomVisionBackend(FAKE_ENDPOINT, KEY, A_UUID, None),
        Refused(("iteration=", "CUSTOM_VISION_ITERATION_NAME"))),
    Row("ia-missing-endpoint", lambda w: ImageAnalysisBackend(None, KEY), Refused(("endpoint=", "VISION_ENDPOINT"))),
    Row("ia-missing-key", lambda w: ImageAnalysisBackend(FAKE_ENDPOINT), Refused(("key=", "VISION_KEY"))),
    Row("aml-missing-scoring-uri", lambda w: AzureMLEndpointBackend(None, KEY),
        Refused(("scoring_uri=", "AZUREML_SCORING_URI"))),
    Row("aml-missing-key", lambda w: AzureMLEndpointBackend(FAKE_SCORING_URI),
        Refused(("key=", "AZUREML_ENDPOINT_KEY", "credential="))),
    Row("onnx-missing-model-path", lambda w: OnnxBackend(), Refused(("model_path=", "AZVISION_ONNX_MODEL_PATH"))),
    Row("onnx-model-path-does-not-exist", lambda w: OnnxBackend("no/such/export.zip"),
        Refused(("no/such/export.zip", "does not exist"))),
    Row("trainer-missing-endpoint", lambda w: CustomVisionTrainer(None, KEY),
        Refused(("endpoint=", "CUSTOM_VISION_TRAINING_ENDPOINT"))),
    Row("trainer-missing-key", lambda w: CustomVisionTrainer(FAKE_ENDPOINT),
        Refused(("training_key=", "CUSTOM_VISION_TRAINING_KEY"))),
    Row("factory-missing-backend", lambda w: create_classifier(), Refused(("AZVISION_BACKEND", "custom_vision"))),
    Row("factory-missing-endpoint", lambda w: create_classifier("custom_vision"),
        Refused(("endpoint=", "CUSTOM_VISION_PREDICTION_ENDPOINT"))),
    # -- malformed settings ------------------------------------------------------------------------------
    Row("endpoint-without-scheme", lambda w: CustomVisionBackend("myres.cognitiveservices.azure.com", KEY, A_UUID, "It"),
        Refused(("full URL with a scheme", "https://myres.cognitiveservices.azure.com/"))),
    Row("endpoint-without-scheme-from-env", lambda w: ImageAnalysisBackend(key=KEY),
        Refused(("VISION_ENDPOINT", "full URL with a scheme", "https://myres.cognitiveservices.azure.com/")),
        env=lambda w: {"VISION_ENDPOINT": "myres.cognitiveservices.azure.com"}),
    Row("scoring-uri-without-scheme", lambda w: AzureMLEndpointBackend("dogs.westeurope.inference.ml.azure.com/score", KEY),
        Refused(("scoring_uri", "full URL with a scheme"))),
    Row("endpoint-with-ftp-scheme", lambda w: CustomVisionBackend("ftp://myres.cognitiveservices.azure.com", KEY, A_UUID, "It"),
        Refused(("endpoint", "https://"))),
    Row("project-id-not-a-uuid", lambda w: CustomVisionBackend(FAKE_ENDPOINT, KEY, "my-flowers-project", "It"),
        Refused(("project_id", "must be a UUID", "'my-flowers-project'"))),
    Row("project-id-not-a-uuid-from-env", lambda w: CustomVisionBackend(FAKE_ENDPOINT, KEY, None, "It"),
        Refused(("CUSTOM_VISION_PROJECT_ID", "must be a UUID")),
        env=lambda w: {"CUSTOM_VISION_PROJECT_ID": "flowers"}),
    Row("unknown-backend-name", lambda w: create_classifier("custom-vison"),
        Refused(("unknown backend 'custom-vison'", "azure_ml, azure_openai, custom_vision, image_analysis, onnx"))),
    Row("unknown-backend-from-env", lambda w: create_classifier(),
        Refused(("unknown backend 'tensorflow'", "custom_vision")), env=lambda w: {"AZVISION_BACKEND": "tensorflow"}),
    Row("ia-key-and-credential", lambda w: ImageAnalysisBackend(FAKE_ENDPOINT, KEY, credential=_Token()),
        Refused(("key", "credential", "not both"))),
    Row("ia-key-and-key-credential", lambda w: ImageAnalysisBackend(FAKE_ENDPOINT, KEY, credential=AzureKeyCredential(KEY)),
        Refused(("key", "credential", "not both"))),
    Row("aml-key-and-credential", lambda w: AzureMLEndpointBackend(FAKE_SCORING_URI, KEY, credential=_Token()),
        Refused(("key", "credential", "not both"))),
    Row("ia-token-over-plain-http", lambda w: ImageAnalysisBackend("http://myres.example.com", credential=_Token()),
        Refused(("https://",))),
    # -- settings that must work -------------------------------------------------------------------------
    Row("cv-trailing-slash", lambda w: _cv(w, endpoint=w.emulator.endpoint + "/"), Works()),
    Row("ia-trailing-slash", lambda w: ImageAnalysisBackend(w.emulator.endpoint + "/", w.emulator.vision_key),
        Works(label=None)),
    Row("aml-trailing-slash", lambda w: AzureMLEndpointBackend(w.aml.aml_scoring_uri("classifier") + "/", w.aml.aml_key),
        Works()),
    Row("cv-everything-from-env", lambda w: CustomVisionBackend(retry=NO_RETRY), Works(), env=_cv_env),
    Row("factory-everything-from-env", lambda w: create_classifier(retry=NO_RETRY), Works(),
        env=lambda w: {**_cv_env(w), "AZVISION_BACKEND": "custom_vision"}),
    Row("explicit-key-wins-over-env", lambda w: _cv(w), Works(),
        env=lambda w: {"CUSTOM_VISION_PREDICTION_KEY": "stale-key-from-env"}),
    Row("endpoint-with-spaces-and-newline-from-env", lambda w: ImageAnalysisBackend(key=w.emulator.vision_key),
        Works(label=None), env=lambda w: {"VISION_ENDPOINT": f"  {w.emulator.endpoint}/\n"}),
    Row("project-id-in-capitals-with-braces", lambda w: _cv(w, project_id="{" + w.project_id.upper() + "}"), Works()),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_configuration(row: Row, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in row.env(world).items():
        monkeypatch.setenv(name, value)
    before = world.emulator.stats()
    if isinstance(row.expect, Refused):
        with pytest.raises(ConfigurationError) as info:
            row.build(world)
        for fragment in row.expect.says:
            assert fragment in str(info.value)
        assert KEY not in str(info.value) + repr(info.value)
        assert world.emulator.stats() == before  # refused before any request
        return
    with row.build(world) as clf:
        prediction = clf.classify(encode(stripes("horizontal", 21)))
    assert isinstance(prediction, Prediction)
    if row.expect.label is not None:
        assert prediction.label == row.expect.label


# -- the same mistakes on the command line: exit 2, one line, no traceback, the fix named -------------
runner = CliRunner()


def _cli_rows() -> Iterator[Any]:
    rows = {
        "cli-custom-vision-missing-endpoint": (["-b", "custom_vision"], "CUSTOM_VISION_PREDICTION_ENDPOINT"),
        "cli-image-analysis-missing-endpoint": (["-b", "image_analysis"], "VISION_ENDPOINT"),
        "cli-azure-ml-missing-scoring-uri": (["-b", "azure_ml"], "AZUREML_SCORING_URI"),
        "cli-onnx-missing-model-path": (["-b", "onnx"], "AZVISION_ONNX_MODEL_PATH"),
        "cli-unknown-backend": (["-b", "tensorflow"], "choose one of: azure_ml, azure_openai, custom_vision"),
        "cli-endpoint-without-scheme": (
            ["-b", "image_analysis", "--endpoint", "myres.cognitiveservices.azure.com", "--key", KEY],
            "https://myres.cognitiveservices.azure.com/",
        ),
        "cli-project-id-not-a-uuid": (
            ["-b", "custom_vision", "--endpoint", FAKE_ENDPOINT, "--key", KEY, "--project-id", "flowers"],
            "must be a UUID",
        ),
    }
    for name, (args, says) in rows.items():
        yield pytest.param(args, says, id=name)


@pytest.mark.parametrize(("args", "says"), list(_cli_rows()))
def test_configuration_on_the_command_line(args: list[str], says: str, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(encode(stripes("horizontal", 22)))
    result = runner.invoke(app, ["classify", str(image), *args], catch_exceptions=False)
    assert result.exit_code == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert KEY not in result.stdout + result.stderr
