"""`dondoc run`: the background daemon.

APScheduler 3 with its SQLAlchemy job store on the state database runs three jobs: evaluate on
working days at 07:00 and every hour, and deliver every minute. Jobs coalesce and have no misfire
limit, so a daemon that was down across a reminder moment runs the missed job once when it comes
back; the outbox's unique notice keys make the result exactly-once regardless. Rules are watched
and swapped atomically between jobs; an invalid edit (whatever the loader raises) keeps the last
good rules and the active daemon mails the pack's admin contact once per broken version.

It never dies silently. A busy database (another writer holding the lock: a long import, a backup)
is waited out: statements wait up to `stall_limit` seconds, and any transient database error in a
job or in the scheduler's own job-store access is retried with backoff and logged. A health check
(scheduler thread alive, its last pass and the last job run recent enough) gates the lease renewal
and the systemd watchdog; an unhealthy daemon stops with exit 70 so systemd restarts it and a
standby takes over. Tuning knobs come from `Settings.daemon` (engine/app/config.py).
Exit codes of run(): 0 stopped on request, 70 unhealthy (could not recover), 75 leadership lost.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import Session

from engine.app.memtrim import release_free_memory
from engine.app.rulesholder import fingerprint
from engine.db import get_engine, is_transient_db_error, make_engine, release_statements
from engine.errors import RuleError, RulePackInvalid, display_path
from engine.leader import Heartbeat, leadership_for
from engine.rules_loader import RulePack, load_pack
from engine.simclock import TZ, Clock, install
from notifications.admin import send_rules_alert
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import LinkMaker, deliver

if TYPE_CHECKING:
    from engine.app.inbox.reader import FetchReport

log = logging.getLogger("dondoc.daemon")
T = TypeVar("T")

EXIT_UNHEALTHY = 70         # EX_SOFTWARE: the scheduler could not recover; systemd restarts us, a standby takes over
EXIT_LEADERSHIP_LOST = 75   # EX_TEMPFAIL: the service manager restarts us (Restart=on-failure); we come back as standby


# ---- retries ------------------------------------------------------------------------------------
class Retrier:
    """Retries transient database errors with exponential backoff (real seconds), interrupted by a
    stop request, for at most `limit` seconds; anything else is raised at once."""

    def __init__(self, stop: threading.Event, limit: float, first: float = 0.5, cap: float = 10.0):
        self.stop, self.limit, self.first, self.cap = stop, limit, first, cap

    def call(self, what: str, fn: Callable[[], T]) -> T:
        t0 = time.monotonic()
        attempt = 0
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_transient_db_error(exc) or self.stop.is_set():
                    raise
                waited = time.monotonic() - t0
                if waited >= self.limit:
                    log.error("%s: database still unavailable after %.0f s, giving up", what, waited,
                              extra={"event": "db_retry_exhausted", "op": what})
                    raise
                delay = min(self.cap, self.first * 2 ** attempt)
                attempt += 1
                log.warning("%s: database busy or unavailable (%s); retry %d in %.1f s", what,
                            str(getattr(exc, "orig", exc) or exc).splitlines()[0], attempt, delay,
                            exc_info=attempt == 1, extra={"event": "db_retry", "op": what, "attempt": attempt})
                if self.stop.wait(delay):
                    raise
                continue
            if attempt:
                log.info("%s: database available again after %.1f s", what, time.monotonic() - t0,
                         extra={"event": "db_recovered", "op": what, "waited_s": round(time.monotonic() - t0, 1)})
            return result


class RetryingJobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store whose database calls wait out a busy database.

    APScheduler lets an error of ``update_job``/``get_next_run_time`` escape its main loop, which
    ends the scheduler thread while the process lives on (the "zombie daemon" of issue 10)."""

    retrier: Retrier

    def _r(self, what: str, fn: Callable[[], T]) -> T:
        return self.retrier.call(f"job store {what}", fn)

    def start(self, scheduler, alias):
        return self._r("start", lambda: super(RetryingJobStore, self).start(scheduler, alias))

    def lookup_job(self, job_id):
        return self._r("lookup", lambda: super(RetryingJobStore, self).lookup_job(job_id))

    def get_due_jobs(self, now):
        return self._r("read", lambda: super(RetryingJobStore, self).get_due_jobs(now))

    def get_next_run_time(self):
        return self._r("read", lambda: super(RetryingJobStore, self).get_next_run_time())

    def get_all_jobs(self):
        return self._r("read", lambda: super(RetryingJobStore, self).get_all_jobs())

    def add_job(self, job):
        return self._r("add", lambda: super(RetryingJobStore, self).add_job(job))

    def update_job(self, job):
        return self._r("update", lambda: super(RetryingJobStore, self).update_job(job))

    def remove_job(self, job_id):
        return self._r("remove", lambda: super(RetryingJobStore, self).remove_job(job_id))

    def shutdown(self):
        pass        # the engine is the daemon's, shared with the jobs: not disposed here


