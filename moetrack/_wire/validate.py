"""The Data API's rules (DESIGN §3) as plain functions that name the field and the rule.

Each function returns the value as it goes on the wire, or raises
:class:`~moetrack.ValidationError` with the field's dotted path, the rule in words and the
reason it is counted under. The Bulk Import API answers 200 even when it drops an element,
so these checks run on the client, where a bad element can still be reported.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from datetime import date, datetime

from .._exceptions import ValidationError
from . import spec as _spec

__all__ = [
    "attributes",
    "customer_id",
    "device_platform",
    "event_name",
    "event_platform",
    "is_iso8601",
    "iso_utc",
    "timestamp",
    "timezone_offset",
    "value",
]


# uuid, decimal and datetime are not imported here: a value can only be an instance of one of
# their classes if its module is loaded already, so looking in sys.modules is enough and
# ``import moetrack`` does not pay for them.
def _is_uuid(v: Any) -> bool:
    module = sys.modules.get("uuid")
    return module is not None and isinstance(v, module.UUID)


def _is_datetime(v: Any) -> TypeGuard[datetime]:
    module = sys.modules.get("datetime")
    return module is not None and isinstance(v, module.datetime)


def _is_date(v: Any) -> TypeGuard[date]:
    module = sys.modules.get("datetime")
    return module is not None and isinstance(v, module.date)


def _is_decimal(v: Any) -> bool:
    module = sys.modules.get("decimal")
    return module is not None and isinstance(v, module.Decimal)


#: Deepest nesting of lists and dicts in one attribute value (also stops cycles).
MAX_DEPTH = 16


def customer_id(value: Any, field: str = "customer_id") -> str:
    """A string of more than one character that is not a forbidden value; ints become str."""
    if value is None:
        raise ValidationError(
            field, "is required (bind one with moetrack.context or pass it)", "no_customer_id"
        )
    if (isinstance(value, int) and not isinstance(value, bool)) or _is_uuid(value):
        value = str(value)
    if not isinstance(value, str):
        raise ValidationError(
            field,
            f"must be a string or an integer, got {type(value).__name__}",
            "invalid_customer_id",
        )
    _utf8(value, field)
    trimmed = value.strip()
    if len(trimmed) <= 1:
        raise ValidationError(
            field,
            f"must be longer than one character, got {value!r} (single digits such as small "
            "primary keys are not accepted; use a stable unique identifier)",
            "invalid_customer_id",
        )
    if trimmed.lower() in _spec.FORBIDDEN_CUSTOMER_IDS:
        raise ValidationError(
            field,
            f"{value!r} is one of the customer_id values the API forbids",
            "invalid_customer_id",
        )
    return value


def device_id(value: Any, field: str = "device_id") -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if _is_uuid(value):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string", "invalid_device_id")
    _utf8(value, field)
    return value


def event_name(value: Any, field: str = "action") -> str:
    if not isinstance(value, str):
        raise ValidationError(
            field,
            f"the event name must be a string, got {type(value).__name__}",
            "invalid_event_name",
        )
    if value in _spec.RESERVED_EVENT_NAMES or not value.strip():
        raise ValidationError(
            field, f"{value!r} is reserved or empty (reserved: id, _id, userId)", "reserved_name"
        )
    _utf8(value, field)
    return value


def event_platform(value: Any, field: str = "platform") -> str:
    """ANDROID, iOS, web or unknown, in any case; sent in the canonical spelling."""
    canonical = _spec.EVENT_PLATFORMS.get(value.lower()) if isinstance(value, str) else None
    if canonical is None:
        raise ValidationError(
            field, f"must be one of ANDROID, iOS, web, unknown, got {value!r}", "invalid_platform"
        )
    return canonical


def device_platform(value: Any, field: str = "attributes.platform") -> str:
    """ANDROID, iOS or web, in any case; sent in the canonical spelling."""
    if value is None:
        raise ValidationError(
            field, "is required for a device (ANDROID, iOS or web)", "invalid_device"
        )
    canonical = _spec.DEVICE_PLATFORMS.get(value.lower()) if isinstance(value, str) else None
    if canonical is None:
        raise ValidationError(
            field, f"must be one of ANDROID, iOS, web, got {value!r}", "invalid_platform"
        )
    return canonical


def timezone_offset(value: Any, field: str = "user_timezone_offset") -> int:
    """Whole seconds in [-54000, 54000], e.g. 19800 for UTC+05:30."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            field, f"must be an integer number of seconds, got {value!r}", "invalid_timezone_offset"
        )
    if not -_spec.MAX_TIMEZONE_OFFSET <= value <= _spec.MAX_TIMEZONE_OFFSET:
        raise ValidationError(
            field,
            f"must be between -54000 and 54000 seconds, got {value}",
            "invalid_timezone_offset",
        )
    return value


