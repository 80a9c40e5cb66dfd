"""Downloading an image URL, for backends that cannot take URLs: a total deadline, a size cap, typed errors.

Example:
    >>> fetch_url("file:///etc/passwd")
    Traceback (most recent call last):
    ...
    azvision._errors.InvalidImageError: unsupported URL scheme 'file': only http:// and https:// image \
URLs can be sent (for a local file pass its path instead)
"""

from __future__ import annotations

import threading
import time

from ._errors import BackendTimeoutError, InvalidImageError

__all__ = ["DEFAULT_MAX_DOWNLOAD_BYTES", "fetch_url", "is_url", "validate_url"]

_MB = 1024 * 1024
#: What `fetch_url` downloads at most unless told otherwise.
DEFAULT_MAX_DOWNLOAD_BYTES = 50 * _MB


def _too_big(size: int, cap: int, url: str) -> InvalidImageError:
    return InvalidImageError(
        f"the image at the URL is {size / _MB:.1f} MB; azvision reads at most {cap / _MB:g} MB as one image",
        source=url,
    )


def _timed_out(timeout: float, url: str) -> BackendTimeoutError:
    return BackendTimeoutError(
        f"the image download did not finish within the {timeout:g} s timeout", source=url
    )


def is_url(text: str) -> bool:
    """Whether ``text`` looks like a URL (a scheme in its first characters), not a path.

    Example:
        >>> is_url("https://example.com/cat.jpg"), is_url("photos/cat.jpg")
        (True, False)
    """
    return "://" in text[:16]


def validate_url(url: str) -> str:
    """``url`` itself when it is a well-formed ``http(s)://`` URL; `InvalidImageError` otherwise.

    Example:
        >>> validate_url("https://example.com/cat.jpg")
        'https://example.com/cat.jpg'
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in {"http", "https"}:
        raise InvalidImageError(
            f"unsupported URL scheme {scheme!r}: only http:// and https:// image URLs can be sent "
            "(for a local file pass its path instead)",
            source=url,
        )
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidImageError(f"malformed image URL: {exc}", source=url) from exc
    if not parsed.host:
        raise InvalidImageError("malformed image URL: it has no host", source=url)
    return url


def fetch_url(url: str, *, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES, timeout: float = 30.0) -> bytes:
    """Download an image URL (for backends that cannot take URLs) within ``timeout`` seconds in all.

    ``timeout`` bounds the whole download, however slowly the server trickles bytes; past it,
    `BackendTimeoutError`. A body over ``max_bytes`` (announced or sent), an HTTP error or a failed
    connection is an `InvalidImageError`.

    Example:
        >>> fetch_url("ftp://example.com/cat.jpg")
        Traceback (most recent call last):
        ...
        azvision._errors.InvalidImageError: unsupported URL scheme 'ftp': only http:// and https:// image \
URLs can be sent (for a local file pass its path instead)
    """
    validate_url(url)
    deadline = time.monotonic() + timeout
    outcome: list[bytes | BaseException] = []

    def download() -> None:
        try:
            outcome.append(_download(url, max_bytes, timeout, deadline))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            outcome.append(exc)

    # The read timeout alone cannot bound the total (each trickled byte resets it), and a blocked read
    # cannot be interrupted, so the caller waits on a worker for at most the deadline. A worker left
    # behind stops at its next chunk or read timeout, whichever comes first.
    worker = threading.Thread(target=download, name="azvision-fetch", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise _timed_out(timeout, url)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _download(url: str, max_bytes: int, timeout: float, deadline: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise InvalidImageError(
                    f"could not download the image: the server answered HTTP {resp.status_code}",
                    source=url,
                    status_code=resp.status_code,
                )
            announced = resp.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > max_bytes:
                raise _too_big(int(announced), max_bytes, url)
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise _too_big(total, max_bytes, url)
                if time.monotonic() > deadline:
                    raise _timed_out(timeout, url)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException as exc:
        raise _timed_out(timeout, url) from exc
    except httpx.HTTPError as exc:
        raise InvalidImageError(f"could not download the image: {exc}", source=url) from exc
