"""The input matrix: every kind of wrong (or merely unusual) image, through every backend.

One row per (case, backend). A row either expects a :class:`Prediction` — with the label the stripes
model must give, the note saying what azvision did to the image, and (Image Analysis) the pixel size
that reached the service — or a typed error whose message says what is wrong, and whether a request
reached the service (counted by the emulator; pre-flight errors must cost no request).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from azvision import AzVisionError, InvalidImageError, Prediction

from .conftest import BACKENDS, World, encode, stripes
from .servers import HostileServer, image_files

MB = 1024 * 1024


@dataclass(frozen=True)
class Ok:
    """A prediction is expected."""

    #: The stripes model's top label (not checked for Image Analysis, which has its own vocabulary).
    label: str | None = "horizontal"
    #: A fragment of ``Prediction.notes``.
    note: str | None = None
    #: The (width, height) the service decoded (Image Analysis reports it in ``metadata``).
    seen: tuple[int, int] | None = None


@dataclass(frozen=True)
class Fails:
    """A typed error is expected."""

    error: type[AzVisionError]
    says: str
    #: Whether the request reached the service (else it was refused before any call).
    reached: bool = False


Expect = Ok | Fails


@dataclass(frozen=True)
class Case:
    id: str
    # (tmp_path, image server URL) -> the input; Any, as some rows pass what the API does not take
    make: Callable[[Path, str], Any]
    expect: Expect | Mapping[str, Expect]  # one for every backend, or per backend
    #: Known product bugs, by backend: the row is a strict xfail with this reason.
    bugs: Mapping[str, str] = field(default_factory=dict)

    def expectation(self, backend: str) -> Expect:
        return self.expect[backend] if isinstance(self.expect, Mapping) else self.expect


# -- inputs ------------------------------------------------------------------------------------------
def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png(kind: str = "horizontal", size: tuple[int, int] = (96, 96)) -> bytes:
    return encode(stripes(kind, 7, size))


@functools.cache
def _huge_photo() -> bytes:
    """A > 25 MB JPEG: noisy stripes at quality 100, larger than every service's byte limit."""
    width, height = 5200, 3500
    pixels = np.asarray(stripes("horizontal", 3, (width, height)), dtype=np.int16)
    pixels += np.random.default_rng(0).integers(-60, 61, (height, width, 3), dtype=np.int16)
    data = encode(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), "JPEG", quality=100)
    assert len(data) > 25 * MB
    return data


@functools.cache
def _very_wide() -> bytes:
    return encode(stripes("horizontal", 4, (30_000, 1000)))


def _animated_gif() -> bytes:
    first, second = stripes("horizontal", 1), stripes("vertical", 1)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def _cmyk_jpeg() -> bytes:
    return encode(stripes("horizontal", 2).convert("CMYK"), "JPEG", quality=95)


