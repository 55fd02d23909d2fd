"""When to try a request again: capped exponential backoff with jitter, and Retry-After.

``RetryPolicy`` is immutable and can be shared; the worker asks it for the delay before
attempt ``n`` and whether a batch's retry deadline has passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import random

__all__ = ["RETRY_STATUSES", "RetryPolicy"]

#: Statuses worth sending again (DESIGN §4); 413 is handled by splitting instead.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy(NamedTuple):
    """Backoff of ``backoff * 2**attempt`` seconds, capped at ``backoff_max``, jittered."""

    backoff: float = 0.5
    backoff_max: float = 30.0
    deadline: float = 300.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry).

        A server's ``Retry-After`` is honoured as given (the worker still never waits past the
        batch's deadline); otherwise "equal jitter": half the capped backoff plus a random
        part of the other half, so retries spread out but never come back at once.
        """
        if retry_after is not None and retry_after >= 0:
            return retry_after
        capped = min(self.backoff_max, self.backoff * (2 ** min(attempt, 32)))
        if rng is None:
            import random

            uniform = random.uniform
        else:
            uniform = rng.uniform
        return float(capped / 2 + uniform(0, capped / 2))

    @staticmethod
    def is_retryable(status: int) -> bool:
        return status in RETRY_STATUSES or status >= 500
