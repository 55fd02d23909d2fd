"""``moetrack backlog status|dead|replay``: inspect the durable Redis backlog of one app id,
or of every app id, list its dead letters and requeue them.

Redis (the ``moetrack[redis]`` extra) is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ._common import backlog_arg, error

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    backlog_arg(status)
    status.add_argument("--app-id", help="one app id (default: every app id in this Redis)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    dead = commands.add_parser(
        "dead",
        help="list the dead letters",
        description="List the entries the server refused for good, with its answer.",
    )
    backlog_arg(dead)
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
    backlog_arg(replay)
    replay.add_argument("--app-id", help="app id (default: $MOETRACK_APP_ID, or the only one)")
    replay.add_argument("ids", nargs="*", help="dead-letter ids to requeue (default: all)")
    replay.set_defaults(handler=_replay)
    backlog.set_defaults(handler=lambda args: _usage(backlog))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- backlog status | dead | replay ---------------------------------------------------------------


def _connect(command: str, args: argparse.Namespace) -> tuple[Any, int]:
    from .._exceptions import ConfigurationError
    from ..redis.connection import connect, redact_url

    if not args.backlog:
        return None, error(command, "--backlog (or MOETRACK_BACKLOG) is required")
    try:
        client = connect(args.backlog, timeout=5.0, name="moetrack-cli")
        client.ping()
    except ConfigurationError as exc:
        return None, error(command, str(exc))
    except Exception as exc:
        return None, error(
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
        error(command, f"several app ids have a backlog here ({', '.join(apps)}): pass --app-id")
    else:
        error(command, "no backlog here; pass --app-id")
    return None


def _age(ms: float) -> str:
    seconds = max(0.0, ms / 1000)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _status_of(client: Any, app_id: str) -> dict[str, Any]:
    from ..redis.connection import Keys, read_partitions
    from ..redis.leases import GROUP

    keys = Keys(app_id)
    now_s, now_us = client.time()
    now_ms = now_s * 1000 + now_us // 1000
    partitions = read_partitions(client, keys, create=False)
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
                "relay": lease.decode().split("#")[0] if lease else None,
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
        return error("backlog status", f"cannot read the backlog: {exc}", 1)
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
    from ..redis.connection import Keys

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
        return error("backlog dead", f"cannot read the backlog: {exc}", 1)
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
    from ..redis.connection import Keys, partition_of, read_partitions

    client, code = _connect("backlog replay", args)
    if client is None:
        return code
    try:
        app_id = _one_app("backlog replay", client, args)
        if app_id is None:
            return 2
        keys = Keys(app_id)
        partitions = read_partitions(client, keys, create=False)
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
        return error("backlog replay", f"cannot replay: {exc}", 1)
    finally:
        client.close()
    print(f"requeued {moved:,} dead letters of app {app_id}")
    return 0
