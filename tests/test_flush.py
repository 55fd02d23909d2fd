"""What ``flush()`` promises: it returns once its records are settled, and says whether they
all arrived.

Each test failed on the worker that used up a flush's wake-up to pick the records up and then
waited out the flush interval (issue 20).
"""

from __future__ import annotations

import threading

from moetrack.testing import Emulator
from tests.conftest import ClientFactory


def test_flush_sends_at_once_whatever_the_flush_interval(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    # An interval of an hour: only the flush itself can make the worker send.
    client = make_client(flush_interval=3600)
    for n in range(5):
        client.track("Ping", customer_id="u-flush", n=n)
        # Half a second is hundreds of loopback round trips; the old worker needed a second.
        assert client.flush(0.5) is True, f"flush {n} timed out"
        assert emulator.wait_for_events(n + 1, timeout=0)


def test_flush_sends_at_once_after_the_worker_went_back_to_sleep(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(flush_interval=3600)  # as above: only a flush sends
    client.track("First", customer_id="u-flush")
    assert client.flush(5) is True
    # The worker is waiting for the next record or interval now; a flush must still wake it.
    assert emulator.wait_for(lambda: client.stats().pending == 0)
    client.track("Second", customer_id="u-flush")
    assert client.flush(0.5) is True


def test_flush_is_false_when_one_of_its_records_failed(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    emulator.fail_next(1, 400)  # a permanent refusal: the batch fails at once
    client.track("Refused", customer_id="u-refused")
    assert client.flush(10) is False
    assert client.stats().failed == 1
    client.track("Fine", customer_id="u-fine")
    assert client.flush(10) is True  # the next flush is about its own records only


def test_flush_is_false_for_records_lost_at_shutdown(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    emulator.fail_for(3600, 503)  # every request fails: the batch waits on its backoff
    client.track("Lost", customer_id="u-lost")
    assert emulator.wait_for(lambda: len(emulator.requests()) >= 1)
    result: list[bool] = []
    flusher = threading.Thread(target=lambda: result.append(client.flush()))
    flusher.start()
    source = client._worker.source
    assert emulator.wait_for(lambda: source.flush_requests == 1)
    client.shutdown(0.2)  # the deadline comes while the batch waits to be retried
    flusher.join(10)
    assert client.stats().failed == 1
    assert result == [False]
