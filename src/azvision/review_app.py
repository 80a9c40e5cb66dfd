"""The local review page behind ``azvision review``: a person confirms, corrects or skips what the model
was unsure of, and every decision lands in the Custom Vision project at once, exactly once.

A small starlette app bound to 127.0.0.1 on one port. A token made for this run is in the URL it prints;
every request without it (page, images, API) gets 403, so another local user cannot read the queue or
post decisions. The queue is `review_queue` at start-up; a decision is
applied with `accept` before the answer is sent. The prediction id is
the idempotency key: the first decision about an image wins, and a reload, a double click or a second tab
gets that decision back instead of adding the image again (and ``accept`` itself never adds an image
twice, across runs too).

Example:
    >>> with ReviewServer(trainer, "flowers", max_confidence=0.6) as server:  # doctest: +SKIP
    ...     print(server.url)  # open it in a browser
    http://127.0.0.1:50123/?token=…
"""

from __future__ import annotations

import hmac
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import AzVisionError, ConfigurationError, missing_extra

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .training.custom_vision import CustomVisionTrainer

__all__ = ["ReviewServer", "ReviewSession"]

_HOST = "127.0.0.1"
_START_TIMEOUT_S = 10.0
_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class ReviewSession:
    """The queue being reviewed and what was decided, by prediction id (the idempotency key)."""

    trainer: CustomVisionTrainer
    project: str
    max_confidence: float = 0.6
    project_name: str = ""
    detection: bool = False
    items: list[Any] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    decided: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        """Read the queue and the project's tags (at start-up)."""
        info = self.trainer._resolve(self.project)
        self.project, self.project_name = info.id, info.name
        self.detection = self.trainer.is_detection(info)
        self.items = self.trainer.review_queue(info, max_confidence=self.max_confidence)
        tags = self.trainer._call(lambda c: c.get_tags(info.id))
        self.tags = sorted(str(t.name) for t in tags if t.type != "Negative")

    def queue_json(self, token: str) -> dict[str, Any]:
        return {
            "project": self.project,
            "project_name": self.project_name,
            "max_confidence": self.max_confidence,
            "tags": self.tags,
            "total": len(self.items),
            "decided": self.decided,
            "items": [
                {
                    "prediction_id": item.prediction_id,
                    "image": f"/image/{item.prediction_id}?token={token}",
                    "suggestions": [
                        {"name": s.name, "confidence": s.confidence} for s in item.suggestions[:9]
                    ],
                }
                for item in self.items
            ],
        }

    def decide(self, prediction_id: str, decision: Any) -> dict[str, Any]:
        """Apply one decision once: ``{"label": name}``, ``{"none": true}`` (none of these) or
        ``{"skip": true}``. A prediction already decided answers its first outcome, ``"repeat": true``."""
        if prediction_id not in {item.prediction_id for item in self.items}:
            raise ConfigurationError(f"{prediction_id!r} is not in this review queue")
        with self.lock:  # one decision at a time: two tabs or a double click cannot both apply
            earlier = self.decided.get(prediction_id)
            if earlier is not None:
                return {**earlier, "repeat": True, "progress": self.progress()}
            outcome = self._apply(prediction_id, decision)
            self.decided[prediction_id] = outcome
            return {**outcome, "repeat": False, "progress": self.progress()}

    def _apply(self, prediction_id: str, decision: Any) -> dict[str, Any]:
        from .training import NONE_OF_THESE

        if not isinstance(decision, dict):
            raise ConfigurationError("a decision is {'label': name}, {'none': true} or {'skip': true}")
        if decision.get("skip"):
            return {"outcome": "skipped", "label": None}
        if decision.get("none"):
            labels: tuple[str, ...] | str = NONE_OF_THESE
        else:
            label = decision.get("label")
            if not isinstance(label, str) or not label.strip():
                raise ConfigurationError("the label must be a non-empty string")
            labels = label.strip()
        decided: Any = self._boxed(prediction_id, labels) if self.detection and labels else labels
        result = self.trainer.accept(self.project, {prediction_id: decided})
        if result.failed:
            return {"outcome": "failed", "label": labels or None, "reason": result.failed[0].reason}
        if isinstance(labels, str) and labels not in self.tags:
            self.tags = sorted({*self.tags, labels})
        outcome = "added" if result.added else "already_added" if result.already_added else "duplicate"
        return {"outcome": outcome, "label": labels or None}

    def _boxed(self, prediction_id: str, label: str | tuple[str, ...]) -> Any:
        """A detection decision: the label on the box of the suggestion it names (else the top one's)."""
        from ._models import Label

        item = next(i for i in self.items if i.prediction_id == prediction_id)
        boxes = [s.box for s in item.suggestions if s.box is not None]
        named = next((s.box for s in item.suggestions if s.name == label and s.box is not None), None)
        box = named or (boxes[0] if boxes else None)
        return [Label(name=str(label), confidence=1.0, box=box)] if box is not None else label

    def progress(self) -> dict[str, int]:
        return {"done": len(self.decided), "total": len(self.items)}

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(("added", "already_added", "duplicate", "skipped", "failed"), 0)
        for outcome in self.decided.values():
            counts[outcome["outcome"]] += 1
        return {**counts, **self.progress()}


