"""The driver side of `classify`: check everything, ship the model, split the quota, plan ``mapInPandas``."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._config import ENV, Secret
from .._errors import ConfigurationError
from .._registry import canonical_name, create_classifier, known_backends
from ._quota import concurrent_tasks, planned_partitions, task_share
from ._schema import result_schema
from ._ship import ship
from ._worker import PartitionJob, Resource

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["classify"]

_log = logging.getLogger("azvision.spark")
#: Options the job sets itself, per task.
_RESERVED = ("max_rps",)


def _checked_columns(df: DataFrame, input_col: str, output_col: str, error_col: str) -> None:
    from pyspark.sql import types as t

    fields = {f.name: f for f in df.schema.fields}
    if input_col not in fields:
        raise ConfigurationError(f"input_col {input_col!r} is not a column; the columns are {sorted(fields)}")
    if not isinstance(fields[input_col].dataType, (t.StringType, t.BinaryType)):
        raise ConfigurationError(
            f"input_col {input_col!r} is {fields[input_col].dataType.simpleString()}: give a string column "
            "(paths or URLs) or a binary one (e.g. the 'content' of spark.read.format('binaryFile'))"
        )
    if output_col == error_col:
        raise ConfigurationError(f"output_col and error_col are both {output_col!r}")
    for name in (output_col, error_col):
        if name in fields:
            raise ConfigurationError(f"the DataFrame already has a column {name!r}: choose another name")


def _with_environment(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options, with what is missing read from the driver's environment (executors have their own)."""
    filled = dict(options)
    for arg, variable in ENV.get(backend, {}).items():
        if arg not in filled and os.environ.get(variable):
            filled[arg] = os.environ[variable]
    if isinstance(filled.get("key"), str):
        filled["key"] = Secret(filled["key"])
    return filled


def _resources(
    backend: str,
    options: dict[str, Any],
    max_rps: float | None,
    resources: Sequence[Mapping[str, Any]] | None,
) -> list[tuple[dict[str, Any], float | None]]:
    """Each resource's full options and quota (one resource: ``options`` at ``max_rps``)."""
    given = [dict(r) for r in resources] if resources is not None else [{}]
    if not given:
        raise ConfigurationError("resources is empty: give at least one {endpoint, key, max_rps}")
    planned = []
    for index, extra in enumerate(given):
        quota = extra.pop("max_rps", max_rps)
        if quota is not None and not (isinstance(quota, (int, float)) and quota > 0):
            raise ConfigurationError(f"resource {index}: max_rps must be a positive number, got {quota!r}")
        planned.append((_with_environment(backend, {**options, **extra}), quota))
    quotas = [q for _, q in planned]
    if len(planned) > 1 and None in quotas and any(q is not None for q in quotas):
        raise ConfigurationError("give every resource a max_rps, or none of them")
    return planned


def _spark_facts(df: DataFrame) -> tuple[Any, dict[str, str], str, int]:
    try:
        context = df.sparkSession.sparkContext
    except Exception as exc:  # Spark Connect has no SparkContext on the client
        raise ConfigurationError(
            "azvision.spark needs a classic Spark session with a SparkContext (Spark Connect is not "
            f"supported yet): {type(exc).__name__}: {exc}"
        ) from exc
    conf = dict(context.getConf().getAll())
    return context, conf, str(context.master), int(context.defaultParallelism)


