"""``moetrack.logging``: log records and structlog event dicts become tracked events.

Logging is configured the way applications configure it (``logging.config.dictConfig`` with a
class path and keyword arguments), records go through the real ``logging`` machinery, and
what arrives is read back from a real emulator on loopback.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import moetrack
from moetrack.testing import Emulator
from tests.conftest import ClientFactory

HANDLER = "moetrack.logging.EventHandler"


@pytest.fixture
def configured() -> Iterator[list[str]]:
    """Names of loggers a test configures; their handlers are removed and closed afterwards."""
    names: list[str] = []
    root_level = logging.getLogger().level
    yield names
    logging.getLogger().setLevel(root_level)
    for name in names:
        log = logging.getLogger(name) if name else logging.getLogger()
        for handler in list(log.handlers):
            if type(handler).__module__ == "moetrack.logging":
                log.removeHandler(handler)
                handler.close()
        if name:
            log.setLevel(logging.NOTSET)
            log.propagate = True


def configure(configured: list[str], loggers: dict[str, Any], **handler: Any) -> None:
    """dictConfig with one EventHandler named "moetrack", routed to ``loggers``."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"moetrack": {"class": HANDLER, **handler}},
    }
    named = {k: v for k, v in loggers.items() if k}
    if named:
        config["loggers"] = named
    if "" in loggers:
        config["root"] = loggers[""]
    configured.extend(loggers)
    logging.config.dictConfig(config)


def dedicated() -> dict[str, Any]:
    """The "events" logger, and only it, routed to the handler."""
    return {"events": {"handlers": ["moetrack"], "level": "INFO", "propagate": False}}


def by_action(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action"]: e for e in events}


# -- dictConfig, a dedicated logger --------------------------------------------------------


def test_records_of_a_dedicated_logger_arrive_with_attributes_time_and_context(
    make_client: ClientFactory, emulator: Emulator, configured: list[str]
) -> None:
    client = make_client()
    configure(configured, dedicated(), level="INFO", client=client)
    log = logging.getLogger("events")

    with moetrack.context(customer_id="user-42", platform="web", attributes={"plan": "pro"}):
        log.info("Purchase", extra={"price": 3999, "currency": "INR", "items": ["a", "b"]})
        log.warning(
            "Refund %s",
            "ignored-arg",
            extra={"customer_id": "user-7", "app_version": "2.1.0", "device_id": "dev-1"},
        )
        log.debug("Below the handler's level")
        # A record made earlier and handled now keeps its own time.
        old = logging.makeLogRecord(
            {
                "name": "events",
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": "Signed Up",
                "created": 1_600_000_000.75,
                "source": "import",
            }
        )
        log.handle(old)

    assert client.flush(10)
    events = by_action(emulator.events())
    assert set(events) == {"Purchase", "Refund %s", "Signed Up"}

    purchase = events["Purchase"]
    assert purchase["customer_id"] == "user-42"
    assert purchase["platform"] == "web"
    assert purchase["attributes"] == {
        "plan": "pro",
        "price": 3999,
        "currency": "INR",
        "items": ["a", "b"],
    }
    assert isinstance(purchase["current_time"], int)

    refund = events["Refund %s"]  # the unformatted message is the action
    assert refund["customer_id"] == "user-7"  # extra beats the context
    assert refund["app_version"] == "2.1.0"
    assert refund["device_id"] == "dev-1"
    assert refund["platform"] == "web"
    assert refund["attributes"] == {"plan": "pro"}  # no LogRecord internals, no action fields

    signed_up = events["Signed Up"]
    assert signed_up["current_time"] == 1_600_000_000
    assert signed_up["attributes"] == {"plan": "pro", "source": "import"}
    assert client.stats().dropped == {}


def test_records_of_other_loggers_are_not_events(
    make_client: ClientFactory, emulator: Emulator, configured: list[str]
) -> None:
    client = make_client()
    configure(configured, dedicated(), client=client)

    with moetrack.context(customer_id="user-42"):
        logging.getLogger("app").warning("Not an event", extra={"price": 1})
        logging.getLogger().error("Nor this")
        logging.getLogger("events.child").info("Child of the events logger")
        logging.getLogger("events").info("Purchase")

    assert client.flush(10)
    assert [e["action"] for e in emulator.events()] == ["Child of the events logger", "Purchase"]
    assert client.stats().queued == 2


def test_default_client_is_resolved_when_a_record_is_emitted(
    emulator: Emulator, configured: list[str]
) -> None:
    # Configured before init(): the handler tracks on whatever the default client is then.
    configure(configured, dedicated(), level="INFO")
    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)

    with moetrack.context(customer_id="user-42"):
        logging.getLogger("events").info("Purchase", extra={"price": 10})

    assert moetrack.flush(10)
    [event] = emulator.events()
    assert event["action"] == "Purchase"
    assert event["attributes"] == {"price": 10}


