"""When to try again: capped exponential backoff with jitter, and Retry-After.

``RetryPolicy`` is immutable and can be shared; the worker asks it for the delay before
attempt ``n`` and whether a batch's retry deadline has passed. Loops that wait for a service
to come back (the backlog writer and the relay waiting for Redis) use its plain ``step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import random

__all__ = ["RETRY_STATUSES", "RetryPolicy"]

#: Statuses worth sending again: the request may succeed later unchanged. Every other 5xx is
#: retried too, except 501 and 505, which say the server will never do it. Any other 4xx is
#: permanent; 413 is handled by splitting instead.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
NEVER_STATUSES = frozenset({501, 505})


class RetryPolicy(NamedTuple):
    """Backoff of ``backoff * 2**attempt`` seconds, capped at ``backoff_max``, jittered."""

    backoff: float = 0.5
    backoff_max: float = 30.0
    deadline: float = 300.0

    def step(self, attempt: int) -> float:
        """The capped backoff before retry number ``attempt`` (0 for the first), no jitter:
        ``backoff * 2**attempt``, at most ``backoff_max``."""
        return float(min(self.backoff_max, self.backoff * (2 ** min(attempt, 32))))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry).

        The backoff step is "equal jitter": half the capped backoff plus a random part of the
        other half, so retries spread out but never come back at once. With ``retry_after``,
        the longer of the two. (The sender passes none: it waits a server's ``Retry-After``
        exactly, without growing the exponent, and uses this step for every other failure.)
        """
        capped = self.step(attempt)
        if rng is None:
            import random

            uniform = random.uniform
        else:
            uniform = rng.uniform
        step = float(capped / 2 + uniform(0, capped / 2))
        if retry_after is not None and retry_after > step:
            return float(retry_after)
        return step

    @staticmethod
    def is_retryable(status: int) -> bool:
        return status in RETRY_STATUSES or (status >= 500 and status not in NEVER_STATUSES)
