"""What a waiting event costs the process, and how long the pipeline holds the interpreter.

Events wait while the server is slow, down or the quota is used up. They must wait as
values the garbage collector does not walk, in a few hundred bytes each, and the worker
that prepares and packs them must let the application's threads in between small slices
of its work. Real client, real emulator, options as shipped unless a test says why.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import moetrack
from moetrack._context import get_ctx
from moetrack._pipeline import breath as _breath
from moetrack._pipeline.memory import MemorySource
from moetrack._pipeline.queue import TAKE_CHUNK, WAKE_RECORDS, MemoryQueue
from moetrack._report import Reporter
from moetrack._wire.item import EVENT
from moetrack.testing import Emulator

N = 20_000
IDS = [f"customer-{i:04d}" for i in range(1_000)]


def track_purchases(client: moetrack.Client, n: int) -> None:
    """The benchmarks' event: "Purchase" with five attributes, 1,000 customers in turn."""
    for i in range(n):
        client.track(
            "Purchase",
            customer_id=IDS[i % 1_000],
            sku="SKU-1042",
            price=3999 + i,
            discount=0.15,
            gift=False,
            delivered_by="2026-12-24T18:00:00+05:30",
        )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def stalled(emulator: Emulator) -> Iterator[Emulator]:
    """A server that takes requests and does not answer until the test ends."""
    emulator.pause()
    try:
        yield emulator
    finally:
        emulator.resume()


def first_request_stuck(client: moetrack.Client, emulator: Emulator) -> None:
    """One event tracked and flushed into a request the server holds: from now on the
    sender waits on that request, and everything tracked waits in the process."""
    client.track("Warm-up", customer_id=IDS[0], n=0)
    client.flush(0.01)
    assert wait_until(lambda: emulator.held >= 1), emulator


def all_prepared(client: moetrack.Client) -> Callable[[], bool]:
    return lambda: client.stats().queue_depth == 0


def test_events_waiting_on_a_stalled_request_are_not_walked_by_the_collector(
    make_client: Any, stalled: Emulator
) -> None:
    client = make_client(stalled)
    first_request_stuck(client, stalled)
    gc.collect()
    before = len(gc.get_objects())
    track_purchases(client, N)
    # While the request is out, the worker prepares what is queued (it is woken every
    # 500 records, and a quarter second at the latest).
    assert wait_until(all_prepared(client)), client.stats()
    gc.collect()
    tracked = len(gc.get_objects()) - before
    assert client.stats().pending == N + 1
    # What the collector still walks is the next batch, taken as Item objects to be packed
    # while the request is out: bounded by a batch, whatever waits behind it.
    batch = client._worker.source.config.max_batch_size
    assert tracked < 2 * batch, f"{tracked} objects the collector walks for {N} waiting events"


def test_a_waiting_event_costs_at_most_250_bytes(make_client: Any, stalled: Emulator) -> None:
    client = make_client(stalled)
    first_request_stuck(client, stalled)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        track_purchases(client, N)
        assert wait_until(all_prepared(client)), client.stats()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    per_event = held / N
    assert per_event <= 250, f"{per_event:.0f} bytes per waiting event"


