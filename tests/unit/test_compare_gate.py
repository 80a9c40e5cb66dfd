"""The migration gate: paired bootstrap intervals, and ``compare --baseline --max-drop`` exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import azvision
from azvision import Label, Prediction
from azvision._gate import bootstrap_difference, bootstrap_interval, gate, verdict
from azvision._images import LoadedImage
from azvision._registry import _registered
from tests.unit.test_cli_classify import ColourBackend, _fake_backend, run, write_image

pytestmark = pytest.mark.usefixtures(_fake_backend.__name__)


class AlwaysRed(ColourBackend):
    name = "fake_red"

    def _predict(self, image: LoadedImage) -> Prediction:
        return Prediction(labels=[Label(name="red", confidence=0.9)], backend=self.name)


@pytest.fixture(autouse=True)
def _red_backend() -> Iterator[None]:
    azvision.register_backend("fake_red", AlwaysRed)
    yield
    _registered.pop("fake_red", None)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for colour in ("red", "green", "blue"):
        for i in range(4):
            write_image(root / colour / f"{i}.png", colour, shade=i * 3)
    return root


def test_bootstrap_interval_is_seeded_paired_and_covers_the_difference() -> None:
    baseline = [True] * 80 + [False] * 20
    challenger = [True] * 70 + [False] * 30  # 10 points worse, on the same images
    low, high = bootstrap_difference(baseline, challenger, seed=1) or (0.0, 0.0)
    assert low < -0.1 < high < 0.0  # paired: the ten lost images always count against it
    assert bootstrap_difference(baseline, challenger, seed=1) == (low, high)
    assert bootstrap_difference([None, True], [True, None]) is None  # no image answered by both
    with pytest.raises(ValueError, match="2 baseline outcomes but 1"):
        bootstrap_difference([True, True], [True])


def test_gate_fails_only_beyond_max_drop() -> None:
    outcomes = {"base": [True] * 9 + [False], "same": [True] * 9 + [False], "worse": [True] * 8 + [False] * 2}
    strict = gate(outcomes, baseline="base", max_drop=0.05, costs={"base": 2.0, "same": 0.0})
    assert strict.failed == ("worse",) and [r.passed for r in strict.rows] == [True, True, False]
    assert strict.rows[2].difference == pytest.approx(-0.1) and strict.rows[1].cost_per_1000 == 0.0
    assert gate(outcomes, baseline="base", max_drop=0.1).passed  # exactly max_drop is allowed
    assert gate(outcomes, baseline="base").passed  # no limit: report only


def test_compare_exits_3_when_a_challenger_drops_too_far(dataset: Path, tmp_path: Path) -> None:
    report = tmp_path / "r"
    result = run("compare", str(dataset), "-b", "fake_red", "--baseline", "fake_colour", "--max-drop", "0.02",
                 "-r", str(report), "--no-plot")  # fmt: skip
    assert result.exit_code == 3, result.stdout
    assert "gate failed: fake_red is 66.7% below fake_colour" in result.stderr
    verdict = json.loads((report / "comparison.json").read_text())["gate"]
    assert verdict["baseline"] == "fake_colour" and verdict["failed"] == ["fake_red"]
    rows = {row["backend"]: row for row in verdict["rows"]}
    assert rows["fake_colour"]["accuracy"] == 1.0 and rows["fake_red"]["difference"] == pytest.approx(-2 / 3)
    low, high = rows["fake_red"]["ci95"]
    assert low <= -2 / 3 <= high < 0
    text = " ".join(result.stdout.split())
    assert "against the baseline fake_colour, max drop 2.0%" in text and "FAIL" in text


def test_compare_passes_within_max_drop_and_needs_a_baseline(dataset: Path, tmp_path: Path) -> None:
    ok = run("compare", str(dataset), "-b", "fake_colour", "-b", "fake_red", "--baseline", "Fake-Red",
             "--max-drop", "0", "-r", str(tmp_path / "a"), "--no-plot", "--json")  # fmt: skip
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["gate"]["passed"] is True
    lonely = run("compare", str(dataset), "-b", "fake_colour", "-b", "fake_red", "--max-drop", "0.1",
                 "-r", str(tmp_path / "b"), "--no-plot")  # fmt: skip
    assert lonely.exit_code == 2 and "--max-drop needs --baseline" in lonely.stderr


def test_any_metric_can_be_gated_with_an_interval_over_resampled_images() -> None:
    truth = [1.0] * 30 + [0.0] * 10  # a per-image score for each backend, e.g. a detector's AP
    worse = [1.0] * 24 + [0.0] * 16

    def difference(indices: list[int]) -> float:  # the statistic is computed on each resample
        return sum(worse[i] - truth[i] for i in indices) / len(indices)

    interval = bootstrap_interval(40, difference, seed=3)
    assert interval is not None and interval[0] < -0.15 < interval[1] < 0
    assert bootstrap_interval(0, difference) is None
    report = verdict({"cv": 0.75, "automl": 0.6}, baseline="cv", max_drop=0.1, intervals={"automl": interval},
                     metric="map50")  # fmt: skip
    assert report.failed == ("automl",) and report.to_dict()["metric"] == "map50"
    assert report.rows[1].ci95 == interval
