"""The emulator under attack: control routes, Host names, oversized bodies, pixel bombs, disconnects."""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from azvision.emulator import Emulator
from azvision.emulator._image_header import read_header

TRAINING = "/customvision/v3.3/training"
ANALYZE = "/computervision/imageanalysis:analyze?api-version=2023-10-01&features=tags"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def new_project(emu: Emulator, name: str) -> str:
    answer = httpx.post(
        f"{emu.endpoint}{TRAINING}/projects",
        params={"name": name},
        headers={"Training-Key": emu.training_key},
    )
    assert answer.status_code == 200, answer.text
    project_id: str = answer.json()["id"]
    return project_id


# -- control routes --------------------------------------------------------------------------------
def test_control_routes_need_the_training_key(emu: Emulator) -> None:
    for headers in ({}, {"Training-Key": "wrong"}, {"Prediction-Key": emu.prediction_key}):
        answer = httpx.get(emu.endpoint + "/_emulator/stats", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "401"
    good = httpx.get(emu.endpoint + "/_emulator/stats", headers={"Training-Key": emu.training_key})
    assert good.status_code == 200


def test_a_cross_origin_reset_wipes_nothing(emu: Emulator) -> None:
    project_id = new_project(emu, "keep me")
    # What a web page can send without a CORS preflight: a text/plain POST with no custom header.
    answer = httpx.post(
        emu.endpoint + "/_emulator/reset",
        content="x",
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert answer.status_code == 401
    kept = httpx.get(
        f"{emu.endpoint}{TRAINING}/projects/{project_id}", headers={"Training-Key": emu.training_key}
    )
    assert kept.status_code == 200


# -- Host header -----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "attacker.localhost.evil.example:80", "10.0.0.8", ""])
def test_a_foreign_host_name_is_misdirected(emu: Emulator, host: str) -> None:
    before = emu.stats()
    for path in ("/_emulator/stats", f"{TRAINING}/domains"):
        answer = httpx.get(emu.endpoint + path, headers={"Host": host, "Training-Key": emu.training_key})
        assert answer.status_code == 421
        assert "loopback" in answer.json()["error"]["message"]
    assert emu.stats() == before  # refused before any service saw it


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.9.9.9", "[::1]"])
def test_loopback_host_names_are_served(emu: Emulator, host: str) -> None:
    port = httpx.URL(emu.endpoint).port
    answer = httpx.get(
        f"{emu.endpoint}{TRAINING}/domains",
        headers={"Host": f"{host}:{port}", "Training-Key": emu.training_key},
    )
    assert answer.status_code == 200


# -- Custom Vision bodies --------------------------------------------------------------------------
def test_a_huge_upload_is_cut_not_read(emu: Emulator) -> None:
    project_id = new_project(emu, "huge upload")
    total, chunk = 300 * 1024 * 1024, b"\0" * (1024 * 1024)
    sent = [0]

    def body() -> Iterator[bytes]:
        while sent[0] < total:
            sent[0] += len(chunk)
            yield chunk

    try:
        answer = httpx.post(
            f"{emu.endpoint}{TRAINING}/projects/{project_id}/images",
            content=body(),
            headers={"Training-Key": emu.training_key, "Content-Type": "application/octet-stream"},
            timeout=60,
        )
    except httpx.TransportError:
        pass  # the emulator closed the connection after its answer, as a gateway cutting a body does
    else:
        assert answer.status_code == 207
        assert answer.json()["images"][0]["status"] == "ErrorImageSize"
    # 6 MB kept plus at most 32 MB read and dropped; socket buffers hold a little more.
    assert sent[0] < 100 * 1024 * 1024


def test_an_oversized_image_in_a_batch_gets_its_size_error(emu: Emulator) -> None:
    project_id = new_project(emu, "one too big")
    small = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 0, 0)).save(small, "PNG")
    files = [
        ("imageData", ("big.bin", b"\0" * (7 * 1024 * 1024))),
        ("imageData", ("ok.png", small.getvalue())),
    ]
    answer = httpx.post(
        f"{emu.endpoint}{TRAINING}/projects/{project_id}/images",
        files=files,
        headers={"Training-Key": emu.training_key},
        timeout=60,
    )
    assert answer.status_code == 207
    assert [image["status"] for image in answer.json()["images"]] == ["ErrorImageSize", "OK"]


# -- Image Analysis pixel counts -------------------------------------------------------------------
def test_a_small_file_that_decodes_to_a_huge_bitmap_is_refused_from_its_header(emu: Emulator) -> None:
    buffer = io.BytesIO()
    Image.new("1", (15000, 11000)).save(buffer, "PNG")  # 1 bit a pixel: ~20 MB here, a few KB on disk
    assert len(buffer.getvalue()) < 1024 * 1024
    answer = httpx.post(
        emu.endpoint + ANALYZE,
        content=buffer.getvalue(),
        headers={"Ocp-Apim-Subscription-Key": emu.vision_key, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["innererror"]["code"] == "InvalidImageSize"
    assert answer.json()["error"]["message"] == (
        "The image dimension is not allowed to be smaller than 50 and larger than 16000."
    )


@pytest.mark.parametrize(
    ("fmt", "mode", "size"),
    [
        ("PNG", "RGB", (301, 77)),
        ("GIF", "P", (64, 1000)),
        ("BMP", "RGB", (123, 45)),
        ("JPEG", "RGB", (640, 481)),
        ("WEBP", "RGB", (333, 222)),
        ("WEBP", "RGBA", (90, 91)),
        ("TIFF", "RGB", (70, 5000)),
        ("ICO", "RGBA", (48, 48)),
    ],
)
def test_the_header_reader_agrees_with_pillow(fmt: str, mode: str, size: tuple[int, int]) -> None:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode == "P" else None).save(buffer, fmt)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        expected = (image.format, *image.size)
    assert tuple(read_header(data) or ()) == expected
    assert read_header(data[:5]) is None


# -- disconnects -----------------------------------------------------------------------------------
def test_a_client_going_away_mid_body_logs_no_traceback(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    address = httpx.URL(emu.endpoint)
    request = (
        f"POST {ANALYZE} HTTP/1.1\r\nHost: 127.0.0.1:{address.port}\r\n"
        f"Ocp-Apim-Subscription-Key: {emu.vision_key}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode() + b"\x89PNG partial"
    with socket.create_connection((address.host, address.port)) as sock:
        sock.sendall(request)
    # The server notices the disconnect on its next read; wait until it has logged it (DEBUG).
    deadline = time.monotonic() + 10
    while (
        not any("client went away" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert any("client went away" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
