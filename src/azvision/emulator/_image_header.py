"""An image's format and pixel size read from its first bytes, before anything is decoded.

The services check an image's dimensions from its header; the emulator does the same, so that a
small file that would decode to a huge bitmap is refused without allocating it (and without
Pillow's process-wide decompression-bomb warnings). Knows the formats the services accept: JPEG
(and MPO), PNG, GIF, BMP, WEBP, TIFF and ICO.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (300, 20)).save(buffer, "PNG")
    >>> read_header(buffer.getvalue())
    Header(format='PNG', width=300, height=20)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["Header", "read_header"]

# Start-of-frame markers of every JPEG coding process (not DHT C4, JPG C8 or DAC CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class Header(NamedTuple):
    """What the first bytes say: Pillow's format name and the pixel size."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width × height."""
        return self.width * self.height


def read_header(data: bytes) -> Header | None:
    """The format and size ``data`` declares, or ``None`` when its header is not one of the known
    formats or is cut short.

    Example:
        >>> read_header(b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little"))
        Header(format='GIF', width=640, height=480)
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return Header("PNG", width, height)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return Header("GIF", width, height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        if data.startswith(b"\x00\x00\x01\x00"):
            return _ico(data)
    except (struct.error, IndexError):
        return None
    return None


def _jpeg(data: bytes) -> Header | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return Header("JPEG", width, height)
        offset += 2 + length
    return None


def _bmp(data: bytes) -> Header:
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return Header("BMP", abs(width), abs(height))


def _webp(data: bytes) -> Header | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return Header("WEBP", width, height)
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return Header("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return Header("WEBP", width & 0x3FFF, height & 0x3FFF)
    return None


def _tiff(data: bytes) -> Header | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    size: dict[int, int] = {}
    for entry in range(count):
        start = ifd + 2 + 12 * entry
        tag, kind = struct.unpack(order + "HH", data[start : start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt = order + ("H" if kind == 3 else "I")
            size[tag] = struct.unpack(fmt, data[start + 8 : start + 8 + struct.calcsize(fmt)])[0]
    if 256 in size and 257 in size:
        return Header("TIFF", size[256], size[257])
    return None


def _ico(data: bytes) -> Header | None:
    (count,) = struct.unpack("<H", data[4:6])
    if count == 0:
        return None
    # Each directory entry stores its side in one byte (0 means 256); Pillow opens the largest.
    sides = [(data[6 + 16 * i] or 256, data[7 + 16 * i] or 256) for i in range(count)]
    width, height = max(sides, key=lambda side: side[0] * side[1])
    return Header("ICO", width, height)
