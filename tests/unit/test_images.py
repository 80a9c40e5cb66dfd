"""Image loading: every input kind, format sniffing, typed errors before any call, downscaling."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from azvision import InvalidImageError
from azvision._images import ImageLimits, load_image
from tests.conftest import make_jpeg, make_png

LIMITS = ImageLimits(service="Test Service", max_bytes=4 * 1024 * 1024, max_side=10240)


def test_path_bytes_fileobj_and_pil_give_same_pixels(tmp_path: Path) -> None:
    data = make_png()
    path = tmp_path / "red.png"
    path.write_bytes(data)
    from_path = load_image(path, LIMITS)
    from_str = load_image(str(path), LIMITS)
    from_bytes = load_image(data, LIMITS)
    with path.open("rb") as fh:
        from_file = load_image(fh, LIMITS)
    from_pil = load_image(Image.open(io.BytesIO(data)), LIMITS)
    assert from_path.data == from_bytes.data == from_file.data == from_str.data == data  # not re-encoded
    # the path as given, not its basename: the CLI and the Python API name an input alike
    assert from_path.source == from_str.source == from_file.source == str(path)
    assert from_path.origin == str(path.resolve()) and from_bytes.origin is None
    assert from_pil.pil().getpixel((0, 0)) == (200, 30, 30)
    assert from_path.format == "PNG" and from_path.size == (64, 48) and from_path.notes == ()


def test_format_is_sniffed_from_bytes_not_name(tmp_path: Path) -> None:
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(make_png())
    assert load_image(path, LIMITS).format == "PNG"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not a recognised image"),
        (b"%PDF-1.4\n...", "PDF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (make_jpeg((200, 200))[:300], "truncated"),
    ],
)
def test_bad_bytes_raise_typed_error(content: bytes, needle: str) -> None:
    with pytest.raises(InvalidImageError, match=needle):
        load_image(content, LIMITS)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg", LIMITS)
    with pytest.raises(InvalidImageError, match="directory"):
        load_image(tmp_path, LIMITS)


def test_closed_file_object(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(make_png())
    fh = path.open("rb")
    fh.close()
    with pytest.raises(InvalidImageError, match="closed"):
        load_image(fh, LIMITS)


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd"])
def test_non_http_urls_rejected(url: str) -> None:
    with pytest.raises(InvalidImageError, match="unsupported URL scheme"):
        load_image(url, LIMITS)


def test_http_url_passed_through_when_service_takes_urls() -> None:
    loaded = load_image("https://example.com/cat.jpg", LIMITS)
    assert loaded.url == "https://example.com/cat.jpg" and loaded.data is None


def test_oversized_pixels_downscaled_keeping_aspect() -> None:
    limits = ImageLimits(service="Small", max_side=1000)
    loaded = load_image(Image.new("RGB", (4000, 1000), (1, 2, 3)), limits)
    assert loaded.size == (1000, 250)
    assert any("downscaled from 4000x1000 to 1000x250" in n for n in loaded.notes)


def test_oversized_bytes_reencoded_under_limit() -> None:
    rng_img = Image.effect_noise((1500, 1500), 100).convert("RGB")
    buf = io.BytesIO()
    rng_img.save(buf, format="PNG")
    assert len(buf.getvalue()) > 1_000_000
    loaded = load_image(buf.getvalue(), ImageLimits(service="Tiny", max_bytes=300_000))
    assert loaded.data is not None and len(loaded.data) <= 300_000
    assert loaded.notes


def test_too_small_rejected_when_service_has_minimum() -> None:
    with pytest.raises(InvalidImageError, match="at least 50x50"):
        load_image(make_png((1, 1)), ImageLimits(service="Image Analysis", min_side=50))


def test_exif_rotated_photo_is_sent_upright() -> None:
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    loaded = load_image(buf.getvalue(), LIMITS)
    assert loaded.size == (40, 80)
    assert "rotated upright per EXIF orientation" in loaded.notes


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "F", "LA", "P"])
def test_unusual_modes_become_sendable(mode: str) -> None:
    img = (
        Image.new("RGB", (32, 32), (10, 120, 250)).convert(mode)
        if mode != "I;16"
        else Image.new("I;16", (32, 32), 40000)
    )
    loaded = load_image(img, LIMITS)
    assert loaded.pil().mode == "RGB"


def test_unsupported_but_decodable_format_is_converted() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (60, 60), (0, 255, 0)).save(buf, format="WEBP")
    loaded = load_image(buf.getvalue(), LIMITS)
    assert loaded.format == "PNG" and any("converted WEBP" in n for n in loaded.notes)


def test_non_image_argument_type() -> None:
    with pytest.raises(InvalidImageError, match="unsupported image argument"):
        load_image(12345, LIMITS)  # type: ignore[arg-type]


def test_a_relative_path_stays_relative_in_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "red.png").write_bytes(make_png())
    monkeypatch.chdir(tmp_path)
    loaded = load_image("photos/red.png", LIMITS)
    assert loaded.source == "photos/red.png"
    assert loaded.origin == str(tmp_path / "photos" / "red.png")  # still readable after a chdir
