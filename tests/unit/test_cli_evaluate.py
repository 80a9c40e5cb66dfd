"""``azvision evaluate`` and ``azvision compare`` through CliRunner with in-process backends."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import azvision
from azvision._registry import _registered
from tests.unit.test_cli_classify import ColourBackend, _fake_backend, run, write_image

pytestmark = pytest.mark.usefixtures(_fake_backend.__name__)


class MonoBackend(ColourBackend):
    name = "fake_mono"


@pytest.fixture(autouse=True)
def _second_backend() -> Iterator[None]:
    azvision.register_backend("fake_mono", MonoBackend)
    yield
    _registered.pop("fake_mono", None)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for colour in ("red", "green", "blue"):
        for i in range(3):
            write_image(root / colour / f"{i}.png", colour, shade=i * 3)
    write_image(root / "blue" / "actually_red.png", "red")
    (root / "README.txt").write_text("not a label folder")
    return root


def test_evaluate_writes_the_report_and_prints_a_table(dataset: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run("evaluate", str(dataset), "-b", "fake_colour", "--report", str(report))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(9 / 10)
    assert metrics["per_label"]["blue"] == {
        "precision": 1.0,
        "recall": 0.75,
        "f1": pytest.approx(6 / 7),
        "support": 4,
    }
    assert metrics["confusion_matrix"]["rows"] == ["blue", "green", "red"]
    assert metrics["confusion_matrix"]["matrix"] == [[3, 0, 1], [0, 3, 0], [0, 0, 3]]
    assert metrics["latency_ms"]["p50"] is not None and metrics["failed"] == 0
    assert metrics["skipped_files"] == 1 and "1 file(s)" in result.stderr
    assert (report / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 10
    assert {p["expected"] for p in predictions} == {"red", "green", "blue"}
    wrong = [p for p in predictions if p["label"] != p["expected"]]
    assert [Path(p["source"]).name for p in wrong] == ["actually_red.png"]
    assert "accuracy 90.0%" in result.stdout and "macro avg" in result.stdout


def test_evaluate_json_failures_and_min_accuracy_gate(dataset: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run("evaluate", str(dataset), "-b", "fake_colour", "--report", str(report), "--json",
                 "--no-plot", "--opt", "fail_on=green")  # fmt: skip
    assert result.exit_code == 1  # some images failed
    metrics = json.loads(result.stdout.splitlines()[-1])
    assert metrics["failed"] == 3 and metrics["failures_by_type"] == {"ServiceError": 3}
    assert not (report / "confusion_matrix.png").exists()
    gate = run("evaluate", str(dataset), "-b", "fake_colour", "-r", str(report), "-q", "--no-plot",
               "--min-accuracy", "0.95")  # fmt: skip
    assert gate.exit_code == 1 and "below --min-accuracy 95.0%" in gate.stderr
    ok = run("evaluate", str(dataset), "-b", "fake_colour", "-r", str(report), "-q", "--no-plot",
             "--min-accuracy", "0.9")  # fmt: skip
    assert ok.exit_code == 0 and ok.stdout == ""


def test_evaluate_usage_errors(tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    result = run("evaluate", str(empty), "-b", "fake_colour", "-r", str(tmp_path / "r"))
    assert result.exit_code == 2 and "no images found" in result.stderr
    missing = run("evaluate", str(tmp_path / "nope"), "-b", "fake_colour", "-r", str(tmp_path / "r"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    no_plot = run("evaluate", str(dataset), "-b", "fake_colour", "-r", str(tmp_path / "r"))
    assert no_plot.exit_code == 2 and "azvision[eval]" in no_plot.stderr and "--no-plot" in no_plot.stderr
    assert not (tmp_path / "r").exists()


def test_compare_two_backends_with_per_backend_options(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "compare.toml"
    cfg.write_text('backends = ["fake_colour", "fake_mono"]\n[fake_mono]\nfail_on = "blue"\n')
    report = tmp_path / "cmp"
    result = run("compare", str(dataset), "--config", str(cfg), "--report", str(report), "--no-plot")
    assert result.exit_code == 1, result.stderr  # fake_mono failed on the blue images
    comparison = json.loads((report / "comparison.json").read_text())
    rows = {row["backend"]: row for row in comparison["backends"]}
    assert list(rows) == ["fake_colour", "fake_mono"]
    assert rows["fake_colour"]["accuracy"] == pytest.approx(0.9) and rows["fake_colour"]["failed"] == 0
    assert rows["fake_mono"]["failed"] == 3
    assert comparison["images"] == 10 and comparison["labels"] == ["blue", "green", "red"]
    for name in rows:
        assert json.loads((report / name / "metrics.json").read_text())["backend"] == name
    assert "comparison" in result.stdout and "fake_mono" in result.stdout


def test_compare_needs_two_distinct_backends(dataset: Path, tmp_path: Path) -> None:
    one = run("compare", str(dataset), "-b", "fake_colour", "-r", str(tmp_path / "r"))
    assert one.exit_code == 2 and "two or more backends" in one.stderr
    twice = run("compare", str(dataset), "-b", "fake_colour", "-b", "fake-colour", "-r", str(tmp_path / "r"))
    assert twice.exit_code == 2 and "once" in twice.stderr


def test_compare_says_when_a_backend_times_whole_batches(dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from tests.unit.test_onnx_backend import channel_mean_classifier, write_export

    export = write_export(tmp_path / "export", channel_mean_classifier(), ["blue", "green", "red"])
    report = tmp_path / "cmp"
    result = run("compare", str(dataset), "-b", "fake_colour", "-b", "onnx", "--opt",
                 f"onnx.model_path={export}", "--report", str(report), "--no-plot")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = {row["backend"]: row for row in json.loads((report / "comparison.json").read_text())["backends"]}
    assert rows["onnx"]["latency_per"] == "batch of 16" and rows["fake_colour"]["latency_per"] == "request"
    text = " ".join(result.stdout.split())
    assert (
        "latency: onnx per batch of 16 images (one run for the whole batch); the others per request" in text
    )


def test_evaluate_ends_with_the_fix_when_the_key_is_refused(dataset: Path, tmp_path: Path) -> None:
    result = run("evaluate", str(dataset), "-b", "fake_colour", "-r", str(tmp_path / "r"), "--no-plot",
                 "-q", "--key", "sk-refused-1234", "--opt", "leak_key:=true")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "azvision: error: 10 inputs failed with AuthenticationError from fake_colour: "
        "the service refused the key; check --key"
    )


@pytest.mark.parametrize("backend", [None, "custom_vision_with_a_long_name"])
def test_the_confusion_matrix_title_fits_in_the_figure(backend: str | None) -> None:
    pytest.importorskip("matplotlib")
    from azvision.evaluation import _confusion_figure, compute_metrics

    metrics = compute_metrics(["a", "b", "a"], ["a", "b", "b"], backend=backend)
    fig = _confusion_figure(metrics)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    texts = [*fig.texts, *(ax.title for ax in fig.axes)]
    titles = [t for t in texts if "accuracy 66.7% on 3 images" in t.get_text()]
    assert len(titles) == 1
    box, page = titles[0].get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1
