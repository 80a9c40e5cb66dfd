"""One quota for the whole job: split over the tasks running at once, and over several resources.

Counts come from the emulator's ``/_emulator/stats``: 429s it answered, requests each resource served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from azvision.emulator import Emulator
from tests.spark.test_classify import _image, _options, _stats

pytestmark = pytest.mark.slow


@pytest.mark.azvision_emulator(rate_limit_tps=4)
def test_the_job_quota_is_split_over_the_running_tasks(spark: Any, azvision_emulator: Emulator) -> None:
    from azvision.spark import classify

    df = spark.createDataFrame([(_image(i),) for i in range(40)], "content binary")
    out = classify(df, "content", backend="image_analysis", options=_options(azvision_emulator), max_rps=4)
    rows = out.collect()

    assert len(rows) == 40
    assert all(r.error is None for r in rows), {r.error for r in rows}
    assert _stats(azvision_emulator) == {"200": 40}  # two tasks at 2/s each: the emulator never said 429

    # the same rows with each partition at the full 4/s of its own: the tasks overrun the quota together
    options = _options(azvision_emulator)

    def unshared(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from azvision import ImageAnalysisBackend

        with ImageAnalysisBackend(**options) as clf:
            for batch in batches:
                done = list(clf.classify_many(list(batch["content"]), max_rps=4))
                yield pd.DataFrame({"ok": [not isinstance(o, Exception) for o in done]})

    time.sleep(1.5)  # the token bucket refills
    df.repartition(2).mapInPandas(unshared, "ok boolean").collect()
    assert _stats(azvision_emulator).get("429", 0) > 0


@pytest.mark.azvision_emulator(rate_limit_tps=2)
def test_without_a_quota_429s_are_retried_after_retry_after(spark: Any, azvision_emulator: Emulator) -> None:
    from azvision.spark import classify

    df = spark.createDataFrame([(_image(i),) for i in range(12)], "content binary")
    rows = classify(df, "content", backend="image_analysis", options=_options(azvision_emulator)).collect()

    assert all(r.error is None for r in rows), {r.error for r in rows}
    counts = _stats(azvision_emulator)
    assert counts["200"] == 12
    assert counts.get("429", 0) > 0  # the tasks overran the unknown quota, and the retry driver recovered


def test_resources_add_their_quotas_each_under_its_own(spark: Any) -> None:
    from azvision.spark import classify

    with Emulator(rate_limit_tps=3) as first, Emulator(rate_limit_tps=3) as second:
        resources = [{**_options(emulator), "max_rps": 3} for emulator in (first, second)]
        df = spark.createDataFrame([(_image(i),) for i in range(36)], "content binary")
        rows = classify(df, "content", backend="image_analysis", resources=resources).collect()
        counts = [_stats(first), _stats(second)]

    assert len(rows) == 36
    assert all(r.error is None for r in rows), {r.error for r in rows}
    assert counts == [{"200": 18}, {"200": 18}]  # dealt half and half, and neither ever said 429
