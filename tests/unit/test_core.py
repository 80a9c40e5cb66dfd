"""Models, errors, settings, the registry and the public surface."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import azvision
from azvision import (
    AuthenticationError,
    BackendTimeoutError,
    BoundingBox,
    ConfigurationError,
    InvalidImageError,
    Label,
    NotFoundError,
    Prediction,
    RateLimitError,
    ServiceError,
    create_classifier,
)
from azvision._config import Secret, endpoint_setting, secret_setting, setting, uuid_setting
from azvision._error_mapping import error_from_http, parse_retry_after
from tests.conftest import shared_path


def test_public_all_is_sorted_and_covers_design_names() -> None:
    assert azvision.__all__ == sorted(azvision.__all__)
    design_names = {
        "Classifier", "CustomVisionBackend", "ImageAnalysisBackend", "AzureMLEndpointBackend", "OnnxBackend",
        "create_classifier", "Prediction", "Label", "BoundingBox", "CustomVisionTrainer", "AzVisionError",
        "ConfigurationError", "InvalidImageError", "AuthenticationError", "NotFoundError", "RateLimitError",
        "ServiceError", "TrainingError", "BackendTimeoutError", "BackendConnectionError",
    }  # fmt: skip
    assert design_names <= set(azvision.__all__)
    for name in azvision.__all__:
        assert getattr(azvision, name) is not None  # lazy names resolve too


def test_the_design_lists_no_public_name_the_package_lacks() -> None:
    table = shared_path("DESIGN.md").read_text().split("## Public Python API", 1)[1]
    table = table.split("### `Prediction`", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)", table, flags=re.M)) | set(re.findall(r"`(\w+Error)`", table))
    assert listed
    assert listed <= set(azvision.__all__)


def test_prediction_sorts_labels_and_exposes_top() -> None:
    p = Prediction(
        labels=[
            Label(name="b", confidence=0.1),
            Label(name="a", confidence=0.8),
            Label(name="c", confidence=0.1),
        ],
        backend="x",
        raw={"secret": "payload"},
    )
    assert p.label == "a" and p.confidence == 0.8 and p.top == p.labels[0]
    assert "payload" not in repr(p)
    assert Prediction(backend="x").label is None and Prediction(backend="x").confidence == 0.0
    with pytest.raises(ValueError):
        Label(name="x", confidence=1.5)
    assert Label(name="x", confidence=1.0000001).confidence == 1.0


def test_prediction_html_has_bars_and_thumbnail(png_bytes: bytes) -> None:
    p = Prediction(
        labels=[
            Label(name="<cat>", confidence=0.75, box=BoundingBox(left=0.1, top=0.1, width=0.5, height=0.5))
        ],
        backend="onnx",
        source="cat.png",
    ).with_image(png_bytes)
    html = p._repr_html_()
    assert "&lt;cat&gt;" in html and "75.0%" in html and "data:image/png;base64," in html


def test_bounding_box_clipping() -> None:
    box = BoundingBox.clipped(-0.05, 0.9, 0.5, 0.3)
    assert (box.left, box.top, box.width) == (0.0, 0.9, 0.45)
    assert box.bottom == 1.0


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "code"),
    [
        (401, {}, b'{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}', AuthenticationError, "401"),
        (404, {}, b'{"code":"NotFoundProject","message":"Project not found"}', NotFoundError, "NotFoundProject"),
        (400, {}, b'{"code":"BadRequest","message":"Invalid iteration"}', NotFoundError, "BadRequest"),
        (429, {"Retry-After": "3"}, b'{"error":{"code":"429","message":"rate limit"}}', RateLimitError, "429"),
        (408, {}, b'{"message":"Request timed out"}', BackendTimeoutError, None),
        (424, {"ms-azureml-model-error-statuscode": "500"}, b'{"message":"An unexpected error occurred in scoring script."}', ServiceError, None),
        (400, {}, b'{"error":{"code":"InvalidRequest","message":"bad","innererror":{"code":"InvalidImageSize","message":"too small"}}}', InvalidImageError, "InvalidImageSize"),
        (502, {}, b"<html><body>Bad Gateway</body></html>", ServiceError, None),
    ],
)  # fmt: skip
def test_error_envelopes_map_to_types(
    status: int, headers: dict[str, str], body: bytes, cls: type[Exception], code: str | None
) -> None:
    err = error_from_http(status, headers, body, service="Svc")
    assert type(err) is cls
    assert err.status_code == status and err.code == code
    if status == 502:
        assert "Bad Gateway" in err.message  # the first bytes of a non-JSON body are shown
    if status == 424:
        assert "scoring script failed (its status 500)" in err.message and not err.retryable


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"x-ms-retry-after-ms": "100", "Retry-After": "9"}) == 0.1
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_settings_explicit_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISION_ENDPOINT", "https://env.example.com")
    assert (
        setting("https://arg.example.com", arg="endpoint", env="VISION_ENDPOINT") == "https://arg.example.com"
    )
    assert setting(None, arg="endpoint", env="VISION_ENDPOINT") == "https://env.example.com"


def test_missing_setting_names_argument_and_variable() -> None:
    with pytest.raises(
        ConfigurationError, match=r"missing key: pass key=\.\.\. or set the environment variable VISION_KEY"
    ):
        secret_setting(None, arg="key", env="VISION_KEY")


@pytest.mark.parametrize(
    ("raw", "message"),
    [("example.cognitiveservices.azure.com", "scheme"), ("ftp://x.com", "https://"), ("https://", "host")],
)
def test_bad_endpoints(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        endpoint_setting(raw, arg="endpoint", env="VISION_ENDPOINT")


def test_endpoint_trailing_slash_and_uuid() -> None:
    assert endpoint_setting("https://x.com/", arg="endpoint", env=None) == "https://x.com"
    with pytest.raises(ConfigurationError, match="must be a UUID"):
        uuid_setting("my-project", arg="project_id", env="CUSTOM_VISION_PROJECT_ID")


def test_secret_never_shows() -> None:
    s = Secret("sk-DISTINCTIVE-123")
    assert "DISTINCTIVE" not in repr(s) + str(s) + f"{s}" + repr([s])
    assert s.get() == "sk-DISTINCTIVE-123"


def test_factory_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="AZVISION_BACKEND"):
        create_classifier()
    with pytest.raises(
        ConfigurationError, match="choose one of: azure_ml, azure_openai, custom_vision, image_analysis, onnx"
    ):
        create_classifier("nope")


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, azvision; heavy = [m for m in ('onnxruntime', 'azure.ai.ml', 'azvision.emulator._server', "
        "'starlette', 'msrest', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _modules_after(statement: str, *modules: str) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``statement``."""
    import subprocess
    import sys

    code = f"import json, sys; {statement}; print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_evaluation_and_datasets_load_neither_the_trainer_nor_msrest() -> None:
    trainer = ("msrest", "azure.cognitiveservices", "azvision.training", "azvision.training.custom_vision")
    assert _modules_after("import azvision.evaluation", *trainer) == []
    assert _modules_after("from azvision import Dataset; Dataset.from_folder", *trainer) == []


