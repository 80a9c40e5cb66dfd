"""azvision.spark.classify on local[2] against the emulator: every row answered, in its place, typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from azvision import ConfigurationError
from azvision.emulator import Emulator
from tests.conftest import make_png

pytestmark = pytest.mark.slow


def _stats(emulator: Emulator, fragment: str = "imageanalysis") -> dict[str, int]:
    """Status counts of the emulator's Image Analysis routes, from GET /_emulator/stats."""
    answer = httpx.get(
        f"{emulator.endpoint}/_emulator/stats", headers={"Training-Key": emulator.training_key}, timeout=10
    )
    answer.raise_for_status()
    merged: dict[str, int] = {}
    for route, counts in answer.json().items():
        if fragment in route:
            for status, n in counts.items():
                merged[status] = merged.get(status, 0) + n
    return merged


def _options(emulator: Emulator) -> dict[str, Any]:
    return {"endpoint": emulator.endpoint, "key": emulator.vision_key}


def _image(index: int) -> bytes:
    return make_png(size=(64, 64), color=(10 * index % 256, 200, 40))


def test_every_input_kind_gets_exactly_one_row(
    spark: Any, azvision_emulator: Emulator, tmp_path: Path
) -> None:
    from azvision.spark import classify

    good = tmp_path / "good.png"
    good.write_bytes(_image(1))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    rows = [
        ("path", str(good), None),
        ("file uri", good.as_uri(), None),
        ("bytes", None, _image(2)),
        ("missing file", str(tmp_path / "nope.png"), None),
        ("broken file", str(tmp_path / "broken.png"), None),
        ("broken bytes", None, b"GIF89a but not really"),
        ("remote scheme", "abfss://box@lake.dfs.core.windows.net/a.png", None),
        ("null", None, None),
    ]
    df = spark.createDataFrame(rows, "case string, path string, content binary")
    by_path = classify(
        df.where("content is null"), "path", backend="image_analysis", options=_options(azvision_emulator)
    )
    by_bytes = classify(
        df.where("content is not null"),
        "content",
        backend="image_analysis",
        options=_options(azvision_emulator),
    )
    results = {r.case: r for r in [*by_path.collect(), *by_bytes.collect()]}

    assert sorted(results) == sorted(case for case, _, _ in rows)
    for case in ("path", "file uri", "bytes"):
        row = results[case]
        assert row.error is None, row.error
        assert row.prediction.backend == "image_analysis"
        assert row.prediction.labels and row.prediction.label == row.prediction.labels[0].name
        assert 0.0 < row.prediction.confidence <= 1.0
    assert results["path"].prediction.source == str(good)
    assert results["path"].prediction.label == results["file uri"].prediction.label  # the same file
    assert results["path"].path == str(good)  # input columns kept as they were
    expected = {
        "missing file": "no such file",
        "broken file": "not a recognised image",
        "broken bytes": "",
        "remote scheme": "binaryFile",
        "null": "null",
    }
    for case, fragment in expected.items():
        row = results[case]
        assert row.prediction is None
        assert row.error.type == "InvalidImageError", (case, row.error)
        assert fragment in row.error.message
    # only the three good images were sent: bad ones fail before any call
    assert sum(_stats(azvision_emulator).values()) == 3


def test_binary_file_source_keeps_its_columns(
    spark: Any, azvision_emulator: Emulator, tmp_path: Path
) -> None:
    from azvision.spark import classify

    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(_image(i))
    images = spark.read.format("binaryFile").option("pathGlobFilter", "*.png").load(str(tmp_path))
    out = classify(images, "content", backend="image_analysis", options=_options(azvision_emulator)).collect()

    assert len(out) == 6
    assert sorted(Path(r.path.removeprefix("file:")).name for r in out) == [f"{i}.png" for i in range(6)]
    assert all(r.error is None and r.prediction.label for r in out)
    assert {"path", "modificationTime", "length", "content", "prediction", "error"} <= set(out[0].asDict())


