"""The emulator's HTTP server: one Starlette app with every emulated service, run by uvicorn.

`Emulator` runs it in a background thread (context manager, or ``start()``/``stop()``);
`serve` runs it in the foreground for ``azvision emulator``.

Example::

    from azvision.emulator import Emulator

    with Emulator() as emu:
        print(emu.endpoint, emu.stats())
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from azvision.emulator import _azure_ml as azure_ml
from azvision.emulator import _azure_openai as azure_openai
from azvision.emulator import _custom_vision as custom_vision
from azvision.emulator import _image_analysis as image_analysis
from azvision.emulator._context import EmulatorConfig, EmulatorContext
from azvision.emulator._cv_http import ACCESS_DENIED as _ACCESS_DENIED
from azvision.emulator._faults import FaultInjector, FaultMiddleware
from azvision.emulator._guard import HostGuard
from azvision.emulator._transport import GatewayProtocol, bind, endpoint_url

__all__ = ["Emulator", "serve"]

logger = logging.getLogger(__name__)

#: Header of the ``/_emulator/*`` control routes; its value is the emulator's training key.
CONTROL_KEY_HEADER = "Training-Key"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_MAX_BODY_BYTES = 512 * 1024 * 1024
_KEYS_FILE = "keys.json"
_KEY_FIELDS = ("training_key", "prediction_key", "vision_key", "aml_key", "openai_key")


def _gateway_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _gateway_error(404, "Resource not found")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _gateway_error(status, str(getattr(exc, "detail", "")) or "Request failed")


class Emulator:
    """Local emulator of Custom Vision, Image Analysis and Azure ML online endpoints.

    Serves the services' real REST paths on ``endpoint`` (loopback, free port by default) from a
    background thread. Keys are random per instance (kept in ``data_dir`` when given, so a restart
    keeps them); they never appear in ``repr``.

    Example::

        from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
        from msrest.authentication import ApiKeyCredentials

        with Emulator(rate_limit_tps=10) as emu:
            trainer = CustomVisionTrainingClient(
                emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key}))
            print([d.name for d in trainer.get_domains()])
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        rate_limit_tps: float | None = None,
        fail_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        aml_endpoints: Mapping[str, Any] | None = None,
        training_seconds: float = 0.5,
        openai_rpm: float | None = None,
        openai_tpm: float | None = None,
        openai_knowledge: str | os.PathLike[str] | None = None,
    ) -> None:
        config = EmulatorConfig(
            host=host,
            port=port,
            latency_ms=latency_ms,
            rate_limit_tps=rate_limit_tps,
            fail_rate=fail_rate,
            drop_rate=drop_rate,
            seed=seed,
            data_dir=Path(data_dir) if data_dir is not None else None,
            aml_endpoints=dict(aml_endpoints or {}),
            training_seconds=training_seconds,
            openai_rpm=openai_rpm,
            openai_tpm=openai_tpm,
            openai_knowledge=Path(openai_knowledge) if openai_knowledge is not None else None,
        )
        self._init(config)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Emulator:
        """An emulator for an existing `EmulatorConfig` (what `serve` uses).

        Example::

            emu = Emulator.from_config(EmulatorConfig(seed=3))
        """
        emulator = cls.__new__(cls)
        emulator._init(config)
        return emulator

    def _init(self, config: EmulatorConfig) -> None:
        self.config = config
        self._injector = FaultInjector(
            rate_limit_tps=config.rate_limit_tps,
            fail_rate=config.fail_rate,
            drop_rate=config.drop_rate,
            seed=config.seed,
        )
        self._ctx = EmulatorContext(config=config)
        for field, value in _load_or_create_keys(config.data_dir).items():
            setattr(self._ctx, field, value)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- public attributes -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT`` once started (empty before)."""
        return self._ctx.endpoint

    @property
    def training_key(self) -> str:
        """Value for the ``Training-Key`` header."""
        return self._ctx.training_key

    @property
    def prediction_key(self) -> str:
        """Value for the ``Prediction-Key`` header."""
        return self._ctx.prediction_key

    @property
    def vision_key(self) -> str:
        """Value for ``Ocp-Apim-Subscription-Key`` (Image Analysis)."""
        return self._ctx.vision_key

    @property
    def aml_key(self) -> str:
        """Bearer key of every emulated Azure ML endpoint."""
        return self._ctx.aml_key

    @property
    def openai_key(self) -> str:
        """Value for the ``api-key`` header (or the Bearer token) of the emulated Azure OpenAI resource."""
        return self._ctx.openai_key

    @property
    def prediction_resource_id(self) -> str:
        """ARM id of the emulated prediction resource; publish iterations to it."""
        return self._ctx.prediction_resource_id

    def aml_scoring_uri(self, name: str) -> str:
        """Scoring URI of the configured Azure ML endpoint ``name`` (``KeyError`` if unknown).

        Example::

            uri = emu.aml_scoring_uri("dogs")  # POST images here with "Authorization: Bearer <aml_key>"
        """
        return azure_ml.scoring_uri(self._ctx, name)

    def stats(self) -> dict[str, dict[str, int]]:
        """Request counts: ``{"METHOD /route/{template}": {"200": n, "429": m, "dropped": k}}``."""
        return self._ctx.stats.snapshot()

    def reset(self) -> None:
        """Clear all service state (and persisted state in ``data_dir``), counters and fault state."""
        for service in self._ctx.services.values():
            reset = getattr(service, "reset", None)
            if callable(reset):
                reset()
        self._ctx.stats.reset()
        self._injector.reset()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind the socket, start the services and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        sock = bind(self.config.host, self.config.port)
        self._ctx.endpoint = endpoint_url(self.config.host, sock.getsockname()[1])
        try:
            app = self._build_app()
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    http=GatewayProtocol,
                    lifespan="off",
                    log_config=None,
                    log_level="warning",
                    access_log=False,
                    server_header=False,
                    proxy_headers=False,
                    timeout_graceful_shutdown=2,
                    h11_max_incomplete_event_size=65536,
                )
            )
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"azvision-emulator-{sock.getsockname()[1]}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    raise RuntimeError(f"the emulator did not start on {self.endpoint}")
                time.sleep(0.005)
        except BaseException:
            sock.close()
            self._close_services()
            raise
        self._server, self._thread = server, thread
        logger.info("azvision emulator serving on %s", self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving, stop background work and child processes. Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_S / 2)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_S / 2)
        self._close_services()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint if self._server is not None else "stopped"
        return f"Emulator({state})"

    # -- internals ---------------------------------------------------------------------------
    def _build_app(self) -> HostGuard:
        ctx = self._ctx
        routes: list[BaseRoute] = [
            Route("/_emulator/stats", self._stats_endpoint, methods=["GET"]),
            Route("/_emulator/reset", self._reset_endpoint, methods=["POST"]),
        ]
        routes += custom_vision.routes(ctx)
        routes += image_analysis.routes(ctx)
        routes += azure_openai.routes(ctx)
        aml = azure_ml.AzureMLService.of(ctx)
        routes += aml.routes()
        aml.start()
        app = Starlette(
            routes=routes,
            exception_handlers={404: _not_found, HTTPException: _http_error},
            max_body_size=_MAX_BODY_BYTES,
        )
        faulty = FaultMiddleware(
            app,
            injector=self._injector,
            stats=ctx.stats,
            routes=app.routes,
            latency_ms=self.config.latency_ms,
        )
        return HostGuard(faulty, bound_host=self.config.host)

    def _close_services(self) -> None:
        for service in self._ctx.services.values():
            close = getattr(service, "close", None)
            if callable(close):
                close()

    def _control_key_ok(self, request: Request) -> bool:
        # The control routes can wipe a data_dir: they take the training key, which can delete
        # every project anyway. A custom header also keeps cross-origin "simple" requests out.
        given = request.headers.get(CONTROL_KEY_HEADER, "")
        return hmac.compare_digest(given.encode(), self._ctx.training_key.encode())

    async def _stats_endpoint(self, request: Request) -> Response:
        if not self._control_key_ok(request):
            return JSONResponse(_ACCESS_DENIED, status_code=401)
        return JSONResponse(self.stats())

    async def _reset_endpoint(self, request: Request) -> Response:
        if not self._control_key_ok(request):
            return JSONResponse(_ACCESS_DENIED, status_code=401)
        self.reset()
        return Response(status_code=204)


def _load_or_create_keys(data_dir: Path | None) -> dict[str, str]:
    """Keys survive a restart with the same ``data_dir``, so configured clients keep working."""
    if data_dir is None:
        return {}
    path = data_dir / _KEYS_FILE
    if path.exists():
        stored = json.loads(path.read_text("utf-8"))
        return {field: str(stored[field]) for field in _KEY_FIELDS if field in stored}
    fresh = EmulatorContext(config=EmulatorConfig())
    keys = {field: str(getattr(fresh, field)) for field in _KEY_FIELDS}
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(keys), "utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return keys


def serve(config: EmulatorConfig, *, announce: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Run an emulator in the foreground until SIGINT or SIGTERM (``azvision emulator``).

    Prints exactly one JSON line with the endpoint, keys, prediction resource id and AML scoring
    URIs to stdout first; ``announce``, when given, turns that dict into the text printed instead
    (``azvision emulator --env`` prints shell ``export`` lines).

    Example::

        serve(EmulatorConfig(port=8080, rate_limit_tps=10))
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    try:
        with Emulator.from_config(config) as emu:
            line = {
                "endpoint": emu.endpoint,
                "training_key": emu.training_key,
                "prediction_key": emu.prediction_key,
                "vision_key": emu.vision_key,
                "prediction_resource_id": emu.prediction_resource_id,
                "aml_key": emu.aml_key,
                "openai_key": emu.openai_key,
                "aml_scoring_uris": {name: emu.aml_scoring_uri(name) for name in config.aml_endpoints},
            }
            text = announce(line) if announce is not None else json.dumps(line)
            sys.stdout.write(text.rstrip("\n") + "\n")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)