def test_dataset_lives_in_the_core_and_the_old_path_is_an_alias() -> None:
    import azvision.datasets
    from azvision.training import Dataset as FromTraining
    from azvision.training.datasets import Dataset as FromOldModule
    from azvision.training.models import SkippedFile

    assert azvision.Dataset is azvision.datasets.Dataset is FromTraining is FromOldModule
    assert SkippedFile is azvision.datasets.SkippedFile


def test_public_signature_types_are_exported_lazily() -> None:
    from azvision._config import Secret as PrivateSecret
    from azvision._images import ImageLike, LoadedImage
    from azvision.backends._base import BaseBackend
    from azvision.backends._taxonomy import LabelMap

    assert azvision.Secret is PrivateSecret and azvision.ImageLike is ImageLike
    assert azvision.LoadedImage is LoadedImage and azvision.BaseBackend is BaseBackend
    assert azvision.LabelMap is LabelMap
    lazy = ("azvision.backends._base", "azvision.backends._taxonomy", "azvision.datasets", "PIL", "httpx")
    assert _modules_after("import azvision", *lazy) == []


def test_version_comes_from_the_installed_metadata() -> None:
    import importlib
    from importlib.metadata import version

    assert azvision.__version__ == version("azvision")
    for module in ("azvision.cli.app", "azvision.backends.azure_ml"):
        assert importlib.import_module(module).__version__ is azvision.__version__
    src = Path(azvision.__file__).parent
    assigned = [p.name for p in src.rglob("*.py") if re.search(r"^\s*__version__\b.*=", p.read_text(), re.M)]
    assert assigned == ["_version.py"]


def test_canonical_name_folds_case_dashes_and_aliases() -> None:
    assert azvision.canonical_name("Custom-Vision") == "custom_vision"
    assert azvision.canonical_name(" AML ") == "azure_ml"
    assert azvision.canonical_name("image-analysis") == "image_analysis"
    assert azvision.canonical_name("no-such-backend") == "no_such_backend"
    project = "00000000-0000-0000-0000-000000000000"
    clf = create_classifier(
        "Custom-Vision", endpoint="https://x.example", key="k", project_id=project, iteration="i"
    )
    assert type(clf).__name__ == "CustomVisionBackend"
    clf.close()  # type: ignore[attr-defined]


def test_known_backends_say_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    known = azvision.known_backends()
    assert sorted(known) == ["azure_ml", "azure_openai", "custom_vision", "image_analysis", "onnx"]
    assert known["onnx"].install_hint == "pip install 'azvision[onnx]'"
    assert known["azure_openai"].install_hint == "pip install 'azvision[openai]'"
    assert known["custom_vision"].extra is None and "custom-vision" in known["custom_vision"].aliases
    azvision.register_backend("ghost", "azvision_no_such_package.mod:Ghost")
    try:
        info = azvision.known_backends()["ghost"]
        assert info.extra is None and info.import_path == "azvision_no_such_package.mod:Ghost"
        with pytest.raises(ConfigurationError, match="backend 'ghost' cannot be loaded"):
            create_classifier("ghost")
    finally:
        from azvision._registry import _registered

        _registered.pop("ghost")
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    monkeypatch.delitem(__import__("sys").modules, "azvision.backends.onnx", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install 'azvision\[onnx\]'"):
        known["onnx"].load()
