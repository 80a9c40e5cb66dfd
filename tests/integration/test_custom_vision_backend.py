"""CustomVisionBackend end to end: the official prediction client, unchanged, against the emulator.

A module fixture trains a small generated 3-class project with the official training client and
publishes it; the tests then classify held-out images through every route and failure the backend maps.
"""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Region,
)
from msrest.authentication import ApiKeyCredentials
from msrest.exceptions import HttpOperationError
from PIL import Image, ImageDraw

from azvision import (
    AuthenticationError,
    BackendConnectionError,
    BackendTimeoutError,
    CustomVisionBackend,
    CustomVisionTrainer,
    NotFoundError,
    Prediction,
    RetryPolicy,
    ServiceError,
)
from azvision.emulator import Emulator

COLOURS = {"tomato": (205, 40, 35), "leaf": (40, 160, 50), "sea": (35, 70, 190)}
DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"  # ObjectDetection General
PUBLISH = "production"
UNKNOWN_PROJECT = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
NO_RETRY = RetryPolicy(max_attempts=1)
T = TypeVar("T")


def photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (120, 96)) -> bytes:
    """A noisy image dominated by ``colour``, with a few blobs of its shades (different per seed)."""
    rng = random.Random(seed)

    def shade(spread: int) -> tuple[int, int, int]:
        r, g, b = (max(0, min(255, c + rng.randint(-spread, spread))) for c in colour)
        return r, g, b

    image = Image.new("RGB", size, shade(25))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randint(0, size[0] - 20), rng.randint(0, size[1] - 20)
        draw.ellipse([x, y, x + rng.randint(8, 20), y + rng.randint(8, 20)], fill=shade(60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene(kind: str, box: tuple[int, int, int, int], seed: int, size: int = 160) -> bytes:
    """A grey cluttered background with one red square or blue disc at ``box`` (x0, y0, x1, y1)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (rng.randint(150, 190),) * 3)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        ends = [(rng.randint(0, size), rng.randint(0, size)) for _ in range(2)]
        draw.line(ends, fill=(rng.randint(90, 130),) * 3, width=2)
    if kind == "square":
        draw.rectangle(box, fill=(210, 30, 30))
    else:
        draw.ellipse(box, fill=(30, 40, 210))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def patiently(call: Callable[[], T]) -> T:
    """Run a training-client call, waiting out the emulator's 429s (msrest does not retry POSTs)."""
    for _ in range(20):
        try:
            return call()
        except HttpOperationError as exc:
            if exc.response is None or exc.response.status_code != 429:
                raise
            time.sleep(float(exc.response.headers.get("Retry-After", "1")))
    raise AssertionError("still throttled after 20 tries")


@dataclass
class Published:
    emulator: Emulator
    project_id: str

    def backend(self, **options: Any) -> CustomVisionBackend:
        options.setdefault("retry", NO_RETRY)
        return CustomVisionBackend(
            self.emulator.endpoint, self.emulator.prediction_key, self.project_id, PUBLISH, **options
        )

    def route_counts(self, fragment: str) -> dict[str, int]:
        """Status counts of the prediction routes whose template ends with ``fragment``."""
        merged: dict[str, int] = {}
        for route, counts in self.emulator.stats().items():
            if "/prediction/" in route and route.endswith(fragment):
                for status, n in counts.items():
                    merged[status] = merged.get(status, 0) + n
        return merged


def train_and_publish(emulator: Emulator, *, detection: bool = False) -> str:
    trainer = CustomVisionTrainingClient(
        emulator.endpoint, ApiKeyCredentials(in_headers={"Training-key": emulator.training_key})
    )
    if detection:
        project = patiently(lambda: trainer.create_project("shapes", domain_id=DETECTION_DOMAIN))
        tags = {
            kind: patiently(lambda k=kind: trainer.create_tag(project.id, k)) for kind in ("square", "disc")
        }
        entries = []
        for i in range(16):
            for kind, tag in tags.items():
                rng = random.Random(1000 * i + len(kind))
                side = rng.randint(40, 70)
                x0, y0 = rng.randint(0, 160 - side), rng.randint(0, 160 - side)
                region = Region(
                    tag_id=tag.id, left=x0 / 160, top=y0 / 160, width=side / 160, height=side / 160
                )
                data = scene(kind, (x0, y0, x0 + side, y0 + side), seed=i)
                entries.append(ImageFileCreateEntry(name=f"{kind}{i}.png", contents=data, regions=[region]))
    else:
        project = patiently(lambda: trainer.create_project("colours"))
        tags = {name: patiently(lambda n=name: trainer.create_tag(project.id, n)) for name in COLOURS}
        entries = [
            ImageFileCreateEntry(name=f"{name}{i}.png", contents=photo(rgb, i), tag_ids=[tags[name].id])
            for name, rgb in COLOURS.items()
            for i in range(10)
        ]
    for start in range(0, len(entries), 64):
        batch = ImageFileCreateBatch(images=entries[start : start + 64])
        summary = patiently(lambda b=batch: trainer.create_images_from_files(project.id, b))
        assert summary.is_batch_successful
    iteration = patiently(lambda: trainer.train_project(project.id))
    deadline = time.monotonic() + 60
    while iteration.status != "Completed":
        assert iteration.status != "Failed" and time.monotonic() < deadline, iteration.status
        time.sleep(0.2)
        iteration = patiently(lambda i=iteration.id: trainer.get_iteration(project.id, i))
    patiently(
        lambda: trainer.publish_iteration(project.id, iteration.id, PUBLISH, emulator.prediction_resource_id)
    )
    trainer.close()
    return str(project.id)


@pytest.fixture(scope="module")
def published() -> Iterator[Published]:
    with Emulator() as emulator:
        yield Published(emulator, train_and_publish(emulator))


@pytest.fixture(scope="module")
def image_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server serving ``files`` (path -> bytes): images given by URL."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()
    thread.join(5)


# -- prediction ----------------------------------------------------------------------------------


def test_held_out_images_get_their_class(published: Published) -> None:
    with published.backend() as clf:
        for name, rgb in COLOURS.items():
            p = clf.classify(photo(rgb, seed=500))
            assert p.label == name, p.labels
            assert p.confidence > 0.5
            assert p.backend == "custom_vision" and p.model == PUBLISH
            assert {lab.name for lab in p.labels} == set(COLOURS)
            assert all(lab.id for lab in p.labels) and p.raw["project"] == published.project_id
    assert published.route_counts("/classify/iterations/{publishedName}/image") == {"200": 3}


def test_store_false_uses_the_nostore_route(published: Published) -> None:
    before = published.route_counts("/image").get("200", 0)
    with published.backend(store=False) as clf:
        assert clf.classify(photo(COLOURS["leaf"], seed=501)).label == "leaf"
    assert published.route_counts("/classify/iterations/{publishedName}/image/nostore") == {"200": 1}
    assert published.route_counts("/image").get("200", 0) == before  # the stored route was not used


def test_urls_are_sent_as_urls(published: Published, image_server: tuple[str, dict[str, bytes]]) -> None:
    base, files = image_server
    files["/sea.png"] = photo(COLOURS["sea"], seed=502)
    with published.backend() as clf:
        p = clf.classify(f"{base}/sea.png")
    assert p.label == "sea" and p.source == f"{base}/sea.png"
    assert published.route_counts("/classify/iterations/{publishedName}/url") == {"200": 1}
    with published.backend(store=False) as clf:
        assert clf.classify(f"{base}/sea.png").label == "sea"
    assert published.route_counts("/url/nostore") == {"200": 1}


def test_a_batch_streams_in_input_order_and_async_works(published: Published, tmp_path: Any) -> None:
    names = ["tomato", "sea", "leaf", "sea", "tomato", "leaf"]
    paths = []
    for i, name in enumerate(names):
        path = tmp_path / f"{i}.png"
        path.write_bytes(photo(COLOURS[name], seed=600 + i))
        paths.append(path)
    with published.backend(concurrency=3) as clf:
        outcomes = list(clf.classify_many(paths))
        assert [o.label for o in outcomes if isinstance(o, Prediction)] == names
        assert [o.source for o in outcomes if isinstance(o, Prediction)] == [str(p) for p in paths]
        assert asyncio.run(clf.aclassify(paths[1])).label == "sea"


def connections_to(port: int) -> list[Any]:
    """This process's open TCP connections to ``port`` on loopback (the client ends only)."""
    psutil = pytest.importorskip("psutil")
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def test_closing_the_backend_closes_every_connection_it_opened(published: Published) -> None:
    port = int(published.emulator.endpoint.rsplit(":", 1)[1].strip("/"))
    before = len(connections_to(port))
    images = [photo(COLOURS[name], seed=700 + i) for i, name in enumerate(list(COLOURS) * 6)]
    with published.backend(concurrency=6) as clf:
        assert all(isinstance(o, Prediction) for o in clf.classify_many(images))
        assert asyncio.run(clf.aclassify(images[0])).label == "tomato"
        opened = len(connections_to(port)) - before
        assert opened >= 2  # the batch's worker threads each keep a session (msrest: one per thread)
    assert len(connections_to(port)) == before


def test_closing_the_trainer_closes_the_connections_of_every_thread(azvision_emulator: Emulator) -> None:
    emu = azvision_emulator
    port = int(emu.endpoint.rsplit(":", 1)[1].strip("/"))
    trainer = CustomVisionTrainer(
        emu.endpoint, emu.training_key, prediction_resource_id=emu.prediction_resource_id
    )
    with trainer, ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(lambda i: trainer.project(f"p{i % 4}").id, range(8)))) == 4
        assert len(connections_to(port)) >= 2
    assert connections_to(port) == []


