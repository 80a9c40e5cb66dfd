"""Keys as users really hold them: read from a file with Windows line endings, pasted with a stray NUL, or
quoted back by a service in an escaped or URL-encoded form.

Every backend is built for real and talks to a loopback :class:`HostileServer` that checks the key it
receives and, when told to, echoes it back in each of the forms a message may carry. With DEBUG logging on
for every client library, no form of a key may show in ``str``, ``repr``, the chained traceback, the error
JSON or any log record.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from azvision import (
    AuthenticationError,
    AzureMLEndpointBackend,
    AzVisionError,
    ConfigurationError,
    CustomVisionBackend,
    ImageAnalysisBackend,
    RetryPolicy,
)
from azvision._config import _forms

from .conftest import encode, stripes
from .servers import HTML, JSON, HostileServer, Reply, Seen

KEY = "Zq9\\kR+/x=7Lw4mB"  # a backslash, '+', '/' and '=': repr and URL-encoding both change it
NO_RETRY = RetryPolicy(max_attempts=1)
IMAGE = encode(stripes("horizontal", 80))
LOGGERS = ("azvision", "azure", "msrest", "urllib3", "requests", "httpx", "httpcore")
PROJECT = str(uuid.uuid4())
#: What each backend's service answers to a request carrying the right key.
ANSWERS = {
    "custom_vision": {"id": "1", "predictions": [{"tagId": "t", "tagName": "cat", "probability": 0.9}]},
    "image_analysis": {"modelVersion": "2023-10-01", "metadata": {"width": 80, "height": 80},
                       "tagsResult": {"values": [{"name": "cat", "confidence": 0.9}]}},
    "categories": {"categories": [{"name": "animal_cat", "score": 0.9}]},
    "azure_ml": {"label": "cat", "confidence": 0.9},
}  # fmt: skip


def _given_key(seen: Seen) -> str:
    for name, value in seen.headers.items():
        if name.lower() in {"prediction-key", "ocp-apim-subscription-key"}:
            return value
        if name.lower() == "authorization":
            return value.removeprefix("Bearer ")
    return ""


def _service(answer: dict[str, Any]) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        if _given_key(seen) != KEY:
            return Reply(401, JSON, b'{"error": {"code": "401", "message": "Access denied."}}')
        return Reply(200, JSON, json.dumps(answer).encode())

    return reply


def _build(name: str, url: str, key: str | None) -> Any:
    if name == "custom_vision":
        return CustomVisionBackend(url, key, PROJECT, "Iteration1", retry=NO_RETRY)
    if name == "image_analysis":
        return ImageAnalysisBackend(url, key, retry=NO_RETRY)
    if name == "categories":
        return ImageAnalysisBackend(url, key, mode="categories", retry=NO_RETRY)
    return AzureMLEndpointBackend(url + "/score", key, retry=NO_RETRY)


BACKENDS = tuple(ANSWERS)
ENV_KEYS = {
    "custom_vision": "CUSTOM_VISION_PREDICTION_KEY",
    "image_analysis": "VISION_KEY",
    "categories": "VISION_KEY",
    "azure_ml": "AZUREML_ENDPOINT_KEY",
}


# -- surrounding whitespace is stripped -------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
def test_a_key_read_from_a_windows_file_works(name: str, tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(KEY.encode() + b"\r\n")
    key = key_file.read_bytes().decode().rstrip("\n")  # what `read().rstrip("\n")` leaves: a trailing \r
    assert key.endswith("\r")
    with HostileServer(_service(ANSWERS[name])) as server, _build(name, server.url, key) as clf:
        assert clf.classify(IMAGE).label in {"cat", "animal_cat"}
        assert len(server.requests) == 1  # sent once, not retried as a connection error


@pytest.mark.parametrize("name", BACKENDS)
def test_a_key_from_the_environment_with_spaces_and_crlf_works(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEYS[name], f"  {KEY}\t\r\n")
    with HostileServer(_service(ANSWERS[name])) as server, _build(name, server.url, None) as clf:
        assert clf.classify(IMAGE).label in {"cat", "animal_cat"}


# -- any other control character is refused when the backend is built ----------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("bad", ["\x00", "\r", "\n", "\x1b", "\x7f", "\u2028"])
def test_a_key_with_a_control_character_inside_is_a_configuration_error(name: str, bad: str) -> None:
    key = KEY[:5] + bad + KEY[5:]
    with pytest.raises(ConfigurationError, match=f"U\\+{ord(bad):04X}") as info:
        _build(name, "http://127.0.0.1:9", key)
    _assert_no_key([str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))], key)


def test_the_environment_variable_is_named_when_its_key_is_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_KEY", KEY[:5] + "\x1b" + KEY[5:])  # an environment cannot hold a NUL
    with pytest.raises(ConfigurationError, match=r"key \(from VISION_KEY\): .*U\+001B"):
        ImageAnalysisBackend("http://127.0.0.1:9")


# -- every form of the key is masked wherever the service quotes it ------------------------------------------
def _echoes(seen: Seen) -> Reply:
    given = _given_key(seen)
    message = f"Access denied for {given!r} (key={quote(given, safe='')}, form={quote(given).lower()})"
    if seen.path.endswith("/html"):
        return Reply(401, HTML, f"<html><body>{message}</body></html>".encode())
    return Reply(401, JSON, json.dumps({"error": {"code": "401", "message": message}}).encode())


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.DEBUG)
    for logger in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=logger)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return lambda: [formatter.format(record) for record in caplog.records]


def _texts(error: AzVisionError) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error)), json.dumps(error.to_dict())]


def _assert_no_key(texts: list[str], key: str = KEY) -> None:
    forms = _forms(key) | _forms(KEY) | _forms(KEY[5:])  # KEY[5:]: what follows a bad character
    leaks = [(form, text[:300]) for text in texts for form in forms if form in text]
    assert leaks == []


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("body", ["json", "html"])
def test_a_key_echoed_raw_escaped_or_url_encoded_never_shows(
    name: str, body: str, debug_logs: Callable[[], list[str]]
) -> None:
    with HostileServer(_echoes) as server:
        url = server.url + ("/html" if body == "html" else "")
        with _build(name, url, KEY + "\r\n") as clf, pytest.raises(AuthenticationError) as info:
            clf.classify(IMAGE)
        outcomes = list(_build(name, url, KEY).classify_many([IMAGE]))
    texts = _texts(info.value) + [t for o in outcomes if isinstance(o, AzVisionError) for t in _texts(o)]
    logs = debug_logs()
    assert any("127.0.0.1" in line for line in logs)  # the clients' DEBUG traffic was captured
    assert "***" in str(info.value) or body == "html"  # the message was kept, with the key masked
    _assert_no_key(texts + logs)
