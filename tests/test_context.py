"""Ambient context: binding, nesting, restoring, laziness, isolation."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import moetrack
from moetrack._context import get_ctx


def test_context_binds_merges_and_restores() -> None:
    assert dict(moetrack.current_context()) == {}
    with moetrack.context(customer_id="outer-user", attributes={"a": 1, "b": 1}):
        with moetrack.context(platform="web", attributes={"b": 2}) as bound:
            assert dict(bound) == {
                "customer_id": "outer-user",
                "platform": "web",
                "attributes": {"a": 1, "b": 2},
            }
        assert moetrack.current_context()["attributes"] == {"a": 1, "b": 1}
    assert dict(moetrack.current_context()) == {}


def test_context_restores_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), moetrack.context(customer_id="boom-user"):
        raise RuntimeError
    assert "customer_id" not in moetrack.current_context()


def test_bind_and_reset() -> None:
    token = moetrack.bind(customer_id="bound-user")
    assert moetrack.current_context()["customer_id"] == "bound-user"
    inner = moetrack.bind(device_id="dev-1")
    moetrack.reset(inner)
    assert dict(moetrack.current_context()) == {"customer_id": "bound-user"}
    moetrack.reset(token)
    assert dict(moetrack.current_context()) == {}


def test_unknown_fields_are_refused_at_bind_time() -> None:
    with pytest.raises(TypeError, match="price"):
        moetrack.context(price=3)
    with pytest.raises(TypeError, match="attributes"):
        moetrack.bind(attributes=[1, 2])


def test_current_context_is_read_only() -> None:
    with moetrack.context(customer_id="ro-user"):
        view = moetrack.current_context()
        with pytest.raises(TypeError):
            view["customer_id"] = "x"  # type: ignore[index]
        ctx = get_ctx()
        with pytest.raises(AttributeError):
            ctx.customer_id = "x"


def test_callables_are_resolved_only_when_something_is_tracked() -> None:
    calls = []

    def current_user() -> str:
        calls.append(1)
        return "lazy-user"

    client = moetrack.Client("APP", "key", endpoint="http://127.0.0.1:9", send=False)
    try:
        with moetrack.context(customer_id=current_user, attributes=lambda: {"plan": "pro"}):
            assert calls == []
            client.track("One")
            client.track("Two")
        assert calls == [1, 1]
        assert client.flush(5)
        assert client.stats().dropped == {"send_disabled": 2}
    finally:
        client.shutdown(1)


def test_a_failing_context_callable_drops_the_record_not_the_app() -> None:
    def broken() -> str:
        raise LookupError("no user loaded")

    client = moetrack.Client("APP", "key", endpoint="http://127.0.0.1:9", send=False)
    try:
        with moetrack.context(customer_id=broken):
            client.track("X")
        assert client.stats().dropped == {"error": 1}
    finally:
        client.shutdown(1)


def test_threads_and_tasks_are_isolated() -> None:
    seen: dict[str, object] = {}

    def in_thread(name: str) -> None:
        with moetrack.context(customer_id=name):
            barrier.wait()
            seen[name] = moetrack.current_context()["customer_id"]

    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=in_thread, args=(f"t-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"t-{n}": f"t-{n}" for n in range(4)}

    async def task(name: str) -> object:
        async with moetrack.context(customer_id=name):
            await asyncio.sleep(0)
            return moetrack.current_context()["customer_id"]

    async def main() -> list[object]:
        return await asyncio.gather(*(task(f"a-{n}") for n in range(20)))

    assert asyncio.run(main()) == [f"a-{n}" for n in range(20)]


def test_copied_contexts_carry_the_binding() -> None:
    with moetrack.context(customer_id="copied-user"):
        ctx = contextvars.copy_context()
    assert ctx.run(lambda: moetrack.current_context()["customer_id"]) == "copied-user"