def action_from_event_name(record: logging.LogRecord) -> str | None:
    name = getattr(record, "event_name", None)
    return name if isinstance(name, str) else None


def attributes_with_level(record: logging.LogRecord) -> dict[str, Any]:
    return {"level": record.levelname, "text": record.getMessage()}


def test_dictconfig_builds_action_and_attributes_callables_from_ext_paths(
    make_client: ClientFactory, emulator: Emulator, configured: list[str]
) -> None:
    client = make_client()
    configure(
        configured,
        dedicated(),
        client=client,
        action=f"ext://{__name__}.action_from_event_name",
        attributes=f"ext://{__name__}.attributes_with_level",
    )
    log = logging.getLogger("events")

    with moetrack.context(customer_id="user-42"):
        log.info("order %s paid", 17, extra={"event_name": "Order Paid", "customer_id": "u-9"})
        log.info("no event name: skipped")
        # An attribute literally called platform goes through the attributes mapping.
        log.error("failed %s", "card", extra={"event_name": "Payment Failed", "platform": "iOS"})

    assert client.flush(10)
    events = by_action(emulator.events())
    assert set(events) == {"Order Paid", "Payment Failed"}
    assert events["Order Paid"]["customer_id"] == "u-9"
    assert events["Order Paid"]["attributes"] == {"level": "INFO", "text": "order 17 paid"}
    assert events["Payment Failed"]["platform"] == "iOS"
    assert events["Payment Failed"]["attributes"] == {"level": "ERROR", "text": "failed card"}
    assert client.stats().queued == 2


# -- nothing loops -------------------------------------------------------------------------


class Collect(logging.Handler):
    """Keeps every record it handles."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def moetrack_records() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``moetrack`` logger, whatever a test does to the root logger."""
    own = logging.getLogger("moetrack")
    collect, level = Collect(), own.level
    own.addHandler(collect)
    yield collect.records
    own.removeHandler(collect)
    own.setLevel(level)


def test_moetrack_own_records_never_come_back_as_events(
    make_client: ClientFactory,
    emulator: Emulator,
    configured: list[str],
    moetrack_records: list[logging.LogRecord],
) -> None:
    # The worst case: the handler on the root logger, at DEBUG, sees everything.
    client = make_client(debug=True)
    configure(configured, {"": {"handlers": ["moetrack"], "level": "DEBUG"}}, client=client)
    log = logging.getLogger("events")

    with moetrack.context(customer_id="user-42"):
        log.info("Purchase")
        log.info("Bad customer", extra={"customer_id": "0"})  # dropped with a warning
        client.track("Broken", 42)  # type: ignore[arg-type]  # warns in the caller
        logging.getLogger("moetrack.integrations.example").warning("A child of moetrack")

    assert client.flush(10)
    assert emulator.wait_for(
        lambda: any(
            r.levelno == logging.WARNING and "customer_id" in r.getMessage()
            for r in list(moetrack_records)
        )
    )
    messages = [r.getMessage() for r in list(moetrack_records)]
    assert any("dropped a record in the caller" in m for m in messages), messages
    assert any(r.levelno == logging.DEBUG for r in list(moetrack_records)), messages
    assert client.flush(10)

    assert [e["action"] for e in emulator.events()] == ["Purchase"]
    stats = client.stats()
    # Exactly the three records handed over here: no event was made of moetrack's warnings,
    # its debug lines, or the HTTP client's request lines on the worker thread.
    assert stats.queued == 3
    assert stats.dropped == {"invalid_customer_id": 1, "error": 1}


