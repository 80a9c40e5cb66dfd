"""The upload engine: batches of at most 64 images, several in flight, every image accounted for.

It knows nothing about the Custom Vision SDK: the trainer hands it a ``send`` function (one
``images/files`` request, vendor errors already mapped) and the project's existing images.

Idempotent re-runs: every batch carries, as the images' metadata, a *manifest* of the batch — each
image's content digest and pixel size — under a batch id. Before uploading, the images already in the
project are listed; an image whose digest appears in a manifest counts as already present when the
images that landed from that manifest account for it (matched by size, so a batch that half-failed is
still resolved image by image). Such images are not sent again: a re-run after a crash sends only what
never landed, and a complete re-run sends no upload request at all. The service's ``OKDuplicate``
remains a safety net for the rare ambiguous case.

Example:
    >>> meta = encode_manifest([("0123456789abcdef", (640, 480))])
    >>> decode_manifest(meta)[1]
    [('0123456789abcdef', (640, 480))]
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import AuthenticationError, AzVisionError, NotFoundError
from .._images import COMMON_FORMATS, ImageLimits, load_image
from .._retry import RetryPolicy, Throttle, call
from .models import FailedImage, UploadReport

__all__ = [
    "BATCH_SIZE",
    "RETRYABLE_STATUSES",
    "TRAINING_LIMITS",
    "ExistingImage",
    "OutgoingImage",
    "RegionSpec",
    "UploadItem",
    "Uploader",
    "decode_manifest",
    "encode_manifest",
    "file_digest",
    "landed_digests",
]

#: Images per ``images/files`` request (the service's limit).
BATCH_SIZE = 64
#: What the training upload accepts; larger images are downscaled.
TRAINING_LIMITS = ImageLimits(
    service="Custom Vision training",
    max_bytes=6 * 1024 * 1024,
    max_side=10240,
    formats=COMMON_FORMATS,
    accepts_url=False,
)
_MAX_ASPECT = 25.0
_BATCH_KEY = "azvision.batch"
_PART_KEY = "azvision.m"
_VALUE_LIMIT = 256  # characters per metadata value
_MAX_PARTS = 9  # the service keeps 10 key/value pairs per image; one is the batch id
#: Per-image statuses worth another try; every other error status is final.
RETRYABLE_STATUSES = frozenset({"ErrorStorage", "ErrorUnknown"})
_OK = "OK"
_DUPLICATE = "OKDuplicate"
_REASONS = {
    "ErrorSource": "the service could not read the image data",
    "ErrorImageFormat": "the service does not accept this image format",
    "ErrorImageSize": "the image is over the service's 6 MB upload limit",
    "ErrorImageDimensions": "the image's pixel size is outside what the service accepts",
    "ErrorStorage": "the service could not store the image",
    "ErrorLimitExceed": "the project has reached its image limit",
    "ErrorTagLimitExceed": "the image has too many tags",
    "ErrorRegionLimitExceed": "the image has too many regions",
    "ErrorUnknown": "the service failed for an unknown reason",
    "ErrorNegativeAndRegularTagOnSameImage": "a negative tag cannot share an image with other tags",
    "ErrorInvalidTag": "a tag of the image is invalid",
}


#: One region to create with an image: ``(tag id, left, top, width, height)``, normalised.
RegionSpec = tuple[str, float, float, float, float]


@dataclass(frozen=True)
class UploadItem:
    """One file to upload: the name shown in reports, where it is, its tag ids and regions (detection)."""

    name: str
    path: Path
    tag_ids: tuple[str, ...]
    regions: tuple[RegionSpec, ...] = ()


@dataclass(frozen=True)
class OutgoingImage:
    """One image in a request: ``name`` (echoed back by the service as ``sourceUrl``), bytes, tag ids
    and regions."""

    name: str
    data: bytes
    tag_ids: tuple[str, ...]
    regions: tuple[RegionSpec, ...] = ()


@dataclass(frozen=True)
class ExistingImage:
    """What the upload needs to know about an image already in the project."""

    width: int
    height: int
    metadata: Mapping[str, str] = field(default_factory=dict)


#: One ``images/files`` request: images and batch metadata in, ``(sourceUrl, status)`` pairs out.
SendBatch = Callable[[Sequence[OutgoingImage], Mapping[str, str]], Sequence[tuple[str, str]]]


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: the image's identity in manifests."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def encode_manifest(entries: Sequence[tuple[str, tuple[int, int]]]) -> dict[str, str]:
    """Batch metadata: a batch id and ``digest:WxH`` entries packed into ≤ 256-character values.

    Example:
        >>> sorted(encode_manifest([("00ff00ff00ff00ff", (32, 24))]).items())
        [('azvision.batch', '81446bc5ebad7198'), ('azvision.m0', '00ff00ff00ff00ff:32x24')]
    """
    parts: list[str] = []
    for digest, (width, height) in entries:
        token = f"{digest}:{width}x{height}"
        if parts and len(parts[-1]) + 1 + len(token) <= _VALUE_LIMIT:
            parts[-1] += " " + token
        else:
            parts.append(token)
    if len(parts) > _MAX_PARTS:
        raise ValueError(f"a manifest of {len(entries)} images does not fit in image metadata")
    batch_id = hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]
    return {_BATCH_KEY: batch_id, **{f"{_PART_KEY}{i}": part for i, part in enumerate(parts)}}


def decode_manifest(metadata: Mapping[str, str]) -> tuple[str, list[tuple[str, tuple[int, int]]]] | None:
    """``(batch id, entries)`` from an image's metadata; ``None`` when it has no readable manifest."""
    batch_id = metadata.get(_BATCH_KEY)
    if not batch_id:
        return None
    entries: list[tuple[str, tuple[int, int]]] = []
    for index in range(_MAX_PARTS):
        part = metadata.get(f"{_PART_KEY}{index}")
        if part is None:
            break
        for token in part.split():
            digest, _, size = token.partition(":")
            width, _, height = size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                return None
            entries.append((digest, (int(width), int(height))))
    return batch_id, entries


