"""What the benchmarks share: results, test images, a trained emulator project, a recording proxy.

Every benchmark gets a :class:`Lab`: it trains one small Custom Vision project in an emulator with a
``data_dir`` once per run, so each benchmark can start its own emulator (with its own latency, quota
and faults) on the same published iteration, and it keeps the project's ONNX export for the local
benchmarks. :class:`RecordingProxy` sits between a client and the emulator and timestamps every
request and answer, which is how the faults benchmark proves that no retry came before the server's
``Retry-After``.

Example:
    >>> r = Result("quota: throughput", 19.6, "img/s", target=19.0, ratio=0.98)
    >>> r.verdict
    'PASS'
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from PIL import Image, ImageDraw

LABELS = ("red", "blue")
PUBLISH_NAME = "bench"
_COLOURS = {"red": (200, 45, 40), "blue": (40, 60, 200)}
_MARKER = re.compile(rb"azvision-bench-(\d{6})")
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Settings:
    """Run-wide settings from the command line.

    Example:
        >>> Settings(quick=True).scale(400, 100)
        100
    """

    quick: bool = False
    seed: int = 0

    def scale(self, full: int, quick: int) -> int:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full


@dataclass
class Result:
    """One row of the final table.

    ``ratio`` is the side-by-side figure (azvision against its reference in the same run, or against the
    physical limit); ``target`` is compared with ``value`` in the direction of ``better``. A row without a
    target is informational.

    Example:
        >>> Result("faults: lost", 0, "items", target=0, better="lower").verdict
        'PASS'
    """

    name: str
    value: float
    unit: str
    target: float | None = None
    better: Literal["higher", "lower"] = "higher"
    ratio: float | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``PASS``, ``MISS``, ``INFO`` (no target) or ``ERROR`` (no measurement: the benchmark crashed)."""
        if self.value != self.value:
            return "ERROR"
        if self.target is None:
            return "INFO"
        ok = self.value >= self.target if self.better == "higher" else self.value <= self.target
        return "PASS" if ok else "MISS"

    def to_json(self) -> dict[str, Any]:
        """The row as plain JSON."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "better": self.better,
            "ratio": self.ratio,
            "verdict": self.verdict,
            "note": self.note,
            "details": self.details,
        }


def machine() -> dict[str, Any]:
    """Where the numbers come from.

    Example:
        >>> machine()["cpus"] >= 1
        True
    """
    import onnxruntime

    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "onnxruntime": onnxruntime.__version__,
    }


def bench_image(index: int, *, size: int = 96) -> bytes:
    """A small JPEG of class ``LABELS[index % 2]``, different for every ``index`` and tagged with it.

    The index is written into a JPEG comment, so :func:`image_index` finds it in any request body
    (multipart or raw) that carries the image.

    Example:
        >>> image_index(b"--boundary\\r\\n" + bench_image(42) + b"\\r\\n--boundary--")
        42
    """
    rng = random.Random(index)
    base = _COLOURS[LABELS[index % 2]]
    background = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in base)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y = rng.randint(0, size - 12), rng.randint(0, size - 12)
        spot = tuple(rng.randint(0, 255) for _ in range(3))
        draw.ellipse([x, y, x + rng.randint(4, 18), y + rng.randint(4, 18)], fill=spot)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, comment=f"azvision-bench-{index:06d}".encode())
    return buffer.getvalue()


def image_index(body: bytes) -> int | None:
    """The :func:`bench_image` index carried in a request body (``None`` if there is none)."""
    found = _MARKER.search(body)
    return int(found.group(1)) if found else None


def expected_label(index: int) -> str:
    """The class :func:`bench_image` drew for ``index``."""
    return LABELS[index % 2]


@dataclass(frozen=True)
class TrainedProject:
    """A published Custom Vision iteration kept in an emulator ``data_dir``, and its ONNX export."""

    data_dir: Path
    project_id: str
    publish_name: str
    export_dir: Path


class Lab:
    """Scratch space for one benchmark run; trains the shared project on first use.

    Example:
        >>> with Lab(Settings(quick=True)) as lab:  # doctest: +SKIP
        ...     with lab.emulator(latency_ms=200) as emu:
        ...         print(emu.endpoint, lab.project.project_id)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="azvision-bench-"))
        self._project: TrainedProject | None = None

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def project(self) -> TrainedProject:
        """The trained, published and exported project (trained on first use, ~3 s)."""
        if self._project is None:
            self._project = self._train()
        return self._project

    def image_files(self, count: int) -> list[str]:
        """Paths of :func:`bench_image` 0 … count-1, named ``{index:06d}.jpg`` (``Prediction.source``)."""
        folder = self.root / "images"
        folder.mkdir(exist_ok=True)
        paths = []
        for index in range(count):
            path = folder / f"{index:06d}.jpg"
            if not path.exists():
                path.write_bytes(bench_image(index))
            paths.append(str(path))
        return paths

    def emulator(
        self,
        *,
        latency_ms: float = 0,
        rate_limit_tps: float | None = None,
        fail_rate: float = 0.0,
        drop_rate: float = 0.0,
    ) -> RemoteEmulator:
        """An emulator serving the trained project from its own process, like a remote service.

        In this process it would share the GIL with the client being measured and slow both down.
        """
        options = [
            f"--data-dir={self.project.data_dir}",
            f"--seed={self.settings.seed}",
            f"--latency-ms={latency_ms}",
            f"--fail-rate={fail_rate}",
            f"--drop-rate={drop_rate}",
        ]
        if rate_limit_tps is not None:
            options.append(f"--rate-limit-tps={rate_limit_tps}")
        return RemoteEmulator(options)

    def _train(self) -> TrainedProject:
        from azvision import CustomVisionTrainer
        from azvision.emulator import Emulator

        dataset = self.root / "dataset"
        for label in LABELS:
            (dataset / label).mkdir(parents=True)
        for i in range(16):
            (dataset / expected_label(i) / f"{i}.jpg").write_bytes(bench_image(900_000 + i))
        data_dir, export_dir = self.root / "emulator", self.root / "export"
        with (
            Emulator(data_dir=data_dir, training_seconds=0.1) as emu,
            CustomVisionTrainer(
                emu.endpoint,
                emu.training_key,
                prediction_resource_id=emu.prediction_resource_id,
                max_rps=None,
            ) as trainer,
        ):
            result = trainer.train_from_folder(
                dataset, project="bench", publish_name=PUBLISH_NAME, export_dir=export_dir, timeout=60
            )
        return TrainedProject(data_dir, str(result.project.id), PUBLISH_NAME, export_dir)