def test_sync_client_does_not_recurse_through_its_own_request_logging(
    emulator: Emulator, configured: list[str]
) -> None:
    client = moetrack.Client(emulator.app_id, emulator.api_key, endpoint=emulator.url, sync=True)
    try:
        configure(configured, {"": {"handlers": ["moetrack"], "level": "DEBUG"}}, client=client)

        def log_one() -> None:
            with moetrack.context(customer_id="user-42"):
                logging.getLogger("events").info("Purchase")

        # On its own thread, so that a regression fails here instead of hanging the run.
        thread = threading.Thread(target=log_one, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "logging through a sync client did not return"
        assert [e["action"] for e in emulator.events()] == ["Purchase"]
        assert client.stats().queued == 1
    finally:
        client.shutdown(2.0)


def test_strict_client_does_not_recurse_through_a_before_send_that_logs(
    emulator: Emulator,
    configured: list[str],
    make_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def before_send(element: dict[str, Any]) -> dict[str, Any]:
        # In strict mode before_send runs on the caller's thread, inside track().
        logging.getLogger("events").info("checked an element")
        return element

    client = make_client(strict=True, before_send=before_send)
    configure(configured, {"events": {"handlers": ["moetrack"], "level": "INFO"}}, client=client)

    def log_one() -> None:
        with moetrack.context(customer_id="user-42"):
            logging.getLogger("events").info("Purchase")

    thread = threading.Thread(target=log_one, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "logging through a strict client did not return"
    assert client.flush(30)
    # Only the record logged by the application: not the line logged inside track().
    assert [e["action"] for e in emulator.events()] == ["Purchase"]
    assert client.stats().queued == 1
    assert "Traceback" not in capsys.readouterr().err


# -- errors ----------------------------------------------------------------------------------


def broken_action(record: logging.LogRecord) -> str:
    raise ZeroDivisionError("no action today")


def test_emit_errors_go_through_handle_error(
    make_client: ClientFactory,
    emulator: Emulator,
    configured: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client()
    configure(configured, dedicated(), client=client, action=f"ext://{__name__}.broken_action")
    log = logging.getLogger("events")

    monkeypatch.setattr(logging, "raiseExceptions", True)
    log.info("Purchase")  # does not raise
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "ZeroDivisionError: no action today" in err

    monkeypatch.setattr(logging, "raiseExceptions", False)
    log.info("Purchase")  # silent, as logging's rules say
    assert capsys.readouterr().err == ""
    assert client.stats().queued == 0


def test_strict_validation_errors_go_through_handle_error(
    make_client: ClientFactory,
    emulator: Emulator,
    configured: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(strict=True)
    configure(configured, dedicated(), client=client)
    monkeypatch.setattr(logging, "raiseExceptions", True)

    logging.getLogger("events").info("Purchase", extra={"customer_id": "0"})

    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "ValidationError" in err
    assert emulator.api_key
    assert emulator.api_key not in err


def test_handler_constructor_defaults_and_repr() -> None:
    from moetrack.logging import EventHandler

    handler = EventHandler()
    assert handler.level == logging.INFO
    assert isinstance(handler, logging.Handler)
    assert "EventHandler" in repr(handler)
    with pytest.raises(TypeError):
        EventHandler(logging.INFO, None)  # type: ignore[call-arg]


# -- structlog ---------------------------------------------------------------------------------


def test_structlog_pipeline_tracks_and_passes_the_event_on(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    import structlog

    from moetrack.logging import StructlogProcessor

    client = make_client()
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.contextvars.merge_contextvars,
            StructlogProcessor(client=client),
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )

    with moetrack.context(customer_id="user-42", platform="web"):
        structlog.contextvars.bind_contextvars(request_id="r-1")
        try:
            log.info("purchase", price=3999, currency="INR", app_version="3.0")
            log.info("refund", customer_id="user-7", user_timezone_offset=19800)
        finally:
            structlog.contextvars.clear_contextvars()

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [  # passed on unchanged
        {
            "app_version": "3.0",
            "currency": "INR",
            "event": "purchase",
            "level": "info",
            "price": 3999,
            "request_id": "r-1",
        },
        {
            "customer_id": "user-7",
            "event": "refund",
            "level": "info",
            "request_id": "r-1",
            "user_timezone_offset": 19800,
        },
    ]

    assert client.flush(10)
    events = by_action(emulator.events())
    assert events["purchase"]["customer_id"] == "user-42"
    assert events["purchase"]["platform"] == "web"
    assert events["purchase"]["app_version"] == "3.0"
    assert events["purchase"]["attributes"] == {
        "price": 3999,
        "currency": "INR",
        "request_id": "r-1",
    }
    assert events["refund"]["customer_id"] == "user-7"
    assert events["refund"]["user_timezone_offset"] == 19800
    assert events["refund"]["attributes"] == {"request_id": "r-1"}


def test_structlog_processor_as_last_step_drops_the_event(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    import structlog

    from moetrack.logging import StructlogProcessor

    client = make_client()
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[StructlogProcessor(client=client, drop=True)],
    )

    with moetrack.context(customer_id="user-42"):
        log.info("purchase", price=3999)

    assert out.getvalue() == ""
    assert client.flush(10)
    [event] = emulator.events()
    assert event["action"] == "purchase"
    assert event["attributes"] == {"price": 3999}


def test_structlog_processor_default_instance_uses_default_client_and_never_raises(
    emulator: Emulator, moetrack_logs: pytest.LogCaptureFixture
) -> None:
    import structlog

    from moetrack.logging import StructlogProcessor, structlog_processor

    moetrack.init(emulator.app_id, emulator.api_key, endpoint=emulator.url)

    def broken(event_dict: Any) -> str:
        raise ZeroDivisionError("no action today")

    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog_processor,
            StructlogProcessor(action=broken),
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
    )
    with moetrack.context(customer_id="user-42"):
        log.info("signed_up", source="ads")

    assert out.getvalue().startswith("event='signed_up'")  # the broken processor passed it on
    assert any("ZeroDivisionError" in r.getMessage() for r in moetrack_logs.records)
    assert moetrack.flush(10)
    [event] = emulator.events()
    assert event["action"] == "signed_up"
    assert event["attributes"] == {"source": "ads"}


def test_structlog_processor_in_a_foreign_pre_chain_skips_moetrack_records(
    make_client: ClientFactory, emulator: Emulator, configured: list[str]
) -> None:
    import structlog

    from moetrack.logging import StructlogProcessor

    seen: list[Any] = []

    def on_error(error: Exception) -> None:
        # Runs on the worker: what it logs through structlog must not become an event.
        seen.append(error)
        worker_log.warning("moetrack_error", error=str(error))

    client = make_client(on_error=on_error)
    processor = StructlogProcessor(client=client)
    worker_log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[processor, structlog.processors.KeyValueRenderer()],
    )
    out = io.StringIO()
    # structlog's formatter for stdlib records, with the processor in its foreign pre-chain,
    # on the root logger: every stdlib record goes through the processor.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), processor],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with moetrack.context(customer_id="user-42"):
            logging.getLogger("app").info("Signed Up")
            logging.getLogger("events").info("Bad customer", extra={"customer_id": "0"})
            logging.getLogger("moetrack").warning("moetrack's own warning")
        assert client.flush(10)
        assert emulator.wait_for(lambda: len(seen) == 1)
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)

    assert "moetrack's own warning" in out.getvalue()  # still logged
    assert [e["action"] for e in emulator.events()] == ["Signed Up"]
    assert client.stats().queued == 2


# -- import cost ---------------------------------------------------------------------------------


def test_the_module_is_light_and_leaves_the_standard_logging_module_alone() -> None:
    code = (
        "import sys, logging, moetrack\n"
        "assert 'moetrack.logging' not in sys.modules\n"
        "import moetrack.logging as ml\n"
        "assert 'structlog' not in sys.modules, 'structlog imported'\n"
        "assert issubclass(ml.EventHandler, logging.Handler)\n"
        "from moetrack import _report\n"
        "assert _report.logging is logging and logging.getLogger is _report.logging.getLogger\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
