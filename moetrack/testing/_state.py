"""What the emulator remembers: accepted users, devices and events per app, the elements Bulk
Import dropped, the rate-limit windows, and the faults a test asked for.

Nothing here locks: the :class:`~moetrack.testing.Emulator` holds its one lock around every
call into these objects.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._checks import ErrorRow, Problem, error_row_for_status

__all__ = [
    "AppState",
    "Decision",
    "Faults",
    "RetryAfter",
    "SlidingWindow",
    "format_retry_after",
]

#: A Retry-After value as a test gives it: seconds, or a ready-made header value (HTTP date).
RetryAfter = float | str | None

#: The event fields the emulator keeps, in the order of the Event API's table.
EVENT_FIELDS = (
    "action",
    "attributes",
    "platform",
    "app_version",
    "current_time",
    "user_time",
    "user_timezone_offset",
)


def format_retry_after(value: RetryAfter) -> str | None:
    """The header value: whole seconds as digits, a fraction as given, a string verbatim."""
    if value is None or isinstance(value, str):
        return value
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


class SlidingWindow:
    """How many users (or events) were accepted in the last ``window`` seconds.

    "1,000 users per min", "10,000 events/min": the page gives a count per minute and no
    more. The emulator reads it as a sliding minute (at no moment may the last ``window``
    seconds hold more than the limit), the strictest reading, so a client that passes it
    also passes a server counting whole clock minutes.

    Kept as a log of running totals: ``_times[i]`` is when a request was accepted and
    ``_totals[i]`` how many units had been accepted up to and including it, so the units in
    any stretch of time are a difference of two totals found by bisection.
    """

    def __init__(self) -> None:
        self._times: list[float] = []
        self._totals: list[int] = []
        self._expired_total = 0  # the running total when the last forgotten entry was made

    def _forget(self, now: float, window: float) -> None:
        """Drop the entries made ``window`` or more seconds before ``now``."""
        gone = bisect.bisect_right(self._times, now - window)
        if gone:
            self._expired_total = self._totals[gone - 1]
            del self._times[:gone], self._totals[:gone]

    def used(self, now: float, window: float) -> int:
        self._forget(now, window)
        return (self._totals[-1] if self._totals else self._expired_total) - self._expired_total

    def wait_for_room(self, now: float, window: float, count: int, limit: int) -> float | None:
        """Seconds until ``count`` more fit under ``limit``; None when they fit now."""
        if count == 0 or self.used(now, window) + count <= limit:
            return None
        if count > limit:  # never fits; come back after a full window
            return window
        # Room for ``count`` once the units left in the window are at most limit - count,
        # i.e. once every entry up to the first whose total reaches ``needed`` has expired.
        needed = self._totals[-1] - (limit - count)
        first = bisect.bisect_left(self._totals, needed)
        return self._times[first] + window - now

    def add(self, now: float, count: int) -> None:
        if count:
            previous = self._totals[-1] if self._totals else self._expired_total
            self._times.append(now)
            self._totals.append(previous + count)

    def clear(self) -> None:
        self._times.clear()
        self._totals.clear()
        self._expired_total = 0


class AppState:
    """One app: its credentials and account state, and everything it accepted."""

    def __init__(self, app_id: str, api_key: str | None, state: str) -> None:
        self.app_id = app_id
        self.api_key = api_key
        self.state = state
        #: the state the app was declared with; reset() returns to it
        self.declared_state = state
        self.users: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.users_window = SlidingWindow()
        self.events_window = SlidingWindow()

    def clear(self) -> None:
        self.state = self.declared_state
        self.users.clear()
        self.devices.clear()
        self.events.clear()
        self.dropped.clear()
        self.users_window.clear()
        self.events_window.clear()

    def drop(self, endpoint: str, index: int, problem: Problem, element: Any) -> None:
        self.dropped.append(
            {
                "endpoint": endpoint,
                "index": index,
                "reason": problem.reason,
                "field": problem.field,
                "element": element,
            }
        )

    def store(self, element: dict[str, Any], skip_actions: frozenset[int] = frozenset()) -> None:
        """Keep a checked element: merge a user or device, append an event per action."""
        kind = element["type"]
        customer_id: str = element["customer_id"]
        user = self.users.setdefault(customer_id, {})
        if kind == "customer":
            user.update(element.get("attributes") or {})
            return
        if kind == "device":
            device_id = element.get("device_id") or str(uuid.uuid4())
            device = self.devices.setdefault(
                device_id, {"customer_id": customer_id, "attributes": {}}
            )
            device["customer_id"] = customer_id
            device["attributes"].update(element.get("attributes") or {})
            return
        device_id = element.get("device_id") or customer_id
        for i, action in enumerate(element["actions"]):
            if i not in skip_actions:
                event: dict[str, Any] = {"customer_id": customer_id, "device_id": device_id}
                event.update((key, action.get(key)) for key in EVENT_FIELDS)
                self.events.append(event)


@dataclass
class Decision:
    """What the faults make of one request."""

    drop: bool = False
    fail: ErrorRow | None = None
    retry_after: RetryAfter = None
    delay: float = 0.0


@dataclass
class Faults:
    """The faults a test asked for; :meth:`take` spends them one request at a time."""

    body_limit: int
    fail_count: int = 0
    fail_status: int = 503
    fail_retry_after: RetryAfter = None
    fail_until: float = -math.inf
    fail_until_status: int = 503
    fail_until_retry_after: RetryAfter = None
    delay_seconds: float = 0.0
    #: requests left to delay; None delays every request until cleared
    delay_count: int | None = None
    drop_count: int = 0
    paused: bool = False
    #: Emulator.refuse_elements: which elements make a request refused, and with what message.
    refuse_match: Callable[[dict[str, Any]], bool] | None = None
    refuse_message: str = ""

    def take(self, now: float) -> Decision:
        decision = Decision()
        if self.drop_count > 0:
            self.drop_count -= 1
            decision.drop = True
            return decision
        if self.fail_count > 0:
            self.fail_count -= 1
            decision.fail = error_row_for_status(self.fail_status)
            decision.retry_after = self.fail_retry_after
        elif now < self.fail_until:
            decision.fail = error_row_for_status(self.fail_until_status)
            decision.retry_after = self.fail_until_retry_after
        if self.delay_seconds > 0 and (self.delay_count is None or self.delay_count > 0):
            decision.delay = self.delay_seconds
            if self.delay_count is not None:
                self.delay_count -= 1
        return decision
