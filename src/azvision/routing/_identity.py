"""What makes a classifier's answers what they are: the part of a cache key that is not the image.

Example:
    >>> class Fake:
    ...     name, timeout = "custom_vision", 30
    ...     def __init__(self):
    ...         self.project_id, self.iteration, self.timeout, self._key = "p1", "prod", 30, "secret"
    >>> identity(Fake())
    {'class': 'Fake', 'name': 'custom_vision', 'settings': {'iteration': 'prod', 'project_id': 'p1'}}
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["identity", "plain"]

#: Settings that change how fast an answer comes, never what it is.
_SPEED_ONLY = frozenset(
    {"timeout", "concurrency", "retry", "max_rps", "max_rpm", "max_tpm", "default_concurrency"}
)
_SECRET_WORDS = ("key", "credential", "token", "secret", "password")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data that is the same in every process (``None`` where it cannot be)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, tuple | list | frozenset | set):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    text = repr(value)
    return None if " at 0x" in text else text  # an address differs in every process: no identity


def identity(classifier: object) -> dict[str, Any]:
    """The backend, model and every public setting of ``classifier`` that can change an answer.

    Routers give their own (`Router.cache_identity`): their kind, settings and members' identities.
    Speed-only settings (timeouts, concurrency, rate limits, retries) and credentials are left out.
    """
    own = getattr(classifier, "cache_identity", None)
    if callable(own):
        return dict(own())
    settings = {
        name: plain(value)
        for name, value in sorted(vars(classifier).items())
        if not name.startswith("_")
        and name not in _SPEED_ONLY
        and not any(word in name.lower() for word in _SECRET_WORDS)
    }
    name = getattr(classifier, "name", None)
    return {
        "class": type(classifier).__name__,
        "name": name if isinstance(name, str) else type(classifier).__name__,
        "settings": settings,
    }
