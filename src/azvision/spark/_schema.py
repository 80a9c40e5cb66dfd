"""The result columns: Arrow-friendly structs with the fields of an ``azvision classify`` JSONL line.

* ``prediction``: ``label``, ``confidence``, ``labels`` (array of ``name``, ``confidence``, ``box``),
  ``backend``, ``model``, ``source``, ``caption``; null for a failed row.
* ``error``: ``type`` (the `AzVisionError` subclass name), ``message``, ``status_code``, ``code`` (the
  service's own); null for a row that succeeded.

The record functions run on the executors and need no pyspark; the Spark types are built on the driver.

Example:
    >>> from azvision import InvalidImageError
    >>> error_record(InvalidImageError("empty file"))
    {'type': 'InvalidImageError', 'message': 'empty file', 'status_code': None, 'code': None}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import AzVisionError
from .._models import Prediction

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

__all__ = ["error_record", "error_type", "prediction_record", "prediction_type", "result_schema"]


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """One ``prediction`` struct value.

    Example:
        >>> from azvision import Label
        >>> p = Prediction(labels=[Label(name="cat", confidence=0.9)], backend="onnx", model="it1")
        >>> record = prediction_record(p)
        >>> record["label"], record["labels"]
        ('cat', [{'name': 'cat', 'confidence': 0.9, 'box': None}])
    """
    line = prediction.to_dict()
    return {
        "label": line["label"],
        "confidence": float(line["confidence"]),
        "labels": line["labels"],
        "backend": line["backend"],
        "model": line["model"],
        "source": line["source"],
        "caption": line["caption"],
    }


def error_record(error: AzVisionError) -> dict[str, Any]:
    """One ``error`` struct value: the typed error's name and message, and the service's status and code."""
    line = error.to_dict()
    return {
        "type": line["type"],
        "message": line["message"],
        "status_code": error.status_code,
        "code": error.code,
    }


def prediction_type() -> StructType:
    """The Spark type of the ``prediction`` column."""
    from pyspark.sql import types as t

    box = t.StructType([t.StructField(side, t.DoubleType()) for side in ("left", "top", "width", "height")])
    label = t.StructType(
        [
            t.StructField("name", t.StringType()),
            t.StructField("confidence", t.DoubleType()),
            t.StructField("box", box),
        ]
    )
    return t.StructType(
        [
            t.StructField("label", t.StringType()),
            t.StructField("confidence", t.DoubleType()),
            t.StructField("labels", t.ArrayType(label)),
            t.StructField("backend", t.StringType()),
            t.StructField("model", t.StringType()),
            t.StructField("source", t.StringType()),
            t.StructField("caption", t.StringType()),
        ]
    )


def error_type() -> StructType:
    """The Spark type of the ``error`` column."""
    from pyspark.sql import types as t

    return t.StructType(
        [
            t.StructField("type", t.StringType()),
            t.StructField("message", t.StringType()),
            t.StructField("status_code", t.IntegerType()),
            t.StructField("code", t.StringType()),
        ]
    )


def result_schema(input_schema: StructType, output_col: str, error_col: str) -> StructType:
    """The input columns, then ``output_col`` and ``error_col``."""
    from pyspark.sql import types as t

    return t.StructType(
        [
            *input_schema.fields,
            t.StructField(output_col, prediction_type()),
            t.StructField(error_col, error_type()),
        ]
    )
