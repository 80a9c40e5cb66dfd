"""``azvision emulator`` on the command line: ``--aml-endpoint`` checks, ``--env`` exports."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from azvision.emulator import AmlEndpointSpec
from azvision.emulator._aml_spec import parse_aml_endpoint_option

CLI = [sys.executable, "-m", "azvision", "emulator"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_option_takes_a_script_and_an_optional_model_folder(tmp_path: Path) -> None:
    script = tmp_path / "deploy" / "score.py"
    script.parent.mkdir()
    script.write_text("def init(): pass\n")
    model = tmp_path / "model"
    model.mkdir()
    name, spec = parse_aml_endpoint_option(f"cats={script}")
    assert (name, spec.script, spec.model_path) == ("cats", script.resolve(), script.parent.resolve())
    _, with_model = parse_aml_endpoint_option(f"cats={script}:{model}")
    assert (with_model.script, with_model.model_path) == (script.resolve(), model.resolve())
    for bad, why in [
        ("score.py", "NAME=SCORE_PY"),
        ("cats=", "NAME=SCORE_PY"),
        (f"x={script}", "not an endpoint name"),
        (f"cats={tmp_path / 'missing.py'}", "no such scoring script"),
        (f"cats={script}:{tmp_path / 'nowhere'}", "no such model folder"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_aml_endpoint_option(bad)
    with pytest.raises(ValueError, match="traffic"):
        AmlEndpointSpec("score.py", traffic={"green": 100})


@pytest.mark.parametrize("given", ["missing/score.py", "examples/aml/score.py:no-such-model-dir"])
def test_a_missing_score_file_or_model_folder_is_one_usage_line(given: str) -> None:
    done = run_cli("--aml-endpoint", f"shapes={given}")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--aml-endpoint shapes" in lines[0], done.stderr
    assert done.stdout == ""


def test_env_prints_an_export_for_every_setting_then_serves() -> None:
    process = subprocess.Popen(
        [*CLI, "--env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        timer = threading.Timer(30, process.kill)
        timer.start()
        assert process.stdout is not None
        lines = []
        while len(lines) < 8:
            lines.append(process.stdout.readline().rstrip("\n"))
        timer.cancel()
        settings = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines[:8])
        assert all(line.startswith("export ") for line in lines[:8]), lines
        assert set(settings) == {
            "CUSTOM_VISION_PREDICTION_ENDPOINT",
            "CUSTOM_VISION_PREDICTION_KEY",
            "CUSTOM_VISION_TRAINING_ENDPOINT",
            "CUSTOM_VISION_TRAINING_KEY",
            "CUSTOM_VISION_PREDICTION_RESOURCE_ID",
            "VISION_ENDPOINT",
            "VISION_KEY",
            "AZUREML_ENDPOINT_KEY",
        }
        endpoint = settings["CUSTOM_VISION_TRAINING_ENDPOINT"]
        answer = httpx.get(
            endpoint + "/customvision/v3.3/training/domains",
            headers={"Training-Key": settings["CUSTOM_VISION_TRAINING_KEY"]},
            timeout=10,
        )
        assert answer.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
