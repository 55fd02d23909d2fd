"""``moetrack relay`` and ``moetrack backlog status|dead|replay``: the durable backlog's
command line. Redis (the ``moetrack[redis]`` extra) is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ._common import add_api_options, api_config

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
    _backlog_arg(relay)
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

    backlog = subparsers.add_parser(
        "backlog",
        help="inspect the durable Redis backlog: status, dead letters, replay",
        description="Inspect the durable Redis backlog of one app id, or of every app id.",
    )
    commands = backlog.add_subparsers(dest="backlog_command", metavar="COMMAND")
    status = commands.add_parser(
        "status",
        help="depth, pending, oldest entry, dead letters and live relays",
        description="Show depth, pending entries, the oldest entry's age, dead letters and "
        "the live relays. Exits 0 when the backlog could be read.",
    )
    _backlog_arg(status)
    status.add_argument("--app-id", help="one app id (default: every app id in this Redis)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    dead = commands.add_parser(
        "dead",
        help="list the dead letters",
        description="List the entries the server refused for good, with its answer.",
    )
    _backlog_arg(dead)
    dead.add_argument("--app-id", help="app id (default: $MOETRACK_APP_ID, or the only one)")
    dead.add_argument("--limit", type=int, default=100, help="most to list (default 100)")
    dead.add_argument("--json", action="store_true", help="print JSON lines")
    dead.set_defaults(handler=_dead)

    replay = commands.add_parser(
        "replay",
        help="requeue dead letters for the relays",
        description="Put dead letters back on their customers' partitions (after fixing what "
        "made the server refuse them) and remove them from the dead-letter stream.",
    )
    _backlog_arg(replay)
    replay.add_argument("--app-id", help="app id (default: $MOETRACK_APP_ID, or the only one)")
    replay.add_argument("ids", nargs="*", help="dead-letter ids to requeue (default: all)")
    replay.set_defaults(handler=_replay)
    backlog.set_defaults(handler=lambda args: _usage(backlog))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _backlog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backlog",
        default=os.environ.get("MOETRACK_BACKLOG") or None,
        help="Redis URL of the backlog (default: $MOETRACK_BACKLOG)",
    )


def _error(command: str, message: str, code: int = 2) -> int:
    print(f"moetrack {command}: {message}", file=sys.stderr)
    return code


# -- relay ---------------------------------------------------------------------------------------


def _relay(args: argparse.Namespace) -> int:
    from .._exceptions import ConfigurationError
    from .._report import Reporter
    from ..redis.backlog import redact_url

    if not args.backlog:
        return _error("relay", "--backlog (or MOETRACK_BACKLOG) is required")
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
        return _error("relay", str(exc))
    if not config.has_credentials:
        return _error(
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
        return _error("relay", str(exc))

    def on_signal(signum: int, frame: Any) -> None:
        relay.request_stop(config.timeout + 5.0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.metrics_port is not None:
        try:
            _serve_metrics(relay, args.metrics_port)
        except ImportError:
            return _error(
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


# -- backlog status | dead | replay ---------------------------------------------------------------


def _connect(command: str, args: argparse.Namespace) -> tuple[Any, int]:
    from .._exceptions import ConfigurationError
    from ..redis.backlog import connect, redact_url

    if not args.backlog:
        return None, _error(command, "--backlog (or MOETRACK_BACKLOG) is required")
    try:
        client = connect(args.backlog, timeout=5.0, name="moetrack-cli")
        client.ping()
    except ConfigurationError as exc:
        return None, _error(command, str(exc))
    except Exception as exc:
        return None, _error(
            command, f"cannot read the backlog at {redact_url(args.backlog)}: {exc}", 1
        )
    return client, 0


def _app_ids(client: Any) -> list[str]:
    found = set()
    for key in client.scan_iter(match="mt:{*}:meta", count=1000):
        text = key.decode() if isinstance(key, bytes) else str(key)
        found.add(text[len("mt:{") : -len("}:meta")])
    return sorted(found)


def _one_app(command: str, client: Any, args: argparse.Namespace) -> str | None:
    app_id: str | None = args.app_id or os.environ.get("MOETRACK_APP_ID") or None
    if app_id:
        return app_id
    apps = _app_ids(client)
    if len(apps) == 1:
        return apps[0]
    if apps:
        _error(command, f"several app ids have a backlog here ({', '.join(apps)}): pass --app-id")
    else:
        _error(command, "no backlog here; pass --app-id")
    return None


def _age(ms: float) -> str:
    seconds = max(0.0, ms / 1000)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _status_of(client: Any, app_id: str) -> dict[str, Any]:
    from ..redis.backlog import DEFAULT_PARTITIONS, GROUP, Keys

    keys = Keys(app_id)
    now_s, now_us = client.time()
    now_ms = now_s * 1000 + now_us // 1000
    raw = client.hget(keys.meta, "partitions")
    partitions = int(raw) if raw else DEFAULT_PARTITIONS
    depth = pending = 0
    oldest: int | None = None
    per_partition = []
    for n in range(partitions):
        key = keys.partition(n)
        length = int(client.xlen(key))
        waiting = 0
        if length:
            try:
                summary: Any = client.xpending(key, GROUP)
                waiting = int(summary["pending"])
            except Exception:  # no consumer group yet: no relay ever ran
                waiting = 0
            first = client.xrange(key, count=1)
            if first:
                ms = int(first[0][0].split(b"-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
        lease = client.get(keys.lease(n))
        per_partition.append(
            {
                "partition": n,
                "depth": length,
                "pending": waiting,
                "relay": lease.decode() if lease else None,
            }
        )
        depth += length
        pending += waiting
    relays = []
    for member, _score in client.zrange(keys.relays, 0, -1, withscores=True):
        relay_id = member.decode()
        info = {k.decode(): v.decode() for k, v in client.hgetall(keys.relay(relay_id)).items()}
        if not info:
            continue  # its heartbeat expired: not live
        info["id"] = relay_id
        info["heartbeat_age"] = round((now_ms - int(info.get("heartbeat", now_ms))) / 1000, 3)
        relays.append(info)
    return {
        "app_id": app_id,
        "partitions": partitions,
        "depth": depth,
        "pending": pending,
        "oldest_age": None if oldest is None else round((now_ms - oldest) / 1000, 3),
        "dead": int(client.xlen(keys.dead)),
        "relays": relays,
        "per_partition": per_partition,
    }


def _status(args: argparse.Namespace) -> int:
    client, code = _connect("backlog status", args)
    if client is None:
        return code
    try:
        apps = [args.app_id] if args.app_id else _app_ids(client)
        reports = [_status_of(client, app) for app in apps]
    except Exception as exc:
        return _error("backlog status", f"cannot read the backlog: {exc}", 1)
    finally:
        client.close()
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    if not reports:
        print("no backlog in this Redis yet")
    for report in reports:
        oldest = report["oldest_age"]
        print(f"app {report['app_id']} ({report['partitions']} partitions)")
        print(f"  depth    {report['depth']:,} entries waiting or being sent")
        print(f"  pending  {report['pending']:,} read by a relay, not acknowledged yet")
        print(f"  oldest   {'-' if oldest is None else _age(oldest * 1000)}")
        print(f"  dead     {report['dead']:,} dead letters")
        print(f"  relays   {len(report['relays'])} live")
        for relay in report["relays"]:
            print(
                f"    {relay['id']}  host {relay.get('host')} pid {relay.get('pid')}  "
                f"last heartbeat {_age(relay['heartbeat_age'] * 1000)} ago  "
                f"partitions [{relay.get('partitions', '')}]  "
                f"delivered {relay.get('delivered', 0)}  failed {relay.get('failed', 0)}  "
                f"retried {relay.get('retried', 0)}  429s {relay.get('rate_limited', 0)}"
            )
    return 0


def _dead(args: argparse.Namespace) -> int:
    from ..redis.backlog import Keys

    client, code = _connect("backlog dead", args)
    if client is None:
        return code
    try:
        app_id = _one_app("backlog dead", client, args)
        if app_id is None:
            return 2
        entries = client.xrange(Keys(app_id).dead, count=max(1, args.limit))
        total = int(client.xlen(Keys(app_id).dead))
    except Exception as exc:
        return _error("backlog dead", f"cannot read the backlog: {exc}", 1)
    finally:
        client.close()
    for entry_id, fields in entries:
        f = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
        if args.json:
            print(json.dumps({"id": entry_id.decode(), **f}))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(f.get("failed_at", 0)) / 1000))
        payload = f.get("payload", "")
        if len(payload) > 200:
            payload = payload[:200] + "…"
        print(
            f"{entry_id.decode()}  {when}Z  customer {f.get('customer_id')}  "
            f"status {f.get('status')}  {f.get('error_type', '')} {f.get('error', '')}".rstrip()
        )
        print(f"    {payload}")
    if not args.json:
        print(
            f"{total:,} dead letters" + (f" ({len(entries)} shown)" if total > len(entries) else "")
        )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from ..redis.backlog import DEFAULT_PARTITIONS, Keys, partition_of

    client, code = _connect("backlog replay", args)
    if client is None:
        return code
    try:
        app_id = _one_app("backlog replay", client, args)
        if app_id is None:
            return 2
        keys = Keys(app_id)
        raw = client.hget(keys.meta, "partitions")
        partitions = int(raw) if raw else DEFAULT_PARTITIONS
        wanted = set(args.ids)
        moved = 0
        start = "-"
        while True:
            batch = client.xrange(keys.dead, min=start, count=500)
            if not batch:
                break
            start = "(" + batch[-1][0].decode()
            chosen = [(i, f) for i, f in batch if not wanted or i.decode() in wanted]
            if not chosen:
                continue
            with client.pipeline(transaction=True) as pipe:
                for entry_id, f in chosen:
                    cid = f[b"customer_id"].decode("utf-8", "surrogatepass")
                    fields = {b"kind": f[b"kind"], b"customer_id": f[b"customer_id"]}
                    if b"device_id" in f:
                        fields[b"device_id"] = f[b"device_id"]
                    fields[b"payload"] = f[b"payload"]
                    pipe.xadd(keys.partition(partition_of(cid, partitions)), fields)
                    pipe.xdel(keys.dead, entry_id)
                pipe.execute()
            moved += len(chosen)
    except Exception as exc:
        return _error("backlog replay", f"cannot replay: {exc}", 1)
    finally:
        client.close()
    print(f"requeued {moved:,} dead letters of app {app_id}")
    return 0
