"""Fault decisions and the fault middleware, without sockets (httpx's ASGI transport)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from azvision.emulator._context import Stats
from azvision.emulator._faults import (
    ConnectionDroppedError,
    Fault,
    FaultInjector,
    FaultMiddleware,
    ServiceId,
    TokenBucket,
    operation_name,
    service_of,
)

TRAINING = ServiceId("Custom_Vision.Training", "Custom_Vision_Training_3.3")
PREDICTION = ServiceId("Custom_Vision.Prediction", "Custom_Vision_Prediction_3.1")


def test_token_bucket_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert bucket.take(0.5) == 0.0  # one token came back in half a second
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_slow_rates_still_allow_one_request_then_wait() -> None:
    bucket = TokenBucket(rate=0.5, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(11.0) == pytest.approx(1.0)  # half a token back after one second


def test_same_seed_gives_the_same_faults_and_reset_replays_them() -> None:
    def run(injector: FaultInjector) -> list[Fault | None]:
        return [injector.decide(TRAINING, "key") for _ in range(200)]

    first = FaultInjector(fail_rate=0.2, drop_rate=0.1, seed=42)
    sequence = run(first)
    assert run(FaultInjector(fail_rate=0.2, drop_rate=0.1, seed=42)) == sequence
    assert run(FaultInjector(fail_rate=0.2, drop_rate=0.1, seed=43)) != sequence
    first.reset()
    assert run(first) == sequence


def test_fault_rates_and_kinds() -> None:
    injector = FaultInjector(fail_rate=0.3, drop_rate=0.1, seed=1)
    faults = [injector.decide(None, "") for _ in range(4000)]
    drops = sum(1 for f in faults if f is not None and f.kind == "drop")
    failures = [f for f in faults if f is not None and f.kind == "fail"]
    assert 300 < drops < 500
    assert 1000 < len(failures) < 1400
    assert {f.status for f in failures} == {500, 503}
    assert all((f.retry_after == 1) == (f.status == 503) for f in failures)


def test_throttling_is_per_service_and_key() -> None:
    now = [0.0]
    injector = FaultInjector(rate_limit_tps=1, clock=lambda: now[0])
    assert injector.decide(TRAINING, "a") is None
    assert injector.decide(TRAINING, "a") == Fault("throttle", 429, 1)
    assert injector.decide(TRAINING, "b") is None
    assert injector.decide(PREDICTION, "a") is None
    assert injector.decide(None, "a") is None  # blob downloads are not rate limited
    now[0] = 1.0
    assert injector.decide(TRAINING, "a") is None


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    injector = FaultInjector(rate_limit_tps=0.25, clock=lambda: 0.0)
    injector.decide(TRAINING, "k")
    assert injector.decide(TRAINING, "k") == Fault("throttle", 429, 4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit_tps": 0}, "rate_limit_tps"),
        ({"fail_rate": 1.5}, "fail_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
    ],
)
def test_invalid_settings_are_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultInjector(**options)  # type: ignore[arg-type]


def test_service_of_paths() -> None:
    assert service_of("/customvision/v3.4-preview/Training/projects") == ServiceId(
        "Custom_Vision.Training", "Custom_Vision_Training_3.4-preview"
    )
    assert service_of("/customvision/v3.1/prediction/p/classify/iterations/x/image") == PREDICTION
    assert service_of("/customvision/_blobs/p/exports/e.zip") is None
    assert service_of("/computervision/imageanalysis:analyze").bucket == "ComputerVision"  # type: ignore[union-attr]
    assert service_of("/vision/v3.2/analyze") == ServiceId("ComputerVision", "ComputerVision_3.2")


def test_operation_names_follow_the_gateway() -> None:
    assert operation_name("create_images_from_data", "POST") == "CreateImagesFromData"
    assert operation_name(None, "GET") == "Get"


async def _hello(request: Request) -> Response:
    return JSONResponse({"id": request.path_params.get("item")})


async def _boom(request: Request) -> Response:
    raise RuntimeError("bug")


def _client(injector: FaultInjector, stats: Stats, latency_ms: float = 0.0) -> httpx.AsyncClient:
    app = Starlette(
        routes=[
            Route("/customvision/v3.3/training/items/{item}", _hello, name="get_item"),
            Route("/customvision/v3.3/training/boom", _boom),
            Mount("/aml", routes=[Route("/{name}/score", _hello, methods=["POST"])]),
            Route("/_emulator/stats", _hello),
        ]
    )
    middleware = FaultMiddleware(
        app, injector=injector, stats=stats, routes=app.routes, latency_ms=latency_ms
    )
    transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=True)
    return httpx.AsyncClient(transport=transport, base_url="http://emulator")


async def test_middleware_counts_by_route_template_and_status() -> None:
    stats = Stats()
    async with _client(FaultInjector(), stats) as client:
        assert (await client.get("/customvision/v3.3/training/items/7")).json() == {"id": "7"}
        await client.get("/customvision/v3.3/training/items/8")
        await client.post("/customvision/v3.3/training/items/8")
        await client.post("/aml/dogs/score")
        await client.get("/nowhere")
        await client.get("/_emulator/stats")
        with pytest.raises(RuntimeError):
            await client.get("/customvision/v3.3/training/boom")
    assert stats.snapshot() == {
        "GET /customvision/v3.3/training/items/{item}": {"200": 2},
        "POST /customvision/v3.3/training/items/{item}": {"405": 1},
        "POST /aml/{name}/score": {"200": 1},
        "GET /nowhere": {"404": 1},
        "GET /customvision/v3.3/training/boom": {"500": 1},
    }


async def test_middleware_throttles_with_retry_after_and_the_gateway_body() -> None:
    stats = Stats()
    async with _client(FaultInjector(rate_limit_tps=1, clock=lambda: 0.0), stats) as client:
        headers = {"Training-Key": "k"}
        assert (await client.get("/customvision/v3.3/training/items/1", headers=headers)).status_code == 200
        throttled = await client.get("/customvision/v3.3/training/items/1", headers=headers)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    message = throttled.json()["error"]["message"]
    assert throttled.json()["error"]["code"] == "429"
    assert message.startswith("Requests to the GetItem Operation under Custom_Vision_Training_3.3")
    assert "Please retry after 1 second." in message
    assert stats.snapshot() == {"GET /customvision/v3.3/training/items/{item}": {"200": 1, "429": 1}}


async def test_middleware_drops_and_fails_but_never_the_control_routes() -> None:
    stats = Stats()
    async with _client(FaultInjector(drop_rate=1.0), stats) as client:
        assert (await client.get("/_emulator/stats")).status_code == 200
        with pytest.raises(ConnectionDroppedError):
            await client.get("/customvision/v3.3/training/items/1")
    assert stats.snapshot() == {"GET /customvision/v3.3/training/items/{item}": {"dropped": 1}}

    async with _client(FaultInjector(fail_rate=1.0, seed=3), Stats()) as client:
        statuses = {(await client.get("/customvision/v3.3/training/items/1")).status_code for _ in range(20)}
    assert statuses == {500, 503}
