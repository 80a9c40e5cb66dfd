"""The image of an ``analyze`` request: raw bytes, a multipart file or a loopback URL, within the
service's limits, measured from a reduced decode.

The service refuses an image by its declared dimensions before decoding it, and so does the
emulator: sides are checked from the header (`azvision.emulator._image_header`), and the
emulator decodes at most `MAX_DECODED_PIXELS` (64 megapixels); a larger image, which the
service might still take, gets the service's own dimension error rather than gigabytes of bitmap.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (60, 60), (250, 250, 250)).save(buffer, "PNG")
    >>> stats, name = measure(buffer.getvalue(), frozenset({"PNG"}))
    >>> name, stats.colours[0][0]
    ('PNG', 'White')
"""

from __future__ import annotations

import io
import ipaddress
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from azvision.emulator._ia_errors import BAD_FORMAT, BAD_URL, MAX_SIDE, MIN_SIDE, bad_dimensions, invalid
from azvision.emulator._image_header import read_header
from azvision.emulator._pixels import ANALYSIS_SIDE, PixelStats, analyse

__all__ = ["MAX_DECODED_PIXELS", "measure", "read_image"]

#: The most pixels the emulator decodes (8000 × 8000): about 256 MB of bitmap at worst, and below
#: Pillow's own decompression-bomb threshold, so Pillow never warns.
MAX_DECODED_PIXELS = 64_000_000
_URL_FETCH_SECONDS = 10.0
_MAX_JSON_BYTES = 64 * 1024  # a {"url": ...} body


async def read_image(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            url = json.loads(await _read_capped(request.stream(), _MAX_JSON_BYTES))["url"]
        except (ValueError, KeyError, TypeError):
            raise invalid(BAD_URL, "InvalidImageUrl") from None
        data = await _fetch(url, limit)
    elif content_type == "application/octet-stream":
        data = await _read_capped(request.stream(), limit)
    elif content_type == "multipart/form-data":
        form = await request.form()
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        data = await upload.read(limit + 1) if upload else b""
    else:
        shown = content_type or "(none)"
        raise invalid(f"The provided image content type {shown} is not supported.", "UnsupportedMediaType")
    if not data or len(data) > limit:
        message = f"The image size is not allowed to be zero or larger than {limit} bytes."
        raise invalid(message, "InvalidImageSize")
    return data


async def _read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to tell "too big" without holding it all."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > limit:
            break
    return bytes(buffer[: limit + 1])


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _fetch(url: object, limit: int) -> bytes:
    if not isinstance(url, str):
        raise invalid(BAD_URL, "InvalidImageUrl")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname):
        raise invalid(BAD_URL, "InvalidImageUrl")
    try:
        async with (
            httpx.AsyncClient(trust_env=False, verify=False, timeout=_URL_FETCH_SECONDS) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise invalid(BAD_URL, "InvalidImageUrl")
            return await _read_capped(response.aiter_bytes(), limit)
    except httpx.HTTPError:
        raise invalid(BAD_URL, "InvalidImageUrl") from None


def measure(data: bytes, formats: frozenset[str]) -> tuple[PixelStats, str]:
    """Check ``data`` as the service does (header first), decode it and measure it; returns the
    statistics and Pillow's format name.

    Raises:
        ServiceError: the service's format or dimension error.
    """
    header = read_header(data)
    if header is None:
        raise invalid(BAD_FORMAT, "InvalidImageFormat")
    if not _sides_ok(header.width, header.height) or header.pixels > MAX_DECODED_PIXELS:
        raise bad_dimensions()
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise invalid(BAD_FORMAT, "InvalidImageFormat") from None
    if image.format not in formats:
        raise invalid(BAD_FORMAT, "InvalidImageFormat")
    size = image.size
    if not _sides_ok(*size) or size[0] * size[1] > MAX_DECODED_PIXELS:
        raise bad_dimensions()
    name = image.format
    try:
        # JPEG decoders can scale by 1/2..1/8 while decoding: far faster for big photos.
        image.draft("RGB", (ANALYSIS_SIDE * 2, ANALYSIS_SIDE * 2))
        image.load()
        return analyse(image, size), name
    except (OSError, ValueError, SyntaxError):
        raise invalid(BAD_FORMAT, "InvalidImageFormat") from None


def _sides_ok(width: int, height: int) -> bool:
    return min(width, height) >= MIN_SIDE and max(width, height) <= MAX_SIDE
