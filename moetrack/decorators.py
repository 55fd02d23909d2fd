"""Decorators: ``@moetrack.context(...)`` around callables (and ``track_event``).

Built on :mod:`wrapt`, so a decorated callable keeps its name, docstring, signature and
``inspect`` results, and works on functions, methods, classmethods and staticmethods. The
flavour of wrapper (plain, coroutine, generator, async generator) is chosen once, at
decoration time.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import Any

import wrapt

from . import _context

__all__ = ["bind_around"]


def bind_around(func: Callable[..., Any], fields: Mapping[str, Any]) -> Callable[..., Any]:
    """Wrap ``func`` so ``fields`` are bound while it runs (each call gets its own binding)."""
    fields = dict(fields)
    _context._check(fields)

    if inspect.isasyncgenfunction(func):

        @wrapt.decorator
        async def agen_wrapper(
            wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
        ) -> AsyncIterator[Any]:
            # The generator may be resumed from different contexts: bind around each step.
            agen = wrapped(*args, **kwargs)
            value: Any = None
            try:
                while True:
                    token = _context.bind(**fields)
                    try:
                        item = await agen.asend(value)
                    finally:
                        _context.reset(token)
                    value = yield item
            except StopAsyncIteration:
                return

        return agen_wrapper(func)

    if inspect.isgeneratorfunction(func):

        @wrapt.decorator
        def gen_wrapper(
            wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
        ) -> Generator[Any, Any, Any]:
            gen = wrapped(*args, **kwargs)
            value: Any = None
            while True:
                token = _context.bind(**fields)
                try:
                    item = gen.send(value)
                except StopIteration as stop:
                    return stop.value
                finally:
                    _context.reset(token)
                value = yield item

        return gen_wrapper(func)

    if inspect.iscoroutinefunction(func):

        @wrapt.decorator
        async def async_wrapper(
            wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
        ) -> Any:
            token = _context.bind(**fields)
            try:
                return await wrapped(*args, **kwargs)
            finally:
                _context.reset(token)

        return async_wrapper(func)

    @wrapt.decorator
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        token = _context.bind(**fields)
        try:
            return wrapped(*args, **kwargs)
        finally:
            _context.reset(token)

    return wrapper(func)
