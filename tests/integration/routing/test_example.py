"""``examples/cascade_local_first.py`` run as a user would, against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from azvision.emulator import Emulator

from .conftest import CLASSES, Trained, prediction_calls

EXAMPLE = Path(__file__).parents[3] / "examples" / "cascade_local_first.py"


def run(trained: Trained, emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOM_VISION_")}
    env.update(
        CUSTOM_VISION_PREDICTION_ENDPOINT=emu.endpoint,
        CUSTOM_VISION_PREDICTION_KEY=emu.prediction_key,
        CUSTOM_VISION_PROJECT_ID=trained.project_id,
        CUSTOM_VISION_ITERATION_NAME="prod",
    )
    command = [sys.executable, str(EXAMPLE), str(Path(trained.paths[0]).parents[1]), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_cascade_example_answers_locally_then_from_its_cache(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    args = [
        "--model-path",
        str(trained.export_dir),
        "--threshold",
        "0.999",
        "--cache",
        str(tmp_path / "c.sqlite"),
    ]
    first = run(trained, service, *args)
    assert first.returncode == 0, first.stderr
    *rows, summary = first.stdout.splitlines()
    assert len(rows) == len(trained.paths)
    assert [row.split("\t")[0] for row in rows] == sorted(trained.paths)
    assert {row.split("\t")[1] for row in rows} <= set(CLASSES)
    cloud = [row for row in rows if row.endswith("\tcustom_vision")]
    assert cloud and prediction_calls(service) == len(cloud)
    assert summary.startswith(f"calls: onnx {len(rows)}, custom_vision {len(cloud)}; cache hits 0")

    second = run(trained, service, *args)
    assert second.returncode == 0, second.stderr
    assert all(row.endswith("\tcache") for row in second.stdout.splitlines()[:-1])
    assert "cost $0.0000" in second.stdout and prediction_calls(service) == len(cloud)