class RemoteEmulator:
    """``python -m azvision emulator OPTIONS`` in a child process, with the fields of its JSON line.

    Example:
        >>> with RemoteEmulator(["--latency-ms=200"]) as emu:  # doctest: +SKIP
        ...     emu.stats()
        {}
    """

    def __init__(self, options: list[str]) -> None:
        self._command = [sys.executable, "-m", "azvision", "emulator", *options]
        self._process: subprocess.Popen[str] | None = None
        self.endpoint = self.prediction_key = self.vision_key = self.training_key = self.openai_key = ""

    def __enter__(self) -> RemoteEmulator:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self._process.stdout is not None
        try:
            info = json.loads(_first_line(self._process.stdout))
        except (queue.Empty, ValueError) as exc:
            self.__exit__()
            raise RuntimeError(f"the emulator did not start: {self._command}") from exc
        self.endpoint = info["endpoint"]
        self.prediction_key = info["prediction_key"]
        self.vision_key = info["vision_key"]
        self.training_key = info["training_key"]
        self.openai_key = info.get("openai_key", "")
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_TIMEOUT_S)

    def stats(self) -> dict[str, dict[str, int]]:
        """``GET /_emulator/stats`` (its control key is the training key): counts by route and status."""
        answer = httpx.get(
            f"{self.endpoint}/_emulator/stats",
            headers={"Training-Key": self.training_key},
            timeout=_TIMEOUT_S,
        )
        answer.raise_for_status()
        stats: dict[str, dict[str, int]] = answer.json()
        return stats


def _first_line(stream: IO[str]) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=_TIMEOUT_S)


def request_total(stats: dict[str, dict[str, int]], fragment: str = "/prediction/") -> dict[str, int]:
    """Status counts summed over the emulator routes containing ``fragment``.

    Example:
        >>> request_total({"POST /customvision/v3.1/prediction/x": {"200": 3, "429": 1}})
        {'200': 3, '429': 1}
    """
    merged: dict[str, int] = {}
    for route, counts in stats.items():
        if fragment in route:
            for status, n in counts.items():
                merged[status] = merged.get(status, 0) + n
    return merged


