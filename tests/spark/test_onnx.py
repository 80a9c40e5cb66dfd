"""The ONNX backend on Spark: the export shipped once with SparkFiles, loaded once per Python worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SHAPES, shape_image
from tests.spark.conftest import ITERATION_ID

pytestmark = pytest.mark.slow


def _loads_per_worker(batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    from azvision.spark._worker import worker_loads

    for _ in batches:
        pass
    loads = {k: v for k, v in worker_loads().items() if k.startswith("onnx:")}
    yield pd.DataFrame({"pid": [os.getpid()], "loads": [sum(loads.values())], "models": [len(loads)]})


def test_onnx_rows_are_right_and_the_model_loads_once_per_worker(
    spark: Any, export_zip: Path, tmp_path: Path
) -> None:
    from azvision.spark import classify

    rows = []
    for kind in SHAPES:
        for i in range(8):
            path = tmp_path / f"{kind}-{i}.png"
            path.write_bytes(shape_image(kind, 2000 + i))
            rows.append((kind, str(path)))
    df = spark.createDataFrame(rows, "truth string, path string").repartition(8)
    out = classify(df, "path", backend="onnx", options={"model_path": str(export_zip)}).collect()

    assert len(out) == len(rows)
    assert all(r.error is None for r in out), [r.error for r in out if r.error]
    assert {r.prediction.backend for r in out} == {"onnx"}
    assert {r.prediction.model for r in out} == {ITERATION_ID}
    assert sum(r.prediction.label == r.truth for r in out) >= 0.9 * len(rows)

    # again, on the same Python workers: nothing is loaded twice
    classify(df, "path", backend="onnx", options={"model_path": str(export_zip)}).count()
    probe = spark.range(0, 32, numPartitions=16).mapInPandas(
        _loads_per_worker, "pid long, loads long, models long"
    )
    workers = probe.distinct().collect()
    loaded = [w for w in workers if w.loads]
    assert loaded, workers
    assert all(w.loads == 1 and w.models == 1 for w in loaded), workers
    assert (
        len({w.pid for w in loaded}) <= 2 * 2
    )  # 16 tasks of classify on local[2]: a load per worker, not per task


def test_a_missing_model_fails_on_the_driver(spark: Any, tmp_path: Path) -> None:
    from azvision import ConfigurationError
    from azvision.spark import classify

    df = spark.createDataFrame([("x.png",)], "path string")
    with pytest.raises(ConfigurationError, match="does not exist"):
        classify(df, "path", backend="onnx", options={"model_path": str(tmp_path / "gone.zip")})


def test_each_task_runs_its_session_on_its_own_cores(export_zip: Path) -> None:
    from azvision import ConfigurationError, OnnxBackend

    with OnnxBackend(export_zip, threads=1) as clf:
        assert clf._session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ConfigurationError, match="threads must be at least 1"):
        OnnxBackend(export_zip, threads=0)
