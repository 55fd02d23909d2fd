"""The import's pacing window, kept in the state file so that a rerun stays within the quota.

The server counts what a killed import sent in the current window, the request that was in
flight included; a rerun that started with an empty window would send a whole quota at once
on top of it and earn a 429. So every grant of the local limiter is written to the state
file before its request goes (with the wall-clock time it was granted, and later the time it
was answered), and a resumed import counts the grants still inside the window before it
sends anything.

A grant whose answer never came was counted by the server at some moment between the grant
and the end of its request's timeout: a rerun counts it from the later of the two that has
passed. Only the local limiter is saved; a shared limiter (``--limiter``) keeps the window in
Redis already.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .._pipeline.limiter import LocalLimiter

__all__ = ["SavedPacing"]

#: [granted, answered or None, users, events]; times are wall-clock seconds (time.time()).
Grant = list[Any]


class SavedPacing:
    """A :class:`~moetrack._pipeline.limiter.Limiter`: the local limiter, each grant saved
    through ``save`` before its request goes, seeded from the grants a killed run saved."""

    def __init__(
        self,
        limiter: LocalLimiter,
        *,
        timeout: float,
        saved: Mapping[str, Any] | None,
        save: Callable[[dict[str, Any]], None],
    ) -> None:
        self._limiter = limiter
        self._window = max(limiter.users.window, limiter.events.window)
        self._timeout = timeout
        self._save = save
        self.grants: list[Grant] = []
        if saved:
            self._seed(saved.get("grants") or [])

    def _counted_at(self, grant: Grant, now: float) -> float:
        """When the server counted the grant, at the latest (wall clock)."""
        granted, answered = float(grant[0]), grant[1]
        if answered is not None:
            return float(answered)
        return min(now, granted + self._timeout)

    def _seed(self, grants: list[Grant]) -> None:
        now, mono = time.time(), time.monotonic()
        kept = []
        for grant in grants:
            stamp = self._counted_at(grant, now)
            if stamp > now - self._window:
                kept.append((stamp, grant))
        kept.sort(key=lambda pair: pair[0])
        for stamp, grant in kept:
            at = mono - (now - stamp)
            self._limiter.users.spend(int(grant[2]), at)
            self._limiter.events.spend(int(grant[3]), at)
            # Saved again as counted: a second kill still finds it.
            self.grants.append([stamp, stamp, int(grant[2]), int(grant[3])])

    # -- the Limiter protocol ------------------------------------------------------------------

    def acquire(self, users: int, events: int) -> float:
        wait = self._limiter.acquire(users, events)
        if wait > 0:
            return wait
        now = time.time()
        self.grants = [g for g in self.grants if self._counted_at(g, now) > now - self._window]
        self.grants.append([now, None, users, events])
        self._save(self.to_json())  # on disk before the request goes
        return 0.0

    def answered(self) -> None:
        self._limiter.answered()
        if self.grants and self.grants[-1][1] is None:
            self.grants[-1][1] = time.time()

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)

    def to_json(self) -> dict[str, Any]:
        return {"window": self._window, "grants": [list(g) for g in self.grants]}