def counts_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """``after - before`` per status, dropping zeros."""
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def alternate(
    sides: dict[str, Callable[[bytes], Any]], images: list[bytes], rounds: int, *, warm_up: int = 5
) -> tuple[dict[str, float], float]:
    """Seconds per call of each side (``"official"``, ``"azvision"``) over ``images``, in alternating rounds.

    Also returns the median over rounds of azvision's time / the official client's time: a round's two
    halves run back to back (which goes first alternates too), so a burst of load elsewhere on the machine
    skews one round, not the figure.
    """
    for call in sides.values():
        for data in images[:warm_up]:
            call(data)
    totals = dict.fromkeys(sides, 0.0)
    ratios = []
    per_round = -(-len(images) // rounds)
    for r in range(rounds):
        chunk = images[r * per_round : (r + 1) * per_round]
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        spent = {}
        for name in order:
            call = sides[name]
            started = time.perf_counter()
            for data in chunk:
                call(data)
            spent[name] = time.perf_counter() - started
            totals[name] += spent[name]
        ratios.append(spent["azvision"] / spent["official"])
    return {name: total / len(images) for name, total in totals.items()}, statistics.median(ratios)


@contextlib.contextmanager
def wall_clock() -> Iterator[list[float]]:
    """Measure a block: ``with wall_clock() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started


@dataclass(frozen=True)
class Exchange:
    """One request seen by :class:`RecordingProxy`: when it arrived, how (and when) it was answered."""

    item: int | None
    sent: float
    answered: float
    status: int | None  # None: the connection was dropped without an answer
    retry_after: float | None


class RecordingProxy:
    """A loopback HTTP/1.1 proxy that forwards to ``upstream`` and records every :class:`Exchange`.

    Each client connection gets its own upstream connection, so a dropped upstream connection drops
    the client's too, exactly as the emulator meant it. Times are ``time.monotonic()`` at the proxy.

    Example:
        >>> with RecordingProxy("http://127.0.0.1:8080") as proxy:  # doctest: +SKIP
        ...     requests.get(proxy.endpoint + "/x")
        ...     proxy.exchanges[0].status
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").rpartition(":")
        self._upstream = (host, int(port))
        self.exchanges: list[Exchange] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-proxy", daemon=True)
        self.endpoint = ""

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(_TIMEOUT_S)
        self.endpoint = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            # Closing the sockets ends every handler by itself; cancelling them would make asyncio's
            # stream callbacks log each CancelledError.
            for writer in list(self._writers):
                writer.close()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=_TIMEOUT_S)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(_TIMEOUT_S * 2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_TIMEOUT_S)
        self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(client_w)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head, body = await _read_message(client_r)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                # The emulator closes idle keep-alive connections; like urllib3, reconnect rather than
                # send into a closed one (which would look like an injected drop).
                if upstream is None or upstream[0].at_eof():
                    if upstream is not None:
                        self._close(upstream[1])
                    upstream = await asyncio.open_connection(*self._upstream)
                    self._writers.add(upstream[1])
                upstream_r, upstream_w = upstream
                sent = time.monotonic()
                upstream_w.write(head + body)
                await upstream_w.drain()
                try:
                    answer_head, answer_body = await _read_message(upstream_r)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.exchanges.append(Exchange(image_index(body), sent, time.monotonic(), None, None))
                    return
                status = int(answer_head.split(b" ", 2)[1])
                retry_after = _header(answer_head, b"retry-after")
                self.exchanges.append(
                    Exchange(
                        image_index(body),
                        sent,
                        time.monotonic(),
                        status,
                        float(retry_after) if retry_after is not None else None,
                    )
                )
                client_w.write(answer_head + answer_body)
                await client_w.drain()
        finally:
            self._close(client_w)
            if upstream is not None:
                self._close(upstream[1])
            self._handlers.discard(handler)

    def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._writers.discard(writer)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message with a ``Content-Length`` body (all the clients and the emulator send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        raise ConnectionError("the recording proxy does not handle chunked bodies")
    length = int(_header(head, b"content-length") or b"0")
    return head, await reader.readexactly(length) if length else b""
