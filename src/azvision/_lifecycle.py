"""``with`` and ``async with``, the worker pool and the closed flag, for everything that holds connections:
backends and routers alike.

Example:
    >>> class Client(Closing):
    ...     closed = False
    ...     def close(self) -> None:
    ...         self.closed = True
    ...     async def aclose(self) -> None:
    ...         self.close()
    >>> with Client() as client:
    ...     pass
    >>> client.closed
    True
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from typing_extensions import Self

__all__ = ["Closing"]


class Closing:
    """Context-manager methods over ``close`` / ``aclose``, which the subclass defines, plus the lazily
    started worker pool and the closed flag both kinds of classifier share (`_open_state` sets them up)."""

    _executor: ThreadPoolExecutor | None = None
    _closed: bool = False

    def _open_state(self, thread_label: str) -> None:
        self._executor = None
        self._executor_lock = threading.Lock()
        self._thread_label = thread_label
        self._closed = False

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=64, thread_name_prefix=f"azvision-{self._thread_label}"
                )
            return self._executor

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    def _stop_pool(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Release what the object holds. Idempotent."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Async `close`."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