def iso_utc(value: datetime | date) -> str:
    """ISO 8601 in UTC with ``Z``; naive datetimes are taken as UTC; dates stay dates."""
    if _is_datetime(value):
        if value.tzinfo is not None:
            from datetime import timezone

            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    return value.isoformat()


def timestamp(value: Any, field: str) -> int | float | str:
    """Epoch seconds (a finite, non-negative number) or an ISO 8601 string."""
    if _is_datetime(value):
        try:
            return iso_utc(value)
        except (OverflowError, ValueError):  # an aware datetime near year 1 or 9999
            raise ValidationError(
                field, f"{value} cannot be expressed in UTC", "invalid_time"
            ) from None
    if isinstance(value, bool):
        raise ValidationError(
            field, "must be epoch seconds or ISO 8601, got a bool", "invalid_time"
        )
    if isinstance(value, int):
        if not 0 <= value <= INT_MAX:  # beyond 64 bits orjson cannot encode it
            shown = value if INT_MIN <= value < 0 else "a number beyond 64 bits"
            raise ValidationError(
                field, f"epoch seconds must be >= 0 and fit in 64 bits, got {shown}", "invalid_time"
            )
        return value
    if isinstance(value, float):
        # An integral float goes as the int it equals, so it must fit in 64 bits too.
        if not math.isfinite(value) or not 0 <= value <= INT_MAX:
            raise ValidationError(
                field,
                f"epoch seconds must be finite, >= 0 and fit in 64 bits, got {value}",
                "invalid_time",
            )
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        if not is_iso8601(value):
            raise ValidationError(
                field, f"must be epoch seconds or ISO 8601, got {value!r}", "invalid_time"
            )
        return value
    raise ValidationError(
        field, f"must be epoch seconds or ISO 8601, got {type(value).__name__}", "invalid_time"
    )


_ISO8601 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d{1,9})?)?"
    r"(?P<tz>[Zz]|[+-](?P<tzh>\d{2})(?::?(?P<tzm>\d{2}))?)?)?",
    re.ASCII,  # \d is 0-9 only: other scripts' digits do not make an ISO 8601 date
)


def is_iso8601(text: str) -> bool:
    """ISO 8601 as the API takes it: a calendar date, optionally with a time and a UTC
    offset (``2020-05-31T16:33:35Z``)."""
    m = _ISO8601.fullmatch(text)
    if m is None:
        return False
    from datetime import datetime  # only for strings that look like a date

    try:
        datetime(
            int(m["y"]),
            int(m["mo"]),
            int(m["d"]),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
        )
    except ValueError:
        return False
    return int(m["tzh"] or 0) <= 23 and int(m["tzm"] or 0) <= 59


def _utf8(text: str, field: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                field, "must be valid UTF-8 text (it holds a lone surrogate)", "invalid_value"
            ) from None


_SCALARS = (str, int, float, bool, type(None))


#: JSON integers are sent as 64-bit signed numbers: orjson refuses larger ones (the stdlib
#: encoder does not), so the rule is checked here, the same with either encoder.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _int64(v: int, field: str) -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise ValidationError(
            field, "must fit in a signed 64-bit integer (send a string instead)", "invalid_value"
        )
    return v


def _finite(v: float, field: str) -> float:
    if not math.isfinite(v):
        raise ValidationError(field, f"must be a finite number (JSON has no {v})", "invalid_value")
    return v


