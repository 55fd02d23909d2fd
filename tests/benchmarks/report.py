"""The results as a terminal table, a markdown page and a PNG chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Metric, Row, Target

LABELS = {
    "moetrack": "moetrack",
    "moetrack-kwargs": "moetrack (attrs as kwargs)",
    "moetrack-ratelimited": "moetrack (rate-limited backlog)",
    "floor": "floor: get+time+append in a call",
    "floor-inline": "floor: get+time+append inline",
    "segment": "segment-analytics-python",
    "posthog": "posthog",
    "bare": "bare interpreter",
    "track_event": "@moetrack.track_event",
    "bare-call": "bare call",
    "timer": "timer alone: a perf_counter_ns() pair",
    "handler": "log.info() through moetrack's EventHandler",
    "logging-discard": "log.info() to a do-nothing handler",
    "sink-ceiling-moetrack": "sink ceiling (moetrack-shaped bodies)",
    "sink-ceiling-segment": "sink ceiling (Segment-shaped bodies)",
}


def label(contender: str) -> str:
    return LABELS.get(contender, contender)


def num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in {"µs", "ms"}:
        text = f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    elif unit == "ratio":
        text = f"{value:.3g}"
    elif unit == "target":
        text = f"{value:.4g}"
    else:
        text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".strip() if unit and unit not in {"ratio", "target"} else text


def ratio_text(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.3g} (1/{1 / value:.3g})"
    return f"{value:.3g}"


def rounds_text(values: Sequence[float | None], unit: str) -> str:
    return " ".join(num(v, "ratio" if unit == "ratio" else "") for v in values)


def _sink_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for c in doc["sink_ceiling"]:
        if "error" in c:
            lines.append(f"{c.get('kind', '?')}: {c['error']}")
            continue
        lines.append(
            f"{c['kind']} bodies ({c['body_bytes']:,} B): {c['requests_per_s']:,.0f} requests/s, "
            f"{c['events_per_s']:,.0f} events/s"
        )
    return lines


def _fastest(summary: dict[str, dict[str, Row]]) -> str:
    rows = [
        r
        for r in summary.get("throughput", {}).values()
        if r.median and not r.contender.startswith("sink-")
    ]
    if not rows:
        return ""
    best = max(rows, key=lambda r: r.median or 0)
    return f"fastest contender: {label(best.contender)} at {best.median:,.0f} events/s"


def overheads(metric: Metric, summary: dict[str, dict[str, Row]]) -> list[str]:
    """Differences worth a sentence under a table: what a wrapper adds to the call it wraps."""
    rows = summary.get(metric.key, {})

    def median(name: str) -> float | None:
        row = rows.get(name)
        return row.median if row is not None else None

    out = []
    if metric.key == "decorator":
        te, bare = median("track_event"), median("bare-call")
        if te is not None and bare is not None:
            out.append(f"overhead of @moetrack.track_event: {te - bare:,.0f} ns per call")
    if metric.key in {"handler_median", "handler_p99"}:
        handler, track = median("handler"), median("moetrack")
        logging_ = median("logging-discard")
        if handler is not None and track is not None:
            text = (
                f"log.info() through the handler costs {handler - track:+,.0f} ns next to a "
                "bare track()"
            )
            if logging_ is not None:
                text += (
                    f"; logging itself (the record, `extra`, a do-nothing handler) takes "
                    f"{logging_:,.0f} ns and the handler's emit() {handler - logging_:+,.0f} ns"
                )
            out.append(text)
    return out


def settings_lines(doc: dict[str, Any]) -> list[str]:
    return [f"{label(k)}: {v}" for k, v in (doc.get("settings") or {}).items()]


def terminal(
    doc: dict[str, Any],
    metrics: Sequence[Metric],
    summary: dict[str, dict[str, Row]],
    targets: Sequence[Target],
) -> str:
    m = doc["machine"]
    out = [
        "",
        f"moetrack {m['versions'].get('moetrack')} vs segment-analytics-python "
        f"{m['versions'].get('segment-analytics-python')} vs posthog "
        f"{m['versions'].get('posthog')}  —  Python {m['python']}, {m['cpu']}, "
        f"{m['cores']} cores, {m['date']}, {doc['rounds']} round(s)",
        "",
        "Sink ceiling (one blaster process, one keep-alive connection, like each SDK):",
    ]
    out += ["  " + line for line in _sink_lines(doc)]
    fastest = _fastest(summary)
    if fastest:
        out.append("  " + fastest)
    if doc.get("settings"):
        out += ["", "Settings beyond each SDK's defaults:"]
        out += ["  " + line for line in settings_lines(doc)]
    for metric in metrics:
        rows = list(summary.get(metric.key, {}).values())
        if not rows:
            continue
        header = (
            "contender",
            "n",
            "median",
            "rounds",
            f"{metric.reference}/this",
            "ratio per round",
        )
        out += ["", metric.title + f" [{metric.unit}]"]
        table = [header]
        for row in rows:
            table.append(
                (
                    label(row.contender),
                    row.n,
                    num(row.median, row.unit),
                    rounds_text(row.rounds, row.unit) + (f"  {row.note}" if row.note else ""),
                    ratio_text(row.ratio) if row.contender != metric.reference else "1",
                    " ".join(num(x, "ratio") for x in row.ratios)
                    if row.contender != metric.reference
                    else "",
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for k, r in enumerate(table):
            out.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
            if k == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
        out += ["  " + line for line in overheads(metric, summary)]
    out += ["", "Targets (overall medians; per-round values after the detail)"]
    table = [("target", "measured", "needed", "result", "detail", "per round")]
    for t in targets:
        table.append(
            (
                t.name,
                num(t.measured, "target"),
                t.needed,
                "PASS" if t.passed else ("MISS" if t.passed is False else "n/a"),
                t.detail,
                " ".join(num(v, "ratio") for v in t.per_round),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for k, r in enumerate(table):
        out.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def markdown(
    doc: dict[str, Any],
    metrics: Sequence[Metric],
    summary: dict[str, dict[str, Row]],
    targets: Sequence[Target],
) -> str:
    m = doc["machine"]
    v = m["versions"]
    lines = [
        "# moetrack benchmarks: latest run",
        "",
        f"Command: `{doc['command']}` ({doc['rounds']} round(s), {doc['elapsed_s']:.0f} s).",
        "",
        "| machine | |",
        "| --- | --- |",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| Python | {m['implementation']} {m['python']} |",
        f"| platform | {m['platform']} |",
        f"| date | {m['date']} |",
        f"| load average (1/5/15 min) at start, at end | {m.get('load_average')}, "
        f"{m.get('load_average_end')} |",
        f"| moetrack | {v.get('moetrack')} (JSON encoder: {m['moetrack_encoder']}) |",
        f"| segment-analytics-python | {v.get('segment-analytics-python')} |",
        f"| posthog | {v.get('posthog')} |",
        f"| httpx | {v.get('httpx')} |",
        "",
        "Load average (1 min) at the start of each round: "
        + ", ".join(
            f"{r.get('_load_average', {}).get('start', [float('nan')])[0]:.2f}" for r in doc["raw"]
        )
        + ". Other processes on the machine add noise; `latest.json` has, per throughput "
        "measurement, the seconds its threads waited for a CPU (`runqueue_wait_s`).",
        "",
        "Every contender sends the same event (`Purchase`, five attributes built in the call) "
        "the same number of times to the same loopback sink, in two workloads: one customer, "
        "and 1,000 customers in turn (consecutive events never share a customer, so nothing "
        "merges per customer). Each measurement runs in a fresh interpreter, the contenders "
        "take turns and their order rotates per round. Values are medians over the rounds; "
        "*moetrack/this* divides moetrack's median by the row's (below 1: moetrack's number "
        "is smaller); in tables 6 and 8 the first row takes moetrack's place.",
        "",
        "Settings beyond each SDK's defaults:",
        "",
        *[f"- {line}" for line in settings_lines(doc)],
        "",
        "## Targets",
        "",
        "| target | measured | needed | result | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in targets:
        result = "PASS" if t.passed else ("MISS" if t.passed is False else "n/a")
        lines.append(
            f"| {t.name} | {num(t.measured, 'target')} | {t.needed} | **{result}** | {t.detail} |"
        )
    lines += ["", "## Figures", ""]
    lines.append("Sink ceiling: " + "; ".join(_sink_lines(doc)) + ".")
    fastest = _fastest(summary)
    if fastest:
        lines.append(f"The {fastest}.")
    for metric in metrics:
        rows = list(summary.get(metric.key, {}).values())
        if not rows:
            continue
        lines += [
            "",
            f"**{metric.title}** ({metric.unit})",
            "",
            f"| contender | n | median | per round | {metric.reference}/this |",
            "| --- | ---: | ---: | --- | ---: |",
        ]
        for row in rows:
            ratio = ratio_text(row.ratio) if row.contender != metric.reference else "1"
            per_round = rounds_text(row.rounds, row.unit)
            if row.note:
                per_round += f" ({row.note})"
            lines.append(
                f"| {label(row.contender)} | {row.n} | {num(row.median, row.unit)} | "
                f"{per_round} | {ratio} |"
            )
        notes = overheads(metric, summary)
        if notes:
            lines += ["", *(note[0].upper() + note[1:] + "." for note in notes)]
    lines += [
        "",
        "How each figure is taken:",
        "",
        "1. Caller cost: every call is timed on its own, between two `perf_counter_ns()` reads, "
        "while the SDK's background thread delivers to the sink; median and p99 (nearest rank) "
        "over those single-call timings. Each includes the timer pair itself (the *timer "
        "alone* row). The floor is a `ContextVar.get()`, a `time.time()` and a `deque.append` "
        "of a tuple of the same fields, behind a call with track()'s signature (and inline, "
        "without the call).",
        "2. CPU: user + system time of the contender's process from the first timed call until "
        "the sink counted the last event, divided by the events.",
        "3. Throughput: events / (moment the sink counted the last event - first call); each "
        "SDK's `flush()` is called after the last event. Requests and body bytes as the sink "
        "counted them. Figures 1-3 come from the same measurement, once per workload.",
        "4. Memory: peak RSS growth (VmHWM after - VmRSS before, peak reset first) while the "
        "sink holds every request unanswered, divided by the events held. The rate-limited row "
        "sets `events_per_minute=1` instead of pausing the sink.",
        "5. Import: a fresh interpreter per run (`python -c`), wall time from the parent and "
        "`perf_counter` around the import statement; the first run of each warms bytecode.",
        '6. `@moetrack.track_event("Purchase")` around an empty function, next to the bare '
        "function.",
        "7. As 1, with 8 threads tracking at once.",
        '8. `log.info("Purchase", extra={...})` on a logger whose only handler is '
        "`moetrack.logging.EventHandler`, timed as in 1 and delivered as in 2-3; next to a "
        "bare `track()` of the same event and to the same `log.info()` with a handler that "
        "does nothing.",
        "",
    ]
    return "\n".join(lines)


def chart(
    doc: dict[str, Any],
    summary: dict[str, dict[str, Row]],
    targets: Sequence[Target],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("caller_median", "track() caller cost, median (ns/call), one customer", True),
        ("caller_p99", "track() caller cost, p99 (ns/call), one customer", True),
        ("threads_median", "…with 8 threads, median (ns/call)", True),
        ("handler_median", "log.info() via EventHandler (ns/call)", False),
        ("cpu", "CPU per delivered event (µs), one customer", True),
        ("cpu_many", "CPU per delivered event (µs), 1,000 customers", True),
        ("throughput", "delivered events/s, one customer", True),
        ("throughput_many", "delivered events/s, 1,000 customers", True),
        ("memory", "bytes per waiting event", False),
        ("import_wall", "interpreter + import (ms, wall)", False),
        ("events_per_request_many", "events per request, 1,000 customers", False),
        ("decorator", "empty function call (ns)", False),
    ]
    colors = {
        "moetrack": "#e4572e",
        "moetrack-kwargs": "#f3a712",
        "moetrack-ratelimited": "#f3a712",
        "track_event": "#e4572e",
        "segment": "#29335c",
        "posthog": "#4a7c59",
        "floor": "#a0a0a0",
        "floor-inline": "#c8c8c8",
        "sink-ceiling-moetrack": "#dddddd",
        "sink-ceiling-segment": "#dddddd",
        "bare": "#a0a0a0",
        "bare-call": "#a0a0a0",
        "timer": "#dddddd",
        "handler": "#f3a712",
        "logging-discard": "#a0a0a0",
    }
    fig, axes = plt.subplots(3, 4, figsize=(22, 12))
    for ax, (key, title, log) in zip(axes.flat, panels, strict=True):
        rows = [r for r in summary.get(key, {}).values() if r.median]
        if not rows:
            ax.set_axis_off()
            ax.set_title(title + " — not measured", fontsize=10)
            continue
        names = [label(r.contender) for r in rows][::-1]
        values = [r.median or 0 for r in rows][::-1]
        ax.barh(names, values, color=[colors.get(r.contender, "#777") for r in rows][::-1])
        if log and max(values) / max(min(values), 1e-9) > 50:
            ax.set_xscale("log")
        for y, val in enumerate(values):
            ax.text(val, y, " " + num(val), va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(x=0.25)
    m = doc["machine"]
    passed = sum(1 for t in targets if t.passed)
    fig.suptitle(
        f"moetrack {m['versions'].get('moetrack')} vs segment-analytics-python "
        f"{m['versions'].get('segment-analytics-python')} vs posthog "
        f"{m['versions'].get('posthog')} — {m['cpu']}, {m['cores']} cores, Python "
        f"{m['python']}, {m['date']} — medians of {doc['rounds']} round(s); targets met: "
        f"{passed}/{len(targets)}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
