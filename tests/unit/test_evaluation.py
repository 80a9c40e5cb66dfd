"""Metrics (hand-computed expectations), evaluate() on a real folder, and the written report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from azvision import ConfigurationError
from azvision.evaluation import NO_LABEL, compute_metrics, evaluate, percentile, write_report
from tests.unit.test_cli_classify import ColourBackend, write_image


def test_metrics_match_a_hand_computed_example() -> None:
    y_true = ["a", "a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "a", "b", "b", "a", "c", "dog"]
    m = compute_metrics(y_true, y_pred, latencies_ms=[10, 20, 30, 40], failures=["ServiceError"])
    assert m.labels == ("a", "b", "c", "dog") and m.true_labels == ("a", "b", "c")
    assert m.confusion_matrix == ((2, 1, 0, 0), (1, 1, 0, 0), (0, 0, 1, 1))
    assert m.accuracy == pytest.approx(4 / 7) and m.correct == 4
    assert (m.total, m.scored, m.failed) == (8, 7, 1)
    a, b, c, dog = (m.per_label[x] for x in ("a", "b", "c", "dog"))
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert (b.precision, b.recall, b.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (c.precision, c.recall, c.f1) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (dog.precision, dog.recall, dog.support) == (0.0, 0.0, 0)
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)  # over the dataset's labels only
    d = m.to_dict()
    assert d["weighted_avg"]["recall"] == pytest.approx(4 / 7)
    assert d["latency_ms"] == {"p50": 25.0, "p95": pytest.approx(38.5)}
    assert d["failures_by_type"] == {"ServiceError": 1}
    assert d["confusion_matrix"]["columns"] == ["a", "b", "c", "dog"]
    json.dumps(d)  # JSON-ready


def test_no_label_gets_its_own_column_and_label_order_is_kept() -> None:
    m = compute_metrics(["b", "a"], [None, "a"], labels=["b", "a"])
    assert m.labels == ("b", "a", NO_LABEL)
    assert m.confusion_matrix == ((0, 0, 1), (0, 1, 0))
    assert m.per_label["b"].recall == 0.0 and m.accuracy == 0.5


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.5
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="y_true has 2"):
        compute_metrics(["a", "b"], ["a"])


def test_evaluate_a_folder_dataset_counts_failures_and_reports_each_outcome(tmp_path: Path) -> None:
    for colour in ("red", "green", "blue"):
        for i in range(3):
            write_image(tmp_path / "ds" / colour / f"{i}.png", colour, shade=i)
    write_image(tmp_path / "ds" / "red" / "looks_blue.png", "blue")
    seen: list[tuple[str, str]] = []
    with ColourBackend(fail_on="green") as clf:
        m = evaluate(
            clf, tmp_path / "ds", on_outcome=lambda image, truth, _: seen.append((str(image), truth))
        )
    assert len(seen) == 10 and seen[0] == (str(tmp_path / "ds" / "blue" / "0.png"), "blue")
    assert m.backend == "fake_colour"
    assert (m.total, m.failed, dict(m.failures_by_type)) == (10, 3, {"ServiceError": 3})
    assert m.true_labels == ("blue", "green", "red")  # green has no scored image but stays a row
    assert m.per_label["red"].recall == 0.75 and m.per_label["blue"].precision == 0.75
    assert m.accuracy == pytest.approx(6 / 7)
    assert m.latency_p50_ms is not None and m.latency_p95_ms is not None


def test_write_report_writes_metrics_json_and_a_png(tmp_path: Path) -> None:
    m = compute_metrics(["cat", "dog", "dog"], ["cat", "dog", "cat"], backend="onnx")
    written = write_report(m, tmp_path / "report", extra={"dataset": "ds"})
    assert [p.name for p in written] == ["metrics.json", "confusion_matrix.png"]
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert data == {**json.loads(json.dumps(m.to_dict())), "dataset": "ds"}
    with Image.open(tmp_path / "report" / "confusion_matrix.png") as png:
        assert png.format == "PNG" and png.width >= 300 and png.height >= 300


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigurationError, match=r"azvision\[eval\]"):
        write_report(compute_metrics(["a"], ["a"]), tmp_path)
    assert (tmp_path / "metrics.json").exists() and not (tmp_path / "confusion_matrix.png").exists()
