"""Benchmark 7 — exporting a project before the service retires: fast, complete under faults, resumable.

A project of 1,000 tagged images (300 with ``--quick``) in an emulator process with 20 ms latency per
request. Rows: ``export_dataset`` throughput against the naive loop a user would write with the official
client (list the tagged images page by page, download each ``originalImageUri`` in turn), as a ratio;
images lost under 10 % 5xx, 2 % dropped connections and a 10 TPS quota (target 0); and images downloaded
again by a re-run of a finished export (target 0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from ._common import Lab, Result, bench_image, expected_label, wall_clock

NAME = "export"
LATENCY_MS = 20.0
FAIL_RATE = 0.10
DROP_RATE = 0.02
QUOTA_TPS = 10.0


def _fill(endpoint: str, key: str, project: str, n: int) -> None:
    from azvision import CustomVisionTrainer
    from azvision.datasets import Dataset, DatasetItem

    folder = Path(tempfile.mkdtemp(prefix="azvision-bench-export-"))
    items = []
    for index in range(n):
        path = folder / f"{index:06d}.jpg"
        path.write_bytes(bench_image(500_000 + index))
        items.append(DatasetItem(path, (expected_label(index),)))
    with CustomVisionTrainer(endpoint, key, max_rps=None, upload_concurrency=8) as trainer:
        report = trainer.upload(trainer.project(project), Dataset(items=tuple(items), root=folder))
    if not report.ok:
        raise RuntimeError(f"the benchmark project did not fill: {report.failed[:3]}")


def _naive(endpoint: str, key: str, project_id: str, out: Path) -> int:
    """What a user writes by hand: the official client's pages, then one GET per image, in turn."""
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    client = CustomVisionTrainingClient(endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))
    out.mkdir(parents=True)
    written, skip = 0, 0
    with httpx.Client(timeout=30) as http:
        while True:
            page = client.get_tagged_images(project_id, take=256, skip=skip)
            for image in page:
                (out / f"{image.id}.jpg").write_bytes(http.get(image.original_image_uri).content)
                written += 1
            skip += len(page)
            if len(page) < 256:
                return written


def run(lab: Lab) -> list[Result]:
    """Fill a project, then export it three ways."""
    from azvision import CustomVisionTrainer, RetryPolicy

    n = lab.settings.scale(1000, 300)
    with lab.emulator() as emu:
        _fill(emu.endpoint, emu.training_key, "export-bench", n)
    out = lab.root / "export"
    with lab.emulator(latency_ms=LATENCY_MS) as emu:
        with CustomVisionTrainer(emu.endpoint, emu.training_key) as trainer, wall_clock() as ours:
            report = trainer.export_dataset("export-bench", out / "azvision")
        with CustomVisionTrainer(emu.endpoint, emu.training_key) as trainer, wall_clock() as again:
            rerun = trainer.export_dataset("export-bench", out / "azvision")
        with wall_clock() as naive:
            naive_count = _naive(emu.endpoint, emu.training_key, report.project_id, out / "naive")
    retry = RetryPolicy(max_attempts=12, deadline=300)
    faults = {"fail_rate": FAIL_RATE, "drop_rate": DROP_RATE, "rate_limit_tps": QUOTA_TPS}
    with (
        lab.emulator(latency_ms=LATENCY_MS, **faults) as emu,
        CustomVisionTrainer(emu.endpoint, emu.training_key, retry=retry) as trainer,
        wall_clock() as faulty_time,
    ):
        faulty = trainer.export_dataset("export-bench", out / "faulty", format="folder")
    ours_rate, naive_rate = report.exported / ours[0], naive_count / naive[0]
    setting = f"{n} images, {LATENCY_MS:g} ms latency"
    return [
        Result(
            "export: images/s vs naive loop",
            round(ours_rate, 1),
            "img/s",
            ratio=round(ours_rate / naive_rate, 2),
            target=round(naive_rate, 1),
            note=f"{setting}; naive official-client loop {naive_rate:.1f} img/s; "
            f"{report.exported}/{report.tagged} exported",
            details={"seconds": ours[0], "naive_seconds": naive[0], "summary": report.summary()},
        ),
        Result(
            "export: lost under faults",
            faulty.tagged - faulty.exported,
            "images",
            target=0,
            better="lower",
            note=f"{FAIL_RATE:.0%} 5xx, {DROP_RATE:.0%} drops, {QUOTA_TPS:g} TPS quota; "
            f"{faulty.exported}/{faulty.tagged} in {faulty_time[0]:.1f} s",
        ),
        Result(
            "export: re-run downloads",
            rerun.downloaded,
            "images",
            target=0,
            better="lower",
            note=f"a finished export run again: {again[0]:.2f} s, {rerun.exported} images kept",
        ),
    ]
