"""Mirrors that missed a commit: the ids whose Redis state fell behind PostgreSQL because
Redis refused or was away when the change committed, reloaded later (each sweep)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions


class StaleMirrors:
    def __init__(self) -> None:
        self._ids: set[str] = set()

    def mark(self, id_: str) -> None:
        self._ids.add(id_)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._ids

    async def reload(self, load: Callable[[str], Awaitable[Any]]) -> int:
        """Reloads each id with `load`; returns how many. Each leaves the set before its
        reload, so a miss meanwhile puts it back; Redis still away stops the pass (the next
        sweep tries again)."""
        reloaded = 0
        for id_ in list(self._ids):
            self._ids.discard(id_)
            try:
                await load(id_)
            except redis.exceptions.RedisError:
                self._ids.add(id_)
                break
            reloaded += 1
        return reloaded
