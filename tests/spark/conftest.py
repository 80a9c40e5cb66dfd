"""One local SparkSession for the whole test session (starting the JVM takes seconds), Java permitting."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed")

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (no java on PATH, no JAVA_HOME)", allow_module_level=True)

#: Task slots of the test session: every test runs on local[2].
SLOTS = 2


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """``local[2]``, no UI, Python workers on this interpreter (they import the azvision under test)."""
    from azvision.spark import local_session

    # pyspark starts its Python workers with $PYSPARK_PYTHON: this interpreter, whatever the environment says
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = local_session(SLOTS, app_name="azvision-tests")
    yield session
    session.stop()
