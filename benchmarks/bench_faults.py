"""Benchmark 2 — nothing lost, nothing duplicated, few wasted attempts, under faults.

An emulator with 10 % 5xx answers (half of them 503 with ``Retry-After: 1``), 2 % dropped connections
and a 50 TPS quota; ``CustomVisionBackend.classify_many`` over 1,000 images at concurrency 16 with
``max_rps=50``, through a :class:`~benchmarks._common.RecordingProxy` that timestamps every attempt.
Targets: 1,000 results, 0 lost, 0 duplicated (exactly one successful call per image, from the proxy
and the emulator's own stats), attempts ≤ 1.3 × the minimum (one per image), and no retry of an image
sent before the ``Retry-After`` its previous answer asked for.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

from azvision import AzVisionError, CustomVisionBackend, Prediction

from ._common import (
    Exchange,
    Lab,
    RecordingProxy,
    Result,
    counts_since,
    request_total,
    wall_clock,
)

NAME = "faults"
FAIL_RATE = 0.10
DROP_RATE = 0.02
QUOTA_TPS = 50.0
CONCURRENCY = 16


def retry_after_violations(exchanges: list[Exchange]) -> tuple[int, int, float | None]:
    """Retries sent before the previous answer's ``Retry-After`` ran out.

    Returns ``(violations, retries that had a Retry-After to honour, smallest margin in seconds)``.

    Example:
        >>> log = [Exchange(1, 0.0, 0.1, 503, 1.0), Exchange(1, 1.2, 1.3, 200, None)]
        >>> violations, checked, margin = retry_after_violations(log)
        >>> violations, checked, round(margin, 3)
        (0, 1, 0.1)
    """
    by_item: dict[int | None, list[Exchange]] = defaultdict(list)
    for exchange in exchanges:
        by_item[exchange.item].append(exchange)
    violations = checked = 0
    margin: float | None = None
    for attempts in by_item.values():
        attempts.sort(key=lambda e: e.sent)
        for previous, retry in itertools.pairwise(attempts):
            if previous.retry_after is None:
                continue
            checked += 1
            gap = retry.sent - (previous.answered + previous.retry_after)
            margin = gap if margin is None else min(margin, gap)
            violations += gap < 0
    return violations, checked, margin


def run(lab: Lab) -> list[Result]:
    """One faulty batch through the recording proxy; the checks above."""
    n = lab.settings.scale(1000, 300)
    images = lab.image_files(n)
    project = lab.project
    with (
        lab.emulator(rate_limit_tps=QUOTA_TPS, fail_rate=FAIL_RATE, drop_rate=DROP_RATE) as emu,
        RecordingProxy(emu.endpoint) as proxy,
    ):
        before = request_total(emu.stats())
        with (
            CustomVisionBackend(
                proxy.endpoint,
                emu.prediction_key,
                project.project_id,
                project.publish_name,
                store=False,
                concurrency=CONCURRENCY,
                max_rps=QUOTA_TPS,
            ) as clf,
            wall_clock() as elapsed,
        ):
            outcomes = list(clf.classify_many(images))
        server = counts_since(before, request_total(emu.stats()))
        exchanges = list(proxy.exchanges)

    errors = Counter(type(o).__name__ for o in outcomes if isinstance(o, AzVisionError))
    predictions = [o for o in outcomes if isinstance(o, Prediction)]
    misplaced = sum(1 for path, o in zip(images, outcomes, strict=False) if path != o.source)
    successes = Counter(e.item for e in exchanges if e.status == 200)
    duplicated = sum(count - 1 for count in successes.values() if count > 1)
    attempts = sum(server.values())
    violations, checked, margin = retry_after_violations(exchanges)
    statuses = Counter("dropped" if e.status is None else str(e.status) for e in exchanges)
    details: dict[str, Any] = {
        "images": n,
        "seconds": elapsed[0],
        "images_per_s": n / elapsed[0],
        "errors": dict(errors),
        "error_messages": [f"{o.source}: {o!r} {o}" for o in outcomes if isinstance(o, AzVisionError)][:10],
        "server_counts": server,
        "proxy_counts": dict(statuses),
        "retry_after_checked": checked,
        "retry_after_min_margin_s": margin,
        "out_of_order": misplaced,
        "duplicated_server_successes": server.get("200", 0) - n,
    }
    setting = f"{n} images, {FAIL_RATE:.0%} 5xx, {DROP_RATE:.0%} drops, {QUOTA_TPS:g} TPS, c={CONCURRENCY}"
    return [
        Result(
            "faults: results (one per input)",
            len(outcomes),
            "results",
            target=n,
            ratio=len(outcomes) / n,
            note=f"{setting}; {elapsed[0]:.1f} s",
            details=details,
        ),
        Result(
            "faults: lost (errors in place)",
            n - len(predictions),
            "items",
            target=0,
            better="lower",
            note=f"errors: {dict(errors) or 'none'}; out of order: {misplaced}",
        ),
        Result(
            "faults: duplicated",
            max(duplicated, server.get("200", 0) - n),
            "items",
            target=0,
            better="lower",
            note=f"server: {server}",
        ),
        Result(
            "faults: attempts / minimum",
            attempts / n,
            "x",
            target=1.3,
            better="lower",
            ratio=attempts / n,
            note=f"{attempts} requests for {n} images",
        ),
        Result(
            "faults: throughput / the quota's limit",
            n / elapsed[0],
            "img/s",
            ratio=(n / elapsed[0]) / (QUOTA_TPS * n / attempts),
            note=f"at most {QUOTA_TPS * n / attempts:.1f} img/s when {attempts} requests share {QUOTA_TPS:g} TPS",
        ),
        Result(
            "faults: retries before Retry-After",
            violations,
            "retries",
            target=0,
            better="lower",
            note=f"{checked} retries followed a Retry-After; smallest margin "
            + ("n/a" if margin is None else f"{margin * 1000:.0f} ms"),
        ),
    ]
