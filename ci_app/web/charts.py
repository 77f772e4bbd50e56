"""Rendered chart PNGs, cached per (chart, repository, latest run state).

A chart costs ~0.1-0.2 s of CPU (the report is built, matplotlib draws); the dashboard may be
open to anyone. So each PNG is rendered once per state of its repository's latest run and
then served from memory; renders (cache misses) are rate limited per client address.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from ci_app.web.security import RateLimiter

__all__ = ["ChartCache"]


class ChartCache:
    """A bounded LRU of PNG bytes with their ETag, and the per-address render limiter."""

    def __init__(self, limiter: RateLimiter, *, max_entries: int = 256) -> None:
        self.limiter = limiter
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0

    def get(self, key: Hashable) -> tuple[bytes, str] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def render(self, key: Hashable, client: str, make: Callable[[], bytes]) -> tuple[bytes, str]:
        """The cached PNG for ``key``, else ``make()`` it (charged to ``client``'s budget;
        :class:`RenderLimited` when it is spent)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        allowed, wait = self.limiter.allow(client, time.monotonic())
        if not allowed:
            raise RenderLimitedError(wait)
        png = make()
        etag = '"' + hashlib.sha256(png).hexdigest()[:32] + '"'
        with self._lock:
            self.renders += 1
            self._items[key] = (png, etag)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return png, etag


class RenderLimitedError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("chart render rate limit exceeded")
        self.retry_after = retry_after
