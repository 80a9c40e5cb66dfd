"""The emulator server: lifecycle, control routes, fault knobs, ``serve`` and the pytest fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import CustomVisionErrorException
from msrest.authentication import ApiKeyCredentials

from azvision.emulator import Emulator

DOMAINS = "/customvision/v3.3/training/domains"
DOMAINS_ROUTE = f"GET {DOMAINS}"


def get_domains(client: httpx.Client, emu: Emulator) -> httpx.Response:
    return client.get(emu.endpoint + DOMAINS, headers={"Training-Key": emu.training_key})


def control(emu: Emulator) -> dict[str, str]:
    """The header the ``/_emulator/*`` routes need."""
    return {"Training-Key": emu.training_key}


def test_starts_on_loopback_and_stops_cleanly() -> None:
    emu = Emulator().start()
    try:
        assert emu.endpoint.startswith("http://127.0.0.1:")
        assert emu.training_key not in repr(emu) and emu.prediction_key not in repr(emu)
        assert httpx.get(emu.endpoint + "/_emulator/stats", headers=control(emu)).json() == {}
    finally:
        emu.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(emu.endpoint + "/_emulator/stats")
    emu.stop()  # stopping twice is harmless


def test_stats_and_reset_routes() -> None:
    with Emulator() as emu, httpx.Client() as client:
        trainer = CustomVisionTrainingClient(
            emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
        )
        project = trainer.create_project("to be reset")
        trainer.get_project(project.id)
        client.get(emu.endpoint + DOMAINS, headers={"Training-Key": "wrong"})
        assert client.get(emu.endpoint + "/nowhere").json() == {
            "error": {"code": "404", "message": "Resource not found"}
        }
        expected = {
            "POST /customvision/v3.4-preview/training/projects": {"200": 1},
            "GET /customvision/v3.4-preview/training/projects/{projectId}": {"200": 1},
            DOMAINS_ROUTE: {"401": 1},
            "GET /nowhere": {"404": 1},
        }
        assert emu.stats() == expected
        assert client.get(emu.endpoint + "/_emulator/stats", headers=control(emu)).json() == expected

        assert client.post(emu.endpoint + "/_emulator/reset", headers=control(emu)).status_code == 204
        assert emu.stats() == {}
        assert trainer.get_projects() == []


def test_rate_limit_answers_429_with_retry_after_per_service_and_key() -> None:
    with Emulator(rate_limit_tps=1) as emu:
        trainer = CustomVisionTrainingClient(
            emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
        )
        trainer.create_project("first")
        with pytest.raises(CustomVisionErrorException) as excinfo:
            trainer.create_project("second")
        response = excinfo.value.response
        assert response.status_code == 429
        retry_after = int(response.headers["Retry-After"])
        assert retry_after >= 1
        message = response.json()["error"]["message"]
        assert response.json()["error"]["code"] == "429"
        assert message.startswith(
            "Requests to the CreateProject Operation under Custom_Vision_Training_3.4-preview"
        )
        assert f"Please retry after {retry_after} second" in message
        # Another key has its own bucket (here: the wrong key gets its 401, not a 429).
        other = httpx.get(emu.endpoint + DOMAINS, headers={"Training-Key": "someone-else"})
        assert other.status_code == 401
        time.sleep(retry_after)
        assert trainer.create_project("second").name == "second"
        assert emu.stats()["POST /customvision/v3.4-preview/training/projects"] == {"200": 2, "429": 1}


def test_fail_rate_is_reproducible_with_the_seed() -> None:
    def statuses(seed: int) -> list[tuple[int, str | None]]:
        with Emulator(fail_rate=0.3, seed=seed) as emu, httpx.Client() as client:
            answers = [get_domains(client, emu) for _ in range(30)]
            failed = sum(1 for r in answers if r.status_code >= 500)
            assert emu.stats()[DOMAINS_ROUTE].get("200", 0) == 30 - failed
            return [(r.status_code, r.headers.get("retry-after")) for r in answers]

    first = statuses(seed=5)
    assert statuses(seed=5) == first
    assert statuses(seed=6) != first
    assert {status for status, _ in first} == {200, 500, 503}
    assert {retry for status, retry in first if status == 503} == {"1"}


def test_dropped_connections_get_no_response_and_are_counted() -> None:
    with Emulator(drop_rate=1.0) as emu, httpx.Client() as client:
        for _ in range(3):
            with pytest.raises(httpx.RemoteProtocolError):
                get_domains(client, emu)
        stats = client.get(emu.endpoint + "/_emulator/stats", headers=control(emu))
        assert stats.json() == {DOMAINS_ROUTE: {"dropped": 3}}


def test_latency_delays_service_routes_only() -> None:
    # A client whose timeout is far below the added latency times out on a service route and is
    # answered on a control route: what is checked is which answers arrive, not how long they took.
    with Emulator(latency_ms=60_000) as emu, httpx.Client(timeout=2.0) as client:
        with pytest.raises(httpx.ReadTimeout):
            get_domains(client, emu)
        assert client.get(emu.endpoint + "/_emulator/stats", headers=control(emu)).status_code == 200


def test_aml_scoring_uri_of_an_unknown_endpoint_is_an_error() -> None:
    with Emulator() as emu, pytest.raises(KeyError, match="no Azure ML endpoint 'dogs'"):
        emu.aml_scoring_uri("dogs")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_one_json_line_and_exits_on_signal(stop_signal: signal.Signals) -> None:
    code = "from azvision.emulator import EmulatorConfig, serve; serve(EmulatorConfig(seed=1))"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        timer = threading.Timer(20, process.kill)
        timer.start()
        line = process.stdout.readline() if process.stdout else ""
        timer.cancel()
        info = json.loads(line)
        assert set(info) == {
            "endpoint",
            "training_key",
            "prediction_key",
            "vision_key",
            "prediction_resource_id",
            "aml_key",
            "openai_key",
            "aml_scoring_uris",
        }
        assert info["aml_scoring_uris"] == {}
        answer = httpx.get(info["endpoint"] + DOMAINS, headers={"Training-Key": info["training_key"]})
        assert answer.status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=20) == 0
        assert process.stdout is not None and process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.azvision_emulator(seed=9, latency_ms=1)
def test_pytest_fixture_takes_its_options_from_the_marker(azvision_emulator: Emulator) -> None:
    assert azvision_emulator.config.seed == 9 and azvision_emulator.config.latency_ms == 1
    answer = httpx.get(azvision_emulator.endpoint + "/_emulator/stats", headers=control(azvision_emulator))
    assert answer.status_code == 200
