"""How ``classify_many`` behaves when the service misbehaves: order, completeness, Retry-After, deadline.

Behaviour only, never speed (``benchmarks/`` measures speed). A module fixture trains and publishes a
small Custom Vision project once, in an emulator with a ``data_dir``; each test then starts an emulator
with its own faults on the same project, and checks what the caller gets against the emulator's own
request counts. Retry-After timing is checked with a tiny loopback server that timestamps every attempt.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from azvision import (
    BackendTimeoutError,
    CustomVisionBackend,
    CustomVisionTrainer,
    InvalidImageError,
    Prediction,
    RetryPolicy,
)
from azvision.emulator import Emulator

PUBLISH = "production"
COLOURS = {"red": (205, 40, 35), "blue": (35, 70, 190)}
PROJECT_ID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
_MARK = re.compile(rb"item-(\d{4})")


def image(index: int, colour: tuple[int, int, int] = (205, 40, 35)) -> bytes:
    """A distinct little JPEG that carries ``item-{index}`` in a comment, found in any request body."""
    picture = Image.new("RGB", (64, 64), colour)
    ImageDraw.Draw(picture).ellipse(
        [index % 40, index % 30, index % 40 + 20, index % 30 + 20], fill=(250,) * 3
    )
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", comment=f"item-{index:04d}".encode())
    return buffer.getvalue()


@dataclass(frozen=True)
class Trained:
    data_dir: Path
    project_id: str

    def emulator(self, **faults: Any) -> Emulator:
        return Emulator(data_dir=self.data_dir, **faults)

    def backend(self, emu: Emulator, **options: Any) -> CustomVisionBackend:
        return CustomVisionBackend(emu.endpoint, emu.prediction_key, self.project_id, PUBLISH, **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("batch")
    for label, colour in COLOURS.items():
        (root / "dataset" / label).mkdir(parents=True)
        for i in range(6):
            (root / "dataset" / label / f"{i}.jpg").write_bytes(image(i, colour))
    with (
        Emulator(data_dir=root / "emulator", training_seconds=0.1) as emu,
        CustomVisionTrainer(
            emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id
        ) as trainer,
    ):
        result = trainer.train_from_folder(
            root / "dataset", project="batch", publish_name=PUBLISH, timeout=60
        )
    return Trained(root / "emulator", str(result.project.id))


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(40):
        path = tmp_path / f"{i:04d}.jpg"
        path.write_bytes(image(i))
        paths.append(path)
    return paths


def prediction_counts(emu: Emulator) -> Counter[str]:
    """Status counts of every prediction route, summed."""
    total: Counter[str] = Counter()
    for route, counts in emu.stats().items():
        if "/prediction/" in route:
            total.update(counts)
    return total


# -- against the emulator ----------------------------------------------------------------------


def test_every_input_gets_one_outcome_in_order_despite_5xx_and_drops(
    trained: Trained, image_files: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.jpg"
    inputs = [*image_files[:20], missing, *image_files[20:]]
    retry = RetryPolicy(max_attempts=12, backoff_base=0.02, backoff_max=0.1)
    with (
        trained.emulator(fail_rate=0.15, drop_rate=0.05, seed=11) as emu,
        trained.backend(emu, store=False, retry=retry) as clf,
    ):
        outcomes = list(clf.classify_many(inputs, concurrency=8))
        counts = prediction_counts(emu)

    # (a missing file's error names the whole path, a prediction the file name)
    assert [Path(str(o.source)).name for o in outcomes] == [p.name for p in inputs]
    assert isinstance(outcomes[20], InvalidImageError)
    predictions = [o for i, o in enumerate(outcomes) if i != 20]
    assert all(isinstance(o, Prediction) and o.label in COLOURS for o in predictions)
    # The faults really happened, and the service answered each image successfully exactly once.
    assert counts["dropped"] > 0
    assert counts["500"] + counts["503"] > 0
    assert counts["200"] == len(image_files)


async def test_async_batches_keep_order_and_completeness_under_faults(
    trained: Trained, image_files: list[Path]
) -> None:
    retry = RetryPolicy(max_attempts=12, backoff_base=0.02, backoff_max=0.1)
    with trained.emulator(fail_rate=0.1, drop_rate=0.1, seed=5) as emu:
        async with trained.backend(emu, store=False, retry=retry) as clf:
            outcomes = [o async for o in clf.aclassify_many(image_files, concurrency=6)]
        counts = prediction_counts(emu)

    assert [o.source for o in outcomes] == [str(p) for p in image_files]
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert counts["200"] == len(image_files)
    assert counts["dropped"] > 0


def test_max_rps_keeps_a_batch_under_the_quota(trained: Trained, image_files: list[Path]) -> None:
    with trained.emulator(rate_limit_tps=10) as emu, trained.backend(emu, store=False) as clf:
        outcomes = list(clf.classify_many(image_files[:20], max_rps=10))
        counts = prediction_counts(emu)

    assert all(isinstance(o, Prediction) for o in outcomes)
    assert counts == {"200": 20}  # not one 429: the client paced itself


def test_the_deadline_ends_a_failing_item_with_a_timeout_error_in_place(
    trained: Trained, image_files: list[Path]
) -> None:
    deadline = 1.5
    retry = RetryPolicy(max_attempts=100, backoff_base=0.05, backoff_max=0.2, deadline=deadline)
    with trained.emulator(fail_rate=1.0, seed=2) as emu, trained.backend(emu, retry=retry) as clf:
        started = time.monotonic()
        outcomes = list(clf.classify_many(image_files[:3]))
        elapsed = time.monotonic() - started
        counts = prediction_counts(emu)

    assert [type(o) for o in outcomes] == [BackendTimeoutError] * 3
    assert [o.source for o in outcomes] == [str(p) for p in image_files[:3]]
    assert "deadline" in str(outcomes[0])
    assert counts["200"] == 0
    assert sum(counts.values()) > 3  # it did retry before giving up
    # ...and gave up at the deadline (give or take one shared cool-down), not after 100 attempts
    assert elapsed < deadline + 2.5


def test_a_long_generator_is_read_lazily_and_can_be_abandoned(
    trained: Trained, image_files: list[Path]
) -> None:
    pulled = 0

    def endless() -> Iterator[Path]:
        nonlocal pulled
        while True:
            pulled += 1
            yield image_files[pulled % len(image_files)]

    with trained.emulator() as emu, trained.backend(emu, store=False, concurrency=4) as clf:
        batch = clf.classify_many(endless())
        first = [next(batch) for _ in range(5)]
        batch.close()  # type: ignore[attr-defined]
        counts = prediction_counts(emu)

    assert all(isinstance(o, Prediction) for o in first)
    assert pulled < 100  # a bounded read-ahead, not a materialised list
    assert sum(counts.values()) <= pulled


# -- Retry-After, timed by a tiny server --------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    item: int
    arrived: float
    answered: float
    status: int
    wait: float | None  # what the answer asked for


class ScriptedPredictionServer:
    """Answers Custom Vision prediction calls from a per-item script of (status, headers), then 200.

    Records every attempt with server-side timestamps.
    """

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.attempts: list[Attempt] = []
        self._seen: Counter[int] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                found = _MARK.search(body)
                assert found is not None
                item = int(found.group(1))
                with server._lock:
                    n = server._seen[item]
                    server._seen[item] += 1
                status, headers = server.script[n] if n < len(server.script) else (200, {})
                payload = json.dumps(
                    {
                        "id": "00000000-0000-0000-0000-000000000001",
                        "project": PROJECT_ID,
                        "iteration": "00000000-0000-0000-0000-000000000002",
                        "created": "2024-01-01T00:00:00Z",
                        "predictions": [{"probability": 0.9, "tagId": "t1", "tagName": "red"}],
                    }
                    if status == 200
                    else {"error": {"code": str(status), "message": "Try again later."}}
                ).encode()
                wait: float | None = None
                if "retry-after-ms" in headers:
                    wait = float(headers["retry-after-ms"]) / 1000
                elif "Retry-After" in headers:
                    wait = float(headers["Retry-After"])
                # Stamped before sending: the client cannot have the answer any earlier.
                with server._lock:
                    server.attempts.append(Attempt(item, arrived, time.monotonic(), status, wait))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedPredictionServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)


def test_no_retry_comes_before_the_servers_retry_after() -> None:
    script = [(429, {"Retry-After": "1"}), (503, {"retry-after-ms": "400"})]
    with (
        ScriptedPredictionServer(script) as server,
        CustomVisionBackend(server.endpoint, "k", PROJECT_ID, PUBLISH, store=False) as clf,
    ):
        outcomes = list(clf.classify_many([image(i) for i in range(4)], concurrency=4))

    assert all(isinstance(o, Prediction) for o in outcomes)
    by_item: dict[int, list[Attempt]] = defaultdict(list)
    for attempt in server.attempts:
        by_item[attempt.item].append(attempt)
    assert sorted(by_item) == [0, 1, 2, 3]
    for attempts in by_item.values():
        attempts.sort(key=lambda a: a.arrived)
        assert [a.status for a in attempts] == [429, 503, 200]
        for previous, retry in itertools.pairwise(attempts):
            assert previous.wait is not None
            assert retry.arrived >= previous.answered + previous.wait
