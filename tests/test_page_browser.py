"""The status page in a real browser, after a real daemon run against a fleet it has not seen.

The daemon is a subprocess (`run -c FILE`, listening on 127.0.0.1:0) watching the simulator; the
page is read by Debian's Chromium, headless, driven by Playwright (which cannot download browsers
here, so it is pointed at /usr/bin/chromium). Then the daemon is stopped and `history` and
`report` read the same state store: the figures must agree with what the page showed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from test_service_harness import PASSWORD, fleet, http_get, service

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCRIPT_NAME = "<script>alert(1)</script>"
HOSTILE_DESCRIPTION = '<img src=x onerror="alert(2)"> & <b>bold</b>'
RULES: list[dict[str, Any]] = [
    {
        "name": "frontera-12h",
        "match": {"exec_system": "frontera", "status": ["RUNNING"]},
        "when": {"runtime_over": "12h"},
        "action": "cancel",
    },
    {
        "name": "namd-2h",
        "match": {"app": "namd", "status": ["RUNNING"]},
        "when": {"runtime_over": "2h"},
        "grace": "1h",
        "action": "cancel",
    },
    # Searches descriptions, so the poll selects them and the job page shows them.
    {
        "name": "scratch-in-description",
        "when": {"input_matches": {"pattern": "/scratch/", "in": ["description"]}},
        "action": "warn",
    },
]
JOBS: list[dict[str, Any]] = [
    {
        "name": SCRIPT_NAME,
        "description": HOSTILE_DESCRIPTION,
        "status": "RUNNING",
        "appId": "opensees-mp-s3",
        "execSystemId": "frontera",
        "remoteStarted": "-13h",
    },
    {
        "name": "runaway-sweep",
        "status": "RUNNING",
        "appId": "adcirc",
        "execSystemId": "frontera",
        "remoteStarted": "-20h",
    },
    {
        "name": "namd-in-grace",
        "description": HOSTILE_DESCRIPTION,
        "status": "RUNNING",
        "appId": "namd",
        "execSystemId": "stampede3",
        "remoteStarted": "-3h",
    },
    {
        "name": "healthy-run",
        "status": "RUNNING",
        "appId": "adcirc",
        "execSystemId": "frontera",
        "remoteStarted": "-1h",
    },
    {"name": "waiting", "status": "QUEUED", "appId": "namd", "execSystemId": "stampede3"},
]
# Events the daemon logs once per poll or per start: they keep coming while the page is read.
RECURRING = frozenset(
    {"poll_completed", "poll_failed", "tapis_error", "watchdog_started", "watchdog_stopped"}
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _stamp_up(value: str) -> str:
    at = datetime.fromisoformat(value)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return f"{at:%Y-%m-%d %H:%M:%S}Z"


def _watchdog(*args: str, cwd: Path) -> str:
    done = subprocess.run(  # noqa: PLW1510 - checked below, with stderr in the message
        [sys.executable, "-m", "watchdog", *args], capture_output=True, text=True, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """What must be the same whoever renders the summary."""
    return {
        "cancels": summary["cancels"],
        "grace": summary["grace"],
        "warnings": summary["warnings"],
        "skipped": summary["skipped"],
        "hand_cancels": summary["hand_cancels"],
        "jobs_by_status": summary["jobs_by_status"],
        "counts": {k: v for k, v in summary["counts"].items() if k not in RECURRING},
    }


def test_the_page_shows_a_real_run_in_chromium(tmp_path: Path, browser: Browser) -> None:
    with service(tmp_path, fleet(*JOBS)) as svc:
        by_name = {svc.sim.job(u)["name"]: u for u in svc.sim.uuids()}
        cancelled = {by_name[SCRIPT_NAME], by_name["runaway-sweep"]}
        in_grace = by_name["namd-in-grace"]
        svc.write_config(rules=RULES, metrics={"listen": "127.0.0.1:0"})
        daemon = svc.start()
        _, started = daemon.wait_event("watchdog_started")
        url = started["metrics_url"]
        done = [daemon.wait_event("job_cancelled", job_uuid=uuid)[1] for uuid in sorted(cancelled)]
        _, warned = daemon.wait_event("job_warned", job_uuid=in_grace)
        # One more poll: the cancelled jobs have left the watched set.
        daemon.wait_polls(1, after=daemon.position)

        dialogs: list[str] = []
        page: Page = browser.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        response = page.goto(f"{url}/")
        assert response is not None
        assert response.status == 200
        assert "script-src" not in (response.headers.get("content-security-policy") or "")
        assert "default-src 'none'" in response.headers["content-security-policy"]

        # Every cancelled job, confirmed, with its final status and latency.
        for event in done:
            row = page.locator("#cancels tr.cancel", has_text=event["job_uuid"])
            assert row.count() == 1
            assert row.locator("td.outcome").inner_text() == "confirmed"
            assert row.locator("td.final").inner_text() == "CANCELLED"
            latency = row.locator("td.latency").inner_text()
            assert latency == f"{event['latency_s']:.1f}s"
        assert page.locator("#cancels tr.problem").count() == 0

        # The running grace period, with the rule and the deadline the daemon works to.
        grace = page.locator("#grace tr.grace", has_text=in_grace)
        assert grace.count() == 1
        assert "namd-2h" in grace.inner_text()
        api = json.loads(http_get(f"{url}/api/summary")[1])
        (row,) = [g for g in api["grace"] if g["job_uuid"] == in_grace]
        deadline = datetime.fromisoformat(row["deadline"])
        expected = datetime.fromisoformat(warned["timestamp"]) + timedelta(hours=1)
        assert abs(deadline - expected) < timedelta(seconds=1)
        # To the second as the warning says it: its reason names the same time.
        shown = _stamp_up(row["deadline"])
        assert shown in grace.locator("td.deadline").inner_text()
        assert shown.replace(" ", "T") in warned["reason"]

        # Submitter-written text is shown as text: no script, no dialog, no injected element.
        assert page.get_by_text(SCRIPT_NAME, exact=True).count() >= 1
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0
        assert page.locator("svg#timeline rect.cancels").count() >= 1
        assert page.locator("#jobs-watched").inner_text() == "3"

        # A working link to a job page: the job in grace, its verdicts as `explain` says them.
        page.locator(f"#grace a[href='/jobs/{in_grace}']").click()
        page.wait_for_url(f"{url}/jobs/{in_grace}")
        assert page.locator("#job-name").inner_text() == "namd-in-grace"
        assert page.get_by_text(HOSTILE_DESCRIPTION, exact=True).count() == 1
        assert page.locator("img").count() == 0
        assert "grace period of rule namd-2h running" in page.locator("#conclusion").inner_text()
        job_api = json.loads(http_get(f"{url}/api/jobs/{in_grace}")[1])
        page_lines = page.locator("#explain").inner_text().splitlines()

        # A cancelled job's page: no longer watched, its events still there, its name as text.
        script_uuid = by_name[SCRIPT_NAME]
        page.goto(f"{url}/")
        page.locator(f"#cancels a[href='/jobs/{script_uuid}']").click()
        page.wait_for_url(f"{url}/jobs/{script_uuid}")
        events_text = page.locator("#events").inner_text()
        assert "job_cancelled" in events_text
        assert "final_status=CANCELLED" in events_text
        assert dialogs == []
        # No secret on any page: not the Tapis password, not a token.
        for path in ("/", "/api/summary", f"/jobs/{in_grace}", f"/api/jobs/{in_grace}"):
            body = http_get(f"{url}{path}")[1]
            assert PASSWORD not in body
            assert "eyJ" not in body  # the start of every JWT
        assert http_get(f"{url}/jobs/no-such-job")[0] == 404
        page.close()

        assert daemon.stop() == 0

        # `explain` at the same instant says the same words, rule by rule.
        cfg = str(svc.config_path)
        explained = _watchdog(
            "explain", "-c", cfg, in_grace, "--now", job_api["evaluated_at"], cwd=tmp_path
        ).splitlines()
        assert page_lines[:-1] == explained[:-1]

        # history, report and /api/summary agree.
        audit = [
            json.loads(line)
            for line in _watchdog("history", "-c", cfg, "--json", "--since", "1h", cwd=tmp_path)
            .strip()
            .splitlines()
        ]
        counts = Counter(e["event"] for e in audit if e["event"] not in RECURRING)
        assert _figures(api)["counts"] == dict(counts)
        confirmed = {e["job_uuid"]: e for e in audit if e["event"] == "job_cancelled"}
        assert set(confirmed) == cancelled
        for row in api["cancels"]:
            assert row["final_status"] == confirmed[row["job_uuid"]]["final_status"]
            assert row["latency_s"] == confirmed[row["job_uuid"]]["latency_s"]
        report = json.loads(
            _watchdog("report", "-c", cfg, "--format", "json", "--since", "24h", cwd=tmp_path)
        )
        assert report["health"]["live"] is False
        assert _figures(report) == _figures(api)
        text = _watchdog("report", "-c", cfg, cwd=tmp_path)
        assert all(uuid in text for uuid in cancelled)
        assert SCRIPT_NAME in text
