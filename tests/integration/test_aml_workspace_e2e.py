"""from_workspace end to end: the real MLClient reads the endpoint from a stand-in ARM, then the backend
classifies through the emulator's AML gateway and a real ``azmlinfsrv`` running a small scoring script.

The first run builds the inference server's virtual environment (see ``azvision.emulator._inference_server``).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from azvision import AuthenticationError, RetryPolicy
from azvision.backends.azure_ml import AzureMLEndpointBackend
from azvision.emulator._server import Emulator
from tests.unit.test_aml_workspace import FakeArm, endpoint

COLOUR_SCRIPT = """
import base64, io, json
from PIL import Image

def init():
    pass

def run(data):
    image = Image.open(io.BytesIO(base64.b64decode(json.loads(data)["image"]))).convert("RGB")
    r, g, b = image.resize((1, 1)).getpixel((0, 0))
    name, value = max(zip(("red", "green", "blue"), (r, g, b)), key=lambda item: item[1])
    return {"label": name, "confidence": round(value / (r + g + b), 4)}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, inference_python: Path) -> Iterator[Emulator]:
    script = Path(tmp_path_factory.mktemp("aml-ws")) / "colours.py"
    script.write_text(textwrap.dedent(COLOUR_SCRIPT), encoding="utf-8")
    with Emulator(aml_endpoints={"colours": script}) as emu:
        yield emu


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("auth_mode", ["Key", "AMLToken"])
def test_backend_found_in_the_workspace_classifies(emulator: Emulator, auth_mode: str) -> None:
    uri = emulator.aml_scoring_uri("colours")
    arm = FakeArm({"colours": endpoint(uri, auth_mode)}, keys=(emulator.aml_key, "unused"))
    arm.aml_token = emulator.aml_key  # the emulator's gateway takes one bearer secret for both modes
    with AzureMLEndpointBackend.from_workspace(
        "colours", ml_client=arm.ml_client(), request_format="json"
    ) as clf:
        assert clf.scoring_uri == uri
        prediction = clf.classify(_png((30, 200, 40)))
    assert prediction.label == "green"
    assert prediction.confidence == pytest.approx(200 / 270, abs=1e-3)


def test_stale_workspace_key_is_refused_by_the_endpoint(emulator: Emulator) -> None:
    arm = FakeArm({"colours": endpoint(emulator.aml_scoring_uri("colours"))}, keys=("rotated-away", "x"))
    clf = AzureMLEndpointBackend.from_workspace(
        "colours", ml_client=arm.ml_client(), request_format="json", retry=RetryPolicy(max_attempts=1)
    )
    with clf, pytest.raises(AuthenticationError) as info:
        clf.classify(_png((200, 30, 20)))
    assert info.value.status_code == 401 and "rotated-away" not in str(info.value)
