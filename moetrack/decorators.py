"""``@moetrack.track_event``: track each call of a function as an event.

(``@moetrack.context(...)`` as a decorator lives with the context, in :mod:`moetrack._context`.)
Both are built on :mod:`wrapt`, so a decorated callable keeps its ``__name__``,
``__qualname__``, ``__doc__``, ``__wrapped__``, ``inspect.signature()`` and the answers of
``inspect.iscoroutinefunction`` / ``isgeneratorfunction`` / ``isasyncgenfunction``, and works
on functions, methods, classmethods and staticmethods.

The flavour of wrapper (plain, coroutine, generator, async generator) is chosen once, at
decoration time, from the decorated function. A coroutine, generator or async generator
function is wrapped by a plain function that calls it at once (so a wrong argument still
raises ``TypeError`` at the call, as it would without the decorator) and returns a
coroutine or generator that delegates to the one it made: ``send()``, ``throw()`` and
``close()`` (``asend()``, ``athrow()``, ``aclose()``) reach the decorated generator exactly
as they would without the decorator.

Order with ``@classmethod`` / ``@staticmethod``: both orders work and are tested, the
decorator above (outermost, the order wrapt documents) and below. Capture by position
follows the arguments the function receives, ``self``/``cls`` included, in either order.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast, overload

from . import _api
from ._context import _unwrap_descriptor, _wrap
from ._exceptions import ValidationError
from ._report import logger

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["On", "track_event"]

F = TypeVar(
    "F",
    bound="Callable[..., Any] | classmethod[Any, Any, Any] | staticmethod[Any, Any]",
)

#: When ``track_event`` tracks a call: after it returned, after it raised, or both.
On = Literal["success", "error", "always"]
_ON_VALUES: Final = ("success", "error", "always")

_clock = time.perf_counter

# Kinds of captured parameter, decided once per decorated function.
_POSITIONAL_OR_KEYWORD: Final = 0
_POSITIONAL_ONLY: Final = 1
_KEYWORD_ONLY: Final = 2
_VAR_POSITIONAL: Final = 3
_VAR_KEYWORD: Final = 4
_NO_DEFAULT: Final = inspect.Parameter.empty

# One step of the capture plan: attribute name, kind, positional index, default.
_Step = tuple[str, int, int, Any]


# -- track_event -----------------------------------------------------------------------------


@overload
def track_event(name: F, /) -> F: ...


@overload
def track_event(
    name: str | None = None,
    /,
    *,
    capture: str | Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    result: Callable[[Any], Mapping[str, Any] | None] | None = None,
    on: On = "success",
    client: Client | None = None,
    **static_attrs: Any,
) -> Callable[[F], F]: ...


def track_event(
    name: Any = None,
    /,
    *,
    capture: str | Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    result: Callable[[Any], Mapping[str, Any] | None] | None = None,
    on: On = "success",
    client: Client | None = None,
    **static_attrs: Any,
) -> Any:
    """Track an event for every call of the decorated callable.

    ::

        @moetrack.track_event                       # event name: the function's __qualname__
        def checkout(cart): ...

        @moetrack.track_event("Checkout Completed", capture=("amount", "currency"),
                              result=lambda order: {"order_id": order.id}, channel="web")
        def checkout(cart, amount, currency="INR"): ...

    The event is named ``name``, or the decorated function's ``__qualname__`` (e.g.
    ``"Cart.checkout"``) when no name is given. Its attributes are, later ones winning:

    - ``attributes`` and then ``**static_attrs``: fixed attributes of every event. (An
      attribute named like one of this function's options goes in ``attributes={...}``.)
    - ``capture``: argument names (one string is one name) lifted into attributes under the
      same names, bound by name through the function's signature: passed by position or
      keyword, or the default when left out. ``self``/``cls`` are captured only when named.
      A name the signature does not have raises ``TypeError`` at decoration time; ``*args``
      and ``**kwargs`` may be named (a tuple, a dict of the keywords no parameter took).
    - ``result``: a callable turning the return value into a mapping (or ``None``) of
      attributes. If it raises or returns something else, the problem is logged and the
      event is tracked without them; the call is not affected.
    - ``duration_ms`` (float, from :func:`time.perf_counter`), ``success`` (bool) and, for a
      failed call, ``error`` (the exception's type name). These always win.

    ``on`` chooses which calls are tracked: ``"success"`` (returned), ``"error"`` (raised,
    ``BaseException`` included, so a cancelled coroutine counts as failed) or ``"always"``.

    ``client`` is the :class:`~moetrack.Client` to track on; by default the default client
    as it is at call time, so :func:`moetrack.init` may run after decoration.

    The call itself is untouched: same arguments, same return value, and the same exception
    object re-raised with its traceback. Tracking cannot break it: an exception while
    building or tracking the event is logged on the ``moetrack`` logger and swallowed, and the
    event's attribute values are validated on the worker like any ``track()`` (an
    unencodable captured value drops the event there, counted in ``Client.stats()``). The one
    exception is strict mode: with ``strict=True`` on the client, a
    :class:`~moetrack.ValidationError` from tracking a *successful* call propagates to the
    caller (after the function ran). After a failed call the function's own exception is
    always what propagates.

    Coroutine functions are tracked when the coroutine finishes. Generators and async
    generators are tracked when they finish: exhausted is a success (``result`` gets the
    generator's return value, always ``None`` for async generators); raising, or being
    closed before exhausted (``close()``/``aclose()``, garbage collection) is a failure,
    with ``error`` the exception's type name (``"GeneratorExit"`` for an early close), so
    tracked only with ``on="error"`` or ``"always"``. For these three ``duration_ms`` counts
    from the first step (the coroutine's first run, the generator's first ``next()``) to the
    end, so time spent waiting to be scheduled or consumed before that is not included; a
    coroutine or generator never started is never tracked.

    The signature is read, and the capture plan made, once at decoration time; a call costs
    a clock read and, for a tracked call, building one attribute dict and one ``track()``.
    """
    if on not in _ON_VALUES:
        raise ValueError(f"on: must be one of 'success', 'error', 'always', got {on!r}")
    captured = (capture,) if isinstance(capture, str) else tuple(capture)
    for item in captured:
        if not isinstance(item, str):
            raise TypeError(f"capture: argument names must be strings, got {item!r}")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(f"attributes: must be a mapping, got {type(attributes).__name__}")
    if result is not None and not callable(result):
        raise TypeError("result: must be a callable taking the return value")
    fixed = {**(attributes or {}), **static_attrs}

    def decorate(func: F, event_name: str | None = name) -> F:
        wrapped = _wrap_tracked(
            func,
            name=event_name,
            capture=captured,
            fixed=fixed,
            result=result,
            on=on,
            client=client,
        )
        return cast(F, wrapped)

    if name is None or isinstance(name, str):
        if name is not None and not name:
            raise ValueError("track_event: the event name must not be empty")
        return decorate
    if callable(name) or isinstance(name, classmethod | staticmethod):
        # Bare ``@track_event``: the positional argument is the function itself.
        return decorate(name, None)
    raise TypeError(f"track_event: expected an event name or a callable, got {name!r}")


def _default_name(func: Any) -> str:
    target = _unwrap_descriptor(func)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = type(target).__qualname__
    return qualname


def _capture_plan(func: Any, names: tuple[str, ...]) -> tuple[tuple[_Step, ...], int]:
    """Turn captured argument names into steps a call can follow without ``inspect``.

    Returns the steps and ``skip``: how many leading parameters a bound call (wrapt's
    ``instance`` set) receives as ``instance`` rather than in ``args``.
    """
    target = _unwrap_descriptor(func)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"capture: cannot read the signature of {target!r}: {exc}") from None
    params = list(signature.parameters.values())
    by_name = {p.name: p for p in params}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise TypeError(
            f"capture: {_default_name(func)}() has no parameter {missing[0]!r} "
            f"(its parameters: {', '.join(by_name) or 'none'})"
        )
    kinds = inspect.Parameter
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    index_of = {p.name: i for i, p in enumerate(positional)}
    keyword_names = frozenset(
        p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    )
    var_index = len(positional)
    steps: list[_Step] = []
    for n in dict.fromkeys(names):
        p = by_name[n]
        if p.kind is kinds.POSITIONAL_OR_KEYWORD:
            steps.append((n, _POSITIONAL_OR_KEYWORD, index_of[n], p.default))
        elif p.kind is kinds.POSITIONAL_ONLY:
            steps.append((n, _POSITIONAL_ONLY, index_of[n], p.default))
        elif p.kind is kinds.KEYWORD_ONLY:
            steps.append((n, _KEYWORD_ONLY, -1, p.default))
        elif p.kind is kinds.VAR_POSITIONAL:
            steps.append((n, _VAR_POSITIONAL, var_index, ()))
        else:
            steps.append((n, _VAR_KEYWORD, -1, keyword_names))
    # A bound method's signature has already lost ``self``; a function's (or a
    # classmethod's ``__func__``'s) has not, and wrapt then passes it as ``instance``.
    bound = inspect.ismethod(target)
    skip = 0 if bound or not positional else 1
    return tuple(steps), skip


class _Tracker:
    """What one decorated callable tracks, decided at decoration time."""

    __slots__ = ("client", "fixed", "name", "on_error", "on_success", "result", "skip", "steps")

    def __init__(
        self,
        *,
        name: str,
        steps: tuple[_Step, ...],
        skip: int,
        fixed: dict[str, Any],
        result: Callable[[Any], Mapping[str, Any] | None] | None,
        on: On,
        client: Client | None,
    ) -> None:
        self.name = name
        self.steps = steps
        self.skip = skip
        self.fixed = fixed
        self.result = result
        self.on_success = on != "error"
        self.on_error = on != "success"
        self.client = client

    def _capture(
        self,
        attrs: dict[str, Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Add the captured arguments of one call to ``attrs`` (the plan made up front)."""
        offset = self.skip if instance is not None else 0
        count = len(args)
        for key, kind, index, default in self.steps:
            if kind <= _POSITIONAL_ONLY:
                i = index - offset
                if i < 0:
                    attrs[key] = instance
                elif i < count:
                    attrs[key] = args[i]
                elif kind == _POSITIONAL_OR_KEYWORD and key in kwargs:
                    attrs[key] = kwargs[key]
                elif default is not _NO_DEFAULT:
                    attrs[key] = default
            elif kind == _KEYWORD_ONLY:
                if key in kwargs:
                    attrs[key] = kwargs[key]
                elif default is not _NO_DEFAULT:
                    attrs[key] = default
            elif kind == _VAR_POSITIONAL:
                attrs[key] = args[max(index - offset, 0) :]
            else:
                attrs[key] = {k: v for k, v in kwargs.items() if k not in default}

    def record(
        self,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: float,
        *,
        value: Any,
        error: BaseException | None,
    ) -> None:
        """Track one call that returned ``value`` (``error`` None) or raised ``error``.

        Raises only in strict mode, and only for a call that returned: a failed call's own
        exception always wins over a tracking problem (the caller re-raises it).
        """
        client = self.client
        try:
            duration = (_clock() - start) * 1000.0
            if client is None:
                client = _api._default or _api.get_client()
            attrs = self.fixed.copy()
            if self.steps:
                self._capture(attrs, instance, args, kwargs)
            if error is None and self.result is not None:
                self._add_result(attrs, value, client)
            attrs["duration_ms"] = duration
            attrs["success"] = error is None
            if error is not None:
                attrs["error"] = type(error).__name__
            client.track(self.name, attrs)
        except ValidationError:
            # Client.track raises only in strict mode, and then the caller asked for it; a
            # failed call's own exception always wins over a tracking problem.
            if error is None and client is not None and client.config.strict:
                raise
            self._problem(client, "tracking failed")
        except Exception:
            self._problem(client, "tracking failed")

    def _add_result(self, attrs: dict[str, Any], value: Any, client: Client) -> None:
        try:
            extra = self.result(value) if self.result is not None else None
            if extra is None:
                return
            if not isinstance(extra, Mapping):
                raise TypeError(f"expected a mapping or None, got {type(extra).__name__}")
            attrs.update(extra)
        except Exception:
            self._problem(client, "the result= callable failed; tracked without its attributes")

    def _problem(self, client: Client | None, what: str) -> None:
        # Called inside an ``except`` block: the exception being handled is the cause.
        error = sys.exc_info()[1]
        detail = f"{type(error).__name__}: {error}" if error is not None else "?"
        try:
            if client is not None:
                client._reporter.log(
                    logging.WARNING,
                    f"track_event:{self.name}:{what}",
                    "track_event %r: %s (%s)",
                    self.name,
                    what,
                    detail,
                )
                return
        except Exception:
            pass
        logger.warning("track_event %r: %s (%s)", self.name, what, detail)


def _wrap_tracked(
    func: Any,
    *,
    name: str | None,
    capture: tuple[str, ...],
    fixed: dict[str, Any],
    result: Callable[[Any], Mapping[str, Any] | None] | None,
    on: On,
    client: Client | None,
) -> Any:
    steps, skip = _capture_plan(func, capture) if capture else ((), 0)
    tracker = _Tracker(
        name=name or _default_name(func),
        steps=steps,
        skip=skip,
        fixed=fixed,
        result=result,
        on=on,
        client=client,
    )
    target = _unwrap_descriptor(func)

    # Generators and coroutines: the wrapper calls the function at once (so a wrong argument
    # raises at the call, as without the decorator) and hands back a delegating object.
    runner: Callable[..., Any] | None = None
    if inspect.isasyncgenfunction(target):
        runner = _tracked_agen
    elif inspect.isgeneratorfunction(target):
        runner = _tracked_gen
    elif inspect.iscoroutinefunction(target):
        runner = _tracked_coro
    if runner is not None:
        run = runner

        def deferred_wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            return run(tracker, wrapped(*args, **kwargs), instance, args, kwargs)

        return _wrap(func, deferred_wrapper)

    on_success, on_error = tracker.on_success, tracker.on_error
    record = tracker.record
    clock = _clock

    def wrapper(
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        start = clock()
        try:
            value = wrapped(*args, **kwargs)
        except BaseException as exc:
            if on_error:
                record(instance, args, kwargs, start, value=None, error=exc)
            raise
        if on_success:
            record(instance, args, kwargs, start, value=value, error=None)
        return value

    return _wrap(func, wrapper)


async def _tracked_coro(
    tracker: _Tracker,
    coro: Coroutine[Any, Any, Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    start = _clock()
    try:
        value = await coro
    except BaseException as exc:
        if tracker.on_error:
            tracker.record(instance, args, kwargs, start, value=None, error=exc)
        raise
    if tracker.on_success:
        tracker.record(instance, args, kwargs, start, value=value, error=None)
    return value


def _tracked_gen(
    tracker: _Tracker,
    gen: Generator[Any, Any, Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Generator[Any, Any, Any]:
    start = _clock()
    # ``yield from`` forwards send(), throw() and close() to ``gen`` (PEP 380); an early
    # close() arrives here as GeneratorExit after ``gen`` was closed.
    try:
        value = yield from gen
    except BaseException as exc:
        if tracker.on_error:
            tracker.record(instance, args, kwargs, start, value=None, error=exc)
        raise
    if tracker.on_success:
        tracker.record(instance, args, kwargs, start, value=value, error=None)
    return value


async def _tracked_agen(
    tracker: _Tracker,
    agen: AsyncGenerator[Any, Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> AsyncGenerator[Any, Any]:
    start = _clock()
    try:
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                if thrown is None:
                    item = await agen.asend(sent)
                else:
                    error, thrown = thrown, None
                    item = await agen.athrow(error)
            except StopAsyncIteration:
                break
            try:
                sent = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as exc:
                thrown = exc
    except BaseException as exc:
        if tracker.on_error:
            tracker.record(instance, args, kwargs, start, value=None, error=exc)
        raise
    if tracker.on_success:
        tracker.record(instance, args, kwargs, start, value=None, error=None)


# Shown and pickled as ``moetrack.track_event``, where users import it from.
track_event.__module__ = "moetrack"
