"""The summary as text, Markdown, JSON and HTML; the status page's and job view's HTML.

HTML comes from Jinja2 templates (`service/templates/`) with autoescaping on for everything: job
names, descriptions, reasons and arguments are written by whoever submitted the job, so every value
is escaped, none is marked safe. The 24-hour timeline is an inline SVG drawn here, on the server,
from numbers only. Nothing rendered holds a secret: the summary carries none (no URL, no token).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import jinja2
import orjson

from watchdog import __version__
from watchdog.durations import format_duration

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from watchdog.service.summary import Summary, TimelineHour

__all__ = ["FORMATS", "Format", "render_html", "render_summary", "summary_dict", "timeline_bars"]

Format = Literal["text", "markdown", "html", "json"]
FORMATS: tuple[Format, ...] = ("text", "markdown", "html", "json")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("watchdog.service", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def stamp(value: datetime | None) -> str:
    """`2026-12-02 07:30:05Z`, or `-`."""
    if value is None:
        return "-"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def stamp_up(value: datetime | None) -> str:
    """`stamp`, rounded up to the second: a deadline, as the daemon's warnings name it (the
    cancel never comes before the time shown)."""
    if value is not None and value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return stamp(value)


def seconds(value: float | None) -> str:
    """A latency for people: `42s`, `3m10s`, or `-`."""
    if value is None:
        return "-"
    if value < 10:  # below ten seconds, tenths still say something
        return f"{value:.1f}s"
    return format_duration(timedelta(seconds=round(value)))


def relative(value: datetime | None, now: datetime) -> str:
    """`in 4m10s`, `3m ago`, or `-`."""
    if value is None:
        return "-"
    delta = value - now
    if delta.total_seconds() >= 0:
        return f"in {format_duration(delta)}"
    return f"{format_duration(-delta)} ago"


_ENV.filters["stamp"] = stamp
_ENV.filters["stamp_up"] = stamp_up
_ENV.filters["seconds"] = seconds
_ENV.globals["version"] = __version__


def summary_dict(summary: Summary) -> dict[str, Any]:
    """The summary as plain JSON-ready data (what `/api/summary` and `report --format json`
    return)."""
    # orjson writes the nested rows (frozen dataclasses) itself, much faster than asdict's copies.
    data = {field.name: getattr(summary, field.name) for field in dataclasses.fields(summary)}
    data["problems"] = len(summary.problems)
    data["eventful"] = summary.eventful
    return data


def _json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


# The page shows the newest rows of each list and says how many more the JSON and `report` hold:
# a morning look, not a dump (a dry run over a large fleet skips thousands of cancels a day).
PAGE_ROWS = {"cancels": 200, "grace": 200, "warnings": 100, "skipped": 50, "hand_cancels": 100}


def _page_rows(summary: Summary) -> dict[str, Any]:
    """Each list as the page shows it: cancels with a problem first, then the newest."""
    cancels = (*summary.problems, *(row for row in summary.cancels if not row.problem))
    lists = {
        "cancels": cancels,
        "grace": summary.grace,
        "warnings": summary.warnings,
        "skipped": summary.skipped,
        "hand_cancels": summary.hand_cancels,
    }
    return {
        name: {"rows": rows[: PAGE_ROWS[name]], "more": max(0, len(rows) - PAGE_ROWS[name])}
        for name, rows in lists.items()
    }


def timeline_bars(hours: Sequence[TimelineHour]) -> dict[str, Any]:
    """Geometry of the 24-hour timeline: three rows of bars (jobs watched, matches, cancels)."""
    width, bar, row_height, top = 720, 30, 48, 16
    rows = []
    for index, (label, key) in enumerate(
        (("jobs watched", "jobs_watched"), ("matches", "matches"), ("cancels", "cancels"))
    ):
        values = [int(getattr(h, key)) for h in hours]
        peak = max(values, default=0)
        base = top + (index + 1) * (row_height + 20) - 20
        bars = []
        for slot, value in enumerate(values):
            height = 0 if peak == 0 else max(1, round(value / peak * row_height))
            bars.append(
                {
                    "x": slot * bar + 2,
                    "y": base - height,
                    "width": bar - 4,
                    "height": height,
                    "value": value,
                    "hour": f"{hours[slot].start:%H}:00",
                }
            )
        rows.append({"label": label, "key": key, "peak": peak, "base": base, "bars": bars})
    labels = [
        {"x": slot * bar + bar // 2, "text": f"{h.start:%H}"}
        for slot, h in enumerate(hours)
        if slot % 3 == 0
    ]
    height = top + 3 * (row_height + 20) + 10
    return {"width": width, "height": height, "rows": rows, "labels": labels}


def render_html(
    summary: Summary,
    *,
    refresh_s: int | None = None,
    links: bool = True,
) -> str:
    """The summary as one HTML page; `refresh_s` adds a meta refresh, `links` links job views."""
    template = _ENV.get_template("summary.html")
    return template.render(
        s=summary,
        now=summary.generated_at,
        rel=lambda value: relative(value, summary.generated_at),
        timeline=timeline_bars(summary.timeline),
        shown=_page_rows(summary),
        refresh_s=refresh_s,
        links=links,
    )


def render_job_html(view: Mapping[str, Any], *, refresh_s: int | None = None) -> str:
    """A job's view (see `web.job_view`) as HTML."""
    return _ENV.get_template("job.html").render(v=view, refresh_s=refresh_s)


