"""Batches and training: nothing lost, nothing doubled.

* A batch where one input in ten is bad yields every good result and a typed error in place of each bad
  one, in input order, through every backend, sync and async.
* Ctrl-C during ``azvision classify`` (a real SIGINT to a real subprocess) leaves a valid JSONL file that
  ``--resume`` completes, every input exactly once.
* An upload interrupted by Ctrl-C resumes without sending or storing anything twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials

from azvision import AzVisionError, CustomVisionTrainer, InvalidImageError, Prediction, RetryPolicy
from azvision._images import ImageLike
from azvision.datasets import Dataset

from .conftest import BACKENDS, LABELS, PUBLISH_NAME, World, encode, stripes, write_dataset
from .servers import HostileServer, image_files


@pytest.fixture(scope="module")
def image_server_url() -> Iterator[str]:
    files = {f"/{label}.png": encode(stripes(label, 70)) for label in LABELS}
    with HostileServer(image_files(files)) as server:
        yield server.url


def _mixed_inputs(tmp_path: Path, url: str) -> tuple[list[ImageLike], list[str | None]]:
    """30 inputs, every tenth one bad; returns them and the label each must get (None: an error)."""
    inputs: list[ImageLike] = []
    expected: list[str | None] = []
    for i in range(30):
        label = LABELS[i % 2]
        if i == 4:
            inputs.append(str(tmp_path / "deleted-before-the-run.png"))
        elif i == 13:
            broken = tmp_path / "broken.jpg"
            broken.write_bytes(encode(stripes(label, i, (300, 200)), "JPEG")[:2000])
            inputs.append(broken)
        elif i == 22:
            inputs.append(f"{url}/missing.png")
        else:
            expected.append(label)
            if i % 3 == 0:
                path = tmp_path / f"{i:02d}.png"
                path.write_bytes(encode(stripes(label, 100 + i)))
                inputs.append(path)
            elif i % 3 == 1:
                inputs.append(encode(stripes(label, 100 + i), "JPEG", quality=95))
            else:
                inputs.append(f"{url}/{label}.png")
            continue
        expected.append(None)
    return inputs, expected


async def _collect(stream: Any) -> list[Prediction | AzVisionError]:
    return [outcome async for outcome in stream]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tenth_bad_inputs_yield_every_good_result_and_an_error_in_place(
    backend: str, mode: str, world: World, tmp_path: Path, image_server_url: str
) -> None:
    inputs, expected = _mixed_inputs(tmp_path, image_server_url)
    # Four in flight is over the Azure ML deployment's limit of two: its 429s are retried, not reported.
    patient = RetryPolicy(max_attempts=8, backoff_base=0.05, backoff_max=0.3, deadline=30)
    with world.backend(backend, retry=patient) as clf:
        if mode == "sync":
            outcomes = list(clf.classify_many(iter(inputs), concurrency=4))
        else:
            outcomes = asyncio.run(_collect(clf.aclassify_many(iter(inputs), concurrency=4)))
    assert len(outcomes) == len(inputs)
    for index, (outcome, label) in enumerate(zip(outcomes, expected, strict=True)):
        if label is None:
            assert isinstance(outcome, InvalidImageError), (index, outcome)
            assert outcome.source, index  # the user can tell which input failed
        else:
            assert isinstance(outcome, Prediction), (index, outcome)
            if backend != "image_analysis":
                assert outcome.label == label, index
    assert str(inputs[4]) in str(outcomes[4].source) and "broken.jpg" in str(outcomes[13].source)


# -- Ctrl-C during `azvision classify`, then --resume -----------------------------------------------------
def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def default_sigint() -> None:
    """Run in the child before exec: Ctrl-C must raise KeyboardInterrupt there even when this test runner
    was started from a background job, which starts with SIGINT ignored (and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_classify_leaves_a_valid_file_that_resume_completes(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    names = []
    for i in range(36):
        name = f"{i:02d}-{LABELS[i % 2]}.png"
        data = encode(stripes(LABELS[i % 2], 200 + i))
        (folder / name).write_bytes(data[: len(data) // 3] if i == 7 else data)
        names.append(name)
    out = tmp_path / "results.jsonl"
    emu = world.emulator
    command = [sys.executable, "-m", "azvision", "classify", str(folder), "--backend", "custom_vision",
               "--endpoint", emu.endpoint, "--project-id", world.project_id, "--iteration", PUBLISH_NAME,
               "--output", str(out), "--max-rps", "12", "--concurrency", "2"]  # fmt: skip
    env = {**os.environ, "CUSTOM_VISION_PREDICTION_KEY": emu.prediction_key}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    partial = _records(out)  # every line is whole JSON
    assert 10 <= len(partial) < 36

    resumed = subprocess.run(
        [*command, "--resume", "--quiet"], env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 1, resumed.stderr  # the broken image still fails: exit 1, line written
    records = _records(out)
    assert [Path(r["source"]).name for r in records] == names
    for name, record in zip(names, records, strict=True):
        if name.startswith("07-"):
            assert record["error"]["type"] == "InvalidImageError" and record["label"] is None
        else:
            assert record["error"] is None and name.endswith(f"-{record['label']}.png")
    assert emu.prediction_key not in out.read_text() + stdout + stderr + resumed.stdout + resumed.stderr


# -- an interrupted upload resumes without duplicates -------------------------------------------------------
def test_an_upload_interrupted_by_ctrl_c_resumes_without_duplicates(world: World, tmp_path: Path) -> None:
    data = Dataset.from_folder(write_dataset(tmp_path / "many", per_label=75))
    emu = world.emulator
    interrupted_at: list[int] = []

    def ctrl_c_after_the_first_batch(done: int, total: int) -> None:
        if done >= 64 and not interrupted_at:
            interrupted_at.append(done)
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to this (main) thread
            time.sleep(5)  # the KeyboardInterrupt arrives before this ends

    trainer = CustomVisionTrainer(emu.endpoint, emu.training_key, max_rps=None, upload_concurrency=1)
    with trainer:
        project = trainer.project("interrupted-upload")
        with pytest.raises(KeyboardInterrupt):
            trainer.upload(project, data, progress=ctrl_c_after_the_first_batch)
        resumed = trainer.upload(project, data)
    assert interrupted_at == [64]
    assert len(resumed.already_present) == 64 and len(resumed.uploaded) == 150 - 64
    assert resumed.duplicates == () and resumed.failed == ()
    assert resumed.requests == math.ceil((150 - 64) / 64)
    credentials = ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
    client = CustomVisionTrainingClient(emu.endpoint, credentials)  # type: ignore[no-untyped-call]
    try:
        assert client.get_image_count(project.id) == 150  # type: ignore[no-untyped-call]
    finally:
        client.close()
