"""``@moetrack.track_event``: every form, every kind of callable, checked at the emulator.

Each test builds its own client aimed at a real emulator on loopback, tracks under
``moetrack.context(customer_id="user-42")``, flushes, and reads what the emulator accepted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

import moetrack
from moetrack import _api, decorators
from moetrack.decorators import On, track_event
from moetrack.testing import Emulator

CUSTOMER = "user-42"


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


@pytest.fixture
def user() -> Generator[None, Any, Any]:
    with moetrack.context(customer_id=CUSTOMER):
        yield


class Clock:
    """The clock the decorator reads, moved by the test: a duration is exactly the time the
    test let pass on it, however loaded the machine. It starts at a round number, so that
    steps of whole, half and quarter seconds add up exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replaces the decorator's clock (read when a function is decorated, so decorate after
    asking for this fixture)."""
    fake = Clock()
    monkeypatch.setattr(decorators, "_clock", fake)
    return fake


def delivered(client: moetrack.Client, emu: Emulator) -> list[dict[str, Any]]:
    """Everything the client tracked so far, as the emulator accepted it."""
    assert client.flush(10)
    return emu.events()


def only(client: moetrack.Client, emu: Emulator) -> dict[str, Any]:
    events = delivered(client, emu)
    assert len(events) == 1, events
    return events[0]


def user_attrs(event: dict[str, Any]) -> dict[str, Any]:
    """The event's attributes without the timing ones (checked separately)."""
    attrs = dict(event["attributes"])
    assert isinstance(attrs.pop("duration_ms"), float)
    assert type(attrs["success"]) is bool  # 1 == True, so the comparisons alone would not tell
    return attrs


# -- forms -----------------------------------------------------------------------------------


def test_bare_form_is_named_after_qualname_and_uses_default_client_at_call_time(
    emu: Emulator, user: None
) -> None:
    @track_event
    def checkout(cart: list[str]) -> int:
        """Check out."""
        return len(cart)

    # init() after decoration: the default client is looked up per call.
    client = moetrack.init(emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.05)
    try:
        assert checkout(["a", "b"]) == 2
        event = only(client, emu)
    finally:
        _api._default = None
        client.shutdown(2.0)
    assert event["action"] == checkout.__qualname__
    assert event["action"].endswith("<locals>.checkout")
    assert event["customer_id"] == CUSTOMER
    assert user_attrs(event) == {"success": True}


def test_exported_from_package() -> None:
    assert moetrack.track_event is track_event
    assert "track_event" in moetrack.__all__


def test_named_form(client: moetrack.Client, emu: Emulator, user: None) -> None:
    @track_event("Checkout Completed", client=client)
    def checkout() -> str:
        return "ok"

    assert checkout() == "ok"
    event = only(client, emu)
    assert event["action"] == "Checkout Completed"
    assert user_attrs(event) == {"success": True}


