"""How one job-wide quota is split: the tasks Spark can run at once, each task's share, rows over resources.

Pure functions of Spark's configuration (no SparkSession needed), so every rule is unit-tested.

Example:
    >>> concurrent_tasks({}, "local[4]", default_parallelism=4)
    4
    >>> task_share(20.0, partitions=8, slots=4)
    5.0
    >>> list(itertools.islice(Dealer([10.0, 10.0]).picks(), 4))
    [0, 1, 0, 1]
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["Dealer", "concurrent_tasks", "planned_partitions", "task_share"]

_LOCAL = re.compile(r"local(?:\[(\*|\d+)(?:\s*,\s*\d+)?\])?$")
_LOCAL_CLUSTER = re.compile(r"local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]$")
#: What Spark writes for an unbounded ``spark.dynamicAllocation.maxExecutors``.
_UNBOUNDED = {"", "infinity", str(2**31 - 1)}


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cores(conf: Mapping[str, str], master: str, default_parallelism: int) -> int:
    master = master.strip()
    local = _LOCAL.match(master)
    if local:
        threads = local.group(1)
        if threads is None:
            return 1
        return _cpu_count() if threads == "*" else int(threads)
    cluster = _LOCAL_CLUSTER.match(master)
    if cluster:
        return int(cluster.group(1)) * int(cluster.group(2))
    executor_cores = conf.get("spark.executor.cores")
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        executors = conf.get("spark.dynamicAllocation.maxExecutors", "")
    else:
        executors = conf.get("spark.executor.instances", "")
    if executor_cores and executors.strip().lower() not in _UNBOUNDED:
        return int(executor_cores) * int(executors)
    # The cores registered so far (or spark.default.parallelism when set): the best Spark can say.
    return default_parallelism


def concurrent_tasks(conf: Mapping[str, str], master: str, *, default_parallelism: int) -> int:
    """How many tasks of one stage Spark can run at once: task slots = cores / ``spark.task.cpus``.

    ``local[N]`` gives N cores, ``local[*]`` this machine's; on a cluster, ``spark.executor.cores`` ×
    ``spark.executor.instances`` (``spark.dynamicAllocation.maxExecutors`` under dynamic allocation, the
    most that can ever run), else Spark's default parallelism (its count of registered cores).

    Example:
        >>> concurrent_tasks({"spark.executor.cores": "4", "spark.executor.instances": "3",
        ...                   "spark.task.cpus": "2"}, "yarn", default_parallelism=2)
        6
    """
    task_cpus = max(1, int(conf.get("spark.task.cpus", "1")))
    return max(1, _cores(conf, master, default_parallelism) // task_cpus)


def planned_partitions(current: int, slots: int) -> int:
    """The partition count a job is given: the smallest multiple of ``slots`` at or above ``current``.

    Every wave of tasks then fills every slot, so a quota split ``slots`` ways is used whole to the last
    wave (7 partitions on 4 slots would run a last wave of 3, at 3/4 of the quota).

    Example:
        >>> planned_partitions(1, 4), planned_partitions(7, 4), planned_partitions(8, 4)
        (4, 8, 8)
    """
    slots = max(1, slots)
    return slots * max(1, math.ceil(current / slots))


def task_share(rate: float, *, partitions: int, slots: int) -> float:
    """One task's part of a job-wide ``rate``: at most ``min(partitions, slots)`` tasks run at once.

    Example:
        >>> task_share(20.0, partitions=2, slots=4)
        10.0
    """
    return rate / max(1, min(partitions, slots))


class Dealer:
    """Deals rows over resources in proportion to their weights (their quotas), evenly interleaved.

    Smooth weighted round-robin: each pick adds every weight to its resource's credit and takes the
    resource with the most, which then pays the total. Deterministic, so a re-run task deals alike.

    Example:
        >>> list(itertools.islice(Dealer([2.0, 1.0]).picks(), 6))
        [0, 1, 0, 0, 1, 0]
    """

    def __init__(self, weights: Sequence[float]) -> None:
        if not weights or any(not w > 0 for w in weights):
            raise ValueError(f"weights must be positive, got {list(weights)}")
        self.weights = list(weights)

    def picks(self) -> Iterator[int]:
        """An endless sequence of resource indexes."""
        credit = [0.0] * len(self.weights)
        total = sum(self.weights)
        if len(self.weights) == 1:
            yield from itertools.repeat(0)
        while True:
            for i, w in enumerate(self.weights):
                credit[i] += w
            best = max(range(len(credit)), key=lambda i: credit[i])
            credit[best] -= total
            yield best