def landed_digests(existing: Iterable[ExistingImage]) -> set[str]:
    """Digests of the images proven to be in the project by the manifests they carry.

    Within one batch, images of the same pixel size are interchangeable, so a size group counts as
    landed only when as many images of that size are present as the manifest lists.

    Example:
        >>> meta = encode_manifest([("aaaaaaaaaaaaaaaa", (8, 8)), ("bbbbbbbbbbbbbbbb", (9, 9))])
        >>> sorted(landed_digests([ExistingImage(9, 9, meta)]))
        ['bbbbbbbbbbbbbbbb']
    """
    manifests: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    present: Counter[tuple[str, tuple[int, int]]] = Counter()
    for image in existing:
        decoded = decode_manifest(image.metadata)
        if decoded is None:
            continue
        batch_id, entries = decoded
        manifests.setdefault(batch_id, entries)
        present[(batch_id, (image.width, image.height))] += 1
    landed: set[str] = set()
    for batch_id, entries in manifests.items():
        by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
        for digest, size in entries:
            by_size[size].append(digest)
        for size, digests in by_size.items():
            if present[(batch_id, size)] >= len(digests):
                landed.update(digests)
    return landed


@dataclass
class _Prepared:
    item: UploadItem
    digest: str
    image: OutgoingImage
    size: tuple[int, int]