class ClockedScheduler(BackgroundScheduler):
    """BackgroundScheduler whose sleeps follow a (possibly fast) simulated clock, and whose main
    loop survives any error of a pass (logged, retried with backoff) and reports its liveness."""

    MAX_IDLE = 5.0          # real seconds: a pass at least this often, so liveness stays fresh

    def __init__(self, clock: Clock, stopping: Callable[[], bool] = lambda: False, **kwargs):
        self.clock = clock
        self.stopping = stopping
        self.last_pass_ok = time.monotonic()
        self.failing_since: float | None = None
        self.last_error = ""
        super().__init__(**kwargs)

    def _main_loop(self):  # noqa: D401 - same contract as APScheduler's
        wait_seconds: float | None = 1.0
        failures = 0
        while self.state != STATE_STOPPED:
            if wait_seconds is None:
                real = 1.0
            else:
                real = self.clock.real_seconds(wait_seconds)
                if self.clock.simulated:
                    real = min(real, 0.5)
            self._event.wait(min(real, self.MAX_IDLE))
            self._event.clear()
            try:
                wait_seconds = self._process_jobs()
            except Exception as exc:
                if self.stopping() or self.state == STATE_STOPPED:
                    return                       # a database wait interrupted by the stop request
                failures += 1
                now = time.monotonic()
                if self.failing_since is None:
                    self.failing_since = now
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                backoff = min(10.0, 0.5 * 2 ** (failures - 1))
                log.error("scheduler pass failed (%s); retry in %.1f s", self.last_error, backoff, exc_info=True,
                          extra={"event": "scheduler_error", "attempt": failures})
                self._event.wait(backoff)
                wait_seconds = 0.0
                continue
            if self.failing_since is not None:
                log.info("scheduler working again after %.1f s", time.monotonic() - self.failing_since,
                         extra={"event": "scheduler_recovered"})
            failures, self.failing_since = 0, None
            self.last_pass_ok = time.monotonic()

    def _process_jobs(self):
        # APScheduler checks "paused" before taking the job-store lock, so a pass that began just
        # before pause()/shutdown() could submit a job to an executor already shut down ("cannot
        # schedule new futures after shutdown", logged as an error) and still advance that job's
        # next run time, i.e. lose the run. Check the state under the (re-entrant) lock instead:
        # shutdown() sets STOPPED first and then needs this lock.
        with self._jobstores_lock:
            if self.state != STATE_RUNNING:
                return None
            return super()._process_jobs()

    def alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()


@dataclass
class DaemonConfig:
    rules_dir: Path
    calendar_dir: Path
    db_url: str
    templates_dir: Path | None = None
    clock: Clock = field(default_factory=Clock)
    # real seconds between rule-file checks (a change is applied once it has been stable for one check)
    watch_interval: float = 1.0
    # real seconds between leadership attempts of a standby
    standby_poll: float = 2.0
    lease_ttl: float = 20.0
    evaluate_hour: int = 7
    evaluate_minute: int = 0
    # simulated minutes between delivery passes (raise it for very fast simulated clocks)
    deliver_every_minutes: int = 1
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    # the "Báo đã gửi" link of each digest: engine.app.confirmations.link_maker(settings) (None: no links)
    links: LinkMaker | None = None
    tracking_start: object = None
    # called with "now" after each valid rules folder goes live, so a hand edit of rules/ made outside
    # the console is recorded as a version (engine.app.ruleversions.record_hand_edits); None: not recorded
    on_rules_loaded: Callable[[datetime], object] | None = None
    # reads the reporting mailbox (engine.app.inbox.reader.fetch bound to the settings) every
    # ``inbox_every_minutes`` simulated minutes; None: no mailbox configured
    read_inbox: Callable[[RulePack, datetime], FetchReport] | None = None
    inbox_every_minutes: int = 5
    # real seconds the daemon waits out a busy or unreachable database (statement busy timeout,
    # retries) before it declares itself unhealthy and exits 70
    stall_limit: float = 300.0
    # real seconds one job run may take before the daemon counts as stuck (a big sending day is long)
    job_limit: float = 3600.0
    # when the scheduler cannot be stopped (a job blocked in the database), leave with os._exit
    hard_exit_when_stuck: bool = True


