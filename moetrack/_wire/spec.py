"""Facts of the MoEngage Data API that both the client and the emulator rely on.

Everything here is taken from the vendor's Data API page (``shared/MOENGAGE_DATA_API.md``
digests it). Keep this module free of behaviour: constants only, so the client's rules and
the emulator's checks can be read side by side against one list.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "API_KEY_HEADER",
    "DATA_CENTER_HOSTS",
    "DEVICE_PLATFORMS",
    "ELEMENT_TYPES",
    "ENDPOINT_TYPES",
    "EVENTS_PER_MINUTE",
    "EVENT_PLATFORMS",
    "FORBIDDEN_CUSTOMER_IDS",
    "LEGACY_HOSTS",
    "MAX_BODY_BYTES",
    "MAX_TIMEZONE_OFFSET",
    "RESERVED_EVENT_NAMES",
    "RESERVED_USER_NAMES",
    "SERVER_BODY_LIMIT",
    "USERS_PER_MINUTE",
]

#: New hosts per data center (``data_center="01"`` …).
DATA_CENTER_HOSTS: Final = {
    "01": "https://api-01.moengage.com",
    "02": "https://api-02.moengage.com",
    "03": "https://api-03.moengage.com",
}
#: Old hosts, still served; usable through ``endpoint=``.
LEGACY_HOSTS: Final = (
    "https://api.moengage.com",
    "https://api-eu.moengage.com",
    "https://api-serv3.moengage.com",
)

#: path segment -> the body ``type`` that endpoint takes.
ENDPOINT_TYPES: Final = {
    "customer": "customer",
    "device": "device",
    "event": "event",
    "transition": "transition",
}
#: element types a ``transition`` body may carry.
ELEMENT_TYPES: Final = frozenset({"customer", "device", "event"})

#: The documented request-body limit the client stays under ("at most 100 KB").
MAX_BODY_BYTES: Final = 100_000
#: What the server's 413 message names ("The payload can not exceed 128KB").
SERVER_BODY_LIMIT: Final = 128 * 1024

API_KEY_HEADER: Final = "MOE-APPKEY"

#: customer_id values the API refuses, compared after trimming, case-insensitively.
FORBIDDEN_CUSTOMER_IDS: Final = frozenset(
    {
        "unknown",
        "guest",
        "null",
        "0",
        "1",
        "true",
        "false",
        "user_attribute_unique_id",
        "(empty)",
        "na",
        "n/a",
        "",
        "dummy_seller_code",
        "user_id",
        "id",
        "customer_id",
        "uid",
        "userid",
        "none",
        "-2",
        "-1",
        "2",
    }
)

#: Reserved attribute names of user and device elements.
RESERVED_USER_NAMES: Final = frozenset({"id", "_id", ""})
#: Reserved event names and event attribute names.
RESERVED_EVENT_NAMES: Final = frozenset({"id", "_id", "userId", ""})

#: lower-case spelling -> canonical spelling.
EVENT_PLATFORMS: Final = {"android": "ANDROID", "ios": "iOS", "web": "web", "unknown": "unknown"}
DEVICE_PLATFORMS: Final = {"android": "ANDROID", "ios": "iOS", "web": "web"}

#: user_timezone_offset is seconds in [-54000, 54000] (UTC-15:00 … UTC+15:00).
MAX_TIMEZONE_OFFSET: Final = 54_000

#: Documented rate limits (User and Bulk Import: users; Event and Bulk Import: events).
USERS_PER_MINUTE: Final = 1_000
EVENTS_PER_MINUTE: Final = 10_000
