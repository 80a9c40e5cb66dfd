"""CachedClassifier: one SQLite file, shared by threads and processes; hits make no backend call."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest

from azvision import CachedClassifier, Cascade, Fallback, Prediction
from azvision.emulator import Emulator

from .conftest import Trained, custom_vision, onnx, prediction_calls


def test_a_second_run_is_answered_from_the_cache_with_no_backend_call(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    with CachedClassifier(custom_vision(service, trained), path) as cached:
        first = list(cached.classify_many(trained.paths, concurrency=8))
        assert prediction_calls(service) == len(trained.paths)
        second = list(cached.classify_many(trained.paths, concurrency=8))
        stats = cached.stats()
    assert prediction_calls(service) == len(trained.paths)  # not one more
    assert all(isinstance(o, Prediction) for o in first + second)
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, Prediction) and isinstance(b, Prediction)
        assert (b.label, b.labels, b.backend, b.model, b.source) == (
            a.label,
            a.labels,
            a.backend,
            a.model,
            a.source,
        )
        assert b.notes == (*a.notes, "cache: hit")
    assert (stats.usage.cache_hits, stats.usage.cache_misses) == (len(trained.paths), len(trained.paths))
    assert stats.usage.calls == {"custom_vision": len(trained.paths)}
    assert stats.usage.cost_usd == pytest.approx(0.002 * len(trained.paths))
    with CachedClassifier(custom_vision(service, trained), path) as again:  # a new process would see the same
        assert again.classify(trained.paths[0]).notes[-1] == "cache: hit"


def test_the_key_is_the_content_and_the_model_not_the_file_name(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    copy = tmp_path / "renamed.jpg"
    shutil.copy(trained.paths[0], copy)
    with CachedClassifier(onnx(trained), path) as cached:
        cached.classify(trained.paths[0])
        same = cached.classify(copy)
        assert same.notes[-1] == "cache: hit" and same.source == str(copy)
        assert cached.classify(copy.read_bytes()).notes[-1] == "cache: hit"
    with CachedClassifier(onnx(trained, threshold=0.5), path) as other_options:
        assert other_options.classify(trained.paths[0]).notes == ()  # another answer: a miss
    cascade = Cascade([onnx(trained), onnx(trained)], threshold=0.9)
    with CachedClassifier(cascade, path) as routed:
        assert "cache: hit" not in routed.classify(trained.paths[0]).notes
        assert routed.classify(trained.paths[0]).notes[-1] == "cache: hit"


def test_errors_are_never_cached(trained: Trained, tmp_path: Path) -> None:
    with (
        Emulator(data_dir=trained.data_dir, fail_rate=1.0) as failing,
        CachedClassifier(custom_vision(failing, trained), tmp_path / "c.sqlite") as cached,
    ):
        outcomes = list(cached.classify_many(trained.paths[:3]))
        assert all(isinstance(o, Exception) for o in outcomes)
        assert len(cached.store) == 0
        again = list(cached.classify_many(trained.paths[:3]))
        assert all(isinstance(o, Exception) for o in again)
        assert cached.stats().stages[0].errors == 6


def _worker(args: tuple[str, str, list[str]]) -> list[str | None]:
    """One process classifying through the shared file (spawned: nothing inherited)."""
    export_dir, cache_path, paths = args
    from azvision import CachedClassifier, OnnxBackend

    with CachedClassifier(OnnxBackend(export_dir), cache_path) as cached:
        outcomes = list(cached.classify_many(paths, concurrency=4))
    return [o.label if isinstance(o, Prediction) else repr(o) for o in outcomes]


def test_processes_and_threads_share_one_file(trained: Trained, tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    paths = trained.paths
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_worker, [(str(trained.export_dir), path, paths)] * 3)
    assert results[0] == results[1] == results[2] and None not in results[0]
    assert all(label in ("circle", "square", "triangle") for label in results[0])
    with CachedClassifier(onnx(trained), path) as cached:
        hits = [o for o in cached.classify_many(paths, concurrency=8)]
        assert len(cached.store) == len(paths)
        assert cached.stats().usage.cache_hits == len(paths)
    assert [o.label for o in hits if isinstance(o, Prediction)] == results[0]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupt_file_is_reported_and_rebuilt_never_a_crash(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="damaged"):
        cached = CachedClassifier(onnx(trained), path)
    assert (tmp_path / "cache.sqlite.corrupt").exists()
    with cached:
        assert cached.classify(trained.paths[0]).label is not None
        assert cached.classify(trained.paths[0]).notes[-1] == "cache: hit"
    with path.open("r+b") as handle:  # damaged between runs: a half-written copy, a disk fault
        handle.write(b"\0garbage" * 512)
    with pytest.warns(RuntimeWarning, match="damaged"):
        reopened = CachedClassifier(onnx(trained), path)
    with reopened:
        assert reopened.store.rebuilds == 1
        assert reopened.classify(trained.paths[0]).notes == ()  # started afresh
        assert reopened.classify(trained.paths[0]).notes[-1] == "cache: hit"


def test_size_and_age_limits(trained: Trained, tmp_path: Path) -> None:
    now = [1000.0]
    with CachedClassifier(
        onnx(trained), tmp_path / "c.sqlite", max_entries=5, clock=lambda: now[0]
    ) as cached:
        for i, image in enumerate(trained.paths[:10]):
            now[0] = 1000.0 + i
            cached.classify(image)
        assert len(cached.store) == 5
        assert cached.classify(trained.paths[9]).notes[-1] == "cache: hit"
        assert "cache: hit" not in cached.classify(trained.paths[0]).notes  # evicted: least recently used
    with CachedClassifier(onnx(trained), tmp_path / "a.sqlite", max_age=60, clock=lambda: now[0]) as aged:
        aged.classify(trained.paths[0])
        now[0] += 59
        assert aged.classify(trained.paths[0]).notes[-1] == "cache: hit"
        now[0] += 2
        assert aged.classify(trained.paths[0]).notes == ()


def test_the_composition_of_the_issue_works_end_to_end(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    with Emulator(data_dir=trained.data_dir, fail_rate=1.0) as failing:
        cloud = Fallback([custom_vision(failing, trained), custom_vision(service, trained)], cooldown_after=1)
        router = CachedClassifier(Cascade([onnx(trained), cloud], threshold=0.999), tmp_path / "c.sqlite")
        with router:
            first = list(router.classify_many(trained.paths))
            second = list(router.classify_many(trained.paths))
            usage = router.stats().usage
    assert all(isinstance(o, Prediction) for o in first + second)
    escalated = [o for o in first if isinstance(o, Prediction) and o.notes[0].startswith("cascade: onnx")]
    escalated = [o for o in escalated if "below threshold" in o.notes[0]]
    assert escalated and all("answered by custom_vision@2" in " ".join(o.notes) for o in escalated)
    assert usage.cache_hits == len(trained.paths)
    assert usage.calls["onnx"] == len(trained.paths)
    assert usage.calls["custom_vision@2"] == len(escalated) == prediction_calls(service)
    assert router.name == "cache(cascade(onnx→fallback(custom_vision→custom_vision@2)))"
