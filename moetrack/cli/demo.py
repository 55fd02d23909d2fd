"""``moetrack demo``: an instrumented workload against the local emulator, summarised.

Starts the MoEngage Data API emulator in this process, points the default client at it, runs
a small shop through the public API (contexts, identify, device, ``@track_event``, several
threads, a few mistakes on purpose), flushes, and prints what arrived and what was dropped
and why. No credentials and no network are needed.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import moetrack
from moetrack.testing import Emulator

__all__ = ["main", "register", "run"]

CUSTOMERS = [f"shopper-{n:03d}" for n in range(1, 9)]
PRODUCTS = [
    ("SKU-RED-MUG", Decimal("12.50")),
    ("SKU-TEA-250", Decimal("8.99")),
    ("SKU-KETTLE", Decimal("59.00")),
]


@moetrack.track_event("Checkout Completed", capture=("order_id", "total"), currency="EUR")
def checkout(order_id: str, total: Decimal, items: list[str]) -> str:
    return f"receipt-{order_id}"


def _shopper(customer_id: str, n: int, rounds: int) -> None:
    # What a web framework integration does per request: bind the customer and platform.
    with moetrack.context(customer_id=customer_id, platform="web", app_version="4.2.0"):
        moetrack.identify(
            name=f"Shopper {n}",
            email=f"shopper{n}@example.com",
            first_seen=datetime(2026, 1, n, 9, 30, tzinfo=timezone.utc),
            vip=n % 3 == 0,
        )
        moetrack.device(device_id=f"browser-{n}", platform="web", push_id=f"web-push-token-{n}")
        for r in range(rounds):
            sku, price = PRODUCTS[(n + r) % len(PRODUCTS)]
            moetrack.track("Viewed Product", sku=sku, price=price)
            moetrack.track("Added To Cart", sku=sku, price=price, quantity=1 + r % 2)
            if r % 2 == 0:
                checkout(f"{customer_id}-{r}", price * (1 + r % 2), [sku])


def _mistakes() -> None:
    # Each of these is dropped by the client with a reason; the app carries on.
    moetrack.track("Purchase", customer_id=1, price=3999)  # a small primary key: "1" is refused
    moetrack.track("Purchase", customer_id="shopper-001", price=float("nan"))  # not JSON
    moetrack.track("Purchase", customer_id="shopper-001", userId="x")  # a reserved attribute name


def _show_api_drops(emu: Emulator) -> None:
    # The real Bulk Import API answers 200 and silently drops bad elements; the emulator
    # records them. Send one through the direct client to show it.
    from moetrack.api import DataAPI

    with DataAPI(emu.app_id, emu.api_key or "", endpoint=emu.url) as api:
        api.transition(
            [{"type": "customer", "customer_id": "guest", "attributes": {"plan": "free"}}]
        )


def run(threads: int = 4, rounds: int = 6, out: Any = print) -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(name)s %(levelname)s: %(message)s")
    with Emulator() as emu:
        client = moetrack.init(emu.app_id, emu.api_key, endpoint=emu.url, flush_interval=0.2)
        started = time.perf_counter()
        workers = [
            threading.Thread(target=_run_slice, args=(CUSTOMERS[i::threads], rounds))
            for i in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        _mistakes()
        delivered = moetrack.flush(timeout=30)
        elapsed = time.perf_counter() - started
        _show_api_drops(emu)
        stats = client.stats()
        _summary(emu, stats, delivered=delivered, elapsed=elapsed, threads=threads, out=out)
        moetrack.shutdown()
    return 0 if delivered and stats.failed == 0 else 1


def _run_slice(customers: list[str], rounds: int) -> None:
    for customer_id in customers:
        _shopper(customer_id, CUSTOMERS.index(customer_id) + 1, rounds)


def _summary(
    emu: Emulator, stats: moetrack.Stats, *, delivered: bool, elapsed: float, threads: int, out: Any
) -> None:
    users, devices, events = emu.users(), emu.devices(), emu.events()
    requests = [r for r in emu.requests() if r["app_id"] == emu.app_id]
    # The worker's requests (the last one is the direct-API request made by _show_api_drops).
    client_requests = requests[: stats.requests]
    bodies = [r["bytes"] for r in client_requests]
    per_action = Counter(e["action"] for e in events)
    out(f"moetrack demo: a small shop, {threads} threads, against the emulator at {emu.url}")
    out("")
    out("Arrived at the emulator")
    out(f"  users    {len(users):>5}")
    out(f"  devices  {len(devices):>5}")
    out(
        f"  events   {len(events):>5}   "
        + ", ".join(f"{a} {n}" for a, n in per_action.most_common())
    )
    out(
        f"  requests {len(client_requests):>5}   {sum(bodies):,} bytes, "
        f"largest body {max(bodies, default=0):,}"
        f" of {moetrack.get_client().config.max_batch_bytes:,} allowed"
    )
    sample = emu.events(customer_id=CUSTOMERS[0])[:3]
    out("")
    out(f"First events of {CUSTOMERS[0]} (attributes as MoEngage receives them):")
    for e in sample:
        out(f"  {e['action']:<20} platform={e['platform']:<4} {e['attributes']}")
    out("")
    out("Dropped by moetrack before sending (the app never saw an exception):")
    for reason, n in sorted(stats.dropped.items()):
        out(f"  {reason:<22} {n}")
    out("")
    out("Dropped silently by the API (answered 200; recorded by the emulator):")
    for d in emu.dropped():
        out(f"  {d['reason']:<22} {d.get('field') or ''}  {d['element']}")
    out("")
    out(
        f"Client stats: queued={stats.queued} sent={stats.sent} "
        f"dropped={sum(stats.dropped.values())} "
        f"failed={stats.failed} pending={stats.pending} requests={stats.requests} "
        f"({'all delivered' if delivered else 'NOT all delivered'} in {elapsed:.2f}s)"
    )
    out("")
    out("Browse it live: run `moetrack devserver`, open http://127.0.0.1:8700/ and point")
    out("an app at it with MOETRACK_ENDPOINT=http://127.0.0.1:8700")
    out(
        "MOETRACK_APP_ID=DEMO_APP_ID MOETRACK_API_KEY=demo-api-key (the local emulator's demo app)."
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the demo against a local emulator",
        description="Run the demo against a local emulator.",
    )
    demo.set_defaults(handler=main)


def main(args: argparse.Namespace | None = None) -> int:
    threads = getattr(args, "threads", None) or 4
    rounds = getattr(args, "rounds", None) or 6
    return run(threads=threads, rounds=rounds)


if __name__ == "__main__":
    raise SystemExit(main())
