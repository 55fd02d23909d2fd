"""A nemesis test of the scale-out path: producers, relays and an import share one quota while
faults strike at random, then a checker reads what the emulator stored.

The cast, all real processes on loopback:

- three producers (``moetrack.Client(backlog=…)``) appending to a real redis-server;
- three relays (``moetrack relay``) sending the backlog to the emulator;
- one ``moetrack import --limiter …`` sending a file straight to the emulator;
- the emulator enforcing the quota that everybody shares through the Redis limiter.

Every process talks to Redis and to the emulator through its own :class:`FaultProxy`, so a
strike hits one process's path. The nemesis, from a seeded random generator, strikes one at
a time: it delays, stalls, drops or cuts a proxy, freezes a relay (SIGSTOP, longer than its
lease) and wakes it (SIGCONT), or kills a relay (kill -9) and starts a new one. Then it
heals everything, and the checker, Jepsen-style, reads the history the emulator kept:

- every event a producer had acknowledged (its flush returned True) or the import reported
  sent arrived, and nothing that was never produced did;
- each customer's events arrived in order (first arrivals);
- duplicates are few: at most one batch per strike (only a batch in flight when a fault
  struck may be sent twice; the checker cannot tell which batch, so it bounds the count);
- no window of the quota's length holds more accepted events than the quota.

``MOETRACK_NEMESIS_SEED`` replays a run (the seed is printed, and named by any failure);
``MOETRACK_NEMESIS_SECONDS`` lengthens the nemesis (default 12 s; the whole test takes
about twice that).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from moetrack.testing import Emulator

from ..faults.procs import freeze, kill_9, wake
from ..faults.proxy import FaultProxy
from .conftest import RedisServer

CLI = [sys.executable, "-m", "moetrack.cli"]
#: The quota everybody shares and the emulator enforces, and the one batch size they use.
QUOTA, WINDOW, BATCH = 1500, 3.0, 100
PRODUCERS, RELAYS = 3, 3
#: Events per producer and rows imported, per second of nemesis: the senders are busy for
#: about as long as the nemesis strikes.
PER_PRODUCER_PER_SECOND = IMPORTED_PER_SECOND = 125

PRODUCER = """
import json, sys, moetrack
url, endpoint, app_id, key, name, n, chunk = sys.argv[1:8]
client = moetrack.Client(app_id, key, endpoint=endpoint, backlog=url, flush_interval=0.05,
                         shutdown_timeout=1.0)
acked = 0
for start in range(0, int(n), int(chunk)):
    for i in range(start, min(int(n), start + int(chunk))):
        client.track("Step", customer_id=f"{name}-c{i % 10}", seq=i)
    if client.flush(60):
        acked = min(int(n), start + int(chunk))
if client.flush(120):
    acked = int(n)
