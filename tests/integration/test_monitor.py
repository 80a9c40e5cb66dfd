"""``azvision monitor`` over real ``azvision classify`` output: quiet on a stream drawn like the training set,
exit 1 on one whose label mix shifted; monitor.json and monitor.png; old files without ``time`` still work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from azvision.cli.app import app
from azvision.emulator import Emulator
from tests.integration.loop_helpers import KNOWN, make_trainer, stream, train_biased


@dataclass
class Deployed:
    emulator: Emulator
    train_dir: Path
    backend: list[str]  # the classify flags of the published model


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("monitor")
    with Emulator(training_seconds=0.1) as emulator, make_trainer(emulator) as trainer:
        result = train_biased(trainer, root, "watched")
        backend = [
            "--backend",
            "custom_vision",
            "--endpoint",
            emulator.endpoint,
            "--key",
            emulator.prediction_key,
        ]
        backend += ["--project-id", result.project.id, "--iteration", "prod"]
        yield Deployed(emulator, root / "train", backend)


def classify(deployed: Deployed, folder: Path, output: Path) -> Path:
    args = ["classify", str(folder), *deployed.backend, "--output", str(output), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return output


def monitor(*args: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(app, ["monitor", *args, "--json"])
    lines = result.stdout.strip().splitlines()
    return result.exit_code, json.loads(lines[-1]) if lines else {}, result.stderr


def test_quiet_on_the_training_distribution(deployed: Deployed, tmp_path: Path) -> None:
    data = stream(tmp_path / "same", 12, seed=21, with_new=False)
    results = classify(deployed, data.root, tmp_path / "same.jsonl")
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert all(line["time"].endswith("Z") for line in lines)  # classify stamps every answer

    report = tmp_path / "report"
    code, summary, err = monitor(str(results), "--baseline", str(deployed.train_dir), "--report", str(report))
    assert code == 0, err
    assert summary["drift"] is False and summary["alarms"] == []
    assert isinstance(summary["psi"], float) and summary["psi"] < 0.1
    assert summary["label_counts"] == dict.fromkeys(KNOWN, 12)
    assert sum(summary["confidence_histogram"]["counts"]) == 36  # type: ignore[index]
    assert summary["below_threshold"] == 0.0
    assert len(summary["days"]) == 1  # type: ignore[arg-type]
    assert json.loads((report / "monitor.json").read_text()) == summary
    with Image.open(report / "monitor.png") as image:
        assert image.format == "PNG" and image.width > 800


def test_flags_a_shifted_label_mix(deployed: Deployed, tmp_path: Path) -> None:
    data = stream(tmp_path / "shifted", 24, seed=22, with_new=False)
    for kind in KNOWN[1:]:  # almost only circles now
        for extra in sorted((data.root / kind).iterdir())[3:]:
            extra.unlink()
    results = classify(deployed, data.root, tmp_path / "shifted.jsonl")
    code, summary, err = monitor(
        str(results), "--baseline", str(deployed.train_dir), "--report", str(tmp_path / "r")
    )
    assert code == 1
    assert summary["drift"] is True and float(summary["psi"]) > 0.2  # type: ignore[arg-type]
    assert "label mix moved" in err


def test_old_files_without_time_and_a_daily_trend(deployed: Deployed, tmp_path: Path) -> None:
    data = stream(tmp_path / "days", 4, seed=23, with_new=True)
    results = classify(deployed, data.root, tmp_path / "days.jsonl")
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    old = tmp_path / "old.jsonl"
    old.write_text(
        "".join(json.dumps({k: v for k, v in line.items() if k != "time"}) + "\n" for line in lines)
    )
    stamped = tmp_path / "stamped.jsonl"
    for index, line in enumerate(lines):
        line["time"] = f"2026-11-{1 + index % 3:02d}T10:00:00Z"
    failed = {"source": "x.png", "label": None, "error": {"type": "InvalidImageError", "message": "empty"}}
    stamped.write_text("".join(json.dumps(line) + "\n" for line in [*lines, failed]) + "not json\n")

    code, summary, err = monitor(str(old), "--report", str(tmp_path / "old"), "--no-plot")
    assert code in (0, 1), err
    assert summary["days"] == [] and summary["psi"] is None and summary["total"] == 16
    assert not (tmp_path / "old" / "monitor.png").exists()

    code, summary, _ = monitor(str(stamped), "--report", str(tmp_path / "new"), "--max-error-share", "0.01")
    assert code == 1
    assert [d["day"] for d in summary["days"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]  # type: ignore[union-attr]
    assert sum(d["count"] for d in summary["days"]) == 16  # type: ignore[union-attr]
    assert summary["errors"] == {"InvalidImageError": 1} and summary["unreadable_lines"] == 1
    assert (tmp_path / "new" / "monitor.png").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = monitor(str(empty), "--report", str(tmp_path / "r"))
    assert code == 2 and "no result lines" in err
    code, _, err = monitor(str(tmp_path / "missing.jsonl"), "--report", str(tmp_path / "r"))
    assert code == 2 and "cannot read" in err
    code, _, err = monitor(str(empty), "--report", str(tmp_path / "r"), "--baseline", str(tmp_path / "nope"))
    assert code == 2 and "not a folder" in err
