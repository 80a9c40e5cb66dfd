"""The one place that builds clients of the archived Custom Vision SDK (msrest-based).

The SDK (``azure-cognitiveservices-vision-customvision``, last release 2024-11) is kept behind this module
so it can be swapped for plain HTTP without touching the backend or the trainer. Every client made here
has its own retries switched off (azvision's retry layer is the only one; msrest would otherwise never
retry a POST yet retry some GETs on its own schedule), its timeout set, and error bodies without
``code``/``message`` handled. Its ``close()`` closes the connections of every thread that used it (msrest
keeps one requests session per thread, and its own ``close`` reaches only the calling thread's).

Example:
    >>> client = prediction_client("https://x.cognitiveservices.azure.com", Secret("k"), timeout=10)
    >>> client.config.retry_policy.retries
    0
    >>> client.close()
"""

from __future__ import annotations

import threading
from typing import Any

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials

from ._config import Secret
from ._sessions import close_session

__all__ = ["prediction_client", "training_client"]


class _SessionPerThread:
    """Stands in for msrest's ``threading.local`` of requests sessions: still one per thread, all known.

    msrest reads ``.session`` (an ``AttributeError`` means "make one for this thread") and sets it.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[Any] = []

    @property
    def session(self) -> Any:
        return self._local.session

    @session.setter
    def session(self, value: Any) -> None:
        self._local.session = value
        with self._lock:
            self._sessions.append(value)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        self._local = threading.local()  # a later call opens (and tracks) a fresh session
        for session in sessions:
            close_session(session)


def _close_every_thread(client: Any) -> None:
    """Make ``client.close()`` close the sessions of every thread, not only the caller's."""
    sessions = _SessionPerThread()
    client.config.pipeline._sender.driver._session_mapping = sessions
    vendor_close = client.close

    def close() -> None:
        sessions.close_all()  # first: msrest's own close forgets the calling thread's pools unclosed
        vendor_close()

    client.close = close


def prediction_client(endpoint: str, key: Secret, *, timeout: float) -> CustomVisionPredictionClient:
    """A ``CustomVisionPredictionClient`` with vendor retries off."""
    credentials = ApiKeyCredentials(in_headers={"Prediction-key": key.get()})
    client = CustomVisionPredictionClient(endpoint, credentials)  # type: ignore[no-untyped-call]
    _configure(client, timeout)
    return client


def training_client(endpoint: str, key: Secret, *, timeout: float) -> CustomVisionTrainingClient:
    """A ``CustomVisionTrainingClient`` with vendor retries off."""
    credentials = ApiKeyCredentials(in_headers={"Training-key": key.get()})
    client = CustomVisionTrainingClient(endpoint, credentials)  # type: ignore[no-untyped-call]
    _configure(client, timeout)
    return client


def _configure(client: Any, timeout: float) -> None:
    # msrest builds each thread's session from this one urllib3 policy. It is changed in place because
    # msrest reads attributes (BACKOFF_MAX) that a fresh urllib3 2.x Retry lacks.
    vendor_retry = client.config.retry_policy
    vendor_retry.retries = 0
    policy = vendor_retry.policy
    policy.total = policy.connect = policy.read = policy.redirect = 0
    policy.status_forcelist = frozenset()
    policy.raise_on_status = False
    policy.respect_retry_after_header = False
    # msrest annotates an int, but hands the value to requests, which takes float seconds.
    client.config.connection.timeout = timeout
    _close_every_thread(client)
    _tolerate_empty_error_bodies(client)


def _tolerate_empty_error_bodies(client: Any) -> None:
    # The Custom Vision error model requires both keywords, so msrest's fallback ``CustomVisionError()``
    # raises TypeError for an empty or foreign error body and the HTTP status is lost. A lenient subclass
    # keeps the response, so the error mapping can go by status.
    dependencies = client._deserialize.dependencies
    original = dependencies.get("CustomVisionError")
    if original is None:
        return

    class LenientCustomVisionError(original):  # type: ignore[misc, valid-type]
        def __init__(self, *, code: str | None = None, message: str | None = None, **kwargs: Any) -> None:
            super().__init__(code=code, message=message, **kwargs)

    dependencies["CustomVisionError"] = LenientCustomVisionError
