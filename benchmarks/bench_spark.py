"""Benchmark 7 — ``azvision.spark.classify``: one quota for the whole job, several resources, ONNX scaling.

In one run, on a local Spark (each emulator in its own process, like a remote service):

* **shared quota**: an emulator at 20 TPS and 200 ms latency, 400 rows on ``local[4]`` with ``max_rps=20``.
  Targets: ≥ 0.9 × 20 rows/s over the whole Spark job, 0 rows lost, 0 429s surfaced, < 2 % of the
  requests answered 429 at the emulator (``/_emulator/stats``).
* **SynapseML-style baseline**, same emulator, same rows: each partition runs ``classify_many`` with its
  own, unshared limit of 20/s (what a per-partition client does without a cluster-wide budget).
* **two resources** at 10 TPS each, ``resources=[..., ...]``: ≥ 0.9 × 20 rows/s combined, neither
  resource above 10 (its served requests over the job's time, and no 429 from it).
* **ONNX**: 2,000 rows, ``local[2]`` against ``local[1]``: ≥ 1.6 ×.

Rows/s are measured over the whole Spark action (``collect``), after a warm-up job has started the
Python workers, so the figure includes Spark's own start and end of the job. For the shared quota, a
recording proxy in front of the emulator also times the first request and the last answer: the rate
while sending is the share of the quota the tasks used, Spark's fixed cost left out.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._common import Lab, RecordingProxy, RemoteEmulator, Result, counts_since, request_total, wall_clock

NAME = "spark"
LATENCY_MS = 200
QUOTA_TPS = 20.0
RESOURCE_TPS = 10.0


def _session(threads: int) -> Any:
    from azvision.spark import local_session

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers on this interpreter
    return local_session(threads, app_name=f"azvision-bench-{threads}")


def _cv_options(emu: RemoteEmulator, lab: Lab) -> dict[str, Any]:
    project = lab.project
    return {
        "endpoint": emu.endpoint,
        "key": emu.prediction_key,
        "project_id": project.project_id,
        "iteration": project.publish_name,
        "store": False,
    }


def _outcome(rows: list[Any], expected: int) -> dict[str, Any]:
    errors = [r.error for r in rows if r.error is not None]
    return {
        "rows": len(rows),
        "lost": expected - len(rows),
        "failed": len(errors),
        "surfaced_429": sum(e.type == "RateLimitError" for e in errors),
    }


def _timed(
    emus: list[RemoteEmulator], action: Callable[[], list[Any]]
) -> tuple[list[Any], float, list[dict[str, int]]]:
    time.sleep(1.5)  # let every token bucket refill, so every mode starts alike
    before = [request_total(e.stats()) for e in emus]
    with wall_clock() as elapsed:
        rows = action()
    after = [request_total(e.stats()) for e in emus]
    return rows, elapsed[0], [counts_since(b, a) for b, a in zip(before, after, strict=True)]


def _share_429(counts: dict[str, int]) -> float:
    total = sum(counts.values())
    return counts.get("429", 0) / total if total else 0.0


def _fixed_cost(df: Any) -> float:
    """Median seconds of a job that sends the same partitions through a mapInPandas doing nothing."""

    def _identity(batches: Iterator[Any]) -> Iterator[Any]:  # nested: pickled by value for the workers
        yield from batches

    runs = []
    for _ in range(4):
        with wall_clock() as elapsed:
            df.mapInPandas(_identity, df.schema).collect()
        runs.append(elapsed[0])
    return sorted(runs[1:])[1]  # the first starts the Python workers


def _unshared(options: dict[str, Any], limit: float) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The per-partition client: every task its own ``classify_many`` at the full ``limit``."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from azvision import AzVisionError, CustomVisionBackend

        with CustomVisionBackend(**options) as clf:
            for batch in batches:
                outcomes = list(clf.classify_many(list(batch["path"]), max_rps=limit))
                yield pd.DataFrame(
                    {
                        "path": batch["path"],
                        "error": [
                            {"type": type(o).__name__} if isinstance(o, AzVisionError) else None
                            for o in outcomes
                        ],
                    }
                )

    return run


def _cloud(lab: Lab) -> list[Result]:
    from azvision.spark import classify

    n = lab.settings.scale(400, 120)
    spark = _session(4)
    results: list[Result] = []
    try:
        df = spark.createDataFrame([(p,) for p in lab.image_files(n)], "path string").repartition(4).cache()
        df.count()
        fixed = _fixed_cost(df)
        warm = spark.createDataFrame([(p,) for p in lab.image_files(8)], "path string")
        with (
            lab.emulator(latency_ms=LATENCY_MS, rate_limit_tps=QUOTA_TPS) as emu,
            RecordingProxy(emu.endpoint) as proxy,
        ):
            options = {**_cv_options(emu, lab), "endpoint": proxy.endpoint}
            classify(warm, "path", backend="custom_vision", options=options, max_rps=QUOTA_TPS).collect()
            seen = len(proxy.exchanges)
            rows, seconds, (counts,) = _timed(
                [emu],
                lambda: classify(
                    df, "path", backend="custom_vision", options=options, max_rps=QUOTA_TPS
                ).collect(),
            )
            exchanges = proxy.exchanges[seen:]
            sending = max(e.answered for e in exchanges) - min(e.sent for e in exchanges)
            shared = {
                **_outcome(rows, n),
                "seconds": seconds,
                "sending_seconds": sending,
                "server_counts": counts,
            }
            rate = (n - shared["failed"]) / seconds
            options = _cv_options(emu, lab)
            base_rows, base_seconds, (base_counts,) = _timed(
                [emu],
                lambda: df.mapInPandas(
                    _unshared({**options, "key": emu.prediction_key}, QUOTA_TPS),
                    "path string, error struct<type string>",
                ).collect(),
            )
            base = {**_outcome(base_rows, n), "seconds": base_seconds, "server_counts": base_counts}
            base_rate = (n - base["failed"]) / base_seconds
        note = f"{n} rows, local[4], quota {QUOTA_TPS:g} TPS, {LATENCY_MS} ms; server saw {counts}"
        results += [
            Result(
                "spark: fixed cost of a job (identity mapInPandas)",
                fixed,
                "s",
                note="the same 4 partitions through a mapInPandas that returns its input: Spark's own start and end",
            ),
            Result(
                "spark max_rps=20: throughput",
                rate,
                "rows/s",
                target=0.9 * QUOTA_TPS,
                ratio=rate / QUOTA_TPS,
                note=note,
                details=shared,
            ),
            Result(
                "spark max_rps=20: rate while sending",
                len(exchanges) / sending,
                "req/s",
                target=0.9 * QUOTA_TPS,
                ratio=len(exchanges) / sending / QUOTA_TPS,
                note=f"{len(exchanges)} requests in {sending:.1f} s of a {seconds:.1f} s job (the rest: Spark's start and end)",
            ),
            Result("spark max_rps=20: rows lost", shared["lost"], "rows", target=0, better="lower"),
            Result(
                "spark max_rps=20: 429s surfaced",
                shared["surfaced_429"],
                "rows",
                target=0,
                better="lower",
                note=f"{shared['failed']} rows failed",
            ),
            Result(
                "spark max_rps=20: 429 share at the emulator",
                100 * _share_429(counts),
                "%",
                target=2.0,
                better="lower",
            ),
            Result(
                "spark baseline (unshared 20/s per partition): throughput",
                base_rate,
                "rows/s",
                ratio=base_rate / QUOTA_TPS,
                note=f"{base['failed']} rows failed ({base['surfaced_429']} by 429); server saw {base_counts}",
                details=base,
            ),
            Result("spark baseline: 429 share at the emulator", 100 * _share_429(base_counts), "%"),
        ]
        results += _two_resources(lab, spark, df, n)
    finally:
        spark.stop()
    return results


def _two_resources(lab: Lab, spark: Any, df: Any, n: int) -> list[Result]:
    from azvision.spark import classify

    warm = spark.createDataFrame([(p,) for p in lab.image_files(8)], "path string")
    with (
        lab.emulator(latency_ms=LATENCY_MS, rate_limit_tps=RESOURCE_TPS) as first,
        lab.emulator(latency_ms=LATENCY_MS, rate_limit_tps=RESOURCE_TPS) as second,
    ):
        resources = [{**_cv_options(e, lab), "max_rps": RESOURCE_TPS} for e in (first, second)]
        classify(warm, "path", backend="custom_vision", resources=resources).collect()
        rows, seconds, counts = _timed(
            [first, second],
            lambda: classify(df, "path", backend="custom_vision", resources=resources).collect(),
        )
    outcome = {**_outcome(rows, n), "seconds": seconds, "server_counts": counts}
    rate = (n - outcome["failed"]) / seconds
    served = [c.get("200", 0) / seconds for c in counts]
    throttled = sum(c.get("429", 0) for c in counts)
    return [
        Result(
            "spark 2 resources x 10 TPS: combined throughput",
            rate,
            "rows/s",
            target=0.9 * 2 * RESOURCE_TPS,
            ratio=rate / (2 * RESOURCE_TPS),
            note=f"{n} rows, {outcome['failed']} failed, {outcome['lost']} lost; servers saw {counts}",
            details=outcome,
        ),
        Result(
            "spark 2 resources: busiest resource",
            max(served),
            "req/s",
            target=RESOURCE_TPS,
            better="lower",
            note=f"served {served[0]:.2f} and {served[1]:.2f} req/s; {throttled} answered 429",
        ),
    ]


def _onnx_rate(lab: Lab, threads: int, n: int) -> tuple[float, dict[str, Any]]:
    from azvision.spark import classify

    spark = _session(threads)
    try:
        model = str(lab.project.export_dir)
        paths = lab.image_files(n)
        df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(threads).cache()
        df.count()
        warm = spark.createDataFrame([(p,) for p in paths[: 4 * threads]], "path string")
        classify(warm, "path", backend="onnx", options={"model_path": model}).collect()  # load in each worker
        with wall_clock() as elapsed:
            rows = classify(df, "path", backend="onnx", options={"model_path": model}).collect()
    finally:
        spark.stop()
    outcome = _outcome(rows, n)
    return (n - outcome["failed"]) / elapsed[0], {**outcome, "seconds": elapsed[0]}


def _onnx(lab: Lab) -> list[Result]:
    """``local[1]`` and ``local[2]`` in alternating rounds (1, 2, 2, 1), so a swing in the shared
    machine's load falls on both sides."""
    n = lab.settings.scale(2000, 400)
    seconds = {1: 0.0, 2: 0.0}
    done = {1: 0, 2: 0}
    details: dict[str, Any] = {}
    for round_, order in enumerate(((1, 2), (2, 1))):
        for threads in order:
            rate, outcome = _onnx_rate(lab, threads, n)
            seconds[threads] += outcome["seconds"]
            done[threads] += n - outcome["failed"]
            details[f"round {round_ + 1} local[{threads}]"] = {**outcome, "rows_per_s": rate}
    one, two = done[1] / seconds[1], done[2] / seconds[2]
    return [
        Result(
            "spark onnx: local[2] / local[1]",
            two / one,
            "x",
            target=1.6,
            ratio=two / one,
            note=f"{n} rows x 2 rounds: local[1] {one:.1f} rows/s, local[2] {two:.1f} rows/s",
            details=details,
        )
    ]


def run(lab: Lab) -> list[Result]:
    """The shared quota, its unshared baseline and two resources on ``local[4]``; ONNX on 1 and 2 cores."""
    return _cloud(lab) + _onnx(lab)
