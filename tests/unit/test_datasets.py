"""Data sets (folders, manifests, splits) and the upload engine's bookkeeping, without any socket."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from PIL import Image

from azvision import AuthenticationError, ConfigurationError, RetryPolicy, ServiceError
from azvision._retry import Throttle
from azvision.datasets import Dataset, DatasetItem
from azvision.training._upload import (
    ExistingImage,
    OutgoingImage,
    Uploader,
    UploadItem,
    decode_manifest,
    encode_manifest,
    file_digest,
    landed_digests,
)

FAST = RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_max=0.002, deadline=10)


def save(
    path: Path,
    colour: tuple[int, int, int] = (200, 30, 30),
    size: tuple[int, int] = (16, 12),
    fmt: str = "PNG",
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


# -- folders ---------------------------------------------------------------------------------------------
def test_folder_takes_images_by_content_and_reports_everything_else(tmp_path: Path) -> None:
    save(tmp_path / "cat" / "a.png")
    save(tmp_path / "cat" / "deeper" / "b.jpeg.txt", fmt="JPEG")  # the content decides, not the name
    save(tmp_path / "dog" / "c.webp", fmt="WEBP")  # converted on upload
    (tmp_path / "dog" / "notes.txt").write_text("hello")
    (tmp_path / "dog" / "doc.pdf").write_bytes(b"%PDF-1.4 ...")
    (tmp_path / "dog" / "empty.png").write_bytes(b"")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / ".git").mkdir()
    save(tmp_path / "loose.png")

    data = Dataset.from_folder(tmp_path)

    assert [(data.display_name(i), i.labels) for i in data] == [
        ("cat/a.png", ("cat",)),
        ("cat/deeper/b.jpeg.txt", ("cat",)),
        ("dog/c.webp", ("dog",)),
    ]
    assert {s.path: s.reason for s in data.skipped} == {
        ".git": "hidden folder",
        "dog/.DS_Store": "hidden file",
        "dog/doc.pdf": "not an image: a PDF document",
        "dog/empty.png": "empty file (0 bytes)",
        "dog/notes.txt": "not an image: this is text, not a picture",
        "loose.png": "not inside a label folder (one sub-folder per label)",
    }
    assert data.labels == ("cat", "dog") and data.counts() == {"cat": 2, "dog": 1}
    assert not data.multilabel


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: save(p / "file.png")])
def test_folder_must_be_an_existing_folder(tmp_path: Path, make: object) -> None:
    with pytest.raises(ConfigurationError, match=r"does not exist|is a file"):
        Dataset.from_folder(make(tmp_path))  # type: ignore[operator]


# -- manifests -------------------------------------------------------------------------------------------
def test_csv_manifest_multilabel_with_every_problem_reported(tmp_path: Path) -> None:
    save(tmp_path / "img" / "a.png")
    save(tmp_path / "img" / "b.png", (0, 0, 200))
    (tmp_path / "img" / "c.txt").write_text("text")
    (tmp_path / "m.csv").write_text(
        "Path,Labels\n"
        "img/a.png,cat;indoor\n"
        'img/b.png,"dog, outdoor | dog"\n'
        "img/a.png,cat\n"
        "img/missing.png,cat\n"
        "img/c.txt,cat\n"
        ",cat\n"
        "img/b.png,\n",
        encoding="utf-8",
    )
    data = Dataset.from_manifest(tmp_path / "m.csv")
    assert data.multilabel
    assert [(data.display_name(i), i.labels) for i in data] == [
        ("img/a.png", ("cat", "indoor")),
        ("img/b.png", ("dog", "outdoor")),
    ]
    assert [(s.path, s.reason) for s in data.skipped] == [
        ("img/a.png", "line 4: listed twice"),
        ("img/missing.png", "no such file"),
        ("img/c.txt", "not an image: this is text, not a picture"),
        ("line 7", "line 7: no path"),
        ("img/b.png", "line 8: listed twice"),
    ]


def test_jsonl_manifest_and_single_labels_make_a_multiclass_set(tmp_path: Path) -> None:
    save(tmp_path / "a.png")
    save(tmp_path / "b.png", (0, 200, 0))
    lines = [
        json.dumps({"path": "a.png", "labels": ["cat"]}),
        "",
        json.dumps({"image": str(tmp_path / "b.png"), "label": "dog"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"path": "a.png", "labels": 3}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    data = Dataset.from_manifest(tmp_path / "m.jsonl")
    assert not data.multilabel and [i.labels for i in data] == [("cat",), ("dog",)]
    reasons = [s.reason for s in data.skipped]
    assert reasons[0].startswith("line 4: not valid JSON")
    assert reasons[1:] == [
        "line 5: not a JSON object",
        "line 6: 'labels' must be a list of strings or a string",
    ]


def test_manifest_errors_are_configuration_errors(tmp_path: Path) -> None:
    save(tmp_path / "a.png")
    (tmp_path / "bad.csv").write_text("file;tags\na.png;cat\n")
    with pytest.raises(ConfigurationError, match="'path' and a 'labels' column"):
        Dataset.from_manifest(tmp_path / "bad.csv")
    (tmp_path / "two.csv").write_text("path,labels\na.png,cat|dog\n")
    with pytest.raises(ConfigurationError, match="has 2 labels but multilabel=False"):
        Dataset.from_manifest(tmp_path / "two.csv", multilabel=False)
    (tmp_path / "m.txt").write_text("a.png cat\n")
    with pytest.raises(ConfigurationError, match=r"use a \.csv or \.jsonl"):
        Dataset.from_manifest(tmp_path / "m.txt")


# -- split -----------------------------------------------------------------------------------------------
def items(counts: Mapping[str, int]) -> tuple[DatasetItem, ...]:
    return tuple(
        DatasetItem(Path(f"/d/{label}/{i}.png"), (label,)) for label, n in counts.items() for i in range(n)
    )


def test_split_is_stratified_seeded_and_deterministic() -> None:
    data = Dataset(items=items({"a": 10, "b": 5, "c": 2, "d": 1}), root=Path("/d"))
    train, test = data.split(0.2, seed=3)
    assert test.counts() == {"a": 2, "b": 1, "c": 1}
    assert train.counts() == {"a": 8, "b": 4, "c": 1, "d": 1}
    assert {i.path for i in train} | {i.path for i in test} == {i.path for i in data}
    again = data.split(0.2, seed=3)[1]
    assert [i.path for i in again] == [i.path for i in test]
    others = {tuple(i.path for i in data.split(0.2, seed=s)[1]) for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_split_keeps_each_files_side_when_the_data_set_grows() -> None:
    small = Dataset(items=items({"a": 40}), root=Path("/d"))
    big = Dataset(items=items({"a": 80}), root=Path("/d"))
    small_test = {i.path for i in small.split(0.25, seed=1)[1]}
    big_test = {i.path for i in big.split(0.25, seed=1)[1]}
    assert len(small_test & big_test) >= len(small_test) // 2  # hash-ranked: most files keep their side
    assert len(big_test) == 20


def test_split_limits() -> None:
    data = Dataset(items=items({"a": 3}))
    assert len(data.split(0.0)[1]) == 0
    with pytest.raises(ValueError, match="test_fraction"):
        data.split(1.0)


# -- manifests in image metadata -------------------------------------------------------------------------
def test_a_full_batch_manifest_fits_the_services_metadata_limits() -> None:
    entries = [(f"{i:016x}", (10240, 10240 - i)) for i in range(64)]
    metadata = encode_manifest(entries)
    assert len(metadata) <= 10
    assert all(len(k) <= 128 and len(v) <= 256 for k, v in metadata.items())
    decoded = decode_manifest(metadata)
    assert decoded is not None and decoded[1] == entries
    assert encode_manifest(entries) == metadata  # same batch, same id: a retried batch is recognised


def test_landed_digests_resolves_half_failed_batches_by_image_size() -> None:
    meta = encode_manifest(
        [("a" * 16, (10, 10)), ("b" * 16, (20, 20)), ("c" * 16, (20, 20)), ("d" * 16, (30, 30))]
    )
    existing = [
        ExistingImage(10, 10, meta),  # a landed
        ExistingImage(20, 20, meta),  # b or c landed: cannot tell which, so neither is trusted
        ExistingImage(50, 50, {"owner": "someone else"}),
        ExistingImage(30, 30, {"azvision.batch": "x", "azvision.m0": "garbled"}),
    ]
    assert landed_digests(existing) == {"a" * 16}


# -- the uploader ----------------------------------------------------------------------------------------
class ScriptedService:
    """Answers ``images/files`` requests like the service, with per-image statuses chosen by file name."""

    def __init__(
        self, statuses: Mapping[str, list[str]] | None = None, failures: Sequence[Exception] = ()
    ) -> None:
        self.statuses = {k: list(v) for k, v in (statuses or {}).items()}
        self.failures = list(failures)
        self.batches: list[list[str]] = []
        self.metadata: list[Mapping[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, images: Sequence[OutgoingImage], metadata: Mapping[str, str]) -> list[tuple[str, str]]:
        with self.lock:
            if self.failures:
                raise self.failures.pop(0)
            self.batches.append([i.name for i in images])
            self.metadata.append(metadata)
            out = []
            for image in images:
                Image.open(io.BytesIO(image.data)).verify()  # what is sent is a valid image
                queue = self.statuses.get(image.name, [])
                out.append((f'"{image.name}"', queue.pop(0) if queue else "OK"))
            return out


def upload_items(root: Path, n: int, *, prefix: str = "img") -> list[UploadItem]:
    return [
        UploadItem(f"{prefix}{i}.png", save(root / f"{prefix}{i}.png", (i % 256, i // 256, 7)), ("tag",))
        for i in range(n)
    ]


def uploader(service: ScriptedService, progress: list[tuple[int, int]] | None = None) -> Uploader:
    return Uploader(
        service,
        throttle=Throttle(None),
        retry=FAST,
        concurrency=3,
        progress=None if progress is None else lambda d, t: progress.append((d, t)),
    )


def test_uploads_in_batches_of_64_and_reports_every_status(tmp_path: Path) -> None:
    items = upload_items(tmp_path, 130)
    service = ScriptedService(
        {
            "img1.png": ["ErrorStorage", "OK"],  # retried in a later round
            "img2.png": ["ErrorImageFormat"],
            "img3.png": ["OKDuplicate"],
            "img4.png": ["ErrorUnknown"] * 10,  # retried until the rounds run out
        }
    )
    progress: list[tuple[int, int]] = []
    report = uploader(service, progress).run(items, existing=[])

    assert sorted(len(b) for b in service.batches[:3]) == [2, 64, 64]
    assert service.batches[3:] == [["img1.png", "img4.png"], ["img4.png"], ["img4.png"]]
    assert report.requests == 6 and report.total == 130 and report.accounted_for
    assert "img1.png" in report.uploaded and len(report.uploaded) == 127
    assert report.duplicates == ("img3.png",)
    failed = {f.path: (f.status, f.reason) for f in report.failed}
    assert failed == {
        "img2.png": ("ErrorImageFormat", "ErrorImageFormat: the service does not accept this image format"),
        "img4.png": ("ErrorUnknown", "ErrorUnknown: the service failed for an unknown reason"),
    }
    assert progress[0] == (0, 130) and progress[-1] == (130, 130)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_whole_request_failures_are_retried_and_auth_errors_end_the_upload(tmp_path: Path) -> None:
    items = upload_items(tmp_path, 3)
    busy = ServiceError("busy", status_code=503)
    service = ScriptedService(failures=[busy, busy])
    report = uploader(service).run(items, existing=[])
    assert report.requests == 3 and len(report.uploaded) == 3
    assert service.metadata[0] == encode_manifest(
        [(file_digest(i.path), (16, 12)) for i in items]
    )  # the manifest travels with the batch

    refused = ScriptedService(failures=[AuthenticationError("bad key", status_code=401)])
    with pytest.raises(AuthenticationError):
        uploader(refused).run(items, existing=[])


def test_a_request_that_keeps_failing_fails_its_images_with_the_reason(tmp_path: Path) -> None:
    items = upload_items(tmp_path, 2)
    service = ScriptedService(failures=[ServiceError("down", status_code=500)] * 10)
    report = uploader(service).run(items, existing=[])
    assert [(f.path, f.status) for f in report.failed] == [
        ("img0.png", "ServiceError"),
        ("img1.png", "ServiceError"),
    ]
    assert "down" in report.failed[0].reason and report.requests == FAST.max_attempts


def test_images_already_in_the_project_are_not_sent_and_copies_are_sent_once(tmp_path: Path) -> None:
    items = upload_items(tmp_path, 4)
    copy = tmp_path / "copy.png"
    copy.write_bytes(items[0].path.read_bytes())
    items.append(UploadItem("copy.png", copy, ("tag",)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(items[1].path.read_bytes()[:40])
    items.append(UploadItem("broken.png", broken, ("tag",)))
    landed = encode_manifest([(file_digest(items[2].path), (16, 12)), (file_digest(items[3].path), (16, 12))])
    existing = [ExistingImage(16, 12, landed), ExistingImage(16, 12, landed)]

    service = ScriptedService()
    report = uploader(service).run(items, existing=existing)

    assert service.batches == [
        ["img0.png", "img1.png"]
    ]  # neither the landed ones, the copy nor the broken file
    assert report.already_present == ("img2.png", "img3.png")
    assert report.uploaded == ("img0.png", "img1.png") and report.duplicates == ("copy.png",)
    assert [f.path for f in report.failed] == ["broken.png"] and report.accounted_for
