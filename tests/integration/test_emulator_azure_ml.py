"""The emulated Azure ML online endpoint: a gateway in front of real ``azmlinfsrv`` processes.

The first run builds the inference server's own virtual environment (pip, about a minute; cached
under ``AZVISION_CACHE_DIR`` or ``~/.cache/azvision`` afterwards).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from azvision.emulator import AmlEndpointSpec
from azvision.emulator._azure_ml import AzureMLService
from azvision.emulator._context import EmulatorConfig, EmulatorContext
from azvision.emulator._inference_server import (
    InferenceServer,
    InferenceServerError,
)
from azvision.emulator._server import Emulator
from tests.conftest import REAL_EXPORTS

SCRIPTS = Path(__file__).parent / "aml_scripts"
EXAMPLE_SCORE = Path(__file__).parents[2] / "examples" / "aml" / "score.py"
REAL_EXPORT = REAL_EXPORTS / "hemlock-japanese-cherry"
LABELS = ("blue", "green", "red")


# Every test here runs the inference server from its own virtual environment (the session fixture
# inference_python, in tests/conftest.py, builds it once per run and marks its users slow).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact-export look-alike: ``data`` [N,3,224,224] BGR 0-255 → ``model_output`` [N,3].

    It scores the mean of each channel, so a pure-colour image gets its colour's label — and a
    script that fed RGB instead of BGR would swap "red" and "blue".
    """
    weights = np.zeros((3, 3), dtype=np.float32)
    weights[0, 0] = weights[1, 1] = weights[2, 2] = 0.05  # B→blue, G→green, R→red
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["data"], ["means"], axes=[2, 3], keepdims=0),
            helper.make_node("Gemm", ["means", "weights", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
        ],
        "colour_classifier",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 224, 224])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [None, len(LABELS)])],
        [
            onnx.numpy_helper.from_array(weights, "weights"),
            onnx.numpy_helper.from_array(np.zeros(3, dtype=np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    helper.set_model_props(
        model, {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"}
    )
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("export")
    onnx.save(model, folder / "model.onnx")
    (folder / "labels.txt").write_text("\n".join(LABELS), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def emulator(inference_python: Path, model_dir: Path) -> Iterator[Emulator]:
    endpoints = {
        "classifier": AmlEndpointSpec(EXAMPLE_SCORE, model_dir=model_dir),
        "echo": AmlEndpointSpec(SCRIPTS / "echo.py", deployments=("blue", "green")),
        "broken": AmlEndpointSpec(SCRIPTS / "raises.py"),
        "sluggish": AmlEndpointSpec(SCRIPTS / "slow.py", request_timeout_ms=300),
        "busy": AmlEndpointSpec(SCRIPTS / "slow.py", max_concurrent_requests=1),
    }
    if REAL_EXPORT.is_dir():  # its test skips or fails (needs_shared) when it is missing
        endpoints["legacy"] = AmlEndpointSpec(EXAMPLE_SCORE, model_dir=REAL_EXPORT)
    config = EmulatorConfig(aml_endpoints=endpoints)
    with Emulator.from_config(config) as emu:
        yield emu


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _auth(emu: Emulator, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.aml_key}", **extra}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_raw_image_is_scored_by_the_example_script(emulator: Emulator) -> None:
    response = httpx.post(
        emulator.aml_scoring_uri("classifier"),
        content=_png((250, 20, 10)),
        headers=_auth(emulator, **{"Content-Type": "application/octet-stream"}),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()
    assert result["labels"] == list(LABELS)
    assert result["labels"][int(np.argmax(result["probs"]))] == "red"
    assert sum(result["probs"]) == pytest.approx(1.0, abs=1e-4)
    assert response.headers["azureml-model-deployment"] == "blue"
    assert response.headers["x-ms-server-version"].startswith("azmlinfsrv/")


def test_automl_json_batch_gets_one_answer_per_image(emulator: Emulator) -> None:
    images = [_png((10, 20, 240)), _png((20, 230, 30), size=(200, 400))]
    payload = {
        "input_data": {
            "columns": ["image"],
            "data": [base64.b64encode(i).decode() for i in images],
        }
    }
    response = httpx.post(
        emulator.aml_scoring_uri("classifier"), json=payload, headers=_auth(emulator), timeout=30
    )
    assert response.status_code == 200, response.text
    tops = [r["labels"][int(np.argmax(r["probs"]))] for r in response.json()]
    assert tops == ["blue", "green"]


@pytest.mark.parametrize(
    ("photo", "label"),
    [("japanese_cherry_6.jpg", "JapaneseCherry"), ("hemlock_test_image.jpg", "hemlock")],
)
@pytest.mark.needs_shared("fixtures/real-custom-vision-exports/hemlock-japanese-cherry")
def test_example_script_runs_a_real_2018_custom_vision_export(
    emulator: Emulator, photo: str, label: str
) -> None:
    response = httpx.post(
        emulator.aml_scoring_uri("legacy"),
        content=(REAL_EXPORT / photo).read_bytes(),
        headers=_auth(emulator, **{"Content-Type": "application/octet-stream"}),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()
    assert sorted(result["labels"]) == ["JapaneseCherry", "hemlock"]
    assert result["labels"][int(np.argmax(result["probs"]))] == label


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Basic {key}", "{key}"],
    ids=["missing", "wrong-key", "basic-scheme", "no-scheme"],
)
def test_requests_without_the_bearer_key_are_401(emulator: Emulator, authorization: str | None) -> None:
    headers = {"Authorization": authorization.format(key=emulator.aml_key)} if authorization else {}
    response = httpx.post(emulator.aml_scoring_uri("echo"), content=b"{}", headers=headers)
    assert response.status_code == 401
    assert response.text == "key_auth_access_denied"
    assert emulator.aml_key not in response.text


def test_deployment_header_routes_to_that_deployments_server(emulator: Emulator) -> None:
    def ask(deployment: str | None) -> httpx.Response:
        extra = {"azureml-model-deployment": deployment} if deployment else {}
        return httpx.post(emulator.aml_scoring_uri("echo"), content=b"hi", headers=_auth(emulator, **extra))

    blue, green, default = ask("blue"), ask("green"), ask(None)
    assert [r.headers["azureml-model-deployment"] for r in (blue, green, default)] == [
        "blue",
        "green",
        "blue",  # without the header, traffic rules apply: all of it goes to the first one
    ]
    assert blue.json()["pid"] != green.json()["pid"]
    assert default.json()["pid"] == blue.json()["pid"]
    assert blue.json()["body"] == "hi"
    assert blue.json()["authorization"] is None  # the key stops at the gateway


def test_unknown_deployment_is_404(emulator: Emulator) -> None:
    response = httpx.post(
        emulator.aml_scoring_uri("echo"),
        content=b"{}",
        headers=_auth(emulator, **{"azureml-model-deployment": "purple"}),
    )
    assert response.status_code == 404
    assert "No valid deployments to route to" in response.text


def test_script_exception_is_424_with_model_error_headers(emulator: Emulator) -> None:
    response = httpx.post(emulator.aml_scoring_uri("broken"), content=b"{}", headers=_auth(emulator))
    assert response.status_code == 424
    assert response.headers["ms-azureml-model-error-statuscode"] == "500"
    assert response.headers["ms-azureml-model-error-reason"] == "model_error"
    assert "scoring script" in response.json()["message"]


def test_script_refusing_input_is_424_carrying_its_400(emulator: Emulator) -> None:
    response = httpx.post(
        emulator.aml_scoring_uri("classifier"),
        json={"input_data": {"data": ["not base64!"]}},
        headers=_auth(emulator),
        timeout=30,
    )
    assert response.status_code == 424
    assert response.headers["ms-azureml-model-error-statuscode"] == "400"
    assert "base64" in response.json()["message"]


def test_slow_script_is_cut_off_with_408(emulator: Emulator) -> None:
    def timeouts() -> int:
        return sum(counts.get("408", 0) for route, counts in emulator.stats().items() if "/aml/" in route)

    before = timeouts()
    response = httpx.post(
        emulator.aml_scoring_uri("sluggish"),
        json={"sleep": 1.5},
        headers=_auth(emulator),
        timeout=10,
    )
    assert response.status_code == 408
    assert timeouts() == before + 1


async def test_requests_beyond_twice_max_concurrency_are_429(emulator: Emulator) -> None:
    async with httpx.AsyncClient(headers=_auth(emulator), timeout=10) as client:

        async def call() -> int:
            uri = emulator.aml_scoring_uri("busy")
            return (await client.post(uri, json={"sleep": 0.6})).status_code

        statuses = await asyncio.gather(*(call() for _ in range(4)))
    # max_concurrent_requests=1 × 1 instance: two in flight (one running, one queued) fit.
    assert sorted(statuses) == [200, 200, 429, 429]


def test_failing_init_fails_start_with_the_servers_log(inference_python: Path) -> None:
    ctx = EmulatorContext(EmulatorConfig(aml_endpoints={"bad": SCRIPTS / "bad_init.py"}), endpoint="http://x")
    service = AzureMLService(ctx)
    with pytest.raises(InferenceServerError, match=r"model\.onnx is not in AZUREML_MODEL_DIR") as caught:
        service.start(timeout=60)
    named = re.search(r"last lines of (\S+\.log)", str(caught.value))
    assert named is not None and "bad/blue" in str(caught.value)
    log = Path(named[1])
    assert log.is_file()  # kept for the user to read
    shutil.rmtree(log.parent)
    assert ctx.services["azure_ml"] is service


def test_stop_ends_the_server_and_its_workers(inference_python: Path, tmp_path: Path) -> None:
    server = InferenceServer(inference_python, SCRIPTS / "echo.py", None, label="echo/blue", log_dir=tmp_path)
    server.start(timeout=60)
    try:
        worker = httpx.post(server.url + "/score", content=b"x").json()["pid"]
        master = server._process.pid if server._process else -1
        assert _alive(worker) and _alive(master)
    finally:
        server.stop()
    assert _wait_gone([master, worker]) == []
    assert not server.running


def test_servers_exit_when_the_emulator_process_dies(inference_python: Path, tmp_path: Path) -> None:
    parent = f"""
import json, os, signal, httpx
from pathlib import Path
from azvision.emulator._inference_server import InferenceServer
server = InferenceServer(Path({str(inference_python)!r}), Path({str(SCRIPTS / "echo.py")!r}),
                         None, label="orphan", log_dir=Path({str(tmp_path)!r}))
server.start(timeout=60)
worker = httpx.post(server.url + "/score", content=b"x").json()["pid"]
print(json.dumps([server._process.pid, worker]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=90, check=False
    )
    pids = json.loads(done.stdout.strip().splitlines()[-1])
    assert _wait_gone(pids) == []