def _grey16(kind: str = "horizontal") -> Image.Image:
    levels = np.asarray(stripes(kind, 5).convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(levels)  # mode I;16


def _exif_rotated() -> bytes:
    """Stored as vertical stripes 120x80; EXIF orientation 6 shows them turned 90°: horizontal, 80x120."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stripes("vertical", 8, (120, 80)), "JPEG", quality=95, exif=exif)


def _closed_file(tmp: Path) -> io.BufferedReader:
    handle = _file(tmp, "photo.png", _png()).open("rb")
    handle.close()
    return handle


def _text_mode_file(tmp: Path) -> io.TextIOWrapper:
    return _file(tmp, "photo.png", _png()).open("r", encoding="latin-1")


def _float_image(peak: float) -> Image.Image:
    grey = np.asarray(stripes("horizontal", 9).convert("L"), dtype=np.float32) / 255.0 * peak
    return Image.fromarray(grey, "F")


def _premultiplied_la() -> Image.Image:
    return stripes("horizontal", 10).convert("LA").convert("La")


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect/></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TEXT = b"Shopping list: eggs, milk, bread.\nNot an image at all, despite the name.\n"
URL_SCHEME = "unsupported URL scheme"
DOWNSCALED = "downscaled from"

# -- the matrix --------------------------------------------------------------------------------------
CASES = [
    Case(
        "missing-path",
        lambda tmp, _: str(tmp / "no-such-photo.jpg"),
        Fails(InvalidImageError, "no such file"),
    ),
    Case("directory", lambda tmp, _: tmp, Fails(InvalidImageError, "is a directory")),
    Case(
        "empty-file", lambda tmp, _: _file(tmp, "empty.jpg", b""), Fails(InvalidImageError, "empty (0 bytes)")
    ),
    Case("zero-bytes", lambda tmp, _: b"", Fails(InvalidImageError, "empty (0 bytes)")),
    Case(
        "truncated-jpeg",
        lambda tmp, _: _file(tmp, "cut.jpg", encode(stripes("horizontal", 1, (400, 300)), "JPEG")[:3000]),
        Fails(InvalidImageError, "corrupt or truncated"),
    ),
    Case(
        "text-named-jpg",
        lambda tmp, _: _file(tmp, "holiday.jpg", TEXT),
        Fails(InvalidImageError, "not a recognised image"),
    ),
    Case("svg", lambda tmp, _: _file(tmp, "logo.svg", SVG), Fails(InvalidImageError, "SVG")),
    Case("pdf", lambda tmp, _: _file(tmp, "scan.pdf", PDF), Fails(InvalidImageError, "PDF")),
    Case(
        "one-pixel",
        lambda tmp, _: encode(Image.new("RGB", (1, 1), (90, 90, 90))),
        {
            "custom_vision": Ok(label=None),
            "image_analysis": Fails(InvalidImageError, "needs at least 50x50 px"),
            "azure_ml": Ok(label=None),
            "onnx": Ok(label=None),
        },
    ),
    Case(
        "30000-px-wide",
        lambda tmp, _: _very_wide(),
        {
            "custom_vision": Ok(note=f"{DOWNSCALED} 30000x1000 to 10240x341"),
            "image_analysis": Ok(note=f"{DOWNSCALED} 30000x1000 to 16000x533", seen=(16000, 533)),
            "azure_ml": Ok(),
            "onnx": Ok(),
        },
    ),
    Case(
        "25-mb-photo",
        lambda tmp, _: _huge_photo(),
        {
            "custom_vision": Ok(note=DOWNSCALED),
            "image_analysis": Ok(note="to fit Image Analysis 4.0 limits"),
            "azure_ml": Ok(note=DOWNSCALED),
            "onnx": Ok(),
        },
    ),
    Case("animated-gif", lambda tmp, _: _animated_gif(), Ok()),
    Case(
        "truncated-animated-gif",
        lambda tmp, _: _animated_gif()[:290],  # cut inside the second frame's header
        Fails(InvalidImageError, "corrupt or truncated"),
    ),
    Case("cmyk-jpeg", lambda tmp, _: _cmyk_jpeg(), Ok(note="converted CMYK pixels to RGB")),
    Case("16-bit-png", lambda tmp, _: encode(_grey16()), Ok(note="converted I;16 pixels to RGB")),
    Case(
        "exif-rotated",
        lambda tmp, _: _exif_rotated(),
        Ok(note="rotated upright per EXIF orientation", seen=(80, 120)),
    ),
    Case(
        "ftp-url", lambda tmp, _: "ftp://example.com/cat.jpg", Fails(InvalidImageError, f"{URL_SCHEME} 'ftp'")
    ),
    Case(
        "file-url",
        lambda tmp, _: (tmp / "cat.jpg").as_uri(),
        Fails(InvalidImageError, f"{URL_SCHEME} 'file'"),
    ),
    Case(
        "url-404",
        lambda tmp, url: f"{url}/gone.png",
        {
            # Services that take URLs are sent the URL and say they could not fetch it.
            "custom_vision": Fails(InvalidImageError, "Unable to download the image", reached=True),
            "image_analysis": Fails(InvalidImageError, "badly formatted or not accessible", reached=True),
            # The others need the bytes: azvision's own download fails before any call.
            "azure_ml": Fails(InvalidImageError, "the server answered HTTP 404"),
            "onnx": Fails(InvalidImageError, "the server answered HTTP 404"),
        },
    ),
    Case("http-url", lambda tmp, url: f"{url}/stripes.png", Ok()),
    Case(
        "unicode-and-spaces-path",
        lambda tmp, _: _file(tmp / "été 2024", "chat noir 🐱 (1).png", _png()),
        Ok(),
    ),
    Case(
        "closed-file-object",
        lambda tmp, _: _closed_file(tmp),
        Fails(InvalidImageError, "file object is closed"),
    ),
    Case(
        "text-mode-file-object", lambda tmp, _: _text_mode_file(tmp), Fails(InvalidImageError, "binary mode")
    ),
    Case("pil-HSV", lambda tmp, _: stripes("horizontal", 11).convert("HSV"), Ok()),
    Case("pil-CMYK", lambda tmp, _: stripes("horizontal", 12).convert("CMYK"), Ok()),
    Case("pil-I;16", lambda tmp, _: _grey16(), Ok()),
    Case("pil-F-0-255", lambda tmp, _: _float_image(255.0), Ok()),
    Case(
        "pil-F-0-1",
        lambda tmp, _: _float_image(1.0),
        Ok(),
    ),
    Case(
        "pil-La",
        lambda tmp, _: _premultiplied_la(),
        Ok(),
    ),
]


def _rows() -> Iterator[Any]:
    for case in CASES:
        for backend in BACKENDS:
            bug = case.bugs.get(backend)
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            yield pytest.param(case, backend, id=f"{case.id}/{backend}", marks=marks)


@pytest.fixture(scope="module")
def image_server_url() -> Iterator[str]:
    with HostileServer(image_files({"/stripes.png": _png()})) as server:
        yield server.url


@pytest.mark.parametrize(("case", "backend"), list(_rows()))
def test_input(case: Case, backend: str, world: World, tmp_path: Path, image_server_url: str) -> None:
    image = case.make(tmp_path, image_server_url)
    expect = case.expectation(backend)
    before = world.requests(backend)
    with world.backend(backend) as clf:
        if isinstance(expect, Fails):
            with pytest.raises(expect.error) as info:
                clf.classify(image)
            assert expect.says in str(info.value)
            reached = world.requests(backend) - before
            assert reached == (1 if expect.reached and backend != "onnx" else 0)
            return
        prediction = clf.classify(image)
    assert isinstance(prediction, Prediction)
    assert prediction.backend == backend and prediction.labels
    if expect.label is not None and backend != "image_analysis":
        assert (prediction.label, prediction.confidence > 0.9) == (expect.label, True), prediction.labels
    if expect.note is not None:
        assert any(expect.note in note for note in prediction.notes), prediction.notes
    if expect.seen is not None and backend == "image_analysis":
        metadata = (prediction.raw or {})["metadata"]
        assert (metadata["width"], metadata["height"]) == expect.seen
    if isinstance(image, Path):
        assert prediction.source == str(image)
    assert world.requests(backend) - before == (0 if backend == "onnx" else 1)
