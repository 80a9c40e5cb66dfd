"""What every part of `CustomVisionTrainer` stands on: the vendor client and the call loop.

The official (msrest-based) ``CustomVisionTrainingClient`` is created on first use, with msrest's retries
off; every call goes through `TrainerCore._call`, which honours the shared retry policy, throttle
and ``Retry-After``, and maps vendor exceptions to `AzVisionError` subclasses at one
choke point. Iterations are read here too: training, publication and export all look them up.

Example:
    >>> iteration_ref(IterationInfo(id="i1", name="Iteration 1", status="Completed", project_id="p1"))
    'i1'
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import DeserializationError
from msrest.exceptions import ClientException

from .._config import Secret
from .._cv_sdk import training_client
from .._error_mapping import error_from_msrest
from .._errors import ServiceError
from .._retry import Clock, RetryPolicy, RetryState, Throttle, call
from .models import IterationInfo, ProjectInfo

__all__ = ["NAME", "TrainerCore", "iteration_info", "iteration_ref", "project_ref"]

T = TypeVar("T")
#: The backend name errors carry.
NAME = "custom_vision_training"


def project_ref(project: ProjectInfo | str) -> str:
    """The project's id, from a `ProjectInfo` or the id itself."""
    return project.id if isinstance(project, ProjectInfo) else project


def iteration_ref(iteration: IterationInfo | str) -> str:
    """The iteration's id, from an `IterationInfo` or the id itself."""
    return iteration.id if isinstance(iteration, IterationInfo) else iteration


def iteration_info(iteration: Any) -> IterationInfo:
    """Map the SDK's ``Iteration`` model to `IterationInfo`."""
    return IterationInfo(
        id=str(iteration.id),
        name=iteration.name or "",
        status=iteration.status or "Unknown",
        project_id=str(iteration.project_id or ""),
        created=_iso(iteration.created),
        trained_at=_iso(iteration.trained_at),
        publish_name=iteration.publish_name or None,
        exportable=bool(iteration.exportable),
        domain_id=iteration.domain_id,
        error=getattr(iteration, "training_error_details", None) or None,
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


class TrainerCore:
    """The trainer's state and plumbing, shared by the parts it is made of (see ``custom_vision.py``)."""

    # All set by CustomVisionTrainer.__init__.
    endpoint: str
    prediction_resource_id: str | None
    retry: RetryPolicy
    timeout: float
    upload_concurrency: int
    _key: Secret
    _throttle: Throttle
    _clock: Clock
    _sleep: Callable[[float], object]
    _rng: random.Random
    _vendor: Any
    _vendor_lock: threading.Lock
    _domains: list[Any] | None
    _published: tuple[str, str] | None
    _export_dir: Path | None
    _closed: bool

    # -- plumbing ------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._closed:
            raise RuntimeError("this CustomVisionTrainer is closed")
        with self._vendor_lock:
            return self._vendor or self._make_vendor()

    def _make_vendor(self) -> Any:
        client = training_client(self.endpoint, self._key, timeout=self.timeout)
        self._vendor = client
        return client

    def _once(self, fn: Callable[[Any], T]) -> T:
        """One attempt; vendor exceptions mapped at the choke point."""
        try:
            return fn(self._client())
        except DeserializationError as exc:
            raise ServiceError(
                f"Custom Vision sent an answer that cannot be read: {exc}", backend=NAME
            ) from exc
        except ClientException as exc:
            raise error_from_msrest(exc, backend=NAME) from exc

    def _call(
        self,
        fn: Callable[[Any], T],
        *,
        recover: Callable[[], T | None] | None = None,
    ) -> T:
        """Call with the shared retry policy and throttle.

        ``recover`` makes a non-idempotent call safe to retry: before each retry it looks for what the
        failed attempt may have created anyway (a dropped answer is not a dropped request).
        """
        state = self._retry_state()
        if recover is None:
            return call(lambda: self._once(fn), state, sleep=self._sleep)

        def attempt() -> T:
            if state.attempts:  # a retry: did the failed attempt land after all?
                found = recover()
                if found is not None:
                    return found
            return self._once(fn)

        return call(attempt, state, sleep=self._sleep)

    def _retry_state(self) -> RetryState:
        """A retry state for one call, under the trainer's shared throttle (quota and cool-downs)."""
        return self.retry.start(
            self._rng,
            clock=self._clock,
            throttle=self._throttle,
            pacers=self._throttle.pacers(),
            backend=NAME,
        )

    # -- iterations ----------------------------------------------------------------------------
    def iteration(self, project: ProjectInfo | str, iteration: IterationInfo | str) -> IterationInfo:
        """The iteration's current state."""
        project_id, iteration_id = project_ref(project), iteration_ref(iteration)
        return iteration_info(self._call(lambda c: c.get_iteration(project_id, iteration_id)))

    def iterations(self, project: ProjectInfo | str) -> list[IterationInfo]:
        """All iterations of the project, newest first."""
        project_id = project_ref(project)
        found = [iteration_info(it) for it in self._call(lambda c: c.get_iterations(project_id))]
        return sorted(found, key=lambda it: it.created or "", reverse=True)
