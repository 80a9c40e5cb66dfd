"""The one place that builds clients of the archived Custom Vision SDK (msrest-based).

The SDK (``azure-cognitiveservices-vision-customvision``, last release 2024-11) is kept behind this module
so it can be swapped for plain HTTP without touching the backend or the trainer. Every client made here
has its own retries switched off (azvision's retry layer is the only one; msrest would otherwise never
retry a POST yet retry some GETs on its own schedule), its timeout set, and error bodies without
``code``/``message`` handled.

Example:
    >>> client = prediction_client("https://x.cognitiveservices.azure.com", Secret("k"), timeout=10)
    >>> client.config.retry_policy.retries
    0
"""

from __future__ import annotations

from typing import Any

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials

from ._config import Secret

__all__ = ["prediction_client", "training_client"]


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
