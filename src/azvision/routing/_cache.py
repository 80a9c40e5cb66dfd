"""`CachedClassifier`: the same image, asked of the same model with the same options, is answered once.

The key is the SHA-256 of: the image's normalised bytes (what azvision reads: the file's contents, the
buffer, a PIL image encoded as PNG; a URL is keyed by the URL itself, not fetched), and the wrapped
classifier's identity: its backend, model (iteration, export, deployment) and every public setting that
can change an answer (endpoint, project, task, mode, features, labels, thresholds …), recursively through
routers. Settings that only change speed (timeouts, concurrency, rate limits, retries) are left out, and
so is every credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .._download import is_url
from .._errors import ConfigurationError
from .._images import DEFAULT_MAX_INPUT_BYTES, _read_source
from .._models import Prediction
from .._protocol import Classifier
from ._base import Outcome, Prepared, Router, add_notes
from ._identity import identity
from ._stats import Usage
from ._store import CacheStore

__all__ = ["CachedClassifier", "image_digest"]

_KEY_VERSION = "azvision-cache-1"


def image_digest(item: Prepared) -> str:
    """SHA-256 (hex) of an input's normalised bytes; ``url:`` + the URL for an http(s) URL.

    Example:
        >>> image_digest(Prepared(b"abc"))[:12]
        'ba7816bf8f01'
    """
    if isinstance(item.image, str) and is_url(item.image):
        return "url:" + item.image
    image = item.image
    data = image if isinstance(image, bytes) else _read_source(image, DEFAULT_MAX_INPUT_BYTES)[0]
    return hashlib.sha256(data).hexdigest()


class CachedClassifier(Router):
    """Answers of ``classifier`` kept in a SQLite file, keyed by image content and model (see the module).

    A hit returns the stored `Prediction` (no backend call) with the current input's ``source``, its
    lookup time as ``latency_ms`` and the note ``"cache: hit"``; errors are never stored. The file is in
    WAL mode, so threads and processes share it safely; ``max_entries`` (least recently used go first)
    and ``max_age`` (seconds) bound it. A damaged file is reported (a `RuntimeWarning`) and rebuilt,
    never a crash. `stats` counts hits and misses.

    Example:
        >>> from azvision import CachedClassifier, OnnxBackend
        >>> week = 7 * 86400
        >>> clf = CachedClassifier(OnnxBackend("export.zip"), "cache.sqlite", max_age=week)  # doctest: +SKIP
        >>> clf.classify("cat.jpg").notes  # doctest: +SKIP
        ()
        >>> clf.classify("cat.jpg").notes  # doctest: +SKIP
        ('cache: hit',)
    """

    kind = "cache"

    def __init__(
        self,
        classifier: Classifier,
        path: str | os.PathLike[str] = "azvision-cache.sqlite",
        *,
        max_entries: int | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int | None = None,
    ) -> None:
        super().__init__([classifier], concurrency=concurrency)
        if max_entries is not None and max_entries < 1:
            raise ConfigurationError(f"max_entries must be at least 1, got {max_entries}")
        if max_age is not None and max_age <= 0:
            raise ConfigurationError(f"max_age must be more than 0 seconds, got {max_age}")
        self.classifier = classifier
        self.store = CacheStore(path, max_entries=max_entries, max_age=max_age, clock=clock)
        self._identity = json.dumps(identity(classifier), sort_keys=True, default=str)
        self.hits = 0
        self.misses = 0
        #: Keys being asked of the classifier now: a second thread with the same image waits for it.
        self._in_flight: dict[str, threading.Event] = {}
        self._flight_lock = threading.Lock()

    @property
    def name(self) -> str:
        """``cache(<the wrapped classifier's name>)``."""
        return f"cache({self.member_names[0]})"

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The wrapped classifier's label space, when it says."""
        labels = getattr(self.classifier, "labels", None)
        return tuple(labels) if isinstance(labels, tuple | list) else None

    def cache_identity(self) -> dict[str, Any]:
        """A cache inside a cache answers as its classifier does."""
        return identity(self.classifier)

    def key(self, image: Prepared) -> str:
        """The cache key of one input (hex SHA-256)."""
        text = f"{_KEY_VERSION}\0{self._identity}\0{image_digest(image)}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _lookup(self, item: Prepared) -> tuple[str, Prediction | None]:
        """The key, and the stored answer (or ``None``); counts a hit."""
        started = time.perf_counter()
        key = self.key(item)
        stored = self.store.get(key)
        prediction = None
        if stored is not None:
            try:
                prediction = Prediction.model_validate(json.loads(stored))
            except ValueError:  # an entry written by another version, or damaged: a miss
                prediction = None
        if prediction is None:
            return key, None
        with self._counts.lock:
            self.hits += 1
        update = {"source": item.source, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
        hit = add_notes(prediction.model_copy(update=update), "cache: hit")
        return key, hit.with_image(item.image if isinstance(item.image, str) else None)

    def _claim(self, key: str) -> threading.Event | None:
        """``None``: this caller asks the backend (then `_release`s); else wait for the one asking."""
        with self._flight_lock:
            asking = self._in_flight.get(key)
            if asking is None:
                self._in_flight[key] = threading.Event()
                self.misses += 1
            return asking

    def _release(self, key: str) -> None:
        with self._flight_lock:
            done = self._in_flight.pop(key, None)
        if done is not None:
            done.set()

    def _keep(self, key: str, prediction: Prediction) -> Prediction:
        self._count(0, "answered")
        body = prediction.model_dump(mode="json", exclude={"source"})
        self.store.put(key, json.dumps(body))
        return prediction

    def _route(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        while True:
            key, hit = self._lookup(item)
            if hit is not None:
                return hit
            asking = self._claim(key)
            if asking is None:
                break
            asking.wait()  # the same image is being asked for: its answer is a hit (or, failed, ask)
        try:
            answer = self.classifier.classify(item.image)
        except Exception:
            self._count(0, "error")
            raise
        else:
            return self._keep(key, answer)
        finally:
            self._release(key)

    async def _aroute(self, item: Prepared, first: Outcome | None = None) -> Prediction:
        loop = asyncio.get_running_loop()
        while True:
            key, hit = await loop.run_in_executor(self._pool(), self._lookup, item)
            if hit is not None:
                return hit
            asking = self._claim(key)
            if asking is None:
                break
            await loop.run_in_executor(self._pool(), asking.wait)
        try:
            answer = await self.classifier.aclassify(item.image)
        except Exception:
            self._count(0, "error")
            raise
        else:
            return await loop.run_in_executor(self._pool(), self._keep, key, answer)
        finally:
            self._release(key)

    def _own_usage(self) -> Usage:
        return Usage(cache_hits=self.hits, cache_misses=self.misses)

    def close(self) -> None:
        """Close the wrapped classifier and this process's connections to the file."""
        super().close()
        self.store.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await super().aclose()
        self.store.close()

    def __repr__(self) -> str:
        return f"CachedClassifier({self.classifier!r}, path={str(self.store.path)!r})"
