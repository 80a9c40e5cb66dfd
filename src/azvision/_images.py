"""Image input handling, written once for every backend.

Accepts a path, bytes, a binary file object, an ``http(s)://`` URL or a ``PIL.Image.Image``; sniffs the
format from the bytes (never the file name); raises :class:`InvalidImageError` before any network call for
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Union

from ._errors import InvalidImageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageLike", "ImageLimits", "LoadedImage", "fetch_url", "load_image"]

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "PILImage.Image"]

_MB = 1024 * 1024
#: Formats every service and the local path can decode.
COMMON_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
#: Pixel modes services decode reliably; anything else is converted to RGB(A) before sending.
_SAFE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1"})


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


@dataclass(frozen=True)
class LoadedImage:
    """A validated image, ready to send: either ``data`` (encoded bytes) or ``url``."""

    data: bytes | None
    url: str | None = None
    source: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

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


def _is_url(text: str) -> bool:
    return "://" in text[:16]


def _validate_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in {"http", "https"}:
        raise InvalidImageError(
            f"unsupported URL scheme {scheme!r}: only http:// and https:// image URLs can be sent "
            "(for a local file pass its path instead)",
            source=url,
        )
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidImageError(f"malformed image URL: {exc}", source=url) from exc
    if not parsed.host:
        raise InvalidImageError("malformed image URL: it has no host", source=url)
    return url


def fetch_url(url: str, *, max_bytes: int = 50 * _MB, timeout: float = 30.0) -> bytes:
    """Download an image URL (for backends that cannot take URLs), with a size cap and typed errors."""
    import httpx

    _validate_url(url)
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise InvalidImageError(
                    f"could not download the image: the server answered HTTP {resp.status_code}",
                    source=url,
                    status_code=resp.status_code,
                )
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise InvalidImageError(
                        f"the image at the URL is larger than {max_bytes // _MB} MB", source=url
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise InvalidImageError(f"could not download the image: {exc}", source=url) from exc


def _read_source(image: ImageLike) -> tuple[bytes, str | None]:
    from PIL import Image

    if isinstance(image, Image.Image):
        return _encode_pil(image), None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), None
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise InvalidImageError(f"no such file: {path}", source=str(path))
        if path.is_dir():
            raise InvalidImageError(f"{path} is a directory, not an image file", source=str(path))
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise InvalidImageError(f"cannot read {path}: {exc.strerror}", source=str(path)) from exc
    read = getattr(image, "read", None)
    if callable(read):
        name = getattr(image, "name", None)
        source = os.path.basename(name) if isinstance(name, str) else None
        if getattr(image, "closed", False):
            raise InvalidImageError("the file object is closed", source=source)
        try:
            data = read()
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"cannot read the file object: {exc}", source=source) from exc
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidImageError(
                "the file object returned text, not bytes: open it in binary mode ('rb')",
                source=source,
            )
        return bytes(data), source
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


def load_image(image: ImageLike, limits: ImageLimits) -> LoadedImage:
    """Validate ``image`` against ``limits`` and return what to send. Raises :class:`InvalidImageError`.

    Example:
        >>> load_image(b"", ImageLimits(service="x"))
        Traceback (most recent call last):
        ...
        azvision._errors.InvalidImageError: the image is empty (0 bytes)
    """
    if isinstance(image, str) and _is_url(image):
        url = _validate_url(image)
        if limits.accepts_url:
            return LoadedImage(data=None, url=url, source=url)
        return _check_bytes(fetch_url(url), url, limits)
    data, source = _read_source(image)
    return _check_bytes(data, source, limits)


def _check_bytes(data: bytes, source: str | None, limits: ImageLimits) -> LoadedImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InvalidImageError("the image is empty (0 bytes)", source=source)
    notes: list[str] = []
    fmt = "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            size = img.size
            if fmt == "JPEG":
                # Decoding at 1/8 scale still walks the whole entropy-coded stream, so truncation is
                # caught without paying for a full-resolution decode.
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
            frames = getattr(img, "n_frames", 1)  # walks every frame header: a cut GIF fails here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
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
