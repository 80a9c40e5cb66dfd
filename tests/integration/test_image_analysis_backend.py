"""ImageAnalysisBackend end to end: the official ImageAnalysisClient (4.0) and the v3.2 REST path,
against the emulator's Image Analysis, which computes its answers from the pixels."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image, ImageDraw

from azvision import (
    AuthenticationError,
    BackendConnectionError,
    BackendTimeoutError,
    ImageAnalysisBackend,
    InvalidImageError,
    Prediction,
    RetryPolicy,
    ServiceError,
)
from azvision.backends._taxonomy import CATEGORIES
from azvision.emulator import Emulator

NO_RETRY = RetryPolicy(max_attempts=1)
DISC = (120, 60, 200, 140)  # x0, y0, x1, y1 of the red disc in the landscape


def landscape() -> bytes:
    """Blue sky over green grass with one red disc: an image with clear tags, one object, a category."""
    image = Image.new("RGB", (320, 240), (110, 170, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 160, 320, 240], fill=(40, 150, 45))
    draw.ellipse(DISC, fill=(215, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    """The landscape served over loopback HTTP (the emulator fetches loopback URLs only)."""
    body = landscape()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/landscape.png"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/landscape.png"
    server.shutdown()
    server.server_close()
    thread.join(5)


def backend(emu: Emulator, **options: Any) -> ImageAnalysisBackend:
    options.setdefault("retry", NO_RETRY)
    return ImageAnalysisBackend(emu.endpoint, options.pop("key", emu.vision_key), **options)


def calls(emu: Emulator, route: str) -> dict[str, int]:
    return next((counts for name, counts in emu.stats().items() if name.endswith(route)), {})


def test_tags_are_deterministic_and_caption_only_when_asked(emulator: Emulator) -> None:
    with backend(emulator) as plain, backend(emulator, features=("tags", "caption")) as captioned:
        first, again = plain.classify(landscape()), plain.classify(landscape())
        with_caption = captioned.classify(landscape())
    names = [lab.name for lab in first.labels]
    assert {"sky", "grass"} <= set(names)
    assert [(lab.name, lab.confidence) for lab in again.labels] == [
        (lab.name, lab.confidence) for lab in first.labels
    ]
    assert first.caption is None and with_caption.caption
    assert first.model == "2023-10-01" and first.backend == "image_analysis"
    assert "tagsResult" in first.raw and "captionResult" in with_caption.raw


def test_objects_have_boxes_normalised_to_the_image(emulator: Emulator) -> None:
    with backend(emulator, mode="objects") as clf:
        p = clf.classify(landscape())
    assert p.labels and all(lab.box is not None for lab in p.labels)
    box = p.labels[0].box
    assert box is not None
    assert (box.left, box.top, box.right, box.bottom) == pytest.approx(
        (DISC[0] / 320, DISC[1] / 240, DISC[2] / 320, DISC[3] / 240), abs=0.05
    )
    assert "objects" in clf.features and "objectsResult" in p.raw


def test_categories_come_from_the_86_category_taxonomy(emulator: Emulator) -> None:
    with backend(emulator, mode="categories", features=("caption",)) as clf:
        p = clf.classify(landscape())
    assert p.labels and all(lab.name in CATEGORIES for lab in p.labels)
    assert p.label is not None and p.label.startswith("outdoor_")
    assert p.caption  # from v3.2 Description
    assert calls(emulator, "/vision/v3.2/analyze").get("200", 0) >= 1


def test_label_map_folds_tags_into_your_labels(emulator: Emulator) -> None:
    label_map = {"landscape": ["sky", "grass", "outdoor", "field"], "indoors": ["indoor", "room", "wall"]}
    with backend(emulator, label_map=label_map) as clf:
        p = clf.classify(landscape())
    assert [lab.name for lab in p.labels] == ["landscape"]
    with backend(emulator) as unmapped:
        raw = unmapped.classify(landscape())
    sources = [lab.confidence for lab in raw.labels if lab.name in label_map["landscape"]]
    assert p.confidence == pytest.approx(max(sources))


def test_label_map_on_categories_with_globs(emulator: Emulator) -> None:
    with backend(
        emulator, mode="categories", label_map={"outside": "outdoor_*", "inside": "indoor_*"}
    ) as clf:
        assert clf.classify(landscape()).label == "outside"


def test_min_confidence_filters_labels(emulator: Emulator) -> None:
    with backend(emulator) as every, backend(emulator, min_confidence=0.9) as confident:
        all_labels, strong = every.classify(landscape()).labels, confident.classify(landscape()).labels
    assert all(lab.confidence >= 0.9 for lab in strong)
    assert [lab.name for lab in strong] == [lab.name for lab in all_labels if lab.confidence >= 0.9]


@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_urls_are_sent_as_urls_and_answer_like_bytes(emulator: Emulator, image_url: str, mode: Any) -> None:
    with backend(emulator, mode=mode) as clf:
        by_url, by_bytes = clf.classify(image_url), clf.classify(landscape())
    assert by_url.source == image_url
    assert [lab.name for lab in by_url.labels] == [lab.name for lab in by_bytes.labels]


@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_an_unreachable_image_url_is_an_invalid_image(emulator: Emulator, image_url: str, mode: Any) -> None:
    with backend(emulator, mode=mode) as clf, pytest.raises(InvalidImageError) as info:
        clf.classify(image_url.replace("landscape", "missing"))
    assert info.value.status_code == 400 and info.value.code == "InvalidImageUrl"


@pytest.mark.parametrize("mode", ["tags", "objects", "categories"])
def test_a_wrong_key_is_an_authentication_error(emulator: Emulator, mode: Any) -> None:
    wrong = "wrong-vision-key-0123456789abcdef"
    with backend(emulator, key=wrong, mode=mode) as clf, pytest.raises(AuthenticationError) as info:
        clf.classify(landscape())
    assert info.value.status_code == 401 and "invalid subscription key" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(info.value)


def test_service_error_envelopes_keep_code_and_message(emulator: Emulator) -> None:
    with (
        backend(emulator, features=("tags", "caption"), language="fr") as clf,
        pytest.raises(ServiceError) as info,
    ):
        clf.classify(landscape())
    assert info.value.status_code == 400 and info.value.code == "NotSupportedLanguage"
    assert not info.value.retryable


@pytest.mark.azvision_emulator(rate_limit_tps=2)
@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_throttling_is_waited_out(azvision_emulator: Emulator, mode: Any) -> None:
    with backend(azvision_emulator, mode=mode, retry=RetryPolicy(max_attempts=4), concurrency=1) as clf:
        outcomes = list(clf.classify_many([landscape()] * 4))
    assert all(isinstance(o, Prediction) for o in outcomes)
    route = "/vision/v3.2/analyze" if mode == "categories" else "imageanalysis:analyze"
    counts = calls(azvision_emulator, route)
    assert counts.get("429", 0) >= 1 and counts["200"] == 4


@pytest.mark.azvision_emulator(fail_rate=1.0, seed=1)
@pytest.mark.parametrize(("attempts", "mode"), [(1, "tags"), (3, "tags"), (1, "categories")])
def test_only_our_retry_layer_retries(azvision_emulator: Emulator, attempts: int, mode: Any) -> None:
    policy = RetryPolicy(max_attempts=attempts, backoff_base=0.01, backoff_max=0.02, retry_after_jitter=0.0)
    with backend(azvision_emulator, mode=mode, retry=policy) as clf, pytest.raises(ServiceError):
        clf.classify(landscape())
    assert sum(sum(counts.values()) for counts in azvision_emulator.stats().values()) == attempts


@pytest.mark.azvision_emulator(latency_ms=1500)
@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_the_timeout_applies_to_each_request(azvision_emulator: Emulator, mode: Any) -> None:
    # The emulator answers after 1.5 s: a BackendTimeoutError (not a late answer) is the timeout at work.
    with backend(azvision_emulator, mode=mode, timeout=0.3) as clf, pytest.raises(BackendTimeoutError):
        clf.classify(landscape())


@pytest.mark.azvision_emulator(drop_rate=1.0)
@pytest.mark.parametrize("mode", ["tags", "categories"])
def test_a_dropped_connection_is_a_connection_error(azvision_emulator: Emulator, mode: Any) -> None:
    with backend(azvision_emulator, mode=mode) as clf, pytest.raises(BackendConnectionError):
        clf.classify(landscape())


def test_a_wide_batch_reuses_connections_without_pool_warnings(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="urllib3"), backend(emulator) as clf:
        outcomes = list(clf.classify_many([landscape()] * 40, concurrency=20))
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