def test_large_images_are_downscaled_before_sending(published: Published) -> None:
    big = Image.effect_noise((10400, 300), 40).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=60)
    with published.backend() as clf:
        p = clf.classify(buffer.getvalue())
    assert p.image_size is not None and max(p.image_size) <= 10240
    assert any("downscaled" in note for note in p.notes)


# -- errors --------------------------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error(published: Published) -> None:
    wrong = "not-the-prediction-key-0123456789"
    with (
        CustomVisionBackend(published.emulator.endpoint, wrong, published.project_id, PUBLISH) as clf,
        pytest.raises(AuthenticationError) as info,
    ):
        clf.classify(photo(COLOURS["sea"], seed=1))
    assert info.value.status_code == 401 and info.value.backend == "custom_vision"
    assert wrong not in str(info.value) and wrong not in repr(info.value)


@pytest.mark.parametrize(
    ("project", "iteration"), [("published", "no-such-iteration"), (UNKNOWN_PROJECT, PUBLISH)]
)
def test_an_unknown_iteration_or_project_is_not_found(
    published: Published, project: str, iteration: str
) -> None:
    project_id = published.project_id if project == "published" else project
    with (
        CustomVisionBackend(
            published.emulator.endpoint, published.emulator.prediction_key, project_id, iteration
        ) as clf,
        pytest.raises(NotFoundError, match=r"(?i)invalid iteration"),
    ):
        clf.classify(photo(COLOURS["sea"], seed=1))