stats = client.stats()
print(json.dumps({"acked": acked, "sent": stats.sent, "dropped": stats.dropped}))
client.shutdown(2)
"""


def _seed() -> int:
    raw = os.environ.get("MOETRACK_NEMESIS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1 << 32)


class Cast:
    """The processes and their proxies."""

    def __init__(self, tmp: Path, server: RedisServer, emu: Emulator) -> None:
        self.tmp = tmp
        self.server = server
        self.emu = emu
        self.proxies: list[FaultProxy] = []
        #: Each process's paths: (proxy, "redis" or "api", role, process).
        self.paths: list[tuple[FaultProxy, str, str, subprocess.Popen[Any]]] = []
        self.relays: list[subprocess.Popen[bytes]] = []
        self.others: list[subprocess.Popen[Any]] = []
        self.lock = threading.Lock()

    def proxy_to_redis(self) -> FaultProxy:
        proxy = FaultProxy(self.server.port)
        self.proxies.append(proxy)
        return proxy

    def proxy_to_api(self) -> FaultProxy:
        port = urlsplit(self.emu.url).port
        assert port is not None
        proxy = FaultProxy(port)
        self.proxies.append(proxy)
        return proxy

    def quota_args(self) -> list[str]:
        return [
            "--events-per-minute", str(QUOTA),
            "--users-per-minute", "0",
            "--rate-limit-window", str(WINDOW),
        ]  # fmt: skip

    def start_relay(self) -> subprocess.Popen[bytes]:
        to_redis, to_api = self.proxy_to_redis(), self.proxy_to_api()
        log = open(self.tmp / f"relay{len(self.relays)}.log", "wb")
        proc = subprocess.Popen(
            [
                *CLI, "relay",
                "--backlog", f"redis://127.0.0.1:{to_redis.port}/0",
                "--endpoint", f"http://127.0.0.1:{to_api.port}",
                "--app-id", self.emu.app_id,
                "--api-key", str(self.emu.api_key),
                "--lease-ttl", "1",
                "--claim-idle", "1",
                "--timeout", "2",
                "--max-batch-size", str(BATCH),
                *self.quota_args(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        with self.lock:
            self.relays.append(proc)
            self.paths += [(to_redis, "redis", "relay", proc), (to_api, "api", "relay", proc)]
        return proc

    def start_producer(self, name: str, n: int) -> subprocess.Popen[str]:
        to_redis = self.proxy_to_redis()
        # A short socket timeout, so that a delayed answer makes the writer retry an append.
        url = f"redis://127.0.0.1:{to_redis.port}/0?socket_timeout=1"
        proc = subprocess.Popen(
            [
                sys.executable, "-c", PRODUCER, url, self.emu.url, self.emu.app_id,
                str(self.emu.api_key), name, str(n), "100",
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.tmp / f"{name}.log", "w"),
            text=True,
        )  # fmt: skip
        self.others.append(proc)
        with self.lock:
            self.paths.append((to_redis, "redis", "producer", proc))
        return proc

    def start_import(self, data: Path) -> subprocess.Popen[str]:
        to_redis, to_api = self.proxy_to_redis(), self.proxy_to_api()
        env = dict(os.environ)
        env.pop("MOETRACK_LIMITER", None)
        proc = subprocess.Popen(
            [
                *CLI, "import", str(data),
                "--endpoint", f"http://127.0.0.1:{to_api.port}",
                "--app-id", self.emu.app_id,
                "--api-key", str(self.emu.api_key),
                "--limiter", f"redis://127.0.0.1:{to_redis.port}/0",
                "--batch-size", str(BATCH),
                "--progress-interval", "5",
                *self.quota_args(),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(self.tmp / "import.log", "w"),
            text=True,
        )  # fmt: skip
        self.others.append(proc)
        with self.lock:
            self.paths += [(to_redis, "redis", "import", proc), (to_api, "api", "import", proc)]
        return proc

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in self.tmp.glob("*.log"))

    def close(self) -> None:
        for proc in [*self.relays, *self.others]:
            if proc.poll() is None:
                wake(proc)
                kill_9(proc)
        for proxy in self.proxies:
            proxy.close()


class Nemesis:
    """Strikes one fault at a time until ``seconds`` have passed; records each strike."""

    def __init__(self, cast: Cast, rng: random.Random, seconds: float) -> None:
        self.cast = cast
        self.rng = rng
        self.seconds = seconds
        #: (wall time, kind, role of the process struck)
        self.strikes: list[tuple[float, str, str]] = []
        self.done = threading.Event()
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            end = time.monotonic() + self.seconds
            while time.monotonic() < end and not self._halt.is_set():
                self.strike()
                # The schedule of faults, not a synchronisation: the next strike comes later.
                self._halt.wait(self.rng.uniform(0.2, 1.0))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for proxy in self.cast.proxies:
                proxy.heal()
            with self.cast.lock:
                relays = list(self.cast.relays)
            for proc in relays:
                if proc.poll() is None:
                    wake(proc)
            self.done.set()

    def halt(self) -> None:
        self._halt.set()

    def hold(self, seconds: float) -> None:
        self._halt.wait(seconds)  # how long a fault lasts

    def strike(self) -> None:
        rng = self.rng
        with self.cast.lock:
            live = [i for i, p in enumerate(self.cast.relays) if p.poll() is None]
        kind = rng.choice(
            ["redis-delay", "redis-stall", "redis-drop", "redis-cut", "api-delay", "api-drop",
             "api-cut", "freeze", "freeze", "kill"]
        )  # fmt: skip
        if kind in ("freeze", "kill"):
            self.strikes.append((time.time(), kind, "relay"))
        else:
            with self.cast.lock:
                paths = [
                    (proxy, role)
                    for proxy, path, role, proc in self.cast.paths
                    if proc.poll() is None and kind.startswith(path)
                ]
            if not paths:
                return
            # Relays' paths three times as often: they do the most, for the longest.
            proxy, role = rng.choice([p for p in paths for _ in range(3 if p[1] == "relay" else 1)])
            self.strikes.append((time.time(), kind, role))
            if kind.endswith("-delay"):
                proxy.delay(rng.uniform(0.2, 2.0))
                self.hold(rng.uniform(0.5, 2.0))
            elif kind == "redis-stall":
                proxy.stall()
                self.hold(rng.uniform(0.5, 2.5))
            elif kind.endswith("-drop"):
                proxy.drop()
            elif kind.endswith("-cut"):
                proxy.cut_next_reply()
                self.hold(0.5)
            proxy.heal()
            return
        if kind == "freeze" and live:
            proc = self.cast.relays[rng.choice(live)]
            freeze(proc)
            self.hold(rng.uniform(1.5, 3.5))  # longer than the lease (1 s)
            wake(proc)
        elif kind == "kill" and len(live) > 1:
            kill_9(self.cast.relays[rng.choice(live)])
            self.cast.start_relay()


def write_import(path: Path, rows: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            row = {
                "customer_id": f"imp-c{i % 10}",
                "action": "Imported",
                "attributes": {"seq": i},
                "current_time": 1_700_000_000 + i,
            }
            f.write(json.dumps(row) + "\n")
    return path


def test_the_scale_out_path_keeps_its_promises_while_the_nemesis_strikes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    seed = _seed()
    seconds = float(os.environ.get("MOETRACK_NEMESIS_SECONDS") or 12)
    print(f"nemesis seed {seed} ({seconds:g} s): MOETRACK_NEMESIS_SEED={seed} replays it")
    rng = random.Random(seed)
    per_producer = int(PER_PRODUCER_PER_SECOND * seconds)
    imported = int(IMPORTED_PER_SECOND * seconds)
    data = write_import(tmp_path / "history.jsonl", imported)
    with Emulator(events_per_minute=QUOTA, rate_limit_window=WINDOW) as emu:
        cast = Cast(tmp_path, redis_server, emu)
        try:
            for _ in range(RELAYS):
                cast.start_relay()
            producers = [cast.start_producer(f"p{k}", per_producer) for k in range(PRODUCERS)]
            importer = cast.start_import(data)
            nemesis = Nemesis(cast, rng, seconds)
            thread = threading.Thread(target=nemesis.run, name="nemesis")
            thread.start()
            try:
                outputs = [p.communicate(timeout=300)[0] for p in producers]
                import_out = importer.communicate(timeout=300)[0]
            finally:
                thread.join()
            assert nemesis.error is None, nemesis.error
            why = f"seed {seed}, strikes {nemesis.strikes}"
            acked = [json.loads(out.strip().splitlines()[-1])["acked"] for out in outputs]
            assert [p.returncode for p in producers] == [0] * PRODUCERS, (why, cast.logs())
            assert importer.returncode == 0, (why, import_out, cast.logs())
            expected = {
                (f"p{k}-c{i % 10}", i) for k in range(PRODUCERS) for i in range(acked[k])
            } | {(f"imp-c{i % 10}", i) for i in range(imported)}

            def arrived() -> set[tuple[str, int]]:
                return {_key(e) for e in emu.events()}

            assert emu.wait_for(lambda: expected <= arrived(), 180), (
                why,
                len(expected - arrived()),
                cast.logs(),
            )
            events = emu.events()
            requests = [r for r in emu.requests() if r["path"].startswith("/v1/")]
        finally:
            cast.close()
    check_history(events, requests, expected, nemesis.strikes, why)


def check_history(
    events: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    expected: set[tuple[str, int]],
    strikes: list[tuple[float, str, str]],
    why: str,
) -> None:
    keys = [_key(e) for e in events]
    counts = Counter(keys)
    # Every acknowledged event arrived; nothing arrived that nobody produced.
    assert expected <= set(counts), (why, sorted(expected - set(counts))[:10])
    assert set(counts) <= expected, (why, sorted(set(counts) - expected)[:10])
    # Order per customer, first arrivals.
    firsts: dict[str, list[int]] = {}
    for customer, seq in dict.fromkeys(keys):
        firsts.setdefault(customer, []).append(seq)
    for customer, seqs in firsts.items():
        assert seqs == sorted(seqs), (why, customer, _first_disorder(seqs))
    # Duplicates only from batches in flight at a fault: at most one batch per strike on a
    # sender (a relay or the import); none from a strike on a producer's path to Redis (a
    # retried append stores nothing twice).
    duplicated = sum(n - 1 for n in counts.values())
    senders = sum(1 for _, _, role in strikes if role != "producer")
    assert duplicated <= BATCH * senders, (why, duplicated, senders)
    # No window of the quota's length holds more accepted events than the quota.
    accepted = [(r["time"], r["events"]) for r in requests if r["status"] == 200 and r["events"]]
    worst = _busiest_window(accepted, WINDOW)
    refused = sum(1 for r in requests if r["status"] == 429)
    print(
        f"nemesis: {len(strikes)} strikes {Counter(f'{k}@{r}' for _, k, r in strikes)}; "
        f"{len(expected)} events expected, {len(keys)} arrived ({duplicated} duplicates); busiest "
        f"{WINDOW:g} s window {worst} of {QUOTA}; {refused} answers 429"
    )
    assert worst <= QUOTA, (why, worst)


def _busiest_window(accepted: list[tuple[float, int]], window: float) -> int:
    worst = total = 0
    start = 0
    for t, n in accepted:
        total += n
        while accepted[start][0] <= t - window:
            total -= accepted[start][1]
            start += 1
        worst = max(worst, total)
    return worst


def _first_disorder(seqs: list[int]) -> list[int]:
    for i in range(1, len(seqs)):
        if seqs[i] < seqs[i - 1]:
            return seqs[max(0, i - 3) : i + 3]
    return []


def _key(e: dict[str, Any]) -> tuple[str, int]:
    return (e["customer_id"], e["attributes"]["seq"])
