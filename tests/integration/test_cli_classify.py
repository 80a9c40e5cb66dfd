"""The real command line (``python -m azvision``) in subprocesses, against the emulator.

A Custom Vision project is trained on coloured images through the official training client, published,
then classified and evaluated through the CLI with the real ``CustomVisionBackend``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from azvision.emulator import Emulator
from tests.conftest import REAL_EXPORTS

COLOURS = {"red": (220, 30, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}
WRONG_KEY = "wrong-key-DISTINCTIVE-4f2a9c"


def png(colour: str, shade: int) -> bytes:
    r, g, b = COLOURS[colour]
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (min(r + shade, 255), min(g + shade, 255), min(b + shade, 255))).save(
        buf, "PNG"
    )
    return buf.getvalue()


@dataclass(frozen=True)
class Published:
    endpoint: str
    prediction_key: str
    vision_key: str
    project_id: str
    iteration: str = "v1"

    def flags(self) -> list[str]:
        return ["--backend", "custom_vision", "--endpoint", self.endpoint, "--key", self.prediction_key,
                "--project-id", self.project_id, "--iteration", self.iteration]  # fmt: skip


@pytest.fixture(scope="module")
def published() -> Iterator[Published]:
    with Emulator(training_seconds=0.1) as emu:
        trainer = CustomVisionTrainingClient(
            emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
        )
        project = trainer.create_project("cli-colours")
        entries = []
        for colour in COLOURS:
            tag = trainer.create_tag(project.id, colour)
            entries += [
                ImageFileCreateEntry(name=f"{colour}{i}.png", contents=png(colour, i * 6), tag_ids=[tag.id])
                for i in range(6)
            ]
        trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        iteration = trainer.train_project(project.id)
        deadline = time.monotonic() + 60
        while iteration.status != "Completed" and time.monotonic() < deadline:
            time.sleep(0.1)
            iteration = trainer.get_iteration(project.id, iteration.id)
        assert iteration.status == "Completed"
        trainer.publish_iteration(project.id, iteration.id, "v1", emu.prediction_resource_id)
        yield Published(emu.endpoint, emu.prediction_key, emu.vision_key, str(project.id))


@pytest.fixture
def held_out(tmp_path: Path) -> Path:
    """A labelled folder of images the model has not seen (other shades)."""
    root = tmp_path / "held_out"
    for colour in COLOURS:
        (root / colour).mkdir(parents=True)
        for i in range(3):
            (root / colour / f"{i}.png").write_bytes(png(colour, 3 + i * 7))
    return root


def azvision(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "azvision", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def default_sigint() -> None:
    """Run in the child before exec: Ctrl-C must raise KeyboardInterrupt there even when this test runner
    was started from a background job, which starts with SIGINT ignored (and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_sources(root: Path) -> list[str]:
    return [str(root / colour / f"{i}.png") for colour in sorted(COLOURS) for i in range(3)]


def test_classify_a_folder_with_custom_vision(published: Published, held_out: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out.jsonl"
    result = azvision("classify", str(held_out), str(broken), *published.flags(), "-o", str(out),
                      "--concurrency", "4")  # fmt: skip
    assert result.returncode == 1, result.stderr
    got = records(out)
    assert [r["source"] for r in got] == [*expected_sources(held_out), str(broken)]
    assert [r["label"] for r in got[:-1]] == [Path(s).parent.name for s in expected_sources(held_out)]
    assert all(r["backend"] == "custom_vision" and r["error"] is None for r in got[:-1])
    assert got[-1]["error"]["type"] == "InvalidImageError"
    assert published.prediction_key not in out.read_text() + result.stdout + result.stderr


def test_settings_from_the_environment_and_csv_output(
    published: Published, held_out: Path, tmp_path: Path
) -> None:
    env = {
        "AZVISION_BACKEND": "custom_vision",
        "CUSTOM_VISION_PREDICTION_ENDPOINT": published.endpoint,
        "CUSTOM_VISION_PREDICTION_KEY": published.prediction_key,
        "CUSTOM_VISION_PROJECT_ID": published.project_id,
        "CUSTOM_VISION_ITERATION_NAME": published.iteration,
    }
    out = tmp_path / "out.csv"
    result = azvision("classify", str(held_out / "green"), "-o", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = out.read_text().splitlines()
    assert rows[0] == "source,label,confidence,error_type,error_message"
    assert [row.split(",")[1] for row in rows[1:]] == ["green"] * 3
    assert json.loads(result.stdout.splitlines()[-1])["written"] == 3


def test_a_wrong_key_fails_each_input_without_echoing_the_key(
    published: Published, held_out: Path, tmp_path: Path
) -> None:
    flags = published.flags()
    flags[flags.index("--key") + 1] = WRONG_KEY
    out = tmp_path / "out.jsonl"
    result = azvision("classify", str(held_out / "red"), *flags, "-o", str(out))
    assert result.returncode == 1
    assert {r["error"]["type"] for r in records(out)} == {"AuthenticationError"}
    assert WRONG_KEY not in out.read_text() + result.stdout + result.stderr


def test_missing_settings_exit_2_naming_flag_and_variable(held_out: Path) -> None:
    result = azvision("classify", str(held_out), "--backend", "custom_vision")
    assert result.returncode == 2
    assert "CUSTOM_VISION_PREDICTION_ENDPOINT" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_then_resume(published: Published, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.png").write_bytes(png(list(COLOURS)[i % 3], i))
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "azvision", "classify", str(folder), *published.flags(), "-o", str(out)]
    with subprocess.Popen(
        [*args, "--max-rps", "5"], stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    partial = records(out)
    assert 3 <= len(partial) < 30
    resumed = subprocess.run([*args, "--resume", "-q"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["source"] for r in records(out)] == [str(folder / f"{i:02d}.png") for i in range(30)]


def test_evaluate_writes_the_report(published: Published, held_out: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = azvision("evaluate", str(held_out), *published.flags(), "--report", str(report))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0 and metrics["total"] == 9 and metrics["backend"] == "custom_vision"
    assert metrics["latency_ms"]["p95"] >= metrics["latency_ms"]["p50"] > 0
    assert (report / "confusion_matrix.png").stat().st_size > 1000
    assert "accuracy 100.0%" in result.stdout
    assert published.prediction_key not in result.stdout + result.stderr


def test_emulator_command_serves_until_interrupted() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "azvision", "emulator", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            info = json.loads(proc.stdout.readline())
            assert info["endpoint"].startswith("http://127.0.0.1:")
            assert {"training_key", "prediction_key", "vision_key", "aml_key", "aml_scoring_uris"} <= set(
                info
            )
            stats = httpx.get(
                info["endpoint"] + "/_emulator/stats",
                headers={"Training-Key": info["training_key"]},
                timeout=10,
            )
            assert stats.status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    assert proc.returncode == 0


def test_compare_custom_vision_with_image_analysis(
    published: Published, held_out: Path, tmp_path: Path
) -> None:
    report = tmp_path / "cmp"
    result = azvision(
        "compare", str(held_out), "-b", "custom_vision", "-b", "image_analysis", "--report", str(report),
        "--endpoint", published.endpoint, "--project-id", published.project_id, "--iteration", "v1",
        "--opt", f"custom_vision.key={published.prediction_key}",
        "--opt", f"image_analysis.key={published.vision_key}", "--no-plot", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout.splitlines()[-1])
    assert [row["backend"] for row in comparison["backends"]] == ["custom_vision", "image_analysis"]
    assert comparison == json.loads((report / "comparison.json").read_text())
    assert comparison["metrics"]["custom_vision"]["accuracy"] == 1.0
    assert comparison["metrics"]["image_analysis"]["total"] == 9
    for name in ("custom_vision", "image_analysis"):
        assert len((report / name / "predictions.jsonl").read_text().splitlines()) == 9
    leaked = [
        k for k in (published.prediction_key, published.vision_key) if k in result.stdout + result.stderr
    ]
    assert leaked == []


@pytest.mark.needs_shared("fixtures/real-custom-vision-exports")
def test_onnx_backend_on_a_real_service_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    folder = REAL_EXPORTS / "hemlock-japanese-cherry"
    out = tmp_path / "out.csv"
    images = [str(folder / "japanese_cherry_6.jpg"), str(folder / "hemlock_test_image.jpg")]
    result = azvision("classify", *images, "--backend", "onnx", "--model-path", str(folder / "model.onnx"),
                      "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [row.split(",")[:2] for row in out.read_text().splitlines()[1:]] == [
        [images[0], "JapaneseCherry"],
        [images[1], "hemlock"],
    ]
    too_old = REAL_EXPORTS / "onnx10-rejected"
    rejected = azvision("classify", str(too_old / "Donuts__3291252.jpg"), "--backend", "onnx",
                        "--model-path", str(too_old / "model.onnx"))  # fmt: skip
    assert rejected.returncode == 2 and "export" in rejected.stderr and "Traceback" not in rejected.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_check_validates_endpoint_key_and_model_in_one_line(published: Published) -> None:
    ok = azvision("check", *published.flags())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: custom_vision at {published.endpoint} answered in ")
    vision = azvision("check", "-b", "image_analysis", "--endpoint", published.endpoint,
                      env={"VISION_KEY": published.vision_key})  # fmt: skip
    assert vision.returncode == 0, vision.stderr

    flags = published.flags()
    flags[flags.index("--key") + 1] = WRONG_KEY
    wrong_key = azvision("check", *flags)
    assert wrong_key.returncode == 1 and wrong_key.stderr.count("\n") == 1
    assert "AuthenticationError" in wrong_key.stderr and "--key (or CUSTOM_VISION_PREDICTION_KEY)" in (
        wrong_key.stderr
    )
    assert WRONG_KEY not in wrong_key.stdout + wrong_key.stderr

    flags = published.flags()
    flags[flags.index("--iteration") + 1] = "no-such-iteration"
    wrong_model = azvision("check", *flags)
    assert wrong_model.returncode == 1 and "NotFoundError" in wrong_model.stderr
    assert "--iteration (or CUSTOM_VISION_ITERATION_NAME)" in wrong_model.stderr

    flags = published.flags()
    flags[flags.index("--endpoint") + 1] = f"http://127.0.0.1:{_closed_port()}"
    nobody = azvision("check", *flags, timeout=60)
    assert nobody.returncode == 1 and nobody.stderr.count("\n") == 1
    assert "BackendConnectionError" in nobody.stderr and "--endpoint (or" in nobody.stderr

    missing = azvision("check", "-b", "custom_vision")
    assert missing.returncode == 2 and "CUSTOM_VISION_PREDICTION_ENDPOINT" in missing.stderr


def test_a_run_failing_on_a_setting_ends_with_one_line_naming_endpoint_and_fix(
    published: Published, held_out: Path, tmp_path: Path
) -> None:
    flags = published.flags()
    flags[flags.index("--iteration") + 1] = "not-published"
    result = azvision("classify", str(held_out), *flags, "-o", str(tmp_path / "out.jsonl"), "-q")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"azvision: error: 9 inputs failed with NotFoundError from custom_vision at {published.endpoint}: "
        "no published iteration by that name in that project; check --project-id (or "
        "CUSTOM_VISION_PROJECT_ID) and --iteration (or CUSTOM_VISION_ITERATION_NAME)"
    ]


def test_evaluate_image_analysis_at_zero_accuracy_hints_at_the_label_map(
    published: Published, held_out: Path, tmp_path: Path
) -> None:
    names = {"red": "warm", "green": "leaf", "blue": "sea"}  # labels no pre-trained vocabulary answers
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for colour, label in names.items():
        (held_out / colour).rename(dataset / label)
    args = ["evaluate", str(dataset), "-b", "image_analysis", "--endpoint", published.endpoint,
            "--no-plot", "-q"]  # fmt: skip
    env = {"VISION_KEY": published.vision_key}
    bare = azvision(*args, "-r", str(tmp_path / "bare"), env=env)
    assert json.loads((tmp_path / "bare" / "metrics.json").read_text())["accuracy"] == 0
    assert "--label-map" in bare.stderr and "label_map" in bare.stderr
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({label: [colour] for colour, label in names.items()}))
    mapped = azvision(*args, "-r", str(tmp_path / "mapped"), "--label-map", str(label_map), env=env)
    assert json.loads((tmp_path / "mapped" / "metrics.json").read_text())["accuracy"] > 0
    assert "--label-map" not in mapped.stderr, mapped.stderr