def classify(
    df: DataFrame,
    input_col: str,
    *,
    backend: str,
    options: Mapping[str, Any] | None = None,
    max_rps: float | None = None,
    resources: Sequence[Mapping[str, Any]] | None = None,
    output_col: str = "prediction",
    error_col: str = "error",
    partitions: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> DataFrame:
    """Classify every image of a DataFrame column on the executors: ``df`` plus a result and an error column.

    ``input_col`` holds paths or ``http(s)`` URLs (string) or image bytes (binary, e.g. the ``content``
    column of ``spark.read.format("binaryFile")``). Each task sends its rows through the backend's one batch
    engine; the backend (`create_classifier(backend, **options)`) is built once per Python worker,
    an ONNX model is shipped with ``SparkContext.addFile`` and loaded once per Python worker.

    ``max_rps`` is one quota for the whole job: it is split among the tasks that can run at once (the
    cores Spark has, over ``spark.task.cpus``, and no more than the partitions), so their sum stays under
    it; a 429 is retried by the one retry driver, after the service's ``Retry-After``. ``resources``
    (``[{"endpoint": ..., "key": ..., "max_rps": ...}, ...]``, each overriding ``options``) deals every
    task's rows over several Azure resources in proportion to their quotas, each under its own. The
    DataFrame is repartitioned to a multiple of the task slots (or to ``partitions``), so the quota is
    used to the last task.

    ``checkpoint_dir`` (a folder every executor reads and writes: local in local mode, a ``/dbfs``,
    ``/Volumes`` or lakehouse mount on a cluster) keeps each answered row as it comes: a task run again
    (Spark's retry, a lost executor, the same job run again) answers those rows from it instead of sending
    them again, so they are not billed twice. Failed rows are not kept; they are tried again.

    The result has one row per input row, with the input columns, ``output_col`` (label, confidence,
    labels, backend, model, source, caption; null when the row failed) and ``error_col`` (type, message,
    status_code, code; null when it succeeded). A bad image is an error row, never a failed job.

    Example:
        >>> from azvision.spark import classify  # doctest: +SKIP
        >>> images = spark.read.format("binaryFile").load("/data/photos/*.jpg")  # doctest: +SKIP
        >>> out = classify(images, "content", backend="custom_vision", max_rps=10,  # doctest: +SKIP
        ...                options={"endpoint": endpoint, "key": key, "project_id": pid, "iteration": "prod"})
        >>> out.select("path", "prediction.label", "error.type").show()  # doctest: +SKIP
    """
    name = canonical_name(backend)
    if name not in known_backends():
        choices = ", ".join(sorted(known_backends()))
        raise ConfigurationError(f"unknown backend {backend!r}; choose one of: {choices}")
    if partitions is not None and partitions < 1:
        raise ConfigurationError(f"partitions must be at least 1, got {partitions!r}")
    _checked_columns(df, input_col, output_col, error_col)
    given = dict(options or {})
    reserved = [k for k in _RESERVED if k in given]
    if reserved:
        raise ConfigurationError(f"pass {reserved[0]} to classify, not in options: it is split by task")
    context, conf, master, parallelism = _spark_facts(df)
    slots = concurrent_tasks(conf, master, default_parallelism=parallelism)
    if name == "onnx":  # a task runs on its own cores, not on every core of the executor
        given.setdefault("threads", max(1, int(conf.get("spark.task.cpus", "1"))))
    if conf.get("spark.speculation", "false").lower() == "true":
        _log.warning("spark.speculation is on: duplicate tasks call the service again, outside the quota")
    planned = _resources(name, given, max_rps, resources)
    for resource_options, _ in planned:  # a wrong option fails here, before any row is sent
        create_classifier(name, **resource_options).close()

    current = df.rdd.getNumPartitions()
    count = partitions or planned_partitions(current, slots)
    if count != current:
        df = df.repartition(count)
    job_resources = tuple(
        Resource(
            ship(context, name, resource_options),
            None if quota is None else task_share(quota, partitions=count, slots=slots),
            weight=quota or 1.0,
        )
        for resource_options, quota in planned
    )
    _log.info(
        "azvision.spark: %s over %d partitions, %d tasks at once (%s); per task: %s",
        name,
        count,
        min(count, slots),
        master,
        ", ".join("unlimited" if r.share is None else f"{r.share:.3g} rps" for r in job_resources),
    )
    folder = None
    if checkpoint_dir is not None:  # the same backend and options on the same column: the same run
        run = hashlib.sha256(
            pickle.dumps((name, input_col, [sorted(r.options.items()) for r in job_resources]))
        )
        folder = os.path.join(os.fspath(checkpoint_dir), f"run-{run.hexdigest()[:16]}")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"checkpoint_dir {checkpoint_dir}: {exc.strerror or exc}") from exc
    job = PartitionJob(name, job_resources, input_col, output_col, error_col, folder)
    return df.mapInPandas(job, result_schema(df.schema, output_col, error_col))
