"""``moetrack relay``: send an app's durable Redis backlog to the Data API.

Redis (the ``moetrack[redis]`` extra) is imported only when the command runs."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any

from ._common import add_api_options, api_config, backlog_arg, error

if TYPE_CHECKING:
    from ..redis.relay import Relay

__all__ = ["register"]

#: A relay retries a batch until it is delivered: the backlog is durable, and a batch given up
#: on would be read again anyway, behind entries of the same customers sent meanwhile.
RELAY_RETRY_DEADLINE = 7 * 24 * 3600.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = subparsers.add_parser(
        "relay",
        help="send an app's durable Redis backlog to the Data API",
        description=(
            "Send the Redis Streams backlog that clients with backlog=redis://… fill. Run any "
            "number of relays on any hosts: they share the backlog's partitions through "
            "expiring leases and the account's quota through the shared limiter. SIGTERM or "
            "Ctrl-C finishes the request in flight and exits."
        ),
    )
    backlog_arg(relay)
    add_api_options(
        relay, limiter_help="redis:// URL of the shared limiter (default: the backlog's Redis)"
    )
    relay.add_argument(
        "--max-batch-size",
        type=int,
        help="most records per request (default 1000; any size shares the quota safely)",
    )
    relay.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (needs moetrack[prometheus])",
    )
    relay.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)"
    )
    relay.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        help="seconds a partition lease lives unless renewed (default 10)",
    )
    relay.add_argument(
        "--claim-idle",
        type=float,
        help="seconds a dead relay's pending entries must be idle before another relay "
        "sends them again (default: 3 x --timeout)",
    )
    relay.set_defaults(handler=_relay)


# -- relay ---------------------------------------------------------------------------------------


def _relay(args: argparse.Namespace) -> int:
    from .._exceptions import ConfigurationError
    from .._report import Reporter
    from ..redis.connection import redact_url

    if not args.backlog:
        return error("relay", "--backlog (or MOETRACK_BACKLOG) is required")
    try:
        config = api_config(
            args,
            backlog=args.backlog,
            limiter=args.limiter or args.backlog,
            timeout=args.timeout,
            retry_deadline=RELAY_RETRY_DEADLINE,
            max_batch_size=args.max_batch_size or 1_000,
        )
    except ConfigurationError as exc:
        return error("relay", str(exc))
    if not config.has_credentials:
        return error(
            "relay", "needs --app-id and --api-key (or MOETRACK_APP_ID and MOETRACK_API_KEY)"
        )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s moetrack relay %(levelname)s: %(message)s"
    )
    logging.getLogger("moetrack").setLevel(logging.INFO)
    reporter = Reporter(None, None, config.secrets())
    try:
        from ..redis.relay import Relay

        relay = Relay(
            config,
            reporter,
            lease_ttl=args.lease_ttl,
            claim_idle=args.claim_idle,
        )
    except ConfigurationError as exc:
        return error("relay", str(exc))

    def on_signal(signum: int, frame: Any) -> None:
        relay.request_stop(config.timeout + 5.0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.metrics_port is not None:
        try:
            _serve_metrics(relay, args.metrics_port)
        except ImportError:
            return error(
                "relay",
                "--metrics-port needs prometheus_client: pip install 'moetrack[prometheus]'",
            )
    logging.getLogger("moetrack").info(
        "relay %s: sending the backlog of app %s at %s to %s",
        relay.source.id,
        config.app_id,
        redact_url(args.backlog),
        config.base_url,
    )
    relay.run()
    logging.getLogger("moetrack").info(
        "relay %s: stopped; delivered %d, dead letters %d",
        relay.source.id,
        relay.source.delivered,
        relay.source.failed,
    )
    return 0


def _serve_metrics(relay: Relay, port: int) -> None:
    from prometheus_client import REGISTRY, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counters = {
        "delivered": "records delivered (acknowledged after a 2xx)",
        "failed": "records refused for good and moved to the dead-letter stream",
        "retried": "requests retried",
        "rate_limited": "429 answers",
        "requests": "requests sent",
    }
    gauges = {
        "lag": "entries waiting in the partitions this relay holds",
        "pending": "entries read and not acknowledged",
        "oldest_pending_age": "age in seconds of the oldest entry read and not acknowledged",
    }

    class Collector:
        def collect(self) -> Any:
            values = relay.source.counters()
            for name, doc in counters.items():
                c = CounterMetricFamily(f"moetrack_relay_{name}", doc)
                c.add_metric([], values.get(name, 0))
                yield c
            for name, doc in gauges.items():
                g = GaugeMetricFamily(f"moetrack_relay_{name}", doc)
                g.add_metric([], values.get(name, 0))
                yield g
            g = GaugeMetricFamily("moetrack_relay_partitions", "partitions this relay holds")
            g.add_metric([], len(relay.source.owned()))
            yield g

    REGISTRY.register(Collector())
    start_http_server(port)
