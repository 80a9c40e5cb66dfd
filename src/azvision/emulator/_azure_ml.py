"""Emulated Azure ML managed online endpoints: a gateway in front of real ``azmlinfsrv`` servers.

Each configured endpoint gets a scoring URI on the emulator (``{endpoint}/aml/{name}/score``, see
`scoring_uri`) that behaves like the managed endpoint's front door — ``Authorization:
Bearer <key>`` (401 otherwise), ``azureml-model-deployment`` routing (404 for an unknown
deployment; without it the endpoint's traffic split decides), 408 after ``request_timeout_ms``,
429 beyond ``2 × max_concurrent_requests × instance_count`` requests in flight, and 424 with
``ms-azureml-model-error-statuscode`` / ``ms-azureml-model-error-reason: model_error`` when the
scoring script answers non-200. Behind it, each deployment is a real
``azureml-inference-server-http`` process running the user's ``score.py``
(`azvision.emulator._inference_server`).

On the command line: ``azvision emulator --aml-endpoint NAME=SCORE_PY[:MODEL_DIR]`` (repeatable); the
model directory (``AZUREML_MODEL_DIR``) defaults to the folder holding ``score.py``.

Example::

    spec = AmlEndpointSpec("deploy/score.py", model_dir="export/", deployments=("blue", "green"))
    with Emulator(aml_endpoints={"cats": spec}) as emu:
        httpx.post(emu.aml_scoring_uri("cats"), content=jpeg_bytes,
                   headers={"Authorization": f"Bearer {emu.aml_key}"})
"""

from __future__ import annotations

import asyncio
import hmac
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from azvision.emulator._aml_spec import ENDPOINT_NAME as _NAME
from azvision.emulator._aml_spec import AmlEndpointSpec
from azvision.emulator._context import EmulatorContext
from azvision.emulator._inference_server import InferenceServer, ensure_environment, logger

__all__ = [
    "AzureMLService",
    "routes",
    "scoring_uri",
]

_NO_ROUTE = (
    "No valid deployments to route to. Please check that the endpoint has at least one deployment "
    "with positive weight values or use a deployment specific header to route."
)
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "authorization"}
_PASS_BACK = ("content-type", "x-request-id", "x-ms-")  # prefixes of upstream headers kept


