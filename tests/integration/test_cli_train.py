"""``azvision train`` against the emulator: the --json line, idempotent re-runs, exit statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azvision.cli.app import app
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset

CLASSES = ("circle", "square", "triangle")
JSON_KEYS = {
    "project_id", "iteration_id", "publish_name", "uploaded", "duplicates", "failed", "export_dir", "classify"
}  # fmt: skip


def write_dataset(root: Path, per_class: int) -> Path:
    """Small images of three shapes, one folder per shape."""
    make_dataset(root, classes=CLASSES, per_class=per_class, size=48, seed=5)
    return root


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture
def env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("CUSTOM_VISION_TRAINING_ENDPOINT", emulator.endpoint)
    monkeypatch.setenv("CUSTOM_VISION_TRAINING_KEY", emulator.training_key)
    monkeypatch.setenv("CUSTOM_VISION_PREDICTION_RESOURCE_ID", emulator.prediction_resource_id)
    return emulator


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_line_then_an_idempotent_rerun(env: Emulator, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=6)
    export_dir = tmp_path / "model"
    args = [str(data), "--project", "colours", "--publish-name", "prod", "--export", "onnx"]
    code, out, err = run(*args, "--export-dir", str(export_dir), "--json")
    assert code == 0, err
    first = json.loads(out.strip().splitlines()[-1])
    assert set(first) == JSON_KEYS
    assert first["publish_name"] == "prod" and first["export_dir"] == str(export_dir)
    assert (first["uploaded"], first["duplicates"], first["failed"]) == (18, 0, 0)
    assert (export_dir / "labels.txt").read_text().split() == sorted(CLASSES)
    assert "circle" in err and "precision" in err  # the table goes to stderr with --json

    code, out, err = run(*args, "--export-dir", str(export_dir), "--json", "--quiet")
    assert code == 0, err
    second = json.loads(out.strip().splitlines()[-1])
    assert (second["uploaded"], second["duplicates"], second["failed"]) == (0, 18, 0)
    assert second["iteration_id"] == first["iteration_id"]
    assert second["project_id"] == first["project_id"]


def test_table_on_stdout_without_json(emulator: Emulator, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    code, out, err = run(
        str(data),
        "--project",
        "table",
        "--quiet",
        "--endpoint",
        emulator.endpoint,
        "--training-key",
        emulator.training_key,
    )
    assert code == 0, err
    assert out == ""  # --quiet: neither bars nor table
    code, out, err = run(
        str(data),
        "--project",
        "table",
        "--endpoint",
        emulator.endpoint,
        "--training-key",
        emulator.training_key,
    )
    assert code == 0, err
    for word in ("square", "precision", "recall", "AP", "unchanged, reused"):
        assert word in out
    assert emulator.training_key not in out + err


def test_too_few_images_exits_1_with_the_rule(env: Emulator, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    for extra in sorted((data / "triangle").iterdir())[2:]:
        extra.unlink()
    code, out, err = run(str(data), "--project", "few", "--json")
    assert code == 1
    assert "TrainingError" in err and "at least 5 images" in err
    assert out == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--publish-name", "prod", "--prediction-resource-id", "not-an-arm-id"], "ARM id"),
        (["--domain", "No Such Domain"], "unknown classification domain"),
    ],
)
def test_usage_errors_exit_2(env: Emulator, tmp_path: Path, extra: list[str], message: str) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    code, _, err = run(str(data), "--project", "usage", *extra)
    assert code == 2
    assert message in err


def test_missing_settings_and_wrong_keys_exit_2_without_echoing_the_key(
    emulator: Emulator, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    code, _, err = run(str(data), "--project", "x")
    assert code == 2
    assert "CUSTOM_VISION_TRAINING_ENDPOINT" in err
    code, _, err = run(
        str(data), "--project", "x", "--endpoint", emulator.endpoint, "--training-key", "bad-key-0123"
    )
    assert code == 2
    assert "bad-key-0123" not in err
    code, _, err = run(str(tmp_path / "missing"), "--project", "x")
    assert code == 2 and "does not exist" in err


def test_the_classify_settings_printed_after_training_work_as_pasted(
    env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    code, out, err = run(str(data), "--project", "paste", "--publish-name", "prod", "--export", "onnx",
                         "--export-dir", str(tmp_path / "model"), "--json")  # fmt: skip
    assert code == 0, err
    settings = json.loads(out.strip().splitlines()[-1])["classify"]
    assert set(settings) == {"custom_vision", "onnx"}
    assert settings["custom_vision"]["CUSTOM_VISION_ITERATION_NAME"] == "prod"
    for name, value in settings["custom_vision"].items():
        assert f"export {name}={value}" in err  # the human lines (on stderr with --json)
    assert env.training_key not in out + err and env.prediction_key not in out + err
    image = str(next((data / "circle").iterdir()))
    for backend, variables in settings.items():
        with monkeypatch.context() as pasted:
            for name, value in variables.items():
                pasted.setenv(name, value)
            pasted.setenv("CUSTOM_VISION_PREDICTION_KEY", env.prediction_key)
            result = CliRunner().invoke(app, ["classify", image, "-q"])
        assert result.exit_code == 0, (backend, result.stderr)
        assert json.loads(result.stdout)["backend"] == backend


def test_without_publishing_or_exporting_there_is_nothing_to_classify_with(
    env: Emulator, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data", per_class=5)
    code, out, err = run(str(data), "--project", "unpublished", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["classify"] == {}
