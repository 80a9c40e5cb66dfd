"""The monitor's measures on hand-made records: PSI, histogram, share below the threshold, alarms, days."""

from __future__ import annotations

import math

import pytest

from azvision import ConfigurationError
from azvision.monitoring import monitor_records, population_stability_index


def answers(*pairs: tuple[str, float], day: str | None = None) -> list[dict[str, object]]:
    return [
        {
            "label": label,
            "confidence": confidence,
            "error": None,
            **({"time": f"{day}T08:00:00Z"} if day else {}),
        }
        for label, confidence in pairs
    ]


def test_psi_is_zero_for_the_same_mix_and_grows_with_the_shift() -> None:
    assert population_stability_index({"a": 1, "b": 1}, {"a": 10, "b": 10}) == 0.0
    small = population_stability_index({"a": 50, "b": 50}, {"a": 60, "b": 40})
    large = population_stability_index({"a": 50, "b": 50}, {"a": 95, "b": 5})
    assert 0 < small < 0.1 < 0.25 < large
    expected = (0.6 - 0.5) * math.log(0.6 / 0.5) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert small == pytest.approx(expected, abs=1e-6)
    # A label only one side has counts (floored at 0.1%), it does not divide by zero.
    assert population_stability_index({"a": 10}, {"a": 9, "new": 1}) > 0.1


def test_histogram_threshold_errors_and_alarms() -> None:
    records = answers(("a", 0.05), ("a", 0.55), ("b", 0.6), ("b", 0.99), ("b", 1.0))
    records.append({"source": "x", "label": None, "error": {"type": "ServiceError", "message": "500"}})
    report = monitor_records(records, baseline={"a": 5, "b": 5}, threshold=0.6, max_error_share=0.5)
    assert report.confidence_histogram == [1, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert report.below_threshold == pytest.approx(2 / 5)
    assert report.errors == {"ServiceError": 1} and report.error_share == pytest.approx(1 / 6)
    assert report.label_counts == {"b": 3, "a": 2}
    assert report.alarms == ("40.0% of answers are below confidence 0.6 (limit 20.0%)",)
    assert report.to_dict()["drift"] is True
    quiet = monitor_records(records, baseline={"a": 2, "b": 3}, max_low_share=0.5, max_error_share=0.5)
    assert quiet.alarms == () and quiet.psi == 0.0


def test_days_come_from_time_fields_only() -> None:
    records = answers(("a", 0.9), day="2026-12-01") + answers(("a", 0.3), ("b", 0.7), day="2026-12-02")
    records += answers(("b", 0.8))  # an old line without time: counted, in no day
    report = monitor_records(records, baseline={"a": 1, "b": 1}, max_low_share=1.0)
    assert [(d.day, d.count, d.below_threshold) for d in report.days] == [
        ("2026-12-01", 1, 0.0),
        ("2026-12-02", 2, 0.5),
    ]
    assert report.days[1].mean_confidence == pytest.approx(0.5)
    assert report.total == 4


def test_bad_limits_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="threshold"):
        monitor_records(answers(("a", 0.5)), threshold=1.5)
