"""``azvision demo`` run as a user runs it (its own process, the real emulator, the real inference server).

One run with ``--json`` is checked for what a user reads: the rows of the table, the accuracy of every
backend that knows the labels, latency, cost, the JSON summary and the files left behind. A second run,
with a package index that cannot be reached and an empty cache, shows the Azure ML row skipped with its
reason while the rest of the demo still runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from azvision.cli._demo_table import DemoRow, footnotes, results_table

pytestmark = pytest.mark.slow

DEMO_TIMEOUT_S = 600  # a first run builds the inference server's environment (pip)
ROW_IDS = [
    "custom_vision",
    "onnx",
    "cascade",
    "azure_ml",
    "image_analysis_tags",
    "image_analysis_categories",
    "azure_openai",
]
ROW_NAMES = [
    "Custom Vision",
    "ONNX, local",
    "Cascade ONNX→CV",
    "Azure ML endpoint",
    "Image Analysis tags",
    "CV 3.2 categories",
    "Azure OpenAI few-shot",
]


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azvision", "demo", "--quick", *args],
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def table_line(text: str, name: str) -> list[str]:
    """The cells of the table row that starts with ``name``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no table row {name!r} in:\n{text}")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo")
    return run_demo("--json", "--workdir", str(workdir)), workdir