def make_app(session: ReviewSession, token: str) -> Starlette:
    """The review page and its API, every route behind ``token``."""
    try:
        import httpx
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse, JSONResponse, Response
        from starlette.routing import Route
    except ImportError as exc:  # pragma: no cover - the emulator extra brings starlette
        raise missing_extra(exc, what="azvision review", extra="emulator") from exc

    page = resources.files("azvision").joinpath("data/review.html").read_text("utf-8")

    def allowed(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-review-token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not allowed(request):
                return JSONResponse({"error": "a valid token is needed"}, status_code=403, headers=_HEADERS)
            try:
                response: Response = await handler(request)
            except ConfigurationError as exc:
                response = JSONResponse({"error": str(exc)}, status_code=400)
            except AzVisionError as exc:
                response = JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
            response.headers.update(_HEADERS)
            return response

        return endpoint

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def queue(request: Request) -> Response:
        return JSONResponse(session.queue_json(token))

    async def image(request: Request) -> Response:
        wanted = request.path_params["prediction_id"]
        item = next((i for i in session.items if i.prediction_id == wanted), None)
        if item is None:
            return JSONResponse({"error": "not in this queue"}, status_code=404)
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.get(item.image_uri)
        if answer.status_code != 200:
            return JSONResponse({"error": f"the image is gone (HTTP {answer.status_code})"}, status_code=502)
        media = answer.headers.get("content-type", "application/octet-stream")
        return Response(answer.content, media_type=media if media.startswith("image/") else "image/png")

    async def decide(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            body = await request.json()
        except ValueError:
            raise ConfigurationError("the body must be JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("prediction_id"), str):
            raise ConfigurationError('the body must be {"prediction_id", ...decision}')
        result = await run_in_threadpool(session.decide, body["prediction_id"], body)
        return JSONResponse(result)

    async def summary(request: Request) -> Response:
        return JSONResponse(session.summary())

    return Starlette(
        routes=[
            Route("/", guarded(index)),
            Route("/api/queue", guarded(queue)),
            Route("/image/{prediction_id}", guarded(image)),
            Route("/api/decide", guarded(decide), methods=["POST"]),
            Route("/api/summary", guarded(summary)),
        ]
    )


class ReviewServer:
    """The review page served on 127.0.0.1 in a background thread (``port=0``: a free port).

    Example:
        >>> server = ReviewServer(trainer, "flowers").start()  # doctest: +SKIP
        >>> server.url  # doctest: +SKIP
        'http://127.0.0.1:50123/?token=…'
    """

    def __init__(
        self, trainer: CustomVisionTrainer, project: str, *, max_confidence: float = 0.6, port: int = 0
    ) -> None:
        if not 0.0 <= max_confidence <= 1.0:
            raise ConfigurationError(f"max_confidence must be between 0 and 1, got {max_confidence!r}")
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be between 0 and 65535, got {port!r}")
        self.session = ReviewSession(trainer, project, max_confidence)
        self.port = port
        self._token = secrets.token_urlsafe(24)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address, token included (print it for the person reviewing; do not log it)."""
        return f"http://{_HOST}:{self.port}/?token={self._token}"

    def start(self) -> ReviewServer:
        """Load the queue, bind 127.0.0.1 and serve in a background thread."""
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - the emulator extra brings uvicorn
            raise missing_extra(exc, what="azvision review", extra="emulator") from exc

        self.session.load()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((_HOST, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot listen on {_HOST}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            make_app(self.session, self._token), log_config=None, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="azvision-review", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise ConfigurationError(f"the review page did not start on {_HOST}:{self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ReviewServer(project={self.session.project!r}, port={self.port})"  # never the token