def test_the_preparer_lets_other_threads_in_between_slices(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog is prepared in chunks of TAKE_CHUNK records, each well under a millisecond,
    with a breath between two. With SLICE_SECONDS at 0 (here) every chunk ends in one, so
    the records prepared between two breaths are one chunk at most; nothing is lost."""
    config = make_client()._worker.source.config
    queue = MemoryQueue()
    source = MemorySource(config, queue, Reporter(None, None, config.secrets()))
    for i in range(2_000):
        attrs = {"sku": "SKU-1042", "price": i}
        queue.put((EVENT, get_ctx(), time.time(), "Purchase", None, attrs, IDS[i % 1_000],
                   None, None, None, None, None, None))  # fmt: skip
    monkeypatch.setattr(_breath, "SLICE_SECONDS", 0.0)
    taken_at_breath = [0]
    monkeypatch.setattr(_breath, "_sleep", lambda seconds: taken_at_breath.append(source.taken))
    source.prepare_queued()
    assert source.taken == 2_000
    assert queue.size() == 0
    gaps = [b - a for a, b in itertools.pairwise(taken_at_breath)]
    assert len(gaps) >= 2_000 // TAKE_CHUNK - 1, taken_at_breath
    assert max(gaps) <= TAKE_CHUNK, gaps
    items = source.take(5_000, 0)
    assert items is not None
    assert [item.ref for item in items] == list(range(2_000))


def test_a_full_batch_is_packed_in_slices(
    make_client: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender packs a batch of 500 items with a breath after each item once its slice
    is used up (here: at once)."""
    monkeypatch.setattr(_breath, "SLICE_SECONDS", 0.0)
    breaths: list[str] = []
    monkeypatch.setattr(
        _breath, "_sleep", lambda s: breaths.append(threading.current_thread().name)
    )
    client = make_client(events_per_minute=None, users_per_minute=None)
    track_purchases(client, 1_000)
    assert client.flush(30)
    assert client.stats().sent == 1_000
    assert breaths.count("moetrack-worker") >= 1_000  # one per item packed, at least
    assert len(emulator.events()) == 1_000


class Wake(threading.Event):
    """The worker's wake-up event, counting the callers' wake-ups."""

    calls = 0

    def set(self) -> None:
        self.calls += 1
        super().set()


def warm_client_with_counted_wakes(make_client: Any, **options: Any) -> tuple[Any, Wake]:
    """A client whose worker has started and holds a partial batch: it now sleeps until
    its flush interval is up, and only a caller's wake-up (or a flush) ends that early."""
    client = make_client(**options)
    source = client._worker.source
    wake = source.wake = Wake()  # before the worker starts: it waits on this one
    client.track("Warm-up", customer_id=IDS[0], n=0)
    assert wait_until(lambda: source.taken == 1, timeout=5.0)
    return client, wake


def test_records_are_prepared_a_few_score_at_a_time_as_they_arrive(make_client: Any) -> None:
    """The worker is woken once WAKE_RECORDS records wait, not once 500 do nor at the flush
    interval: its work comes in short pieces spread over time, rather than a batch's worth
    at once that every request thread arriving meanwhile would wait behind."""
    client, wake = warm_client_with_counted_wakes(make_client)  # options as shipped
    source = client._worker.source
    woken = wake.calls
    track_purchases(client, WAKE_RECORDS + 8)
    assert wake.calls > woken, "no caller woke the worker once WAKE_RECORDS records waited"
    assert wait_until(lambda: source.taken > WAKE_RECORDS), source.taken
    assert client.flush(10)


def test_a_trickle_of_records_wakes_the_worker_once_per_hundred_or_so(make_client: Any) -> None:
    """Each wake-up costs the application a thread switch and the interpreter handed over
    and back; beside four request threads that cost more CPU than preparing the records.
    A steady trickle, as a web server's requests make (here 1,000 records at up to 2,000/s,
    which the worker keeps up with), wakes it once per WAKE_RECORDS records or so, not
    every few records."""
    client, wake = warm_client_with_counted_wakes(make_client)  # options as shipped
    woken = wake.calls
    for i in range(1_000):
        client.track("Page Viewed", customer_id=IDS[i % 1_000], n=i)
        time.sleep(0.0005)
    wakes = wake.calls - woken
    assert wakes <= 1_000 // 100, f"{wakes} wake-ups for 1,000 records"
    assert client.flush(10)
    assert client.stats().sent == 1_001


def test_after_a_wait_the_worker_starts_a_new_slice(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice counts the worker's own work since it last let go of the interpreter or
    waited. A few records prepared, packed and sent after an idle moment take far less
    than a slice, so the worker does not let go for them: each time it does is a thread
    switch the application pays for, and here nobody was waiting. The slices' clock moves
    only between rounds, a second at a time (the idle moment), so the records' own work
    never uses up a slice however slow this machine is."""
    yields: list[str] = []
    monkeypatch.setattr(_breath, "_sleep", lambda s: yields.append(threading.current_thread().name))
    clock = [0.0]
    monkeypatch.setattr(_breath, "_perf_counter", lambda: clock[0])
    # Pacing off: the quota would hold back the 20 flushes.
    client = make_client(events_per_minute=None, users_per_minute=None)
    for _ in range(20):
        track_purchases(client, 3)
        assert client.flush(10)
        clock[0] += 1.0  # idle: far longer than a slice
    assert client.stats().sent == 60
    assert yields.count("moetrack-worker") <= 5, f"let go {len(yields)} times for 20 idle moments"


def test_one_request_thread_serves_every_batch(make_client: Any, emulator: Emulator) -> None:
    """The sender keeps one request thread for its life rather than starting one per
    request (its start and its objects, every batch)."""
    client = make_client(events_per_minute=None, users_per_minute=None)
    batches = 4
    seen: set[int] = set()
    for _ in range(batches):
        track_purchases(client, 10)
        assert client.flush(10)
        seen |= {t.ident or 0 for t in threading.enumerate() if t.name == "moetrack-request"}
    assert len(emulator.requests()) == batches
    assert len(seen) == 1, f"{len(seen)} request threads for {batches} requests"


def test_a_batch_being_filled_adds_no_object_per_element_for_the_collector() -> None:
    """Packing 500 events for 500 customers keeps each element as bytes growing in place,
    not as objects the garbage collector walks at every collection while the batch fills."""
    from moetrack._wire.encode import Packer
    from moetrack._wire.item import Item

    items = [Item(EVENT, IDS[i], None, b'{"action":"Purchase","attributes":{"price":%d}}' % i)
             for i in range(500)]  # fmt: skip
    packer = Packer(1 << 20, 1_000)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for item in items:
            assert packer.add(item)
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert grown <= 8, f"{grown} objects tracked by the collector for 500 elements"
    body = packer.take().body
    assert body.count(b'"type":"event"') == 500
