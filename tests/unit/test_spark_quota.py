"""The quota split of azvision.spark: task slots from Spark's configuration, shares, rows over resources."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed")

from azvision.spark._quota import Dealer, concurrent_tasks, planned_partitions, task_share


@pytest.mark.parametrize(
    ("conf", "master", "parallelism", "expected"),
    [
        ({}, "local", 1, 1),
        ({}, "local[4]", 4, 4),
        ({"spark.default.parallelism": "16"}, "local[4]", 16, 4),  # a shuffle default, not cores
        ({}, "local[3, 2]", 3, 3),  # local[N, maxFailures]
        ({"spark.task.cpus": "2"}, "local[4]", 4, 2),
        ({}, "local-cluster[2, 3, 1024]", 6, 6),
        ({"spark.executor.cores": "4", "spark.executor.instances": "5"}, "yarn", 2, 20),
        (
            {
                "spark.executor.cores": "4",
                "spark.executor.instances": "2",
                "spark.dynamicAllocation.enabled": "true",
                "spark.dynamicAllocation.maxExecutors": "10",
            },
            "yarn",
            8,
            40,  # the most that can ever run at once
        ),
        (
            {"spark.executor.cores": "4", "spark.dynamicAllocation.enabled": "true"},
            "spark://host:7077",
            24,
            24,  # unbounded: the cores Spark has registered
        ),
        ({}, "spark://host:7077", 12, 12),
    ],
)
def test_concurrent_tasks_follow_sparks_resources(
    conf: dict[str, str], master: str, parallelism: int, expected: int
) -> None:
    assert concurrent_tasks(conf, master, default_parallelism=parallelism) == expected


def test_local_star_is_this_machines_cores() -> None:
    assert concurrent_tasks({}, "local[*]", default_parallelism=1) >= 1


def test_partitions_fill_every_wave() -> None:
    assert [planned_partitions(p, 4) for p in (1, 3, 4, 5, 8, 9)] == [4, 4, 4, 8, 8, 12]


def test_the_shares_of_the_tasks_running_at_once_add_up_to_the_quota() -> None:
    for partitions, slots in [(8, 4), (2, 4), (4, 4), (1, 1)]:
        running = min(partitions, slots)
        assert task_share(20.0, partitions=partitions, slots=slots) * running == pytest.approx(20.0)


def test_rows_are_dealt_in_proportion_to_the_quotas_and_interleaved() -> None:
    picks = list(itertools.islice(Dealer([10.0, 5.0, 5.0]).picks(), 400))
    assert Counter(picks) == {0: 200, 1: 100, 2: 100}
    assert max(len(list(run)) for _, run in itertools.groupby(picks)) <= 2  # interleaved, not in blocks
    assert list(itertools.islice(Dealer([3.0]).picks(), 3)) == [0, 0, 0]
    with pytest.raises(ValueError, match="positive"):
        Dealer([1.0, 0.0])


def test_import_azvision_never_imports_pyspark() -> None:
    code = "import sys, azvision; print([m for m in ('pyspark', 'pandas', 'pyarrow') if m in sys.modules])"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "[]"


def test_a_missing_spark_extra_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['pyspark'] = None\n"
        "try:\n    import azvision.spark\n"
        "except Exception as e:\n    print(type(e).__name__, e)"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.startswith("ConfigurationError azvision.spark needs the 'spark' extra")
    assert "pip install 'azvision[spark]'" in answer.stdout
