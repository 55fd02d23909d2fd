"""Ambient customer context: ``context()``, ``bind()``, ``reset()``, ``current_context()``.

One :class:`~contextvars.ContextVar` holds one immutable :class:`Ctx`. Reading the context on
the hot path is a single ``ContextVar.get()``; binding builds a new ``Ctx`` from the old one,
so a context is never changed in place and every thread, asyncio task and copied context sees
exactly what was bound in it.

A field may be bound to a zero-argument callable. It is called on the tracking thread at the
moment something is tracked (``Ctx.resolve()``), never at bind time, so a middleware can bind
"the current user" without loading the user on requests that track nothing.

``context(...)`` used as a decorator binds its fields around each call of the decorated
callable (:func:`bind_around`): for a whole call or coroutine, or for each step of a generator
or async generator, never between steps. The wrapping is built on :mod:`wrapt`, shared with
:mod:`moetrack.decorators`.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, cast

__all__ = ["FIELDS", "Ctx", "bind", "context", "current_context", "reset"]

#: The fields a context may hold.
FIELDS = (
    "customer_id",
    "device_id",
    "platform",
    "app_version",
    "user_timezone_offset",
    "attributes",
)
_FIELD_SET = frozenset(FIELDS)

F = TypeVar("F", bound="Callable[..., Any] | classmethod[Any, Any, Any] | staticmethod[Any, Any]")


class Ctx:
    """The immutable ambient context: the six fields, plus whether any is a callable."""

    __slots__ = (*FIELDS, "lazy")

    customer_id: Any
    device_id: Any
    platform: Any
    app_version: Any
    user_timezone_offset: Any
    attributes: Any
    lazy: bool

    def __init__(self, values: Mapping[str, Any]) -> None:
        lazy = False
        for name in FIELDS:
            value = values.get(name)
            object.__setattr__(self, name, value)
            if callable(value):
                lazy = True
        object.__setattr__(self, "lazy", lazy)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a moetrack context is immutable; bind() a new one")

    def as_dict(self) -> dict[str, Any]:
        """The fields that are bound (not ``None``)."""
        return {n: v for n in FIELDS if (v := getattr(self, n)) is not None}

    def merged(self, fields: Mapping[str, Any]) -> Ctx:
        """A new context: ``fields`` over this one; ``attributes`` merge key by key."""
        values = self.as_dict()
        for name, value in fields.items():
            if name == "attributes" and value is not None:
                values[name] = _merge_attributes(values.get("attributes"), value)
            else:
                values[name] = value
        return Ctx(values)

    def resolve(self) -> Ctx:
        """Call every callable field once; the caller's thread does this when tracking."""
        if not self.lazy:
            return self
        values: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            values[name] = value() if callable(value) else value
        attrs = values["attributes"]
        if attrs is not None and not isinstance(attrs, Mapping):
            raise TypeError(
                f"context attributes callable returned {type(attrs).__name__}, expected a mapping"
            )
        return Ctx(values)

    def __repr__(self) -> str:
        return f"Ctx({self.as_dict()!r})"


def _merge_attributes(outer: Any, inner: Any) -> Any:
    if outer is None:
        return inner if callable(inner) else MappingProxyType(dict(inner))
    if callable(outer) or callable(inner):

        def combined() -> Mapping[str, Any]:
            a = outer() if callable(outer) else outer
            b = inner() if callable(inner) else inner
            return {**(a or {}), **(b or {})}

        return combined
    return MappingProxyType({**outer, **inner})


EMPTY = Ctx({})
_var: contextvars.ContextVar[Ctx] = contextvars.ContextVar("moetrack_context", default=EMPTY)
#: The hot path reads the context through this bound method.
get_ctx = _var.get


def _check(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - _FIELD_SET)
    if unknown:
        raise TypeError(
            f"{unknown[0]!r} is not a context field; the fields are {', '.join(FIELDS)} "
            "(event attributes go in attributes={...})"
        )
    attrs = fields.get("attributes")
    if attrs is not None and not callable(attrs) and not isinstance(attrs, Mapping):
        raise TypeError("attributes: must be a mapping or a zero-argument callable")


def bind(**fields: Any) -> contextvars.Token[Ctx]:
    """Bind ``fields`` for the rest of the current context; undo with :func:`reset`.

    For code that cannot use a ``with`` block (a middleware's before/after hooks).

    Args:
        **fields: ``customer_id``, ``device_id``, ``platform``, ``app_version``,
            ``user_timezone_offset``, ``attributes``; each may be a zero-argument callable,
            called only when something is tracked.

    Returns:
        A token for :func:`reset`.

    Raises:
        TypeError: a field that is not one of these.

    Example::

        token = moetrack.bind(customer_id=lambda: request.user.id)
        try:
            handle(request)
        finally:
            moetrack.reset(token)
    """
    _check(fields)
    return _var.set(_var.get().merged(fields))


def reset(token: contextvars.Token[Ctx]) -> None:
    """Undo one :func:`bind`, restoring what was bound before it."""
    _var.reset(token)


def current_context() -> Mapping[str, Any]:
    """A read-only view of the fields bound now (callables are shown, not called).

    Example::

        with moetrack.context(customer_id="user-7"):
            assert moetrack.current_context()["customer_id"] == "user-7"
    """
    return MappingProxyType(_var.get().as_dict())


