"""Secrets: with DEBUG logging on everywhere, no key or token shows up anywhere a user can see.

Each row does something with real keys (the emulator's) or distinctive wrong ones — classify, fail to
authenticate, train, run a batch, run the CLI — and gathers everything it could leak into: every log
record of every logger (``azvision``, ``azure``, ``msrest``, ``urllib3``, ``requests``, ``httpx``,
``httpcore``) formatted with its traceback, every exception's ``str``, ``repr``, error JSON and full
chained traceback, every ``repr`` of a backend or result, the CLI's stdout, stderr and output file. None
of it may contain a key.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AzureKeyCredential

from azvision import (
    AuthenticationError,
    AzureMLEndpointBackend,
    AzVisionError,
    CustomVisionBackend,
    CustomVisionTrainer,
    ImageAnalysisBackend,
    Prediction,
)

from .conftest import NO_RETRY, PUBLISH_NAME, World, encode, stripes
from .servers import JSON, HostileServer, Reply, Seen

WRONG = {
    "custom_vision": "WRONG-prediction-key-4c1d8e77f0",
    "image_analysis": "WRONG-vision-key-9a2b3c4d5e",
    "azure_ml": "WRONG-aml-key-6f7e8d9c0b",
    "trainer": "WRONG-training-key-1a2b3c4d5e",
    "token": "WRONG-entra-token-eyJhbGciOi",
}
LOGGERS = ("azvision", "azure", "msrest", "urllib3", "requests", "httpx", "httpcore")
IMAGE = encode(stripes("horizontal", 80))


class _Token:
    """An azure-core TokenCredential handing out a fixed token (Entra ID cannot run offline)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2**31 - 1)


def _error_texts(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, AzVisionError):
        texts.append(json.dumps(error.to_dict()))
    return texts


def _outcome_texts(outcome: Prediction | AzVisionError) -> list[str]:
    if isinstance(outcome, Prediction):
        return [repr(outcome), json.dumps(outcome.to_dict()), outcome._repr_html_()]
    return _error_texts(outcome)


def _use(clf: Any, images: Iterable[Any] = (IMAGE,)) -> list[str]:
    """Classify with ``clf``; everything the user could print afterwards."""
    texts = [repr(clf), str(clf)]
    with clf:
        for image in images:
            try:
                texts += _outcome_texts(clf.classify(image))
            except AzVisionError as error:
                texts += _error_texts(error)
        texts += [text for o in clf.classify_many(list(images)) for text in _outcome_texts(o)]
    return texts


def _cv(world: World, key: str) -> CustomVisionBackend:
    return CustomVisionBackend(world.emulator.endpoint, key, world.project_id, PUBLISH_NAME, retry=NO_RETRY)


def _ia(world: World, key: str | None = None, **options: Any) -> ImageAnalysisBackend:
    return ImageAnalysisBackend(world.emulator.endpoint, key, retry=NO_RETRY, **options)


def _aml(world: World, key: str | None = None, **options: Any) -> AzureMLEndpointBackend:
    return AzureMLEndpointBackend(world.aml.aml_scoring_uri("classifier"), key, retry=NO_RETRY, **options)


def _train(world: World, key: str) -> list[str]:
    emu = world.emulator
    trainer = CustomVisionTrainer(emu.endpoint, key, prediction_key=emu.prediction_key, max_rps=None)
    texts = [repr(trainer), str(trainer)]
    with trainer:
        try:
            texts.append(repr(trainer.find_project("stripes")))
        except AzVisionError as error:
            texts += _error_texts(error)
    return texts


def _key_echoing_service(world: World) -> list[str]:
    """A gateway that quotes the key it was given in its 401 message (some proxies do)."""

    def refuse(seen: Seen) -> Reply:
        given = next((v for k, v in seen.headers.items() if "key" in k or k == "authorization"), "")
        body = json.dumps({"error": {"code": "401", "message": f"Access denied for key '{given}'."}})
        return Reply(401, JSON, body.encode())

    texts = []
    with HostileServer(refuse) as server:
        for clf in (
            CustomVisionBackend(server.url, WRONG["custom_vision"], world.project_id, "It", retry=NO_RETRY),
            ImageAnalysisBackend(server.url, WRONG["image_analysis"], retry=NO_RETRY),
            ImageAnalysisBackend(server.url, WRONG["image_analysis"], mode="categories", retry=NO_RETRY),
            AzureMLEndpointBackend(server.url + "/score", WRONG["azure_ml"], retry=NO_RETRY),
        ):
            with clf, pytest.raises(AuthenticationError) as info:
                clf.classify(IMAGE)
            texts += _error_texts(info.value)
    return texts


@dataclass(frozen=True)
class Row:
    id: str
    run: Callable[[World], list[str]]
    xfail: str | None = None
    #: Whether the row sends requests (then the vendor clients' DEBUG logs must have been captured).
    talks: bool = True