@pytest.fixture(scope="module")
def summary(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    done, _ = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "with --json, stdout holds the JSON summary only"
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def test_every_backend_has_its_row_in_order(summary: dict[str, Any]) -> None:
    assert [row["id"] for row in summary["rows"]] == ROW_IDS
    assert [row["name"] for row in summary["rows"]] == ROW_NAMES
    assert all(row["status"] == "ok" for row in summary["rows"]), summary["rows"]
    assert summary["classes"] == ["circle", "square", "triangle"]
    assert (summary["train_images"], summary["test_images"]) == (36, 18)


def test_backends_that_know_the_labels_are_accurate_on_held_out_images(summary: dict[str, Any]) -> None:
    rows = {row["id"]: row for row in summary["rows"]}
    for row_id in ("custom_vision", "onnx", "cascade", "azure_ml", "azure_openai"):
        assert rows[row_id]["accuracy"] >= 0.9, rows[row_id]
        assert rows[row_id]["images"] == 18 and rows[row_id]["failed"] == 0
    for row_id in ("image_analysis_tags", "image_analysis_categories"):
        assert rows[row_id]["accuracy"] is None  # a pre-trained vocabulary does not know "circle"
        assert "not your labels" in rows[row_id]["note"]
    categories = re.findall(r"(\w+_) ×\d+", rows["image_analysis_categories"]["note"])
    assert categories, "the categories row names the categories it answered"


def test_latency_throughput_and_cost_are_measured_and_priced(summary: dict[str, Any]) -> None:
    rows = {row["id"]: row for row in summary["rows"]}
    for row in rows.values():
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"] < 30_000
        assert row["images_per_second"] > 0
    assert rows["custom_vision"]["cost_per_1000_usd"] == 2.0
    assert rows["onnx"]["cost_per_1000_usd"] == 0.0
    cascade = rows["cascade"]  # only the images the export is unsure of are paid for
    assert 0.0 <= cascade["cost_per_1000_usd"] < 2.0 and "reached custom_vision" in cascade["note"]
    assert rows["image_analysis_tags"]["cost_per_1000_usd"] == 1.0
    assert rows["image_analysis_categories"]["cost_per_1000_usd"] == 1.0
    aml = rows["azure_ml"]
    # compute hours spread over the measured throughput: 0.229 $/h / (images/s × 3600 s/h) × 1000
    assert aml["cost_per_1000_usd"] == pytest.approx(0.229 / (aml["images_per_second"] * 3.6), rel=0.01)
    assert "Standard_DS3_v2" in aml["cost_basis"] and "measured here" in aml["cost_basis"]
    aoai = rows["azure_openai"]
    # per token: about 10 images at 85 tokens plus text in, a few tokens out, at gpt-4o's list prices
    match = re.search(r"x (\d+) \+ (\d+) tokens an image measured here", aoai["cost_basis"])
    assert match is not None, aoai["cost_basis"]
    prompt, completion = int(match[1]), int(match[2])
    assert prompt > 10 * 85 and 0 < completion < 50
    assert aoai["cost_per_1000_usd"] == pytest.approx((prompt * 2.50 + completion * 10.0) / 1000, rel=0.01)
    assert "9 sent per request" in aoai["note"]


def test_the_table_shows_the_same_numbers_as_the_summary(
    demo_run: tuple[subprocess.CompletedProcess[str], Path], summary: dict[str, Any]
) -> None:
    human = demo_run[0].stderr  # with --json the table goes to stderr
    assert "accuracy" in human and "p50 ms" in human and "$/1k img" in human
    for row in summary["rows"]:
        cells = table_line(human, row["name"])
        expected_accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
        assert cells[1] == expected_accuracy
        assert abs(int(cells[2]) - row["latency_p50_ms"]) <= 1
    assert table_line(human, "Custom Vision")[5] == "$2.00"
    assert table_line(human, "ONNX, local")[5] == "$0"
    assert "list prices recalled from Azure's pricing pages" in human
    for step in (
        "upload, train, publish, export",
        "environment ready in",
        "classifying through the scoring URI",
    ):
        assert step in human


def test_the_demo_leaves_its_data_export_and_deployment_behind(
    demo_run: tuple[subprocess.CompletedProcess[str], Path], summary: dict[str, Any]
) -> None:
    workdir = demo_run[1]
    assert summary["workdir"] == str(workdir)
    for split, count in (("train", 12), ("test", 6)):
        for label in summary["classes"]:
            assert len(list((workdir / "data" / split / label).glob("*.jpg"))) == count
    export = workdir / "export"
    assert (export / "model.onnx").is_file()
    assert (export / "labels.txt").read_text().split() == sorted(summary["classes"])
    assert (workdir / "aml" / "score.py").read_text().startswith('"""Azure ML online-endpoint scoring script')
    assert json.loads((workdir / "summary.json").read_text())["rows"] == summary["rows"]
    assert f"azvision classify {workdir / 'data' / 'test'} --backend onnx" in demo_run[0].stderr


def test_no_key_is_printed(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, _ = demo_run
    # The emulator's keys look like "emu-pred-" plus 24 hex digits (random per run).
    assert not re.search(r"emu-(train|pred|vision|aml|openai)-[0-9a-f]{24}", done.stdout + done.stderr)


def test_without_a_package_index_the_azure_ml_row_is_skipped_and_the_rest_runs(tmp_path: Path) -> None:
    unreachable = {
        "AZVISION_CACHE_DIR": str(tmp_path / "cache"),  # nothing cached: the environment must be built
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # discard port: refused at once
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    done = run_demo("--quiet", "--workdir", str(tmp_path / "work"), env=unreachable)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "▸" not in out, "--quiet prints no steps"
    assert table_line(out, "Azure ML endpoint")[1] == "SKIPPED"
    assert re.search(r"Azure ML endpoint: skipped: could not build the inference-server environment", out)
    assert str(tmp_path / "cache") in out  # where pip's log is
    for name in ("Custom Vision", "ONNX, local"):
        accuracy = table_line(out, name)[1]
        assert accuracy.endswith("%") and float(accuracy[:-1]) >= 90.0
    assert table_line(out, "Image Analysis tags")[1] == "n/a"


def test_failed_and_skipped_rows_show_their_status_and_reason() -> None:
    rows = [
        DemoRow(
            "custom_vision", "Custom Vision", "custom_vision", "failed", note="TrainingError: too few images"
        ),
        DemoRow("onnx", "ONNX, local", "onnx", "skipped", note="needs the trained model"),
    ]
    assert list(results_table(rows).columns[1].cells) == ["FAILED", "SKIPPED"]
    lines = footnotes(rows)
    assert "  Custom Vision: failed: TrainingError: too few images" in lines
    assert "  ONNX, local: skipped: needs the trained model" in lines
