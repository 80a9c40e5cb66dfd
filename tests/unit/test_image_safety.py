"""Inputs that attack the process: slow or huge downloads, huge files, pixel bombs, warnings state.

The servers here are real loopback sockets on threads; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import tracemalloc
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from azvision import AzureMLEndpointBackend, BackendTimeoutError, InvalidImageError, RetryPolicy
from azvision._download import fetch_url
from azvision._images import DEFAULT_MAX_PIXELS, ImageLimits, load_image
from tests.conftest import make_png

LIMITS = ImageLimits(service="Test Service", max_bytes=4 * 1024 * 1024, max_side=10240)
URL_LIMITS = ImageLimits(service="Test Service", accepts_url=False)


# -- a loopback server that answers every request with what ``respond`` writes ---------------------------------
class TrickleServer:
    """Accepts connections on 127.0.0.1; ``respond(send, stopped)`` writes each answer."""

    def __init__(self, respond: Callable[[Callable[[bytes], None], threading.Event], None]) -> None:
        self._respond = respond
        self._stopped = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/cat.png"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            with contextlib.suppress(OSError):  # the client went away: what these tests expect of it
                self._respond(conn.sendall, self._stopped)

    def __enter__(self) -> TrickleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()
        self._sock.close()


def one_byte_every_200_ms(send: Callable[[bytes], None], stopped: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
    while not stopped.wait(0.2):
        send(b"\x89")


def headers_then_silence(send: Callable[[bytes], None], stopped: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    stopped.wait(30)


def announces_60_mb(send: Callable[[bytes], None], stopped: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nContent-Length: 62914560\r\n\r\n" + b"\0" * 1024)
    stopped.wait(30)


def endless_chunks(send: Callable[[bytes], None], stopped: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not stopped.is_set():
        send(b"10000\r\n" + b"\0" * 0x10000 + b"\r\n")


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    with TrickleServer(request.param) as running:
        yield running


# -- downloads ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [one_byte_every_200_ms, headers_then_silence], indirect=True)
def test_a_slow_download_ends_in_a_timeout_error(server: TrickleServer) -> None:
    with pytest.raises(BackendTimeoutError, match="did not finish within the 1 s timeout") as info:
        fetch_url(server.url, timeout=1.0)
    assert info.value.source == server.url


@pytest.mark.parametrize("server", [one_byte_every_200_ms], indirect=True)
def test_a_backend_downloads_within_its_timeout_and_never_past_the_deadline(server: TrickleServer) -> None:
    # The scoring URI is never reached: the download fails first.
    by_timeout = AzureMLEndpointBackend("http://127.0.0.1:9/score", "k", timeout=1.0)
    by_deadline = AzureMLEndpointBackend(
        "http://127.0.0.1:9/score", "k", timeout=600.0, retry=RetryPolicy(deadline=1.5)
    )
    for clf, budget in ((by_timeout, "1 s"), (by_deadline, "1.5 s")):
        with clf, pytest.raises(BackendTimeoutError, match=f"within the {budget} timeout") as info:
            clf.classify(server.url)
        assert info.value.source == server.url
    outcomes = list(
        AzureMLEndpointBackend("http://127.0.0.1:9/score", "k", timeout=1.0).classify_many([server.url])
    )
    assert [type(o) for o in outcomes] == [BackendTimeoutError]


@pytest.mark.parametrize("server", [announces_60_mb, endless_chunks], indirect=True)
def test_a_huge_download_is_refused_at_the_cap(server: TrickleServer) -> None:
    with pytest.raises(InvalidImageError, match="azvision reads at most 1 MB as one image"):
        fetch_url(server.url, max_bytes=1024 * 1024, timeout=30.0)
    limits = ImageLimits(service="x", accepts_url=False, max_input_bytes=2 * 1024 * 1024)
    with pytest.raises(InvalidImageError, match="at most 2 MB"):
        load_image(server.url, limits)


# -- local files ---------------------------------------------------------------------------------------------------
def test_a_huge_file_is_refused_without_being_read(tmp_path: Path) -> None:
    huge = tmp_path / "scan.tif"
    with huge.open("wb") as handle:
        handle.truncate(1536 * 1024 * 1024)  # sparse: 1.5 GB that take no disk space
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match=r"scan.tif is 1536.0 MB; azvision reads at most 50 MB"):
            load_image(str(huge), LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # nothing of the file was read into memory


def test_a_file_object_is_read_no_further_than_the_cap() -> None:
    class Endless:
        def read(self, size: int = -1) -> bytes:
            assert size > 0, "read() without a size would read everything"
            return b"\0" * size

    limits = ImageLimits(service="x", max_input_bytes=1024)
    with pytest.raises(InvalidImageError, match=r"the file object is 0\.0 MB"):
        load_image(Endless(), limits)  # type: ignore[arg-type]


# -- pixel bombs -----------------------------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height``; there are no real pixels behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


#: Over Pillow's warning threshold, under its error threshold: the case warnings filters used to decide.
BOMB = _png_header(10_000, 9_000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_concurrent_bomb_loads_leave_warnings_alone_and_users_pillow_working() -> None:
    before = list(warnings.filters)
    inputs = [BOMB if i % 2 else make_png() for i in range(400)]

    def load(data: bytes) -> str:
        try:
            return load_image(data, LIMITS).format or ""
        except InvalidImageError as exc:
            return exc.message

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(load, inputs))
    assert results[0] == "PNG" and "10000x9000 px (90 megapixels)" in results[1]
    assert warnings.filters == before
    with Image.open(io.BytesIO(BOMB)) as user_image:  # the user's own large-image call
        assert user_image.size == (10_000, 9_000)


def test_the_pixel_count_is_checked_before_decoding_whatever_pillow_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a user who switched Pillow's check off
    with pytest.raises(InvalidImageError, match=r"\(90 megapixels\); azvision decodes at most 89 megapixels"):
        load_image(BOMB, LIMITS)
    assert LIMITS.max_pixels == DEFAULT_MAX_PIXELS
    with pytest.raises(InvalidImageError, match="64x48 px"):
        load_image(make_png(), ImageLimits(service="x", max_pixels=1000))