def test_a_service_failure_is_an_error_row_with_the_services_code(
    spark: Any, azvision_emulator: Emulator
) -> None:
    from azvision.spark import classify

    df = spark.createDataFrame([(_image(i),) for i in range(40)], "content binary")
    out = classify(
        df,
        "content",
        backend="image_analysis",
        options={"endpoint": azvision_emulator.endpoint, "key": "0" * 32},
    ).collect()

    assert len(out) == 40
    assert {r.error.type for r in out} == {"AuthenticationError"}
    assert {r.error.status_code for r in out} == {401}
    assert all(r.prediction is None for r in out)
    assert "0" * 32 not in " ".join(r.error.message for r in out)
    # the breaker stops each task after three identical refusals: the rest are answered unsent
    assert _stats(azvision_emulator).get("401", 0) < 40


def test_bad_arguments_fail_on_the_driver_before_any_call(
    spark: Any, azvision_emulator: Emulator, tmp_path: Path
) -> None:
    from azvision.spark import classify

    (tmp_path / "a-file").write_text("not a folder")
    df = spark.createDataFrame([(_image(0), 1)], "content binary, n int")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"input_col": "nope"}, "not a column"),
        ({"input_col": "n"}, "give a string column"),
        ({"output_col": "n"}, "already has a column"),
        ({"options": {"endpoint": azvision_emulator.endpoint}}, "VISION_KEY"),
        ({"backend": "no_such_backend"}, "unknown backend"),
        ({"max_rps": 0}, "max_rps must be a positive number"),
        ({"resources": []}, "resources is empty"),
        ({"options": {**_options(azvision_emulator), "max_rps": 3}}, "not in options"),
        ({"checkpoint_dir": tmp_path / "a-file" / "checkpoints"}, "checkpoint_dir"),
    ]
    for override, message in cases:
        arguments: dict[str, Any] = {
            "input_col": "content",
            "backend": "image_analysis",
            "options": _options(azvision_emulator),
            **override,
        }
        with pytest.raises(ConfigurationError, match=message):
            classify(df, arguments.pop("input_col"), **arguments)
    assert _stats(azvision_emulator) == {}


def test_keys_stay_out_of_the_plan(spark: Any, azvision_emulator: Emulator) -> None:
    from azvision.spark import classify

    df = spark.createDataFrame([(_image(0),)], "content binary")
    out = classify(df, "content", backend="image_analysis", options=_options(azvision_emulator))
    plan = out._jdf.queryExecution().toString()
    assert "MapInPandas" in plan
    assert azvision_emulator.vision_key not in plan


def test_missing_options_come_from_the_drivers_environment(
    spark: Any, azvision_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azvision.spark import classify

    # the Python workers started before these were set: only the driver sees them
    monkeypatch.setenv("VISION_ENDPOINT", azvision_emulator.endpoint)
    monkeypatch.setenv("VISION_KEY", azvision_emulator.vision_key)
    df = spark.createDataFrame([(_image(i),) for i in range(4)], "content binary")
    rows = classify(df, "content", backend="image_analysis").collect()

    assert [r.error for r in rows] == [None] * 4
    assert _stats(azvision_emulator) == {"200": 4}


def test_with_a_checkpoint_a_second_run_sends_nothing(
    spark: Any, azvision_emulator: Emulator, tmp_path: Path
) -> None:
    from azvision.spark import classify

    df = spark.createDataFrame([(_image(i),) for i in range(10)] + [(b"junk",)], "content binary")
    options = _options(azvision_emulator)
    first = classify(
        df, "content", backend="image_analysis", options=options, checkpoint_dir=tmp_path
    ).collect()
    assert _stats(azvision_emulator) == {"200": 10}
    again = classify(
        df, "content", backend="image_analysis", options=options, checkpoint_dir=tmp_path
    ).collect()

    assert _stats(azvision_emulator) == {"200": 10}  # every answer came from the checkpoint
    assert sorted(map(str, again)) == sorted(map(str, first))
    assert sum(r.error is not None for r in again) == 1  # the bad row is an error row both times
