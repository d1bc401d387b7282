"""The daily digest with an injected clock, a real state store file and real Apprise `json://`
targets served by a recording HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from test_notify import SECRET, Recorder

from watchdog.config.model import load_config
from watchdog.events import EventLog
from watchdog.jobs import Job
from watchdog.rules.evaluate import compile_rules
from watchdog.service.digest import DigestScheduler, digest_targets
from watchdog.service.summary import build_summary
from watchdog.state.reader import StateReader
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DAY = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _world(
    tmp_path: Path, targets: list[dict[str, Any]], *, eventful: bool = True
) -> tuple[Any, StateStore, EventLog, list[dict[str, Any]]]:
    state = tmp_path / "state.db"
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tapis": {"base_url": "http://127.0.0.1:9", "tenant_id": "t", "access_token": "x"},
                "state": {"path": str(state)},
                "notify": targets,
            }
        )
    )
    config = load_config(path)
    store = StateStore.open(state)
    heard: list[dict[str, Any]] = []
    log = EventLog(store, listeners=[heard.append])
    if eventful:
        job = Job(uuid="u-1", status="RUNNING", name="runaway", owner="alice", app_id="namd")
        log.job_cancel_requested(
            job, rule="long-run", reason="runtime 13h", timestamp="2026-12-02T03:00:00Z"
        )
        log.job_cancelled(
            job, rule="long-run", reason="runtime 13h", final_status="CANCELLED", latency_s=5.0,
            timestamp="2026-12-02T03:00:05Z",
        )  # fmt: skip
    return config, store, log, heard


def _scheduler(config: Any, store: StateStore, log: EventLog, clock: Clock) -> DigestScheduler:
    def summarize(now: datetime, window: timedelta) -> Any:
        with StateReader.open(config.state.path) as reader:
            return build_summary(reader, config, compile_rules(config.rules), now=now, since=window)

    return DigestScheduler(
        digest_targets(config.notify), store=store, events=log, summarize=summarize, clock=clock
    )


def test_once_per_local_day_at_its_time_even_across_restarts(
    tmp_path: Path, recorder: Recorder
) -> None:
    target = {"url": recorder.url, "digest": "07:30", "timezone": "America/Chicago"}
    config, store, log, heard = _world(tmp_path, [target])
    # 07:30 in Chicago on 2 December is 13:30 UTC.
    clock = Clock(DAY.replace(hour=13, minute=29))
    scheduler = _scheduler(config, store, log, clock)
    assert scheduler.tick() == 0
    assert recorder.posts == []

    clock.now = DAY.replace(hour=13, minute=30)
    assert scheduler.tick() == 1
    assert len(recorder.posts) == 1
    post = recorder.posts[0]
    # No poll in this store: the digest says so in its title.
    assert post["title"] == "tapis-watchdog digest 2026-12-02: 1 cancels, NOT HEALTHY"
    assert "runaway" in post["message"]
    assert "CANCELLED" in post["message"]
    assert SECRET not in post["message"]

    clock.now = DAY.replace(hour=20)
    assert scheduler.tick() == 0
    # A restarted daemon: a new scheduler on the same store file sends nothing more today.
    store.close()
    store = StateStore.open(config.state.path)
    restarted = _scheduler(config, store, EventLog(store), clock)
    clock.now = DAY.replace(hour=23, minute=59)
    assert restarted.tick() == 0
    # 05:59 UTC on 3 December is still 2 December (23:59) in Chicago.
    clock.now = DAY + timedelta(days=1, hours=5, minutes=59)
    assert restarted.tick() == 0
    clock.now = DAY + timedelta(days=1, hours=13, minutes=31)
    assert restarted.tick() == 1
    assert len(recorder.posts) == 2
    assert recorder.posts[1]["title"].startswith("tapis-watchdog digest 2026-12-03")
    sent = [e for e in heard if e["event"] == "digest_sent"]
    assert [(e["day"], e["skipped"]) for e in sent] == [("2026-12-02", False)]
    store.close()


def test_skip_empty_skips_a_quiet_day_but_not_a_busy_one(
    tmp_path: Path, recorder: Recorder
) -> None:
    quiet = {"url": recorder.url, "digest": "07:30", "timezone": "UTC", "skip_empty": True}
    always = {"url": recorder.url, "digest": "07:30", "timezone": "UTC"}
    config, store, log, heard = _world(tmp_path, [quiet, always], eventful=False)
    clock = Clock(DAY.replace(hour=8))
    scheduler = _scheduler(config, store, log, clock)
    assert scheduler.tick() == 1  # only the target without skip_empty
    assert len(recorder.posts) == 1
    assert [(e["target"], e["skipped"]) for e in heard if e["event"] == "digest_sent"] == [
        ("json target #1", True),
        ("json target #2", False),
    ]
    store.close()


def test_a_failed_digest_is_reported_without_its_url(tmp_path: Path, recorder: Recorder) -> None:
    recorder.status = 500
    config, store, log, heard = _world(tmp_path, [{"url": recorder.url, "digest": "00:00"}])
    scheduler = _scheduler(config, store, log, Clock(DAY.replace(hour=12)))
    assert scheduler.tick() == 0
    (error,) = [e for e in heard if e["event"] == "tapis_error"]
    assert error["operation"] == "notify"
    assert "json target #1" in error["error"]
    assert SECRET not in error["error"]
    assert "json://" not in error["error"]
    store.close()


def test_the_running_daemon_sends_one_digest_a_day_across_a_restart(
    tmp_path: Path, recorder: Recorder
) -> None:
    from test_service_harness import HEALTHY, fleet, service  # noqa: PLC0415 - service tests only

    with service(tmp_path, fleet(HEALTHY)) as svc:
        # 00:00 UTC has always passed: the day's digest is due at once.
        svc.write_config(notify=[{"url": recorder.url, "digest": "00:00", "timezone": "UTC"}])
        first = svc.start()
        _, sent = first.wait_event("digest_sent")
        assert sent["skipped"] is False
        assert sent["target"] == "json target #1"
        assert first.stop() == 0
        second = svc.start()
        second.wait_polls(3, after=0)
        assert second.stop() == 0
        assert second.named("digest_sent") == []
    assert len(recorder.posts) == 1
    assert recorder.posts[0]["title"].startswith(
        f"tapis-watchdog digest {datetime.now(UTC):%Y-%m-%d}"
    )


def test_check_says_when_each_digest_goes_out(
    tmp_path: Path, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchdog.cli import main  # noqa: PLC0415

    target = {"url": recorder.url, "digest": "07:30", "timezone": "America/Chicago"}
    config, store, _, _ = _world(tmp_path, [target, {**target, "skip_empty": True}])
    store.close()
    assert main(["check", "-c", config.source]) == 0
    out = capsys.readouterr().out
    assert "notify #1 json://...: daily digest at 07:30 America/Chicago\n" in out
    assert "notify #2 json://...: daily digest at 07:30 America/Chicago, skipped on a quiet" in out
    assert SECRET not in out
