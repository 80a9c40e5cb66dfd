"""A JSON request body read as a stream, with every over-long string value cut short before parsing.

An ``/images/files`` batch carries up to 64 base64 images in one JSON body. The service judges each image
on its own (an image over 6 MB gets ``ErrorImageSize``, the others are stored), so the emulator must still
parse the whole batch, yet without holding a huge image it is going to refuse anyway. `StringCapper`
scans the bytes as they arrive, keeps at most ``string_limit`` bytes of each JSON string (enough for the
check to see "too big") and drops the rest; the body that is parsed is then bounded by the batch limit of
valid images, whatever the client sends.

Example:
    >>> capper = StringCapper(string_limit=8)
    >>> capper.feed(b'{"name": "a.png", "contents": "AAAA')
    >>> capper.feed(b'BBBBCCCC"}')
    >>> capper.body(), capper.cut_strings
    (b'{"name": "a.png", "contents": "AAAABBBB"}', 1)
"""

from __future__ import annotations

import re

__all__ = ["StringCapper"]

_SPECIAL = re.compile(rb'["\\]')


class StringCapper:
    """Feed it a JSON body chunk by chunk; `body()` is the same JSON with long strings shortened.

    Only string contents are shortened (keys too, but no key is megabytes long), never inside an escape
    sequence, so a valid body stays valid JSON. `kept` counts the bytes held so far (the caller's size
    limit applies to it) and `seen` every byte fed.
    """

    def __init__(self, string_limit: int) -> None:
        self.string_limit = string_limit
        self.seen = 0
        self.cut_strings = 0
        self._out = bytearray()
        self._in_string = False
        self._escape = b""  # an escape sequence begun at the end of the last chunk
        self._length = 0  # bytes of the current string so far
        self._cut = False

    @property
    def kept(self) -> int:
        """Bytes held so far."""
        return len(self._out)

    def body(self) -> bytes:
        """The shortened body."""
        return bytes(self._out)

    def feed(self, chunk: bytes) -> None:
        """Scan the next chunk of the body."""
        self.seen += len(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            if not self._in_string:
                quote = chunk.find(b'"', pos)
                if quote < 0:
                    self._out += chunk[pos:]
                    return
                self._out += chunk[pos : quote + 1]
                self._in_string, self._length, self._cut = True, 0, False
                pos = quote + 1
                continue
            if self._escape:
                pos = self._finish_escape(chunk, pos)
                continue
            special = _SPECIAL.search(chunk, pos)
            stop = special.start() if special else end
            self._string_part(chunk[pos:stop])
            if special is None:
                return
            if chunk[stop] == 0x22:  # the closing quote
                self._out += b'"'
                self._in_string = False
                pos = stop + 1
            else:
                self._escape = b"\\"
                pos = stop + 1

    def _finish_escape(self, chunk: bytes, pos: int) -> int:
        """Complete a backslash escape (``\\n``, ``\\"``, ``\\uXXXX``) and keep it whole or not at all."""
        sequence = self._escape + chunk[pos : pos + 6]
        size = 6 if sequence[1:2] == b"u" else 2
        if len(sequence) < size:  # the chunk ends inside the escape
            self._escape = sequence
            return len(chunk)
        taken = size - len(self._escape)
        self._escape = b""
        self._string_part(sequence[:size], whole=True)
        return pos + taken

    def _string_part(self, part: bytes, *, whole: bool = False) -> None:
        room = self.string_limit - self._length
        self._length += len(part)
        if len(part) <= room:
            self._out += part
        else:
            if room > 0 and not whole:
                self._out += part[:room]
            if not self._cut:
                self._cut = True
                self.cut_strings += 1
                self._drop_partial_character()

    def _drop_partial_character(self) -> None:
        """Drop a UTF-8 character the cut split (its first bytes may have come in an earlier part)."""
        out, end = self._out, len(self._out)
        start = end - 1
        while start >= 0 and out[start] & 0xC0 == 0x80 and end - start < 4:
            start -= 1
        if start >= 0 and out[start] >= 0xC0:
            size = 2 if out[start] < 0xE0 else 3 if out[start] < 0xF0 else 4
            if end - start < size:
                del out[start:]
