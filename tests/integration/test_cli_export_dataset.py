"""``azvision export-dataset`` against the emulator: JSON summary, exit codes, keys never echoed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azvision import CustomVisionTrainer
from azvision.cli.app import app
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(training_seconds=0.2) as emu:
        data = make_dataset(
            tmp_path_factory.mktemp("data"), classes=("circle", "star"), per_class=5, size=(64, 64)
        )
        with CustomVisionTrainer(emu.endpoint, emu.training_key) as trainer:
            assert trainer.upload(trainer.project("stars"), data).ok
            trainer.project("nothing")
        yield emu


@pytest.fixture
def env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("CUSTOM_VISION_TRAINING_ENDPOINT", emulator.endpoint)
    monkeypatch.setenv("CUSTOM_VISION_TRAINING_KEY", emulator.training_key)
    return emulator


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["export-dataset", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_summary_and_a_rerun_that_resumes(env: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--project", "stars", "--out", str(out), "--validation-split", "0.2", "--json"]
    code, stdout, _ = run(*args)
    assert code == 0, stdout
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert (summary["tagged"], summary["exported"], summary["downloaded"]) == (10, 10, 10)
    assert summary["splits"] == {"train": 8, "validation": 2} and summary["failed"] == 0
    assert summary["files"] == [
        "train/annotations.jsonl",
        "train/MLTable",
        "validation/annotations.jsonl",
        "validation/MLTable",
        "automl-job.yml",
    ]
    code, stdout, _ = run(*args)
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["downloaded"] == 0
    assert len(Dataset.from_automl_jsonl(out / "train")) == 8


def test_table_folder_format_and_exit_codes(env: Emulator, tmp_path: Path) -> None:
    code, stdout, _ = run("--project", "stars", "--out", str(tmp_path / "f"), "--format", "folder")
    assert code == 0 and "10 of 10 tagged images exported" in stdout
    assert Dataset.from_folder(tmp_path / "f").counts() == {"circle": 5, "star": 5}

    code, _, stderr = run("--project", "nothing", "--out", str(tmp_path / "empty"))
    assert code == 1 and "has no tagged images" in stderr and not (tmp_path / "empty").exists()
    code, _, stderr = run("--project", "missing", "--out", str(tmp_path / "m"))
    assert code == 2 and "'missing'" in stderr
    code, _, stderr = run("--project", "stars", "--out", str(tmp_path / "x"), "--format", "yolo")
    assert code == 2 and "unknown export format" in stderr


def test_all_projects_each_into_its_own_folder(env: Emulator, tmp_path: Path) -> None:
    code, stdout, stderr = run("--all-projects", "--out", str(tmp_path), "--format", "folder", "--json")
    assert code == 0, stderr
    summaries = {s["project"]: s for s in map(json.loads, stdout.strip().splitlines())}
    assert summaries["stars"]["exported"] == 10 and summaries["nothing"]["tagged"] == 0
    assert Dataset.from_folder(tmp_path / "stars").counts() == {"circle": 5, "star": 5}
    assert not (tmp_path / "nothing").exists() and "'nothing' has no tagged images" in stderr
    code, _, stderr = run("--out", str(tmp_path))
    assert code == 2 and "--project NAME or --all-projects" in stderr


def test_a_wrong_key_is_exit_2_and_never_echoed(emulator: Emulator, tmp_path: Path) -> None:
    secret = "not-the-key-0123456789"
    code, stdout, stderr = run(
        "--project",
        "stars",
        "--out",
        str(tmp_path),
        "--endpoint",
        emulator.endpoint,
        "--training-key",
        secret,
    )
    assert code == 2 and secret not in stdout + stderr


def test_compare_gate_custom_vision_against_its_onnx_export(emulator: Emulator, tmp_path: Path) -> None:
    """The migration's measure-first step, for real: the service baseline, its exported model, the gate."""
    data = make_dataset(tmp_path / "train", classes=("circle", "star"), per_class=8, size=(96, 96))
    make_dataset(tmp_path / "test", classes=("circle", "star"), per_class=4, seed=5, size=(96, 96))
    with CustomVisionTrainer(
        emulator.endpoint, emulator.training_key, prediction_resource_id=emulator.prediction_resource_id
    ) as trainer:
        result = trainer.train_from_folder(
            data, project="gate", publish_name="prod", export_dir=tmp_path / "onnx"
        )
    report = tmp_path / "report"
    outcome = CliRunner().invoke(app, [
        "compare", str(tmp_path / "test"), "--baseline", "custom_vision", "--backend", "onnx",
        "--endpoint", emulator.endpoint, "--key", emulator.prediction_key, "--project-id", result.project.id,
        "--iteration", "prod", "--opt", f"onnx.model_path={tmp_path / 'onnx'}", "--max-drop", "0.1",
        "--report", str(report), "--no-plot",
    ])  # fmt: skip
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    verdict = json.loads((report / "comparison.json").read_text())["gate"]
    rows = {row["backend"]: row for row in verdict["rows"]}
    assert verdict["passed"] and rows["onnx"]["images"] == 8
    assert rows["custom_vision"]["cost_per_1000_images_usd"] == 2.0
    assert rows["onnx"]["cost_per_1000_images_usd"] == 0.0
    assert abs(rows["onnx"]["difference"]) <= 0.1  # the export answers as the service does
    assert "against the baseline custom_vision" in " ".join(outcome.stdout.split())
