"""The emulator's detector export: the compact YOLOv2 family, read back by OnnxBackend."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from azvision import OnnxBackend
from azvision.emulator._cv_detector import DetectorHead, grid_features
from azvision.emulator._onnx_export import build_export_zip
from azvision.emulator._yolo import ANCHORS


def test_a_detector_zip_is_the_yolo_family_and_runs_like_the_head(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blank = DetectorHead.untrained(("fork", "scissors"))
    head = DetectorHead(
        blank.labels,
        (rng.normal(0, 0.01, blank.weights.shape)).astype(np.float32),
        rng.normal(0, 0.5, blank.bias.shape).astype(np.float32),
    )
    blob = build_export_zip(head, iteration_id="0" * 32, exported_at=datetime(2026, 1, 1))
    archive = zipfile.ZipFile(io.BytesIO(blob))
    assert json.loads(archive.read("cvexport.manifest"))["DomainType"] == "ObjectDetection"
    metadata = json.loads(archive.read("metadata_properties.json"))
    assert metadata["CustomVision.Postprocess.Method"] == "Yolo"
    assert json.loads(metadata["CustomVision.Postprocess.Yolo.Biases"]) == [v for a in ANCHORS for v in a]
    (tmp_path / "export.zip").write_bytes(blob)
    image = Image.new("RGB", (320, 240), (200, 180, 40))
    image.save(tmp_path / "scene.png")
    with OnnxBackend(tmp_path / "export.zip") as local:
        assert (local.family, local.labels, local.spec.size) == ("yolo", ("fork", "scissors"), (416, 416))
        found = local.classify(str(tmp_path / "scene.png")).labels
    expected = head.detect(grid_features([image])[0], min_probability=0.01)
    assert [lab.name for lab in found] == [name for name, _, _ in expected]
    for lab, (_, probability, box) in zip(found, expected, strict=True):
        assert lab.confidence == pytest.approx(probability, abs=1e-4)
        assert lab.box is not None and lab.box.left == pytest.approx(box[0], abs=1e-4)


def test_evaluate_task_detection_with_the_onnx_backend_writes_the_report_and_gates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from azvision.cli.app import app
    from azvision.synthetic import make_detection_dataset

    data = make_detection_dataset(tmp_path / "data", images=3)
    blob = build_export_zip(
        DetectorHead.untrained(data.labels), iteration_id="0" * 32, exported_at=datetime(2026, 1, 1)
    )
    (tmp_path / "export.zip").write_bytes(blob)
    report = tmp_path / "report"
    args = ["evaluate", str(data.root), "--task", "detection", "--backend", "onnx"]
    args += ["--model-path", str(tmp_path / "export.zip"), "--report", str(report), "--json"]
    result = CliRunner().invoke(app, [*args, "--min-accuracy", "0.5"])
    assert result.exit_code == 1, (
        result.stderr
    )  # an untrained head: its boxes match no object, below the gate
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["map50"] == 0.0 and metrics["task"] == "detection" and metrics["total"] == 3
    assert "below --min-accuracy" in result.stderr
    written = sorted(p.name for p in report.iterdir())
    assert written == ["metrics.json", "pr_curve.png", "predictions.jsonl"]
    first = json.loads((report / "predictions.jsonl").read_text().splitlines()[0])
    assert first["expected"] and set(first["expected"][0]) == {"label", "box"}