class context:
    """Bind ambient fields inside a ``with`` block or around a decorated callable.

    ``with moetrack.context(customer_id="u-42"):`` binds for the block and restores on exit,
    also when the block raises. ``@moetrack.context(platform="web")`` does the same around
    every call of a function, method, coroutine function or generator (a generator's context
    is bound while it runs, not between its steps). One instance may be entered again while
    already entered (nested); for use from several threads at once, create one per use or use
    it as a decorator.

    Inner contexts override outer ones field by field, and ``attributes`` merge key by key;
    an explicit argument of ``track()`` beats them all.

    Args:
        **fields: ``customer_id``, ``device_id``, ``platform``, ``app_version``,
            ``user_timezone_offset``, ``attributes`` (defaults merged into every tracked
            event's attributes). Each may be a zero-argument callable, called on the
            tracking thread when something is tracked.

    Raises:
        TypeError: a field that is not one of these.

    Example::

        with moetrack.context(customer_id="user-42", attributes={"plan": "pro"}):
            moetrack.track("Purchase", price=3999)      # customer user-42, plan pro

        @moetrack.context(platform="web")
        def handle(request): ...
    """

    __slots__ = ("_fields", "_tokens")

    def __init__(self, **fields: Any) -> None:
        _check(fields)
        self._fields = fields
        self._tokens: list[contextvars.Token[Ctx]] = []

    def __enter__(self) -> Mapping[str, Any]:
        self._tokens.append(_var.set(_var.get().merged(self._fields)))
        return current_context()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _var.reset(self._tokens.pop())

    async def __aenter__(self) -> Mapping[str, Any]:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        return cast(F, bind_around(func, self._fields))

    def __repr__(self) -> str:
        return f"moetrack.context({', '.join(f'{k}={v!r}' for k, v in self._fields.items())})"


def _wrap(func: Any, wrapper: Callable[..., Any]) -> Any:
    """``func`` behind a wrapt ``FunctionWrapper`` that calls ``wrapper``."""
    # Imported on first use: wrapt imports asyncio, and ``import moetrack`` stays light.
    import wrapt

    return wrapt.decorator(wrapper)(func)


def _unwrap_descriptor(func: Any) -> Any:
    """The function inside a classmethod/staticmethod object (what ``inspect`` can read)."""
    if isinstance(func, classmethod | staticmethod):
        return func.__func__
    return func


# -- context() as a decorator: bound around a call, a coroutine, or a generator's steps


def bind_around(func: Any, fields: Mapping[str, Any]) -> Any:
    """Wrap ``func`` so ``fields`` are bound while it runs (each call gets its own binding).

    A coroutine is bound for the whole of its run, in the task that awaits it. A generator
    or async generator is bound while each step runs (``send``/``throw``/``close`` and their
    async forms), not between steps, so what the consumer has bound is never disturbed.
    """
    import inspect  # here: a decorator is built once, and ``import moetrack`` stays light

    fields = dict(fields)
    _check(fields)
    target = _unwrap_descriptor(func)
    var = _var

    if inspect.isasyncgenfunction(target):

        def agen_wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> AsyncGenerator[Any, Any]:
            return _bound_agen(wrapped(*args, **kwargs), fields)

        return _wrap(func, agen_wrapper)

    if inspect.isgeneratorfunction(target):

        def gen_wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Generator[Any, Any, Any]:
            return _bound_gen(wrapped(*args, **kwargs), fields)

        return _wrap(func, gen_wrapper)

    if inspect.iscoroutinefunction(target):

        def coro_wrapper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Coroutine[Any, Any, Any]:
            return _bound_coro(wrapped(*args, **kwargs), fields)

        return _wrap(func, coro_wrapper)

    def wrapper(
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        token = var.set(var.get().merged(fields))
        try:
            return wrapped(*args, **kwargs)
        finally:
            var.reset(token)

    return _wrap(func, wrapper)


async def _bound_coro(coro: Coroutine[Any, Any, Any], fields: dict[str, Any]) -> Any:
    token = _var.set(_var.get().merged(fields))
    try:
        return await coro
    finally:
        _var.reset(token)


def _bound_gen(gen: Generator[Any, Any, Any], fields: dict[str, Any]) -> Generator[Any, Any, Any]:
    var = _var
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = var.set(var.get().merged(fields))
        try:
            if thrown is None:
                item = gen.send(sent)
            else:
                error, thrown = thrown, None
                item = gen.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            var.reset(token)
        try:
            sent = yield item
        except GeneratorExit:
            token = var.set(var.get().merged(fields))
            try:
                gen.close()
            finally:
                var.reset(token)
            raise
        except BaseException as exc:
            thrown = exc


async def _bound_agen(
    agen: AsyncGenerator[Any, Any], fields: dict[str, Any]
) -> AsyncGenerator[Any, Any]:
    var = _var
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = var.set(var.get().merged(fields))
        try:
            if thrown is None:
                item = await agen.asend(sent)
            else:
                error, thrown = thrown, None
                item = await agen.athrow(error)
        except StopAsyncIteration:
            return
        finally:
            var.reset(token)
        try:
            sent = yield item
        except GeneratorExit:
            token = var.set(var.get().merged(fields))
            try:
                await agen.aclose()
            finally:
                var.reset(token)
            raise
        except BaseException as exc:
            thrown = exc
