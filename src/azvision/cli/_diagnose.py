"""The one line that ends a run whose failures point at a setting: a wrong key, project or endpoint.

Authentication and not-found errors always mean a setting is wrong; connection errors do when the
connection was refused, the name did not resolve or TLS failed, or when nothing at all got through.

Example:
    >>> from azvision import AuthenticationError
    >>> tally = FailureTally()
    >>> tally.add(AuthenticationError("access denied", status_code=401))
    >>> tally.hint("image_analysis", endpoint="https://x.cognitiveservices.azure.com")
    '1 input failed with AuthenticationError from image_analysis at https://x.cognitiveservices.azure.com: \
the service refused the key; check --key (or VISION_KEY)'
"""

from __future__ import annotations

import re
from collections import Counter

from .._config import ENV
from .._errors import AuthenticationError, AzVisionError, BackendConnectionError, NotFoundError
from .._models import Prediction

__all__ = ["FailureTally", "backend_endpoint", "fix_for"]

_CONNECT_FAILURE = re.compile(
    r"refused|resolve|getaddrinfo|name or service|nodename|no address|dns|ssl|tls|certificate|"
    r"connecterror|unreachable",
    re.IGNORECASE,
)

#: Per backend and kind of failure: what is probably wrong, and the settings that fix it.
_FIXES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "custom_vision": {
        "auth": ("the service refused the key (it must be the prediction key of this resource)", ("key",)),
        "not_found": (
            "no published iteration by that name in that project",
            ("project_id", "iteration"),
        ),
        "connection": ("the endpoint cannot be reached", ("endpoint",)),
    },
    "image_analysis": {
        "auth": ("the service refused the key", ("key",)),
        "not_found": ("the endpoint has no Image Analysis API at that path", ("endpoint",)),
        "connection": ("the endpoint cannot be reached", ("endpoint",)),
    },
    "azure_ml": {
        "auth": ("the endpoint refused the key or token", ("key",)),
        "not_found": ("no such endpoint or deployment", ("scoring_uri", "deployment")),
        "connection": ("the scoring URI cannot be reached", ("scoring_uri",)),
    },
}
_DEFAULT_FIXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "auth": ("the service refused the key", ("key",)),
    "not_found": ("the service does not know the model asked for", ()),
    "connection": ("the service cannot be reached", ("endpoint",)),
}


def backend_endpoint(classifier: object) -> str | None:
    """The address a backend talks to (``endpoint`` or ``scoring_uri``), when it has one.

    Example:
        >>> backend_endpoint(object()) is None
        True
    """
    for attribute in ("endpoint", "scoring_uri"):
        value = getattr(classifier, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def _setting(backend: str, arg: str) -> str:
    flag = "--" + arg.replace("_", "-")
    env = ENV.get(backend, {}).get(arg)
    return f"{flag} (or {env})" if env else flag


def _kind(error: AzVisionError) -> str | None:
    if isinstance(error, AuthenticationError):
        return "auth"
    if isinstance(error, NotFoundError):
        return "not_found"
    if isinstance(error, BackendConnectionError):
        cause = error.__cause__
        text = f"{error.message} {type(cause).__name__ if cause else ''} {cause or ''}"
        return "connection" if _CONNECT_FAILURE.search(text) else "dropped"
    return None


def _fix(backend: str, kind: str) -> str:
    why, args = _FIXES.get(backend, _DEFAULT_FIXES)[kind]
    return why + (f"; check {' and '.join(_setting(backend, arg) for arg in args)}" if args else "")


def fix_for(backend: str, error: AzVisionError) -> str | None:
    """What a single failed call says about the settings, and which to check; ``None`` if nothing.

    Example:
        >>> from azvision import NotFoundError
        >>> fix_for("azure_ml", NotFoundError("no such deployment", status_code=404))
        'no such endpoint or deployment; check --scoring-uri (or AZUREML_SCORING_URI) and --deployment (or \
AZUREML_DEPLOYMENT)'
    """
    kind = _kind(error)
    if kind is None:
        return None
    return _fix(backend, "connection" if kind == "dropped" else kind)


class FailureTally:
    """Counts a run's outcomes by the kinds of failure that mean a setting is wrong."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self._kinds: Counter[str] = Counter()
        self._types: dict[str, str] = {}

    def add(self, outcome: Prediction | AzVisionError) -> None:
        """Count one outcome."""
        if isinstance(outcome, Prediction):
            self.succeeded += 1
            return
        self.failed += 1
        kind = _kind(outcome)
        if kind is not None:
            self._kinds[kind] += 1
            self._types.setdefault(kind, type(outcome).__name__)

    def hint(self, backend: str, *, endpoint: str | None) -> str | None:
        """One line naming the endpoint and the likely fix; ``None`` when no failure points at a setting."""
        kinds = self._kinds.copy()
        if self.succeeded == 0 and kinds["dropped"]:
            kinds["connection"] += kinds["dropped"]  # nothing got through: not a flaky network
            self._types.setdefault("connection", self._types["dropped"])
        del kinds["dropped"]
        found = [kind for kind in ("auth", "not_found", "connection") if kinds[kind]]
        if not found:
            return None
        kind = found[0]
        count = kinds[kind]
        where = f" at {endpoint}" if endpoint else ""
        what = f"{count} input{'s' if count != 1 else ''} failed with {self._types[kind]}"
        return f"{what} from {backend}{where}: {_fix(backend, kind)}"
