"""PartitionJob, what each task runs, on pandas batches in this process: every row answered in its place.

A partition reaches a task as several Arrow batches; the batch engine reads ahead across them while the
rows are answered batch by batch. No JVM here: the job is called as ``mapInPandas`` would call it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from azvision.emulator import Emulator
from azvision.spark._ship import Shipped
from azvision.spark._worker import PartitionJob, Resource, image_of, worker_backend
from tests.conftest import make_png
from tests.integration.conftest import SHAPES, shape_image
from tests.spark.test_classify import _stats


def _job(options: dict[str, object]) -> PartitionJob:
    return PartitionJob("onnx", (Resource(options),), "content", "prediction", "error")


def test_rows_are_answered_in_place_across_batches(export_zip: Path) -> None:
    good = [shape_image(kind, 3000 + i) for i in range(7) for kind in SHAPES]  # 21 images
    batches = [
        pd.DataFrame({"n": [0, 1, 2], "content": [good[0], None, good[1]]}),
        pd.DataFrame({"n": pd.Series([], dtype="int64"), "content": pd.Series([], dtype=object)}),
        pd.DataFrame({"n": range(3, 23), "content": [b"junk", *good[2:21]]}),
        pd.DataFrame({"n": [23], "content": [None]}),
    ]
    out = list(_job({"model_path": str(export_zip)})(iter(batches)))

    assert [len(b) for b in out] == [3, 0, 20, 1]
    rows = pd.concat(out, ignore_index=True)
    assert list(rows["n"]) == list(range(24))  # input columns kept, in order
    failed = {int(n): e["type"] for n, e in zip(rows["n"], rows["error"], strict=True) if e is not None}
    assert failed == {1: "InvalidImageError", 3: "InvalidImageError", 23: "InvalidImageError"}
    labels = [p["label"] for p in rows["prediction"] if p is not None]
    assert labels[:2] == [SHAPES[0], SHAPES[1]]
    truth = [SHAPES[i % 3] for i in range(21)]
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= 19


def test_a_backend_that_cannot_be_built_makes_every_row_an_error_row() -> None:
    batches = [pd.DataFrame({"content": [b"x", None, b"y"]})]
    (out,) = _job({"model_path": "/no/such/model.zip"})(iter(batches))

    assert [e["type"] for e in out["error"]] == [
        "ConfigurationError",
        "InvalidImageError",
        "ConfigurationError",
    ]
    assert "does not exist" in out["error"][0]["message"]
    assert list(out["prediction"]) == [None, None, None]


def test_the_backend_is_built_once_per_process(export_zip: Path) -> None:
    options = {"model_path": str(export_zip), "threads": 1}
    assert worker_backend("onnx", options) is worker_backend("onnx", dict(options))


def test_path_cells() -> None:
    assert image_of("https://example.com/a.jpg", "p") == "https://example.com/a.jpg"
    assert image_of("file:///data/a%20b.jpg", "p") == "/data/a b.jpg"
    assert image_of("C:\\photos\\a.jpg", "p") == "C:\\photos\\a.jpg"
    assert image_of(float("nan"), "p").message == "the 'p' column is null in this row"
    assert "holds a int" in image_of(3, "p").message
    assert repr(_job({"key": "s3cret", "model_path": Shipped("m.zip")})).count("s3cret") == 0


def _settled_stats(emulator: Emulator) -> dict[str, int]:
    """The status counts once the requests a closed attempt still had in flight have landed."""
    seen = _stats(emulator)
    for _ in range(50):
        time.sleep(0.2)
        now = _stats(emulator)
        if now == seen:
            return now
        seen = now
    return seen


def _ia_job(emulator: Emulator, checkpoint: Path) -> PartitionJob:
    options = {"endpoint": emulator.endpoint, "key": emulator.vision_key}
    return PartitionJob(
        "image_analysis", (Resource(options),), "content", "prediction", "error", str(checkpoint)
    )


def test_a_rerun_answers_checkpointed_rows_without_sending_them(
    azvision_emulator: Emulator, tmp_path: Path
) -> None:
    images = [make_png(size=(64, 64), color=(i, 100, 200)) for i in range(30)]
    batches = [pd.DataFrame({"content": images[i : i + 10]}) for i in range(0, 30, 10)]

    # an attempt killed after its first batch: what it answered is kept, line by line
    killed = _ia_job(azvision_emulator, tmp_path)(iter(batches))
    first = next(killed)
    killed.close()
    # requests it had already sent still land; they are billed, and the rerun sends them again (documented)
    sent_before = _settled_stats(azvision_emulator).get("200", 0)
    kept = sum(len(f.read_text().splitlines()) for f in tmp_path.glob("part-00000-*.jsonl"))
    assert kept == 10 <= sent_before

    rerun = pd.concat(list(_ia_job(azvision_emulator, tmp_path)(iter(batches))), ignore_index=True)
    assert len(rerun) == 30 and all(e is None for e in rerun["error"])
    assert list(rerun["prediction"][:10]) == list(first["prediction"])  # the kept answers, as they were
    assert _stats(azvision_emulator)["200"] == sent_before + (30 - kept)  # only the rest was sent

    again = pd.concat(list(_ia_job(azvision_emulator, tmp_path)(iter(batches))), ignore_index=True)
    assert _stats(azvision_emulator)["200"] == sent_before + (30 - kept)  # nothing more
    assert list(again["prediction"]) == list(rerun["prediction"])


def test_a_checkpoint_that_cannot_be_written_costs_calls_not_the_task(
    azvision_emulator: Emulator, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    batches = [pd.DataFrame({"content": [make_png(size=(64, 64)), None]})]
    (out,) = _ia_job(azvision_emulator, blocked / "run")(iter(batches))

    assert out["error"][0] is None and out["prediction"][0]["label"]
    assert out["error"][1]["type"] == "InvalidImageError"
