"""``@moetrack.context(...)`` as a decorator, on every kind of callable.

The binding holds while the decorated code runs and is restored afterwards (also after an
exception); what the code tracks meanwhile reaches the emulator with the bound customer.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

import moetrack
from moetrack.testing import Emulator


@pytest.fixture(scope="module")
def emu_server() -> Generator[Emulator, Any, Any]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(emu_server: Emulator) -> Emulator:
    emu_server.reset()
    return emu_server


@pytest.fixture
def client(emu: Emulator) -> Generator[moetrack.Client, Any, Any]:
    client = moetrack.Client(emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.05)
    yield client
    client.shutdown(2.0)


def bound() -> dict[str, Any]:
    return dict(moetrack.current_context())


def delivered(client: moetrack.Client, emu: Emulator) -> list[tuple[str, str]]:
    """(customer_id, action) of everything tracked, as the emulator accepted it."""
    assert client.flush(10)
    return [(e["customer_id"], e["action"]) for e in emu.events()]


# -- plain functions -------------------------------------------------------------------------


def test_function_binds_and_restores(client: moetrack.Client, emu: Emulator) -> None:
    @moetrack.context(customer_id="user-42", platform="web")
    def handle() -> dict[str, Any]:
        client.track("Handled")
        return bound()

    with moetrack.context(customer_id="outer-1"):
        assert handle() == {"customer_id": "user-42", "platform": "web"}
        assert bound() == {"customer_id": "outer-1"}
        client.track("After")
    assert bound() == {}
    assert sorted(delivered(client, emu)) == [("outer-1", "After"), ("user-42", "Handled")]
    assert [e["platform"] for e in emu.events() if e["customer_id"] == "user-42"] == ["web"]


def test_restored_after_an_exception_which_is_reraised_unchanged() -> None:
    error = ValueError("inside")

    @moetrack.context(customer_id="user-42")
    def fail() -> None:
        assert bound() == {"customer_id": "user-42"}
        raise error

    with pytest.raises(ValueError) as excinfo:
        fail()
    assert excinfo.value is error
    assert excinfo.value.__context__ is None
    assert bound() == {}


def test_attributes_merge_with_the_outer_binding() -> None:
    @moetrack.context(attributes={"b": 2, "shared": "inner"})
    def inner() -> Any:
        return dict(bound()["attributes"])

    with moetrack.context(attributes={"a": 1, "shared": "outer"}):
        assert inner() == {"a": 1, "b": 2, "shared": "inner"}
        assert dict(bound()["attributes"]) == {"a": 1, "shared": "outer"}


def test_each_call_and_thread_gets_its_own_binding(client: moetrack.Client, emu: Emulator) -> None:
    @moetrack.context(platform="web")
    def work(customer: str, barrier: threading.Barrier, seen: dict[str, Any]) -> None:
        with moetrack.context(customer_id=customer):
            barrier.wait()
            seen[customer] = bound()
            client.track("Work")

    seen: dict[str, Any] = {}
    barrier = threading.Barrier(3)
    threads = [threading.Thread(target=work, args=(f"user-{i}", barrier, seen)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"user-{i}": {"customer_id": f"user-{i}", "platform": "web"} for i in range(3)}
    assert sorted(delivered(client, emu)) == [(f"user-{i}", "Work") for i in range(3)]


def test_fields_are_checked_when_decorating() -> None:
    with pytest.raises(TypeError, match="not a context field"):
        moetrack.context(customer="x")


# -- methods ---------------------------------------------------------------------------------


def make_service(client: moetrack.Client) -> Any:
    class Service:
        @moetrack.context(customer_id="method-user")
        def method(self, action: str) -> dict[str, Any]:
            client.track(action)
            return bound()

        @moetrack.context(customer_id="cm-above-user")
        @classmethod
        def cm_above(cls, action: str) -> dict[str, Any]:
            assert cls is Service
            client.track(action)
            return bound()

        @classmethod
        @moetrack.context(customer_id="cm-below-user")
        def cm_below(cls, action: str) -> dict[str, Any]:
            assert cls is Service
            client.track(action)
            return bound()

        @moetrack.context(customer_id="sm-above-user")
        @staticmethod
        def sm_above(action: str) -> dict[str, Any]:
            client.track(action)
            return bound()

        @staticmethod
        @moetrack.context(customer_id="sm-below-user")
        def sm_below(action: str) -> dict[str, Any]:
            client.track(action)
            return bound()

    return Service


@pytest.mark.parametrize(
    ("name", "customer"),
    [
        ("method", "method-user"),
        ("cm_above", "cm-above-user"),
        ("cm_below", "cm-below-user"),
        ("sm_above", "sm-above-user"),
        ("sm_below", "sm-below-user"),
    ],
)
def test_methods_classmethods_staticmethods(
    client: moetrack.Client, emu: Emulator, name: str, customer: str
) -> None:
    service = make_service(client)
    instance = service()
    assert getattr(instance, name)("via-instance") == {"customer_id": customer}
    if name == "method":
        assert service.method(instance, "via-class") == {"customer_id": customer}
    else:
        assert getattr(service, name)("via-class") == {"customer_id": customer}
    assert bound() == {}
    assert delivered(client, emu) == [(customer, "via-instance"), (customer, "via-class")]


# -- coroutines ------------------------------------------------------------------------------


def test_async_function_binds_across_awaits_and_restores(
    client: moetrack.Client, emu: Emulator
) -> None:
    @moetrack.context(customer_id="async-user")
    async def handle() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        client.track("Async")
        return bound()

    async def main() -> None:
        assert await handle() == {"customer_id": "async-user"}
        assert bound() == {}

    asyncio.run(main())
    assert delivered(client, emu) == [("async-user", "Async")]


def test_async_method(client: moetrack.Client, emu: Emulator) -> None:
    class Api:
        @moetrack.context(customer_id="api-user")
        async def call(self) -> dict[str, Any]:
            await asyncio.sleep(0)
            client.track("Api")
            return bound()

    assert asyncio.run(Api().call()) == {"customer_id": "api-user"}
    assert delivered(client, emu) == [("api-user", "Api")]


def test_each_asyncio_task_sees_its_own_binding(client: moetrack.Client, emu: Emulator) -> None:
    def handler(customer: str) -> Any:
        @moetrack.context(customer_id=customer)
        async def handle(ready: asyncio.Event, order: list[str]) -> dict[str, Any]:
            order.append(customer)
            await ready.wait()  # every task is inside its binding at once
            await asyncio.sleep(0)
            client.track(f"Task {customer}")
            return bound()

        return handle

    async def main() -> list[dict[str, Any]]:
        ready = asyncio.Event()
        order: list[str] = []
        customers = [f"task-{i}" for i in range(5)]
        tasks = [asyncio.create_task(handler(c)(ready, order)) for c in customers]
        while len(order) < len(customers):
            await asyncio.sleep(0)
        assert bound() == {}
        ready.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(main())
    assert results == [{"customer_id": f"task-{i}"} for i in range(5)]
    assert sorted(delivered(client, emu)) == [(f"task-{i}", f"Task task-{i}") for i in range(5)]


def test_one_decorated_coroutine_in_concurrent_tasks() -> None:
    @moetrack.context(platform="web")
    async def handle(customer: str) -> dict[str, Any]:
        with moetrack.context(customer_id=customer):
            await asyncio.sleep(0.01)
            return bound()

    async def main() -> list[dict[str, Any]]:
        return list(await asyncio.gather(handle("a-1"), handle("b-2")))

    assert asyncio.run(main()) == [
        {"customer_id": "a-1", "platform": "web"},
        {"customer_id": "b-2", "platform": "web"},
    ]


def test_async_exception_restores() -> None:
    @moetrack.context(customer_id="user-42")
    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("x")

    async def main() -> None:
        with pytest.raises(KeyError):
            await fail()
        assert bound() == {}

    asyncio.run(main())


# -- generators ------------------------------------------------------------------------------


def test_generator_bound_during_steps_only(client: moetrack.Client, emu: Emulator) -> None:
    @moetrack.context(customer_id="gen-user")
    def numbers(n: int) -> Generator[dict[str, Any], Any, Any]:
        for i in range(n):
            client.track(f"Step {i}")
            yield bound()
        return "done"

    with moetrack.context(customer_id="consumer"):
        it = numbers(2)
        assert next(it) == {"customer_id": "gen-user"}
        assert bound() == {"customer_id": "consumer"}  # not between steps
        client.track("Between")
        assert next(it) == {"customer_id": "gen-user"}
        with pytest.raises(StopIteration) as stop:
            next(it)
        assert stop.value.value == "done"
    # Sorted: the worker groups one customer's actions into one element.
    assert sorted(delivered(client, emu)) == [
        ("consumer", "Between"),
        ("gen-user", "Step 0"),
        ("gen-user", "Step 1"),
    ]


def test_generator_send_throw_close_are_forwarded_with_the_binding() -> None:
    log: list[Any] = []

    @moetrack.context(customer_id="gen-user")
    def echo() -> Generator[Any, Any, Any]:
        received: Any = None
        try:
            while True:
                try:
                    received = yield received
                except KeyError as exc:
                    log.append(("handled", exc.args[0], bound()))
                    received = yield "handled"
        finally:
            log.append(("finally", bound()))

    it = echo()
    assert next(it) is None
    assert it.send("a") == "a"
    assert it.throw(KeyError("k")) == "handled"
    assert it.send("b") == "b"
    it.close()
    assert log == [
        ("handled", "k", {"customer_id": "gen-user"}),
        ("finally", {"customer_id": "gen-user"}),
    ]
    assert bound() == {}


def test_generator_unhandled_throw_propagates_the_same_exception() -> None:
    @moetrack.context(customer_id="gen-user")
    def g() -> Generator[int, Any, Any]:
        yield 1

    it = g()
    next(it)
    error = ZeroDivisionError("in")
    with pytest.raises(ZeroDivisionError) as excinfo:
        it.throw(error)
    assert excinfo.value is error
    assert bound() == {}


def test_generator_close_that_yields_is_a_runtime_error() -> None:
    @moetrack.context(customer_id="gen-user")
    def stubborn() -> Generator[int, Any, Any]:
        try:
            yield 1
        except GeneratorExit:
            yield 2

    it = stubborn()
    next(it)
    with pytest.raises(RuntimeError):
        it.close()
    assert bound() == {}


def test_generator_and_coroutine_calls_are_eager_for_argument_errors() -> None:
    @moetrack.context(customer_id="gen-user")
    def g(n: int) -> Generator[int, Any, Any]:
        yield n

    @moetrack.context(customer_id="coro-user")
    async def c(n: int) -> int:
        return n

    with pytest.raises(TypeError):
        g()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c()  # type: ignore[call-arg, unused-coroutine]


def test_generator_method(client: moetrack.Client, emu: Emulator) -> None:
    class Feed:
        @moetrack.context(customer_id="feed-user")
        def items(self) -> Generator[str, Any, Any]:
            client.track("Feed")
            yield "x"

    assert list(Feed().items()) == ["x"]
    assert delivered(client, emu) == [("feed-user", "Feed")]


def test_async_generator_bound_during_steps(client: moetrack.Client, emu: Emulator) -> None:
    @moetrack.context(customer_id="agen-user")
    async def numbers(n: int) -> AsyncGenerator[dict[str, Any], Any]:
        for i in range(n):
            await asyncio.sleep(0)
            client.track(f"AStep {i}")
            yield bound()

    async def main() -> None:
        with moetrack.context(customer_id="consumer"):
            seen = []
            async for item in numbers(2):
                seen.append(item)
                assert bound() == {"customer_id": "consumer"}
                client.track("ABetween")
            assert seen == [{"customer_id": "agen-user"}] * 2

    asyncio.run(main())
    assert sorted(delivered(client, emu)) == [
        ("agen-user", "AStep 0"),
        ("agen-user", "AStep 1"),
        ("consumer", "ABetween"),
        ("consumer", "ABetween"),
    ]


def test_async_generator_asend_athrow_aclose_are_forwarded() -> None:
    log: list[Any] = []

    @moetrack.context(customer_id="agen-user")
    async def echo() -> AsyncGenerator[Any, Any]:
        received: Any = None
        try:
            while True:
                try:
                    received = yield received
                except KeyError as exc:
                    log.append(("handled", exc.args[0], bound()))
                    received = yield "handled"
        finally:
            await asyncio.sleep(0)
            log.append(("finally", bound()))

    async def main() -> None:
        it = echo()
        assert await it.asend(None) is None
        assert await it.asend("a") == "a"
        assert await it.athrow(KeyError("k")) == "handled"
        await it.aclose()
        assert bound() == {}

    asyncio.run(main())
    assert log == [
        ("handled", "k", {"customer_id": "agen-user"}),
        ("finally", {"customer_id": "agen-user"}),
    ]


def test_async_generators_in_concurrent_tasks() -> None:
    def make(customer: str) -> Any:
        @moetrack.context(customer_id=customer)
        async def stream() -> AsyncGenerator[dict[str, Any], Any]:
            for _ in range(3):
                await asyncio.sleep(0)
                yield bound()

        return stream

    async def consume(customer: str) -> list[dict[str, Any]]:
        return [item async for item in make(customer)()]

    async def main() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(consume("a-1"), consume("b-2")))

    assert asyncio.run(main()) == [[{"customer_id": "a-1"}] * 3, [{"customer_id": "b-2"}] * 3]


# -- metadata --------------------------------------------------------------------------------


def plain(a: int, b: str = "x") -> str:
    """Plain."""
    return b * a


async def coro(a: int) -> int:
    """Coroutine."""
    return a


def gen(a: int) -> Generator[int, Any, Any]:
    """Generator."""
    yield a


async def agen(a: int) -> AsyncGenerator[int, Any]:
    """Async generator."""
    yield a


@pytest.mark.parametrize("func", [plain, coro, gen, agen], ids=lambda f: f.__name__)
def test_metadata_is_preserved(func: Any) -> None:
    decorated = moetrack.context(customer_id="user-42")(func)
    assert decorated.__name__ == func.__name__
    assert decorated.__qualname__ == func.__qualname__
    assert decorated.__doc__ == func.__doc__
    assert decorated.__wrapped__ is func
    assert inspect.signature(decorated) == inspect.signature(func)
    assert inspect.iscoroutinefunction(decorated) == inspect.iscoroutinefunction(func)
    assert inspect.isgeneratorfunction(decorated) == inspect.isgeneratorfunction(func)
    assert inspect.isasyncgenfunction(decorated) == inspect.isasyncgenfunction(func)


def test_combined_with_track_event(client: moetrack.Client, emu: Emulator) -> None:
    @moetrack.context(customer_id="combo-user")
    @moetrack.track_event("Combo", client=client, capture=("n",))
    def combo(n: int) -> int:
        return n

    assert combo(3) == 3
    assert client.flush(10)
    (event,) = emu.events()
    assert event["customer_id"] == "combo-user"
    assert event["action"] == "Combo"
    assert event["attributes"]["n"] == 3
