"""Image input handling, written once for every backend.

Accepts a path, bytes, a binary file object, an ``http(s)://`` URL or a ``PIL.Image.Image``; sniffs the
format from the bytes (never the file name); raises `InvalidImageError` before any network call for
anything the chosen service would reject; and, where a service limit is exceeded, downscales (keeping the
aspect ratio) and says so in ``notes``. Nothing is re-encoded unless it has to be.

Example:
    >>> from azvision._images import load_image, ImageLimits
    >>> from PIL import Image
    >>> img = load_image(Image.new("RGB", (64, 48)), ImageLimits(service="test"))
    >>> img.format, img.size
    ('PNG', (64, 48))
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Union

from ._download import fetch_url, is_url, validate_url
from ._errors import InvalidImageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageLike",
    "ImageLimits",
    "LoadedImage",
    "fetch_url",
    "load_image",
]

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "PILImage.Image"]

_MB = 1024 * 1024
#: Formats every service and the local path can decode.
COMMON_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
#: Pixel modes services decode reliably; anything else is converted to RGB(A) before sending.
_SAFE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1"})
#: The most pixels azvision decodes (Pillow's own default bomb threshold, applied whatever
#: ``PIL.Image.MAX_IMAGE_PIXELS`` is set to): checked from the header, before any decoding.
DEFAULT_MAX_PIXELS = 89_478_485
#: The largest file, download or buffer azvision reads as an image: big enough for a photo any service
#: accepts after downscaling (Image Analysis takes 20 MB), checked before reading a file or downloading.
DEFAULT_MAX_INPUT_BYTES = 50 * _MB


@dataclass(frozen=True)
class ImageLimits:
    """What a service accepts. ``None`` means no limit on our side.

    Example:
        >>> ImageLimits(service="Custom Vision prediction", max_bytes=4 * 1024 * 1024).max_bytes
        4194304
    """

    service: str
    max_bytes: int | None = None
    max_side: int | None = None
    min_side: int | None = None
    formats: frozenset[str] = COMMON_FORMATS
    #: Whether URLs go to the service as URLs (else azvision downloads them itself).
    accepts_url: bool = True
    #: Whether images over the limits may be downscaled (else rejected).
    downscale: bool = True
    #: Images with more pixels than this are refused before decoding (decompression bombs).
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Inputs (files, downloads, buffers) larger than this are refused before they are read.
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    @property
    def input_cap(self) -> int:
        """The most bytes read for one input: ``max_input_bytes`` (``max_bytes`` if nothing may shrink)."""
        if self.max_bytes is not None and not self.downscale:
            return min(self.max_bytes, self.max_input_bytes)
        return self.max_input_bytes


@dataclass(frozen=True)
class LoadedImage:
    """A validated image, ready to send: either ``data`` (encoded bytes) or ``url``.

    ``source`` is the input as the user gave it (path, URL); ``origin`` is where its pixels can be read
    again (an absolute file path or the URL), so results can show the image without keeping its bytes.
    """

    data: bytes | None
    url: str | None = None
    source: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    origin: str | None = None

    def pil(self) -> PILImage.Image:
        """Decode to an upright RGB ``PIL.Image`` (EXIF orientation applied)."""
        from PIL import Image, ImageOps

        if self.data is None:
            raise InvalidImageError("a URL image has no local pixels; fetch it first", source=self.source)
        with Image.open(io.BytesIO(self.data)) as opened:
            upright = ImageOps.exif_transpose(opened)
            return _to_rgb(upright)


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    from PIL import Image

    if img.mode == "RGB":
        return img.copy()
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        # 16/32-bit and float greyscale: scale to 8 bits instead of clipping everything to white
        # (or, for floats in [0, 1], to black).
        import numpy as np

        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        high = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16") or high > 255:
            peak = 65535.0
        elif img.mode == "F" and high <= 1.0:
            peak = 1.0
        else:
            peak = 255.0
        return Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype("uint8"), "L").convert("RGB")
    if img.mode in {"La", "RGBa"}:
        img = img.convert("LA" if img.mode == "La" else "RGBA")  # un-premultiply the alpha first
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _too_big(what: str, size: int, cap: int, source: str | None) -> InvalidImageError:
    return InvalidImageError(
        f"{what} is {size / _MB:.1f} MB; azvision reads at most {cap / _MB:g} MB as one image",
        source=source,
    )


def _read_source(image: ImageLike, cap: int) -> tuple[bytes, str | None, str | None]:
    """(bytes, source as given, origin) of a non-URL input; files over ``cap`` are refused unread."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return _encode_pil(image), None, None
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) > cap:
            raise _too_big("the image", len(image), cap, None)
        return bytes(image), None, None
    if isinstance(image, (str, os.PathLike)):
        given = os.fspath(image)
        path = Path(given)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InvalidImageError(f"no such file: {given}", source=given) from None
        except OSError as exc:
            raise InvalidImageError(f"cannot read {given}: {exc.strerror}", source=given) from exc
        if path.is_dir():
            raise InvalidImageError(f"{given} is a directory, not an image file", source=given)
        if size > cap:
            raise _too_big(f"the file {given}", size, cap, given)
        try:
            with path.open("rb") as handle:
                data = handle.read(cap + 1)  # the file may have grown since stat
        except OSError as exc:
            raise InvalidImageError(f"cannot read {given}: {exc.strerror}", source=given) from exc
        if len(data) > cap:
            raise _too_big(f"the file {given}", len(data), cap, given)
        return data, given, os.path.abspath(given)
    read = getattr(image, "read", None)
    if callable(read):
        name = getattr(image, "name", None)
        source = name if isinstance(name, str) else None
        if getattr(image, "closed", False):
            raise InvalidImageError("the file object is closed", source=source)
        try:
            data = read(cap + 1)
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"cannot read the file object: {exc}", source=source) from exc
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidImageError(
                "the file object returned text, not bytes: open it in binary mode ('rb')",
                source=source,
            )
        if len(data) > cap:
            raise _too_big("the file object", len(data), cap, source)
        return bytes(data), source, None
    raise InvalidImageError(
        f"unsupported image argument of type {type(image).__name__}: pass a path, bytes, a binary file "
        "object, an http(s) URL or a PIL image"
    )


