"""Run a Custom Vision ONNX export locally with onnxruntime: the zip, its folder, or a bare ``.onnx``.

Everything is read from the export itself (``shared/reference/custom-vision-export-format.md`` §0): the
input's name, size and dtype from the session, channel order and pixel range from the model's own
``metadata_props``, the family from its outputs, labels from ``labels.txt`` (or the graph's ZipMap),
resize hints and YOLO anchors from ``metadata_properties.json``, the iteration id from ``cvexport.manifest``.
Batches go through one ``session.run`` per chunk while the next chunk is decoded.

Example:
    >>> from azvision import OnnxBackend
    >>> with OnnxBackend("flowers-export.zip") as clf:  # doctest: +SKIP
    ...     clf.classify("rose.jpg").label
    'rose'
"""

from __future__ import annotations

import asyncio
import copy
import io
import itertools
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from .._batch import aiter_any
from .._config import ENV, setting
from .._errors import (
    AzVisionError,
    BackendTimeoutError,
    ConfigurationError,
    InvalidImageError,
    ServiceError,
    missing_extra,
)
from .._images import ImageLike, ImageLimits, LoadedImage, load_image
from .._models import Label, Prediction
from .._retry import Pacer, RetryPolicy
from ._base import BaseBackend

try:
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from .._preprocess import PreprocessSpec, spec_from_model_metadata, to_tensor, upright_rgb
    from ._onnx_export import read_export
    from ._onnx_outputs import Decoder, output_family, yolo_settings
except ImportError as _missing:
    raise missing_extra(_missing, what="the onnx backend", extra="onnx") from _missing

__all__ = ["OnnxBackend"]

_NAME = "onnx"
_DEFAULT_BATCH = 16
_Outcome = Prediction | AzVisionError
_Prepared = list[tuple[LoadedImage, np.ndarray] | AzVisionError]
#: A provider name, or ``(name, options)`` as onnxruntime takes them.
Provider = str | tuple[str, dict[str, Any]]


def _ort_error(exc: Exception, *, model: str, loading: bool, timed_out: bool = False) -> AzVisionError:
    """THE choke point for onnxruntime exceptions."""
    if timed_out:
        error = BackendTimeoutError(f"{model}: inference was stopped at the timeout", backend=_NAME)
        error._retryable = False  # the same input on the same model would take as long again
        return error
    detail = f"{type(exc).__name__}: {exc}"
    if loading:
        return ConfigurationError(f"onnxruntime cannot load {model}: {detail}", backend=_NAME)
    return ServiceError(f"onnxruntime failed running {model}: {detail}", backend=_NAME)


def _open_session(
    model: bytes, name: str, providers: Iterable[Provider] | None, threads: int | None = None
) -> Any:
    chosen = list(providers) if providers is not None else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    unknown = [p for p in (p if isinstance(p, str) else p[0] for p in chosen) if p not in available]
    if unknown or not chosen:
        raise ConfigurationError(
            f"providers {unknown or chosen} are not available here; choose from {available}", backend=_NAME
        )
    options = ort.SessionOptions()
    # One chunk runs at a time, on every core this process may use. No spinning: the thread decoding the
    # next chunk (and everything else on a small machine) gets the CPU back as soon as a run ends.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    options.intra_op_num_threads = threads or cores
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own pybind classes, all straight from Exception
        raise _ort_error(exc, model=name, loading=True) from exc