def test_options_without_a_name_use_the_qualname(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event(capture="amount", client=client)
    def pay(amount: int) -> None:
        pass

    pay(5)
    event = only(client, emu)
    assert event["action"] == pay.__qualname__
    assert user_attrs(event) == {"amount": 5, "success": True}


def test_static_attributes_and_attributes_mapping(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event(
        "Signup",
        attributes={"channel": "email", "platform": "web-attr", "plan": "free"},
        client=client,
        plan="pro",
        source="landing",
    )
    def signup() -> None:
        pass

    signup()
    event = only(client, emu)
    # **static_attrs win over attributes=; "platform" stays an attribute, not the event field.
    assert user_attrs(event) == {
        "channel": "email",
        "platform": "web-attr",
        "plan": "pro",
        "source": "landing",
        "success": True,
    }


# -- capture ---------------------------------------------------------------------------------


def test_capture_by_position_keyword_and_default(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Purchase", capture=("amount", "currency"), client=client)
    def purchase(item: str, amount: int, currency: str = "INR") -> None:
        pass

    purchase("book", 3999)
    purchase("pen", amount=20)
    purchase("cup", 150, "USD")
    purchase(item="hat", currency="EUR", amount=7)
    events = delivered(client, emu)
    assert [user_attrs(e) for e in events] == [
        {"amount": 3999, "currency": "INR", "success": True},
        {"amount": 20, "currency": "INR", "success": True},
        {"amount": 150, "currency": "USD", "success": True},
        {"amount": 7, "currency": "EUR", "success": True},
    ]


def test_capture_positional_only_keyword_only_and_var_arguments(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Mixed", capture=("a", "rest", "flag", "extra"), client=client)
    def mixed(a: int, /, *rest: int, flag: bool = False, **extra: Any) -> None:
        pass

    mixed(1, 2, 3, color="red")
    mixed(9, flag=True)
    events = delivered(client, emu)
    assert [user_attrs(e) for e in events] == [
        {"a": 1, "rest": [2, 3], "flag": False, "extra": {"color": "red"}, "success": True},
        {"a": 9, "rest": [], "flag": True, "extra": {}, "success": True},
    ]


def test_capture_of_positional_only_name_is_not_taken_from_kwargs(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("PosOnly", capture=("a",), client=client)
    def f(a: int = 5, /, **kw: Any) -> None:
        pass

    f(a=99)  # goes to **kw, so ``a`` keeps its default
    assert user_attrs(only(client, emu)) == {"a": 5, "success": True}


def test_capture_unknown_name_raises_at_decoration_time() -> None:
    def f(amount: int) -> None:
        pass

    with pytest.raises(TypeError, match="'currency'"):
        track_event("X", capture=("amount", "currency"))(f)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"on": "sometimes"}, ValueError),
        ({"capture": (1,)}, TypeError),
        ({"attributes": ["a"]}, TypeError),
        ({"result": "not callable"}, TypeError),
    ],
)
def test_bad_options_raise_at_decoration_time(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        track_event("X", **kwargs)


def test_bad_name_raises() -> None:
    with pytest.raises(TypeError):
        track_event(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        track_event("")


def test_signature_is_read_once_at_decoration(
    client: moetrack.Client, emu: Emulator, user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    @track_event("Once", capture=("x", "y"), client=client)
    def f(x: int, y: int = 2) -> int:
        return x + y

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("inspect used per call")

    monkeypatch.setattr(inspect, "signature", forbidden)
    monkeypatch.setattr(inspect.Signature, "bind", forbidden)
    assert f(1) == 3
    monkeypatch.undo()
    assert user_attrs(only(client, emu)) == {"x": 1, "y": 2, "success": True}


# -- result= ---------------------------------------------------------------------------------


def test_result_callable_adds_attributes(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Order", result=lambda order: {"order_id": order["id"]}, client=client)
    def order() -> dict[str, str]:
        return {"id": "o-1"}

    assert order() == {"id": "o-1"}
    assert user_attrs(only(client, emu)) == {"order_id": "o-1", "success": True}


def test_result_cannot_override_success_or_duration(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("R", result=lambda _: {"success": "nope", "duration_ms": "x"}, client=client)
    def f() -> None:
        pass

    f()
    assert user_attrs(only(client, emu)) == {"success": True}


@pytest.mark.parametrize(
    "result",
    [lambda value: 1 / 0, lambda value: ["not", "a", "mapping"]],
    ids=["raises", "not-a-mapping"],
)
def test_failing_result_callable_never_breaks_the_call(
    client: moetrack.Client,
    emu: Emulator,
    user: None,
    result: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @track_event("R", result=result, client=client, kept="yes")
    def f() -> str:
        return "value"

    with caplog.at_level(logging.WARNING, logger="moetrack"):
        assert f() == "value"
    # Tracked without the result's attributes; the problem is logged.
    assert user_attrs(only(client, emu)) == {"kept": "yes", "success": True}
    assert any("result=" in r.getMessage() for r in caplog.records)


def test_result_not_called_for_failed_calls(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    calls: list[Any] = []

    @track_event("R", result=calls.append, on="always", client=client)
    def f() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        f()
    assert calls == []
    assert user_attrs(only(client, emu)) == {"success": False, "error": "KeyError"}


# -- on= and failures ------------------------------------------------------------------------


def make_flaky(client: moetrack.Client, on: On) -> Any:
    @track_event("Flaky", capture=("fail",), on=on, client=client)
    def flaky(fail: bool) -> str:
        if fail:
            raise ValueError("boom")
        return "fine"

    return flaky


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("success", [{"fail": False, "success": True}]),
        ("error", [{"fail": True, "success": False, "error": "ValueError"}]),
        (
            "always",
            [
                {"fail": False, "success": True},
                {"fail": True, "success": False, "error": "ValueError"},
            ],
        ),
    ],
)
def test_on_chooses_which_calls_are_tracked(
    client: moetrack.Client, emu: Emulator, user: None, on: On, expected: list[dict[str, Any]]
) -> None:
    flaky = make_flaky(client, on)
    assert flaky(False) == "fine"
    with pytest.raises(ValueError, match="boom"):
        flaky(True)
    assert [user_attrs(e) for e in delivered(client, emu)] == expected


def test_same_exception_object_and_traceback_are_reraised(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    error = RuntimeError("the original")

    @track_event("Boom", on="always", client=client)
    def boom() -> None:
        raise error  # the raising line

    with pytest.raises(RuntimeError) as excinfo:
        boom()
    assert excinfo.value is error
    assert excinfo.value.__context__ is None
    assert excinfo.value.__cause__ is None
    frames = traceback.extract_tb(excinfo.value.__traceback__)
    assert frames[-1].name == "boom"
    assert frames[-1].line == "raise error  # the raising line"
    assert user_attrs(only(client, emu)) == {"success": False, "error": "RuntimeError"}


def test_duration_is_measured(
    client: moetrack.Client, emu: Emulator, user: None, clock: Clock
) -> None:
    @track_event("Slow", client=client)
    def slow() -> None:
        clock.advance(0.25)  # the call takes a quarter of a second

    clock.advance(5)  # before the call: not counted
    slow()
    clock.advance(5)  # after it: not counted
    assert only(client, emu)["attributes"]["duration_ms"] == 250.0


# -- metadata --------------------------------------------------------------------------------


def plain(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """Plain docstring."""
    return f"{a}{b}{c}"


async def coro(a: int) -> int:
    """Coroutine docstring."""
    return a


def gen(a: int) -> Generator[int, Any, Any]:
    """Generator docstring."""
    yield from range(a)


async def agen(a: int) -> AsyncGenerator[int, Any]:
    """Async generator docstring."""
    for i in range(a):
        yield i


@pytest.mark.parametrize("func", [plain, coro, gen, agen], ids=lambda f: f.__name__)
@pytest.mark.parametrize("bare", [True, False], ids=["bare", "named"])
def test_metadata_is_preserved(func: Any, bare: bool) -> None:
    decorated = track_event(func) if bare else track_event("N", capture=("a",))(func)
    assert decorated.__name__ == func.__name__
    assert decorated.__qualname__ == func.__qualname__
    assert decorated.__doc__ == func.__doc__
    assert decorated.__module__ == func.__module__
    assert decorated.__wrapped__ is func
    assert inspect.signature(decorated) == inspect.signature(func)
    assert inspect.iscoroutinefunction(decorated) == inspect.iscoroutinefunction(func)
    assert inspect.isgeneratorfunction(decorated) == inspect.isgeneratorfunction(func)
    assert inspect.isasyncgenfunction(decorated) == inspect.isasyncgenfunction(func)
    assert asyncio.iscoroutinefunction(decorated) == asyncio.iscoroutinefunction(func)


def test_metadata_kind_checks_differ_per_kind() -> None:
    # Guards the test above against a vacuous pass.
    assert inspect.iscoroutinefunction(track_event(coro))
    assert not inspect.iscoroutinefunction(track_event(plain))
    assert inspect.isgeneratorfunction(track_event(gen))
    assert inspect.isasyncgenfunction(track_event(agen))


def test_method_metadata_is_preserved() -> None:
    class Shop:
        @track_event
        async def buy(self, item: str) -> str:
            """Buy."""
            return item

        @track_event
        @classmethod
        def open(cls, hour: int) -> None:
            """Open."""

    assert Shop.buy.__qualname__.endswith("Shop.buy")
    assert Shop.buy.__doc__ == "Buy."
    assert inspect.iscoroutinefunction(Shop().buy)
    assert str(inspect.signature(Shop().buy)) == "(item: 'str') -> 'str'"
    assert str(inspect.signature(Shop.open)) == "(hour: 'int') -> 'None'"
    assert Shop.open.__doc__ == "Open."


# -- kinds of callables ----------------------------------------------------------------------


def test_instance_method_does_not_capture_self(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    class Cart:
        def __init__(self) -> None:
            self.total = 10

        @track_event("Cart Checkout", capture=("coupon",), client=client)
        def checkout(self, coupon: str = "none") -> int:
            return self.total

    cart = Cart()
    assert cart.checkout("SAVE") == 10
    assert Cart.checkout(cart, coupon="HALF") == 10  # unbound call through the class
    assert cart.checkout() == 10
    events = delivered(client, emu)
    assert [user_attrs(e) for e in events] == [
        {"coupon": "SAVE", "success": True},
        {"coupon": "HALF", "success": True},
        {"coupon": "none", "success": True},
    ]


def test_default_name_of_a_method_is_its_qualname(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    class Cart:
        @track_event(client=client)
        def checkout(self) -> None:
            pass

    Cart().checkout()
    assert only(client, emu)["action"].endswith("Cart.checkout")


def test_self_is_captured_when_named(client: moetrack.Client, emu: Emulator, user: None) -> None:
    class Name(str):
        @track_event("Named", capture=("self",), client=client)
        def shout(self) -> str:
            return self.upper()

    assert Name("bob").shout() == "BOB"
    assert user_attrs(only(client, emu)) == {"self": "bob", "success": True}


def make_methods(client: moetrack.Client) -> Any:
    class Store:
        # The decorator above @classmethod / @staticmethod (outermost, wrapt's own order) …
        @track_event("cm-above", capture=("n",), client=client)
        @classmethod
        def cm_above(cls, n: int) -> str:
            return f"{cls.__name__}:{n}"

        @track_event("sm-above", capture=("n",), client=client)
        @staticmethod
        def sm_above(n: int) -> int:
            return n * 2

        # … and below it.
        @classmethod
        @track_event("cm-below", capture=("n",), client=client)
        def cm_below(cls, n: int) -> str:
            return f"{cls.__name__}:{n}"

        @staticmethod
        @track_event("sm-below", capture=("n",), client=client)
        def sm_below(n: int) -> int:
            return n * 2

    return Store


@pytest.mark.parametrize("name", ["cm_above", "cm_below", "sm_above", "sm_below"])
def test_classmethods_and_staticmethods_in_both_orders(
    client: moetrack.Client, emu: Emulator, user: None, name: str
) -> None:
    store_class = make_methods(client)
    expected = "Store:3" if name.startswith("cm") else 6
    assert getattr(store_class, name)(3) == expected
    assert getattr(store_class(), name)(n=3) == expected
    events = delivered(client, emu)
    assert [e["action"] for e in events] == [name.replace("_", "-")] * 2
    for event in events:
        assert user_attrs(event) == {"n": 3, "success": True}


def test_capturing_cls_gives_the_class(
    client: moetrack.Client, emu: Emulator, user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Store:
        @track_event("cm", capture=("cls", "n"), client=client)
        @classmethod
        def cm(cls, n: int) -> None:
            pass

    seen: list[Any] = []
    real_track = client.track

    def spy(action: str, attributes: Any = None, /, **kw: Any) -> None:
        seen.append(dict(attributes))
        real_track(action, attributes, **kw)

    monkeypatch.setattr(client, "track", spy)
    Store.cm(1)
    assert seen[0] == {"cls": Store, "n": 1, "success": True, "duration_ms": seen[0]["duration_ms"]}
    assert delivered(client, emu) == []  # the class cannot be encoded: dropped by the worker
    assert client.stats().dropped == {"invalid_value": 1}


def test_async_function(client: moetrack.Client, emu: Emulator, user: None, clock: Clock) -> None:
    @track_event("Async", capture=("x",), on="always", client=client)
    async def work(x: int) -> int:
        await asyncio.sleep(0)
        clock.advance(0.25)
        if x < 0:
            raise LookupError(x)
        return x * 2

    async def main() -> None:
        assert await work(4) == 8
        with pytest.raises(LookupError):
            await work(-1)

    asyncio.run(main())
    events = delivered(client, emu)
    assert [user_attrs(e) for e in events] == [
        {"x": 4, "success": True},
        {"x": -1, "success": False, "error": "LookupError"},
    ]
    assert [e["attributes"]["duration_ms"] for e in events] == [250.0, 250.0]


def test_async_method(client: moetrack.Client, emu: Emulator, user: None) -> None:
    class Api:
        @track_event("Fetch", capture=("path",), client=client)
        async def fetch(self, path: str) -> str:
            return path.upper()

    assert asyncio.run(Api().fetch("/a")) == "/A"
    assert user_attrs(only(client, emu)) == {"path": "/a", "success": True}


def test_cancelled_coroutine_is_a_failure(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    async def main() -> None:
        started, never = asyncio.Event(), asyncio.Event()

        @track_event("Wait", on="error", client=client)
        async def wait() -> None:
            started.set()
            await never.wait()

        task = asyncio.create_task(wait())
        await started.wait()  # started (a coroutine never started is never tracked)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert user_attrs(only(client, emu)) == {"success": False, "error": "CancelledError"}


# -- generators ------------------------------------------------------------------------------


def test_generator_tracked_when_exhausted(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Stream", capture=("n",), result=lambda v: {"returned": v}, client=client)
    def stream(n: int) -> Generator[int, Any, Any]:
        yield from range(n)
        return "done"

    it = stream(3)
    assert next(it) == 0
    assert delivered(client, emu) == []  # not yet exhausted
    assert list(it) == [1, 2]
    assert user_attrs(only(client, emu)) == {"n": 3, "returned": "done", "success": True}


def test_generator_and_coroutine_calls_are_eager_for_argument_errors() -> None:
    @track_event("G")
    def g(n: int) -> Generator[int, Any, Any]:
        yield n

    @track_event("C")
    async def c(n: int) -> int:
        return n

    with pytest.raises(TypeError):
        g()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c()  # type: ignore[call-arg, unused-coroutine]


def test_generator_duration_counts_from_the_first_step(
    client: moetrack.Client, emu: Emulator, user: None, clock: Clock
) -> None:
    @track_event("Timed", client=client)
    def timed() -> Generator[int, Any, Any]:
        clock.advance(0.25)  # the first step
        yield 1
        clock.advance(0.5)  # the last step, to the end

    it = timed()
    clock.advance(8)  # created but not started: not counted
    assert list(it) == [1]
    assert only(client, emu)["attributes"]["duration_ms"] == 750.0


def test_generator_send_and_throw_are_forwarded(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Echo", client=client)
    def echo() -> Generator[Any, Any, Any]:
        received: Any = None
        while received != "stop":
            try:
                received = yield received
            except KeyError as exc:
                received = yield f"handled {exc.args[0]}"

    it = echo()
    assert next(it) is None
    assert it.send("a") == "a"
    assert it.throw(KeyError("k")) == "handled k"
    with pytest.raises(StopIteration):
        it.send("stop")
    assert user_attrs(only(client, emu)) == {"success": True}


def test_generator_closed_early(client: moetrack.Client, emu: Emulator, user: None) -> None:
    closed: list[str] = []

    def make(on: On) -> Any:
        @track_event(f"Early {on}", on=on, client=client)
        def numbers() -> Generator[int, Any, Any]:
            try:
                yield 1
                yield 2
            finally:
                closed.append(on)

        return numbers

    ons: tuple[On, ...] = ("success", "error", "always")
    for on in ons:
        it = make(on)()
        assert next(it) == 1
        it.close()
    assert closed == ["success", "error", "always"]  # close() reached the generator
    events = delivered(client, emu)
    assert [(e["action"], user_attrs(e)) for e in events] == [
        ("Early error", {"success": False, "error": "GeneratorExit"}),
        ("Early always", {"success": False, "error": "GeneratorExit"}),
    ]


def test_generator_raising(client: moetrack.Client, emu: Emulator, user: None) -> None:
    error = OSError("disk")

    @track_event("Read", on="always", client=client)
    def read() -> Generator[int, Any, Any]:
        yield 1
        raise error

    it = read()
    next(it)
    with pytest.raises(OSError) as excinfo:
        next(it)
    assert excinfo.value is error
    assert user_attrs(only(client, emu)) == {"success": False, "error": "OSError"}


def test_generator_thrown_exception_not_handled(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("T", on="always", client=client)
    def g() -> Generator[int, Any, Any]:
        yield 1

    it = g()
    next(it)
    thrown = ZeroDivisionError("in")
    with pytest.raises(ZeroDivisionError) as excinfo:
        it.throw(thrown)
    assert excinfo.value is thrown
    assert user_attrs(only(client, emu)) == {"success": False, "error": "ZeroDivisionError"}


def test_async_generator(client: moetrack.Client, emu: Emulator, user: None) -> None:
    @track_event("AStream", capture=("n",), on="always", client=client)
    async def astream(n: int) -> AsyncGenerator[int, Any]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        return [i async for i in astream(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    assert user_attrs(only(client, emu)) == {"n": 3, "success": True}


def test_async_generator_asend_athrow_aclose(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    finished: list[str] = []

    @track_event("AEcho", on="always", client=client)
    async def aecho() -> AsyncGenerator[Any, Any]:
        received: Any = None
        try:
            while True:
                try:
                    received = yield received
                except KeyError as exc:
                    received = yield f"handled {exc.args[0]}"
        finally:
            finished.append("closed")

    async def main() -> None:
        it = aecho()
        assert await it.asend(None) is None
        assert await it.asend("a") == "a"
        assert await it.athrow(KeyError("k")) == "handled k"
        await it.aclose()

    asyncio.run(main())
    assert finished == ["closed"]
    assert user_attrs(only(client, emu)) == {"success": False, "error": "GeneratorExit"}


def test_async_generator_closed_early_not_tracked_on_success(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("AEarly", client=client)
    async def numbers() -> AsyncGenerator[int, Any]:
        yield 1
        yield 2

    async def main() -> None:
        it = numbers()
        assert await it.__anext__() == 1
        await it.aclose()

    asyncio.run(main())
    assert delivered(client, emu) == []


def test_async_generator_raising(client: moetrack.Client, emu: Emulator, user: None) -> None:
    error = ConnectionError("gone")

    @track_event("ARead", on="error", client=client)
    async def read() -> AsyncGenerator[int, Any]:
        yield 1
        raise error

    async def main() -> None:
        with pytest.raises(ConnectionError) as excinfo:
            async for _ in read():
                pass
        assert excinfo.value is error

    asyncio.run(main())
    assert user_attrs(only(client, emu)) == {"success": False, "error": "ConnectionError"}


# -- tracking never breaks the call ----------------------------------------------------------


def test_unencodable_capture_is_dropped_by_the_worker_but_the_call_returns(
    client: moetrack.Client, emu: Emulator, user: None
) -> None:
    @track_event("Odd", capture=("thing",), client=client)
    def odd(thing: object) -> str:
        return "returned"

    assert odd(object()) == "returned"
    assert odd("fine") == "returned"
    events = delivered(client, emu)
    assert [user_attrs(e) for e in events] == [{"thing": "fine", "success": True}]
    assert client.stats().dropped == {"invalid_value": 1}


def test_tracking_exception_is_swallowed(
    client: moetrack.Client,
    emu: Emulator,
    user: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("tracking broke")

    @track_event("Broken", on="always", client=client)
    def f(fail: bool) -> str:
        if fail:
            raise KeyError("app")
        return "ok"

    monkeypatch.setattr(client, "track", broken)
    with caplog.at_level(logging.WARNING, logger="moetrack"):
        assert f(False) == "ok"
        with pytest.raises(KeyError, match="app"):
            f(True)
    assert any("tracking broke" in r.getMessage() for r in caplog.records)


def test_default_client_not_initialized_does_not_break(user: None) -> None:
    @track_event("Nowhere")
    def f() -> int:
        return 7

    assert f() == 7
    assert _api.get_client().stats().dropped == {"not_initialized": 1}


def test_shut_down_client_does_not_break(client: moetrack.Client, user: None) -> None:
    @track_event("Late", client=client)
    def f() -> int:
        return 1

    client.shutdown(2.0)
    assert f() == 1
    assert client.stats().dropped == {"shutdown": 1}


def test_strict_mode_raises_validation_error_after_a_successful_call(
    emu: Emulator, user: None
) -> None:
    client = moetrack.Client(
        emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.05, strict=True
    )
    ran: list[int] = []
    try:

        @track_event("Strict", capture=("thing",), client=client)
        def f(thing: object) -> None:
            ran.append(1)

        with pytest.raises(moetrack.ValidationError) as excinfo:
            f(object())
        assert ran == [1]  # the function ran; tracking it raised
        assert excinfo.value.field == "attributes.thing"
        f("fine")
        assert user_attrs(only(client, emu)) == {"thing": "fine", "success": True}
    finally:
        client.shutdown(2.0)


def test_strict_mode_keeps_the_functions_own_exception(emu: Emulator, user: None) -> None:
    client = moetrack.Client(
        emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.05, strict=True
    )
    error = ValueError("mine")
    try:

        @track_event("Strict", capture=("thing",), on="always", client=client)
        def f(thing: object) -> None:
            raise error

        with pytest.raises(ValueError) as excinfo:
            f(object())
        assert excinfo.value is error
    finally:
        client.shutdown(2.0)


def test_strict_without_customer_raises(emu: Emulator) -> None:
    client = moetrack.Client(
        emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.05, strict=True
    )
    try:

        @track_event("Anonymous", client=client)
        def f() -> int:
            return 1

        with pytest.raises(moetrack.ValidationError):
            f()
    finally:
        client.shutdown(2.0)


def test_customer_from_context_at_call_time(client: moetrack.Client, emu: Emulator) -> None:
    @track_event("Visit", client=client)
    def visit() -> None:
        pass

    with moetrack.context(customer_id="user-1"):
        visit()
    with moetrack.context(customer_id="user-2"):
        visit()
    assert [e["customer_id"] for e in delivered(client, emu)] == ["user-1", "user-2"]


def test_decorating_twice_tracks_twice(client: moetrack.Client, emu: Emulator, user: None) -> None:
    @track_event("Outer", client=client)
    @track_event("Inner", client=client)
    def f() -> None:
        pass

    f()
    assert sorted(e["action"] for e in delivered(client, emu)) == ["Inner", "Outer"]