def _encode_pil(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    if img.mode not in _SAFE_MODES:
        img = _to_rgb(img)
    img.save(buf, format="PNG")
    return buf.getvalue()


def _describe_non_image(data: bytes) -> str:
    head = data[:512].lstrip()
    if head.startswith(b"%PDF"):
        return "this is a PDF document, not an image"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096]):
        return "this is an SVG (vector) file: rasterise it to PNG first"
    if head[:1] in {b"<", b"{", b"["}:
        return "this is text (HTML/JSON/XML), not an image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(ch.isprintable() or ch.isspace() for ch in text):
        return "this is plain text, not a recognised image"
    return "the data is not a recognised image (corrupt, truncated or an unsupported format)"


def load_image(image: ImageLike, limits: ImageLimits, *, timeout: float = 30.0) -> LoadedImage:
    """Validate ``image`` against ``limits`` and return what to send. Raises `InvalidImageError`.

    A URL the service cannot take is downloaded within ``timeout`` seconds in all
    (`BackendTimeoutError` past it); files, downloads and buffers over ``limits.input_cap`` are
    refused before they are read, images over ``limits.max_pixels`` before they are decoded.

    Example:
        >>> load_image(b"", ImageLimits(service="x"))
        Traceback (most recent call last):
        ...
        azvision._errors.InvalidImageError: the image is empty (0 bytes)
    """
    if isinstance(image, str) and is_url(image):
        url = validate_url(image)
        if limits.accepts_url:
            return LoadedImage(data=None, url=url, source=url, origin=url)
        fetched = fetch_url(url, max_bytes=limits.input_cap, timeout=timeout)
        return replace(_check_bytes(fetched, url, limits), origin=url)
    data, source, origin = _read_source(image, limits.input_cap)
    loaded = _check_bytes(data, source, limits)
    return replace(loaded, origin=origin) if origin is not None else loaded