def render_error_html(status: int, message: str) -> str:
    return _ENV.get_template("error.html").render(status=status, message=message, refresh_s=None)


# ---------------------------------------------------------------------- text and markdown
def _lines(summary: Summary, *, markdown: bool) -> list[str]:
    h = summary.health
    now = summary.generated_at

    def head(text: str) -> list[str]:
        return ["", f"## {text}", ""] if markdown else ["", text.upper()]

    def item(text: str) -> str:
        return f"- {text}" if markdown else f"  {text}"

    def job(uuid: str, name: str) -> str:
        shown = f"{uuid} ({name})" if name else uuid
        return f"`{shown}`" if markdown else shown

    title = "tapis-watchdog report"
    lines = [f"# {title}" if markdown else title]
    lines.append(f"{stamp(summary.since)} to {stamp(summary.generated_at)}")
    lines += head("Health")
    state = "healthy" if h.healthy else "NOT HEALTHY"
    lines.append(item(f"{state}; last good poll {stamp(h.last_good_poll)}"))
    lines.append(item(f"next poll {stamp(h.next_poll)} ({relative(h.next_poll, now)})"))
    lines.append(item(f"failed polls since the last good one: {h.failures_since}"))
    lines.append(item(f"circuit breaker {'OPEN' if h.breaker_open else 'closed'}"))
    lines.append(item(f"dry run {'on' if h.dry_run else 'off'}"))
    lines += head(f"Jobs watched: {summary.jobs_watched}")
    lines += [item(f"{status}: {count}") for status, count in summary.jobs_by_status.items()]
    lines += head(f"Cancels: {len(summary.cancels)} ({len(summary.problems)} need a look)")
    for c in summary.cancels:
        mark = "!! " if c.problem else ""
        what = c.outcome if c.final_status is None else f"{c.outcome}, {c.final_status}"
        lines.append(
            item(
                f"{mark}{job(c.job_uuid, c.job_name)} rule {c.rule}: {what}; requested "
                f"{stamp(c.requested_at)}, latency {seconds(c.latency_s)}"
                + (f"; {c.error}" if c.error else "")
            )
        )
    lines += head(f"Grace periods running: {len(summary.grace)}")
    lines += [
        item(
            f"{job(g.job_uuid, g.job_name)} rule {g.rule}: cancel at {stamp_up(g.deadline)} "
            f"({relative(g.deadline, now)}) if it still matches"
            + (" [dry run]" if g.dry_run else "")
        )
        for g in summary.grace
    ]
    active = [x for x in summary.silences if x.active]
    lines += head(f"Silences in force: {len(active)}")
    for x in summary.silences:
        scope = "every cancel" if x.rule is None else f"rule {x.rule}"
        state = (
            f"until {stamp(x.until)} ({relative(x.until, now)})"
            if x.active
            else f"ended {stamp(x.until)}" + (f" by {x.ended_by}" if x.ended_by else "")
        )
        lines.append(
            item(f"{x.id} spares {x.matches} from {scope}, by {x.by} ({x.reason}); {state}")
        )
    lines += head(f"Warnings: {len(summary.warnings)}")
    lines += [
        item(f"{stamp(w.at)} {job(w.job_uuid, w.job_name)} rule {w.rule}: {w.reason}")
        for w in summary.warnings
    ]
    lines += head(f"Skipped cancels: {len(summary.skipped)}")
    lines += [
        item(f"{stamp(k.at)} {job(k.job_uuid, k.job_name)} rule {k.rule}: {k.why}")
        for k in summary.skipped
    ]
    lines += head(f"Hand cancels: {len(summary.hand_cancels)}")
    lines += [
        item(f"{stamp(x.at)} {job(x.job_uuid, x.job_name)} by {x.by}: {x.final_status or '-'}")
        for x in summary.hand_cancels
    ]
    lines += head("Last 24 hours (hour UTC: jobs watched / matches / cancels)")
    lines += [
        item(f"{t.start:%H}:00  {t.jobs_watched} / {t.matches} / {t.cancels}")
        for t in summary.timeline
        if t.jobs_watched or t.matches or t.cancels
    ]
    return lines


def render_summary(summary: Summary, fmt: Format) -> str:
    """The summary in one of `FORMATS`."""
    if fmt == "json":
        return _json(summary_dict(summary))
    if fmt == "html":
        return render_html(summary, links=False)
    return "\n".join(_lines(summary, markdown=fmt == "markdown")) + "\n"