class AzureMLService:
    """The emulator's Azure ML endpoints: ``start()`` launches one server per deployment.

    Creating one registers it as ``ctx.services["azure_ml"]``; ``AzureMLService.of(ctx)`` returns
    that instance (or creates it).

    Example::

        service = AzureMLService.of(ctx)
        service.start()  # builds the server environment on first use, then ~1-3 s
        uri = service.scoring_uri("cats")
        service.stop()
    """

    def __init__(self, ctx: EmulatorContext) -> None:
        self._ctx = ctx
        self.specs: dict[str, AmlEndpointSpec] = {}
        for name, value in ctx.config.aml_endpoints.items():
            if not _NAME.match(name):
                raise ValueError(f"invalid Azure ML endpoint name {name!r} (3-32 characters)")
            # A bare path is accepted too: ``Emulator(aml_endpoints={"x": "score.py"})``.
            self.specs[name] = value if isinstance(value, AmlEndpointSpec) else AmlEndpointSpec(value)
        self._servers: dict[tuple[str, str], InferenceServer] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(ctx.config.seed)
        self._log_dir: Path | None = None
        ctx.services["azure_ml"] = self

    @classmethod
    def of(cls, ctx: EmulatorContext) -> AzureMLService:
        """The service stored in ``ctx.services["azure_ml"]``, created on first use."""
        service = ctx.services.get("azure_ml")
        return service if isinstance(service, cls) else cls(ctx)

    def scoring_uri(self, name: str) -> str:
        """Scoring URI of a configured endpoint (``KeyError`` for an unknown name)."""
        if name not in self.specs:
            raise KeyError(f"no Azure ML endpoint {name!r}; configured: {sorted(self.specs)}")
        return f"{self._ctx.endpoint.rstrip('/')}/aml/{name}/score"

    def scoring_uris(self) -> dict[str, str]:
        """Every endpoint's scoring URI, by name."""
        return {name: self.scoring_uri(name) for name in self.specs}

    def start(self, timeout: float = 120.0) -> None:
        """Start every deployment's server (in parallel) and wait for their liveness routes."""
        if not self.specs or self._servers:
            return
        self._log_dir = Path(tempfile.mkdtemp(prefix="azvision-aml-"))
        servers = {
            (name, deployment): InferenceServer(
                ensure_environment(spec.requirements),
                spec.script,
                spec.model_path,
                label=f"{name}/{deployment}",
                log_dir=self._log_dir,
                workers=spec.instance_count,
            )
            for name, spec in self.specs.items()
            for deployment in spec.deployments
        }
        self._servers = servers
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=len(servers)) as pool:
                for future in [pool.submit(s.start, timeout) for s in servers.values()]:
                    future.result()
        except BaseException:
            # The error names a log file: keep the folder (and forget it, so a later stop() won't
            # delete it).
            self.stop(keep_logs=True)
            self._log_dir = None
            raise
        logger.info(
            "started %d Azure ML deployment server(s) in %.1f s (logs in %s)",
            len(servers),
            time.monotonic() - started,
            self._log_dir,
        )

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every server process; ``keep_logs`` leaves their log files for inspection."""
        servers, self._servers = list(self._servers.values()), {}
        if servers:
            with ThreadPoolExecutor(max_workers=len(servers)) as pool:
                list(pool.map(lambda s: s.stop(), servers))
        if self._log_dir and not keep_logs:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    close = stop

    def routes(self) -> list[BaseRoute]:
        """The gateway routes: ``POST|GET /aml/{name}/score`` and ``GET /aml/{name}/swagger.json``."""
        return [
            Route("/aml/{name}/score", self._gateway, methods=["POST", "GET"]),
            Route("/aml/{name}/swagger.json", self._gateway, methods=["GET"]),
        ]

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self._ctx.aml_key.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)

    def _pick(self, spec: AmlEndpointSpec, pinned: str | None) -> str | None:
        if pinned is not None:
            return pinned if pinned in spec.deployments else None
        weights = {d: w for d, w in spec.traffic.items() if w > 0}
        if not spec.traffic:
            weights = {spec.deployments[0]: 100}
        if not weights:
            return None
        with self._lock:
            return self._random.choices(list(weights), list(weights.values()))[0]

    async def _gateway(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = self.specs.get(name)
        if spec is None:
            return PlainTextResponse(f"Endpoint {name!r} not found.", 404)
        if not self._authorised(request):
            return PlainTextResponse("key_auth_access_denied", 401)
        deployment = self._pick(spec, request.headers.get("azureml-model-deployment"))
        if deployment is None:
            return PlainTextResponse(_NO_ROUTE, 404)
        server = self._servers.get((name, deployment))
        if server is None or not server.running:
            return PlainTextResponse("no healthy upstream", 503)
        key = (name, deployment)
        limit = 2 * spec.max_concurrent_requests * spec.instance_count
        with self._lock:
            if self._in_flight[key] >= limit:
                return PlainTextResponse(
                    f"Too many pending requests: {limit} already in flight for deployment "
                    f"{deployment!r} (2 × max_concurrent_requests_per_instance × instance_count).",
                    429,
                )
            self._in_flight[key] += 1
        try:
            upstream = await asyncio.wait_for(self._forward(server, request), spec.request_timeout_ms / 1000)
        except asyncio.TimeoutError:
            return PlainTextResponse("upstream request timeout", 408)
        except httpx.TransportError:
            return PlainTextResponse("upstream connect error or disconnect/reset before headers", 502)
        finally:
            with self._lock:
                self._in_flight[key] -= 1
        headers = {k: v for k, v in upstream.headers.items() if k.startswith(_PASS_BACK)}
        headers["azureml-model-deployment"] = deployment
        status = upstream.status_code
        if status != 200:
            headers["ms-azureml-model-error-statuscode"] = str(status)
            headers["ms-azureml-model-error-reason"] = "model_error"
            status = 424
        return Response(upstream.content, status, headers)

    async def _forward(self, server: InferenceServer, request: Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[1]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with httpx.AsyncClient(trust_env=False, verify=False, timeout=None) as client:
            return await client.request(
                request.method,
                f"{server.url}/{path}",
                params=request.query_params,
                headers=headers,
                content=await request.body(),
            )


def routes(ctx: EmulatorContext) -> list[BaseRoute]:
    """The Azure ML gateway routes for ``ctx`` (``AzureMLService.of(ctx).routes()``).

    Example:
        >>> from azvision.emulator._context import EmulatorConfig, EmulatorContext
        >>> [r.path for r in routes(EmulatorContext(EmulatorConfig()))]
        ['/aml/{name}/score', '/aml/{name}/swagger.json']
    """
    return AzureMLService.of(ctx).routes()


def scoring_uri(ctx: EmulatorContext, name: str) -> str:
    """Scoring URI of endpoint ``name`` on the emulator of ``ctx`` (``KeyError`` if unknown).

    Example:
        >>> from azvision.emulator._context import EmulatorConfig, EmulatorContext
        >>> ctx = EmulatorContext(EmulatorConfig(aml_endpoints={"cats": "score.py"}))
        >>> ctx.endpoint = "http://127.0.0.1:8000"
        >>> scoring_uri(ctx, "cats")
        'http://127.0.0.1:8000/aml/cats/score'
    """
    return AzureMLService.of(ctx).scoring_uri(name)
