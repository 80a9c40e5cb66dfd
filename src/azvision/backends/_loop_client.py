"""A backend's async client: one slot, bound to the event loop that opened it.

Async connections belong to the event loop that opened them, and a closed loop cannot close them. So a
backend keeps one async client and the loop it was made in; a call from another loop (``asyncio.run``
called again) gets a fresh client. The displaced one is dropped, never closed from here: its loop is
usually gone, and if it still runs, requests of that loop may be in flight on it.

Example:
    >>> import asyncio
    >>> slot = LoopClient(lambda: object(), close=lambda client: asyncio.sleep(0))
    >>> async def same() -> bool:
    ...     return slot.get() is slot.get()
    >>> asyncio.run(same())
    True
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopClient"]

C = TypeVar("C")


class LoopClient(Generic[C]):
    """The async client of the event loop that last asked for one (``factory`` makes it, ``close`` ends it).

    Example:
        >>> import httpx
        >>> slot = LoopClient(httpx.AsyncClient, close=lambda client: client.aclose())
        >>> slot.loop is None
        True
    """

    def __init__(self, factory: Callable[[], C], *, close: Callable[[C], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._held: tuple[asyncio.AbstractEventLoop, C] | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the held client belongs to (``None``: no client yet)."""
        held = self._held
        return held[0] if held is not None else None

    def get(self) -> C:
        """The running loop's client, made on first use in that loop (call from inside the loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._held is None or self._held[0] is not loop:
                self._held = (loop, self._factory())
            return self._held[1]

    def _take(self) -> tuple[asyncio.AbstractEventLoop, C] | None:
        with self._lock:
            held, self._held = self._held, None
        return held

    async def aclose(self) -> None:
        """Close the client if it belongs to the running loop (else just forget it)."""
        held = self._take()
        if held is not None and held[0] is asyncio.get_running_loop():
            await self._close(held[1])

    def close(self) -> None:
        """From outside the loop: ask a still-running loop to close its client; forget it either way."""
        held = self._take()
        if held is not None and held[0].is_running() and not held[0].is_closed():
            asyncio.run_coroutine_threadsafe(_awaited(self._close(held[1])), held[0])


async def _awaited(pending: Awaitable[object]) -> object:
    return await pending