def test_a_classifier_iteration_refuses_detect_routes(published: Published) -> None:
    with published.backend(task="detection") as clf, pytest.raises(ServiceError) as info:
        clf.classify(photo(COLOURS["sea"], seed=2))
    assert info.value.status_code is not None and 400 <= info.value.status_code < 500


def test_throttling_is_waited_out_and_every_image_succeeds() -> None:
    names = ["sea", "leaf", "tomato", "sea", "leaf", "tomato", "sea", "leaf"]
    with Emulator(rate_limit_tps=5) as emulator:
        throttled = Published(emulator, train_and_publish(emulator))
        with throttled.backend(retry=RetryPolicy(max_attempts=5), concurrency=2) as clf:
            images = [photo(COLOURS[name], seed=700 + i) for i, name in enumerate(names)]
            outcomes = list(clf.classify_many(images))
        assert [o.label for o in outcomes if isinstance(o, Prediction)] == names
        counts = throttled.route_counts("/image")
        assert counts.get("429", 0) >= 1 and counts["200"] == len(names)


@pytest.mark.azvision_emulator(fail_rate=1.0, seed=3)
def test_the_vendor_client_does_not_retry_behind_our_back(azvision_emulator: Emulator) -> None:
    with (
        CustomVisionBackend(
            azvision_emulator.endpoint,
            azvision_emulator.prediction_key,
            UNKNOWN_PROJECT,
            PUBLISH,
            retry=NO_RETRY,
        ) as clf,
        pytest.raises(ServiceError) as info,
    ):
        clf.classify(photo(COLOURS["sea"], seed=3))
    assert info.value.status_code in (500, 503)
    counts = next(c for r, c in azvision_emulator.stats().items() if "/prediction/" in r)
    assert sum(counts.values()) == 1


