"""``with`` and ``async with`` for everything that holds connections: backends and routers alike.

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

from types import TracebackType

from typing_extensions import Self

__all__ = ["Closing"]


class Closing:
    """Context-manager methods over ``close`` / ``aclose``, which the subclass defines."""

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
