"""What the framework integrations share: turning "the current user" into a customer id.

Every integration binds ``customer_id`` to a zero-argument callable, so the user is looked up
only when something is tracked. The callable ends in :func:`checked_customer_id`, which
converts a valid id to the string that goes on the wire and, for an id the Data API would
refuse (a one-character primary key such as ``1``, or a forbidden value such as ``"guest"``),
logs one warning per user that names the rule, then hands the id on unchanged so the client
drops the record as ``invalid_customer_id`` (counted in ``Client.stats().dropped``).

Nothing here imports a framework.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from moetrack._exceptions import ValidationError
from moetrack._wire import validate as _validate

__all__ = ["checked_customer_id", "forget_warnings", "id_getter", "import_dotted", "logger"]

logger = logging.getLogger("moetrack")

#: How many offending ids are remembered (so each is reported once); the oldest is forgotten
#: first, which at worst repeats one warning.
MAX_REMEMBERED = 10_000

_warned: OrderedDict[tuple[str, str], None] = OrderedDict()
_warned_lock = threading.Lock()


def _first_warning(key: tuple[str, str]) -> bool:
    with _warned_lock:
        if key in _warned:
            _warned.move_to_end(key)
            return False
        _warned[key] = None
        if len(_warned) > MAX_REMEMBERED:
            _warned.popitem(last=False)
        return True


def forget_warnings() -> None:
    """Forget which ids were reported, so each is reported again (for tests)."""
    with _warned_lock:
        _warned.clear()


def checked_customer_id(value: Any, *, source: str, hint: str) -> Any:
    """``value`` as the customer id that goes on the wire, or unchanged if it breaks a rule.

    ``None`` stays ``None`` (the record is then dropped as ``no_customer_id``). An id that
    breaks a rule of the Data API is logged once per distinct id, as ``source`` (who gave it,
    e.g. ``"the user <User pk=1>"``) followed by the rule and ``hint`` (how to fix it), and is
    returned as given so the client drops the record as ``invalid_customer_id``.
    """
    if value is None:
        return None
    try:
        return _validate.customer_id(value)
    except ValidationError as exc:
        if _first_warning((hint, repr(value)[:200])):
            logger.warning(
                "%s has customer_id %r, which breaks a rule of the MoEngage Data API: %s; "
                "its events are dropped as %r. %s",
                source,
                value,
                exc.rule,
                exc.reason,
                hint,
            )
        return value


def import_dotted(path: str) -> Any:
    """The object named by a dotted path such as ``"myapp.tracking.customer_id"``."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"{path!r} is not a dotted path to a module attribute")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


def id_getter(
    spec: str | Callable[[Any], Any] | None, default: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """A ``callable(user) -> id`` from a setting.

    ``None`` gives ``default``; a callable is used as is; a dotted path (it contains a dot)
    names a callable to import; any other string is an attribute of the user (called if it is
    a method, e.g. ``"get_username"``).
    """
    if spec is None:
        return default
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise TypeError(
            f"a customer id setting must be an attribute name, a dotted path or a callable, "
            f"got {spec!r}"
        )
    if "." in spec:
        target = import_dotted(spec)
        if not callable(target):
            raise TypeError(f"{spec!r} is not callable")
        getter: Callable[[Any], Any] = target
        return getter

    def attribute(user: Any) -> Any:
        value = getattr(user, spec)
        return value() if callable(value) else value

    attribute.__qualname__ = f"attribute({spec!r})"
    return attribute