@pytest.mark.azvision_emulator(fail_rate=1.0, seed=3)
def test_our_retry_layer_makes_exactly_the_attempts_it_allows(azvision_emulator: Emulator) -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02, retry_after_jitter=0.0)
    with (
        CustomVisionBackend(
            azvision_emulator.endpoint,
            azvision_emulator.prediction_key,
            UNKNOWN_PROJECT,
            PUBLISH,
            retry=policy,
        ) as clf,
        pytest.raises(ServiceError),
    ):
        clf.classify(photo(COLOURS["sea"], seed=3))
    counts = next(c for r, c in azvision_emulator.stats().items() if "/prediction/" in r)
    assert sum(counts.values()) == 3


@pytest.mark.azvision_emulator(latency_ms=1500)
def test_the_timeout_applies_to_each_request(azvision_emulator: Emulator) -> None:
    with CustomVisionBackend(
        azvision_emulator.endpoint,
        azvision_emulator.prediction_key,
        UNKNOWN_PROJECT,
        PUBLISH,
        timeout=0.3,
        retry=NO_RETRY,
    ) as clf:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            clf.classify(photo(COLOURS["sea"], seed=4))
    assert time.monotonic() - started < 1.2


@pytest.mark.azvision_emulator(drop_rate=1.0)
def test_a_dropped_connection_is_a_connection_error(azvision_emulator: Emulator) -> None:
    with (
        CustomVisionBackend(
            azvision_emulator.endpoint,
            azvision_emulator.prediction_key,
            UNKNOWN_PROJECT,
            PUBLISH,
            retry=NO_RETRY,
        ) as clf,
        pytest.raises(BackendConnectionError),
    ):
        clf.classify(photo(COLOURS["sea"], seed=5))


# -- detection -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_detection_finds_the_object_and_its_box() -> None:
    with Emulator() as emulator:
        detector = Published(emulator, train_and_publish(emulator, detection=True))
        with detector.backend(task="detection", store=False) as clf:
            for kind, (x0, y0, x1, y1) in (("square", (90, 20, 150, 80)), ("disc", (10, 60, 60, 110))):
                top = clf.classify(scene(kind, (x0, y0, x1, y1), seed=900)).top
                assert top is not None and top.name == kind and top.box is not None
                box = top.box
                overlap_w = max(0.0, min(box.right, x1 / 160) - max(box.left, x0 / 160))
                overlap_h = max(0.0, min(box.bottom, y1 / 160) - max(box.top, y0 / 160))
                assert overlap_w * overlap_h > 0.5 * (x1 - x0) * (y1 - y0) / 160**2  # covers the object
        assert detector.route_counts("/detect/iterations/{publishedName}/image/nostore") == {"200": 2}
