"""A bounded chaos soak: seeded random faults while 8 threads track.

Failures, 429s with and without Retry-After, slow answers, answers slower than the client's
timeout, dropped connections, pauses and a lowered body limit come and go while 8 threads
track events (a few of them invalid on purpose). The accounting invariant is sampled all
along; at the end every valid event is at the emulator, in order, exactly once — except the
documented at-least-once case, where every extra copy is traced to a request that timed out
after the server had stored it.

Short by default (CI); ``MOETRACK_SOAK_SECONDS=600`` soaks for ten minutes and
``MOETRACK_SOAK_SEED`` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from collections.abc import Mapping

import pytest

import moetrack
from moetrack._wire import spec as _spec
from moetrack.testing import Emulator

from .conftest import Sampler, assert_accounted
from .waits import Answer, WatchedTransport

THREADS = 8
SECONDS = float(os.environ.get("MOETRACK_SOAK_SECONDS", "8"))
SEED = int(os.environ.get("MOETRACK_SOAK_SEED", "20260501"))
TIMEOUT = 1.0  # the client's request timeout; "slow" answers take longer


class TimeoutRecorder:
    """An HTTP transport noting every body whose request timed out: if the server had stored
    it, its resend is the one legitimate duplicate."""

    def __init__(self) -> None:
        self.inner = WatchedTransport()
        self.timed_out: list[bytes] = []

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        try:
            return self.inner.send(url, body, headers, timeout)
        except moetrack.TransportError as exc:
            if "Timeout" in str(exc):
                self.timed_out.append(body)
            raise

    def close(self) -> None:
        self.inner.close()


def events_in(body: bytes) -> list[tuple[str, int]]:
    return [
        (element["customer_id"], action["attributes"]["seq"])
        for element in json.loads(body)["elements"]
        if element["type"] == "event"
        for action in element["actions"]
    ]


class Chaos:
    """Applies one seeded random fault after another until stopped."""

    def __init__(self, emulator: Emulator, rng: random.Random) -> None:
        self.emulator = emulator
        self.rng = rng
        self.applied: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        emu, rng = self.emulator, self.rng
        while not self.stop.is_set():
            kind = rng.choice(
                ["fail_next", "fail_for", "429", "delay", "slow", "drop", "pause", "body_limit"]
            )
            self.applied[kind] += 1
            if kind == "fail_next":
                emu.fail_next(rng.randint(1, 4), rng.choice([500, 502, 503, 504]))
            elif kind == "fail_for":
                emu.fail_for(rng.uniform(0.1, 0.4), rng.choice([500, 503]))
            elif kind == "429":
                emu.fail_next(rng.randint(1, 3), 429, retry_after=rng.choice([None, 0.05, 0.2]))
            elif kind == "delay":  # slow, within the timeout
                emu.delay(rng.uniform(0.05, 0.3), n=rng.randint(1, 3))
            elif kind == "slow":  # slower than the timeout: stored, then sent again
                emu.delay(TIMEOUT + rng.uniform(0.2, 0.5), n=1)
            elif kind == "drop":
                emu.drop_connections(rng.randint(1, 3))
            elif kind == "pause":
                emu.pause()
                self.stop.wait(rng.uniform(0.05, 0.3))
                emu.resume()
            else:
                emu.set_body_limit(rng.choice([4_000, 12_000]))
                self.stop.wait(rng.uniform(0.2, 0.5))
                emu.set_body_limit(_spec.SERVER_BODY_LIMIT)
            self.stop.wait(rng.uniform(0.1, 0.4))
        emu.clear_faults()


@pytest.mark.soak
def test_chaos_soak_loses_nothing_and_duplicates_only_what_timed_out_after_storing(
    emulator: Emulator,
) -> None:
    rng = random.Random(SEED)
    transport = TimeoutRecorder()
    client = moetrack.Client(
        emulator.app_id,
        emulator.api_key,
        endpoint=emulator.url,
        flush_interval=0.05,
        max_batch_size=200,
        timeout=TIMEOUT,
        retry_backoff=0.02,
        retry_backoff_max=0.25,
        retry_deadline=600,
        events_per_minute=None,  # the emulator has no limits here; the account's would
        transport=transport,  # hold this many events back for minutes
    )
    stop = threading.Event()
    expected: dict[str, list[int]] = {}
    invalid = Counter[str]()

    def produce(k: int) -> None:
        customer = f"soak-user-{k}"
        mine: list[int] = []
        seq = 0
        while not stop.is_set():
            for _ in range(10):
                if seq % 97 == 13:  # invalid on purpose: dropped, counted, never sent
                    client.track("Soak", customer_id="1", seq=seq)
                    invalid[customer] += 1
                else:
                    client.track("Soak", customer_id=customer, seq=seq, thread=k)
                    mine.append(seq)
                seq += 1
            stop.wait(0.02)  # paces the load (ten events a step); not a synchronisation
        expected[customer] = mine

    chaos = Chaos(emulator, random.Random(rng.random()))
    producers = [threading.Thread(target=produce, args=(k,)) for k in range(THREADS)]
    chaos_thread = threading.Thread(target=chaos.run)
    try:
        with Sampler(client, interval=0.005) as sampler:
            chaos_thread.start()
            for t in producers:
                t.start()
            stop.wait(SECONDS)  # the length of the soak
            stop.set()
            for t in producers:
                t.join(30)
            chaos.stop.set()
            chaos_thread.join(30)
            assert client.flush(120), client.stats()
        sampler.check()
        stats = assert_accounted(client)
    finally:
        emulator.clear_faults()
        client.shutdown(5)

    tracked = sum(len(v) for v in expected.values())
    assert (stats.sent, stats.failed, stats.pending) == (tracked, 0, 0)
    assert stats.dropped == {"invalid_customer_id": sum(invalid.values())}

    may_repeat = Counter(e for body in transport.timed_out for e in events_in(body))
    duplicates = 0
    for customer, seqs in expected.items():
        got = [e["attributes"]["seq"] for e in emulator.events(customer_id=customer)]
        counts = Counter(got)
        assert set(counts) == set(seqs), f"{customer}: missing {sorted(set(seqs) - set(counts))}"
        first_seen = list(dict.fromkeys(got))
        assert first_seen == seqs, f"{customer}: out of order"
        for seq, n in counts.items():
            assert n - 1 <= may_repeat[(customer, seq)], (customer, seq, n)
            duplicates += n - 1
    assert emulator.events(customer_id="1") == []
    assert emulator.dropped() == []
    if chaos.applied["slow"] == 0 and chaos.applied["pause"] == 0:
        assert duplicates == 0
    print(
        f"\nsoak: seed={SEED} seconds={SECONDS:g} events={tracked} "
        f"invalid={sum(invalid.values())} faults={dict(chaos.applied)} "
        f"requests={stats.requests} retried={stats.retried} duplicates={duplicates} "
        f"stats_samples={sampler.samples}"
    )
    assert stats.retried > 0
    assert sum(chaos.applied.values()) >= 5