def value(v: Any, field: str, depth: int = 0) -> Any:
    """One attribute value as JSON-native data, or a ValidationError naming ``field``."""
    t = type(v)
    if t is str:
        _utf8(v, field)
        return v
    if t is bool or v is None:
        return v
    if t is int:
        return _int64(v, field)
    if t is float:
        return _finite(v, field)
    if depth >= MAX_DEPTH:
        raise ValidationError(
            field, f"nests deeper than {MAX_DEPTH} levels (or is cyclic)", "invalid_value"
        )
    try:
        return _other(v, t, field, depth)
    except ValidationError:
        raise
    except Exception as exc:
        # Values this function reads run code of their own (a Mapping's items(), an Enum's
        # value, a datetime's offset: an aware datetime near year 1 overflows going to UTC).
        # Whatever that raises is this field's problem, not a failure of the whole worker.
        raise ValidationError(field, f"could not be converted: {exc!r}", "invalid_value") from None


def _other(v: Any, t: type, field: str, depth: int) -> Any:
    if isinstance(v, Mapping):
        out = {}
        for k, item in v.items():
            if not isinstance(k, str):
                raise ValidationError(
                    field,
                    f"has a key {k!r} of type {type(k).__name__}; keys must be strings",
                    "invalid_value",
                )
            _utf8(k, field)
            out[k] = value(item, f"{field}.{k}", depth + 1)
        return out
    if isinstance(v, list | tuple):
        return [value(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(v)]
    if isinstance(v, enum.Enum):
        return value(v.value, field, depth + 1)
    if isinstance(v, bool | int | str):  # subclasses of the scalars; Enums are handled above
        return value(_base_scalar(v), field, depth)
    if isinstance(v, float):
        return value(float(v), field, depth)
    if _is_date(v):  # datetime is a date too
        return iso_utc(v)
    if _is_decimal(v):
        if not v.is_finite():
            raise ValidationError(
                field, f"must be a finite number (JSON has no {v})", "invalid_value"
            )
        if v == v.to_integral_value():
            # At 1e19 and over it cannot fit: refuse before int() builds the number, which for
            # Decimal("1e9999999") took minutes and stalled the worker.
            return _int64(int(v) if v.adjusted() <= 18 else INT_MAX + 1, field)
        number = float(v)
        if not math.isfinite(number):  # beyond the float range: orjson would send null
            raise ValidationError(
                field, "is too large for a JSON number (send a string instead)", "invalid_value"
            )
        return number
    if _is_uuid(v):
        return str(v)
    raise ValidationError(
        field,
        f"has a value of type {t.__name__}; allowed: str, int, float, bool, None, date, datetime, "
        "Decimal, UUID, Enum and lists/dicts of these",
        "invalid_value",
    )


def _base_scalar(v: bool | int | str) -> bool | int | str:
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    return str(v)


def attributes(
    attrs: Mapping[str, Any], reserved: frozenset[str], field: str = "attributes"
) -> dict[str, Any]:
    """Check names against ``reserved`` and every value; return the wire form."""
    out: dict[str, Any] = {}
    for name, v in attrs.items():
        if type(name) is not str or name in reserved or not name.isascii() or name.isspace():
            _check_name(name, reserved, field)
        # Fast path for the common scalars; the field path is built only when needed.
        # (An int beyond 64 bits, or a float that is not finite - inf - inf and nan - nan are
        # nan - goes to value(), which refuses it.)
        t = type(v)
        if (
            (t is str and v.isascii())
            or t is bool
            or v is None
            or (t is int and INT_MIN <= v <= INT_MAX)
            or (t is float and v - v == 0.0)
        ):
            out[name] = v
        else:
            out[name] = value(v, f"{field}.{name}")
    return out


def _check_name(name: Any, reserved: frozenset[str], field: str) -> None:
    if not isinstance(name, str):
        raise ValidationError(
            f"{field}[{name!r}]", "attribute names must be strings", "invalid_attribute_name"
        )
    if name in reserved or not name.strip():
        raise ValidationError(
            f"{field}.{name}" if name else field,
            f"the attribute name {name!r} is reserved or empty",
            "reserved_name",
        )
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            # Unchecked, it failed only in the encoder, as an unnamed "error".
            raise ValidationError(
                f"{field}[{name!r}]",
                "attribute names must be valid UTF-8 text (this one holds a lone surrogate)",
                "invalid_attribute_name",
            ) from None
