"""The daemon: one root task group, signals, the fixed-cadence poll loop, reload, sd_notify.

    run_daemon ─► [login until it works ─► poll ─► evaluate ─► act] every poll.interval ─► stop
                    │            │                                  └─ follow cancels
                    │            └─ poll_completed / poll_failed, WATCHDOG=1, STATUS=
                    └─ SIGTERM/SIGINT: cancel the root scope, gone within STOP_DEADLINE_S;
                       SIGHUP: reload, keep the old configuration on error

A poll that fails acts on nothing, and the next one runs on schedule; a login that cannot reach
Tapis is such a failed poll. Tapis trouble never ends the daemon; only an identity that cannot log
in (exit 3) or an invalid configuration (exit 2) does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from watchdog import __version__
from watchdog.act.actor import Actor
from watchdog.config.fields import compact_duration
from watchdog.config.model import Config, OfflineConfig, load_config
from watchdog.errors import (
    ConfigError,
    ListenError,
    PollError,
    TapisAuthError,
    TapisError,
    TapisUnavailableError,
)
from watchdog.events import EventLog, register_secret
from watchdog.jobs import JobCache
from watchdog.poll.scan import poll_jobs
from watchdog.redaction import register_basic_credentials
from watchdog.rules.budgets import compile_budgets
from watchdog.rules.evaluate import CompiledRule, compile_rules, fields_needed
from watchdog.rules.silence import SpareHint
from watchdog.service.collector import PollCollector
from watchdog.service.defects import DefectLog
from watchdog.service.digest import DigestScheduler, digest_targets
from watchdog.service.metrics import Metrics, MetricsServer, start_server
from watchdog.service.notify import Notifier
from watchdog.service.sdnotify import SystemdNotifier
from watchdog.service.snapshot import LiveState, PollSnapshot
from watchdog.service.summary import Summary, build_summary
from watchdog.service.web import StatusPage
from watchdog.state.files import check_state_path
from watchdog.state.reader import StateReader, record_last_poll
from watchdog.state.store import StateStore
from watchdog.tapis.client import TapisClient

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from anyio.abc import TaskGroup

PRUNE_EVERY_S = 3600.0
SHUTDOWN_GRACE_S = 3.0
STOP_DEADLINE_S = 4.0
RESTART_SECTIONS = ("tapis", "state", "metrics", "notify")


def register_config_secrets(config: Config) -> None:
    """Make every secret of the configuration unprintable in events."""
    t = config.tapis
    for secret in (t.password, t.access_token, t.client_key):
        if secret is not None:
            register_secret(secret.get_secret_value())
    for target in config.notify:
        register_secret(target.url.get_secret_value())
    if t.client_key is not None:
        register_basic_credentials(t.client_id, t.client_key.get_secret_value())


@dataclass
class Daemon:
    """The running daemon's state; rebuilt in part on reload."""

    config_path: Path
    config: Config
    dry_run_flag: bool
    once: bool
    store: StateStore
    events: EventLog
    client: TapisClient
    actor: Actor
    rules: tuple[CompiledRule, ...]
    metrics: Metrics | None = None
    notifier: Notifier | None = None
    digests: DigestScheduler | None = None
    systemd: SystemdNotifier = field(default_factory=SystemdNotifier.from_env)
    stop_reason: str = "finished"
    jobs_watched: int = 0
    last_poll_at: datetime | None = None
    ready_sent: bool = False
    last_cycle_at: float | None = None
    until: Callable[[], bool] | None = None
    metrics_url: str | None = None
    fatal: TapisAuthError | TapisUnavailableError | None = None
    snapshot: PollSnapshot | None = None
    next_poll_at: datetime | None = None
    _last_prune: float = 0.0
    _stopped_logged: bool = False
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)
    _parsed: JobCache = field(default_factory=JobCache)
    _defects: DefectLog = field(default_factory=DefectLog)
    _collector: PollCollector = field(default_factory=PollCollector)

    @property
    def dry_run(self) -> bool:
        return self.dry_run_flag or self.config.safety.dry_run

    def summary(self, now: datetime, window: timedelta) -> Summary:
        """The summary the page shows, for `window` up to `now` (for the daily digest).

        Raises:
            StateError: the state store cannot be read.
        """
        with StateReader.open(self.config.state.path) as reader:
            return build_summary(
                reader, self.config, self.rules, now=now, since=window, live=self.live_state()
            )

    def live_state(self) -> LiveState:
        """What the status page shows of the running daemon (read from its request threads)."""
        return LiveState(
            config=self.config,
            rules=self.rules,
            dry_run=self.dry_run,
            snapshot=self.snapshot,
            next_poll_at=self.next_poll_at,
        )

    # ------------------------------------------------------------------ loop
    async def serve(self) -> int:
        """Run until stopped (or one cycle with `once`). Returns the exit code: 0, or 1 when
        the one poll of `once` failed (and so acted on nothing).

        Raises:
            TapisAuthError: the identity cannot log in (at start, or with `once`).
            TapisUnavailableError: with `once`, Tapis could not be reached to log in.
        """
        # The bound address, not the configured one: `listen: 127.0.0.1:0` picks a free port.
        extra = {"metrics_url": self.metrics_url} if self.metrics_url is not None else {}
        self.events.watchdog_started(
            version=__version__,
            config_path=str(self.config_path),
            rule_count=len(self.rules),
            dry_run=self.dry_run,
            **extra,
        )
        exit_code = 0
        try:
            # Signals are handled from the first moment: a stop or a reload that arrives while
            # the first login still waits for Tapis must not kill the process (SIGHUP's default).
            async with anyio.create_task_group() as root:
                root.start_soon(self._signals, root)
                root.start_soon(self._keepalive)
                if self.digests is not None and not self.once:
                    root.start_soon(self.digests.run)
                # Cancels being followed live in their own group: `--once` (and `until`) wait
                # for them to be confirmed or time out; SIGTERM cancels them with the root, and
                # the store already records them as sent, so a restart resumes following them.
                async with anyio.create_task_group() as followers:
                    if self.once:
                        # Raised out of the task groups it would arrive wrapped in an
                        # ExceptionGroup, which the command line cannot map to exit 3.
                        try:
                            await self._login_once()
                        except (TapisAuthError, TapisUnavailableError) as exc:
                            self.fatal = exc
                        else:
                            await self.actor.resume_pending(followers)
                            if await self.poll_once(followers):
                                self.stop_reason = "one poll done (--once)"
                            else:
                                # cron has only the exit code to tell a poll that saw nothing
                                # from one that could not look.
                                self.stop_reason = "the poll failed (--once)"
                                exit_code = 1
                    else:
                        await self._loop(followers)
                root.cancel_scope.cancel()
            if self.fatal is not None:
                raise self.fatal
        finally:
            self.systemd.stopping()
            with anyio.move_on_after(SHUTDOWN_GRACE_S, shield=True):
                if self.notifier is not None:
                    await self.notifier.aclose()
                await self.client.aclose()
            self._log_stopped()
        return exit_code

    async def _login_once(self) -> None:
        try:
            await self.client.login()
        except TapisAuthError:
            self.stop_reason = "cannot authenticate to Tapis"
            raise
        except TapisUnavailableError:
            self.stop_reason = "cannot reach Tapis to log in"
            raise

    async def _login(self) -> bool:
        """Log in for the loop. False (logged as `poll_failed`) while Tapis cannot be reached.

        Raises:
            TapisAuthError: the identity cannot log in; the daemon stops (exit 3).
        """
        started = time.monotonic()
        calls_before = self.client.api_calls.total
        try:
            await self.client.login()
        except TapisUnavailableError as exc:
            # Tapis down at boot is an outage like any other: wait it out on the poll cadence
            # instead of exiting into systemd's restart limit.
            self._poll_failed(f"cannot log in: {exc}", calls_before, started)
            return False
        return True

    async def _loop(self, followers: TaskGroup) -> None:
        interval = self.config.poll.interval.total_seconds()
        next_at = time.monotonic()
        logged_in = False
        while True:
            if not logged_in:
                try:
                    logged_in = await self._login()
                except TapisAuthError as exc:
                    self.stop_reason = "cannot authenticate to Tapis"
                    self.fatal = exc
                    return
                if logged_in:
                    await self.actor.resume_pending(followers)
            if logged_in:
                await self.poll_once(followers)
            if self.until is not None and self.until():
                self.stop_reason = "stop condition reached"
                return
            interval = self.config.poll.interval.total_seconds()
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a poll overran: skip the missed slots, keep the cadence
                next_at = now + (interval - (now - next_at) % interval)
            self.next_poll_at = datetime.now(UTC) + timedelta(seconds=next_at - now)
            await anyio.sleep(next_at - now)

    async def poll_once(self, followers: TaskGroup) -> bool:
        """One poll: list, evaluate, act. True when the poll saw every active job."""
        started = time.monotonic()
        calls_before = self.client.api_calls.total
        rules = self.rules
        try:
            result = await poll_jobs(
                self.client,
                statuses=self.config.poll.statuses,
                list_type=self.config.poll.list_type,
                page_size=self.config.poll.page_size,
                fields=fields_needed(rules),
                on_malformed=self._malformed,
                parse=self._parsed.parse,
            )
        except (PollError, TapisError) as exc:
            self._defects.poll_done(complete=False)
            self._poll_failed(str(exc), calls_before, started)
            return False
        self._parsed.keep()
        now = datetime.now(UTC)
        for job_uuid, defect in self._defects.time_defects(result.jobs, now):
            self._report_defect(f"job {job_uuid}: {defect}: its time conditions are unknown")
        self._defects.poll_done(complete=True)
        # Before the decisions, so a cancel a silence held back follows its silence_expired.
        for silence in self.store.claim_expired_silences(now):
            self.events.silence_expired(silence)
        outcome = await self.actor.handle_poll(result.jobs, rules, now, followers)
        self.jobs_watched = len(result.jobs)
        self.last_poll_at = now
        self.snapshot = PollSnapshot(at=now, jobs=tuple(result.jobs), rules=rules)
        record_last_poll(self.store, now, self.snapshot.by_status)
        self.last_cycle_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.set_jobs_watched(len(result.jobs))
            self.metrics.set_budgets((b.name, b.unit, b.usage, b.limit) for b in outcome.budgets)
        self.events.poll_completed(
            jobs_seen=len(result.jobs),
            matches=outcome.matches,
            cancels=outcome.cancels,
            api_calls=self.client.api_calls.total - calls_before,
            duration_s=round(time.monotonic() - started, 3),
            silences_active=len(self.store.active_silences(now)),
        )
        self._prune_if_due(now)
        self._collector.after_poll()
        status = self._status_line(f"last poll {now:%H:%M:%S}Z")
        if not self.ready_sent:
            self.systemd.ready(status)
            self.ready_sent = True
        else:
            self.systemd.status(status)
        self.systemd.watchdog()
        return True

    def _poll_failed(self, error: str, calls_before: int, started: float) -> None:
        self.events.poll_failed(
            error=error,
            api_calls=self.client.api_calls.total - calls_before,
            duration_s=round(time.monotonic() - started, 3),
        )
        self.last_cycle_at = time.monotonic()
        self.systemd.status(self._status_line("last poll failed"))
        self.systemd.watchdog()  # the loop is alive; Tapis trouble is not a reason to restart

    def _malformed(self, job_uuid: str | None, detail: str) -> None:
        if self._defects.is_new(job_uuid, detail):
            self._report_defect(f"skipped malformed job record {job_uuid or '<no uuid>'}: {detail}")

    def _report_defect(self, error: str) -> None:
        """A defect of a listed record, logged once (see `service.defects`)."""
        self.events.tapis_error(
            operation="getJobSearchList",
            http_status=None,
            error=error,
            retry_in_s=None,
        )

    def _status_line(self, last: str) -> str:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cancels = self.store.cancels_sent_since(today)
        mode = ", dry run" if self.dry_run else ""
        return f"watching {self.jobs_watched} jobs, {last}, {cancels} cancels today{mode}"

    def _prune_if_due(self, now: datetime) -> None:
        mono = time.monotonic()
        if mono - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = mono
        self.store.prune(now - self.config.state.retention)

    async def _keepalive(self) -> None:
        """Ping systemd's watchdog between polls while the loop keeps cycling.

        A loop that finished a poll (good or failed) within three intervals is alive; a stuck
        loop stops the pings, and systemd restarts the service.
        """
        interval = self.systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            await anyio.sleep(interval)
            last = self.last_cycle_at
            limit = 3 * self.config.poll.interval.total_seconds()
            if last is not None and time.monotonic() - last <= limit:
                self.systemd.watchdog()

    # ------------------------------------------------------------------ signals
    async def _signals(self, root: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                self.stop_reason = f"received {signal.Signals(signum).name}"
                self.systemd.stopping()
                self._arm_stop_deadline()
                root.cancel_scope.cancel()
                return

    def _arm_stop_deadline(self) -> None:
        """Make sure the process is gone `STOP_DEADLINE_S` after a stop signal.

        A tapipy or Apprise call blocked in a worker thread cannot be interrupted: it would hold
        the event loop's shutdown, then the interpreter's exit, until its own timeout. Everything
        decided is already in the state store (cancels are recorded before and after they are
        sent), so past the deadline the process leaves without waiting for such calls.
        """
        timer = threading.Timer(STOP_DEADLINE_S, self._force_exit)
        timer.daemon = True
        timer.start()

    def _force_exit(self) -> None:
        self.stop_reason = f"{self.stop_reason}; calls to Tapis still blocked were abandoned"
        self._log_stopped()
        self.systemd.stopping()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os._exit(0)

    def _log_stopped(self) -> None:
        with self._stop_lock:
            if self._stopped_logged:
                return
            self._stopped_logged = True
        self.events.watchdog_stopped(reason=self.stop_reason)

    def reload(self) -> None:
        """Load the configuration file again; keep the old one if the new one is invalid."""
        # Before the first good poll the service is still starting: READY=1 after the reload
        # would tell systemd it works when it does not yet.
        announce = self.ready_sent
        if announce:
            self.systemd.reloading()
        try:
            config = load_config(self.config_path)
            rules = compile_rules(config.rules)
        except ConfigError as exc:
            self.events.config_reload_failed(config_path=str(self.config_path), error=str(exc))
            self._reload_done(announce, "reload failed, old configuration kept")
            return
        register_config_secrets(config)
        # The Tapis client, the state store, the metrics listener and the notifiers are built
        # once: changes to their sections wait for a restart, and the operator is told so.
        restart_needed = [
            name for name in RESTART_SECTIONS if getattr(config, name) != getattr(self.config, name)
        ]
        self.config = config
        self.rules = rules
        self.actor.safety = config.safety
        self.actor.resend_after = config.safety.resend_after.total_seconds()
        self.actor.spare = spare_hint(self.config_path, config)
        self.actor.budgets = compile_budgets(config.budgets)
        self.actor.charge_rates = config.charge_rates
        self.actor.list_type = config.poll.list_type
        self.actor.page_size = config.poll.page_size
        self.actor.dry_run = self.dry_run
        self.events.dry_run = self.dry_run
        if self.metrics is not None:
            self.metrics.set_interval(config.poll.interval.total_seconds())
            # Budgets' cancels are counted under their names too.
            self.metrics.declare_rules(
                [*(r.name for r in rules), *(b.name for b in config.budgets)]
            )
        self.events.config_reloaded(
            config_path=str(self.config_path),
            rule_count=len(rules),
            restart_needed=restart_needed,
        )
        self._reload_done(announce, "configuration reloaded")

    def _reload_done(self, announce: bool, what: str) -> None:
        if announce:
            self.systemd.ready(self._status_line(what))
        else:
            self.systemd.status(self._status_line(what))


def spare_hint(
    config_path: Path, config: Config | OfflineConfig, env: Mapping[str, str] | None = None
) -> SpareHint:
    """How warnings write `tapis-watchdog silence add ...` so that it works where it is read:
    the configuration's absolute path, a duration within safety.max_silence, and
    STATE_DIRECTORY in front when the state store's path comes from it (as under systemd)."""
    environ = os.environ if env is None else env
    limit = config.safety.max_silence
    duration = "2h" if limit >= timedelta(hours=2) else compact_duration(limit)
    state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
    prefix = ""
    if state_dir and Path(config.state.path) == Path(state_dir) / "state.db":
        prefix = f"STATE_DIRECTORY={shlex.quote(state_dir)} "
    return SpareHint(str(Path(config_path).absolute()), duration=duration, env_prefix=prefix)


def _ignore_failure(_event: str, _error: str) -> None:
    return None


def build_daemon(
    config_path: Path,
    *,
    dry_run: bool = False,
    once: bool = False,
    listeners: tuple[Callable[[dict[str, Any]], None], ...] = (),
) -> tuple[Daemon, MetricsServer | None]:
    """Load the configuration and wire the daemon's parts together.

    Raises:
        ConfigError: the configuration is invalid, or `state.path` cannot hold a database.
        StateError: the state store cannot be opened.
        ListenError: `metrics.listen` cannot be bound (in use, not local).
    """
    config = load_config(config_path)
    rules = compile_rules(config.rules)
    register_config_secrets(config)
    check_state_path(config.state.path, source=config.source)
    store = StateStore.open(config.state.path)
    metrics: Metrics | None = None
    server: MetricsServer | None = None
    all_listeners = list(listeners)
    # The page reads the daemon's live state, and the daemon needs the listener's address.
    built: list[Daemon] = []
    if config.metrics is not None:
        metrics = Metrics(config.poll.interval.total_seconds())
        metrics.declare_rules([*(r.name for r in rules), *(b.name for b in config.budgets)])
        page = StatusPage(config.state.path, live=lambda: built[0].live_state())  # noqa: PLW0108 - bound late
        try:
            server = start_server(config.metrics.listen, metrics)
        except OSError as exc:
            store.close()
            # Usually another daemon (or a dry run beside it) with the same configuration.
            raise ListenError(
                config.metrics.listen,
                "metrics.listen",
                exc.strerror or str(exc),
                source=str(config_path),
            ) from None
        page.mount(server.routes)
        all_listeners.append(metrics.observe_event)
    notifier: Notifier | None = None
    if config.notify:
        notifier = Notifier(
            [(t.url.get_secret_value(), t.events) for t in config.notify],
            claim=store.claim_notification,
            on_failure=_ignore_failure,  # replaced below, once the event log exists
        )
        all_listeners.append(notifier.observe_event)
    dry = dry_run or config.safety.dry_run
    events = EventLog(store, listeners=all_listeners, dry_run=dry)
    if notifier is not None:
        notifier.on_failure = lambda event, error: events.tapis_error(
            operation="notify", http_status=None, error=f"{event}: {error}", retry_in_s=None
        )
    client = TapisClient(
        config.tapis,
        on_call=metrics.observe_tapis_call if metrics is not None else None,
        on_error=events.tapis_error,
    )
    actor = Actor(
        client=client,
        store=store,
        events=events,
        safety=config.safety,
        dry_run=dry,
        resend_after=config.safety.resend_after.total_seconds(),
        spare=spare_hint(config_path, config),
        budgets=compile_budgets(config.budgets),
        charge_rates=config.charge_rates,
        list_type=config.poll.list_type,
        page_size=config.poll.page_size,
    )
    daemon = Daemon(
        config_path=config_path,
        config=config,
        dry_run_flag=dry_run,
        once=once,
        store=store,
        events=events,
        client=client,
        actor=actor,
        rules=rules,
        metrics=metrics,
        notifier=notifier,
        metrics_url=server.url if server is not None else None,
    )
    built.append(daemon)
    digests = digest_targets(config.notify)
    if digests:
        daemon.digests = DigestScheduler(
            digests, store=store, events=events, summarize=daemon.summary
        )
    return daemon, server


def freeze_startup() -> None:
    """Move everything start-up built out of the cyclic collector's sight.

    tapipy's specs, pydantic's models and the compiled rules live as long as the process; frozen,
    they are no longer scanned by every full collection (measured by bench/bench_poll.py: half
    the collector's time per poll at 10,000 jobs).
    """
    gc.collect()
    gc.freeze()


def run_daemon(config_path: Path, *, dry_run: bool = False, once: bool = False) -> int:
    """The `run` command: build the daemon, run it. Returns the exit code.

    Logging is the caller's to configure (`watchdog.cli.main` does, from `--log-*`).
    """
    daemon, server = build_daemon(config_path, dry_run=dry_run, once=once)
    freeze_startup()
    try:
        return anyio.run(daemon.serve)
    finally:
        daemon.store.close()
        if server is not None:
            server.close()
