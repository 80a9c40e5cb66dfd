"""Classify a Spark DataFrame of images on the executors, under one quota shared by the whole job.

Needs the ``spark`` extra (``pip install 'azvision[spark]'``: pyspark, pandas, pyarrow); ``import azvision``
never imports it. See `classify` (and `local_session` for a Spark on this machine) and ``docs/spark.md``.

Example:
    >>> import azvision.spark  # doctest: +SKIP
    >>> out = azvision.spark.classify(df, "path", backend="onnx",  # doctest: +SKIP
    ...                               options={"model_path": "/dbfs/models/export.zip"})
"""

from __future__ import annotations

from .._errors import missing_extra

try:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyspark  # noqa: F401
except ImportError as _missing:
    raise missing_extra(_missing, what="azvision.spark", extra="spark") from _missing

from ._classify import classify
from ._session import local_session

__all__ = ["classify", "local_session"]