class OnnxBackend(BaseBackend):
    """Classify (or detect) with a Custom Vision ONNX export on this machine, with no network calls.

    ``model_path`` is the export zip, its unzipped folder or a bare ``.onnx``; labels come from
    ``labels_path``, the export's ``labels.txt`` or, for legacy models, the graph's ZipMap. ``threshold``
    drops labels below that confidence; detectors fill ``Label.box`` and, like the official samples,
    keep at most 64 boxes of 1% or more after non-maximum suppression. In `classify_many`,
    ``batch_size`` images (default 16) go through one ``session.run`` where the model has a batch
    dimension (legacy ZipMap and S1 detector models run one image at a time); ``concurrency`` is accepted
    for the `Classifier` protocol, as one chunk runs at a time on all cores while the
    next is decoded. ``threads`` caps the threads a ``session.run`` uses (default: every core this process
    may use; a Spark task sets it to its ``spark.task.cpus``). ``timeout`` stops one ``session.run``.

    Example:
        >>> clf = OnnxBackend("export/", threshold=0.05)  # doctest: +SKIP
        >>> clf.labels, clf.family  # doctest: +SKIP
        (('cat', 'dog'), 'classifier')
    """

    name: ClassVar[str] = _NAME
    image_limits: ClassVar[ImageLimits] = ImageLimits(
        service="the local ONNX model",
        formats=frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "MPO"}),
        accepts_url=False,
        downscale=False,
    )

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        labels_path: str | os.PathLike[str] | None = None,
        providers: Iterable[Provider] | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        threshold: float = 0.0,
        max_rps: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(max_rps=max_rps, retry=retry, timeout=timeout, concurrency=concurrency)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigurationError(f"threshold must be in [0, 1], got {threshold}", backend=_NAME)
        if batch_size is not None and batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}", backend=_NAME)
        if threads is not None and threads < 1:
            raise ConfigurationError(f"threads must be at least 1, got {threads}", backend=_NAME)
        given = os.fspath(model_path) if model_path is not None else None
        path = Path(str(setting(given, arg="model_path", env=ENV.get(_NAME, {}).get("model_path"))))
        path = path.expanduser()
        if not path.exists():
            raise ConfigurationError(f"model_path {path} does not exist", backend=_NAME)
        export = read_export(path, Path(labels_path).expanduser() if labels_path is not None else None)
        #: ``Prediction.model``: the export's iteration id, else the file or folder name.
        self.model_name: str = export.name
        self._session: Any = _open_session(export.model, export.name, providers, threads)
        model_input = self._session.get_inputs()[0]
        family, self._outputs = output_family(
            [(o.name, o.type, o.shape) for o in self._session.get_outputs()]
        )
        #: ``"classifier"``, ``"zipmap"`` (legacy classifier), ``"yolo"`` or ``"ssd"`` (detectors).
        self.family = family
        detector = family in ("yolo", "ssd")
        domain = export.manifest.get("DomainType")
        if domain is not None and (domain == "ObjectDetection") != detector:
            raise ConfigurationError(
                f"{path}: its manifest says {domain}, its model is {family}", backend=_NAME
            )
        if export.labels is None and family != "zipmap":
            raise ConfigurationError(
                f"{path} has no {export.labels_file} and its model does not name its classes: pass "
                "labels_path=... (the labels.txt of the same export, one label per line)",
                backend=_NAME,
            )
        try:
            #: How an image becomes the input tensor (size, channel order, value range, resize).
            self.spec: PreprocessSpec = spec_from_model_metadata(
                self._session.get_modelmeta().custom_metadata_map,
                model_input.shape,
                model_input.name,
                input_type=model_input.type,
                export_metadata=export.hints,
                detector=detector,
            )
        except ValueError as exc:
            raise ConfigurationError(f"{path}: {exc}", backend=_NAME) from exc
        self._input: str = model_input.name
        batch_dim = model_input.shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        # ZipMap models give classLabel a wrong shape for batches; SSD's N detections have no batch split.
        one_by_one = family in ("zipmap", "ssd")
        self._chunk_size: int = 1 if one_by_one else self._fixed_batch or batch_size or _DEFAULT_BATCH

        # A first run on a blank image checks the labels against the outputs now, not on the first photo.
        anchors, iou = yolo_settings(export.hints)
        labels = export.labels or ()
        self._decoder = Decoder(family, labels, 0.0, anchors, iou)
        blank = self._infer([np.zeros((3, *self.spec.size), dtype=self.spec.dtype)])[0]
        if family == "zipmap":
            graph_labels = tuple(label.name for label in blank)
            if export.labels is not None and set(export.labels) != set(graph_labels):
                raise ConfigurationError(
                    f"{export.labels_file} names {sorted(export.labels)}, the model {sorted(graph_labels)}",
                    backend=_NAME,
                )
            labels = graph_labels
        #: Class names in the model's class order (for ZipMap models, the order onnxruntime gives).
        self.labels: tuple[str, ...] = labels
        #: Labels below this confidence are dropped from answers.
        self.threshold = threshold
        self._decoder = Decoder(family, labels, threshold, anchors, iou)

    def __repr__(self) -> str:
        height, width = self.spec.size
        return (
            f"OnnxBackend(model={self.model_name!r}, family={self.family!r}, labels={len(self.labels)}, "
            f"input={self._input!r} {height}x{width} {self.spec.channel_order}, batch={self._chunk_size})"
        )

    # -- inference ------------------------------------------------------------------------------
    def _infer(self, tensors: list[np.ndarray]) -> list[tuple[Label, ...]]:
        self._check_open()
        batch = np.stack(tensors)
        if self._fixed_batch is not None and len(tensors) < self._fixed_batch:
            padding = np.zeros((self._fixed_batch - len(tensors), *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, padding])
        stop = ort.RunOptions()
        timer = threading.Timer(self.timeout, setattr, (stop, "terminate", True))
        timer.daemon = True
        timer.start()
        try:
            outputs = self._session.run(self._outputs, {self._input: batch}, stop)
        except Exception as exc:  # see _open_session
            raise _ort_error(exc, model=self.model_name, loading=False, timed_out=stop.terminate) from exc
        finally:
            timer.cancel()
        return self._decoder.decode(outputs, len(tensors))

    def _load(self, image: ImageLike) -> LoadedImage:
        # A URL is downloaded within the request timeout, and never past the input's retry deadline.
        budget = min(self.timeout, self.retry.deadline or self.timeout)
        return load_image(image, self.image_limits, timeout=budget)

    def _tensor(self, image: LoadedImage) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(image.data or b"")) as opened:
                opened.load()
                return to_tensor(upright_rgb(opened), self.spec)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidImageError(f"the image cannot be decoded: {exc}", source=image.source) from exc

    @property
    def batch_size(self) -> int:
        """Images per ``session.run`` in `classify_many`, whose latencies are then per batch.

        Example:
            >>> OnnxBackend("export.zip").batch_size  # doctest: +SKIP
            16
        """
        return self._chunk_size

    def _predict(self, image: LoadedImage) -> Prediction:
        labels = self._infer([self._tensor(image)])[0]
        return Prediction(labels=labels, backend=self.name, model=self.model_name)

    # -- batches: one session.run per chunk, the next chunk decoded meanwhile ----------------------
    def _prepare(self, chunk: list[ImageLike]) -> _Prepared:
        prepared: _Prepared = []
        for item in chunk:
            try:
                loaded = self._load(item)
                prepared.append((loaded, self._tensor(loaded)))
            except AzVisionError as exc:
                if exc.source is None and isinstance(item, str | os.PathLike):
                    exc.source = os.fspath(item)
                prepared.append(exc)
            except Exception as exc:  # a bug on one input must not end the batch: report it in its place
                wrapped = AzVisionError(f"unexpected {type(exc).__name__}: {exc}", backend=_NAME)
                wrapped.__cause__ = exc
                prepared.append(wrapped)
        return prepared

    def _run_prepared(self, prepared: _Prepared, pacer: Pacer | None) -> list[_Outcome]:
        ready = [item for item in prepared if not isinstance(item, AzVisionError)]
        results: list[_Outcome] = []
        if ready:
            if pacer is not None:  # a local model has no quota; a max_rps still paces it if asked
                self._sleep(max(0.0, pacer.commit(pacer.earliest(), len(ready)) - self._clock()))
            started = time.perf_counter()
            try:
                for (loaded, _), labels in zip(ready, self._infer([t for _, t in ready]), strict=True):
                    prediction = Prediction(labels=labels, backend=self.name, model=self.model_name)
                    results.append(self._finish(prediction, loaded, started))
            except AzVisionError as exc:
                results = []
                for loaded, _ in ready:
                    error = copy.copy(exc)  # one error object per input: each carries its own source
                    self._annotate(error, loaded)
                    results.append(error)
        merged = iter(results)
        return [item if isinstance(item, AzVisionError) else next(merged) for item in prepared]

    def classify_many(
        self, images: Iterable[ImageLike], *, concurrency: int | None = None, max_rps: float | None = None
    ) -> Iterator[Prediction | AzVisionError]:
        """Classify many images: one outcome per input, in input order, ``batch_size`` per ``session.run``.

        At most one chunk is decoded ahead of the one running and one chunk of outcomes waits for you;
        a failed input yields its typed error in its place and the batch goes on.

        Example:
            >>> for outcome in clf.classify_many(paths):  # doctest: +SKIP
            ...     print(outcome.label if isinstance(outcome, Prediction) else outcome)
        """
        self._check_open()
        pacer = self._pacer(max_rps)
        chunks = _chunks(iter(images), self._chunk_size)
        pool = self._pool()
        chunk = next(chunks, None)
        ahead = pool.submit(self._prepare, chunk) if chunk else None
        try:
            while ahead is not None:
                prepared = ahead.result()
                chunk = next(chunks, None)
                ahead = pool.submit(self._prepare, chunk) if chunk else None
                yield from self._run_prepared(prepared, pacer)
        finally:
            if ahead is not None:
                ahead.cancel()

    def _pacer(self, max_rps: float | None) -> Pacer | None:
        return Pacer(max_rps, clock=self._clock) if max_rps is not None else self._throttle.pacer

    async def aclassify_many(
        self,
        images: Iterable[ImageLike] | AsyncIterable[ImageLike],
        *,
        concurrency: int | None = None,
        max_rps: float | None = None,
    ) -> AsyncIterator[Prediction | AzVisionError]:
        """Async `classify_many`; ``images`` may be a sync or an async iterable.

        Example:
            >>> async for outcome in clf.aclassify_many(paths):  # doctest: +SKIP
            ...     print(outcome.label if isinstance(outcome, Prediction) else outcome)
        """
        self._check_open()
        pacer = self._pacer(max_rps)
        loop = asyncio.get_running_loop()
        source = aiter_any(images)

        async def read_ahead() -> asyncio.Future[_Prepared] | None:
            chunk: list[ImageLike] = []
            async for item in source:
                chunk.append(item)
                if len(chunk) == self._chunk_size:
                    break
            return loop.run_in_executor(self._pool(), self._prepare, chunk) if chunk else None

        ahead = await read_ahead()
        try:
            while ahead is not None:
                prepared = await ahead
                ahead = await read_ahead()
                for outcome in await loop.run_in_executor(self._pool(), self._run_prepared, prepared, pacer):
                    yield outcome
        finally:
            if ahead is not None:
                ahead.cancel()

    def _close_clients(self) -> None:
        self._session = None


def _chunks(items: Iterator[ImageLike], size: int) -> Iterator[list[ImageLike]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk
