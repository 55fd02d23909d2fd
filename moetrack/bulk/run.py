"""``moetrack import``: history from files, through the send stage, resumable.

This module is the run: its options, the wiring of inputs, state, source, sender and
progress, the signals (Ctrl-C, SIGTERM) and the exit status. The parts:
:mod:`~moetrack.bulk.inputs` (reading rows), :mod:`~moetrack.bulk.state` (the resume state
and the rejects file), :mod:`~moetrack.bulk.source` (the Source the sender reads),
:mod:`~moetrack.bulk.summary` (the counts and the table) and
:mod:`~moetrack.bulk.progress` (what is shown meanwhile).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .inputs import KIND_NAMES, ImportError_, Input, open_inputs
from .pacing import SavedPacing
from .progress import Progress, write_err
from .source import BytesRead, FileSource, dry_run
from .state import Rejects, check_resume, default_state_path, load_state, new_state, save_state
from .summary import Summary, print_summary

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["ImportOptions", "run"]


class ImportOptions(NamedTuple):
    files: Sequence[str]
    kind: str | None = None
    dry_run: bool = False
    rejects: str | None = None
    state: str | None = None
    restart: bool = False
    progress_interval: float = 5.0
    #: None: live display when stderr is a terminal.
    live: bool | None = None


def run(options: ImportOptions, config: Config | None) -> int:
    """Run one import; returns the exit status (0 all sent, 1 some refused, 2 not finished)."""
    fancy = sys.stdout.isatty()
    live = sys.stderr.isatty() if options.live is None else options.live
    try:
        inputs = open_inputs(options.files, options.kind)
        if options.dry_run:
            return _run_dry(inputs, options, live, fancy)
        assert config is not None
        return _run_send(inputs, options, config, live, fancy)
    except ImportError_ as exc:
        write_err(f"moetrack import: {exc}")
        return 2


def _run_dry(inputs: list[Input], options: ImportOptions, live: bool, fancy: bool) -> int:
    from .._wire.spec import MAX_BODY_BYTES

    summary = Summary()
    rejects = Rejects(options.rejects, 0, show_file=len(inputs) > 1)
    bytes_read = BytesRead(inputs, 0)
    progress = Progress(
        summary,
        bytes_read,
        sum(i.size for i in inputs),
        config=None,
        interval=options.progress_interval,
        live=live,
        dry_run=True,
    )
    try:
        dry_run(
            inputs,
            options.kind,
            MAX_BODY_BYTES,
            rejects=rejects,
            summary=summary,
            progress=progress.update,
            on_open=bytes_read.opened,
        )
    finally:
        progress.close()
        rejects.close()
    print_summary(summary, dry_run=True, fancy=fancy)
    return 1 if summary.refused_total else 0


def _run_send(
    inputs: list[Input], options: ImportOptions, config: Config, live: bool, fancy: bool
) -> int:
    from .._pipeline.limiter import LocalLimiter
    from .._pipeline.source import Stop
    from .._report import Reporter
    from .._wire.transport import HTTPTransport

    if not config.has_credentials:
        raise ImportError_(
            "needs credentials: --app-id and --api-key, or MOETRACK_APP_ID and MOETRACK_API_KEY"
        )
    state_path = os.path.abspath(options.state or default_state_path(inputs))
    identities = [i.identity() for i in inputs]
    state = None if options.restart else load_state(state_path)
    summary = Summary()
    position = (0, 0, 0, 0)
    rejects_offset = 0
    if state is not None:
        check_resume(state, identities, options.kind, config)
        summary.sent = [0, 0, 0, 0]
        for name, n in (state.get("sent") or {}).items():
            summary.sent[KIND_NAMES.index(name)] = int(n)
        summary.refused = Summary.refused_from_json(state)
        for (k, _), n in summary.refused.items():
            summary.read[k] += n
        for k, n in enumerate(summary.sent):
            summary.read[k] += n
        if state.get("complete"):
            write_err(
                f"moetrack import: already imported (state {state_path}); --restart imports again"
            )
            print_summary(summary, dry_run=False, fancy=fancy)
            return 1 if summary.refused_total else 0
        raw = state.get("position") or [0, 0, 0, 0]
        position = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
        rejects_offset = int(state.get("rejects_offset") or 0)
        if state.get("rejects") != (
            None if options.rejects is None else os.path.abspath(options.rejects)
        ):
            raise ImportError_(
                "the import began with another --rejects file; give the same, or --restart"
            )
        where = inputs[position[0]]
        write_err(
            f"moetrack import: resuming {os.path.basename(where.path)} after line "
            f"{position[2]:,} ({sum(summary.sent):,} sent before)"
        )
    rejects = Rejects(options.rejects, rejects_offset, show_file=len(inputs) > 1)
    if state is None:
        state = new_state(identities, options.kind, config, rejects)
        if options.restart:
            # What the run before sent in the current window still counts at the server.
            state["pacing"] = _previous_pacing(state_path, config)
        save_state(state_path, state)
    stop = Stop()
    source = FileSource(
        inputs,
        options.kind,
        config.max_batch_bytes,
        rejects=rejects,
        summary=summary,
        stop=stop,
        state_path=state_path,
        state=state,
        position=position,
    )
    pacing = None
    if config.limiter is None and (config.users_per_minute or config.events_per_minute):
        pacing = SavedPacing(
            LocalLimiter(
                config.users_per_minute, config.events_per_minute, config.rate_limit_window
            ),
            timeout=config.timeout,
            saved=state.get("pacing"),
            save=source.save_pacing,
        )
        source.pacing = pacing.to_json
    try:
        from .._pipeline.sender import Sender

        reporter = Reporter(source, None, config.secrets())
        sender = Sender(config, config.transport or HTTPTransport(), reporter, pacing)
        source.resend = lambda items: sender.send_all(items, source, stop)
    except ImportError as exc:  # the shared limiter's extra is missing
        rejects.close()
        raise ImportError_(f"cannot start: {exc}") from None
    progress = Progress(
        summary,
        source.bytes_read,
        sum(i.size for i in inputs),
        config=config,
        interval=options.progress_interval,
        live=live,
        dry_run=False,
    )
    crashed: list[BaseException] = []

    def send() -> None:
        try:
            sender.run(source, stop)
        except BaseException as exc:  # reported below, on the main thread
            crashed.append(exc)

    thread = threading.Thread(target=send, name="moetrack-import", daemon=True)
    restore = _on_signals(source)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            progress.update()
            if stop.expired():
                break  # a second signal: the answer in flight is not waited for
    finally:
        restore()
        progress.close()
        if not thread.is_alive():  # else it still holds both; the process is ending anyway
            sender.close()
            reporter.close()
    reason: str | None = None
    if crashed:
        reason = f"{type(crashed[0]).__name__}: {crashed[0]}"
    elif source.error is not None:
        reason = str(source.error)
    elif source.complete:
        source.finish()
    else:
        reason = "interrupted"
    rejects.close()
    print_summary(summary, dry_run=False, fancy=fancy)
    if reason is not None:
        write_err(
            f"moetrack import: could not finish: {reason}\n"
            f"moetrack import: run the same command again to continue (state {state_path})"
        )
        return 2
    return 1 if summary.refused_total else 0


def _previous_pacing(state_path: str, config: Config) -> Any:
    """The pacing window of the state a ``--restart`` replaces (None if it has none)."""
    try:
        previous = load_state(state_path)
    except ImportError_:
        return None
    if (
        previous is None
        or previous.get("app_id") != config.app_id
        or previous.get("endpoint") != config.base_url
    ):
        return None
    return previous.get("pacing")


def _on_signals(source: FileSource) -> Callable[[], None]:
    """Ctrl-C and SIGTERM: finish the batch in flight, save, and stop; a second one stops
    at once (what was in flight is sent again by the next run)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        # The stop is asked for before it is reported: a second signal can arrive while the
        # line is written, and its handler then runs inside this one.
        if source.stop.requested:
            source.stop.deadline = time.monotonic()
            write_err("moetrack import: stopping now; the next run sends the request in flight")
            return
        source.interrupt()
        write_err("moetrack import: stopping after the request in flight")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