def _check_bytes(data: bytes, source: str | None, limits: ImageLimits) -> LoadedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InvalidImageError("the image is empty (0 bytes)", source=source)
    notes: list[str] = []
    fmt = "unknown"
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        fmt = img.format or "unknown"
        size = img.size
        # An explicit count, not a warnings filter: warnings.catch_warnings() is process-wide state, and
        # concurrent loads left an "error" filter behind that broke the user's own Pillow calls.
        if size[0] * size[1] > limits.max_pixels:
            raise InvalidImageError(
                f"the image is {size[0]}x{size[1]} px ({size[0] * size[1] / 1e6:.0f} megapixels); "
                f"azvision decodes at most {limits.max_pixels / 1e6:.0f} megapixels (a decompression bomb?)",
                source=source,
            )
        if fmt == "JPEG":
            # Decoding at 1/8 scale still walks the whole entropy-coded stream, so truncation is
            # caught without paying for a full-resolution decode.
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        img.load()
        frames = getattr(img, "n_frames", 1)  # walks every frame header: a cut GIF fails here
    except Image.DecompressionBombError as exc:  # over twice Pillow's own threshold, raised by open()
        raise InvalidImageError(
            f"the image has too many pixels to decode safely: {exc}", source=source
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(_describe_non_image(data), source=source) from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise InvalidImageError(f"the image is corrupt or truncated ({fmt}): {exc}", source=source) from exc

    needs_reencode = False
    if fmt not in limits.formats:
        needs_reencode = True
        notes.append(f"converted {fmt} to a format {limits.service} accepts")
    orientation = img.getexif().get(0x0112, 1) if fmt in {"JPEG", "TIFF", "PNG", "WEBP", "MPO"} else 1
    if orientation not in (1, None):
        needs_reencode = True
        notes.append("rotated upright per EXIF orientation")
    if img.mode not in _SAFE_MODES:
        needs_reencode = True
        notes.append(f"converted {img.mode} pixels to RGB")
    if frames > 1 and fmt not in limits.formats:
        notes.append("animated image: first frame used")

    width, height = size
    if limits.min_side is not None and min(width, height) < limits.min_side:
        raise InvalidImageError(
            f"the image is {width}x{height} px; {limits.service} needs at least "
            f"{limits.min_side}x{limits.min_side} px",
            source=source,
        )
    scale = 1.0
    if limits.max_side is not None and max(width, height) > limits.max_side:
        if not limits.downscale:
            raise InvalidImageError(
                f"the image is {width}x{height} px; {limits.service} accepts at most {limits.max_side} px "
                "per side",
                source=source,
            )
        scale = limits.max_side / max(width, height)
    too_big = limits.max_bytes is not None and len(data) > limits.max_bytes
    if too_big and not limits.downscale:
        raise InvalidImageError(
            f"the image is {len(data) / _MB:.1f} MB; {limits.service} accepts at most "
            f"{(limits.max_bytes or 0) / _MB:.0f} MB",
            source=source,
        )
    if not (needs_reencode or too_big or scale < 1.0):
        return LoadedImage(data=data, source=source, format=fmt, size=size, notes=())

    with Image.open(io.BytesIO(data)) as opened:
        full = ImageOps.exif_transpose(opened)
        full = full if full.mode in _SAFE_MODES and full.mode != "P" else _to_rgb(full)
    out_fmt = fmt if fmt in limits.formats and fmt in {"PNG", "JPEG"} else "PNG"
    if full.mode in {"RGBA", "LA"} and out_fmt == "JPEG":
        out_fmt = "PNG"
    encoded, final = _encode_within(full, out_fmt, scale, limits.max_bytes)
    if too_big and final.size == full.size:
        notes.append(
            f"re-encoded {fmt} as {_sniff(encoded)} ({len(data) / _MB:.1f} MB → {len(encoded) / _MB:.1f} MB) "
            f"to fit {limits.service} limits"
        )
    if final.size != full.size:
        notes.append(
            f"downscaled from {full.size[0]}x{full.size[1]} to {final.size[0]}x{final.size[1]} "
            f"to fit {limits.service} limits"
        )
    return LoadedImage(
        data=encoded, source=source, format=_sniff(encoded), size=final.size, notes=tuple(notes)
    )


def _sniff(data: bytes) -> str:
    return "PNG" if data.startswith(b"\x89PNG") else "JPEG"


def _encode_within(
    img: PILImage.Image, fmt: str, scale: float, max_bytes: int | None
) -> tuple[bytes, PILImage.Image]:
    from PIL import Image

    current = img
    for _ in range(12):
        if scale < 1.0:
            new_size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            current = img.resize(new_size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if fmt == "JPEG":
            current.convert("RGB").save(buf, format="JPEG", quality=92)
        else:
            current.save(buf, format="PNG", optimize=False)
        encoded = buf.getvalue()
        if max_bytes is None or len(encoded) <= max_bytes:
            return encoded, current
        if fmt == "PNG" and current.mode in {"RGB", "L"}:
            fmt = "JPEG"  # photos compress far better as JPEG; try that before shrinking
            continue
        scale *= 0.8 * (max_bytes / len(encoded)) ** 0.5
    raise InvalidImageError("could not re-encode the image under the service's size limit")
