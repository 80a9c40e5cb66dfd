"""Results do not hold images: a path or URL is kept as a reference, in-memory images as a thumbnail.

A real :class:`OnnxBackend` (a tiny channel-mean model) classifies real images; the test then looks at
what each :class:`Prediction` keeps for notebook display.
"""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from azvision import OnnxBackend, Prediction
from tests.unit.test_onnx_backend import channel_mean_classifier, write_export

KEEP_LIMIT = 64 * 1024


def _noisy_png(side: int = 1024) -> bytes:
    """About 3 MB of PNG that does not compress: what a photo costs."""
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clf(tmp_path_factory: pytest.TempPathFactory) -> OnnxBackend:
    folder = write_export(tmp_path_factory.mktemp("export"), channel_mean_classifier(), ["b", "g", "r"])
    return OnnxBackend(folder)


def test_in_memory_images_are_kept_only_as_a_small_thumbnail(clf: OnnxBackend) -> None:
    photo = _noisy_png()
    assert len(photo) > 2 * 1024 * 1024
    prediction = clf.classify(photo)
    preview = prediction._preview
    assert isinstance(preview, bytes) and len(preview) <= KEEP_LIMIT
    assert "data:image/png;base64," in prediction._repr_html_()


def test_a_batch_of_results_does_not_hold_the_images(clf: OnnxBackend) -> None:
    photo = _noisy_png()
    tracemalloc.start()
    try:
        copies = (bytes(bytearray(photo)) for _ in range(20))  # each its own object, as when read from files
        results = [p for p in clf.classify_many(copies) if isinstance(p, Prediction)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(results) == 20
    assert held < 20 * len(photo) // 4  # keeping the bytes would hold 20 × 3 MB


def test_a_file_is_kept_by_its_path_and_shown_from_it(
    clf: OnnxBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(_noisy_png(256))
    monkeypatch.chdir(tmp_path)
    prediction = clf.classify("photos/cat.png")
    assert prediction.source == "photos/cat.png"  # as given
    assert prediction._preview == str(tmp_path / "photos" / "cat.png")  # absolute: survives a chdir
    monkeypatch.chdir(tmp_path / "photos")
    assert "data:image/png;base64," in prediction._repr_html_()
    os.remove(tmp_path / "photos" / "cat.png")
    assert "<img" not in prediction._repr_html_()  # the file is gone: bars only, no error


def test_a_url_is_shown_by_the_url_itself() -> None:
    prediction = Prediction(backend="onnx", source="https://example.com/a.png?x=1&y=2")
    html = prediction.with_image("https://example.com/a.png?x=1&y=2")._repr_html_()
    assert '<img src="https://example.com/a.png?x=1&amp;y=2"' in html


def test_small_images_are_kept_as_they_are() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buffer, "PNG")
    assert Prediction(backend="onnx").with_image(buffer.getvalue())._preview == buffer.getvalue()