BAD_INPUTS = (IMAGE, b"", b"not an image")
ROWS = [
    Row("custom-vision-right-key", lambda w: _use(_cv(w, w.emulator.prediction_key), BAD_INPUTS)),
    Row("custom-vision-wrong-key", lambda w: _use(_cv(w, WRONG["custom_vision"]), BAD_INPUTS)),
    Row("image-analysis-right-key", lambda w: _use(_ia(w, w.emulator.vision_key))),
    Row("image-analysis-wrong-key", lambda w: _use(_ia(w, WRONG["image_analysis"]))),
    Row("image-analysis-key-credential", lambda w: _use(_ia(w, credential=AzureKeyCredential(w.emulator.vision_key)))),
    Row("image-analysis-token-credential", lambda w: _use(_ia(w, credential=_Token(w.emulator.vision_key)))),
    Row("image-analysis-wrong-token", lambda w: _use(_ia(w, credential=_Token(WRONG["token"])))),
    Row("categories-right-key", lambda w: _use(_ia(w, w.emulator.vision_key, mode="categories"))),
    Row("categories-wrong-key", lambda w: _use(_ia(w, WRONG["image_analysis"], mode="categories"))),
    Row("categories-token-credential", lambda w: _use(_ia(w, credential=_Token(w.emulator.vision_key), mode="categories"))),
    Row("azure-ml-right-key", lambda w: _use(_aml(w, w.aml.aml_key), BAD_INPUTS)),
    Row("azure-ml-wrong-key", lambda w: _use(_aml(w, WRONG["azure_ml"]), BAD_INPUTS)),
    Row("azure-ml-token-credential", lambda w: _use(_aml(w, credential=_Token(w.aml.aml_key)))),
    Row("azure-ml-wrong-token", lambda w: _use(_aml(w, credential=_Token(WRONG["token"])))),
    Row("trainer-right-key", lambda w: _train(w, w.emulator.training_key)),
    Row("trainer-wrong-key", lambda w: _train(w, WRONG["trainer"])),
    Row("emulator-and-aml-repr", lambda w: [repr(w.emulator), str(w.emulator), repr(w.aml)], talks=False),
    Row("service-echoes-the-key-in-its-error", _key_echoing_service),
]  # fmt: skip


def _secrets(world: World) -> list[str]:
    return [*world.secret_keys(), *WRONG.values()]


def _leaks(texts: Iterable[str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(secret, text[:300]) for text in texts for secret in secrets if secret in text]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """DEBUG on for every logger; returns a function giving every record as a user's handler formats it."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return lambda: [formatter.format(record) for record in caplog.records]


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.xfail)] if r.xfail else [])
        for r in ROWS
    ],
)
def test_no_secret_anywhere(row: Row, world: World, debug_logs: Callable[[], list[str]]) -> None:
    texts = row.run(world)
    logs = debug_logs()
    assert any("127.0.0.1" in line for line in logs) == row.talks  # the clients' DEBUG traffic was captured
    assert _leaks([*texts, *logs], _secrets(world)) == []


# -- the command line, with DEBUG logging on in the subprocess -----------------------------------------------
_DEBUG_CLI = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
    "from azvision.cli import main; sys.argv[0] = 'azvision'; main()"
)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _DEBUG_CLI, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # it runs the CLI against the Azure ML emulator too
def test_no_secret_in_cli_output_logs_or_error_json(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(IMAGE)
    (folder / "broken.png").write_bytes(IMAGE[:50])
    emu = world.emulator
    cv = ["--backend", "custom_vision", "--endpoint", emu.endpoint, "--project-id", world.project_id,
          "--iteration", PUBLISH_NAME]  # fmt: skip
    aml = ["--backend", "azure_ml", "--scoring-uri", world.aml.aml_scoring_uri("classifier")]
    runs = {
        "right-key-flag": (["classify", str(folder), *cv, "--key", emu.prediction_key], {}),
        "wrong-key-env": (
            ["classify", str(folder), *cv],
            {"CUSTOM_VISION_PREDICTION_KEY": WRONG["custom_vision"]},
        ),
        "aml-wrong-key-flag": (["classify", str(folder), *aml, "--key", WRONG["azure_ml"]], {}),
    }
    texts = []
    for name, (args, env) in runs.items():
        out = tmp_path / f"{name}.jsonl"
        result = _cli([*args, "--output", str(out)], env)
        assert result.returncode == 1, (name, result.stderr[-2000:])
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        errors = {r["error"]["type"] for r in records if r["error"]}
        expected = (
            {"InvalidImageError"}
            if name == "right-key-flag"
            else {"InvalidImageError", "AuthenticationError"}
        )
        assert errors == expected, name
        assert "DEBUG" in result.stderr  # the logging really was on
        texts += [result.stdout, result.stderr, out.read_text(encoding="utf-8")]
    assert _leaks(texts, _secrets(world)) == []