@dataclass
class _Outcomes:
    """What the worker threads found out; every change is made under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    uploaded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: dict[str, FailedImage] = field(default_factory=dict)
    retry: list[tuple[UploadItem, str]] = field(default_factory=list)
    requests: int = 0

    def fail(self, name: str, reason: str, status: str | None = None) -> None:
        with self.lock:
            self.failed[name] = FailedImage(path=name, reason=reason, status=status)


class Uploader:
    """Uploads items in batches of ≤ 64 with ``concurrency`` requests in flight, paced by ``throttle``.

    Whole-request failures (429, 5xx, dropped connections) are retried with the shared
    `RetryPolicy`; per-image ``ErrorStorage``/``ErrorUnknown`` are retried in later rounds (at most
    ``retry.max_attempts`` in all); anything else is reported per file. Authentication and not-found
    errors end the upload. ``progress(done, total)`` is called as images are settled.
    """

    def __init__(
        self,
        send: SendBatch,
        *,
        throttle: Throttle,
        retry: RetryPolicy,
        concurrency: int = 4,
        progress: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._send = send
        self._sleep = sleep
        self._throttle = throttle
        self._retry = retry
        self._concurrency = max(1, concurrency)
        self._progress = progress
        self._rng = random.Random()

    def run(self, items: Sequence[UploadItem], existing: Iterable[ExistingImage]) -> UploadReport:
        """Upload what is not in the project yet; return the per-image report."""
        landed = landed_digests(existing)
        outcomes = _Outcomes()
        present: list[str] = []
        pending: list[tuple[UploadItem, str]] = []
        first_of: dict[str, str] = {}
        copies: list[tuple[str, str]] = []  # (name, name of the first file with the same bytes)
        for item in items:
            try:
                digest = file_digest(item.path)
            except OSError as exc:
                outcomes.fail(item.name, f"cannot read the file: {exc.strerror}", "InvalidImageError")
                continue
            if digest in landed:
                present.append(item.name)
            elif digest in first_of:
                copies.append((item.name, first_of[digest]))
            else:
                first_of[digest] = item.name
                pending.append((item, digest))
        done = len(items) - len(pending)
        self._report(done, len(items))
        for attempt in range(1, self._retry.max_attempts + 1):
            outcomes.retry = []
            done = self._round(pending, outcomes, done, len(items))
            pending = outcomes.retry
            if not pending:
                break
            if attempt == self._retry.max_attempts:
                self._report(done + len(pending), len(items))  # settled: failed with their last status
                break
            self._sleep(self._retry.backoff(attempt, self._rng))
        duplicates = list(outcomes.duplicates)
        for name, original in copies:
            if original in outcomes.failed:
                outcomes.fail(name, f"same content as {original}, which failed to upload")
            else:
                duplicates.append(name)
        return UploadReport(
            total=len(items),
            uploaded=tuple(outcomes.uploaded),
            duplicates=tuple(duplicates),
            already_present=tuple(present),
            failed=tuple(outcomes.failed.values()),
            requests=outcomes.requests,
        )

    def _report(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(done, total)

    def _round(
        self, pending: Sequence[tuple[UploadItem, str]], outcomes: _Outcomes, done: int, total: int
    ) -> int:
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="azvision-upload") as pool:
            running: set[Future[int]] = set()
            try:
                for start in range(0, len(pending), BATCH_SIZE):
                    while len(running) >= self._concurrency:  # bounded memory: load a batch only to send it
                        done = self._drain(running, done, total)
                    running.add(pool.submit(self._batch, pending[start : start + BATCH_SIZE], outcomes))
                while running:
                    done = self._drain(running, done, total)
            except BaseException:
                for future in running:
                    future.cancel()
                raise
        return done

    def _drain(self, running: set[Future[int]], done: int, total: int) -> int:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            running.discard(future)
            done += future.result()  # re-raises authentication / not-found errors
            self._report(done, total)
        return done

    def _batch(self, batch: Sequence[tuple[UploadItem, str]], outcomes: _Outcomes) -> int:
        """Load, send (with retries) and record one batch; returns how many images it settled."""
        prepared: list[_Prepared] = []
        for item, digest in batch:
            try:
                loaded = load_image(item.path, TRAINING_LIMITS)
            except AzVisionError as exc:
                outcomes.fail(item.name, exc.message, type(exc).__name__)
                continue
            assert loaded.data is not None
            assert loaded.size is not None
            width, height = loaded.size
            if max(width, height) > _MAX_ASPECT * min(width, height):
                reason = f"the image is {width}x{height} px; Custom Vision needs an aspect ratio ≤ 25:1"
                outcomes.fail(item.name, reason, "InvalidImageError")
                continue
            image = OutgoingImage(item.name, loaded.data, item.tag_ids, item.regions)
            prepared.append(_Prepared(item, digest, image, loaded.size))
        if not prepared:
            return len(batch)
        metadata = encode_manifest([(p.digest, p.size) for p in prepared])
        try:
            answers = self._send_with_retries([p.image for p in prepared], metadata, outcomes)
        except (AuthenticationError, NotFoundError):
            raise
        except AzVisionError as exc:
            for p in prepared:
                outcomes.fail(p.item.name, str(exc), type(exc).__name__)
            return len(batch)
        return len(batch) - self._record(prepared, answers, outcomes)

    def _send_with_retries(
        self, images: Sequence[OutgoingImage], metadata: Mapping[str, str], outcomes: _Outcomes
    ) -> Sequence[tuple[str, str]]:
        state = self._retry.start(
            self._rng, clock=self._throttle.clock, throttle=self._throttle, pacers=self._throttle.pacers()
        )

        def attempt() -> Sequence[tuple[str, str]]:
            with outcomes.lock:
                outcomes.requests += 1
            return self._send(images, metadata)

        return call(attempt, state, sleep=self._sleep)

    @staticmethod
    def _record(
        prepared: Sequence[_Prepared], answers: Sequence[tuple[str, str]], outcomes: _Outcomes
    ) -> int:
        """File each image under its status; returns how many were queued for another round."""
        by_name = {source.strip().strip('"'): status for source, status in answers}
        positional = len(answers) == len(prepared)
        queued = 0
        with outcomes.lock:
            for index, p in enumerate(prepared):
                name = p.item.name
                status = by_name.get(name)
                if status is None and positional:
                    status = answers[index][1]
                outcomes.failed.pop(name, None)
                if status == _OK:
                    outcomes.uploaded.append(name)
                    continue
                if status == _DUPLICATE:
                    outcomes.duplicates.append(name)
                    continue
                if status is None:
                    reason = "the service's answer did not mention this image"
                else:
                    reason = f"{status}: {_REASONS.get(status, 'the service refused the image')}"
                # Kept as failed until a later round succeeds, so a last failure keeps its real reason.
                outcomes.failed[name] = FailedImage(path=name, reason=reason, status=status)
                if status in RETRYABLE_STATUSES:
                    outcomes.retry.append((p.item, p.digest))
                    queued += 1
        return queued
