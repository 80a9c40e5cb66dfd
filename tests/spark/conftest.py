"""One local SparkSession for the whole test session (starting the JVM takes seconds), Java permitting."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed")

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (no java on PATH, no JAVA_HOME)", allow_module_level=True)

from tests.integration.conftest import SHAPES, shape_image

#: Task slots of the test session: every test runs on local[2].
SLOTS = 2
ITERATION_ID = "5e0c3b7a-2d41-4f6e-9b8a-1c2d3e4f5a6b"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """``local[2]``, no UI, Python workers on this interpreter (they import the azvision under test)."""
    from azvision.spark import local_session

    # pyspark starts its Python workers with $PYSPARK_PYTHON: this interpreter, whatever the environment says
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = local_session(SLOTS, app_name="azvision-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def export_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact-classifier export trained by the emulator's learner on three shapes."""
    from azvision.emulator._features import get_feature_extractor
    from azvision.emulator._head import train_head
    from azvision.emulator._onnx_export import build_export_zip

    images = [shape_image(kind, i) for kind in SHAPES for i in range(12)]
    targets = [[index] for index, _ in enumerate(SHAPES) for _ in range(12)]
    head = train_head(get_feature_extractor().features(images), targets, list(SHAPES))
    path = tmp_path_factory.mktemp("export") / "model.zip"
    path.write_bytes(
        build_export_zip(
            head, iteration_id=ITERATION_ID, exported_at=datetime(2026, 1, 1, tzinfo=timezone.utc)
        )
    )
    return path
