"""Closing a `requests.Session` so that its sockets really close, now rather than at garbage collection.

Since urllib3 2.x, `PoolManager.clear()` (what `Session.close()` calls) forgets its connection pools
without closing them: their idle keep-alive sockets stay open until the pools are garbage collected, which
for the vendor SDKs' reference cycles means "some time later". `close_session` closes every pool first.

Example:
    >>> import requests
    >>> close_session(requests.Session())
"""

from __future__ import annotations

from typing import Any

__all__ = ["close_session"]


def close_session(session: Any) -> None:
    """Close every pooled connection of `session`'s adapters, then the session. Idempotent."""
    for adapter in list(getattr(session, "adapters", {}).values()):
        managers = [getattr(adapter, "poolmanager", None), *getattr(adapter, "proxy_manager", {}).values()]
        for manager in managers:
            pools: Any = getattr(manager, "pools", None)
            if pools is None:
                continue
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    session.close()
