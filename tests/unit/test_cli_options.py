"""Backend options: flags, --config (TOML/JSON, per-backend tables), --opt, and what reaches each backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import azvision
from azvision import ConfigurationError
from azvision._config import Secret
from azvision._registry import _registered
from azvision.cli._options import BackendOptions, BackendSpec, Redactor


class CloudFake:
    """Signature like the cloud backends (endpoint, key, features, label_map, credential)."""

    def __init__(
        self,
        endpoint: str | None = None,
        key: str | Secret | None = None,
        *,
        features: tuple[str, ...] = ("tags",),
        label_map: Any = None,
        credential: Any = None,
        timeout: float = 30.0,
    ) -> None:
        self.kwargs = {"endpoint": endpoint, "key": key, "features": features, "label_map": label_map,
                       "credential": credential, "timeout": timeout}  # fmt: skip


class LocalFake:
    """Signature like the ONNX backend."""

    def __init__(self, model_path: str | None = None, *, labels_path: str | None = None) -> None:
        self.kwargs = {"model_path": model_path, "labels_path": labels_path}


@pytest.fixture(autouse=True)
def _fakes() -> Iterator[None]:
    azvision.register_backend("cloud_fake", CloudFake)
    azvision.register_backend("local_fake", LocalFake)
    yield
    for name in ("cloud_fake", "local_fake"):
        _registered.pop(name, None)


def kwargs_of(options: BackendOptions, *backends: str) -> list[dict[str, Any]]:
    return [dict(spec.kwargs) for spec in options.resolve(list(backends))]


def test_only_given_flags_are_passed_so_the_backend_reads_its_environment() -> None:
    assert kwargs_of(BackendOptions(flags={"endpoint": "https://e"}), "cloud_fake") == [
        {"endpoint": "https://e"}
    ]
    assert kwargs_of(BackendOptions(), "cloud_fake") == [{}]


def test_precedence_config_then_section_then_flags_then_targeted_opt(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('endpoint = "https://shared"\ntimeout = 5\n[cloud_fake]\nendpoint = "https://section"\n')
    assert kwargs_of(BackendOptions(config=cfg), "cloud_fake") == [
        {"endpoint": "https://section", "timeout": 5}
    ]
    flags = BackendOptions(flags={"endpoint": "https://flag"}, config=cfg)
    assert kwargs_of(flags, "cloud_fake")[0]["endpoint"] == "https://flag"
    targeted = BackendOptions(
        flags={"endpoint": "https://flag"}, opts=["cloud_fake.endpoint=https://opt"], config=cfg
    )
    assert kwargs_of(targeted, "cloud_fake")[0]["endpoint"] == "https://opt"


def test_opt_values_are_strings_unless_given_as_json() -> None:
    options = BackendOptions(opts=["timeout:=2.5", 'features:=["tags", "caption"]', "endpoint=123"])
    assert kwargs_of(options, "cloud_fake") == [
        {"timeout": 2.5, "features": ["tags", "caption"], "endpoint": "123"}
    ]


def test_json_config_with_backend_choice_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "c.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"backend": "local-fake", "local_fake": {"model-path": "export.zip"}}))
    options = BackendOptions(config=cfg)
    assert options.backend_names([]) == ["local_fake"]
    assert kwargs_of(options) == [{"model_path": str(tmp_path / "conf" / "export.zip")}]


def test_compare_sends_shared_options_where_they_fit_and_targeted_ones_to_their_backend() -> None:
    options = BackendOptions(
        flags={"endpoint": "https://e", "key": "k"}, opts=["local_fake.model_path=m.onnx"]
    )
    cloud, local = kwargs_of(options, "cloud_fake", "local_fake")
    assert cloud == {"endpoint": "https://e", "key": "k"}
    assert local == {"model_path": "m.onnx"}


@pytest.mark.parametrize(
    ("options", "backends", "message"),
    [
        (
            BackendOptions(flags={"model_path": "m"}),
            ["cloud_fake"],
            "--model-path is not an option of backend",
        ),
        (
            BackendOptions(flags={"task": "x"}),
            ["cloud_fake", "local_fake"],
            "--task is not an option of any of",
        ),
        (BackendOptions(opts=["local_fake.endpoint=x"]), ["local_fake"], "has no option --endpoint"),
        (BackendOptions(opts=["nosuch.key=x"]), ["local_fake"], "unknown backend 'nosuch'"),
        (BackendOptions(opts=["timeout:=nope"]), ["cloud_fake"], "needs a JSON value"),
        (BackendOptions(), ["cloud_fake", "cloud-fake"], "each backend can be given once"),
        (BackendOptions(), [], "missing backend"),
    ],
)
def test_mistakes_are_configuration_errors(
    options: BackendOptions, backends: list[str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        options.resolve(backends)


def test_invalid_config_files_say_which_and_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("endpoint = \n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        BackendOptions(config=bad).resolve(["cloud_fake"])
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="must hold a table"):
        BackendOptions(config=listing).resolve(["cloud_fake"])


def test_create_converts_key_features_label_map_and_rejects_unknown_credentials(tmp_path: Path) -> None:
    label_map = tmp_path / "map.json"
    label_map.write_text('{"plant": ["tree", "flower"]}')
    spec = BackendSpec(
        "cloud_fake", CloudFake, {"key": "k-123", "features": "tags, caption", "label_map": label_map}
    )
    made = spec.create()
    assert isinstance(made, CloudFake)
    assert made.kwargs["key"] == Secret("k-123")
    assert made.kwargs["features"] == ("tags", "caption")
    assert made.kwargs["label_map"] == {"plant": ["tree", "flower"]}
    assert "k-123" not in repr(spec)
    with pytest.raises(ConfigurationError, match="--credential takes 'azure'"):
        BackendSpec("cloud_fake", CloudFake, {"credential": "managed"}).create()
    label_map.write_text("{")
    with pytest.raises(ConfigurationError, match=r"label map .* is not valid JSON"):
        spec.create()


def test_credential_azure_builds_default_azure_credential() -> None:
    from azure.identity import DefaultAzureCredential

    made = BackendSpec("cloud_fake", CloudFake, {"credential": "azure"}).create()
    assert isinstance(made, CloudFake) and isinstance(made.kwargs["credential"], DefaultAzureCredential)


def test_redactor_knows_keys_from_flags_opts_config_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[cloud_fake]\nkey = "from-config-key"\n')
    monkeypatch.setenv("VISION_KEY", "from-env-key")
    options = BackendOptions(flags={"key": "from-flag-key"}, opts=["local_fake.key=from-opt-key"], config=cfg)
    text = options.redactor()("from-flag-key from-opt-key from-config-key from-env-key endpoint")
    assert text == "*** *** *** *** endpoint"
    assert Redactor(["abc"])("abc") == "abc"  # too short to mask safely
