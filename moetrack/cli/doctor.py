"""``moetrack doctor``: is this Redis fit to hold a backlog, or to share a quota?

``moetrack doctor --backlog URL`` reads the server's persistence and memory settings and
says, in plain words, what each one means for the records waiting there: it warns unless
``appendonly yes`` and ``maxmemory-policy noeviction``. ``--limiter URL`` checks a Redis for
the shared limiter, which keeps only a few expiring keys. Exit status: 0 when all is well,
1 with warnings, 2 when a Redis cannot be reached (the reason is said, never the password).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Literal

__all__ = ["check", "register"]

Role = Literal["backlog", "limiter"]
Finding = tuple[Literal["ok", "note", "warn"], str]

#: XAUTOCLAIM, with which a relay takes over what a dead relay left pending.
BACKLOG_MIN_VERSION = (6, 2)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check that a Redis is set up to hold the backlog or share the quota",
        description=(
            "Connect to the Redis of a backlog (--backlog) or of a shared limiter (--limiter) "
            "and say what its settings mean for the records kept there. Exits 0 when all is "
            "well, 1 with warnings, 2 when a Redis cannot be reached."
        ),
    )
    parser.add_argument("--backlog", metavar="URL", help="the backlog's redis:// URL")
    parser.add_argument(
        "--limiter", metavar="URL", help="the shared limiter's redis:// URL (default: none)"
    )
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    targets: list[tuple[Role, str]] = []
    if args.backlog:
        targets.append(("backlog", args.backlog))
    if args.limiter:
        targets.append(("limiter", args.limiter))
    if not targets:
        print("moetrack doctor: give --backlog URL and/or --limiter URL", file=sys.stderr)
        return 2
    status = 0
    for role, url in targets:
        status = max(status, check(role, url))
    return status


def check(role: Role, url: str, out: Any = None) -> int:
    """Check one Redis for ``role``, print the findings to ``out``; the exit status."""
    from ..redis.connection import connect, redact_url, url_password

    out = sys.stdout if out is None else out
    shown = redact_url(url)
    try:
        import redis
    except ImportError:
        print("moetrack doctor: needs the redis package: pip install 'moetrack[redis]'", file=out)
        return 2
    password = url_password(url)
    try:
        client = connect(url, timeout=5.0, name=None, health_check_interval=0)
        info: dict[str, Any] = dict(client.info("server"))
        version = str(info.get("redis_version", "?"))
        settings = _settings(client)
        scripting = _scripting(client) if role == "limiter" else None
    except (redis.RedisError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if password:
            reason = reason.replace(password, "***")
        print(f"moetrack doctor: cannot reach the {role}'s Redis at {shown}: {reason}", file=out)
        return 2
    finally:
        if "client" in locals():
            client.close()

    findings = (
        _backlog_findings(version, settings)
        if role == "backlog"
        else _limiter_findings(version, settings, scripting)
    )
    print(f"moetrack doctor: the {role}'s Redis at {shown} (Redis {version})", file=out)
    for level, text in findings:
        print(f"  {level.upper():<4}  {text}", file=out)
    warnings = sum(1 for level, _ in findings if level == "warn")
    if warnings:
        print(f"  {warnings} warning{'s' if warnings > 1 else ''}.", file=out)
        return 1
    print("  All is well.", file=out)
    return 0


def _settings(client: Any) -> dict[str, str | None]:
    """appendonly, appendfsync, maxmemory-policy, maxmemory and save, from CONFIG GET, or
    from INFO where CONFIG is disabled (as on many managed services); None: unknown."""
    import redis

    names = ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory", "save")
    try:
        found = {}
        for name in names:
            found.update(client.config_get(name))
        return {name: _text(found[name]) if name in found else None for name in names}
    except redis.ResponseError:
        pass
    persistence = client.info("persistence")
    memory = client.info("memory")
    aof = persistence.get("aof_enabled")
    return {
        "appendonly": None if aof is None else ("yes" if int(aof) else "no"),
        "appendfsync": None,
        "maxmemory-policy": _text(memory.get("maxmemory_policy")),
        "maxmemory": _text(memory.get("maxmemory")),
        "save": None,
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _scripting(client: Any) -> str | None:
    """None when Lua scripts with ``TIME`` run; otherwise why not."""
    import redis

    try:
        client.eval("return redis.call('TIME')", 0)
    except redis.ResponseError as exc:
        return str(exc)
    return None


def _version(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


def _memory_findings(settings: dict[str, str | None], what: str) -> list[Finding]:
    policy = settings["maxmemory-policy"]
    limit = settings["maxmemory"]
    findings: list[Finding] = []
    if policy is None:
        findings.append(
            ("warn", f"maxmemory-policy unknown: check that it is noeviction ({what}).")
        )
    elif policy == "noeviction":
        findings.append(
            (
                "ok",
                "maxmemory-policy noeviction: a full Redis refuses new writes and never "
                "deletes what it holds.",
            )
        )
    elif policy.startswith("allkeys-"):
        findings.append(
            (
                "warn",
                f"maxmemory-policy {policy}: when memory is full, Redis silently deletes any "
                f"key, {what}. Set maxmemory-policy noeviction.",
            )
        )
    else:
        findings.append(
            (
                "warn",
                f"maxmemory-policy {policy}: when memory is full, Redis silently deletes keys "
                f"that expire, {what}. Set maxmemory-policy noeviction.",
            )
        )
    if limit is not None:
        if limit == "0":
            findings.append(
                (
                    "note",
                    "maxmemory 0 (no limit): Redis grows until the machine runs out of "
                    "memory, where the system may kill it.",
                )
            )
        else:
            findings.append(("ok", f"maxmemory {int(limit):,} bytes."))
    return findings


def _backlog_findings(version: str, settings: dict[str, str | None]) -> list[Finding]:
    findings: list[Finding] = []
    if _version(version) < BACKLOG_MIN_VERSION:
        findings.append(
            (
                "warn",
                f"Redis {version} lacks XAUTOCLAIM (6.2 and later): relays cannot take over "
                "what a dead relay left pending.",
            )
        )
    appendonly, fsync, save = settings["appendonly"], settings["appendfsync"], settings["save"]
    if appendonly == "yes":
        findings.append(
            (
                "ok",
                "appendonly yes: every write goes to the append-only file, which a restart "
                "replays.",
            )
        )
        if fsync == "always":
            findings.append(
                (
                    "ok",
                    "appendfsync always: a write is on disk before Redis answers; a crash "
                    "loses nothing acknowledged (each write waits for the disk).",
                )
            )
        elif fsync == "everysec":
            findings.append(
                (
                    "note",
                    "appendfsync everysec: the file is flushed to disk once a second; a crash "
                    "of the machine or of redis-server can lose about the last second of "
                    "writes.",
                )
            )
        elif fsync == "no":
            findings.append(
                (
                    "warn",
                    "appendfsync no: the system flushes the file when it likes (about every "
                    "30 s on Linux); a crash of the machine can lose that much of the "
                    "backlog. Set appendfsync everysec, or always.",
                )
            )
        else:
            findings.append(("note", "appendfsync unknown: everysec or always is advised."))
    elif appendonly == "no":
        if save:
            lost = (
                f"appendonly no: only the snapshots (save {save}) are kept on disk; a restart "
                "brings back the last snapshot and loses every entry written since."
            )
        else:
            lost = "appendonly no, and no snapshots: a restart empties the backlog."
        findings.append(("warn", lost + " Set appendonly yes."))
    else:
        findings.append(("warn", "appendonly unknown: check that it is yes."))
    findings += _memory_findings(settings, "backlog entries included")
    return findings


def _limiter_findings(
    version: str, settings: dict[str, str | None], scripting: str | None
) -> list[Finding]:
    findings: list[Finding] = []
    if scripting is None:
        findings.append(("ok", "Lua scripts run, with Redis's clock (TIME)."))
    else:
        findings.append(
            (
                "warn",
                f"Lua scripts do not run ({scripting}): every process falls back to pacing "
                "itself alone.",
            )
        )
    findings.append(
        (
            "note",
            "persistence does not matter to the limiter: its keys live one window at most; "
            "a restart forgets them and may let one extra burst through.",
        )
    )
    findings += _memory_findings(
        settings, "the limiter's counters included, which lets a burst over the quota through"
    )
    return findings
