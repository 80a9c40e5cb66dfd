"""Settings resolution: explicit argument first, then the environment variable the Azure samples use.

Keys are wrapped in `Secret` at once, so they cannot leak through ``repr``, ``str`` or logs; a
service that quotes a key back (raw, ``repr``-escaped or URL-encoded) is masked by `redact`.

Example:
    >>> import os
    >>> os.environ["VISION_ENDPOINT"] = "https://example.cognitiveservices.azure.com/"
    >>> setting(None, arg="endpoint", env="VISION_ENDPOINT")
    'https://example.cognitiveservices.azure.com/'
"""

from __future__ import annotations

import json
import os
import unicodedata
import uuid
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from ._errors import ConfigurationError

__all__ = ["ENV", "Secret", "endpoint_setting", "redact", "secret_setting", "setting", "uuid_setting"]

#: The environment variables each backend reads, by argument name.
ENV: dict[str, dict[str, str]] = {
    "custom_vision": {
        "endpoint": "CUSTOM_VISION_PREDICTION_ENDPOINT",
        "key": "CUSTOM_VISION_PREDICTION_KEY",
        "project_id": "CUSTOM_VISION_PROJECT_ID",
        "iteration": "CUSTOM_VISION_ITERATION_NAME",
    },
    "custom_vision_training": {
        "endpoint": "CUSTOM_VISION_TRAINING_ENDPOINT",
        "key": "CUSTOM_VISION_TRAINING_KEY",
        "prediction_resource_id": "CUSTOM_VISION_PREDICTION_RESOURCE_ID",
    },
    "image_analysis": {"endpoint": "VISION_ENDPOINT", "key": "VISION_KEY"},
    "azure_ml": {
        "scoring_uri": "AZUREML_SCORING_URI",
        "key": "AZUREML_ENDPOINT_KEY",
        "deployment": "AZUREML_DEPLOYMENT",
        "subscription_id": "AZURE_SUBSCRIPTION_ID",
        "resource_group": "AZURE_RESOURCE_GROUP",
        "workspace": "AZUREML_WORKSPACE",
    },
    "azure_openai": {
        "endpoint": "AZURE_OPENAI_ENDPOINT",
        "key": "AZURE_OPENAI_API_KEY",
        "deployment": "AZURE_OPENAI_DEPLOYMENT",
        "api_version": "OPENAI_API_VERSION",
    },
    "onnx": {"model_path": "AZVISION_ONNX_MODEL_PATH", "labels_path": "AZVISION_ONNX_LABELS_PATH"},
}


class Secret:
    """A key or token that never shows itself: ``repr``/``str`` print ``'***'``; ``.get()`` reveals it.

    Surrounding whitespace is stripped (a key file saved with Windows line endings ends in ``\\r\\n``); any
    other control character is a `ConfigurationError` whose message does not show the key.

    Example:
        >>> s = Secret("abc123\\r\\n")
        >>> s, str(s), s.get()
        (Secret('***'), '***', 'abc123')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        bad = next((ch for ch in value if unicodedata.category(ch) in {"Cc", "Zl", "Zp"}), None)
        if bad is not None:
            raise ConfigurationError(
                f"the key or token contains the control character U+{ord(bad):04X}: copy it again from the "
                "portal (a key is letters and digits)"
            )
        self._value = value

    def forms(self) -> frozenset[str]:
        """Every way the secret may be quoted back in a message: raw, ``repr``/JSON-escaped, URL-encoded.

        Example:
            >>> sorted(Secret("a+b/c").forms())
            ['a%2Bb%2Fc', 'a%2Bb/c', 'a%2bb%2fc', 'a%2bb/c', 'a+b/c']
        """
        return _forms(self._value)

    def get(self) -> str:
        """The secret itself: pass it to the client, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def _forms(value: str) -> frozenset[str]:
    if not value:
        return frozenset()
    found = {value, repr(value)[1:-1], ascii(value)[1:-1], json.dumps(value)[1:-1]}
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)):
        found |= {encoded, _lower_hex(encoded)}
    return frozenset(found)


def _lower_hex(encoded: str) -> str:
    parts = encoded.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def redact(text: str, secrets: Iterable[Secret | str]) -> str:
    """``text`` with every form of every secret (see `Secret.forms`) replaced by ``***``.

    The one redaction function: backends apply it to error messages, the CLI to everything it prints.
    Plain strings are taken as given and stripped (a raw ``--key`` value may still end in ``\\r``).

    Example:
        >>> redact("denied for 'k3y\\\\r' (k3y%0D)", ["k3y\\r"])
        "denied for '***' (***)"
    """
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, Secret):
            forms |= secret.forms()
        else:
            forms |= _forms(secret) | _forms(secret.strip())
    for form in sorted((f for f in forms if len(f) >= 4), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _missing(arg: str, env: str | None) -> ConfigurationError:
    where = f" or set the environment variable {env}" if env else ""
    return ConfigurationError(f"missing {arg}: pass {arg}=...{where}")


def setting(value: str | None, *, arg: str, env: str | None, required: bool = True) -> str | None:
    """The explicit ``value`` if given, else the environment variable ``env``; error if required."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = (os.environ.get(env, "").strip() or None) if env else None
    if value is None and required:
        raise _missing(arg, env)
    return value


def secret_setting(
    value: str | Secret | None, *, arg: str, env: str | None, required: bool = True
) -> Secret | None:
    """Like `setting`, for keys: returns a `Secret`."""
    if isinstance(value, Secret):
        return value
    resolved = setting(value, arg=arg, env=env, required=required)
    if resolved is None:
        return None
    try:
        return Secret(resolved)
    except ConfigurationError as exc:
        where = f" (from {env})" if value is None and env else ""
        raise ConfigurationError(f"{arg}{where}: {exc.message}") from None


def endpoint_setting(value: str | None, *, arg: str, env: str | None) -> str:
    """An ``http(s)://host[:port][/path]`` URL without trailing slash; a clear error otherwise.

    Example:
        >>> endpoint_setting("https://x.cognitiveservices.azure.com/", arg="endpoint", env=None)
        'https://x.cognitiveservices.azure.com'
    """
    raw = setting(value, arg=arg, env=env)
    assert raw is not None
    text = raw.strip()
    where = f" (from {env})" if value is None and env else ""
    if "://" not in text:
        raise ConfigurationError(
            f"{arg}{where} must be a full URL with a scheme, e.g. https://{text.rstrip('/')}/ — got {text!r}"
        )
    scheme = text.split("://", 1)[0].lower()
    if scheme not in {"http", "https"}:
        raise ConfigurationError(f"{arg}{where} must start with https:// (or http:// for a local emulator)")
    import httpx

    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfigurationError(f"{arg}{where} is not a valid URL: {exc}") from exc
    if not url.host:
        raise ConfigurationError(f"{arg}{where} has no host: {text!r}")
    return text.rstrip("/")


def uuid_setting(value: str | None, *, arg: str, env: str | None) -> str:
    """A UUID string (Custom Vision project ids are UUIDs); a clear error otherwise."""
    raw = setting(value, arg=arg, env=env)
    assert raw is not None
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError as exc:
        where = f" (from {env})" if value is None and env else ""
        raise ConfigurationError(
            f"{arg}{where} must be a UUID like 0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b, got {raw!r}"
        ) from exc
