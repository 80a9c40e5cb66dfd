"""A local SparkSession for tests, notebooks and benchmarks on one machine."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["local_session"]


def local_session(cores: int = 2, *, app_name: str = "azvision", **conf: str) -> SparkSession:
    """A ``local[cores]`` SparkSession, bound to loopback, no UI, Python workers on this interpreter.

    Spark starts its Python workers with ``$PYSPARK_PYTHON`` (else whatever ``python3`` is on the path,
    which may lack azvision); this sets it to the running interpreter when it is unset. ``conf`` adds
    Spark settings (``spark.task.cpus="2"``, …). Needs Java 17 or later.

    Example:
        >>> from azvision.spark import local_session  # doctest: +SKIP
        >>> spark = local_session(4)  # doctest: +SKIP
        >>> spark.sparkContext.master  # doctest: +SKIP
        'local[4]'
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