# ---- systemd ------------------------------------------------------------------------------------
def sd_notify(message: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (no-op outside systemd)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode("utf-8"), addr)
        return True
    except OSError:
        return False


class Watchdog:
    """Pings systemd's watchdog (WATCHDOG=1) at half of WatchdogSec, only when told all is well."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.interval = int(usec) / 2e6 if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        self._last = 0.0

    def ping(self) -> None:
        if self.interval is not None and time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            sd_notify("WATCHDOG=1")


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.clock = cfg.clock
        self.stop_event = threading.Event()
        self.lost_leadership = threading.Event()
        self._pack_lock = threading.RLock()
        self.pack: RulePack | None = None
        self._fingerprint = ""
        self._seen_fingerprint = ""     # last fingerprint the watcher observed (debounce)
        self._reported_bad: set[str] = set()
        # Only the active daemon mails the admin contact; a standby remembers what it would have sent.
        self.alerts_enabled = False
        self._unreported: tuple[RulePackInvalid, str] | None = None
        # Migrated; shared with the web console and the services it calls (cached per process).
        self.shared_engine = get_engine(cfg.db_url)
        # Jobs and the job store wait out another writer up to the stall limit; the lease uses a
        # short wait and retries, so the heartbeat and a standby stay responsive.
        self.engine = make_engine(cfg.db_url, busy_timeout=cfg.stall_limit)
        self.lease_engine = make_engine(cfg.db_url, busy_timeout=min(1.0, max(0.05, cfg.lease_ttl / 8)))
        self.retrier = Retrier(self.stop_event, cfg.stall_limit)
        self.scheduler: ClockedScheduler | None = None
        self.heartbeat: Heartbeat | None = None
        self.exit_code = 0
        self.unhealthy_reason: str | None = None
        self._job: tuple[str, float] | None = None          # (name, monotonic start) of the job running
        self._jobs_failing_since: float | None = None
        self.last_job_ok: float | None = None
        self._synced: tuple[RulePack, object] | None = None   # (pack, day) of the last instance sync
        self.on_rules_invalid: Callable[[RulePackInvalid, str], None] | None = self._alert_admin

    def _alert_admin(self, exc: RulePackInvalid, fp: str) -> None:
        """Tell the admin contact once per broken version; needs the last good pack for the address."""
        if self.pack is None:
            return
        ok = send_rules_alert(self.pack, exc, fp, self.clock.now(), smtp=self.cfg.smtp)
        log.info("rules alert %s", "sent" if ok else "NOT sent", extra={"event": "rules_alert", "sent": ok})

    # ---- rules --------------------------------------------------------------------------------
    def _watched(self) -> list[Path]:
        return [p for p in (self.cfg.rules_dir, self.cfg.calendar_dir, self.cfg.templates_dir) if p is not None]

    def _load_candidate(self) -> RulePack:
        """The new pack, or RulePackInvalid for anything the loader (or the template check) raises:
        a RecursionError or MemoryError on a hostile file is a broken version like any other."""
        try:
            pack = load_pack(self.cfg.rules_dir, self.cfg.calendar_dir)
            from engine.app.checks import check_templates_for  # templates belong to the rule set

            errs = check_templates_for(self.cfg.templates_dir)
        except RulePackInvalid:
            raise
        except Exception as exc:   # noqa: BLE001 - see the docstring
            log.error("rule loader failed on the new rule files", exc_info=True, extra={"event": "rules_loader_error"})
            raise RulePackInvalid([RuleError(display_path(self.cfg.rules_dir), None, "",
                                             f"không đọc được bộ quy tắc ({type(exc).__name__}: {str(exc)[:300]}); "
                                             "kiểm tra bằng “dondoc rules check”")]) from exc
        if errs:
            raise RulePackInvalid(errs)
        return pack

    def load_rules(self, initial: bool = False) -> bool:
        """Validate the whole new set; swap only when it is valid. True if a new pack is live."""
        fp = fingerprint(self._watched())
        self._seen_fingerprint = fp
        if fp == self._fingerprint:
            return False
        try:
            pack = self._load_candidate()
        except RulePackInvalid as exc:
            self._fingerprint = fp       # logged and reported once per version, not at every check
            for e in exc.errors:
                log.error("rules invalid: %s", e, extra={"event": "rules_invalid", "file": e.file, "line": e.line})
            if fp not in self._reported_bad:
                log.warning("keeping the last good rules (version %s)", self.pack.version if self.pack else "none")
                if self.alerts_enabled:
                    self._report_bad(exc, fp)
                else:
                    self._unreported = (exc, fp)
            if initial and self.pack is None:
                raise
            return False
        with self._pack_lock:
            self.pack = pack
            self._fingerprint = fp
            self._unreported = None
        log.info("rules loaded: version %s, %d obligations, %d units", pack.version, len(pack.obligations),
                 len(pack.units), extra={"event": "rules_loaded", "version": pack.version})
        self._record_version()
        return True

    def _record_version(self) -> None:
        """Record the live folder in the rules history; a failure is logged, never fatal (the next
        reload or `dondoc rules history` records it)."""
        if self.cfg.on_rules_loaded is None:
            return
        try:
            self.cfg.on_rules_loaded(self.clock.now())
        except Exception:  # noqa: BLE001 - the history is a record, never a reason to stop chasing
            log.exception("could not record the rules version", extra={"event": "rules_version_failed"})

    def _report_bad(self, exc: RulePackInvalid, fp: str) -> None:
        self._reported_bad.add(fp)
        self._unreported = None
        if self.on_rules_invalid is not None:
            try:
                self.on_rules_invalid(exc, fp)
            except Exception:
                log.exception("could not tell the admin contact about invalid rules")

    def enable_alerts(self) -> None:
        """Called on becoming active: from now on this process mails the admin contact (once per
        broken version), including about a broken version it saw while it was a standby."""
        self.alerts_enabled = True
        pending = self._unreported
        if pending is not None and pending[1] == self._fingerprint and pending[1] not in self._reported_bad:
            self._report_bad(*pending)

    def check_rules(self) -> bool:
        """One watcher tick: apply a change only once the files have stopped changing (the same
        mtime/size fingerprint on two consecutive checks), so a file caught half-written by an
        editor is neither loaded nor reported to the admin contact."""
        fp = fingerprint(self._watched())
        if fp != self._seen_fingerprint:
            self._seen_fingerprint = fp
            return False
        if fp == self._fingerprint:
            return False
        return self.load_rules()

    def _safe_check_rules(self) -> None:
        try:
            self.check_rules()
        except Exception:
            log.exception("rule watcher failed", extra={"event": "watcher_error"})

    def _watch_loop(self) -> None:
        while not self.stop_event.wait(self.cfg.watch_interval):
            self._safe_check_rules()

    # ---- jobs ---------------------------------------------------------------------------------
    def run_job(self, name: str, fn: Callable[[], Any]) -> None:
        """Run one job: only while our lease is confirmed, transient database errors retried with
        backoff (logged), other errors logged; the outcome feeds the health check."""
        hb = self.heartbeat
        while hb is not None and not hb.valid():          # a busy database kept us from renewing
            if self.stop_event.wait(0.2):
                return
        self._job = (name, time.monotonic())
        try:
            self.retrier.call(f"job {name}", fn)
        except Exception:
            if self.stop_event.is_set():
                return
            if self._jobs_failing_since is None:
                self._jobs_failing_since = time.monotonic()
            log.exception("job %s failed", name, extra={"event": "job_failed", "job": name})
        else:
            self.last_job_ok = time.monotonic()
            self._jobs_failing_since = None
        finally:
            self._job = None
            try:        # the prepared statements of the job (and of the console's pages), then
                for eng in (self.engine, self.shared_engine):
                    release_statements(eng)
            except Exception:                      # noqa: BLE001 - never worth failing a job for
                log.exception("closing idle database connections failed", extra={"event": "release_failed"})
            release_free_memory()      # resident memory follows what the daemon holds, not its peaks

    def job_evaluate(self) -> None:
        from engine.pipeline import evaluate
        from engine.sync import record_installation, sync_instances

        now = self.clock.now()
        with self._pack_lock:       # a swap waits for the running evaluation
            pack = self.pack
            assert pack is not None
            with Session(self.engine, expire_on_commit=False) as ses:
                # The instance table depends only on the rules and the date: sync once per rules
                # version and day, not at every hourly pass (with 1,000 units a sync costs ~0.8 s
                # and rewrites every unit row; the evaluation itself ~0.05 s).
                day = now.date()
                if self._synced is None or self._synced[0] is not pack or self._synced[1] != day:
                    record_installation(ses, now)    # go-live: the first start records the installation day
                    sync_instances(ses, pack, now, tracking_start=self.cfg.tracking_start)  # type: ignore[arg-type]
                    synced = (pack, day)
                else:
                    synced = self._synced
                rep = evaluate(ses, pack, now, keep_notices=False)
                self._synced = synced
        log.info("evaluated at %s: %d new notices (%d open items)", now.isoformat(timespec="minutes"), rep.created,
                 rep.considered, extra={"event": "evaluated", "notices_created": rep.created, "sim_now": now.isoformat()})

    def job_deliver(self) -> None:
        now = self.clock.now()
        with self._pack_lock:
            pack = self.pack
        assert pack is not None
        report = deliver(self.engine, pack, now, smtp=self.cfg.smtp, delivery=self.cfg.delivery,
                         should_stop=self.stop_event.is_set, links=self.cfg.links)
        sent = report.sent
        if sent:
            log.info("delivered %s at %s", sent, now.isoformat(timespec="minutes"),
                     extra={"event": "delivered", "sent": sent, "sim_now": now.isoformat()})

    def job_inbox(self) -> None:
        """Read the reporting mailbox. A mailbox that is down or refuses us is logged (in words) and
        tried again at the next run: it must not make the daemon count itself unhealthy."""
        from engine.app.services import DatabaseUnavailable, ServiceError

        if self.cfg.read_inbox is None:
            return
        now = self.clock.now()
        with self._pack_lock:
            pack = self.pack
        assert pack is not None
        try:
            rep = self.cfg.read_inbox(pack, now)
        except ServiceError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise                            # the database: the health check decides
            log.warning("inbox: %s", exc.message, extra={"event": "inbox_failed"})
            return
        if rep.read:
            log.info("inbox: %s", rep.summary(), extra={"event": "inbox_read", "read": rep.read, "recorded": rep.recorded,
                                                        "queued": rep.queued, "sim_now": now.isoformat()})

    # ---- health -------------------------------------------------------------------------------
    def health(self) -> str | None:
        """None while the daemon does its work; else why not (the lease is then not renewed)."""
        sched = self.scheduler
        if sched is None:
            return None
        now = time.monotonic()
        limit = self.cfg.stall_limit + min(15.0, self.cfg.stall_limit / 2)
        if not sched.alive():
            return "the scheduler thread has stopped"
        if now - sched.last_pass_ok > limit:
            return (f"the scheduler made no pass for {now - sched.last_pass_ok:.0f} s"
                    + (f" (last error: {sched.last_error})" if sched.last_error else ""))
        job = self._job
        if job is not None and now - job[1] > self.cfg.job_limit:
            return f"job {job[0]} has been running for {now - job[1]:.0f} s"
        if self._jobs_failing_since is not None and now - self._jobs_failing_since > limit:
            return f"every job run failed for {now - self._jobs_failing_since:.0f} s"
        return None

    # ---- lifecycle ----------------------------------------------------------------------------
    def _build_scheduler(self) -> ClockedScheduler:
        store = RetryingJobStore(engine=self.engine, tablename="apscheduler_jobs")
        store.retrier = self.retrier
        sched = ClockedScheduler(self.clock, stopping=self.stop_event.is_set, jobstores={"default": store},
                                 executors={"default": ThreadPoolExecutor(1)},
                                 job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                                 timezone=TZ)
        return sched

    def _ensure_jobs(self, sched: ClockedScheduler) -> None:
        """Add each job once; never replace a stored job (that would forget a missed run). A stored
        job whose schedule differs from the configuration (e.g. a new evaluate hour) gets the new
        trigger; a run it missed while the daemon was down is kept (it runs once, at start)."""
        specs = {
            "evaluate-morning": (_job_evaluate, CronTrigger(day_of_week="mon-sat", hour=self.cfg.evaluate_hour,
                                                             minute=self.cfg.evaluate_minute, timezone=TZ)),
            "evaluate-hourly": (_job_evaluate, CronTrigger(minute=5, timezone=TZ)),
            "deliver": (_job_deliver, IntervalTrigger(minutes=self.cfg.deliver_every_minutes, timezone=TZ,
                                                      start_date=self.clock.now())),
        }
        if self.cfg.read_inbox is not None:
            specs["inbox"] = (_job_inbox, IntervalTrigger(minutes=self.cfg.inbox_every_minutes, timezone=TZ,
                                                          start_date=self.clock.now()))
        elif sched.get_job("inbox") is not None:
            sched.remove_job("inbox")            # the mailbox was configured once, and is no more
        now = self.clock.now()
        for job_id, (func, trigger) in specs.items():
            job = sched.get_job(job_id)
            if job is None:
                sched.add_job(func, trigger, id=job_id, name=job_id)
            elif str(job.trigger) != str(trigger):
                nxt = trigger.get_next_fire_time(None, now)
                if job.next_run_time is not None and job.next_run_time <= now:
                    nxt = job.next_run_time          # a run missed while we were down: keep it
                log.info("schedule of %s changed: %s → %s", job_id, job.trigger, trigger, extra={"event": "job_rescheduled"})
                sched.modify_job(job_id, trigger=trigger, next_run_time=nxt)

    def request_stop(self, *_args) -> None:
        log.info("stop requested", extra={"event": "stopping"})
        self.stop_event.set()

    def _acquire(self, lead, watchdog: Watchdog) -> bool:
        """Wait as a standby until leadership is ours (True) or a stop is requested (False).
        A database error while waiting is logged and the wait goes on: a standby must survive
        whatever the active daemon survives."""
        announced = False
        failing_since: float | None = None
        while True:
            try:
                if lead.try_acquire():
                    if failing_since is not None:
                        log.info("database available again", extra={"event": "standby_recovered"})
                    return True
                if failing_since is not None:
                    log.info("database available again after %.1f s", time.monotonic() - failing_since,
                             extra={"event": "standby_recovered"})
                    failing_since = None
            except Exception as exc:
                now = time.monotonic()
                if failing_since is None or now - failing_since > 60:
                    log.warning("standby: leadership check failed (%s); retrying", str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                exc_info=failing_since is None, extra={"event": "standby_error"})
                    failing_since = now if failing_since is None else failing_since
            if not announced:
                log.info("another dondoc is active on this database: waiting as standby", extra={"event": "standby"})
                sd_notify("READY=1\nSTATUS=standby: another dondoc is active")
                announced = True
            watchdog.ping()
            if self.stop_event.wait(self.cfg.standby_poll):
                return False
            self._safe_check_rules()

    def run(self) -> int:
        global _DAEMON
        _DAEMON = self
        install(self.clock)
        self.load_rules(initial=True)
        watchdog = Watchdog()
        lead = leadership_for(self.lease_engine, ttl=self.cfg.lease_ttl)
        if not self._acquire(lead, watchdog):
            sd_notify("STOPPING=1")
            return 0
        log.info("active (holder %s)", lead.holder, extra={"event": "active", "holder": lead.holder})
        sd_notify("READY=1\nSTATUS=active")
        self.enable_alerts()
        hb = Heartbeat(lead, max(0.25, self.cfg.lease_ttl / 4), on_lost=self._lost, healthy=self.health)
        self.heartbeat = hb
        hb.start()
        watcher = threading.Thread(target=self._watch_loop, name="dondoc-watch", daemon=True)
        watcher.start()
        sched = self._build_scheduler()
        try:
            sched.start(paused=True)
            self.scheduler = sched
            self._ensure_jobs(sched)
            # Catch up at once: evaluation is idempotent, so running it now never sends twice.
            self.run_job("evaluate", self.job_evaluate)
            sched.resume()
        except Exception as exc:
            if not self.stop_event.is_set():
                log.exception("could not start the scheduler", extra={"event": "unhealthy"})
                self.unhealthy_reason = f"could not start the scheduler: {exc}"
                self.exit_code = EXIT_UNHEALTHY
                self.stop_event.set()
        last_check = 0.0
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            if now - last_check < 1.0:
                continue
            last_check = now
            reason = self.health()
            if reason:
                self.unhealthy_reason = reason
                log.error("unhealthy: %s; stopping so that systemd restarts dondoc and a standby takes over", reason,
                          extra={"event": "unhealthy"})
                self.exit_code = EXIT_UNHEALTHY
                self.stop_event.set()
                break
            watchdog.ping()
        sd_notify("STOPPING=1")
        stuck = not self._stop_scheduler(sched)
        hb.stop_event.set()
        if self.lost_leadership.is_set():
            log.info("stopped after losing leadership", extra={"event": "stopped"})
            code = EXIT_LEADERSHIP_LOST
        else:
            try:
                lead.release()
            except Exception as exc:
                log.warning("could not release the lease (%s): a standby takes over when it expires", exc)
            code = self.exit_code
            log.info("stopped" + (f" (exit {code})" if code else ""), extra={"event": "stopped", "exit_code": code})
        if stuck and self.cfg.hard_exit_when_stuck:
            # A job is blocked in the database: the interpreter would wait for it at exit.
            logging.shutdown()
            os._exit(code or EXIT_UNHEALTHY)
        return code

    def _stop_scheduler(self, sched: ClockedScheduler, timeout: float = 10.0) -> bool:
        """Pause, then shut down waiting for the job in flight (delivery stops between messages).
        False if that did not happen within `timeout` (a job or store call blocked in the database)."""
        def stop() -> None:
            try:
                if sched.state != STATE_STOPPED:
                    sched.pause()          # no new submissions while the executor shuts down
                    sched.shutdown(wait=True)
            except Exception:
                log.exception("scheduler shutdown failed")

        t = threading.Thread(target=stop, name="dondoc-shutdown", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            log.error("the scheduler did not stop within %.0f s (blocked in the database?): exiting anyway", timeout,
                      extra={"event": "stop_timeout"})
            return False
        return True

    def run_once(self) -> None:
        """One sync + evaluation + delivery pass (for cron-style use and scripts)."""
        global _DAEMON
        _DAEMON = self
        self.alerts_enabled = True
        self.load_rules(initial=True)
        self.job_evaluate()
        self.job_deliver()

    def _lost(self) -> None:
        log.error("leadership lost: stopping the scheduler", extra={"event": "leadership_lost"})
        self.lost_leadership.set()
        self.stop_event.set()


_DAEMON: Daemon | None = None


def _job_evaluate() -> None:
    assert _DAEMON is not None
    _DAEMON.run_job("evaluate", _DAEMON.job_evaluate)


def _job_deliver() -> None:
    assert _DAEMON is not None
    _DAEMON.run_job("deliver", _DAEMON.job_deliver)


def _job_inbox() -> None:
    assert _DAEMON is not None
    _DAEMON.run_job("inbox", _DAEMON.job_inbox)


# ---- logging ------------------------------------------------------------------------------------
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, every `extra` field, and a traceback as
    the field `exc_info` (never as extra lines)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": datetime.now(TZ).isoformat(timespec="milliseconds"), "level": record.levelname,
                                "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_") and k not in data:
                data[k] = v
        if record.exc_info:
            data["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            data["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _SkippedRunFilter(logging.Filter):
    """APScheduler warns each time a job's run is skipped because its previous run is still going.
    Our jobs coalesce by design (a long delivery pass simply absorbs the next ticks; nothing is
    lost), so at a fast simulated clock, or during a big sending day, these warnings are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("apscheduler") and "maximum number of running instances" in record.getMessage())


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Everything the process reports goes through one handler: our loggers, APScheduler's,
    Python warnings, and exceptions that escape a thread or the main program."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_SkippedRunFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    crash = logging.getLogger("dondoc.crash")

    def excepthook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash.critical("uncaught exception", exc_info=(exc_type, exc, tb), extra={"event": "crash"})

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        crash.critical("uncaught exception in thread %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
                       extra={"event": "crash", "thread_name": name})

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def install_signal_handlers(d: Daemon) -> None:
    signal.signal(signal.SIGTERM, d.request_stop)
    signal.signal(signal.SIGINT, d.request_stop)
